"""Graph utilities for adjacency tensors: acyclicity, topological order, networkx, CPDAGs.

Adjacency convention (everywhere in pyrostruct): ``A[..., i, j] != 0`` means the
edge ``i -> j``. The torch functions are batched over leading dimensions and
never loop over nodes in Python: they peel all current sources at once
(parallel Kahn's algorithm, Kahn 1962), one round per level of the DAG.

Markov equivalence (:func:`cpdag`, :func:`markov_equivalent`) lives here, below
:mod:`pyrostruct.causal` and :mod:`pyrostruct.selection`, which both use it;
uniform members and class sizes are in :mod:`pyrostruct.causal.equivalence`.

References:

[1] A. B. Kahn, "Topological sorting of large networks", Communications of
    the ACM, 1962.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import networkx as nx
import numpy as np
import torch

from pyrostruct.errors import InputError

__all__ = [
    "is_acyclic",
    "topological_order",
    "to_networkx",
    "node_link_data",
    "node_link_graph",
    "enumerate_dags",
    "NUM_DAGS",
    "as_dag",
    "as_dags",
    "cpdag",
    "cpdag_edge_labels",
    "markov_equivalent",
]

#: Number of labelled DAGs on n nodes, n = 0..6 (OEIS A003024).
NUM_DAGS = (1, 1, 3, 25, 543, 29281, 3781503)


def _check_square(adj: torch.Tensor, name: str = "adjacency") -> None:
    if not isinstance(adj, torch.Tensor):
        raise ValueError(f"Expected {name} to be a torch.Tensor, got {type(adj).__name__}.")
    if adj.dim() < 2 or adj.shape[-1] != adj.shape[-2]:
        raise ValueError(
            f"Expected a square {name} of shape (..., d, d), got shape {tuple(adj.shape)}. "
            f"Pass one row and one column per node."
        )


def _levels(adj: torch.Tensor) -> torch.Tensor:
    """Level of each node (0 = source; d = on or downstream of a cycle)."""
    d = adj.shape[-1]
    batch = adj.shape[:-2]
    a = (adj != 0).reshape(-1, d, d).to(torch.float32 if d < (1 << 24) else torch.float64)
    indeg = a.sum(-2)  # (N, d)
    level = torch.full(indeg.shape, d, dtype=torch.long, device=adj.device)
    removed = torch.zeros(indeg.shape, dtype=torch.bool, device=adj.device)
    for step in range(d):
        sources = (indeg == 0) & ~removed
        if not bool(sources.any()):
            break
        level[sources] = step
        removed |= sources
        indeg = indeg - torch.bmm(sources.unsqueeze(-2).to(a.dtype), a).squeeze(-2)
    return level.reshape(batch + (d,))


def is_acyclic(adj: torch.Tensor) -> torch.Tensor:
    """Batched acyclicity check: ``True`` where the graph ``adj[..., :, :]`` is a DAG.

    :param torch.Tensor adj: adjacency matrices of shape ``(..., d, d)``; any
        non-zero entry is an edge (self-loops are cycles).
    :returns: a bool tensor of shape ``(...)``.
    :rtype: torch.Tensor

    Example::

        >>> is_acyclic(torch.tensor([[0., 1.], [0., 0.]])).item()
        True
        >>> is_acyclic(torch.tensor([[0., 1.], [1., 0.]])).item()
        False
    """
    _check_square(adj)
    d = adj.shape[-1]
    if d == 0:
        return torch.ones(adj.shape[:-2], dtype=torch.bool, device=adj.device)
    return (_levels(adj) < d).all(-1)


def topological_order(adj: torch.Tensor) -> torch.Tensor:
    """Batched topological order: ``order[..., k]`` is the node at position k.

    Nodes are ordered by level (sources first), ties by index, so every edge
    ``i -> j`` has ``i`` before ``j``.

    :param torch.Tensor adj: adjacency matrices of shape ``(..., d, d)``.
    :returns: a long tensor of shape ``(..., d)``.
    :rtype: torch.Tensor
    :raises ValueError: if any graph in the batch has a cycle, or ``adj`` is not a
        square tensor.

    Example::

        >>> topological_order(torch.tensor([[0., 0.], [1., 0.]])).tolist()
        [1, 0]
    """
    _check_square(adj)
    d = adj.shape[-1]
    level = _levels(adj)
    if bool((level >= d).any()):
        bad = (~(level < d).all(-1)).nonzero().tolist()
        raise ValueError(
            f"topological_order needs acyclic graphs; the graphs at batch index {bad[:5]} "
            f"have cycles (check with is_acyclic first)."
        )
    return torch.sort(level, dim=-1, stable=True).indices


def to_networkx(
    matrix: torch.Tensor,
    *,
    threshold: float = 0.0,
    weights: torch.Tensor | None = None,
    node_names: Sequence | None = None,
) -> nx.DiGraph:
    """Convert one adjacency sample or edge-probability matrix to a ``networkx.DiGraph``.

    The edge ``i -> j`` is included when ``matrix[i, j] > threshold``; it gets
    the attribute ``probability = matrix[i, j]`` (1.0 for a hard sample) and,
    when ``weights`` is given, ``weight = weights[i, j]``. A thresholded
    probability matrix need not be acyclic; check with ``nx.is_directed_acyclic_graph``.

    :param torch.Tensor matrix: a 0/1 sample or edge probabilities, shape
        ``(d, d)``, entries in ``[0, 1]``.
    :param float threshold: keep the edges whose entry exceeds it (default 0.0).
    :param torch.Tensor weights: optional edge weights of shape ``(d, d)``.
    :param node_names: the nodes' labels (default ``range(d)``).
    :type node_names: sequence of d distinct hashables
    :rtype: networkx.DiGraph
    :raises ValueError: for a matrix that is not one square tensor, entries
        outside ``[0, 1]``, or ``weights`` or ``node_names`` of the wrong size.

    Example::

        >>> g = to_networkx(torch.tensor([[0.0, 0.9], [0.2, 0.0]]), threshold=0.5)
        >>> list(g.edges(data=True))
        [(0, 1, {'probability': 0.8999999761581421})]
    """
    _check_square(matrix, "matrix")
    if matrix.dim() != 2:
        raise ValueError(
            f"to_networkx converts one graph; got a batch of shape {tuple(matrix.shape)}. "
            f"Index a single sample, or average samples into edge probabilities first."
        )
    m = matrix.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(m).all()) or bool((m < 0).any()) or bool((m > 1).any()):
        raise ValueError("Expected matrix entries in [0, 1] (a 0/1 sample or edge probabilities).")
    d = m.shape[-1]
    if weights is not None:
        if not isinstance(weights, torch.Tensor) or tuple(weights.shape) != (d, d):
            got = tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights)
            raise ValueError(f"Expected weights of shape {(d, d)}, got {got}.")
        w = weights.detach().to("cpu", torch.float64)
    names = list(range(d)) if node_names is None else list(node_names)
    if len(names) != d or len(set(names)) != d:
        raise ValueError(f"Expected {d} distinct node names, got {len(names)}: {names[:10]}")
    graph = nx.DiGraph()
    graph.add_nodes_from(names)
    for i, j in (m > threshold).nonzero().tolist():
        attrs = {"probability": float(m[i, j])}
        if weights is not None:
            attrs["weight"] = float(w[i, j])
        graph.add_edge(names[i], names[j], **attrs)
    return graph


@cache
def _enumerate_dags_cached(d: int) -> torch.Tensor:
    import itertools

    if d == 0:
        return torch.zeros(1, 0, 0, dtype=torch.uint8)
    pairs = [(i, j) for i in range(d) for j in range(d) if i < j]
    n_pairs = len(pairs)
    # all subsets of the forward pairs of the identity order ...
    bits = (torch.arange(1 << n_pairs).unsqueeze(-1) >> torch.arange(n_pairs)) & 1
    upper = torch.zeros(1 << n_pairs, d, d, dtype=torch.uint8)
    if n_pairs:
        rows = torch.tensor([p[0] for p in pairs])
        cols = torch.tensor([p[1] for p in pairs])
        upper[:, rows, cols] = bits.to(torch.uint8)
    # ... relabelled by every permutation, deduplicated
    allp = []
    for perm in itertools.permutations(range(d)):
        p = torch.tensor(perm, dtype=torch.long)
        allp.append(upper[:, p][:, :, p])
    flat = torch.cat(allp).reshape(-1, d * d)
    return torch.unique(flat, dim=0).reshape(-1, d, d)


def enumerate_dags(d: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """All labelled DAGs on ``d <= 5`` nodes, shape ``(NUM_DAGS[d], d, d)`` (a test oracle)."""
    if not 0 <= d <= 5:
        raise ValueError(f"enumerate_dags supports 0 <= d <= 5 nodes (29281 DAGs), got d = {d}.")
    return _enumerate_dags_cached(d).to(dtype)


def node_link_data(graph: nx.DiGraph) -> dict:
    """``networkx.node_link_data`` with the edge list under ``"edges"``, on every networkx 3.x.

    networkx 3.4 renamed the keyword that names the edge list (``link=`` became
    ``edges=``; 3.0-3.3 know only ``link=``). The result reads back with
    ``networkx.node_link_graph(data, edges="edges")`` (``link="edges"`` before 3.4).
    """
    try:
        return nx.node_link_data(graph, edges="edges")
    except TypeError:  # networkx < 3.4
        return nx.node_link_data(graph, link="edges")


def node_link_graph(data: dict) -> nx.DiGraph:
    """Read :func:`node_link_data`'s output (a saved result) back, on every networkx 3.x."""
    try:
        return nx.node_link_graph(data, edges="edges")
    except TypeError:  # networkx < 3.4
        return nx.node_link_graph(data, link="edges")


