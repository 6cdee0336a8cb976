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
   steps whose proposal covariance is the weighted covariance of another
   run's population, scaled by ``2.38 / sqrt(D)`` and adapted towards an acceptance
   rate of 0.234 (Roberts, Gelman & Gilks 1997), alternating with
   independence steps from a Gaussian mixture fitted (weighted k-means) on
   the population of another run, which move particles between the modes of
   a multimodal posterior (label switching, empty components of a mixture
   model) that a random walk cannot cross; they are used while their
   acceptance rate is at least 5% (small latent spaces).

``num_repeats`` runs (at least 2) go in lockstep in one batch (each with its
own temperatures); their spread gives the standard error. Each run's
proposals (the random walk's covariance and the mixture) are fitted on the
next run's population: proposals shaped by the particles they move favour
moves towards the mode, and the estimate comes out high (by 12 nats with
250 particles on a 60-dimensional Gaussian, :func:`~pyrostruct.infer.smc_moves._move`).
The runs are therefore nearly, not exactly, independent. Particles are
vectorized with an outer particle plate when the model broadcasts over one,
else with :func:`torch.func.vmap` (the ``locs[z]`` idiom), as in
:mod:`pyrostruct.infer.evidence`; never one by one.

The model side (latent sites, vectorized prior and likelihood, prior draws) is
:mod:`pyrostruct.infer.smc_target`; the sampler's steps (temperatures,
resampling, moves) :mod:`pyrostruct.infer.smc_moves`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from pyrostruct.data import is_real_number
from pyrostruct.errors import InputError
from pyrostruct.infer.evidence import EvidenceEstimate
from pyrostruct.infer.importance import (
    _check_positive_int,
    _guess_max_plate_nesting,
)
from pyrostruct.infer.smc_moves import (
    _MIN_MIXTURE_ACCEPTANCE,
    _TARGET_ACCEPTANCE,
    _move,
    _next_temperatures,
    _systematic_resample,
    _times,
)
from pyrostruct.infer.smc_start import StartDistribution, guide_start, laplace_start
from pyrostruct.infer.smc_target import (
    _choose_method,
    _draw_prior,
    _Latents,
    _log_joint_fn,
    _no_guide,
    _prior_and_likelihood,
)

__all__ = ["SMC_MAX_LATENT_DIM", "SMC_MAX_OBSERVED", "smc_affordable", "smc_estimate"]


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
    if latents.num_observed > SMC_MAX_OBSERVED:
        return f"{latents.num_observed} observed values (SMC is used up to {SMC_MAX_OBSERVED})"
    return None


