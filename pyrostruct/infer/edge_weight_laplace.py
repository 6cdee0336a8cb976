"""Edge weights integrated out of a DAG's importance weight: per distinct DAG, importance
sampling from the Laplace approximation of the weights' conditional posterior.

A model whose weights ``W`` declare ``infer={"edge_weights_of": site}``
(:mod:`pyrostruct.infer.autoguide.edge_weights`) has the joint ``p(x, A, W)``; the edge
marginals need the DAG's posterior, ``p(A | x) ∝ p(x, A) = ∫ p(x, A, W) dW``. Weighing a
guide draw ``(A_s, W_s)`` by ``p(x, A_s, W_s) / (q(A_s) q(W_s | A_s))`` is unbiased, but its
variance is that of one draw of ``W`` from ``q(W | A)``, one Gaussian per edge whatever
the other parents of its child: where a child's parents' weights are correlated, or the
guide seldom draws a DAG, a few draws dominate (measured on ``models/dag_posterior.py``'s
nonlinear family, d = 5: an inner effective sample size of 1 in 4096 for a DAG of
posterior mass 0.12, its weight 17 nats low). Here each distinct DAG gets its own
proposal for the weights of its edges, the Laplace approximation of ``p(W_A | x, A)``
(Tierney & Kadane, "Accurate approximations for posterior moments and marginal
densities", JASA 1986) used as an importance density:

.. math::

    \\hat W = \\arg\\max_{W_A} \\log p(x, A, W), \\qquad
    r_A = \\mathcal N\\big(\\hat W, (-\\nabla^2_{W_A} \\log p(x, A, \\hat W))^{-1}\\big),

    \\hat p(x, A) = \\frac1M \\sum_{m=1}^M
    \\frac{p(x, A, W_m)}{r_A(W_{A,m})\\, p(W_{\\bar A, m})}, \\qquad
    W_{A,m} \\sim r_A, \\; W_{\\bar A, m} \\sim p(W_{\\bar A}),

an unbiased estimate of ``p(x, A)``, exact whatever ``M`` when the likelihood is Gaussian
and linear in the weights (a linear SEM, or a nonlinear one with fixed features); the
absent edges' weights come from their prior, where they cancel. ``\\hat W`` is found by
Newton's method from the guide's draw, with backtracking; the Hessian block of every DAG
comes from one batched Hessian-vector product per coordinate (the DAGs' log joints are
separable). The DAG's weight is then ``\\hat p(x, A_s) / q(A_s)`` with ``q`` the DAG
density of the guide (or of the restarts' union) alone: the weights' guide no longer
enters (Rao-Blackwellization of the weights).
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from pyrostruct.distributions._dag_ops import attach_order, get_order
from pyrostruct.infer.autoguide.edge_weights import (
    EDGE_WEIGHTS_OF,
    edge_weight_prior,
    is_edge_weight_site,
)
from pyrostruct.infer.enum import _trace
from pyrostruct.infer.importance import _log_weights_once, vectorization_method
from pyrostruct.infer.smc_target import _no_guide

__all__ = ["ModelRun", "integrable_weight_site", "laplace_log_marginal", "take_draws"]

#: Importance draws of the weights per distinct DAG.
INNER_DRAWS = 32
#: Most Newton steps; each ends with its backtracking line search.
NEWTON_STEPS = 30
#: Newton stops when every DAG's decrement ``g' H^{-1} g / 2`` is below this (nats), or
#: below ten rounding errors of its log joint in the model's dtype.
NEWTON_TOL = 1e-9
#: Most numbers in one chunk's Hessian blocks (DAGs x coordinates^2).
HESSIAN_BUDGET = 2**24
#: Most particles (DAGs x inner draws) in one run of the model.
PARTICLE_BUDGET = 4096


def integrable_weight_site(model, guide, args, kwargs, site: str, max_plate_nesting: int):
    """The name of the weight site of DAG site ``site`` when its weights can be integrated
    out here, else ``None``: the guide's latent sites are exactly the DAG and one weight
    site declaring ``edge_weights_of=site`` (both outside every plate), no plate of the
    model subsamples its rows, and the model and guide broadcast over a particle plate
    (the Laplace step runs the model batched)."""
    model_trace = _trace(model, *args, **kwargs)
    guide_trace = _trace(guide, *args, **kwargs)
    latent = [
        name for name, s in guide_trace.nodes.items()
        if s["type"] == "sample" and not s["is_observed"] and not site_is_subsample(s)
    ]  # fmt: skip
    weights = [
        name for name in latent
        if name in model_trace.nodes and is_edge_weight_site(model_trace.nodes[name])
        and model_trace.nodes[name]["infer"][EDGE_WEIGHTS_OF] == site
    ]  # fmt: skip
    if sorted(latent) != sorted([site, *weights]) or len(weights) != 1:
        return None
    if any(_subsampled(s) for s in model_trace.nodes.values()):
        return None  # each run would see other rows: Newton needs one log joint
    for name in latent:
        value = model_trace.nodes[name]["value"]
        if value.dim() != 2 or guide_trace.nodes[name]["value"].shape != value.shape:
            return None  # inside a plate, or batched DAGs
    method, _ = vectorization_method(
        model, guide, *args, max_plate_nesting=max_plate_nesting, **kwargs
    )
    return weights[0] if method == "plate" else None


def _subsampled(site) -> bool:
    """Whether a trace site is a plate's subsample of fewer indices than its size."""
    if not site_is_subsample(site):
        return False
    fn = site["fn"]
    return getattr(fn, "subsample_size", None) is not None and fn.subsample_size < fn.size


