"""Writers behind :meth:`CausalResult.save <pyrostruct.causal.CausalResult.save>`: the
consensus graph, or its CPDAG, as node-link JSON, GraphML, Graphviz DOT, an edge-list
CSV, and causal-learn's ``GeneralGraph``.

Every format holds the same graph, :meth:`CausalResult.to_networkx
<pyrostruct.causal.CausalResult.to_networkx>`: a ``networkx.DiGraph`` whose edges carry
``probability`` (``P(cause -> effect)``) and ``weight``. With ``cpdag=True`` it is the
CPDAG of the consensus DAG (its interventional essential graph when the result has
intervention targets, Hauser & Bühlmann 2012): an edge whose direction the data cannot
identify is *undirected*, stored both ways (the pyrostruct and pcalg convention ``C[i,
j] = C[j, i] = 1``), each direction with its own probability and weight and
``undirected=True``; every other edge has ``undirected=False``.

==========  ============================  ====================================================
format      suffixes                      reads back with
==========  ============================  ====================================================
``json``    ``.json`` (and any unknown)   :func:`pyrostruct.graph.node_link_graph`,
                                          :func:`~pyrostruct.causal.load_result`
``graphml`` ``.graphml``                  ``networkx.read_graphml`` (Gephi, Cytoscape, yEd)
``dot``     ``.dot``, ``.gv``             Graphviz (``dot -Tpng``), ``pydot``
``csv``     ``.csv``                      ``pandas.read_csv(path, dtype={"cause": str,
                                          "effect": str}, keep_default_na=False,
                                          float_precision="round_trip")``
==========  ============================  ====================================================

DOT writes an undirected edge once, ``"A" -> "B" [dir=none, undirected=true, ...]``
(``A`` the earlier node), with ``reverse_probability`` and ``reverse_weight`` for
``B -> A``, so that Graphviz draws one line. The CSV has one row per edge of the
graph (an undirected edge: two rows), columns ``cause,effect,probability,weight`` and
``undirected`` for a CPDAG; ``all_pairs=True`` lists instead every ordered pair with
``P(cause -> effect) > 0``, most probable first, with a ``consensus`` column that says
whether the edge is in the graph.

Files are written atomically with ordinary permissions (:mod:`pyrostruct._io`) and
never hold NaN or infinity: a non-finite value is refused before anything is written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np

from pyrostruct import __version__
from pyrostruct._io import atomic_open, atomic_write_json, check_finite_json
from pyrostruct.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "FORMATS",
    "SUFFIXES",
    "output_format",
    "save",
    "edge_table",
    "dot_source",
    "to_general_graph",
]

#: The formats :meth:`CausalResult.save` writes.
FORMATS = ("json", "graphml", "dot", "csv")

#: The format a file suffix names (lower case); any other suffix is JSON.
SUFFIXES = {".json": "json", ".graphml": "graphml", ".dot": "dot", ".gv": "dot", ".csv": "csv"}


def output_format(
    path: str | os.PathLike,
    format: str | None = None,
    *,
    path_name: str = "path",
    format_name: str = "format",
) -> str:
    """The format to write ``path`` in: ``format`` if given, else the one its suffix
    names (:data:`SUFFIXES`), else ``"json"``.

    :param path: the output file.
    :param str format: one of :data:`FORMATS`, or ``None`` to infer it.
    :param str path_name: what to call ``path`` in a message (the CLI: ``"--out"``).
    :param str format_name: what to call ``format`` in a message (the CLI: ``"--format"``).
    :returns: one of :data:`FORMATS`.
    :raises InputError: an unknown format, or one that contradicts a known suffix
        (``graph.json`` with ``format="csv"``); a suffix it does not know
        (``graph.txt``) takes any format.

    Example::

        >>> output_format("graph.gv"), output_format("graph.txt"), output_format("g", "csv")
        ('dot', 'json', 'csv')
    """
    suffix = Path(os.fspath(path)).suffix.lower()
    implied = SUFFIXES.get(suffix)
    if format is None:
        return implied or "json"
    if format not in FORMATS:
        raise InputError(f"{format_name} must be one of {', '.join(FORMATS)}; got {format!r}")
    if implied is not None and implied != format:
        wanted = [s for s, f in SUFFIXES.items() if f == format][0]
        raise InputError(
            f"{format_name} {format} contradicts {path_name} {os.fspath(path)}, whose suffix "
            f"{suffix} means {implied}; name the file {wanted} or leave out {format_name}"
        )
    return format


def _check_finite_graph(graph: nx.DiGraph, where: str, *, metadata: bool) -> None:
    """:class:`InputError` naming the value if the graph's edges (and with ``metadata``
    its graph attributes) hold NaN or infinity."""
    if metadata:
        check_finite_json(dict(graph.graph), f"{where}: graph")
    for u, v, attrs in graph.edges(data=True):
        check_finite_json(attrs, f"{where}: edge {u!r} -> {v!r}")


def save(
    result,
    path: str | os.PathLike,
    *,
    format: str | None = None,
    cpdag: bool = False,
    all_pairs: bool = False,
) -> str:
    """Write ``result`` to ``path`` (see :meth:`CausalResult.save`); returns the format."""
    fmt = output_format(path, format)
    if all_pairs and fmt != "csv":
        raise InputError(f"all_pairs applies to the CSV edge list only, not to {fmt}")
    if fmt == "json":
        atomic_write_json(path, result.to_json_dict(cpdag=cpdag))
    elif fmt == "csv":
        table = edge_table(result, cpdag=cpdag, all_pairs=all_pairs)
        check_finite_json(table.to_dict("list"), os.fspath(path))
        text = table.to_csv(index=False, lineterminator="\n")
        with atomic_open(path, "wb") as f:
            f.write(text.encode("utf-8"))
    else:
        graph = result.to_networkx(cpdag=cpdag)
        _check_finite_graph(graph, os.fspath(path), metadata=fmt == "graphml")
        with atomic_open(path, "wb") as f:
            if fmt == "graphml":
                nx.write_graphml(graph, f)
            else:
                f.write(dot_source(graph).encode("utf-8"))
    return fmt


def edge_table(result, *, cpdag: bool = False, all_pairs: bool = False) -> pd.DataFrame:
    """The edge list of :meth:`CausalResult.edge_table` as a DataFrame."""
    import pandas as pd

    graph = result.to_networkx(cpdag=cpdag)
    columns = ["cause", "effect", "probability", "weight"] + (["undirected"] if cpdag else [])
    if not all_pairs:
        rows = [
            [u, v, a["probability"], a["weight"]] + ([a["undirected"]] if cpdag else [])
            for u, v, a in graph.edges(data=True)
        ]
        return pd.DataFrame(rows, columns=columns)
    names, probs = result.names, np.asarray(result.edge_probs, dtype=np.float64)
    off_diagonal = ~np.eye(len(names), dtype=bool)
    pairs = [(i, j) for i, j in zip(*np.nonzero((probs > 0) & off_diagonal))]
    pairs.sort(key=lambda ij: (-probs[ij], ij))
    rows = []
    for i, j in pairs:
        u, v = names[i], names[j]
        row = [u, v, float(probs[i, j]), float(result.weights[i, j]), graph.has_edge(u, v)]
        if cpdag:
            row.append(bool(graph.has_edge(u, v) and graph.edges[u, v]["undirected"]))
        rows.append(row)
    return pd.DataFrame(rows, columns=columns[:4] + ["consensus"] + columns[4:])


def _dot_id(value) -> str:
    """A DOT quoted string: ``\\``, ``"`` and line breaks escaped (Graphviz reads ``\\\\``
    and ``\\n`` back in labels; the node's default label is its name)."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("\r", "\\r").replace("\n", "\\n") + '"'


