"""Seeded synthetic data with a known component count, for tests, tutorials and benchmarks."""

from __future__ import annotations

import numpy as np

__all__ = ["make_gmm_data", "make_ppca_data"]


def make_gmm_data(
    n: int, k: int, d: int = 2, *, separation: float = 8.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points from ``k`` unit-variance Gaussian clusters in ``d`` dimensions.

    Cluster centers are drawn uniformly in a box and redrawn until every pair
    is at least ``separation`` apart (in units of the within-cluster standard
    deviation; about 3 gives overlapping clusters, 8 well-separated ones).
    Cluster sizes are balanced (each at least ``n // (2k)``). Returns
    ``(data (n, d), labels (n,))``.
    """
    rng = np.random.default_rng(seed)
    box = separation * max(1.0, k ** (1.0 / d))
    centers = []
    tries = 0
    while len(centers) < k:
        c = rng.uniform(-box, box, size=d)
        if all(np.linalg.norm(c - o) >= separation for o in centers):
            centers.append(c)
        tries += 1
        if tries > 10000:  # grow the box rather than loop forever
            box *= 1.2
            tries = 0
    minimum = n // (2 * k)
    extra = rng.multinomial(n - minimum * k, np.ones(k) / k)
    sizes = minimum + extra
    labels = np.repeat(np.arange(k), sizes)
    x = np.asarray(centers)[labels] + rng.normal(size=(n, d))
    perm = rng.permutation(n)
    return x[perm], labels[perm]


def make_ppca_data(
    n: int, d: int, rank: int, *, noise: float = 1.0, signal: tuple = (2.0, 4.0), seed: int = 0
) -> np.ndarray:
    """``n`` points ``x = W z + noise * e`` with ``rank`` orthogonal loadings in ``d`` dimensions.

    The loading columns are orthonormal directions scaled so that the signal
    standard deviations lie evenly in ``signal`` (times ``noise``): every
    component is detectable, the weakest at ``signal[0]`` noise units.
    """
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, rank)))
    scales = noise * np.linspace(signal[1], signal[0], rank)
    w = q * scales
    z = rng.normal(size=(n, rank))
    return z @ w.T + noise * rng.normal(size=(n, d)) + rng.normal(size=d)
