"""Evidence estimators against a conjugate model whose log evidence is known in closed form."""

import math
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO, config_enumerate
from pyro.infer.autoguide import AutoMultivariateNormal, AutoNormal
from pyro.ops.indexing import Vindex
from pyro.optim import ClippedAdam

from pyrostruct.infer import (
    EvidenceEstimate,
    LowESSWarning,
    effective_sample_size,
    elbo_estimate,
    iwae_estimate,
    log_importance_weights,
)
from pyrostruct.infer.evidence import VectorizationWarning, vectorization_method

TAU, SIGMA = 1.0, 0.5


def regression_data(n=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 1, generator=g)
    # two strongly correlated features: a correlated posterior that mean-field cannot fit
    X = torch.cat([base, base + 0.3 * torch.randn(n, 1, generator=g)], 1)
    beta = torch.tensor([1.0, -0.5])
    y = X @ beta + SIGMA * torch.randn(n, generator=g)
    return X, y


def model(X, y):
    beta = pyro.sample("beta", dist.Normal(0.0, TAU).expand([X.shape[1]]).to_event(1))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal((X * beta).sum(-1), SIGMA), obs=y)


def model_matmul(X, y):  # X @ beta does not broadcast over a particle batch dim
    beta = pyro.sample("beta", dist.Normal(0.0, TAU).expand([X.shape[1]]).to_event(1))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(X @ beta, SIGMA), obs=y)


def exact_log_evidence(X, y):
    cov = TAU**2 * X @ X.T + SIGMA**2 * torch.eye(len(y))
    return dist.MultivariateNormal(torch.zeros(len(y)), cov).log_prob(y).item()


def exact_posterior(X, y):
    prec = torch.eye(X.shape[1]) / TAU**2 + X.T @ X / SIGMA**2
    cov = torch.linalg.inv(prec)
    return cov @ X.T @ y / SIGMA**2, cov


def fit(guide, X, y, steps=1500):
    svi = SVI(
        model,
        guide,
        ClippedAdam({"lr": 0.05, "lrd": 0.01 ** (1 / steps)}),
        Trace_ELBO(num_particles=16, vectorize_particles=True),
    )
    svi.step(X, y)  # validated once
    with pyro.validation_enabled(False):
        for _ in range(steps):
            svi.step(X, y)
    return guide


def test_exact_posterior_guide_gives_exact_evidence_with_zero_variance():
    X, y = regression_data()
    mean, cov = exact_posterior(X, y)

    def guide(X, y):
        pyro.sample("beta", dist.MultivariateNormal(mean, cov))

    exact = exact_log_evidence(X, y)
    lw = log_importance_weights(model, guide, X, y, num_particles=200)
    assert lw.shape == (200,)
    assert torch.allclose(lw, torch.full_like(lw, exact), atol=1e-3)
    est = elbo_estimate(model, guide, X, y, num_particles=200)
    assert isinstance(est, EvidenceEstimate) and est.method == "elbo"
    assert est.value == pytest.approx(exact, abs=1e-3)
    assert est.se < 1e-3


def test_iwae_above_elbo_and_increasing_in_k_for_a_mean_field_guide():
    X, y = regression_data()
    exact = exact_log_evidence(X, y)
    guide = fit(AutoNormal(model), X, y, steps=1000)
    elbo = elbo_estimate(model, guide, X, y, num_particles=4000)
    bounds = [
        iwae_estimate(model, guide, X, y, num_particles=k, num_repeats=r)
        for k, r in [(1, 2000), (10, 200), (100, 40), (1000, 8)]
    ]
    # the mean-field guide misses the posterior correlation: a real gap to close
    assert exact - elbo.value > 0.1
    assert elbo.value < exact + 3 * elbo.se
    assert bounds[0].value == pytest.approx(elbo.value, abs=4 * math.hypot(elbo.se, bounds[0].se))
    for lo, hi in zip(bounds, bounds[1:]):
        assert hi.value > lo.value - 2 * math.hypot(lo.se, hi.se)
        assert hi.value <= exact + 3 * hi.se + 1e-3
    assert bounds[-1].value - elbo.value > 5 * math.hypot(elbo.se, bounds[-1].se)
    # the bound closes most of the gap to the exact log evidence
    assert exact - bounds[-1].value < 0.5 * (exact - elbo.value)
    assert bounds[-1].ess > bounds[1].ess  # more particles, more effective ones


