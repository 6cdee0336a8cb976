"""An index-valued relaxed categorical: :class:`ConcreteCategorical`, the relaxation that
:func:`pyrostruct.relax` uses for ``Categorical`` sites.

Its samples are exact ``long`` indices (:class:`~pyrostruct.distributions.RelaxedIndex`)
that carry the straight-through (or ReinMax / Gumbel-Rao) gradient of the
:class:`~pyrostruct.distributions.ConcreteOneHotCategorical` draw behind them.
"""

from __future__ import annotations

import torch
from pyro.distributions import TorchDistribution, constraints

from pyrostruct.distributions._relaxed_index import (
    RelaxedIndex,
    _Probe,
)
from pyrostruct.distributions.estimators import (
    gumbel_rao_surrogate,
    hard_one_hot,
    log_softmax,
)
from pyrostruct.distributions.relaxed import (
    _EMPTY,
    ConcreteOneHotCategorical,
)
from pyrostruct.errors import InputError

__all__ = ["ConcreteCategorical"]


class ConcreteCategorical(TorchDistribution):
    r"""Straight-through relaxed categorical whose values are *indices*, as ``Categorical``'s.

    A sample is the exact category :math:`z = \arg\max_k(\ell_k + g_k)`,
    :math:`g_k \sim \mathrm{Gumbel}(0, 1)` (a draw from ``Categorical(logits)``,
    ``dtype=torch.long``), returned as a
    :class:`~pyrostruct.distributions._relaxed_index.RelaxedIndex`: a tensor that also
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
      :class:`~pyrostruct.distributions._relaxed_index.RelaxedValueError` while a
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
        log_soft = log_softmax(scores)
        log_y = log_soft.detach()
        # two straight-through one-hots of the same sample: one for the model's code,
        # one for log_prob, so that the hook on the first sees only the model's uses
        one_hot, scored, anchor = _two_hard_one_hots(self._one_hot, scores, log_soft)
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


def _two_hard_one_hots(one_hot_dist, scores, log_soft):
    """Two hard one-hots of one sample with ``one_hot_dist``'s estimator, and the tensor
    both get their gradient through (its backward hook runs after both have sent theirs):
    the Gumbel ``scores`` (straight-through, through the soft sample ``exp(log_soft)``),
    the logits (ReinMax), or the shared surrogate (Gumbel-Rao, whose conditional noise is
    drawn once)."""
    estimator = one_hot_dist.estimator
    logits, tau, num = one_hot_dist.logits, one_hot_dist._tau(), one_hot_dist.num_rao_samples
    log_y = log_soft.detach()
    if estimator == "gumbel-rao":
        index = log_y.argmax(-1, keepdim=True)
        hard = torch.zeros_like(log_y).scatter_(-1, index, 1.0)
        anchor = gumbel_rao_surrogate(logits, hard, tau, num)
        args = ("straight-through", anchor, log_y, logits, tau, num)
    elif estimator == "reinmax":
        anchor = logits.expand_as(log_y)
        args = (estimator, None, log_y, anchor, tau, num)
    else:
        anchor = scores
        args = (estimator, log_soft.exp(), log_y, logits, tau, num)
    return hard_one_hot(*args), hard_one_hot(*args), anchor
