"""Restarts of one candidate fitted as one SVI run, batched along an extra outermost plate.

Restarts share no parameter and Adam's update is elementwise, so a sum of the
restarts' losses trained at once follows each restart's own path. Models that
broadcast over an extra batch dim run in a restart plate; models that index
latents with plain ``[...]`` (``locs[z]``) run each restart under
:func:`torch.func.vmap`. :func:`_not_vectorizable` says, by a trial run, which
of the two works, or why neither does.
"""

from __future__ import annotations

import warnings

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import config_enumerate
from pyro.infer.autoguide import AutoNormal
from pyro.infer.autoguide.initialization import (
    init_to_feasible,
    init_to_uniform,
)
from pyro.poutine.util import site_is_subsample

from pyrostruct._pyro_compat import (
    get_rng_state,
    set_rng_state,
)
from pyrostruct.errors import InputError
from pyrostruct.infer.engine import param_scope
from pyrostruct.infer.importance import _vectorization_ok
from pyrostruct.selection.candidates import (
    Candidate,
    _build,
    _discrete_sites,
    _is_enumerated,
    _max_plate_nesting,
)

_RESTARTS = "_pyrostruct_restarts"


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
    gradient SVI follows. The computation is :mod:`pyrostruct.infer.evidence`'s,
    with the restart plate kept.
    """
    from pyrostruct.infer.importance import _log_weights_once

    return _log_weights_once(
        model,
        guide,
        args,
        kwargs,
        max_plate_nesting + 1,
        num_particles,
        detach=detach,
        keep_plates={_RESTARTS: num_restarts},
    )


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
    from pyrostruct.infer.importance import _log_weights_once

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
    rng_state = get_rng_state()
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
        set_rng_state(rng_state)
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
