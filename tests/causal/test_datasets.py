"""Synthetic graphs and SEMs: seeded, acyclic, the right density and interventions."""

import networkx as nx
import numpy as np
import pytest

from pyrostruct.causal import datasets
from pyrostruct.errors import InputError


@pytest.mark.parametrize("graph", ["ER", "SF"])
def test_random_dags_are_acyclic_seeded_and_about_right_density(graph):
    d = 50
    adj = datasets.random_dag(d, graph, 2, seed=3)
    assert adj.shape == (d, d) and adj.dtype == np.int64
    assert nx.is_directed_acyclic_graph(nx.DiGraph(adj))
    assert np.all(np.diag(adj) == 0)
    assert np.array_equal(adj, datasets.random_dag(d, graph, 2, seed=3))
    assert not np.array_equal(adj, datasets.random_dag(d, graph, 2, seed=4))
    # ER2 / SF2 have about 2 d edges
    assert 1.4 * d <= adj.sum() <= 2.6 * d
    # labels are shuffled: not upper triangular
    assert np.tril(adj).sum() > 0


def test_scale_free_has_hubs_with_large_in_degree():
    adj = datasets.scale_free_dag(200, 2, seed=0)
    assert adj.sum(0).max() >= 15  # a hub
    assert adj.sum(1).max() <= 2  # each node points to its m targets only


def test_linear_sem_matches_its_weights_and_noise():
    rng = np.random.default_rng(0)
    w = np.array([[0.0, 1.5, 0.0], [0.0, 0.0, -2.0], [0.0, 0.0, 0.0]])
    x, mask = datasets.simulate_linear_sem(w, 20000, noise="equal", seed=rng)
    assert not mask.any()
    beta = np.linalg.lstsq(x[:, [0]], x[:, 1], rcond=None)[0]
    assert beta[0] == pytest.approx(1.5, abs=0.05)
    resid = x[:, 2] - (-2.0) * x[:, 1]
    assert resid.std() == pytest.approx(1.0, abs=0.03)


def test_nonequal_noise_scales_differ():
    w = np.zeros((4, 4))
    x, _ = datasets.simulate_linear_sem(w, 5000, noise="nonequal", seed=1)
    sd = x.std(0)
    assert sd.max() - sd.min() > 0.1 and np.all((sd > 0.45) & (sd < 1.55))


def test_interventions_cut_incoming_edges():
    w = np.array([[0.0, 2.0], [0.0, 0.0]])
    x, mask = datasets.simulate_linear_sem(w, 3000, interventions=[[1]], seed=2)
    assert mask[:1500, 1].sum() == 0 and mask[1500:, 1].all() and not mask[:, 0].any()
    obs, do = ~mask[:, 1], mask[:, 1]
    assert abs(np.corrcoef(x[obs, 0], x[obs, 1])[0, 1]) > 0.8
    assert abs(np.corrcoef(x[do, 0], x[do, 1])[0, 1]) < 0.1


def test_make_dataset_linear_and_nonlinear_are_seeded():
    a = datasets.make_dataset(d=6, n=50, sem="mlp", noise="nonequal", seed=5)
    b = datasets.make_dataset(d=6, n=50, sem="mlp", noise="nonequal", seed=5)
    assert a.data.equals(b.data) and np.array_equal(a.adjacency, b.adjacency)
    assert a.weights is None and a.names == [f"X{j}" for j in range(6)]
    lin = datasets.make_dataset(d=6, n=50, graph="SF", seed=5, interventions=[[0, 1]])
    assert np.array_equal(lin.weights != 0, lin.adjacency != 0)
    col = lin.intervention_column()
    assert col[0] == "" and col[-1] == "X0;X1"


def test_bad_arguments_raise_input_error():
    with pytest.raises(InputError, match="graph type"):
        datasets.random_dag(5, "XX")
    with pytest.raises(InputError, match="sem"):
        datasets.make_dataset(d=3, n=10, sem="quadratic")
    with pytest.raises(InputError, match="node 7"):
        datasets.simulate_linear_sem(np.zeros((3, 3)), 10, interventions=[[7]])


@pytest.mark.parametrize(
    "spec, match",
    [
        (["12"], "list of node indices"),  # was split into nodes 1 and 2
        ([["X0"]], "node indices"),  # a raw ValueError
        ([0, 1], "list of regimes"),  # a raw TypeError
        ([[1.7]], "node indices"),  # read as node 1
        ([[True]], "node indices"),  # read as node 1
    ],
)
def test_bad_intervention_regimes_are_refused(spec, match):
    """Hostile sweep: these were misread silently or raised raw exceptions."""
    with pytest.raises(InputError, match=match):
        datasets.make_dataset(d=3, n=30, interventions=spec)


def test_too_few_rows_for_the_regimes_are_refused():
    with pytest.raises(InputError, match="rows"):
        datasets.make_dataset(d=3, n=2, interventions=[[0], [1]])

