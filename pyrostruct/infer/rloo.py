"""Gradients for guide sites without a reparameterized sampler: ``TraceRLOO_ELBO``
(score-function ELBO gradients with a leave-one-out baseline) and ``TraceRWS_ELBO``
(the mass-covering wake update of reweighted wake-sleep).

For guide sites without a reparameterized sampler (discrete latents, or a
structural site sampled with ``has_rsample_(False)``) Pyro's ``Trace_ELBO``
uses the plain score-function (REINFORCE) estimator, whose variance grows
with the scale of the log-likelihood. With ``K`` vectorized particles
:math:`z_1..z_K \\sim q_\\phi` and per-particle ELBOs
:math:`f_k = \\log p(x, z_k) - \\log q_\\phi(z_k)`, the REINFORCE leave-one-out
estimator (Kool, van Hoof, Welling, "Buy 4 REINFORCE Samples, Get a Baseline
for Free!", ICLR DRL workshop 2019) is

.. math::

    \\nabla_\\phi \\mathrm{ELBO} \\approx \\frac1K \\sum_k \\Big[\\nabla_\\phi f_k
      + \\big(f_k - \\tfrac{1}{K-1}\\textstyle\\sum_{j \\ne k} f_j\\big)
        \\nabla_\\phi \\log q_\\phi(z_k)\\Big],

unbiased, with a baseline that needs no learning. Reparameterized sites get
their pathwise gradient through :math:`f_k` as usual.
"""

from __future__ import annotations

import torch
from pyro.infer import Trace_ELBO

from pyrostruct._pyro_compat import elbo_traces, torch_item, warn_if_nan

__all__ = ["TraceRLOO_ELBO", "TraceRWS_ELBO"]


def _per_particle(log_prob: torch.Tensor, num_particles: int, particle_dim: int) -> torch.Tensor:
    """Sum a site's log-probability over every dimension but the particle one -> ``(K,)``."""
    if log_prob.dim() < -particle_dim:  # not batched over particles: shared by all
        return log_prob.sum().expand(num_particles)
    moved = log_prob.movedim(particle_dim, 0)
    return moved.reshape(moved.shape[0], -1).sum(-1).expand(num_particles)


def _terms(model_trace, guide_trace, per_particle):
    """``(elbo, score)`` per particle: ``log p - log q`` (the score sites' ``log q``
    detached) and the summed ``log q`` of the non-reparameterized guide sites."""
    elbo = 0.0
    score = 0.0
    for site in model_trace.nodes.values():
        if site["type"] == "sample":
            elbo = elbo + per_particle(site["log_prob"])
    for site in guide_trace.nodes.values():
        if site["type"] == "sample":
            log_q = per_particle(site["log_prob"])
            if site["fn"].has_rsample:
                elbo = elbo - log_q
            else:
                # As in Pyro: the direct gradient of -log q has expectation
                # zero and only adds variance; the score term carries it all.
                elbo = elbo - log_q.detach()
                score = score + log_q
    return elbo, score


