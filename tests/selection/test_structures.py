"""Evidence of causal DAGs: Markov-equivalent DAGs tie, interventions break the tie."""

import math

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from pyrostruct.causal.datasets import simulate_linear_sem
from pyrostruct.errors import InputError
from pyrostruct.graph import enumerate_dags
from pyrostruct.selection.structures import (
    are_markov_equivalent,
    dag_log_evidence,
    select_structures,
)

CHAIN = nx.DiGraph([(0, 1), (1, 2)])
REVERSED = nx.DiGraph([(2, 1), (1, 0)])
FORK = nx.DiGraph([(1, 0), (1, 2)])
COLLIDER = nx.DiGraph([(0, 1), (2, 1)])


def _data(n=200, interventions=None, seed=0):
    w = np.zeros((3, 3))
    w[0, 1], w[1, 2] = 1.0, -0.8
    x, mask = simulate_linear_sem(w, n, noise="nonequal", interventions=interventions, seed=seed)
    return (x - x.mean(0)) / x.std(0), mask


def test_markov_equivalence_helper():
    assert are_markov_equivalent(CHAIN, REVERSED)
    assert are_markov_equivalent(CHAIN, FORK)
    assert not are_markov_equivalent(CHAIN, COLLIDER)
    assert not are_markov_equivalent(CHAIN, nx.DiGraph([(0, 1)]))


def _skeleton_and_v_structures(g):
    skeleton = set(map(frozenset, g.to_undirected().edges))
    v = set()
    for node in g.nodes:
        parents = list(g.predecessors(node))
        for i, a in enumerate(parents):
            for b in parents[i + 1 :]:
                if not g.has_edge(a, b) and not g.has_edge(b, a):
                    v.add((frozenset((a, b)), node))
    return skeleton, v


def test_markov_equivalence_is_the_definition_on_every_pair_of_dags():
    """The helper now compares CPDAGs (pyrostruct.graph, shared with pyrostruct.causal);
    it must agree with the definition (same skeleton, same v-structures) on every pair of
    DAGs on 3 nodes and on random pairs on 5, with names inserted in any order."""
    rng = np.random.default_rng(0)

    def named(adj):
        g = nx.DiGraph()
        g.add_nodes_from(f"v{k}" for k in rng.permutation(len(adj)))
        g.add_edges_from((f"v{i}", f"v{j}") for i, j in zip(*np.nonzero(adj)))
        return g

    pairs = [
        (named(a), named(b)) for a in enumerate_dags(3).numpy() for b in enumerate_dags(3).numpy()
    ]
    five = enumerate_dags(5).numpy()
    for _ in range(300):
        a = five[rng.integers(len(five))]
        perm = rng.permutation(5)  # a relabelled copy with some edges flipped at random
        pairs.append((named(a), named(a[np.ix_(perm, perm)])))
        pairs.append((named(a), named(five[rng.integers(len(five))])))
    expected = [
        _skeleton_and_v_structures(g1) == _skeleton_and_v_structures(g2) for g1, g2 in pairs
    ]
    assert [are_markov_equivalent(g1, g2) for g1, g2 in pairs] == expected
    assert 30 < sum(expected) < len(pairs) - 30


def test_markov_equivalence_refuses_a_cycle():
    with pytest.raises(InputError, match="cycle"):
        are_markov_equivalent(nx.DiGraph([(0, 1), (1, 2), (2, 0)]), CHAIN)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_evidence_is_score_equivalent(seed):
    x, _ = _data(seed=seed)
    rng = np.random.default_rng(seed)
    x = x + 0.3 * rng.normal(size=x.shape)  # any data, not only the true model's
    values = {
        name: dag_log_evidence(x, g)
        for name, g in [("chain", CHAIN), ("rev", REVERSED), ("fork", FORK), ("coll", COLLIDER)]
    }
    assert values["chain"] == pytest.approx(values["rev"], abs=1e-8)
    assert values["chain"] == pytest.approx(values["fork"], abs=1e-8)
    assert abs(values["chain"] - values["coll"]) > 1.0


def test_interventions_break_the_tie_in_exact_evidence():
    x, mask = _data(n=300, interventions=[[0]])
    chain = dag_log_evidence(x, CHAIN, mask=mask)
    rev = dag_log_evidence(x, REVERSED, mask=mask)
    assert chain - rev > 10  # intervening on the cause identifies the direction


@pytest.fixture(scope="module")
def structure_result():
    x, _ = _data(n=200)
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    relabel = dict(enumerate("abc"))
    graphs = {
        name: nx.relabel_nodes(g, relabel)
        for name, g in [("chain", CHAIN), ("reversed", REVERSED), ("collider", COLLIDER)]
    }
    result = select_structures(
        frame,
        graphs,
        steps=300,
        num_restarts=1,
        halving=None,
        elbo_particles=300,
        iwae_particles=100,
        iwae_repeats=4,
    )
    return x, result


def test_markov_equivalent_dags_get_equal_evidence_within_error(structure_result):
    x, result = structure_result
    t = result.table.set_index("candidate")
    a, b = t.loc["chain"], t.loc["reversed"]
    se = math.hypot(a.iwae_se, b.iwae_se)
    assert abs(a.iwae - b.iwae) < 4 * se + 0.05
    # both within error of the exact (common) value, and far above the non-equivalent collider
    exact = dag_log_evidence(x, CHAIN)
    for row in (a, b):
        assert abs(row.iwae - exact) < 4 * row.iwae_se + 0.1
    assert t.loc["collider"].iwae < exact - 20
    assert result.best in ("chain", "reversed")


def test_select_structures_with_interventions_prefers_the_true_direction():
    x, mask = _data(n=200, interventions=[[0]])
    result = select_structures(
        x,
        {"chain": CHAIN, "reversed": REVERSED},
        intervention_mask=mask,
        standardize=False,
        steps=200,
        num_restarts=1,
        halving=None,
        elbo_particles=200,
        iwae_particles=50,
        iwae_repeats=4,
    )
    assert result.best == "chain"
    assert result.posterior_probs["chain"] > 0.99


def test_bad_graphs_and_masks():
    x, _ = _data(n=50)
    with pytest.raises(InputError, match="not acyclic"):
        select_structures(x, [nx.DiGraph([(0, 1), (1, 0)])])
    with pytest.raises(InputError, match="not a data column"):
        select_structures(x, [nx.DiGraph([(0, 7)])])
    with pytest.raises(InputError, match="networkx.DiGraph"):
        select_structures(x, [[(0, 1)]])
    with pytest.raises(InputError, match="intervention_mask has shape"):
        select_structures(x, [CHAIN], intervention_mask=np.zeros((3, 3), bool))
    with pytest.raises(InputError, match="no candidate graphs"):
        select_structures(x, {})