# ---------------------------------------------------------------------------
# Markov equivalence (numpy)


def as_dags(adj) -> np.ndarray:
    """Boolean ``(S, d, d)`` (or ``(d, d)``) numpy adjacency of DAGs.

    :raises InputError: not square, or self-loops (cycles are found by the callers).
    """
    a = np.asarray(adj)
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise InputError(f"expected a square (d, d) adjacency matrix, got shape {a.shape}")
    a = a != 0
    if np.diagonal(a, axis1=-2, axis2=-1).any():
        raise InputError("adjacency has self-loops; expected a DAG")
    return a


def _dag_levels(a: np.ndarray) -> np.ndarray:
    """Level of every node of DAGs ``(S, d, d)`` (0 = no parents), all DAGs at once
    (:func:`_levels`); a one-line error for a cycle."""
    level = _levels(torch.from_numpy(a)).numpy()
    if (level >= a.shape[-1]).any():
        raise InputError("adjacency has a directed cycle; expected a DAG")
    return level


def cpdag_edge_labels(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Chickering's Find-Compelled on boolean DAGs ``(S, d, d)`` (checked by :func:`as_dags`).

    Returns boolean ``(compelled, reversible)`` ``(S, d, d)``: every edge of each DAG is
    in exactly one of the two (Chickering, "A transformational characterization of
    equivalent Bayesian network structures", UAI 1995). Computed in chunks of DAGs
    that keep the temporaries small; all nodes of one level of all DAGs at once.

    :raises InputError: a DAG with a directed cycle.
    """
    s, d, _ = a.shape
    chunk = max(1, 2**22 // max(d * d, 1))
    parts = [_label_chunk(a[k : k + chunk]) for k in range(0, s, chunk)]
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _label_chunk(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`cpdag_edge_labels` of one chunk.

    The algorithm visits the edges into each node ``y`` from its highest-ranked
    parent ``x`` in a topological order, and that first edge settles all edges
    into ``y``: if a compelled ``w -> x`` has ``w`` not adjacent to ``y``, every
    edge into ``y`` is compelled; otherwise each such ``w -> y`` is, and the rest
    are compelled if some parent ``z`` of ``y`` is not adjacent to ``x`` (a
    v-structure), reversible if not. The edges into ``y`` depend only on labels
    of edges into lower levels, so all nodes of one level, in all DAGs, are
    labelled together.
    """
    s, d, _ = a.shape
    level = _dag_levels(a)
    rank = level * d + np.arange(d)
    x = np.argmax(np.where(a, rank[:, :, None], -1), axis=1)  # highest-ranked parent
    a_x = np.take_along_axis(a, np.broadcast_to(x[:, None, :], a.shape), axis=2)  # a[s, z, x]
    not_x = np.arange(d)[None, :, None] != x[:, None, :]
    v_structure = (a & ~a_x & not_x).any(1)  # z -> y <- x, z and x not adjacent
    has_parent = a.any(1)
    compelled = np.zeros_like(a)
    reversible = np.zeros_like(a)
    for depth in range(1, int(level.max()) + 1 if level.size else 1):
        s_idx, y_idx = np.nonzero((level == depth) & has_parent)  # the nodes y of this level
        parents = a[s_idx, :, y_idx]  # (K, d)
        w = compelled[s_idx, :, x[s_idx, y_idx]]  # compelled w -> x
        shielded_chain = (w & ~parents).any(1)  # w -> x -> y, w and y not adjacent
        all_compelled = shielded_chain | v_structure[s_idx, y_idx]
        into_y = np.where(all_compelled[:, None], parents, w)
        compelled[s_idx, :, y_idx] = into_y
        reversible[s_idx, :, y_idx] = parents & ~into_y
    return compelled, reversible


def as_dag(adj) -> np.ndarray:
    """:func:`as_dags` of a single DAG ``(d, d)``."""
    a = as_dags(adj)
    if a.ndim != 2:
        raise InputError(f"expected a square (d, d) adjacency matrix, got shape {a.shape}")
    return a


def cpdag(adj) -> np.ndarray:
    """CPDAG of a DAG ``(d, d)``: compelled edges one way, reversible edges both ways.

    Example::

        >>> cpdag([[0, 1, 0], [0, 0, 1], [0, 0, 0]]).tolist()  # a chain: all reversible
        [[0, 1, 0], [1, 0, 1], [0, 1, 0]]
        >>> cpdag([[0, 0, 1], [0, 0, 1], [0, 0, 0]]).tolist()  # a v-structure: compelled
        [[0, 0, 1], [0, 0, 1], [0, 0, 0]]
    """
    compelled, reversible = cpdag_edge_labels(as_dag(adj)[None])
    return (compelled[0] | reversible[0] | reversible[0].T).astype(np.int64)


def markov_equivalent(adj1, adj2) -> bool:
    """Whether two DAGs ``(d, d)`` over the same nodes are Markov equivalent.

    Two DAGs are Markov equivalent when they have the same skeleton and the same
    v-structures (Verma & Pearl, "Equivalence and synthesis of causal models",
    1990), that is when their CPDAGs (:func:`cpdag`) are equal.

    Example::

        >>> markov_equivalent([[0, 1, 0], [0, 0, 1], [0, 0, 0]], [[0, 0, 0], [1, 0, 0], [0, 1, 0]])
        True
        >>> markov_equivalent([[0, 1, 0], [0, 0, 1], [0, 0, 0]], [[0, 1, 0], [0, 0, 0], [0, 1, 0]])
        False
    """
    a, b = as_dag(adj1), as_dag(adj2)
    if a.shape != b.shape:
        raise InputError(f"expected two DAGs over the same nodes, got shapes {a.shape}, {b.shape}")
    return bool(np.array_equal(cpdag(a), cpdag(b)))
