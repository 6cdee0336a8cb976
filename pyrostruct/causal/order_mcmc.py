"""Order MCMC with candidate parent sets: the posterior over DAGs of a linear Gaussian
problem too large for :mod:`~pyrostruct.causal.exact`'s sum over all subsets (Friedman &
Koller, "Being Bayesian about network structure", Machine Learning 2003).

The model is :func:`~pyrostruct.causal.exact_posterior`'s (uniform order, forward edges
``Bernoulli(p)``, the BGe likelihood of :mod:`pyrostruct.infer.bge`) *conditioned on
every node's parents lying in its candidate set* ``C_j``. With ``f_j(S) = log p(x_j |
x_S) + |S| logit p`` and ``P`` the predecessors of ``j`` in the order ``pi``,

.. math::

    \\alpha_j(P) = |P| \\log(1 - p) + \\log \\sum_{S \\subseteq C_j \\cap P} e^{f_j(S)},
    \\qquad p(\\pi \\mid X) \\propto \\prod_j e^{\\alpha_j(P_j^\\pi)},

and given the order the nodes' parent sets are independent, ``p(S | pi, X) propto
exp f_j(S)`` over ``S <= C_j cap P``. An edge from a non-candidate has probability 0; the
restriction is exact when the full posterior puts no mass on a DAG with a parent outside
its child's candidates (in particular when ``C_j`` holds every node, and nearly so when it
holds the node's Markov blanket). The ``2^|C_j|`` values ``f_j(S)`` are scored once
(batched BGe) and zeta-transformed, so that ``alpha_j`` of any order is one lookup at the
bit mask of ``C_j cap P``.

A Metropolis-Hastings chain over orders (adjacent transpositions, random transpositions,
random insertions: symmetric proposals) runs in several chains from random orders, all
chains advanced together in numpy. Edge probabilities are Rao-Blackwellized: each retained
order contributes ``P(i -> j | pi, X)`` exactly, from its nodes' subset tables.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch

from pyrostruct.causal.consensus import consensus_adjacency
from pyrostruct.causal.data import bge_columns, check_data
from pyrostruct.causal.equivalence import sample_equivalent_dags
from pyrostruct.causal.exact import _zeta, node_grams
from pyrostruct.causal.interventions import target_sets
from pyrostruct.causal.settings import (
    check_draw_count,
    check_num_samples,
    check_seed,
    expected_edge_count,
)
from pyrostruct.data import is_real_number
from pyrostruct.errors import InputError, check_count
from pyrostruct.infer.bge import bge_hyperparameters, bge_local_scores

__all__ = ["OrderMCMCDiagnostics", "OrderMCMCPosterior", "order_mcmc_posterior", "MAX_CANDIDATES"]

#: The most candidate parents a node may have (its table holds ``2^|C_j|`` scores).
MAX_CANDIDATES = 16

#: ``candidate_probs``: a pair this probable (either way) is a candidate before the screen's.
LIKELY = 0.05

#: Proposal probabilities: adjacent transposition, random transposition, random insertion.
MOVES = (1 / 3, 1 / 3, 1 / 3)


@dataclasses.dataclass
class OrderMCMCDiagnostics:
    """Convergence diagnostics of :func:`order_mcmc_posterior`.

    :ivar numpy.ndarray chain_edge_probs: each chain's edge probabilities ``(chains, d, d)``.
    :ivar numpy.ndarray log_scores: ``log p(X | pi)`` of every retained order ``(chains,
        num_samples)`` (the restricted model's evidence given the order).
    :ivar float rhat_log_score: split potential scale reduction of ``log_scores`` (Gelman et
        al., "Bayesian Data Analysis", 3rd ed. 2013, sec. 11.4); ``nan`` below 4 samples.
    :ivar numpy.ndarray rhat_edges: split R-hat of each edge's Rao-Blackwellized trace ``(d,
        d)``: 1 where every chain is constant and they agree, ``inf`` where each chain is
        constant but they disagree, ``nan`` for impossible edges.
    :ivar numpy.ndarray acceptance_rate: accepted proposals per chain ``(chains,)``.
    :ivar dict seconds: wall time of the phases ``screen``, ``tables``, ``sampling``,
        ``total``.
    """

    chain_edge_probs: np.ndarray
    log_scores: np.ndarray
    rhat_log_score: float
    rhat_edges: np.ndarray
    acceptance_rate: np.ndarray
    seconds: dict

    @property
    def max_rhat(self) -> float:
        """The largest edge R-hat (``nan`` if none is defined)."""
        finite = self.rhat_edges[~np.isnan(self.rhat_edges)]
        return float(finite.max()) if finite.size else math.nan


@dataclasses.dataclass
class OrderMCMCPosterior:
    """The posterior of :func:`order_mcmc_posterior`; the surface of
    :class:`~pyrostruct.causal.exact.ExactPosterior` plus the candidates and diagnostics.

    :ivar list names: node names.
    :ivar numpy.ndarray edge_probs: ``P(i -> j | X)`` ``(d, d)``, Rao-Blackwellized over the
        retained orders of all chains (0 for an edge from a non-candidate).
    :ivar list intervention_targets: the data's target sets.
    :ivar list candidates: ``C_j`` as sorted index lists, one per node.
    :ivar OrderMCMCDiagnostics diagnostics: per-chain results, R-hat, acceptance, timings.
    :ivar float threshold: adjacency probability needed in :attr:`adjacency`.
    """

    names: list
    edge_probs: np.ndarray
    intervention_targets: list
    candidates: list
    diagnostics: OrderMCMCDiagnostics
    threshold: float = 0.5
    _local: np.ndarray = dataclasses.field(default=None, repr=False)  # f_j(S) (d, 2^K)
    _table: np.ndarray = dataclasses.field(default=None, repr=False)  # zeta of f_j (d, 2^K)
    _cand: np.ndarray = dataclasses.field(default=None, repr=False)  # (d, K), padded with d
    _orders: np.ndarray = dataclasses.field(default=None, repr=False)  # retained (R, d)
    _masks: np.ndarray = dataclasses.field(default=None, repr=False)  # their C_j cap P (R, d)
    _log1m: float = dataclasses.field(default=0.0, repr=False)  # log(1 - p)

    @property
    def adjacency(self) -> np.ndarray:
        """The consensus DAG ``(d, d)`` of the edge probabilities, built as
        :attr:`CausalResult.adjacency <pyrostruct.causal.CausalResult.adjacency>` is."""
        return consensus_adjacency(self.edge_probs, self.threshold)

    def node_scores(self, order) -> np.ndarray:
        """``alpha_j(P_j)`` ``(d,)`` of every node given ``order`` (a permutation of ``0 ..
        d - 1``, first node first): ``|P| log(1 - p) + log sum_{S <= C_j cap P} exp
        f_j(S)``; their sum is ``log p(X, parents in C | pi)``.

        :raises InputError: ``order`` not a permutation of the nodes.
        """
        d = len(self.names)
        order = np.asarray(order)
        if order.shape != (d,) or sorted(order.tolist()) != list(range(d)):
            raise InputError(f"order must be a permutation of 0 .. {d - 1}, got {order!r}")
        masks = _masks(order[None], self._cand)[0]
        position = np.argsort(order)
        return self._table[np.arange(d), masks] + position * self._log1m

    def sample_dags(
        self, n: int, *, seed: int = 0, average_equivalent: bool = False,
        return_orders: bool = False,
    ):  # fmt: skip
        """``n`` posterior draws ``(n, d, d)`` (int64): a retained order uniformly, then each
        node's parents from ``p(S | pi, X) propto exp f_j(S)``, ``S <= C_j cap P`` (Gumbel-max
        over the node's subset table).

        :param bool average_equivalent: replace each draw by a uniform member of its
            (interventional) Markov equivalence class, as ``discover`` does by default (such a
            member may hold an edge from a non-candidate).
        :param seed: seed of the draws, ``0 .. 2**32 - 1``, or ``None`` for a fresh one.
        :param bool return_orders: also return the order of each draw ``(n, d)``.
        :raises InputError: ``n`` not a positive integer, or a bad seed.
        """
        n = check_draw_count(n)
        rng = np.random.default_rng(check_seed(seed))
        d = len(self.names)
        width = self._local.shape[1]
        pick = rng.integers(0, len(self._orders), n)
        sets = np.arange(width)
        dags = np.zeros((n, d, d), dtype=np.int64)
        chunk = max(1, 2**22 // (d * width))
        rows, cols = np.nonzero(self._cand < d)  # (node, slot) of real candidates
        for start in range(0, n, chunk):
            masks = self._masks[pick[start : start + chunk]]  # (B, d)
            inside = (sets[None, None, :] & ~masks[:, :, None]) == 0
            logits = np.where(inside, self._local[None], -np.inf)
            chosen = np.argmax(logits + rng.gumbel(size=logits.shape), axis=-1)  # (B, d)
            on = (chosen[:, rows] >> cols) & 1  # (B, real candidates)
            dags[start : start + chunk, self._cand[rows, cols], rows] = on
        if average_equivalent:
            dags = sample_equivalent_dags(dags, rng, targets=self.intervention_targets)
        if return_orders:
            return dags, self._orders[pick].astype(np.int64)
        return dags


def order_mcmc_posterior(
    data,
    *,
    interventions=None,
    expected_edges: float | None = None,
    max_candidates: int = 10,
    candidates=None,
    candidate_probs=None,
    num_samples: int = 1000,
    burn_in: int | None = None,
    thin: int | None = None,
    chains: int = 4,
    seed: int = 0,
    threshold: float = 0.5,
    standardize: bool = True,
    prior_df: float | None = None,
    prior_scale: float = 1.0,
) -> OrderMCMCPosterior:
    """Posterior over DAGs of a linear Gaussian problem by order MCMC with candidate parent
    sets (Friedman & Koller, Machine Learning 2003; see the module's text for the model).

    The candidates (unless given) screen each node's Markov blanket, which holds the node's
    parents in every DAG of a faithful linear Gaussian distribution: grow-shrink selection
    of the regressors of ``x_j`` by BGe score (forward while the gain is positive, then
    backward), pairs in both nodes' blankets first, ranked by ``min(conditional strength,
    marginal strength)`` so that neighbours come before spouses (which are dependent only
    given their common child), then the rest (:func:`screen_candidates`). The pair rank is
    symmetric, so ``i -> j`` and ``j -> i`` are both possible. Measured on linear Gaussian
    ER2 data at d = 50, ``max_candidates=10``: 4-8 of 90-98 true edges lose their parent
    (nodes whose blanket exceeds 10), against 5-12 for plain greedy forward selection.

    The first ``0.8 burn_in`` proposals are tempered (the log ratio times ``beta``, rising
    geometrically from 0.01 to 1), so that chains started at random orders climb out of the
    poor local modes they otherwise stay in at n = 1000; R-hat of the log score over chains
    says whether they met.

    :param data: numeric data ``(n, d)``; a DataFrame's column names become node names.
    :param interventions: perfect interventions per row, as for
        :func:`~pyrostruct.causal.discover` (a node's intervened rows leave its score).
    :param float expected_edges: prior expected number of edges of the unrestricted model
        (default ``min(d, d (d - 1) / 4)``, as ``exact_posterior``).
    :param int max_candidates: candidate parents per node by the screen (1 ..
        :data:`MAX_CANDIDATES`; cost ``2^max_candidates`` scores a node).
    :param candidates: given candidate parents instead of the screen: one list of node
        indices (or names) per node, at most :data:`MAX_CANDIDATES` each.
    :param candidate_probs: edge probabilities of an earlier fit (a
        :class:`~pyrostruct.causal.CausalResult` of the same columns, or ``(d, d)`` with
        ``P(i -> j)``): the pairs with ``P(i -> j) + P(j -> i) >`` :data:`LIKELY` come
        first in both nodes' candidates (most probable first), the screen fills the rest
        up to ``max_candidates``. Measured (``benchmarks/causal_order_mcmc.py``, started
        from ``discover``'s variational fit): on ER2 graphs it finds the parents the screen
        missed and the chains agree (R-hat 1.00-1.06; d = 20, n = 200: SHD 6.0 against
        the variational 12.3), but on scale-free graphs it is worse than the variational
        fit in every cell: hubs still lose parents and in three of four cells the chains
        do not meet (R-hat 6-23; d = 20, n = 1000: SHD 36.7 against 4.0).
    :param int num_samples: retained orders per chain.
    :param int burn_in: proposals discarded first (default ``num_samples * thin // 2``).
    :param int thin: proposals per retained order (default ``d``).
    :param int chains: independent chains from random orders.
    :param seed: ``0 .. 2**32 - 1`` or ``None``.
    :param float threshold: adjacency probability needed in the consensus DAG.
    :param bool standardize: as for ``exact_posterior``; ``prior_df``, ``prior_scale``:
        the BGe hyperparameters, as there.
    :raises InputError: bad data, interventions, candidates or settings (one line each).

    Example::

        >>> from pyrostruct.causal import datasets
        >>> ds = datasets.make_dataset(d=5, n=200, seed=0)
        >>> order_mcmc_posterior(ds.data, num_samples=50).edge_probs.shape
        (5, 5)
    """
    start = time.perf_counter()
    x, names, mask = check_data(data, interventions)
    n, d = x.shape
    pairs = d * (d - 1) / 2
    m = expected_edge_count(expected_edges, d)
    max_candidates = check_count(max_candidates, "max_candidates")
    if max_candidates > MAX_CANDIDATES:
        raise InputError(
            f"max_candidates must be at most {MAX_CANDIDATES} (each node scores "
            f"2^max_candidates parent sets), got {max_candidates}"
        )
    given = None if candidates is None else _check_candidates(candidates, names)
    likely = None if candidate_probs is None else _check_probs(candidate_probs, names)
    if given is not None and likely is not None:
        raise InputError("pass candidates or candidate_probs, not both")
    num_samples = check_num_samples(num_samples, minimum=1)
    chains = check_count(chains, "chains")
    thin = d if thin is None else check_count(thin, "thin")
    burn_in = num_samples * thin // 2 if burn_in is None else check_count(burn_in, "burn_in", 0)
    rng = np.random.default_rng(check_seed(seed))
    if not is_real_number(threshold) or not 0 < threshold <= 1:
        raise InputError(f"threshold must be a number in (0, 1], got {threshold!r}")
    if not isinstance(standardize, (bool, np.bool_)):
        raise InputError(f"standardize must be True or False, got {standardize!r}")
    nu, c = bge_hyperparameters(d, prior_df, prior_scale)
    p = m / pairs

    z, _, _ = bge_columns(x, mask, standardize=bool(standardize), names=names)
    grams, rows = node_grams(z, mask)
    seconds = {}
    tick = time.perf_counter()
    cand = given
    if cand is None:
        cand = screen_candidates(grams, rows, max_candidates, nu, c, likely=likely)
    seconds["screen"] = time.perf_counter() - tick
    tick = time.perf_counter()
    width = max(len(cj) for cj in cand)
    padded = np.full((d, width), d, dtype=np.int64)
    for j, cj in enumerate(cand):
        padded[j, : len(cj)] = cj
    local = _local_table(grams, rows, cand, width, nu, c, math.log(p / (1 - p)))
    table = _zeta(local)
    seconds["tables"] = time.perf_counter() - tick
    tick = time.perf_counter()
    orders, masks, accept = _run_chains(table, padded, chains, num_samples, burn_in, thin, rng)
    seconds["sampling"] = time.perf_counter() - tick

    log1m = math.log1p(-p)
    log_scores = table[np.arange(d), masks].sum(-1) + pairs * log1m  # (C, S)
    traces = _edge_traces(local, table, masks)  # (C, S, d, K)
    chain_probs = np.zeros((chains, d + 1, d))
    node = np.broadcast_to(np.arange(d)[:, None], padded.shape)
    chain_probs[:, padded, node] = traces.mean(1)
    chain_probs = chain_probs[:, :d]
    rhat = np.full((d + 1, d), np.nan)
    rhat[padded, node] = _split_rhat(traces)
    rhat = rhat[:d]
    rhat[np.arange(d), np.arange(d)] = np.nan
    seconds["total"] = time.perf_counter() - start
    diagnostics = OrderMCMCDiagnostics(
        chain_edge_probs=chain_probs,
        log_scores=log_scores,
        rhat_log_score=float(_split_rhat(log_scores)),
        rhat_edges=rhat,
        acceptance_rate=accept,
        seconds=seconds,
    )
    return OrderMCMCPosterior(
        names=list(names),
        edge_probs=np.clip(chain_probs.mean(0), 0.0, 1.0),
        intervention_targets=target_sets(mask),
        candidates=[list(map(int, cj)) for cj in cand],
        diagnostics=diagnostics,
        threshold=float(threshold),
        _local=local,
        _table=table,
        _cand=padded,
        _orders=orders.reshape(-1, d),
        _masks=masks.reshape(-1, d),
        _log1m=log1m,
    )


def screen_candidates(
    grams, rows, k: int, nu: float, c: float, *, likely: np.ndarray | None = None
) -> list[list[int]]:
    """Candidate parents ``C_j`` (sorted, ``min(k, d - 1)`` each): a grow-shrink estimate
    of each node's Markov blanket by BGe score, ranked by a symmetric pair strength (see
    :func:`order_mcmc_posterior`).

    Grow: add the regressor of ``x_j`` with the largest gain ``g_j(S + i) - g_j(S)`` (``g_j``
    the BGe log evidence) while it is positive. Shrink: drop the member whose removal raises
    ``g_j`` most while one does. The strength of ``i`` for ``j`` is its loss ``g_j(B_j) -
    g_j(B_j - i)`` in the blanket ``B_j``; pairs rank by the sum of both
    directions capped by the pair's marginal gain ``g_j({i}) - g_j({})`` plus its mirror
    (pairs in both blankets first; then pairs in one blanket by the larger loss; then the
    rest by the single-regressor gain).

    :param grams: per-node Gram matrices ``(d, d, d)`` of the rows where the node is not
        intervened on; ``rows`` their numbers ``(d,)``.
    :param likely: edge probabilities ``(d, d)`` of an earlier fit: pairs with ``P(i -> j) +
        P(j -> i) >`` :data:`LIKELY` rank before all others, by that sum.
    """
    d = len(rows)
    k = min(k, d - 1)
    loss = np.zeros((d, d))  # loss[i, j]: strength of i in j's blanket
    inside = np.zeros((d, d), dtype=bool)
    single = np.zeros((d, d))
    for j in range(d):
        gram = torch.as_tensor(grams[j], dtype=torch.float64)

        def score(sets, j=j, gram=gram):
            return bge_local_scores(gram, int(rows[j]), j, sets, nu=nu, c=c).numpy()

        empty = float(score([[]])[0])
        others = [i for i in range(d) if i != j]
        single[others, j] = score([[i] for i in others]) - empty
        chosen: list[int] = []
        current = empty
        while len(chosen) < min(d - 1, 2 * k + 4):
            rest = [i for i in others if i not in chosen]
            gains = score([chosen + [i] for i in rest]) - current
            best = int(np.argmax(gains))
            if gains[best] <= 0:
                break
            chosen.append(rest[best])
            current += float(gains[best])
        while chosen:
            losses = current - score([[i for i in chosen if i != r] for r in chosen])
            worst = int(np.argmin(losses))
            if losses[worst] >= 0:
                inside[chosen, j] = True
                loss[chosen, j] = losses
                break
            current -= float(losses[worst])
            chosen.pop(worst)
    both = inside & inside.T
    marginal = single + single.T
    strength = np.where(both, np.minimum(loss + loss.T, marginal), -np.inf)
    either = np.where(inside | inside.T, np.maximum(loss, loss.T), -np.inf)
    hint = np.full((d, d), -np.inf)
    if likely is not None:
        pair = likely + likely.T
        hint = np.where(pair > LIKELY, pair, -np.inf)
    out = []
    for j in range(d):
        key = np.lexsort((-single[:, j], -either[:, j], -strength[:, j], -hint[:, j]))
        ranked = [int(i) for i in key if i != j][:k]
        out.append(sorted(ranked))
    return out


def _check_probs(candidate_probs, names) -> np.ndarray:
    """``candidate_probs`` (a result's ``edge_probs`` or an array) as a ``(d, d)`` array; a
    result must be about the data's columns, in their order."""
    d = len(names)
    theirs = getattr(candidate_probs, "names", None)
    if theirs is not None and [str(v) for v in theirs] != [str(v) for v in names]:
        raise InputError(
            f"candidate_probs is a result about columns {list(theirs)!r}, the data has "
            f"{list(names)!r}"
        )
    probs = getattr(candidate_probs, "edge_probs", candidate_probs)
    try:
        probs = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(
            "candidate_probs must be a CausalResult or a (d, d) array of edge probabilities, "
            f"got {type(candidate_probs).__name__}"
        ) from None
    if probs.shape != (d, d):
        raise InputError(f"candidate_probs must be ({d}, {d}), got shape {probs.shape}")
    if not np.isfinite(probs).all() or (probs < 0).any() or (probs > 1).any():
        raise InputError("candidate_probs must hold probabilities in [0, 1]")
    return probs


def _check_candidates(candidates, names) -> list[list[int]]:
    """Given candidate lists as sorted index lists; one clear error otherwise."""
    d = len(names)
    if isinstance(candidates, (str, bytes)) or not hasattr(candidates, "__len__"):
        raise InputError(f"candidates must be a list of {d} lists of parent nodes, got "
                         f"{type(candidates).__name__}")  # fmt: skip
    if len(candidates) != d:
        raise InputError(
            f"candidates must hold one list per node: {d} lists for {d} columns, got "
            f"{len(candidates)}"
        )
    index = {name: i for i, name in enumerate(names)}
    out = []
    for j, cj in enumerate(candidates):
        if isinstance(cj, (str, bytes)) or not hasattr(cj, "__iter__"):
            raise InputError(f"candidates[{j}] must be a list of nodes, got {cj!r}")
        members = []
        for i in cj:
            if isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_)):
                if not 0 <= int(i) < d:
                    raise InputError(f"candidates[{j}]: node index {i} outside 0 .. {d - 1}")
                members.append(int(i))
            elif isinstance(i, str) and i in index:
                members.append(index[i])
            else:
                raise InputError(f"candidates[{j}]: {i!r} is neither a node index nor a name")
        if j in members:
            raise InputError(f"candidates[{j}] holds the node itself ({names[j]!r})")
        if len(set(members)) != len(members):
            raise InputError(f"candidates[{j}] repeats a node: {list(cj)!r}")
        if len(members) > MAX_CANDIDATES:
            raise InputError(
                f"candidates[{j}] holds {len(members)} nodes; at most {MAX_CANDIDATES} "
                f"(each node scores 2^|C_j| parent sets)"
            )
        out.append(sorted(members))
    return out


def _local_table(grams, rows, cand, width, nu, c, logit) -> np.ndarray:
    """``f_j(S)`` ``(d, 2^width)`` over the subsets ``S`` of ``C_j`` as bit masks on the
    candidate slots (``-inf`` past ``2^|C_j|``)."""
    d = len(rows)
    out = np.full((d, 1 << width), -np.inf)
    for j, cj in enumerate(cand):
        size = 1 << len(cj)
        sets = [[cj[k] for k in range(len(cj)) if s >> k & 1] for s in range(size)]
        gram = torch.as_tensor(grams[j], dtype=torch.float64)
        scores = bge_local_scores(gram, int(rows[j]), j, sets, nu=nu, c=c).numpy()
        out[j, :size] = scores + logit * np.fromiter(map(len, sets), dtype=np.float64)
    return out


def _masks(orders: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Bit masks of ``C_j cap P_j`` ``(..., d)`` for orders ``(..., d)`` (``cand`` padded
    with ``d``, a node after every other)."""
    d = orders.shape[-1]
    pos = np.empty(orders.shape[:-1] + (d + 1,), dtype=np.int64)
    np.put_along_axis(pos, orders, np.arange(d), axis=-1)
    pos[..., d] = d
    before = pos[..., cand] < pos[..., :d, None]  # (..., d, K)
    return before @ (1 << np.arange(cand.shape[1]))


#: Tempered share of the burn-in and the starting inverse temperature.
ANNEAL = {"fraction": 0.8, "beta0": 0.01}


def _run_chains(table, cand, chains, num_samples, burn_in, thin, rng):
    """Metropolis-Hastings over orders, ``chains`` chains in lockstep: retained orders
    ``(C, S, d)``, their masks ``(C, S, d)`` and each chain's acceptance rate."""
    d = table.shape[0]
    nodes = np.arange(d)
    order = np.argsort(rng.random((chains, d)), axis=1)
    masks = _masks(order, cand)
    score = table[nodes, masks].sum(-1)
    kept_orders = np.empty((chains, num_samples, d), dtype=np.int16 if d < 2**15 else np.int64)
    kept_masks = np.empty((chains, num_samples, d), dtype=np.int64)
    accepted = np.zeros(chains)
    total = burn_in + num_samples * thin
    if d < 2:
        kept_orders[:] = order[:, None]
        kept_masks[:] = masks[:, None]
        return kept_orders, kept_masks, np.zeros(chains)
    idx = np.arange(d)[None, :]
    block = 2048
    for first in range(0, total, block):
        b = min(block, total - first)
        move = rng.choice(3, size=(b, chains), p=MOVES)
        s = rng.integers(0, d, (b, chains))
        t = rng.integers(0, d - 1, (b, chains))
        t = t + (t >= s)  # distinct from s
        left = rng.integers(0, d - 1, (b, chains))  # adjacent pairs (left, left + 1)
        s = np.where(move == 0, left, s)
        t = np.where(move == 0, left + 1, t)
        log_u = np.log(rng.random((b, chains)))
        steps = np.arange(first, first + b)
        warm = int(ANNEAL["fraction"] * burn_in)
        beta = np.where(steps < warm, ANNEAL["beta0"] ** (1 - steps / max(warm, 1)), 1.0)
        log_u = log_u / beta[:, None]
        for step in range(b):
            si, ti = s[step][:, None], t[step][:, None]
            swap = np.where(idx == si, ti, np.where(idx == ti, si, idx))
            between = (idx >= np.minimum(si, ti)) & (idx <= np.maximum(si, ti))
            shift = np.where(idx == ti, si, idx + np.where(si < ti, 1, -1))
            insert = np.where(between, shift, idx)
            source = np.where((move[step] == 2)[:, None], insert, swap)
            proposal = np.take_along_axis(order, source, axis=1)
            new_masks = _masks(proposal, cand)
            new_score = table[nodes, new_masks].sum(-1)
            ok = log_u[step] < new_score - score
            order = np.where(ok[:, None], proposal, order)
            masks = np.where(ok[:, None], new_masks, masks)
            score = np.where(ok, new_score, score)
            accepted += ok
            k = first + step - burn_in
            if k >= 0 and (k + 1) % thin == 0:
                kept_orders[:, k // thin] = order
                kept_masks[:, k // thin] = masks
    return kept_orders, kept_masks, accepted / total


def _edge_traces(local, table, masks) -> np.ndarray:
    """``P(C_j[k] -> j | pi, X)`` of every retained order ``(C, S, d, K)``: the zeta
    transform of ``f_j`` over the sets holding slot ``k``, at the order's mask, over
    ``alpha_j``'s."""
    d, width = local.shape
    slots = width.bit_length() - 1
    sets = np.arange(width)
    out = np.zeros(masks.shape + (slots,))
    for j in range(d):
        holding = (sets[None, :] >> np.arange(slots)[:, None]) & 1  # (K, 2^K)
        gamma = _zeta(np.where(holding == 1, local[j], -np.inf))  # (K, 2^K)
        m = masks[..., j]
        with np.errstate(invalid="ignore"):
            out[..., j, :] = np.exp(np.moveaxis(gamma[:, m], 0, -1) - table[j, m][..., None])
    return np.nan_to_num(out, nan=0.0)


def _split_rhat(traces: np.ndarray) -> np.ndarray:
    """Split potential scale reduction over the first two axes ``(chains, samples, ...)``:
    each chain halved, ``sqrt(((n - 1) / n W + B / n) / W)``; 1 where all is constant,
    ``inf`` where chains are constant but differ; ``nan`` below 4 samples."""
    c, s = traces.shape[:2]
    half = s // 2
    if half < 2:
        return np.full(traces.shape[2:], np.nan)
    split = np.concatenate([traces[:, :half], traces[:, half : 2 * half]], axis=0)
    within = split.var(axis=1, ddof=1).mean(0)
    between = half * split.mean(axis=1).var(axis=0, ddof=1)
    pooled = (half - 1) / half * within + between / half
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.sqrt(pooled / within)
    out = np.where(within > 0, out, np.where(between > 1e-24, np.inf, 1.0))
    return out
