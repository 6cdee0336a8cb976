"""Plackett-Luce restricted to the linear extensions of a partial order.

Background knowledge on a causal order (temporal tiers, required edges) says that
some items must come before others: ``precedes[i, j] = True`` means ``i`` before
``j``. :class:`PartialOrderPlackettLuce` places the items one after the other as
Plackett-Luce does, but chooses each next item only among the *available* ones,
those whose every required predecessor is already placed:

.. math::

    p(\\pi) = \\prod_{k=1}^{d}
        \\frac{\\exp s_{\\pi_k}}{\\sum_{j \\in A_k(\\pi)} \\exp s_j},
    \\qquad A_k(\\pi) = \\{ j \\notin \\pi_{<k} : i \\in \\pi_{<k}
        \\text{ for every } i \\text{ with } \\mathrm{precedes}_{ij} \\}.

Each factor is a normalized choice, so ``p`` sums to one over the linear
extensions exactly and gives every other order probability zero. With no
constraint it is :class:`~pyrostruct.distributions.PlackettLuce`. (It is not
Plackett-Luce conditioned on the constraints, whose normalizer is a sum over
the linear extensions, #P-hard in general.) Sampling is sequential (``d``
vectorized steps), with no pathwise gradient: fit its scores with a
score-function estimator.

:func:`count_linear_extensions` counts the orders a partial order admits (the
normalizer of the uniform prior over them).
"""

from __future__ import annotations

import math

import torch
from pyro.distributions import constraints

from ._dag_ops import get_order, ranks_from_order
from .permutation import PlackettLuce, _PermutationMatrices, permutation_matrix

__all__ = ["PartialOrderPlackettLuce", "count_linear_extensions"]

_EMPTY = torch.Size()

#: :func:`count_linear_extensions` gives up past this many downsets.
MAX_DOWNSETS = 1 << 20


class _LinearExtensions(_PermutationMatrices):
    """Permutation matrices whose order keeps ``precedes``."""

    def __init__(self, precedes: torch.Tensor):
        super().__init__(precedes.shape[-1])
        self.precedes = precedes

    def check(self, value):
        ok = super().check(value)
        order = get_order(value)
        if order is None:
            order = value.argmax(-1)
        return ok & _keeps(order, self.precedes)


def _keeps(order: torch.Tensor, precedes: torch.Tensor) -> torch.Tensor:
    """Whether each order keeps ``precedes`` (batch-shaped boolean)."""
    rank = ranks_from_order(order)
    before = rank.unsqueeze(-1) < rank.unsqueeze(-2)  # before[..., i, j]: i before j
    return (before | ~precedes).all(-1).all(-1)


