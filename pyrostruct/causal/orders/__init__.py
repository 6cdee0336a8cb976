"""Initial orders of :func:`~pyrostruct.causal.discover`, one module per method.

As in dodiscover's ``toporder/``, each method is a module of its own and this
package only dispatches on the name:

- ``"equal-variance"`` (:mod:`.equal_variance`): the top-down order of the
  equal-variance SEM (Chen, Drton, Wang 2019), consistent under that model;
- ``"sparse-sinks"`` (:mod:`.sparse_sinks`): a bottom-up heuristic from the
  concentration graph;
- ``"greedy-sparsest"`` (:mod:`.greedy_sparsest`): a greedy insertion search
  from the sparse-sinks start for the order whose DAG is sparsest by its fit (the
  approximate evidence of :mod:`.scores`, then the grow-shrink BIC of
  :mod:`.grow_shrink`; Raskutti & Uhler 2018, Andrews et al. 2023);
- ``"greedy-random"``: the same search from a uniformly random order (the
  restarts of :func:`~pyrostruct.causal.discover` after the first);
- ``"random"``: none; the estimator draws one;
- a sequence of node indices: the user's order.

The order search computes in float64 torch tensors (one numeric backend, no
conversions back and forth; tables may come in as numpy arrays), so torch's
thread setting is the only one that matters: :func:`~pyrostruct.causal.discover`
sets it once, around the whole call. Only :mod:`.equal_variance`, a few lines of
numpy with no factorization, and :mod:`.grow_shrink`, whose many short vector steps
torch's per-operation cost would dominate, stay in numpy (their modules say why).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pyrostruct.causal.orders import greedy_sparsest
from pyrostruct.causal.orders.equal_variance import equal_variance_order
from pyrostruct.causal.orders.greedy_sparsest import improve_order
from pyrostruct.causal.orders.precedence import keep_precedence
from pyrostruct.causal.orders.scores import order_scores
from pyrostruct.causal.orders.sparse_sinks import sparse_sinks_order
from pyrostruct.errors import InputError

__all__ = [
    "INIT_ORDERS",
    "check_init_order",
    "keep_precedence",
    "equal_variance_order",
    "improve_order",
    "initial_order",
    "order_scores",
    "sparse_sinks_order",
]

#: The named initial orders.
INIT_ORDERS = ("equal-variance", "greedy-sparsest", "greedy-random", "sparse-sinks", "random")


def check_init_order(spec, d: int, name: str = "init_order") -> str | tuple[int, ...]:
    """``spec`` as a method name or a tuple of node indices; an :class:`InputError` if it
    is neither a known name nor a permutation of ``0..d-1`` (``name``: the argument's)."""
    if isinstance(spec, str):
        if spec not in INIT_ORDERS or name != "init_order":
            raise InputError(
                f"{name} must be 'equal-variance', 'greedy-sparsest', 'greedy-random', "
                f"'sparse-sinks', 'random' or a list of node indices, got {spec!r}"
                if name == "init_order"
                else f"{name} must be a list of node indices, got {spec!r}"
            )
        return spec
    try:
        items = list(spec)
    except TypeError:
        raise InputError(f"{name} must be a list of node indices, got {spec!r}") from None
    if not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in items):
        raise InputError(f"{name} must be a list of node indices, got {spec!r}")
    order = [int(i) for i in items]
    if sorted(order) != list(range(d)):
        raise InputError(
            f"{name} must be a permutation of the node indices 0..{d - 1}, got {order}"
        )
    return tuple(order)


def initial_order(
    spec: str | Sequence[int],
    x: np.ndarray,
    prior_logit: float,
    *,
    weight_prior_scale: float = 1.0,
    mask=None,
    progress: bool = False,
    search_start=None,
    precedes=None,
    forbidden=None,
    required=None,
    bic: bool = True,
) -> list[int] | None:
    """The initial order named by ``spec`` (checked by :func:`check_init_order`) for the
    table ``x`` ``(n, d)``, or ``None`` for ``"random"``. ``"greedy-random"`` draws its
    start from torch's global generator (seeded by the caller).

    :param prior_logit: prior log-odds of an edge given the order (the search's sparsity).
    :param weight_prior_scale: slab scale of the search's score.
    :param mask: ``(n, d)`` perfect interventions (the search scores an intervened node
        on the other rows).
    :param progress: show the search's progress bar.
    :param search_start: the order ``"greedy-sparsest"`` starts its search from (default:
        the sparse-sinks orders).
    :param precedes: ``(d, d)`` boolean, ``precedes[i, j]``: ``i`` must come before ``j``
        (background knowledge, :class:`~pyrostruct.causal.knowledge.KnowledgeMasks`).
        Heuristic starts are moved to the nearest order that keeps it
        (:func:`keep_precedence`), the search moves only within such orders, and a
        given order that breaks it is refused.
    :param forbidden: ``(d, d)`` boolean, edges ``i -> j`` the search's BIC stage never
        takes (background knowledge).
    :param required: ``(d, d)`` boolean, edges ``i -> j`` the search's BIC stage always
        takes (background knowledge; ``precedes`` holds them).
    :param bic: whether the search ends with its BIC stage
        (:func:`~pyrostruct.causal.orders.greedy_sparsest.improve_order`).
    """
    if precedes is not None and not np.asarray(precedes).any():
        precedes = None
    if not isinstance(spec, str):
        order = [int(i) for i in spec]
        if precedes is not None and keep_precedence(order, precedes) != order:
            raise InputError(f"init_order {order} breaks the background knowledge's order")
        return order
    if spec == "equal-variance":
        return keep_precedence(equal_variance_order(x), precedes)
    if spec == "sparse-sinks":
        return keep_precedence(sparse_sinks_order(x), precedes)
    if spec == "greedy-random":
        start = keep_precedence(torch.randperm(x.shape[1]).tolist(), precedes)
        return improve_order(
            x, start, prior_logit, weight_prior_scale=weight_prior_scale, progress=progress,
            mask=mask, precedes=precedes, bic=bic, forbidden=forbidden, required=required,
        )  # fmt: skip
    if spec == "greedy-sparsest":
        if search_start is not None:
            search_start = keep_precedence(list(search_start), precedes)
        return greedy_sparsest.greedy_sparsest_order(
            x, prior_logit, weight_prior_scale=weight_prior_scale, progress=progress, mask=mask,
            start=search_start, precedes=precedes, bic=bic, forbidden=forbidden,
            required=required,
        )  # fmt: skip
    return None
