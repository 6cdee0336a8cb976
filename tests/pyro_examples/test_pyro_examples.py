"""Acceptance on Pyro's own examples (issue 16, item 5, fit side).

The models are copied unchanged from Pyro (``gmm_tutorial.py``: the Gaussian
mixture of the GMM tutorial; ``hmm.py``: ``model_0``..``model_2`` of
``examples/hmm.py``) and fitted *as written* with ``pyrostruct.fit(model,
data)``, next to Pyro's recommended recipe written out here with the same step
count and learning rate: ``AutoNormal`` (for an ELBO comparable with fit's) or
``AutoDelta`` (the MAP Baum-Welch of ``examples/hmm.py``) on
``poutine.block(model, expose=...)``, trained by ``TraceEnum_ELBO``. Both ELBOs
are measured by the same many-particle ``TraceEnum_ELBO`` estimate; hidden
states are decoded by ``infer_discrete`` (``FitResult.infer_discrete`` for fit)
and scored up to a relabelling of the states.

The default tests run at smoke size (a few seconds each); the ``slow`` ones run
the full acceptance criteria (ELBO within 0.5 nats of Pyro's AutoNormal recipe,
state accuracy at least that of ``examples/hmm.py``'s AutoDelta recipe and within
decoding noise of the AutoNormal one). Measured (600 steps, lr 0.05, CPU):
model_1 ELBO -316.48 (fit) vs -316.21 (Pyro AutoNormal), accuracy 0.986 vs 0.979
(AutoNormal) and 0.404 (AutoDelta); model_2 ELBO -340.69 vs -340.78, accuracy
0.972 vs 0.986 and 0.908. GMM tutorial (500 steps, lr 0.1): ELBO -19.905 for both
(fit runs the same computation as Pyro's AutoNormal + TraceEnum_ELBO); both
collapse the two clusters (exact log evidence -17.13), see the xfail below.
"""

import argparse
import importlib.util
import itertools
import math
from pathlib import Path

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, TraceEnum_ELBO, infer_discrete
from pyro.infer.autoguide import AutoDelta, AutoNormal
from pyro.optim import Adam

import pyrostruct
from pyrostruct.selection.datasets import make_hmm_data, state_accuracy

HERE = Path(__file__).resolve().parent


def _load(name):
    spec = importlib.util.spec_from_file_location(f"pyro_examples_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gmm = _load("gmm_tutorial")
hmm = _load("hmm")


def _elbo(model, guide, *args, max_plate_nesting, num_particles=200):
    """The ELBO, one estimate with many particles (enumerated sites summed out exactly)."""
    pyro.set_rng_seed(123)
    with torch.no_grad():
        return -TraceEnum_ELBO(
            max_plate_nesting=max_plate_nesting, num_particles=num_particles
        ).loss(model, guide, *args)


def _pyro_recipe(model, guide_class, expose_fn, args, *, steps, lr, max_plate_nesting, seed=0):
    """Pyro's way: an autoguide on the exposed globals, TraceEnum_ELBO, Adam."""
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    guide = guide_class(poutine.block(model, expose_fn=expose_fn))
    svi = SVI(model, guide, Adam({"lr": lr}), TraceEnum_ELBO(max_plate_nesting=max_plate_nesting))
    for _ in range(steps):
        svi.step(*args)
    return guide


# ---------------------------------------------------------------------------
# GMM tutorial: data [0, 1, 10, 11, 12], K = 2


def gmm_exact_log_evidence(data, grid=4001):
    """log p(data) of the GMM tutorial's model (K = 2), exactly up to 1-d quadrature.

    Given the assignments z, the component means integrate out in closed form
    (cluster k's points are N(0, s^2 I + 10^2 11^T)) and the Dirichlet(1/2, 1/2)
    weights give B(n_0 + 1/2, n_1 + 1/2) / B(1/2, 1/2); the 2^5 assignments are
    summed and log s ~ N(0, 2^2) integrated on a grid.
    """
    data = data.double()
    u = torch.linspace(-8.0, 6.0, grid, dtype=torch.float64)
    s2 = (2 * u).exp()
    tau2 = 100.0

    def cluster(xs):
        n = len(xs)
        if n == 0:
            return torch.zeros_like(s2)
        v = s2 + n * tau2
        quad = (xs.pow(2).sum() - tau2 * xs.sum() ** 2 / v) / s2
        logdet = (n - 1) * s2.log() + v.log()
        return -0.5 * (quad + logdet + n * math.log(2 * math.pi))

    half = torch.tensor(0.5, dtype=torch.float64)
    log_beta = lambda a, b: torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)  # noqa: E731
    terms = []
    for z in itertools.product([0, 1], repeat=len(data)):
        z = torch.tensor(z, dtype=torch.bool)
        n1 = z.sum().double()
        log_w = log_beta(len(data) - n1 + half, n1 + half) - log_beta(half, half)
        terms.append(log_w + cluster(data[~z]) + cluster(data[z]))
    log_prior = torch.distributions.Normal(0.0, 2.0).log_prob(u)
    integrand = torch.logsumexp(torch.stack(terms), 0) + log_prior
    return (torch.logsumexp(integrand, 0) + math.log(u[1] - u[0])).item()


