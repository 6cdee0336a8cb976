"""The log evidence ``log p(x)`` of a Pyro model by tempered sequential Monte Carlo.

Unlike the ELBO and the importance-weighted bound of
:mod:`pyrostruct.infer.evidence`, this estimator needs no guide: it moves a
population of particles from the prior to the posterior through the tempered
distributions

.. math::

    \\pi_\\beta(\\theta) \\propto p(\\theta)\\, p(x \\mid \\theta)^\\beta,
    \\qquad 0 = \\beta_0 < \\beta_1 < \\dots < \\beta_T = 1,

and multiplies the normalizing-constant ratios along the way (Del Moral,
Doucet & Jasra, "Sequential Monte Carlo samplers", JRSS-B 2006):

.. math::

    \\widehat{p(x)} = \\prod_{t=1}^T \\sum_{i=1}^N W_{t-1}^i\\,
    p(x \\mid \\theta_{t-1}^i)^{\\beta_t - \\beta_{t-1}},

which is unbiased for ``p(x)`` (Del Moral 2004). Here ``theta`` are the
model's continuous latent sites, mapped to an unconstrained space by
``biject_to(site.fn.support)`` (the log-Jacobian is part of the prior
density), and ``p(x | theta)`` sums the discrete sites marked for enumeration
out exactly (as :class:`~pyro.infer.TraceEnum_ELBO` does). Each step

1. picks ``beta_t`` by bisection so that the conditional effective sample size
   ``(sum_i W^i w^i)^2 / sum_i W^i (w^i)^2`` of the incremental weights is
   ``cess * N`` (Zhou, Johansen & Aston, "Towards automatic model comparison:
   an adaptive sequential Monte Carlo approach", JCGS 2016);
2. resamples (systematic) when the ESS of the weights falls below ``N / 2``;
3. moves every particle with ``num_moves`` Metropolis steps: random-walk
   steps whose proposal covariance is the weighted covariance of the
   population, scaled by ``2.38 / sqrt(D)`` and adapted towards an acceptance
   rate of 0.234 (Roberts, Gelman & Gilks 1997), alternating with
   independence steps from a Gaussian mixture fitted (weighted k-means) on
   the population of another run, which move particles between the modes of
   a multimodal posterior (label switching, empty components of a mixture
   model) that a random walk cannot cross; they are used while their
   acceptance rate is at least 5% (small latent spaces).

``num_repeats`` runs go in lockstep in one batch (each with its own
temperatures); their spread gives the standard error. The runs are nearly
independent: each run's mixture proposal is fitted on the next run's
population, so a run's moves depend on another run only through that
proposal (with ``num_repeats=1`` there are only random-walk steps). Particles are
vectorized with an outer particle plate when the model broadcasts over one,
else with :func:`torch.func.vmap` (the ``locs[z]`` idiom), as in
:mod:`pyrostruct.infer.evidence`; never one by one.

The module is longer than 500 lines because the sampler, its vectorized
model evaluation and prior draws, and its two move kernels share private
state (the latent-site maps, the chosen vectorization) and are used nowhere
else; split them if a second sampler needs them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro
import torch
from pyro import poutine
from pyro.poutine.enum_messenger import EnumMessenger
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch.distributions import biject_to

from pyrostruct._pyro_compat import get_rng_state, set_rng_state
from pyrostruct.errors import InputError
from pyrostruct.infer.evidence import EvidenceEstimate
from pyrostruct.infer.importance import (
    _PARTICLES,
    _VECTORIZE_ERRORS,
    _check_positive_int,
    _guess_max_plate_nesting,
    _log_weights_once,
)

__all__ = ["SMC_MAX_LATENT_DIM", "SMC_MAX_OBSERVED", "smc_affordable", "smc_estimate"]

_TARGET_ACCEPTANCE = 0.234  # of the random-walk moves (Roberts, Gelman & Gilks 1997)
_KMEANS_STEPS = 10
_MIXTURE_INFLATION = 2.0  # component covariances times this: heavier than the clusters
_MAX_COMPONENTS = 16
_MIN_MIXTURE_ACCEPTANCE = 0.05


def _no_guide(*args, **kwargs) -> None:
    return None


class _Latents:
    """The continuous latent sites of a model and their maps to unconstrained space."""

    def __init__(self, model, args, kwargs, max_plate_nesting):
        with poutine.block(), torch.no_grad():
            trace = poutine.trace(model).get_trace(*args, **kwargs)
        self.names, self.shapes, self.event_dims, self.transforms = [], {}, {}, {}
        self.enumerated = []
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
                continue
            fn, how = site["fn"], site["infer"].get("enumerate")
            if how == "parallel":
                self.enumerated.append(name)
            elif fn.support.is_discrete or how is not None:
                raise InputError(
                    f"smc_estimate: latent site {name!r} is discrete and not marked for parallel "
                    "enumeration; mark it with pyro.infer.config_enumerate (or "
                    'infer={"enumerate": "parallel"}) so that it is summed out exactly'
                )
            else:
                self.names.append(name)
                self.shapes[name] = site["value"].shape
                self.event_dims[name] = fn.event_dim
                self.transforms[name] = biject_to(fn.support)
        if not self.names:
            raise InputError(
                "smc_estimate: the model has no continuous latent sites; with only enumerated "
                "discrete latents its log evidence is exact: use elbo_estimate(model, guide) with "
                "a guide that samples nothing"
            )
        self._check_not_below_enumerated(model, args, kwargs, max_plate_nesting)
        self.ushapes, self.offsets, offset = {}, {}, 0
        for name in self.names:
            u = self.transforms[name].inv(trace.nodes[name]["value"])
            self.ushapes[name] = u.shape
            self.offsets[name] = (offset, offset + u.numel())
            offset += u.numel()
        self.dim = offset
        self.dtype = trace.nodes[self.names[0]]["value"].dtype

    def _check_not_below_enumerated(self, model, args, kwargs, max_plate_nesting):
        """Refuse continuous sites whose prior depends on an enumerated site (extra dims)."""
        if not self.enumerated:
            return
        enum_model = EnumMessenger(first_available_dim=-1 - max_plate_nesting)(model)
        with poutine.block(), torch.no_grad():
            trace = poutine.trace(enum_model).get_trace(*args, **kwargs)
        for name in self.names:
            site = trace.nodes[name]
            batch = site["value"].shape[: site["value"].dim() - site["fn"].event_dim]
            if any(size > 1 for size in batch[: max(0, len(batch) - max_plate_nesting)]):
                raise InputError(
                    f"smc_estimate: the prior of continuous site {name!r} depends on an "
                    "enumerated discrete site; only models whose continuous latents come "
                    "before (do not depend on) the enumerated ones are supported"
                )

    def constrain(self, u: torch.Tensor):
        """``u`` of shape ``(B, D)`` to ``({site: (B, *shape)}, log|det J|)`` of shape ``(B,)``."""
        values, log_det = {}, torch.zeros(u.shape[0], dtype=u.dtype)
        for name in self.names:
            start, stop = self.offsets[name]
            part = u[:, start:stop].reshape(u.shape[0], *self.ushapes[name])
            value = self.transforms[name](part)
            values[name] = value
            log_det = log_det + self.transforms[name].log_abs_det_jacobian(part, value).reshape(
                u.shape[0], -1
            ).sum(-1)
        return values, log_det

    def unconstrain(self, values) -> torch.Tensor:
        parts = [self.transforms[n].inv(values[n]).reshape(len(values[n]), -1) for n in self.names]
        return torch.cat(parts, -1)

    def plate_shaped(self, name, value, max_plate_nesting):
        """``(P, *shape)`` values reshaped so that P sits on the particle plate's dim."""
        shape = self.shapes[name]
        batch = len(shape) - self.event_dims[name]
        return value.reshape(value.shape[0], *([1] * (max_plate_nesting - batch)), *shape)


