"""The last stage of the order search: best-order-score insertion moves on grow-shrink BIC.

For an order, each node ``w`` takes its parents among its predecessors by *grow-shrink*
(Margaritis & Thrun 1999, as BOSS uses it: Andrews, Ramsey, Sanchez-Romero, Camchong,
Kummerfeld, "Fast scalable and accurate discovery of DAGs using the best order score
search and grow-shrink trees", NeurIPS 2023): grow adds, one at a time, the candidate
whose partial correlation with ``w`` given the parents so far gains the most, while the
gain exceeds the penalty; shrink then drops, one at a time, the parent whose removal
gains the most, while one does. The local score is the Gaussian BIC

.. math::

    s(w \\mid P) = -\\tfrac{n}{2} \\log \\hat\\sigma^2_{w \\mid P} - c\\,|P|,

with ``c = penalty`` nats an edge (``2 log n`` by default, BOSS's ``lambda = 2`` in
causal-learn's units: at ``n = 2000`` an edge must explain a partial ``R^2`` above about
1.5%). The order score is the sum of local scores, and the search moves one node at a
time to its best position (BOSS's ``better_mutation``) until a sweep moves none.

Rescoring is exact and incremental. Moving ``v`` changes the candidates of the nodes it
passes by ``v`` alone, and grow-shrink on candidates ``C`` gives the same parents on
``C - {v}`` unless grow chose ``v`` (kept in ``grown``), and on ``C + {v}`` unless ``v``
would have won a grow step or kept grow going (``changer``: at each step, the nodes
outside ``C`` whose gain beats that step's best and zero, found for all nodes at once).
So a move of ``v`` reruns grow-shrink only for the nodes where ``grown`` or ``changer``
holds ``v``, and for ``v`` itself on the prefixes of the order where a ``changer`` of
its current result enters. Grow keeps the rows of ``L^{-1} Sigma_{P,.}`` (``L`` the
Cholesky factor of the parents' covariance) so that a step costs ``O(k d)`` with ``k``
parents; a node's grow-shrink costs ``O(k^2 d + k^4)``, and a sweep ``O(d (r k^2 d +
d))`` with ``r`` the reruns a move needs (a few: the nodes ``v`` is a strong enough
partner of).

Computed in numpy (its vectors are short and its loops many: torch's per-operation cost
would dominate), from the covariance the rest of the search forms.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from pyrostruct.causal.orders.precedence import allowed_positions, best_position

__all__ = ["bic_order_search", "grow_shrink_parents", "default_penalty"]


def default_penalty(n: int) -> float:
    """BIC penalty per edge, in nats, of the search: ``2 log n``."""
    return 2.0 * math.log(max(n, 2))


class _Local(NamedTuple):
    """Grow-shrink result of one node: its ``parents``, its BIC ``score``, ``grown`` (the
    nodes grow chose, boolean ``(d,)``) and ``changer`` (the non-candidates that would change
    the grow path)."""

    parents: tuple[int, ...]
    score: float
    grown: np.ndarray
    changer: np.ndarray


def _grow_shrink(cov: np.ndarray, n: int, w: int, candidates: np.ndarray, penalty: float,
                 allowed=None, required=None):  # fmt: skip
    """Grow-shrink of node ``w`` on the boolean ``candidates`` ``(d,)``: a :class:`_Local`.
    ``allowed`` ``(d,)``: the nodes that may be ``w``'s parents at all (default: every one);
    ``required`` ``(d,)``: the nodes that are ``w``'s parents whenever they are candidates
    (taken before grow starts and never shrunk away, unless the ones before determine one
    exactly; in ``grown``, and in ``changer`` while not candidates)."""
    d = cov.shape[0]
    half_n = 0.5 * n
    pcov = cov[:, w].copy()  # partial covariances with w given the parents so far
    pvar = np.diag(cov).copy()  # partial variances given the parents so far
    var_w = cov[w, w]
    tiny = 1e-10 * pvar
    rows = np.empty((0, d))
    blocked = np.zeros(d, dtype=bool)
    blocked[w] = True
    if allowed is not None:
        blocked |= ~allowed
    changer = np.zeros(d, dtype=bool) if required is None else required.copy()
    chosen = []

    def take(u, rows, pcov, pvar, var_w):
        row = (cov[u] - rows[:, u] @ rows) / math.sqrt(pvar[u])
        blocked[u] = True
        chosen.append(u)
        return np.vstack([rows, row]), pcov - row * row[w], pvar - row * row, var_w - row[w] ** 2

    for u in [] if required is None else np.flatnonzero(required & candidates & ~blocked):
        if pvar[u] > tiny[u]:  # else determined by the required parents before it
            rows, pcov, pvar, var_w = take(u, rows, pcov, pvar, var_w)
    while var_w > 1e-12 * cov[w, w]:
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = pcov * pcov / (pvar * var_w)
        gain = -half_n * np.log1p(-np.clip(r2, 0.0, 1.0 - 1e-15)) - penalty
        gain[blocked | (pvar <= tiny)] = -np.inf  # parents, w, and inputs they determine
        eligible = np.where(candidates, gain, -np.inf)
        u = int(np.argmax(eligible))
        best = eligible[u]
        changer |= gain > max(best, 0.0)
        if not best > 0.0:
            break
        rows, pcov, pvar, var_w = take(u, rows, pcov, pvar, var_w)
    grown = np.zeros(d, dtype=bool)
    grown[chosen] = True
    keep = np.zeros(d, dtype=bool) if required is None else required
    parents, resid = _shrink(cov, n, w, chosen, penalty, keep)
    return _Local(tuple(sorted(parents)), -half_n * math.log(resid) - penalty * len(parents),
                  grown, changer & ~candidates)  # fmt: skip


def _shrink(cov, n, w, parents, penalty, keep):
    """Drop, one at a time, the parent whose removal gains most while one gains, never one
    that ``keep`` ``(d,)`` marks: ``(parents, residual variance)``. Removing ``p`` from
    ``P`` adds ``beta_p^2 / [Sigma_PP^{-1}]_pp`` to the residual variance."""
    parents = list(parents)
    while True:
        if not parents:
            return parents, cov[w, w]
        idx = np.asarray(parents)
        inv = np.linalg.inv(cov[np.ix_(idx, idx)])
        beta = inv @ cov[idx, w]
        resid = max(cov[w, w] - cov[idx, w] @ beta, 1e-300)
        gain = 0.5 * n * (math.log(resid) - np.log(resid + beta**2 / np.diag(inv))) + penalty
        gain[keep[idx]] = -np.inf
        k = int(np.argmax(gain))
        if not gain[k] > 0.0:
            return parents, resid
        parents.pop(k)


class _Problem(NamedTuple):
    """The covariance, row count and penalty each node is scored with (a node intervened on
    in some rows: those of the rows where it is not)."""

    covs: list
    ns: list
    penalties: list
    allowed: np.ndarray | None = None  # allowed[i, j]: i may be a parent of j
    required: np.ndarray | None = None  # required[i, j]: i is a parent of j when before it

    def local(self, w: int, candidates: np.ndarray) -> _Local:
        allowed = None if self.allowed is None else self.allowed[:, w]
        required = None if self.required is None else self.required[:, w]
        return _grow_shrink(self.covs[w], self.ns[w], w, candidates, self.penalties[w], allowed,
                            required)  # fmt: skip


def _problem(cov, n, penalty, regimes, forbidden=None, required=None) -> _Problem:
    d = cov.shape[0]
    covs, ns = [cov] * d, [n] * d
    for j, (cov_j, n_j) in (regimes or {}).items():
        covs[j], ns[j] = np.asarray(cov_j, dtype=np.float64), int(n_j)
    penalties = [default_penalty(m) if penalty is None else float(penalty) for m in ns]
    allowed = None if forbidden is None else ~np.asarray(forbidden, dtype=bool)
    if required is not None:
        required = np.asarray(required, dtype=bool)
        required = required if required.any() else None
    return _Problem(covs, ns, penalties, allowed, required)


def _order_locals(problem: _Problem, order) -> dict[int, _Local]:
    candidates = np.zeros(len(order), dtype=bool)
    out = {}
    for v in order:
        out[v] = problem.local(v, candidates)
        candidates[v] = True
    return out


def grow_shrink_parents(cov, n: int, order, *, penalty: float | None = None, regimes=None,
                        forbidden=None, required=None):  # fmt: skip
    """Grow-shrink parents of every node among its predecessors in ``order``: a ``(d, d)``
    0/1 adjacency (``[i, j] = 1``: ``i -> j``) and the order's BIC score. ``cov`` ``(d,
    d)`` is the covariance of ``n`` rows; ``penalty`` per edge in nats (default
    :func:`default_penalty`); ``regimes``, ``forbidden``, ``required``: see
    :func:`bic_order_search`."""
    cov = np.asarray(cov, dtype=np.float64)
    problem = _problem(cov, n, penalty, regimes, forbidden, required)
    locals_ = _order_locals(problem, list(order))
    adjacency = np.zeros(cov.shape, dtype=np.int64)
    for w, local in locals_.items():
        adjacency[list(local.parents), w] = 1
    return adjacency, float(sum(local.score for local in locals_.values()))


def _own_scores(problem: _Problem, v: int, rest: np.ndarray):
    """Local terms of ``v`` on every prefix ``rest[:p]``, ``p = 0..len(rest)``: the scores
    ``(len(rest) + 1,)`` and the segments ``[(first p, _Local)]`` they are constant on (a
    rerun only where a ``changer`` of the current result enters)."""
    m = len(rest)
    own = np.empty(m + 1)
    segments = []
    candidates = np.zeros(m + 1, dtype=bool)
    p = 0
    while True:
        local = problem.local(v, candidates)
        segments.append((p, local))
        hits = np.flatnonzero(local.changer[rest[p:]])
        stop = m if len(hits) == 0 else p + int(hits[0])  # rest[stop] enters at p = stop + 1
        own[p : stop + 1] = local.score
        if stop == m:
            return own, segments
        candidates[rest[p : stop + 1]] = True
        p = stop + 1


def _insertion(problem: _Problem, order: list[int], locals_: dict, q: int):
    """BIC scores ``(d,)`` of moving ``v = order[q]`` to every position ``p`` of ``rest``
    (the order without ``v``: ``rest[:p] + [v] + rest[p:]``), and the parts
    :func:`_moved` forms the new local results from."""
    v = order[q]
    rest = order[:q] + order[q + 1 :]
    m = len(rest)
    current = np.array([locals_[w].score for w in rest])
    without, with_v = current.copy(), current.copy()  # rest's terms without / with v before
    changed_without, changed_with = {}, {}
    candidates = np.zeros(m + 1, dtype=bool)
    for i, w in enumerate(rest):
        local = locals_[w]
        if i >= q and local.grown[v]:  # w was after v and grew on it
            changed_without[w] = problem.local(w, candidates)  # read, not kept
            without[i] = changed_without[w].score
        elif i < q and local.changer[v]:  # w was before v and would change with it
            c = candidates.copy()
            c[v] = True
            changed_with[w] = problem.local(w, c)
            with_v[i] = changed_with[w].score
        candidates[w] = True
    own, segments = _own_scores(problem, v, np.asarray(rest, dtype=np.int64))
    before = np.concatenate([[0.0], np.cumsum(without)])
    cum = np.cumsum(with_v)
    after = cum[-1] - np.concatenate([[0.0], cum]) if m else np.zeros(1)
    return before + own + after, (rest, changed_without, changed_with, segments)


def _moved(locals_: dict, v: int, parts, p: int) -> list[int]:
    """Move ``v`` to position ``p`` of ``rest``: updates ``locals_`` in place, returns the order."""
    rest, changed_without, changed_with, segments = parts
    for i, w in enumerate(rest):
        new = changed_without.get(w) if i < p else changed_with.get(w)
        if new is not None:
            locals_[w] = new
    locals_[v] = next(local for first, local in reversed(segments) if first <= p)
    return rest[:p] + [v] + rest[p:]


def bic_order_search(
    cov, n: int, order, *, penalty: float | None = None, max_sweeps: int = 20, precedes=None,
    regimes=None, forbidden=None, required=None, bar=None,
) -> tuple[list[int], float]:  # fmt: skip
    """Greedy insertion search over orders on the grow-shrink BIC score, from ``order``:
    ``(order, score)``.

    Each sweep takes every node in turn and moves it to the position of highest score
    (the first among ties, only positions that keep ``precedes``), until a sweep moves no
    node or ``max_sweeps``. A node is not rescored while nothing has moved since it was
    last found at its best position. ``cov`` ``(d, d)``: covariance of ``n`` rows;
    ``penalty``: nats an edge (default :func:`default_penalty`); ``regimes`` maps a node
    intervened on in some rows to ``(cov, n)`` of the rows where it is not (it is scored on
    those, as in :func:`~pyrostruct.causal.regressions.regime_covariances`);
    ``forbidden`` ``(d, d)``: ``i`` is never a parent of ``j`` where ``forbidden[i, j]``
    (background knowledge); ``required`` ``(d, d)``: ``i`` is a parent of ``j`` in every
    order that puts it before ``j`` (with ``precedes`` holding ``required``, every order
    the search visits); ``bar``: a tqdm bar to update once per node scored.
    """
    cov = np.asarray(cov, dtype=np.float64)
    problem = _problem(cov, n, penalty, regimes, forbidden, required)
    best = [int(i) for i in order]
    locals_ = _order_locals(problem, best)
    score = sum(local.score for local in locals_.values())
    moves, settled = 0, {}
    for _ in range(max_sweeps):
        moved = False
        for v in list(best):
            if settled.get(v) == moves:
                continue
            if bar is not None:
                bar.update(1)
            q = best.index(v)
            scores, parts = _insertion(problem, best, locals_, q)
            if precedes is not None:
                first, last = allowed_positions(best, q, precedes)
                scores[:first], scores[last + 1 :] = -np.inf, -np.inf
            k = best_position(scores)
            if scores[k] > score + 1e-9 * abs(score):
                best = _moved(locals_, v, parts, k)
                score, moved, moves = float(scores[k]), True, moves + 1
            settled[v] = moves
        if not moved:
            break
    return best, float(score)
