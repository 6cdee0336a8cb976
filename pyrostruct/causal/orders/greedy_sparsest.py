"""``init_order="greedy-sparsest"``: a greedy insertion search for the order whose DAG is
sparsest by its fit, from the sparse-sinks start (:mod:`.sparse_sinks`). On observational
data it climbs the approximate evidence of the least-squares DAG (:mod:`.scores`, mean-field
stage) for a few sweeps, then the grow-shrink BIC (:mod:`.grow_shrink`); with
interventional rows it climbs the mean-field stage, then both the refitted evidence and
the BIC, and keeps the ending with the higher mean-field score; it also starts from the
sparse-sinks order of the observational rows, the better of the two kept.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from pyrostruct.causal.orders.grow_shrink import bic_order_search
from pyrostruct.causal.orders.precedence import allowed_positions, best_position, keep_precedence
from pyrostruct.causal.orders.scores import (
    _coefficient_terms,
    _node_score,
    _shrinkage_cost,
    local_scores,
)
from pyrostruct.causal.orders.screened import screen_candidates, screened_search
from pyrostruct.causal.orders.sparse_sinks import sparse_sinks_order
from pyrostruct.causal.regressions import (
    _position_regressions,
    float64_tensor,
    regime_covariances,
)

__all__ = ["greedy_sparsest_order", "improve_order"]


def greedy_sparsest_order(
    x: np.ndarray, prior_logit: float, *, weight_prior_scale: float = 1.0, progress=False,
    mask=None, start=None, precedes=None, candidates="auto", bic=True, forbidden=None,
    required=None,
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
    :func:`improve_order` (the starts are moved to orders that keep it). ``candidates``,
    ``bic``, ``forbidden``, ``required``: see :func:`improve_order`.
    """
    if start is not None:
        return improve_order(x, start, prior_logit, weight_prior_scale=weight_prior_scale,
                             progress=progress, mask=mask, precedes=precedes,
                             candidates=candidates, bic=bic, forbidden=forbidden,
                             required=required)  # fmt: skip
    starts = [keep_precedence(sparse_sinks_order(x), precedes)]
    if mask is not None:
        observational = ~np.asarray(mask).any(1)
        if observational.sum() > x.shape[1] + 1:
            start = keep_precedence(sparse_sinks_order(np.asarray(x)[observational]), precedes)
            starts += [] if start == starts[0] else [start]
    best, best_score = None, -float("inf")
    for start in starts:
        order, score = _search(x, start, prior_logit, weight_prior_scale, 10, progress, mask,
                               precedes, candidates, bic, forbidden, required)  # fmt: skip
        if score > best_score:
            best, best_score = order, score
    return best


def _factors(cov, order) -> tuple:
    """The regressions of every node of ``order`` on all its predecessors, in positions:
    ``(c, coef, inv_prev, resid, l_inv, unit)`` of :func:`_position_regressions`."""
    return tuple(f[0] for f in _position_regressions(cov, torch.as_tensor(order)[None]))


def _order_factors(cov, regimes, order) -> tuple:
    """:func:`_factors` of ``order`` for ``cov``, and :class:`_RegimeFactors` for the
    covariances of :func:`~pyrostruct.causal.regressions.regime_covariances` (``None``
    without interventions), all regimes in one batched factorization."""
    if not regimes:
        return _factors(cov, order), None
    covs = torch.stack([c for c, _ in regimes.values()])
    counts = torch.tensor([float(m) for _, m in regimes.values()], dtype=torch.float64)
    orders = torch.as_tensor(order).expand(len(regimes), -1)
    stacked = _position_regressions(covs, orders)
    return _factors(cov, order), _RegimeFactors(list(regimes), counts, stacked)


class _RegimeFactors(NamedTuple):
    """The factors of an order (as :func:`_factors`, each ``(R, ...)``) for the covariance
    of the rows where each of the ``R`` intervened ``nodes`` is not intervened, and the
    number of those rows ``n`` ``(R,)``."""

    nodes: list[int]
    n: torch.Tensor
    factors: tuple


