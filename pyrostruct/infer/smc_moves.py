"""The steps of the tempered SMC sampler (:mod:`pyrostruct.infer.smc`), on particles in
unconstrained space: the next temperature by the conditional-ESS rule (Zhou,
Johansen & Aston 2016), systematic resampling, and the Metropolis moves
(random walk with the population's covariance, and independence moves from a
Gaussian mixture fitted on another run's population).
"""

from __future__ import annotations

import math

import torch

_TARGET_ACCEPTANCE = 0.234  # of the random-walk moves (Roberts, Gelman & Gilks 1997)
_KMEANS_STEPS = 10
_MIXTURE_INFLATION = 2.0  # component covariances times this: heavier than the clusters
_MAX_COMPONENTS = 16
_MIN_MIXTURE_ACCEPTANCE = 0.05


def _times(log_like: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``delta * log_like`` with ``0 * -inf = 0`` (a zero step leaves every weight alone)."""
    return torch.where(delta > 0, delta * log_like, torch.zeros_like(log_like))


def _next_temperatures(log_w, log_like, beta, cess):
    """Per row, the largest ``beta' <= 1`` whose incremental weights keep the conditional
    ESS ``(sum W w)^2 / sum W w^2`` at least ``cess`` (bisection, Zhou et al. 2016)."""

    def relative_cess(delta):
        inc = _times(log_like, delta[:, None])
        return torch.exp(2 * (log_w + inc).logsumexp(-1) - (log_w + 2 * inc).logsumexp(-1))

    high = 1.0 - beta
    done = relative_cess(high) >= cess
    lo, up = torch.zeros_like(high), high.clone()
    for _ in range(60):
        mid = (lo + up) / 2
        ok = relative_cess(mid) >= cess
        lo, up = torch.where(ok, mid, lo), torch.where(ok, up, mid)
    # lo = 0: particles with zero likelihood drop the CESS at once; take the smallest step
    step = torch.where(done, high, torch.where(lo > 0, lo, up))
    return torch.where(done, torch.ones_like(beta), beta + step)


def _systematic_resample(log_w: torch.Tensor) -> torch.Tensor:
    """Indices ``(R, N)`` of a systematic resample of each row of normalized ``log_w``."""
    rows, num = log_w.shape
    cumulative = log_w.exp().cumsum(-1)
    cumulative = cumulative / cumulative[:, -1:]
    positions = (torch.rand(rows, 1, dtype=log_w.dtype) + torch.arange(num)) / num
    return torch.searchsorted(cumulative, positions).clamp(max=num - 1)


def _proposal_factor(u: torch.Tensor, log_w: torch.Tensor) -> torch.Tensor:
    """Cholesky factors ``(R, D, D)`` of the weighted particle covariance of each row."""
    w = log_w.exp().to(torch.float64)
    x = u.to(torch.float64)
    centred = x - (w[..., None] * x).sum(1, keepdim=True)
    cov = torch.einsum("rn,rnd,rne->rde", w, centred, centred)
    dim = u.shape[-1]
    jitter = 1e-8 * cov.diagonal(dim1=-2, dim2=-1).mean(-1).clamp(min=1e-12)
    cov = cov + jitter[:, None, None] * torch.eye(dim, dtype=torch.float64)
    factor, info = torch.linalg.cholesky_ex(cov)
    if (info > 0).any():  # collapsed population: fall back to a diagonal covariance
        diag = cov.diagonal(dim1=-2, dim2=-1).clamp(min=1e-12).sqrt()
        factor = torch.where((info > 0)[:, None, None], torch.diag_embed(diag), factor)
    return factor.to(u.dtype)


class _MixtureProposal:
    """A Gaussian mixture fitted to each row's weighted population: an independence proposal.

    The population is clustered by weighted k-means (whitened by the population
    covariance ``L L^T``, :data:`_KMEANS_STEPS` Lloyd steps from components
    drawn by weight); each cluster gives a component with the cluster's weight,
    mean and covariance (shrunk towards the pooled within-cluster covariance with
    ``D + 2`` pseudo-particles, inflated by :data:`_MIXTURE_INFLATION`).

    It must be fitted on a population other than the one it moves: a component
    that exists because of a few particles has a high ``q`` at their positions,
    which makes them leave too easily and empties rare modes (measured: a
    0.3-nat underestimate on a 4-component mixture posterior); a kernel density
    estimate of the moved population itself is worse still.
    """

    def __init__(self, population, log_w, factor, components):
        rows, num, dim = population.shape
        x, w = population.to(torch.float64), log_w.exp()
        lt = factor.to(torch.float64)
        white = torch.linalg.solve_triangular(lt, x.mT, upper=False).mT
        pick = torch.multinomial(w.float(), components, replacement=True)
        centres = white.gather(1, pick[..., None].expand(-1, -1, dim))
        for _ in range(_KMEANS_STEPS):
            member = (
                torch.nn.functional.one_hot(torch.cdist(white, centres).argmin(-1), components).to(
                    x.dtype
                )
                * w[..., None]
            )
            mass = member.sum(1)
            means = member.mT @ white / mass.clamp(min=1e-300)[..., None]
            centres = torch.where(mass[..., None] > 0, means, centres)
        mass = member.sum(1)  # (R, C)
        count = (member > 0).sum(1).to(x.dtype)
        means = member.mT @ x / mass.clamp(min=1e-300)[..., None]
        diff = x[:, None] - means[:, :, None]  # (R, C, N, D)
        covs = (
            torch.einsum("rnc,rcnd,rcne->rcde", member, diff, diff)
            / mass.clamp(min=1e-300)[..., None, None]
        )
        pooled = (mass[..., None, None] * covs).sum(1, keepdim=True) / mass.sum(-1)[
            :, None, None, None
        ]
        pooled = (
            pooled
            + 1e-10
            * torch.eye(dim, dtype=x.dtype)
            * (lt @ lt.mT).diagonal(dim1=-2, dim2=-1).mean(-1)[:, None, None, None]
        )
        shrink = (count / (count + dim + 2))[..., None, None]
        covs = _MIXTURE_INFLATION * (shrink * covs + (1 - shrink) * pooled)
        self.factors = torch.linalg.cholesky(covs)  # (R, C, D, D)
        self.means = means
        self.log_weights = (mass / mass.sum(-1, keepdim=True)).log()  # (R, C)

    def sample(self, noise):
        """Draws ``(R, N, D)`` from standard normal ``noise`` of that shape."""
        rows, num, dim = noise.shape
        comp = torch.multinomial(self.log_weights.exp().float(), num, replacement=True)
        mean = self.means.gather(1, comp[..., None].expand(-1, -1, dim))
        factor = self.factors.gather(1, comp[..., None, None].expand(-1, -1, dim, dim))
        draw = mean + (factor @ noise.to(mean.dtype)[..., None]).squeeze(-1)
        return draw.to(noise.dtype)

    def log_prob(self, x):
        """Log density ``(R, N)`` at ``x`` of shape ``(R, N, D)``."""
        diff = x.to(torch.float64)[:, None] - self.means[:, :, None]  # (R, C, N, D)
        z = torch.linalg.solve_triangular(self.factors, diff.mT, upper=False)  # (R, C, D, N)
        dim = x.shape[-1]
        log_det = self.factors.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (R, C)
        log_n = -0.5 * z.square().sum(-2) - log_det[..., None] - 0.5 * dim * math.log(2 * math.pi)
        return (self.log_weights[..., None] + log_n).logsumexp(1)


def _move(density, u, log_prior, log_like, beta, scale, num_moves, shaped_by, use_mixture):
    """``num_moves`` Metropolis steps leaving each row's ``pi_beta`` invariant.

    Random-walk proposals ``u + scale L eps`` with ``L L^T`` the weighted
    covariance of another run's population, ``shaped_by = (population,
    log_weights)`` of shape ``(R, N, D)``, ``(R, N)``; with ``use_mixture``,
    every other step is an independence proposal from a
    :class:`_MixtureProposal` fitted on that population, which jumps between
    the modes of a multimodal posterior (label switching, empty components)
    where the random walk cannot. Both proposals are fixed for the whole
    round and independent of the particles they move, so each step is an
    ordinary Metropolis-Hastings step. A covariance from the moved population
    itself is not: each particle stretches it along its own direction (by
    about ``D / N`` of its squared Mahalanobis length), which lets particles
    in the tails move inwards more easily than outwards; the population then
    sits too close to the mode and the evidence comes out high, by 12 nats with
    250 particles on a 60-dimensional Gaussian (``log Z = 0``, start twice as
    wide), 5 nats with 1000 (``tests/infer/test_smc.py``). Returns the moved
    ``(u, log_prior, log_like)`` and the acceptance rates ``(R,)`` of the two
    kinds of proposal.
    """
    rows, num, dim = u.shape
    factor = _proposal_factor(*shaped_by)
    if use_mixture:
        components = max(1, min(_MAX_COMPONENTS, num // (4 * (dim + 2))))
        mixture = _MixtureProposal(*shaped_by, factor, components)
    b = beta[:, None]
    rates = [torch.zeros(rows, dtype=torch.float64), torch.zeros(rows, dtype=torch.float64)]
    counts = [0, 0]
    for k in range(num_moves):
        noise = torch.randn(rows, num, dim, dtype=u.dtype)
        independent = use_mixture and k % 2 == 1
        if independent:
            prop = mixture.sample(noise)
        else:
            prop = u + scale[:, None, None] * (noise @ factor.mT)
        prop_p, prop_l = (t.reshape(rows, num) for t in density(prop.reshape(-1, dim)))
        log_alpha = (prop_p + _times(prop_l, b)) - (log_prior + _times(log_like, b))
        if independent:
            log_alpha = log_alpha + mixture.log_prob(u) - mixture.log_prob(prop)
        ok = torch.rand_like(log_alpha).log() < torch.nan_to_num(log_alpha, nan=-math.inf)
        u = torch.where(ok[..., None], prop, u)
        log_prior, log_like = torch.where(ok, prop_p, log_prior), torch.where(ok, prop_l, log_like)
        rates[int(independent)] += ok.double().mean(-1)
        counts[int(independent)] += 1
    rw_rate, mix_rate = (r / max(c, 1) for r, c in zip(rates, counts))
    return u, log_prior, log_like, rw_rate, mix_rate
