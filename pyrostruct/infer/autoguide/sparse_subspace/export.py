"""Export a posterior mean as a plain torch module (PyroModule surgery).

:func:`export_posterior_mean` deep-copies a :class:`~pyro.nn.PyroModule`
model, writes the posterior medians into its sampled attributes and the
param store's values into its parameters, and turns every ``PyroModule[nn.X]``
back into ``nn.X``, so the result runs without Pyro. It reads PyroModule's
private state through :mod:`pyrostruct._pyro_compat`.
"""

from __future__ import annotations

import copy
from operator import attrgetter

import pyro
import torch
from pyro.nn import PyroModule
from torch.distributions import transform_to

from pyrostruct._pyro_compat import (
    demote_pyro_module,
    param_name,
    pyro_module_name,
    pyro_param_constraints,
    pyro_sample_names,
    torch_class_of,
    unconstrained_name,
)

__all__ = ["export_posterior_mean"]


@torch.no_grad()
def export_posterior_mean(
    model: torch.nn.Module, medians: dict[str, torch.Tensor], root: str | None = None
) -> torch.nn.Module:
    """A deterministic copy of ``model`` (or of its submodule ``root``) at ``medians``.

    Every :class:`~pyro.nn.PyroSample` attribute becomes a frozen parameter
    holding ``medians[site name]``, every :class:`~pyro.nn.PyroParam` and
    torch parameter takes its value from the param store (else its own
    value), and every ``PyroModule[nn.X]`` becomes the plain ``nn.X``. The
    result is in eval mode with ``requires_grad=False`` everywhere.

    :param model: the model, a :class:`~pyro.nn.PyroModule`.
    :param dict medians: ``{site name: value}`` of every sampled attribute of
        the exported part, e.g. ``guide.median()``.
    :param str root: attribute path of the part to export (e.g. ``"net"``);
        ``None`` exports the whole model. The part must be built from
        ``PyroModule[nn.X]`` layers: a custom ``PyroModule`` subclass (whose
        ``forward`` may call ``pyro.sample``) cannot be exported.
    :returns: the exported ``torch.nn.Module``.
    :raises ValueError: when ``model`` is not a PyroModule, when the exported
        part contains a custom PyroModule subclass, or when a sampled
        attribute has no entry in ``medians``.
    """
    if not isinstance(model, PyroModule):
        raise ValueError(
            "export_module needs the model to be a PyroModule; got "
            f"{type(model).__name__}. Use guide.median() to get the pruned weights."
        )
    target = model if root is None else attrgetter(root)(model)
    store = pyro.get_param_store()
    exported = copy.deepcopy(target)
    originals = dict(target.named_modules())
    for path, module in list(exported.named_modules()):
        if not isinstance(module, PyroModule):
            continue
        original = originals[path]
        torch_class = torch_class_of(module)
        if torch_class is None:
            raise ValueError(
                f"cannot export {type(module).__name__} at '{path or '<root>'}': only "
                "PyroModule[nn.X] layers become plain torch modules. Pass root='...' "
                "naming the deterministic sub-network (e.g. root='net')."
            )
        prefix = pyro_module_name(original)
        samples = pyro_sample_names(module)
        params = pyro_param_constraints(module)
        own = list(module._parameters)
        demote_pyro_module(module, torch_class)
        for pname in own:
            fullname = param_name(prefix, pname)
            if fullname in store:
                value = store[fullname].detach().clone()
                module._parameters[pname] = torch.nn.Parameter(value, requires_grad=False)
        for pname, (constraint, _) in params.items():
            fullname = param_name(prefix, pname)
            if fullname in store:
                value = store[fullname].detach().clone()
            else:
                unconstrained = module._parameters[unconstrained_name(pname)]
                value = transform_to(constraint)(unconstrained.detach())
            del module._parameters[unconstrained_name(pname)]
            module._parameters[pname] = torch.nn.Parameter(value, requires_grad=False)
        for sname in samples:
            fullname = param_name(prefix, sname)
            if fullname not in medians:
                raise ValueError(
                    f"cannot export: sampled attribute '{fullname}' has no posterior in "
                    "this guide (was it hidden from the guide?)"
                )
            value = medians[fullname].clone()
            module._parameters[sname] = torch.nn.Parameter(value, requires_grad=False)
    for p in exported.parameters():
        p.requires_grad_(False)
    return exported.eval()
