"""``init_order="sparse-sinks"``: a bottom-up order from the concentration graph."""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["sparse_sinks_order"]


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
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    cov = torch.cov(torch.from_numpy(x).T).reshape(d, d)  # torch: no BLAS threads of numpy's
    precision = torch.linalg.pinv(cov).numpy()
    remaining = list(range(d))
    sinks = []
    while remaining:
        scale = np.sqrt(np.clip(np.diag(precision), 1e-300, None))
        partial = -precision / np.outer(scale, scale)
        np.fill_diagonal(partial, 0.0)
        z = np.abs(np.arctanh(np.clip(partial, -0.999999, 0.999999)))
        z *= math.sqrt(max(n - len(remaining) - 1, 1))
        strength = (z > z_threshold).sum(1) + 1e-3 * np.minimum(z, z_threshold).sum(1)
        k = int(np.argmin(strength))
        sinks.append(remaining.pop(k))
        keep = np.arange(len(precision)) != k
        precision = precision[np.ix_(keep, keep)] - np.outer(
            precision[keep, k], precision[k, keep]
        ) / max(precision[k, k], 1e-300)
    return sinks[::-1]
