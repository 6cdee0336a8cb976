"""Gumbel-softmax (Concrete) relaxations of Bernoulli and categorical variables.

Pyro already ships :class:`pyro.distributions.RelaxedOneHotCategorical` and
:class:`pyro.distributions.RelaxedBernoulli` (and their ``StraightThrough``
variants). They compute ``log_prob`` by inverting the ``exp``/``sigmoid`` map
from the *rounded* sample, so at low temperature a float32 sample that has
saturated to exactly ``0`` or ``1`` gets a non-finite density (about 12% of its
own samples at temperature 0.05 and 96% at 0.01 for three categories), and
their samples can fail their own simplex support check.

The classes here subclass Pyro's and add:

- **log-space samples**: :meth:`rsample` also computes the sample in log space
  (the ExpConcrete / logit-Concrete variable of Maddison et al.) and carries it
  on the returned tensor; :meth:`log_prob` scores that log-space value, so the
  density stays finite and accurate down to temperature 0.01 in float32;
- **hard samples** whose forward value is *exactly* one-hot / ``{0, 1}`` (the
  argmax of ``logits + Gumbel noise``, hence an exact categorical / Bernoulli
  draw), with the gradient estimator chosen by ``estimator=``:
  ``"straight-through"`` (``hard=True``, the relaxed sample's gradient),
  ``"reinmax"`` or ``"gumbel-rao"`` (see :mod:`pyrostruct.distributions.estimators`);
- **validation** of ``temperature`` (``> 0``, finite, broadcastable to the
  batch shape) and a float ``temperature`` accepted as well as a tensor;
- :class:`ConcreteCategorical`: an *index*-valued relaxed categorical, the
  relaxation that :func:`pyrostruct.relax` uses for ``Categorical`` sites.

The module is over 500 lines because it holds the three Concrete classes and
the one mapping (:func:`relax_distribution`) from Pyro's discrete families to
them; about half of it is docstrings with the densities and what each class
adds to Pyro's. The index tensor behind :class:`ConcreteCategorical` lives in
``_relaxed_index.py``, the gradient estimators of hard samples in
``estimators.py``.

References:

[1] Chris J. Maddison, Andriy Mnih, Yee Whye Teh, "The Concrete Distribution: A
    Continuous Relaxation of Discrete Random Variables", ICLR 2017.
[2] Eric Jang, Shixiang Gu, Ben Poole, "Categorical Reparameterization with
    Gumbel-Softmax", ICLR 2017.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution, constraints
from pyro.distributions.torch_distribution import ExpandedDistribution, MaskedDistribution
from torch.distributions.utils import clamp_probs

from pyrostruct._pyro_compat import distribution_mask
from pyrostruct.distributions._relaxed_index import (
    RelaxationWarning,
    RelaxedIndex,
    RelaxedValueError,
    _Probe,
)
from pyrostruct.distributions.estimators import (
    ESTIMATORS,
    gumbel_rao_surrogate,
    hard_binary,
    hard_one_hot,
    resolve_estimator,
)
from pyrostruct.distributions.temperature import current_temperature
from pyrostruct.errors import InputError

__all__ = [
    "ConcreteOneHotCategorical",
    "ConcreteBernoulli",
    "ConcreteCategorical",
    "relax_distribution",
    "NoRelaxationError",
    "RelaxedIndex",
    "RelaxedValueError",
    "RelaxationWarning",
    "ESTIMATORS",
]

_EMPTY = torch.Size()

# Attributes under which rsample() leaves the log-space sample on its output.
_LOG_VALUE = "_concrete_log_value"  # log of a point on the simplex (ExpConcrete)
_LOGIT_VALUE = "_concrete_logit_value"  # logit of a point in (0, 1) (logit-Concrete)


def _param_tensor(probs, logits, name: str) -> torch.Tensor:
    if (probs is None) == (logits is None):
        raise ValueError(f"{name}: pass exactly one of `probs` or `logits`, not both or neither.")
    param = probs if probs is not None else logits
    return param if isinstance(param, torch.Tensor) else torch.as_tensor(param)


def _as_temperature(temperature, like: torch.Tensor, name: str) -> torch.Tensor:
    """Temperature (read by :func:`current_temperature`) as a tensor of ``like``'s dtype."""
    tau = current_temperature(temperature, name=f"{name}: temperature")
    dtype = like.dtype if like.is_floating_point() else torch.get_default_dtype()
    return torch.as_tensor(tau, dtype=dtype, device=like.device)


