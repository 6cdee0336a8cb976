r"""Gradient estimators for hard (exactly discrete) samples of relaxed variables.

Every estimator here has the same forward value, the exact discrete draw
:math:`D = \mathrm{one\_hot}(\arg\max_k(\ell_k + g_k))` (a ``{0, 1}`` value for a
Bernoulli), so a model sees an exact sample of ``Categorical(logits)``; they differ
only in the gradient they give :math:`\partial f(D)/\partial \ell`. With
:math:`\nabla_D f` the gradient of the loss at the hard value:

``"gumbel-softmax"``
    no hard value: the sample *is* :math:`y = \mathrm{softmax}((\ell + g)/\tau)`
    (Jang et al. 2017; Maddison et al. 2017). Unbiased for the relaxed objective,
    biased for the discrete one; the model must accept points of the simplex.
``"straight-through"``
    forward :math:`D`, backward :math:`\nabla_D f \cdot \partial y/\partial \ell`
    (straight-through Gumbel-softmax, Jang et al. 2017; Bengio et al. 2013):
    first-order accurate, biased, variance growing as :math:`\tau \to 0`. One
    softmax per sample.
``"reinmax"``
    forward :math:`D`, backward (Liu et al. 2023, Algorithm 2)

    .. math::

        \hat\nabla_\ell = 2\,J(\pi_1)\,\nabla_D f - \tfrac12\,J(\pi_0)\,\nabla_D f,
        \qquad \pi_0 = \mathrm{softmax}(\ell),\quad
        \pi_1 = \tfrac12\big(D + \mathrm{softmax}(\ell/\tau)\big),

    with :math:`J(p) = \mathrm{diag}(p) - p p^\top` the Jacobian of softmax. It is
    Heun's (trapezoidal) rule for :math:`f(D) - f(E[D])` instead of
    straight-through's Euler step: second-order accurate, so at :math:`\tau = 1`
    it is *unbiased* for a quadratic :math:`f` (and a multilinear one of independent
    Bernoullis). It uses no Gumbel noise in the backward pass; :math:`\tau` (the
    paper recommends :math:`\tau \ge 1`) only shifts :math:`\pi_1`. Cost: two
    softmax Jacobian products per sample.
``"gumbel-rao"``
    forward :math:`D`, backward the straight-through gradient averaged over the
    Gumbel noise *given* :math:`D` (Paulus, Maddison & Krause 2021):

    .. math::

        \hat\nabla_\ell = \nabla_D f \cdot \frac1K \sum_{j=1}^K
            \frac{\partial}{\partial \ell}\,
            \mathrm{softmax}\big((\ell + \mathrm{sg}(\tilde g_j))/\tau\big),
        \qquad \tilde g_j \sim g \mid \arg\max(\ell + g) = D,

    a Rao-Blackwellization of straight-through Gumbel-softmax: the same mean, a
    variance no larger (strictly lower for :math:`K > 1` unless the Jacobian
    is constant given :math:`D`). The conditional noise is drawn with the
    truncated-Gumbel construction (:func:`conditional_gumbel`). Cost: :math:`K`
    softmaxes per sample (``num_rao_samples``); :math:`f` is evaluated once.

References:

[1] E. Jang, S. Gu, B. Poole, "Categorical Reparameterization with Gumbel-Softmax",
    ICLR 2017.
[2] Y. Bengio, N. Leonard, A. Courville, "Estimating or Propagating Gradients Through
    Stochastic Neurons for Conditional Computation", arXiv:1308.3432, 2013.
[3] L. Liu, C. Dong, X. Liu, B. Yu, J. Gao, "Bridging Discrete and Backpropagation:
    Straight-Through and Beyond", NeurIPS 2023 (ReinMax).
[4] M. B. Paulus, C. J. Maddison, A. Krause, "Rao-Blackwellizing the Straight-Through
    Gumbel-Softmax Gradient Estimator", ICLR 2021 (Gumbel-Rao).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.distributions.utils import clamp_probs

from pyrostruct.errors import InputError

__all__ = [
    "ESTIMATORS",
    "DEFAULT_NUM_RAO_SAMPLES",
    "resolve_estimator",
    "conditional_gumbel",
    "hard_one_hot",
    "hard_binary",
]

#: The estimator names accepted by the relaxed distributions, ``relax`` and the guides.
ESTIMATORS = ("gumbel-softmax", "straight-through", "reinmax", "gumbel-rao")
#: Conditional noise draws per sample for ``"gumbel-rao"`` (Paulus et al. use 10 to 1000).
#: On the 8 x 8 categorical VAE of ``benchmarks/gumbel_rao_draws.py`` a step costs
#: 1.17x / 1.23x / 1.40x / 2.11x straight-through's with 3 / 5 / 10 / 30 draws, for a
#: gradient noise-to-signal ratio of 10.0 / 6.6 / 4.0 / 2.5 at temperature 0.1
#: (straight-through 24) and 1.76 / 1.43 / 1.18 / 1.04 at 0.5 (straight-through 3.38): 5
#: keeps most of the variance reduction within 1.3x straight-through's time.
DEFAULT_NUM_RAO_SAMPLES = 5


def resolve_estimator(
    estimator: str | None, hard, num_rao_samples, name: str, *, default: str | None = None
) -> tuple[str, int]:
    """Validate ``estimator`` (with ``hard`` as its older alias) and ``num_rao_samples``.

    ``estimator=None`` means ``"straight-through"`` if ``hard`` else ``"gumbel-softmax"``
    (or ``default`` when one is given); ``hard=True`` with ``"gumbel-softmax"``
    (the only soft estimator) is a contradiction.

    :returns: ``(estimator, num_rao_samples)``.
    :raises InputError: naming the choices, for an unknown estimator, a non-bool
        ``hard``, a contradiction, or a ``num_rao_samples`` that is not a positive int.
    """
    if not isinstance(hard, bool):
        raise InputError(f"{name}: hard must be True or False, got {hard!r}.")
    if estimator is None:
        estimator = "straight-through" if hard else (default or "gumbel-softmax")
    if not isinstance(estimator, str) or estimator not in ESTIMATORS:
        raise InputError(
            f"{name}: unknown estimator {estimator!r}; choose one of "
            f"{', '.join(repr(e) for e in ESTIMATORS)}."
        )
    if hard and estimator == "gumbel-softmax":
        raise InputError(
            f"{name}: hard=True contradicts estimator='gumbel-softmax' (soft samples). Drop "
            "hard=True, or pick a hard estimator: 'straight-through', 'reinmax', 'gumbel-rao'."
        )
    if num_rao_samples is None:
        num_rao_samples = DEFAULT_NUM_RAO_SAMPLES
    if isinstance(num_rao_samples, bool) or not isinstance(num_rao_samples, int):
        raise InputError(
            f"{name}: num_rao_samples must be a positive int, got {num_rao_samples!r}."
        )
    if num_rao_samples < 1:
        raise InputError(f"{name}: num_rao_samples must be >= 1, got {num_rao_samples}.")
    return estimator, num_rao_samples


class _ReplaceGradient(torch.autograd.Function):
    """Forward: ``hard`` exactly; backward: the incoming gradient goes to ``surrogate``."""

    @staticmethod
    def forward(ctx, surrogate, hard):
        return hard.to(surrogate.dtype).clone()

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _softmax_jvp(p: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """:math:`(\\mathrm{diag}(p) - p p^\\top)\\,g`, the softmax Jacobian (symmetric) times g."""
    gp = grad * p
    return torch.addcmul(gp, p, gp.sum(-1, keepdim=True), value=-1.0)


class _ReinMaxOneHot(torch.autograd.Function):
    """Forward: the one-hot ``hard``; backward: ReinMax's gradient w.r.t. ``logits``."""

    @staticmethod
    def forward(ctx, logits, hard, tau):
        pi0 = softmax(logits)
        pi1 = 0.5 * (hard + softmax(logits / tau))
        ctx.save_for_backward(pi0, pi1)
        return hard.clone()

    @staticmethod
    def backward(ctx, grad):
        pi0, pi1 = ctx.saved_tensors
        return 2.0 * _softmax_jvp(pi1, grad) - 0.5 * _softmax_jvp(pi0, grad), None, None


