"""Issue 22: DAG posteriors right by default. Exact posteriors by enumeration of every DAG
(models/dag_posterior.py) against ``fit``'s defaults; importance-weighted edge marginals;
the BGe likelihood."""

import math
import warnings

import networkx as nx
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyrostruct.causal.equivalence import sample_equivalent_dags
from pyrostruct.distributions import ErdosRenyiDAG, get_order
from pyrostruct.distributions._dag_ops import attach_order
from pyrostruct.errors import InputError
from pyrostruct.infer import TraceRWS_ELBO, fit, importance_edge_probs
from pyrostruct.infer.autoguide import AutoDAG
from pyrostruct.infer.bge import BGeScore
from pyrostruct.infer.dag_marginals import psis_weights, union_edge_probs
from pyrostruct.infer.engine import param_scope
from pyrostruct.infer.evidence import LowESSWarning
from pyrostruct.selection.structures import dag_log_evidence
from tests.reference_models import load_model

ref = load_model("dag_posterior")


def test_the_reference_likelihoods_are_exact():
    torch.manual_seed(0)
    x = torch.randn(9, 3, dtype=torch.float64)
    features = torch.tanh(x)
    adj = torch.tensor([[0, 1, 1], [0, 0, 1], [0, 0, 0]], dtype=torch.float64)
    expected = sum(
        dist.MultivariateNormal(
            torch.zeros(9, dtype=torch.float64),
            torch.eye(9, dtype=torch.float64) + features @ torch.diag(adj[:, j]) @ features.T,
        ).log_prob(x[:, j])
        for j in range(3)
    )
    got = ref.gaussian_columns_log_lik(features, x, adj)
    assert got.item() == pytest.approx(expected.item(), abs=1e-9)
    problem = ref.make_problem("logistic", 3, 20, seed=1)
    signs = 2 * problem.data - 1
    by_hand = sum(
        dist.Bernoulli(logits=ref.LOGISTIC_WEIGHT * signs @ adj[:, j])
        .log_prob(problem.data[:, j])
        .sum()
        for j in range(3)
    )
    assert problem.log_likelihood(adj).item() == pytest.approx(by_hand.item(), abs=1e-9)


# ---------------------------------------------------------------------------
# fit's defaults against the exact posterior


@pytest.mark.parametrize("family", ["linear-gaussian", "logistic"])
@pytest.mark.parametrize("d, seed", [(3, 0), (3, 1), (4, 0), (4, 3)])
def test_default_fit_edge_marginals_are_within_005_of_exact(family, d, seed):
    problem = ref.make_problem(family, d, 100, seed=seed)
    exact = ref.exact_edge_marginals(problem)
    result = fit(problem.model, problem.data, seed=seed)
    assert isinstance(result.elbo, TraceRWS_ELBO)
    marginals = result.edge_probs("G")
    assert marginals.method == "importance-union"  # always, for a DAG-only model
    error = (marginals.mean - exact).abs().max().item()
    assert error < 0.05, (family, d, seed, error, marginals.ess)
    assert marginals.ess > 100


def test_with_mean_field_latent_weights_fit_falls_back_to_the_guide(monkeypatch):
    """Latent weights W guided by AutoNormal beside the DAG (not declared its edge
    weights): when the importance weights are unreliable (Pareto k above the threshold:
    0.74-0.93 for this fit with torch 2.13, below 0.7 with torch 2.2, so the threshold is
    lowered here to make the case the same on every build) the guide's own marginals come
    back, with a warning."""
    from pyrostruct.infer import dag_marginals

    problem = ref.make_problem("nonlinear", 4, 100, seed=0, edge_weights=False)
    exact = ref.exact_edge_marginals(problem)
    result = fit(problem.model, problem.data, seed=0)
    assert result.guide.site_parts == {"G": "dag", "W": "continuous"}
    assert result.elbo.vectorize_particles  # the reference model broadcasts over particles
    monkeypatch.setattr(dag_marginals, "KHAT_THRESHOLD", 0.3)
    pyro.set_rng_seed(1)
    with pytest.warns(LowESSWarning, match="returning the guide's own marginals"):
        marginals = result.edge_probs("G")
    assert marginals.method == "guide" and marginals.khat > 0.3
    assert (marginals.mean - exact).abs().max().item() < 0.1