class _Regressions(NamedTuple):
    """A batch of least-squares regressions, one a row: ``coef`` ``(k, w)`` on the columns
    marked by ``inside`` (those of row ``i`` all below ``widths[i]``, non-decreasing),
    ``inv`` the diagonal of the inverse Gram matrix of its inputs, ``resid`` ``(k,)`` the
    residual variance, ``c`` the covariance of the current positions and ``columns`` the
    position of each column (``None``: column ``a`` is position ``a``)."""

    coef: torch.Tensor
    inv: torch.Tensor
    resid: torch.Tensor
    inside: torch.Tensor
    widths: list[int]
    c: torch.Tensor
    columns: torch.Tensor | None = None

    def rows(self, rows: slice) -> _Regressions:
        return self._replace(coef=self.coef[rows], inv=self.inv[rows], resid=self.resid[rows],
                             inside=self.inside[rows], widths=self.widths[rows])  # fmt: skip


def _moved_regressions(factors, q: int) -> tuple[_Regressions, _Regressions, _Regressions]:
    """The regressions that moving ``v``, the node at position ``q``, creates, from the
    factors of the current order (:func:`_factors`; ``L D L^T`` the permuted covariance,
    ``L`` unit lower), on the current positions. Every block costs ``O(d^2)`` (rank-one
    changes of the current regressions, no factorization):

    - ``dropped``: the node at each position ``b > q`` without ``v`` among its inputs.
      With ``S = Sigma_{<b}^{-1}`` (its column ``q`` a cumulative sum over the rows
      ``q..b-1`` of ``L^{-1}``) and ``beta`` its coefficients: ``beta - beta_q S[:, q] /
      S[q, q]``, residual variance ``D_b + beta_q^2 / S[q, q]``, inverse diagonal
      ``S[a, a] - S[a, q]^2 / S[q, q]``.
    - ``added``: the node at each position ``b < q`` with ``v`` added to its inputs. With
      ``gamma`` the coefficients of ``v`` on the first ``b`` positions (cumulative sums
      of ``L[q, m] L^{-1}[m, :]``), ``E`` its residual variance and ``k = L[q, b] D_b``
      the partial covariance of ``v`` and the node: coefficient ``k / E`` on ``v``,
      ``beta - (k / E) gamma`` on the others, residual ``D_b - k^2 / E``, inverse
      diagonal ``S[a, a] + gamma_a^2 / E`` and ``1 / E`` for ``v`` (whose column comes
      first here, so that every row's inputs are a prefix of the columns).
    - ``own``: ``v`` on every prefix ``p = 0..d-1`` of the order without it: ``gamma``,
      ``E`` and ``S_p``'s diagonal for ``p <= q``; for ``p > q`` minus column ``q`` of
      ``Sigma_{<p+1}^{-1}`` over its diagonal entry, residual ``1 / S[q, q]``.
    """
    c, coef, inv_prev, resid, l_inv, unit = factors
    d = c.shape[0]
    pos = torch.arange(d)
    # column q of Sigma_{<b}^{-1} for b = q+1..d, and the diagonals of those inverses
    cols = torch.cumsum(l_inv[q:] * (l_inv[q:, q] / resid[q:])[:, None], 0)
    last = (inv_prev[:, -1] + l_inv[-1] ** 2 / resid[-1])[:, None]  # Sigma^{-1}'s diagonal
    diags = torch.cat([inv_prev[:, q + 1 :], last], 1).T
    s = cols[:, q : q + 1]
    ratio = cols / s
    inside = ((pos < pos[q + 1 :, None]) & (pos != q)).to(c.dtype)
    beta = coef[:, q + 1 :].T
    dropped = _Regressions(
        (beta - beta[:, q : q + 1] * ratio[:-1]) * inside,
        diags[:-1] - cols[:-1] * ratio[:-1],
        resid[q + 1 :] + beta[:, q] ** 2 / s[:-1, 0],
        inside, list(range(q + 1, d)), c,
    )  # fmt: skip
    inside = ((pos < torch.arange(q + 2, d + 1)[:, None]) & (pos != q)).to(c.dtype)
    after = (-ratio[1:] * inside, diags[1:] - cols[1:] * ratio[1:], 1.0 / s[1:, 0], inside)
    # v on the first b positions, b = 0..q
    ell = unit[q, :q]
    gamma = torch.cat([c.new_zeros(1, d), torch.cumsum(ell[:, None] * l_inv[:q], 0)])
    explained = torch.cat([c.new_zeros(1), torch.cumsum(ell**2 * resid[:q], 0)])
    e = (c[q, q] - explained).clamp_min(1e-12)  # (q + 1,)
    before = (gamma, inv_prev[:, : q + 1].T, e, (pos < pos[: q + 1, None]).to(c.dtype))
    own = _Regressions(*(torch.cat([x, y]) for x, y in zip(before, after)),
                       list(range(q + 1)) + list(range(q + 2, d + 1)), c)  # fmt: skip
    kappa = ell * resid[:q] / e[:q]
    first = torch.cat([pos[q : q + 1], pos[:q]])  # v's column, then the first q positions
    added = _Regressions(
        torch.cat([kappa[:, None], coef[:q, :q].T - kappa[:, None] * gamma[:q, :q]], 1),
        torch.cat([1.0 / e[:q, None], inv_prev[:q, :q].T + gamma[:q, :q] ** 2 / e[:q, None]], 1),
        resid[:q] - kappa * ell * resid[:q],
        (pos[: q + 1] <= pos[:q, None]).to(c.dtype), list(range(1, q + 1)), c, first,
    )  # fmt: skip
    return dropped, added, own