class _ReinMaxBinary(torch.autograd.Function):
    """ReinMax for a Bernoulli (two categories with logits ``(0, l)``): forward ``hard``."""

    @staticmethod
    def forward(ctx, logits, hard, tau):
        p0 = logits.sigmoid()
        p1 = 0.5 * (hard + (logits / tau).sigmoid())
        ctx.save_for_backward(p0, p1)
        return hard.clone()

    @staticmethod
    def backward(ctx, grad):
        p0, p1 = ctx.saved_tensors
        return grad * (2.0 * p1 * (1 - p1) - 0.5 * p0 * (1 - p0)), None, None


@torch.no_grad()
def conditional_gumbel(logits: torch.Tensor, hard: torch.Tensor, num_samples: int) -> torch.Tensor:
    r"""Gumbel noise :math:`g` given :math:`\arg\max_k(\ell_k + g_k) = D`, ``num_samples`` draws.

    Truncated-Gumbel construction (Maddison et al. 2014, "A* Sampling"; Paulus et al.
    2021): the maximum :math:`M = \max_k(\ell_k + g_k)` is
    :math:`\mathrm{Gumbel}(\log Z)`, independent of the argmax, drawn as
    :math:`M = \log Z - \log E_D`; every other coordinate is a Gumbel of location
    :math:`\ell_j` truncated below :math:`M`,
    :math:`\ell_j + g_j = -\log(E_j e^{-\ell_j} + e^{-M})`, with
    :math:`E \sim \mathrm{Exp}(1)` i.i.d.; evaluated in log space (finite for any
    finite logits).

    :param logits: ``(..., K)`` logits :math:`\ell`.
    :param hard: ``(..., K)`` one-hot :math:`D` (broadcastable with ``logits``).
    :param int num_samples: number of draws (a new leading dimension).
    :returns: the noise :math:`g` (0 where a logit is infinite), of shape
        ``(num_samples, ...broadcast shape..., K)``.
    """
    top, gaps = _truncation_gaps(logits, hard, num_samples)
    noise = (top - logits).sub_(gaps)  # l_j + g_j = M - gap_j
    finite = torch.isfinite(logits)
    if not bool(finite.all()):  # a category of probability 0 (logit -inf): no noise, not nan
        noise = noise.masked_fill(~finite, 0.0)
    return noise


