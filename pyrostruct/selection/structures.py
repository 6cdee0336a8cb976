"""Evidence of candidate causal DAGs under a linear-Gaussian SEM with non-equal noise variances.

For a DAG ``G`` over ``d`` standardized variables, node ``j`` with parents
``pa(j)`` (``p_j`` of them) follows

.. math::

    \\sigma_j^2 \\sim \\mathrm{InvGamma}\\Big(\\frac{\\nu - d + p_j + 1}{2},
        \\frac{c}{2}\\Big),\\quad
    \\beta_j \\mid \\sigma_j^2 \\sim N(0, \\sigma_j^2 c^{-1} I),\\quad
    x_{ij} \\sim N(x_{i,\\mathrm{pa}(j)}^\\top \\beta_j, \\sigma_j^2).

These are the node-wise priors that an inverse-Wishart ``IW(nu, c I)`` prior on
the joint covariance induces on every DAG's parameters (Geiger & Heckerman,
"Parameter priors for directed acyclic graphical models and the
characterization of several probability distributions", 2002; Kuipers, Moffa
& Heckerman, "Addendum on the scoring of Gaussian directed acyclic graphical
models", 2014). With them, Markov-equivalent DAGs get *exactly* the same
evidence from observational data (score equivalence, the BGe score), so a
difference in estimated evidence between equivalent DAGs is Monte Carlo error;
:func:`dag_log_evidence` gives the closed form to check estimators against.

Perfect interventions (``intervention_mask[i, j] = True``: node ``j`` was set
from outside in row ``i``) drop node ``j``'s mechanism from that row's
likelihood (Cooper & Yoo, "Causal discovery from a mixture of experimental and
observational data", 1999). Equivalent DAGs then explain the data differently
and interventional data break the tie.

The per-node likelihood is written here rather than taken from
:class:`pyrostruct.causal.sem.LinearGaussianSEM`: that SEM keeps its noise
scales as point parameters and its weight priors independent of the noise, so
its evidence would not be score-equivalent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import networkx as nx
import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer.autoguide import AutoMultivariateNormal
from pyro.infer.autoguide.initialization import init_to_median

from pyrostruct.data import check_table
from pyrostruct.errors import InputError
from pyrostruct.graph import markov_equivalent
from pyrostruct.infer.bge import bge_hyperparameters, bge_local_scores
from pyrostruct.selection.select import Candidate, select

__all__ = [
    "dag_candidate",
    "dag_log_evidence",
    "are_markov_equivalent",
    "select_structures",
]


def _parents(graph: nx.DiGraph, nodes: Sequence) -> list[list[int]]:
    index = {node: i for i, node in enumerate(nodes)}
    return [[index[p] for p in graph.predecessors(node)] for node in nodes]


def _check_graph(graph, nodes: Sequence, name="graph") -> nx.DiGraph:
    if not isinstance(graph, nx.DiGraph):
        raise InputError(f"{name}: expected a networkx.DiGraph, got {type(graph).__name__}")
    if not nx.is_directed_acyclic_graph(graph):
        cycle = nx.find_cycle(graph)
        raise InputError(f"{name}: not acyclic (cycle {cycle}); candidates must be DAGs")
    extra = [v for v in graph.nodes if v not in set(nodes)]
    if extra:
        raise InputError(f"{name}: node {extra[0]!r} is not a data column; columns are {nodes}")
    full = nx.DiGraph(graph)
    full.add_nodes_from(nodes)
    return full


def dag_candidate(
    graph: nx.DiGraph,
    nodes: Sequence,
    *,
    prior_df: float | None = None,
    prior_scale: float = 1.0,
) -> Candidate:
    """A :class:`~pyrostruct.selection.Candidate` for one DAG (model ``model(data, mask=None)``).

    Latent sites: ``var`` (noise variance per node, ``(d,)``) and ``beta`` (one
    weight per edge, in the order of the nodes' parents); observed: ``x``
    (rows, each a ``d``-vector).

    ``nodes`` orders the data columns; ``data`` is ``(n, d)`` (standardized),
    ``mask`` an optional ``(n, d)`` boolean intervention mask. The guide is a
    full-rank Gaussian (:class:`~pyro.infer.autoguide.AutoMultivariateNormal`),
    which holds the Normal-inverse-gamma posterior's correlations.
    """
    nodes = list(nodes)
    graph = _check_graph(graph, nodes)
    parents = _parents(graph, nodes)
    d = len(nodes)
    nu, c = bge_hyperparameters(d, prior_df, prior_scale)

    src = [i for j in range(d) for i in parents[j]]
    child = torch.zeros(len(src), d)
    for e, node in enumerate(j for j in range(d) for _ in parents[j]):
        child[e, node] = 1.0
    shapes = torch.tensor([(nu - d + len(pa) + 1) / 2 for pa in parents])

    def model(data, mask=None):
        # one site for all noise variances, one for all edge weights, one for the data
        var = pyro.sample("var", dist.InverseGamma(shapes, torch.full((d,), c / 2)).to_event(1))
        mean = torch.zeros(data.shape)
        if src:
            edge_sd = (var[..., child.argmax(-1)] / c).sqrt()
            beta = pyro.sample("beta", dist.Normal(0.0, edge_sd).to_event(1))
            mean = (data[:, src] * beta) @ child
        with pyro.plate("rows", data.shape[0], dim=-1):
            likelihood = dist.Normal(mean, var.sqrt())
            if mask is not None:
                likelihood = likelihood.mask(~mask)
            pyro.sample("x", likelihood.to_event(1), obs=data)

    def guide_factory(model):
        return AutoMultivariateNormal(model, init_loc_fn=init_to_median(num_samples=15))

    return Candidate(model=model, guide_factory=guide_factory, lr=0.03)


def dag_log_evidence(
    data,
    graph: nx.DiGraph,
    nodes: Sequence | None = None,
    *,
    mask=None,
    prior_df: float | None = None,
    prior_scale: float = 1.0,
) -> float:
    """Exact ``log p(X | G)`` of :func:`dag_candidate`'s model (Normal-inverse-gamma
    regressions): the sum of every node's BGe term given its parents
    (:func:`pyrostruct.infer.bge.bge_local_scores`), each on the rows where the node is
    not intervened on."""
    x = torch.as_tensor(np.asarray(data), dtype=torch.float64)
    n, d = x.shape
    nodes = list(range(d)) if nodes is None else list(nodes)
    graph = _check_graph(graph, nodes)
    nu, c = bge_hyperparameters(d, prior_df, prior_scale)
    keep = (
        torch.ones(n, d, dtype=torch.bool)
        if mask is None
        else ~torch.as_tensor(np.asarray(mask), dtype=torch.bool)
    )
    total = 0.0
    for j, pa in enumerate(_parents(graph, nodes)):
        rows = x[keep[:, j]]
        total += float(bge_local_scores(rows.T @ rows, len(rows), j, [pa], nu=nu, c=c)[0])
    return total


def are_markov_equivalent(g1: nx.DiGraph, g2: nx.DiGraph) -> bool:
    """Same skeleton and same v-structures (Verma & Pearl, "Equivalence and synthesis of
    causal models", 1990): equal CPDAGs (:func:`pyrostruct.graph.markov_equivalent`).

    Graphs over different node sets are not equivalent.

    :raises InputError: a graph with a directed cycle or a self-loop.
    """
    if set(g1.nodes) != set(g2.nodes):
        return False
    nodes = list(g1.nodes)
    return markov_equivalent(
        nx.to_numpy_array(g1, nodelist=nodes, weight=None),
        nx.to_numpy_array(g2, nodelist=nodes, weight=None),
    )


def select_structures(
    data,
    graphs: Mapping | Sequence,
    *,
    intervention_mask=None,
    prior_df: float | None = None,
    prior_scale: float = 1.0,
    standardize: bool = True,
    **select_kwargs,
):
    """Rank candidate DAGs by their log evidence with :func:`~pyrostruct.selection.select`.

    :param data: shape ``(n, d)``; columns are the variables (a DataFrame's
        column names are the node names; otherwise nodes are ``0..d-1``).
    :type data: pandas.DataFrame or array
    :param graphs: the candidates, ``{name: networkx.DiGraph}``, or a list of
        DiGraphs (named 0, 1, ...).
    :type graphs: mapping or sequence
    :param intervention_mask: optional, bool array ``(n, d)``: ``True`` where a
        node was set by a perfect intervention in that row.
    :param prior_df: ``nu`` of the inverse-Wishart prior (see the module
        docstring); must exceed ``d - 1``; default ``d + 2``.
    :type prior_df: float, optional
    :param float prior_scale: ``c`` of the inverse-Wishart prior (> 0, default 1).
    :param bool standardize: give each column mean 0 and variance 1 first (the
        prior assumes it).
    :param select_kwargs: passed to :func:`~pyrostruct.selection.select`.
    :returns: the result of :func:`~pyrostruct.selection.select` over the graphs.
    :rtype: ~pyrostruct.selection.SelectionResult
    :raises InputError: for bad data, no graphs, a graph that is not a DAG over
        the data's columns, or an ``intervention_mask`` of another shape.
    """
    import pandas as pd

    array, names = check_table(data, min_rows=3, min_cols=1, name="data")
    nodes = names if isinstance(data, pd.DataFrame) else list(range(array.shape[1]))
    if not isinstance(graphs, Mapping):
        graphs = dict(enumerate(graphs))
    if not graphs:
        raise InputError("no candidate graphs given")
    if standardize:
        array = (array - array.mean(0)) / array.std(0)
    x = torch.tensor(array, dtype=torch.get_default_dtype())
    mask = None
    if intervention_mask is not None:
        mask = torch.as_tensor(np.asarray(intervention_mask), dtype=torch.bool)
        if mask.shape != x.shape:
            raise InputError(
                f"intervention_mask has shape {tuple(mask.shape)}, expected {tuple(x.shape)} "
                "(one entry per row and column)"
            )
    candidates = {
        name: dag_candidate(
            _check_graph(g, nodes, name=f"graph {name!r}"),
            nodes,
            prior_df=prior_df,
            prior_scale=prior_scale,
        )
        for name, g in graphs.items()
    }
    if mask is None:
        return select(candidates, x, **select_kwargs)
    return select(candidates, x, mask, **select_kwargs)
