"""A diagonal Gaussian mixture whose log density is computed by matrix products.

``MixtureSameFamily(Categorical(w), Normal(locs, scales).to_event(1))`` scores
``n`` points against ``B`` parameter draws by broadcasting to a ``(B, n, K, D)``
tensor; :class:`DiagonalNormalMixture` expands the square instead,

.. math::

    \\sum_d \\frac{(x_d - \\mu_{kd})^2}{\\sigma_{kd}^2}
    = \\sum_d x_d^2 \\sigma_{kd}^{-2} - 2 \\sum_d x_d \\mu_{kd} \\sigma_{kd}^{-2}
    + \\sum_d \\mu_{kd}^2 \\sigma_{kd}^{-2},

one ``(n, 2D + 1) x (2D + 1, K)`` product per draw (the evidence estimators' hot path:
SMC scores thousands of draws of a mixture per temperature). The parameters
are kept unexpanded when a plate expands the distribution.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints


class DiagonalNormalMixture(TorchDistribution):
    """``x ~ sum_k w_k N(locs_k, diag(scales_k^2))``, event shape ``(D,)``.

    :param torch.Tensor weights: ``(..., K)`` mixture weights (summing to one).
    :param torch.Tensor locs: ``(..., K, D)``.
    :param torch.Tensor scales: ``(..., K, D)``, positive.
    """

    arg_constraints = {
        "weights": constraints.simplex,
        "locs": constraints.real,
        "scales": constraints.positive,
    }
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, weights, locs, scales, batch_shape=None, validate_args=None):
        self.weights, self.locs, self.scales = weights, locs, scales
        own = torch.broadcast_shapes(weights.shape[:-1], locs.shape[:-2], scales.shape[:-2])
        batch_shape = own if batch_shape is None else torch.Size(batch_shape)
        super().__init__(batch_shape, locs.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return DiagonalNormalMixture(
            self.weights, self.locs, self.scales, batch_shape, validate_args=False
        )

    def _components(self):
        return dist.MixtureSameFamily(
            dist.Categorical(self.weights), dist.Normal(self.locs, self.scales).to_event(1)
        )

    def sample(self, sample_shape=()):
        shape = self.batch_shape
        weights = self.weights.expand(shape + self.weights.shape[-1:])
        locs = self.locs.expand(shape + self.locs.shape[-2:])
        scales = self.scales.expand(shape + self.scales.shape[-2:])
        mixture = DiagonalNormalMixture(weights, locs, scales)._components()
        return mixture.sample(torch.Size(sample_shape))

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        prec = self.scales.pow(-2)  # (P..., K, D)
        const = (self.locs.pow(2) * prec).sum(-1) + 2 * self.scales.log().sum(-1)
        const = const + value.shape[-1] * math.log(2 * math.pi)  # (P..., K)
        # the parameters' last batch dim broadcasts against the points' (a plate's);
        # fold it away so that the points are the rows of one matrix product per draw
        pb = torch.broadcast_shapes(
            self.weights.shape[:-1], self.locs.shape[:-2], self.scales.shape[:-2]
        )
        log_w = torch.log_softmax(self.weights.log(), -1)
        if value.dim() >= 2 and (len(pb) == 0 or pb[-1] == 1):
            # one product: [x^2, x, 1] (n, 2D + 1) x (2D + 1, K) per draw
            lead = pb[:-1] if len(pb) else pb
            coef = torch.cat(
                [-0.5 * prec, self.locs * prec, (log_w - 0.5 * const).unsqueeze(-1)], -1
            )
            coef = coef.expand(pb + coef.shape[-2:]).reshape(lead + coef.shape[-2:])
            feats = torch.cat([value.pow(2), value, torch.ones_like(value[..., :1])], -1)
            out = torch.logsumexp(feats @ coef.mT, -1)
        else:  # any other layout: broadcast elementwise
            x = value.unsqueeze(-2)
            quad = (x.pow(2) * prec - 2 * x * self.locs * prec).sum(-1)
            out = torch.logsumexp(log_w - 0.5 * (quad + const), -1)
        return out.expand(torch.broadcast_shapes(out.shape, self.batch_shape))
