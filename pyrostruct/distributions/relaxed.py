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
The index-valued :class:`~pyrostruct.distributions.ConcreteCategorical` (the
relaxation :func:`pyrostruct.relax` uses for ``Categorical`` sites) is in
``concrete_categorical.py``, the index tensor behind it in ``_relaxed_index.py``,
the mapping from Pyro's discrete families to the relaxations
(:func:`~pyrostruct.distributions.relaxation.relax_distribution`) in
``relaxation.py``, the gradient estimators of hard samples in ``estimators.py``.

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
from pyro.distributions import constraints
from torch.distributions.utils import clamp_probs

from pyrostruct.distributions.estimators import (
    hard_binary,
    hard_one_hot,
    log_softmax,
    resolve_estimator,
)
from pyrostruct.distributions.temperature import current_temperature

__all__ = ["ConcreteOneHotCategorical", "ConcreteBernoulli"]

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
        log_y = log_softmax(self._scores(sample_shape))
        if not self.hard:
            y = log_y.exp()
        else:  # only straight-through passes its gradient through the soft sample
            soft = log_y.exp() if self.estimator == "straight-through" else None
            y = hard_one_hot(
                self.estimator, soft, log_y, self.logits, self._tau(), self.num_rao_samples
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
    """Concrete log density at the log-space point ``log_y`` (see the class docstring).

    A category of logit ``-inf`` is never drawn (``y = 0`` there): the density lives on
    the face of the simplex of the others, a Concrete distribution over those (its
    terms there were ``-inf + inf``, NaN)."""
    tau_batch = tau.squeeze(-1) if tau.dim() else tau
    possible = ~torch.isneginf(logits)
    if bool(possible.all()):
        num_events = logits.size(-1)
        score = logits - tau * log_y
        log_norm = math.lgamma(num_events) + (num_events - 1) * tau_batch.log()
        return log_norm + (score - score.logsumexp(-1, keepdim=True)).sum(-1) - log_y.sum(-1)
    num_events = possible.sum(-1).to(log_y.dtype)
    score = torch.where(possible, logits - tau * log_y, -math.inf)
    terms = torch.where(possible, score - score.logsumexp(-1, keepdim=True) - log_y, 0.0)
    log_norm = torch.lgamma(num_events) + (num_events - 1) * tau_batch.log()
    off_face = (~possible & (log_y > -math.inf)).any(-1)  # mass where none can be
    return torch.where(off_face, -math.inf, log_norm + terms.sum(-1))


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
    exactly 0 or 1, and its ``log1p(exp(.))`` overflows; a value of exactly 0 or
    1 without its logit, such as a detached hard sample, gets the density's limit:
    ``+inf`` for ``tau < 1``, ``-inf`` for ``tau > 1``); noise built from
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
        edge = torch.isinf(logit)  # y exactly 0 or 1 (a detached hard sample): the limit
        if bool(edge.any()):
            safe = torch.where(edge, 0.0, logit)
            limit = torch.where(  # +inf (tau < 1), -inf (tau > 1); -+logits at tau = 1
                tau < 1, math.inf, torch.where(tau > 1, -math.inf, torch.sign(logit) * self.logits)
            )
            return torch.where(edge, limit, self._log_density(safe, tau))
        return self._log_density(logit, tau)

    def _log_density(self, logit, tau):
        diff = self.logits - tau * logit
        return tau.log() + diff - 2 * F.softplus(diff) + F.softplus(logit) + F.softplus(-logit)
