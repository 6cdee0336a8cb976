"""Tests for pyrostruct.graph: batched acyclicity, topological order, networkx conversion."""

import itertools

import networkx as nx
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pyrostruct.graph import NUM_DAGS, enumerate_dags, is_acyclic, to_networkx, topological_order


def _nx(adj):
    g = nx.DiGraph()
    g.add_nodes_from(range(adj.shape[-1]))
    g.add_edges_from((adj != 0).nonzero().tolist())
    return g


def test_is_acyclic_small_examples():
    dag = torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    cycle = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    loop = torch.diag(torch.tensor([0.0, 1.0, 0.0]))
    out = is_acyclic(torch.stack([dag, cycle, loop, torch.zeros(3, 3)]))
    assert out.tolist() == [True, False, False, True]
    assert out.dtype == torch.bool


@given(
    d=st.integers(1, 9),
    density=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
    batch=st.integers(1, 4),
)
def test_is_acyclic_agrees_with_networkx(d, density, seed, batch):
    gen = torch.Generator().manual_seed(seed)
    adj = (torch.rand(batch, d, d, generator=gen) < density).float()
    # half of the batch: make a DAG by keeping the upper triangle of a relabelling
    perm = torch.randperm(d, generator=gen)
    adj[0] = torch.triu(adj[0], diagonal=1)[perm][:, perm]
    expected = [nx.is_directed_acyclic_graph(_nx(a)) for a in adj]
    assert is_acyclic(adj).tolist() == expected
    assert expected[0]
    if all(expected):
        order = topological_order(adj)
        for a, o in zip(adj, order):
            assert sorted(o.tolist()) == list(range(d))
            rank = torch.empty_like(o)
            rank[o] = torch.arange(d)
            for i, j in (a != 0).nonzero().tolist():
                assert rank[i] < rank[j]


def test_topological_order_batch_shape_and_levels():
    adj = torch.zeros(2, 3, 4, 4)
    adj[..., 3, 0] = 1.0  # 3 -> 0
    adj[..., 0, 2] = 1.0  # 0 -> 2
    order = topological_order(adj)
    assert order.shape == (2, 3, 4)
    assert order[0, 0].tolist() == [1, 3, 0, 2]


def test_topological_order_raises_on_cycles():
    adj = torch.zeros(3, 3, 3)
    adj[1, 0, 1] = adj[1, 1, 0] = 1.0
    with pytest.raises(ValueError, match=r"batch index \[\[1\]\] have cycles"):
        topological_order(adj)


def test_non_square_input_is_a_value_error():
    with pytest.raises(ValueError, match="square adjacency"):
        is_acyclic(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="square adjacency"):
        is_acyclic(torch.zeros(3))


@pytest.mark.parametrize("d", range(0, 6))
def test_enumerate_dags_counts_and_uniqueness(d):
    dags = enumerate_dags(d)
    assert len(dags) == NUM_DAGS[d]
    assert is_acyclic(dags).all()
    assert len({tuple(a.flatten().tolist()) for a in dags}) == len(dags)


def test_enumerate_dags_matches_brute_force_on_3_nodes():
    off = [(i, j) for i in range(3) for j in range(3) if i != j]
    brute = set()
    for bits in itertools.product([0, 1], repeat=len(off)):
        a = torch.zeros(3, 3)
        for b, (i, j) in zip(bits, off):
            a[i, j] = b
        if nx.is_directed_acyclic_graph(_nx(a)):
            brute.add(tuple(a.flatten().tolist()))
    assert brute == {tuple(a.flatten().tolist()) for a in enumerate_dags(3)}
    with pytest.raises(ValueError, match="d <= 5"):
        enumerate_dags(6)


def test_to_networkx_sample_and_probabilities():
    probs = torch.tensor([[0.0, 0.9, 0.3], [0.1, 0.0, 0.6], [0.0, 0.0, 0.0]])
    weights = torch.tensor([[0.0, 2.0, -1.0], [0.5, 0.0, 3.0], [0.0, 0.0, 0.0]])
    g = to_networkx(probs, threshold=0.5, weights=weights, node_names=["a", "b", "c"])
    assert isinstance(g, nx.DiGraph)
    assert sorted(g.nodes) == ["a", "b", "c"]
    assert sorted(g.edges) == [("a", "b"), ("b", "c")]
    assert g["a"]["b"]["probability"] == pytest.approx(0.9)
    assert g["b"]["c"]["weight"] == pytest.approx(3.0)
    full = to_networkx(probs)
    assert full.number_of_edges() == 4
    sample = to_networkx((probs > 0.5).float())
    assert all(data["probability"] == 1.0 for *_, data in sample.edges(data=True))
    assert "weight" not in sample[0][1]


def test_to_networkx_errors():
    with pytest.raises(ValueError, match="one graph"):
        to_networkx(torch.zeros(2, 3, 3))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_networkx(torch.full((2, 2), 2.0))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_networkx(torch.full((2, 2), float("nan")))
    with pytest.raises(ValueError, match="weights of shape"):
        to_networkx(torch.zeros(2, 2), weights=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="distinct node names"):
        to_networkx(torch.zeros(2, 2), node_names=["a", "a"])
