"""Markov equivalence: CPDAGs, class sizes and uniform members, checked by enumeration."""

import collections

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from pyrostruct.causal import metrics
from pyrostruct.causal.equivalence import (
    EquivalenceSampler,
    count_equivalent_dags,
    cpdag,
    sample_equivalent_dag,
    sample_equivalent_dags,
)
from pyrostruct.errors import InputError
from pyrostruct.graph import cpdag_edge_labels, enumerate_dags


def _skeleton_and_v_structures(a):
    """Verma & Pearl's characterization of the class, written out independently."""
    a = np.asarray(a, dtype=bool)
    skeleton = a | a.T
    v = set()
    for j in range(len(a)):
        parents = np.flatnonzero(a[:, j])
        for x in parents:
            for y in parents:
                if x < y and not skeleton[x, y]:
                    v.add((int(x), int(y), j))
    return np.triu(skeleton).tobytes(), frozenset(v)


def _classes(d):
    classes = collections.defaultdict(list)
    for dag in enumerate_dags(d).numpy().astype(np.int64):
        classes[_skeleton_and_v_structures(dag)].append(dag)
    return list(classes.values())


@pytest.mark.parametrize("d", [3, 4])
def test_cpdag_and_count_identify_every_class(d):
    classes = _classes(d)
    assert len(classes) == {3: 11, 4: 185}[d]  # OEIS A007984
    seen = set()
    for members in classes:
        cps = {cpdag(m).tobytes() for m in members}
        assert len(cps) == 1  # one CPDAG per class ...
        seen |= cps
        assert count_equivalent_dags(members[0]) == len(members)
        # ... whose one-way edges are those every member shares
        c = cpdag(members[0])
        shared = np.logical_and.reduce([m.astype(bool) for m in members])
        np.testing.assert_array_equal(c & ~c.T, shared & ~shared.T)
    assert len(seen) == len(classes)  # and different classes get different CPDAGs


def test_batched_draws_stay_in_each_dags_class():
    """All 543 DAGs on 4 nodes (many level structures) in one call: every draw is
    equivalent to its own input, and the batched labels equal the one-by-one CPDAGs."""
    dags = enumerate_dags(4).numpy().astype(np.int64)
    draws = sample_equivalent_dags(np.concatenate([dags, dags]), rng=1)
    for dag, draw in zip(np.concatenate([dags, dags]), draws):
        assert _skeleton_and_v_structures(draw) == _skeleton_and_v_structures(dag)
    compelled, reversible = cpdag_edge_labels(dags.astype(bool))
    for dag, c, r in zip(dags, compelled, reversible):
        np.testing.assert_array_equal(cpdag(dag), c | r | r.T)


def test_count_every_class_at_d5():
    for members in _classes(5):
        assert count_equivalent_dags(members[0]) == len(members)


def test_doc_examples_chain_and_v_structure():
    chain = [[0, 1, 0], [0, 0, 1], [0, 0, 0]]
    assert cpdag(chain).tolist() == [[0, 1, 0], [1, 0, 1], [0, 1, 0]]
    assert cpdag([[0, 0, 1], [0, 0, 1], [0, 0, 0]]).tolist() == [[0, 0, 1], [0, 0, 1], [0, 0, 0]]
    assert count_equivalent_dags(chain) == 3
    complete = np.triu(np.ones((5, 5), dtype=int), k=1)
    assert count_equivalent_dags(complete) == 120  # every order


def test_members_are_drawn_uniformly():
    """The 24 members of the complete DAG on 4 nodes and the 10 of a 4-node chordal
    graph (a 4-cycle with a chord) each come up equally often (chi-square)."""
    complete = np.triu(np.ones((4, 4), dtype=int), k=1)
    chordal = np.zeros((4, 4), dtype=int)
    for i, j in [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]:
        chordal[i, j] = 1
    for dag, size in [(complete, 24), (chordal, 10)]:
        assert count_equivalent_dags(dag) == size
        draws = sample_equivalent_dags(np.repeat(dag[None], 200 * size, 0), rng=0)
        counts = collections.Counter(x.tobytes() for x in draws)
        members = [m for m in _classes(4) if any((m_ == dag).all() for m_ in m)][0]
        assert set(counts) == {m.tobytes() for m in members}
        assert stats.chisquare(list(counts.values())).pvalue > 1e-3


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 9), st.floats(0.1, 0.9), st.integers(0, 10_000), st.booleans())
def test_draws_are_members_of_the_class(d, density, seed, exact):
    rng = np.random.default_rng(seed)
    dag = np.triu(rng.random((d, d)) < density, k=1).astype(int)
    perm = rng.permutation(d)
    dag = dag[np.ix_(perm, perm)]
    key = _skeleton_and_v_structures(dag)
    for _ in range(5):
        if exact:
            member = sample_equivalent_dag(dag, rng)
        else:  # every component above max_exact = 1: maximum-cardinality search
            c = cpdag(dag).astype(bool)
            undirected = c & c.T
            member = c & ~c.T
            sampler = EquivalenceSampler(max_exact=1)
            for comp in _connected(undirected):
                idx = np.ix_(comp, comp)
                member[idx] |= sampler.orient(undirected[idx], rng)
            member = member.astype(int)
        assert _skeleton_and_v_structures(member) == key
        assert metrics.shd_cpdag(dag, member) == 0


def _connected(u):
    seen, out = set(), []
    for s in range(len(u)):
        if s in seen or not u[s].any():
            continue
        stack, comp = [s], {s}
        while stack:
            v = stack.pop()
            for w in np.flatnonzero(u[v]):
                if int(w) not in comp:
                    comp.add(int(w))
                    stack.append(int(w))
        seen |= comp
        out.append(tuple(sorted(comp)))
    return out


def test_same_seed_same_draws():
    dag = np.triu(np.ones((6, 6), dtype=int), k=1)
    a = sample_equivalent_dags(np.repeat(dag[None], 20, 0), rng=3)
    b = sample_equivalent_dags(np.repeat(dag[None], 20, 0), rng=3)
    np.testing.assert_array_equal(a, b)
    assert len({x.tobytes() for x in a}) > 5


def test_shd_cpdag_counts_only_identifiable_differences():
    chain = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    fork = np.array([[0, 0, 0], [1, 0, 1], [0, 0, 0]])  # 0 <- 1 -> 2: same class
    collider = np.array([[0, 1, 0], [0, 0, 0], [0, 1, 0]])  # 0 -> 1 <- 2
    assert metrics.shd(chain, fork) == 1 and metrics.shd_cpdag(chain, fork) == 0
    assert metrics.shd_cpdag(chain, collider) == 2  # both edges turn from reversible to one-way


@pytest.mark.parametrize(
    "adj, match",
    [
        (np.zeros((2, 3)), "square"),
        (np.eye(2), "self-loops"),
        (np.array([[0, 1], [1, 0]]), "cycle"),
        (np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]]), "cycle"),
    ],
)
def test_bad_input(adj, match):
    with pytest.raises(InputError, match=match):
        cpdag(adj)
    with pytest.raises(InputError, match=match):
        count_equivalent_dags(adj)


def test_counting_a_component_above_max_exact_is_refused():
    complete = np.triu(np.ones((5, 5), dtype=int), k=1)
    with pytest.raises(InputError, match="too large to count"):
        count_equivalent_dags(complete, max_exact=4)
