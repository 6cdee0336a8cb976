"""``init_order="equal-variance"``: the top-down order of the equal-variance SEM.

It stays in numpy (``np.cov``, rank-one updates), unlike the torch order search:
on standardized columns every variance is the same up to rounding, so the first
picks follow the rounding of this covariance, and computing it with another
library changes the order (and the result) on such data.
"""

from __future__ import annotations

import numpy as np

__all__ = ["equal_variance_order"]


def equal_variance_order(x: np.ndarray) -> list[int]:
    """Top-down order of the equal-variance linear Gaussian SEM.

    Repeatedly takes the node with the smallest variance conditional on the
    nodes already taken (Chen, Drton, Wang, "On causal discovery with an
    equal-variance assumption", Biometrika 2019): consistent when all noise
    variances are equal. Used to initialize the order for ``noise="equal"``.
    """
    cov = np.cov(np.asarray(x, dtype=np.float64), rowvar=False)
    d = cov.shape[0]
    remaining = list(range(d))
    order = []
    while remaining:
        k = min(remaining, key=lambda j: cov[j, j])
        order.append(k)
        remaining.remove(k)
        if cov[k, k] > 0:
            cov = cov - np.outer(cov[:, k], cov[k, :]) / cov[k, k]
    return order
