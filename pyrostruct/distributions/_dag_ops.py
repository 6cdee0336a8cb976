"""Private kernels shared by the permutation and DAG distributions.

Everything here works on flattened batches: perturbed scores ``g`` of shape
``(N, d)``, edge logits of shape ``(Be, d, d)`` with ``Be`` either 1 (shared by
all ``N`` rows) or ``N``, adjacency matrices of shape ``(N, d, d)``.

The hot path is :class:`OrderEdgeStraightThrough`: it draws the edge noise,
forms the hard adjacency ``A = M(rank) * E`` in O(d^2) per sample (no
permutation-matrix products) and, in its analytic backward, returns the
gradient of the relaxed sample

.. math::

    \\tilde A_{ij} = \\sigma\\big((g_i - g_j - \\delta)/\\tau\\big)\\,
                     \\sigma\\big((\\ell_{ij} + L_{ij})/\\tau\\big)

(``g`` Gumbel-perturbed scores, ``L`` logistic noise, ``delta`` a shift,
``tau`` the temperature). The work is done in row chunks of a few MiB so that
the temporaries stay in cache.
"""

from __future__ import annotations

import math
import threading
from functools import cache

import torch

__all__ = [
    "broadcast_shape",
    "gumbel_perturb",
    "order_from_scores",
    "ranks_from_order",
    "forward_mask",
    "plackett_luce_log_prob",
    "OrderEdgeStraightThrough",
    "order_edge_sample",
    "marginal_dag_log_prob",
    "MAX_EXACT_NODES",
]

#: Largest number of nodes for which the exact marginal ``log_prob`` over
#: linear extensions is computed (dynamic programming over 2**d subsets).
MAX_EXACT_NODES = 12


def broadcast_shape(*shapes) -> torch.Size:
    """``torch.broadcast_shapes`` for small tuples, without its per-call overhead."""
    ndim = max(len(s) for s in shapes)
    out = [1] * ndim
    for shape in shapes:
        offset = ndim - len(shape)
        for k, size in enumerate(shape):
            cur = out[offset + k]
            if cur == 1:
                out[offset + k] = size
            elif size != 1 and size != cur:
                raise RuntimeError(f"shapes {[tuple(s) for s in shapes]} do not broadcast")
    return torch.Size(out)


def gumbel_perturb(scores: torch.Tensor) -> torch.Tensor:
    """``scores + Gumbel(0, 1)`` noise drawn from torch's global generator."""
    u = torch.rand_like(scores)
    tiny = torch.finfo(scores.dtype).tiny
    # Gumbel(0,1) = -log(-log U); clamp keeps it finite for U = 0.
    return scores - torch.log(-torch.log(u.clamp_min(tiny)))


def order_from_scores(g: torch.Tensor) -> torch.Tensor:
    """Order (``order[..., k]`` = item at position k) by descending ``g``.

    Ties are broken by the lower index first (stable sort), so the result is a
    strict total order for any input, including equal or infinite scores.
    """
    return torch.sort(g, dim=-1, descending=True, stable=True).indices


def ranks_from_order(order: torch.Tensor) -> torch.Tensor:
    """Inverse permutation: ``rank[..., order[..., k]] = k``."""
    d = order.shape[-1]
    arange = torch.arange(d, device=order.device).expand(order.shape)
    return torch.empty_like(order).scatter_(-1, order, arange)


def forward_mask(rank: torch.Tensor) -> torch.Tensor:
    """Boolean mask of forward pairs: ``M[..., i, j] = rank_i < rank_j``."""
    return rank.unsqueeze(-1) < rank.unsqueeze(-2)


