"""The masked per-node MLP SEM (Charpentier et al., ICLR 2022)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from pyrostruct.causal.sem.base import _LOG_2PI, StructuralEquationModel, _pyro_params
from pyrostruct.errors import InputError

__all__ = ["MLPSEM"]


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