#: Entries of the row blocks that :func:`_regression_scores` forms at once (cache-sized).
_BLOCK_ENTRIES = 1 << 15


def _regression_scores(regressions: _Regressions, n, prior_logit, tau2, refit) -> torch.Tensor:
    """Local scores ``(k,)`` of ``regressions`` (``n`` rows of data), as
    :func:`~pyrostruct.causal.orders.scores.local_scores` forms them (:func:`_row_scores`),
    in blocks of rows, each on the columns its rows use, of about ``_BLOCK_ENTRIES``
    entries: the elementwise terms are most of the order search's time and stay in cache."""
    coef, inv, resid, inside, widths, c, columns = regressions
    if not refit and columns is not None:  # only the mean-field quadratic forms use c
        c = c[columns[:, None], columns[None, :]]
    out, k, start = resid.new_empty(len(widths)), len(widths), 0
    while start < k:
        stop = start + 1
        while stop < k and (stop + 1 - start) * widths[stop] <= _BLOCK_ENTRIES:
            stop += 1
        w, rows = widths[stop - 1], slice(start, stop)
        out[rows] = _row_scores(coef[rows, :w], inv[rows, :w], resid[rows], inside[rows, :w],
                                c[:w, :w], n, prior_logit, tau2, refit)  # fmt: skip
        start = stop
    return out


