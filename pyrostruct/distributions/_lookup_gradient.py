r"""The gradient path of a table lookup with a relaxed index (see ``_relaxed_index.py``).

``table[z]`` with ``z`` the exact index of a straight-through sample whose relaxed
one-hot is ``y`` goes forward as the exact lookup and backward as
:math:`\sum_k y_k\, T[\dots, k, \dots]` (Jang et al. 2017; Bengio et al. 2013): this
module computes the zero-valued term that carries that gradient, for a relaxed
index at any position of an indexing tuple. Plain tensors in, plain tensors out.
"""

from __future__ import annotations

import torch

__all__ = ["straight_through_term"]


def _table_dim(index: tuple, position: int, ndim: int) -> int:
    """The dimension of a tensor of ``ndim`` dims that ``index[position]`` selects."""

    def consumed(item) -> int:
        if item is None or item is Ellipsis:
            return 0
        if isinstance(item, torch.Tensor) and item.dtype == torch.bool:
            return item.dim()
        if isinstance(item, bool):
            return 0
        return 1

    dim = 0
    for item in index[:position]:
        if item is Ellipsis:
            dim += ndim - sum(consumed(i) for i in index)
        else:
            dim += consumed(item)
    return dim


def straight_through_term(
    table: torch.Tensor,
    hard_index: tuple,
    position: int,
    y: torch.Tensor,
    hard: torch.Tensor,
    has_ellipsis: bool,
    result_shape: torch.Size,
) -> torch.Tensor:
    r"""The term that gives ``table[hard_index]`` the gradient of the relaxed index at
    ``position``: :math:`\sum_k (y_k - \mathrm{sg}(y_k))\, T[\dots, k, \dots]`, zero
    going forward, laid out like the result (``result_shape``).

    :param y: the relaxed one-hot behind that index (``hard.shape + (K,)``).
    :param hard: the index's exact values.
    :param bool has_ellipsis: whether ``hard_index`` holds an ``...``.
    """
    d = _table_dim(hard_index, position, table.dim())
    num = min(y.size(-1), table.size(d))
    # values T[..., k, ...] for every k, laid out as the result plus a trailing k:
    # dim d becomes a dummy of size 1 (indexed by zeros), k moves to the end.
    moved = table.detach().movedim(d, -1)[..., :num].unsqueeze(d)
    zero_index = list(hard_index)
    zero_index[position] = torch.zeros_like(hard)
    if has_ellipsis:
        zero_index.append(slice(None))
    values = moved[tuple(zero_index)]
    # which element of the relaxed index each result element used
    n = hard.numel()
    shape = [1] * table.dim()
    shape[d] = n
    full = list(table.shape)
    full[d] = n
    positions = torch.arange(n, device=hard.device).view(shape).expand(full)
    pos_index = list(hard_index)
    pos_index[position] = torch.arange(n, device=hard.device).view(hard.shape)
    pos = positions[tuple(pos_index)]
    if values.shape[:-1] != result_shape or pos.shape != result_shape:  # pragma: no cover
        raise RuntimeError(
            "pyrostruct: internal error laying out the straight-through lookup "
            f"(result {tuple(result_shape)}, values {tuple(values.shape)}, positions "
            f"{tuple(pos.shape)}); please report it with the indexing expression."
        )
    delta = (y - y.detach()).reshape(n, -1)[:, :num].to(values.dtype)
    weights = delta[pos.reshape(-1)].reshape(pos.shape + (num,))
    values = torch.where(torch.isfinite(values), values, torch.zeros_like(values))
    return (weights * values).sum(-1)
