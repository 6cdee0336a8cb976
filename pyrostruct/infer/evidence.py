"""Estimators of the log evidence ``log p(x)`` of a Pyro model, for any (model, guide).

Both estimators start from per-particle log importance weights

.. math::

    \\log w_s = \\log p(x, z_s) - \\log q(z_s), \\qquad z_s \\sim q,

where discrete model sites marked for enumeration (``infer={"enumerate":
"parallel"}``, :func:`pyro.infer.config_enumerate`) are summed out exactly, so
that ``p(x, z_s)`` is the joint of the data and the guide's (continuous) sites.

* :func:`elbo_estimate`: the evidence lower bound ``E_q[log w]``, estimated by the
  mean of ``S`` weights, with Monte Carlo standard error ``sd(log w) / sqrt(S)``.
* :func:`iwae_estimate`: the importance-weighted bound
  ``L_K = E[log (1/K) sum_k w_k]`` (Burda, Grosse & Salakhutdinov, "Importance
  Weighted Autoencoders", 2016), which satisfies ``ELBO = L_1 <= L_K <= L_{K+1}
  <= log p(x)`` and tends to ``log p(x)`` as ``K -> inf``. It is estimated from
  ``num_repeats`` independent groups of ``K`` particles; its standard error is
  that of the group means. The effective sample size ``(sum w)^2 / sum w^2``
  (Kong 1992; Owen, "Monte Carlo theory, methods and examples", 2013, ch. 9) is
  reported, and a :class:`LowESSWarning` is raised when it is a small fraction of
  ``K``: the bound is then far from tight and close to the single best weight.

The weights are :mod:`pyrostruct.infer.importance`'s (enumeration summed out,
particles vectorized by a plate or :func:`torch.func.vmap`).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable

import torch

from pyrostruct.infer.importance import (  # the last three re-exported
    VectorizationWarning,
    _check_positive_int,
    log_importance_weights,
    vectorization_method,
)

__all__ = [
    "EvidenceEstimate",
    "LowESSWarning",
    "VectorizationWarning",
    "log_importance_weights",
    "vectorization_method",
    "elbo_estimate",
    "iwae_estimate",
    "effective_sample_size",
]


class LowESSWarning(UserWarning):
    """The importance weights are dominated by a few particles (small ESS)."""


@dataclasses.dataclass(frozen=True)
class EvidenceEstimate:
    """A Monte Carlo estimate of a bound on ``log p(x)``.

    :ivar float value: the estimate (nats).
    :ivar float se: its Monte Carlo standard error.
    :ivar int num_particles: particles per estimate (``K`` for the IWAE bound,
        ``S`` for the ELBO, ``N`` per run for SMC).
    :ivar str method: ``"elbo"``, ``"iwae"`` or ``"smc"``
        (:func:`pyrostruct.infer.smc.smc_estimate`, an estimate of ``log p(x)``
        itself, not a bound).
    :ivar float ess: effective sample size of the ``K`` importance weights (mean
        over groups); for SMC the smallest ESS of the weights over the
        temperatures (mean over runs); ``nan`` for the ELBO.
    :ivar int num_repeats: independent groups (runs for SMC) averaged (1 for the
        ELBO).
    :ivar float num_temperatures: SMC only: temperatures from prior to posterior
        (mean over runs).
    :ivar float acceptance: SMC only: mean acceptance rate of the Metropolis
        moves.
    :ivar str start: SMC only: ``"prior"`` (prior-to-posterior tempering) or
        ``"guide"`` (annealed from a fitted guide).
    :ivar int evaluations: SMC only: model evaluations spent (particles times
        (1 + moves) per temperature, every run and every round of the adaptive
        budget); for the bounds, the particles.
    :ivar target_met: SMC with ``target_se`` only: whether the standard error
        reached it within ``max_particles``.
    """

    value: float
    se: float
    num_particles: int
    method: str
    ess: float = float("nan")
    num_repeats: int = 1
    num_temperatures: float = float("nan")
    acceptance: float = float("nan")
    start: str = ""
    evaluations: int = 0
    target_met: bool | None = None

    def __float__(self) -> float:
        return self.value


def effective_sample_size(log_weights: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` of log weights along ``dim``."""
    return torch.exp(2 * torch.logsumexp(log_weights, dim) - torch.logsumexp(2 * log_weights, dim))