@torch.no_grad()
def smc_estimate(
    model: Callable,
    *args,
    start=None,
    num_particles: int = 1000,
    num_repeats: int = 4,
    num_moves: int = 20,
    cess: float = 0.9,
    max_plate_nesting: int | None = None,
    max_batch: int = 2000,
    max_temperatures: int = 1000,
    target_se: float | None = None,
    max_particles: int | None = None,
    stop_below: float | None = None,
    laplace: bool = True,
    inflation: float = 1.0,
    start_wrapper: Callable | None = None,
    **kwargs,
) -> EvidenceEstimate:
    """The log evidence ``log p(x)`` of ``model(*args, **kwargs)`` by tempered SMC.

    See the module docstring for the algorithm. Started from the prior
    (``start=None``) the model needs no guide; started from a fitted guide
    (``start=guide``, or a :class:`~pyrostruct.infer.smc_start.StartDistribution`)
    it is annealed importance sampling from the guide with resampling and
    adaptive temperatures (:mod:`pyrostruct.infer.smc_start`): the same
    sampler on the path ``q^(1 - beta) p(x, .)^beta``. The model's latent
    sites must be continuous, or discrete and marked for parallel enumeration
    (:func:`pyro.infer.config_enumerate`), which are summed out exactly.
    Randomness comes from Pyro's global state (:func:`pyro.set_rng_seed`):
    the same seed gives the same estimate.

    .. math::

        \\log \\widehat{p(x)} = \\log \\frac{1}{R} \\sum_{r=1}^R \\widehat{p(x)}_r,
        \\qquad \\mathrm{se} = \\mathrm{sd}_r(\\log \\widehat{p(x)}_r) / \\sqrt{R},

    over ``R = num_repeats`` independent runs of ``N`` particles each (the
    average of the unbiased ``p(x)`` estimates, whose log is biased low by
    about ``se^2 / 2``; the standard error by the delta method). Unlike the
    ELBO and the IWAE bound, its error does not depend on how close a guide
    is to the posterior, only on the budget; a start that misses a posterior
    mode the moves cannot reach shows up as a larger spread between runs,
    and through it in ``se``, unless every run misses it alike.

    **Adaptive budget.** With ``target_se``, runs are repeated with twice the
    particles (``N``, ``2N``, ``4N``, ... up to ``max_particles``) until
    ``se <= target_se``; the estimate is that of the last round, and
    ``evaluations`` counts the model evaluations of all rounds. The
    temperatures are adaptive in every round (conditional ESS ``cess``). With
    ``stop_below`` as well, the doubling also stops once ``estimate + 3 se <
    stop_below``: the evidence is then known to lie below that level, which is all
    a comparison with a better model needs.

    :param model: a Pyro model; its observed sites are the data.
    :param start: ``None`` (the prior), a fitted Pyro guide over the model's
        continuous latent sites (:func:`~pyrostruct.infer.smc_start.guide_start`),
        or a :class:`~pyrostruct.infer.smc_start.StartDistribution`.
    :param num_particles: particles per run, ``N`` (the first round's with
        ``target_se``).
    :param num_repeats: independent runs ``R >= 2`` (vectorized together; each
        run's proposals are shaped by the next run's particles).
    :param num_moves: Metropolis steps per temperature.
    :param cess: target conditional ESS, as a fraction of ``N``, for choosing
        each next temperature; closer to 1 gives more temperatures (more cost,
        less variance).
    :param max_plate_nesting: plate dims of the model; inferred when ``None``.
    :param max_batch: particles evaluated per model call (bounds memory).
    :param max_temperatures: give up (``ValueError``) beyond this many steps.
    :param target_se: optional, the standard error to reach by doubling ``N``.
    :param max_particles: the largest ``N`` tried for ``target_se`` (default
        ``16 * num_particles``).
    :param stop_below: optional, with ``target_se``: a level (nats) below which the
        estimate need not reach ``target_se`` (see above).
    :param laplace: with a guide as ``start``, start from the Gaussian at the
        posterior mode nearest the guide's mean with the Laplace covariance
        there (:func:`~pyrostruct.infer.smc_start.laplace_start`; the guide's
        own Gaussian where the Hessian is not negative definite) instead of the
        guide itself: a mean-field guide is too narrow where the posterior is
        correlated.
    :param inflation: the Laplace start's scale, in Laplace standard deviations.
        A wider start covers heavier posterior tails but lengthens the path by
        about ``D log(inflation)`` nats, which costs temperatures and, at a fixed
        budget, accuracy. Measured on fitted PPCA candidates (4 runs; estimates
        are biased low, so higher is better): D = 20, n = 300, rank 5 (111 latent
        dims), 400 particles: -6914.8 +- 0.3 at 1, -6915.0 at 1.25, -6917.8 at
        1.5, -6924 +- 2 at 2 (the former default); D = 12, n = 60, rank 3 low
        SNR, 500 particles: -1025.3 at 1 and 1.25, -1025.3 +- 0.3 at 1.5 and
        -1025.2 +- 0.9 at 2, against -1024.6 from a run three widths wide with
        30 moves per temperature (its heavier tail is worth half a nat);
        measured with the start at the guide's mean, before the mode search.
    :param start_wrapper: optional, ``(start, latents) -> StartDistribution``
        applied to the start built from a guide (:mod:`pyrostruct.selection`
        symmetrizes it over the label permutations of a mixture).
    :returns: an :class:`~pyrostruct.infer.evidence.EvidenceEstimate` with
        ``method="smc"``, ``start`` (``"prior"`` or ``"guide"``), ``ess`` the
        smallest ESS of the weights over the steps (mean over runs),
        ``num_temperatures`` (mean over runs), ``acceptance`` (mean Metropolis
        acceptance rate), ``evaluations`` (model evaluations, all rounds) and
        ``target_met`` (whether ``se <= target_se``; ``None`` without one).
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
    if num_repeats < 2:
        raise InputError(
            f"num_repeats must be at least 2, got {num_repeats}: each run's proposals are "
            "shaped by another run's particles (a run shaped by its own over-estimates the "
            "evidence)"
        )
    _check_positive_int(max_batch, "max_batch")
    _check_positive_int(max_temperatures, "max_temperatures")
    if isinstance(num_moves, bool) or not isinstance(num_moves, int) or num_moves < 0:
        raise InputError(f"num_moves must be a non-negative integer, got {num_moves!r}")
    if not isinstance(cess, (int, float)) or isinstance(cess, bool) or not 0 < cess < 1:
        raise InputError(f"cess must be a number strictly between 0 and 1, got {cess!r}")
    if target_se is not None and not (
        isinstance(target_se, (int, float)) and not isinstance(target_se, bool) and target_se > 0
    ):
        raise InputError(f"target_se must be a number > 0, got {target_se!r}")
    if max_particles is None:
        max_particles = 16 * num_particles
    _check_positive_int(max_particles, "max_particles")
    if stop_below is not None and not (target_se and is_real_number(stop_below, finite=True)):
        raise InputError(
            f"stop_below must be a finite number and needs target_se, got {stop_below!r} "
            f"with target_se={target_se!r}"
        )
    if isinstance(inflation, bool) or not isinstance(inflation, (int, float)) or inflation <= 0:
        raise InputError(f"inflation must be a number > 0, got {inflation!r}")
    if max_plate_nesting is None:
        max_plate_nesting = _guess_max_plate_nesting(model, _no_guide, args, kwargs)
    latents = _Latents(model, args, kwargs, max_plate_nesting)
    method = _choose_method(model, args, kwargs, latents, max_plate_nesting)
    if start is not None and not isinstance(start, StartDistribution):
        start = guide_start(start, latents, args, kwargs, max_plate_nesting)
        if laplace:
            log_joint = _log_joint_fn(model, args, kwargs, latents, max_plate_nesting)
            start = laplace_start(start, log_joint, inflation=inflation)
        if start_wrapper is not None:
            start = start_wrapper(start, latents)

    def density(u):  # (B, D) -> log q (prior or start) in u-space, log p(x, u) - log q; float64
        firsts, seconds = [], []
        for chunk in u.split(max_batch):
            values, log_det = latents.constrain(chunk)
            prior, like = _prior_and_likelihood(
                model, args, kwargs, latents, values, max_plate_nesting, method
            )
            prior = (prior + log_det).double()
            if start is None:
                firsts.append(prior)
                seconds.append(like.double())
            else:
                log_q = start.log_prob(chunk).double()
                firsts.append(log_q)
                seconds.append(torch.nan_to_num(prior + like.double() - log_q, nan=-math.inf))
        return torch.cat(firsts), torch.cat(seconds)

    def draw(count):
        if start is None:
            values = _draw_prior(model, args, kwargs, latents, max_plate_nesting, count, method)
            return latents.unconstrain(values)
        return start.sample(count).to(latents.dtype)

    evaluations, num = 0, num_particles
    while True:
        out = _run(density, draw, latents.dim, num_repeats, num, num_moves, cess,
                   max_temperatures)  # fmt: skip
        evaluations += out["evaluations"]
        log_z = out["log_z"]
        value = float(log_z.logsumexp(0) - math.log(num_repeats))
        se = float(log_z.std() / math.sqrt(num_repeats))
        below = stop_below is not None and value + 3 * se < stop_below
        if target_se is None or se <= target_se or below or 2 * num > max_particles:
            break
        num *= 2
    return EvidenceEstimate(
        value,
        se,
        num,
        "smc",
        float(out["min_ess"].mean()),
        num_repeats,
        num_temperatures=float(out["steps"].double().mean()),
        acceptance=out["acceptance"],
        start="prior" if start is None else "guide",
        evaluations=evaluations,
        target_met=None if target_se is None else bool(se <= target_se),
    )


def _run(density, draw, dim, rows, num, num_moves, cess, max_temperatures) -> dict:
    """``rows`` SMC runs of ``num`` particles in lockstep; their ``log_z`` ``(rows,)`` and
    diagnostics (``min_ess``, ``steps``, ``acceptance``, ``evaluations``)."""
    u = draw(rows * num).reshape(rows, num, dim)
    u = torch.nan_to_num(u, nan=0.0, posinf=1e30, neginf=-1e30)  # draws on a support's edge
    log_prior, log_like = (t.reshape(rows, num) for t in density(u.reshape(-1, dim)))
    evaluations = rows * num
    log_w = torch.full((rows, num), -math.log(num), dtype=torch.float64)
    beta = torch.zeros(rows, dtype=torch.float64)
    log_z = torch.zeros(rows, dtype=torch.float64)
    min_ess = torch.full((rows,), float(num), dtype=torch.float64)
    steps = torch.zeros(rows, dtype=torch.long)
    scale = torch.full((rows,), 2.38 / math.sqrt(dim), dtype=u.dtype)
    rates, use_mixture, retry = [], True, 0
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
        # run r's proposals are shaped by run r + 1's population, which the particles
        # they move did not shape (smc_moves._move)
        partner = (move + 1) % rows
        moved = _move(density, u[move], log_prior[move], log_like[move], beta[move],
                      scale[move], num_moves, (u[partner], log_w[partner]),
                      use_mixture)  # fmt: skip
        evaluations += len(move) * num * num_moves
        u[move], log_prior[move], log_like[move], rw_rate, mix_rate = moved
        scale[move] *= torch.exp(rw_rate - _TARGET_ACCEPTANCE).to(u.dtype)
        rates.append(float(((rw_rate + mix_rate) / 2 if use_mixture else rw_rate).mean()))
        # mixture proposals pay while they are accepted (small dims); after they stop
        # being accepted, they are tried again every few temperatures
        use_mixture = (
            bool(mix_rate.mean() >= _MIN_MIXTURE_ACCEPTANCE) if use_mixture else retry % 5 == 4
        )
        retry = 0 if use_mixture else retry + 1
    if not torch.isfinite(log_z).all():
        raise ValueError(
            "smc_estimate: the evidence estimate is not finite; every particle has zero "
            "likelihood (check the model's supports and data)"
        )
    return {
        "log_z": log_z,
        "min_ess": min_ess,
        "steps": steps,
        "acceptance": sum(rates) / len(rates) if rates else float("nan"),
        "evaluations": evaluations,
    }
