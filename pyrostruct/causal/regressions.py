"""Least squares of every node on its predecessors in an order, for many orders at once.

The order search (:mod:`pyrostruct.causal.orders`) scores orders by these
regressions, and the analytic estimator
(:func:`~pyrostruct.causal.collapsed.order_regression_init`) starts its weights
and edges from them. With perfect interventions a node is regressed on the rows
where it is not intervened only (:func:`regime_covariances`).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from scipy.linalg import lapack

__all__ = ["regime_covariances", "regressions_given_parents", "regressions_in_order"]


def float64_tensor(x) -> torch.Tensor:
    """The table ``x`` as a float64 tensor, sharing its memory where numpy allows; a
    read-only array (pandas' copy-on-write ``to_numpy()``, a memory map) is copied, which
    torch would otherwise share with a warning."""
    a = np.asarray(x, dtype=np.float64)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


@functools.lru_cache(maxsize=16)
def _triangles(d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(eye, forward)``: the ``(d, d)`` float64 identity and strict upper triangle of ones
    (cached: the order search asks for them thousands of times; never modify them)."""
    eye = torch.eye(d, dtype=torch.float64)
    return eye, torch.ones(d, d, dtype=torch.float64).triu(1)


def _position_regressions(cov: torch.Tensor, orders: torch.Tensor):
    """Least squares of every node on all its predecessors, for a batch of orders ``(S, d)``
    and the covariance ``cov`` ``(d, d)`` (or one for each order, ``(S, d, d)``).

    Through the Cholesky factor of the permuted covariance ``Sigma_pi = L D L^T``:
    the coefficients are ``I - L^{-1}`` (transposed), the residual variances
    ``D``, and the diagonal of the inverse of every leading block is a
    cumulative sum over the rows of ``L^{-1}``; no loop over nodes. Returns, in
    positions, the permuted covariances ``(S, d, d)``, ``coef[s, a, b]`` (the
    coefficient of position ``a`` for position ``b > a``), ``inv_prev[s, a, b]``
    (``[Sigma_{<b}^{-1}]_{aa}``; the squared standard error is ``inv_prev D_b /
    n``), the residual variances ``D`` ``(S, d)``, the inverse unit factor
    ``L^{-1}`` and the unit factor ``L`` ``(S, d, d)``.

    Everything here and in the order search is float64 torch (no gradients):
    one backend, whose thread count :func:`~pyrostruct.causal.discover` sets
    once for the whole call (measured against numpy in
    ``benchmarks/results/discover_scale.md``, "Notes moved from docstrings"). The
    exception is the inverse factor of a single order (the order search's case):
    LAPACK's ``dtrtri`` through scipy, a third of the work of torch's triangular
    solve against the identity (7.8 against 23.6 ms at d = 1000, one thread). Its
    rounding differs from torch's in the last bits; with the order search's
    rank-one updates (issue 19) the orders found were those of the former all-torch
    search on 19 of 20 standardized problems (d = 20-200), the other an
    equal-score tie.
    """
    s, d = orders.shape
    eye, _ = _triangles(d)
    if cov.dim() == 3:  # one covariance per order
        c = cov[torch.arange(s)[:, None, None], orders[:, :, None], orders[:, None, :]]
    elif s == 1:  # two contiguous gathers: a third of the time of one 2-d gather
        c = cov.index_select(0, orders[0]).index_select(1, orders[0])[None]
    else:
        c = cov[orders[:, :, None], orders[:, None, :]]
    chol = torch.linalg.cholesky(c)
    diag = torch.diagonal(chol, dim1=-2, dim2=-1)
    unit = chol / diag[:, None, :]
    if s == 1:  # LAPACK's triangular inverse: d^3 / 3 flops, a third of the solve's
        inverse, _ = lapack.dtrtri(unit[0].numpy().T, lower=0, unitdiag=1)
        l_inv = torch.from_numpy(np.ascontiguousarray(inverse.T))[None]
    else:
        l_inv = torch.linalg.solve_triangular(unit, eye, upper=False, unitriangular=True)
    resid = diag**2
    # L^{-1} is unit lower triangular, so both are zero on and below the diagonal as they are
    coef = (eye - l_inv).transpose(-1, -2)
    inv_diag = torch.cumsum(l_inv**2 / resid[:, :, None], 1).transpose(-1, -2)  # block 0..k
    inv_prev = F.pad(inv_diag[:, :, :-1], (1, 0))
    return c, coef, inv_prev, resid, l_inv, unit


def regressions_in_order(cov: torch.Tensor, order, n: int, equal_noise: bool):
    """:func:`_position_regressions` of one order, in node indices: ``(coef, se2, noise_var)``.

    ``coef[i, j]`` is the coefficient of ``i`` for ``j`` (zero unless ``i``
    precedes ``j``) and ``se2`` its squared standard error.
    """
    perm = torch.as_tensor(list(order), dtype=torch.long)
    _, coef, inv_diag_prev, resid_var, _, _ = _position_regressions(cov, perm[None])
    back = torch.argsort(perm)
    coef = coef[0][back][:, back]
    inv_diag_prev = inv_diag_prev[0][back][:, back]
    noise_var = resid_var[0][back]
    if equal_noise:
        noise_var = torch.full_like(noise_var, float(noise_var.mean()))
    se2 = inv_diag_prev * noise_var[None, :] / n
    return coef, se2, noise_var


def regime_covariances(x, mask) -> dict:
    """Per node intervened on in some row of ``mask`` ``(n, d)``: ``(cov, count)`` of the rows
    of ``x`` ``(n, d)`` where it is not intervened (``cov`` a float64 tensor).

    A perfect intervention replaces a node's mechanism in its rows, so those rows
    say nothing about how it depends on the others; every other node's
    regression on its predecessors is the same in all regimes, and uses all rows.
    """
    if mask is None:
        return {}
    x = float64_tensor(x)
    mask = np.asarray(mask, dtype=bool)
    out = {}
    d = x.shape[1]
    for j in np.flatnonzero(mask.any(0)):
        rows = x[torch.from_numpy(~mask[:, j])]
        cov = torch.cov(rows.T, correction=0).reshape(d, d)
        out[int(j)] = (cov + 1e-9 * torch.eye(d, dtype=torch.float64), len(rows))
    return out


def regressions_given_parents(cov: torch.Tensor, n: int, order, parents, regimes=None):
    """Least squares of every node on a parent set, and of each other predecessor given that
    set: ``(coef, se2, noise_var)`` as :func:`regressions_in_order` returns them.

    For node ``j`` with parents ``S`` (``parents[:, j]``, all before ``j`` in ``order``),
    ``coef[i, j]`` of ``i`` in ``S`` is its coefficient in the regression of ``j`` on ``S``
    (squared standard error ``sigma^2 [C_SS^{-1}]_ii / n``), and that of a predecessor
    ``i`` outside ``S`` its coefficient in the regression on ``S + {i}``, read off the
    covariance given ``S``, ``C_{.|S} = C - C_{.S} C_SS^{-1} C_{S.}``: ``b_i = C_{ij|S} /
    C_{ii|S}``, squared standard error ``(C_{jj|S} - b_i C_{ij|S}) / (n C_{ii|S})``.
    ``noise_var[j]`` is the residual variance on ``S``. ``regimes``: as
    :func:`regime_covariances` returns them (an intervened node's covariance and count).
    """
    d = cov.shape[0]
    coef, se2 = torch.zeros(d, d, dtype=torch.float64), torch.zeros(d, d, dtype=torch.float64)
    noise_var = torch.zeros(d, dtype=torch.float64)
    parents = torch.as_tensor(np.asarray(parents, dtype=bool))
    for k, j in enumerate(order):
        c, m = (regimes or {}).get(j, (cov, n))
        preds = torch.as_tensor(list(order[:k]), dtype=torch.long)
        inside = parents[preds, j]
        s, rest = preds[inside], preds[~inside]
        cij, cii, resid = c[rest, j], c[rest, rest], c[j, j]
        if len(s):
            factor = torch.linalg.cholesky(c[s][:, s])
            solved = torch.cholesky_solve(c[s][:, torch.cat([rest, torch.tensor([j])])], factor)
            b = solved[:, -1]  # C_SS^{-1} C_Sj: the regression on S
            resid = resid - c[j, s] @ b
            c_rs = c[rest][:, s]
            cij = cij - c_rs @ b
            cii = cii - (c_rs * solved[:, :-1].T).sum(-1)
            coef[s, j] = b
            se2[s, j] = resid * torch.diagonal(torch.cholesky_inverse(factor)) / m
        noise_var[j] = resid
        coef[rest, j] = cij / cii
        se2[rest, j] = (resid - cij * cij / cii) / (m * cii)
    return coef, se2, noise_var
