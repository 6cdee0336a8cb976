"""Where the order search may move a node: positions that keep background knowledge's
precedence (``i`` before ``j``), and the best of the positions scored."""

from __future__ import annotations

import numpy as np

__all__ = ["allowed_positions", "best_position", "keep_precedence"]


def keep_precedence(order: list[int], precedes=None) -> list[int]:
    """The order closest to ``order`` that keeps ``precedes`` ``(d, d)`` (``i`` before ``j``
    where ``precedes[i, j]``): at every position the earliest node of ``order`` whose
    required predecessors are all placed (a stable topological sort). ``order`` itself
    when it keeps ``precedes`` or ``precedes`` is ``None``."""
    if precedes is None:
        return list(order)
    pre = np.asarray(precedes, dtype=bool)
    placed = np.zeros(len(order), dtype=bool)
    left, out = list(order), []
    while left:
        k = next(k for k, v in enumerate(left) if placed[pre[:, v]].all())
        v = left.pop(k)
        placed[v] = True
        out.append(v)
    return out


def allowed_positions(order: list[int], q: int, precedes) -> tuple[int, int]:
    """The positions ``first..last`` of ``rest`` (``order`` without ``v = order[q]``) that
    ``v`` may move to and keep ``precedes``: after its last required predecessor and before
    its first required successor in ``rest``."""
    v, rest = order[q], order[:q] + order[q + 1 :]
    pre = np.asarray(precedes, dtype=bool)
    first = max((k + 1 for k, u in enumerate(rest) if pre[u, v]), default=0)
    last = min((k for k, u in enumerate(rest) if pre[v, u]), default=len(rest))
    return first, last


def best_position(scores, tol: float | None = None) -> int:
    """The first position whose score is within ``tol`` of the largest (default ``1e-9``
    of its size).

    Positions that are equivalent (Markov-equivalent orders, a node between two it is
    independent of) score the same in exact arithmetic and differ in the last bits by the
    summation order, which the machine's linear algebra picks: a plain ``argmax`` sent the
    greedy search down different paths on an AMD and an Intel machine. ``scores`` a
    ``(k,)`` numpy array or CPU tensor (``-inf`` at positions not allowed), in the order
    of the positions."""
    s = np.asarray(scores, dtype=np.float64)
    top = s.max()
    if not np.isfinite(top):
        return int(s.argmax())
    tol = 1e-9 * abs(top) if tol is None else tol
    return int(np.flatnonzero(s >= top - tol)[0])
