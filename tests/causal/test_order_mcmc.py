"""Order MCMC with candidate parent sets against the exact posterior, against brute-force
sums over parent sets, and its restrictions, draws, diagnostics and input checks."""

import itertools
import math

import networkx as nx
import numpy as np
import pytest

from pyrostruct.causal import datasets
from pyrostruct.causal.data import observational_moments
from pyrostruct.causal.exact import exact_posterior
from pyrostruct.causal.order_mcmc import order_mcmc_posterior
from pyrostruct.errors import InputError
from pyrostruct.selection.structures import dag_log_evidence


def _data(d, n, seed, targets=()):
    ds = datasets.make_dataset(d=d, n=n, seed=seed, noise="nonequal",
                               interventions=[[t] for t in targets] or None)  # fmt: skip
    return ds, ds.data.to_numpy(), ds.intervention_mask if targets else None


def _all(d):
    return [[i for i in range(d) if i != j] for j in range(d)]


@pytest.mark.parametrize("d, seed, targets", [(5, 0, ()), (4, 2, ()), (5, 1, (0, 3))])
def test_all_candidates_match_the_exact_posterior(d, seed, targets):
    """Measured: max |error| 0.006-0.009 with 2000 retained orders x 4 chains; here 1000
    x 4 chains and a tolerance of 0.03."""
    _, x, mask = _data(d, 100, seed, targets)
    exact = exact_posterior(x, interventions=mask)
    post = order_mcmc_posterior(x, interventions=mask, candidates=_all(d), num_samples=1000)
    assert np.abs(post.edge_probs - exact.edge_probs).max() < 0.03
    assert post.intervention_targets == exact.intervention_targets
    np.testing.assert_array_equal(post.adjacency, exact.adjacency)


def test_node_scores_equal_a_brute_force_sum_over_candidate_dags():
    """``sum_j alpha_j`` of an order is ``log sum`` over the DAGs that fit the order with
    parents among the candidates of ``p^|E| (1 - p)^(pairs - |E|) p(X | G)``."""
    d = 5
    _, x, mask = _data(d, 80, 3, (2,))
    cand = [[1, 2], [0, 3, 4], [0, 1], [], [0, 1, 2, 3]]
    post = order_mcmc_posterior(x, interventions=mask, candidates=cand, num_samples=10)
    mean, sd = observational_moments(x, mask)
    xs = (x - mean) / sd
    pairs = d * (d - 1) // 2
    p = min(d, pairs / 2) / pairs
    for order in ([0, 1, 2, 3, 4], [4, 2, 0, 3, 1], [3, 1, 4, 0, 2]):
        position = np.argsort(order)
        allowed = [(i, j) for j in range(d) for i in cand[j] if position[i] < position[j]]
        terms = []
        for r in range(len(allowed) + 1):
            for edges in itertools.combinations(allowed, r):
                g = nx.DiGraph()
                g.add_nodes_from(range(d))
                g.add_edges_from(edges)
                terms.append(r * math.log(p) + (pairs - r) * math.log1p(-p)
                             + dag_log_evidence(xs, g, mask=mask))  # fmt: skip
        total = post.node_scores(order).sum()
        assert total == pytest.approx(float(np.logaddexp.reduce(terms)), abs=1e-8)


def test_restricted_candidates_and_draws():
    d = 6
    _, x, _ = _data(d, 200, 4)
    cand = [[1, 2], [0, 2, 3], [0, 1, 4], [1, 5], [2, 5], [3, 4]]
    post = order_mcmc_posterior(x, candidates=cand, num_samples=300, seed=1)
    allowed = np.zeros((d, d), dtype=bool)
    for j, cj in enumerate(cand):
        allowed[cj, j] = True
    assert (post.edge_probs[~allowed] == 0).all()
    assert post.edge_probs[allowed].max() > 0.5
    assert post.candidates == [sorted(cj) for cj in cand]
    dags, orders = post.sample_dags(500, seed=2, return_orders=True)
    assert dags.shape == (500, d, d) and dags.dtype == np.int64
    assert not dags[:, ~allowed].any()
    for a, order in zip(dags, orders):
        position = np.argsort(order)
        i, j = np.nonzero(a)
        assert (position[i] < position[j]).all()  # every edge goes forward in its order
    assert all(nx.is_directed_acyclic_graph(nx.DiGraph(a)) for a in dags[:100])
    se = np.sqrt(post.edge_probs * (1 - post.edge_probs) / 500) + 0.01
    assert (np.abs(dags.mean(0) - post.edge_probs) < 5 * se).all()