def test_fitted_full_rank_guide_elbo_and_iwae_within_error_of_exact():
    X, y = regression_data(seed=1)
    exact = exact_log_evidence(X, y)
    guide = fit(AutoMultivariateNormal(model), X, y, steps=2000)
    elbo = elbo_estimate(model, guide, X, y, num_particles=2000)
    iwae = iwae_estimate(model, guide, X, y, num_particles=100, num_repeats=20)
    # ELBO = log Z - KL(q || p): the family holds the posterior, so KL is small
    assert exact - 0.05 < elbo.value < exact + 3 * elbo.se
    assert abs(iwae.value - exact) < 3 * iwae.se + 2e-3
    assert iwae.value >= elbo.value - 3 * math.hypot(elbo.se, iwae.se)


def test_loop_and_vectorized_weights_agree_and_unbatchable_models_fall_back():
    X, y = regression_data()
    guide = fit(AutoNormal(model), X, y, steps=100)
    pyro.set_rng_seed(3)
    a = elbo_estimate(model, guide, X, y, num_particles=300)
    pyro.set_rng_seed(3)
    b = elbo_estimate(model, guide, X, y, num_particles=300, vectorize=False)
    pyro.set_rng_seed(3)
    c = elbo_estimate(model_matmul, guide, X, y, num_particles=300)  # falls back to a loop
    assert abs(a.value - b.value) < 4 * math.hypot(a.se, b.se)
    assert abs(a.value - c.value) < 4 * math.hypot(a.se, c.se)


def test_narrow_guide_warns_low_ess():
    X, y = regression_data()
    mean, cov = exact_posterior(X, y)

    def guide(X, y):
        pyro.sample("beta", dist.MultivariateNormal(mean + 0.3, cov / 50))

    with pytest.warns(LowESSWarning, match="effective sample size"):
        est = iwae_estimate(model, guide, X, y, num_particles=200, num_repeats=2)
    assert est.ess < 10


def test_effective_sample_size_of_equal_and_degenerate_weights():
    assert effective_sample_size(torch.zeros(50)).item() == pytest.approx(50.0)
    assert effective_sample_size(torch.tensor([0.0, -1e4, -1e4])).item() == pytest.approx(1.0)


# --- enumerated discrete sites are summed out exactly ------------------------------------

DATA = torch.tensor([-2.1, -1.9, -2.3, 1.8, 2.2, 2.0, 1.7])
LOCS = torch.tensor([-2.0, 2.0])


@config_enumerate
def mixture_vindex(x):
    w = pyro.sample("w", dist.Dirichlet(torch.ones(2)))
    locs = pyro.sample("locs", dist.Normal(0.0, 3.0).expand([2]).to_event(1))
    with pyro.plate("n", len(x)):
        z = pyro.sample("z", dist.Categorical(w))
        pyro.sample("x", dist.Normal(Vindex(locs)[..., z], 1.0), obs=x)


@config_enumerate
def mixture_plain_index(x):  # not vectorizable: locs[z] indexes the particle dim
    w = pyro.sample("w", dist.Dirichlet(torch.ones(2)))
    locs = pyro.sample("locs", dist.Normal(0.0, 3.0).expand([2]).to_event(1))
    with pyro.plate("n", len(x)):
        z = pyro.sample("z", dist.Categorical(w))
        pyro.sample("x", dist.Normal(locs[z], 1.0), obs=x)


def mixture_marginal(x):
    w = pyro.sample("w", dist.Dirichlet(torch.ones(2)))
    locs = pyro.sample("locs", dist.Normal(0.0, 3.0).expand([2]).to_event(1))
    with pyro.plate("n", len(x)):
        pyro.sample("x", dist.MixtureSameFamily(dist.Categorical(w), dist.Normal(locs, 1.0)), obs=x)


def point_guide(x):
    pyro.sample("w", dist.Delta(torch.tensor([0.4, 0.6])).to_event(1))
    pyro.sample("locs", dist.Delta(LOCS).to_event(1))


@pytest.mark.parametrize(
    "enum_model", [mixture_vindex, mixture_plain_index], ids=["vindex", "plain"]
)
@pytest.mark.parametrize("vectorize", [True, False], ids=["vectorized", "loop"])
def test_enumerated_mixture_matches_marginal_mixture(enum_model, vectorize):
    expected = log_importance_weights(mixture_marginal, point_guide, DATA, num_particles=4)
    got = log_importance_weights(
        enum_model, point_guide, DATA, num_particles=4, vectorize=vectorize
    )
    manual = (
        dist.Dirichlet(torch.ones(2)).log_prob(torch.tensor([0.4, 0.6]))
        + dist.Normal(0.0, 3.0).log_prob(LOCS).sum()
        + torch.logsumexp(
            torch.tensor([0.4, 0.6]).log() + dist.Normal(LOCS, 1.0).log_prob(DATA[:, None]), -1
        ).sum()
    )
    assert torch.allclose(expected, manual.expand(4), atol=1e-4)
    assert torch.allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_particle_counts_raise(bad):
    with pytest.raises(ValueError, match="num_particles"):
        elbo_estimate(mixture_marginal, point_guide, DATA, num_particles=bad)


