"""The final evidence of a fitted candidate, from all its restarts.

The ELBO of the kept restart's guide (symmetrized over label permutations
when the model is invariant under them), the IWAE bound with every fitted
restart's guide as a stratified mixture proposal (:func:`_mixture_iwae`), and
for small models the guide-free tempered SMC estimate (:func:`_smc`); the
estimators themselves are :mod:`pyrostruct.infer.evidence`'s and
:mod:`pyrostruct.infer.smc`'s.
"""

from __future__ import annotations

import math

import pyro
import torch
from pyro.infer.autoguide import AutoNormal

from pyrostruct.infer.evidence import elbo_estimate, iwae_estimate
from pyrostruct.infer.smc import smc_affordable, smc_estimate
from pyrostruct.selection.candidates import _build, _Context
from pyrostruct.selection.symmetry import _find_label_symmetry, _MeanField, _mixture_correction


def _evidence(ctx: _Context, payload: dict, model, guide, mpn: int, others=()) -> dict:
    """ELBO (rung or final particles) and, at the end, the IWAE bound of a plain model/guide.

    The final ELBO is that of the kept restart's guide, symmetrized over label
    permutations when the model is invariant under them (:func:`label_symmetry`,
    ``ctx.symmetrize``). The final IWAE bound uses as proposal the mixture of
    every fitted restart's (symmetrized) guide, ``others`` being the restarts
    besides the kept one, weighted by ``exp(ELBO_r)``; see
    :func:`_mixture_iwae`. The rung estimates, which rank restarts and drive
    successive halving, use the plain guide.
    """
    out = {}
    particles = ctx.elbo_particles if payload["final"] else ctx.rung_particles
    with pyro.validation_enabled(False):
        symmetry = None
        if payload["final"] and ctx.symmetrize:
            symmetry = _find_label_symmetry(model, guide, ctx.args, ctx.kwargs, mpn)
        out["symmetrized"] = symmetry is not None
        correction = None
        if symmetry is not None:
            correction = _mixture_correction([_MeanField(guide)], torch.zeros(1), 0, symmetry)
        est = elbo_estimate(
            model,
            guide,
            *ctx.args,
            num_particles=particles,
            max_plate_nesting=mpn,
            guide_correction=correction,
            **ctx.kwargs,
        )
        out["elbo"], out["elbo_se"] = est.value, est.se
        if payload["final"] and payload["iwae"]:
            mixable = isinstance(guide, AutoNormal) and all(
                isinstance(g, AutoNormal) for g, _, _ in others
            )
            if others and mixable:
                store = pyro.get_param_store()
                own = (guide, store.get_state(), payload.get("own_elbo", est.value))
                out.update(_mixture_iwae(ctx, model, [own, *others], symmetry, mpn))
            else:
                iw = iwae_estimate(
                    model,
                    guide,
                    *ctx.args,
                    num_particles=ctx.iwae_particles,
                    num_repeats=ctx.iwae_repeats,
                    max_plate_nesting=mpn,
                    guide_correction=correction,
                    **ctx.kwargs,
                )
                out["iwae"], out["iwae_se"], out["ess"] = iw.value, iw.se, iw.ess
                out["iwae_restarts"] = 1
    return out


def _smc(ctx: _Context, model, mpn: int) -> dict:
    """The guide-free SMC estimate of a candidate :func:`~pyrostruct.select` found small enough.

    :func:`~pyrostruct.infer.smc.smc_estimate` with ``ctx.smc_particles``
    particles in 8 independent runs (fewer runs make its standard error
    unreliable). An estimator that fails (too many temperatures, non-finite
    densities) leaves the candidate fitted, with the reason.
    """
    try:
        est = smc_estimate(
            model,
            *ctx.args,
            num_particles=ctx.smc_particles,
            num_repeats=8,
            max_plate_nesting=mpn,
            **ctx.kwargs,
        )
    except (ValueError, RuntimeError) as e:
        return {"smc_failed": f"{type(e).__name__}: {e}"}
    if not (math.isfinite(est.value) and math.isfinite(est.se)):
        return {"smc_failed": f"non-finite estimate {est.value} +- {est.se}"}
    return {"smc": est.value, "smc_se": est.se, "smc_start": "prior",
            "smc_evaluations": est.evaluations}  # fmt: skip


def _smc_guide(ctx: _Context, model, guide, mpn: int, stop_below: float | None = None) -> dict:
    """The guide-started SMC estimate of a fitted candidate still in contention.

    :func:`~pyrostruct.infer.smc.smc_estimate` with ``start=guide`` (the
    Laplace Gaussian at the posterior mode nearest the guide's mean,
    :func:`~pyrostruct.infer.smc_start.laplace_start`),
    symmetrized over label permutations when the model is invariant under
    them (:class:`~pyrostruct.selection.symmetry.SymmetrizedStart`), 4 runs of
    ``ctx.smc_guide_particles`` particles doubled up to ``4 * ctx.smc_particles``
    until the standard error is at most ``ctx.smc_target_se``, or until the
    estimate plus 3 standard errors is below ``stop_below`` (a candidate clearly
    below the best one so far needs no tighter estimate). An estimator that fails
    leaves the candidate ranked by its bound, with the reason.
    """
    from pyrostruct.selection.symmetry import SymmetrizedStart

    symmetry = None
    if ctx.symmetrize:
        symmetry = _find_label_symmetry(model, guide, ctx.args, ctx.kwargs, mpn)
    wrapper = None
    if symmetry is not None:

        def wrapper(start, latents):
            return SymmetrizedStart(start, latents, symmetry)

    try:
        with pyro.validation_enabled(False):
            est = smc_estimate(
                model,
                *ctx.args,
                start=guide,
                num_particles=ctx.smc_guide_particles,
                num_repeats=4,
                num_moves=10,
                target_se=ctx.smc_target_se,
                max_particles=max(ctx.smc_guide_particles, 4 * ctx.smc_particles),
                stop_below=stop_below,
                max_plate_nesting=mpn,
                start_wrapper=wrapper,
                **ctx.kwargs,
            )
    except (ValueError, RuntimeError) as e:
        return {"smc_failed": f"{type(e).__name__}: {e}"}
    if not (math.isfinite(est.value) and math.isfinite(est.se)):
        return {"smc_failed": f"non-finite estimate {est.value} +- {est.se}"}
    return {
        "smc": est.value,
        "smc_se": est.se,
        "smc_start": "guide",
        "smc_evaluations": est.evaluations,
    }


