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

__all__ = ["regime_covariances", "regressions_in_order"]


@functools.lru_cache(maxsize=16)
def _triangles(d: int):
    """``(eye, forward)``: the ``(d, d)`` identity and strict upper triangle of ones
    (cached, read-only: the order search asks for them thousands of times)."""
    eye, forward = np.eye(d), np.triu(np.ones((d, d)), 1)
    eye.flags.writeable = forward.flags.writeable = False
    return eye, forward


@functools.lru_cache(maxsize=16)
def _torch_eye(d: int) -> torch.Tensor:
    return torch.eye(d, dtype=torch.float64)


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` through torch (see :func:`_position_regressions`)."""
    return torch.matmul(torch.from_numpy(a), torch.from_numpy(b)).numpy()


def _position_regressions(cov: np.ndarray, orders: np.ndarray):
    """Least squares of every node on all its predecessors, for a batch of orders ``(S, d)``.

    Through the Cholesky factor of the permuted covariance ``Sigma_pi = L D L^T``:
    the coefficients are ``I - L^{-1}`` (transposed), the residual variances
    ``D``, and the diagonal of the inverse of every leading block is a
    cumulative sum over the rows of ``L^{-1}``; no loop over nodes. Returns, in
    positions, the permuted covariances ``(S, d, d)``, ``coef[s, a, b]`` (the
    coefficient of position ``a`` for position ``b > a``), ``inv_prev[s, a, b]``
    (``[Sigma_{<b}^{-1}]_{aa}``; the squared standard error is ``inv_prev D_b /
    n``), the residual variances ``D`` ``(S, d)``, the inverse unit factor
    ``L^{-1}`` and the unit factor ``L`` ``(S, d, d)``.

    The order search works in numpy float64: it needs no gradients, and
    numpy's elementwise kernels and call overhead are the cheaper at these
    sizes. Its factorizations and products go through torch (:func:`_matmul`),
    whose thread count the caller sets: numpy's BLAS would start threads of its
    own for these small matrices, which only costs time on a busy machine.
    """
    s, d = orders.shape
    eye, forward = _triangles(d)
    c = cov[orders[:, :, None], orders[:, None, :]]
    chol = torch.linalg.cholesky(torch.from_numpy(c))
    diag = torch.diagonal(chol, dim1=-2, dim2=-1)
    unit_t = chol / diag[:, None, :]
    l_inv = torch.linalg.solve_triangular(
        unit_t, _torch_eye(d), upper=False, unitriangular=True
    ).numpy()
    unit, diag = unit_t.numpy(), diag.numpy()
    resid = diag**2
    coef = np.swapaxes(eye - l_inv, -1, -2) * forward
    # [s, a, k]: block 0..k (torch's cumsum: numpy's is slow along a leading axis)
    inv_diag = torch.cumsum(torch.from_numpy(l_inv**2 / resid[:, :, None]), 1).numpy()
    inv_diag = np.swapaxes(inv_diag, -1, -2)
    inv_prev = np.concatenate([np.zeros((s, d, 1)), inv_diag[:, :, :-1]], -1) * forward
    return c, coef, inv_prev, resid, l_inv, unit


def regressions_in_order(cov: torch.Tensor, order, n: int, equal_noise: bool):
    """:func:`_position_regressions` of one order, in node indices: ``(coef, se2, noise_var)``.

    ``coef[i, j]`` is the coefficient of ``i`` for ``j`` (zero unless ``i``
    precedes ``j``) and ``se2`` its squared standard error.
    """
    perm = np.asarray(list(order), dtype=np.int64)
    _, coef, inv_diag_prev, resid_var, _, _ = _position_regressions(cov.numpy(), perm[None])
    back = np.argsort(perm)
    coef = coef[0][np.ix_(back, back)]
    inv_diag_prev = inv_diag_prev[0][np.ix_(back, back)]
    noise_var = resid_var[0][back]
    if equal_noise:
        noise_var = np.full_like(noise_var, noise_var.mean())
    se2 = inv_diag_prev * noise_var[None, :] / n
    return tuple(torch.from_numpy(np.ascontiguousarray(v)) for v in (coef, se2, noise_var))


def regime_covariances(x: np.ndarray, mask) -> dict:
    """Per node intervened on in some row of ``mask`` ``(n, d)``: ``(cov, count)`` of the rows
    where it is not intervened.

    A perfect intervention replaces a node's mechanism in its rows, so those rows
    say nothing about how it depends on the others; every other node's
    regression on its predecessors is the same in all regimes, and uses all rows.
    """
    if mask is None:
        return {}
    mask = np.asarray(mask, dtype=bool)
    out = {}
    for j in np.flatnonzero(mask.any(0)):
        rows = x[~mask[:, j]]
        d = x.shape[1]
        cov = torch.cov(torch.as_tensor(rows, dtype=torch.float64).T, correction=0)
        out[int(j)] = (cov.reshape(d, d).numpy() + 1e-9 * np.eye(d), len(rows))
    return out