def laplace_log_marginal(
    model, dags: torch.Tensor, start: torch.Tensor, *args, site: str, weight_site: str,
    max_plate_nesting: int, num_draws: int = INNER_DRAWS, **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``log p̂(x, A)`` for each DAG of ``dags`` ``(K, d, d)`` (an attached order is kept and
    scored by the model's prior), the weights integrated out by importance sampling from
    their Laplace approximation (see the module docstring), and each estimate's inner
    effective sample size, both of shape ``(K,)``.

    :param start: ``(K, d, d)`` weights to start Newton's method from (a guide draw), in
        the dtype the model computes in.
    :param str weight_site: the model's weight site (``edge_weights_of=site``).
    :param int num_draws: importance draws ``M`` per DAG.
    """
    d = dags.shape[-1]
    prior = edge_weight_prior(_trace(model, *args, **kwargs).nodes[weight_site], d)
    model_run = ModelRun(model, args, kwargs, max_plate_nesting)

    def run(dags, w):
        return model_run({site: dags, weight_site: w.reshape(w.shape[0], d, d)})

    log_p, ess = [], []
    coords = int(d * d)
    size = max(1, min(PARTICLE_BUDGET, HESSIAN_BUDGET // coords**2))
    for lo in range(0, len(dags), size):
        chunk = take_draws(dags, slice(lo, lo + size))
        mode, precision = _laplace(run, chunk, start[lo : lo + size].detach().clone())
        lp, e = _inner_estimate(run, chunk, mode, precision, prior, num_draws)
        log_p.append(lp)
        ess.append(e)
    return torch.cat(log_p), torch.cat(ess)


def take_draws(dags: torch.Tensor, index) -> torch.Tensor:
    """``dags[index]`` (an index or a slice of the first dim), an attached order kept."""
    order = get_order(dags)
    part = dags[index]
    return part if order is None else attach_order(part, order[index])


class ModelRun:
    """``log p(x, z_k)`` of a batch of ``K`` given values of some latent sites (the others
    the model enumerates or has none), the model conditioned on them under a particle
    plate (the idiom of :mod:`pyrostruct.infer.smc_target`), differentiable in the
    values. A DAG's attached order is kept (the model's prior scores the pair)."""

    def __init__(self, model, args, kwargs, max_plate_nesting):
        self.model, self.args, self.kwargs, self.nesting = model, args, kwargs, max_plate_nesting

    def __call__(self, values: dict) -> torch.Tensor:
        num = len(next(iter(values.values())))
        lead = (num,) + (1,) * self.nesting
        data = {}
        for name, value in values.items():
            shaped = value.reshape(lead + value.shape[1:])
            order = get_order(value)
            if order is not None:
                shaped = attach_order(shaped, order.reshape(lead + order.shape[1:]))
            data[name] = shaped
        conditioned = poutine.condition(self.model, data=data)
        lw = _log_weights_once(
            conditioned, _no_guide, self.args, self.kwargs, self.nesting, num, detach=False
        )
        return lw.reshape(num)


def _laplace(run, dags: torch.Tensor, weights: torch.Tensor):
    """Newton's method for the mode of ``log p(x, A_k, W)`` in the present edges' weights
    of every DAG; returns the mode ``(K, d * d)`` and the precision ``(K, C, C)`` over the
    off-diagonal coordinates ``C`` (identity where an edge is absent)."""
    num, d = dags.shape[0], dags.shape[-1]
    off = ~torch.eye(d, dtype=torch.bool).flatten()
    present = (dags.detach() > 0.5).reshape(num, d * d)[:, off]  # (K, C)
    w = weights.reshape(num, d * d)
    for _ in range(NEWTON_STEPS):
        value, grad, precision = _derivatives(run, dags, w, off, present)
        step = torch.linalg.solve(precision, grad.unsqueeze(-1)).squeeze(-1)
        tol = torch.clamp(10 * torch.finfo(w.dtype).eps * (1 + value.abs()), min=NEWTON_TOL)
        if bool(((grad * step).sum(-1) / 2 <= tol).all()):
            return w, precision
        w = _backtrack(run, dags, w, off, step, value)
    _, _, precision = _derivatives(run, dags, w, off, present)
    return w, precision


def _derivatives(run, dags, w, off, present):
    """Log joint ``(K,)``, gradient ``(K, C)`` and positive-definite precision ``(K, C, C)``
    (minus the Hessian, eigenvalues floored) in the present edges' weights."""
    with torch.enable_grad():
        w = w.detach().requires_grad_(True)
        value = run(dags, w)
        (grad,) = torch.autograd.grad(value.sum(), w, create_graph=True)
        cols = torch.nonzero(off).squeeze(-1)
        basis = torch.zeros(len(cols), *w.shape, dtype=w.dtype)
        basis[torch.arange(len(cols)), :, cols] = 1.0
        try:
            (hess,) = torch.autograd.grad(grad, w, basis, is_grads_batched=True)
        except RuntimeError:  # an op without a batching rule
            hess = torch.stack([
                torch.autograd.grad(grad, w, b, retain_graph=True)[0] for b in basis
            ])  # fmt: skip
    hess = hess.detach().permute(1, 2, 0)[:, off, :]  # (K, C, C)
    mask = present.unsqueeze(-1) & present.unsqueeze(-2)
    eye = torch.eye(mask.shape[-1], dtype=w.dtype)
    precision = torch.where(mask, -hess, eye * ~present.unsqueeze(-1))
    return value.detach(), grad.detach()[:, off] * present, _floor_eigenvalues(precision)


def _floor_eigenvalues(precision: torch.Tensor) -> torch.Tensor:
    """The symmetric part of ``precision`` with eigenvalues floored at ``1e-6`` of the
    largest (a saddle or a flat direction, where Newton's step would be wrong)."""
    sym = (precision + precision.transpose(-1, -2)) / 2
    _, info = torch.linalg.cholesky_ex(sym)
    if not bool(info.any()):
        return sym
    vals, vecs = torch.linalg.eigh(sym)
    floor = 1e-6 * vals.abs().amax(-1, keepdim=True).clamp_min(1.0)
    return vecs @ torch.diag_embed(vals.clamp_min(floor)) @ vecs.transpose(-1, -2)


def _backtrack(run, dags, w, off, step, value, halvings: int = 20):
    """``w + t * step`` with the largest ``t`` in ``1, 1/2, ...`` that does not lower the
    log joint, per DAG (``t = 0`` where none does)."""
    full = torch.zeros_like(w)
    full[:, off] = step
    t = torch.ones(w.shape[0], 1, dtype=w.dtype)
    accepted = torch.zeros(w.shape[0], dtype=torch.bool)
    for _ in range(halvings):
        with torch.no_grad():
            trial = run(dags, w + t * full)
        ok = ~accepted & (trial >= value)
        accepted |= ok
        if bool(accepted.all()):
            break
        t = torch.where(accepted.unsqueeze(-1), t, t / 2)
    return w + torch.where(accepted.unsqueeze(-1), t, torch.zeros_like(t)) * full


def _inner_estimate(run, dags, mode, precision, prior, num_draws):
    """``log p̂(x, A_k)`` and the inner effective sample sizes (see the module docstring)."""
    num, d = dags.shape[0], dags.shape[-1]
    off = ~torch.eye(d, dtype=torch.bool).flatten()
    present = (dags.detach() > 0.5).reshape(num, d * d)
    proposal = dist.MultivariateNormal(mode[:, off], precision_matrix=precision)
    z = proposal.sample((num_draws,))  # (M, K, C); absent coordinates: N(mode, 1) dummies
    dummy = dist.Normal(mode[:, off], 1.0).log_prob(z) * ~present[:, off]
    free = prior.sample((num_draws, num)).reshape(num_draws, num, d * d).to(mode.dtype)
    w = free.clone()
    w[:, :, off] = torch.where(present[:, off], z, free[:, :, off])
    log_prior_free = prior.log_prob(free.reshape(num_draws, num, d, d))
    log_prior_free = (log_prior_free.reshape(num_draws, num, d * d) * ~present).sum(-1)
    log_r = proposal.log_prob(z) - dummy.sum(-1) + log_prior_free  # (M, K)
    flat_dags = _repeat(dags, num_draws)
    flat_w = w.reshape(num_draws * num, d * d)
    size = PARTICLE_BUDGET
    with torch.no_grad():
        log_joint = torch.cat([
            run(take_draws(flat_dags, slice(lo, lo + size)), flat_w[lo : lo + size])
            for lo in range(0, len(flat_w), size)
        ]).reshape(num_draws, num)  # fmt: skip
    log_w = (log_joint - log_r).double()
    log_p = torch.logsumexp(log_w, 0) - math.log(num_draws)
    ess = torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0))
    return log_p, torch.nan_to_num(ess, nan=0.0)


def _repeat(dags: torch.Tensor, times: int) -> torch.Tensor:
    """``dags`` stacked ``times`` times (draw-major), an attached order kept."""
    order = get_order(dags)
    out = dags.repeat(times, 1, 1)
    return out if order is None else attach_order(out, order.repeat(times, 1))