def _row_scores(coef, inv, resid, inside, c, n, prior_logit, tau2, refit) -> torch.Tensor:
    """Local scores ``(k,)`` of least-squares regressions, one a row: coefficients ``coef``
    ``(k, w)`` on the columns marked by ``inside``, ``inv`` the diagonal of their inverse
    Gram matrix, residual variances ``resid`` ``(k,)``, the covariance ``c`` of the
    columns ``(w, w)`` (or one a row, ``(k, w, w)``) and the row count ``n`` (or one a
    row, ``(k,)``). For the mean-field score ``E[RSS]/n = resid + delta^T C delta +
    sum_a var_a C_aa`` with ``delta = (1 - alpha) coef`` (the least-squares normal
    equations remove the cross terms)."""
    se2 = (inv * (resid / n)[:, None]).clamp_min(1e-12)
    alpha, penalty = _coefficient_terms(coef, se2, inside, prior_logit, tau2)
    if refit:
        rss = resid + _shrinkage_cost(coef, se2, inv, alpha, inside).sum(-1)
    else:
        kept = alpha * coef
        delta = coef - kept
        var = alpha * (coef * coef + se2) - kept * kept
        if c.dim() == 2:
            quad, spread = delta @ c, var @ torch.diagonal(c)
        else:  # one covariance a row
            quad = (delta[:, None] @ c)[:, 0]
            spread = (var * torch.diagonal(c, dim1=1, dim2=2)).sum(-1)
        rss = resid + (quad * delta).sum(-1) + spread
    return _node_score(rss.clamp_min(1e-12), penalty.sum(-1), n)


def _regime_rows(by_regime: _RegimeFactors, order, q: int) -> tuple:
    """The regressions that moving ``v = order[q]`` changes for every intervened node
    ``j`` other than ``v``, each on its own regime's factors (:func:`_order_factors`):
    the one row of :func:`_moved_regressions`' ``dropped`` block (``j`` after ``v``) or
    ``added`` block (``j`` before ``v``) that is ``j``'s, all regimes in one batched
    computation of ``O(R d^2)``; forming every regime's blocks to use one row took ``R``
    times the calls (d = 50 with every node intervened: a search of 16.8 s, now 3.25 s,
    one thread; session of 2026-12-07). Columns are the current positions (``v``'s
    coefficient in column ``q``). Returns ``(coef, inv, resid, inside, c, n)`` ``(R,
    ...)`` for :func:`_row_scores`, the positions ``(R,)`` and whether each row is
    ``v``'s (not scored here)."""
    c, coef, inv_prev, resid, l_inv, unit = by_regime.factors
    r, d = resid.shape
    pos, rows = torch.arange(d), torch.arange(r)
    where = torch.empty(d, dtype=torch.long)
    where[torch.as_tensor(order)] = pos
    b = where[torch.as_tensor(by_regime.nodes)]  # each intervened node's position
    after = (b > q)[:, None]
    before = pos < b[:, None]  # the inputs of node b in the current order
    beta, inv_b, resid_b = coef[rows, :, b], inv_prev[rows, :, b], resid[rows, b]
    # after v: column q of Sigma_{<b}^{-1}, a sum over the rows q..b-1 of L^{-1}
    weight = (pos >= q) & before
    col = torch.einsum("rm,rma->ra", weight * l_inv[:, :, q] / resid, l_inv)
    s = torch.where(after[:, 0], col[:, q], 1.0)
    ratio = col / s[:, None]
    drop = (beta - beta[:, q : q + 1] * ratio) * (before & (pos != q))
    drop_inv, drop_resid = inv_b - col * ratio, resid_b + beta[:, q] ** 2 / s
    # before v: v's regression on the first b positions (gamma, residual e) added
    ell = unit[:, q, :] * (before & (pos < q))
    gamma = torch.einsum("rm,rma->ra", ell, l_inv)
    e = (c[:, q, q] - (ell * ell * resid).sum(-1)).clamp_min(1e-12)
    kappa = unit[rows, q, b] * resid_b / e  # partial covariance of v and node b, over e
    at_q = (pos == q).to(c.dtype)
    add = (beta - kappa[:, None] * gamma) * before + kappa[:, None] * at_q
    add_inv = (inv_b + gamma**2 / e[:, None]) * before + at_q / e[:, None]
    add_resid = resid_b - kappa * unit[rows, q, b] * resid_b
    inside = torch.where(after, before & (pos != q), before | (pos == q))
    regressions = (
        torch.where(after, drop, add), torch.where(after, drop_inv, add_inv),
        torch.where(after[:, 0], drop_resid, add_resid), inside.to(c.dtype), c, by_regime.n,
    )  # fmt: skip
    return regressions, b, b == q


