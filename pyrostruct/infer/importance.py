"""Log importance weights ``log p(x, z_s) - log q(z_s)`` of a Pyro model and guide.

.. math::

    \\log w_s = \\log p(x, z_s) - \\log q(z_s), \\qquad z_s \\sim q,

where discrete model sites marked for enumeration (``infer={"enumerate":
"parallel"}``, :func:`pyro.infer.config_enumerate`) are summed out exactly
(tensor variable elimination, as :class:`~pyro.infer.TraceEnum_ELBO` does), so
that ``p(x, z_s)`` is the joint of the data and the guide's (continuous) sites.
The estimators of :mod:`pyrostruct.infer.evidence`, the SMC sampler of
:mod:`pyrostruct.infer.smc` and the vectorized restarts of
:mod:`pyrostruct.selection.restarts` all use this one computation.

Particles are vectorized in chunks of ``max_batch``, in the first of three
ways that works for the model:

1. an outer :class:`pyro.plate` of particles (as ``vectorize_particles=True``
   does in Pyro's ELBOs), when the model broadcasts over an extra batch
   dimension (checked: particle 0 of a vectorized run must give the same log
   weight as a plain run on the same values);
2. :func:`torch.func.vmap` over particles, for models that run correctly one
   particle at a time but not with an extra batch dim on their latents, such
   as the common ``locs[z]`` indexing of an enumerated mixture (plain indexing
   acts on the leftmost dim, which a particle plate would occupy). Under
   ``vmap`` each particle sees unbatched values, so any per-particle model
   code is computed exactly; Pyro's enumeration and tensor contraction run
   through vmap-safe twins (:class:`VmapEnumMessenger`, :class:`VmapLogRing`);
3. a Python loop over particles, with one :class:`VectorizationWarning` that
   says why (``vectorize=False`` forces the loop, without warning).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.enum_messenger import EnumMessenger
from pyro.poutine.util import site_is_subsample

from pyrostruct._pyro_compat import (
    VmapEnumMessenger,
    VmapLogRing,
    compute_model_factors,
    contract_to_tensor,
    get_importance_trace,
    get_rng_state,
    packed_dims,
    set_rng_state,
)
from pyrostruct.distributions._dag_ops import attach_order, get_order

__all__ = ["VectorizationWarning", "log_importance_weights", "vectorization_method"]

_PARTICLES = "_pyrostruct_particles"


class VectorizationWarning(UserWarning):
    """Particles could not be vectorized; they are computed one by one (slow)."""


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _guess_max_plate_nesting(model, guide, args, kwargs) -> int:
    """The number of plate dims the model and guide use (one unbatched run of each)."""
    with poutine.block(), torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
    dims = [
        -frame.dim
        for tr in (guide_trace, model_trace)
        for site in tr.nodes.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
        if frame.vectorized and frame.dim is not None
    ]
    return max(dims, default=0)


def _keep_dims(term, keep: tuple, shape: tuple) -> torch.Tensor:
    """Sum a packed log-prob tensor over every dim but the plate symbols ``keep``, in that order.

    A term constant along a kept plate counts once for every index of it (it is
    expanded to ``shape``).
    """
    if not torch.is_tensor(term):
        term = torch.as_tensor(term)
    dims = packed_dims(term)
    present = [s for s in dims if s in keep]
    other = [i for i, s in enumerate(dims) if s not in keep]
    if other:
        term = term.sum(other)
    for s in keep:
        if s not in present:
            term = term.unsqueeze(-1)
            present.append(s)
    term = term.permute([present.index(s) for s in keep]) if len(keep) > 1 else term
    return term.expand(shape)


def _log_weights_once(
    model,
    guide,
    args,
    kwargs,
    max_plate_nesting,
    num_particles,
    trace=None,
    vmap_safe=False,
    detach=True,
    split_sites=None,
    keep_plates=None,
):
    """One run of guide and model; returns log weights of shape (num_particles,) or ().

    ``keep_plates`` (``{plate name: size}``, plates the model and guide already
    run in, counted in ``max_plate_nesting``) are kept as trailing dims of the
    result, which is then of shape ``(num_particles, *sizes)`` (restarts fitted
    in one batch, :mod:`pyrostruct.selection.restarts`). ``vmap_safe`` uses the
    enumeration messenger and contraction ring that run under
    :func:`torch.func.vmap`; ``detach=False`` keeps the autograd graph.
    With ``split_sites`` (model site names), returns ``(log_weights, part)``
    where ``part`` is the model's log density at those sites alone, of the same
    shape (the sites must not depend on enumerated ones).
    """
    vectorized = num_particles is not None
    nesting = max_plate_nesting + (1 if vectorized else 0)
    if vectorized:

        def wrap(fn):
            def wrapped(*a, **k):
                with pyro.plate(_PARTICLES, num_particles, dim=-nesting):
                    return fn(*a, **k)

            return wrapped

        model, guide = wrap(model), wrap(guide)
    enum = VmapEnumMessenger if vmap_safe else EnumMessenger
    guide = enum(first_available_dim=-1 - nesting)(guide)
    model = enum()(model)  # continues the enumeration dims after the guide's
    model_trace, guide_trace = get_importance_trace("flat", nesting, model, guide, args, kwargs)
    if trace is not None:
        trace.append(guide_trace)
    guide_trace.pack_tensors()
    model_trace.pack_tensors(guide_trace.plate_to_symbol)
    symbols = model_trace.plate_to_symbol
    kept = {**({_PARTICLES: num_particles} if vectorized else {}), **(keep_plates or {})}
    keep = tuple(symbols[name] for name in kept)
    shape = tuple(kept.values())
    marginal_costs, log_factors, _, sum_dims, scale = compute_model_factors(
        model_trace, guide_trace
    )
    total = torch.zeros(shape)
    for terms in marginal_costs.values():
        for term in terms:
            total = total + _keep_dims(term, keep, shape)
    if log_factors:
        target = frozenset(keep)
        # contract_to_tensor needs every factor's ordinal to contain the target ordinal
        tree = OrderedDict((t | target, terms) for t, terms in log_factors.items())
        ring = VmapLogRing() if vmap_safe else None
        contracted = contract_to_tensor(tree, sum_dims, target_ordinal=target, ring=ring)
        total = total + scale * _keep_dims(contracted, keep, shape)
    for site in guide_trace.nodes.values():
        if site["type"] == "sample":
            total = total - _keep_dims(site["packed"]["log_prob"], keep, shape)
    if split_sites is not None:
        part = torch.zeros(shape)
        for name in split_sites:
            part = part + _keep_dims(model_trace.nodes[name]["packed"]["log_prob"], keep, shape)
        return (total.detach(), part.detach()) if detach else (total, part)
    return total.detach() if detach else total


def _guide_draws(guide, args, kwargs, max_plate_nesting, num_particles):
    """``num_particles`` guide draws: a plain template trace and ``{site: (P, *shape)}`` values.

    The guide runs once inside an outer particle plate when its values then
    carry the particle dim in front of their plain shape (Pyro's autoguides
    do), else once per particle.
    """
    rng = get_rng_state()
    template = poutine.trace(guide).get_trace(*args, **kwargs)  # shapes only: same draws after
    set_rng_state(rng)
    names = [
        n
        for n, site in template.nodes.items()
        if site["type"] == "sample" and not site_is_subsample(site)  # plates redo those
    ]
    try:
        with pyro.plate(_PARTICLES, num_particles, dim=-(max_plate_nesting + 1)):
            batched = poutine.trace(guide).get_trace(*args, **kwargs)
        values = {}
        for name in names:
            value, shape = batched.nodes[name]["value"], template.nodes[name]["value"].shape
            if value.shape[0] != num_particles or value.numel() != num_particles * shape.numel():
                raise ValueError(f"site {name!r} does not carry the particle dim")
            values[name] = value.reshape(num_particles, *shape)
    except _VECTORIZE_ERRORS:
        draws = [poutine.trace(guide).get_trace(*args, **kwargs) for _ in range(num_particles)]
        values = {n: torch.stack([tr.nodes[n]["value"] for tr in draws]) for n in names}
    return template, values


def _is_delta(fn) -> bool:
    while isinstance(fn, (dist.Independent, dist.MaskedDistribution)):
        fn = fn.base_dist
    return isinstance(fn, dist.Delta)


def _vmap_log_weights(
    model, guide, args, kwargs, max_plate_nesting, num_particles, with_draws=False
):
    """Log weights of ``num_particles`` particles: guide draws, then model and guide densities
    computed per particle under :func:`torch.func.vmap`.

    Each particle replays the guide on its own values and runs the model as in
    a plain (unbatched) run, so the model code needs no batch-awareness.
    Distribution validation is switched off inside (its data-dependent checks
    cannot run under ``vmap``).
    """
    template, draws = _guide_draws(guide, args, kwargs, max_plate_nesting, num_particles)
    values = dict(draws)
    # Delta sites (an autoguide's constrained values) are recomputed from their
    # parents, not replayed: a replayed value that differs from the recomputed
    # one in the last bit would have log density -inf
    values = {n: v for n, v in values.items() if not _is_delta(template.nodes[n]["fn"])}

    values[_PARTICLES] = torch.arange(num_particles)  # something to map over if nothing else

    def one(vals):
        trace = poutine.Trace()
        for name, value in vals.items():
            if name != _PARTICLES:
                trace.add_node(name, **dict(template.nodes[name], value=value))
        replayed = poutine.replay(guide, trace=trace)
        return _log_weights_once(
            model, replayed, args, kwargs, max_plate_nesting, None, vmap_safe=True
        )

    with pyro.validation_enabled(False):
        lw = torch.func.vmap(one, randomness="error")(values)
    return (lw, draws) if with_draws else lw


def _first_particle(value: torch.Tensor, pos: int, event_dim: int) -> torch.Tensor:
    """Particle 0 of a value, without the size-1 dims of plates its site is not in; a
    DAG sample keeps its order (the densities of order-carrying samples need it)."""
    order = get_order(value)
    value = value.select(pos, 0)
    order = None if order is None else order.select(pos, 0)
    while value.dim() > event_dim and value.shape[0] == 1:
        value = value[0]
        order = None if order is None else order[0]
    return value if order is None else attach_order(value, order)


def _vectorization_ok(model, guide, args, kwargs, max_plate_nesting) -> bool:
    """Whether a model gives the same log weight with and without the particle plate.

    A model that indexes a latent tensor with plain ``[...]`` instead of
    :class:`~pyro.ops.indexing.Vindex` may run with an extra batch dimension and
    silently compute the wrong thing; this check replays particle 0 of a
    vectorized run without the plate and compares.
    """
    traces = []
    try:
        with poutine.block():
            lw = _log_weights_once(model, guide, args, kwargs, max_plate_nesting, 2, traces)
    except (ValueError, RuntimeError, IndexError, NotImplementedError, TypeError):
        return False
    if lw.shape != (2,):
        return False
    nesting = max_plate_nesting + 1
    first = poutine.Trace()
    for name, site in traces[0].nodes.items():
        if site["type"] != "sample" or site["is_observed"]:
            continue
        value, event_dim = site["value"], site["fn"].event_dim
        pos = value.dim() - event_dim - nesting
        if pos < 0 or value.shape[pos] != 2:
            return False
        first.add_node(name, **dict(site, value=_first_particle(value, pos, event_dim)))
    try:
        with poutine.block():
            single = _log_weights_once(
                model, poutine.replay(guide, trace=first), args, kwargs, max_plate_nesting, None
            )
    except (ValueError, RuntimeError, IndexError, NotImplementedError, TypeError):
        return False
    if not (torch.isfinite(lw[0]) and torch.isfinite(single)):
        return bool(torch.isfinite(lw[0]) == torch.isfinite(single))
    return bool(torch.isclose(lw[0], single, rtol=1e-4, atol=1e-3 * (1 + abs(float(single)))))


@torch.no_grad()
def log_importance_weights(
    model: Callable,
    guide: Callable,
    *args,
    num_particles: int = 1000,
    max_plate_nesting: int | None = None,
    vectorize: bool = True,
    max_batch: int = 500,
    guide_correction: Callable | None = None,
    return_draws: bool = False,
    **kwargs,
):
    """Per-particle ``log p(x, z_s) - log q(z_s)`` with ``z_s ~ guide``, shape ``(num_particles,)``.

    Enumerated discrete model sites are summed out exactly (tensor variable
    elimination, as in :class:`~pyro.infer.TraceEnum_ELBO`): with a guide over
    the continuous sites ``z`` only, ``log p(x, z_s) = log sum_y p(x, y, z_s)``.
    Particles are vectorized in chunks of ``max_batch`` with an outer particle
    plate when the model broadcasts over it, else with :func:`torch.func.vmap`
    (see the module docstring); when neither runs, a loop over particles with
    one :class:`VectorizationWarning` naming the reason. ``vectorize=False``
    forces the loop.

    ``guide_correction(draws)``, given the guide's values ``{site: (S, *shape)}``
    of ``S`` particles, returns ``log q'(z_s) - log q(z_s)`` (shape ``(S,)``) for
    a proposal ``q'`` that replaces the guide's density, e.g. the guide
    symmetrized over the label permutations of a mixture
    (:func:`pyrostruct.selection.select.label_symmetry`); it is subtracted from
    the log weights. ``return_draws=True`` returns ``(log_weights, draws)`` with
    those values ``{site: (num_particles, *shape)}``, for weighted posterior
    summaries.
    """
    _check_positive_int(num_particles, "num_particles")
    _check_positive_int(max_batch, "max_batch")
    if max_plate_nesting is None:
        max_plate_nesting = _guess_max_plate_nesting(model, guide, args, kwargs)
    method = (
        vectorization_method(model, guide, *args, max_plate_nesting=max_plate_nesting, **kwargs)
        if vectorize
        else ("loop", "vectorize=False")
    )
    if method[0] == "loop" and vectorize:
        warnings.warn(
            f"log importance weights: particles cannot be vectorized ({method[1]}); computing "
            f"{num_particles} particles one by one, which is slow",
            VectorizationWarning,
            stacklevel=2,
        )
    shapes = None
    if guide_correction is not None or return_draws:
        rng = get_rng_state()
        with poutine.block():
            template = poutine.trace(guide).get_trace(*args, **kwargs)
        set_rng_state(rng)
        shapes = {n: s["value"].shape for n, s in template.nodes.items() if s["type"] == "sample"}
    chunks, done, kept = [], 0, []
    while done < num_particles:
        size = min(max_batch, num_particles - done) if method[0] != "loop" else 1
        traces = [] if shapes is not None else None
        if method[0] == "plate":
            lw = _log_weights_once(model, guide, args, kwargs, max_plate_nesting, size, traces)
        elif method[0] == "vmap":
            lw, draws = _vmap_log_weights(
                model, guide, args, kwargs, max_plate_nesting, size, with_draws=True
            )
        else:
            lw = _log_weights_once(model, guide, args, kwargs, max_plate_nesting, None, traces)
        lw = lw.reshape(size)
        if shapes is not None:
            if method[0] != "vmap":
                draws = {
                    n: _flat_draws(traces[0].nodes[n]["value"], size, shape)
                    for n, shape in shapes.items()
                    if n in traces[0].nodes
                }
            if guide_correction is not None:
                lw = lw - guide_correction(draws).reshape(size)
            kept.append(draws)
        chunks.append(lw)
        done += size
    if return_draws:
        names = kept[0].keys()
        return torch.cat(chunks), {n: _cat_draws([d[n] for d in kept]) for n in names}
    return torch.cat(chunks)


def _flat_draws(value: torch.Tensor, size: int, shape) -> torch.Tensor:
    """A site's values as ``(size, *shape)``; a DAG sample keeps its attached order
    (``(size, *shape[:-1])``), which the joint density of ``(order, A)`` needs."""
    order = get_order(value)
    value = value.reshape(size, *shape)
    return value if order is None else attach_order(value, order.reshape(size, *shape[:-1]))


def _cat_draws(values: list) -> torch.Tensor:
    """``torch.cat`` of chunks of draws, keeping the orders when every chunk has one."""
    orders = [get_order(v) for v in values]
    out = torch.cat(values)
    return out if any(o is None for o in orders) else attach_order(out, torch.cat(orders))


_VECTORIZE_ERRORS = (ValueError, RuntimeError, IndexError, NotImplementedError, TypeError)


@torch.no_grad()
def vectorization_method(
    model: Callable, guide: Callable, *args, max_plate_nesting: int | None = None, **kwargs
) -> tuple[str, str]:
    """How :func:`log_importance_weights` vectorizes particles for this model and guide.

    Returns ``(method, reason)`` with ``method`` one of ``"plate"`` (an outer
    particle plate), ``"vmap"`` (:func:`torch.func.vmap`) or ``"loop"``, and
    ``reason`` saying why the faster methods were not used (``""`` for
    ``"plate"``). Each is tried on two particles; the random number state is
    restored afterwards.
    """
    if max_plate_nesting is None:
        max_plate_nesting = _guess_max_plate_nesting(model, guide, args, kwargs)
    rng = get_rng_state()
    try:
        with poutine.block():
            if _vectorization_ok(model, guide, args, kwargs, max_plate_nesting):
                return "plate", ""
            try:
                lw = _vmap_log_weights(model, guide, args, kwargs, max_plate_nesting, 2)
            except _VECTORIZE_ERRORS as e:
                return "loop", (
                    "the model does not broadcast over a particle plate, and vmap failed: "
                    f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                )
            if lw.shape != (2,):
                return "loop", f"vmap gave log weights of shape {tuple(lw.shape)}, not (2,)"
            return "vmap", "the model does not broadcast over a particle plate"
    finally:
        set_rng_state(rng)
