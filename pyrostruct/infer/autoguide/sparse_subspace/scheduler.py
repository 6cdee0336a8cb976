"""The removal-and-addition schedule of a sparse subspace: :class:`SubspaceScheduler`.

It wraps the step function of an ordinary ``SVI`` loop: on an update step it
captures the gradient with respect to the dense weight tensors, then asks the
guide to replace the lowest-scoring active coordinates by the inactive ones
with the largest gradient (Li et al., ICLR 2024, Algorithm 1).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import pyro
import torch

from pyrostruct.infer.autoguide.sparse_subspace.guide import AutoSparseSubspace
from pyrostruct.infer.autoguide.sparse_subspace.subspace import CRITERIA

__all__ = ["SubspaceScheduler", "SubspaceUpdate"]


@dataclasses.dataclass
class SubspaceUpdate:
    """What one subspace update did to one site (flat indices)."""

    step: int
    site: str
    removed: torch.Tensor
    added: torch.Tensor
    fraction: float


class SubspaceScheduler:
    """Removal-and-addition updates of an :class:`AutoSparseSubspace`'s active sets.

    Every ``update_every`` SVI steps while ``step <= update_until * num_steps``,
    each weight site of :math:`k` active coordinates loses
    :math:`\\lfloor r_t k \\rfloor` of them, those with the lowest
    ``criterion`` score, where

    .. math:: r_t = r_0 \\tfrac12 \\bigl(1 + \\cos(\\pi t / (u T))\\bigr),

    (:math:`r_0` = ``removal_fraction``, :math:`u` = ``update_until``,
    :math:`T` = ``num_steps``), and gains as many of the coordinates that were
    inactive, those with the largest :math:`|\\partial \\text{ELBO}/\\partial
    \\mu_j|`, measured on the SVI step that triggers the update. The counts
    stay exact; new coordinates start at mean 0 and the site's mean scale, and
    the optimizer state of the replaced slots is reset (kept coordinates keep
    their Adam moments). Li et al., ICLR 2024, Algorithm 1.

    Usage with a plain loop::

        scheduler = SubspaceScheduler(guide, optim, num_steps=n)
        for _ in range(n):
            loss = scheduler.step(svi.step, x, y)

    :param AutoSparseSubspace guide: the guide to update.
    :param optim: the optimizer given to ``SVI`` (``pyro.optim.PyroOptim``), a
        ``torch.optim.Optimizer``, or ``None`` (no optimizer state to remap).
    :param int num_steps: total number of training steps planned.
    :param int update_every: steps between updates.
    :param float update_until: fraction of ``num_steps`` after which the
        subspace is frozen, in [0, 1].
    :param float removal_fraction: initial fraction removed, in [0, 1].
    :param str criterion: ``"snr"`` (default), ``"magnitude"`` or ``"random"``.
    :param int seed: seed of the ``"random"`` criterion (default: torch's
        global generator).
    """

    def __init__(
        self,
        guide: AutoSparseSubspace,
        optim=None,
        *,
        num_steps: int,
        update_every: int = 100,
        update_until: float = 0.75,
        removal_fraction: float = 0.3,
        criterion: str = "snr",
        seed: int | None = None,
    ) -> None:
        if not isinstance(guide, AutoSparseSubspace):
            raise ValueError(f"guide must be an AutoSparseSubspace, got {type(guide).__name__}")
        optim_types = (pyro.optim.PyroOptim, torch.optim.Optimizer)
        if optim is not None and not isinstance(optim, optim_types):
            raise ValueError(
                "optim must be the pyro.optim optimizer given to SVI, a torch.optim.Optimizer, "
                f"or None; got {type(optim).__name__}"
            )
        for label, value in (("num_steps", num_steps), ("update_every", update_every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be a positive integer, got {value!r}")
        fractions = (("update_until", update_until), ("removal_fraction", removal_fraction))
        for label, value in fractions:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{label} must be a float in [0, 1], got {value!r}")
            if not 0.0 <= value <= 1.0:
                raise ValueError(
                    f"{label} must be in [0, 1], got {value}"
                    + (
                        " (it is a fraction of num_steps, not a step count)"
                        if label == "update_until"
                        else " (it is the fraction of active coordinates replaced at first)"
                    )
                )
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
        self.guide = guide
        self.optim = optim
        self.num_steps = num_steps
        self.update_every = update_every
        self.update_until = float(update_until)
        self.removal_fraction = float(removal_fraction)
        self.criterion = criterion
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)
        self.step_count = 0
        self.history: list[SubspaceUpdate] = []

    def fraction_at(self, step: int) -> float:
        """Cosine-decayed removal fraction at (1-based) ``step``."""
        horizon = self.update_until * self.num_steps
        if horizon <= 0 or step > horizon:
            return 0.0
        return self.removal_fraction * 0.5 * (1.0 + math.cos(math.pi * step / horizon))

    def is_update_step(self, step: int) -> bool:
        """Whether the (1-based) ``step`` ends with a subspace update."""
        return step % self.update_every == 0 and step <= self.update_until * self.num_steps

    def step(self, svi_step: Callable[..., Any], *args, **kwargs) -> Any:
        """Run one training step ``svi_step(*args, **kwargs)``, then update if due.

        Returns what ``svi_step`` returns (the loss for ``SVI.step``).
        """
        self.step_count += 1
        if not self.is_update_step(self.step_count):
            return svi_step(*args, **kwargs)
        with self.guide.capture_gradients() as grads:
            loss = svi_step(*args, **kwargs)
        self.update(grads)
        return loss

    @torch.no_grad()
    def update(self, gradients: dict[str, torch.Tensor]) -> list[SubspaceUpdate]:
        """Remove-and-add on every weight site, using ``gradients`` for the additions.

        ``gradients`` maps each weight site to the flat gradient of the loss
        with respect to its dense weight tensor, as captured by
        :meth:`AutoSparseSubspace.capture_gradients`.
        """
        guide = self.guide
        guide._require_setup()
        fraction = self.fraction_at(max(self.step_count, 1))
        updates = []
        for name, meta in guide._weight_sites.items():
            num = min(int(fraction * meta.active), meta.numel - meta.active)
            if num <= 0:
                continue
            if name not in gradients:
                raise RuntimeError(
                    f"no gradient captured for weight site '{name}': run the SVI step inside "
                    "guide.capture_gradients() (SubspaceScheduler.step does this)"
                )
            scores = guide.removal_scores(name, self.criterion, generator=self.generator)
            slots = torch.topk(scores, num, largest=False, sorted=False).indices
            index = guide._index(name).long()
            removed = index[slots].clone()
            grow = gradients[name].detach().abs().reshape(-1).clone()
            grow[index] = -math.inf
            added = torch.topk(grow, num, largest=True, sorted=False).indices
            guide.replace_coordinates(name, slots, added, self.optim)
            update = SubspaceUpdate(self.step_count, name, removed, added, fraction)
            updates.append(update)
        self.history.extend(updates)
        return updates
