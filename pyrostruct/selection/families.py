"""Candidate families for component counts: Gaussian mixtures (K) and probabilistic PCA (rank).

Each family is a function of the count returning a
:class:`~pyrostruct.selection.Candidate` whose model takes one argument, the
data tensor of shape ``(n, d)``, and whose ``init`` starts every restart from a
data-driven point (a different one per restart):

* :func:`gaussian_mixture`: ``x_i ~ sum_k pi_k N(mu_k, diag(sigma_k^2))`` with the
  assignments summed out exactly (``MixtureSameFamily``, i.e. the enumerated
  mixture), ``pi ~ Dirichlet(alpha)``, ``mu_k ~ N(0, s^2 I)``, ``sigma_kj ~
  LogNormal(-1, 1)``; locations initialized by k-means++ (Arthur &
  Vassilvitskii, "k-means++: the advantages of careful seeding", 2007) and a
  few Lloyd iterations.
* :func:`ppca`: ``x_i ~ N(m, W W^T + sigma^2 I)`` with ``W (d x r)``, ``W_jl ~ N(0,
  1)`` (Tipping & Bishop, "Probabilistic principal component analysis", 1999;
  the latent scores are integrated out), loadings initialized by PCA.

Both expect standardized data (:func:`standardize`); :func:`select_components`
does it, and picks the count with :func:`~pyrostruct.selection.select`.
"""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import torch

from pyrostruct.data import check_table, column_exponents
from pyrostruct.errors import InputError
from pyrostruct.infer.init import kmeans_plus_plus
from pyrostruct.selection.select import Candidate, select

__all__ = [
    "gaussian_mixture",
    "ppca",
    "kmeans_plus_plus",
    "standardize",
    "select_components",
    "FAMILIES",
]