def _insertion_scores(factors, n, order, q, local, prior_logit, tau2, refit=False):
    """Scores of moving ``v = order[q]`` to every position ``p = 0..d-1`` of the others.

    With ``rest`` the order without ``v``, ``scores[p]`` ``(d,)`` is the score of
    ``rest[:p] + [v] + rest[p:]``. The score is a sum of local terms, each depending on
    a node's predecessors only, and ``local`` ``(d,)`` holds those of ``order``: nodes
    before ``p`` keep their terms in ``rest`` (new only for the nodes after ``q``, which
    lose ``v``), nodes after ``p`` gain ``v`` as a predecessor (new only for the nodes
    before ``q``), and ``v`` itself is regressed on every prefix of ``rest``. All these
    regressions are rank-one changes of the current order's (:func:`_moved_regressions`
    from ``factors``, :func:`_order_factors` of ``order``), so a node is scored in
    ``O(d^2)`` with no factorization (the mean-field score's quadratic forms add two
    ``(d, d)`` matrix products). An intervened node is scored on the rows where it is
    not (:func:`~.scores.local_scores`' ``regimes``; ``factors`` holds each regime's
    factors, :func:`_regime_rows`). Also returns the parts from which
    :func:`_moved_local` forms the local terms of the order chosen.
    """
    pooled, by_regime = factors
    terms = [
        _regression_scores(block, n, prior_logit, tau2, refit)
        for block in _moved_regressions(pooled, q)
    ]
    if by_regime is not None:
        regressions, b, moved = _regime_rows(by_regime, order, q)
        scores = _row_scores(*regressions, prior_logit, tau2, refit)
        after, before = b > q, b < q
        terms[0][b[after] - q - 1] = scores[after]
        terms[1][b[before]] = scores[before]
        for i in moved.nonzero()[:, 0].tolist():  # v itself is intervened: its own rows
            own = _moved_regressions(tuple(f[i] for f in by_regime.factors), q)[2]
            terms[2] = _regression_scores(own, by_regime.n[i], prior_logit, tau2, refit)
    dropped, added, own = terms
    without = torch.cat([local[:q], dropped])  # rest's terms, v not a predecessor
    with_v = torch.cat([added, local[q + 1 :]])  # rest's terms with v a predecessor
    zero = local.new_zeros(1)
    before = torch.cat([zero, torch.cumsum(without, 0)])
    cum = torch.cumsum(with_v, 0)
    after = cum[-1] - torch.cat([zero, cum])
    return before + own + after, (without, own, with_v)


def _keep_positions(scores: torch.Tensor, order: list[int], q: int, precedes) -> torch.Tensor:
    """``scores`` of :func:`_insertion_scores` with ``-inf`` where moving ``order[q]`` to that
    position would break ``precedes`` (:func:`~.precedence.allowed_positions`)."""
    first, last = allowed_positions(order, q, precedes)
    allowed = torch.zeros_like(scores, dtype=torch.bool)
    allowed[first : last + 1] = True
    return torch.where(allowed, scores, -torch.inf)


def _moved_local(parts, p: int) -> torch.Tensor:
    """Local terms of ``rest[:p] + [v] + rest[p:]`` from the parts of :func:`_insertion_scores`."""
    without, own, with_v = parts
    return torch.cat([without[:p], own[p : p + 1], with_v[p:]])


#: The first stage of :func:`improve_order` stops after a sweep that gains less (nats).
_GUIDE_TOLERANCE = 2.0

#: The stages on the soft scores, ``(refit, tolerance)``: mean-field, then refitted.
_STAGES = ((False, _GUIDE_TOLERANCE), (True, 0.0))

