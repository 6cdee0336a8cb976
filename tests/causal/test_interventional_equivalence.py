"""Interventional Markov equivalence (issue 24): the I-essential graph, class sizes and
uniform members, checked against brute-force enumeration of all DAGs (d <= 5)."""

import collections
import itertools

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pyrostruct.causal.equivalence import (
    count_equivalent_dags,
    cpdag,
    interventional_essential_graph,
    sample_equivalent_dags,
)
from pyrostruct.errors import InputError
from pyrostruct.graph import enumerate_dags


def _signature(a, family):
    """Hauser & Bühlmann (2012), Theorem 10, written out independently: for every target
    set I (the observational regime included), the DAG with the edges into I removed has
    the same skeleton and v-structures."""
    out = []
    for target in [(), *family]:
        b = np.asarray(a, dtype=bool).copy()
        b[:, list(target)] = False
        skeleton = b | b.T
        v = frozenset(
            (int(x), int(y), j)
            for j in range(len(b))
            for x, y in itertools.combinations(np.flatnonzero(b[:, j]), 2)
            if not skeleton[x, y]
        )
        out.append((np.triu(skeleton).tobytes(), v))
    return tuple(out)


def _i_classes(d, family):
    classes = collections.defaultdict(list)
    for dag in enumerate_dags(d).numpy().astype(np.int64):
        classes[_signature(dag, family)].append(dag)
    return list(classes.values())


FAMILIES = {
    3: [[[0]], [[1]], [[0], [2]], [[0, 1]], [[0, 1, 2]]],
    4: [[[0]], [[1]], [[3]], [[0], [2]], [[1, 2]], [[0, 3], [1]], [[0], [1], [2], [3]]],
    5: [[[2]], [[0], [4]], [[1, 3]]],
}


@pytest.mark.parametrize(
    "d, family",
    [
        pytest.param(d, f, marks=[pytest.mark.slow] if d == 5 else [])
        for d, fams in FAMILIES.items()
        for f in fams
    ],
    ids=str,
)
def test_essential_graph_and_counts_match_enumeration(d, family):
    classes = _i_classes(d, family)
    for members in classes:
        graphs = {interventional_essential_graph(m, family).tobytes() for m in members}
        assert len(graphs) == 1  # one I-essential graph per class ...
        e = interventional_essential_graph(members[0], family)
        union = np.logical_or.reduce([m.astype(bool) for m in members])
        np.testing.assert_array_equal(e.astype(bool), union)  # ... the union of its members
        assert count_equivalent_dags(members[0], targets=family) == len(members)


def test_no_targets_is_the_observational_class():
    for dag in enumerate_dags(4).numpy().astype(np.int64)[::7]:
        np.testing.assert_array_equal(interventional_essential_graph(dag, []), cpdag(dag))
        np.testing.assert_array_equal(interventional_essential_graph(dag, [[]]), cpdag(dag))


def test_draws_are_uniform_over_the_interventional_class():
    """A 4-node DAG with a class of several members: frequencies against 1 / size."""
    from scipy import stats

    family = [[3]]
    classes = [c for c in _i_classes(4, family) if len(c) >= 3]
    members = max(classes, key=len)
    draws = sample_equivalent_dags(np.repeat(members[0][None], 4000, 0), rng=0, targets=family)
    keys = [m.tobytes() for m in members]
    counts = collections.Counter(d.tobytes() for d in draws)
    assert set(counts) <= set(keys)
    observed = [counts[k] for k in keys]
    assert stats.chisquare(observed).pvalue > 1e-3


def test_bad_targets():
    with pytest.raises(InputError, match="outside 0..2"):
        interventional_essential_graph(np.zeros((3, 3)), [[5]])


def _interventional_case(d, seed, k):
    """A random ER graph with 300 observational rows plus 300 rows per single-node perfect
    intervention on ``k`` random targets: ``(dataset, x, mask, observational rows)``."""
    from pyrostruct.causal import datasets

    rng = np.random.default_rng(seed)
    targets = [[int(t)] for t in rng.choice(d, size=k, replace=False)]
    ds = datasets.make_dataset(d=d, n=300 * (k + 1), graph="ER", noise="nonequal",
                               interventions=targets, seed=seed)  # fmt: skip
    x = ds.data.to_numpy()
    column = np.asarray(ds.intervention_column())
    mask = np.zeros(x.shape, dtype=bool)
    for (t,) in targets:
        mask[:, t] = column == ds.names[t]
    return ds, x, mask, column == ""