def test_same_seed_same_posterior_and_easy_case_converges():
    _, x, _ = _data(6, 300, 5)
    a = order_mcmc_posterior(x, max_candidates=5, num_samples=1000, seed=7)
    b = order_mcmc_posterior(x, max_candidates=5, num_samples=1000, seed=7)
    np.testing.assert_array_equal(a.edge_probs, b.edge_probs)
    np.testing.assert_array_equal(a.sample_dags(50, seed=3), b.sample_dags(50, seed=3))
    c = order_mcmc_posterior(x, max_candidates=5, num_samples=1000, seed=8)
    assert not np.array_equal(a.edge_probs, c.edge_probs)
    diag = a.diagnostics
    assert diag.chain_edge_probs.shape == (4, 6, 6)
    assert diag.log_scores.shape == (4, 1000)
    assert diag.rhat_log_score < 1.05  # measured 1.003 (seeds 7, 8)
    assert diag.max_rhat < 1.1  # measured 1.005-1.006
    assert ((diag.acceptance_rate > 0) & (diag.acceptance_rate < 1)).all()
    assert np.abs(diag.chain_edge_probs - a.edge_probs).max() < 0.1  # measured 0.03
    assert all(len(cj) == 5 for cj in a.candidates)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(max_candidates=0), "max_candidates must be a positive integer"),
        (dict(max_candidates=17), "max_candidates must be at most 16"),
        (dict(candidates=[[1], [0]]), "one list per node: 4 lists for 4 columns, got 2"),
        (dict(candidates=[[1], [0], [0], [9]]), r"candidates\[3\]: node index 9 outside"),
        (dict(candidates=[[0], [0], [0], [0]]), r"candidates\[0\] holds the node itself"),
        (dict(candidates=[[1, 1], [0], [0], [0]]), r"candidates\[0\] repeats a node"),
        (dict(candidates=[["Z"], [0], [0], [0]]), "neither a node index nor a name"),
        (dict(candidates="all"), "candidates must be a list of 4 lists"),
        (dict(num_samples=0), "num_samples must be an integer >= 1"),
        (dict(chains=1.5), "chains must be a positive integer"),
        (dict(expected_edges=6.0), "expected_edges must lie strictly between"),
        (dict(threshold=2.0), r"threshold must be a number in \(0, 1\]"),
        (dict(seed=-1), "seed must be an integer"),
    ],
)
def test_bad_input_raises_one_clear_line(kwargs, match):
    _, x, _ = _data(4, 50, 0)
    with pytest.raises(InputError, match=match) as info:
        order_mcmc_posterior(x, **kwargs)
    assert "\n" not in str(info.value)


def test_nan_data_and_names_as_candidates():
    ds, x, _ = _data(4, 50, 0)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InputError) as info:
        order_mcmc_posterior(bad)
    assert "\n" not in str(info.value)
    post = order_mcmc_posterior(ds.data, candidates=[["X1"], ["X0"], [], []], num_samples=20)
    assert post.candidates == [[1], [0], [], []]
    assert post.names == ds.names


def test_candidate_probs_put_an_earlier_fits_likely_pairs_first():
    """A pair an earlier fit finds likely (either way) becomes a candidate of both nodes
    ahead of the screen's choices; a result's edge_probs are taken as they are."""
    from pyrostruct.causal import discover

    ds, x, _ = _data(6, 200, 0)
    screened = order_mcmc_posterior(x, max_candidates=1, num_samples=20, seed=0)
    i, j = next((i, j) for i in range(6) for j in range(6)
                if i != j and i not in screened.candidates[j]
                and j not in screened.candidates[i])  # fmt: skip
    probs = np.zeros((6, 6))
    probs[i, j] = 0.3
    hinted = order_mcmc_posterior(x, max_candidates=1, num_samples=20, seed=0,
                                  candidate_probs=probs)  # fmt: skip
    assert hinted.candidates[j] == [i] and hinted.candidates[i] == [j]
    others = [k for k in range(6) if k not in (i, j)]
    assert [hinted.candidates[k] for k in others] == [screened.candidates[k] for k in others]
    below = probs * (0.04 / 0.3)  # under LIKELY: the screen decides
    assert order_mcmc_posterior(x, max_candidates=1, num_samples=20, seed=0,
                                candidate_probs=below).candidates == screened.candidates
    fit = discover(x)
    from_result = order_mcmc_posterior(x, num_samples=20, seed=0, candidate_probs=fit)
    from_array = order_mcmc_posterior(x, num_samples=20, seed=0, candidate_probs=fit.edge_probs)
    assert from_result.candidates == from_array.candidates


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(candidate_probs=np.zeros((5, 5))), r"must be \(6, 6\)"),
        (dict(candidate_probs=np.full((6, 6), 1.5)), "probabilities in"),
        (dict(candidate_probs=np.full((6, 6), np.nan)), "probabilities in"),
        (dict(candidate_probs="dense"), "CausalResult or a"),
        (dict(candidate_probs=np.zeros((6, 6)), candidates=_all(6)), "not both"),
    ],
)
def test_bad_candidate_probs(kwargs, match):
    _, x, _ = _data(6, 50, 0)
    with pytest.raises(InputError, match=match):
        order_mcmc_posterior(x, num_samples=5, **kwargs)


def test_candidate_probs_of_other_columns_are_refused():
    from pyrostruct.causal import discover

    ds, _, _ = _data(6, 50, 0)
    other = discover(ds.data[ds.data.columns[::-1]], steps=2, num_samples=10)
    with pytest.raises(InputError, match="result about columns"):
        order_mcmc_posterior(ds.data, num_samples=5, candidate_probs=other)
    with pytest.raises(InputError, match=r"threshold must be a number in \(0, 1\]"):
        order_mcmc_posterior(ds.data, num_samples=5, threshold=0)
    with pytest.raises(InputError, match="at most"):
        order_mcmc_posterior(ds.data, num_samples=10**7)
