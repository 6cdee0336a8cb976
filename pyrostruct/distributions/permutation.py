"""Plackett-Luce distribution over permutations, with a straight-through rsample."""

from __future__ import annotations

import itertools

import torch
from pyro.distributions import TorchDistribution, constraints
from torch.distributions.utils import lazy_property

from ._dag_ops import (
    attach_order,
    get_order,
    gumbel_perturb,
    order_from_scores,
    plackett_luce_log_prob,
)
from .temperature import current_temperature

__all__ = [
    "PlackettLuce",
    "permutation_matrix",
    "relaxed_permutation_matrix",
    "MAX_ENUMERATE_PERMUTATION",
]

_EMPTY = torch.Size()

#: Largest number of items for which ``enumerate_support`` lists all d! permutations.
MAX_ENUMERATE_PERMUTATION = 8

_RELAXATIONS = ("softsort", "sinkhorn")


def permutation_matrix(order: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One-hot permutation matrix of an order: ``P[..., k, order[..., k]] = 1``.

    ``P @ x`` lists ``x`` in the order's sequence; ``P.argmax(-1)`` gives the order back.
    """
    d = order.shape[-1]
    out = torch.zeros(order.shape + (d,), dtype=dtype, device=order.device)
    return out.scatter_(-1, order.unsqueeze(-1), 1.0)


def relaxed_permutation_matrix(
    g: torch.Tensor, temperature: float, method: str = "softsort", sinkhorn_iters: int = 20
) -> torch.Tensor:
    """Relaxed permutation matrix of (perturbed) scores ``g``, rows = positions.

    SoftSort (Prillo & Eisenschlos 2020): ``P[k, i] = softmax_i(-|sort(g)_k - g_i| / tau)``.
    Sinkhorn (Mena et al. 2018): the same kernel, normalised to a doubly stochastic
    matrix by ``sinkhorn_iters`` alternating row/column normalisations in log space.
    Cost O(d^2) per sample (plus O(d^2) per Sinkhorn iteration).
    """
    if method not in _RELAXATIONS:
        raise ValueError(f"Expected method in {_RELAXATIONS}, got {method!r}.")
    sorted_g = torch.sort(g, dim=-1, descending=True, stable=True).values
    log_alpha = -(sorted_g.unsqueeze(-1) - g.unsqueeze(-2)).abs() / temperature
    if method == "softsort":
        return torch.softmax(log_alpha, dim=-1)
    for _ in range(sinkhorn_iters):
        log_alpha = log_alpha - log_alpha.logsumexp(-1, keepdim=True)
        log_alpha = log_alpha - log_alpha.logsumexp(-2, keepdim=True)
    return log_alpha.exp()


class _PermutationMatrices(constraints.Constraint):
    """One-hot ``(d, d)`` matrices with exactly one 1 in every row and column."""

    is_discrete = True
    event_dim = 2

    def __init__(self, num_items: int):
        self.num_items = num_items
        super().__init__()

    def check(self, value):
        binary = ((value == 0) | (value == 1)).all(-1).all(-1)
        rows = (value.sum(-1) == 1).all(-1)
        cols = (value.sum(-2) == 1).all(-1)
        return binary & rows & cols

    def __repr__(self):
        return f"{type(self).__name__}(num_items={self.num_items})"


class PlackettLuce(TorchDistribution):
    r"""Plackett-Luce distribution over permutations of ``d`` items.

    Items are placed one after the other; the next item is drawn among those
    not yet placed with probability proportional to ``exp(score)``:

    .. math::

        p(\pi) = \prod_{k=1}^{d} \frac{\exp s_{\pi_k}}{\sum_{m \ge k} \exp s_{\pi_m}} .

    Sampling is Gumbel-top-k: ``pi = argsort(s + Gumbel noise, descending)``
    (ties broken by the lower index, so every draw is a permutation).

    **Representation.** A value is a one-hot permutation matrix of event shape
    ``(d, d)``: ``P[..., k, i] = 1`` iff item ``i`` is at position ``k``
    (position 0 is placed first). The order vector ``order[..., k]`` (the
    item at position ``k``) is ``P.argmax(-1)``; sampled matrices also carry it
    (read it with :func:`~pyrostruct.distributions.get_order` or use
    :meth:`rsample_with_order`), and ``P @ x`` lists ``x`` in sampled order.

    **Gradients.** :meth:`rsample` returns the exact hard permutation matrix
    in the forward pass; its gradient is that of a relaxed permutation matrix of
    the perturbed scores (straight-through): SoftSort by default, or
    Gumbel-Sinkhorn with ``relaxation="sinkhorn"``. The temperature only
    changes the gradient, never the forward value.

    :param torch.Tensor scores: real scores of shape ``batch_shape + (d,)``.
    :param temperature: temperature of the relaxation (> 0): a float, a one-element
        tensor (no gradient), or a schedule with a ``.temperature`` attribute (e.g.
        :class:`~pyrostruct.distributions.temperature.ExponentialSchedule`), read at every
        ``rsample``.
    :param str relaxation: ``"softsort"`` or ``"sinkhorn"``.
    :param int sinkhorn_iters: Sinkhorn iterations (default 20).

    References:

    [1] R. L. Plackett, "The Analysis of Permutations", Applied Statistics, 1975.
    [2] S. Prillo, J. Eisenschlos, "SoftSort: A Continuous Relaxation for the argsort
        Operator", ICML 2020.
    [3] G. Mena, D. Belanger, S. Linderman, J. Snoek, "Learning Latent Permutations with
        Gumbel-Sinkhorn Networks", ICLR 2018.
    [4] W. Kool, H. van Hoof, M. Welling, "Stochastic Beams and Where to Find Them: The
        Gumbel-Top-k Trick", ICML 2019.
    """

    is_structural = True  # see pyrostruct.distributions.util.is_structural
    arg_constraints = {"scores": constraints.real_vector}
    has_rsample = True
    has_enumerate_support = True

    def __init__(
        self,
        scores: torch.Tensor,
        *,
        temperature: float = 1.0,
        relaxation: str = "softsort",
        sinkhorn_iters: int = 20,
        validate_args=None,
    ):
        if not isinstance(scores, torch.Tensor):
            scores = torch.as_tensor(scores, dtype=torch.get_default_dtype())
        if not scores.is_floating_point():  # integer or boolean scores: as Pyro's floats
            scores = scores.to(torch.get_default_dtype())
        if scores.dim() < 1 or scores.shape[-1] < 1:
            raise ValueError(
                f"Expected scores of shape batch_shape + (d,) with d >= 1, "
                f"got {tuple(scores.shape)}."
            )
        current_temperature(temperature, name="PlackettLuce: temperature", scalar=True)
        if relaxation not in _RELAXATIONS:
            raise ValueError(f"Expected relaxation in {_RELAXATIONS}, got {relaxation!r}.")
        if int(sinkhorn_iters) < 1:
            raise ValueError(f"Expected sinkhorn_iters >= 1, got {sinkhorn_iters}.")
        if _validating(validate_args) and not bool(torch.isfinite(scores).all()):
            raise ValueError(
                "PlackettLuce got scores with NaN or infinite entries; scores must be finite."
            )
        self.scores = scores
        self.num_items = scores.shape[-1]
        self.temperature = temperature
        self.relaxation = relaxation
        self.sinkhorn_iters = int(sinkhorn_iters)
        d = self.num_items
        super().__init__(scores.shape[:-1], torch.Size((d, d)), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=2)
    def support(self):
        return _PermutationMatrices(self.num_items)

    @classmethod
    def infer_shapes(cls, scores, **kwargs):
        """Shapes from the shape of ``scores``: ``batch_shape = scores[:-1]``, ``event_shape =
        (d, d)``; the other arguments do not enter."""
        d = scores[-1]
        return torch.Size(scores[:-1]), torch.Size((d, d))

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(PlackettLuce, _instance)
        batch_shape = torch.Size(batch_shape)
        new.scores = self.scores.expand(batch_shape + (self.num_items,))
        new.num_items = self.num_items
        new.temperature = self.temperature
        new.relaxation = self.relaxation
        new.sinkhorn_iters = self.sinkhorn_iters
        super(PlackettLuce, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    # -- sampling ---------------------------------------------------------
    def sample_order(self, sample_shape=_EMPTY) -> torch.Tensor:
        """Orders (long, shape ``sample_shape + batch_shape + (d,)``) by Gumbel-top-k."""
        shape = torch.Size(sample_shape) + self.batch_shape + (self.num_items,)
        with torch.no_grad():
            return order_from_scores(gumbel_perturb(self.scores.expand(shape)))

    def rsample_with_order(self, sample_shape=_EMPTY):
        """``(P, order)``: straight-through permutation matrix and its order vector."""
        shape = torch.Size(sample_shape) + self.batch_shape + (self.num_items,)
        g = gumbel_perturb(self.scores.expand(shape))
        order = order_from_scores(g.detach())
        hard = permutation_matrix(order, dtype=g.dtype)
        if g.requires_grad:
            soft = relaxed_permutation_matrix(
                g,
                current_temperature(self.temperature, scalar=True),
                self.relaxation,
                self.sinkhorn_iters,
            )
            hard = hard + (soft - soft.detach())
        return attach_order(hard, order), order

    def rsample(self, sample_shape=_EMPTY) -> torch.Tensor:
        return self.rsample_with_order(sample_shape)[0]

    def sample(self, sample_shape=_EMPTY) -> torch.Tensor:
        order = self.sample_order(sample_shape)
        return attach_order(permutation_matrix(order, dtype=self.scores.dtype), order)

    # -- densities --------------------------------------------------------
    def log_prob_order(self, order: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(order)`` for order vectors (``order[..., k]`` = item at position k)."""
        if self._validate_args:
            check_order(order, self.num_items)
        scores = self.scores
        shape = torch.broadcast_shapes(scores.shape, order.shape)
        return plackett_luce_log_prob(scores.expand(shape), order.expand(shape))

    def log_prob(self, value: torch.Tensor, order: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log-probability of a permutation matrix (its attached order is used if present)."""
        if self._validate_args:
            self._validate_sample(value)
        if order is None:
            order = get_order(value)
        if order is None:
            order = value.argmax(-1)
        return self.log_prob_order(order)

    def _support_orders(self) -> torch.Tensor:
        """The order vectors of the support, ``(m, d)``."""
        d = self.num_items
        if d > MAX_ENUMERATE_PERMUTATION:
            raise NotImplementedError(
                f"enumerate_support lists d! permutations; only d <= "
                f"{MAX_ENUMERATE_PERMUTATION} is supported, got d = {d}."
            )
        return torch.tensor(list(itertools.permutations(range(d))), device=self.scores.device)

    def enumerate_support(self, expand=True):
        """All d! permutation matrices (``d <= MAX_ENUMERATE_PERMUTATION``)."""
        d = self.num_items
        orders = self._support_orders()
        values = permutation_matrix(orders, dtype=self.scores.dtype)
        values = values.reshape((len(orders),) + (1,) * len(self.batch_shape) + (d, d))
        if expand:
            values = values.expand((len(orders),) + self.batch_shape + (d, d))
        return values

    @lazy_property
    def mode(self):
        """The most probable permutation: items by descending score."""
        return permutation_matrix(order_from_scores(self.scores), dtype=self.scores.dtype)


def check_order(order: torch.Tensor, d: int) -> None:
    """Refuse an ``order`` ``(..., d)`` that is not a permutation of ``0 .. d-1`` along its
    last dim (it would be scored as if it were one)."""
    if not isinstance(order, torch.Tensor) or order.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"order must be an integer tensor (..., {d}), got {order!r}")
    if order.shape[-1:] != (d,) or not bool(
        (order.sort(-1).values == torch.arange(d, device=order.device)).all()
    ):
        raise ValueError(f"order must be a permutation of 0..{d - 1} along its last dim: {order}")


def _validating(validate_args) -> bool:
    from torch.distributions import Distribution

    return Distribution._validate_args if validate_args is None else bool(validate_args)
