"""How much an experiment would tell about the graph: the expected information gain of
perfect interventions under a posterior over linear Gaussian DAGs.

A posterior over DAGs is represented by ``M`` draws ``G_1..G_M`` (their distinct graphs
``u`` with weights ``w_u``, the draws' frequencies). Given a graph, the linear Gaussian
parameters are integrated in closed form with the BGe priors (:mod:`pyrostruct.infer.bge`),
so the outcome ``Y`` of an experiment ``xi`` (rows with some nodes set to chosen values)
has the exact predictive density given the data ``D`` seen so far,

.. math::

    p(Y \\mid G, D, \\xi) = \\prod_{j} \\frac{p_j(D \\cup Y \\mid \\mathrm{pa}_G(j))}
        {p_j(D \\mid \\mathrm{pa}_G(j))},

each node on the rows where it is not intervened on: a ratio of BGe evidences, computed
from Gram matrices. The expected information gain about the graph (Lindley 1956; for
causal designs Tigas et al., "Interventions, Where and How? Experimental Design for
Causal Models at Scale", NeurIPS 2022) is then

.. math::

    \\mathrm{EIG}(\\xi) = I(G; Y \\mid \\xi)
        = E_{G \\sim w} E_{Y \\mid G} \\Big[\\log p(Y \\mid G, D, \\xi)
          - \\log \\sum_u w_u\\, p(Y \\mid u, D, \\xi)\\Big].

:class:`GraphPosterior` estimates it by Monte Carlo over the outer expectation only: for
each draw ``G_m`` a parameter draw from its conjugate posterior, then ``Y_m`` by ancestral
sampling; the inner sum runs over every distinct graph exactly. So the estimate is
unbiased for the gain under the ``M``-draw posterior, with the standard error of a mean
over ``m``; it is zero when all draws are one graph, and bounded by the entropy of ``w``.
A batch of experiments is scored jointly by the same formula on the union of their rows
(the parameters are shared, so two experiments tell less than the sum of their gains).

:meth:`GraphPosterior.ait_scores` is the discrepancy score of active intervention
targeting (Scherrer et al., "Learning neural causal models with active interventions",
2021): for each non-intervened node, the variance of the simulated outcome means between
posterior draws over the variance within them, summed; a fast heuristic.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from pyrostruct.infer.bge import bge_local_scores

__all__ = ["Experiment", "GraphPosterior"]


@dataclasses.dataclass(frozen=True)
class Experiment:
    """``samples`` rows with the nodes ``targets`` set to ``values`` (standardized units)."""

    targets: tuple[int, ...]
    values: tuple[float, ...]
    samples: int


class GraphPosterior:
    """Posterior DAG draws with the parameters of each integrated given the data (BGe).

    :param dags: draws ``(M, d, d)`` (0/1, ``A[i, j] = 1``: ``i -> j``).
    :param z: the data ``(n, d)``, standardized.
    :param mask: ``(n, d)`` perfect interventions of the data's rows (optional).
    :param float nu: BGe degrees of freedom.
    :param float c: BGe scale.
    """

    def __init__(self, dags: np.ndarray, z: np.ndarray, mask, *, nu: float, c: float):
        dags = np.asarray(dags, dtype=np.int64)
        m, d, _ = dags.shape
        unique, which, counts = np.unique(
            dags.reshape(m, -1), axis=0, return_inverse=True, return_counts=True
        )
        self.d, self.num_draws, self.nu, self.c = d, m, nu, c
        self.graphs = unique.reshape(-1, d, d)
        self.which = torch.as_tensor(which.reshape(-1))
        self.log_weights = torch.as_tensor(np.log(counts / m))
        zt = torch.tensor(np.asarray(z, dtype=np.float64))  # a copy: z may be read-only
        keep = None if mask is None else ~torch.as_tensor(np.asarray(mask), dtype=torch.bool)
        self.grams, self.rows, self.families, self.family_of, self.base = [], [], [], [], []
        for j in range(d):
            rows = zt if keep is None else zt[keep[:, j]]
            parents = [tuple(np.flatnonzero(g[:, j]).tolist()) for g in self.graphs]
            families = sorted(set(parents))
            gram = rows.T @ rows
            self.grams.append(gram)
            self.rows.append(len(rows))
            self.families.append(families)
            self.family_of.append(torch.tensor([families.index(p) for p in parents]))
            self.base.append(bge_local_scores(gram, len(rows), j, families, nu=nu, c=c))

    @property
    def entropy(self) -> float:
        """Entropy (nats) of the draws' distinct graphs: the most any experiment can gain."""
        w = self.log_weights
        return max(0.0, float(-(w.exp() * w).sum()))  # no -0.0 (or rounding below 0)

    # -- simulation ----------------------------------------------------------------
    def draw_parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One parameter draw per posterior draw from its graph's conjugate posterior:
        weights ``(M, d, d)`` (``B[m, i, j]``: effect of ``i`` on ``j``) and noise variances
        ``(M, d)``; uses torch's global generator."""
        m, d = self.num_draws, self.d
        weights = torch.zeros(m, d, d, dtype=torch.float64)
        noise = torch.empty(m, d, dtype=torch.float64)
        b0 = self.c / 2
        for j in range(d):
            fam = self.family_of[j][self.which]  # (M,) family of each draw's node j
            for f, parents in enumerate(self.families[j]):
                draws = torch.nonzero(fam == f).flatten()
                if len(draws) == 0:
                    continue
                p = len(parents)
                gram, n = self.grams[j], self.rows[j]
                a = (self.nu - d + p + 1) / 2 + n / 2
                if p:
                    idx = torch.tensor(parents)
                    eye = torch.eye(p, dtype=torch.float64)
                    chol = torch.linalg.cholesky(gram[idx[:, None], idx[None, :]] + self.c * eye)
                    mean = torch.cholesky_solve(gram[idx, j][:, None], chol)[:, 0]
                    b = b0 + (gram[j, j] - gram[idx, j] @ mean) / 2
                else:
                    b = b0 + gram[j, j] / 2
                var = b / torch.distributions.Gamma(a, 1.0).sample((len(draws),)).double()
                noise[draws, j] = var
                if p:
                    # beta ~ N(mean, var * prec^{-1}): mean + sqrt(var) L^{-T} eps
                    eps = torch.randn(len(draws), p, dtype=torch.float64)
                    step = torch.linalg.solve_triangular(chol.T, eps.T, upper=True).T
                    beta = mean + var.sqrt()[:, None] * step
                    weights[draws[:, None], idx[None, :], j] = beta
        return weights, noise

    def outcomes(self, selection, values, samples: int, parameters):
        """``samples`` outcome rows per draw where node ``j`` is set to ``values[..., j]``
        with weight ``selection[m, j]`` in ``[0, 1]`` (0/1 for an experiment; in between
        for a relaxed one, :mod:`pyrostruct.causal.relaxed_design`): its incoming
        weights and noise are scaled by ``1 - selection`` and the value added with weight
        ``selection``. Returns the outcomes ``(M, N, d)`` and every entry's weight in its
        node's likelihood, ``1 - selection`` ``(M, N, d)``; draws noise from torch's
        global generator."""
        weights, noise = parameters
        m, d = self.num_draws, self.d
        keep = 1.0 - selection
        b = weights * keep[:, None, :]
        eps = torch.randn(m, samples, d, dtype=torch.float64) * noise.sqrt()[:, None, :]
        eps = keep[:, None, :] * eps + (selection * values)[:, None, :]
        eye = torch.eye(d, dtype=torch.float64)
        # x = x B + eps  =>  (I - B)^T x^T = eps^T
        x = torch.linalg.solve((eye - b).transpose(-1, -2), eps.transpose(-1, -2))
        return x.transpose(-1, -2), keep[:, None, :].expand(m, samples, d)

    def simulate(self, experiments, parameters) -> tuple[torch.Tensor, torch.Tensor]:
        """Outcomes ``(M, N, d)`` of ``experiments`` (their rows stacked, ``N`` in all) under
        each draw's parameters, and the entries' likelihood weights ``(M, N, d)`` (0 where
        intervened)."""
        outs, keeps = [], []
        for e in experiments:
            selection = torch.zeros(self.num_draws, self.d, dtype=torch.float64)
            selection[:, list(e.targets)] = 1.0  # perfect interventions cut the mechanisms
            values = torch.zeros(self.d, dtype=torch.float64)
            values[list(e.targets)] = torch.tensor(e.values, dtype=torch.float64)
            y, keep = self.outcomes(selection, values, e.samples, parameters)
            outs.append(y)
            keeps.append(keep)
        return torch.cat(outs, 1), torch.cat(keeps, 1)

    # -- scores --------------------------------------------------------------------
    def log_predictive(self, y: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``log p(Y_m | u, D)`` ``(M, U)`` of outcomes ``y`` ``(M, N, d)`` for every distinct
        graph ``u``, entry ``(n, j)`` counted in node ``j``'s likelihood with weight
        ``keep`` (``(M, N, d)``, or ``(N, d)`` for all draws; 0 where intervened on)."""
        keep = torch.as_tensor(keep, dtype=torch.float64).expand(y.shape)
        out = torch.zeros(y.shape[0], len(self.graphs), dtype=torch.float64)
        for j in range(self.d):
            w = keep[:, :, j]
            if not bool((w > 0).any()):
                continue
            gram = self.grams[j] + torch.einsum("mn,mna,mnb->mab", w, y, y)
            new = bge_local_scores(gram, self.rows[j] + w.sum(1), j, self.families[j],
                                   nu=self.nu, c=self.c)  # fmt: skip
            out = out + (new - self.base[j])[:, self.family_of[j]]
        return out

    def gains(self, y: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Per draw ``m``: ``log p(Y_m | G_m) - log sum_u w_u p(Y_m | u)`` ``(M,)``, whose mean
        estimates the expected information gain (differentiable in ``y`` and ``keep``)."""
        log_p = self.log_predictive(y, keep)
        own = log_p.gather(1, self.which[:, None])[:, 0]
        return own - torch.logsumexp(log_p + self.log_weights, dim=1)

    def information_gain(self, experiments, parameters) -> tuple[float, float]:
        """Expected information gain (nats) of running ``experiments`` together, and its
        Monte Carlo standard error; one outcome per posterior draw."""
        gain = self.gains(*self.simulate(experiments, parameters))
        return float(gain.mean()), float(gain.std() / math.sqrt(len(gain)))

    def ait_scores(self, experiments, parameters) -> float:
        """AIT's discrepancy score of one experiment's rows: the between-draw over the
        within-draw variance of every non-intervened node's simulated outcome, summed."""
        y, keep = self.simulate(experiments, parameters)
        free = keep[0].min(0).values > 0
        between = y.mean(1).var(0)
        within = y.var(1).mean(0).clamp_min(1e-12)
        return float((between / within)[free].sum())
