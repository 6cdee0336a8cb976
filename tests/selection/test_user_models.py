"""select() on users' own enumerated models: data-aware inits and label-symmetrized evidence."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoNormal
from pyro.infer.autoguide.initialization import init_to_value

from pyrostruct.infer.evidence import log_importance_weights
from pyrostruct.selection import select
from pyrostruct.selection.datasets import (
    TUTORIAL_GMM_DATA,
    mixture_model,
    tutorial_gmm,
    tutorial_gmm_log_evidence,
)
from pyrostruct.selection.select import label_symmetry, mixture_init

TUTORIAL_DATA = TUTORIAL_GMM_DATA
user_gmm = mixture_model


CENTERS = torch.tensor([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])


def blobs(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randint(3, (n,), generator=g)
    return CENTERS[z] + torch.randn(n, 2, generator=g), z


def exact_tutorial_log_evidence(K):
    return tutorial_gmm_log_evidence(K, TUTORIAL_DATA)


def test_exact_evidence_of_one_component_matches_direct_quadrature():
    # K = 1: no assignment to sum; x ~ N(0, s^2 I + 100 11^T) integrated over s directly
    log_s = torch.linspace(-12.0, 8.0, 20001, dtype=torch.float64)
    n = len(TUTORIAL_DATA)
    cov = log_s.exp()[:, None, None] ** 2 * torch.eye(n, dtype=torch.float64) + 100.0
    ll = dist.MultivariateNormal(torch.zeros(n, dtype=torch.float64), cov).log_prob(
        TUTORIAL_DATA.double()
    )
    direct = torch.logsumexp(ll + dist.Normal(0.0, 2.0).log_prob(log_s), 0) + math.log(1e-3)
    assert exact_tutorial_log_evidence(1) == pytest.approx(float(direct), abs=1e-4)


# --- data-aware initialization --------------------------------------------------------------


def test_mixture_init_puts_locations_on_the_clusters():
    x, z = blobs()
    init = mixture_init(user_gmm(3), x)
    assert init is not None
    values = init((x,), {}, np.random.default_rng(0))
    assert set(values) == {"weights", "locs", "scales"}
    assert values["locs"].shape == (3, 2) and values["scales"].shape == (3, 2)
    assert torch.cdist(CENTERS, values["locs"]).min(1).values.max() < 0.5
    assert (values["scales"] > 0.5).all() and (values["scales"] < 2.0).all()
    assert values["weights"].sum() == pytest.approx(1.0)
    # another seed, another seeding of the same clusters
    other = init((x,), {}, np.random.default_rng(1))["locs"]
    assert torch.cdist(CENTERS, other).min(1).values.max() < 0.5


def test_mixture_init_on_the_tutorial_model_and_not_on_others():
    values = mixture_init(tutorial_gmm(2), TUTORIAL_DATA)(
        (TUTORIAL_DATA,), {}, np.random.default_rng(0)
    )
    assert sorted(values["locs"].tolist()) == pytest.approx([0.5, 11.0])
    assert 0.3 < float(values["scale"]) < 1.5  # pooled within-cluster sd, not the data's (5.2)

    def no_discrete(data):
        loc = pyro.sample("loc", dist.Normal(0.0, 10.0))
        with pyro.plate("data", len(data)):
            pyro.sample("obs", dist.Normal(loc, 1.0), obs=data)

    assert mixture_init(no_discrete, TUTORIAL_DATA) is None


# --- label symmetry ---------------------------------------------------------------------------


def _guide_at(model, locs, init_scale=0.02):
    pyro.clear_param_store()
    guide = AutoNormal(
        pyro.poutine.block(model, hide=["assignment"]),
        init_loc_fn=init_to_value(values={"locs": locs, "weights": torch.tensor([0.4, 0.6])}),
        init_scale=init_scale,
    )
    guide(TUTORIAL_DATA)
    return guide


def test_label_symmetry_of_separated_modes_is_log_two():
    model = tutorial_gmm(2)
    guide = _guide_at(model, torch.tensor([0.5, 11.0]))
    correction = label_symmetry(model, guide, (TUTORIAL_DATA,), {}, 1)
    assert correction is not None
    pyro.set_rng_seed(0)
    plain = log_importance_weights(model, guide, TUTORIAL_DATA, num_particles=50)
    pyro.set_rng_seed(0)
    symmetric = log_importance_weights(
        model, guide, TUTORIAL_DATA, num_particles=50, guide_correction=correction
    )
    assert torch.allclose(symmetric - plain, torch.full((50,), math.log(2.0)), atol=1e-3)


def test_label_symmetry_of_overlapping_modes_is_smaller():
    model = tutorial_gmm(2)
    guide = _guide_at(model, torch.tensor([5.0, 5.0]), init_scale=1.0)  # components alike
    correction = label_symmetry(model, guide, (TUTORIAL_DATA,), {}, 1)
    pyro.set_rng_seed(0)
    plain = log_importance_weights(model, guide, TUTORIAL_DATA, num_particles=50)
    pyro.set_rng_seed(0)
    symmetric = log_importance_weights(
        model, guide, TUTORIAL_DATA, num_particles=50, guide_correction=correction
    )
    gain = symmetric - plain  # log q(z) - log q_sym(z) <= log 2, as q_sym >= q / 2
    assert (gain <= math.log(2.0) + 1e-5).all() and (gain < math.log(2.0) - 0.05).all()


def test_no_label_symmetry_without_exchangeable_components():
    model = tutorial_gmm(2, loc_prior=torch.tensor([0.0, 10.0]))  # the labels mean something
    guide = _guide_at(model, torch.tensor([0.5, 11.0]))
    assert label_symmetry(model, guide, (TUTORIAL_DATA,), {}, 1) is None


# --- acceptance: select on the GMM tutorial's data ---------------------------------------------


@pytest.mark.slow
def test_select_on_the_tutorial_gmm_matches_the_exact_posterior_over_k():
    exact = np.array([exact_tutorial_log_evidence(K) for K in range(1, 5)])
    exact_probs = np.exp(exact - np.logaddexp.reduce(exact))
    # defaults: the bounds of the mean-field guides fall 0.2-1.2 nats short on these 5
    # points (several clusterings, label switching); the guide-free SMC estimate does not
    result = select({K: tutorial_gmm(K) for K in range(1, 5)}, TUTORIAL_DATA, seed=0)
    probs = result.posterior_probs.to_numpy()
    assert np.abs(probs - exact_probs).max() < 0.1, (probs, exact_probs)
    assert int(np.argmin(probs)) == 0  # K = 1 ranked last
    assert all(result.data_init.values())
    assert result.symmetrized == {1: False, 2: True, 3: True, 4: True}
    assert all(result.vectorized_restarts.values())
    assert result.evidence_method == "smc"
    error = np.abs(result.table.smc.to_numpy() - exact)
    assert (error < 0.15).all(), (result.table.smc, exact)


# --- the restarts' guides as one mixture proposal --------------------------------------------


def _folded(y):  # y_i ~ N(|mu|, 1): the posterior of mu has two mirror modes
    mu = pyro.sample("mu", dist.Normal(0.0, 3.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(mu.abs(), 1.0), obs=y)


def _folded_exact(y):
    mu = torch.linspace(-15.0, 15.0, 60001, dtype=torch.float64)
    ll = dist.Normal(mu.abs()[:, None], 1.0).log_prob(y.double()).sum(-1)
    joint = ll + dist.Normal(0.0, 3.0).log_prob(mu)
    return float(torch.logsumexp(joint, 0) + math.log(float(mu[1] - mu[0])))


def test_mixture_of_restarts_covers_both_modes():
    from pyrostruct.selection.candidates import _Context
    from pyrostruct.selection.evidence import _mixture_iwae

    y = 2.0 + torch.randn(20, generator=torch.Generator().manual_seed(0))
    store = pyro.get_param_store()
    restarts = []
    for mode in [2.0, -2.0]:
        with store.scope():
            guide = AutoNormal(
                _folded, init_loc_fn=init_to_value(values={"mu": torch.tensor(mode)}),
                init_scale=1 / math.sqrt(20),
            )  # fmt: skip
            guide(y)
            restarts.append((guide, store.get_state(), -40.0))
    ctx = _Context([], (y,), {}, 1, 0.1, 0, 10, 500, 10, 10)
    exact = _folded_exact(y)
    pyro.set_rng_seed(0)
    one = _mixture_iwae(ctx, _folded, restarts[:1], None, 1)
    pyro.set_rng_seed(0)
    both = _mixture_iwae(ctx, _folded, restarts, None, 1)
    assert one["iwae_restarts"] == 1 and both["iwae_restarts"] == 2
    assert one["iwae"] == pytest.approx(exact - math.log(2.0), abs=0.1)  # one mode of two
    assert both["iwae"] == pytest.approx(exact, abs=0.1)
    assert both["iwae"] - one["iwae"] > 0.5


# --- restarts of locs[z] models run vectorized (vmap) ------------------------------------------


def test_user_gmm_restarts_are_vectorized_and_pick_the_right_k():
    x, _ = blobs(n=150, seed=1)
    r = select(
        {K: user_gmm(K) for K in [1, 2, 3, 4]}, x, steps=200, num_restarts=2, halving=None,
        elbo_particles=100, iwae_particles=20, iwae_repeats=4,
    )  # fmt: skip
    assert r.vectorized_restarts == {1: True, 2: True, 3: True, 4: True}
    assert r.not_vectorized == {}
    assert r.data_init == {1: True, 2: True, 3: True, 4: True}
    assert r.best == 3
    locs = r.posterior(3).median()["locs"]
    assert torch.cdist(CENTERS, locs).min(1).values.max() < 0.5
    # each restart started from its own k-means++ seeding and reports its own ELBO
    assert all(len(set(v)) == 2 for v in r.restart_elbos.values())


def test_hmm_data_and_state_accuracy():
    from pyrostruct.selection.datasets import make_hmm_data, state_accuracy

    sequences, lengths, states = make_hmm_data(num_sequences=4, max_length=6, seed=1)
    assert sequences.shape == (4, 6, 6) and states.shape == (4, 6)
    assert ((lengths >= 3) & (lengths <= 6)).all()
    relabelled = (states + 1) % 3  # the labels are arbitrary: still all right
    assert state_accuracy(relabelled, states, lengths) == 1.0
    wrong = states.clone()
    wrong[0, 0] = (states[0, 0] + 1) % 3
    assert state_accuracy(wrong, states, lengths) == pytest.approx(1 - 1 / lengths.sum().item())
    a, b, c = make_hmm_data(num_sequences=4, max_length=6, seed=1)
    assert torch.equal(a, sequences) and torch.equal(c, states)
