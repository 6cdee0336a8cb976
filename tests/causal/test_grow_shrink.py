"""The grow-shrink BIC insertion search (pyrostruct.causal.orders.grow_shrink): its
incremental rescoring against grow-shrink from scratch, and recovery of known graphs."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrostruct.causal.equivalence import cpdag
from pyrostruct.causal.orders.grow_shrink import (
    _grow_shrink,
    _insertion,
    _order_locals,
    _problem,
    bic_order_search,
    default_penalty,
    grow_shrink_parents,
)


def linear_sem(d, n, seed, density=0.35):
    """Standardized data of a random linear Gaussian SEM, its adjacency and covariance."""
    rng = np.random.default_rng(seed)
    adjacency = np.triu(rng.random((d, d)) < density, 1).astype(np.int64)
    weights = adjacency * rng.uniform(0.5, 1.5, (d, d)) * rng.choice([-1, 1], (d, d))
    x = np.zeros((n, d))
    for j in range(d):
        x[:, j] = x @ weights[:, j] + rng.normal(0, rng.uniform(0.5, 1.5), n)
    perm = rng.permutation(d)  # hide the topological order in the column order
    x, adjacency = x[:, perm], adjacency[np.ix_(perm, perm)]
    x = (x - x.mean(0)) / x.std(0)
    return x, adjacency, np.cov(x.T, bias=True)


def bic(cov, n, w, parents, penalty):
    parents = list(parents)
    if not parents:
        return -0.5 * n * math.log(cov[w, w])
    c = cov[np.ix_(parents, parents)]
    resid = cov[w, w] - cov[parents, w] @ np.linalg.solve(c, cov[parents, w])
    return -0.5 * n * math.log(resid) - penalty * len(parents)


def reference_grow_shrink(cov, n, w, candidates, penalty, required=()):
    """Grow-shrink written out: refit every candidate set by least squares; the ``required``
    candidates are parents from the start and never dropped."""
    parents = [u for u in candidates if u in required]
    while True:
        options = [u for u in candidates if u not in parents]
        if not options:
            break
        scores = [bic(cov, n, w, parents + [u], penalty) for u in options]
        k = int(np.argmax(scores))
        if not scores[k] > bic(cov, n, w, parents, penalty):
            break
        parents.append(options[k])
    while parents:
        scores = [bic(cov, n, w, [p for p in parents if p != u], penalty) for u in parents]
        scores = [-np.inf if u in required else v for u, v in zip(parents, scores)]
        k = int(np.argmax(scores))
        if not scores[k] > bic(cov, n, w, parents, penalty):
            break
        parents.pop(k)
    return sorted(parents), bic(cov, n, w, parents, penalty)


def _required(d, seed):
    """A random required-parents mask ``(d, d)``: about one pair in five."""
    required = np.random.default_rng(seed + 7).random((d, d)) < 0.2
    np.fill_diagonal(required, False)
    return required


@pytest.mark.parametrize("with_required", [False, True])
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), penalty=st.sampled_from([2.0, 8.0, 15.0]))
def test_grow_shrink_is_the_least_squares_grow_shrink(with_required, seed, penalty):
    """Also with required parents: taken first, kept whatever the penalty."""
    d, n = 7, 300
    _, _, cov = linear_sem(d, n, seed)
    rng = np.random.default_rng(seed)
    w = int(rng.integers(d))
    mask = rng.random(d) < 0.7
    mask[w] = False
    required = _required(d, seed)[:, w] if with_required else None
    local = _grow_shrink(cov, n, w, mask, penalty, required=required)
    forced = set() if required is None else set(np.flatnonzero(required))
    parents, score = reference_grow_shrink(cov, n, w, list(np.flatnonzero(mask)), penalty, forced)
    assert list(local.parents) == parents
    assert forced & set(np.flatnonzero(mask)) <= set(local.parents)
    assert local.score == pytest.approx(score, rel=1e-10, abs=1e-8)


@pytest.mark.parametrize("with_required", [False, True])
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_changer_and_grown_predict_exactly_when_a_candidate_changes_the_result(with_required,
                                                                               seed):  # fmt: skip
    """The filters are exact: the result on C + {u} differs from that on C only if
    ``changer[u]``, and the result on C - {u} only if ``grown[u]`` (with required parents
    too)."""
    d, n, penalty = 8, 400, default_penalty(400)
    _, _, cov = linear_sem(d, n, seed, density=0.45)
    rng = np.random.default_rng(seed + 1)
    w = int(rng.integers(d))
    mask = rng.random(d) < 0.5
    mask[w] = False
    required = _required(d, seed)[:, w] if with_required else None
    local = _grow_shrink(cov, n, w, mask, penalty, required=required)
    for u in range(d):
        if u == w:
            continue
        other = mask.copy()
        other[u] = not mask[u]
        moved = _grow_shrink(cov, n, w, other, penalty, required=required)
        same = moved.parents == local.parents and moved.score == pytest.approx(local.score)
        flagged = local.grown[u] if mask[u] else local.changer[u]
        if not flagged:
            assert same, (u, mask[u])


@pytest.mark.parametrize("with_required", [False, True])
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_insertion_scores_equal_grow_shrink_of_every_moved_order(with_required, seed):
    d, n = 9, 500
    _, _, cov = linear_sem(d, n, seed, density=0.4)
    required = _required(d, seed) if with_required else None
    problem = _problem(cov, n, None, None, required=required)
    rng = np.random.default_rng(seed)
    order = [int(i) for i in rng.permutation(d)]
    locals_ = _order_locals(problem, order)
    q = int(rng.integers(d))
    scores, _ = _insertion(problem, order, locals_, q)
    rest = order[:q] + order[q + 1 :]
    for p in range(d):
        moved = rest[:p] + [order[q]] + rest[p:]
        expected = grow_shrink_parents(cov, n, moved, required=required)[1]
        assert scores[p] == pytest.approx(expected, rel=1e-12)


def test_the_search_reports_the_score_of_the_order_it_returns_and_climbs():
    x, truth, cov = linear_sem(12, 2000, 3)
    start = list(range(12))
    order, score = bic_order_search(cov, 2000, start)
    assert score == pytest.approx(grow_shrink_parents(cov, 2000, order)[1], rel=1e-12)
    assert score >= grow_shrink_parents(cov, 2000, start)[1]


@pytest.mark.parametrize("seed", [0, 3, 5, 7])
def test_recovers_the_equivalence_class_of_a_linear_sem(seed):
    """The best of four random starts (greedy moves have local optima: from the true
    order's reverse, seeds 3, 5 and 7 stop 6-15 CPDAG entries off)."""
    d, n = 10, 5000
    _, truth, cov = linear_sem(d, n, seed, density=0.25)
    starts = [list(np.random.default_rng(10 * seed + k).permutation(d)) for k in range(4)]
    order, _ = max((bic_order_search(cov, n, s) for s in starts), key=lambda r: r[1])
    adjacency, _ = grow_shrink_parents(cov, n, order)
    assert (cpdag(adjacency) == cpdag(truth)).all()


def test_keeps_required_precedence():
    d, n = 8, 2000
    _, truth, cov = linear_sem(d, n, 5)
    precedes = np.zeros((d, d), dtype=bool)
    precedes[7, 0] = precedes[3, 1] = True
    start = [7, 3, 0, 1, 2, 4, 5, 6]
    order, score = bic_order_search(cov, n, start, precedes=precedes)
    pos = {v: k for k, v in enumerate(order)}
    assert pos[7] < pos[0] and pos[3] < pos[1]
    free, free_score = bic_order_search(cov, n, start)
    assert score <= free_score + 1e-9


def test_a_node_with_a_regime_is_scored_on_its_own_rows():
    d, n = 6, 1500
    x, _, cov = linear_sem(d, n, 7)
    rows = np.arange(n) >= 500  # node 2 is not intervened on these
    cov2 = np.cov(x[rows].T, bias=True)
    regimes = {2: (cov2, int(rows.sum()))}
    order = [0, 1, 2, 3, 4, 5]
    adjacency, score = grow_shrink_parents(cov, n, order, regimes=regimes)
    problem = _problem(cov, n, None, None)
    expected = 0.0
    for k, w in enumerate(order):
        c, m = (cov2, int(rows.sum())) if w == 2 else (cov, n)
        parents, s = reference_grow_shrink(c, m, w, order[:k], default_penalty(m))
        expected += s
        assert list(np.flatnonzero(adjacency[:, w])) == parents
    assert score == pytest.approx(expected, rel=1e-10)
    assert problem.ns[2] == n  # the problem without regimes scores every node on all rows


def test_forbidden_parents_are_never_taken():
    d, n = 8, 2000
    _, truth, cov = linear_sem(d, n, 11)
    order, _ = bic_order_search(cov, n, list(range(d)))
    adjacency, _ = grow_shrink_parents(cov, n, order)
    forbidden = adjacency.astype(bool)  # forbid every edge the free search takes
    constrained, _ = bic_order_search(cov, n, order, forbidden=forbidden)
    problem = _problem(cov, n, None, None, forbidden)
    for w, local in _order_locals(problem, constrained).items():
        assert not forbidden[list(local.parents), w].any()
        assert not (local.changer & forbidden[:, w]).any()


def test_improve_order_ends_at_a_local_optimum_of_the_bic_score():
    """On observational data the order search's last stage is the BIC search: no single
    insertion move improves the BIC of the order it returns (the soft stages alone,
    ``bic=False``, stop where one move gains 4.6 nats on these data)."""
    from pyrostruct.causal.orders import improve_order

    d, n = 25, 1500
    x, _, cov = linear_sem(d, n, 7, density=0.15)
    problem = _problem(cov, n, None, None)

    def best_move_gain(order):
        locals_ = _order_locals(problem, order)
        score = sum(local.score for local in locals_.values())
        return max(_insertion(problem, order, locals_, q)[0].max() - score for q in range(d))

    assert best_move_gain(improve_order(x, list(range(d)), math.log(0.1))) <= 1e-6
    assert best_move_gain(improve_order(x, list(range(d)), math.log(0.1), bic=False)) > 1.0


def test_the_search_keeps_a_weak_required_edge():
    """A required edge the BIC would drop (its child does not depend on it) is in the
    parents of every order the search returns, and the score counts its penalty."""
    d, n = 8, 2000
    _, _, cov = linear_sem(d, n, 11)
    order, _ = bic_order_search(cov, n, list(range(d)))
    adjacency, _ = grow_shrink_parents(cov, n, order)
    i, j = next((order[a], order[b]) for a in range(d) for b in range(a + 1, d)
                if not adjacency[order[a], order[b]])  # fmt: skip
    required = np.zeros((d, d), dtype=bool)
    required[i, j] = True
    precedes = required.copy()
    found, score = bic_order_search(cov, n, order, required=required, precedes=precedes)
    kept, expected = grow_shrink_parents(cov, n, found, required=required)
    assert kept[i, j] == 1
    assert score == pytest.approx(expected, rel=1e-12)