def _dot_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return value if value == "none" else _dot_id(value)


def _dot_attrs(attrs: dict) -> str:
    return ", ".join(f"{k}={_dot_value(v)}" for k, v in attrs.items())


def dot_source(graph: nx.DiGraph) -> str:
    """Graphviz DOT text of a graph of :meth:`CausalResult.to_networkx`, written
    without ``pydot`` or ``pygraphviz``.

    Every node is listed (isolated ones too), then every edge with its
    ``probability`` and ``weight``; an undirected edge (``undirected=True`` both ways)
    once, from the earlier node, with ``dir=none`` and its reverse's
    ``reverse_probability`` and ``reverse_weight``. Graph-level metadata is left out
    (Graphviz reads names such as ``seed`` as layout settings); the JSON keeps it.

    :param networkx.DiGraph graph: the graph to write.
    :returns: the DOT text (a ``digraph``).
    :rtype: str
    """
    kind = "CPDAG of the consensus DAG" if graph.graph.get("cpdag") else "consensus DAG"
    lines = [
        f"// pyrostruct {__version__}: {kind}; edge probability = P(cause -> effect)",
        "digraph pyrostruct {",
    ]
    if graph.graph.get("cpdag"):
        lines.append("  graph [cpdag=true];")
    order = {node: k for k, node in enumerate(graph.nodes)}
    lines += [f"  {_dot_id(node)};" for node in graph.nodes]
    for u, v, attrs in graph.edges(data=True):
        attrs = dict(attrs)
        if attrs.get("undirected"):
            if order[u] > order[v]:
                continue  # written with its reverse
            back = graph.edges[v, u]
            attrs = {"dir": "none", **attrs, "reverse_probability": back.get("probability"),
                     "reverse_weight": back.get("weight")}  # fmt: skip
            attrs = {k: a for k, a in attrs.items() if a is not None}
        lines.append(f"  {_dot_id(u)} -> {_dot_id(v)} [{_dot_attrs(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_general_graph(graph: nx.DiGraph):
    """causal-learn's ``GeneralGraph`` of a graph of :meth:`CausalResult.to_networkx`:
    a directed edge ``TAIL -> ARROW``, an undirected one ``TAIL - TAIL`` (as causal-learn's
    PC and GES return CPDAGs). Node names become ``GraphNode`` names (``str``).

    :raises ImportError: causal-learn is not installed (``pip install causal-learn``).
    """
    try:
        from causallearn.graph.Edge import Edge
        from causallearn.graph.Endpoint import Endpoint
        from causallearn.graph.GeneralGraph import GeneralGraph
        from causallearn.graph.GraphNode import GraphNode
    except ImportError:
        raise ImportError(
            "converting to causal-learn's GeneralGraph needs causal-learn, which is not "
            "installed; install it with `pip install causal-learn`"
        ) from None
    nodes = {name: GraphNode(str(name)) for name in graph.nodes}
    general = GeneralGraph(list(nodes.values()))
    order = {name: k for k, name in enumerate(graph.nodes)}
    for u, v, attrs in graph.edges(data=True):
        if attrs.get("undirected"):
            if order[u] < order[v]:
                general.add_edge(Edge(nodes[u], nodes[v], Endpoint.TAIL, Endpoint.TAIL))
        else:
            general.add_edge(Edge(nodes[u], nodes[v], Endpoint.TAIL, Endpoint.ARROW))
    return general
