"""What :func:`~pyrostruct.causal.discover` returns: :class:`CausalResult`, its consensus
graph and its CPDAG, plot, JSON persistence (:func:`load_result`) and exports
(GraphML, DOT, CSV, causal-learn: :mod:`pyrostruct.causal.export`).

The consensus DAG splits a pair's adjacency from its direction, so an edge whose
direction is unidentified (a reversible edge of a Markov equivalence class, at
about 0.5 each way) is kept in one direction rather than lost. DAG samples are
drawn from the stored variational parameters (an
:class:`~pyrostruct.distributions.OrderedDAG`), spread over their (interventional)
Markov equivalence classes when ``equivalence_class`` is set.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import networkx as nx
import numpy as np
import torch

from pyrostruct import __version__
from pyrostruct._io import save_figure
from pyrostruct.causal import export
from pyrostruct.causal.consensus import consensus_adjacency
from pyrostruct.causal.equivalence import _equivalent_members, interventional_essential_graph
from pyrostruct.causal.exact import ExactPosterior
from pyrostruct.causal.knowledge import KnowledgeMasks, orient_by_knowledge
from pyrostruct.causal.settings import check_draw_count
from pyrostruct.distributions import OrderedDAG
from pyrostruct.errors import InputError
from pyrostruct.graph import node_link_data

__all__ = ["CausalResult", "load_result", "consensus_adjacency"]

_FORMAT = "pyrostruct.causal.CausalResult/1"

#: Entries (draws x d x d) of the DAG draws formed at once: 1000 draws up to d = 64.
DRAW_ENTRIES = 1 << 22


def _layered_layout(graph: nx.DiGraph) -> dict:
    """Positions by topological generation, roots on top, each row sorted by name.

    Written out rather than ``nx.multipartite_layout``, whose order within a
    layer follows set iteration (string hashing, so it changes between runs).
    """
    pos = {}
    for level, generation in enumerate(nx.topological_generations(graph)):
        row = sorted(generation, key=str)
        for i, node in enumerate(row):
            pos[node] = ((i - (len(row) - 1) / 2) / max(len(row) - 1, 1), -float(level))
    return pos


@dataclasses.dataclass
class CausalResult:
    """What :func:`discover` learned.

    :ivar names: node names (the data's columns).
    :vartype names: list of str
    :ivar numpy.ndarray edge_probs: posterior ``P(i -> j)``, ``(d, d)``: Monte
        Carlo over orders with the edges Rao-Blackwellized, or over DAG samples
        spread over their Markov equivalence classes (``equivalence_class``), or
        exact (:attr:`exact`).
    :ivar numpy.ndarray edge_probs_stderr: Monte Carlo standard error of
        ``edge_probs``, ``(d, d)`` (0 when exact).
    :ivar numpy.ndarray weights: ``(d, d)``. Linear SEM: posterior mean edge
        weights in the data's units (the effect of a unit change of ``i`` on
        ``j``). MLP SEM: the norm of node ``j``'s input weights for ``i`` (a
        strength, not an effect size).
    :ivar numpy.ndarray scores: parameters of the variational DAG distribution
        (higher score = upstream), with ``edge_logits``; zeros for an exact result.
    :ivar numpy.ndarray edge_logits: parameters of the variational DAG
        distribution, with ``scores``; zeros for an exact result.
    :ivar numpy.ndarray elbo_trace: ELBO per step (per data row); empty for an exact
        result.
    :ivar dict metadata: settings and run information (JSON-serializable), among
        them ``fit_seconds`` (set-up with the order search, plus training) and
        ``phase_seconds`` (``setup``, ``order_search``, ``training``, ``result``), ``created``,
        ``seed``, ``final_elbo`` and ``fingerprint``.
    :ivar float threshold: adjacency probability needed to enter the consensus
        graph.
    :ivar bool equivalence_class: whether every DAG drawn from the variational
        posterior is replaced by a uniformly drawn member of its Markov
        equivalence class (:mod:`pyrostruct.causal.equivalence`), in
        ``edge_probs`` and :meth:`sample_dags`: set when the data cannot tell the
        members apart.
    :ivar intervention_targets: the intervened node sets of the data's regimes
        (observational: none). With ``equivalence_class`` the class is the
        interventional one for these targets (Hauser & Bühlmann 2012): edges
        with exactly one end in a target set, and what they imply, are
        identified.
    :vartype intervention_targets: list of list of int
    :ivar knowledge: the background knowledge the fit enforced (optional): every DAG drawn,
        ``edge_probs`` and the consensus graph obey it.
    :vartype knowledge: ~pyrostruct.causal.knowledge.KnowledgeMasks
    :ivar exact: the exact posterior of ``discover(estimator="exact")``, which
        :meth:`sample_dags` draws from (``None`` for a variational result); saved as its
        sufficient statistics and recomputed by :func:`load_result`.
    :vartype exact: ~pyrostruct.causal.ExactPosterior
    """

    names: list[str]
    edge_probs: np.ndarray
    edge_probs_stderr: np.ndarray
    weights: np.ndarray
    scores: np.ndarray
    edge_logits: np.ndarray
    elbo_trace: np.ndarray
    metadata: dict[str, Any]
    threshold: float = 0.5
    equivalence_class: bool = False
    intervention_targets: list = dataclasses.field(default_factory=list)
    knowledge: KnowledgeMasks | None = None
    exact: ExactPosterior | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def adjacency(self) -> np.ndarray:
        """The consensus DAG as a ``(d, d)`` 0/1 array (``A[i, j] = 1``: ``i -> j``)."""
        precedes = None if self.knowledge is None else self.knowledge.precedes
        return consensus_adjacency(self.edge_probs, self.threshold, precedes)

    @property
    def graph(self) -> nx.DiGraph:
        """The consensus DAG: node pairs adjacent with probability ``>= threshold``,
        in their more probable direction, most probable first and turned round
        where that direction would close a cycle (so it is always acyclic). Edge
        attributes ``probability`` (``P(i -> j)``) and ``weight``; :meth:`to_networkx`."""
        return self.to_networkx()

    def to_networkx(self, *, cpdag: bool = False) -> nx.DiGraph:
        """The consensus DAG (:attr:`graph`) or its CPDAG as a ``networkx.DiGraph``.

        The CPDAG keeps the consensus DAG's skeleton and directs only the edges
        that every Markov equivalent DAG shares (Chickering 1995,
        :func:`pyrostruct.graph.cpdag`); with :attr:`intervention_targets` it is the
        interventional essential graph (Hauser & Bühlmann 2012,
        :func:`~pyrostruct.causal.equivalence.interventional_essential_graph`), which
        also directs every edge with one end in a target set, and what follows from
        them; with :attr:`knowledge`, also the edges the knowledge orients
        (:func:`~pyrostruct.causal.knowledge.orient_by_knowledge`). An undirected edge
        is stored both ways, each with ``undirected=True`` and its own direction's
        ``probability`` and ``weight``; the graph attribute
        ``cpdag`` is ``True``. Use it where the result cannot tell Markov equivalent
        DAGs apart (``equivalence_class``): the consensus DAG shows such an edge in one
        direction, chosen by its probability (about 0.5) rather than by the data.

        :param bool cpdag: the CPDAG instead of the consensus DAG.
        :returns: nodes :attr:`names`; edge attributes ``probability`` (``P(i -> j)``),
            ``weight`` and, for a CPDAG, ``undirected``; the scalar :attr:`metadata` as
            graph attributes.
        :rtype: networkx.DiGraph

        Example::

            >>> chain = np.array([[0, 0.9, 0], [0, 0, 0.8], [0, 0, 0]])
            >>> r = CausalResult(["a", "b", "c"], chain, 0 * chain, chain, np.zeros(3),
            ...                  0 * chain, np.zeros(1), {})
            >>> sorted(r.to_networkx(cpdag=True).edges(data="undirected"))
            [('a', 'b', True), ('b', 'a', True), ('b', 'c', True), ('c', 'b', True)]
        """
        adj = self.adjacency
        if cpdag:
            adj = interventional_essential_graph(adj, self.intervention_targets)
            if self.knowledge is not None:
                adj = orient_by_knowledge(adj, self.knowledge)
        g = nx.DiGraph()
        g.add_nodes_from(self.names)
        for i, j in zip(*np.nonzero(adj)):
            attrs = {
                "probability": float(self.edge_probs[i, j]),
                "weight": float(self.weights[i, j]),
            }
            if cpdag:
                attrs["undirected"] = bool(adj[j, i])
            g.add_edge(self.names[i], self.names[j], **attrs)
        g.graph.update(
            {k: v for k, v in self.metadata.items() if isinstance(v, (str, int, float, bool))}
        )
        if cpdag:
            g.graph["cpdag"] = True
        return g

    def _distribution(self) -> OrderedDAG:
        scores = torch.as_tensor(self.scores, dtype=torch.float64)
        logits = torch.as_tensor(self.edge_logits, dtype=torch.float64)
        return OrderedDAG(scores, logits)

    def sample_dags(self, n: int, *, seed: int | None = None) -> np.ndarray:
        """``n`` DAGs ``(n, d, d)`` drawn from the variational posterior, or from the exact
        one (:attr:`exact`), each moved to a uniform member of its Markov equivalence class
        if ``equivalence_class``."""
        n = check_draw_count(n)
        return self._draw(n, seed).astype(np.int64)

    def _average_draws(self, n: int, seed: int | None, tick=None) -> None:
        """Set ``edge_probs`` to the mean of ``n`` draws of :meth:`_draw` (spread over their
        equivalence classes) and ``edge_probs_stderr`` to its Monte Carlo error (0/1 draws:
        the standard deviation is ``sqrt(p (1 - p))``). The draws are summed chunk by
        chunk (:meth:`_draw_chunks`), so memory does not grow with ``n``."""
        d = len(self.names)
        total = np.zeros((d, d))
        for chunk in self._draw_chunks(n, seed, tick):
            total += chunk.sum(0)
        p = total / n
        self.edge_probs, self.edge_probs_stderr = p, np.sqrt(p * (1.0 - p) / n)

    def _draw(self, n: int, seed: int | None, tick=None) -> np.ndarray:
        """:meth:`sample_dags` as booleans ``(n, d, d)`` (``tick``: see ``_equivalent_members``)."""
        return np.concatenate(list(self._draw_chunks(n, seed, tick)))

    def _draw_chunks(self, n: int, seed: int | None, tick=None):
        """:meth:`_draw` as chunks of at most :data:`DRAW_ENTRIES` ``/ d^2`` draws (all ``n``
        in one up to 64 nodes; at d = 1000 the 1000 draws of ``discover``'s edge
        probabilities took 12 GB at once)."""
        size = max(1, DRAW_ENTRIES // len(self.names) ** 2)
        with torch.random.fork_rng():
            if seed is not None:
                torch.manual_seed(seed)
            rng = None
            for start in range(0, n, size):
                m = min(size, n - start)
                if self.exact is not None:  # exact draws, which obey the knowledge already
                    rng_seed = int(torch.randint(2**32, ())) if seed is None or start else seed
                    samples = self.exact.sample_dags(m, seed=rng_seed) != 0
                elif self.knowledge is None:
                    samples = self._distribution().sample((m,)).numpy() != 0
                else:
                    samples = self.knowledge.sample_dags(self.scores, self.edge_logits, m)
                if self.equivalence_class:
                    if rng is None:
                        rng = np.random.default_rng(int(torch.randint(2**62, ())))
                    samples = _equivalent_members(
                        samples, rng, tick, self.intervention_targets, self.knowledge
                    )
                yield samples

    def to_inference_data(self, num_samples: int = 500, *, seed: int | None = 0):
        """ArviZ ``InferenceData``: posterior ``adjacency`` draws (dims ``source``,
        ``target``), ``edge_probs`` and the ``elbo`` trace as constant data."""
        import arviz as az

        dags = self.sample_dags(num_samples, seed=seed)
        steps = np.arange(len(self.elbo_trace))
        coords = {"source": self.names, "target": self.names, "step": steps}
        return az.from_dict(
            posterior={"adjacency": dags[None]},
            constant_data={"edge_probs": self.edge_probs, "elbo": np.asarray(self.elbo_trace)},
            coords=coords,
            dims={
                "adjacency": ["source", "target"],
                "edge_probs": ["source", "target"],
                "elbo": ["step"],
            },
            attrs={"inference_library": "pyrostruct", "pyrostruct_version": __version__},
        )

    def plot(self, path: str | os.PathLike | None = None, *, ax=None, min_probability=None):
        """Draw the consensus graph (edge width and darkness = probability).

        ``path`` writes the figure atomically, as PNG, PDF or SVG by its suffix
        (the same bytes for the same result). Returns the matplotlib ``Figure``.
        """
        import matplotlib

        if ax is None and os.environ.get("MPLBACKEND") is None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        graph = self.graph
        if ax is None:
            size = min(16.0, 4.0 + 0.12 * len(self.names))
            fig, ax = plt.subplots(figsize=(size, size))
        else:
            fig = ax.figure
        pos = _layered_layout(graph)
        probs = [graph.edges[e]["probability"] for e in graph.edges]
        nx.draw_networkx_nodes(graph, pos, ax=ax, node_color="#dde8f6", edgecolors="#345")
        nx.draw_networkx_labels(graph, pos, ax=ax, font_size=8)
        nx.draw_networkx_edges(
            graph,
            pos,
            ax=ax,
            width=[0.5 + 3.5 * p for p in probs],
            edge_color=probs,
            edge_cmap=plt.cm.Blues,
            edge_vmin=0.0,
            edge_vmax=1.0,
            arrows=True,
            arrowsize=12,
            node_size=300,
        )
        ax.set_title(f"consensus DAG ({graph.number_of_edges()} edges, width = P(edge))")
        ax.set_axis_off()
        if path is not None:
            save_figure(fig, path, dpi=110, bbox_inches="tight")
        return fig

    # -- persistence and exports ---------------------------------------------
    def to_json_dict(self, *, cpdag: bool = False) -> dict:
        """Node-link data of :attr:`graph` (of the CPDAG with ``cpdag=True``, see
        :meth:`to_networkx`) with everything else under ``graph["pyrostruct"]``; readable by
        ``networkx.node_link_graph(data, edges="edges")`` (:func:`pyrostruct.graph.node_link_graph`
        on any networkx 3.x) and by :func:`load_result`."""
        graph = self.to_networkx(cpdag=cpdag)
        graph.graph.clear()  # the metadata is kept once, under "pyrostruct"
        graph.graph["pyrostruct"] = {
            "format": _FORMAT,
            "names": list(self.names),
            "edge_probs": self.edge_probs.tolist(),
            "edge_probs_stderr": self.edge_probs_stderr.tolist(),
            "weights": self.weights.tolist(),
            "scores": self.scores.tolist(),
            "edge_logits": np.where(
                np.isfinite(self.edge_logits), self.edge_logits, np.sign(self.edge_logits) * 50
            ).tolist(),
            "elbo_trace": [float(v) for v in self.elbo_trace],
            "threshold": self.threshold,
            "equivalence_class": self.equivalence_class,
            "intervention_targets": [list(map(int, t)) for t in self.intervention_targets],
            "metadata": self.metadata,
        }
        if self.knowledge is not None:
            graph.graph["pyrostruct"]["knowledge"] = self.knowledge.to_dict()
        if self.exact is not None:
            graph.graph["pyrostruct"]["exact"] = self.exact.to_dict()
        if cpdag:
            graph.graph["pyrostruct"]["cpdag"] = True
        return node_link_data(graph)

    def save(
        self,
        path: str | os.PathLike,
        *,
        format: str | None = None,
        cpdag: bool = False,
        all_pairs: bool = False,
    ) -> None:
        """Write the consensus DAG (or its CPDAG) to ``path``, atomically.

        Formats (:mod:`pyrostruct.causal.export`): ``"json"`` (:meth:`to_json_dict`, which
        :func:`load_result` reads back), ``"graphml"``, ``"dot"`` (Graphviz, :meth:`to_dot`)
        and ``"csv"`` (:meth:`edge_table`). Only the JSON holds the whole result; the
        others hold the graph.

        :param path: the output file; its suffix (``.json``, ``.graphml``, ``.dot`` or
            ``.gv``, ``.csv``) names the format, any other suffix means JSON.
        :param str format: ``"json"``, ``"graphml"``, ``"dot"`` or ``"csv"``: the format,
            which must agree with a suffix that names one.
        :param bool cpdag: write the CPDAG (:meth:`to_networkx`).
        :param bool all_pairs: CSV only: every ordered pair with a positive probability
            (:meth:`edge_table`).
        :raises InputError: an unknown format, a format against the suffix, ``all_pairs``
            with another format, or a NaN or infinite value (nothing is written).
        """
        export.save(self, path, format=format, cpdag=cpdag, all_pairs=all_pairs)

    def edge_table(self, *, cpdag: bool = False, all_pairs: bool = False):
        """The edge list as a ``pandas.DataFrame``, columns ``cause``, ``effect``,
        ``probability`` (``P(cause -> effect)``), ``weight``.

        :param bool cpdag: the CPDAG's edges (:meth:`to_networkx`), with a column
            ``undirected``; an undirected edge has a row each way.
        :param bool all_pairs: every ordered pair with ``probability > 0`` instead of the
            graph's edges, most probable first, with a column ``consensus`` (the edge is in
            the graph); pairs of probability 0 (never sampled, or forbidden) are left out.
        :rtype: pandas.DataFrame
        """
        return export.edge_table(self, cpdag=cpdag, all_pairs=all_pairs)

    def to_dot(self, *, cpdag: bool = False) -> str:
        """Graphviz DOT text of the consensus DAG or its CPDAG
        (:func:`pyrostruct.causal.export.dot_source`: an undirected edge once, ``dir=none``)."""
        return export.dot_source(self.to_networkx(cpdag=cpdag))

    def to_causallearn(self, *, cpdag: bool = False):
        """The consensus DAG or its CPDAG as causal-learn's ``GeneralGraph`` (directed edges
        ``TAIL -> ARROW``, undirected ``TAIL - TAIL``), nodes named by :attr:`names`.

        :raises ImportError: causal-learn is not installed (``pip install causal-learn``).
        """
        return export.to_general_graph(self.to_networkx(cpdag=cpdag))


def load_result(path: str | os.PathLike) -> CausalResult:
    """Read a :class:`CausalResult` written by :meth:`CausalResult.save` (or the CLI)."""
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:  # missing, unreadable, a directory: not a statement about the file
        raise InputError(f"{path}: cannot be read ({e.strerror or type(e).__name__})") from None
    try:
        with f:
            data = json.load(f)
        payload = data["graph"]["pyrostruct"]
    except (OSError, ValueError, KeyError, TypeError) as e:  # ValueError: JSON, UTF-8
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise InputError(f"{path}: not a pyrostruct causal-discovery result ({reason})") from None
    if payload.get("format") != _FORMAT:
        raise InputError(f"{path}: unknown result format {payload.get('format')!r}")
    knowledge = payload.get("knowledge")
    return CausalResult(
        names=list(payload["names"]),
        edge_probs=np.asarray(payload["edge_probs"], dtype=np.float64),
        edge_probs_stderr=np.asarray(payload["edge_probs_stderr"], dtype=np.float64),
        weights=np.asarray(payload["weights"], dtype=np.float64),
        scores=np.asarray(payload["scores"], dtype=np.float64),
        edge_logits=np.asarray(payload["edge_logits"], dtype=np.float64),
        elbo_trace=np.asarray(payload["elbo_trace"], dtype=np.float64),
        metadata=dict(payload["metadata"]),
        threshold=float(payload["threshold"]),
        equivalence_class=bool(payload.get("equivalence_class", False)),
        intervention_targets=[list(t) for t in payload.get("intervention_targets", [])],
        knowledge=None if knowledge is None else KnowledgeMasks.from_dict(knowledge),
        exact=None if "exact" not in payload else ExactPosterior.from_dict(payload["exact"]),
    )
