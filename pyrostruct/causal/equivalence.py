"""Markov equivalence classes of DAGs: the CPDAG, the class size, uniform members.

Two DAGs are Markov equivalent when they have the same skeleton and the same
v-structures (Verma & Pearl 1990); they then fit observational linear Gaussian
data with unequal noise variances equally well, so such data cannot orient the
edges that differ between them. The class is summarized by its CPDAG
(completed partially directed acyclic graph): compelled edges, the same in every
member, and reversible ones, which appear in both directions.

- :func:`cpdag` labels every edge compelled or reversible with Chickering's
  algorithm ("A transformational characterization of equivalent Bayesian
  network structures", UAI 1995), ``O(|E| d)``; it lives in
  :mod:`pyrostruct.graph` (with :func:`~pyrostruct.graph.markov_equivalent`),
  below this module and :mod:`pyrostruct.selection`, which both use it.
- :func:`count_equivalent_dags` and :func:`sample_equivalent_dag` count the
  members and draw one uniformly. The reversible edges form undirected chordal
  components that are oriented independently; a component's orientations are
  counted by choosing its source ``v``, orienting ``v``'s edges outwards,
  closing under Meek's rules and recursing into the undirected components left
  (He, Jia & Yu, "Counting and exploring sizes of Markov equivalence classes of
  directed acyclic graphs", JMLR 2015): ``#(G) = sum_v prod_{H in C(G, v)}
  #(H)``. Drawing the source with probability proportional to its term gives
  an exact uniform draw. The recursion is memoized on the subgraphs; components
  larger than ``max_exact`` nodes (rare in sparse graphs) are oriented by a
  maximum-cardinality search from a random start instead, which gives every
  member positive probability but not exactly equal ones.

With perfect interventions on known targets the class shrinks to the
*interventional* Markov equivalence class (Hauser & Bühlmann, "Characterization
and greedy learning of interventional Markov equivalence classes of directed
acyclic graphs", JMLR 2012): for a conservative family of targets (every node
left alone in some regime, as with observational rows), two DAGs are
I-equivalent when, for every target set ``I``, the DAGs with the edges into
``I`` removed have the same skeleton and v-structures. Its summary, the
I-essential graph (:func:`interventional_essential_graph`), orients besides
the compelled edges every edge with exactly one end in some target set, then
closes under Meek's rules; its undirected part is again chordal components
oriented independently, so every function here takes ``targets=`` and counts
or draws I-equivalent DAGs the same way (``targets=None`` or ``[]``: the
observational class).

Adjacency convention: ``A[i, j] = 1`` means ``i -> j``; a CPDAG has both
``C[i, j] = C[j, i] = 1`` for a reversible edge.
"""

from __future__ import annotations

import numpy as np

from pyrostruct.errors import InputError
from pyrostruct.graph import as_dag, as_dags, cpdag, cpdag_edge_labels

__all__ = [
    "EquivalenceSampler",
    "cpdag",
    "interventional_essential_graph",
    "count_equivalent_dags",
    "sample_equivalent_dag",
    "sample_equivalent_dags",
]

MAX_EXACT = 12


def _cut_by_targets(targets, d: int) -> np.ndarray | None:
    """``(d, d)`` boolean: node pairs with exactly one end in some target set (``None``
    when no target set cuts any pair)."""
    cut = np.zeros((d, d), dtype=bool)
    for target in targets or ():
        m = np.zeros(d, dtype=bool)
        m[list(target)] = True
        cut |= m[:, None] ^ m[None, :]
    return cut if cut.any() else None


def _check_targets(targets, d: int) -> list[list[int]]:
    """A family of target sets as lists of node indices; a one-line error otherwise."""
    if targets is None:
        return []
    out = []
    for target in targets:
        nodes = sorted({int(v) for v in target})
        if any(not 0 <= v < d for v in nodes):
            raise InputError(f"target set {list(target)} names a node outside 0..{d - 1}")
        out.append(nodes)
    return out