#: Sweeps of the mean-field stage when the BIC stage follows it (observational data).
_GUIDE_MAX_SWEEPS = 3


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
    bic: bool = True,
    forbidden=None,
    required=None,
) -> list[int]:
    """Greedy insertion search over orders, in stages.

    Each sweep takes every node in turn and moves it to the position that
    maximizes the score, all positions scored at once by
    :func:`_insertion_scores` (``O(d^2)`` per node from rank-one changes of the current
    order's regressions, plus ``O(d^3)`` matrix products in the first stage; each move
    refactors the order in ``O(d^3)``), until a sweep changes nothing or ``max_sweeps``
    sweeps. The first stage scores orders by the
    mean-field ELBO at the least-squares start (:func:`order_scores`, ``refit=False``): it
    overstates the cost of dropping correlated inputs, but its landscape leads the greedy
    moves well from a poor start (scale-free d = 50: 4-5 reversed edges left of 60-74).
    It only leads the stage after it, so it stops once a sweep gains less than 2 nats.

    On observational data (no ``mask``) it runs at most 3 sweeps and the grow-shrink BIC
    search of :func:`~pyrostruct.causal.orders.grow_shrink.bic_order_search` follows
    (:func:`_bic_stage` has the measurements): each node's parents are chosen by
    grow-shrink among its predecessors, so the score is that of a sparse DAG, not of the
    complete one. The refitted-evidence stage that used to follow the first prefers wrong
    orders to the true one by 288-1004 nats on standardized ER2/SF2 data at d = 100-200
    (``benchmarks/results/order_scores_vs_truth.md``); the BIC stage from the mean-field
    order reaches the true order's BIC in most of those cases. The 3-sweep cap (stage 1
    takes 5-8 sweeps to its tolerance at d = 50-200) costs 4 of CPDAG-SHD on one of ten
    cases at d = 100-200 (SF2 d = 200 seed 0: 8 against 4), none on the others, and halves
    the search at d = 200 (4.3-5.9 s against 7.7-10.8 s); at d = 1000 each sweep costs
    about 2 minutes on one thread.

    With ``mask`` (perfect interventions) the mean-field stage runs to its tolerance, and
    two endings follow from its order: the refitted score (``refit=True``), which ranks
    orders more accurately than the first (it prefers a chain's Markov-equivalent orders
    to complete ones, where the first stage did not) but stalls when started far away
    (the first stage's effect on the benchmark is in
    ``benchmarks/results/causal_discovery_d100_standardized.md``, "Notes moved from
    docstrings"), and the BIC stage; the one with the higher mean-field score is kept
    (:func:`_two_endings` has the measurements). A node intervened on in some rows is
    scored on the others (:func:`~pyrostruct.causal.regressions.regime_covariances`), as
    the likelihood does, so that interventional rows orient its edges instead of
    blurring its regressions.

    A node is not scored again while no node has moved since it was last found
    at its best position (same scores, same decision). The soft scores use the
    Gaussian slab ``N(0, weight_prior_scale^2)`` in the data's units whatever
    the SEM's weight prior: the search is a heuristic start for the variational
    fit, which then uses the SEM's own prior. ``progress`` shows a tqdm bar
    (nodes scored, stage, sweep and score).
    ``precedes`` ``(d, d)`` (background knowledge: ``i`` before ``j``): ``order`` must keep
    it, and a node moves only to the positions that keep it. ``forbidden`` ``(d, d)``
    (``i -> j`` never) keeps those parents out of the BIC stage's grow-shrink and
    ``required`` (``i -> j`` always; ``precedes`` should hold it) puts them in; the soft
    scores ignore forbidden and required edges (the variational fit that follows
    enforces them). ``bic=False`` runs the two soft stages alone, without the BIC stage
    (``discover`` does for copula-transformed columns: on 8-node ER2 tables with a third
    of the columns binarized, seeds 0-4, skeleton recall 0.65 with it against 0.77).

    ``candidates`` sets the parents each node may take in the score: ``"all"`` (the
    unrestricted search above), ``"screen"`` (the concentration-graph
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
        candidates, bic, forbidden, required,
    )[0]  # fmt: skip


#: Above this many nodes ``candidates="auto"`` screens the candidate parents (none yet).
DENSE_MAX_NODES = 10**9


def _search(x, order, prior_logit, weight_prior_scale, max_sweeps, progress, mask, precedes=None,
            candidates="auto", bic=True, forbidden=None, required=None):  # fmt: skip
    """:func:`improve_order`'s search: ``(order, its score)``."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="order search", unit="node", leave=False)
    try:
        moments = _moments(x, mask)
        if not bic:  # both soft stages
            return _improve_order(moments, order, prior_logit, weight_prior_scale, max_sweeps,
                                  bar, precedes, candidates)  # fmt: skip
        if mask is not None:  # both endings from the mean-field stage (see _two_endings)
            return _two_endings(x, moments, order, prior_logit, weight_prior_scale, max_sweeps,
                                bar, precedes, candidates, forbidden, required)  # fmt: skip
        order, _ = _improve_order(
            moments, order, prior_logit, weight_prior_scale, min(max_sweeps, _GUIDE_MAX_SWEEPS),
            bar, precedes, candidates, _STAGES[:1],
        )  # fmt: skip
        return _bic_stage(x, order, precedes, bar, max_sweeps, forbidden, required)
    finally:
        if bar is not None:
            bar.close()


