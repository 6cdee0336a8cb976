"""Seeded synthetic data for causal discovery: random DAGs, SEMs, interventions.

Graphs follow the conventions of the NOTEARS / DAGMA benchmarks (Zheng et al.,
"DAGs with NO TEARS", NeurIPS 2018; Bello et al., "DAGMA", NeurIPS 2022):

- ``"ER"`` (Erdős–Rényi): every pair of a random order gets an edge with the
  probability that gives ``edges_per_node * d`` expected edges (``ER2``: 2d).
- ``"SF"`` (scale-free): Barabási–Albert preferential attachment with
  ``edges_per_node`` edges per new node, each new node pointing to the old
  ones (hubs are children), then the node labels are shuffled.

Structural equations: linear Gaussian ``X_j = sum_i W_ij X_i + e_j`` with
weights uniform in ``±[0.5, 2]``, or nonlinear (a random one-hidden-layer
sigmoid MLP of the parents per node, as in NOTEARS-MLP). Noise standard
deviations are all 1 (``noise="equal"``) or uniform in [0.5, 1.5] per node
(``noise="nonequal"``). Perfect interventions ``do(X_j := N(0, 1))`` replace
node ``j``'s mechanism in the rows of an interventional regime.
:class:`LinearSEMEnvironment` is a hidden linear SEM to run chosen experiments on
(``do(X_j := v)`` at a value ``v``), the lab of :class:`~pyrostruct.causal.ActiveLearner`
in benchmarks and tutorials.

One real data set: :func:`load_sachs`, the protein-signalling measurements of
Sachs et al. (Science 2005) with their consensus network, read from the copy that
the ``cdt`` package ships (``pip install cdt``; not a dependency of pyrostruct).

Adjacency convention: ``A[i, j] = 1`` means ``i -> j``. Everything takes a
``seed`` and is reproducible.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import networkx as nx
import numpy as np
import pandas as pd

from pyrostruct.data import is_real_number
from pyrostruct.errors import InputError, check_count

__all__ = [
    "CausalDataset",
    "random_dag",
    "erdos_renyi_dag",
    "scale_free_dag",
    "random_weights",
    "simulate_linear_sem",
    "simulate_nonlinear_sem",
    "make_dataset",
    "LinearSEMEnvironment",
    "load_sachs",
    "SACHS_TIERS",
]

#: Tiers of the Sachs network from the pathway's textbook layout (upstream first): the
#: membrane phospholipids and PLC-gamma, the second-messenger kinases PKC and PKA, then
#: the MAP-kinase cascades and Akt. Background knowledge for :func:`load_sachs`'s data.
SACHS_TIERS = (
    ("plcg", "PIP2", "PIP3"),
    ("PKC", "PKA"),
    ("praf", "pmek", "p44/42", "pakts473", "P38", "pjnk"),
)


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _permute(adj: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    perm = rng.permutation(adj.shape[0])
    return adj[np.ix_(perm, perm)]


def erdos_renyi_dag(d: int, edges_per_node: float = 2.0, *, seed=None) -> np.ndarray:
    """Random DAG with ``edges_per_node * d`` expected edges (``ER{k}``).

    Each of the ``d (d - 1) / 2`` pairs that go forward in a random order is an
    edge with probability ``min(1, 2 k / (d - 1))``.

    Returns a ``(d, d)`` int array, ``A[i, j] = 1`` meaning ``i -> j``.
    """
    if d < 1:
        raise InputError(f"d must be >= 1, got {d}")
    rng = _rng(seed)
    p = min(1.0, 2.0 * edges_per_node / max(d - 1, 1))
    adj = np.triu((rng.random((d, d)) < p).astype(np.int64), k=1)
    return _permute(adj, rng)


def scale_free_dag(d: int, edges_per_node: int = 2, *, seed=None) -> np.ndarray:
    """Scale-free DAG (``SF{k}``) by Barabási–Albert preferential attachment.

    New nodes attach to ``k = edges_per_node`` existing nodes and point to them,
    so hubs have large in-degree (as igraph's ``Barabasi(directed=True)`` used by
    NOTEARS). Labels are shuffled. Returns a ``(d, d)`` int array.
    """
    if d < 1:
        raise InputError(f"d must be >= 1, got {d}")
    rng = _rng(seed)
    m = int(max(1, min(round(edges_per_node), d - 1)))
    adj = np.zeros((d, d), dtype=np.int64)
    if d > 1:
        graph = nx.barabasi_albert_graph(d, m, seed=int(rng.integers(2**31)))
        for u, v in graph.edges():
            new, old = max(u, v), min(u, v)
            adj[new, old] = 1
    return _permute(adj, rng)


def random_dag(d: int, graph: str = "ER", edges_per_node: float = 2.0, *, seed=None):
    """``erdos_renyi_dag`` (``graph="ER"``) or ``scale_free_dag`` (``graph="SF"``)."""
    kind = graph.upper()
    if kind == "ER":
        return erdos_renyi_dag(d, edges_per_node, seed=seed)
    if kind == "SF":
        return scale_free_dag(d, int(edges_per_node), seed=seed)
    raise InputError(f"unknown graph type {graph!r}; use 'ER' or 'SF'")


def random_weights(adj: np.ndarray, low: float = 0.5, high: float = 2.0, *, seed=None):
    """Edge weights uniform in ``[-high, -low] ∪ [low, high]`` on the edges of ``adj``."""
    rng = _rng(seed)
    adj = np.asarray(adj)
    magnitude = rng.uniform(low, high, size=adj.shape)
    sign = rng.choice([-1.0, 1.0], size=adj.shape)
    return adj * magnitude * sign


def _noise_scales(d: int, noise: str, rng: np.random.Generator) -> np.ndarray:
    if noise == "equal":
        return np.ones(d)
    if noise == "nonequal":
        return rng.uniform(0.5, 1.5, size=d)
    raise InputError(f"unknown noise {noise!r}; use 'equal' or 'nonequal'")


def _intervention_mask(n: int, d: int, interventions, rng) -> np.ndarray:
    """Rows x nodes boolean mask from a regime spec (see :func:`simulate_linear_sem`)."""
    mask = np.zeros((n, d), dtype=bool)
    if interventions is None:
        return mask
    form = "interventions must be a list of regimes, each a list of node indices ([[0], [2, 3]])"
    if isinstance(interventions, (str, bytes)) or not hasattr(interventions, "__iter__"):
        raise InputError(f"{form}; got {interventions!r}")
    regimes = list(interventions)
    for r in regimes:
        if isinstance(r, (str, bytes)) or not hasattr(r, "__iter__"):
            raise InputError(f"{form}; got the regime {r!r}, not a list of node indices")
        for j in r:
            if isinstance(j, (bool, np.bool_)) or not isinstance(j, (int, np.integer)):
                raise InputError(f"{form}: node indices 0..{d - 1}, got {j!r}")
            if not 0 <= int(j) < d:
                raise InputError(f"intervention on node {j} but there are {d} nodes")
    if not regimes:
        return mask
    if n < len(regimes) + 1:
        raise InputError(
            f"{n} rows cannot hold an observational block and {len(regimes)} regimes: "
            f"at least {len(regimes) + 1} rows are needed"
        )
    # Equal blocks of rows: block 0 is observational, block k+1 is regime k.
    blocks = np.array_split(np.arange(n), len(regimes) + 1)
    for rows, nodes in zip(blocks[1:], regimes):
        mask[np.ix_(rows, [int(j) for j in nodes])] = True
    return mask


def _topological(adj: np.ndarray) -> list[int]:
    return list(nx.topological_sort(nx.DiGraph(np.asarray(adj))))


def simulate_linear_sem(
    weights: np.ndarray,
    n: int,
    *,
    noise: str = "equal",
    noise_scales: Sequence[float] | None = None,
    interventions: Sequence[Sequence[int]] | None = None,
    seed=None,
):
    """Sample ``n`` rows of ``X_j = sum_i W_ij X_i + e_j``, ``e_j ~ N(0, s_j^2)``.

    ``interventions`` is a list of regimes, each a list of node indices: the rows
    are split into ``len(interventions) + 1`` equal blocks, the first
    observational and block ``k + 1`` with ``do(X_j := N(0, 1))`` for the nodes
    of regime ``k``.

    Returns ``(X, mask)``: ``(n, d)`` float data and an ``(n, d)`` boolean mask
    of intervened entries.
    """
    rng = _rng(seed)
    weights = np.asarray(weights, dtype=np.float64)
    d = weights.shape[0]
    scales = np.asarray(noise_scales) if noise_scales is not None else _noise_scales(d, noise, rng)
    mask = _intervention_mask(n, d, interventions, rng)
    x = np.zeros((n, d))
    eps = rng.normal(size=(n, d)) * scales
    do_values = rng.normal(size=(n, d))
    for j in _topological(weights != 0):
        x[:, j] = x @ weights[:, j] + eps[:, j]
        x[mask[:, j], j] = do_values[mask[:, j], j]
    return x, mask


def simulate_nonlinear_sem(
    adj: np.ndarray,
    n: int,
    *,
    hidden: int = 100,
    noise: str = "equal",
    interventions: Sequence[Sequence[int]] | None = None,
    seed=None,
):
    """Sample ``X_j = f_j(X_pa(j)) + e_j`` with a random sigmoid MLP ``f_j`` per node.

    ``f_j(x) = sigmoid(x W1) W2`` with weights uniform in ``±[0.5, 2]`` (the
    NOTEARS-MLP generator). Interventions as in :func:`simulate_linear_sem`.
    Returns ``(X, mask)``.
    """
    rng = _rng(seed)
    adj = np.asarray(adj)
    d = adj.shape[0]
    scales = _noise_scales(d, noise, rng)
    mask = _intervention_mask(n, d, interventions, rng)
    x = np.zeros((n, d))
    eps = rng.normal(size=(n, d)) * scales
    do_values = rng.normal(size=(n, d))
    for j in _topological(adj):
        parents = np.flatnonzero(adj[:, j])
        if parents.size:
            shape = (parents.size, hidden)
            w1 = rng.uniform(0.5, 2.0, shape) * rng.choice([-1, 1], shape)
            w2 = rng.uniform(0.5, 2.0, hidden) * rng.choice([-1, 1], hidden)
            h = 1.0 / (1.0 + np.exp(-(x[:, parents] @ w1)))
            x[:, j] = h @ w2 + eps[:, j]
        else:
            x[:, j] = eps[:, j]
        x[mask[:, j], j] = do_values[mask[:, j], j]
    return x, mask


@dataclasses.dataclass
class CausalDataset:
    """A synthetic data set with its ground truth.

    :ivar pandas.DataFrame data: ``(n, d)`` samples, columns ``X0 .. X{d-1}``.
    :ivar numpy.ndarray adjacency: ``(d, d)`` true DAG, ``adjacency[i, j] = 1`` for
        ``i -> j``.
    :ivar weights: true linear weights (``None`` for nonlinear SEMs).
    :vartype weights: numpy.ndarray or None
    :ivar numpy.ndarray intervention_mask: ``(n, d)`` booleans, ``True`` where the
        entry was set by an intervention.
    """

    data: pd.DataFrame
    adjacency: np.ndarray
    weights: np.ndarray | None
    intervention_mask: np.ndarray

    @property
    def names(self) -> list[str]:
        return list(self.data.columns)

    def intervention_column(self) -> list[str]:
        """Per row, the intervened node names joined by ``;`` (``""`` if none)."""
        names = np.array(self.names)
        return [";".join(names[row]) for row in self.intervention_mask]


def make_dataset(
    d: int = 10,
    n: int = 1000,
    *,
    graph: str = "ER",
    edges_per_node: float = 2.0,
    sem: str = "linear",
    noise: str = "equal",
    interventions: Sequence[Sequence[int]] | None = None,
    seed=0,
) -> CausalDataset:
    """One seeded synthetic data set: random DAG, SEM, optional interventions.

    Example::

        >>> ds = make_dataset(d=5, n=100, graph="ER", sem="linear", seed=1)
        >>> ds.data.shape, int(ds.adjacency.sum()) >= 0
        ((100, 5), True)
    """
    rng = _rng(seed)
    adj = random_dag(d, graph, edges_per_node, seed=rng)
    if sem == "linear":
        weights = random_weights(adj, seed=rng)
        x, mask = simulate_linear_sem(
            weights, n, noise=noise, interventions=interventions, seed=rng
        )
    elif sem in ("mlp", "nonlinear"):
        weights = None
        x, mask = simulate_nonlinear_sem(adj, n, noise=noise, interventions=interventions, seed=rng)
    else:
        raise InputError(f"unknown sem {sem!r}; use 'linear' or 'mlp'")
    frame = pd.DataFrame(x, columns=[f"X{j}" for j in range(d)])
    return CausalDataset(frame, adj.astype(np.int64), weights, mask)


def load_sachs(*, log: bool = True) -> tuple[pd.DataFrame, np.ndarray]:
    """Sachs et al.'s flow-cytometry data (7466 rows, 11 phosphoproteins and
    phospholipids) and its consensus network (18 edges), as shipped by ``cdt``
    (``cdt/data/resources/cyto_full_data.csv`` and ``cyto_full_target.csv``).

    The rows pool the experimental conditions of the study without saying which row
    came from which, so they cannot be marked as interventions; the consensus network
    has a cycle (PIP3 -> plcg -> PIP2 -> PIP3), so compare with :func:`metrics.shd`, not
    a CPDAG metric.

    :param bool log: natural logarithm of the (positive) concentrations, the scale on
        which the relations are closer to linear.
    :returns: the data (columns named as in the study) and the consensus adjacency
        ``(11, 11)`` in the columns' order.
    :raises ImportError: ``cdt`` is not installed (``pip install cdt``).
    """
    import importlib.util
    import os

    spec = importlib.util.find_spec("cdt")  # found without importing cdt (and its R checks)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("load_sachs reads the copy of the data shipped by cdt: pip install cdt")
    folder = os.path.join(spec.submodule_search_locations[0], "data", "resources")
    data = pd.read_csv(os.path.join(folder, "cyto_full_data.csv"))
    target = pd.read_csv(os.path.join(folder, "cyto_full_target.csv"))
    names = list(data.columns)
    adj = np.zeros((len(names), len(names)), dtype=np.int64)
    for cause, effect in target.itertuples(index=False):
        adj[names.index(cause), names.index(effect)] = 1
    if log:
        data = np.log(data)
    return data, adj


@dataclasses.dataclass
class LinearSEMEnvironment:
    """A hidden linear Gaussian SEM that answers experiments: a simulated lab.

    :ivar numpy.ndarray weights: ``(d, d)`` true weights (``W[i, j]``: effect of ``i`` on
        ``j``); the DAG is ``weights != 0``.
    :ivar numpy.ndarray noise_scales: ``(d,)`` noise standard deviations.
    :ivar list names: node names (data columns).
    :ivar seed: seed of the outcomes' noise (each call draws fresh noise from it).
    """

    weights: np.ndarray
    noise_scales: np.ndarray
    names: list
    seed: int = 0

    def __post_init__(self):
        self._rng = _rng(self.seed)

    #: The intervention column of the tables the environment returns.
    column = "intervention"

    @classmethod
    def random(cls, d: int, *, graph: str = "ER", edges_per_node: float = 1.0,
               noise: str = "nonequal", seed=0) -> LinearSEMEnvironment:  # fmt: skip
        """A random DAG (:func:`random_dag`), weights (:func:`random_weights`) and noise."""
        rng = _rng(seed)
        adj = random_dag(d, graph, edges_per_node, seed=rng)
        weights = random_weights(adj, seed=rng)
        scales = _noise_scales(d, noise, rng)
        return cls(weights, scales, [f"X{j}" for j in range(d)], int(rng.integers(2**32)))

    @property
    def adjacency(self) -> np.ndarray:
        """The true DAG ``(d, d)`` (int)."""
        return (np.asarray(self.weights) != 0).astype(np.int64)

    def observe(self, n: int) -> pd.DataFrame:
        """``n`` observational rows (intervention column empty)."""
        return self.intervene({}, n)

    def intervene(self, values: dict, n: int) -> pd.DataFrame:
        """``n`` rows of ``do(X_j := v)`` for every ``j: v`` of ``values`` (node names or
        indices), the intervention column naming the set nodes (``;``-joined)."""
        d = len(self.names)
        n = check_count(n, "n")
        targets = {}
        for key, v in values.items():
            j = self.names.index(key) if key in self.names else key
            if (isinstance(j, (bool, np.bool_)) or not isinstance(j, (int, np.integer))
                    or not 0 <= j < d):  # fmt: skip
                raise InputError(f"unknown node {key!r}; the nodes are {self.names}")
            if int(j) in targets:
                raise InputError(f"node {self.names[j]!r} is named twice in {values!r}")
            if not is_real_number(v, finite=True):
                raise InputError(f"the value of {key!r} must be a finite number, got {v!r}")
            targets[int(j)] = float(v)
        x = np.zeros((n, d))
        eps = self._rng.normal(size=(n, d)) * np.asarray(self.noise_scales)
        w = np.asarray(self.weights, dtype=np.float64)
        for j in _topological(w != 0):
            x[:, j] = targets[j] if j in targets else x @ w[:, j] + eps[:, j]
        frame = pd.DataFrame(x, columns=list(self.names))
        frame[self.column] = ";".join(self.names[j] for j in sorted(targets))
        return frame

    def acquire(self, experiments: pd.DataFrame) -> pd.DataFrame:
        """Run a batch of experiments (rows with ``targets``, ``values`` and ``samples``, as
        :attr:`DesignResult.batch <pyrostruct.causal.DesignResult>`) and return all their
        rows."""
        missing = [c for c in ("targets", "values", "samples") if c not in experiments]
        if missing:
            raise InputError(f"experiments need the columns targets, values and samples; "
                             f"missing {missing}")  # fmt: skip
        rows = zip(experiments["targets"], experiments["values"], experiments["samples"])
        frames = []
        for t, v, k in rows:
            if len(t) != len(v):
                raise InputError(f"an experiment with {len(t)} targets and {len(v)} values: "
                                 f"{tuple(t)} and {tuple(v)}")  # fmt: skip
            frames.append(self.intervene(dict(zip(t, v)), int(k)))
        return pd.concat(frames, ignore_index=True)