def _prior_and_likelihood(model, args, kwargs, latents, values, max_plate_nesting, method):
    """Per-particle ``(log p(theta), log p(x | theta))`` at ``values = {site: (P, *shape)}``,
    enumerated sites summed out; ``method`` is ``"plate"``, ``"vmap"`` or ``"single"`` (P = 1,
    no particle dim in the model)."""
    num = next(iter(values.values())).shape[0]
    if method == "vmap":

        def one(vals):
            conditioned = poutine.condition(model, data=vals)
            return _log_weights_once(
                conditioned,
                _no_guide,
                args,
                kwargs,
                max_plate_nesting,
                None,
                vmap_safe=True,
                split_sites=latents.names,
            )

        with pyro.validation_enabled(False):
            joint, prior = torch.func.vmap(one, randomness="error")(values)
    else:
        if method == "plate":
            data = {n: latents.plate_shaped(n, v, max_plate_nesting) for n, v in values.items()}
        else:
            data, num = {n: v[0] for n, v in values.items()}, 1
        joint, prior = _log_weights_once(
            poutine.condition(model, data=data),
            _no_guide,
            args,
            kwargs,
            max_plate_nesting,
            num if method == "plate" else None,
            split_sites=latents.names,
        )
    joint, prior = joint.reshape(num), prior.reshape(num)
    like = torch.nan_to_num(joint - prior, nan=-math.inf, posinf=-math.inf)
    return torch.nan_to_num(prior, nan=-math.inf, posinf=-math.inf), like


