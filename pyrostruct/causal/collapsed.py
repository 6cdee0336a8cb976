"""Collapsed variational inference for linear Gaussian SEMs: sample orders, integrate edges.

For the linear Gaussian SEM the ELBO of the VI-DP-DAG family (Charpentier,
Kibler, Günnemann, "Differentiable DAG Sampling", ICLR 2022)

.. math::

    q(\\pi, A, W) = \\mathrm{PL}(\\pi; s)
        \\prod_{\\mathrm{rank}_i < \\mathrm{rank}_j} \\mathrm{Bernoulli}(A_{ij}; \\sigma(l_{ij}))
        \\, \\mathcal N(W_{ij}; w_{ij}, s_{ij}^2)

can be computed exactly given the order: the data term is quadratic in the
coefficients ``A_ij W_ij``, whose mean and variance under ``q`` are known, and
depends on the data only through the Gram matrix
(:meth:`~pyrostruct.causal.sem.LinearGaussianSEM.expected_log_prob_from_statistics`).
So only the order is sampled:

.. math::

    \\mathcal L = E_{q(\\pi)}\\big[\\, E_{q(A, W \\mid \\pi)} \\log p(X \\mid A, W)
        - \\mathrm{KL}(q(A, W \\mid \\pi) \\,\\|\\, p(A, W \\mid \\pi))
        + \\log p(\\pi) - \\log q(\\pi) \\big],

with exact gradients for the edge and weight parameters given each sampled
order and the leave-one-out score-function estimator (Kool et al. 2019, as in
:class:`~pyrostruct.infer.TraceRLOO_ELBO`) for the order's scores. Compared
with straight-through edge samples this removes the edge sampling noise and the
bias of the relaxation, which is what lets mean-field edges converge.

Limitation: the weights are mean-field (independent Gaussians), so with
strongly correlated inputs their posterior variances are too small and edge
probabilities overconfident: with the Gaussian slab a spurious edge whose
least-squares t-statistic given the true parents is 3.2 gets P = 0.999 (d = 10
scale-free data, seed 2 of the benchmark), where the exact spike-and-slab
posterior given the true order gives 0.71 (the pMOM slab, ``discover``'s
default, removes it: 0.06 exactly, and out of the consensus graph here).

A good start matters for any mean-field spike-and-slab fit with correlated
inputs: :func:`order_regression_init` starts the weights at the least-squares
fit of every node on all its predecessors in the initial order and the edge
logits at the prior log-odds plus each coefficient's Bayes factor; given parent sets
(the analytic estimator's refit halfway through training) it starts each coefficient
from the regression on the parents, so that a parent whose effect its children share
among the predecessors is not started off.

Cost at scale (issue 19, part 2; n = 2000, standardized ER2 data, 8 particles, one thread
on a shared 2-core machine): the orders drawn in a step mostly agree, so the linear SEM
writes their forward masks as the majority mask plus sparse differences
(:class:`~pyrostruct.causal.sem.linear._AgreeingMasks`): one ``(d+1)^2 d`` product with
the Gram matrix for the batch and ``O(S d^2 + nnz d)`` more, ``O(d^2)`` memory beyond the
``(S, d, d)`` masks (with interventions the Gram matrix is one per node, ``(d, d + 1, d +
1)``, ``O(d^3)``: 4 GB in float32 at d = 1000, and the batch is formed densely). Time per
step from a fixed order at d = 1000: 0.15 s, against 0.49 s with one product per particle
(``O(S d^3)``); 500 steps took 80 s in ``benchmarks/discover_scale.py``'s d = 1000 run
(262 s before). Earlier measurements with one product per particle: d = 100 2.9 ms
(float32) / 4.0 ms (float64); d = 1000 1.08 s and a peak of 899 MiB for the whole call
(float32) against 2.06 s and 1721 MiB (float64). The steps run in torch's default dtype
(float32 unless the caller changes it). Switching them to float64 on d = 100 ER2 from the
true order changed the consensus graph in 2 pairs (SHD 4 vs 3, CPDAG-SHD 0 both; largest
edge-probability change 0.035) and the reported ELBO by 0.29 nats a row: float32 is not
exactly neutral, and which of the two is nearer the float64 optimum was not measured, so
nothing was changed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pyrostruct.causal.priors import pmom_log_evidence_ratio
from pyrostruct.causal.regressions import (
    regime_covariances,
    regressions_given_parents,
    regressions_in_order,
)
from pyrostruct.causal.sem import LinearGaussianSEM
from pyrostruct.distributions.partial_order import (
    PartialOrderPlackettLuce,
    count_linear_extensions,
)
from pyrostruct.distributions.permutation import PlackettLuce
from pyrostruct.infer.autoguide.dag import EdgeProbs

__all__ = ["CollapsedOrderVI", "order_regression_init"]


def _forward_mask(order: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``F[..., i, j] = 1`` when node ``i`` comes before node ``j`` in ``order``."""
    rank = torch.argsort(order, dim=-1)
    return (rank.unsqueeze(-1) < rank.unsqueeze(-2)).to(dtype)


