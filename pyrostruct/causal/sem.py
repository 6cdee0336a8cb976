"""Structural equation models: the likelihood ``p(X | A)`` of data given a DAG.

A structural equation model (SEM) gives every node ``j`` a mechanism
``p(x_j | x_pa(j))`` whose parents are read off an adjacency matrix
(``A[..., i, j] = 1`` meaning ``i -> j``). The log-likelihood of a row is the
sum of its nodes' conditional log densities,

.. math::

    \\log p(x \\mid A) = \\sum_j [1 - m_j] \\log p_j(x_j \\mid x_{\\mathrm{pa}_A(j)}),

where ``m_j = 1`` marks a *perfect intervention* on node ``j`` in that row: its
mechanism was replaced by an outside assignment and is dropped from the row's
likelihood (Eberhardt & Scheines, "Interventions and causal inference", 2007).

Every SEM here is a :class:`~pyro.nn.PyroModule` whose parameters (weights,
noise scales) are Pyro params, and is **vectorized over nodes and over a batch
of adjacency matrices** (no Python loop over nodes), so one call scores many
sampled DAGs at once.

Interface for a user-defined likelihood
---------------------------------------
Subclass :class:`StructuralEquationModel` and implement
``node_log_prob(data, adjacency)`` returning per-row, per-node log densities of
shape ``adjacency.shape[:-2] + (n, d)``; everything else (intervention masking,
the row plate, :meth:`~StructuralEquationModel.distribution` for
``pyro.sample(..., obs=...)``, use inside :func:`pyrostruct.causal.discover`)
comes from the base class. Or wrap a plain function with :class:`CustomSEM`.

Use with a fixed graph
----------------------
``sem.log_prob(data, adjacency)`` scores a given DAG (for example a candidate
of model selection); :meth:`LinearGaussianSEM.fit` sets a linear SEM's
parameters to their maximum-likelihood values for a fixed graph in closed form.

Shapes: ``data`` is ``(n, d)``; ``adjacency`` is ``(*B, d, d)``. When the
adjacency batch ends in a singleton dimension (the row plate's dimension, as in
a Pyro model with ``vectorize_particles``), that dimension is the row
dimension of the result: ``(P, 1, d, d)`` gives ``(P, n)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule
from torch import nn

from pyrostruct._pyro_compat import pyro_module_context, pyro_module_name
from pyrostruct.causal.priors import WEIGHT_PRIORS, slab_kl
from pyrostruct.errors import InputError

__all__ = [
    "StructuralEquationModel",
    "LinearGaussianSEM",
    "MLPSEM",
    "CustomSEM",
    "SEMLikelihood",
    "make_sem",
]

_LOG_2PI = math.log(2 * math.pi)


def _pyro_params(method):
    """Run a method inside the module's Pyro context, so that its parameters are
    registered as Pyro params (trained by SVI) like in ``forward``."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with pyro_module_context(self):
            return method(self, *args, **kwargs)

    return wrapper


@functools.lru_cache(maxsize=16)
def _identities(d: int, dtype: torch.dtype):
    """``(eye(d + 1, d), 1 - eye(d))`` (cached; never modify them)."""
    return torch.eye(d + 1, d, dtype=dtype), 1.0 - torch.eye(d, dtype=dtype)


def _row_batch(result: torch.Tensor, batch: torch.Size) -> torch.Tensor:
    """``(*B, n)`` -> ``(*B[:-1], n)`` when the adjacency batch ends in a row-plate singleton."""
    if len(batch) >= 1 and batch[-1] == 1:
        return result.squeeze(-2)
    return result