def _interventional_labels(dags: np.ndarray, targets) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_label_edges` for the I-equivalence class: edges cut by a target set are
    compelled too, then Meek's rules orient what follows (Hauser & Bühlmann 2012)."""
    compelled, reversible = cpdag_edge_labels(dags)
    cut = _cut_by_targets(targets, dags.shape[-1])
    if cut is None or not (reversible & cut).any():
        return compelled, reversible
    compelled, reversible = compelled | (reversible & cut), reversible & ~cut
    for k in np.flatnonzero(reversible.any((1, 2))):
        undirected = reversible[k] | reversible[k].T
        directed, left = _meek_closure(compelled[k], undirected)
        compelled[k], reversible[k] = directed, left & dags[k]
    return compelled, reversible


def interventional_essential_graph(adj, targets) -> np.ndarray:
    """I-essential graph of a DAG ``(d, d)`` for perfect interventions on ``targets``.

    ``targets`` is the family of intervened node sets, one per regime (lists of
    node indices; the observational regime is the empty set and may be left
    out). Edges the same in every I-equivalent DAG are directed, the others
    appear both ways. The family must be conservative (every node left alone in
    some regime), as Hauser & Bühlmann's characterization assumes; ``discover``
    refuses a node intervened on in every row. With no target,
    :func:`cpdag`.

    Example::

        >>> chain = [[0, 1, 0], [0, 0, 1], [0, 0, 0]]
        >>> interventional_essential_graph(chain, [[1]]).tolist()  # 0 - 1 and 1 - 2 cut: oriented
        [[0, 1, 0], [0, 0, 1], [0, 0, 0]]
        >>> interventional_essential_graph(chain, [[0, 1]]).tolist()  # only 1 - 2 is cut
        [[0, 1, 0], [1, 0, 1], [0, 0, 0]]
    """
    a = as_dag(adj)
    compelled, reversible = _interventional_labels(a[None], _check_targets(targets, len(a)))
    return (compelled[0] | reversible[0] | reversible[0].T).astype(np.int64)


def _components(u: np.ndarray) -> list[np.ndarray]:
    """Connected components with an edge (sorted node index arrays) of an undirected graph."""
    active = u.any(0)
    seen = ~active
    out = []
    for start in np.flatnonzero(active):
        if seen[start]:
            continue
        comp, frontier = [start], [start]
        seen[start] = True
        while frontier:
            nxt = np.flatnonzero(u[frontier].any(0) & ~seen)
            seen[nxt] = True
            frontier = nxt.tolist()
            comp.extend(frontier)
        out.append(np.sort(np.asarray(comp)))
    return out


def _meek_closure(
    directed: np.ndarray, undirected: np.ndarray, rule4: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Apply Meek's rules R1-R3 (Meek, UAI 1995) until nothing changes; with ``rule4``
    R4 too, which background knowledge needs (R1-R3 are complete without it)."""
    d, u = directed.copy(), undirected.copy()
    adjacent = d | d.T | u
    nonadj = ~adjacent & ~np.eye(len(u), dtype=bool)
    while True:
        oriented = False
        if rule4:
            d, u, oriented = _meek_rule4(d, u, adjacent, nonadj)
        di = d.astype(np.int64)
        r1 = (di.T @ nonadj.astype(np.int64)) > 0  # a -> b - c, a !~ c  =>  b -> c
        r2 = (di @ di) > 0  # a -> b -> c, a - c  =>  a -> c
        t = (u[:, None, :] & d.T[None, :, :]).astype(np.int64)  # t[a, b, c] = a - c -> b
        r3 = np.einsum("abc,cd,abd->ab", t, nonadj.astype(np.int64), t) > 0
        new = u & (r1 | r2 | r3)
        new &= ~new.T  # never orient both ways in one round
        if not new.any():
            if oriented:  # R4 may enable itself again
                continue
            return d, u
        d |= new
        u &= ~(new | new.T)


def _meek_rule4(d, u, adjacent, nonadj):
    """Meek's R4 once over every undirected ``a - b``: ``a -> b`` when some ``c`` with ``a -
    c`` and ``c`` not adjacent to ``b`` has ``c -> x -> b`` for an ``x`` adjacent to ``a``
    (``b -> a`` would make ``c -> a <- b`` a new v-structure, or a cycle). Returns
    ``(directed, undirected, whether it oriented an edge)``."""
    d, u, oriented = d.copy(), u.copy(), False
    for a, b in np.argwhere(u):
        if not u[a, b]:
            continue
        cs = np.flatnonzero(u[a] & nonadj[:, b])
        xs = np.flatnonzero(d[:, b] & adjacent[a])
        if len(cs) and len(xs) and d[np.ix_(cs, xs)].any():
            d[a, b], u[a, b], u[b, a], oriented = True, False, False, True
    return d, u, oriented


class EquivalenceSampler:
    """Counts and uniform draws of the orientations of undirected chordal graphs.

    An orientation here is acyclic and has no v-structure, as the reversible
    edges of one component of a CPDAG must be. Results are memoized on the
    graph itself (its boolean adjacency), so one sampler serves every
    component of every DAG of a posterior sample, and the recursion reuses the
    subgraphs it meets.
    """

    def __init__(self, max_exact: int = MAX_EXACT):
        self.max_exact = int(max_exact)
        self._counts: dict[bytes, int] = {}
        self._rooted: dict[bytes, list] = {}

    @staticmethod
    def _key(u: np.ndarray) -> bytes:
        return len(u).to_bytes(4, "little") + np.packbits(u).tobytes()

    def _rooted_terms(self, u: np.ndarray):
        """Per source ``v`` of ``u``: (orientations, edges it compels, components left)."""
        key = self._key(u)
        if key in self._rooted:
            return self._rooted[key]
        terms = []
        for k in range(len(u)):
            d0 = np.zeros_like(u)
            d0[k] = u[k]
            directed, rest = _meek_closure(d0, u & ~(d0 | d0.T))
            comps = _components(rest)
            count = 1
            for c in comps:
                count *= self.count(u[np.ix_(c, c)])
            terms.append((count, directed, comps))
        cumulative = np.cumsum([float(t[0]) for t in terms])
        self._rooted[key] = terms, cumulative
        return terms, cumulative

    def count(self, u: np.ndarray) -> int:
        """Number of orientations of the connected chordal graph ``u`` ``(k, k)``."""
        if len(u) <= 1:
            return 1
        key = self._key(u)
        if key not in self._counts:
            if len(u) > self.max_exact:
                raise InputError(
                    f"a reversible component of {len(u)} nodes is too large to count "
                    f"exactly (max_exact={self.max_exact})"
                )
            self._counts[key] = sum(t[0] for t in self._rooted_terms(u)[0])
        return self._counts[key]

    def orient(self, u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A uniformly drawn orientation of the connected chordal graph ``u`` ``(k, k)``."""
        u = np.asarray(u, dtype=bool)
        if len(u) > self.max_exact:
            return _orient_mcs(u, rng)
        if len(u) == 2:  # one reversible edge: either way
            return u & (np.eye(2, k=1 if rng.random() < 0.5 else -1) > 0)
        out = np.zeros_like(u)
        if len(u) > 2:
            terms, cumulative = self._rooted_terms(u)
            k = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
            _, directed, comps = terms[min(k, len(terms) - 1)]
            out |= directed
            for c in comps:
                out[np.ix_(c, c)] |= self.orient(u[np.ix_(c, c)], rng)
        return out


def _orient_mcs(u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Maximum-cardinality search from a random start, ties broken at random: the
    visiting order of a chordal graph orients it without v-structures (Tarjan &
    Yannakakis 1984); every orientation can come up, not all equally often."""
    weight = np.zeros(len(u))
    visited = np.zeros(len(u), dtype=bool)
    rank = np.empty(len(u), dtype=np.int64)
    for step in range(len(u)):
        score = np.where(visited, -1.0, weight + rng.random(len(u)) * 0.5)
        v = int(np.argmax(score))
        visited[v], rank[v] = True, step
        weight += u[v]
    return u & (rank[:, None] < rank[None, :])


def _split(dags: np.ndarray, targets=None) -> list[tuple[np.ndarray, list[tuple], np.ndarray]]:
    """Per DAG of ``(S, d, d)`` (its class for ``targets``): its compelled edges, per
    component of its reversible edges with three or more nodes ``(index, graph)``
    (the ``np.ix_`` index of the component and its undirected graph), and the
    reversible edges that are components of their own ``(m, 2)`` (either direction:
    drawn together). The components of all
    DAGs come from one sparse connected-components call."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    compelled, reversible = _interventional_labels(dags, targets)
    undirected = reversible | np.swapaxes(reversible, -1, -2)
    s, d, _ = undirected.shape
    which, i, j = np.nonzero(undirected)
    graph = coo_matrix((np.ones(len(i), dtype=bool), (which * d + i, which * d + j)),
                       shape=(s * d, s * d))  # fmt: skip
    _, labels = connected_components(graph, directed=False)
    nodes = np.flatnonzero(undirected.any(1).reshape(-1))  # nodes with a reversible edge
    nodes = nodes[np.argsort(labels[nodes], kind="stable")]
    comps: list[list[tuple]] = [[] for _ in range(s)]
    pairs: list[list[np.ndarray]] = [[] for _ in range(s)]
    for group in np.split(nodes, np.flatnonzero(np.diff(labels[nodes])) + 1) if len(nodes) else []:
        k, local = divmod(group[0], d)[0], group % d
        if len(local) == 2:
            pairs[k].append(local)
            continue
        index = np.ix_(local, local)
        comps[k].append((index, undirected[k][index]))
    edges = [np.asarray(p, dtype=np.int64).reshape(-1, 2) for p in pairs]
    return list(zip(compelled, comps, edges))


def _member(compelled, comps, edges, sampler, rng) -> np.ndarray:
    out = compelled.copy()
    for index, graph in comps:
        out[index] |= sampler.orient(graph, rng)
    if len(edges):  # lone reversible edges: each way with probability 1/2
        flip = rng.random(len(edges)) < 0.5
        a, b = edges.T
        out[np.where(flip, b, a), np.where(flip, a, b)] = True
    return out


def count_equivalent_dags(adj, *, targets=None, max_exact: int = MAX_EXACT) -> int:
    """Number of DAGs Markov equivalent to ``adj`` (itself included); I-equivalent for
    perfect interventions on ``targets`` (see :func:`interventional_essential_graph`).

    Example::

        >>> chain = [[0, 1, 0], [0, 0, 1], [0, 0, 0]]
        >>> count_equivalent_dags(chain)  # 3 of the chain's 4 orientations
        3
    """
    a = as_dag(adj)
    _, comps, edges = _split(a[None], _check_targets(targets, len(a)))[0]
    sampler = EquivalenceSampler(max_exact)
    total = 2 ** len(edges)
    for _, graph in comps:
        total *= sampler.count(graph)
    return total


def sample_equivalent_dag(
    adj, rng: np.random.Generator | int | None = None, *, targets=None
) -> np.ndarray:
    """One DAG drawn uniformly from the (I-)Markov equivalence class of ``adj`` ``(d, d)``."""
    return sample_equivalent_dags(as_dag(adj)[None], rng, targets=targets)[0]


def sample_equivalent_dags(
    dags, rng: np.random.Generator | int | None = None, *, targets=None
) -> np.ndarray:
    """Replace every DAG of ``dags`` ``(S, d, d)`` by a uniform member of its class
    (its I-equivalence class for perfect interventions on ``targets``).

    Distinct DAGs are labelled together (vectorized over DAGs and over the
    nodes of each level), and all share the counts of their components, so
    the cost grows with the number of distinct DAGs rather than with ``S``.
    """
    dags = as_dags(dags)
    if dags.ndim != 3:
        raise InputError(f"expected DAGs of shape (S, d, d), got shape {dags.shape}")
    targets = _check_targets(targets, dags.shape[-1])
    return _equivalent_members(dags, np.random.default_rng(rng), targets=targets).astype(np.int64)


#: Draws of a class member per DAG before :func:`_equivalent_members` keeps the DAG itself.
MAX_KNOWLEDGE_TRIES = 1000


def _equivalent_members(
    dags: np.ndarray, rng: np.random.Generator, tick=None, targets=None, knowledge=None
) -> np.ndarray:
    """:func:`sample_equivalent_dags` of checked boolean DAGs ``(S, d, d)``, as booleans;
    ``tick(1)`` is called after each DAG (a progress bar's ``update``).

    With ``knowledge`` (:class:`~pyrostruct.causal.knowledge.KnowledgeMasks`, which every
    DAG of ``dags`` obeys) each DAG is replaced by a uniform member of its class *among
    those that obey the knowledge*: members are drawn uniformly until one does (exact
    rejection sampling; the DAG itself obeys it, so one in at most the class size
    does). After :data:`MAX_KNOWLEDGE_TRIES` draws without one the DAG is kept as it is."""
    s = dags.shape[0]
    first: dict[bytes, int] = {}
    inverse = np.empty(s, dtype=np.int64)
    for k, row in enumerate(np.packbits(dags.reshape(s, -1), axis=1)):
        inverse[k] = first.setdefault(row.tobytes(), len(first))
    parts = _split(dags[np.unique(inverse, return_index=True)[1]], targets)
    sampler = EquivalenceSampler()
    out = np.empty(dags.shape, dtype=bool)
    for k, u in enumerate(inverse):
        out[k] = _member(*parts[u], sampler, rng)
        if knowledge is not None:
            tries = 1
            while not knowledge.admits(out[k]) and tries < MAX_KNOWLEDGE_TRIES:
                out[k] = _member(*parts[u], sampler, rng)
                tries += 1
            if not knowledge.admits(out[k]):
                out[k] = dags[k]
        if tick is not None:
            tick(1)
    return out
