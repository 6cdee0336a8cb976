"""The linear Gaussian SEM, with latent weights integrated analytically."""

from __future__ import annotations

import math

import torch
from torch import nn

from pyrostruct.causal.priors import WEIGHT_PRIORS, slab_kl
from pyrostruct.causal.sem.base import (
    _LOG_2PI,
    StructuralEquationModel,
    _identities,
    _pyro_params,
)
from pyrostruct.errors import InputError

__all__ = ["LinearGaussianSEM"]


def _gram_times(gram: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """``G c`` for every column ``c`` of ``coef``: one Gram matrix, or one per column."""
    return gram @ coef if gram.dim() == 2 else torch.einsum("jab,...bj->...aj", gram, coef)


class _QuadraticForms(torch.autograd.Function):
    """``c^T G c`` for every column ``c``, its gradient ``2 G c`` from the forward product."""

    @staticmethod
    def forward(ctx, gram, coef):
        product = _gram_times(gram, coef)
        ctx.save_for_backward(gram, coef, product)
        return (coef * product).sum(-2)

    @staticmethod
    def backward(ctx, grad):
        gram, coef, product = ctx.saved_tensors
        if torch.is_grad_enabled():  # a graph of the gradient: G c as a function of c again
            product = _gram_times(gram, coef)
        return None, 2 * product * grad.unsqueeze(-2)


def _quadratic_forms(gram: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """``c^T G c`` for every column ``c`` of ``coef`` ``(*B, d+1, d)``: ``(*B, d)``. ``gram``:
    one symmetric ``(d+1, d+1)`` matrix, or one per column ``(d, d+1, d+1)``.

    The gradient ``2 G c`` reuses the forward product, where autograd would form ``G (c *
    grad)`` again in the backward pass, a second product as costly as the first (measured,
    8 masks, one thread, machine otherwise idle: 20% off the expected log-likelihood's
    forward and backward at d = 300, 4-7% at d = 100 and at d = 20 with interventions,
    where the elementwise work weighs more). Higher derivatives (a
    backward pass that builds a graph, as a Laplace approximation's Hessian does) form the
    product again; where ``gram`` itself needs a gradient, plain autograd is used.
    """
    if gram.requires_grad:
        return (coef * _gram_times(gram, coef)).sum(-2)
    return _QuadraticForms.apply(gram, coef)


class _AgreeingMasks:
    """A batch of 0/1 masks ``(*B, d, d)`` that mostly agree (the forward pairs of orders
    sampled from a concentrated distribution), as their elementwise majority ``R`` plus
    the sparse differences ``D_s = M_s - R`` (``nnz`` entries of +-1 in all).

    Every term of the linear SEM's expected log-likelihood is linear in a mask except the
    residual sums of squares, quadratic in the coefficients ``c_s = c_R - D_s * b`` of
    each node: ``c_s^T G c_s = c_R^T G c_R - 2 (D_s * b)^T G c_R + (D_s * b)^T G (D_s *
    b)``, whose last two terms touch only the nonzeros of ``D_s`` (and, within one node's
    column, pairs of them). So a batch of ``S`` masks costs one ``O(d^3)`` product and
    ``O(S d^2 + nnz d)`` more, in place of ``O(S d^3)``. :attr:`sparse` is ``False`` when
    the masks disagree in more than ``d`` pairs each on average (a diffuse order
    distribution), where the batched dense product is cheaper. The majority carries no
    gradient: the masks are data (sampled orders), not parameters.
    """

    def __init__(self, mask: torch.Tensor):
        d = mask.shape[-1]
        self.batch = mask.shape[:-2]
        masks = mask.reshape(-1, d, d)
        self.num = masks.shape[0]
        self.reference = (masks.mean(0) > 0.5).to(mask.dtype)
        delta = masks - self.reference
        self.particle, self.row, self.column = delta.nonzero().unbind(-1)
        self.sign = delta[self.particle, self.row, self.column]
        self.sparse = self.sign.numel() <= self.num * d
        self.cell = self.particle * d + self.column  # (particle, node) of each difference

    def _scatter(self, values: torch.Tensor) -> torch.Tensor:
        """Sum ``values`` ``(nnz,)`` into their (particle, node) cells: ``(*B, d)``."""
        d = self.reference.shape[-1]
        out = values.new_zeros(self.num * d).index_add(0, self.cell, values)
        return out.reshape(self.batch + (d,))

    def column_sums(self, x: torch.Tensor) -> torch.Tensor:
        """``sum_i M_s[i, j] x[i, j]`` for ``x`` ``(d, d)``: ``(*B, d)``."""
        base = (self.reference * x).sum(0)
        return base + self._scatter(self.sign * x[self.row, self.column])

    def residual_sums(self, gram, b, bias, eye):
        """``c_s^T G c_s`` per node for the coefficients ``c_s = e_j - [M_s * b; bias]`` of
        ``x1 = [x, 1]``: ``(*B, d)``. ``gram`` ``(d+1, d+1)``, ``b`` ``(d, d)``, ``eye`` the
        ``(d+1, d)`` identity."""
        d = b.shape[-1]
        coef = eye - torch.cat([self.reference * b, bias.unsqueeze(0)], dim=-2)
        g_coef = gram @ coef
        value = self.sign * b[self.row, self.column]  # the entries of D_s * b
        # (D_s * b)^T G c_R: each difference meets column j of G c_R at its row
        cross = self._scatter(value * g_coef[self.row, self.column])
        # (D_s * b)^T G (D_s * b): the differences of one cell against each other
        cells, member = torch.unique(self.cell, return_inverse=True)
        g_delta = value.new_zeros(cells.numel(), d + 1)
        g_delta = g_delta.index_add(0, member, gram[self.row] * value.unsqueeze(-1))
        square = self._scatter(value * g_delta[member, self.row])
        return (coef * g_coef).sum(0) - 2 * cross + square


class LinearGaussianSEM(StructuralEquationModel):
    """Linear Gaussian SEM: ``x_j = b_j + sum_i A_ij W_ij x_i + e_j``, ``e_j ~ N(0, s_j^2)``.

    ``noise="nonequal"`` learns one noise scale per node, ``"equal"`` one shared
    scale (the equal-variance case is identifiable from observational data:
    Peters & Bühlmann, "Identifiability of Gaussian structural equation models
    with equal error variances", Biometrika 2014). Weights ``W``, intercepts
    ``b`` and log noise scales are Pyro params.

    **Weights.** With ``weight_prior_scale=None`` the weights are point
    estimates. By default (``weight_prior_scale=1.0``) they are latent, with a
    Gaussian variational posterior ``N(weight_ij, exp(log_weight_sd_ij)^2)``
    (in units of ``weight_unit``) that :meth:`log_prob_from_statistics`
    integrates analytically, returning the data-and-weights part of the ELBO,
    ``E_q[log p(X | A, W)] - KL(q(W) || p(W | A))``. That KL is the Occam factor
    that makes the posterior over graphs sparse. The slab of a present edge
    (:mod:`pyrostruct.causal.priors`) is ``weight_prior="normal"``: ``W_ij ~
    N(0, weight_prior_scale^2)`` in the data's units, or ``"pmom"``: the
    non-local pMOM prior with variance ``weight_prior_scale^2`` on ``W_ij /
    weight_unit_ij`` (with ``weight_unit = sd_j / sd_i``, as
    :func:`~pyrostruct.causal.discover` sets it, the standardized effect, so
    that the posterior does not depend on the columns' units). The row-wise
    :meth:`log_prob` uses the posterior mean weights.

    The full-data log-likelihood depends on the data only through the Gram
    matrix of ``[x, 1]`` (per node, over the rows where it is not intervened), so
    :meth:`log_prob_from_statistics` costs ``O(d^3)`` per adjacency whatever the
    number of rows.
    """

    def __init__(
        self,
        num_nodes: int,
        *,
        noise: str = "nonequal",
        init_scale: float = 1.0,
        weight_prior_scale: float | None = 1.0,
        weight_prior: str = "normal",
    ):
        super().__init__(num_nodes)
        if noise not in ("equal", "nonequal"):
            raise InputError(f"noise must be 'equal' or 'nonequal', got {noise!r}")
        if weight_prior_scale is not None and not weight_prior_scale > 0:
            raise InputError(f"weight_prior_scale must be > 0 or None, got {weight_prior_scale}")
        if weight_prior not in WEIGHT_PRIORS:
            raise InputError(f"weight_prior must be one of {WEIGHT_PRIORS}, got {weight_prior!r}")
        d = self.num_nodes
        self.noise = noise
        self.weight_prior_scale = weight_prior_scale
        self.weight_prior = weight_prior
        self.weight = nn.Parameter(torch.zeros(d, d))
        self.bias = nn.Parameter(torch.zeros(d))
        self.log_scale = nn.Parameter(
            torch.full((d,) if noise == "nonequal" else (1,), math.log(init_scale))
        )
        if weight_prior_scale is not None:
            # log standard deviations of the Gaussian posterior of the weights
            self.log_weight_sd = nn.Parameter(torch.full((d, d), math.log(0.05)))
        # Units of the weights: W = weight * weight_unit. Setting it to sd_j / sd_i
        # makes the parameters scale-free (better conditioned for Adam on raw data)
        # without changing the model.
        self.register_buffer("weight_unit", torch.ones(d, d))

    @property
    def identifies_equivalence_class_only(self) -> bool:
        """Unequal noise variances: observational data identify the Markov equivalence
        class only (equal ones identify the DAG, Peters & Bühlmann 2014)."""
        return self.noise == "nonequal"

    @torch.no_grad()
    def initialize(self, data: torch.Tensor) -> None:
        """Start from the marginal fit: intercepts = column means, noise = column scales,
        and weights in units of ``sd_j / sd_i`` (scale-free parameters)."""
        mean = data.mean(0)
        log_sd = torch.log(data.std(0).clamp_min(1e-6))
        sd = data.std(0).clamp_min(1e-6)
        self.weight_unit.copy_(sd[None, :] / sd[:, None])
        self.bias.copy_(mean)
        self.log_scale.copy_(log_sd if self.noise == "nonequal" else log_sd.mean())

    @torch.no_grad()
    def edge_strengths(self, columns) -> torch.Tensor:
        """The posterior mean weights in the data's units (the effect of a unit change of
        ``i`` on ``j``)."""
        return torch.from_numpy(columns.to_data_units(self.weights().double().numpy()))

    def _scales(self):
        return self.log_scale.expand(self.num_nodes)

    def effective_weights(self, adjacency: torch.Tensor) -> torch.Tensor:
        """``A ∘ W`` with the diagonal zeroed: ``(*B, d, d)``."""
        return adjacency * self.weights()

    def weights(self) -> torch.Tensor:
        """The (posterior mean) weights ``W`` in the data's units, diagonal zeroed."""
        _, off = _identities(self.num_nodes, self.weight.dtype)
        return self.weight * self.weight_unit * off

    def node_log_prob(self, data, adjacency):
        mean = data @ self.effective_weights(adjacency) + self.bias
        log_s = self._scales()
        z = (data - mean) * torch.exp(-log_s)
        return -0.5 * z * z - log_s - 0.5 * _LOG_2PI

    def sufficient_statistics(self, data, intervention_mask=None):
        """Per-node Gram matrices ``G_j = X1^T diag(o_j) X1`` of ``X1 = [x, 1]`` and counts.

        Without interventions one shared ``(d+1, d+1)`` Gram matrix is kept.
        """
        n = data.shape[0]
        x1 = torch.cat([data, data.new_ones(n, 1)], dim=1)
        if intervention_mask is None or not bool(intervention_mask.any()):
            return {"gram": x1.T @ x1, "count": data.new_full((self.num_nodes,), float(n))}
        obs = (~intervention_mask.bool()).to(data.dtype)  # (n, d)
        gram = torch.einsum("nj,na,nb->jab", obs, x1, x1)  # (d, d+1, d+1)
        return {"gram": gram, "count": obs.sum(0)}

    @_pyro_params
    def log_prob_from_statistics(self, stats, adjacency):
        return self._gram_log_prob(stats, adjacency, bernoulli=False)

    @_pyro_params
    def expected_log_prob_from_statistics(
        self, stats, edge_probs, *, profile_noise=False, mask=None
    ):
        """:meth:`log_prob_from_statistics` averaged over independent Bernoulli edges.

        With ``A_ij ~ Bernoulli(p_ij)`` independent of the weights, the
        coefficient ``b_ij = A_ij W_ij`` has mean ``p_ij w_ij`` and variance
        ``p_ij (w_ij^2 + s_ij^2) - p_ij^2 w_ij^2``. The data-and-weights term is
        quadratic in the coefficients and the weight KL is linear in ``A``, so
        the expectation is exact and costs one Gram-matrix evaluation at the mean
        coefficients plus ``sum_i x_i^2 Var(b_ij)``. ``edge_probs``: ``(*B, d,
        d)`` with zeros on pairs that may not be edges.

        ``profile_noise=True`` replaces the noise scales by their optimum for
        each adjacency batch element, ``s_j^2 = E[RSS_j] / n_j`` (pooled over
        nodes for ``noise="equal"``), instead of the shared parameters: the
        term becomes ``-n_j/2 (log(2 pi s_j^2) + 1)``. A node's noise depends on
        its parents, so sharing one scale across sampled orders makes every
        order but the current one look bad.

        ``mask`` ``(*B, d, d)`` of zeros and ones (the forward pairs of sampled
        orders, say) with ``edge_probs`` ``(d, d)``: the same for the edge
        probabilities ``mask * edge_probs``, with the terms linear in them
        contracted against the mask alone (``(mask p)^2 = mask p^2``): cheaper
        for a batch of masks that share one probability matrix.
        """
        return self._gram_log_prob(
            stats, edge_probs, bernoulli=True, profile=profile_noise, mask=mask
        )

    def _gram_log_prob(self, stats, adjacency, bernoulli: bool, profile: bool = False, mask=None):
        d = self.num_nodes
        gram, count = stats["gram"], stats["count"]
        weight, unit = self.weight, self.weight_unit  # each parameter read once
        eye, off = _identities(d, unit.dtype)
        weights = weight * unit * off  # self.weights()
        b = adjacency * weights
        masks = None
        if mask is not None and mask.dim() > 2 and gram.dim() == 2 and not mask.requires_grad:
            masks = _AgreeingMasks(mask)  # adjacency: the (d, d) probabilities mask allows
            masks = masks if masks.sparse else None
        if masks is not None:
            rss = masks.residual_sums(gram, b, self.bias, eye)
            column_sums = masks.column_sums
        else:
            w = b if mask is None else mask * b  # (*B, d, d)
            bias = self.bias.expand(w.shape[:-2] + (1, d))
            # Coefficients of x1 = [x, 1] for every node j: c_j = e_j - [w_j; b_j].
            coef = eye - torch.cat([w, bias], dim=-2)  # (*B, d+1, d)
            rss = _quadratic_forms(gram, coef)  # (*B, d)

            def column_sums(x):
                return (x if mask is None else mask * x).sum(-2)

        latent = self.weight_prior_scale is not None
        if latent:
            log_weight_sd = self.log_weight_sd
            log_sd = log_weight_sd + torch.log(unit)  # of the weights in the data's units
        if latent or bernoulli:
            # E_q[(x_j - b^T x)^2] adds sum_i Var(b_ij) x_i^2 for independent coefficients:
            # A_ij s_ij^2 for Gaussian q(w), plus p_ij (1 - p_ij) w_ij^2 for Bernoulli edges,
            # so Var = A (s^2 + w^2) - A^2 w^2 with Bernoulli edges: the (d, d) factors are
            # formed first and contracted with the batch of adjacencies or masks.
            x2 = torch.diagonal(gram, dim1=-2, dim2=-1)[..., :d]  # (d,) or (d_node, d)
            x2 = x2.unsqueeze(-1) if gram.dim() == 2 else x2.T
            per_edge = torch.exp(2 * log_sd) * off if latent else weights.new_zeros(())
            if bernoulli:
                w2x2 = weights**2 * x2
                var_x2 = adjacency * (per_edge * x2 + w2x2) - adjacency**2 * w2x2
            else:
                var_x2 = adjacency * (per_edge * x2)
            rss = rss + column_sums(var_x2)
        if profile:
            if self.noise == "equal":
                noise_var = (rss.sum(-1, keepdim=True) / count.sum()).expand(rss.shape)
            else:
                noise_var = rss / count.clamp_min(1.0)
            lp = -0.5 * count * (torch.log(noise_var.clamp_min(1e-30)) + 1.0 + _LOG_2PI)
        else:
            log_s = self._scales()
            lp = -0.5 * rss * torch.exp(-2 * log_s) - count * (log_s + 0.5 * _LOG_2PI)
        lp = lp.sum(-1)
        if latent:
            kl = adjacency * self._weight_kl_terms(weight, log_weight_sd, unit, off)
            lp = lp - column_sums(kl).sum(-1)
        return lp

    def _weight_kl_terms(self, weight, log_weight_sd, unit, off):
        """``KL(q(W_ij) || slab)`` per pair ``(d, d)``, zero diagonal: the normal slab on
        the weights in the data's units, the pMOM slab in units of ``weight_unit``."""
        tau = self.weight_prior_scale**2
        if self.weight_prior == "pmom":
            return slab_kl("pmom", weight, log_weight_sd, tau) * off
        return slab_kl("normal", weight * unit, log_weight_sd + torch.log(unit), tau) * off

    @_pyro_params
    def weight_kl(self, adjacency: torch.Tensor) -> torch.Tensor:
        """``sum_{i->j in A} KL(q(W_ij) || slab)``: ``(*B,)``.

        The weights of absent edges keep their prior (spike and slab), so they
        cost nothing; each present edge pays its Occam factor, about
        ``0.5 log(n)`` nats, which is what keeps spurious edges out.
        """
        if self.weight_prior_scale is None:
            return adjacency.new_zeros(adjacency.shape[:-2])
        unit = self.weight_unit
        _, off = _identities(self.num_nodes, unit.dtype)
        kl = self._weight_kl_terms(self.weight, self.log_weight_sd, unit, off)
        return (adjacency * kl).sum((-1, -2))

    @torch.no_grad()
    def fit(self, data, adjacency, intervention_mask=None) -> LinearGaussianSEM:
        """Set ``W``, ``b`` and the noise scales to their maximum-likelihood values for a
        fixed DAG (per-node least squares), and return ``self``."""
        d = self.num_nodes
        adjacency = torch.as_tensor(adjacency, dtype=data.dtype)
        self._check(data, adjacency)
        obs = (
            torch.ones_like(data, dtype=torch.bool)
            if intervention_mask is None
            else ~intervention_mask.bool()
        )
        n = data.shape[0]
        x1 = torch.cat([data, data.new_ones(n, 1)], dim=1)
        rss = data.new_zeros(d)
        for j in range(d):  # closed form per node; only used for fixed graphs
            rows = obs[:, j]
            cols = torch.cat([adjacency[:, j].bool(), torch.tensor([True])])
            design = x1[rows][:, cols]
            beta = torch.linalg.lstsq(design, data[rows, j : j + 1]).solution.squeeze(-1)
            full = data.new_zeros(d + 1)
            full[cols] = beta
            self.weight[:, j] = full[:d] / self.weight_unit[:, j]
            self.bias[j] = full[d]
            rss[j] = ((data[rows, j] - design @ beta) ** 2).sum()
        count = obs.sum(0).to(data.dtype).clamp(min=1)
        if self.noise == "nonequal":
            self.log_scale.copy_(0.5 * torch.log(rss / count))
        else:
            self.log_scale.fill_(0.5 * math.log(float(rss.sum() / count.sum())))
        return self
