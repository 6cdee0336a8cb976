"""Prior scale of a Bayesian regression: grid by select vs type-II maximum likelihood vs exact."""

import math

import numpy as np
import pyro
import pytest
import torch
from scipy.optimize import minimize_scalar

from pyrostruct.errors import InputError
from pyrostruct.selection import select
from pyrostruct.selection.hyper import (
    bayesian_regression,
    regression_log_evidence,
    type2_maximum_likelihood,
)

GRID = [0.03, 0.3, 3.0, 30.0]


@pytest.fixture(scope="module")
def regression():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 5, generator=g)
    w = 0.4 * torch.randn(5, generator=g)
    y = (X * w).sum(-1) + torch.randn(60, generator=g)
    res = minimize_scalar(lambda s: -regression_log_evidence(X, y, math.exp(s)), (-3, 3))
    return X, y, math.exp(res.x)


def test_grid_picks_the_grid_point_with_the_highest_exact_evidence(regression):
    X, y, _ = regression
    result = select(
        bayesian_regression,
        X,
        y,
        grid=GRID,
        steps=300,
        num_restarts=1,
        elbo_particles=300,
        iwae_particles=50,
        iwae_repeats=4,
    )
    exact = [regression_log_evidence(X, y, s) for s in GRID]
    assert result.best == GRID[int(np.argmax(exact))]
    t = result.table.set_index("candidate")
    for s, e in zip(GRID, exact):
        if t.loc[s].status == "fitted":
            assert abs(t.loc[s].iwae - e) < 4 * t.loc[s].iwae_se + 0.05


def test_type2_ml_matches_the_exact_evidence_maximizer(regression):
    X, y, tau_star = regression
    pyro.param("unrelated", torch.tensor(1.0))
    result = type2_maximum_likelihood(bayesian_regression(None), X, y, steps=600)
    tau = result.values["prior_scale"].item()
    assert tau == pytest.approx(tau_star, rel=0.15)
    assert "prior_scale" not in pyro.get_param_store()  # ran in its own store
    # the bound at the learned tau is close to the maximal exact evidence
    best = regression_log_evidence(X, y, tau_star)
    assert best - 0.5 < result.elbo.value < best + 3 * result.elbo.se
    assert len(result.history["prior_scale"]) > 10
    assert abs(result.history["prior_scale"][0].item() - 1.0) < 0.1


def test_type2_needs_hyperparameters(regression):
    X, y, _ = regression
    with pytest.raises(InputError, match="no pyro.param"):
        type2_maximum_likelihood(bayesian_regression(1.0), X, y, steps=5)
    with pytest.raises(InputError, match="steps"):
        type2_maximum_likelihood(bayesian_regression(None), X, y, steps=0)
    with pytest.raises(InputError, match="seed"):  # was a RuntimeError from numpy's seeding
        type2_maximum_likelihood(bayesian_regression(None), X, y, steps=5, seed=-1)


def test_type2_takes_numpy_data(regression):
    X, y, _ = regression
    result = type2_maximum_likelihood(bayesian_regression(None), X.numpy(), y.numpy(), steps=5)
    assert result.values["prior_scale"].dtype == torch.get_default_dtype()
    with pytest.raises(InputError, match="prior_scale"):
        bayesian_regression(-1.0)
