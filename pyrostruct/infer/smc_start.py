"""Where tempered SMC starts: the prior, or a distribution built from a fitted guide.

:func:`~pyrostruct.infer.smc.smc_estimate` moves particles along the path

.. math::

    \\pi_\\beta(u) \\propto q(u)^{1 - \\beta}\\, p(x, u)^\\beta, \\qquad
    0 = \\beta_0 < \\dots < \\beta_T = 1,

in the unconstrained space ``u`` of the model's continuous latent sites
(``biject_to(site.fn.support)``, the log-Jacobian part of ``p``). With ``q``
the prior this is the usual prior-to-posterior tempering (``p(x, u) / q(u)``
is the likelihood); with ``q`` a fitted guide it is annealed importance
sampling from the guide (Neal, "Annealed importance sampling", Statistics
and Computing 2001), with resampling and adaptive temperatures: an SMC
sampler (Del Moral, Doucet & Jasra, "Sequential Monte Carlo samplers", JRSS-B
2006). Either way the product of the incremental weights is unbiased for
``p(x)``; starting at the guide makes the path short (the guide is close to
the posterior) where starting at the prior makes it long (the prior-to-
posterior KL grows with the dimension and the log of the data size).

A start distribution is anything with ``sample(num) -> (num, D)`` and
``log_prob(u) -> (num,)`` on that space (:class:`StartDistribution`):
:class:`GaussianStart` is the one :func:`guide_start` builds from a guide
(exactly the guide for :class:`~pyro.infer.autoguide.AutoNormal`, a moment-
matched full-covariance Gaussian of guide draws for any other guide);
:mod:`pyrostruct.selection` adds a start symmetrized over label
permutations.
"""

from __future__ import annotations

import math
import warnings

import torch

from pyrostruct.errors import InputError

__all__ = ["StartDistribution", "GaussianStart", "guide_start"]