def test_gmm_exact_log_evidence_matches_a_brute_force_monte_carlo():
    exact = gmm_exact_log_evidence(gmm.data)
    assert exact == pytest.approx(-17.1255, abs=1e-3)
    # prior Monte Carlo over the globals, assignments summed: a consistency check
    g = torch.Generator().manual_seed(0)
    n = 200_000
    w1 = torch.distributions.Beta(0.5, 0.5).sample((n,))
    scale = (2.0 * torch.randn(n, generator=g)).exp()
    locs = 10.0 * torch.randn(n, 2, generator=g)
    comp = torch.distributions.Normal(locs[:, None, :], scale[:, None, None]).log_prob(
        gmm.data[None, :, None]
    )
    log_w = torch.stack([(1 - w1).log(), w1.log()], -1)[:, None, :]
    log_lik = torch.logsumexp(comp + log_w, -1).sum(-1)
    mc = (torch.logsumexp(log_lik.double(), 0) - math.log(n)).item()
    assert mc == pytest.approx(exact, abs=0.3)


def _gmm_locs_error(locs):
    """Mean absolute error of the sorted component means against the two clusters' means."""
    return (locs.sort().values - torch.tensor([0.5, 11.0])).abs().mean().item()


def _gmm_pyro(steps, lr, seed=0):
    guide = _pyro_recipe(
        gmm.model,
        AutoNormal,
        lambda msg: msg["name"] in ("weights", "scale", "locs"),
        (gmm.data,),
        steps=steps,
        lr=lr,
        max_plate_nesting=1,
        seed=seed,
    )
    elbo = _elbo(gmm.model, guide, gmm.data, max_plate_nesting=1)
    return elbo, _gmm_locs_error(guide.median(gmm.data)["locs"])


def _gmm_fit(steps, lr, seed=0):
    result = pyrostruct.fit(gmm.model, gmm.data, steps=steps, lr=lr, seed=seed)
    elbo = _elbo(result.model, result.guide, gmm.data, max_plate_nesting=1)
    return result, elbo, _gmm_locs_error(result.guide.median(gmm.data)["locs"])


def test_gmm_tutorial_fits_as_written_by_enumeration():
    result, elbo, error = _gmm_fit(steps=100, lr=0.1)
    assert result.discrete_policy == {"assignment": "enumerate"}
    assert isinstance(result.elbo, TraceEnum_ELBO) and result.max_plate_nesting == 1
    assert set(result.guide.site_parts) == {"weights", "scale", "locs"}
    # an ELBO cannot exceed the exact log evidence, -17.13
    assert -25.0 < elbo < gmm_exact_log_evidence(gmm.data)
    assignment = result.infer_discrete()["assignment"]
    assert assignment.shape == (5,) and assignment.dtype == torch.long
    assert error < 1.0  # started from the data (mixture_init): both clusters found
    a = assignment.tolist()  # data [0, 1, 10, 11, 12]: two clusters, either labelling
    assert a[0] == a[1] and a[2] == a[3] == a[4] and a[0] != a[2]


@pytest.mark.slow
def test_gmm_tutorial_elbo_and_means_match_pyro_autonormal():
    steps, lr = 500, 0.1
    pyro_elbo, pyro_error = _gmm_pyro(steps, lr)
    _, fit_elbo, fit_error = _gmm_fit(steps, lr)
    print(
        f"GMM ELBO fit {fit_elbo:.3f} Pyro {pyro_elbo:.3f}; locs error {fit_error:.2f} {pyro_error:.2f}"
    )
    assert fit_elbo > pyro_elbo - 0.5
    assert fit_error <= pyro_error + 0.5


@pytest.mark.slow
def test_gmm_tutorial_fit_finds_both_clusters():
    """Issue 16, item 4: from the default start (Pyro's AutoNormal too) the fit merges the
    two clusters; fit starts mixture-like models at k-means++ centres (mixture_init)."""
    _, elbo, error = _gmm_fit(steps=500, lr=0.1)
    assert error < 1.0 and elbo > -18.5