def _check_temperature_shape(tau: torch.Tensor, batch_shape: torch.Size, name: str) -> None:
    try:
        ok = torch.broadcast_shapes(tau.shape, batch_shape) == batch_shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"{name}: temperature of shape {tuple(tau.shape)} does not broadcast to the batch "
            f"shape {tuple(batch_shape)}. Pass a scalar temperature, or one of shape "
            f"{tuple(batch_shape)}."
        )


class ConcreteOneHotCategorical(dist.RelaxedOneHotCategorical):
    r"""Gumbel-softmax (Concrete) relaxation of a one-hot categorical, scored in log space.

    A sample is :math:`y = \mathrm{softmax}((\ell + g)/\tau)` with
    :math:`g_k \sim \mathrm{Gumbel}(0, 1)`; its density on the simplex is

    .. math::

        \log p(y) = \log\Gamma(K) + (K-1)\log\tau
            + \sum_k (\ell_k - \tau x_k) - K \operatorname{logsumexp}_k(\ell_k - \tau x_k)
            - \sum_k x_k, \qquad x = \log y,

    evaluated at the log-space sample :math:`x = \mathrm{log\_softmax}((\ell + g)/\tau)`
    that :meth:`rsample` carries on its output, never at ``log(y)`` of a rounded
    ``y``.

    What this adds to :class:`pyro.distributions.RelaxedOneHotCategorical` (which it
    subclasses): finite, accurate ``log_prob`` of its own samples down to
    temperature 0.01 in float32; samples that pass the simplex support check;
    hard samples (forward: the exact one-hot of
    :math:`\arg\max_k(\ell_k + g_k)`, a draw from ``OneHotCategorical(logits)``)
    with a choice of gradient estimator (``estimator=``: ``"straight-through"``,
    the gradient of the relaxed sample, like
    :class:`pyro.distributions.RelaxedOneHotCategoricalStraightThrough`;
    ``"reinmax"``, second-order accurate; ``"gumbel-rao"``, lower variance; see
    :mod:`pyrostruct.distributions.estimators`); a validated float-or-tensor
    ``temperature`` of scalar or batch shape.

    ``log_prob`` of a hard sample scores the relaxed sample behind it (as Pyro's
    straight-through class does). A value that does not come from ``rsample`` is
    scored at ``x = log(value)`` and must lie inside the simplex.

    :param temperature: relaxation temperature :math:`\tau > 0` (float or tensor
        broadcastable to the batch shape).
    :param probs: event probabilities (``(..., K)``), or
    :param logits: unnormalized log probabilities (``(..., K)``).
    :param bool hard: older spelling of ``estimator="straight-through"`` (``hard=False``
        with no ``estimator`` means ``"gumbel-softmax"``).
    :param str estimator: ``"gumbel-softmax"`` (soft samples, the default),
        ``"straight-through"``, ``"reinmax"`` or ``"gumbel-rao"`` (exact one-hot
        samples with that gradient estimator).
    :param int num_rao_samples: conditional noise draws per sample for ``"gumbel-rao"``.

    References:

    [1] C. J. Maddison, A. Mnih, Y. W. Teh, "The Concrete Distribution: A Continuous
        Relaxation of Discrete Random Variables", ICLR 2017.
    [2] E. Jang, S. Gu, B. Poole, "Categorical Reparameterization with Gumbel-Softmax",
        ICLR 2017.
    """

    arg_constraints = {
        "temperature": constraints.positive,
        "probs": constraints.simplex,
        "logits": constraints.real_vector,
    }
    support = constraints.simplex
    has_rsample = True

    def __init__(
        self,
        temperature,
        probs=None,
        logits=None,
        *,
        hard=False,
        estimator=None,
        num_rao_samples=None,
        validate_args=None,
    ):
        name = type(self).__name__
        self.estimator, self.num_rao_samples = resolve_estimator(
            estimator, hard, num_rao_samples, name
        )
        param = _param_tensor(probs, logits, name)
        if param.dim() < 1 or param.size(-1) < 1:
            raise ValueError(
                f"{name}: expected {'probs' if probs is not None else 'logits'} of shape "
                f"(..., K) with K >= 1 categories, got shape {tuple(param.shape)}."
            )
        tau = _as_temperature(temperature, param, name)
        _check_temperature_shape(tau, param.shape[:-1], name)
        self.hard = self.estimator != "gumbel-softmax"
        if probs is not None:
            super().__init__(tau, probs=param, validate_args=validate_args)
        else:
            super().__init__(tau, logits=param, validate_args=validate_args)

    @classmethod
    def infer_shapes(cls, temperature=(), probs=None, logits=None):
        """``batch_shape`` broadcasts ``temperature`` with ``probs[:-1]`` (or ``logits[:-1]``),
        ``event_shape = probs[-1:]``."""
        param = probs if probs is not None else logits
        if param is None or len(param) < 1:
            raise ValueError(f"{cls.__name__}.infer_shapes needs the shape of probs or logits.")
        batch = torch.broadcast_shapes(torch.Size(temperature), torch.Size(param[:-1]))
        return batch, torch.Size(param[-1:])

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(ConcreteOneHotCategorical, _instance)
        new = super().expand(batch_shape, _instance=new)
        new.hard = self.hard
        new.estimator, new.num_rao_samples = self.estimator, self.num_rao_samples
        return new

    def _tau(self) -> torch.Tensor:
        tau = self.temperature
        return tau.unsqueeze(-1) if tau.dim() else tau

    def _scores(self, sample_shape=_EMPTY) -> torch.Tensor:
        """Gumbel-perturbed, tempered logits :math:`(\\ell + g)/\\tau`."""
        shape = self._extended_shape(sample_shape)
        logits = self.logits
        u = clamp_probs(torch.rand(shape, dtype=logits.dtype, device=logits.device))
        return (logits - (-u.log()).log()) / self._tau()

    def rsample(self, sample_shape=_EMPTY) -> torch.Tensor:
        scores = self._scores(sample_shape)
        log_y = scores.log_softmax(-1)
        y = scores.softmax(-1)
        if self.hard:
            y = hard_one_hot(
                self.estimator, y, log_y, self.logits, self._tau(), self.num_rao_samples
            )
        setattr(y, _LOG_VALUE, log_y)
        return y

    def sample(self, sample_shape=_EMPTY) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        log_y = getattr(value, _LOG_VALUE, None)
        if log_y is None:
            if self._validate_args:
                self._validate_sample(value)
            log_y = value.log()
        return _concrete_log_density(self.logits, self._tau(), log_y)