def _mixture_iwae(ctx: _Context, model, restarts: list, symmetry, mpn: int) -> dict:
    """The IWAE bound with the restarts' guides as a stratified mixture proposal.

    With ``restarts = [(guide_r, params_r, ELBO_r)]`` (AutoNormal guides, each
    living in its own parameter-store state), the proposal is

    .. math::

        q_{\\mathrm{mix}} = \\sum_r \\alpha_r\\, q_{r,\\mathrm{sym}}, \\qquad
        \\alpha_r \\propto e^{\\mathrm{ELBO}_r},

    (restarts with ``alpha_r < 0.01`` left out), each group of ``K`` particles
    holds ``m_r ~ alpha_r K`` draws from each ``q_r`` (at least one), and a
    group's estimate is the stratified one, ``log sum_r alpha_r mean_{k in r}
    w_k`` with ``w = p(x, z) / q_mix(z)``, unbiased for ``p(x)`` before the log
    (multiple importance sampling, Veach & Guibas 1995; Owen & Zhou, "Safe
    and effective importance sampling", 2000). Restarts that reached
    different posterior modes (different clusterings of a small data set,
    say) then all count towards the evidence, which a single unimodal guide
    misses; restarts at the same mode cost nothing but particles.
    """
    from pyrostruct.infer.evidence import effective_sample_size, log_importance_weights

    elbos = torch.tensor([float(e) for _, _, e in restarts])
    keep = (elbos - elbos.max()).exp() / (elbos - elbos.max()).exp().sum() >= 0.01
    restarts = [r for r, k in zip(restarts, keep.tolist()) if k]
    elbos = elbos[keep]
    log_alpha = elbos - torch.logsumexp(elbos, 0)
    k = ctx.iwae_particles
    raw = log_alpha.exp() * k
    counts = torch.clamp(raw.floor(), min=1).long()
    while counts.sum() < k:  # largest remainders first
        counts[int(torch.argmax(raw - counts))] += 1
    while counts.sum() > k and (counts > 1).any():
        counts[int(torch.argmax(counts))] -= 1
    store = pyro.get_param_store()
    snapshots = []
    for guide, params, _ in restarts:
        with store.scope(params):
            snapshots.append(_MeanField(guide))
    group_terms, all_lw = [], []
    for r, (guide, params, _) in enumerate(restarts):
        correction = _mixture_correction(snapshots, log_alpha, r, symmetry)
        with store.scope(params):
            lw = log_importance_weights(
                model,
                guide,
                *ctx.args,
                num_particles=int(counts[r]) * ctx.iwae_repeats,
                max_plate_nesting=mpn,
                guide_correction=correction,
                **ctx.kwargs,
            ).reshape(ctx.iwae_repeats, int(counts[r]))
        if not bool(torch.isfinite(lw).all()):
            raise ValueError("iwae: non-finite log importance weights in the mixture proposal")
        group_terms.append(log_alpha[r] + torch.logsumexp(lw, -1) - math.log(int(counts[r])))
        all_lw.append(lw + log_alpha[r] - math.log(int(counts[r])))
    bounds = torch.logsumexp(torch.stack(group_terms), 0)
    se = float(bounds.std() / math.sqrt(len(bounds))) if len(bounds) > 1 else math.nan
    ess = float(effective_sample_size(torch.cat(all_lw, -1)).mean())
    return {
        "iwae": float(bounds.mean()),
        "iwae_se": se,
        "ess": ess,
        "iwae_restarts": len(restarts),
    }


def _smc_skipped(cands, args, kwargs) -> dict:
    """``{candidate: why not}`` when some candidate is too large for the SMC estimate, else ``{}``.

    SMC ranks the candidates only if every one of them can have it
    (:func:`~pyrostruct.infer.smc.smc_affordable`); the others are then told
    which candidate stood in the way.
    """
    reasons = {}
    for name, cand in cands:
        try:
            model, _, _, _, mpn = _build(cand, args, kwargs, None, 0)
            reasons[name] = smc_affordable(model, *args, max_plate_nesting=mpn, **kwargs)
        except Exception:  # noqa: BLE001 - a model that raises fails later, named
            reasons[name] = None
    blocking = {name: why for name, why in reasons.items() if why is not None}
    if not blocking:
        return {}
    first, why = next(iter(blocking.items()))
    return {
        name: blocking.get(name, f"not computed: candidate {first!r} is too large for it ({why})")
        for name, _ in cands
    }
