"""The greedy order search on screened candidate parents (``improve_order(candidates=...)``).

The score of :mod:`.scores` regresses every node on *all* its predecessors, and the
unrestricted search (:func:`~pyrostruct.causal.orders.greedy_sparsest.improve_order`
with ``candidates="all"``) rescores every insertion position of a moved node from
rank-one changes of every node's regression: ``O(d^2)`` per node, ``O(d^3)`` per sweep
(plus matrix products and refactorizations; ``benchmarks/results/discover_scale.md``).

Here each node ``v`` may only take parents from a candidate set ``N(v)``: its local
term is the score of ``v`` regressed on its predecessors *within* ``N(v)`` (the
"sparse candidate" restriction of Friedman, Nachman, Pe'er, "Learning Bayesian
network structure from massive datasets", UAI 1999, used by ordering-based search in
Teyssier & Koller, "Ordering-based search", UAI 2005; BOSS, Andrews et al., NeurIPS
2023, and GRaSP, Lam, Andrews, Ramsey, UAI 2022, are the permutation searches at
that scale). The default screen (:func:`screen_candidates`) takes the nodes whose
partial correlation with ``v`` given all others is significant (the concentration
graph, which contains every node's Markov blanket in a faithful linear SEM, so the
true parents), symmetrized and capped at ``max_size`` nodes. Then moving ``v``
changes only its own term and those of the nodes that list ``v`` as a candidate
(``R(v)``), and only where the move crosses one of them: the score of every insertion
position is a step function with at most ``|N(v) u R(v)| + 1`` distinct values,
computed from ``|R(v)| + 1`` small factorizations in two batched calls:

- ``v`` on every prefix of its candidates in the current order (one Cholesky factor
  of ``N(v)`` in order followed by ``v``: ``O(m^3)``);
- each ``u`` in ``R(v)`` on its candidate predecessors without and with ``v`` (the
  last row of one factor of those predecessors, ``v`` and ``u``: ``O(m^3)`` each).

With ``m`` the largest candidate set, a node is rescored in ``O(m^4)`` (``O(m^3)`` per
factor, ``m`` factors; one batched LAPACK call) plus ``O(d)`` for the positions, a
sweep costs ``O(d m^4 + d^2)``, and the covariance and screen ``O(n d^2 + d^3)`` once.
A node is rescored only when a node it depends on has moved since it was last found at
its best position: its decision depends on the relative order of ``N(v)``, ``R(v)``
and the candidates of ``R(v)`` (and of its background-knowledge relatives), so a move
of ``w`` marks only the nodes that depend on ``w`` (with ``N`` the identity of all
nodes, every node, as in the unrestricted search).

What is kept and what is not:

- where every node's candidates are all the other nodes, the scores are those of the
  unrestricted search (to rounding) and so are its moves and its result (tested);
- otherwise the search climbs the exact score of the restricted model ("each node's
  parents lie in ``N(v)``"), which equals the unrestricted score at every order whose
  least-squares coefficients vanish outside the candidates (in the population, the
  true order when ``N(v)`` holds ``v``'s parents); elsewhere it is a lower bound on
  the fit the unrestricted score would credit (fewer regressors), so orders that need
  edges outside the screen are scored worse. Every move strictly increases this score,
  the search stops, and it keeps ``precedes`` as the unrestricted one does. Among the
  positions of a step (equal scores) the node goes to the first one allowed.

Candidates are not the concentration graph alone: on standardized linear data many
variables are nearly determined by their children, so a strong parent can have a
small partial correlation given *all* other nodes (ER2, d = 200, n = 2000: six true
edges below ``z = 2``, one of them worth 2,862 nats to its child's term in the true
order; marginal correlations miss others by suppression). The restricted score of
the true order then falls below that of wrong orders, and the search goes there
(d = 50: 32 of 98 true edges reversed, against 3 by the unrestricted search). So the
search also takes as candidates, both ways round, the edges that the unrestricted
regressions keep (:func:`missing_parents`, one ``O(d^3)`` factorization an order) at
the start order and its reverse, and after every round at the order found and its
reverse, rescoring only the nodes whose candidates grew. Measured (one thread, loaded
shared machine, ER2/SF2, n = 2000, sparse-sinks start): the orders then reverse 13, 7,
11, 8 true edges at d = 50 ER, 50 SF, 100 ER, 100 SF against 3, 6, 6, 12 for the
unrestricted search, but the candidate sets grow to 30-70 nodes (reversed orders have
dense I-maps) and the search takes 3-34 s against 0.3-2 s; at d = 200 (an earlier
variant without the reversed found orders) 19-40 s and 28-31 reversed edges against
7-9 s and 12-17. Hence it is not the default: what is missing is a candidate screen
that keeps the parents of nearly determined nodes without the reversed orders' extra
edges, and a cache of the neighbours' terms.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pyrostruct.causal.orders.precedence import best_position
from pyrostruct.causal.orders.scores import _coefficient_terms, _node_score, _shrinkage_cost
from pyrostruct.causal.regressions import regressions_in_order

__all__ = ["screen_candidates"]

#: Number of sequences factorized in one batched call when all local terms are formed.
_CHUNK = 256


@torch.inference_mode()
def screen_candidates(
    cov: torch.Tensor, n: int, *, z_threshold: float = 2.0, min_size: int = 3, max_size: int = 64
) -> list[np.ndarray]:
    """Candidate parents of every node from the concentration graph: a list of ``d`` index arrays.

    ``u`` is a candidate of ``v`` when the Fisher ``z`` of their partial correlation
    given all other nodes, ``|atanh(rho_uv|rest)| sqrt(n - d - 1)``, exceeds
    ``z_threshold`` (from the precision matrix, ``O(d^3)``), for either of the two
    (symmetrized); every node keeps at least its ``min_size`` strongest and at most its
    ``max_size`` strongest. On linear SEM data the concentration graph holds each node's
    Markov blanket, so its parents (measured on ER2 data with ``n = 2000``: 95-98% of
    the true edges kept at d = 200 with 16-28 candidates a node on average, 95-97% at
    d = 1000 with 54-72). With ``n <= d + 1`` the precision matrix of the covariance
    shrunk toward its diagonal stands in (the ``z`` are then only a ranking).
    """
    d = cov.shape[0]
    if d <= 1:
        return [np.zeros(0, dtype=np.int64) for _ in range(d)]
    cov = torch.as_tensor(cov, dtype=torch.float64)
    if n <= d + 1:  # singular sample covariance
        cov = 0.9 * cov + 0.1 * torch.diag(torch.diagonal(cov))
    precision = torch.linalg.inv(cov)
    scale = torch.diagonal(precision).clamp_min(1e-300).sqrt()
    partial = (-precision / torch.outer(scale, scale)).clamp(-0.999999, 0.999999)
    z = torch.atanh(partial).abs() * math.sqrt(max(n - d - 1, 1))
    z.fill_diagonal_(-1.0)
    keep = z > z_threshold
    keep = keep | keep.T
    ranked = torch.argsort(z, dim=1, descending=True, stable=True)
    out = []
    for v in range(d):
        row = ranked[v, : d - 1]
        chosen = row[keep[v, row]][:max_size]
        if len(chosen) < min(min_size, d - 1):
            chosen = row[: min(min_size, d - 1)]
        out.append(np.sort(chosen.numpy()).astype(np.int64))
    return out


def _prefix_scores(c, n, prefixes, prior_logit, tau2, refit):
    """Local scores of the last node of each sequence on the first ``p`` others: ``(B, K)``.

    ``c`` ``(B, M, M)`` holds the covariances of ``B`` sequences of ``M`` nodes whose
    last is the target, ``n`` ``(B,)`` their row counts, ``prefixes`` ``(B, K)`` the
    prefix lengths ``p`` wanted. As in
    :func:`~pyrostruct.causal.orders.greedy_sparsest._insertion_scores`: with ``L D L^T``
    the factor of ``c``, the coefficients on the first ``p`` nodes are
    ``sum_{m<p} L[t, m] L^{-1}[m, :]``, the residual variance ``c_tt - sum_{m<p} L[t,
    m]^2 D_m`` and ``[Sigma_{<p}^{-1}]_aa = sum_{m<p} L^{-1}[m, a]^2 / D_m``. Padding
    nodes (unit variance, uncorrelated) between a prefix and the target change nothing.
    """
    b, m, _ = c.shape
    r = m - 1
    chol = torch.linalg.cholesky(c)
    diag = torch.diagonal(chol, dim1=-2, dim2=-1)
    unit = chol / diag[:, None, :]
    eye = torch.eye(r, dtype=c.dtype).expand(b, r, r)
    l_inv = torch.linalg.solve_triangular(unit[:, :r, :r], eye, upper=False, unitriangular=True)
    innov = diag[:, :r] ** 2
    ell = unit[:, r, :r]
    zero = c.new_zeros(b, 1, r)
    rows = prefixes[..., None].expand(b, prefixes.shape[1], r)
    coef = torch.cat([zero, torch.cumsum(ell[:, :, None] * l_inv, 1)], 1).gather(1, rows)
    inv_prev = torch.cat([zero, torch.cumsum(l_inv**2 / innov[:, :, None], 1)], 1).gather(1, rows)
    explained = torch.cat([zero[:, :, 0], torch.cumsum(ell**2 * innov, 1)], 1).gather(1, prefixes)
    c_tt = c[:, r, r, None]
    resid = (c_tt - explained).clamp_min(1e-12)  # (B, K)
    inside = (torch.arange(r)[None, None, :] < prefixes[..., None]).to(c.dtype)
    nn = n[:, None]
    se2 = (inv_prev * (resid / nn)[..., None]).clamp_min(1e-12)
    alpha, penalty = _coefficient_terms(coef, se2, inside, prior_logit, tau2)
    if refit:
        rss = resid + _shrinkage_cost(coef, se2, inv_prev, alpha, inside).sum(-1)
    else:
        w = alpha * coef
        var = alpha * (coef * coef + se2) - w * w
        c_rr, c_rt = c[:, :r, :r], c[:, :r, r]
        rss = c_tt - 2 * (w @ c_rt[..., None])[..., 0] + ((w @ c_rr) * w).sum(-1)
        rss = rss + (var @ torch.diagonal(c_rr, dim1=-2, dim2=-1)[..., None])[..., 0]
    return _node_score(rss.clamp_min(1e-12), penalty.sum(-1), nn)


class _Problem:
    """Covariances (with a padding node at index ``d``), row counts, candidates and the
    dependency lists of one screened search."""

    def __init__(self, cov, n, regimes, candidates, precedes, prior_logit, tau2):
        d = cov.shape[0]
        self.d, self.n, self.prior_logit, self.tau2 = d, n, prior_logit, tau2
        self.cov = self._padded(cov)
        self.regimes = {j: (self._padded(c), n_j) for j, (c, n_j) in (regimes or {}).items()}
        self.cand = [np.asarray(c, dtype=np.int64) for c in candidates]
        member = np.zeros((d, d), dtype=bool)  # member[v, u]: u is a candidate of v
        for v, c in enumerate(self.cand):
            member[v, c] = True
        member[np.arange(d), np.arange(d)] = False
        self.cand = [np.flatnonzero(member[v]) for v in range(d)]
        self.rev = [np.flatnonzero(member[:, v]) for v in range(d)]  # R(v): v among theirs
        self.pre = None if precedes is None else np.asarray(precedes, dtype=bool)
        # depends[v, w]: v's best move can change when w moves (see the module docstring)
        m = torch.as_tensor(member, dtype=torch.float32)
        depends = member | member.T | (m.T @ m > 0).numpy()
        if self.pre is not None:
            depends |= self.pre | self.pre.T
        depends[np.arange(d), np.arange(d)] = True
        self.dependents = [np.flatnonzero(depends[:, w]) for w in range(d)]

    def _padded(self, cov):
        d = cov.shape[0]
        out = torch.zeros(d + 1, d + 1, dtype=torch.float64)
        out[:d, :d] = cov
        out[d, d] = 1.0
        return out

    def scores(self, seqs, prefixes, refit):
        """:func:`_prefix_scores` of sequences of node lists (target last) at ``prefixes``."""
        d, width = self.d, max(2, max(len(s) for s in seqs))  # one padding node at least
        idx = np.full((len(seqs), width), d, dtype=np.int64)
        n = torch.full((len(seqs),), float(self.n), dtype=torch.float64)
        for k, s in enumerate(seqs):
            idx[k, : len(s) - 1], idx[k, -1] = s[:-1], s[-1]
        t = torch.from_numpy(idx)
        c = self.cov[t[:, :, None], t[:, None, :]]
        for k, s in enumerate(seqs) if self.regimes else ():
            if s[-1] in self.regimes:  # scored on the rows where it is not intervened
                cov_j, n_j = self.regimes[s[-1]]
                c[k] = cov_j[t[k, :, None], t[k, None, :]]
                n[k] = float(n_j)
        pad = t == d  # padding nodes: independent of everything, unit variance
        c.masked_fill_(pad[:, :, None] | pad[:, None, :], 0.0)
        c += torch.diag_embed(pad.to(c.dtype))
        pre = torch.as_tensor(np.asarray(prefixes, dtype=np.int64))
        return _prefix_scores(c, n, pre, self.prior_logit, self.tau2, refit)

    def total(self, pos, refit) -> float:
        """The score of the order with positions ``pos``: the sum of all local terms."""
        seqs, prefixes = [], []
        for u in range(self.d):
            c = self.cand[u]
            before = c[pos[c] < pos[u]]
            seqs.append(list(before[np.argsort(pos[before])]) + [u])
            prefixes.append([len(before)])
        out = 0.0
        for lo in range(0, self.d, _CHUNK):
            chunk = slice(lo, lo + _CHUNK)
            out += float(self.scores(seqs[chunk], prefixes[chunk], refit).sum())
        return out

    def gains(self, order, pos, v, refit):
        """Score gains of moving ``v`` to each step of its insertion scores: ``(gains, where)``.

        ``where[j]`` is the insertion position (in the order without ``v``) of step ``j``;
        steps that break ``precedes`` get ``-inf``.
        """
        d, q = self.d, int(pos[v])
        own = self.cand[v][np.argsort(pos[self.cand[v]])]
        rev = self.rev[v]
        cuts = np.union1d(self.cand[v], rev)
        cuts = cuts[np.argsort(pos[cuts])]
        rest_pos = pos[cuts] - (pos[cuts] > q)  # positions in the order without v
        own_scores = self.scores([list(own) + [v]], [list(range(len(own) + 1))], refit)[0]
        minus = np.zeros(len(cuts))
        plus = np.zeros(len(cuts))
        if len(rev):
            seqs, prefixes = [], []
            for u in rev:
                c = self.cand[u]
                c = c[(pos[c] < pos[u]) & (c != v)]
                seqs.append(list(c[np.argsort(pos[c])]) + [v, u])
                prefixes.append([len(c), len(c) + 1])
            s = self.scores(seqs, prefixes, refit).numpy()
            at = np.searchsorted(cuts, rev, sorter=np.argsort(cuts))
            at = np.argsort(cuts)[at]
            minus[at], plus[at] = s[:, 0], s[:, 1]
        is_own = np.isin(cuts, self.cand[v])
        steps = np.concatenate([[0], np.cumsum(is_own)])
        total = own_scores.numpy()[steps]
        total = total + np.concatenate([[0.0], np.cumsum(minus)])
        total = total + plus.sum() - np.concatenate([[0.0], np.cumsum(plus)])
        lo = np.concatenate([[0], rest_pos + 1])
        hi = np.concatenate([rest_pos, [d - 1]])
        first, last = 0, d - 1
        if self.pre is not None:
            before, after = np.flatnonzero(self.pre[:, v]), np.flatnonzero(self.pre[v])
            if len(before):
                first = int((pos[before] - (pos[before] > q)).max()) + 1
            if len(after):
                last = int((pos[after] - (pos[after] > q)).min())
        where = np.maximum(lo, first)
        current = int(np.searchsorted(rest_pos, q))  # v sits before rest[q]
        gains = total - total[current]
        gains[where > np.minimum(hi, last)] = -np.inf
        return gains, where


def missing_parents(cov, n, order, candidates, prior_logit, tau2) -> list[np.ndarray]:
    """Per node, the nodes outside its ``candidates`` joined to it by an edge that the
    unrestricted regression on all predecessors in ``order`` keeps (inclusion probability
    of :func:`~pyrostruct.causal.orders.scores._coefficient_terms` above 1/2), either way
    round: one factorization of the reordered covariance, ``O(d^3)``."""
    d = cov.shape[0]
    coef, se2, _ = regressions_in_order(cov, order, n, False)
    rank = torch.argsort(torch.as_tensor(list(order)))
    before = (rank[:, None] < rank[None, :]).to(coef.dtype)  # [u, v]: u precedes v
    alpha, _ = _coefficient_terms(coef, se2.clamp_min(1e-12), before, prior_logit, tau2)
    keep = (alpha > 0.5).numpy()
    keep |= keep.T  # either way round: the search may still reverse the edge
    for v, c in enumerate(candidates):
        keep[c, v] = False
    return [np.flatnonzero(keep[:, v]) for v in range(d)]


@torch.inference_mode()
def screened_search(
    cov, n, order, prior_logit, tau2, max_sweeps, bar, regimes, precedes, candidates, stages,
    refine=True, max_rounds=5,
):  # fmt: skip
    """:func:`~pyrostruct.causal.orders.greedy_sparsest.improve_order`'s two-stage greedy
    search on the candidate parents ``candidates`` (``d`` index arrays): ``(order, score)``.

    ``stages``: ``(refit, tolerance)`` pairs, as in the unrestricted search; a move is
    taken when it gains more than ``1e-6`` of the score's magnitude. With ``refine``,
    the predecessors that the unrestricted regression keeps at the order found
    (:func:`missing_parents`) join the candidates and the search goes on from there, up
    to ``max_rounds`` times (Friedman, Nachman, Pe'er 1999 re-select their candidates the
    same way).
    """
    best = [int(i) for i in order]
    for seed in (best, best[::-1]) if refine else ():
        extra = missing_parents(cov, n, seed, candidates, prior_logit, tau2)
        candidates = [np.union1d(c, e) for c, e in zip(candidates, extra)]
    prob = _Problem(cov, n, regimes, candidates, precedes, prior_logit, tau2)
    pos = np.empty(prob.d, dtype=np.int64)
    pos[best] = np.arange(prob.d)
    score = -math.inf
    for refit, tolerance in stages:
        score = prob.total(pos, refit)
        # moves so far; per node: moves when last found in place, when last affected
        state = [0, np.full(prob.d, -1), np.zeros(prob.d, dtype=np.int64)]
        for _ in range(max_rounds):
            score = _sweeps(prob, best, pos, score, refit, tolerance, max_sweeps, bar, state)
            grown = np.zeros(prob.d, dtype=bool)
            for seed in (best, best[::-1]) if refine else ():
                extra = missing_parents(cov, n, seed, prob.cand, prior_logit, tau2)
                grown |= np.array([len(e) > 0 for e in extra])
                prob.cand = [np.union1d(c, e) for c, e in zip(prob.cand, extra)]
            if not grown.any():
                break
            prob = _Problem(cov, n, regimes, prob.cand, precedes, prior_logit, tau2)
            state[0] += 1  # the nodes whose scores the new candidates change are rescored
            for v in np.flatnonzero(grown):
                state[2][prob.dependents[v]] = state[0]
            score = prob.total(pos, refit)
        score = prob.total(pos, refit)
    return best, score


def _sweeps(prob, best, pos, score, refit, tolerance, max_sweeps, bar, state):
    """Greedy sweeps of one stage on ``best`` and ``pos`` (in place); returns the score.

    ``state`` ``[moves, settled, changed]``: the number of moves so far, and per node the
    move count when it was last found in place and when something it depends on last
    moved (a node is rescored only when the latter is later)."""
    settled, changed = state[1], state[2]
    for sweep in range(max_sweeps):
        improved, sweep_start = False, score
        if bar is not None:
            bar.set_postfix(stage=2 if refit else 1, sweep=sweep + 1, score=f"{score:.6g}")
        for node in list(best):
            if settled[node] >= changed[node]:  # nothing it depends on moved since
                continue
            if bar is not None:
                bar.update(1)
            gains, where = prob.gains(best, pos, node, refit)
            k = best_position(gains, tol=1e-9 * abs(score))  # steps in position order
            if gains[k] > 1e-6 * abs(score):
                q, p = int(pos[node]), int(where[k])
                best.pop(q)
                best.insert(p, node)
                lo, hi = min(p, q), max(p, q) + 1
                pos[best[lo:hi]] = np.arange(lo, hi)
                score, improved, state[0] = score + float(gains[k]), True, state[0] + 1
                changed[prob.dependents[node]] = state[0]
            settled[node] = state[0]
        if not improved or score - sweep_start < tolerance:
            break
    return score
