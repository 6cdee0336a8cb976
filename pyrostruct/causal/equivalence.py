"""Markov equivalence classes of DAGs: the CPDAG, the class size, uniform members.

Two DAGs are Markov equivalent when they have the same skeleton and the same
v-structures (Verma & Pearl 1990); they then fit observational linear Gaussian
data with unequal noise variances equally well, so such data cannot orient the
edges that differ between them. The class is summarized by its CPDAG
(completed partially directed acyclic graph): compelled edges, the same in every
member, and reversible ones, which appear in both directions.

- :func:`cpdag` labels every edge compelled or reversible with Chickering's
  algorithm ("A transformational characterization of equivalent Bayesian
  network structures", UAI 1995), ``O(|E| d)``.
- :func:`count_equivalent_dags` and :func:`sample_equivalent_dag` count the
  members and draw one uniformly. The reversible edges form undirected chordal
  components that are oriented independently; a component's orientations are
  counted by choosing its source ``v``, orienting ``v``'s edges outwards,
  closing under Meek's rules and recursing into the undirected components left
  (He, Jia & Yu, "Counting and exploring sizes of Markov equivalence classes of
  directed acyclic graphs", JMLR 2015): ``#(G) = sum_v prod_{H in C(G, v)}
  #(H)``. Drawing the source with probability proportional to its term gives
  an exact uniform draw. The recursion is memoized on node subsets; components
  larger than ``max_exact`` nodes (rare in sparse graphs) are oriented by a
  maximum-cardinality search from a random start instead, which gives every
  member positive probability but not exactly equal ones.

Adjacency convention: ``A[i, j] = 1`` means ``i -> j``; a CPDAG has both
``C[i, j] = C[j, i] = 1`` for a reversible edge.
"""

from __future__ import annotations

import numpy as np

from pyrostruct.errors import InputError

__all__ = [
    "EquivalenceSampler",
    "cpdag",
    "count_equivalent_dags",
    "sample_equivalent_dag",
    "sample_equivalent_dags",
]

MAX_EXACT = 12


def _check_dag(adj) -> np.ndarray:
    a = np.asarray(adj)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise InputError(f"expected a square (d, d) adjacency matrix, got shape {a.shape}")
    a = a != 0
    if a.diagonal().any():
        raise InputError("adjacency has self-loops; expected a DAG")
    return a


def _topological_order(a: np.ndarray) -> list[int]:
    indeg = a.sum(0).astype(np.int64)
    order, stack = [], [int(v) for v in np.flatnonzero(indeg == 0)]
    while stack:
        v = stack.pop()
        order.append(v)
        for w in np.flatnonzero(a[v]):
            indeg[w] -= 1
            if indeg[w] == 0:
                stack.append(int(w))
    if len(order) != len(a):
        raise InputError("adjacency has a directed cycle; expected a DAG")
    return order


