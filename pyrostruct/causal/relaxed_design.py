"""Choosing target sets and values by gradient ascent on the expected information gain.

The candidates of an experiment with up to ``k`` targets number ``d^k`` times the value
grid. DiffCBED (Tigas et al., "Differentiable Multi-Target Causal Bayesian Experimental
Design", ICML 2023) instead relaxes the choice: the targets are ``k`` draws of a
Gumbel-softmax (Concrete) one-hot over the nodes with learnable logits ``alpha``, their
sum clipped to 1 the selection weight ``s_j`` of node ``j``; the values are ``v_j = V
tanh(u_j)``, bounded by ``V`` standard deviations. An outcome with soft selection scales
node ``j``'s mechanism by ``1 - s_j`` and adds ``s_j v_j``, and counts its entries in the
node's likelihood with weight ``1 - s_j``
(:meth:`~pyrostruct.causal.information.GraphPosterior.outcomes`), so the Monte Carlo
estimate of the gain is differentiable in ``alpha`` and ``u`` by the reparameterization
of both the Gumbel noise and the outcome noise. Adam climbs it while the temperature
anneals from 1 to 0.1; the experiment returned is the ``k`` nodes of largest ``alpha``
at their values, scored again exactly (hard selection, fresh outcomes).

In the linear Gaussian model the gain grows with ``|v|``, so values end at the bound:
what the search decides is the set of targets and the signs.
"""

from __future__ import annotations

import math

import torch

from pyrostruct.causal.information import Experiment, GraphPosterior
from pyrostruct.distributions import ConcreteOneHotCategorical

__all__ = ["optimize_experiment"]


def optimize_experiment(
    posterior: GraphPosterior,
    parameters,
    *,
    nodes: list[int],
    max_targets: int,
    samples: int,
    chosen: list[Experiment] = (),
    max_value: float = 2.0,
    steps: int = 150,
    lr: float = 0.1,
) -> tuple[Experiment, Experiment]:
    """An experiment of up to ``max_targets`` of ``nodes`` with values in ``[-max_value,
    max_value]`` (standardized), by gradient ascent on the joint gain with ``chosen``.

    :returns: ``(optimized, start)``: the hard experiment after the ascent and the one
        its random start would give (the same rounding of the initial logits and values),
        both for :meth:`~pyrostruct.causal.information.GraphPosterior.information_gain`.
        Uses torch's global generator.
    """
    d, m = posterior.d, posterior.num_draws
    allowed = torch.full((d,), -math.inf, dtype=torch.float64)
    allowed[nodes] = 0.0
    logits = (0.1 * torch.randn(d, dtype=torch.float64)).requires_grad_()
    raw = (0.5 * torch.randn(d, dtype=torch.float64)).requires_grad_()
    start = _harden(logits, raw, allowed, max_targets, max_value, samples)
    fixed = posterior.simulate(list(chosen), parameters) if chosen else None
    optim = torch.optim.Adam([logits, raw], lr=lr)
    for step in range(steps):
        tau = 10 ** (-step / max(steps - 1, 1))  # 1 -> 0.1
        draws = ConcreteOneHotCategorical(tau, logits=(logits + allowed).expand(m, max_targets, d))
        selection = draws.rsample().sum(1).clamp(max=1.0)  # (M, d)
        y, keep = posterior.outcomes(selection, max_value * torch.tanh(raw), samples, parameters)
        if fixed is not None:
            y, keep = torch.cat([fixed[0], y], 1), torch.cat([fixed[1], keep], 1)
        loss = -posterior.gains(y, keep).mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
    return _harden(logits, raw, allowed, max_targets, max_value, samples), start


def _harden(logits, raw, allowed, k, max_value, samples) -> Experiment:
    with torch.no_grad():
        targets = sorted(torch.topk(logits + allowed, k).indices.tolist())
        values = (max_value * torch.tanh(raw[targets])).tolist()
    return Experiment(tuple(targets), tuple(values), samples)