def _truncation_gaps(logits: torch.Tensor, hard: torch.Tensor, num_samples: int):
    """The draws of :func:`conditional_gumbel` as ``(M, gaps)``: the maximum ``M``
    ``(num_samples, ..., 1)`` and ``gap_j = M - (l_j + g_j) >= 0`` (0 at the argmax,
    ``inf`` for a logit ``-inf``), the truncated coordinates being
    ``-logaddexp(log E_j - l_j, -M) = M - softplus(log E_j - l_j + M)``."""
    shape = (num_samples,) + torch.broadcast_shapes(logits.shape, hard.shape)
    u = clamp_probs(torch.rand(shape, dtype=logits.dtype, device=logits.device))
    log_e = u.log_().neg_().log_()  # log of Exp(1) draws (in place: one buffer throughout)
    index = hard.argmax(-1, keepdim=True).expand(shape[:-1] + (1,))
    top = logits.logsumexp(-1, keepdim=True) - log_e.gather(-1, index)
    gaps = F.softplus(log_e.sub_(logits).add_(top))
    return top, gaps.scatter_(-1, index, 0.0)


def _conditional_softmax(logits, hard, tau, num_samples: int) -> torch.Tensor:
    """``softmax((logits + g_s) / tau)`` over ``num_samples`` conditional draws ``g_s``: the
    argmax ``D`` holds the maximum, so it is ``exp(-gap / tau)`` normalized, and with the
    draws of :func:`_truncation_gaps` (``E ~ Exp(1)``, ``p = softmax(logits)``) the gap is
    ``log1p(E_j / (p_j E_D))``: one log per draw, no logsumexp, no max to subtract."""
    shape = (num_samples,) + torch.broadcast_shapes(logits.shape, hard.shape)
    u = clamp_probs(torch.rand(shape, dtype=logits.dtype, device=logits.device))
    e = u.log_().neg_()  # Exp(1) draws, in place (the same draws as _truncation_gaps)
    index = hard.argmax(-1, keepdim=True).expand(shape[:-1] + (1,))
    ratio = e.div_(softmax(logits) * e.gather(-1, index)).scatter_(-1, index, 0.0)
    q = (ratio.log1p_() / -tau).exp_()  # tau may broadcast the draws to a larger batch shape
    return q.div_(q.sum(-1, keepdim=True))


