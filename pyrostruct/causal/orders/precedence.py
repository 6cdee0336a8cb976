"""Orders that keep background knowledge's precedence (``i`` before ``j``)."""

from __future__ import annotations

import numpy as np

__all__ = ["allowed_positions", "keep_precedence"]


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
