"""``init_order="greedy-sparsest"``: a greedy insertion search for the order whose
least-squares DAG is sparsest by its approximate evidence (:mod:`.scores`), from the
sparse-sinks start (:mod:`.sparse_sinks`); with interventional rows, also from the
sparse-sinks order of the observational rows, the better of the two kept.
"""

from __future__ import annotations

import numpy as np
import torch

from pyrostruct.causal.orders.precedence import keep_precedence
from pyrostruct.causal.orders.scores import (
    _coefficient_terms,
    _node_score,
    _shrinkage_cost,
    local_scores,
)
from pyrostruct.causal.orders.screened import screen_candidates, screened_search
from pyrostruct.causal.orders.sparse_sinks import sparse_sinks_order
from pyrostruct.causal.regressions import _triangles, regime_covariances

__all__ = ["greedy_sparsest_order", "improve_order"]


def greedy_sparsest_order(
    x: np.ndarray, prior_logit: float, *, weight_prior_scale: float = 1.0, progress=False,
    mask=None, start=None, precedes=None, candidates="auto",
) -> list[int]:  # fmt: skip
    """:func:`improve_order` started from :func:`sparse_sinks_order` of ``x`` ``(n, d)``.

    With perfect interventions (``mask``) the search also starts from the sparse-sinks
    order of the observational rows, when there are more of them than columns, and the
    order with the higher score is returned. The concentration graph of rows pooled over
    regimes is not that of one DAG (an intervened node is cut from its parents in some
    rows), so the pooled start can be far off: on a 6-node graph with 13 edges and
    do(X2), the search from it stopped at a score 277 nats below the true order's, which
    the observational start reached. ``start`` replaces these starts by one order (a warm
    start: the previous fit's order when rows were added). ``precedes``: see
    :func:`improve_order` (the starts are moved to orders that keep it). ``candidates``:
    see :func:`improve_order`.
    """
    if start is not None:
        return improve_order(x, start, prior_logit, weight_prior_scale=weight_prior_scale,
                             progress=progress, mask=mask, precedes=precedes,
                             candidates=candidates)  # fmt: skip
    starts = [keep_precedence(sparse_sinks_order(x), precedes)]
    if mask is not None:
        observational = ~np.asarray(mask).any(1)
        if observational.sum() > x.shape[1] + 1:
            start = keep_precedence(sparse_sinks_order(np.asarray(x)[observational]), precedes)
            starts += [] if start == starts[0] else [start]
    best, best_score = None, -float("inf")
    for start in starts:
        order, score = _search(
            x, start, prior_logit, weight_prior_scale, 10, progress, mask, precedes, candidates
        )
        if score > best_score:
            best, best_score = order, score
    return best


def _insertion_scores(cov, n, order, q, local, prior_logit, tau2, refit=False, regimes=None):
    """Scores of moving ``v = order[q]`` to every position ``p = 0..d-1`` of the others.

    With ``rest`` the order without ``v``, ``scores[p]`` ``(d,)`` is the score
    of ``rest[:p] + [v] + rest[p:]``. The score is a sum of local terms, each
    depending on a node's predecessors only, and ``local`` ``(d,)`` holds those
    of ``order``: nodes before ``p`` keep their terms in ``rest`` (new only for
    the nodes after ``q``, which lose ``v``: read off ``rest + [v]``), nodes after
    ``p`` gain ``v`` as a predecessor (new only for the nodes before ``q``: read
    off ``[v] + order[:q]``), and ``v`` itself is regressed on every prefix of
    ``rest`` at once from the Cholesky factor of ``rest + [v]``: with ``L`` its
    unit lower factor and ``D`` the innovation variances, the coefficients on the
    first ``p`` nodes are ``sum_{m<p} L[v, m] L^{-1}[m, :]`` and the residual
    variance is ``cov[v, v] - sum_{m<p} L[v, m]^2 D_m``. ``O(d^3)``, float64
    tensors. Also returns the parts from which :func:`_moved_local`
    forms the local terms of the order chosen. ``regimes``: see :func:`local_scores`.
    """
    v, rest = order[q], order[:q] + order[q + 1 :]
    r = len(rest)
    tail, factors = local_scores(
        cov, n, rest + [v], prior_logit, tau2, refit, start=q, regimes=regimes
    )
    without = torch.cat([local[:q], tail[: r - q]])  # rest's terms, v not a predecessor
    n_v = n
    if regimes and v in regimes:  # v is scored on the rows where it is not intervened
        cov_v, n_v = regimes[v]
        _, factors = local_scores(cov_v, n_v, rest + [v], prior_logit, tau2, refit, start=r)
    if q > 0:
        head, _ = local_scores(
            cov, n, [v] + order[:q], prior_logit, tau2, refit, start=1, regimes=regimes
        )
        with_v = torch.cat([head, local[q + 1 :]])  # rest's terms with v a predecessor
    else:
        with_v = local[1:]
    zero = local.new_zeros(1)
    before = torch.cat([zero, torch.cumsum(without, 0)])
    cum = torch.cumsum(with_v, 0)
    after = cum[-1] - torch.cat([zero, cum])
    # v on every prefix of rest, from the factor of rest + [v] above: the leading block
    # of L^{-1} inverts L's, and L's last row holds L[v, :r]
    c, inv_prevs, resid, l_invs, units = (f[0] for f in factors)
    innov, l_inv, ell = resid[:r], l_invs[:r, :r], units[r, :r]
    coef = torch.cat([zero.new_zeros(1, r), torch.cumsum(ell[:, None] * l_inv, 0)])  # on rest[:p]
    explained = torch.cat([zero, torch.cumsum(ell**2 * innov, 0)])
    resid_v = (c[r, r] - explained).clamp_min(1e-12)  # (r + 1,)
    inv_prev = inv_prevs[:r, :].T  # (r + 1, r): [Sigma_{<p}^{-1}]_aa
    inside = _triangles(r + 1)[1].T[:, :r]  # a < p
    se2 = (inv_prev * (resid_v[:, None] / n_v)).clamp_min(1e-12)
    alpha, penalty = _coefficient_terms(coef, se2, inside, prior_logit, tau2)
    if refit:
        rss_v = resid_v + _shrinkage_cost(coef, se2, inv_prev, alpha, inside).sum(-1)
    else:
        b = alpha * coef
        var = alpha * (coef * coef + se2) - b * b
        c_rr, c_rv = c[:r, :r], c[:r, r]
        rss_v = c[r, r] - 2 * (b @ c_rv) + ((b @ c_rr) * b).sum(-1)
        rss_v = rss_v + var @ torch.diagonal(c_rr)
    own = _node_score(rss_v.clamp_min(1e-12), penalty.sum(-1), n_v)
    return before + own + after, (without, own, with_v)