def _choose_method(model, args, kwargs, latents, max_plate_nesting) -> str:
    """``"plate"`` when a particle plate gives particle 0 the densities of a plain run, else
    ``"vmap"`` when :func:`torch.func.vmap` runs; else an :class:`InputError`."""
    with poutine.block(), torch.no_grad():
        draws = [poutine.trace(model).get_trace(*args, **kwargs) for _ in range(2)]
    values = {n: torch.stack([tr.nodes[n]["value"] for tr in draws]) for n in latents.names}
    run = _prior_and_likelihood
    with poutine.block():
        # every particle is checked: ``locs[z]`` under a particle plate indexes the
        # particle dim and silently gives every particle the locs of particle z
        single = [
            torch.cat(parts)
            for parts in zip(
                *(
                    run(
                        model,
                        args,
                        kwargs,
                        latents,
                        {n: v[i : i + 1] for n, v in values.items()},
                        max_plate_nesting,
                        "single",
                    )  # fmt: skip
                    for i in range(2)
                )
            )
        ]
        try:
            plate = run(model, args, kwargs, latents, values, max_plate_nesting, "plate")
            if all(_close(p, s) for p, s in zip(plate, single)):
                return "plate"
        except _VECTORIZE_ERRORS:
            pass
        try:
            mapped = run(model, args, kwargs, latents, values, max_plate_nesting, "vmap")
        except _VECTORIZE_ERRORS as e:
            raise InputError(
                "smc_estimate: particles cannot be vectorized: the model does not broadcast "
                f"over a particle plate, and torch.func.vmap failed ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}); write the model with plates and "
                "Vindex so that it broadcasts over an extra batch dimension"
            ) from e
        if not all(_close(m, s) for m, s in zip(mapped, single)):
            raise InputError(
                "smc_estimate: the model gives different densities under torch.func.vmap and in "
                "a plain run; write it with plates and Vindex so that it broadcasts"
            )
    return "vmap"


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two vectors of log densities agree (infinities must match exactly)."""
    finite = torch.isfinite(a) & torch.isfinite(b)
    if not torch.equal(finite, torch.isfinite(a)) or not torch.equal(a[~finite], b[~finite]):
        return False
    a, b = a[finite], b[finite]
    atol = 1e-3 * (1 + float(b.abs().max())) if len(b) else 0.0
    return bool(torch.isclose(a, b, rtol=1e-4, atol=atol).all())


class _StopSampling(Exception):
    pass


class _RecordUntil(Messenger):
    """Records the values of the given sites and stops the model after the last of them."""

    def __init__(self, names):
        super().__init__()
        self.remaining, self.values, self.log_probs = set(names), {}, {}

    def _pyro_post_sample(self, msg):
        if msg["name"] in self.remaining and not msg["is_observed"]:
            self.values[msg["name"]] = msg["value"]
            self.log_probs[msg["name"]] = msg["fn"].log_prob(msg["value"])
            self.remaining.discard(msg["name"])
            if not self.remaining:
                raise _StopSampling


def _draw_prior(model, args, kwargs, latents, max_plate_nesting, num, method):
    """``num`` prior draws ``{site: (num, *shape)}`` of the continuous sites, vectorized.

    The model runs inside an outer particle plate and stops once the last
    continuous site is drawn (before any ``locs[z]`` code); when that fails,
    under :func:`torch.func.vmap` with independent randomness per particle.
    """

    def record(fn):
        recorder = _RecordUntil(latents.names)
        try:
            with poutine.block(), torch.no_grad():
                recorder(fn)(*args, **kwargs)
        except _StopSampling:
            pass
        if recorder.remaining:
            raise ValueError(f"sites {sorted(recorder.remaining)} were not sampled")
        return recorder

    def in_plate(*a, **k):
        with pyro.plate(_PARTICLES, num, dim=-(max_plate_nesting + 1)):
            return model(*a, **k)

    rng = get_rng_state()
    try:
        recorder = record(in_plate)
        values = {n: v.reshape(num, *latents.shapes[n]) for n, v in recorder.values.items()}
        sampled = sum(lp.reshape(num, -1).sum(-1) for lp in recorder.log_probs.values())
        # the plate draws must follow the model's densities: the prior of each draw by the
        # (validated) evaluation must be the sampler's, else the plate broadcast wrongly
        prior, _ = _prior_and_likelihood(
            model, args, kwargs, latents, values, max_plate_nesting, method
        )
        if torch.isclose(prior, sampled, rtol=1e-4, atol=1e-3).all():
            return values
    except _VECTORIZE_ERRORS:
        pass
    set_rng_state(rng)

    def one(_):
        vals = record(model).values
        return tuple(vals[n] for n in latents.names)

    try:
        with pyro.validation_enabled(False):
            draws = torch.func.vmap(one, randomness="different")(torch.arange(num))
    except _VECTORIZE_ERRORS as e:
        raise InputError(
            "smc_estimate: cannot draw prior particles vectorized: the model's latent sites do "
            "not broadcast over a particle plate and its samplers do not run under "
            f"torch.func.vmap ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from e
    return dict(zip(latents.names, draws))


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


def _move(density, u, log_prior, log_like, log_w, beta, scale, num_moves, fit_on):
    """``num_moves`` Metropolis steps leaving each row's ``pi_beta`` invariant.

    Random-walk proposals ``u + scale L eps`` (``L L^T`` the weighted population
    covariance); with ``fit_on = (population, log_weights)`` of other runs,
    every other step is an independence proposal from a
    :class:`_MixtureProposal` fitted on them, which jumps between the modes of
    a multimodal posterior (label switching, empty components) where the random
    walk cannot. Both proposals are fixed for the whole round, so each step is
    an ordinary Metropolis-Hastings step. Returns the moved ``(u, log_prior,
    log_like)`` and the acceptance rates ``(R,)`` of the two kinds of proposal.
    """
    rows, num, dim = u.shape
    factor = _proposal_factor(u, log_w)
    use_mixture = fit_on is not None
    if use_mixture:
        components = max(1, min(_MAX_COMPONENTS, num // (4 * (dim + 2))))
        mixture = _MixtureProposal(*fit_on, _proposal_factor(*fit_on), components)
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


#: The size up to which :func:`smc_affordable` says yes: continuous latent dimensions and
#: observed values. Up to them SMC was accurate on Gaussian mixtures and takes seconds per
#: model; well beyond them its standard error exceeded a nat and a run took minutes (the
#: measurements: benchmarks/results/user_models.md, "Notes moved from docstrings").
SMC_MAX_LATENT_DIM = 10
SMC_MAX_OBSERVED = 100


def smc_affordable(model: Callable, *args, max_plate_nesting: int | None = None, **kwargs):
    """Why :func:`smc_estimate` would not serve ``model(*args, **kwargs)``, or ``None``.

    ``None`` when the model's continuous latent sites have at most
    :data:`SMC_MAX_LATENT_DIM` unconstrained dimensions in all, its observed
    sites hold at most :data:`SMC_MAX_OBSERVED` values, and the model is one
    :func:`smc_estimate` accepts; else a sentence saying which limit it breaks.
    The estimator's cost grows with the number of temperatures (which grows
    with the dimension and the log of the data size) times the cost of one
    model evaluation, and its random-walk moves lose accuracy in more dimensions.
    """
    if max_plate_nesting is None:
        max_plate_nesting = _guess_max_plate_nesting(model, _no_guide, args, kwargs)
    try:
        latents = _Latents(model, args, kwargs, max_plate_nesting)
    except InputError as e:
        return str(e)
    if latents.dim > SMC_MAX_LATENT_DIM:
        return (
            f"{latents.dim} continuous latent dimensions (SMC is used up to {SMC_MAX_LATENT_DIM})"
        )
    with poutine.block(), torch.no_grad():
        trace = poutine.trace(model).get_trace(*args, **kwargs)
    observed = sum(
        site["value"].numel()
        for site in trace.nodes.values()
        if site["type"] == "sample" and site["is_observed"]
    )
    if observed > SMC_MAX_OBSERVED:
        return f"{observed} observed values (SMC is used up to {SMC_MAX_OBSERVED})"
    return None


@torch.no_grad()
def smc_estimate(
    model: Callable,
    *args,
    num_particles: int = 1000,
    num_repeats: int = 4,
    num_moves: int = 20,
    cess: float = 0.9,
    max_plate_nesting: int | None = None,
    max_batch: int = 2000,
    max_temperatures: int = 1000,
    **kwargs,
) -> EvidenceEstimate:
    """The log evidence ``log p(x)`` of ``model(*args, **kwargs)`` by tempered SMC.

    See the module docstring for the algorithm. The model needs no guide; its
    latent sites must be continuous, or discrete and marked for parallel
    enumeration (:func:`pyro.infer.config_enumerate`), which are summed out
    exactly. Randomness comes from Pyro's global state
    (:func:`pyro.set_rng_seed`): the same seed gives the same estimate.

    .. math::

        \\log \\widehat{p(x)} = \\log \\frac{1}{R} \\sum_{r=1}^R \\widehat{p(x)}_r,
        \\qquad \\mathrm{se} = \\mathrm{sd}_r(\\log \\widehat{p(x)}_r) / \\sqrt{R},

    over ``R = num_repeats`` independent runs of ``num_particles`` particles
    each (the average of the unbiased ``p(x)`` estimates, whose log is biased
    low by about ``se^2 / 2``; the standard error by the delta method).

    :param model: a Pyro model; its observed sites are the data.
    :param num_particles: particles per run, ``N``.
    :param num_repeats: independent runs ``R`` (vectorized together); ``se`` is
        ``nan`` for one run.
    :param num_moves: random-walk Metropolis steps per temperature.
    :param cess: target conditional ESS, as a fraction of ``N``, for choosing
        each next temperature; closer to 1 gives more temperatures (more cost,
        less variance).
    :param max_plate_nesting: plate dims of the model; inferred when ``None``.
    :param max_batch: particles evaluated per model call (bounds memory).
    :param max_temperatures: give up (``ValueError``) beyond this many steps.
    :returns: an :class:`~pyrostruct.infer.evidence.EvidenceEstimate` with
        ``method="smc"``, ``ess`` the smallest ESS of the weights over the
        steps (mean over runs), ``num_temperatures`` (mean over runs) and
        ``acceptance`` (mean Metropolis acceptance rate).
    :raises InputError: for latent discrete sites not marked for enumeration,
        models with no continuous latent site, continuous sites below an
        enumerated one, and models whose particles cannot be vectorized.

    Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> def model(x):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
        >>> pyro.set_rng_seed(0)
        >>> est = smc_estimate(model, torch.tensor([0.5, 1.5]), num_particles=200)
        >>> exact = float(dist.MultivariateNormal(torch.zeros(2), torch.eye(2) + 1).log_prob(
        ...     torch.tensor([0.5, 1.5])))
        >>> abs(est.value - exact) < 0.05
        True
    """
    _check_positive_int(num_particles, "num_particles")
    _check_positive_int(num_repeats, "num_repeats")
    _check_positive_int(max_batch, "max_batch")
    _check_positive_int(max_temperatures, "max_temperatures")
    if isinstance(num_moves, bool) or not isinstance(num_moves, int) or num_moves < 0:
        raise InputError(f"num_moves must be a non-negative integer, got {num_moves!r}")
    if not isinstance(cess, (int, float)) or isinstance(cess, bool) or not 0 < cess < 1:
        raise InputError(f"cess must be a number strictly between 0 and 1, got {cess!r}")
    if max_plate_nesting is None:
        max_plate_nesting = _guess_max_plate_nesting(model, _no_guide, args, kwargs)
    latents = _Latents(model, args, kwargs, max_plate_nesting)
    method = _choose_method(model, args, kwargs, latents, max_plate_nesting)
    rows, num, dim = num_repeats, num_particles, latents.dim

    def density(u):  # (B, D) -> log prior in u-space (with log|J|), log likelihood; float64
        priors, likes = [], []
        for chunk in u.split(max_batch):
            values, log_det = latents.constrain(chunk)
            prior, like = _prior_and_likelihood(
                model, args, kwargs, latents, values, max_plate_nesting, method
            )
            priors.append((prior + log_det).double())
            likes.append(like.double())
        return torch.cat(priors), torch.cat(likes)

    draws = _draw_prior(model, args, kwargs, latents, max_plate_nesting, rows * num, method)
    u = latents.unconstrain(draws).reshape(rows, num, dim)
    u = torch.nan_to_num(u, nan=0.0, posinf=1e30, neginf=-1e30)  # draws on a support's edge
    log_prior, log_like = (t.reshape(rows, num) for t in density(u.reshape(-1, dim)))
    log_w = torch.full((rows, num), -math.log(num), dtype=torch.float64)
    beta = torch.zeros(rows, dtype=torch.float64)
    log_z = torch.zeros(rows, dtype=torch.float64)
    min_ess = torch.full((rows,), float(num), dtype=torch.float64)
    steps = torch.zeros(rows, dtype=torch.long)
    scale = torch.full((rows,), 2.38 / math.sqrt(dim), dtype=u.dtype)
    rates, use_mixture, retry = [], rows > 1, 0
    while (beta < 1).any():
        act = (beta < 1).nonzero().squeeze(-1)
        if int(steps.max()) >= max_temperatures:
            raise ValueError(
                f"smc_estimate: more than max_temperatures={max_temperatures} temperatures "
                f"(reached beta = {float(beta.min()):.3g}); raise max_temperatures or lower cess"
            )
        new_beta = _next_temperatures(log_w[act], log_like[act], beta[act], cess)
        inc = _times(log_like[act], (new_beta - beta[act])[:, None])
        log_z[act] += (log_w[act] + inc).logsumexp(-1)
        lw = log_w[act] + inc
        log_w[act] = lw - lw.logsumexp(-1, keepdim=True)
        beta[act], steps[act] = new_beta, steps[act] + 1
        ess = torch.exp(-(2 * log_w[act]).logsumexp(-1))
        min_ess[act] = torch.minimum(min_ess[act], ess)
        low = act[ess < num / 2]
        if len(low):
            idx = _systematic_resample(log_w[low])
            u[low] = u[low].gather(1, idx[..., None].expand(-1, -1, dim))
            log_prior[low], log_like[low] = (
                log_prior[low].gather(1, idx),
                log_like[low].gather(1, idx),
            )
            log_w[low] = -math.log(num)
        move = act[beta[act] < 1]  # the last step's moves would not change the estimate
        if len(move) == 0 or num_moves == 0:
            continue
        # the mixture proposal of run r is fitted on run r + 1's population, which the
        # particles it moves did not shape
        partner = (move + 1) % rows
        fit_on = (u[partner], log_w[partner]) if use_mixture else None
        moved = _move(density, u[move], log_prior[move], log_like[move], log_w[move],
                      beta[move], scale[move], num_moves, fit_on)  # fmt: skip
        u[move], log_prior[move], log_like[move], rw_rate, mix_rate = moved
        scale[move] *= torch.exp(rw_rate - _TARGET_ACCEPTANCE).to(u.dtype)
        rates.append(float(((rw_rate + mix_rate) / 2 if use_mixture else rw_rate).mean()))
        # mixture proposals pay while they are accepted (small dims); after they stop
        # being accepted, they are tried again every few temperatures
        if rows > 1:
            use_mixture = (
                bool(mix_rate.mean() >= _MIN_MIXTURE_ACCEPTANCE) if use_mixture else retry % 5 == 4
            )
            retry = 0 if use_mixture else retry + 1
    if not torch.isfinite(log_z).all():
        raise ValueError(
            "smc_estimate: the evidence estimate is not finite; every particle has zero "
            "likelihood (check the model's supports and data)"
        )
    value = float(log_z.logsumexp(0) - math.log(rows))
    se = float(log_z.std() / math.sqrt(rows)) if rows > 1 else float("nan")
    return EvidenceEstimate(
        value,
        se,
        num_particles,
        "smc",
        float(min_ess.mean()),
        num_repeats,
        num_temperatures=float(steps.double().mean()),
        acceptance=sum(rates) / len(rates) if rates else float("nan"),
    )
