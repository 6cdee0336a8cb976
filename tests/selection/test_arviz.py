"""to_arviz: per-datum log-likelihoods that arviz.loo and arviz.compare accept."""

import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import config_enumerate
from pyro.ops.indexing import Vindex

from pyrostruct.selection import Candidate, select, select_components
from pyrostruct.selection.datasets import make_gmm_data

az = pytest.importorskip("arviz")
FAST = dict(elbo_particles=100, iwae_particles=20, iwae_repeats=3)


@pytest.fixture(scope="module")
def gmm_result():
    x, _ = make_gmm_data(150, 2, 2, separation=8.0, seed=4)
    return select_components(x, "gmm", 3, steps=150, num_restarts=1, halving=None, **FAST)


def test_to_arviz_is_accepted_by_loo_and_compare(gmm_result):
    idata = gmm_result.to_arviz(num_samples=100)
    assert set(idata) == {1, 2, 3}
    ll = idata[2].log_likelihood["obs"]
    assert ll.shape == (1, 100, 150)
    assert np.isfinite(ll.values).all()
    assert set(idata[2].posterior.data_vars) == {"weights", "locs", "scales"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pareto-k warnings are ArviZ's business
        loo = az.loo(idata[2])
        cmp = az.compare({str(k): v for k, v in idata.items()})
    assert np.isfinite(loo.elpd_loo)
    # the cross-check agrees with the evidence: two clusters beat one
    assert cmp.index[0] in ("2", "3")
    assert cmp.loc["1", "elpd_loo"] < cmp.loc["2", "elpd_loo"]


@config_enumerate
def enum_mixture(x):
    w = pyro.sample("w", dist.Dirichlet(torch.ones(2)))
    locs = pyro.sample("locs", dist.Normal(0.0, 5.0).expand([2]).to_event(1))
    with pyro.plate("n", len(x)):
        z = pyro.sample("z", dist.Categorical(w))
        pyro.sample("x", dist.Normal(Vindex(locs)[..., z], 1.0), obs=x)


def marginal_mixture(x):
    w = pyro.sample("w", dist.Dirichlet(torch.ones(2)))
    locs = pyro.sample("locs", dist.Normal(0.0, 5.0).expand([2]).to_event(1))
    with pyro.plate("n", len(x)):
        pyro.sample("x", dist.MixtureSameFamily(dist.Categorical(w), dist.Normal(locs, 1.0)), obs=x)


def test_enumerated_pointwise_loglik_equals_marginal():
    g = torch.Generator().manual_seed(1)
    x = torch.cat([torch.randn(30, generator=g) - 3, torch.randn(30, generator=g) + 3])

    def init(args, kwargs, rng):
        return {"locs": torch.tensor([-2.0, 2.0])}

    result = select(
        {
            "enum": Candidate(enum_mixture, init=init),
            "marg": Candidate(marginal_mixture, init=init),
        },
        x,
        steps=50,
        num_restarts=1,
        halving=None,
        **FAST,
    )
    from pyrostruct.selection import pointwise_log_likelihood

    samples = result.posterior("enum").sample_posterior(20)
    a = pointwise_log_likelihood(result.posterior("enum"), samples)["x"]
    b = pointwise_log_likelihood(result.posterior("marg"), samples)["x"]
    assert a.shape == (20, 60)
    assert np.allclose(a, b, atol=1e-4)
