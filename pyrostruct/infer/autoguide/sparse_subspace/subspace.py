"""The arithmetic of a sparse subspace: active-set sizes, index dtypes and removal scores.

Shared by :class:`~pyrostruct.infer.autoguide.sparse_subspace.guide.AutoSparseSubspace`
(which stores the active sets) and
:class:`~pyrostruct.infer.autoguide.sparse_subspace.scheduler.SubspaceScheduler`
(which moves them); it depends on neither.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from pyro.distributions import constraints

__all__ = ["CRITERIA", "active_count", "folded_normal_snr"]

CRITERIA = ("snr", "magnitude", "random")


def active_count(numel: int, density: float) -> int:
    """Number of active coordinates of a site with ``numel`` weights.

    The rule is the same for every site (uniform density per layer):
    ``k = max(1, floor(density * numel))``, i.e. ``density * numel`` rounded down
    (so a guide never has more than ``density`` of a layer's coordinates, except
    that every site keeps at least one).
    """
    # The epsilon keeps e.g. 0.29 * 100 = 28.999999999999996 at 29.
    return int(min(numel, max(1, math.floor(density * numel + 1e-9))))


def _index_dtype(numel: int) -> torch.dtype:
    """Smallest integer dtype that can hold the flat indices ``0 .. numel-1``."""
    if numel <= torch.iinfo(torch.int16).max + 1:
        return torch.int16
    if numel <= torch.iinfo(torch.int32).max + 1:
        return torch.int32
    return torch.int64


def _has_real_support(fn) -> bool:
    support = fn.support
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support is constraints.real


def _check_density(density: Any) -> float:
    if isinstance(density, bool) or not isinstance(density, (int, float)):
        raise ValueError(f"density must be a float in (0, 1], got {density!r}")
    if not 0.0 < density <= 1.0:
        raise ValueError(
            f"density must be in (0, 1], got {density}. It is the fraction of each weight "
            "site's coordinates that carry a Gaussian; use density=1.0 for a dense guide."
        )
    return float(density)


@dataclasses.dataclass
class _WeightSite:
    shape: torch.Size  # full value shape of the site
    numel: int
    active: int
    event_dim: int
    buffer: str  # name of the index buffer


def folded_normal_snr(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """SNR of :math:`|\\theta|` for :math:`\\theta \\sim \\mathcal{N}(\\mu, \\sigma^2)`.

    :math:`E|\\theta| / \\sqrt{Var|\\theta|}` of the folded normal; a function of
    :math:`|\\mu|/\\sigma` alone, increasing in it (about :math:`1.32` at
    :math:`\\mu = 0`, about :math:`|\\mu|/\\sigma` for large ratios).
    """
    r = (loc / scale).abs()
    normal = torch.distributions.Normal(r.new_zeros(()), r.new_ones(()))
    mean = math.sqrt(2 / math.pi) * torch.exp(-0.5 * r * r) + r * (1 - 2 * normal.cdf(-r))
    var = (r * r + 1 - mean * mean).clamp_min(torch.finfo(r.dtype).tiny)
    return mean / var.sqrt()
