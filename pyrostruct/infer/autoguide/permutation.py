"""``AutoPermutation``: a Plackett-Luce variational distribution for permutation sites.

For each latent site whose distribution is
:class:`~pyrostruct.distributions.PlackettLuce`, the guide is a Plackett-Luce
distribution with learnable scores :math:`s \\in \\mathbb{R}^d`:

.. math::

    q(\\pi) = \\prod_{k=1}^{d} \\frac{\\exp s_{\\pi_k}}{\\sum_{m \\ge k} \\exp s_{\\pi_m}} ,

sampled by Gumbel-top-k with straight-through (SoftSort or Gumbel-Sinkhorn)
gradients, so ``Trace_ELBO`` is exact in expectation: both the model's prior
and the guide score the sampled permutation with their exact ``log_prob``.

What this adds to Pyro's autoguides: support for permutation-valued sites
(rankings, seriation, latent orders), which have no bijection to real space.

Reference: R. L. Plackett, "The Analysis of Permutations", 1975; S. Prillo,
J. Eisenschlos, "SoftSort", ICML 2020.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from operator import attrgetter
from typing import NamedTuple

import torch
from pyro.nn.module import PyroModule, PyroParam
from torch.distributions import constraints

from pyrostruct._pyro_compat import deep_setattr
from pyrostruct.distributions.permutation import PlackettLuce
from pyrostruct.distributions.temperature import current_temperature
from pyrostruct.distributions.util import base_distribution
from pyrostruct.infer.autoguide._base import SiteFamilyGuide

__all__ = ["AutoPermutation", "PositionProbs", "is_permutation_site"]


class PositionProbs(NamedTuple):
    """Monte Carlo ``P[k, i]`` = P(item ``i`` at position ``k``) and standard errors."""

    mean: torch.Tensor
    stderr: torch.Tensor


def is_permutation_site(site) -> bool:
    """Whether a trace site is a latent sample site with a ``PlackettLuce`` distribution."""
    return (
        site["type"] == "sample"
        and not site["is_observed"]
        and not site["infer"].get("is_auxiliary", False)
        and isinstance(base_distribution(site["fn"]), PlackettLuce)
    )


class AutoPermutation(SiteFamilyGuide):
    """Autoguide for the ``PlackettLuce`` sample sites of a model.

    :param callable model: a Pyro model whose latent sites are all permutation
        sites (combine with other guides in an ``AutoGuideList``, or use
        :class:`~pyrostruct.infer.autoguide.AutoStructural`, otherwise).
    :param temperature: temperature of the straight-through relaxation, read at
        every call; default 1.0.
    :type temperature: float or TemperatureSchedule
    :param str relaxation: the relaxed permutation matrix that carries the
        gradient, ``"softsort"`` (default) or ``"sinkhorn"``.
    :param dict init_scores: optional, site name -> tensor ``(d,)``: initial
        scores (higher = earlier). Default: ``N(0, init_scale^2)``.
    :param float init_scale: spread of the random initial scores (near-uniform
        over permutations); default 0.01.
    :param callable create_plates: optional, as in Pyro's autoguides.

    Example::

        >>> import pyro, torch
        >>> from pyrostruct.distributions import PlackettLuce
        >>> def model():
        ...     return pyro.sample("rank", PlackettLuce(torch.zeros(4)))
        >>> AutoPermutation(model)()["rank"].shape
        torch.Size([4, 4])
    """

    _site_kind = "permutation"

    def __init__(
        self,
        model,
        *,
        temperature=1.0,
        relaxation: str = "softsort",
        init_scores: Mapping | None = None,
        init_scale: float = 0.01,
        create_plates=None,
    ):
        current_temperature(temperature)  # validates
        if relaxation not in ("softsort", "sinkhorn"):
            raise ValueError(f"relaxation must be 'softsort' or 'sinkhorn', got {relaxation!r}")
        if not (isinstance(init_scale, (int, float)) and init_scale >= 0):
            raise ValueError(f"Expected init_scale >= 0 but got {init_scale!r}")
        self.temperature = temperature
        self.relaxation = relaxation
        self._init_scores = dict(init_scores or {})
        self._init_scale = float(init_scale)
        super().__init__(model, create_plates=create_plates)

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        self.scores = PyroModule()
        self._site_names = []
        for name, site in self.prototype_trace.iter_stochastic_nodes():
            fn = base_distribution(site["fn"])
            if not isinstance(fn, PlackettLuce):
                raise ValueError(
                    f"AutoPermutation cannot guide site {name!r} with distribution "
                    f"{type(fn).__name__}: it handles PlackettLuce sites only. Hide the site "
                    f"with poutine.block(model, hide=[{name!r}]) and guide it with another "
                    "autoguide in an AutoGuideList."
                )
            if site["fn"].batch_shape:
                raise NotImplementedError(
                    f"AutoPermutation: site {name!r} has batch shape "
                    f"{tuple(site['fn'].batch_shape)}; only a single permutation per site "
                    "is supported."
                )
            dtype = fn.scores.dtype
            init = self._init_scores.get(name)
            if init is None:
                init = torch.randn(fn.num_items, dtype=dtype) * self._init_scale
            else:
                init = torch.as_tensor(init, dtype=dtype).detach().clone()
                if init.shape != (fn.num_items,) or not bool(torch.isfinite(init).all()):
                    raise ValueError(
                        f"init_scores[{name!r}] must be {fn.num_items} finite numbers, "
                        f"got shape {tuple(init.shape)}"
                    )
            deep_setattr(self.scores, name, PyroParam(init, constraints.real, 1))
            self._site_names.append(name)
        if not self._site_names:
            raise ValueError("AutoPermutation found no PlackettLuce sample site in the model.")

    def get_distribution(self, name: str, temperature=None) -> PlackettLuce:
        """The variational Plackett-Luce distribution of site ``name``."""
        tau = current_temperature(self.temperature if temperature is None else temperature)
        scores = attrgetter(name)(self.scores)
        return PlackettLuce(scores, temperature=tau, relaxation=self.relaxation)

    @torch.no_grad()
    def median(self, *args, **kwargs):
        """Most probable permutation per site (items by descending score), as matrices."""
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        return {name: self.get_distribution(name).mode for name in self._site_names}

    @torch.no_grad()
    def sample_orders(self, num_samples: int, name: str | None = None) -> torch.Tensor:
        """``num_samples`` orders ``(num_samples, d)`` (item at each position) from the guide."""
        name = self._site(name)
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        return self.get_distribution(name).sample_order((int(num_samples),))

    @torch.no_grad()
    def position_probs(self, name: str | None = None, num_samples: int = 1000) -> PositionProbs:
        """``P[k, i]`` = q(item ``i`` is at position ``k``), Monte Carlo, with standard errors."""
        name = self._site(name)
        if int(num_samples) < 2:
            raise ValueError(f"num_samples must be >= 2, got {num_samples}")
        values = self.get_distribution(name).sample((int(num_samples),))
        stderr = values.std(0) / math.sqrt(values.shape[0])
        return PositionProbs(values.mean(0), stderr)