class _GumbelRao(torch.autograd.Function):
    """Forward: ``hard``; backward: the gradient of the Gumbel-Rao surrogate, the mean
    over the conditional draws ``g_s`` of ``softmax((logits + g_s) / tau)`` (one-hot) or
    ``sigmoid((logits + n_s) / tau)`` (``binary``), their Jacobians applied directly (no
    autograd graph over the draws). ``probs``: those softmaxes ``(S, ..., K)`` or
    sigmoids ``(S, ...)``."""

    @staticmethod
    def forward(ctx, logits, hard, tau, probs, binary):
        ctx.save_for_backward(probs, tau)
        ctx.binary = binary
        return hard.clone()

    @staticmethod
    def backward(ctx, grad):
        p, tau = ctx.saved_tensors
        jvp = grad * p * (1 - p) if ctx.binary else _softmax_jvp(p, grad)
        return jvp.mean(0) / tau, None, None, None, None


def gumbel_rao_surrogate(
    logits: torch.Tensor, hard: torch.Tensor, tau: torch.Tensor, num_samples: int
) -> torch.Tensor:
    """Mean over ``num_samples`` conditional draws of ``softmax((logits + sg(g)) / tau)``
    (the quantity whose gradient ``"gumbel-rao"`` passes; the estimator itself applies it
    without building this graph)."""
    noise = conditional_gumbel(logits.detach(), hard, num_samples)
    return softmax((logits + noise) / tau).mean(0)


#: Up to this many categories :func:`log_softmax` and :func:`softmax` use elementwise ops,
#: faster on CPU than torch's kernels for a small last dimension (forward and backward, one
#: thread: 4-5x at 2-8 categories, equal at 32, 2x slower at 128).
SMALL_EVENT = 32


def log_softmax(x: torch.Tensor) -> torch.Tensor:
    """``x.log_softmax(-1)``, in elementwise ops when the last dimension is small."""
    if x.size(-1) > SMALL_EVENT:
        return x.log_softmax(-1)
    shifted = x - x.detach().amax(-1, keepdim=True)  # the shift cancels: no gradient needed
    return shifted - shifted.exp().sum(-1, keepdim=True).log()


def softmax(x: torch.Tensor) -> torch.Tensor:
    """``x.softmax(-1)``, in elementwise ops when the last dimension is small."""
    if x.size(-1) > SMALL_EVENT:
        return x.softmax(-1)
    e = (x - x.detach().amax(-1, keepdim=True)).exp()
    return e / e.sum(-1, keepdim=True)


def _binary_pair(logits: torch.Tensor, hard: torch.Tensor):
    """A Bernoulli as two categories with logits ``(0, l)`` and its one-hot."""
    pair = torch.stack([torch.zeros_like(logits), logits.detach()], -1)
    return pair, torch.stack([1 - hard, hard], -1)


