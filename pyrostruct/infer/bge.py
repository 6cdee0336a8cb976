"""The BGe score: the closed-form log evidence of one node of a linear Gaussian DAG given
its parents, batched over parent sets.

Node ``j`` with parents ``S`` (``p = |S|``) of ``d`` standardized variables follows

.. math::

    \\sigma_j^2 \\sim \\mathrm{InvGamma}\\Big(\\frac{\\nu - d + p + 1}{2}, \\frac{c}{2}\\Big),
    \\quad \\beta_j \\mid \\sigma_j^2 \\sim N(0, \\sigma_j^2 c^{-1} I),
    \\quad x_{ij} \\sim N(x_{iS}^\\top \\beta_j, \\sigma_j^2),

the node-wise priors an inverse-Wishart ``IW(nu, c I)`` prior on the joint covariance
induces on every DAG (Geiger & Heckerman 2002; Kuipers, Moffa & Heckerman, "Addendum on
the scoring of Gaussian directed acyclic graphical models", 2014): Markov-equivalent DAGs
get exactly the same evidence from observational data. With ``y`` the ``m`` rows where
``j`` is not intervened on and ``Z`` their parents' columns, ``V = (c I + Z^T Z)^{-1}``,
``a = a_0 + m / 2`` and ``b = b_0 + (y^T y - y^T Z V Z^T y) / 2``:

.. math::

    \\log p(y \\mid Z) = -\\frac m2 \\log 2\\pi + \\frac12 \\log(|V| c^p)
        + a_0 \\log b_0 - a \\log b + \\log\\Gamma(a) - \\log\\Gamma(a_0).

Only the Gram matrix of the rows enters, so scoring many parent sets costs one batched
Cholesky factorization per parent-set size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from pyrostruct.errors import InputError

__all__ = ["BGeScore", "bge_hyperparameters", "bge_local_scores"]


def bge_hyperparameters(d: int, prior_df: float | None, prior_scale: float) -> tuple[float, float]:
    """``(nu, c)``: degrees of freedom (default ``d + 2``, must exceed ``d - 1``) and scale.

    :raises InputError: ``prior_df`` outside ``(d - 1, d + 1e6]``, or ``prior_scale`` not
        finite and positive.
    """
    nu = float(d + 2) if prior_df is None else float(prior_df)
    if not d - 1 < nu <= d + 1e6:
        raise InputError(
            f"prior_df must exceed d - 1 = {d - 1} (and stay below d + 1e6, past which the "
            f"prior swamps any data), got {nu}"
        )
    if not 0 < prior_scale < math.inf:
        raise InputError(f"prior_scale must be a finite number > 0, got {prior_scale}")
    return nu, float(prior_scale)


def bge_local_scores(
    gram: torch.Tensor,
    num_rows,
    node: int,
    parent_sets: Sequence[Sequence[int]],
    *,
    nu: float,
    c: float,
) -> torch.Tensor:
    """BGe log evidence of ``node`` given each parent set: ``(*B, len(parent_sets))`` float64.

    :param gram: ``X^T X`` ``(*B, d, d)`` of the rows where ``node`` is not intervened on
        (float64; a batch of data sets along ``*B``).
    :param num_rows: their number: an int or a ``(*B,)`` tensor.
    :param parent_sets: parent sets (node indices, ``node`` not among them).
    """
    d = gram.shape[-1]
    batch = gram.shape[:-2]
    m = torch.as_tensor(num_rows, dtype=torch.float64).expand(batch)
    out = torch.empty(*batch, len(parent_sets), dtype=torch.float64)
    b0 = c / 2
    by_size: dict[int, list[int]] = {}
    for k, parents in enumerate(parent_sets):
        by_size.setdefault(len(parents), []).append(k)
    yy = gram[..., node, node]
    for p, rows in by_size.items():
        a0 = (nu - d + p + 1) / 2
        a = (a0 + m / 2)[..., None]
        if p == 0:
            quad = yy[..., None].expand(*batch, len(rows))
            logdet = torch.zeros(len(rows), dtype=torch.float64)
        else:
            idx = torch.tensor([list(parent_sets[k]) for k in rows])
            prec = gram[..., idx[:, :, None], idx[:, None, :]]
            prec = prec + c * torch.eye(p, dtype=torch.float64)
            zy = gram[..., idx, node]
            chol = torch.linalg.cholesky(prec)
            half = torch.linalg.solve_triangular(chol, zy[..., None], upper=False)[..., 0]
            quad = yy[..., None] - (half * half).sum(-1)
            logdet = p * math.log(c) - 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        b = b0 + quad / 2
        const = (-m / 2 * math.log(2 * math.pi) + a0 * math.log(b0))[..., None]
        const = const + torch.lgamma(a) - math.lgamma(a0)
        out[..., rows] = const + 0.5 * logdet - a * torch.log(b)
    return out


class BGeScore:
    """``log p(X | G)`` of a linear Gaussian DAG with its weights and noise variances
    integrated out (the BGe score), for a batch of adjacency matrices: a likelihood for
    a Pyro model whose only structural latent is the DAG::

        score = BGeScore(x)
        def model():
            G = pyro.sample("G", ErdosRenyiDAG(d, expected_edges=d))
            pyro.factor("X", score(G))

    The sum over nodes of :func:`bge_local_scores` given each node's parents in ``G``;
    the adjacency enters non-linearly, so train such a model with the score-function
    estimator (``AutoDAG``'s default). Local scores are computed once per parent set and
    cached. Markov-equivalent DAGs get the same score (Geiger & Heckerman 2002).

    :param x: ``(n, d)`` data, centred (standardized columns are the usual choice:
        ``c`` is then on the scale of a unit-variance column).
    :param prior_df: degrees of freedom ``nu`` of the inverse-Wishart prior (default ``d + 2``).
    :param float prior_scale: its scale ``c`` (default 1).
    """

    def __init__(self, x, *, prior_df: float | None = None, prior_scale: float = 1.0):
        x = torch.as_tensor(x, dtype=torch.float64)
        if x.dim() != 2 or x.shape[0] < 1 or x.shape[1] < 1:
            raise InputError(f"BGeScore needs an (n, d) data matrix, got shape {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise InputError("BGeScore: the data hold NaN or infinite values")
        self.num_rows, self.num_nodes = x.shape
        self.nu, self.c = bge_hyperparameters(self.num_nodes, prior_df, prior_scale)
        self.gram = x.T @ x
        self._cache: list[dict[int, float]] = [{} for _ in range(self.num_nodes)]

    def local_score(self, node: int, parents: Sequence[int]) -> float:
        """BGe log evidence of ``node`` given ``parents`` (cached)."""
        return self._local_scores(node, [sum(1 << int(i) for i in set(parents))])[0]

    def _local_scores(self, node: int, keys: list[int]) -> list[float]:
        """Local scores of ``node`` for parent sets given as bitmasks; the ones not cached
        yet are computed in one batched :func:`bge_local_scores` call."""
        cache = self._cache[node]
        missing = [k for k in dict.fromkeys(keys) if k not in cache]
        if missing:
            sets = [[i for i in range(self.num_nodes) if (k >> i) & 1] for k in missing]
            scores = bge_local_scores(self.gram, self.num_rows, node, sets, nu=self.nu, c=self.c)
            cache.update(zip(missing, scores.tolist()))
        return [cache[k] for k in keys]

    def __call__(self, adjacency: torch.Tensor) -> torch.Tensor:
        """``log p(X | G)`` for ``adjacency`` ``(..., d, d)`` (0/1, ``A[i, j] = 1``: ``i -> j``)."""
        d = self.num_nodes
        if adjacency.shape[-2:] != (d, d):
            raise InputError(
                f"BGeScore: expected adjacency matrices (..., {d}, {d}), got "
                f"{tuple(adjacency.shape)}"
            )
        parents = adjacency.detach().reshape(-1, d, d) > 0.5
        weights = 2 ** torch.arange(d)
        keys = (parents.long() * weights[:, None]).sum(-2)  # (B, d): parent bitmask per node
        # one lookup for every (node, parent set) of the batch: code = key * d + node
        unique, inverse = torch.unique(keys * d + torch.arange(d), return_inverse=True)
        codes = unique.tolist()
        by_node: dict[int, list[int]] = {}
        for code in codes:
            by_node.setdefault(code % d, []).append(code // d)
        for j, keys_j in by_node.items():
            self._local_scores(j, keys_j)  # computes the missing ones into the cache
        values = torch.tensor([self._cache[c % d][c // d] for c in codes], dtype=torch.float64)
        return values[inverse].sum(-1).reshape(adjacency.shape[:-2])
