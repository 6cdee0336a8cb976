"""The order search on screened candidate parents (``improve_order(candidates=...)``)."""

import math

import numpy as np
import pytest
import torch

from pyrostruct.causal import datasets
from pyrostruct.causal.knowledge import Knowledge
from pyrostruct.causal.orders import improve_order, order_scores
from pyrostruct.causal.orders.scores import local_scores
from pyrostruct.causal.orders.screened import (
    _Problem,
    missing_parents,
    screen_candidates,
)


def _standardized(d, graph, seed, n=500, interventions=None):
    ds = datasets.make_dataset(
        d=d, n=n, graph=graph, seed=seed, noise="nonequal", interventions=interventions
    )
    x = ds.data.to_numpy()[:, :d]
    return ds, (x - x.mean(0)) / x.std(0)


def _covariance(x):
    """``(cov, n, d)``: the covariance the order search scores (``1e-9`` added on the
    diagonal, as :func:`improve_order` does)."""
    xt = torch.tensor(x, dtype=torch.float64)
    n, d = xt.shape
    return torch.cov(xt.T, correction=0) + 1e-9 * torch.eye(d, dtype=torch.float64), n, d


def _everyone(d):
    return [np.array([u for u in range(d) if u != v]) for v in range(d)]


@pytest.mark.parametrize(
    "d, graph, seed", [(8, "SF", 0), (12, "ER", 1), (15, "SF", 2), (20, "ER", 3)]
)
def test_with_every_candidate_the_search_is_the_unrestricted_one(d, graph, seed):
    _, x = _standardized(d, graph, seed)
    start = [int(i) for i in np.random.default_rng(seed).permutation(d)]
    unrestricted = improve_order(x, start, -1.5, candidates="all")
    found = improve_order(x, start, -1.5, candidates=_everyone(d))
    assert found == unrestricted or _tied(x, found, unrestricted)
    assert unrestricted != start  # the search moved


def _tied(x, a, b) -> bool:
    """Two orders of equal score up to rounding (Markov equivalent neighbours, say): which
    one a greedy search ends in depends on float summation order, so on the torch build
    (the lowest supported torch picked the other one of such a pair)."""
    cov = torch.cov(torch.as_tensor(x).T, correction=0)
    refit = order_scores(cov, len(x), torch.tensor([a, b]), -1.5, refit=True)
    return bool(torch.isclose(refit[0], refit[1], rtol=1e-9, atol=1e-6))


def test_with_every_candidate_and_knowledge_the_search_is_the_unrestricted_one():
    _, x = _standardized(10, "ER", 4)
    m = Knowledge(tiers=[[7, 8, 9], [0, 1, 2, 3, 4, 5, 6]]).resolve(range(10))
    start = [7, 8, 9, 6, 5, 4, 3, 2, 1, 0]
    found = improve_order(x, start, -1.5, precedes=m.precedes, candidates=_everyone(10))
    assert found == improve_order(x, start, -1.5, precedes=m.precedes, candidates="all")
    assert m.order_admits(found)


def test_with_every_candidate_and_interventions_the_search_is_the_unrestricted_one():
    ds, x = _standardized(8, "ER", 5, n=600, interventions=[[2], [5]])
    mask = ds.intervention_mask
    start = [7, 6, 5, 4, 3, 2, 1, 0]
    found = improve_order(x, start, -1.5, mask=mask, candidates=_everyone(8))
    assert found == improve_order(x, start, -1.5, mask=mask, candidates="all")


