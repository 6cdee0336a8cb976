"""Every use of a Pyro internal in pyrostruct, in one place.

pyrostruct extends Pyro at points Pyro does not document: it reads the
private state of :class:`~pyro.nn.PyroModule`, of the param store and of
:class:`~pyro.optim.PyroOptim`, reuses helpers of modules that Pyro does not
publish (``pyro.util``, ``pyro.infer.util``, ``pyro.infer.autoguide.utils``,
``pyro.distributions.util``, ``pyro.ops.tensor_utils``, ``pyro.ops.contract``,
``pyro.ops.rings``, ``pyro.infer.enum``, ``pyro.infer.traceenum_elbo``) and
reads keys that Pyro's enumeration writes into sample sites (``_enumerate_dim``,
``_dim_to_id``) and packed tensors (``_pyro_dims``). Any of them may change in
a minor release of Pyro without notice. Keeping them here means that:

* a Pyro upgrade breaks in one module, and ``tests/test_pyro_compat.py``
  (one test per access, each checking the behaviour pyrostruct relies on)
  says which access broke;
* ``pyproject.toml`` bounds ``pyro-ppl`` above by the next minor release that
  has not been tested (``tests/test_package.py`` checks that the bound exists
  and that the installed Pyro meets it). Raising the bound means running that
  test file on the new Pyro first.

Public Pyro API is imported directly everywhere else: names re-exported from
``pyro``, ``pyro.distributions``, ``pyro.infer``, ``pyro.infer.autoguide``,
``pyro.nn``, ``pyro.optim`` and ``pyro.poutine``, and the documented modules
``pyro.poutine.messenger`` (and the other messengers), ``pyro.poutine.runtime``,
``pyro.poutine.util`` and ``pyro.infer.autoguide.initialization``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyro
import torch
from pyro.distributions.util import sum_rightmost
from pyro.infer.autoguide.guides import prototype_hide_fn
from pyro.infer.autoguide.utils import deep_setattr, helpful_support_errors
from pyro.infer.enum import get_importance_trace
from pyro.infer.traceenum_elbo import _compute_model_factors
from pyro.infer.util import torch_item
from pyro.nn import PyroModule
from pyro.nn.module import _make_name, _PyroModuleMeta
from pyro.ops.contract import contract_to_tensor
from pyro.ops.rings import LogRing
from pyro.ops.tensor_utils import periodic_repeat
from pyro.poutine.enum_messenger import EnumMessenger
from pyro.util import get_rng_state, set_rng_state, warn_if_nan

__all__ = [
    # pyro.nn.module: PyroModule's private state
    "PYRO_MODULE_ATTRS",
    "demote_pyro_module",
    "param_name",
    "pyro_module_context",
    "pyro_module_name",
    "pyro_param_constraints",
    "pyro_sample_names",
    "torch_class_of",
    "unconstrained_name",
    # autoguide, distribution, ELBO, param store and PyroOptim private state
    "autonormal_loc_and_scale",
    "distribution_mask",
    "elbo_traces",
    "guide_plates",
    "param_store_name",
    "pyro_optim_states",
    # helpers of unpublished modules, re-exported unchanged
    "contract_to_tensor",
    "deep_setattr",
    "get_importance_trace",
    "get_rng_state",
    "helpful_support_errors",
    "periodic_repeat",
    "prototype_hide_fn",
    "set_rng_state",
    "sum_rightmost",
    "torch_item",
    "warn_if_nan",
    # enumeration internals
    "VmapEnumMessenger",
    "VmapLogRing",
    "align_packed",
    "compute_model_factors",
    "enumerate_dim",
    "packed_dims",
]

# ---------------------------------------------------------------- PyroModule internals

#: Instance attributes that :class:`~pyro.nn.PyroModule` adds to a torch module.
PYRO_MODULE_ATTRS = ("_pyro_name", "_pyro_context", "_pyro_params", "_pyro_samples")


def param_name(prefix: str, name: str) -> str:
    """Full name of attribute ``name`` of the PyroModule named ``prefix``.

    It is the param-store name of a :class:`~pyro.nn.PyroParam` (or torch
    parameter) attribute and the sample-site name of a
    :class:`~pyro.nn.PyroSample` attribute.

    ``"net.0"``, ``"weight"`` -> ``"net.0.weight"``; an empty prefix (the root
    module) gives ``name`` itself. (``pyro.nn.module._make_name``.)
    """
    return _make_name(prefix, name)


def pyro_module_name(module: PyroModule) -> str:
    """Name prefix of ``module``'s params and sample sites (``""`` for a root module)."""
    return module._pyro_name