# ---------------------------------------------------------------------------
# HMM of examples/hmm.py on sequences from a known 3-state HMM


def _stack_states(values, num_sequences):
    return torch.stack([values[f"x_{t}"].reshape(num_sequences) for t in range(len(values))], 1)


def _decode_pyro(model, guide, sequences, lengths, args):
    """MAP states given the guide's median globals (the tutorial's classifier)."""
    fixed = poutine.condition(model, data=guide.median(sequences, lengths, args))
    inferred = infer_discrete(fixed, temperature=0, first_available_dim=-3)
    trace = poutine.trace(inferred).get_trace(sequences, lengths, args)
    values = {name: site["value"] for name, site in trace.nodes.items() if name.startswith("x_")}
    return _stack_states(values, len(sequences))


def _hmm_compare(model, steps, lr=0.05):
    sequences, lengths, states = make_hmm_data()
    args = argparse.Namespace(hidden_dim=3, jit=False)
    data = (sequences, lengths, args)
    result = pyrostruct.fit(model, *data, steps=steps, lr=lr)
    fit_elbo = _elbo(result.model, result.guide, *data, max_plate_nesting=2)
    fit_acc = state_accuracy(_stack_states(result.infer_discrete(), len(sequences)), states, lengths)
    probs = lambda msg: msg["name"].startswith("probs_")  # noqa: E731 (as in examples/hmm.py)
    pyro_accs = {}
    for guide_class in (AutoNormal, AutoDelta):
        guide = _pyro_recipe(
            model, guide_class, probs, data, steps=steps, lr=lr, max_plate_nesting=2
        )
        pyro_accs[guide_class.__name__] = state_accuracy(
            _decode_pyro(model, guide, *data), states, lengths
        )
        if guide_class is AutoNormal:
            pyro_elbo = _elbo(model, guide, *data, max_plate_nesting=2)
    return result, fit_elbo, fit_acc, pyro_elbo, pyro_accs


@pytest.mark.parametrize("name", ["model_1", "model_2"])
def test_hmm_example_fits_as_written_by_enumeration(name):
    sequences, lengths, states = make_hmm_data()
    args = argparse.Namespace(hidden_dim=3, jit=False)
    # 300 steps: at 150, model_2 decoded 0.77 of the states on the lowest supported
    # versions (torch 2.2, pyro-ppl 1.9.0; `make test-min`) and 0.95 on current ones
    result = pyrostruct.fit(getattr(hmm, name), sequences, lengths, args, steps=300, lr=0.05)
    assert result.max_plate_nesting == 2
    assert set(result.discrete_policy) == {f"x_{t}" for t in range(int(lengths.max()))}
    assert set(result.discrete_policy.values()) == {"enumerate"}
    assert set(result.guide.site_parts) == {"probs_x", "probs_y"}
    decoded = _stack_states(result.infer_discrete(), len(sequences))
    assert state_accuracy(decoded, states, lengths) > 0.9


def test_hmm_model_0_sequential_sequences_plate():
    sequences, lengths, states = make_hmm_data(num_sequences=3, max_length=4)
    args = argparse.Namespace(hidden_dim=3, jit=False)
    result = pyrostruct.fit(hmm.model_0, sequences, lengths, args, steps=3)
    assert result.max_plate_nesting == 1  # the sequences plate is a Python loop
    assert len(result.infer_discrete()) == int(lengths.sum())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["model_1", "model_2"])
def test_hmm_example_elbo_and_accuracy_match_pyro(name):
    _, fit_elbo, fit_acc, pyro_elbo, pyro_accs = _hmm_compare(getattr(hmm, name), steps=600)
    print(
        f"HMM {name}: ELBO fit {fit_elbo:.2f} Pyro AutoNormal {pyro_elbo:.2f}; "
        f"accuracy fit {fit_acc:.3f} Pyro {pyro_accs}"
    )
    assert fit_elbo > pyro_elbo - 0.5
    # examples/hmm.py's own recipe is AutoDelta (MAP Baum-Welch): at least its accuracy
    assert fit_acc >= pyro_accs["AutoDelta"]
    # AutoNormal reaches the same ELBO; MAP decodes from two such fits differ by a
    # few of the 141 time steps (measured: 0.986 vs 0.979 on model_1, 0.972 vs 0.986
    # on model_2), so the match with it is within that noise
    assert fit_acc >= pyro_accs["AutoNormal"] - 0.03