def _bernoulli_kl(logits: torch.Tensor, prior_logit: float) -> torch.Tensor:
    """``KL(Bernoulli(sigmoid(l)) || Bernoulli(sigmoid(l0)))`` elementwise.

    With ``q = sigmoid(l)`` and ``log sigmoid(l) = l + log sigmoid(-l)`` the two
    terms fold into ``q (l - l0) + log sigmoid(-l) + softplus(l0)``.
    """
    softplus_l0 = math.log1p(math.exp(prior_logit))  # -log sigmoid(-l0)
    return torch.sigmoid(logits) * (logits - prior_logit) + F.logsigmoid(-logits) + softplus_l0


class CollapsedOrderVI(nn.Module):
    """Variational order and edges of a linear Gaussian SEM, edges integrated exactly.

    :param LinearGaussianSEM sem: holds the weights' Gaussian posterior, intercepts
        and noise scales.
    :param dict stats: ``sem.sufficient_statistics(data, intervention_mask)``.
    :param float prior_logit: prior log-odds of an edge between two nodes given
        their order (the Erdős–Rényi prior of
        :class:`~pyrostruct.distributions.ErdosRenyiDAG`).
    :param torch.Tensor init_scores: initial Plackett-Luce scores ``(d,)`` (higher
        = more upstream).
    :param torch.Tensor init_edge_logits: initial edge logits ``l``, ``(d, d)``.
    :param bool profile_noise: set the noise scales to their optimum for each
        sampled order (see
        :meth:`~pyrostruct.causal.sem.LinearGaussianSEM.expected_log_prob_from_statistics`)
        rather than sharing the SEM's scale parameters across orders (default
        ``True``).
    :param knowledge: background knowledge (optional;
        :class:`~pyrostruct.causal.knowledge.KnowledgeMasks`), enforced exactly: orders
        are drawn from the Plackett-Luce distribution restricted to the orders that keep
        its precedence (:class:`~pyrostruct.distributions.PartialOrderPlackettLuce`),
        forbidden edges have probability 0 and required ones 1 given every order, in
        ``q`` and in the prior alike (their KL terms vanish). The prior over orders is
        uniform over those orders: ``log p(pi) = -log`` their number.
    """

    def __init__(
        self,
        sem: LinearGaussianSEM,
        stats,
        prior_logit,
        init_scores,
        init_edge_logits,
        *,
        profile_noise: bool = True,
        knowledge=None,
    ):
        super().__init__()
        self.profile_noise = bool(profile_noise)
        self.sem = sem
        self.stats = stats
        self.prior_logit = float(prior_logit)
        self.scores = nn.Parameter(init_scores.clone())
        self.edge_logits = nn.Parameter(init_edge_logits.clone())
        d = sem.num_nodes
        self.register_buffer("off_diagonal", 1.0 - torch.eye(d))
        self.log_num_orders = math.lgamma(d + 1)
        self.knowledge = knowledge
        self.precedes = None
        if knowledge is not None:
            dtype = init_scores.dtype
            self.register_buffer("free", torch.as_tensor(knowledge.free, dtype=dtype), False)
            self.register_buffer(
                "required", torch.as_tensor(knowledge.required, dtype=dtype), False
            )
            if knowledge.constrains_orders:
                self.precedes = torch.as_tensor(knowledge.precedes)
                count = count_linear_extensions(self.precedes)
                # past the exact count's reach: the ELBO keeps log d! (a lower bound)
                self.log_num_orders = math.log(count) if count else math.lgamma(d + 1)

    def order_distribution(self, scores: torch.Tensor | None = None) -> PlackettLuce:
        """``q(pi)``: Plackett-Luce on ``scores`` (default: the parameters), restricted to
        the orders the knowledge allows."""
        scores = self.scores if scores is None else scores
        if self.precedes is None:
            return PlackettLuce(scores)
        return PartialOrderPlackettLuce(scores, self.precedes)

    def edge_probabilities(self) -> torch.Tensor:
        """``q(i -> j | i before j)`` ``(d, d)``: ``sigmoid(l)``, 0 where forbidden, 1 where
        required."""
        probs = torch.sigmoid(self.edge_logits)
        if self.knowledge is None:
            return probs
        return probs * self.free + self.required

    def particle_elbos(self, orders: torch.Tensor):
        """ELBO terms of sampled orders ``(S, d)``: ``(f, log_q)``, each ``(S,)``.

        ``f`` is the order-conditional ELBO plus ``log p(pi) - log q(pi)``: its
        mean over orders drawn from ``q`` estimates the ELBO.
        """
        forward = _forward_mask(orders, self.scores.dtype)  # zero diagonal
        log_q = self.order_distribution().log_prob_order(orders)
        data = self.sem.expected_log_prob_from_statistics(
            self.stats,
            self.edge_probabilities(),
            profile_noise=self.profile_noise,
            mask=forward,
        )  # the edge probabilities are forward * sigmoid(l)
        kl = _bernoulli_kl(self.edge_logits, self.prior_logit)
        if self.knowledge is not None:  # fixed edges: the same in q and the prior
            kl = kl * self.free
        edge_kl = forward.flatten(-2) @ kl.flatten()
        return data - edge_kl - self.log_num_orders - log_q, log_q

    def loss(self, num_particles: int):
        """Surrogate loss (its gradient is minus the RLOO ELBO gradient) and the ELBO estimate."""
        with torch.no_grad():
            orders = self.order_distribution(self.scores.detach()).sample_order((num_particles,))
        f, log_q = self.particle_elbos(orders)
        fd = f.detach()
        baseline = (fd.sum() - fd) / max(num_particles - 1, 1)
        surrogate = f.mean() + ((fd - baseline) * log_q).mean()
        return -surrogate, float(fd.mean())

    @torch.no_grad()
    def edge_probs(self, num_samples: int = 1000) -> EdgeProbs:
        """``P(i -> j) = E_q(pi)[rank_i < rank_j] sigmoid(l_ij)`` and its Monte Carlo error."""
        orders = self.order_distribution().sample_order((num_samples,))
        per = _forward_mask(orders, self.scores.dtype) * self.off_diagonal
        per = per * self.edge_probabilities()
        return EdgeProbs(per.mean(0), per.std(0) / math.sqrt(num_samples))


