"""Mean-field Gumbel-softmax autoguide for the discrete latent sites of a Pyro model.

:class:`AutoGumbelSoftmax` gives each latent ``Bernoulli`` / ``Categorical`` /
``OneHotCategorical`` site an independent relaxed (Concrete) posterior with
learnable logits; :func:`auto_discrete_continuous_guide` combines it with an
:class:`~pyro.infer.autoguide.AutoNormal` for the remaining sites in one call.
Train with ``SVI(relax(model), guide, optim, Trace_ELBO())``.
"""

from __future__ import annotations

import math
from operator import attrgetter
from typing import Any

import pyro.poutine as poutine
import torch
from pyro.infer.autoguide import AutoGuideList, AutoNormal
from pyro.nn.module import PyroModule, PyroParam
from pyro.poutine.util import site_is_subsample
from torch.distributions import constraints

from pyrostruct._pyro_compat import deep_setattr, periodic_repeat, prototype_hide_fn
from pyrostruct.distributions.concrete_categorical import ConcreteCategorical
from pyrostruct.distributions.estimators import resolve_estimator
from pyrostruct.distributions.relaxation import RELAXED_TYPES, NoRelaxationError, _is_discrete
from pyrostruct.distributions.relaxed import ConcreteBernoulli, ConcreteOneHotCategorical
from pyrostruct.distributions.temperature import current_temperature
from pyrostruct.distributions.util import base_distribution, is_structural
from pyrostruct.infer.autoguide._base import SiteFamilyGuide

__all__ = ["AutoGumbelSoftmax", "auto_discrete_continuous_guide", "is_discrete_site"]

_BERNOULLI, _CATEGORICAL, _ONE_HOT = "bernoulli", "categorical", "one_hot"


def is_discrete_site(site: dict[str, Any]) -> bool:
    """Whether a trace site (or message) is a latent discrete site for a discrete guide.

    True for a latent (not observed, not auxiliary, not marked for enumeration)
    ``sample`` site whose distribution has a discrete support (and is not a DAG or
    permutation distribution, see :func:`~pyrostruct.distributions.is_structural`), or is a Concrete
    relaxation made by :func:`pyrostruct.relax` (possibly wrapped in
    ``.to_event()``, ``.mask()`` or ``.expand()``). This is the rule
    :func:`auto_discrete_continuous_guide` uses to split a model between
    :class:`AutoGumbelSoftmax` and a continuous autoguide.
    """
    if site.get("type") != "sample" or site.get("is_observed") or site_is_subsample(site):
        return False
    infer = site.get("infer") or {}
    if infer.get("is_auxiliary") or infer.get("enumerate"):
        return False
    fn = site["fn"]
    if isinstance(base_distribution(fn), RELAXED_TYPES):
        return True
    return _is_discrete(fn) and not is_structural(fn)


def _site_kind(site: dict[str, Any]) -> tuple[str, int]:
    """(kind, number of categories) of a discrete site, or a helpful NotImplementedError."""
    base = base_distribution(site["fn"])
    if isinstance(base, (ConcreteBernoulli, torch.distributions.Bernoulli)):
        return _BERNOULLI, 2
    if isinstance(base, (ConcreteCategorical, torch.distributions.Categorical)):
        return _CATEGORICAL, int(base.logits.size(-1))
    if isinstance(base, (ConcreteOneHotCategorical, torch.distributions.OneHotCategorical)):
        return _ONE_HOT, int(base.logits.size(-1))
    name = site["name"]
    raise NoRelaxationError(
        f"AutoGumbelSoftmax: sample site '{name}' has distribution {type(base).__name__}, "
        "which has no Gumbel-softmax relaxation (supported: Bernoulli, Categorical, "
        f"OneHotCategorical). Hide it, e.g. AutoGumbelSoftmax(poutine.block(model, "
        f"hide=['{name}'])), and give it another guide or enumerate it."
    )