@pytest.mark.parametrize("refit", [False, True])
def test_restricted_terms_with_every_candidate_equal_the_order_scores(refit):
    _, x = _standardized(9, "SF", 1)
    cov, n, d = _covariance(x)
    order = [4, 0, 8, 2, 6, 1, 3, 7, 5]
    prob = _Problem(cov, n, {}, _everyone(d), None, -1.0, 1.0)
    pos = np.empty(d, dtype=np.int64)
    pos[order] = np.arange(d)
    expected = float(order_scores(cov, n, torch.tensor([order]), -1.0, refit=refit)[0])
    assert math.isclose(prob.total(pos, refit), expected, rel_tol=1e-10)
    # each step of the insertion gains is the score of that order minus the current one
    v = 8
    gains, where = prob.gains(order, pos, v, refit)
    rest = [u for u in order if u != v]
    orders = torch.tensor([rest[:p] + [v] + rest[p:] for p in where])
    scores = order_scores(cov, n, orders, -1.0, refit=refit).numpy()
    np.testing.assert_allclose(gains, scores - expected, rtol=1e-9, atol=1e-6)


@pytest.mark.parametrize("refit", [False, True])
def test_pruned_candidates_score_the_restricted_model(refit):
    """With node 2's candidates cut to {0}, its term is its regression on 0 alone."""
    _, x = _standardized(5, "ER", 2)
    cov, n, d = _covariance(x)
    cand = _everyone(d)
    cand[2] = np.array([0])
    for v in (1, 3, 4):  # 2 stays a candidate of the others
        assert 2 in cand[v]
    prob = _Problem(cov, n, {}, cand, None, -1.0, 1.0)
    order = [0, 1, 3, 2, 4]
    pos = np.empty(d, dtype=np.int64)
    pos[order] = np.arange(d)
    local, _ = local_scores(cov, n, order, -1.0, 1.0, refit)
    on_zero, _ = local_scores(cov, n, [0, 2], -1.0, 1.0, refit)
    expected = float(local.sum() - local[3] + on_zero[1])
    assert math.isclose(prob.total(pos, refit), expected, rel_tol=1e-10)
    assert not math.isclose(float(local[3]), float(on_zero[1]), rel_tol=1e-6)


def test_screened_search_keeps_the_knowledge():
    _, x = _standardized(12, "ER", 6)
    m = Knowledge(tiers=[[10, 11], list(range(10))]).resolve(range(12))
    start = [10, 11] + list(range(9, -1, -1))
    found = improve_order(x, start, -1.5, precedes=m.precedes, candidates="screen")
    assert m.order_admits(found) and sorted(found) == list(range(12))


def test_screen_keeps_a_chain_and_is_symmetric():
    rng = np.random.default_rng(0)
    x = np.zeros((800, 6))
    x[:, 0] = rng.normal(size=800)
    for j in range(1, 6):
        x[:, j] = 0.8 * x[:, j - 1] + rng.normal(size=800)
    cov = torch.cov(torch.tensor(x).T, correction=0)
    cand = screen_candidates(cov, 800, min_size=1)
    for j in range(1, 6):
        assert j - 1 in cand[j] and j in cand[j - 1]
    member = np.zeros((6, 6), dtype=bool)
    for v, c in enumerate(cand):
        member[v, c] = True
    assert (member == member.T).all() and not member.diagonal().any()


def test_missing_parents_adds_the_edges_the_regressions_keep_both_ways():
    rng = np.random.default_rng(1)
    x = np.zeros((800, 4))
    x[:, 0] = rng.normal(size=800)
    x[:, 1] = x[:, 0] + rng.normal(size=800)
    x[:, 2] = rng.normal(size=800)
    x[:, 3] = x[:, 2] - x[:, 1] + rng.normal(size=800)
    cov = torch.cov(torch.tensor(x).T, correction=0)
    empty = [np.zeros(0, dtype=np.int64)] * 4
    added = missing_parents(cov, 800, [0, 1, 2, 3], empty, -1.0, 1.0)
    pairs = {(u, v) for v, e in enumerate(added) for u in e}
    assert {(0, 1), (1, 0), (1, 3), (3, 1), (2, 3), (3, 2)} <= pairs
    assert (0, 2) not in pairs and (2, 0) not in pairs
    again = missing_parents(cov, 800, [0, 1, 2, 3], [np.array(sorted(set(a))) for a in added],
                            -1.0, 1.0)  # fmt: skip
    assert not any(len(e) for e in again)