def elbo_estimate(
    model: Callable,
    guide: Callable,
    *args,
    num_particles: int = 1000,
    max_plate_nesting: int | None = None,
    vectorize: bool = True,
    max_batch: int = 500,
    guide_correction: Callable | None = None,
    **kwargs,
) -> EvidenceEstimate:
    """The ELBO ``E_q[log p(x, z) - log q(z)]`` with its Monte Carlo standard error.

    .. math::

        \\widehat{\\mathrm{ELBO}} = \\frac{1}{S} \\sum_s \\log w_s, \\qquad
        \\mathrm{se} = \\mathrm{sd}(\\log w) / \\sqrt{S}.

    The ELBO is a lower bound on ``log p(x)``; the gap is ``KL(q || p(z | x))``
    (Jordan et al., "An introduction to variational methods for graphical
    models", 1999). ``guide_correction``: see :func:`log_importance_weights`.

    Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> def model():
        ...     pyro.sample("x", dist.Normal(0.0, 1.0), obs=torch.tensor(0.0))
        >>> est = elbo_estimate(model, lambda: None, num_particles=10)
        >>> round(est.value, 4), est.se
        (-0.9189, 0.0)
    """
    lw = log_importance_weights(
        model,
        guide,
        *args,
        num_particles=num_particles,
        max_plate_nesting=max_plate_nesting,
        vectorize=vectorize,
        max_batch=max_batch,
        guide_correction=guide_correction,
        **kwargs,
    )
    _check_finite(lw, "elbo")
    se = float(lw.std() / math.sqrt(num_particles)) if num_particles > 1 else float("nan")
    return EvidenceEstimate(float(lw.mean()), se, num_particles, "elbo")


def iwae_estimate(
    model: Callable,
    guide: Callable,
    *args,
    num_particles: int = 100,
    num_repeats: int = 10,
    max_plate_nesting: int | None = None,
    vectorize: bool = True,
    max_batch: int = 500,
    ess_warning: float = 0.05,
    guide_correction: Callable | None = None,
    **kwargs,
) -> EvidenceEstimate:
    """The importance-weighted bound ``L_K`` with ``K = num_particles``.

    .. math::

        L_K = \\mathbb{E}\\Big[\\log \\frac{1}{K} \\sum_{k=1}^K w_k\\Big],
        \\qquad \\mathrm{ELBO} = L_1 \\le L_K \\le L_{K+1} \\le \\log p(x),

    estimated from ``num_repeats`` independent groups of ``K`` particles (mean and
    standard error of the group values). Burda, Grosse & Salakhutdinov,
    "Importance Weighted Autoencoders" (ICLR 2016).

    ``ess`` is the mean over groups of ``(sum w)^2 / sum w^2``; when it is below
    ``ess_warning * K`` a :class:`LowESSWarning` says the bound is loose (the guide
    is too narrow for the posterior, typical of over-parameterized candidates).
    ``guide_correction``: see :func:`log_importance_weights`.
    """
    _check_positive_int(num_repeats, "num_repeats")
    _check_positive_int(num_particles, "num_particles")
    lw = log_importance_weights(
        model,
        guide,
        *args,
        num_particles=num_particles * num_repeats,
        max_plate_nesting=max_plate_nesting,
        vectorize=vectorize,
        max_batch=max_batch,
        guide_correction=guide_correction,
        **kwargs,
    )
    _check_finite(lw, "iwae")
    lw = lw.reshape(num_repeats, num_particles)
    bounds = torch.logsumexp(lw, -1) - math.log(num_particles)
    ess = float(effective_sample_size(lw).mean())
    se = float(bounds.std() / math.sqrt(num_repeats)) if num_repeats > 1 else float("nan")
    if num_particles > 1 and ess < ess_warning * num_particles:
        warnings.warn(
            f"importance-weighted bound: effective sample size {ess:.1f} of {num_particles} "
            "particles; the bound is loose. Use a richer guide or more particles.",
            LowESSWarning,
            stacklevel=2,
        )
    return EvidenceEstimate(float(bounds.mean()), se, num_particles, "iwae", ess, num_repeats)


def _check_finite(lw: torch.Tensor, what: str) -> None:
    if not torch.isfinite(lw).all():
        bad = int((~torch.isfinite(lw)).sum())
        raise ValueError(
            f"{what}: {bad} of {lw.numel()} log importance weights are not finite; the guide "
            "puts mass where the model has none (check supports and constraints)"
        )