def pyro_module_context(module: PyroModule):
    """The module's parameter cache, a context manager.

    Within it, every read of a :class:`~pyro.nn.PyroParam` attribute returns the
    same tensor (the param-store entry), so that an in-place edit of
    ``attr.unconstrained()`` changes the parameter that training reads.
    """
    return module._pyro_context


def pyro_sample_names(module: PyroModule) -> list[str]:
    """Names of the module's own :class:`~pyro.nn.PyroSample` attributes."""
    return list(module._pyro_samples)


def pyro_param_constraints(module: PyroModule) -> dict[str, tuple[Any, int | None]]:
    """``{name: (constraint, event_dim)}`` of the module's own PyroParam attributes."""
    return dict(module._pyro_params)


def unconstrained_name(name: str) -> str:
    """Name of the torch parameter that stores PyroParam ``name`` unconstrained."""
    return name + "_unconstrained"


def torch_class_of(module: torch.nn.Module) -> type | None:
    """The torch class ``X`` of a ``PyroModule[X]`` instance, else ``None``.

    ``None`` for plain torch modules, for ``PyroModule()`` and for user
    subclasses of :class:`~pyro.nn.PyroModule` (whose ``forward`` may sample).
    """
    for base, pyro_class in _PyroModuleMeta._pyro_mixin_cache.items():
        if type(module) is pyro_class and base is not torch.nn.Module:
            return base
    return None


def demote_pyro_module(module: PyroModule, torch_class: type) -> None:
    """Turn a ``PyroModule[torch_class]`` instance into a plain ``torch_class`` in place.

    Only the class and PyroModule's own instance attributes change; the torch
    parameters, buffers and submodules stay as they are (the caller replaces
    sampled and constrained attributes first).
    """
    module.__class__ = torch_class
    for attr in PYRO_MODULE_ATTRS:
        module.__dict__.pop(attr, None)


# ---------------------------------------------------------------- autoguides and distributions


def guide_plates(guide, *args, **kwargs) -> dict:
    """``{plate name: plate}`` of an autoguide's model, to enter around a site's sample.

    The guide's own (``create_plates``) plates and the model's vectorized
    plates, built for the model's arguments. (``AutoGuide._create_plates``.)
    """
    return guide._create_plates(*args, **kwargs)