class TraceRLOO_ELBO(Trace_ELBO):
    """ELBO with leave-one-out baselines for the non-reparameterized guide sites.

    :param int num_particles: ``K >= 2`` particles.
    :param bool vectorize_particles: draw the particles in one vectorized pass
        (default; the model and guide must broadcast over an extra outermost
        plate, as for Pyro's ``vectorize_particles=True``) or run model and
        guide ``K`` times, for models that do not broadcast.
    :param int max_plate_nesting: as in Pyro's ELBOs (guessed when omitted).

    Use it like ``Trace_ELBO``: ``SVI(model, guide, optim, TraceRLOO_ELBO(16))``.
    """

    def __init__(self, num_particles: int = 8, vectorize_particles: bool = True, **kwargs):
        if not (isinstance(num_particles, int) and num_particles >= 2):
            raise ValueError(
                f"TraceRLOO_ELBO needs num_particles >= 2 for its baseline, got {num_particles!r}"
            )
        super().__init__(
            num_particles=num_particles, vectorize_particles=bool(vectorize_particles), **kwargs
        )

    def _particle_terms(self, model, guide, args, kwargs):
        """Per-particle ELBO terms and guide log-densities of the score sites, ``(K,)`` each."""
        traces = elbo_traces(self, model, guide, args, kwargs)
        if self.vectorize_particles:
            ((model_trace, guide_trace),) = traces  # guesses max_plate_nesting first
            K, dim = self.num_particles, -self.max_plate_nesting
            return _terms(model_trace, guide_trace, lambda lp: _per_particle(lp, K, dim))
        terms = [_terms(m, g, lambda lp: lp.sum().reshape(1)) for m, g in traces]
        return tuple(torch.cat([torch.as_tensor(t[i]).reshape(1) for t in terms]) for i in (0, 1))

    def _score_surrogate(self, f: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        """The term whose gradient is the score sites' gradient (``f`` detached)."""
        baseline = (f.sum() - f) / (self.num_particles - 1)
        return (score * (f - baseline)).mean()

    def differentiable_loss(self, model, guide, *args, **kwargs):
        elbo, score = self._particle_terms(model, guide, args, kwargs)
        surrogate = elbo.mean() + self._score_surrogate(elbo.detach(), score)
        # Value of the surrogate is the ELBO estimate; only its gradient differs.
        loss = -(surrogate - surrogate.detach() + elbo.detach().mean())
        warn_if_nan(loss, "loss")
        return loss

    def loss(self, model, guide, *args, **kwargs):
        with torch.no_grad():
            elbo, _ = self._particle_terms(model, guide, args, kwargs)
        loss = -torch_item(elbo.mean())
        warn_if_nan(loss, "loss")
        return loss

    def loss_and_grads(self, model, guide, *args, **kwargs):
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward()
        return torch_item(loss)


class TraceRWS_ELBO(TraceRLOO_ELBO):
    """Mass-covering updates for the non-reparameterized guide sites: the wake-phase
    update of reweighted wake-sleep.

    The score sites' parameters follow the self-normalized importance-sampling
    gradient of the *inclusive* divergence :math:`\\mathrm{KL}(p(z \\mid x) \\,\\|\\, q_\\phi(z))`,

    .. math::

        -\nabla_\\phi \\mathrm{KL}(p \\,\\|\\, q_\\phi) \approx \\sum_k \bar w_k
            \nabla_\\phi \\log q_\\phi(z_k), \\qquad
        \bar w_k = \frac{e^{f_k}}{\\sum_j e^{f_j}},

    (Bornschein & Bengio, "Reweighted Wake-Sleep", ICLR 2015; Le, Kosiorek,
    Siddharth, Teh, Wood, "Revisiting Reweighted Wake-Sleep for Models with
    Stochastic Control Flow", UAI 2019, who find it beats REINFORCE-type ELBO
    gradients for discrete latents). Reparameterized sites and model parameters get
    the ELBO's pathwise gradient, as with :class:`TraceRLOO_ELBO`; the loss value is
    the ELBO estimate. Why: reverse-KL training is mode-seeking, and a mixture guide
    over DAGs (:class:`~pyrostruct.distributions.DAGMixture`) trained by it drops
    posterior modes; the inclusive divergence keeps them, and importance weights
    (:func:`~pyrostruct.infer.dag_marginals.importance_edge_probs`) then correct the
    masses. Measured on 24 four-node problems of ``models/dag_posterior.py``
    (linear Gaussian and logistic, 1000 steps, 16 particles): importance-weighted
    edge marginals at most 0.016 from exact, against 0.57 with
    :class:`TraceRLOO_ELBO`, where whole modes were missed. The self-normalized
    weights make the update consistent as ``K`` grows, not unbiased.

    :param int num_particles: ``K >= 2`` particles.
    :param bool vectorize_particles: as for :class:`TraceRLOO_ELBO`.
    """

    def _score_surrogate(self, f: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        # Scaled by the particles' spread, the size of a REINFORCE update: under Adam the
        # steps then shrink as the particles come to agree. Measured on 24 four-node
        # problems: max error 0.016 scaled, 0.14 unscaled (one problem's mode missed).
        return (score * torch.softmax(f, 0)).sum() * f.std()