def _binary_noise(logits: torch.Tensor, hard: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Logistic noise ``n`` given ``1[logits + n > 0] = hard``, ``num_samples`` draws."""
    noise = conditional_gumbel(*_binary_pair(logits, hard), num_samples)
    return noise[..., 1] - noise[..., 0]


def _binary_conditional_sigmoid(logits, hard, tau, num_samples: int) -> torch.Tensor:
    """``sigmoid((logits + n_s) / tau)`` over ``num_samples`` conditional draws."""
    pair, pair_hard = _binary_pair(logits, hard)
    tau = tau.unsqueeze(-1) if tau.dim() else tau  # over the pair's new last dimension
    return _conditional_softmax(pair, pair_hard, tau, num_samples)[..., 1]


def gumbel_rao_binary_surrogate(
    logits: torch.Tensor, hard: torch.Tensor, tau: torch.Tensor, num_samples: int
) -> torch.Tensor:
    """Gumbel-Rao for a Bernoulli: mean of ``sigmoid((logits + sg(n)) / tau)``, ``n`` the
    logistic noise given ``1[logits + n > 0] = hard`` (two categories, logits ``(0, l)``)."""
    logistic = _binary_noise(logits, hard, num_samples)
    return ((logits + logistic) / tau).sigmoid().mean(0)


def hard_one_hot(
    estimator: str,
    soft: torch.Tensor | None,
    log_soft: torch.Tensor,
    logits: torch.Tensor,
    tau: torch.Tensor,
    num_rao_samples: int,
) -> torch.Tensor:
    """The exact one-hot of ``argmax(log_soft)`` with ``estimator``'s gradient.

    :param soft: the tensor whose gradient straight-through passes (the Gumbel-softmax
        sample ``softmax((logits + g)/tau)`` with its graph); ``None`` for the estimators
        that do not use it (ReinMax, Gumbel-Rao).
    :param log_soft: the log of the Gumbel-softmax sample (only its argmax is used).
    :param logits: the normalized logits (``(..., K)``, broadcastable to ``log_soft``).
    :param tau: temperature, broadcastable to ``log_soft`` (trailing dimension of size 1).
    """
    index = log_soft.detach().argmax(-1, keepdim=True)
    hard = torch.zeros_like(log_soft).scatter_(-1, index, 1.0).detach()
    return _with_gradient(
        estimator, soft, hard, logits, tau, num_rao_samples, _ReinMaxOneHot, _conditional_softmax
    )


def hard_binary(
    estimator: str,
    soft: torch.Tensor,
    logit: torch.Tensor,
    logits: torch.Tensor,
    tau: torch.Tensor,
    num_rao_samples: int,
) -> torch.Tensor:
    """The exact ``1[logit > 0]`` with ``estimator``'s gradient (Bernoulli version)."""
    hard = (logit.detach() > 0).to(logit.dtype)
    return _with_gradient(
        estimator, soft, hard, logits, tau, num_rao_samples, _ReinMaxBinary,
        _binary_conditional_sigmoid,
    )  # fmt: skip


def _with_gradient(estimator, soft, hard, logits, tau, num_rao_samples, reinmax, relaxed):
    """``hard`` going forward, ``estimator``'s gradient w.r.t. ``logits`` going back; the
    family (one-hot or binary) supplies its ReinMax function and the relaxed values of its
    conditional draws."""
    if estimator == "straight-through":
        return _ReplaceGradient.apply(soft, hard)
    if estimator == "reinmax":
        return reinmax.apply(logits.expand_as(hard), hard, tau)
    if estimator == "gumbel-rao":
        tau = torch.as_tensor(tau, dtype=hard.dtype, device=hard.device).detach()
        with torch.no_grad():
            probs = relaxed(logits.detach(), hard, tau, num_rao_samples)
        binary = reinmax is _ReinMaxBinary  # the Bernoulli family: sigmoids, not softmaxes
        return _GumbelRao.apply(logits.expand_as(hard), hard, tau, probs, binary)
    raise ValueError(f"{estimator!r} has no hard value.")