def gaussian_mixture(k: int, *, loc_scale: float = 3.0, alpha: float = 1.0) -> Candidate:
    """A ``k``-component diagonal Gaussian mixture candidate (model takes ``data (n, d)``).

    .. math::

        \\pi \\sim \\mathrm{Dir}(\\alpha 1_K),\\quad \\mu_k \\sim N(0, s^2 I),\\quad
        \\sigma_{kj} \\sim \\mathrm{LogNormal}(-1, 1),\\quad
        x_i \\sim \\sum_k \\pi_k N(\\mu_k, \\mathrm{diag}\\,\\sigma_k^2).
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"number of components must be an integer >= 1, got {k!r}")
    k = int(k)

    def model(data):
        n, d = data.shape
        if k > 1:
            weights = pyro.sample("weights", dist.Dirichlet(torch.full((k,), float(alpha))))
        else:
            weights = torch.ones(1)
        locs = pyro.sample("locs", dist.Normal(0.0, loc_scale).expand([k, d]).to_event(2))
        scales = pyro.sample("scales", dist.LogNormal(-1.0, 1.0).expand([k, d]).to_event(2))
        components = dist.Normal(locs, scales).to_event(1)
        with pyro.plate("data", n):
            pyro.sample(
                "obs", dist.MixtureSameFamily(dist.Categorical(weights), components), obs=data
            )

    def init(args, kwargs, rng):
        x = args[0].detach().cpu().numpy()
        centers, labels = kmeans_plus_plus(x, k, rng)
        scales = np.full(centers.shape, 0.5)
        counts = np.bincount(labels, minlength=k).astype(float)
        for j in range(k):
            if counts[j] > 1:
                scales[j] = x[labels == j].std(0)
        values = {
            "locs": torch.tensor(centers, dtype=torch.get_default_dtype()),
            "scales": torch.tensor(np.clip(scales, 0.05, 2.0), dtype=torch.get_default_dtype()),
        }
        if k > 1:
            w = (counts + 1.0) / (counts.sum() + k)
            values["weights"] = torch.tensor(w, dtype=torch.get_default_dtype())
        return values

    return Candidate(model=model, init=init)


def ppca(rank: int, *, w_scale: float = 1.0) -> Candidate:
    """A probabilistic PCA candidate of the given rank (model takes ``data (n, d)``).

    .. math::

        W_{jl} \\sim N(0, s^2),\\quad m \\sim N(0, I),\\quad \\sigma \\sim
        \\mathrm{LogNormal}(-1, 1.5),\\quad x_i \\sim N(m, W W^\\top + \\sigma^2 I).
    """
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
        raise InputError(f"rank must be an integer >= 1, got {rank!r}")
    rank = int(rank)

    def model(data):
        n, d = data.shape
        if rank >= d:
            raise InputError(f"rank {rank} must be below the number of columns {d}")
        w = pyro.sample("W", dist.Normal(0.0, w_scale).expand([d, rank]).to_event(2))
        m = pyro.sample("loc", dist.Normal(0.0, 1.0).expand([d]).to_event(1))
        sigma = pyro.sample("noise", dist.LogNormal(-1.0, 1.5))
        cov_diag = (sigma**2).unsqueeze(-1).expand(m.shape)
        with pyro.plate("data", n):
            pyro.sample("obs", dist.LowRankMultivariateNormal(m, w, cov_diag), obs=data)

    def init(args, kwargs, rng):
        x = args[0].detach().cpu().numpy()
        d = x.shape[1]
        xc = x - x.mean(0)
        evals, evecs = np.linalg.eigh(np.cov(xc, rowvar=False))
        evals, evecs = evals[::-1], evecs[:, ::-1]
        noise = max(evals[rank:].mean(), 1e-3) if rank < d else 1e-3
        w = evecs[:, :rank] * np.sqrt(np.maximum(evals[:rank] - noise, 1e-3))
        w = w * rng.choice([-1.0, 1.0], size=rank)  # a different sign pattern per restart
        dtype = torch.get_default_dtype()
        return {
            "W": torch.tensor(w.copy(), dtype=dtype),
            "loc": torch.tensor(x.mean(0), dtype=dtype),
            "noise": torch.tensor(math.sqrt(noise), dtype=dtype),
        }

    return Candidate(model=model, init=init)


FAMILIES = {"gmm": gaussian_mixture, "ppca": ppca}


def standardize(data, *, per_column: bool = True, name: str = "data") -> torch.Tensor:
    """Validate a table (:func:`pyrostruct.data.check_table`) and standardize it.

    ``per_column=True`` gives every column mean 0 and standard deviation 1 (for
    mixtures); ``False`` centers the columns and divides by one overall
    standard deviation (for PPCA, whose isotropic noise must not be distorted).
    The evidence of standardized data differs from that of the raw data by the
    same constant for every candidate, so rankings are unaffected.
    """
    array, _ = check_table(data, min_rows=3, min_cols=1, name=name)
    exponent = column_exponents(array)  # exact powers of two first (1e-300 .. 1e308)
    array = np.ldexp(array, -(exponent if per_column else exponent.max()))
    centered = array - array.mean(0)
    if per_column:
        scaled = centered / centered.std(0)
    else:
        scaled = centered / centered.std()
    return torch.tensor(scaled, dtype=torch.get_default_dtype())


def select_components(
    data, family: str = "gmm", max_components: int = 8, *, min_components: int = 1, **select_kwargs
):
    """Choose the number of mixture components or the PPCA rank by evidence.

    Validates and standardizes ``data`` (:func:`standardize`), then runs
    :func:`~pyrostruct.selection.select` over ``min_components..max_components``
    with the family's candidates; the candidate names are the counts.

    Example::

        >>> from pyrostruct.selection import make_gmm_data
        >>> x, _ = make_gmm_data(300, 3, seed=0)  # three well-separated clusters
        >>> result = select_components(x, "gmm", 4, steps=300)
        >>> result.best
        3
    """
    if family not in FAMILIES:
        raise InputError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    for value, label in [(max_components, "max_components"), (min_components, "min_components")]:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"{label} must be an integer >= 1, got {value!r}")
    if min_components > max_components:
        raise InputError(
            f"min_components ({min_components}) must not exceed max_components ({max_components})"
        )
    x = standardize(data, per_column=(family == "gmm"))
    n, d = x.shape
    if family == "ppca":
        if d < 2:
            raise InputError(f"data: PPCA needs at least 2 columns, found {d}")
        if max_components >= d:
            raise InputError(
                f"max rank {max_components} must be below the number of columns ({d}); "
                f"use --max {d - 1} or less"
            )
    if family == "gmm" and max_components > n:
        raise InputError(
            f"max components {max_components} exceeds the number of rows ({n}); lower it"
        )
    return select(
        FAMILIES[family],
        x,
        grid=range(int(min_components), int(max_components) + 1),
        **select_kwargs,
    )