def autonormal_loc_and_scale(guide, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The unconstrained-space loc and scale of site ``name`` of an ``AutoNormal``.

    (``AutoNormal._get_loc_and_scale``; ``AutoSparseSubspace`` has a method of
    the same name and meaning.)
    """
    return guide._get_loc_and_scale(name)


def distribution_mask(fn) -> torch.Tensor | bool:
    """The mask of a :class:`~pyro.distributions.MaskedDistribution` (``fn._mask``)."""
    return fn._mask


# ---------------------------------------------------------------- ELBOs, param store, optimizers


def elbo_traces(elbo, model, guide, args: tuple, kwargs: dict) -> Iterator[tuple]:
    """The ``(model_trace, guide_trace)`` pairs an ELBO scores, with log-probs computed.

    One pair per particle, or a single pair whose sites carry the particles
    along dim ``-elbo.max_plate_nesting`` when ``vectorize_particles=True``.
    Guesses ``elbo.max_plate_nesting`` first when it was not given.
    (``pyro.infer.elbo.ELBO._get_traces``.)
    """
    return elbo._get_traces(model, guide, args, kwargs)


def param_store_name(param: torch.Tensor) -> str | None:
    """Name under which the global param store holds the unconstrained tensor ``param``."""
    return pyro.get_param_store()._param_to_name.get(param)


def pyro_optim_states(optim: pyro.optim.PyroOptim, param: torch.Tensor) -> Iterator[dict]:
    """The torch optimizer state dicts of ``param`` held by a :class:`~pyro.optim.PyroOptim`.

    Yields the live state of the torch optimizer that ``optim`` built for
    ``param`` (once ``param`` has been stepped), and the per-parameter states of
    a state that ``optim.set_state`` loaded but that waits for ``param``'s
    first step. Each is a dict such as Adam's ``{"step", "exp_avg", "exp_avg_sq"}``.
    """
    obj = optim.optim_objs.get(param)
    if obj is not None:
        torch_optim = obj if isinstance(obj, torch.optim.Optimizer) else obj.optimizer
        if param in torch_optim.state:
            yield torch_optim.state[param]
    name = param_store_name(param)
    pending = optim._state_waiting_to_be_consumed.get(name)
    if pending is not None:
        yield from pending.get("state", {}).values()


# ---------------------------------------------------------------- enumeration internals


def enumerate_dim(site: dict) -> int | None:
    """The tensor dim that enumeration gave a sample site (negative), else ``None``."""
    return (site.get("infer") or {}).get("_enumerate_dim")


def packed_dims(tensor) -> str:
    """The dim symbols of a packed log-prob tensor (``Trace.pack_tensors``), ``""`` if none."""
    return getattr(tensor, "_pyro_dims", "")


def compute_model_factors(model_trace, guide_trace):
    """Pyro's split of a packed model trace into marginal costs and factors to contract.

    :returns: ``(marginal_costs, log_factors, ordering, sum_dims, scale)`` as in
        ``pyro.infer.traceenum_elbo._compute_model_factors``: ``marginal_costs``
        maps plate ordinals to log-prob terms that need no contraction,
        ``log_factors`` to the terms of enumerated sites and of the sites
        that depend on them, ``sum_dims`` the enumeration dims to sum out.
    """
    return _compute_model_factors(model_trace, guide_trace)


def align_packed(term, all_dims: str) -> torch.Tensor:
    """A packed tensor permuted and unsqueezed to the (sorted) packed dims ``all_dims``."""
    if not torch.is_tensor(term):
        return torch.as_tensor(term)
    dims = packed_dims(term)
    order = sorted(range(len(dims)), key=lambda i: dims[i])
    if order != list(range(len(dims))):
        term = term.permute(order)
    present = "".join(sorted(dims))
    return term.reshape([term.shape[present.index(d)] if d in present else 1 for d in all_dims])


class VmapEnumMessenger(EnumMessenger):
    """:class:`~pyro.poutine.enum_messenger.EnumMessenger` that runs under :func:`torch.func.vmap`.

    Pyro's messenger reads ``value.data.shape`` after each sample site, which
    ``vmap`` forbids; this reads ``value.shape`` (the same shape) instead.
    It overrides the messenger's private ``_pyro_post_sample`` and fills its
    private ``_value_dims`` from ``_param_dims`` and the site's ``_dim_to_id``.
    """

    def _pyro_post_sample(self, msg) -> None:
        value = msg["value"]
        if value is None or not hasattr(msg["fn"], "event_dim"):
            return
        shape = value.shape[: value.dim() - msg["fn"].event_dim]
        dim_to_id = msg["infer"].setdefault("_dim_to_id", {})
        dim_to_id.update(self._param_dims.get(msg["name"], {}))
        self._value_dims[msg["name"]] = {
            dim: id_ for dim, id_ in dim_to_id.items() if len(shape) >= -dim and shape[dim] > 1
        }


class VmapLogRing(LogRing):
    """:class:`~pyro.ops.rings.LogRing` whose sum-product runs under :func:`torch.func.vmap`.

    Pyro's log-space einsum calls an ``autograd.Function`` without
    ``setup_context``, which ``vmap`` refuses; here the terms are broadcast,
    added and log-sum-exp'd over the summed dims (same result, more memory
    for many-term contractions).
    """

    def sumproduct(self, terms, dims):
        all_dims = "".join(sorted(set("".join(packed_dims(t) for t in terms))))
        total = align_packed(terms[0], all_dims)
        for term in terms[1:]:
            total = total + align_packed(term, all_dims)
        summed = [i for i, d in enumerate(all_dims) if d in dims]
        total = total.logsumexp(summed) if summed else total.clone()
        total._pyro_dims = "".join(d for d in all_dims if d not in dims)
        return total