class PartialOrderPlackettLuce(PlackettLuce):
    """Plackett-Luce over the orders that keep ``precedes`` (see the module docstring).

    Values are permutation matrices, as for :class:`PlackettLuce` (``P[..., k, i] = 1``
    iff item ``i`` is at position ``k``), carrying their order.

    :param torch.Tensor scores: real scores ``batch_shape + (d,)``.
    :param precedes: ``(d, d)`` boolean, ``precedes[i, j]``: ``i`` comes before ``j``;
        must have no cycle.
    :type precedes: torch.Tensor or array-like

    Example::

        >>> import torch
        >>> tiers = torch.tensor([[False, True, True], [False, False, False],
        ...                       [False, False, False]])  # item 0 first
        >>> pl = PartialOrderPlackettLuce(torch.zeros(3), tiers)
        >>> pl.log_prob_order(torch.tensor([0, 2, 1])).exp()  # 1 of 2 extensions
        tensor(0.5000)
        >>> pl.log_prob_order(torch.tensor([1, 0, 2])).exp()
        tensor(0.)
    """

    has_rsample = False
    arg_constraints = {"scores": constraints.real_vector}

    def __init__(self, scores: torch.Tensor, precedes, *, validate_args=None):
        super().__init__(scores, validate_args=validate_args)
        precedes = torch.as_tensor(precedes, dtype=torch.bool, device=self.scores.device)
        d = self.num_items
        if precedes.shape != (d, d):
            raise ValueError(f"Expected precedes of shape ({d}, {d}), got {tuple(precedes.shape)}.")
        if (
            bool(precedes.diagonal().any())
            or count_linear_extensions(precedes, check_only=True) == 0
        ):
            raise ValueError("precedes has a cycle: no order keeps it.")
        self.precedes = precedes

    @constraints.dependent_property(is_discrete=True, event_dim=2)
    def support(self):
        return _LinearExtensions(self.precedes)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(PartialOrderPlackettLuce, _instance)
        new = super().expand(batch_shape, _instance=new)
        new.precedes = self.precedes
        return new

    def sample_order(self, sample_shape=_EMPTY) -> torch.Tensor:
        """Orders ``sample_shape + batch_shape + (d,)``: ``d`` steps, each a Gumbel-max choice
        among the available items."""
        shape = torch.Size(sample_shape) + self.batch_shape + (self.num_items,)
        scores = self.scores.detach().expand(shape)
        pre = self.precedes.to(scores.dtype)
        placed = torch.zeros(shape, dtype=torch.bool, device=scores.device)
        order = torch.empty(shape, dtype=torch.long, device=scores.device)
        tiny = torch.finfo(scores.dtype).tiny
        with torch.no_grad():
            for k in range(self.num_items):
                waiting = (~placed).to(scores.dtype) @ pre > 0  # an unplaced predecessor
                available = ~placed & ~waiting
                u = torch.rand(shape, dtype=scores.dtype, device=scores.device).clamp_min(tiny)
                g = torch.where(available, scores - torch.log(-torch.log(u)), -math.inf)
                pick = g.argmax(-1, keepdim=True)
                order[..., k : k + 1] = pick
                placed.scatter_(-1, pick, True)
        return order

    def rsample_with_order(self, sample_shape=_EMPTY):
        raise NotImplementedError(
            "PartialOrderPlackettLuce has no reparameterized sampler; use sample() with a "
            "score-function estimator"
        )

    def log_prob_order(self, order: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(order)``; ``-inf`` for an order that breaks ``precedes`` (``log_prob``
        of such a value raises instead when validating, as for any value outside the support)."""
        scores = self.scores
        shape = torch.broadcast_shapes(scores.shape, order.shape)
        scores, order = scores.expand(shape), order.expand(shape)
        d = self.num_items
        rank = ranks_from_order(order)  # rank[..., j]: position of item j
        # the last position among each item's predecessors (-1 without any)
        pred_rank = torch.where(self.precedes, rank.unsqueeze(-1), -1).amax(-2)
        k = torch.arange(d, device=order.device).unsqueeze(-1)  # positions, as rows
        available = (rank.unsqueeze(-2) >= k) & (pred_rank.unsqueeze(-2) < k)  # [.., k, j]
        masked = torch.where(available, scores.unsqueeze(-2), -math.inf)
        chosen = scores.gather(-1, order)
        logp = (chosen - torch.logsumexp(masked, -1)).sum(-1)
        return torch.where(_keeps(order, self.precedes), logp, -math.inf)

    def _support_orders(self) -> torch.Tensor:
        """The linear extensions: :class:`PlackettLuce`'s ``d!`` permutations (``d <= 8``)
        that keep ``precedes``."""
        orders = super()._support_orders()
        return orders[_keeps(orders, self.precedes)]

    @property
    def mode(self):
        """The greedy order: at each step the available item of highest score (the most
        probable order when the constraints do not bind)."""
        scores = self.scores.detach()
        placed = torch.zeros_like(scores, dtype=torch.bool)
        order = torch.empty(scores.shape, dtype=torch.long, device=scores.device)
        pre = self.precedes.to(scores.dtype)
        for k in range(self.num_items):
            available = ~placed & ~((~placed).to(scores.dtype) @ pre > 0)
            pick = torch.where(available, scores, -math.inf).argmax(-1, keepdim=True)
            order[..., k : k + 1] = pick
            placed.scatter_(-1, pick, True)
        return permutation_matrix(order, dtype=scores.dtype)


def count_linear_extensions(precedes, *, check_only: bool = False) -> int | None:
    """Number of orders of ``d`` items that keep ``precedes`` ``(d, d)`` (0 with a cycle).

    Items in no constraint are factored out (``m`` free items among ``k`` constrained
    ones multiply the count by ``(k + m)! / k!``); the constrained ones are counted by
    dynamic programming over the downsets of the partial order (exact; at most
    :data:`MAX_DOWNSETS` of them, else ``None``). ``check_only``: return 1 or 0 for
    "has an extension" (a cycle check, any size).
    """
    pre = torch.as_tensor(precedes, dtype=torch.bool).cpu()
    d = pre.shape[0]
    constrained = (pre.any(0) | pre.any(1)).nonzero().flatten().tolist()
    k = len(constrained)
    sub = pre[constrained][:, constrained]
    preds = [sum(1 << i for i in sub[:, j].nonzero().flatten().tolist()) for j in range(k)]
    # a cycle check by peeling (any size)
    placed, progress = 0, True
    while progress and placed != (1 << k) - 1:
        progress = False
        for j in range(k):
            if not placed >> j & 1 and preds[j] & ~placed == 0:
                placed |= 1 << j
                progress = True
    if placed != (1 << k) - 1:
        return 0
    if check_only:
        return 1
    counts = {0: 1}  # downset (bitmask) -> number of ways to place it
    for _ in range(k):  # grow all downsets by one item at a time
        nxt: dict[int, int] = {}
        for placed, ways in counts.items():
            for j in range(k):
                if not placed >> j & 1 and preds[j] & ~placed == 0:
                    key = placed | 1 << j
                    nxt[key] = nxt.get(key, 0) + ways
        if len(nxt) > MAX_DOWNSETS:
            return None
        counts = nxt
    total = counts[(1 << k) - 1] if k else 1
    return total * math.factorial(d) // math.factorial(k)
