"""Data-aware initialization of mixture-like models: k-means++ centres as starting values.

:func:`mixture_init` recognizes a finite mixture written with a discrete
assignment (``locs[z]``) and returns an ``init(args, kwargs, rng)`` giving
starting values of its component parameters from a k-means++ clustering of
the data (:func:`kmeans_plus_plus`), a different seeding per ``rng``. Used by
:func:`~pyrostruct.infer.fit` and :func:`~pyrostruct.selection.select` for
their restarts: a mixture started at the default initialization tends to
collapse its components onto one cluster.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample

from pyrostruct.infer.enum import _is_latent_discrete, support_size

__all__ = ["kmeans_plus_plus", "mixture_init"]


def kmeans_plus_plus(
    x: np.ndarray, k: int, rng: np.random.Generator, lloyd_iters: int = 10, n_init: int = 10
):
    """Best of ``n_init`` k-means++ seedings, each refined by ``lloyd_iters`` Lloyd steps.

    Each new center is drawn with probability proportional to the squared
    distance to the nearest chosen center (Arthur & Vassilvitskii, 2007); the
    run with the smallest within-cluster sum of squares wins (as scikit-learn's
    ``KMeans(n_init=...)``). Returns ``(centers, labels)``.
    """
    best = None
    for _ in range(n_init):
        centers, labels = _kmeans_once(x, k, rng, lloyd_iters)
        inertia = ((x - centers[labels]) ** 2).sum()
        if best is None or inertia < best[0]:
            best = (inertia, centers, labels)
    return best[1], best[2]


def _kmeans_once(x, k, rng, lloyd_iters):
    n = len(x)
    centers = [x[rng.integers(n)]]
    d2 = ((x - centers[0]) ** 2).sum(1)
    for _ in range(1, k):
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(n, 1.0 / n)
        c = x[rng.choice(n, p=p)]
        centers.append(c)
        d2 = np.minimum(d2, ((x - c) ** 2).sum(1))
    centers = np.array(centers)
    labels = np.zeros(n, dtype=int)
    for _ in range(lloyd_iters + 1):
        labels = ((x[:, None, :] - centers[None]) ** 2).sum(-1).argmin(1)
        for j in range(k):
            if (labels == j).any():
                centers[j] = x[labels == j].mean(0)
    return centers, labels


def mixture_init(model: Callable, *args, **kwargs) -> Callable | None:
    """A data-aware ``init(args, kwargs, rng)`` for a mixture-like model, or ``None``.

    Recognizes the pattern of a finite mixture written with a discrete
    assignment: every latent discrete site has the same support size ``K``, an
    observed site holds ``N`` points of shape ``s`` (its event shape), and some
    continuous latent site has shape ``(K, *s)`` with real support (the
    component locations, as in ``Normal(locs[z], ...)``). Each call seeds ``K``
    centers by k-means++ with a few Lloyd steps on the points (Arthur &
    Vassilvitskii, "k-means++: the advantages of careful seeding", 2007), a
    different seeding per ``rng``, and initializes

    * real sites of shape ``(K, *s)`` at the centers;
    * positive sites of shape ``(K, *s)`` or ``(K,)`` at the within-cluster
      standard deviations, and positive sites of shape ``s`` or ``()`` at the
      pooled within-cluster standard deviation;
    * simplex sites of size ``K`` at the smoothed cluster proportions.

    Other sites keep the default initialization. This is what Pyro's Gaussian
    mixture tutorial does by hand (locations at data points, scale from the
    data variance), made automatic.
    """
    from torch.distributions import constraints

    with poutine.block(), torch.no_grad(), torch.random.fork_rng():  # draws nothing
        trace = poutine.trace(model).get_trace(*args, **kwargs)
    sizes = {support_size(site["fn"]) for site in trace.nodes.values() if _is_latent_discrete(site)}
    if len(sizes) != 1 or None in sizes:
        return None
    (k,) = sizes
    points = None
    for site in trace.nodes.values():
        if site["type"] == "sample" and site["is_observed"] and not site_is_subsample(site):
            value = site["value"]
            event = tuple(value.shape[value.dim() - site["fn"].event_dim :])
            if torch.is_tensor(value) and value.dim() > len(event) and value.is_floating_point():
                points, shape = value.detach().reshape(-1, *event), event
                break
    if points is None or len(points) < k:
        return None
    roles = {}
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
            continue
        if site["fn"].support.is_discrete:
            continue
        vshape, support = tuple(site["value"].shape), site["fn"].support
        while isinstance(support, constraints.independent):
            support = support.base_constraint
        if vshape == (k, *shape) and support is constraints.real:
            roles[name] = "loc"
        elif support is constraints.positive and vshape in ((k, *shape), (k,)):
            roles[name] = "scale"
        elif support is constraints.positive and vshape in (shape, ()):
            roles[name] = "pooled_scale"
        elif support is constraints.simplex and vshape == (k,):
            roles[name] = "weights"
    if "loc" not in roles.values():
        return None
    x = points.reshape(len(points), -1).cpu().double().numpy()

    def init(args_, kwargs_, rng):
        centers, labels = kmeans_plus_plus(x, k, rng, n_init=1)
        counts = np.bincount(labels, minlength=k)
        spread = np.maximum(x.std(0), 1e-3)
        sd = np.stack([x[labels == j].std(0) if counts[j] > 1 else spread for j in range(k)])
        sd = np.clip(sd, 0.05 * spread, spread)
        resid = x - centers[labels]
        pooled = np.clip(np.sqrt((resid**2).mean(0)), 0.05 * spread, spread)
        dtype = torch.get_default_dtype()
        values = {}
        for name, role in roles.items():
            target = tuple(trace.nodes[name]["value"].shape)
            if role == "loc":
                value = centers
            elif role == "scale":
                value = sd if target == (k, *shape) else sd.mean(1)
            elif role == "pooled_scale":
                value = pooled if target == shape else pooled.mean()
            else:
                value = (counts + 1.0) / (counts.sum() + k)
            values[name] = torch.as_tensor(np.asarray(value), dtype=dtype).reshape(target)
        return values

    return init
