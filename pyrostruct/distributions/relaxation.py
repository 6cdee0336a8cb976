"""Which relaxation for a discrete distribution: :func:`relax_distribution`.

Maps Pyro's ``Bernoulli``, ``Categorical`` and ``OneHotCategorical`` (under
``.to_event()``, ``.mask()`` and ``.expand()`` wrappers) to their Concrete
relaxations (:mod:`pyrostruct.distributions.relaxed`,
:mod:`pyrostruct.distributions.concrete_categorical`); :class:`NoRelaxationError`
for the discrete families without one.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.distributions.torch_distribution import ExpandedDistribution, MaskedDistribution

from pyrostruct._pyro_compat import distribution_mask
from pyrostruct.distributions.concrete_categorical import ConcreteCategorical
from pyrostruct.distributions.estimators import (
    resolve_estimator,
)
from pyrostruct.distributions.relaxed import ConcreteBernoulli, ConcreteOneHotCategorical

__all__ = ["NoRelaxationError", "RELAXED_TYPES", "relax_distribution"]


class NoRelaxationError(NotImplementedError, ValueError):
    """A latent discrete site whose distribution has no Gumbel-softmax relaxation.

    Both a ``NotImplementedError`` (Pyro's convention for unsupported
    distributions) and a ``ValueError`` (pyrostruct's convention for bad input).
    """


#: Distributions that :func:`relax` produces (a site holding one is already relaxed).
RELAXED_TYPES = (ConcreteBernoulli, ConcreteOneHotCategorical, ConcreteCategorical)
#: The discrete distributions :func:`relax_distribution` relaxes.
RELAXABLE = (torch.distributions.Bernoulli, torch.distributions.OneHotCategorical,
             torch.distributions.Categorical)  # fmt: skip


def relax_distribution(
    fn,
    temperature,
    hard: bool = False,
    *,
    site: str | None = None,
    estimator: str | None = None,
    num_rao_samples: int | None = None,
):
    r"""The Concrete relaxation of a discrete distribution ``fn``.

    A discrete :math:`z \sim \mathrm{Cat}(\mathrm{softmax}(\ell))` becomes
    :math:`\mathrm{softmax}((\ell + g)/\tau)`, :math:`g_k \sim \mathrm{Gumbel}(0, 1)`
    (Maddison et al., "The Concrete Distribution", ICLR 2017; Jang et al.,
    "Categorical Reparameterization with Gumbel-Softmax", ICLR 2017):
    ``Bernoulli -> ConcreteBernoulli``, ``OneHotCategorical ->
    ConcreteOneHotCategorical``, ``Categorical -> ConcreteCategorical`` (an
    index-valued straight-through relaxation: the value is the exact index in the
    forward pass, see :class:`~pyrostruct.distributions.ConcreteCategorical`);
    ``Independent`` (``.to_event``), masked and expanded wrappers are kept around
    the relaxed base. Continuous distributions and already relaxed ones are
    returned unchanged.

    ``estimator`` (``hard=True`` is ``"straight-through"``) picks the gradient
    estimator of Bernoulli and OneHotCategorical relaxations; Categorical sites are
    hard either way: ``"gumbel-softmax"`` (or ``None``) gives them
    ``"straight-through"``, the other estimators are passed on.

    :raises NoRelaxationError: (a ``NotImplementedError`` and a ``ValueError``) for a
        discrete distribution without a relaxation (``Poisson``, ``Binomial``, ...);
        the message names ``site``.
    """
    if isinstance(fn, RELAXED_TYPES):
        return fn
    estimator, num_rao_samples = resolve_estimator(
        estimator, hard, num_rao_samples, "relax_distribution"
    )
    kw = {"site": site, "estimator": estimator, "num_rao_samples": num_rao_samples}
    if isinstance(fn, dist.Independent):
        base = relax_distribution(fn.base_dist, temperature, **kw)
        return base if base is fn.base_dist else base.to_event(fn.reinterpreted_batch_ndims)
    if isinstance(fn, MaskedDistribution):
        base = relax_distribution(fn.base_dist, temperature, **kw)
        return base if base is fn.base_dist else base.mask(distribution_mask(fn))
    if isinstance(fn, ExpandedDistribution):
        base = relax_distribution(fn.base_dist, temperature, **kw)
        return base if base is fn.base_dist else base.expand(fn.batch_shape)
    kw = {"estimator": estimator, "num_rao_samples": num_rao_samples}
    if isinstance(fn, torch.distributions.Bernoulli):
        return ConcreteBernoulli(temperature, logits=fn.logits, **kw)
    if isinstance(fn, torch.distributions.OneHotCategorical):
        return ConcreteOneHotCategorical(temperature, logits=fn.logits, **kw)
    if isinstance(fn, torch.distributions.Categorical):
        if estimator == "gumbel-softmax":
            kw["estimator"] = "straight-through"
        return ConcreteCategorical(temperature, logits=fn.logits, **kw)
    if not _is_discrete(fn):
        return fn
    where = f"sample site '{site}'" if site is not None else "this distribution"
    if not getattr(fn, "has_enumerate_support", False):
        raise NoRelaxationError(
            f"relax: {where} has distribution {type(fn).__name__}, which can be neither "
            "enumerated nor relaxed (its support is not finite; Gumbel-softmax relaxes "
            f"Bernoulli, Categorical and OneHotCategorical): exclude it with relax(..., "
            f"exclude=['{site}']) or infer={{'relax': False}} and give it a guide of its own "
            f"(auto_guide(model, overrides={{'{site}': GuideClass}})), or sum it out in the model"
        )
    raise NoRelaxationError(
        f"relax: {where} has distribution {type(fn).__name__}, which has no Gumbel-softmax "
        "relaxation (supported: Bernoulli, Categorical, OneHotCategorical). Exclude the site "
        f"with relax(..., exclude=['{site}']) or infer={{'relax': False}}, and enumerate it "
        "or give it a guide that handles it."
    )


def _is_discrete(fn) -> bool:
    try:
        return bool(fn.support.is_discrete)
    except (NotImplementedError, AttributeError):  # dependent supports, non-distributions
        return False
