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
    """Connected components (node index arrays) of an undirected boolean graph."""
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
    """Counts and uniform draws for the orientations of undirected chordal components.

    Memoizes per component (node subset of the graph it was built for); build
    one per CPDAG and reuse it for many draws.
    """

    def __init__(self, undirected: np.ndarray, max_exact: int = MAX_EXACT):
        self.u = np.asarray(undirected, dtype=bool)
        self.max_exact = int(max_exact)
        self._counts: dict[tuple[int, ...], int] = {}
        self._rooted: dict[tuple[int, ...], list] = {}

    def _rooted_terms(self, nodes: tuple[int, ...]):
        """Per source ``v`` of ``nodes``: (orientations, edges it compels, components left)."""
        if nodes in self._rooted:
            return self._rooted[nodes]
        idx = np.asarray(nodes)
        u = self.u[np.ix_(idx, idx)]
        terms = []
        for k in range(len(idx)):
            d0 = np.zeros_like(u)
            d0[k] = u[k]
            u0 = u & ~(d0 | d0.T)
            d, rest = _meek_closure(d0, u0)
            comps = [tuple(idx[c].tolist()) for c in _components(rest) if len(c) > 1]
            count = 1
            for c in comps:
                count *= self.count(c)
            terms.append((count, d, comps))
        self._rooted[nodes] = terms
        return terms

    def count(self, nodes: tuple[int, ...]) -> int:
        """Number of acyclic orientations without v-structures of the component ``nodes``."""
        if len(nodes) <= 1:
            return 1
        if nodes not in self._counts:
            if len(nodes) > self.max_exact:
                raise InputError(
                    f"a reversible component of {len(nodes)} nodes is too large to count "
                    f"exactly (max_exact={self.max_exact})"
                )
            self._counts[nodes] = sum(t[0] for t in self._rooted_terms(nodes))
        return self._counts[nodes]

    def orient(self, nodes: tuple[int, ...], rng: np.random.Generator, out: np.ndarray) -> None:
        """Write a uniformly drawn orientation of component ``nodes`` into ``out`` (in place)."""
        if len(nodes) <= 1:
            return
        if len(nodes) > self.max_exact:
            self._orient_mcs(nodes, rng, out)
            return
        terms = self._rooted_terms(nodes)
        weights = np.array([float(t[0]) for t in terms])
        _, directed, comps = terms[rng.choice(len(terms), p=weights / weights.sum())]
        idx = np.asarray(nodes)
        out[np.ix_(idx, idx)] |= directed
        for c in comps:
            self.orient(c, rng, out)

    def _orient_mcs(self, nodes, rng, out) -> None:
        """Maximum-cardinality search from a random start, ties broken at random: the
        visiting order of a chordal graph orients it without v-structures (Tarjan &
        Yannakakis 1984)."""
        idx = np.asarray(nodes)
        u = self.u[np.ix_(idx, idx)]
        weight = np.zeros(len(idx))
        visited = np.zeros(len(idx), dtype=bool)
        rank = np.empty(len(idx), dtype=np.int64)
        for step in range(len(idx)):
            score = np.where(visited, -1.0, weight + rng.random(len(idx)) * 0.5)
            v = int(np.argmax(score))
            visited[v], rank[v] = True, step
            weight += u[v]
        local = u & (rank[:, None] < rank[None, :])
        out[np.ix_(idx, idx)] |= local


def _split(adj) -> tuple[np.ndarray, np.ndarray, list[tuple[int, ...]]]:
    compelled, reversible = _label_edges(_check_dag(adj))
    undirected = reversible | reversible.T
    comps = [tuple(c.tolist()) for c in _components(undirected) if len(c) > 1]
    return compelled, undirected, comps


def count_equivalent_dags(adj, *, max_exact: int = MAX_EXACT) -> int:
    """Number of DAGs Markov equivalent to ``adj`` (itself included).

    Examples
    --------
    >>> count_equivalent_dags([[0, 1, 0], [0, 0, 1], [0, 0, 0]])  # chain: 3 of the 4 orientations
    3
    """
    _, undirected, comps = _split(adj)
    sampler = EquivalenceSampler(undirected, max_exact)
    total = 1
    for c in comps:
        total *= sampler.count(c)
    return total


def sample_equivalent_dag(adj, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """One DAG drawn uniformly from the Markov equivalence class of ``adj`` ``(d, d)``."""
    rng = np.random.default_rng(rng)
    compelled, undirected, comps = _split(adj)
    sampler = EquivalenceSampler(undirected)
    out = compelled.copy()
    for c in comps:
        sampler.orient(c, rng, out)
    return out.astype(np.int64)


def sample_equivalent_dags(dags: np.ndarray, rng: np.random.Generator | int | None = None):
    """Replace every DAG of ``dags`` ``(S, d, d)`` by a uniform member of its class.

    Identical DAGs share their CPDAG and counts (the samples of a concentrated
    posterior repeat), so the cost grows with the number of distinct DAGs.
    """
    rng = np.random.default_rng(rng)
    dags = np.asarray(dags)
    out = np.empty(dags.shape, dtype=np.int64)
    cache: dict[bytes, tuple] = {}
    for s, dag in enumerate(dags != 0):
        key = np.packbits(dag).tobytes()
        if key not in cache:
            compelled, undirected, comps = _split(dag)
            cache[key] = (compelled, EquivalenceSampler(undirected), comps)
        compelled, sampler, comps = cache[key]
        member = compelled.copy()
        for c in comps:
            sampler.orient(c, rng, member)
        out[s] = member
    return out
