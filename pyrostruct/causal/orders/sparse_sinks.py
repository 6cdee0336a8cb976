"""``init_order="sparse-sinks"``: a bottom-up order from the concentration graph."""

from __future__ import annotations

import math

import numpy as np
import torch

from pyrostruct.causal.orders.precedence import best_position
from pyrostruct.causal.regressions import float64_tensor

__all__ = ["sparse_sinks_order"]


@torch.inference_mode()
def sparse_sinks_order(x: np.ndarray, z_threshold: float = 3.0) -> list[int]:
    """Bottom-up order: the sink is the node with the fewest strong partial correlations.

    In a DAG the partial correlations of a sink given all other nodes vanish
    except with its parents, while any other node also keeps its children and
    their other parents (its Markov blanket): sinks tend to have the smallest
    neighbourhood in the concentration graph. Partial correlations come from
    the precision matrix (Fisher ``z`` above ``z_threshold`` counts as strong);
    removing a sink marginalizes it out by a Schur complement, ``O(d^2)`` per
    step. A heuristic start for the order when noise variances are not equal
    (then the order is identified only through sparsity), not a consistent
    estimator.
    """
    x = float64_tensor(x)
    n, d = x.shape
    precision = torch.linalg.pinv(torch.cov(x.T).reshape(d, d))
    remaining = list(range(d))
    sinks = []
    while remaining:
        scale = torch.diagonal(precision).clamp_min(1e-300).sqrt()
        partial = -precision / torch.outer(scale, scale)
        partial.fill_diagonal_(0.0)
        z = torch.atanh(partial.clamp(-0.999999, 0.999999)).abs()
        z *= math.sqrt(max(n - len(remaining) - 1, 1))
        strength = (z > z_threshold).sum(1) + 1e-3 * z.clamp_max(z_threshold).sum(1)
        # mathematically equal strengths (two nodes whose only weak partial correlation is
        # with each other) differ in the last bits by the platform's rounding: the first of
        # them is taken on every machine
        k = best_position(-strength, tol=1e-9)
        sinks.append(remaining.pop(k))
        keep = torch.arange(len(precision)) != k
        precision = precision[keep][:, keep] - torch.outer(
            precision[keep, k], precision[k, keep]
        ) / max(float(precision[k, k]), 1e-300)
    return sinks[::-1]