# ---------------------------------------------------------------------------
# importance-weighted edge marginals


def test_importance_weights_correct_an_untrained_guide():
    problem = ref.make_problem("linear-gaussian", 3, 60, seed=2)
    exact = ref.exact_edge_marginals(problem)
    pyro.set_rng_seed(0)
    guide = AutoDAG(problem.model, init_edge_prob=0.5)
    guide(problem.data)
    plain = guide.edge_probs(num_samples=4000).mean.double()
    assert (plain - exact).abs().max() > 0.2  # the untrained guide is far off
    weighted = importance_edge_probs(
        problem.model, guide, problem.data, site="G", num_samples=20_000
    )
    assert weighted.mean.shape == weighted.stderr.shape == (3, 3)
    assert ((weighted.mean - exact).abs() <= 5 * weighted.stderr + 0.01).all()
    assert 50 < weighted.ess < 20_000 and weighted.khat < 0.7


def test_tied_largest_weights_are_not_smoothed_into_nan():
    """arviz's Pareto fit gives NaN weights with a finite k (or an infinite k) when the
    largest weights tie, as they do for a guide concentrated on a few DAGs (a guide
    trained by TraceRLOO_ELBO on the logistic family gave 35 distinct weights)."""
    for distinct in (35, 10):
        log_w = torch.linspace(-133.0, -121.45, distinct).repeat_interleave(4000 // distinct)
        w, ess, khat = psis_weights(log_w)
        assert torch.isfinite(w).all() and w.sum().item() == pytest.approx(1.0)
        assert khat == 0.0 and ess > 400  # the raw weights, trusted by their ESS
    w, ess, khat = psis_weights(torch.tensor([0.0] * 10 + [50.0]))  # one draw dominates
    assert khat == math.inf and ess < 1.01


def test_draws_of_zero_weight_count_for_nothing():
    """A model that forbids an edge (log-density -inf) gives some draws zero weight."""

    def model():
        G = pyro.sample("G", ErdosRenyiDAG(3, expected_edges=1.5))
        pyro.factor("no_0_to_1", torch.where(G[..., 0, 1] > 0, -math.inf, 0.0))

    pyro.set_rng_seed(0)
    guide = AutoDAG(model, init_edge_prob=0.5)
    guide()
    out = importance_edge_probs(model, guide, site="G", num_samples=2000)
    assert torch.isfinite(out.mean).all() and out.mean[0, 1] == 0
    assert out.mean[1, 0] > 0.1  # the other edges keep their mass


def test_a_guide_that_misses_the_posterior_warns_with_its_ess():
    problem = ref.make_problem("linear-gaussian", 3, 200, seed=0)
    pyro.set_rng_seed(0)
    guide = AutoDAG(problem.model, num_components=1, init_edge_prob=0.001)
    guide(problem.data)
    with pytest.warns(LowESSWarning, match="Pareto k"):
        out = importance_edge_probs(problem.model, guide, problem.data, site="G", num_samples=500)
    assert out.ess < 5 and out.khat > 0.7
    with pytest.raises(ValueError, match="no latent site 'H'"):
        importance_edge_probs(problem.model, guide, problem.data, site="H", num_samples=10)
    with pytest.raises(ValueError, match="num_samples must be an integer >= 2"):
        importance_edge_probs(problem.model, guide, problem.data, site="G", num_samples=1)


def test_fit_result_edge_probs_names_the_dag_sites():
    def model():
        pyro.sample("A", ErdosRenyiDAG(3, expected_edges=1.0))
        pyro.sample("B", ErdosRenyiDAG(3, expected_edges=1.0))

    result = fit(model, steps=2)
    with pytest.raises(InputError, match=r"DAG sites \['A', 'B'\]; pass name="):
        result.edge_probs()
    with pytest.raises(InputError, match="no DAG site named 'C'"):
        result.edge_probs("C")
    assert result.edge_probs("A", num_samples=50).mean.shape == (3, 3)


# ---------------------------------------------------------------------------
# the BGe likelihood


def test_bge_score_matches_dag_log_evidence_and_is_score_equivalent():
    torch.manual_seed(0)
    x = torch.randn(40, 4, dtype=torch.float64)
    x[:, 2] += x[:, 0] - x[:, 1]
    x[:, 3] += 0.8 * x[:, 2]
    x = (x - x.mean(0)) / x.std(0)
    score = BGeScore(x)
    chain = torch.tensor(
        [[0, 0, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1], [0, 0, 0, 0]], dtype=torch.float64
    )  # 2 -> 0, 1 -> 2, 2 -> 3
    assert score(chain).item() == pytest.approx(
        dag_log_evidence(x.numpy(), nx.DiGraph(chain.numpy())), abs=1e-9
    )
    members = torch.as_tensor(sample_equivalent_dags(chain.expand(20, 4, 4).numpy(), 0))
    assert len({tuple(m.flatten().tolist()) for m in members}) > 1
    values = score(members)
    assert values.shape == (20,) and torch.allclose(values, values[0].expand(20))
    batch = torch.stack([chain, torch.zeros(4, 4, dtype=torch.float64)]).reshape(2, 1, 4, 4)
    assert score(batch).shape == (2, 1)
    many = ErdosRenyiDAG(4, expected_edges=3.0).sample((50,))  # one lookup for the batch
    one_by_one = torch.stack([BGeScore(x)(g) for g in many])
    assert torch.allclose(score(many), one_by_one, rtol=0, atol=1e-9)
    with pytest.raises(InputError, match="expected adjacency matrices"):
        score(torch.zeros(3, 3))
    with pytest.raises(InputError, match="NaN or infinite"):
        BGeScore(torch.tensor([[math.nan, 1.0], [0.0, 1.0]]))
    with pytest.raises(InputError, match=r"\(n, d\) data matrix"):
        BGeScore(torch.zeros(5))


# ---------------------------------------------------------------------------
# the union proposal: importance weights against the mixture of several guides


def _untrained_guides(model, data, settings):
    """AutoDAG guides, each set up in a parameter store of its own: (guides, states)."""
    guides, states = [], []
    for i, options in enumerate(settings):
        with param_scope() as store:
            pyro.set_rng_seed(i)
            guide = AutoDAG(model, **options)
            guide(data)
            guides.append(guide)
            states.append(store.get_state())
    return guides, states


@pytest.mark.parametrize("marginalize_orders", [False, True], ids=["joint", "marginal"])
def test_union_weights_are_exact_in_expectation_for_bad_guides(marginalize_orders):
    """Three deliberately different, untrained guides: their union's weighted marginals
    converge to the exact posterior (a guide's density of another guide's draw was
    computed without the draw, from a fresh sample, before this test)."""
    problem = ref.make_problem("linear-gaussian", 3, 60, seed=5)
    exact = ref.exact_edge_marginals(problem)
    guides, states = _untrained_guides(problem.model, problem.data, [
        {"num_components": 1, "init_orders": {"G": [0, 1, 2]}, "init_edge_prob": 0.2},
        {"init_orders": {"G": [2, 0, 1]}, "init_edge_prob": 0.8},
        {"init_scale": 2.0, "init_edge_prob": 0.5},
    ])  # fmt: skip
    pyro.set_rng_seed(0)
    out = union_edge_probs(
        problem.model, guides, problem.data, site="G", param_states=states,
        num_samples=20_000, marginalize_orders=marginalize_orders,
    )  # fmt: skip
    assert out.method == "importance-union"
    assert out.mean.shape == out.stderr.shape == (3, 3)
    assert ((out.mean - exact).abs() <= 5 * out.stderr + 0.01).all(), (out.mean, exact)
    assert 100 < out.ess < 20_000


def test_the_union_recovers_a_mode_that_one_guide_misses(monkeypatch):
    """The posterior puts half its mass on 0 -> 1 and half on 1 -> 0 (Markov-equivalent
    DAGs, a score-equivalent likelihood); a guide concentrated on the order 0, 1, 2
    cannot draw 1 -> 0, one on 2, 1, 0 cannot draw 0 -> 1. Without the enumerated
    neighbourhood of the drawn DAGs the union is needed; with it (the default) the
    missed mode, one reversal away, is found from either guide alone."""
    from pyrostruct.infer import distinct_dags

    problem = ref.make_problem("linear-gaussian", 3, 200, seed=1)
    exact = ref.exact_edge_marginals(problem)
    assert 0.4 < exact[0, 1] < 0.6 and 0.4 < exact[1, 0] < 0.6
    common = {"num_components": 1, "order_spacing": 6.0, "init_edge_prob": 0.5}
    guides, states = _untrained_guides(problem.model, problem.data, [
        {"init_orders": {"G": [0, 1, 2]}, **common},
        {"init_orders": {"G": [2, 1, 0]}, **common},
    ])  # fmt: skip

    def alone():
        pyro.set_rng_seed(1)
        with param_scope(states[0]), warnings.catch_warnings():
            warnings.simplefilter("ignore", LowESSWarning)
            return importance_edge_probs(problem.model, guides[0], problem.data, site="G")

    assert (alone().mean - exact).abs().max() < 0.05  # found by the neighbourhood
    monkeypatch.setattr(distinct_dags, "MAX_SEEDS", 0)  # no neighbourhood
    assert (alone().mean - exact).abs().max() > 0.3  # the missed mode
    union = union_edge_probs(problem.model, guides, problem.data, site="G", param_states=states)
    assert (union.mean - exact).abs().max() < 0.05, (union.mean, exact)
    assert union.ess > 200


def test_union_edge_probs_rejects_bad_input():
    problem = ref.make_problem("linear-gaussian", 3, 30, seed=0)
    guides, states = _untrained_guides(problem.model, problem.data, [{}, {}])
    call = lambda **kw: union_edge_probs(  # noqa: E731
        problem.model, kw.pop("guides", guides), problem.data,
        **{"site": "G", "param_states": states, "num_samples": 50, **kw},
    )  # fmt: skip
    with pytest.raises(ValueError, match="at least one guide"):
        call(guides=[])
    with pytest.raises(ValueError, match="one state per guide: 1 for 2 guides"):
        call(param_states=states[:1])
    with pytest.raises(ValueError, match="num_samples must be an integer >= max"):
        call(num_samples=1)
    with pytest.raises(ValueError, match="mixture_weights must be 2 finite non-negative"):
        call(mixture_weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="no latent site 'H'"):
        call(site="H")
    assert call(mixture_weights=[3.0, 1.0]).mean.shape == (3, 3)


@pytest.mark.parametrize("edge_weights", [True, False], ids=["edge-weight guide", "AutoNormal"])
def test_a_guides_density_of_another_guides_draws(edge_weights):
    """With continuous latents next to the DAG (W), every guide's whole density is
    evaluated at another guide's draws in one vectorized replay: it equals the draws
    replayed one by one (orders kept: the joint density of (order, A, W))."""
    from pyrostruct.infer.dag_marginals import _guide_log_density
    from pyrostruct.infer.importance import log_importance_weights

    problem = ref.make_problem("nonlinear", 3, 20, seed=0, edge_weights=edge_weights)
    results = [fit(problem.model, problem.data, steps=3, seed=s) for s in (0, 1)]
    guides = [r.guide for r in results]
    states = [r.restart_states[0] for r in results]
    with param_scope(states[0]):
        _, draws = log_importance_weights(
            problem.model, guides[0], problem.data, num_particles=5, return_draws=True
        )
    assert get_order(draws["G"]) is not None  # the draws keep their orders
    with param_scope(states[1]):
        batched = _guide_log_density(guides[1], draws, (problem.data,), {})
        for s in range(5):
            value = {name: v[s] for name, v in draws.items()}
            value["G"] = attach_order(value["G"], get_order(draws["G"])[s])
            replay = poutine.trace(poutine.condition(guides[1], data=value))
            trace = replay.get_trace(problem.data)
            assert batched[s].item() == pytest.approx(trace.log_prob_sum().item(), abs=1e-4)


def test_fit_with_restarts_pools_them_in_edge_probs():
    problem = ref.make_problem("linear-gaussian", 3, 60, seed=0)
    exact = ref.exact_edge_marginals(problem)
    result = fit(problem.model, problem.data, steps=200, num_restarts=2, seed=0)
    assert len(result.restart_guides) == len(result.restart_states) == 2
    pooled = result.edge_probs()
    assert pooled.method == "importance-union" and pooled.mean.shape == (3, 3)
    assert (pooled.mean - exact).abs().max() < 0.05
    assert result.edge_probs(proposal="best").method == "importance"
    with pytest.raises(InputError, match="proposal must be"):
        result.edge_probs(proposal="all")


def test_fit_trains_several_restarts_of_a_dag_model_by_default():
    from pyrostruct.infer._score_sites import LARGE_DAG_RESTARTS, SMALL_DAG_RESTARTS
    from pyrostruct.infer.fit import STEPS

    problem = ref.make_problem("logistic", 3, 30, seed=0)
    result = fit(problem.model, problem.data, seed=0)
    assert len(result.restart_guides) == len(result.restart_elbos) == SMALL_DAG_RESTARTS[0] > 1
    assert len(result.losses) == SMALL_DAG_RESTARTS[1]
    assert result.edge_probs().method == "importance-union"
    declared = fit(problem.model, problem.data, seed=0, num_restarts=1)
    assert len(declared.restart_guides) == 1 and len(declared.losses) == STEPS
    assert declared.edge_probs().method == "importance"

    def straight_through():
        G = pyro.sample("G", ErdosRenyiDAG(3, expected_edges=1.0),
                        infer={"dag_estimator": "straight-through"})  # fmt: skip
        pyro.sample("x", dist.Normal(G.sum(), 1.0), obs=torch.tensor(1.0))

    other = fit(straight_through, steps=3)
    assert len(other.restart_guides) == 1 and len(other.losses) == 3

    def seven_nodes():  # larger DAGs: fewer, longer restarts (RESTARTS_MAX_NODES = 6)
        pyro.sample("G", ErdosRenyiDAG(7, expected_edges=3.0))

    large = fit(seven_nodes, steps=2)
    assert len(large.restart_guides) == LARGE_DAG_RESTARTS[0] < SMALL_DAG_RESTARTS[0]
    assert large.elbo.num_particles == LARGE_DAG_RESTARTS[2] > SMALL_DAG_RESTARTS[2]
    assert LARGE_DAG_RESTARTS[1] * LARGE_DAG_RESTARTS[2] > STEPS * SMALL_DAG_RESTARTS[2]
    assert fit(seven_nodes, steps=2, num_particles=3).elbo.num_particles == 3

    def with_other_latents():  # a noise scale beside the DAG: one restart
        pyro.sample("G", ErdosRenyiDAG(3, expected_edges=1.0))
        pyro.sample("s", dist.LogNormal(0.0, 1.0))

    assert len(fit(with_other_latents, steps=2).restart_guides) == 1


def test_fit_gives_the_score_elbo_its_plate_nesting(caplog):
    """Pyro logged "Guessed max_plate_nesting" at every restart of a DAG model's fit (8
    INFO lines a call): the nesting read off the model's trace is passed instead."""
    problem = ref.make_problem("nonlinear", 3, 20, seed=0)
    with caplog.at_level("INFO", logger="pyro"):
        result = fit(problem.model, problem.data, steps=2, seed=0)
    assert result.max_plate_nesting == 1  # (the ELBO adds its particle plate to it)
    assert not [r for r in caplog.records if "Guessed max_plate_nesting" in r.getMessage()]