def _concrete_log_density(logits, tau, log_y):
    """Concrete log density at the log-space point ``log_y`` (see the class docstring)."""
    num_events = logits.size(-1)
    score = logits - tau * log_y
    tau_batch = tau.squeeze(-1) if tau.dim() else tau
    log_norm = math.lgamma(num_events) + (num_events - 1) * tau_batch.log()
    return log_norm + (score - score.logsumexp(-1, keepdim=True)).sum(-1) - log_y.sum(-1)


class ConcreteBernoulli(dist.RelaxedBernoulli):
    r"""Binary Concrete (Gumbel-sigmoid) relaxation of a Bernoulli, scored in logit space.

    A sample is :math:`y = \sigma(l)` with :math:`l = (\ell + \log u - \log(1-u))/\tau`,
    :math:`u \sim U(0, 1)`; its density is

    .. math::

        \log p(y) = \log\tau + d - 2\,\mathrm{softplus}(d)
            + \mathrm{softplus}(l) + \mathrm{softplus}(-l), \qquad d = \ell - \tau l,

    evaluated at the logit :math:`l` that :meth:`rsample` carries on its output.

    What this adds to :class:`pyro.distributions.RelaxedBernoulli` (which it
    subclasses): finite ``log_prob`` of its own samples at any temperature
    (Pyro's inverts ``sigmoid`` of a float32 sample that has saturated to
    exactly 0 or 1, and its ``log1p(exp(.))`` overflows); noise built from
    ``logits`` rather than clamped ``probs``; hard samples (forward: exactly
    ``1[l > 0]``, a draw from ``Bernoulli(logits)``) with a choice of gradient
    estimator (``estimator=``: ``"straight-through"``, the gradient of the relaxed
    sample, like :class:`pyro.distributions.RelaxedBernoulliStraightThrough`;
    ``"reinmax"``; ``"gumbel-rao"``; see :mod:`pyrostruct.distributions.estimators`);
    a validated float-or-tensor ``temperature``.

    :param temperature: relaxation temperature :math:`\tau > 0` (float or tensor
        broadcastable to the batch shape).
    :param probs: probability of 1, or
    :param logits: log-odds of 1.
    :param bool hard: older spelling of ``estimator="straight-through"``.
    :param str estimator: ``"gumbel-softmax"`` (soft samples, the default),
        ``"straight-through"``, ``"reinmax"`` or ``"gumbel-rao"`` (exact ``{0, 1}``
        samples with that gradient estimator).
    :param int num_rao_samples: conditional noise draws per sample for ``"gumbel-rao"``.

    References:

    [1] C. J. Maddison, A. Mnih, Y. W. Teh, "The Concrete Distribution: A Continuous
        Relaxation of Discrete Random Variables", ICLR 2017 (Binary Concrete).
    [2] E. Jang, S. Gu, B. Poole, "Categorical Reparameterization with Gumbel-Softmax",
        ICLR 2017.
    """

    arg_constraints = {
        "temperature": constraints.positive,
        "probs": constraints.unit_interval,
        "logits": constraints.real,
    }
    support = constraints.unit_interval
    has_rsample = True

    def __init__(
        self,
        temperature,
        probs=None,
        logits=None,
        *,
        hard=False,
        estimator=None,
        num_rao_samples=None,
        validate_args=None,
    ):
        name = type(self).__name__
        self.estimator, self.num_rao_samples = resolve_estimator(
            estimator, hard, num_rao_samples, name
        )
        param = _param_tensor(probs, logits, name)
        tau = _as_temperature(temperature, param, name)
        _check_temperature_shape(tau, param.shape, name)
        self.hard = self.estimator != "gumbel-softmax"
        if probs is not None:
            super().__init__(tau, probs=param, validate_args=validate_args)
        else:
            super().__init__(tau, logits=param, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(ConcreteBernoulli, _instance)
        new = super().expand(batch_shape, _instance=new)
        new.hard = self.hard
        new.estimator, new.num_rao_samples = self.estimator, self.num_rao_samples
        return new

    def rsample(self, sample_shape=_EMPTY) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        logits = self.logits
        u = clamp_probs(torch.rand(shape, dtype=logits.dtype, device=logits.device))
        logit = (logits + (u.log() - (-u).log1p())) / self.temperature
        y = logit.sigmoid()
        if self.hard:
            y = hard_binary(
                self.estimator, y, logit, self.logits, self.temperature, self.num_rao_samples
            )
        setattr(y, _LOGIT_VALUE, logit)
        return y

    def sample(self, sample_shape=_EMPTY) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        logit = getattr(value, _LOGIT_VALUE, None)
        if logit is None:
            if self._validate_args:
                self._validate_sample(value)
            logit = value.log() - (-value).log1p()
        tau = self.temperature
        diff = self.logits - tau * logit
        return tau.log() + diff - 2 * F.softplus(diff) + F.softplus(logit) + F.softplus(-logit)


class ConcreteCategorical(TorchDistribution):
    r"""Straight-through relaxed categorical whose values are *indices*, as ``Categorical``'s.

    A sample is the exact category :math:`z = \arg\max_k(\ell_k + g_k)`,
    :math:`g_k \sim \mathrm{Gumbel}(0, 1)` (a draw from ``Categorical(logits)``,
    ``dtype=torch.long``), returned as a
    :class:`~pyrostruct.distributions.relaxed.RelaxedIndex`: a tensor that also
    carries the straight-through one-hot :math:`\hat y` behind it (forward:
    exactly ``one_hot(z)``; backward: the Gumbel-softmax sample
    :math:`y = \mathrm{softmax}((\ell + g)/\tau)`). Model code written for a
    ``Categorical`` runs unchanged and differentiably:

    - ``locs[z]``, ``locs[..., z]``, ``Vindex(locs)[..., z, :]``,
      ``torch.gather``, ``index_select``, ``F.embedding``: the forward value is
      the hard lookup ``locs[z]`` exactly; its gradient is that of
      :math:`\sum_k \hat y_k\,\mathrm{locs}[k]` (straight-through, Bengio et al.
      2013; Jang et al. 2017);
    - ``F.one_hot(z, K)`` is :math:`\hat y` (float); ``z.float()`` and floating
      arithmetic use :math:`\sum_k k\,\hat y_k` (categories as the numbers
      ``0..K-1``); ``z.long()``, ``unsqueeze``, ``reshape``, ... keep the index relaxed;
    - integer and boolean results (``z == k``, ``z + 1``) have no gradient;
      ``int(z)``, ``z.item()``, ``z.tolist()``, ``z.numpy()`` raise
      :class:`~pyrostruct.distributions.relaxed.RelaxedValueError` while a
      gradient is live, naming the site.

    ``log_prob`` is the *categorical* log-probability of the index,

    .. math::

        \log p(z) = \log \mathrm{softmax}(\ell)_z
            + \sum_k (\hat y_k - \mathrm{sg}(\hat y_k)) \log \mathrm{softmax}(\ell)_k

    (forward: exactly ``Categorical(logits).log_prob(z)``; the second term, zero
    in the forward pass, is the straight-through path of the sample, ``sg`` =
    stop-gradient). Every term of a ``Trace_ELBO`` loss then sees the hard
    value, so the loss is an unbiased estimate of the *discrete* model's ELBO
    and its gradient is the straight-through Gumbel-softmax estimate of that
    ELBO's gradient (the categorical VAE of Jang et al. 2017 likewise uses the
    categorical KL). The Concrete density of the relaxed one-hot (what
    :class:`ConcreteOneHotCategorical` scores) is not used here: with a hard
    forward value it would mix two objectives, and the Concrete KL grows
    linearly in the logit gap, which holds the posterior back: ``q`` stalls
    short of what the likelihood supports, and mixture fits with learned means
    can collapse to one component (measurements in
    ``benchmarks/results/gumbel-quick.md``). Plain integer values (e.g. from a
    ``Categorical`` guide) are scored too, without a gradient path.

    This is what :func:`pyrostruct.relax` turns a latent ``Categorical`` site
    into. What this class adds to Pyro: Pyro has no index-valued relaxed
    categorical, and its relaxed one-hot values cannot index a table.

    The gradient estimator behind :math:`\hat y` is ``estimator=``:
    ``"straight-through"`` (the default, as above), ``"reinmax"`` or ``"gumbel-rao"``
    (see :mod:`pyrostruct.distributions.estimators`); the forward value is the same
    exact index for all three. ``"gumbel-softmax"`` (soft values) is refused: an
    index cannot be soft (use :class:`ConcreteOneHotCategorical` for soft one-hots).

    :param temperature: relaxation temperature :math:`\tau > 0`.
    :param probs: event probabilities (``(..., K)``), or
    :param logits: unnormalized log probabilities (``(..., K)``).
    :param str estimator: ``"straight-through"``, ``"reinmax"`` or ``"gumbel-rao"``.
    :param int num_rao_samples: conditional noise draws per sample for ``"gumbel-rao"``.

    References:

    [1] E. Jang, S. Gu, B. Poole, "Categorical Reparameterization with Gumbel-Softmax",
        ICLR 2017 (straight-through Gumbel-softmax).
    [2] C. J. Maddison, A. Mnih, Y. W. Teh, "The Concrete Distribution", ICLR 2017.
    [3] Y. Bengio, N. Leonard, A. Courville, "Estimating or Propagating Gradients Through
        Stochastic Neurons for Conditional Computation", arXiv:1308.3432, 2013.
    """

    arg_constraints = {
        "temperature": constraints.positive,
        "probs": constraints.simplex,
        "logits": constraints.real_vector,
    }
    has_rsample = True

    def __init__(
        self,
        temperature,
        probs=None,
        logits=None,
        *,
        estimator="straight-through",
        num_rao_samples=None,
        validate_args=None,
    ):
        if estimator == "gumbel-softmax":
            raise InputError(
                "ConcreteCategorical: estimator='gumbel-softmax' gives soft samples, and an "
                "index cannot be soft; choose 'straight-through', 'reinmax' or 'gumbel-rao', "
                "or use ConcreteOneHotCategorical for soft one-hot samples."
            )
        self._one_hot = ConcreteOneHotCategorical(
            temperature,
            probs=probs,
            logits=logits,
            estimator=estimator,
            num_rao_samples=num_rao_samples,
            validate_args=validate_args,
        )
        super().__init__(self._one_hot.batch_shape, torch.Size(), validate_args=False)
        self._validate_args = self._one_hot._validate_args

    @property
    def temperature(self) -> torch.Tensor:
        return self._one_hot.temperature

    @property
    def logits(self) -> torch.Tensor:
        return self._one_hot.logits

    @property
    def estimator(self) -> str:
        return self._one_hot.estimator

    @property
    def num_rao_samples(self) -> int:
        return self._one_hot.num_rao_samples

    @property
    def probs(self) -> torch.Tensor:
        return self._one_hot.probs

    @property
    def num_categories(self) -> int:
        return self._one_hot.event_shape[-1]

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return constraints.integer_interval(0, self.num_categories - 1)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(ConcreteCategorical, _instance)
        batch_shape = torch.Size(batch_shape)
        new._one_hot = self._one_hot.expand(batch_shape)
        super(ConcreteCategorical, new).__init__(batch_shape, torch.Size(), validate_args=False)
        new._validate_args = self._validate_args
        return new

    def rsample(self, sample_shape=_EMPTY) -> RelaxedIndex:
        scores = self._one_hot._scores(sample_shape)
        log_y = scores.log_softmax(-1).detach()
        soft = scores.softmax(-1)
        # two straight-through one-hots of the same sample: one for the model's code,
        # one for log_prob, so that the hook on the first sees only the model's uses
        one_hot, scored, anchor = _two_hard_one_hots(self._one_hot, scores, soft, log_y)
        probe = _Probe()
        if one_hot.requires_grad:
            # after-backward check that the value reached the loss (see RelaxationWarning)
            one_hot.register_hook(probe.mark_value)
            anchor.register_hook(probe.check_scores)
        return RelaxedIndex.wrap(log_y.argmax(-1), one_hot, probe, scored)

    def sample(self, sample_shape=_EMPTY) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        # values derived from a sample (clone, reshape, Pyro's ExpandedDistribution, ...)
        # carry the scored one-hot too, so they get the same straight-through path
        scored = value.__dict__.get("_scored") if isinstance(value, RelaxedIndex) else None
        if isinstance(value, RelaxedIndex):
            hard = value.as_plain()
        else:
            if self._validate_args:
                self._validate_sample(value)
            hard = value.long()
        log_pmf = self.logits  # normalized: log softmax
        shape = torch.broadcast_shapes(hard.shape, self.batch_shape)
        log_pmf = log_pmf.expand(shape + log_pmf.shape[-1:])
        result = log_pmf.gather(-1, hard.expand(shape).unsqueeze(-1)).squeeze(-1)
        if scored is not None and scored.requires_grad and torch.is_grad_enabled():
            # straight-through path: d log_prob / d y_k = log p_k (finite entries)
            table = log_pmf.detach()
            table = torch.where(torch.isfinite(table), table, torch.zeros_like(table))
            result = result + ((scored - scored.detach()).to(table.dtype) * table).sum(-1)
        return result


def _two_hard_one_hots(one_hot_dist, scores, soft, log_y):
    """Two hard one-hots of one sample with ``one_hot_dist``'s estimator, and the tensor
    both get their gradient through (its backward hook runs after both have sent theirs):
    the Gumbel ``scores`` (straight-through), the logits (ReinMax), or the shared
    surrogate (Gumbel-Rao, whose conditional noise is drawn once)."""
    estimator = one_hot_dist.estimator
    logits, tau, num = one_hot_dist.logits, one_hot_dist._tau(), one_hot_dist.num_rao_samples
    if estimator == "gumbel-rao":
        index = log_y.argmax(-1, keepdim=True)
        hard = torch.zeros_like(soft).scatter_(-1, index, 1.0)
        anchor = gumbel_rao_surrogate(logits, hard, tau, num)
        args = ("straight-through", anchor, log_y, logits, tau, num)
    elif estimator == "reinmax":
        anchor = logits.expand_as(soft)
        args = (estimator, soft, log_y, anchor, tau, num)
    else:
        anchor = scores
        args = (estimator, soft, log_y, logits, tau, num)
    return hard_one_hot(*args), hard_one_hot(*args), anchor


class NoRelaxationError(NotImplementedError, ValueError):
    """A latent discrete site whose distribution has no Gumbel-softmax relaxation.

    Both a ``NotImplementedError`` (Pyro's convention for unsupported
    distributions) and a ``ValueError`` (pyrostruct's convention for bad input).
    """


#: Distributions that :func:`relax` produces (a site holding one is already relaxed).
RELAXED_TYPES = (ConcreteBernoulli, ConcreteOneHotCategorical, ConcreteCategorical)


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
