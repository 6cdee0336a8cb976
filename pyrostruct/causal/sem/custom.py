"""A SEM from a user's log-density function."""

from __future__ import annotations

import pyro
from pyro.nn import PyroModule
from torch import nn

from pyrostruct._pyro_compat import pyro_module_name
from pyrostruct.causal.sem.base import StructuralEquationModel
from pyrostruct.errors import InputError

__all__ = ["CustomSEM"]


class CustomSEM(StructuralEquationModel):
    """A user likelihood from a function ``fn(data, adjacency) -> (*B, n, d)`` log densities.

    Parameters the function needs can be Pyro params (``pyro.param``) or the
    parameters of ``module``, which is registered so that they are trained.
    """

    def __init__(self, num_nodes: int, fn, module: nn.Module | None = None):
        super().__init__(num_nodes)
        if not callable(fn):
            raise InputError("CustomSEM needs a callable fn(data, adjacency)")
        self.fn = fn
        self.module = module

    def register_params(self) -> None:
        super().register_params()
        if self.module is not None and not isinstance(self.module, PyroModule):
            pyro.module(f"{pyro_module_name(self) or 'sem'}.module", self.module)

    def node_log_prob(self, data, adjacency):
        self.register_params()
        out = self.fn(data, adjacency)
        expected = adjacency.shape[:-2] + data.shape
        if out.shape != expected:
            raise InputError(
                f"custom SEM returned shape {tuple(out.shape)}, expected {tuple(expected)} "
                "(adjacency batch + (rows, nodes))"
            )
        return out
