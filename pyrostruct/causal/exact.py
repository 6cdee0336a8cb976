"""The exact posterior over DAGs of a small linear Gaussian problem, by dynamic programming
over node subsets (Koivisto & Sood, "Exact Bayesian structure discovery in Bayesian
networks", JMLR 2004).

The model is :func:`~pyrostruct.causal.discover`'s prior with the BGe likelihood
(:mod:`pyrostruct.infer.bge`: weights and noise variances integrated out in closed form,
score-equivalent on observational data):

.. math::

    \\pi \\sim \\mathrm{Uniform}(S_d), \\quad
    A_{ij} \\mid \\pi \\sim \\mathrm{Bernoulli}(p)\\ \\text{for } i \\text{ before } j, \\quad
    X \\mid A \\sim \\mathrm{BGe},

with ``p = m / (d (d - 1) / 2)`` for ``m`` expected edges. Given the order the posterior
factorizes over nodes: with ``f_j(S) = log p(x_j | x_S) + |S| logit p`` the node's parent
sets inside its predecessors ``P`` sum to ``alpha_j(P) = |P| log(1 - p) + log sum_{S <= P}
exp f_j(S)`` (a zeta transform over subsets), and the orders sum by a forward and a
backward recursion over subsets,

.. math::

    F(P) = \\sum_{k \\in P} F(P \\setminus k)\\, e^{\\alpha_k(P \\setminus k)}, \\qquad
    B(U) = \\sum_{k \\in U} e^{\\alpha_k(V \\setminus U)}\\, B(U \\setminus k),

so that ``p(X) = F(V) / d!`` and ``P(i -> j | X) = sum_{P not containing j} F(P) gamma_ij(P)
B(V - P - j) / F(V)``, ``gamma_ij(P)`` the parent-set sum restricted to sets holding
``i``. Everything costs ``O(d^2 2^d)`` numbers, hence :data:`MAX_NODES`.

It is the reference :func:`discover`'s variational posterior is measured against
(tests, ``benchmarks/causal_interventions.py``), and a usable answer in its own right for
problems of a dozen variables. Perfect interventions drop a node's mechanism from its
intervened rows, as in ``discover``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from pyrostruct.causal.consensus import consensus_adjacency
from pyrostruct.causal.data import bge_columns, check_data
from pyrostruct.causal.equivalence import sample_equivalent_dags
from pyrostruct.causal.interventions import target_sets
from pyrostruct.causal.knowledge import KnowledgeMasks, as_knowledge
from pyrostruct.causal.settings import (
    check_draw_count,
    check_seed,
    expected_edge_count,
)
from pyrostruct.data import is_real_number
from pyrostruct.errors import InputError
from pyrostruct.infer.bge import bge_hyperparameters, bge_local_scores

__all__ = ["ExactPosterior", "exact_posterior", "MAX_NODES"]

#: The most nodes :func:`exact_posterior` takes (its tables hold ``d^2 2^d`` numbers).
MAX_NODES = 16


@dataclasses.dataclass
class ExactPosterior:
    """The exact posterior of :func:`exact_posterior`.

    :ivar list names: node names.
    :ivar numpy.ndarray edge_probs: ``P(i -> j | X)`` ``(d, d)``.
    :ivar float log_evidence: ``log p(X)`` of the model (standardized columns; with
        knowledge, of the prior restricted to what it allows).
    :ivar list intervention_targets: the data's target sets.
    :ivar float threshold: adjacency probability needed in :attr:`adjacency`.
    :ivar knowledge: the background knowledge enforced (optional).
    """

    names: list
    edge_probs: np.ndarray
    log_evidence: float
    intervention_targets: list
    _local: np.ndarray = dataclasses.field(repr=False)  # f_j(S), (d, 2^d), -inf if j in S
    _alpha: np.ndarray = dataclasses.field(repr=False)  # alpha_j(P), (d, 2^d)
    _backward: np.ndarray = dataclasses.field(repr=False)  # log B(U), (2^d,)
    threshold: float = 0.5
    knowledge: KnowledgeMasks | None = None
    _statistics: dict | None = dataclasses.field(default=None, repr=False)

    @property
    def adjacency(self) -> np.ndarray:
        """The consensus DAG ``(d, d)`` of the edge probabilities, built as
        :attr:`CausalResult.adjacency <pyrostruct.causal.CausalResult.adjacency>` is (pairs
        adjacent with probability ``>= threshold``, most probable first, always acyclic)."""
        precedes = None if self.knowledge is None else self.knowledge.precedes
        return consensus_adjacency(self.edge_probs, self.threshold, precedes)

    def sample_dags(self, n: int, *, seed: int = 0, average_equivalent: bool = False):
        """``n`` exact posterior draws ``(n, d, d)`` (int64): the order node by node from the
        backward sums, then each node's parents given its predecessors.

        :param bool average_equivalent: replace each draw by a uniform member of its
            (interventional) Markov equivalence class, as ``discover`` does by default.
        :param seed: seed of the draws, ``0 .. 2**32 - 1``, or ``None`` for a fresh one.
        :raises InputError: ``n`` not a positive integer or above
            :data:`~pyrostruct.causal.settings.MAX_NUM_SAMPLES`, or a bad seed.
        """
        n = check_draw_count(n)
        rng = np.random.default_rng(check_seed(seed))
        d = len(self.names)
        full = (1 << d) - 1
        dags = np.zeros((n, d, d), dtype=np.int64)
        for s in range(n):
            prefix = 0
            for _ in range(d):
                rest = [k for k in range(d) if not prefix >> k & 1]
                logits = [self._alpha[k, prefix] + self._backward[full & ~prefix & ~(1 << k)]
                          for k in rest]  # fmt: skip
                k = rest[_draw(rng, np.asarray(logits))]
                subsets = _submasks(prefix)
                parents = subsets[_draw(rng, self._local[k, subsets])]
                dags[s, _members(parents, d), k] = 1
                prefix |= 1 << k
        if average_equivalent:
            dags = sample_equivalent_dags(dags, rng, targets=self.intervention_targets)
        return dags

    def mean_weights(self, adjacency) -> np.ndarray:
        """BGe posterior mean edge weights ``(d, d)`` of the DAG ``adjacency`` in the data's
        units: node ``j``'s coefficients on its parents ``P`` are ``(G_PP + c I)^{-1}
        G_Pj`` on the scaled columns (``G`` the Gram matrix of the rows where ``j`` is not
        intervened on, ``c`` the BGe scale), times ``sd_j / sd_i``."""
        stats = self._statistics
        a = np.asarray(adjacency, dtype=bool)
        d = len(self.names)
        out = np.zeros((d, d))
        for j in range(d):
            parents = np.flatnonzero(a[:, j])
            if len(parents):
                gram = stats["grams"][j]
                prec = gram[np.ix_(parents, parents)] + stats["c"] * np.eye(len(parents))
                out[parents, j] = np.linalg.solve(prec, gram[parents, j])
        sd = stats["scale"]
        return out * sd[None, :] / sd[:, None]

    def to_dict(self) -> dict:
        """JSON record of the posterior's sufficient statistics (per node, the Gram matrix
        of the scaled columns over its non-intervened rows and their number; ``d^3 + O(d^2)``
        numbers, not the ``d 2^d`` tables); :meth:`from_dict` recomputes the posterior."""
        stats = self._statistics
        return {
            "names": list(self.names),
            "grams": stats["grams"].tolist(),
            "rows": [int(v) for v in stats["rows"]],
            "scale": stats["scale"].tolist(),
            "nu": stats["nu"],
            "c": stats["c"],
            "edge_probability": stats["p"],
            "intervention_targets": [list(map(int, t)) for t in self.intervention_targets],
            "threshold": self.threshold,
            "knowledge": None if self.knowledge is None else self.knowledge.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ExactPosterior:
        """The posterior of a :meth:`to_dict` record (recomputed: same numbers).

        :raises InputError: a record that :meth:`to_dict` cannot have written (a missing
            field, wrong shapes, non-finite numbers, values out of range), in one line.
        """
        try:
            fields = _check_record(data)
        except (KeyError, IndexError, TypeError, ValueError, OverflowError) as e:
            if isinstance(e, InputError):
                raise
            what = f"missing field {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
            raise InputError(f"exact posterior record: {what[:200]}") from None
        return _solve(*fields[:3], **fields[3])


def _check_record(data) -> tuple:
    """The arguments of :func:`_solve` from a :meth:`ExactPosterior.to_dict` record, checked."""

    def bad(message):
        return InputError(f"exact posterior record: {message}")

    if not isinstance(data, dict):
        raise bad(f"expected a JSON object, got {type(data).__name__}")
    names = data["names"]
    if not isinstance(names, list) or not 2 <= len(names) <= MAX_NODES:
        raise bad(f"names must be a list of 2 to {MAX_NODES} node names")
    if len({str(v) for v in names}) != len(names):
        raise bad("names must be distinct")
    d = len(names)
    grams = np.asarray(data["grams"], dtype=np.float64)
    rows = np.asarray(data["rows"], dtype=np.float64)
    scale = np.asarray(data["scale"], dtype=np.float64)
    if grams.shape != (d, d, d) or rows.shape != (d,) or scale.shape != (d,):
        raise bad(f"grams, rows and scale must have shapes ({d}, {d}, {d}), ({d},), ({d},)")
    if not (np.isfinite(grams).all() and np.isfinite(scale).all() and (scale > 0).all()):
        raise bad("grams and scale must be finite, scale > 0")
    if not ((rows >= 1).all() and (rows <= 2**53).all() and (rows == np.round(rows)).all()):
        raise bad("rows must be positive integers")
    size = max(1.0, float(np.abs(grams).max()))
    symmetric = np.abs(grams - grams.transpose(0, 2, 1)).max() <= 1e-8 * size
    if not symmetric or np.linalg.eigvalsh(grams).min() < -1e-8 * size:
        raise bad("every node's Gram matrix must be symmetric positive semidefinite")
    nu, c, p = (data[k] for k in ("nu", "c", "edge_probability"))
    if not all(is_real_number(v, finite=True) for v in (nu, c, p)):
        raise bad("nu, c and edge_probability must be finite numbers")
    if not (nu > d - 1 and c > 0 and 0 < p < 1):
        raise bad(f"need nu > d - 1 = {d - 1}, c > 0 and 0 < edge_probability < 1")
    targets = [list(t) for t in data["intervention_targets"]]
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < d
               for t in targets for i in t):  # fmt: skip
        raise bad(f"intervention_targets must hold node indices 0 .. {d - 1}")
    threshold = data["threshold"]
    if not (is_real_number(threshold) and 0 < threshold <= 1):
        raise bad(f"threshold must lie in (0, 1], got {threshold!r}")
    knowledge = data.get("knowledge")
    knowledge = None if knowledge is None else KnowledgeMasks.from_dict(knowledge)
    if knowledge is not None and knowledge.free.shape != (d, d):
        raise bad(f"knowledge must be about {d} nodes")
    kwargs = dict(names=[str(v) for v in names], targets=targets, nu=float(nu), c=float(c),
                  p=float(p), knowledge=knowledge, threshold=float(threshold))  # fmt: skip
    return grams, rows.astype(np.int64), scale, kwargs


def exact_posterior(
    data,
    *,
    interventions=None,
    knowledge=None,
    expected_edges: float | None = None,
    standardize: bool = True,
    prior_df: float | None = None,
    prior_scale: float = 1.0,
) -> ExactPosterior:
    """The exact posterior over DAGs of a linear Gaussian problem with at most
    :data:`MAX_NODES` nodes (see the module's text for the model and the recursion).

    :param data: numeric data ``(n, d)``; a DataFrame's column names become node names.
    :param interventions: perfect interventions per row, as for
        :func:`~pyrostruct.causal.discover`.
    :param knowledge: background knowledge, as for :func:`~pyrostruct.causal.discover`,
        enforced exactly: a forbidden parent or a missing required one removes a parent
        set, and an order against the tiers or a required edge gets prior weight 0 (the
        prior is the order-modular one restricted to what the knowledge allows:
        uniform over the allowed orders, free forward edges ``Bernoulli(p)``).
    :param float expected_edges: prior expected number of edges (default ``min(d, d (d -
        1) / 4)``, as ``discover``).
    :param bool standardize: scale every column to mean 0 and sd 1 over the observational
        rows (default; :func:`~pyrostruct.causal.data.bge_columns`: the BGe
        model has no intercepts). ``False``: only centred.
    :param float prior_df: BGe degrees of freedom ``nu`` (default ``d + 2``).
    :param float prior_scale: BGe scale ``c``.
    :raises InputError: bad data, interventions or knowledge, more than :data:`MAX_NODES`
        nodes, or ``expected_edges`` outside ``(0, d (d - 1) / 2)``.

    Example::

        >>> from pyrostruct.causal import datasets
        >>> ds = datasets.make_dataset(d=4, n=200, seed=0)
        >>> exact_posterior(ds.data).edge_probs.shape
        (4, 4)
    """
    x, names, mask = check_data(data, interventions)
    d = x.shape[1]
    check_size(d)
    m = expected_edge_count(expected_edges, d)
    nu, c = bge_hyperparameters(d, prior_df, prior_scale)
    if not isinstance(standardize, (bool, np.bool_)):
        raise InputError(f"standardize must be True or False, got {standardize!r}")
    masks = None if knowledge is None else as_knowledge(knowledge).resolve(names)
    return posterior_of_table(x, names, mask, knowledge=masks, expected_edges=m,
                              standardize=bool(standardize), nu=nu, c=c)  # fmt: skip


def check_size(d: int) -> None:
    """Refuse more than :data:`MAX_NODES` nodes."""
    if d > MAX_NODES:
        raise InputError(
            f"the exact posterior sums over all orders of the nodes: at most {MAX_NODES} "
            f"nodes, got {d}; use discover's variational estimators (estimator='analytic')"
        )


def posterior_of_table(
    x: np.ndarray, names, mask, *, knowledge: KnowledgeMasks | None, expected_edges: float,
    standardize: bool, nu: float, c: float, threshold: float = 0.5,
) -> ExactPosterior:  # fmt: skip
    """:func:`exact_posterior` of a checked table ``x`` with its ``names`` and intervention
    ``mask`` (what ``discover(estimator="exact")`` calls after its own checks)."""
    d = x.shape[1]
    z, _, sd = bge_columns(x, mask, standardize=standardize, names=names)
    grams, rows = node_grams(z, mask)
    p = expected_edges / (d * (d - 1) / 2)
    return _solve(grams, rows, sd, names=list(names), targets=target_sets(mask), nu=nu, c=c,
                  p=p, knowledge=knowledge, threshold=threshold)  # fmt: skip


def node_grams(z: np.ndarray, mask) -> tuple[np.ndarray, np.ndarray]:
    """Per node, the Gram matrix of the columns ``z`` ``(n, d)`` over the rows where the node
    is not intervened on (``mask``, or ``None``), ``(d, d, d)``, and their numbers
    ``(d,)``: the BGe posterior's sufficient statistics."""
    d = z.shape[1]
    columns = torch.as_tensor(z, dtype=torch.float64)
    grams, rows = np.empty((d, d, d)), np.empty(d, dtype=np.int64)
    for j in range(d):
        kept = columns if mask is None else columns[~torch.as_tensor(np.asarray(mask[:, j]))]
        grams[j], rows[j] = (kept.T @ kept).numpy(), len(kept)
    return grams, rows


def _solve(grams, rows, scale, *, names, targets, nu, c, p, knowledge, threshold):
    """The posterior from the per-node Gram matrices ``(d, d, d)`` and row counts ``(d,)``."""
    d = len(names)
    logit = math.log(p / (1 - p))
    local = _local_scores(grams, rows, nu, c)
    bits = (np.arange(1 << d)[None, :] >> np.arange(d)[:, None]) & 1  # (d, 2^d): i in S
    free = np.ones((d, d), dtype=bool)
    allowed = np.ones((d, 1 << d), dtype=bool)  # alpha_k(P) allowed: P may precede k
    if knowledge is not None:
        free = knowledge.free
        for j in range(d):
            required = _bitmask(knowledge.required[:, j])
            forbidden = _bitmask(knowledge.forbidden[:, j])
            sets = np.arange(1 << d)
            local[j, ((sets & required) != required) | ((sets & forbidden) != 0)] = -np.inf
            before = _bitmask(knowledge.precedes[:, j] | knowledge.required[:, j])
            after = _bitmask(knowledge.precedes[j, :] | knowledge.required[j, :])
            allowed[j] = ((sets & before) == before) & ((sets & after) == 0)
    free_bits = free.T.astype(np.int64) @ bits  # (d, 2^d): free parents of j in S
    local = local + logit * free_bits
    log1m = free_bits * math.log1p(-p)  # a free predecessor left out
    alpha = np.where(allowed, _zeta(local) + log1m, -np.inf)
    forward, backward = _forward(alpha), _backward(alpha)
    log_z = forward[-1]
    num_orders = math.lgamma(d + 1)
    if knowledge is not None and knowledge.constrains_orders:
        num_orders = float(_forward(np.where(allowed, 0.0, -np.inf))[-1])
    probs = np.zeros((d, d))
    full = (1 << d) - 1
    for j in range(d):
        without = np.flatnonzero(bits[j] == 0)  # predecessor sets of j
        after = backward[full & ~without & ~(1 << j)]
        gamma = _zeta(np.where(bits == 1, local[j], -np.inf)) + log1m[j]
        gamma = np.where(allowed[j], gamma, -np.inf)
        terms = forward[without] + gamma[:, without] + after - log_z  # (d, 2^(d-1))
        probs[:, j] = np.exp(np.logaddexp.reduce(terms, axis=1))
        probs[j, j] = 0.0
    return ExactPosterior(
        names=list(names),
        edge_probs=np.clip(probs, 0.0, 1.0),
        log_evidence=float(log_z) - num_orders,  # the uniform prior of an (allowed) order
        intervention_targets=targets,
        _local=local,
        _alpha=alpha,
        _backward=backward,
        threshold=threshold,
        knowledge=knowledge,
        _statistics={
            "grams": grams,
            "rows": rows,
            "scale": np.asarray(scale, dtype=np.float64),
            "nu": nu,
            "c": c,
            "p": p,
        },  # fmt: skip
    )


def _local_scores(grams: np.ndarray, rows: np.ndarray, nu: float, c: float) -> np.ndarray:
    """``f_j(S)`` ``(d, 2^d)`` without the prior: BGe log evidence of node ``j`` given
    parents ``S``; ``-inf`` where ``j`` is in ``S``."""
    d = len(rows)
    out = np.full((d, 1 << d), -np.inf)
    for j in range(d):
        sets = [s for s in range(1 << d) if not s >> j & 1]
        parents = [_members(s, d) for s in sets]
        gram = torch.as_tensor(grams[j], dtype=torch.float64)
        out[j, sets] = bge_local_scores(gram, int(rows[j]), j, parents, nu=nu, c=c).numpy()
    return out


def _bitmask(flags) -> int:
    return sum(1 << int(i) for i in np.flatnonzero(flags))


def _zeta(f: np.ndarray) -> np.ndarray:
    """``log sum_{S <= P} exp f[..., S]`` for every subset ``P`` (bit masks on the last axis)."""
    out = f.copy()
    size = out.shape[-1]
    bit = 1
    while bit < size:
        view = out.reshape(*out.shape[:-1], size // (2 * bit), 2, bit)
        view[..., 1, :] = np.logaddexp(view[..., 1, :], view[..., 0, :])
        bit *= 2
    return out


def _forward(alpha: np.ndarray) -> np.ndarray:
    """``log F(P)``: every order of ``P``, each node's parents among its predecessors."""
    d = alpha.shape[0]
    out = np.full(1 << d, -np.inf)
    out[0] = 0.0
    for s in sorted(range(1, 1 << d), key=lambda s: bin(s).count("1")):
        terms = [out[s & ~(1 << k)] + alpha[k, s & ~(1 << k)] for k in _members(s, d)]
        out[s] = np.logaddexp.reduce(terms)
    return out


def _backward(alpha: np.ndarray) -> np.ndarray:
    """``log B(U)``: every order of ``U`` placed after all other nodes."""
    d = alpha.shape[0]
    full = (1 << d) - 1
    out = np.full(1 << d, -np.inf)
    out[0] = 0.0
    for s in sorted(range(1, 1 << d), key=lambda s: bin(s).count("1")):
        before = full & ~s
        terms = [alpha[k, before] + out[s & ~(1 << k)] for k in _members(s, d)]
        out[s] = np.logaddexp.reduce(terms)
    return out


def _members(s: int, d: int) -> list[int]:
    return [k for k in range(d) if s >> k & 1]


def _submasks(s: int) -> np.ndarray:
    out, sub = [], s
    while True:
        out.append(sub)
        if sub == 0:
            return np.asarray(out)
        sub = (sub - 1) & s


def _draw(rng: np.random.Generator, logits: np.ndarray) -> int:
    w = np.exp(logits - logits.max())
    return int(rng.choice(len(w), p=w / w.sum()))
