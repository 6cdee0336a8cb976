"""The consensus DAG of edge probabilities (:func:`consensus_adjacency`), shared by
:class:`~pyrostruct.causal.CausalResult` and :class:`~pyrostruct.causal.ExactPosterior`."""

from __future__ import annotations

import networkx as nx
import numpy as np

__all__ = ["consensus_adjacency"]


def consensus_adjacency(probs: np.ndarray, threshold: float, precedes=None) -> np.ndarray:
    """Acyclic consensus DAG of edge probabilities ``(d, d)``.

    A node pair enters when it is adjacent with probability ``P(i -> j) + P(j ->
    i) >= threshold`` and its more probable direction is also more probable
    than no edge; it enters in that direction. Pairs are added from the most
    probable down. A pair whose direction would close a cycle is added the
    other way round (which cannot close one) if that direction is more probable
    than no edge, else left out: per pair, the choice that errs least often.
    Splitting the adjacency from the direction keeps an edge whose direction is
    uncertain, such as a reversible edge of a Markov equivalence class at about
    0.5 each way. ``precedes`` ``(d, d)`` (background knowledge, ``i`` before ``j``) joins
    the cycle check, so the graph keeps every order the knowledge requires.
    """
    d = probs.shape[0]
    adj = np.zeros((d, d), dtype=np.int64)
    graph = nx.DiGraph()
    graph.add_nodes_from(range(d))
    if precedes is not None:
        graph.add_edges_from(zip(*np.nonzero(precedes)))
    both = probs + probs.T
    rows, cols = np.nonzero(np.triu(both >= threshold, k=1))
    candidates = []
    for i, j in zip(rows.tolist(), cols.tolist()):
        if probs[j, i] > probs[i, j]:
            i, j = j, i
        if probs[i, j] <= 1.0 - both[i, j]:
            continue
        candidates.append((both[i, j], probs[i, j], i, j))
    for _, _, i, j in sorted(candidates, key=lambda t: (-t[0], -t[1], t[2], t[3])):
        if nx.has_path(graph, j, i):
            if probs[j, i] <= 1.0 - both[i, j]:
                continue
            i, j = j, i
        graph.add_edge(i, j)
        adj[i, j] = 1
    return adj