class AutoGumbelSoftmax(SiteFamilyGuide):
    r"""Mean-field relaxed guide for every latent discrete site of a model.

    For each latent ``Bernoulli`` / ``Categorical`` / ``OneHotCategorical`` site
    :math:`z_i` (or its relaxation under :func:`pyrostruct.relax`) the guide is

    .. math::

        q(z) = \prod_i \mathrm{Concrete}(z_i \mid \phi_i, \tau),

    with learnable logits :math:`\phi_i` (one per element, like ``AutoNormal``'s
    locs) and temperature :math:`\tau`: ``ConcreteBernoulli``, ``ConcreteCategorical``
    (index-valued) or ``ConcreteOneHotCategorical``, the same relaxations that
    :func:`~pyrostruct.relax` puts into the model. Continuous sites are ignored;
    combine with ``AutoNormal`` through ``AutoGuideList`` or
    :func:`auto_discrete_continuous_guide`.

    Build it on ``model`` or on ``relax(model)`` (both give the same guide) and
    train with ``SVI(relax(model), guide, optim, Trace_ELBO())``: the model must be
    relaxed so that it can score the guide's relaxed values.

    The discrete posterior approximation is :math:`q(z_i = k) = \mathrm{softmax}(\phi_i)_k`
    (the hard value :math:`\arg\max(\phi_i + g)` of a Concrete sample has exactly this
    law): read it with :meth:`probs`; :meth:`median` gives the most probable hard
    values in the model's own encoding (0/1 floats, ``long`` indices, one-hot).

    What this adds to Pyro: Pyro's autoguides reject discrete sites
    (``AutoDiscreteParallel`` needs enumeration, which does not scale to hundreds
    of coupled indicators).

    :param callable model: a Pyro model (plain or relaxed).
    :param temperature: guide temperature: positive float, tensor, or a
        :class:`~pyrostruct.infer.TemperatureSchedule` read at every call.
    :param bool hard: straight-through samples (exact 0/1 / one-hot forward values);
        the older spelling of ``estimator="straight-through"``.
    :param str estimator: gradient estimator of the guide's samples:
        ``"gumbel-softmax"`` (soft, the default), ``"straight-through"``,
        ``"reinmax"`` or ``"gumbel-rao"`` (see
        :mod:`pyrostruct.distributions.estimators`). Categorical sites are hard either
        way (``"gumbel-softmax"`` gives them ``"straight-through"``).
    :param int num_rao_samples: noise draws per sample for ``"gumbel-rao"`` (default 5).
    :param float init_logits: initial logits (0 = uniform probabilities).
    :param callable create_plates: as in :class:`~pyro.infer.autoguide.AutoGuide`.

    References: E. Jang, S. Gu, B. Poole, "Categorical Reparameterization with
    Gumbel-Softmax", ICLR 2017; C. J. Maddison, A. Mnih, Y. W. Teh, "The Concrete
    Distribution", ICLR 2017.
    """

    @staticmethod
    def _prototype_hide_fn(msg):
        return prototype_hide_fn(msg) or not is_discrete_site(msg)

    def __init__(
        self,
        model,
        *,
        temperature: Any = 0.5,
        hard: bool = False,
        init_logits: float = 0.0,
        create_plates=None,
        estimator: str | None = None,
        num_rao_samples: int | None = None,
    ) -> None:
        current_temperature(temperature, name="AutoGumbelSoftmax: temperature")
        self.estimator, self.num_rao_samples = resolve_estimator(
            estimator, hard, num_rao_samples, "AutoGumbelSoftmax"
        )
        hard = self.estimator != "gumbel-softmax"
        init_logits = float(init_logits)
        if init_logits != init_logits or abs(init_logits) == float("inf"):
            raise ValueError(f"AutoGumbelSoftmax: init_logits must be finite, got {init_logits}.")
        self.temperature = temperature
        self.hard = hard
        self._init_logits = init_logits
        super().__init__(model, create_plates=create_plates)

    def _setup_prototype(self, *args, **kwargs) -> None:
        super()._setup_prototype(*args, **kwargs)
        self.logits = PyroModule()
        self._kinds: dict[str, tuple[str, int, int]] = {}
        self._ruled_out: dict[str, torch.Tensor] = {}
        for name, site in self.prototype_trace.iter_stochastic_nodes():
            kind, num_categories = _site_kind(site)
            value = site["value"].detach()
            event_dim = site["fn"].event_dim
            # event dims of the site that .to_event() added on top of the relaxed base
            extra_event_dim = event_dim - (1 if kind == _ONE_HOT else 0)
            shape = value.shape + ((num_categories,) if kind == _CATEGORICAL else ())
            param_event_dim = event_dim + (1 if kind == _CATEGORICAL else 0)
            init = torch.full(shape, self._init_logits, dtype=_float_dtype(value, site))
            for frame in site["cond_indep_stack"]:
                full_size = frame.full_size or frame.size
                if full_size != frame.size:
                    init = periodic_repeat(init, full_size, frame.dim - param_event_dim)
            init = init.contiguous()
            deep_setattr(self.logits, name, PyroParam(init, constraints.real, param_event_dim))
            self._kinds[name] = (kind, num_categories, extra_event_dim)
            # categories the prior rules out (logit -inf) the guide rules out too
            if kind != _BERNOULLI:
                ruled_out = torch.isneginf(base_distribution(site["fn"]).logits.detach())
                if bool(ruled_out.any()):
                    try:
                        self._ruled_out[name] = ruled_out.expand(init.shape)
                    except RuntimeError:  # prior logits per subsampled point: left alone
                        pass

    def get_distribution(self, name: str):
        """The relaxed guide distribution of site ``name`` at the current temperature."""
        temperature = current_temperature(self.temperature, name="AutoGumbelSoftmax: temperature")
        logits = attrgetter(name)(self.logits)
        if name in self._ruled_out:
            logits = logits.masked_fill(self._ruled_out[name], -math.inf)
        kind, _, extra_event_dim = self._kinds[name]
        kw = {"estimator": self.estimator, "num_rao_samples": self.num_rao_samples}
        if kind == _BERNOULLI:
            fn = ConcreteBernoulli(temperature, logits=logits, **kw)
        elif kind == _CATEGORICAL:
            if kw["estimator"] == "gumbel-softmax":
                kw["estimator"] = "straight-through"
            fn = ConcreteCategorical(temperature, logits=logits, **kw)
        else:
            fn = ConcreteOneHotCategorical(temperature, logits=logits, **kw)
        return fn.to_event(extra_event_dim) if extra_event_dim else fn

    def _require_setup(self, *args, **kwargs) -> None:
        if self.prototype_trace is None:
            if not args and not kwargs:
                raise RuntimeError(
                    "AutoGumbelSoftmax has not seen the model yet: call the guide (or one "
                    "SVI step) first, or pass the model's arguments."
                )
            self._setup_prototype(*args, **kwargs)

    @torch.no_grad()
    def probs(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """Posterior probabilities per site: ``P(z = 1)`` for Bernoulli sites (site shape),
        ``P(z = k)`` in a trailing dimension of size K for categorical sites."""
        self._require_setup(*args, **kwargs)
        out = {}
        for name, (kind, _, _) in self._kinds.items():
            logits = attrgetter(name)(self.logits).detach()
            out[name] = logits.sigmoid() if kind == _BERNOULLI else logits.softmax(-1)
        return out

    @torch.no_grad()
    def median(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """Most probable hard value per site, in the model's encoding: 0./1. for Bernoulli,
        a ``long`` index for Categorical, an exact one-hot for OneHotCategorical."""
        self._require_setup(*args, **kwargs)
        out = {}
        for name, (kind, _, _) in self._kinds.items():
            logits = attrgetter(name)(self.logits).detach()
            if kind == _BERNOULLI:
                out[name] = (logits > 0).to(logits.dtype)
            elif kind == _CATEGORICAL:
                out[name] = logits.argmax(-1)
            else:
                index = logits.argmax(-1, keepdim=True)
                out[name] = torch.zeros_like(logits).scatter_(-1, index, 1.0)
        return out

    def quantiles(self, quantiles, *args, **kwargs):
        raise NotImplementedError(
            "AutoGumbelSoftmax: quantiles are not defined for discrete sites; use probs()."
        )


def _float_dtype(value: torch.Tensor, site) -> torch.dtype:
    if value.is_floating_point():
        return value.dtype
    logits = getattr(base_distribution(site["fn"]), "logits", None)
    return logits.dtype if logits is not None else torch.get_default_dtype()


def auto_discrete_continuous_guide(
    model,
    *,
    temperature: Any = 0.5,
    hard: bool = False,
    init_logits: float = 0.0,
    continuous_guide=AutoNormal,
    estimator: str | None = None,
    num_rao_samples: int | None = None,
    **continuous_kwargs,
) -> AutoGuideList:
    """One guide for a model with discrete and continuous latents.

    Builds ``AutoGuideList(model)`` holding :class:`AutoGumbelSoftmax` for every
    site :func:`is_discrete_site` accepts and ``continuous_guide`` (default
    :class:`~pyro.infer.autoguide.AutoNormal`, mean-field Gaussian ADVI) for the
    rest, i.e. :math:`q(z, \\theta) = \\prod_i \\mathrm{Concrete}(z_i) \\prod_j
    \\mathcal N(\\theta_j)`. Train with ``SVI(relax(model), guide, ...)``.
    ``guide.median()`` merges hard discrete values and continuous medians; the
    discrete probabilities are ``guide[0].probs()``.

    :param model: a Pyro model (plain or relaxed).
    :param temperature, hard, init_logits, estimator, num_rao_samples: passed to
        :class:`AutoGumbelSoftmax`.
    :param continuous_guide: an autoguide class for the continuous sites.
    :param continuous_kwargs: keyword arguments for ``continuous_guide`` (e.g. ``init_scale``).

    References: Jang, Gu, Poole, ICLR 2017 (Gumbel-softmax); Kucukelbir et al.,
    "Automatic Differentiation Variational Inference", JMLR 2017 (AutoNormal).
    """
    guide = AutoGuideList(model)
    guide.append(
        AutoGumbelSoftmax(
            model,
            temperature=temperature,
            hard=hard,
            init_logits=init_logits,
            estimator=estimator,
            num_rao_samples=num_rao_samples,
        )
    )
    guide.append(
        continuous_guide(poutine.block(model, hide_fn=is_discrete_site), **continuous_kwargs)
    )
    return guide
