"""A Pyro model as the target of a tempered SMC sampler (:mod:`pyrostruct.infer.smc`).

Its continuous latent sites, mapped to one unconstrained vector per particle by
``biject_to(site.fn.support)`` (:class:`_Latents`); the log prior (with the
log-Jacobian) and the log likelihood of a batch of particles, with discrete
sites marked for enumeration summed out exactly (:func:`_prior_and_likelihood`,
vectorized by a particle plate or by :func:`torch.func.vmap`, whichever
:func:`_choose_method` finds exact); and draws from the prior (:func:`_draw_prior`).
"""

from __future__ import annotations

import math

import pyro
import torch
from pyro import poutine
from pyro.poutine.enum_messenger import EnumMessenger
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch.distributions import biject_to

from pyrostruct._pyro_compat import get_rng_state, set_rng_state
from pyrostruct.errors import InputError
from pyrostruct.infer.importance import (
    _PARTICLES,
    _VECTORIZE_ERRORS,
    _log_weights_once,
)


def _no_guide(*args, **kwargs) -> None:
    return None


class _Latents:
    """The continuous latent sites of a model and their maps to unconstrained space."""

    def __init__(self, model, args, kwargs, max_plate_nesting):
        with poutine.block(), torch.no_grad():
            trace = poutine.trace(model).get_trace(*args, **kwargs)
        self.names, self.shapes, self.event_dims, self.transforms = [], {}, {}, {}
        self.enumerated = []
        self.num_observed = sum(  # observed values, for smc_affordable's size rule
            site["value"].numel()
            for site in trace.nodes.values()
            if site["type"] == "sample" and site["is_observed"]
        )
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
    """Whether two vectors of log densities agree, each on its own scale (infinities must
    match exactly): a tolerance scaled by the largest of them let a draw with a log density
    of -1e5 hide another draw's 8-nat error."""
    finite = torch.isfinite(a) & torch.isfinite(b)
    if not torch.equal(finite, torch.isfinite(a)) or not torch.equal(a[~finite], b[~finite]):
        return False
    return bool(torch.isclose(a[finite], b[finite], rtol=1e-4, atol=1e-3).all())


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


def _log_joint_fn(model, args, kwargs, latents, max_plate_nesting):
    """``u (D,) -> log p(x, u)`` (unconstrained, log-Jacobian included, enumerated sites
    summed out), differentiable: for a Laplace approximation at one point."""

    def log_joint(u):
        values, log_det = latents.constrain(u[None])
        data = {name: value[0] for name, value in values.items()}
        conditioned = poutine.condition(model, data=data)
        with poutine.block():
            lw = _log_weights_once(
                conditioned, _no_guide, args, kwargs, max_plate_nesting, None, detach=False
            )
        return lw + log_det[0]

    return log_joint
