"""Small helpers about distributions, shared by handlers and autoguides."""

from __future__ import annotations

import torch
from pyro.distributions.torch_distribution import ExpandedDistribution, MaskedDistribution

__all__ = ["base_distribution", "is_structural"]


def base_distribution(fn):
    """Strip ``Independent``, masked and expanded wrappers off a site distribution."""
    while isinstance(
        fn, (torch.distributions.Independent, MaskedDistribution, ExpandedDistribution)
    ):
        fn = fn.base_dist
    return fn


def is_structural(fn) -> bool:
    """Whether ``fn`` (possibly wrapped) is one of pyrostruct's DAG or permutation distributions.

    They are discrete but bring gradient estimators of their own
    (straight-through or score function), so :func:`pyrostruct.relax` and
    :class:`~pyrostruct.infer.autoguide.AutoGumbelSoftmax` leave them alone.
    The classes mark themselves with the class attribute ``is_structural = True``.
    """
    return bool(getattr(base_distribution(fn), "is_structural", False))