def _two_endings(x, moments, order, prior_logit, weight_prior_scale, max_sweeps, bar, precedes,
                 candidates, forbidden, required):  # fmt: skip
    """The search with interventional rows: the mean-field stage, then both the refitted
    stage and the BIC stage (each intervened node scored on the rows where it is not, in
    both) from its order; the ending with the higher mean-field score is kept: ``(order,
    its mean-field score)``.

    Neither ending is right alone. The BIC stage's grow-shrink stops where no single
    parent pays its penalty, so in a dense graph a node whose parents cancel in its
    marginal correlations gets none: on the two-basin case of
    ``tests/causal/test_restarts.py`` (6 nodes, 13 edges, do(X1)) the intervened node
    with four true parents of weights 1.1-1.7 got none, and the search ends in an order
    whose fit has an ELBO 0.37 nats a row below the true order's, from every start
    tried. The refitted score prefers wrong orders where the graph is sparse: after the
    first round of active design on a 20-node ER1 graph (50 observational rows, 2
    experiments of 10 rows; ``benchmarks/active_design.py``, seed 2) its ending's
    grow-shrink DAG is 20 edges from the truth and the fit's expected SHD 18, against 12
    and 11.5 for the BIC ending (whose fit's ELBO is 0.34 nats a row higher; the test
    ``test_greedy_search_with_interventions_takes_the_bic_ending_where_the_refitted_one_errs``).
    The fit's ELBO itself does not tell the two endings apart reliably (below). The
    mean-field score of the first stage preferred the better ending in both cases. On
    issue 24's 60 cases (``tests/causal/test_interventional_equivalence.py``: d = 6-8,
    300 rows a regime, 1-2 targets; session of 2026-12-07): a true edge right before the
    interventional rows confidently reversed after them in 17 cases with the refitted
    ending alone, 16 with the BIC ending alone, 18 choosing the ending by the ELBO of
    both fits, **12** choosing by the mean-field score; mean expected SHD 3.40, 3.06,
    3.16 and **2.62**.
    """
    order, _ = _improve_order(moments, order, prior_logit, weight_prior_scale, max_sweeps, bar,
                              precedes, candidates, _STAGES[:1])  # fmt: skip
    refitted, _ = _improve_order(moments, order, prior_logit, weight_prior_scale, max_sweeps,
                                 bar, precedes, candidates, _STAGES[1:])  # fmt: skip
    bic, _ = _bic_stage(x, order, precedes, bar, max_sweeps, forbidden, required,
                        moments.regimes)  # fmt: skip
    refitted_score, bic_score = (
        float(local_scores(moments.cov, moments.n, o, prior_logit, weight_prior_scale**2,
                           regimes=moments.regimes)[0].sum())
        for o in (refitted, bic)
    )  # fmt: skip
    if bic_score > refitted_score:
        return bic, bic_score
    return refitted, refitted_score