class StartDistribution:
    """The initial distribution ``q`` of guide-started SMC, on the unconstrained latent space.

    Subclasses implement :meth:`sample` and :meth:`log_prob`; both work on
    ``(num, D)`` tensors laid out as the model's continuous latent sites in
    trace order, each flattened (``_Latents`` in
    :mod:`pyrostruct.infer.smc_target`).
    """

    def sample(self, num: int) -> torch.Tensor:  # pragma: no cover - interface
        """``num`` draws, shape ``(num, D)``."""
        raise NotImplementedError

    def log_prob(self, u: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        """Log density ``(num,)`` at ``u`` of shape ``(num, D)``."""
        raise NotImplementedError


class GaussianStart(StartDistribution):
    """A Gaussian ``N(loc, L L^T)`` (``scale_tril`` ``L``) or ``N(loc, diag(scale^2))`` start.

    :param torch.Tensor loc: mean, shape ``(D,)``.
    :param torch.Tensor scale: standard deviations ``(D,)`` (mean-field), or
    :param torch.Tensor scale_tril: a lower Cholesky factor ``(D, D)``.
    """

    def __init__(self, loc, scale=None, scale_tril=None):
        if (scale is None) == (scale_tril is None):
            raise InputError("GaussianStart takes exactly one of scale and scale_tril")
        self.loc = loc.detach()
        self.scale = None if scale is None else scale.detach()
        self.scale_tril = None if scale_tril is None else scale_tril.detach()

    def sample(self, num: int) -> torch.Tensor:
        eps = torch.randn(num, len(self.loc), dtype=self.loc.dtype)
        if self.scale is not None:
            return self.loc + eps * self.scale
        return self.loc + eps @ self.scale_tril.mT

    def log_prob(self, u: torch.Tensor) -> torch.Tensor:
        dim = len(self.loc)
        diff = (u - self.loc).to(torch.float64)
        if self.scale is not None:
            scale = self.scale.to(torch.float64)
            z2 = (diff / scale).square().sum(-1)
            log_det = scale.log().sum()
        else:
            lt = self.scale_tril.to(torch.float64)
            z2 = torch.linalg.solve_triangular(lt, diff.mT, upper=False).square().sum(0)
            log_det = lt.diagonal().log().sum()
        return (-0.5 * z2 - log_det - 0.5 * dim * math.log(2 * math.pi)).to(u.dtype)


def guide_start(guide, latents, args, kwargs, max_plate_nesting, num_draws: int = 2000):
    """The :class:`GaussianStart` of a fitted guide, on ``latents``' unconstrained space.

    An :class:`~pyro.infer.autoguide.AutoNormal` (or a subclass sharing its
    ``_get_loc_and_scale``) gives its own mean-field Gaussian, exactly: it
    lives on the same space (``biject_to`` of each site's support). Any other
    guide gives the Gaussian with the mean and covariance of ``num_draws`` of
    its draws, mapped to that space (a valid start, if a rougher one: the
    estimator stays unbiased for any start that covers the posterior).

    :raises InputError: when the guide does not sample every continuous latent site.
    """
    from pyro.infer.autoguide import AutoNormal

    from pyrostruct._pyro_compat import autonormal_loc_and_scale

    if isinstance(guide, AutoNormal):
        if guide.prototype_trace is None:
            with torch.no_grad():
                guide(*args, **kwargs)
        guided = {name for name, _ in guide.prototype_trace.iter_stochastic_nodes()}
        missing = [n for n in latents.names if n not in guided]
        if not missing:
            locs, scales = [], []
            with torch.no_grad():
                for name in latents.names:
                    loc, scale = autonormal_loc_and_scale(guide, name)
                    locs.append(loc.detach().reshape(-1))
                    scales.append(scale.detach().reshape(-1))
            loc, scale = torch.cat(locs), torch.cat(scales)
            if loc.numel() != latents.dim:
                raise InputError(
                    f"the guide's unconstrained dimension {loc.numel()} differs from the "
                    f"model's {latents.dim}"
                )
            return GaussianStart(loc.to(latents.dtype), scale=scale.to(latents.dtype))
    from pyrostruct.infer.importance import _guide_draws

    with torch.no_grad():
        _, draws = _guide_draws(guide, args, kwargs, max_plate_nesting, num_draws)
    missing = [n for n in latents.names if n not in draws]
    if missing:
        raise InputError(
            f"the guide does not sample the model's continuous latent sites {missing}; "
            "guide-started SMC needs a guide over all of them"
        )
    u = latents.unconstrain({n: draws[n].reshape(num_draws, *latents.shapes[n])
                             for n in latents.names}).to(torch.float64)  # fmt: skip
    loc = u.mean(0)
    cov = torch.cov(u.T).reshape(latents.dim, latents.dim)
    jitter = 1e-8 * cov.diagonal().mean().clamp(min=1e-12)
    tril = torch.linalg.cholesky(cov + jitter * torch.eye(latents.dim, dtype=cov.dtype))
    return GaussianStart(loc.to(latents.dtype), scale_tril=tril.to(latents.dtype))


def laplace_start(start: GaussianStart, log_joint, inflation: float = 1.0) -> GaussianStart:
    """The Gaussian at a mode of ``log p(x, u)`` with the Laplace covariance
    ``inflation^2 (-H)^{-1}`` there.

    The mode is searched from ``start``'s mean (L-BFGS, :func:`_local_mode`) and
    ``H`` is the Hessian of ``log p(x, u)`` (``log_joint``, unconstrained space,
    log-Jacobian included) there (Tierney & Kadane, "Accurate approximations
    for posterior moments and marginal densities", JASA 1986). A mean-field
    guide matches the posterior's precision diagonal, so its variances are too
    small wherever the posterior is correlated (they are ``1 / Lambda_jj <=
    Sigma_jj``); a start narrower than the target gives importance weights with
    a heavy upper tail, which an SMC run of a few hundred particles rarely
    samples (its estimate then falls short, with a standard error that does not
    show it). The Laplace covariance restores the correlations. A guide's mean
    is not the mode: on a fitted low-SNR PPCA candidate (D = 20, n = 500, rank
    7) the gradient there had norm 196 and ``-H`` a negative eigenvalue; the
    guide's own Gaussian, this function's fallback then, gave -13503.2 +- 1.0
    (4 runs of 400 particles), the Laplace start at the mode -13498.5 +- 0.2
    with half the temperatures. ``start`` is returned unchanged where ``-H`` is
    not positive definite (at the mode found, nor at ``start``'s mean) or not
    finite.
    """
    mean = start.loc.detach().clone()
    mode = _local_mode(log_joint, mean)
    for loc in (mode,) if mode is mean else (mode, mean):
        tril = _laplace_tril(log_joint, loc)
        if tril is not None and _plausible(mean, loc, tril):
            return GaussianStart(loc, scale_tril=(inflation * tril).to(loc.dtype))
    return start


def _plausible(mean: torch.Tensor, loc: torch.Tensor, tril: torch.Tensor) -> bool:
    """Whether the guide's ``mean`` is a plausible draw of ``N(loc, tril tril^T)``: its squared
    Mahalanobis distance at most ``D + 5 sqrt(2 D)`` (the chi-square's mean plus 5 sd).

    A search that climbed into a spike the guide never saw (towards the neck of a
    hierarchical model's funnel, where the density of the unconstrained scale grows without
    bound) can end at a finite point whose Laplace Gaussian is far narrower than the distance
    travelled; one that reaches a non-finite density is dropped by :func:`_local_mode`
    already (the centred eight-schools model). On the fitted PPCA candidates of
    :func:`laplace_start`'s docstring (D = 96-154) the distance was 7-17.
    """
    dim = len(mean)
    z = torch.linalg.solve_triangular(tril, (mean - loc).to(tril.dtype)[:, None], upper=False)
    return float(z.square().sum()) <= dim + 5 * math.sqrt(2 * dim)


def _local_mode(log_joint, loc: torch.Tensor, max_iter: int = 200) -> torch.Tensor:
    """A local maximum of ``log_joint`` found by L-BFGS from ``loc``; ``loc`` where the search
    fails or ends no higher."""
    u = loc.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([u], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = -log_joint(u)
        loss.backward()
        return loss

    try:
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # non-finite trial points are expected, and handled
            before = float(log_joint(loc))
            opt.step(closure)
            after = float(log_joint(u.detach()))
    except (RuntimeError, ValueError):
        return loc
    if not (math.isfinite(after) and after >= before and torch.isfinite(u).all()):
        return loc
    return u.detach()


def _laplace_tril(log_joint, loc: torch.Tensor):
    """Cholesky factor ``(D, D)`` (float64) of ``(-H)^{-1}`` at ``loc``; ``None`` where ``-H``
    is not finite and positive definite."""
    try:
        with torch.enable_grad():
            hess = torch.autograd.functional.hessian(log_joint, loc)
    except (RuntimeError, ValueError):
        return None
    prec = -0.5 * (hess + hess.mT).to(torch.float64)
    if not torch.isfinite(prec).all():
        return None
    chol, info = torch.linalg.cholesky_ex(prec)
    if int(info) != 0:
        return None
    eye = torch.eye(len(loc), dtype=torch.float64)
    # L L^T = prec  =>  cov = L^{-T} L^{-1}; its Cholesky factor from that of cov
    cov = torch.cholesky_solve(eye, chol)
    tril, info = torch.linalg.cholesky_ex(0.5 * (cov + cov.mT))
    return tril if int(info) == 0 else None
