"""Orders that keep background knowledge's precedence (``i`` before ``j``)."""

from __future__ import annotations

import numpy as np

__all__ = ["keep_precedence"]


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