def _confidently_reversed(adjacency, before, after):
    """True edges right before (P > 0.5 the true way) and confidently reversed after (P >
    0.9 the wrong way)."""
    return [(int(i), int(j)) for i, j in zip(*np.nonzero(adjacency))
            if before[i, j] > 0.5 and after[j, i] > 0.9]  # fmt: skip


def test_interventional_rows_almost_never_make_the_exact_posterior_confidently_wrong():
    """Issue 24's property for the model's exact posterior (:func:`exact_posterior`, the
    BGe likelihood, averaged over interventional Markov equivalence classes) on 15 random
    graphs with d = 6-8 and 1-2 targets. Measured on 60 such cases: 1 had an edge
    confidently reversed (d = 8, seed 8213: P(3 -> 4) > 0.5 before, P(4 -> 3) > 0.9
    after), a finite-sample event of the posterior itself; at most one is allowed here."""
    from pyrostruct.causal import exact_posterior

    rng = np.random.default_rng(123)
    reversed_cases = []
    for _ in range(15):
        d, seed, k = int(rng.integers(6, 9)), int(rng.integers(0, 10_000)), int(rng.integers(1, 3))
        ds, x, mask, observational = _interventional_case(d, seed, k)
        before = exact_posterior(x[observational]).sample_dags(1000, average_equivalent=True)
        after = exact_posterior(x, interventions=mask).sample_dags(1000, average_equivalent=True)
        if _confidently_reversed(ds.adjacency, before.mean(0), after.mean(0)):
            reversed_cases.append((d, seed, k))
    assert len(reversed_cases) <= 1, reversed_cases


_VARIATIONAL_REVERSES = (
    "issue 24, not met by the default (variational) posterior: on 60 random cases (d = 6-8, "
    "1-2 targets, 300 rows per regime; drawn as in the exact-posterior test) discover "
    "confidently reversed a true edge it had right in 10 (2026-12-07, with the analytic "
    "estimator's refit halfway through training; 12 without it, the order search "
    "choosing between its refitted and BIC endings; 17 with the refitted ending alone the "
    "day before, 11 when first measured, with weight_prior='normal' 11 too), "
    "estimator='exact' (the BGe posterior) in 1. No single cause: the exact posterior of "
    "discover's own model (pMOM slab, noise profiled, parent sets enumerated given the "
    "order) reverses in 6, its normal-slab variant in 4 (the pMOM slab is not "
    "score-equivalent: it prefers the wrong order by 4.5-18 nats in 5 of the 11 where BGe "
    "has them within 1.7); Plackett-Luce VI over orders on those exact within-order "
    "evidences reverses in 2 (BGe), 2 (normal), 7 (pMOM) from a uniform start but 6 "
    "(normal) and 9 (pMOM) from discover's greedy start order; the mean-field within-order "
    "gap adds the rest. estimator='exact' is not the default: BGe lets nearly deterministic "
    "nodes take spurious parents (test_discover_exact)"
)


@pytest.mark.parametrize(
    "estimator",
    ["exact", pytest.param(None, marks=pytest.mark.xfail(strict=True, reason=_VARIATIONAL_REVERSES))],
)
@settings(max_examples=6, deadline=None)
@example(d=6, seed=6299, k=1)  # reversed by the default posterior (xfail's reason)
@given(st.integers(6, 8), st.integers(0, 10_000), st.integers(1, 2))
def test_interventional_rows_never_make_a_correct_edge_confidently_wrong(estimator, d, seed, k):
    """Issue 24: where the posterior of the observational rows alone gets an edge right (P >
    0.5 the true way), adding rows of perfect interventions on random targets does not make
    it confidently reversed (P > 0.9 the wrong way). Measured on the 60 cases of the
    exact-posterior test above (``benchmarks/causal_exact_vs_vi.py``): ``estimator="exact"``
    fails in 1 (d = 8, seed 8213, a finite-sample event of the posterior itself), the
    default variational ``"analytic"`` in 10 (see the xfail's reason)."""
    from pyrostruct.causal import discover

    ds, x, mask, observational = _interventional_case(d, seed, k)
    kwargs = {} if estimator is None else {"estimator": estimator}
    before = discover(x[observational], seed=0, **kwargs)
    after = discover(x, interventions=mask, seed=0, **kwargs)
    assert not _confidently_reversed(ds.adjacency, before.edge_probs, after.edge_probs)
