"""Candidate families for component counts: Gaussian mixtures (K) and probabilistic PCA (rank).

Each family is a function of the count returning a
:class:`~pyrostruct.selection.Candidate` whose model takes one argument, the
data tensor of shape ``(n, d)``, and whose ``init`` starts every restart from a
data-driven point (a different one per restart):

* :func:`gaussian_mixture`: ``x_i ~ sum_k pi_k N(mu_k, diag(sigma_k^2))`` with the
  assignments summed out exactly (the enumerated mixture; its density by matrix
  products, :class:`~pyrostruct.selection._mixture.DiagonalNormalMixture`),
  ``pi ~ Dirichlet(alpha)``, ``mu_k ~ N(0, s^2 I)``, ``sigma_kj ~ LogNormal(-1, 1)``;
  locations initialized by k-means++ (Arthur & Vassilvitskii, "k-means++: the
  advantages of careful seeding", 2007) and a few Lloyd iterations.
* :func:`ppca`: ``x_i ~ N(m, W W^T + sigma^2 I)`` with ``W (d x r)``, ``W_jl ~ N(0,
  1)`` (Tipping & Bishop, "Probabilistic principal component analysis", 1999;
  the latent scores are integrated out), written in the canonical LQ form of
  ``W`` that has the same evidence and no rotational symmetry; loadings
  initialized by PCA.

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
from pyrostruct.selection._mixture import DiagonalNormalMixture
from pyrostruct.selection.select import Candidate, select

__all__ = [
    "gaussian_mixture",
    "ppca",
    "ppca_loadings",
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
        with pyro.plate("data", n):
            pyro.sample("obs", DiagonalNormalMixture(weights, locs, scales), obs=data)

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


def ppca(rank: int, *, w_scale: float | None = None) -> Candidate:
    """A probabilistic PCA candidate of the given rank (model takes ``data (n, d)``).

    .. math::

        W_{jl} \\sim N(0, s^2),\\quad m \\sim N(0, I),\\quad \\sigma \\sim
        \\mathrm{LogNormal}(-1, 1.5),\\quad x_i \\sim N(m, W W^\\top + \\sigma^2 I).

    The likelihood depends on ``W`` only through ``W W^T``, and the prior of
    ``W`` is invariant under ``W -> W R`` for every orthogonal ``R``: the
    posterior is spread evenly over an ``r (r - 1) / 2``-dimensional orbit (and
    its ``2^r r!`` signed permutations), of which a Gaussian guide covers one
    point, so the ELBO, the IWAE bound and a guide-started estimator of the
    evidence all fall short by the log volume of that orbit, a gap that grows
    with the rank (about ``r (r - 1) / 4 log n`` nats). The model is therefore
    written in the canonical form of ``W``: its LQ decomposition ``W = L Q``,
    ``L`` lower-trapezoidal with a positive diagonal, ``Q`` orthogonal. For
    ``W`` with i.i.d. ``N(0, s^2)`` entries ``Q`` is Haar-distributed and
    independent of ``L``, whose entries are independent (the Bartlett
    decomposition, applied to ``W^T``),

    .. math::

        L_{jl} \\sim N(0, s^2) \\; (j > l), \\qquad
        L_{ll}^2 \\sim s^2 \\chi^2_{r - l + 1} \\; (l = 1..r),
        \\qquad L_{jl} = 0 \\; (j < l),

    (sites ``W_lower`` and ``W_diag_sq``), and ``L L^T = W W^T``: the same
    distribution of the covariance, hence the same evidence ``p(x | r)`` as the
    model above, with the symmetry removed (Muirhead, "Aspects of multivariate
    statistical theory", 1982, Thm 3.2.14; the same LQ parametrization is used
    by Minka, "Automatic choice of dimensionality for PCA", NIPS 2000, whose
    Laplace evidence carries the orbit's volume explicitly).

    By default (``w_scale=None``) the loadings' scale is learned, ``s ~
    LogNormal(-1, 1)`` (site ``W_scale``; given ``s`` the loadings are as
    above, so the canonical form still has the evidence of ``W``), a
    hierarchical prior in the spirit of Bishop ("Bayesian PCA", NIPS 1999)
    that stays invariant under rotations. A fixed scale (``w_scale=1.0``) on
    standardized data expects every component to carry about all of the
    data's variance and penalizes a weak one heavily: on a D = 20, n = 100
    set of true rank 2 whose weaker component has one noise unit of signal,
    the evidence of rank 1 exceeds that of rank 2 by 10 nats with ``s = 1``
    (guide-started SMC: -2837.3 against -2847.6). On four low-SNR sets
    (D = 20, n = 100, true rank 2, 5, 3, 7) ``select_components`` picked rank
    1, 2, 2, 2 with ``s = 1`` and 2, 5, 3, 6 with the learned scale (Minka's
    PCA MLE: 2, 5, 2, 6); on two sets of normal SNR both were right.
    """
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
        raise InputError(f"rank must be an integer >= 1, got {rank!r}")
    if w_scale is not None and not (isinstance(w_scale, (int, float)) and w_scale > 0):
        raise InputError(f"w_scale must be a number > 0 or None (learned), got {w_scale!r}")
    rank = int(rank)

    def model(data):
        n, d = data.shape
        if rank >= d:
            raise InputError(f"rank {rank} must be below the number of columns {d}")
        if w_scale is None:
            s = pyro.sample("W_scale", dist.LogNormal(_SCALE_LOC, _SCALE_SCALE))
        else:
            s = torch.tensor(float(w_scale), dtype=data.dtype)
        w = ppca_loadings(
            pyro.sample(
                "W_lower",
                dist.Normal(0.0, s.unsqueeze(-1))
                .expand(s.shape + (_num_lower(d, rank),))
                .to_event(1),
            ),
            pyro.sample("W_diag_sq", _diag_prior(rank, s, data.dtype).to_event(1)),
            d,
        )
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
        q, r = np.linalg.qr(w.T)  # W^T = Q R, so W = R^T Q^T: L = R^T
        low = r.T * np.sign(np.where(np.diag(r) == 0, 1.0, np.diag(r)))
        rows, cols = np.tril_indices(d, -1, rank)
        lower = low[rows, cols] + 0.05 * rng.normal(size=len(rows))  # differs per restart
        dtype = torch.get_default_dtype()
        values = {
            "W_lower": torch.tensor(lower, dtype=dtype),
            "W_diag_sq": torch.tensor(np.maximum(np.diag(low) ** 2, 1e-3), dtype=dtype),
            "loc": torch.tensor(x.mean(0), dtype=dtype),
            "noise": torch.tensor(math.sqrt(noise), dtype=dtype),
        }
        if w_scale is None:  # the loadings' root mean square entry
            values["W_scale"] = torch.tensor(max(float(np.sqrt((w**2).mean())), 1e-2), dtype=dtype)
        return values

    return Candidate(model=model, init=init)


#: The hyperprior of :func:`ppca`'s learned loading scale, ``s ~ LogNormal(-1, 1)``: on data
#: standardized to unit variance per column a component with loadings of scale ``s`` explains
#: a fraction about ``s^2`` of the total variance; the median 0.37 and the 95% range
#: 0.05-2.6 span fractions from 0.3% to all of it.
_SCALE_LOC, _SCALE_SCALE = -1.0, 1.0


def _num_lower(d: int, rank: int) -> int:
    """Entries strictly below the diagonal of a ``(d, rank)`` matrix."""
    return d * rank - rank * (rank + 1) // 2


def _diag_prior(rank: int, w_scale: torch.Tensor, dtype) -> dist.Gamma:
    """``L_ll^2 ~ s^2 chi^2_{r - l + 1}``: Gamma of shape ``(r - l + 1) / 2``, rate ``1 / 2s^2``
    (``s`` of shape ``batch``, the distribution of batch shape ``batch + (r,)``)."""
    df = torch.arange(rank, 0, -1, dtype=dtype)
    rate = 0.5 / w_scale.unsqueeze(-1) ** 2
    return dist.Gamma(df / 2 * torch.ones_like(rate), rate.expand(rate.shape[:-1] + (rank,)))


def ppca_loadings(lower: torch.Tensor, diag_sq: torch.Tensor, d: int) -> torch.Tensor:
    """The ``(..., d, r)`` loadings ``L`` of :func:`ppca` from its sites ``W_lower`` (the
    entries below the diagonal, row by row) and ``W_diag_sq`` (the squared diagonal)."""
    rank = diag_sq.shape[-1]
    rows, cols = torch.tril_indices(d, rank, offset=-1)
    batch = torch.broadcast_shapes(lower.shape[:-1], diag_sq.shape[:-1])
    w = lower.new_zeros(*batch, d, rank)
    w[..., rows, cols] = lower.expand(*batch, lower.shape[-1])
    diag = torch.arange(rank)
    w[..., diag, diag] = diag_sq.expand(*batch, rank).sqrt()
    return w


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
