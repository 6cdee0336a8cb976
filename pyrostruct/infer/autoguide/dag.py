"""``AutoDAG``: a variational DAG distribution for every DAG sample site of a model.

For each latent site whose distribution is one of pyrostruct's DAG
distributions (:class:`~pyrostruct.distributions.OrderedDAG`,
:class:`~pyrostruct.distributions.SmoothOrientationDAG`,
:class:`~pyrostruct.distributions.ErdosRenyiDAG`), the guide is a distribution
of the same family with learnable node scores ``s`` (``d``) and edge logits
``l`` (``d x d``):

.. math::

    q(\\pi, A) = \\mathrm{PL}(\\pi; s)\\ \\prod_{\\mathrm{rank}_i < \\mathrm{rank}_j}
        \\mathrm{Bernoulli}(A_{ij}; \\sigma(l_{ij})) .

Samples carry their order, so the model's prior and the guide both score the
*joint* ``(order, edges)`` with their exact ``log_prob``: the ELBO objects then
estimate the true ELBO ``E_q[log p(X, pi, A) - log q(pi, A)]`` with no extra
code (the order term is the Plackett-Luce log-probability; the edge term is the
Bernoulli log-ratio of the forward pairs). This is the variational family of
VI-DP-DAG (Charpentier, Kibler, Günnemann, "Differentiable DAG Sampling",
ICLR 2022), with the exact joint density in place of its ad-hoc regularizer.

By default (``estimator="auto"``) a DAG site is sampled without a pathwise
gradient, so training uses the score function, unbiased for any likelihood, and
its guide is a :class:`~pyrostruct.distributions.DAGMixture` of four such
components; a model whose likelihood changes smoothly with each edge may declare
the straight-through estimator (``infer={"dag_estimator": "straight-through"}``).

What this adds to Pyro's autoguides: support for DAG-valued sites (Pyro's
``AutoNormal`` & co. need a bijection to real space, which DAGs lack).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from operator import attrgetter
from typing import NamedTuple

import pyro
import torch
from pyro.nn.module import PyroModule, PyroParam
from torch.distributions import constraints

from pyrostruct._pyro_compat import deep_setattr
from pyrostruct.distributions.dag import OrderedDAG, SmoothOrientationDAG, get_order
from pyrostruct.distributions.dag_mixture import DAGMixture
from pyrostruct.distributions.temperature import current_temperature
from pyrostruct.distributions.util import base_distribution
from pyrostruct.infer.autoguide._base import SiteFamilyGuide
from pyrostruct.infer.autoguide.edge_weights import (
    EDGE_WEIGHTS_OF,
    INIT_SCALE,
    edge_weight_distribution,
    edge_weight_prior,
    is_edge_weight_site,
)

__all__ = ["AutoDAG", "EdgeProbs", "is_dag_site"]


class EdgeProbs(NamedTuple):
    """Monte Carlo edge marginals ``P(i -> j)`` and their standard errors (``d x d`` each);
    ``method``: ``"guide"`` (the guide's own marginals) or ``"importance"`` (its draws
    weighted by the model); ``ess`` and ``khat``: the effective sample size and the
    Pareto-k diagnostic of the importance weights (``None`` when none were computed)."""

    mean: torch.Tensor
    stderr: torch.Tensor
    ess: float | None = None
    method: str = "guide"
    khat: float | None = None


def is_dag_site(site) -> bool:
    """Whether a trace site is a latent sample site with a pyrostruct DAG distribution."""
    return (
        site["type"] == "sample"
        and not site["is_observed"]
        and not site["infer"].get("is_auxiliary", False)
        and isinstance(base_distribution(site["fn"]), OrderedDAG)
    )


DAG_ESTIMATORS = ("score", "straight-through")
#: Default mixture components of a score-function DAG site (see ``num_components``).
NUM_COMPONENTS = 4
#: Spread of the extra components' initial scores around the first one's.
COMPONENT_SPREAD = 1.0


def _check_estimator(value, what: str, *, allow_auto: bool) -> str:
    allowed = ("auto",) * allow_auto + DAG_ESTIMATORS
    if value not in allowed:
        names = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{what} must be one of {names}; got {value!r}")
    return value


def _check_one_prior(name: str, site_fn, fn: OrderedDAG) -> None:
    """Refuse what one set of guide parameters per DAG site cannot guide: a batch of DAGs
    declared an event (``.to_event``: Pyro then sees the guide's event shape differ), or
    a batch of differing priors (the guide would follow the first one's: draws another
    member's prior forbids, an ELBO of 3.4e38)."""
    if site_fn.event_dim > 2:
        raise ValueError(
            f"AutoDAG: site {name!r} declares a batch of DAGs an event (.to_event()); put "
            "the batch in a pyro.plate instead"
        )
    for value, event_dim in ((fn.edge_logits, 2), (getattr(fn, "scores", None), 1)):
        if value is None or value.dim() <= event_dim:
            continue
        first = value.reshape(-1, *value.shape[value.dim() - event_dim :])[0]
        if not bool(((value == first) | (value.isnan() & first.isnan())).all()):
            raise ValueError(
                f"AutoDAG: site {name!r} has a batch of different priors (its parameters "
                "differ along the batch); its guide has one set of parameters per site: "
                "give every member the same prior, or each distinct prior its own site"
            )


class AutoDAG(SiteFamilyGuide):
    """Autoguide for the DAG sample sites of a model (order-then-edges family).

    :param callable model: a Pyro model; its latent sites must all be DAG sites
        (combine with other guides in an ``AutoGuideList`` and ``poutine.block``
        otherwise).
    :param temperature: relaxation temperature of the straight-through
        gradients, read at every call (anneal it by stepping the schedule);
        default 1.0.
    :type temperature: float or TemperatureSchedule
    :param dict init_scores: optional, site name -> tensor ``(d,)`` or
        ``"random"``: initial node scores (higher = more upstream). Default:
        small random scores ``N(0, init_scale^2)``, i.e. a near-uniform order.
    :param dict init_orders: optional, site name -> sequence of node indices:
        initial order (upstream first), scores decreasing by ``order_spacing``
        along it. Overrides ``init_scores``.
    :param init_edge_prob: optional, initial ``P(i -> j | i before j)``.
        Default: the prior's edge probabilities (its ``edge_logits``).
    :type init_edge_prob: float or dict site name -> float
    :param float init_scale: spread of the random initial scores (default 0.01).
    :param float order_spacing: score gap between consecutive nodes of an
        ``init_orders`` order (default 1.0).
    :param str estimator: gradient estimator of the DAG sites, ``"auto"``
        (default), ``"score"`` or ``"straight-through"``.

        - ``"score"``: samples are not reparameterized, so gradients come from
          the score function ``grad log q``: train with
          :class:`~pyrostruct.infer.TraceRWS_ELBO` (mass-covering, what
          :func:`~pyrostruct.infer.fit` picks by itself) or
          :class:`~pyrostruct.infer.TraceRLOO_ELBO` (the unbiased ELBO gradient
          with leave-one-out baselines). Right for any likelihood, including
          those where ``A`` enters non-linearly (a marginal likelihood with the
          weights integrated out).
        - ``"straight-through"``: pathwise gradients through the relaxed order
          and edges, ``Trace_ELBO``; low variance but biased. Fine when the
          log-density changes smoothly and nearly linearly with each ``A_ij``
          (SEMs whose weights are multiplied by ``A``, as in
          :mod:`pyrostruct.causal`); badly biased otherwise (measured: edge
          marginals 0.5 from the exact posterior on a 3-node model with the
          weights integrated out, where ``"score"`` lands within 0.02).
        - ``"auto"``: per site, what the model declares with
          ``pyro.sample(name, dag, infer={"dag_estimator": "straight-through"})``
          (or ``"score"``), else ``"score"``.

        :attr:`estimators` reports the choice per site after the first call.
    :param int num_components: number ``K`` of order-then-edges components of a
        score-function site's guide, a :class:`~pyrostruct.distributions.DAGMixture`
        (default 4; 1 for straight-through sites, whose samples carry pathwise
        gradients, and with ``rao_blackwellize``). One component cannot hold a
        posterior spread over Markov-equivalent DAGs (see
        :mod:`pyrostruct.distributions.dag_mixture`); component ``k >= 1`` starts
        at the initial scores plus ``N(0, 1)`` jitter, so the components can tell
        apart.
    :param bool rao_blackwellize: replace the Monte Carlo edge term
        ``log q(A | pi) - log p(A | pi)`` of the ELBO by its exact conditional
        expectation, the Bernoulli KL ``sum_{forward pairs} KL(q_ij || p_ij)``
        (same ELBO in expectation, lower variance); default False. It adds a
        guide-side ``pyro.factor`` site ``"<name>_edge_kl"`` worth
        ``sum_fwd (q_ij - A_ij)(l_ij - l^prior_ij)`` and reads the prior's edge
        logits once, at set-up: use it only when they are fixed.
    :param callable create_plates: optional, as in Pyro's autoguides.

    Example::

        >>> import pyro, torch
        >>> from pyrostruct.distributions import ErdosRenyiDAG
        >>> def model():
        ...     return pyro.sample("G", ErdosRenyiDAG(4, expected_edges=3.0))
        >>> guide = AutoDAG(model)
        >>> guide()["G"].shape
        torch.Size([4, 4])
    """

    _site_kind = "DAG"

    def __init__(
        self,
        model,
        *,
        temperature=1.0,
        init_scores: Mapping | None = None,
        init_orders: Mapping | None = None,
        init_edge_prob=None,
        init_scale: float = 0.01,
        order_spacing: float = 1.0,
        estimator: str = "auto",
        num_components: int | None = None,
        rao_blackwellize: bool = False,
        create_plates=None,
    ):
        current_temperature(temperature)  # validates
        if not (isinstance(init_scale, (int, float)) and init_scale >= 0):
            raise ValueError(f"Expected init_scale >= 0 but got {init_scale!r}")
        self.temperature = temperature
        self._init_scores = dict(init_scores or {})
        self._init_orders = dict(init_orders or {})
        self._init_edge_prob = init_edge_prob
        self._init_scale = float(init_scale)
        self._order_spacing = float(order_spacing)
        self.estimator = _check_estimator(estimator, "estimator", allow_auto=True)
        self.estimators: dict[str, str] = {}
        if num_components is not None and not (
            isinstance(num_components, int) and num_components >= 1
        ):
            raise ValueError(f"num_components must be a positive integer, got {num_components!r}")
        self._num_components = num_components
        self.num_components: dict[str, int] = {}
        self.rao_blackwellize = bool(rao_blackwellize)
        super().__init__(model, create_plates=create_plates)

    # -- set-up ---------------------------------------------------------------
    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        self.scores = PyroModule()
        self.edge_logits = PyroModule()
        self._families = {}
        self._prior_logits = {}
        self._ruled_out = {}
        self.estimators = {}
        self.num_components = {}
        self.mixture_logits = PyroModule()
        self.weight_locs = PyroModule()
        self.weight_scales = PyroModule()
        self._weights = {}  # weight site -> (its DAG site, its prior)
        self._latest = {}  # DAG site -> the value just sampled (for its weight sites)
        found = False
        for name, site in self.prototype_trace.iter_stochastic_nodes():
            fn = base_distribution(site["fn"])
            if is_edge_weight_site(site):
                self._setup_weights(name, site)
                continue
            if not isinstance(fn, OrderedDAG):
                raise ValueError(
                    f"AutoDAG cannot guide site {name!r} with distribution "
                    f"{type(fn).__name__}: it handles DAG distributions only. Hide the site "
                    f"with poutine.block(model, hide=[{name!r}]) and guide it with another "
                    "autoguide in an AutoGuideList."
                )
            _check_one_prior(name, site["fn"], fn)
            found = True
            self.estimators[name] = self._site_estimator(site)
            K = self.num_components[name] = self._site_components(name)
            d = fn.num_nodes
            prior_logits = fn.edge_logits.detach()
            while prior_logits.dim() > 2:
                prior_logits = prior_logits[0]
            # an edge the prior rules out (logit -inf: forbidden) the guide rules out too
            ruled_out = torch.isneginf(prior_logits)
            if bool(ruled_out.any()):
                self._ruled_out[name] = ruled_out
            self._prior_logits[name] = prior_logits.clamp(-30.0, 30.0)
            init_logits = self._initial_edge_logits(name, prior_logits)
            init_scores = self._initial_scores(name, d, prior_logits.dtype)
            if K > 1:
                jitter = torch.randn(K, d, dtype=init_scores.dtype) * COMPONENT_SPREAD
                jitter[0] = 0.0  # the first component starts where asked
                init_scores = init_scores + jitter
                init_logits = init_logits.expand(K, d, d).contiguous()
                mixture = torch.zeros(K, dtype=init_scores.dtype)
                deep_setattr(self.mixture_logits, name, PyroParam(mixture, constraints.real, 1))
            smooth = isinstance(fn, SmoothOrientationDAG)
            self._families[name] = ("smooth", fn.shift) if smooth else ("ordered", 0.0)
            extra = int(K > 1)  # the component dim is part of the parameters' event
            logits = PyroParam(init_logits, constraints.real, 2 + extra)
            deep_setattr(self.scores, name, PyroParam(init_scores, constraints.real, 1 + extra))
            deep_setattr(self.edge_logits, name, logits)
        if not found:
            raise ValueError("AutoDAG found no DAG sample site in the model.")
        self._site_names = list(self._families)

    def _setup_weights(self, name, site):
        """Parameters of an edge-weight site (:mod:`~pyrostruct.infer.autoguide.edge_weights`)."""
        dag = site["infer"][EDGE_WEIGHTS_OF]
        if dag not in self._families:
            raise ValueError(
                f"site {name!r} declares edge_weights_of={dag!r}, which is not a DAG site "
                f"sampled before it; DAG sites so far: {list(self._families)}"
            )
        d = self._prior_logits[dag].shape[-1]
        prior = edge_weight_prior(site, d)
        dtype = self._prior_logits[dag].dtype
        self._weights[name] = (dag, prior)
        deep_setattr(self.weight_locs, name, PyroParam(torch.zeros(d, d, dtype=dtype),
                                                       constraints.real, 2))  # fmt: skip
        scale = torch.full((d, d), INIT_SCALE, dtype=dtype)
        deep_setattr(self.weight_scales, name, PyroParam(scale, constraints.positive, 2))

    def _site_estimator(self, site) -> str:
        """The estimator of a site: the guide's, else the model's declaration, else score."""
        if self.estimator != "auto":
            return self.estimator
        declared = site["infer"].get("dag_estimator")
        if declared is None:
            return "score"
        where = f"site {site['name']!r}: infer['dag_estimator']"
        return _check_estimator(declared, where, allow_auto=False)

    def _site_components(self, name) -> int:
        """Mixture components of a site: the option, else 4 for score-function sites
        (1 with ``rao_blackwellize``) and 1 for straight-through ones."""
        K = self._num_components
        if K is None:
            single = self.estimators[name] == "straight-through" or self.rao_blackwellize
            return 1 if single else NUM_COMPONENTS
        if K > 1 and self.estimators[name] == "straight-through":
            raise ValueError(
                f"site {name!r}: num_components={K} needs the score estimator (a mixture "
                "component is drawn without a pathwise gradient); use estimator='score'"
            )
        if K > 1 and self.rao_blackwellize:
            raise ValueError(
                f"site {name!r}: rao_blackwellize needs one component (the edge KL given the "
                "order has no closed form under a mixture); pass num_components=1"
            )
        return K

    def _initial_edge_logits(self, name, prior_logits):
        p = self._init_edge_prob
        if isinstance(p, Mapping):
            p = p.get(name)
        if p is None:
            logits = prior_logits.clamp(-10.0, 10.0).clone()
        else:
            if not 0.0 < float(p) < 1.0:
                raise ValueError(f"init_edge_prob must lie in (0, 1), got {p}")
            logits = torch.full_like(prior_logits, math.log(float(p) / (1.0 - float(p))))
        return logits.contiguous()

    def _initial_scores(self, name, d, dtype):
        if name in self._init_orders:
            order = [int(i) for i in self._init_orders[name]]
            if sorted(order) != list(range(d)):
                raise ValueError(
                    f"init_orders[{name!r}] must be a permutation of 0..{d - 1}, got {order}"
                )
            scores = torch.empty(d, dtype=dtype)
            scores[torch.tensor(order)] = self._order_spacing * torch.arange(d, 0, -1, dtype=dtype)
            return scores - scores.mean()
        init = self._init_scores.get(name)
        if init is not None:
            init = torch.as_tensor(init, dtype=dtype).detach().clone()
            if init.shape != (d,) or not bool(torch.isfinite(init).all()):
                raise ValueError(
                    f"init_scores[{name!r}] must be {d} finite numbers, got shape "
                    f"{tuple(init.shape)}"
                )
            return init
        return torch.randn(d, dtype=dtype) * self._init_scale

    # -- the guide ------------------------------------------------------------
    def _params(self, name):
        """The node scores and edge logits of DAG site ``name``, the logits of the edges
        its prior rules out at ``-inf`` (never drawn)."""
        logits = attrgetter(name)(self.edge_logits)
        if name in self._ruled_out:
            logits = logits.masked_fill(self._ruled_out[name], -math.inf)
        return attrgetter(name)(self.scores), logits

    def get_distribution(self, name: str, temperature=None):
        """The variational distribution of site ``name``: the family of its prior, or a
        :class:`~pyrostruct.distributions.DAGMixture` of that family; for an edge-weight
        site, ``q(W | A)`` given the DAG just sampled."""
        if name in self._weights:
            dag, prior = self._weights[name]
            loc, scale = attrgetter(name)(self.weight_locs), attrgetter(name)(self.weight_scales)
            if dag not in self._latest:
                raise RuntimeError(f"site {name!r}: its DAG site {dag!r} has not been sampled")
            return edge_weight_distribution(prior, loc, scale, self._latest[dag])
        scores, logits = self._params(name)
        tau = current_temperature(self.temperature if temperature is None else temperature)
        family, shift = self._families[name]
        if family == "smooth":
            fn = SmoothOrientationDAG(-scores, logits, temperature=tau, shift=shift)
        else:
            fn = OrderedDAG(scores, logits, temperature=tau)
        if self.num_components[name] > 1:
            return DAGMixture(attrgetter(name)(self.mixture_logits), fn)
        return fn.has_rsample_(False) if self.estimators[name] == "score" else fn

    def _after_sample(self, name, value):
        if name in self._weights:
            return
        self._latest[name] = value
        if self.rao_blackwellize:
            pyro.factor(name + "_edge_kl", self._edge_kl_correction(name, value), has_rsample=True)

    def _edge_kl_correction(self, name, value):
        """``KL(q(.|pi) || p(.|pi)) - [log q(A|pi) - log p(A|pi)]`` over the forward pairs."""
        _, logits = self._params(name)
        order = get_order(value)
        if order is None:
            raise ValueError(f"site {name!r}: the sampled value lost its order")
        rank = torch.argsort(order, dim=-1)
        forward = rank.unsqueeze(-1) < rank.unsqueeze(-2)
        prior = self._prior_logits[name].to(logits.dtype)
        if name in self._ruled_out:  # ruled-out pairs add nothing (their logits are -inf)
            forward = forward & ~self._ruled_out[name]
            logits = torch.where(forward, logits, 0.0)
        forward = forward.to(logits.dtype)
        return (forward * (torch.sigmoid(logits) - value) * (logits - prior)).sum((-1, -2))

    # -- posterior summaries -------------------------------------------------
    @torch.no_grad()
    def median(self, *args, **kwargs):
        """Most probable DAG per site: the mode of the order (scores sorted), then every
        edge more likely than not given it. Returns ``{name: adjacency}`` (acyclic), and
        for an edge-weight site its guide's location on those edges (the prior's mean
        elsewhere)."""
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        out = {name: self.get_distribution(name).mode.detach() for name in self._families}
        for name, (dag, prior) in self._weights.items():  # the slab's centre on the edges
            loc = attrgetter(name)(self.weight_locs).detach()
            out[name] = torch.where(out[dag] > 0.5, loc, prior.mean.to(loc.dtype))
        return out

    @torch.no_grad()
    def sample_dags(self, num_samples: int, name: str | None = None) -> torch.Tensor:
        """``num_samples`` hard DAGs ``(num_samples, d, d)`` from the variational posterior."""
        name = self._site(name)
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        return self.get_distribution(name).sample((int(num_samples),)).detach()

    @torch.no_grad()
    def edge_probs(self, name: str | None = None, num_samples: int = 1000) -> EdgeProbs:
        """Marginal edge probabilities ``P(i -> j)`` with their Monte Carlo standard error.

        The edges are Rao-Blackwellized: for each sampled order the exact
        conditional ``P(i -> j | order) = [rank_i < rank_j] sigmoid(l_ij)`` is
        averaged (under a mixture, ``sum_k P(k | order) sigmoid(l^k_ij)``), so the
        error comes from the order alone.
        """
        name = self._site(name)
        if int(num_samples) < 2:
            raise ValueError(f"num_samples must be >= 2, got {num_samples}")
        _, logits = self._params(name)
        q = self.get_distribution(name)
        samples = q.sample((int(num_samples),))
        order = get_order(samples)
        rank = torch.argsort(order, dim=-1)
        forward = (rank.unsqueeze(-1) < rank.unsqueeze(-2)).to(logits.dtype)
        probs = torch.sigmoid(logits)
        if isinstance(q, DAGMixture):  # P(i -> j | order) = sum_k P(k | order) sigmoid(l^k_ij)
            probs = (q.order_responsibilities(order)[..., None, None] * probs).sum(-3)
        per_sample = forward * probs
        mean = per_sample.mean(0)
        stderr = per_sample.std(0) / math.sqrt(per_sample.shape[0])
        return EdgeProbs(mean.detach(), stderr.detach())