def plackett_luce_log_prob(scores: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``sum_k s_{pi_k} - logsumexp_{m >= k} s_{pi_m}`` (Plackett 1975, Luce 1959)."""
    ordered = scores.gather(-1, order)
    tail_lse = torch.logcumsumexp(ordered.flip(-1), dim=-1).flip(-1)
    return (ordered - tail_lse).sum(-1)


_CHUNK_ELEMS = 1 << 18  # elements per work block (1 MiB of float32): stays in L2 cache
_WORKSPACE_MAX = 1 << 21  # largest buffer kept between calls (8 MiB of float32)
_workspace = threading.local()


def _buffer(name: str, shape, dtype, device) -> torch.Tensor:
    """A reusable scratch buffer (thread-local): fresh large allocations cost page faults."""
    numel = math.prod(shape)
    if numel > _WORKSPACE_MAX:
        return torch.empty(shape, dtype=dtype, device=device)
    cache = getattr(_workspace, "buffers", None)
    if cache is None:
        cache = _workspace.buffers = {}
    key = (name, dtype, device)
    buf = cache.get(key)
    if buf is None or buf.numel() < numel:
        buf = cache[key] = torch.empty(numel, dtype=dtype, device=device)
    return buf[:numel].view(shape)


def _blocks(n: int, d: int):
    """Work blocks ``(n0, n1, i0, i1)``: whole samples when small, row blocks when large."""
    if d * d <= _CHUNK_ELEMS:
        step = max(1, _CHUNK_ELEMS // (d * d))
        for n0 in range(0, n, step):
            yield n0, min(n, n0 + step), 0, d
    else:
        rows = max(1, _CHUNK_ELEMS // d)
        for k in range(n):
            for i0 in range(0, d, rows):
                yield k, k + 1, i0, min(d, i0 + rows)


class OrderEdgeStraightThrough(torch.autograd.Function):
    """Hard order-then-edges sample with an analytic straight-through backward.

    Forward: ``A[n, i, j] = [rank_i < rank_j] * [U_ij > sigmoid(-l_ij)]`` with
    ``U`` uniform noise drawn here (equivalently ``l_ij + logit(U_ij) > 0``).
    Backward: the gradient of the relaxed sample given in the module docstring
    with respect to ``g`` and ``edge_logits`` (none to the temperature).
    Both passes work block by block (a few samples, or a block of rows of one
    sample) so that every temporary stays in cache; only the output and the
    noise (kept for the backward pass) are ``(N, d, d)``.
    """

    @staticmethod
    def forward(ctx, g, edge_logits, rank, temperature, shift):
        n, d = g.shape
        be = edge_logits.shape[0]
        dtype, device = g.dtype, g.device
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        thr = _buffer("thr", edge_logits.shape, dtype, device)
        torch.neg(edge_logits, out=thr).sigmoid_()  # P(no edge)
        out = torch.empty(n, d, d, dtype=dtype, device=device)
        noise = torch.empty(n, d, d, dtype=dtype, device=device) if need_grad else None
        # float arithmetic only (comparisons into bool tensors are slow on CPU):
        # [U > thr] = max(sign(U - thr), 0) and [rank_i < rank_j] = clamp(rank_j - rank_i, 0, 1)
        rank_f = rank.to(dtype)
        for n0, n1, i0, i1 in _blocks(n, d):
            shape = (n1 - n0, i1 - i0, d)
            if need_grad:
                u = noise[n0:n1, i0:i1]
            else:
                u = _buffer("u", shape, dtype, device)
            u.uniform_()
            t = thr[:, i0:i1] if be == 1 else thr[n0:n1, i0:i1]
            a = torch.sub(u, t, out=out[n0:n1, i0:i1])
            a.sign_().clamp_min_(0.0)
            r = rank_f[n0:n1]
            m = torch.sub(
                r.unsqueeze(-2), r[:, i0:i1].unsqueeze(-1), out=_buffer("m", shape, dtype, device)
            )
            a.mul_(m.clamp_(0.0, 1.0))
        if need_grad:
            ctx.save_for_backward(g, edge_logits, noise)
        ctx.temperature = float(temperature)
        ctx.shift = float(shift)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        g, edge_logits, noise = ctx.saved_tensors
        inv_tau, shift = 1.0 / ctx.temperature, ctx.shift
        n, d = g.shape
        be = edge_logits.shape[0]
        dtype, device = g.dtype, g.device
        want_g, want_l = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_g = torch.zeros_like(g) if want_g else None
        # every block assigns its part of grad_l once (shared logits: the first
        # sample's blocks assign, later ones accumulate)
        grad_l = torch.empty_like(edge_logits) if want_l else None
        # everything divided by tau up front: O(d^2) once, O(d) per row
        if inv_tau == 1.0:
            l_tau = edge_logits
        else:
            l_tau = torch.mul(
                edge_logits, inv_tau, out=_buffer("l_tau", edge_logits.shape, dtype, device)
            )
        g_tau = g if inv_tau == 1.0 else g * inv_tau
        g_tau_shift = (g + shift) * inv_tau if shift else g_tau
        eps = torch.finfo(dtype).eps
        # with tau = 1 and moderate logits, E has a rational form in U (exp(-l) stays
        # within (tiny, max), so U = 0 gives E = 0 without 0/0)
        rational = inv_tau == 1.0
        if rational:
            lo, hi = torch.aminmax(edge_logits)
            bound = 0.9 * math.log(torch.finfo(dtype).max)
            rational = bool(lo > -bound) and bool(hi < bound)
        if rational:
            c = torch.neg(edge_logits, out=_buffer("c", edge_logits.shape, dtype, device)).exp_()
            one_minus_c = torch.sub(1.0, c, out=_buffer("omc", edge_logits.shape, dtype, device))
        for n0, n1, i0, i1 in _blocks(n, d):
            shape = (n1 - n0, i1 - i0, d)
            # relaxed edges E = sigmoid((l + logit U) / tau)
            e = _buffer("be", shape, dtype, device)
            u = noise[n0:n1, i0:i1]
            if rational:  # tau = 1: E = U / (c + U (1 - c)), c = exp(-l); no transcendental
                cb = c[:, i0:i1] if be == 1 else c[n0:n1, i0:i1]
                ob = one_minus_c[:, i0:i1] if be == 1 else one_minus_c[n0:n1, i0:i1]
                torch.addcmul(cb, u, ob, out=e)
                torch.div(u, e, out=e)
            else:
                torch.logit(u, eps=eps, out=e)
                lt = l_tau[:, i0:i1] if be == 1 else l_tau[n0:n1, i0:i1]
                torch.add(lt, e, alpha=inv_tau, out=e)
                e.sigmoid_()
            # relaxed orientation M = sigmoid((g_i - g_j - shift) / tau)
            m = torch.sub(
                g_tau[n0:n1, i0:i1].unsqueeze(-1),
                g_tau_shift[n0:n1].unsqueeze(-2),
                out=_buffer("bm", shape, dtype, device),
            )
            m.sigmoid_()
            gem = torch.mul(grad_out[n0:n1, i0:i1], e, out=_buffer("bg", shape, dtype, device))
            gem *= m  # G * E * M
            if want_g:
                h = torch.addcmul(gem, gem, m, value=-1.0, out=m)  # G E M (1 - M)
                grad_g[n0:n1, i0:i1] += h.sum(-1)
                grad_g[n0:n1] -= h.sum(-2)
            if want_l:
                gl = torch.addcmul(gem, gem, e, value=-1.0, out=e)  # G M E (1 - E)
                if be == 1:
                    part = gl.sum(0) if gl.shape[0] > 1 else gl[0]
                    if n0 == 0:
                        grad_l[0, i0:i1] = part
                    else:
                        grad_l[0, i0:i1] += part
                else:
                    grad_l[n0:n1, i0:i1] = gl
        if want_g and inv_tau != 1.0:
            grad_g *= inv_tau
        if want_l:
            if inv_tau != 1.0:
                grad_l *= inv_tau
            grad_l.diagonal(dim1=-2, dim2=-1).zero_()  # the diagonal logits are unused
        return grad_g, grad_l, None, None, None


def relaxed_order_edges(g, edge_logits, temperature, shift):
    """The relaxed sample ``sigma((g_i-g_j-shift)/tau) * sigma((l+L)/tau)`` (plain autograd)."""
    u = torch.rand(g.shape[:-1] + edge_logits.shape[-2:], dtype=g.dtype, device=g.device)
    eps = torch.finfo(g.dtype).eps
    u = u.clamp(torch.finfo(g.dtype).tiny, 1.0 - eps)
    logistic = torch.log(u) - torch.log1p(-u)
    edges = torch.sigmoid((edge_logits + logistic) / temperature)
    orient = torch.sigmoid((g.unsqueeze(-1) - g.unsqueeze(-2) - shift) / temperature)
    d = g.shape[-1]
    eye = torch.eye(d, dtype=torch.bool, device=g.device)
    return (orient * edges).masked_fill(eye, 0.0)


def order_edge_sample(g, edge_logits, temperature, shift=0.0):
    """Hard sample with straight-through gradient, for any batch shape.

    ``g``: ``batch + (d,)`` perturbed scores; ``edge_logits``: broadcastable to
    ``batch + (d, d)``. Returns ``(adjacency, order)``.
    """
    d = g.shape[-1]
    batch = g.shape[:-1]
    order = order_from_scores(g.detach())
    rank = ranks_from_order(order)
    flat_g = g.reshape(-1, d)
    if edge_logits.dim() == 2 or edge_logits.shape[:-2].numel() == 1:
        flat_l = edge_logits.reshape(1, d, d)
    else:
        flat_l = edge_logits.expand(batch + (d, d)).reshape(-1, d, d)
    adj = OrderEdgeStraightThrough.apply(flat_g, flat_l, rank.reshape(-1, d), temperature, shift)
    return adj.reshape(batch + (d, d)), order


def edge_log_bernoulli(edge_logits, adj):
    """``A log sigmoid(l) + (1 - A) log sigmoid(-l)``, linear in ``A``, finite for infinite ``l``.

    The log-sigmoids are clamped at the most negative finite float so that
    ``0 * log(0)`` is 0 (no NaN) for logits of +-inf.
    """
    lo = torch.finfo(edge_logits.dtype).min
    pos = torch.nn.functional.logsigmoid(edge_logits).clamp_min(lo)
    neg = torch.nn.functional.logsigmoid(-edge_logits).clamp_min(lo)
    return adj * pos + (1 - adj) * neg


ORDER_ATTR = "_pyrostruct_order"
RELAXED_ATTR = "_pyrostruct_relaxed"


def attach_order(value: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Attach the sampled order to a sampled value (read back by ``log_prob``)."""
    setattr(value, ORDER_ATTR, order)
    return value


def get_order(value: torch.Tensor):
    """The order attached to a sampled value, or ``None``."""
    return getattr(value, ORDER_ATTR, None)


# ---------------------------------------------------------------------------
# exact marginal over linear extensions


@cache
def _subset_tables(d: int):
    k = 1 << d
    masks = torch.arange(k)
    member = ((masks.unsqueeze(-1) >> torch.arange(d)) & 1).bool()  # (K, d)
    size = member.sum(-1)
    layers = []
    bits = 1 << torch.arange(d)
    for s in range(1, d + 1):
        targets = torch.nonzero(size == s).squeeze(-1)
        preds = targets.unsqueeze(-1) ^ bits  # (nT, d): T without item i
        valid = member[targets]  # item i must be in T
        layers.append((targets, preds.clamp(0, k - 1), valid))
    return member, layers


def marginal_dag_log_prob(scores, edge_logits, value):
    """``log sum_{orders consistent with A} PL(order) prod_{forward pairs} Bern(A_ij)``.

    Dynamic programming over the ``2**d`` sets of already-placed nodes:
    ``f(S + {i}) += f(S) * P(i next | S) * prod_{k in S} Bern(A_ki; p_ki)``
    and ``i`` may not have an edge into ``S``. Cost ``O(2**d d^2)`` per value.
    """
    d = value.shape[-1]
    if d > MAX_EXACT_NODES:
        raise ValueError(
            f"The exact marginal log_prob over linear extensions is only available for "
            f"d <= {MAX_EXACT_NODES} nodes, got d = {d}. Pass the sampled order (values from "
            f"rsample/sample carry it, or log_prob(value, order=...)) to get the joint log_prob."
        )
    batch = broadcast_shape(scores.shape[:-1], edge_logits.shape[:-2], value.shape[:-2])
    dtype = torch.promote_types(scores.dtype, edge_logits.dtype)
    s = scores.to(dtype).expand(batch + (d,)).reshape(-1, d)
    a = edge_logits.to(dtype).expand(batch + (d, d)).reshape(-1, d, d)
    adj = value.to(dtype).expand(batch + (d, d)).reshape(-1, d, d)
    neg = -1e30 if dtype != torch.float16 else -6e4
    member, layers = _subset_tables(d)
    member = member.to(s.device)
    memf = member.to(dtype)
    # logsumexp of the scores of the items not yet placed; the full set gets a
    # dummy finite row (it is never used) to keep gradients NaN-free
    lse_mask = member.clone()
    lse_mask[-1] = False
    lse_comp = s.unsqueeze(-2).masked_fill(lse_mask, neg).logsumexp(-1)  # (N, K)
    log_bern = edge_log_bernoulli(a, adj)  # [k, i]: edge k -> i given k before i
    edge_term = torch.matmul(memf, log_bern)  # (N, K, d)
    into_placed = torch.matmul(memf, adj.transpose(-1, -2))  # (N, K, d): edges i -> S
    contrib = s.unsqueeze(-2) - lse_comp.unsqueeze(-1) + edge_term
    contrib = contrib.masked_fill((into_placed > 0) | member, neg)
    # self-loops make the value impossible
    self_loop = torch.diagonal(adj, dim1=-2, dim2=-1).sum(-1) > 0
    n = s.shape[0]
    f = s.new_full((n, 1 << d), neg)
    f[:, 0] = 0.0
    arange_d = torch.arange(d, device=s.device)
    for targets, preds, valid in layers:
        targets, preds, valid = targets.to(s.device), preds.to(s.device), valid.to(s.device)
        vals = f[:, preds] + contrib[:, preds, arange_d]  # (N, nT, d)
        vals = vals.masked_fill(~valid, neg)
        f = f.index_copy(1, targets, vals.logsumexp(-1))
    out = f[:, -1]
    impossible = (out < neg / 2) | self_loop
    out = out.masked_fill(impossible, -math.inf)
    return out.reshape(batch)