def _label_edges(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Chickering's Find-Compelled: boolean ``(compelled, reversible)`` over the edges of ``a``."""
    order = _topological_order(a)
    rank = np.empty(len(a), dtype=np.int64)
    rank[order] = np.arange(len(a))
    compelled = np.zeros_like(a)
    reversible = np.zeros_like(a)
    for y in order:
        parents = np.flatnonzero(a[:, y])
        # edges into y in Chickering's edge order: highest-ranked parent first
        for x in parents[np.argsort(-rank[parents])]:
            if compelled[x, y] or reversible[x, y]:
                continue
            for w in np.flatnonzero(compelled[:, x]):
                if not a[w, y]:  # w -> x -> y with w, y not adjacent
                    compelled[parents, y] = True
                    break
                compelled[w, y] = True
            else:
                unknown = parents[~(compelled[parents, y] | reversible[parents, y])]
                others = parents[parents != x]
                if (~a[others, x]).any():  # z -> y <- x with z, x not adjacent
                    compelled[unknown, y] = True
                else:
                    reversible[unknown, y] = True
    return compelled, reversible


def cpdag(adj) -> np.ndarray:
    """CPDAG of a DAG ``(d, d)``: compelled edges one way, reversible edges both ways.

    Examples
    --------
    >>> cpdag([[0, 1, 0], [0, 0, 1], [0, 0, 0]]).tolist()  # a chain: all reversible
    [[0, 1, 0], [1, 0, 1], [0, 1, 0]]
    >>> cpdag([[0, 0, 1], [0, 0, 1], [0, 0, 0]]).tolist()  # a v-structure: compelled
    [[0, 0, 1], [0, 0, 1], [0, 0, 0]]
    """
    compelled, reversible = _label_edges(_check_dag(adj))
    return (compelled | reversible | reversible.T).astype(np.int64)


def _components(u: np.ndarray) -> list[np.ndarray]:
    """Connected components (sorted node index arrays) of an undirected boolean graph."""
    if len(u) > 32:
        from scipy.sparse.csgraph import connected_components

        _, labels = connected_components(u, directed=False)
        order = np.argsort(labels, kind="stable")
        return np.split(order, np.flatnonzero(np.diff(labels[order])) + 1)
    seen = np.zeros(len(u), dtype=bool)
    out = []
    for start in range(len(u)):
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


def _meek_closure(directed: np.ndarray, undirected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply Meek's rules R1-R3 (Meek, UAI 1995) until nothing changes."""
    d, u = directed.copy(), undirected.copy()
    adjacent = d | d.T | u
    nonadj = ~adjacent & ~np.eye(len(u), dtype=bool)
    while True:
        di = d.astype(np.int64)
        r1 = (di.T @ nonadj.astype(np.int64)) > 0  # a -> b - c, a !~ c  =>  b -> c
        r2 = (di @ di) > 0  # a -> b -> c, a - c  =>  a -> c
        t = (u[:, None, :] & d.T[None, :, :]).astype(np.int64)  # t[a, b, c] = a - c -> b
        r3 = np.einsum("abc,cd,abd->ab", t, nonadj.astype(np.int64), t) > 0
        new = u & (r1 | r2 | r3)
        new &= ~new.T  # never orient both ways in one round
        if not new.any():
            return d, u
        d |= new
        u &= ~(new | new.T)


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
            comps = [c for c in _components(rest) if len(c) > 1]
            count = 1
            for c in comps:
                count *= self.count(u[np.ix_(c, c)])
            terms.append((count, directed, comps))
        self._rooted[key] = terms
        return terms

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
            self._counts[key] = sum(t[0] for t in self._rooted_terms(u))
        return self._counts[key]

    def orient(self, u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A uniformly drawn orientation of the connected chordal graph ``u`` ``(k, k)``."""
        u = np.asarray(u, dtype=bool)
        out = np.zeros_like(u)
        if len(u) > self.max_exact:
            return _orient_mcs(u, rng)
        if len(u) > 1:
            terms = self._rooted_terms(u)
            weights = np.array([float(t[0]) for t in terms])
            _, directed, comps = terms[rng.choice(len(terms), p=weights / weights.sum())]
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


def _split(adj) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Compelled edges, reversible edges (both ways) and the reversible components."""
    compelled, reversible = _label_edges(_check_dag(adj))
    undirected = reversible | reversible.T
    return compelled, undirected, [c for c in _components(undirected) if len(c) > 1]


def _member(compelled, undirected, comps, sampler, rng) -> np.ndarray:
    out = compelled.copy()
    for c in comps:
        out[np.ix_(c, c)] |= sampler.orient(undirected[np.ix_(c, c)], rng)
    return out.astype(np.int64)


def count_equivalent_dags(adj, *, max_exact: int = MAX_EXACT) -> int:
    """Number of DAGs Markov equivalent to ``adj`` (itself included).

    Examples
    --------
    >>> count_equivalent_dags([[0, 1, 0], [0, 0, 1], [0, 0, 0]])  # chain: 3 of the 4 orientations
    3
    """
    _, undirected, comps = _split(adj)
    sampler = EquivalenceSampler(max_exact)
    total = 1
    for c in comps:
        total *= sampler.count(undirected[np.ix_(c, c)])
    return total


def sample_equivalent_dag(adj, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """One DAG drawn uniformly from the Markov equivalence class of ``adj`` ``(d, d)``."""
    return _member(*_split(adj), EquivalenceSampler(), np.random.default_rng(rng))


def sample_equivalent_dags(dags: np.ndarray, rng: np.random.Generator | int | None = None):
    """Replace every DAG of ``dags`` ``(S, d, d)`` by a uniform member of its class.

    Identical DAGs share their CPDAG, and all share the counts of their
    components, so the cost grows with the number of distinct DAGs and
    components rather than with ``S``.
    """
    rng = np.random.default_rng(rng)
    dags = np.asarray(dags)
    out = np.empty(dags.shape, dtype=np.int64)
    sampler = EquivalenceSampler()
    cache: dict[bytes, tuple] = {}
    for s, dag in enumerate(dags != 0):
        key = np.packbits(dag).tobytes()
        if key not in cache:
            cache[key] = _split(dag)
        out[s] = _member(*cache[key], sampler, rng)
    return out
