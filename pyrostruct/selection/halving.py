"""Successive halving: stop the restarts and candidates that are clearly worse than the best.

At each rung (a fraction of the steps), a restart or candidate whose ELBO,
extrapolated optimistically (:func:`_optimistic`), is below the best one's by
more than ``z`` combined standard errors plus a margin stops training
(Jamieson & Talwalkar, "Non-stochastic best arm identification and
hyperparameter optimization", AISTATS 2016).
"""

from __future__ import annotations

import math

import numpy as np


def _optimistic(st, remaining: int) -> float:
    """The ELBO now plus its recent rate of improvement times the steps left.

    ELBO curves are concave in the long run, so a linear extrapolation of the
    recent trend over-estimates the final ELBO: a candidate still improving fast
    is not dropped for being slow.
    """
    losses = st.losses
    w = max(5, len(losses) // 5)
    if len(losses) < 2 * w:
        return math.inf
    slope = (np.mean(losses[-w:]) - np.mean(losses[-2 * w : -w])) / w
    return st.elbo + max(0.0, float(slope)) * remaining


def _halve(alive, state, z, margin, dropped_at, step, steps, vectorized=()) -> int:
    """Drop restarts and candidates clearly worse than the best; return #candidates dropped.

    The restarts of a ``vectorized`` candidate run in one SVI fit, where a
    restart left out would save next to nothing: they are all kept to the end.
    """

    def worse(a, b):  # a clearly worse than b, even extrapolating a's recent progress
        gap = b.elbo - _optimistic(a, steps - step)
        se = math.hypot(a.elbo_se, b.elbo_se)
        m = margin if margin is not None else max(10.0, 0.02 * abs(b.elbo))
        return gap > z * se + m

    by_cand: dict[int, list] = {}
    for key in alive:
        by_cand.setdefault(key[0], []).append(key)
    best_restart = {}
    for i, keys in by_cand.items():
        best = max(keys, key=lambda k: state[k].elbo)
        best_restart[i] = best
        for k in keys:
            if i not in vectorized and k != best and worse(state[k], state[best]):
                alive.discard(k)
    overall = max(best_restart.values(), key=lambda k: state[k].elbo)
    count = 0
    for i, k in best_restart.items():
        if worse(state[k], state[overall]):
            for key in by_cand[i]:
                alive.discard(key)
            dropped_at[i] = step
            count += 1
    return count
