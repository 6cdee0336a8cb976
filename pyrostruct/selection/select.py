"""Fit candidate Pyro models and compare their log evidence: :func:`select`.

Each candidate ``m`` is fitted by stochastic variational inference (Hoffman et
al., "Stochastic variational inference", 2013) from ``num_restarts``
initializations; the restart with the highest final ELBO is kept, and its log
evidence ``log p(x | m)`` is bounded from below by the ELBO and by the
importance-weighted bound (:mod:`pyrostruct.infer.evidence`). Posterior model
probabilities follow from Bayes' rule,

.. math::

    \\log p(m \\mid x) = \\log p(x \\mid m) + \\log p(m)
        - \\log \\sum_{m'} p(x \\mid m') p(m'),

with the bound in place of ``log p(x | m)``. Selecting the candidate with the
largest maximized ELBO is consistent, also under misspecification (Chérief-Abdellatif,
"Consistency of ELBO maximization for model selection", AABI 2019).

Restarts are vectorized: the ``num_restarts`` restarts of a candidate whose
guide ``select`` builds (:class:`~pyro.infer.autoguide.AutoNormal`) run as one
SVI fit of the model inside an extra outermost plate of size ``R``,

.. code-block:: python

    def vectorized(*args, **kwargs):
        with pyro.plate("_pyrostruct_restarts", R, dim=-(max_plate_nesting + 1)):
            return model(*args, **kwargs)

with the guide built on the wrapped model (its parameters get a leading restart
dim, each restart's slice starting from its own initialization) and the loss
summed over restarts. Restarts share no parameter and Adam's update is
elementwise (so is ClippedAdam's clipping), so each restart follows its own
path. One step pays the Python overhead of a step once, while its tensor work
grows with ``R``: 4 restarts of a K = 1..8 mixture sweep at n = 1000 cost about
2.3 times one restart, against 3.5 times sequentially
(``benchmarks/vectorized_restarts.py``). Each restart's ELBO comes from the log
weights of the traces summed over every dim but the restart plate (discrete
sites summed out by tensor contraction, with the restart plate kept); the best
restart is sliced out into an ordinary guide of the original model, so evidence
estimates, posteriors and ArviZ export see a plain fit. A model that does not
broadcast over the extra batch dim (``locs[z]`` indexing of an enumerated
assignment: plain indexing acts on the leftmost dim, which the restart plate
would occupy) is vectorized with :func:`torch.func.vmap` instead: the
restarts' AutoNormal parameters are stacked, the mean-field draws and their
log densities computed batched, and the model's log joint (enumerated sites
summed out) per restart under ``vmap``, so the model runs as written
(:func:`_vmap_restart_log_weights`). Candidates with their own guide, or that
neither way vectorizes, fit their restarts one by one (``vectorize_restarts``).

User models with a discrete assignment get a data-aware initialization
(:func:`mixture_init`: k-means++ centers for the component locations, a
different seeding per restart) when no ``init`` is given. Their evidence
accounts for label switching (:func:`label_symmetry`): the final ELBO is that
of the kept restart's guide symmetrized over the label permutations (when the
model is checked to be invariant under them), and the final IWAE bound uses
every fitted restart, symmetrized, as one mixture proposal (:func:`_mixture_iwae`),
so that restarts which found different posterior modes all count.

A candidate that raises while fitting is reported, not fatal: see ``on_error``.

Successive halving (Jamieson & Talwalkar, "Non-stochastic best arm
identification and hyperparameter optimization", AISTATS 2016) saves compute:
after each fraction of the steps in ``halving``, candidates (and, when not
vectorized, restarts) whose ELBO, extrapolated optimistically along its recent
trend to the end of the run, is still worse than the best one's beyond
``halving_z`` standard errors plus a margin are not fitted further. The steps
saved are reported.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, config_enumerate
from pyro.infer.autoguide import AutoNormal
from pyro.infer.autoguide.initialization import (
    init_to_feasible,
    init_to_uniform,
    init_to_value,
)
from pyro.infer.enum import get_importance_trace
from pyro.infer.traceenum_elbo import _compute_model_factors
from pyro.ops.contract import contract_to_tensor
from pyro.optim import ClippedAdam
from pyro.poutine.util import site_is_subsample

from pyrostruct.errors import InputError
from pyrostruct.infer.engine import ValidateFirstStep, param_scope, train
from pyrostruct.infer.enum import support_size
from pyrostruct.infer.evidence import (
    LowESSWarning,
    _vectorization_ok,
    elbo_estimate,
    iwae_estimate,
)
from pyrostruct.infer.init import mixture_init
from pyrostruct.selection.executors import check_executor, executor_session

__all__ = ["Candidate", "FittedCandidate", "label_symmetry", "mixture_init", "select"]

EVIDENCE_METHODS = ("elbo", "iwae")


@dataclasses.dataclass
class Candidate:
    """A candidate model for :func:`select`, with optional guide and initialization.

    Parameters
    ----------
    model : callable
        A Pyro model called as ``model(*args, **kwargs)``.
    guide : callable, optional
        A guide, or ``None`` for an automatic one: :class:`~pyro.infer.autoguide.AutoNormal`
        over the continuous latent sites, with discrete latent sites summed out
        by parallel enumeration (:class:`~pyro.infer.TraceEnum_ELBO`). Discrete
        sites are never relaxed automatically: the ELBO of a Gumbel-softmax
        relaxation (:func:`pyrostruct.relax`) bounds the evidence of a different,
        continuous model, so it would not rank the candidates' evidence; a discrete
        site without finite support (Poisson, ...) needs a user guide. A guide
        that is a :class:`~pyro.nn.PyroModule` must be built afresh for each
        restart: pass a zero-argument factory as ``guide_factory`` instead.
    guide_factory : callable, optional
        ``guide_factory(model) -> guide``; called once per restart.
    init : callable, optional
        ``init(args, kwargs, rng) -> {site: value}``: initial values (constrained
        space) of latent sites for one restart (``rng`` is a seeded
        :class:`numpy.random.Generator`, one per restart), e.g. k-means++ locations
        for a mixture. Vectorized restarts stack the restarts' values along the
        restart dim. Without one, a model with a discrete assignment gets
        :func:`mixture_init` when it recognizes the model (``result.data_init``
        says which did); ``init=lambda args, kwargs, rng: {}`` turns that off.
    lr : float, optional
        Learning rate of the ClippedAdam optimizer (default: ``select``'s ``lr``).
    """

    model: Callable
    guide: Callable | None = None
    guide_factory: Callable | None = None
    init: Callable | None = None
    lr: float | None = None


@dataclasses.dataclass
class FittedCandidate:
    """A fitted candidate: the model, its guide and the fitted parameters.

    The parameters live in their own parameter-store state (``params``);
    :meth:`sample_posterior` and :meth:`median` enter it, so fitted candidates
    do not clash with each other or with the user's parameter store.
    """

    name: Any
    model: Callable
    guide: Callable
    params: dict
    args: tuple
    kwargs: dict
    losses: list
    restart: int
    enumerated: bool
    max_plate_nesting: int

    def sample_posterior(self, num_samples: int = 100, seed: int = 0) -> dict[str, torch.Tensor]:
        """Draw ``num_samples`` joint samples of the latent sites from the fitted guide."""
        samples: dict[str, list] = {}
        pyro.set_rng_seed(seed)
        with pyro.get_param_store().scope(self.params), torch.no_grad():
            for _ in range(num_samples):
                tr = poutine.trace(self.guide).get_trace(*self.args, **self.kwargs)
                for name, site in tr.nodes.items():
                    if site["type"] == "sample" and not site["infer"].get("is_auxiliary"):
                        samples.setdefault(name, []).append(site["value"].detach())
        return {k: torch.stack(v) for k, v in samples.items()}

    def median(self) -> dict[str, torch.Tensor]:
        """Posterior median of each latent site (autoguides only)."""
        if not hasattr(self.guide, "median"):
            raise TypeError(
                f"candidate {self.name!r}: its guide has no median(); use sample_posterior()"
            )
        with pyro.get_param_store().scope(self.params), torch.no_grad():
            return {k: v.detach() for k, v in self.guide.median(*self.args, **self.kwargs).items()}


def _derived_seed(seed: int, *keys: int) -> int:
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


def _as_candidate(value, name) -> Candidate:
    if isinstance(value, Candidate):
        return value
    if isinstance(value, tuple) and len(value) == 2 and all(callable(v) for v in value):
        return Candidate(model=value[0], guide=value[1])
    if callable(value):
        return Candidate(model=value)
    raise InputError(
        f"candidate {name!r}: expected a model, a (model, guide) pair or a Candidate, "
        f"got {type(value).__name__}"
    )


def _max_plate_nesting(trace) -> int:
    dims = [
        -f.dim
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for f in site["cond_indep_stack"]
        if f.vectorized and f.dim is not None
    ]
    return max(dims, default=0)


def _discrete_sites(trace) -> list:
    return [
        name
        for name, site in trace.nodes.items()
        if site["type"] == "sample"
        and not site["is_observed"]
        and not site_is_subsample(site)
        and site["fn"].support.is_discrete
    ]


def _is_enumerated(trace, discrete) -> bool:
    return bool(discrete) or any(
        site["type"] == "sample" and site["infer"].get("enumerate") == "parallel"
        for site in trace.nodes.values()
    )


_MAX_FULL_GROUP = 720  # symmetrize over all K! permutations up to K = 6


class _MeanField:
    """A snapshot of an :class:`~pyro.infer.autoguide.AutoNormal`: per latent site its
    ``loc`` and ``scale`` (unconstrained) and the bijection to the site's support.

    ``log_density(values)`` is the guide's log density at constrained values
    with any number of leading batch dims: ``sum_site log N(T^{-1} v; loc, scale)
    - log |det dT/du|``, as ``AutoNormal`` computes it.
    """

    def __init__(self, guide) -> None:
        from torch.distributions import biject_to

        self.sites = {}
        for name, site in guide.prototype_trace.iter_stochastic_nodes():
            loc, scale = guide._get_loc_and_scale(name)
            transform = biject_to(site["fn"].support)
            self.sites[name] = (loc.detach(), scale.detach(), transform, site["value"].dim())

    def log_density(self, values: dict, name: str) -> torch.Tensor:
        loc, scale, transform, dim = self.sites[name]
        value = values[name]
        batch = value.shape[: value.dim() - dim]
        u = transform.inv(value)
        log_q = dist.Normal(loc, scale).log_prob(u).reshape(*batch, -1).sum(-1)
        return log_q - transform.log_abs_det_jacobian(u, value).reshape(*batch, -1).sum(-1)


@dataclasses.dataclass
class _LabelSymmetry:
    """Relabellings that leave a model's joint density unchanged: the ``K``-sized
    ``axes`` of each site, permuted together by each row of ``perms``."""

    k: int
    axes: dict
    perms: torch.Tensor
    log_group_size: float

    def permute(self, values: dict) -> dict:
        """``{site: (G, S, *shape)}``: each permutation applied to ``{site: (S, *shape)}``."""
        g, out = len(self.perms), {}
        for name, value in values.items():
            batched = value.unsqueeze(0).expand(g, *value.shape)
            for a in self.axes.get(name, ()):
                shape = [g] + [1] * value.dim()
                shape[a + 2] = self.k
                index = self.perms.reshape(shape).expand(batched.shape)
                batched = batched.gather(a + 2, index)
            out[name] = batched
        return out


@torch.no_grad()
def _find_label_symmetry(model, guide, args, kwargs, max_plate_nesting) -> _LabelSymmetry | None:
    """A mixture-like model's label symmetry, checked numerically (:func:`label_symmetry`)."""
    import itertools

    from pyro.infer.autoguide import AutoNormal as _AutoNormal

    from pyrostruct.infer.evidence import _log_weights_once

    if not isinstance(guide, _AutoNormal):
        return None
    with poutine.block():
        model_trace = poutine.trace(model).get_trace(*args, **kwargs)
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    sizes = {support_size(model_trace.nodes[n]["fn"]) for n in _discrete_sites(model_trace)}
    if len(sizes) != 1 or None in sizes or next(iter(sizes)) < 2:
        return None
    (k,) = sizes
    latent = {
        name: guide_trace.nodes[name]["value"]
        for name, _ in guide.prototype_trace.iter_stochastic_nodes()
        if name in guide_trace.nodes
    }

    def empty(*a, **kw):
        pass

    def log_joint(values):
        conditioned = poutine.condition(model, data=values)
        with pyro.validation_enabled(False):
            lw = _log_weights_once(conditioned, empty, args, kwargs, max_plate_nesting, None)
        return float(lw)

    base = log_joint(latent)
    if not math.isfinite(base):
        return None
    all_axes = {n: [a for a, size in enumerate(v.shape) if size == k] for n, v in latent.items()}
    checks = torch.stack([torch.tensor([1, 0] + list(range(2, k))), torch.roll(torch.arange(k), 1)])
    for option in [
        {n: a for n, a in all_axes.items() if a},
        {n: a[:1] for n, a in all_axes.items() if a},
    ]:
        if not option:
            continue
        trial = _LabelSymmetry(k, option, checks, 0.0)
        permuted = trial.permute({n: v.unsqueeze(0) for n, v in latent.items()})
        values = [log_joint({n: v[g, 0] for n, v in permuted.items()}) for g in range(2)]
        if all(abs(v - base) <= 1e-4 * (1 + abs(base)) for v in values):
            if math.factorial(k) <= _MAX_FULL_GROUP:
                perms = list(itertools.permutations(range(k)))
            else:
                perms = [
                    p
                    for p in itertools.permutations(range(k))
                    if sum(i != j for i, j in enumerate(p)) <= 3
                ]
            return _LabelSymmetry(k, option, torch.tensor(perms), math.lgamma(k + 1))
    return None


def _mixture_correction(
    components: list, log_weights: torch.Tensor, own: int, symmetry: _LabelSymmetry | None
) -> Callable:
    """``draws -> log q_mix(z) - log q_own(z)`` for the proposal

    .. math::

        q_{\\mathrm{mix}}(z) = \\sum_r \\alpha_r \\frac{1}{|G|} \\sum_{\\pi \\in G} q_r(\\pi z)

    of mean-field snapshots ``components`` (:class:`_MeanField`) with weights
    ``exp(log_weights)`` (normalized), symmetrized over the label permutations
    ``G`` of ``symmetry`` (none: ``G`` is the identity).
    """
    log_alpha = log_weights - torch.logsumexp(log_weights, 0)

    def correction(draws):
        names = list(components[own].sites)
        fixed = [n for n in names if symmetry is None or n not in symmetry.axes]
        moved = [n for n in names if symmetry is not None and n in symmetry.axes]
        permuted = symmetry.permute({n: draws[n] for n in moved}) if moved else {}
        terms = []
        for r, comp in enumerate(components):
            total = sum((comp.log_density(draws, n) for n in fixed), torch.zeros(()))
            if moved:  # (G, S): log q_r at every relabelling of the draws
                total = total + sum(comp.log_density(permuted, n) for n in moved)
                total = torch.logsumexp(total, 0) - symmetry.log_group_size
            terms.append(log_alpha[r] + total)
        own_density = sum(components[own].log_density(draws, n) for n in names)
        return torch.logsumexp(torch.stack(terms), 0) - own_density

    return correction


def label_symmetry(model, guide, args, kwargs, max_plate_nesting: int) -> Callable | None:
    """The correction that symmetrizes an :class:`~pyro.infer.autoguide.AutoNormal` guide
    over the label permutations of a mixture-like model, or ``None``.

    A model whose discrete latent sites all have the same support size ``K``
    is often invariant under relabelling: permuting the ``K``-sized axes of its
    continuous latents (weights, locations, scales, the rows and columns of a
    transition matrix) leaves ``p(x, z)`` unchanged, so the posterior has ``K!``
    copies of each mode while a unimodal guide covers one, and its ELBO and
    importance-weighted bounds fall short of ``log p(x)`` by up to ``log K!``.
    The symmetrized proposal

    .. math::

        q_{\\mathrm{sym}}(z) = \\frac{1}{K!} \\sum_{\\pi} q(\\pi z)

    is as easy to sample (draw from ``q``, permute at random) and, ``p`` being
    invariant, its importance weights are ``p(x, z) / q_sym(z)`` at ``z ~ q``
    (Frühwirth-Schnatter, "Estimating marginal likelihoods for mixture and
    Markov switching models using bridge sampling techniques", 2004). The
    returned ``correction(draws) = log q_sym(z) - log q(z)`` per particle is
    what :func:`~pyrostruct.infer.evidence.log_importance_weights` takes as
    ``guide_correction``; with well-separated modes it is ``-log K!``, with
    overlapping ones (an empty component) less.

    The invariance is checked numerically, never assumed: ``log p(x, z)`` at a
    guide draw must be unchanged (to 1e-4 relative) under a transposition and a
    cyclic shift of the labels, first permuting every ``K``-sized axis of every
    continuous latent site, then only the first such axis of each. The sum
    runs over all ``K!`` permutations up to ``K = 6``; above, over the
    permutations that move at most three labels (the others contribute
    nothing unless three or more components are nearly interchangeable).
    """
    symmetry = _find_label_symmetry(model, guide, args, kwargs, max_plate_nesting)
    if symmetry is None:
        return None
    return _mixture_correction([_MeanField(guide)], torch.zeros(1), 0, symmetry)


def _build(cand: Candidate, args, kwargs, init_values, restart: int):
    """Model, guide, loss and metadata for one restart of one candidate."""
    with poutine.block(), torch.no_grad():
        trace = poutine.trace(cand.model).get_trace(*args, **kwargs)
    discrete = _discrete_sites(trace)
    mpn = _max_plate_nesting(trace)
    model = cand.model
    enumerated = _is_enumerated(trace, discrete)
    if cand.guide is not None:
        guide = cand.guide
    elif cand.guide_factory is not None:
        guide = cand.guide_factory(model)
    else:
        for name in discrete:
            if not trace.nodes[name]["fn"].has_enumerate_support:
                raise InputError(
                    f"site {name!r} is discrete without finite support, so it cannot be "
                    "enumerated; relax it (pyrostruct.handlers.relax) or pass a guide"
                )
        if discrete:
            model = config_enumerate(model, "parallel")
        if init_values:
            init_fn = init_to_value(values=init_values, fallback=init_to_feasible)
        elif restart == 0:
            init_fn = init_to_feasible  # 0 in unconstrained space, as Pyro's autoguides
        else:
            init_fn = init_to_uniform(radius=2.0)
        guide = AutoNormal(poutine.block(model, hide=discrete), init_loc_fn=init_fn)
    if enumerated:
        loss = TraceEnum_ELBO(max_plate_nesting=mpn, strict_enumeration_warning=False)
    else:
        loss = Trace_ELBO(max_plate_nesting=mpn)
    return model, guide, loss, enumerated, mpn


@dataclasses.dataclass
class _Context:
    candidates: list  # of (name, Candidate)
    args: tuple
    kwargs: dict
    steps: int
    lr: float
    seed: int
    elbo_particles: int
    iwae_particles: int
    iwae_repeats: int
    rung_particles: int
    num_restarts: int = 1
    symmetrize: bool = True
    vmap_restarts: frozenset = frozenset()  # vectorized candidates whose model needs vmap


def _run_task(ctx: _Context, payload: dict) -> dict:
    """One task: a (candidate, restart), or a candidate with all its restarts vectorized.

    An exception raised while fitting (the model's own, or a non-finite ELBO)
    is returned as ``{"failed": message, "exception": exc}`` so that the sweep
    can keep the other candidates (``select(on_error="keep")``); ``exc`` is
    ``None`` when it cannot be pickled back from a worker process.
    """
    try:
        if payload.get("vectorized"):
            return _run_vectorized(ctx, payload)
        return _run_sequential(ctx, payload)
    except Exception as e:  # noqa: BLE001 - reported per candidate, see select(on_error=...)
        return _failure(payload["index"], payload["restart"], e)


def _failure(index, restart, exc: Exception) -> dict:
    import pickle

    lines = str(exc).splitlines()
    message = f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    input_error = isinstance(exc, InputError)
    try:
        pickle.dumps(exc)
    except Exception:  # noqa: BLE001 - an unpicklable exception travels as its message
        exc = None
    return {
        "index": index,
        "restart": restart,
        "failed": message,
        "exception": exc,
        "input_error": input_error,
    }


def _optimizer(ctx: _Context, cand: Candidate) -> ClippedAdam:
    lr = cand.lr if cand.lr is not None else ctx.lr
    # learning rate decays tenfold over the full run
    return ClippedAdam({"lr": lr, "lrd": 0.1 ** (1.0 / max(ctx.steps, 1)), "clip_norm": 10.0})


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


def _run_sequential(ctx: _Context, payload: dict) -> dict:
    """Fit one (candidate, restart) from ``start`` to ``stop`` steps, then estimate evidence."""
    index, restart = payload["index"], payload["restart"]
    name, cand = ctx.candidates[index]
    start, stop = payload["start"], payload["stop"]
    init_values = None
    if cand.init is not None and payload["state"] is None:
        rng = np.random.default_rng(_derived_seed(ctx.seed, index, restart, 999))
        init_values = cand.init(ctx.args, ctx.kwargs, rng)
    tic = time.perf_counter()
    with param_scope(), warnings.catch_warnings():
        warnings.simplefilter("ignore", LowESSWarning)
        pyro.set_rng_seed(_derived_seed(ctx.seed, index, restart, start))
        model, guide, loss, enumerated, mpn = _build(
            cand, ctx.args, ctx.kwargs, init_values, restart
        )
        optim = _optimizer(ctx, cand)
        if payload["state"] is not None:
            pyro.get_param_store().set_state(payload["state"]["params"])
            optim.set_state(payload["state"]["optim"])
        svi = SVI(model, guide, optim, loss)
        elbos = train(
            lambda: -svi.step(*ctx.args, **ctx.kwargs),
            stop,
            start=start,
            hooks=[ValidateFirstStep()],
            name=f"candidate {name!r}",
        )
        result = {
            "index": index,
            "restart": restart,
            "losses": elbos,
            "state": {"params": pyro.get_param_store().get_state(), "optim": optim.get_state()},
            "enumerated": enumerated,
            "max_plate_nesting": mpn,
        }
        others = _other_restarts(ctx, payload, cand) if payload["final"] else []
        result.update(_evidence(ctx, payload, model, guide, mpn, others))
    result["seconds"] = time.perf_counter() - tic
    return result


def _other_restarts(ctx: _Context, payload: dict, cand: Candidate) -> list:
    """``[(guide, param store state, rung ELBO)]`` of a candidate's other fitted restarts."""
    out = []
    for restart, params, elbo in payload.get("others", ()):
        with param_scope():
            if payload["vectorized"]:
                _, guide, _, _ = _slice_restart(
                    cand, ctx.args, ctx.kwargs, payload["state"]["params"], restart
                )
            else:
                _, guide, _, _, _ = _build(cand, ctx.args, ctx.kwargs, None, restart)
                pyro.get_param_store().set_state(params)
                with poutine.block(), torch.no_grad():
                    guide(*ctx.args, **ctx.kwargs)
            out.append((guide, pyro.get_param_store().get_state(), elbo))
    return out


def _run_vectorized(ctx: _Context, payload: dict) -> dict:
    """Fit all restarts of one candidate in one SVI run, batched along a restart plate.

    A fitting payload (``final`` false) runs steps ``start..stop`` and returns per
    restart lists: ``losses`` (the single-sample ELBO of each step), ``elbo`` and
    ``elbo_se`` (a ``rung_particles`` estimate). A final payload slices restart
    ``restart`` out into a plain guide (:func:`_slice_restart`) and returns its
    evidence estimates and parameters, as :func:`_run_sequential` does.
    """
    index, num_restarts = payload["index"], ctx.num_restarts
    name, cand = ctx.candidates[index]
    start, stop = payload["start"], payload["stop"]
    tic = time.perf_counter()
    if payload["final"]:
        restart = payload["restart"]
        with param_scope(), warnings.catch_warnings():
            warnings.simplefilter("ignore", LowESSWarning)
            pyro.set_rng_seed(_derived_seed(ctx.seed, index, restart, start))
            model, guide, enumerated, mpn = _slice_restart(
                cand, ctx.args, ctx.kwargs, payload["state"]["params"], restart
            )
            result = {
                "index": index,
                "restart": restart,
                "losses": [],
                "state": {"params": pyro.get_param_store().get_state(), "optim": None},
                "enumerated": enumerated,
                "max_plate_nesting": mpn,
            }
            others = _other_restarts(ctx, payload, cand)
            result.update(_evidence(ctx, payload, model, guide, mpn, others))
        result["seconds"] = time.perf_counter() - tic
        return result
    inits = None
    if cand.init is not None and payload["state"] is None:
        inits = [
            cand.init(
                ctx.args, ctx.kwargs, np.random.default_rng(_derived_seed(ctx.seed, index, r, 999))
            )
            for r in range(num_restarts)
        ]
    with param_scope(), warnings.catch_warnings():
        warnings.simplefilter("ignore", LowESSWarning)
        pyro.set_rng_seed(_derived_seed(ctx.seed, index, _VECTORIZED_STREAM, start))
        model, guide, enumerated, mpn = _build_vectorized(
            cand, ctx.args, ctx.kwargs, inits, num_restarts, vmap=index in ctx.vmap_restarts
        )
        log_weights = (
            _vmap_restart_log_weights if index in ctx.vmap_restarts else _restart_log_weights
        )
        optim = _optimizer(ctx, cand)
        if payload["state"] is not None:
            pyro.get_param_store().set_state(payload["state"]["params"])
            optim.set_state(payload["state"]["optim"])
        losses = train(
            lambda: _vectorized_step(model, guide, optim, ctx.args, ctx.kwargs, mpn, num_restarts),
            stop,
            start=start,
            hooks=[ValidateFirstStep()],
            name=f"candidate {name!r}",
        )
        losses = torch.stack(losses).T.tolist() if losses else [[]] * num_restarts
        state = {"params": pyro.get_param_store().get_state(), "optim": optim.get_state()}
        # each restart's ELBO, particles vectorized in chunks of ~500 particle-restarts
        chunk = max(1, 500 // num_restarts)
        lws, done = [], 0
        with pyro.validation_enabled(False), torch.no_grad():
            while done < ctx.rung_particles:
                size = min(chunk, ctx.rung_particles - done)
                lws.append(log_weights(model, guide, ctx.args, ctx.kwargs, mpn, num_restarts, size))
                done += size
        lw = torch.cat(lws)
        if not bool(torch.isfinite(lw).all()):
            raise ValueError(
                f"candidate {name!r}: non-finite log importance weights in the ELBO estimate"
            )
        se = (
            lw.std(0) / math.sqrt(len(lw)) if len(lw) > 1 else torch.full((num_restarts,), math.nan)
        )
    return {
        "index": index,
        "losses": losses,
        "state": state,
        "enumerated": enumerated,
        "max_plate_nesting": mpn,
        "elbo": lw.mean(0).tolist(),
        "elbo_se": se.tolist(),
        "seconds": time.perf_counter() - tic,
    }


# ------------------------------------------------------------------ vectorized restarts

_RESTARTS = "_pyrostruct_restarts"
_PARTICLES = "_pyrostruct_restart_particles"
_VECTORIZED_STREAM = 1_000_003  # seeds of vectorized tasks, apart from per-restart ones
_SHAPE_ERRORS = (
    ValueError,
    RuntimeError,
    IndexError,
    NotImplementedError,
    TypeError,
    AssertionError,
)


def _in_plate(fn, name, size, dim):
    def wrapped(*args, **kwargs):
        with pyro.plate(name, size, dim=dim):
            return fn(*args, **kwargs)

    return wrapped


def _keep_dims(term, keep: tuple, shape: tuple) -> torch.Tensor:
    """Sum a packed log-prob tensor over every dim but the plate symbols ``keep``, in that order."""
    if not torch.is_tensor(term):
        term = torch.as_tensor(term)
    dims = getattr(term, "_pyro_dims", "")
    present = [s for s in dims if s in keep]
    other = [i for i, s in enumerate(dims) if s not in keep]
    if other:
        term = term.sum(other)
    for s in keep:  # a term constant along a kept plate counts once for every index of it
        if s not in present:
            term = term.unsqueeze(-1)
            present.append(s)
    term = term.permute([present.index(s) for s in keep]) if len(keep) > 1 else term
    return term.expand(shape)


def _restart_log_weights(
    model, guide, args, kwargs, max_plate_nesting, num_restarts, num_particles=None, detach=True
) -> torch.Tensor:
    """Per-restart ``log p(x, z) - log q(z)`` of a restart-vectorized model and guide.

    ``model`` and ``guide`` run their sites inside the restart plate (at dim
    ``-(max_plate_nesting + 1)``); discrete model sites marked for enumeration are
    summed out exactly, as in :class:`~pyro.infer.TraceEnum_ELBO` (the restart plate
    is a plate of the contraction, so the restarts stay independent). Shape
    ``(num_restarts,)``, or ``(num_particles, num_restarts)`` with an outer plate of
    particles. With a reparameterized guide, ``-sum`` of it is the ELBO loss whose
    gradient SVI follows.
    """
    nesting = max_plate_nesting + 1
    if num_particles is not None:
        nesting += 1
        model = _in_plate(model, _PARTICLES, num_particles, -nesting)
        guide = _in_plate(guide, _PARTICLES, num_particles, -nesting)
    guide = poutine.enum(guide, first_available_dim=-1 - nesting)
    model = poutine.enum(model)
    model_trace, guide_trace = get_importance_trace("flat", nesting, model, guide, args, kwargs)
    guide_trace.pack_tensors()
    model_trace.pack_tensors(guide_trace.plate_to_symbol)
    symbols = model_trace.plate_to_symbol
    keep = ((symbols[_PARTICLES],) if num_particles is not None else ()) + (symbols[_RESTARTS],)
    shape = ((num_particles,) if num_particles is not None else ()) + (num_restarts,)
    marginal_costs, log_factors, _, sum_dims, scale = _compute_model_factors(
        model_trace, guide_trace
    )
    total = torch.zeros(shape)
    for terms in marginal_costs.values():
        for term in terms:
            total = total + _keep_dims(term, keep, shape)
    if log_factors:
        target = frozenset(keep)
        tree = OrderedDict((t | target, terms) for t, terms in log_factors.items())
        contracted = contract_to_tensor(tree, sum_dims, target_ordinal=target)
        total = total + scale * _keep_dims(contracted, keep, shape)
    for site in guide_trace.nodes.values():
        if site["type"] == "sample":
            total = total - _keep_dims(site["packed"]["log_prob"], keep, shape)
    return total.detach() if detach else total


def _restart_init(inits, num_restarts):
    """``init_loc_fn`` of the vectorized guide: restart ``r``'s value at index ``r`` of dim 0.

    Values from ``inits`` (one ``{site: value}`` per restart) when given, else the
    sequential path's choice: restart 0 at the feasible point (0 unconstrained),
    the others uniform in ``(-2, 2)`` unconstrained; with ``inits`` the sites they
    leave out start feasible.
    """

    def init_fn(site):
        name, slot = site["name"], site["fn"].shape()[1:]  # the restart dim is the first
        if inits is not None and name in inits[0]:
            dtype = torch.get_default_dtype()
            stacked = [torch.as_tensor(v[name], dtype=dtype).expand(slot) for v in inits]
            return torch.stack(stacked)
        feasible = init_to_feasible(site)
        if inits is not None:
            return feasible
        uniform = init_to_uniform(site, radius=2.0).clone()
        uniform[0] = feasible[0]
        return uniform

    return init_fn


class _VmapRestarts:
    """The restarts of an AutoNormal guide, stacked, for models that do not broadcast.

    The parameter store holds each AutoNormal parameter of the plain model's
    guide with a leading restart dim (restart ``r``'s slice built from its own
    initialization, as :func:`_build` would); ``sites`` maps each latent site
    to its bijection, the names of its ``loc`` and ``scale`` parameters and
    its unconstrained shape. See :func:`_vmap_restart_log_weights`.
    """

    def __init__(self, sites: dict) -> None:
        self.sites = sites


def _build_vmap_restarts(cand: Candidate, args, kwargs, inits, num_restarts: int):
    """Fill the current parameter store with ``num_restarts`` stacked AutoNormal guides."""
    from torch.distributions import biject_to

    store = pyro.get_param_store()
    states = []
    for r in range(num_restarts):
        with store.scope():
            model, guide, _, _, _ = _build(
                cand, args, kwargs, inits[r] if inits is not None else None, r
            )
            with poutine.block(), torch.no_grad():
                guide(*args, **kwargs)
            states.append(store.get_state())
    params = {
        key: torch.stack([st["params"][key].detach() for st in states]).requires_grad_()
        for key in states[0]["params"]
    }
    store.set_state({"params": params, "constraints": states[0]["constraints"]})
    sites = {}
    for name, site in guide.prototype_trace.iter_stochastic_nodes():
        loc_key = next(k for k in params if k.endswith(f".locs.{name}"))
        scale_key = next(k for k in params if k.endswith(f".scales.{name}"))
        sites[name] = (biject_to(site["fn"].support), loc_key, scale_key, site["value"].shape)
    return model, _VmapRestarts(sites)


def _empty_guide(*args, **kwargs) -> None:
    pass


def _vmap_restart_log_weights(
    model, guide: _VmapRestarts, args, kwargs, max_plate_nesting, num_restarts, num_particles=None,
    detach=True,
) -> torch.Tensor:  # fmt: skip
    """:func:`_restart_log_weights` for models that do not broadcast over a restart plate.

    Each restart's guide is the mean-field normal of :class:`~pyro.infer.autoguide.AutoNormal`
    (``u ~ N(loc_r, scale_r)``, ``z = T(u)``, ``log q = log N(u) - log|det dT/du|``),
    computed batched over restarts (and particles); the model's log joint
    ``log p(x, z)``, enumerated sites summed out, is computed per (particle,
    restart) under :func:`torch.func.vmap`, so model code such as ``locs[z]``
    runs as written. Shape ``(num_restarts,)`` or ``(num_particles, num_restarts)``.
    """
    from pyrostruct.infer.evidence import _log_weights_once

    lead = (num_restarts,) if num_particles is None else (num_particles, num_restarts)
    values, log_q = {}, torch.zeros(lead)
    for name, (transform, loc_key, scale_key, shape) in guide.sites.items():
        loc, scale = pyro.param(loc_key), pyro.param(scale_key)  # (R, *unconstrained shape)
        u = loc + scale * torch.randn(lead + loc.shape[1:])
        z = transform(u)
        log_q = log_q + dist.Normal(loc, scale).log_prob(u).reshape(*lead, -1).sum(-1)
        log_q = log_q - transform.log_abs_det_jacobian(u, z).reshape(*lead, -1).sum(-1)
        values[name] = z.reshape(-1, *shape)

    def log_joint(vals):
        conditioned = poutine.condition(model, data=vals)
        return _log_weights_once(
            conditioned, _empty_guide, args, kwargs, max_plate_nesting, None, vmap_safe=True,
            detach=False,
        )  # fmt: skip

    with pyro.validation_enabled(False):
        log_p = torch.func.vmap(log_joint, randomness="error")(values).reshape(lead)
    lw = log_p - log_q
    return lw.detach() if detach else lw


def _build_vectorized(cand: Candidate, args, kwargs, inits, num_restarts: int, vmap=False):
    """Restart-vectorized model and AutoNormal guide of a candidate (no user guide).

    With ``vmap``, the plain model and a :class:`_VmapRestarts` guide whose
    stacked parameters this call puts in the current parameter store.
    """
    if vmap:
        with poutine.block(), torch.no_grad():
            trace = poutine.trace(cand.model).get_trace(*args, **kwargs)
        discrete = _discrete_sites(trace)
        model, guide = _build_vmap_restarts(cand, args, kwargs, inits, num_restarts)
        return model, guide, _is_enumerated(trace, discrete), _max_plate_nesting(trace)
    with poutine.block(), torch.no_grad():
        trace = poutine.trace(cand.model).get_trace(*args, **kwargs)
    discrete = _discrete_sites(trace)
    mpn = _max_plate_nesting(trace)
    enumerated = _is_enumerated(trace, discrete)
    model = config_enumerate(cand.model, "parallel") if discrete else cand.model
    model_v = _in_plate(model, _RESTARTS, num_restarts, -(mpn + 1))
    guide_v = AutoNormal(
        poutine.block(model_v, hide=discrete), init_loc_fn=_restart_init(inits, num_restarts)
    )
    return model_v, guide_v, enumerated, mpn


def _vectorized_step(model, guide, optim, args, kwargs, mpn, num_restarts) -> torch.Tensor:
    """One SVI step on the summed loss of all restarts; returns each restart's ELBO sample.

    Restarts share no parameter and Adam's update is elementwise, so each
    restart follows the same path as if it were fitted alone (up to its random draws).
    """
    log_weights = (
        _vmap_restart_log_weights if isinstance(guide, _VmapRestarts) else _restart_log_weights
    )
    with poutine.trace(param_only=True) as capture:
        lw = log_weights(model, guide, args, kwargs, mpn, num_restarts, detach=False)
        (-lw.sum()).backward()
    params = {site["value"].unconstrained() for site in capture.trace.nodes.values()}
    optim(params)
    pyro.infer.util.zero_grads(params)
    return lw.detach()


def _not_vectorizable(
    cand: Candidate, args, kwargs, num_restarts: int, vmap_ok=True, vmap_used=None
) -> str | None:
    """Why the candidate's restarts cannot run as one vectorized SVI fit, or ``None``.

    Checks a user guide, ``pyro.param`` sites in the model (they would be shared
    by the restarts), latent sites with batch dims outside declared plates, and
    whether the model broadcasts correctly over an extra batch dim (the log
    weight of a vectorized run equals that of a plain run on the same values,
    see :func:`pyrostruct.infer.evidence._vectorization_ok`). A model that
    does not (``locs[z]`` indexing, say) is vectorized with :func:`torch.func.vmap`
    instead (:func:`_vmap_restart_log_weights`) unless ``vmap_ok`` is false;
    ``vmap_used`` (a list) receives whether it was. Then runs one vectorized
    loss evaluation.
    """
    if cand.guide is not None or cand.guide_factory is not None:
        return "it has its own guide"
    rng_state = pyro.util.get_rng_state()
    try:
        with param_scope(), poutine.block(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.no_grad():
                trace = poutine.trace(cand.model).get_trace(*args, **kwargs)
            if any(site["type"] == "param" for site in trace.nodes.values()):
                return "its model has pyro.param sites, which the restarts would share"
            discrete = _discrete_sites(trace)
            if any(not trace.nodes[n]["fn"].has_enumerate_support for n in discrete):
                return "it has discrete sites that cannot be enumerated"
            latent = [
                site
                for name, site in trace.nodes.items()
                if site["type"] == "sample"
                and not site["is_observed"]
                and name not in discrete
                and not site_is_subsample(site)
            ]
            if not latent:
                return "it has no continuous latent sites"
            mpn = _max_plate_nesting(trace)
            for site in latent:
                if site["value"].dim() - site["fn"].event_dim > mpn:
                    return f"site {site['name']!r} has batch dims outside its plates"
            model, guide, _, _, _ = _build(cand, args, kwargs, None, 0)
            vmap = not _vectorization_ok(model, guide, args, kwargs, mpn)
            if vmap and not vmap_ok:
                return "its model does not broadcast over an extra batch dim"
            model_v, guide_v, _, _ = _build_vectorized(
                cand, args, kwargs, None, num_restarts, vmap=vmap
            )
            log_weights = _vmap_restart_log_weights if vmap else _restart_log_weights
            lw = log_weights(model_v, guide_v, args, kwargs, mpn, num_restarts)
            lw2 = log_weights(model_v, guide_v, args, kwargs, mpn, num_restarts, 2)
            if lw.shape != (num_restarts,) or lw2.shape != (2, num_restarts):
                return "the vectorized log weights have the wrong shape"
            if not bool(torch.isfinite(lw).all()):
                return "the vectorized log weights are not finite"
            if vmap_used is not None:
                vmap_used.append(vmap)
    except InputError:
        raise
    except _SHAPE_ERRORS as e:
        return f"a vectorized run failed ({type(e).__name__}: {str(e).splitlines()[0]})"
    finally:
        pyro.util.set_rng_state(rng_state)
    return None


def _slice_restart(cand: Candidate, args, kwargs, vec_params: dict, restart: int):
    """An ordinary model and AutoNormal guide holding restart ``restart``'s parameters.

    Runs in the current parameter store scope (which it fills). Each parameter of
    the vectorized guide carries the restart dim first; index ``restart`` of it
    is reshaped to the plain guide's parameter.
    """
    model, guide, loss, enumerated, mpn = _build(cand, args, kwargs, None, restart)
    store = pyro.get_param_store()
    with poutine.block(), torch.no_grad():
        guide(*args, **kwargs)
    state = store.get_state()
    params = {}
    for name, value in state["params"].items():
        source = vec_params["params"].get(name)
        if source is None or source.numel() != value.numel() * source.shape[0]:
            raise RuntimeError(f"vectorized restarts: parameter {name!r} does not match")
        params[name] = source[restart].detach().reshape(value.shape).clone().requires_grad_()
    store.set_state({"params": params, "constraints": state["constraints"]})
    return model, guide, enumerated, mpn


def _check_lr(value, name) -> None:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be a finite number > 0, got {value!r}")


def _check_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _normalize_candidates(candidates, grid) -> list:
    if callable(candidates) and not isinstance(candidates, Mapping):
        if grid is None:
            raise InputError(
                "a candidate family (a function of one argument) needs grid=, "
                "e.g. select(lambda k: model_k, data, grid=range(1, 9))"
            )
        grid = list(grid)
        if not grid:
            raise InputError("grid is empty; give at least one value")
        candidates = {g: candidates(g) for g in grid}
    elif grid is not None:
        raise InputError("grid= is only used with a candidate family (a function of one argument)")
    if not isinstance(candidates, Mapping):
        raise InputError(
            "candidates must be a mapping name -> model (or (model, guide)), "
            f"or a family with grid=; got {type(candidates).__name__}"
        )
    if len(candidates) == 0:
        raise InputError("no candidates given; pass at least one model")
    return [(name, _as_candidate(value, name)) for name, value in candidates.items()]


def _log_prior(prior, names) -> np.ndarray:
    if prior is None:
        return np.full(len(names), -math.log(len(names)))
    if not isinstance(prior, Mapping):
        raise InputError(f"prior must be a mapping candidate -> probability, got {prior!r}")
    unknown = [k for k in prior if k not in names]
    if unknown:
        raise InputError(f"prior names unknown candidate {unknown[0]!r}; candidates are {names}")
    missing = [n for n in names if n not in prior]
    if missing:
        raise InputError(f"prior gives no probability for candidate {missing[0]!r}")
    p = np.array([float(prior[n]) for n in names])
    if not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
        raise InputError("prior probabilities must be finite, >= 0 and not all zero")
    with np.errstate(divide="ignore"):
        return np.log(p / p.sum())


def select(
    candidates: Mapping | Callable,
    *args,
    grid: Iterable | None = None,
    steps: int = 1000,
    num_restarts: int = 2,
    evidence: Sequence[str] = ("elbo", "iwae"),
    prior: Mapping | None = None,
    executor: str = "serial",
    seed: int = 0,
    lr: float = 0.05,
    halving: Sequence[float] | None = (0.25, 0.5),
    halving_z: float = 3.0,
    halving_margin: float | None = None,
    elbo_particles: int = 500,
    iwae_particles: int = 100,
    iwae_repeats: int = 10,
    max_workers: int | None = None,
    ess_warning: float = 0.05,
    progress: bool = False,
    vectorize_restarts: bool | None = None,
    on_error: str = "keep",
    symmetrize: bool = True,
    **kwargs,
):
    """Fit each candidate model by SVI and rank them by their log evidence.

    Parameters
    ----------
    candidates : mapping or callable
        ``{name: model}``, ``{name: (model, guide)}``, ``{name: Candidate}``, or a
        family ``lambda g: model`` together with ``grid`` (names are the grid values).
    *args, **kwargs
        Passed to every model and guide (typically the data).
    steps : int
        SVI steps per restart (ClippedAdam, learning rate decaying tenfold).
    num_restarts : int
        Initializations per candidate; the restart with the best final ELBO
        (a 100-particle estimate) is kept as the candidate's posterior, and the
        IWAE bound uses every fitted restart as a mixture proposal (restarts
        that reached other posterior modes add their mass). Restarts are cheap
        when vectorized; posteriors with several modes beyond label switching
        (small data, many components) need more of them, and more
        ``iwae_particles``: on the 5 points of Pyro's mixture tutorial,
        ``num_restarts=8, iwae_particles=1000`` gets the posterior over
        K = 1..4 within 0.1 of the exact one, the defaults within 0.16.
    evidence : sequence of {"elbo", "iwae"}
        Estimators to compute; the log evidence used for the posterior model
        probabilities is the IWAE bound when computed (it is the tighter), else the ELBO.
    prior : mapping, optional
        Prior probabilities of the candidates (normalized); uniform by default.
    executor : {"serial", "process", "ray"}
        Where the fits run (:mod:`pyrostruct.selection.executors`); same seed, same result.
    seed : int
        Seed of every random choice (initializations, SVI, estimators).
    halving : sequence of float or None
        Fractions of ``steps`` after which clearly worse restarts and candidates
        stop (successive halving); ``None`` fits everything to the end.
    halving_z, halving_margin : float
        A candidate stops when its ELBO is below the best one's by more than
        ``halving_z`` combined standard errors plus ``halving_margin`` nats
        (default ``max(10, 0.02 |best ELBO|)``: early ELBOs are not converged).
    elbo_particles, iwae_particles, iwae_repeats : int
        Particles of the final ELBO estimate, ``K`` of the IWAE bound and its
        number of independent repeats; computed for the best restart of each
        candidate (restarts are ranked by a 100-particle ELBO).
    ess_warning : float
        Warn (:class:`~pyrostruct.infer.LowESSWarning`) naming the candidates whose
        importance weights have an effective sample size below this fraction of
        ``iwae_particles``.
    progress : bool
        Show a progress bar over candidates.
    vectorize_restarts : bool or None
        Fit the ``num_restarts`` restarts of a candidate in one SVI run, batched
        along an extra outermost plate (see the module docstring), instead of
        one run per restart. ``None`` (default): vectorize every candidate whose
        guide ``select`` builds and whose model broadcasts over the extra dim
        (checked by a trial run; models with ``pyro.param`` sites, shared by the
        restarts, are not vectorized), others fit their restarts one by one.
        ``True``: the same, but raise :class:`InputError` if a candidate cannot
        be vectorized. ``False``: one SVI run per restart. A task of the
        executor is one candidate with all its restarts when vectorized, one
        (candidate, restart) otherwise; restarts of a vectorized candidate are
        not dropped by successive halving (they cost little), candidates are.
        Vectorized and sequential restarts draw different random numbers, so
        their results differ within Monte Carlo error; each is reproducible.
    symmetrize : bool
        Estimate the final ELBO and IWAE bound of a candidate whose model is
        invariant under relabelling (a mixture, checked numerically) with its
        guide symmetrized over the label permutations (:func:`label_symmetry`):
        a unimodal guide covers one of the ``K!`` copies of each posterior
        mode, and without it the bounds of a ``K``-component candidate fall
        short by up to ``log K!``, which biases the selection towards small
        ``K``. ``result.symmetrized`` says which candidates were.
    on_error : {"keep", "raise"}
        What a candidate whose model raises (or whose ELBO becomes non-finite)
        does to the sweep. ``"keep"`` (default): the other candidates are
        fitted and returned; the failed one gets ``status`` ``"failed: <error>"``,
        NaN evidence and posterior probability, an entry in
        ``result.failures``, and a :class:`~pyrostruct.selection.result.CandidateFailedWarning`
        names it; the posterior probabilities are then over the fitted
        candidates only. When every candidate fails, a :class:`RuntimeError`
        lists each error. ``"raise"``: the first failure stops the sweep with a
        :class:`RuntimeError` naming the candidate (chained to the original
        exception) and the results computed so far are discarded.

    Returns
    -------
    SelectionResult
        With ``vectorized_restarts`` (candidate -> whether its restarts ran
        vectorized), ``not_vectorized`` (candidate -> why not, when tried) and
        ``restart_elbos`` (candidate -> each restart's last 100-particle ELBO),
        ``failures`` (candidate -> error message, see ``on_error``),
        ``data_init`` (candidate -> whether :func:`mixture_init` initialized it),
        ``symmetrized`` (candidate -> whether its final evidence accounts for
        label switching) and ``iwae_restarts`` (candidate -> how many restarts
        the IWAE proposal mixes).

    Raises
    ------
    InputError
        No candidates, bad option values (``lr`` not a finite positive number,
        ...), unknown executor or prior names, or ``vectorize_restarts=True``
        for a candidate that cannot be vectorized.
    RuntimeError
        A candidate failed with ``on_error="raise"``, or every candidate failed.
    """
    from pyrostruct.selection.result import CandidateFailedWarning, SelectionResult

    cands = _normalize_candidates(candidates, grid)
    names = [n for n, _ in cands]
    if len(set(map(repr, names))) != len(names):
        raise InputError("candidate names must be unique")
    steps = _check_int(steps, "steps")
    num_restarts = _check_int(num_restarts, "num_restarts")
    for value, label in [
        (elbo_particles, "elbo_particles"),
        (iwae_particles, "iwae_particles"),
        (iwae_repeats, "iwae_repeats"),
    ]:
        _check_int(value, label)
    if isinstance(evidence, str):
        evidence = (evidence,)
    evidence = tuple(evidence)
    bad = [e for e in evidence if e not in EVIDENCE_METHODS]
    if bad or not evidence:
        raise InputError(f"evidence must be a subset of {list(EVIDENCE_METHODS)}, got {evidence}")
    _check_lr(lr, "lr")
    data_init = {}
    for j, (name, cand) in enumerate(cands):
        if cand.guide is None and cand.guide_factory is None and cand.init is None:
            try:
                init = mixture_init(cand.model, *args, **kwargs)
            except Exception:  # noqa: BLE001 - a model that raises fails later, named
                init = None
            if init is not None:
                cands[j] = (name, dataclasses.replace(cand, init=init))
        data_init[name] = cands[j][1].init is not None and cand.init is None
    for name, cand in cands:
        if cand.lr is not None:
            _check_lr(cand.lr, f"candidate {name!r}: lr")
    if on_error not in ("keep", "raise"):
        raise InputError(f"on_error must be 'keep' or 'raise', got {on_error!r}")
    rungs = sorted({int(round(f * steps)) for f in (halving or ())})
    if any(not 0 < f < 1 for f in (halving or ())):
        raise InputError(f"halving fractions must lie strictly between 0 and 1, got {halving}")
    rungs = [r for r in rungs if 0 < r < steps] + [steps]
    log_prior = _log_prior(prior, names)
    check_executor(executor)
    if vectorize_restarts is not None and not isinstance(vectorize_restarts, bool):
        raise InputError(
            f"vectorize_restarts must be None, True or False, got {vectorize_restarts!r}"
        )

    # which candidates fit their restarts as one vectorized SVI run
    vectorized, not_vectorized, vmap_restarts = set(), {}, set()
    failures: dict[int, dict] = {}  # candidate index -> _failure() record
    if num_restarts > 1 and vectorize_restarts is not False:
        for i, (name, cand) in enumerate(cands):
            try:
                used: list = []
                reason = _not_vectorizable(cand, args, kwargs, num_restarts, vmap_used=used)
                if reason is None and used[0]:
                    vmap_restarts.add(i)
            except InputError:
                raise
            except Exception as e:  # noqa: BLE001 - the model raised: this candidate fails
                _record_failure(failures, _failure(i, None, e), cands, on_error, state=None)
                continue
            if reason is None:
                vectorized.add(i)
            else:
                not_vectorized[name] = reason
        if vectorize_restarts and not_vectorized:
            name, reason = next(iter(not_vectorized.items()))
            raise InputError(
                f"vectorize_restarts=True, but the restarts of candidate {name!r} cannot be "
                f"vectorized: {reason}; pass vectorize_restarts=None to fit them one by one"
            )

    ctx = _Context(
        cands,
        args,
        kwargs,
        steps,
        float(lr),
        int(seed),
        elbo_particles,
        iwae_particles,
        iwae_repeats,
        rung_particles=min(100, elbo_particles),
        num_restarts=num_restarts,
        symmetrize=bool(symmetrize),
        vmap_restarts=frozenset(vmap_restarts),
    )
    tasks = {(i, r): None for i in range(len(cands)) for r in range(num_restarts)}
    state = {key: {"losses": [], "seconds": 0.0, "state": None} for key in tasks}
    alive = {key for key in tasks if key[0] not in failures}
    group_state: dict[int, dict] = {}  # parameters of the vectorized candidates
    dropped_at: dict[int, int] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(cands), desc="candidates", unit="model")
    start = 0
    with executor_session(executor, ctx, max_workers=max_workers) as run:
        # 1. fit every (candidate, restart) rung by rung, dropping clear losers; a task
        # is one candidate with all its restarts (vectorized) or one (candidate, restart)
        for stop in rungs:
            keys = sorted({(i, None) for i, _ in alive if i in vectorized})
            keys += sorted(key for key in alive if key[0] not in vectorized)
            payloads = [
                _payload(i, r, start, stop, False, evidence, group_state.get(i))
                if r is None
                else _payload(i, r, start, stop, False, evidence, state[(i, r)]["state"])
                for i, r in keys
            ]
            for (i, r), out in zip(keys, run(_run_task, payloads)):
                if "failed" in out:
                    _record_failure(failures, out, cands, on_error, state)
                    alive.difference_update([k for k in alive if k[0] == i])
                    continue
                if r is None:
                    group_state[i] = out["state"]
                    for j in range(num_restarts):
                        st = state[(i, j)]
                        st["losses"] += out["losses"][j]
                        st["seconds"] += out["seconds"] / num_restarts
                        st["elbo"], st["elbo_se"] = out["elbo"][j], out["elbo_se"][j]
                        st["rung_elbo"] = st["elbo"]
                        st["enumerated"] = out["enumerated"]
                        st["max_plate_nesting"] = out["max_plate_nesting"]
                    continue
                st = state[(i, r)]
                st["losses"] += out.pop("losses")
                st["seconds"] += out.pop("seconds")
                st.update(out)
                st["rung_elbo"] = st["elbo"]
            start = stop
            if not alive:
                break
            if stop < steps:
                newly = _halve(
                    alive, state, halving_z, halving_margin, dropped_at, stop, steps, vectorized
                )
                if bar is not None and newly:
                    bar.update(newly)
        # 2. the evidence of the best restart of each remaining candidate
        chosen = {}
        for key in sorted(alive):
            if key[0] not in chosen or state[key]["elbo"] > state[chosen[key[0]]]["elbo"]:
                chosen[key[0]] = key
        keys = [chosen[i] for i in sorted(chosen)]
        payloads = [
            _payload(i, r, steps, steps, True, evidence, group_state[i], vectorized=True)
            if i in vectorized
            else _payload(i, r, steps, steps, True, evidence, state[(i, r)]["state"])
            for i, r in keys
        ]
        for payload in payloads:  # the other restarts join the IWAE proposal (_evidence)
            i, r = payload["index"], payload["restart"]
            payload["others"] = [
                (j, None if i in vectorized else state[(i, j)]["state"]["params"],
                 state[(i, j)]["elbo"])
                for j in range(num_restarts)
                if j != r and (i, j) in alive and math.isfinite(state[(i, j)].get("elbo", math.nan))
            ]  # fmt: skip
            payload["own_elbo"] = state[(i, r)]["elbo"]

        def tick(payload, out):
            if bar is not None:
                if "failed" in out:
                    bar.set_postfix_str(f"{cands[payload['index']][0]}: failed")
                else:
                    bar.set_postfix_str(f"{cands[payload['index']][0]}: ELBO {out['elbo']:.4g}")
                bar.update(1)

        for (i, r), out in zip(keys, run(_run_task, payloads, tick)):
            if "failed" in out:
                _record_failure(failures, out, cands, on_error, state)
                alive.difference_update([k for k in alive if k[0] == i])
                continue
            st = state[(i, r)]
            st["seconds"] += out.pop("seconds")
            out.pop("losses")
            st.update(out)
            st["chosen"] = True
        if bar is not None:
            bar.close()

    if len(failures) == len(cands):
        # a bad input of every candidate stays an InputError (the CLI's exit code 2)
        error = InputError if all(f["input_error"] for f in failures.values()) else RuntimeError
        raise error(
            "every candidate failed: "
            + "; ".join(f"{cands[i][0]!r}: {f['failed']}" for i, f in sorted(failures.items()))
        ) from next(iter(failures.values()))["exception"]
    if failures:
        warnings.warn(
            f"{len(failures)} of {len(cands)} candidates failed and were left out of the "
            "posterior model probabilities: "
            + "; ".join(f"{cands[i][0]!r}: {f['failed']}" for i, f in sorted(failures.items()))
            + " (see result.failures; on_error='raise' stops at the first failure)",
            CandidateFailedWarning,
            stacklevel=2,
        )
    total_steps = steps * num_restarts * len(cands)
    run_steps = sum(len(s["losses"]) for s in state.values())
    result = SelectionResult._from_fits(
        cands,
        ctx,
        state,
        alive,
        dropped_at,
        log_prior,
        evidence,
        {cands[i][0]: f["failed"] for i, f in failures.items()},
        savings={
            "steps_full": total_steps,
            "steps_run": run_steps,
            "fraction_saved": 1 - run_steps / total_steps,
        },
    )
    result.vectorized_restarts = {name: i in vectorized for i, (name, _) in enumerate(cands)}
    result.data_init = data_init
    result.iwae_restarts = {
        name: max((state[(i, r)].get("iwae_restarts", 0) for r in range(num_restarts)), default=0)
        for i, (name, _) in enumerate(cands)
    }
    result.symmetrized = {
        name: any(state[(i, r)].get("symmetrized", False) for r in range(num_restarts))
        for i, (name, _) in enumerate(cands)
    }
    result.not_vectorized = not_vectorized
    result.restart_elbos = {
        name: [state[(i, r)].get("rung_elbo", math.nan) for r in range(num_restarts)]
        for i, (name, _) in enumerate(cands)
    }
    if "iwae" in evidence and iwae_particles > 1:
        t = result.table
        low = t[(t.status == "fitted") & (t.ess < ess_warning * iwae_particles)]
        if len(low):
            warnings.warn(
                f"importance-weighted bound: effective sample size below "
                f"{ess_warning:.0%} of {iwae_particles} particles for candidates "
                f"{list(low.candidate)} (ESS {[round(v, 1) for v in low.ess]}); their IWAE "
                "bounds are loose (typical above the true model size)",
                LowESSWarning,
                stacklevel=2,
            )
    return result


def _record_failure(failures: dict, out: dict, cands, on_error: str, state) -> None:
    """Note candidate ``out["index"]``'s failure; with ``on_error="raise"``, raise it."""
    i = out["index"]
    name = cands[i][0]
    if on_error == "raise":
        done = sorted(
            {cands[k[0]][0] for k, st in (state or {}).items() if st.get("losses")} - {name},
            key=repr,
        )
        raise RuntimeError(
            f"select: candidate {name!r} failed: {out['failed']} (on_error='raise'; candidates "
            f"partly or fully fitted before it, now discarded: {done}; pass on_error='keep' to "
            "keep the others)"
        ) from out.get("exception")
    failures.setdefault(i, out)


def _optimistic(st, remaining: int) -> float:
    """The ELBO now plus its recent rate of improvement times the steps left.

    ELBO curves are concave in the long run, so a linear extrapolation of the
    recent trend over-estimates the final ELBO: a candidate still improving fast
    is not dropped for being slow.
    """
    losses = st["losses"]
    w = max(5, len(losses) // 5)
    if len(losses) < 2 * w:
        return math.inf
    slope = (np.mean(losses[-w:]) - np.mean(losses[-2 * w : -w])) / w
    return st["elbo"] + max(0.0, float(slope)) * remaining


def _payload(i, r, start, stop, final, evidence, state, vectorized=None) -> dict:
    return {
        "index": i,
        "restart": r,
        "vectorized": r is None if vectorized is None else vectorized,
        "start": start,
        "stop": stop,
        "final": final,
        "iwae": "iwae" in evidence,
        "state": state,
    }


def _halve(alive, state, z, margin, dropped_at, step, steps, vectorized=()) -> int:
    """Drop restarts and candidates clearly worse than the best; return #candidates dropped.

    The restarts of a ``vectorized`` candidate run in one SVI fit, where a
    restart left out would save next to nothing: they are all kept to the end.
    """

    def worse(a, b):  # a clearly worse than b, even extrapolating a's recent progress
        gap = b["elbo"] - _optimistic(a, steps - step)
        se = math.hypot(a["elbo_se"], b["elbo_se"])
        m = margin if margin is not None else max(10.0, 0.02 * abs(b["elbo"]))
        return gap > z * se + m

    by_cand: dict[int, list] = {}
    for key in alive:
        by_cand.setdefault(key[0], []).append(key)
    best_restart = {}
    for i, keys in by_cand.items():
        best = max(keys, key=lambda k: state[k]["elbo"])
        best_restart[i] = best
        for k in keys:
            if i not in vectorized and k != best and worse(state[k], state[best]):
                alive.discard(k)
    overall = max(best_restart.values(), key=lambda k: state[k]["elbo"])
    count = 0
    for i, k in best_restart.items():
        if worse(state[k], state[overall]):
            for key in by_cand[i]:
                alive.discard(key)
            dropped_at[i] = step
            count += 1
    return count


def _posterior_probs(log_evidence: np.ndarray, log_prior: np.ndarray) -> np.ndarray:
    joint = log_evidence + log_prior
    finite = np.isfinite(joint)
    out = np.full_like(joint, -np.inf)
    if finite.any():
        m = joint[finite].max()
        out[finite] = joint[finite] - (m + np.log(np.exp(joint[finite] - m).sum()))
    return out