def order_regression_init(
    x: torch.Tensor, order, sem: LinearGaussianSEM, prior_logit: float, mask=None, parents=None
):
    """Weights, weight scales, intercepts, noise and edge logits from least squares in ``order``.

    Every node is regressed on all its predecessors (:func:`regressions_in_order`);
    the pairs that the order points backwards get the regressions of the
    reversed order, so that a swap the order gradient tries is scored with
    fitted rather than untouched edges. The edge logit is the prior log-odds
    plus the log Bayes factor of the coefficient's slab ``N(0, sigma_w^2)``
    against zero given its estimate ``b`` and standard error ``se``:
    ``0.5 log(se^2 / (se^2 + sigma_w^2)) + 0.5 b^2 (1/se^2 - 1/(se^2 + sigma_w^2))``,
    plus :func:`~pyrostruct.causal.priors.pmom_log_evidence_ratio` for the pMOM slab.
    With ``mask`` ``(n, d)`` (perfect interventions), an intervened node is regressed
    on the rows where it is not intervened only, as the likelihood scores it.
    With ``parents`` ``(d, d)`` (edges forward in ``order``) a node is regressed on its
    parents instead, and each other predecessor's coefficient and Bayes factor are those
    of adding it to them (:func:`~pyrostruct.causal.regressions.regressions_given_parents`):
    the refit of :class:`~pyrostruct.causal.estimators.AnalyticEstimator`.
    Sets ``sem``'s parameters in place and returns the initial edge logits ``(d, d)``.
    """
    n, d = x.shape
    xd = x.double()
    mean = xd.mean(0)
    cov = torch.cov(xd.T, correction=0).reshape(d, d) + 1e-9 * torch.eye(d, dtype=xd.dtype)
    equal = sem.noise == "equal"
    coef_rev, se2_rev, _ = regressions_in_order(cov, list(order)[::-1], n, equal)
    regimes = regime_covariances(xd, mask)
    if parents is None:
        coef, se2, noise_var = regressions_in_order(cov, order, n, equal)
    else:
        parents = torch.as_tensor(np.asarray(parents, dtype=bool))
        coef, se2, noise_var = regressions_given_parents(cov, n, list(order), parents, regimes)
        if equal:
            noise_var = torch.full_like(noise_var, float(noise_var.mean()))
    for j, (cov_j, n_j) in regimes.items():
        fit_rev = regressions_in_order(cov_j, list(order)[::-1], n_j, equal)
        coef_rev[:, j], se2_rev[:, j] = fit_rev[0][:, j], fit_rev[1][:, j]
        if parents is None:
            fit = regressions_in_order(cov_j, order, n_j, equal)
            coef[:, j], se2[:, j] = fit[0][:, j], fit[1][:, j]
            if not equal:
                noise_var[j] = fit[2][j]
    se2 = (se2 + se2_rev).clamp_min(1e-12)  # each pair is set by exactly one of the two
    tau2 = (sem.weight_prior_scale or 1.0) ** 2
    unit = sem.weight_unit.double()
    b, b_se2 = coef + coef_rev, se2
    pmom = getattr(sem, "weight_prior", "normal") == "pmom"
    if pmom:  # its slab is on the weights in units of weight_unit
        b, b_se2 = b / unit, se2 / unit**2
    log_bf = 0.5 * torch.log(b_se2 / (b_se2 + tau2)) + 0.5 * b**2 * (1 / b_se2 - 1 / (b_se2 + tau2))
    if pmom:
        log_bf = log_bf + pmom_log_evidence_ratio(b, b_se2, tau2)
    off = 1.0 - torch.eye(d, dtype=xd.dtype)
    logits = off * (prior_logit + log_bf).clamp(-10.0, 10.0)
    with torch.no_grad():
        sem.weight.copy_((coef + coef_rev) * off / unit)
        fitted = coef if parents is None else coef * parents  # the regression of each node
        bias = mean - fitted.T @ mean
        for j in regimes:  # the means of the rows where j is not intervened
            m = xd[~torch.as_tensor(np.asarray(mask, dtype=bool))[:, j]].mean(0)
            bias[j] = m[j] - fitted[:, j] @ m
        sem.bias.copy_(bias)
        log_noise = 0.5 * torch.log(noise_var)
        sem.log_scale.copy_(log_noise if sem.noise == "nonequal" else log_noise[:1])
        if sem.weight_prior_scale is not None:
            sem.log_weight_sd.copy_(0.5 * torch.log(se2) - torch.log(unit))
    return logits.to(x.dtype)