def _bic_stage(x, order, precedes, bar, max_sweeps, forbidden, required, regimes=None):
    """The last stage on observational data: :func:`~.grow_shrink.bic_order_search` from
    ``order``: ``(order, its BIC score)``. ``regimes``
    (:func:`~pyrostruct.causal.regressions.regime_covariances`): an intervened node is
    scored on the rows where it is not.

    Measured (``benchmarks/causal_scale.py``'s standardized ER2 / SF2 data, n = 2000;
    session of 2026-12-06): after the two soft stages, the BIC stage reached the true
    order's grow-shrink score in 4 of 5 cases and took ``discover``'s CPDAG-SHD from 11,
    30, 13 to 4, 12, 14 (SF2 d = 100, seeds 0-2), 9 to 0 (ER2 d = 200) and 22 to 21 (SF2 d
    = 200); with the analytic fit's edges at a third of its learning rate to 0, 2, 1, 0 and
    10. In place of the refitted stage (after at most 3 mean-field sweeps), on ten cases
    at d = 100-200: CPDAG-SHD 0, 1, 1 (SF2 100), 0, 7, 0 (ER2 100), 0, 0 (ER2 200), 8, 3
    (SF2 200). With interventions it is one of two endings (:func:`_two_endings`).
    """
    xt = float64_tensor(x)
    cov = torch.cov(xt.T, correction=0).reshape(xt.shape[1], -1)
    if bar is not None:
        bar.set_postfix(stage=3)
    regimes = {j: (c.numpy(), m) for j, (c, m) in (regimes or {}).items()}
    return bic_order_search(cov.numpy(), xt.shape[0], order, precedes=precedes, bar=bar,
                            max_sweeps=max_sweeps, forbidden=forbidden, required=required,
                            regimes=regimes)  # fmt: skip


class _Moments(NamedTuple):
    """What the soft stages score orders from: the row count, the covariance (``1e-9 I``
    added) and :func:`~pyrostruct.causal.regressions.regime_covariances`."""

    n: int
    cov: torch.Tensor
    regimes: dict


@torch.inference_mode()
def _moments(x, mask) -> _Moments:
    """The :class:`_Moments` of the table ``x`` ``(n, d)`` with interventions ``mask``."""
    xt = float64_tensor(x)
    n, d = xt.shape
    cov = torch.cov(xt.T, correction=0).reshape(d, d) + 1e-9 * torch.eye(d, dtype=xt.dtype)
    return _Moments(n, cov, regime_covariances(xt, mask))


@torch.inference_mode()  # no gradients: skips autograd's per-operation bookkeeping
def _improve_order(moments, order, prior_logit, weight_prior_scale, max_sweeps, bar, precedes,
                   candidates="auto", stages=_STAGES):  # fmt: skip
    n, cov, regimes = moments
    d = cov.shape[0]
    tau2 = weight_prior_scale**2
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
        factors = _order_factors(cov, regimes, best)
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
                    factors, n, best, q, local, prior_logit, tau2, refit
                )
                if precedes is not None:
                    scores = _keep_positions(scores, best, q, precedes)
                k = best_position(scores)
                if float(scores[k]) > best_score + 1e-6 * abs(best_score):
                    rest = best[:q] + best[q + 1 :]
                    best, local = rest[:k] + [node] + rest[k:], _moved_local(parts, k)
                    factors = _order_factors(cov, regimes, best)
                    best_score, improved, moves = float(scores[k]), True, moves + 1
                settled[node] = moves  # at its best position given the others
            if not improved or best_score - sweep_start < tolerance:
                break
    return best, best_score
