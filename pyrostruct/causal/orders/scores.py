"""The score the order search climbs: approximate log evidence of an order at its
least-squares start (the sparsest-permutation principle, Raskutti & Uhler 2018).

For an order each node is regressed on all its predecessors
(:mod:`pyrostruct.causal.regressions`), each coefficient is kept with probability
``sigmoid(prior log-odds + log Bayes factor)``, and the score is the collapsed
ELBO of that variational distribution with the noise profiled. It is a sum of
local terms, one per node given its predecessors (:func:`local_scores`), which
is what lets :mod:`~pyrostruct.causal.orders.greedy_sparsest` rescore a moved
node cheaply.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pyrostruct.causal.regressions import _position_regressions, _triangles, float64_tensor

__all__ = ["order_scores", "local_scores"]


def _coefficient_terms(coef, se2, inside, prior_logit: float, tau2: float):
    """Inclusion probabilities and KL penalties of least-squares coefficients: ``(alpha, penalty)``.

    ``alpha = sigmoid(l)``, with ``l`` the prior log-odds ``l0`` plus the log Bayes
    factor of a slab ``N(0, tau2)`` against zero given the estimate ``b`` and its
    squared standard error ``se2``: ``l = l0 - 0.5 log((se2 + tau2) / se2) + 0.5
    b^2 (1 / se2 - 1 / (se2 + tau2))``. ``penalty = alpha KL(N(b, se2) || N(0,
    tau2)) + KL(Bernoulli(alpha) || Bernoulli(sigmoid(l0)))``, the cost of the
    coefficient in the collapsed ELBO at the least-squares start. Both are zero
    where ``inside`` is.
    """
    coef2 = coef * coef
    ratio = tau2 / se2
    log_bf = 0.5 * (coef2 * ratio / (se2 + tau2) - torch.log1p(ratio))  # 1/se2 - 1/(se2 + tau2)
    logit = (prior_logit + log_bf).clamp(-30.0, 30.0)
    odds = torch.exp(logit)
    q = odds / (1.0 + odds)
    kl_weight = 0.5 * ((se2 + coef2) / tau2 - 1.0 + torch.log(ratio))
    # KL(Bernoulli(q) || Bernoulli(q0)) = q (l - l0) + log(1 - q) - log(1 - q0), and
    # log(1 - q) = -log(1 + e^l): safe for |l| <= 30
    kl_edge = q * (logit - prior_logit) - torch.log1p(odds) + math.log1p(math.exp(prior_logit))
    return q * inside, inside * (q * kl_weight + kl_edge)


def _order_terms(cov, n, orders, prior_logit, tau2, equal_noise=False, refit=False, start=0):
    """Per position ``start..d-1`` of each order ``(S, d)``: expected RSS/n and KL penalty of the
    node there, ``(S, d - start)`` each, and the factors of :func:`_position_regressions`
    ``(c, inv_prev, resid, l_inv, unit)`` of all positions (float64 tensors).

    ``refit=False``: every coefficient is kept with probability ``alpha`` at its
    least-squares value, the others fixed (the mean-field ELBO at the start).
    ``refit=True``: the cost of dropping a coefficient is its partial effect with
    the others refitted (:func:`_shrinkage_cost`), which the mean-field form
    overstates for correlated inputs by ``1 / (1 - R^2)``.
    """
    d = orders.shape[-1]
    eye, forward = _triangles(d)
    c, coef, inv_prev, resid, l_inv, unit = _position_regressions(cov, orders)
    noise = resid.mean(-1, keepdim=True).expand(resid.shape) if equal_noise else resid
    cols = slice(start, None)
    coef, inv_cols, inside = coef[..., cols], inv_prev[..., cols], forward[:, cols]
    se2 = (inv_cols * (noise[:, None, cols] / n)).clamp_min(1e-12)
    alpha, penalty = _coefficient_terms(coef, se2, inside, prior_logit, tau2)
    if refit:
        rss = resid[:, cols] + _shrinkage_cost(coef, se2, inv_cols, alpha, inside).sum(-2)
    else:
        b = alpha * coef
        var = alpha * (coef * coef + se2) - b * b
        mean = eye[:, cols] - b  # column j: coefficients of node j's residual
        x2 = torch.diagonal(c, dim1=-2, dim2=-1)[..., None]
        rss = (mean * (c @ mean)).sum(-2) + (var * x2).sum(-2)
    return rss.clamp_min(1e-12), penalty.sum(-2), (c, inv_prev, resid, l_inv, unit)


def _shrinkage_cost(coef, se2, inv_prev, alpha, inside):
    """Expected RSS/n added by keeping each coefficient with probability ``alpha``.

    With the other coefficients refitted, dropping coefficient ``a`` of node
    ``b`` adds ``coef^2 / [Sigma_{<b}^{-1}]_aa`` (its squared partial effect);
    keeping it adds its weight variance ``se2 / [Sigma_{<b}^{-1}]_aa``. Zero
    where ``inside`` is (there ``coef`` and ``alpha`` are zero too).
    """
    cost = (1 - alpha) * coef * coef + alpha * se2
    return inside * cost / inv_prev.clamp_min(1e-300)


def _node_score(rss, penalty, n):
    return -0.5 * n * (torch.log(rss) + 1.0 + math.log(2 * math.pi)) - penalty


def order_scores(
    cov: torch.Tensor,
    n: int,
    orders: torch.Tensor,
    prior_logit: float,
    *,
    equal_noise: bool = False,
    weight_prior_scale: float = 1.0,
    refit: bool = False,
) -> torch.Tensor:
    """Approximate log evidence of orders ``(S, d)`` at the least-squares start: ``(S,)``.

    For every order each node is regressed on all its predecessors (batched
    Cholesky, as in :func:`~pyrostruct.causal.regressions.regressions_in_order`),
    each coefficient is kept with probability ``sigmoid(prior log-odds + log Bayes
    factor)``, and the collapsed ELBO of that variational distribution is returned with the noise
    profiled: ``sum_j -n/2 (log E[RSS_j]/n + 1 + log 2 pi) - sum alpha
    KL(weight) - sum KL(edge)``. It rewards orders whose minimal I-map is sparse
    (the sparsest-permutation principle, Raskutti & Uhler 2018); ``O(S d^3)``.
    """
    tau2 = weight_prior_scale**2
    cov = float64_tensor(cov)
    orders = torch.as_tensor(np.asarray(orders), dtype=torch.long)
    with torch.inference_mode():  # no gradients: skips autograd's per-operation bookkeeping
        rss, penalty, _ = _order_terms(cov, n, orders, prior_logit, tau2, equal_noise, refit)
        if equal_noise:
            d = orders.shape[-1]
            ll = -0.5 * n * d * (torch.log(rss.mean(-1)) + 1.0 + math.log(2 * math.pi))
            out = ll - penalty.sum(-1)
        else:
            out = _node_score(rss, penalty, n).sum(-1)
    return out.clone()  # an ordinary tensor


def local_scores(cov, n, order, prior_logit, tau2, refit=False, start=0, regimes=None):
    """Local scores (a tensor) of one order (node ``order[k]``'s term given ``order[:k]``), for
    the positions ``start..d-1``, and the factors of :func:`_order_terms`.

    ``regimes`` maps an intervened node to ``(cov, n)`` of the rows where it is not
    intervened (:func:`~pyrostruct.causal.regressions.regime_covariances`): its term is
    scored on those rows alone.
    """
    orders = torch.tensor([list(order)], dtype=torch.long)
    rss, penalty, factors = _order_terms(
        cov, n, orders, prior_logit, tau2, refit=refit, start=start
    )
    scores = _node_score(rss, penalty, n)[0]
    for k in range(start, len(order)) if regimes else ():
        if order[k] in regimes:
            cov_j, n_j = regimes[order[k]]
            prefix = torch.tensor([list(order[: k + 1])], dtype=torch.long)
            rss_j, pen_j, _ = _order_terms(cov_j, n_j, prefix, prior_logit, tau2, refit=refit,
                                           start=k)  # fmt: skip
            scores[k - start] = _node_score(rss_j, pen_j, n_j)[0, 0]
    return scores, factors