class StructuralEquationModel(PyroModule):
    """Base class of SEM likelihoods over ``num_nodes`` variables.

    Subclasses implement :meth:`node_log_prob`. ``sufficient_statistics`` /
    ``log_prob_from_statistics`` are an optional fast path for SEMs whose
    full-data likelihood depends on the data only through summaries (the
    linear Gaussian SEM: the Gram matrix), which makes one step's cost
    independent of the number of rows.
    """

    def __init__(self, num_nodes: int) -> None:
        super().__init__()
        if int(num_nodes) < 1:
            raise InputError(f"num_nodes must be >= 1, got {num_nodes}")
        self.num_nodes = int(num_nodes)

    # -- to implement -------------------------------------------------------
    def node_log_prob(self, data: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        """Per-row, per-node ``log p_j(x_j | x_pa(j))``: shape ``(*B, n, d)``."""
        raise NotImplementedError

    # -- provided -------------------------------------------------------------
    def _check(self, data: torch.Tensor, adjacency: torch.Tensor) -> None:
        d = self.num_nodes
        if data.dim() != 2 or data.shape[-1] != d:
            raise InputError(f"expected data of shape (n, {d}), got {tuple(data.shape)}")
        if adjacency.shape[-2:] != (d, d):
            raise InputError(
                f"expected adjacency of shape (..., {d}, {d}), got {tuple(adjacency.shape)}"
            )

    def forward(self, data, adjacency, intervention_mask=None):
        """Same as :meth:`log_prob`."""
        return self.log_prob(data, adjacency, intervention_mask)

    @_pyro_params
    def log_prob(
        self,
        data: torch.Tensor,
        adjacency: torch.Tensor,
        intervention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-row log-likelihood ``log p(x_r | A)``, intervened nodes dropped.

        Parameters
        ----------
        data : Tensor ``(n, d)``
        adjacency : Tensor ``(*B, d, d)``, ``A[..., i, j] = 1`` for ``i -> j``
        intervention_mask : bool Tensor ``(n, d)``, optional
            ``True`` where the node was set by a perfect intervention in that row.

        Returns
        -------
        Tensor ``(*B, n)`` (or ``(*B[:-1], n)``, see the module docstring).
        """
        self._check(data, adjacency)
        lp = self.node_log_prob(data, adjacency.to(data.dtype))
        if intervention_mask is not None:
            lp = lp.masked_fill(intervention_mask.bool(), 0.0)
        return _row_batch(lp.sum(-1), adjacency.shape[:-2])

    def register_params(self) -> None:
        """Register every parameter with Pyro's param store (as ``forward`` does)."""
        with pyro_module_context(self):
            for name, _ in self.named_parameters():
                obj = self
                for part in name.split("."):
                    obj = getattr(obj, part)

    def sufficient_statistics(self, data, intervention_mask=None):
        """Summaries of the data for :meth:`log_prob_from_statistics` (``None``: no fast path)."""
        return None

    #: Whether data from this SEM identify only the Markov equivalence class of the DAG
    #: (then ``discover`` averages edge probabilities over each class by default).
    identifies_equivalence_class_only: bool = False

    def initialize(self, data: torch.Tensor) -> None:
        """Set the parameters to a start fitted to ``data`` ``(n, d)`` before training.

        ``discover`` calls it once on the prepared table; the default leaves the
        parameters as they are. Override it to start from the data.
        """

    def edge_strengths(self, columns) -> torch.Tensor | None:
        """The strength of every edge ``i -> j`` ``(d, d)`` to report, or ``None`` for none
        (then ``discover`` reports the edge probabilities).

        :param columns: the :class:`~pyrostruct.causal.data.Columns` the SEM was fitted
            on, which convert effects back to the data's units.
        """
        return None

    def log_prob_from_statistics(self, stats, adjacency: torch.Tensor) -> torch.Tensor:
        """Total log-likelihood over all rows from :meth:`sufficient_statistics`: ``(*B,)``
        (for SEMs with latent parameters integrated analytically: their ELBO term)."""
        raise NotImplementedError

    def distribution(
        self,
        adjacency: torch.Tensor,
        num_rows: int,
        intervention_mask: torch.Tensor | None = None,
    ) -> SEMLikelihood:
        """The likelihood as a distribution over rows, for ``pyro.sample(..., obs=data)``.

        Call it inside the model: it registers the SEM's parameters as Pyro params
        there (Pyro evaluates ``log_prob`` of observed sites after the model ran).
        """
        self.register_params()
        return SEMLikelihood(self, adjacency, num_rows, intervention_mask)


class SEMLikelihood(dist.TorchDistribution):
    """``p(x | A)`` of a :class:`StructuralEquationModel` as a distribution over rows.

    Batch shape: the adjacency batch broadcast with ``(num_rows,)``; event
    shape ``(d,)``. Only ``log_prob`` is implemented: it is meant for observed
    sites (``pyro.sample("X", sem.distribution(A, n), obs=data)``).
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.real, 1)

    def __init__(self, sem, adjacency, num_rows, intervention_mask=None, validate_args=None):
        self.sem, self.adjacency = sem, adjacency
        self.num_rows, self.intervention_mask = int(num_rows), intervention_mask
        batch = adjacency.shape[:-2]
        if len(batch) >= 1 and batch[-1] == 1:
            batch = batch[:-1]
        batch_shape = torch.Size(batch) + (self.num_rows,)
        super().__init__(batch_shape, torch.Size([sem.num_nodes]), validate_args=False)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        if batch_shape == self.batch_shape:
            return self
        adj = self.adjacency.expand(batch_shape[:-1] + (1,) + self.adjacency.shape[-2:])
        return SEMLikelihood(self.sem, adj, batch_shape[-1], self.intervention_mask)

    def log_prob(self, value):
        return self.sem.log_prob(value, self.adjacency, self.intervention_mask)

    def sample(self, sample_shape=()):
        raise NotImplementedError("SEMLikelihood is for observed sites; simulate with the SEM")


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
        if mask is None:
            w = adjacency * weights  # (*B, d, d)
        else:  # adjacency holds the (d, d) probabilities of the pairs that mask allows
            w = mask * (adjacency * weights)
        bias = self.bias.expand(w.shape[:-2] + (1, d))
        # Coefficients of x1 = [x, 1] for every node j: c_j = e_j - [w_j; b_j].
        coef = eye - torch.cat([w, bias], dim=-2)  # (*B, d+1, d)
        if gram.dim() == 2:
            rss = (coef * (gram @ coef)).sum(-2)  # (*B, d)
        else:
            gc = torch.einsum("jab,...bj->...aj", gram, coef)
            rss = (coef * gc).sum(-2)
        latent = self.weight_prior_scale is not None
        if latent:
            log_weight_sd = self.log_weight_sd
            log_sd = log_weight_sd + torch.log(unit)  # of the weights in the data's units
        if latent or bernoulli:
            # E_q[(x_j - b^T x)^2] adds sum_i Var(b_ij) x_i^2 for independent coefficients:
            # A_ij s_ij^2 for Gaussian q(w), plus p_ij (1 - p_ij) w_ij^2 for Bernoulli edges,
            # so Var = A (s^2 + w^2) - A^2 w^2 with Bernoulli edges: the (d, d) factors are
            # formed first and contracted with the batch of adjacencies.
            x2 = torch.diagonal(gram, dim1=-2, dim2=-1)[..., :d]  # (d,) or (d_node, d)
            x2 = x2.unsqueeze(-1) if gram.dim() == 2 else x2.T
            per_edge = torch.exp(2 * log_sd) * off if latent else weights.new_zeros(())
            if bernoulli:
                w2x2 = weights**2 * x2
                var_x2 = adjacency * (per_edge * x2 + w2x2) - adjacency**2 * w2x2
            else:
                var_x2 = adjacency * (per_edge * x2)
            rss = rss + (var_x2 if mask is None else mask * var_x2).sum(-2)
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
            lp = lp - (kl.sum((-1, -2)) if mask is None else mask.flatten(-2) @ kl.flatten())
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


class MLPSEM(StructuralEquationModel):
    """Nonlinear SEM: a one-hidden-layer MLP per node on its masked inputs.

    ``x_j = sum_h V_jh act(sum_i A_ij U_jih x_i + c_jh) + b_j + e_j``, ``e_j ~ N(0, s_j^2)``.

    By default (``weight_prior_scale=1.0``) the input weights ``U`` are latent:
    ``N(0, weight_prior_scale^2)`` a priori for present edges, with a mean-field
    Gaussian posterior drawn once per DAG sample while the module is in training
    mode (posterior means in eval mode); :meth:`weight_kl` is their KL, the
    Occam factor of each edge. ``weight_prior_scale=None`` makes them point
    estimates.

    The mask ``A[..., :, j]`` zeroes the inputs of node ``j`` that are not its
    parents, so a sampled DAG decides what each mechanism can see (the
    masked-MLP SEM of Charpentier et al., "Differentiable DAG Sampling", ICLR
    2022). All nodes are evaluated in one batched contraction.
    """

    def __init__(
        self,
        num_nodes: int,
        *,
        hidden: int = 10,
        activation: Callable[[torch.Tensor], torch.Tensor] = torch.sigmoid,
        noise: str = "nonequal",
        weight_prior_scale: float | None = 1.0,
    ):
        super().__init__(num_nodes)
        if int(hidden) < 1:
            raise InputError(f"hidden must be >= 1, got {hidden}")
        if weight_prior_scale is not None and not weight_prior_scale > 0:
            raise InputError(f"weight_prior_scale must be > 0 or None, got {weight_prior_scale}")
        d, h = self.num_nodes, int(hidden)
        self.hidden, self.activation, self.noise = h, activation, noise
        self.weight_prior_scale = weight_prior_scale
        scale = 1.0 / math.sqrt(max(d, 1))
        self.w_in = nn.Parameter(torch.randn(d, d, h) * scale)  # [i, j, h]: input i of node j
        if weight_prior_scale is not None:
            self.log_w_in_sd = nn.Parameter(torch.full((d, d, h), math.log(0.05)))
        self.b_in = nn.Parameter(torch.zeros(d, h))
        self.w_out = nn.Parameter(torch.randn(d, h) / math.sqrt(h))
        self.b_out = nn.Parameter(torch.zeros(d))
        self.log_scale = nn.Parameter(torch.zeros(d if noise == "nonequal" else 1))

    @torch.no_grad()
    def initialize(self, data: torch.Tensor) -> None:
        """Start from the marginal fit: output biases = column means, noise = column scales."""
        mean = data.mean(0)
        log_sd = torch.log(data.std(0).clamp_min(1e-6))
        self.b_out.copy_(mean)
        self.log_scale.copy_(log_sd if self.noise == "nonequal" else log_sd.mean())

    @torch.no_grad()
    def edge_strengths(self, columns) -> torch.Tensor:
        """The norm of node ``j``'s input weights for ``i`` (a strength, not an effect)."""
        return self.w_in.double().norm(dim=-1)

    @_pyro_params
    def mean(self, data, adjacency):
        """Predicted ``E[x_j | x_pa(j)]`` for every node: ``(*B, n, d)``."""
        d, h = self.num_nodes, self.hidden
        off = 1.0 - torch.eye(d, dtype=data.dtype)
        w_in = self.w_in
        if self.weight_prior_scale is not None and self.training and torch.is_grad_enabled():
            # one reparameterized draw of the input weights per adjacency sample
            eps = torch.randn(adjacency.shape[:-2] + w_in.shape, dtype=w_in.dtype)
            w_in = w_in + torch.exp(self.log_w_in_sd) * eps
        masked = (adjacency * off).unsqueeze(-1) * w_in  # (*B, i, j, h)
        pre = data @ masked.reshape(masked.shape[:-3] + (d, d * h))  # (*B, n, j*h)
        pre = pre.reshape(pre.shape[:-1] + (d, h)) + self.b_in
        return (self.activation(pre) * self.w_out).sum(-1) + self.b_out

    @_pyro_params
    def weight_kl(self, adjacency: torch.Tensor) -> torch.Tensor:
        """``sum_{i->j in A} KL(q(U_ji.) || N(0, sigma_w^2 I))`` of the input weights: ``(*B,)``.

        The input weights of a present edge are latent with a Gaussian prior and a
        mean-field Gaussian posterior (sampled once per DAG sample in
        :meth:`mean` while training); absent edges cost nothing. Add
        ``-weight_kl(A)`` to the ELBO once per data set (not per row).
        """
        if self.weight_prior_scale is None:
            return adjacency.new_zeros(adjacency.shape[:-2])
        d = self.num_nodes
        log_sw = math.log(self.weight_prior_scale)
        var_ratio = torch.exp(2 * (self.log_w_in_sd - log_sw))
        kl = 0.5 * (var_ratio + (self.w_in / self.weight_prior_scale) ** 2 - 1.0) - (
            self.log_w_in_sd - log_sw
        )
        kl = kl.sum(-1) * (1.0 - torch.eye(d, dtype=kl.dtype))
        return (adjacency * kl).sum((-1, -2))

    def node_log_prob(self, data, adjacency):
        log_s = self.log_scale.expand(self.num_nodes)
        z = (data - self.mean(data, adjacency)) * torch.exp(-log_s)
        return -0.5 * z * z - log_s - 0.5 * _LOG_2PI


class CustomSEM(StructuralEquationModel):
    """A user likelihood from a function ``fn(data, adjacency) -> (*B, n, d)`` log densities.

    Parameters the function needs can be Pyro params (``pyro.param``) or the
    parameters of ``module``, which is registered so that they are trained.
    """

    def __init__(self, num_nodes: int, fn, module: nn.Module | None = None):
        super().__init__(num_nodes)
        if not callable(fn):
            raise InputError("CustomSEM needs a callable fn(data, adjacency)")
        self.fn = fn
        self.module = module

    def register_params(self) -> None:
        super().register_params()
        if self.module is not None and not isinstance(self.module, PyroModule):
            pyro.module(f"{pyro_module_name(self) or 'sem'}.module", self.module)

    def node_log_prob(self, data, adjacency):
        self.register_params()
        out = self.fn(data, adjacency)
        expected = adjacency.shape[:-2] + data.shape
        if out.shape != expected:
            raise InputError(
                f"custom SEM returned shape {tuple(out.shape)}, expected {tuple(expected)} "
                "(adjacency batch + (rows, nodes))"
            )
        return out


def make_sem(
    sem, num_nodes: int, *, noise: str = "nonequal", hidden: int = 10, weight_prior="normal"
):
    """Build a SEM from a name (``"linear"``, ``"linear-equal"``, ``"mlp"``) or pass one
    through; ``weight_prior`` is the slab of the linear SEM's weights."""
    if isinstance(sem, StructuralEquationModel):
        if sem.num_nodes != num_nodes:
            raise InputError(f"the SEM has {sem.num_nodes} nodes but the data has {num_nodes}")
        return sem
    if sem == "linear":
        return LinearGaussianSEM(num_nodes, noise=noise, weight_prior=weight_prior)
    if sem == "linear-equal":
        return LinearGaussianSEM(num_nodes, noise="equal", weight_prior=weight_prior)
    if sem == "mlp":
        return MLPSEM(num_nodes, hidden=hidden, noise=noise)
    raise InputError(
        f"unknown sem {sem!r}; use 'linear', 'linear-equal', 'mlp' or a StructuralEquationModel"
    )
