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

from pyrostruct.causal.data import bge_columns, check_data
from pyrostruct.causal.equivalence import sample_equivalent_dags
from pyrostruct.causal.interventions import target_sets
from pyrostruct.causal.result import consensus_adjacency
from pyrostruct.causal.settings import check_seed
from pyrostruct.data import is_real_number
from pyrostruct.errors import InputError, check_count
from pyrostruct.infer.bge import bge_hyperparameters, bge_local_scores

__all__ = ["ExactPosterior", "exact_posterior", "MAX_NODES"]

#: The most nodes :func:`exact_posterior` takes (its tables hold ``d^2 2^d`` numbers).
MAX_NODES = 16


@dataclasses.dataclass
class ExactPosterior:
    """The exact posterior of :func:`exact_posterior`.

    :ivar list names: node names.
    :ivar numpy.ndarray edge_probs: ``P(i -> j | X)`` ``(d, d)``.
    :ivar float log_evidence: ``log p(X)`` of the model (standardized columns).
    :ivar list intervention_targets: the data's target sets.
    :ivar float threshold: adjacency probability needed in :attr:`adjacency`.
    """

    names: list
    edge_probs: np.ndarray
    log_evidence: float
    intervention_targets: list
    _local: np.ndarray = dataclasses.field(repr=False)  # f_j(S), (d, 2^d), -inf if j in S
    _alpha: np.ndarray = dataclasses.field(repr=False)  # alpha_j(P), (d, 2^d)
    _backward: np.ndarray = dataclasses.field(repr=False)  # log B(U), (2^d,)
    threshold: float = 0.5

    @property
    def adjacency(self) -> np.ndarray:
        """The consensus DAG ``(d, d)`` of the edge probabilities, built as
        :attr:`CausalResult.adjacency <pyrostruct.causal.CausalResult.adjacency>` is (pairs
        adjacent with probability ``>= threshold``, most probable first, always acyclic)."""
        return consensus_adjacency(self.edge_probs, self.threshold)

    def sample_dags(self, n: int, *, seed: int = 0, average_equivalent: bool = False):
        """``n`` exact posterior draws ``(n, d, d)`` (int64): the order node by node from the
        backward sums, then each node's parents given its predecessors.

        :param bool average_equivalent: replace each draw by a uniform member of its
            (interventional) Markov equivalence class, as ``discover`` does by default.
        :param seed: seed of the draws, ``0 .. 2**32 - 1``, or ``None`` for a fresh one.
        :raises InputError: ``n`` not a positive integer, or a bad seed.
        """
        n = check_count(n, "n")
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


def exact_posterior(
    data,
    *,
    interventions=None,
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
    :param float expected_edges: prior expected number of edges (default ``min(d, d (d -
        1) / 4)``, as ``discover``).
    :param bool standardize: scale every column to mean 0 and sd 1 over the observational
        rows (default; :func:`~pyrostruct.causal.data.bge_columns`: the BGe
        model has no intercepts). ``False``: only centred.
    :param float prior_df: BGe degrees of freedom ``nu`` (default ``d + 2``).
    :param float prior_scale: BGe scale ``c``.
    :raises InputError: bad data or interventions, more than :data:`MAX_NODES` nodes, or
        ``expected_edges`` outside ``(0, d (d - 1) / 2)``.

    Example::

        >>> from pyrostruct.causal import datasets
        >>> ds = datasets.make_dataset(d=4, n=200, seed=0)
        >>> exact_posterior(ds.data).edge_probs.shape
        (4, 4)
    """
    x, names, mask = check_data(data, interventions)
    n, d = x.shape
    if d > MAX_NODES:
        raise InputError(
            f"exact_posterior sums over all orders of the nodes: at most {MAX_NODES} nodes, "
            f"got {d}; use discover"
        )
    pairs = d * (d - 1) / 2
    if expected_edges is not None and not is_real_number(expected_edges):
        raise InputError(f"expected_edges must be a number, got {expected_edges!r}")
    m = min(float(d), pairs / 2) if expected_edges is None else float(expected_edges)
    if not 0 < m < pairs:
        raise InputError(
            f"expected_edges must lie strictly between 0 and d(d-1)/2 = {pairs:g}, got {m}"
        )
    p = m / pairs
    nu, c = bge_hyperparameters(d, prior_df, prior_scale)
    if not isinstance(standardize, (bool, np.bool_)):
        raise InputError(f"standardize must be True or False, got {standardize!r}")
    z, _, _ = bge_columns(x, mask, standardize=bool(standardize), names=names)
    columns = torch.as_tensor(z, dtype=torch.float64)
    local = _local_scores(columns, mask, nu, c, math.log(p / (1 - p)))
    sizes = np.array([bin(s).count("1") for s in range(1 << d)])
    alpha = _zeta(local) + sizes * math.log1p(-p)
    forward, backward = _forward(alpha), _backward(alpha)
    log_z = forward[-1]
    probs = np.zeros((d, d))
    full = (1 << d) - 1
    bits = (np.arange(1 << d)[None, :] >> np.arange(d)[:, None]) & 1  # (d, 2^d): i in S
    for j in range(d):
        without = np.flatnonzero(bits[j] == 0)  # predecessor sets of j
        after = backward[full & ~without & ~(1 << j)]
        gamma = _zeta(np.where(bits == 1, local[j], -np.inf)) + sizes * math.log1p(-p)
        terms = forward[without] + gamma[:, without] + after - log_z  # (d, 2^(d-1))
        probs[:, j] = np.exp(np.logaddexp.reduce(terms, axis=1))
        probs[j, j] = 0.0
    return ExactPosterior(
        names=list(names),
        edge_probs=np.clip(probs, 0.0, 1.0),
        log_evidence=float(log_z) - math.lgamma(d + 1),  # the uniform prior of an order
        intervention_targets=target_sets(mask),
        _local=local,
        _alpha=alpha,
        _backward=backward,
    )


def _local_scores(x: torch.Tensor, mask, nu: float, c: float, logit: float) -> np.ndarray:
    """``f_j(S)`` ``(d, 2^d)``: BGe log evidence of node ``j`` given parents ``S`` plus ``|S|
    logit p``; ``-inf`` where ``j`` is in ``S``."""
    n, d = x.shape
    out = np.full((d, 1 << d), -np.inf)
    for j in range(d):
        rows = x if mask is None else x[~torch.as_tensor(mask[:, j])]
        sets = [s for s in range(1 << d) if not s >> j & 1]
        parents = [_members(s, d) for s in sets]
        scores = bge_local_scores(rows.T @ rows, len(rows), j, parents, nu=nu, c=c).numpy()
        out[j, sets] = scores + logit * np.array([len(pa) for pa in parents])
    return out


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
