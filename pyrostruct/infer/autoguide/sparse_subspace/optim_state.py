"""Per-coordinate optimizer state of the active slots: reset when a slot changes coordinate.

When :meth:`AutoSparseSubspace.replace_coordinates
<pyrostruct.infer.autoguide.sparse_subspace.guide.AutoSparseSubspace.replace_coordinates>`
puts a new coordinate into a slot, the optimizer's per-coordinate state of that
slot (Adam's moments) belongs to the coordinate that left, so it is zeroed;
kept slots keep theirs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyro
import torch

from pyrostruct._pyro_compat import pyro_optim_states

__all__ = ["reset_optimizer_slots"]


def _optimizer_states(optim, param: torch.Tensor) -> Iterator[dict]:
    if optim is None:
        return
    if isinstance(optim, torch.optim.Optimizer):
        if param in optim.state:
            yield optim.state[param]
        return
    if isinstance(optim, pyro.optim.PyroOptim):
        yield from pyro_optim_states(optim, param)
        return
    raise ValueError(
        f"optim must be a pyro.optim.PyroOptim, a torch.optim.Optimizer or None, got "
        f"{type(optim).__name__}"
    )


@torch.no_grad()
def reset_optimizer_slots(optim, params: Iterable[torch.Tensor], slots: torch.Tensor) -> None:
    """Zero the per-coordinate optimizer state (Adam moments) of ``params`` at ``slots``.

    Per-coordinate state tensors are those with the parameter's shape; scalar
    state such as Adam's step count is shared by the slots and left alone.
    """
    for param in params:
        for state in _optimizer_states(optim, param):
            for value in state.values():
                if torch.is_tensor(value) and value.shape == param.shape:
                    value[slots] = 0