def _keep_positions(scores: torch.Tensor, order: list[int], q: int, precedes) -> torch.Tensor:
    """``scores`` of :func:`_insertion_scores` with ``-inf`` where moving ``order[q]`` to that
    position would break ``precedes``: with ``rest`` the order without it, it must go after
    its last required predecessor and before its first required successor in ``rest``."""
    v, rest = order[q], order[:q] + order[q + 1 :]
    pre = np.asarray(precedes, dtype=bool)
    first = max((k + 1 for k, u in enumerate(rest) if pre[u, v]), default=0)
    last = min((k for k, u in enumerate(rest) if pre[v, u]), default=len(rest))
    allowed = torch.zeros_like(scores, dtype=torch.bool)
    allowed[first : last + 1] = True
    return torch.where(allowed, scores, -torch.inf)


def _moved_local(parts, p: int) -> torch.Tensor:
    """Local terms of ``rest[:p] + [v] + rest[p:]`` from the parts of :func:`_insertion_scores`."""
    without, own, with_v = parts
    return torch.cat([without[:p], own[p : p + 1], with_v[p:]])


#: The first stage of :func:`improve_order` stops after a sweep that gains less (nats).
_GUIDE_TOLERANCE = 2.0


def improve_order(
    x: np.ndarray,
    order,
    prior_logit: float,
    *,
    weight_prior_scale: float = 1.0,
    max_sweeps: int = 10,
    progress: bool = False,
    mask=None,
    precedes=None,
    candidates="auto",
) -> list[int]:
    """Greedy insertion search over orders on :func:`order_scores`, in two stages.

    Each sweep takes every node in turn and moves it to the position that
    maximizes the score, all positions scored at once by
    :func:`_insertion_scores` (``O(d^3)`` per node, reusing the local terms of
    the current order), until a sweep changes
    nothing or ``max_sweeps`` sweeps. The first stage scores orders by the
    mean-field ELBO at the least-squares start (``refit=False``): it overstates
    the cost of dropping correlated inputs, but its landscape leads the greedy
    moves well (scale-free d = 50: 4-5 reversed edges left of 60-74). The second
    stage continues with the refitted score (``refit=True``), which ranks orders
    more accurately (it prefers a chain's Markov-equivalent orders to complete
    ones, where the first stage did not) but stalls when started far away.
    The first stage only leads the second, so it stops once a sweep gains less
    than 2 nats (its effect on the benchmark is in
    ``benchmarks/results/causal_discovery_d100_standardized.md``, "Notes moved
    from docstrings"). Meant for the start of the order when nothing but
    sparsity identifies it.
    A node is not scored again while no node has moved since it was last found
    at its best position (same scores, same decision). The scores use the
    Gaussian slab ``N(0, weight_prior_scale^2)`` in the data's units whatever
    the SEM's weight prior: the search is a heuristic start for the variational
    fit, which then uses the SEM's own prior. ``progress`` shows a tqdm bar
    (nodes scored, stage, sweep and score). ``mask`` ``(n, d)`` marks perfect
    interventions: a node intervened on in some rows is scored on the others
    (:func:`~pyrostruct.causal.regressions.regime_covariances`), as the likelihood
    does, so that interventional rows orient its edges instead of blurring its regressions.
    ``precedes`` ``(d, d)`` (background knowledge: ``i`` before ``j``): ``order`` must keep
    it, and a node moves only to the positions that keep it; the scores themselves
    ignore forbidden and required edges (the variational fit that follows enforces them).

    ``candidates`` sets the parents each node may take in the score: ``"all"`` (the
    unrestricted search above, ``O(d^4)`` a sweep), ``"screen"`` (the concentration-graph
    screen of :func:`~pyrostruct.causal.orders.screened.screen_candidates`, searched by
    :mod:`~pyrostruct.causal.orders.screened` in ``O(d m^4 + d^2)`` a sweep with ``m``
    candidates a node), a sequence of ``d`` index arrays (node ``v``'s candidates), or
    ``"auto"`` (the default): ``"all"`` for now at every size, since the screened search
    does not pay yet at the sizes measured (``"screen"`` took 28-34 s at d = 100 against
    2 s, and 19-40 s at d = 200 against 7-9 s; its orders reversed 2-11 of 98-196 true
    edges against 3-12; :mod:`~pyrostruct.causal.orders.screened` says why).
    """
    return _search(
        x, order, prior_logit, weight_prior_scale, max_sweeps, progress, mask, precedes,
        candidates,
    )[0]  # fmt: skip