def test_guide_outside_support_raises_clear_error():
    def scale_model(x):
        s = pyro.sample("s", dist.LogNormal(0.0, 1.0))
        with pyro.plate("n", len(x)):
            pyro.sample("x", dist.Normal(0.0, s), obs=x)

    def guide(x):
        pyro.sample("s", dist.Delta(torch.tensor(-1.0)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pyro.validation_enabled(False), pytest.raises(ValueError, match="not finite"):
            elbo_estimate(scale_model, guide, DATA, num_particles=4)


# --- models that index a latent with plain [...] are vectorized by vmap ---------------------


def _mixture_guide(model):
    pyro.clear_param_store()
    guide = AutoNormal(pyro.poutine.block(model, hide=["z"]), init_scale=0.3)
    guide(DATA)  # set up; both models have the same sites, so the same parameters
    return guide


def test_plain_indexing_model_is_vectorized_by_vmap_and_matches_vindex():
    guide = _mixture_guide(mixture_vindex)
    assert vectorization_method(mixture_vindex, guide, DATA)[0] == "plate"
    method, reason = vectorization_method(mixture_plain_index, guide, DATA)
    assert method == "vmap" and "broadcast" in reason
    # same seed, same guide draws: the vmap path of locs[z] equals the plate path of Vindex
    with warnings.catch_warnings():
        warnings.simplefilter("error", VectorizationWarning)
        pyro.set_rng_seed(5)
        expected = log_importance_weights(mixture_vindex, guide, DATA, num_particles=64)
        pyro.set_rng_seed(5)
        got = log_importance_weights(mixture_plain_index, guide, DATA, num_particles=64)
    assert expected.std() > 0.1  # the particles differ
    assert torch.allclose(got, expected, atol=1e-4)


@config_enumerate
def one_component_plain_index(x):  # locs[z] with z in {0}: particle 0 alone looks right
    with pyro.plate("components", 1):
        locs = pyro.sample("locs", dist.Normal(0.0, 3.0))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Categorical(torch.ones(1)))
        pyro.sample("x", dist.Normal(locs[z], 1.0), obs=x)


def test_one_component_plain_indexing_is_not_vectorized_by_plate():
    """``locs[z]`` with one component gets particle 0 right and every other particle wrong
    (each gets particle 0's locs): the check must not pass on particle 0 alone."""
    pyro.clear_param_store()
    guide = AutoNormal(pyro.poutine.block(one_component_plain_index, hide=["z"]), init_scale=1.0)
    guide(DATA)
    assert vectorization_method(one_component_plain_index, guide, DATA)[0] == "vmap"


def test_vmap_log_weights_equal_one_by_one_runs():
    guide = _mixture_guide(mixture_plain_index)
    pyro.set_rng_seed(1)
    got = log_importance_weights(mixture_plain_index, guide, DATA, num_particles=200, max_batch=64)
    pyro.set_rng_seed(1)
    loop = log_importance_weights(
        mixture_plain_index, guide, DATA, num_particles=200, vectorize=False
    )
    assert got.shape == (200,)
    assert abs(got.mean() - loop.mean()) < 4 * math.hypot(got.std(), loop.std()) / math.sqrt(200)


def test_unvectorizable_model_warns_once_and_loops():
    def branching(x):  # data-dependent Python control flow: neither plate nor vmap
        loc = pyro.sample("loc", dist.Normal(0.0, 3.0))
        scale = 1.0 if float(loc) > 0 else 2.0
        with pyro.plate("n", len(x)):
            pyro.sample("x", dist.Normal(loc, scale), obs=x)

    guide = AutoNormal(branching)
    with pytest.warns(VectorizationWarning, match="one by one") as record:
        lw = log_importance_weights(branching, guide, DATA, num_particles=20)
    assert len([w for w in record if issubclass(w.category, VectorizationWarning)]) == 1
    assert lw.shape == (20,) and torch.isfinite(lw).all()
    assert vectorization_method(branching, guide, DATA)[0] == "loop"