#: Above this many nodes ``candidates="auto"`` screens the candidate parents (none yet).
DENSE_MAX_NODES = 10**9


def _search(x, order, prior_logit, weight_prior_scale, max_sweeps, progress, mask, precedes=None,
            candidates="auto"):  # fmt: skip
    """:func:`improve_order`'s search: ``(order, its score)``."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="order search", unit="node", leave=False)
    try:
        return _improve_order(
            x, order, prior_logit, weight_prior_scale, max_sweeps, bar, mask, precedes,
            candidates,
        )  # fmt: skip
    finally:
        if bar is not None:
            bar.close()


@torch.inference_mode()  # no gradients: skips autograd's per-operation bookkeeping
def _improve_order(x, order, prior_logit, weight_prior_scale, max_sweeps, bar, mask, precedes,
                   candidates="auto"):  # fmt: skip
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    n, d = xt.shape
    cov = torch.cov(xt.T, correction=0).reshape(d, d) + 1e-9 * torch.eye(d, dtype=xt.dtype)
    regimes = regime_covariances(xt, mask)
    tau2 = weight_prior_scale**2
    stages = ((False, _GUIDE_TOLERANCE), (True, 0.0))
    if isinstance(candidates, str) and candidates == "auto":
        candidates = "all" if d <= DENSE_MAX_NODES else "screen"
    if isinstance(candidates, str) and candidates == "screen":
        candidates = screen_candidates(cov, n)
    if not isinstance(candidates, str):
        return screened_search(cov, n, order, prior_logit, tau2, max_sweeps, bar, regimes,
                               precedes, candidates, stages)  # fmt: skip
    if candidates != "all":
        raise ValueError(
            f"candidates must be 'auto', 'all', 'screen' or index arrays, got {candidates!r}"
        )
    best = [int(i) for i in order]
    for refit, tolerance in stages:
        local, _ = local_scores(cov, n, best, prior_logit, tau2, refit, regimes=regimes)
        best_score = float(local.sum())
        moves, settled = 0, {}  # node -> number of moves when it was last found in place
        for sweep in range(max_sweeps):
            improved, sweep_start = False, best_score
            if bar is not None:
                bar.set_postfix(stage=2 if refit else 1, sweep=sweep + 1, score=f"{best_score:.6g}")
            for node in list(best):
                if settled.get(node) == moves:  # nothing moved since: same scores again
                    continue
                if bar is not None:
                    bar.update(1)
                q = best.index(node)
                scores, parts = _insertion_scores(
                    cov, n, best, q, local, prior_logit, tau2, refit, regimes
                )
                if precedes is not None:
                    scores = _keep_positions(scores, best, q, precedes)
                k = int(torch.argmax(scores))
                if float(scores[k]) > best_score + 1e-6 * abs(best_score):
                    rest = best[:q] + best[q + 1 :]
                    best, local = rest[:k] + [node] + rest[k:], _moved_local(parts, k)
                    best_score, improved, moves = float(scores[k]), True, moves + 1
                settled[node] = moves  # at its best position given the others
            if not improved or best_score - sweep_start < tolerance:
                break
    return best, best_score
