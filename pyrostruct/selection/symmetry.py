"""Label switching: the guide of a mixture symmetrized over its label permutations.

A model invariant under relabelling its ``K`` components has ``K!`` copies of
each posterior mode; a unimodal guide covers one, so its ELBO and IWAE bound
fall short of the evidence by up to ``log K!``. :func:`label_symmetry` finds
the permutation group numerically and :func:`_mixture_correction` turns a
guide into the uniform mixture over its permuted copies (see :func:`label_symmetry`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from pyrostruct._pyro_compat import autonormal_loc_and_scale
from pyrostruct.infer.enum import support_size
from pyrostruct.selection.candidates import _discrete_sites

_MAX_FULL_GROUP = 720  # symmetrize over all K! permutations up to K = 6


class _MeanField:
    """A snapshot of an :class:`~pyro.infer.autoguide.AutoNormal`: per latent site its
    ``loc`` and ``scale`` (unconstrained) and the bijection to the site's support.

    ``log_density(values)`` is the guide's log density at constrained values
    with any number of leading batch dims: ``sum_site log N(T^{-1} v; loc, scale)
    - log |det dT/du|``, as ``AutoNormal`` computes it.
    """

    def __init__(self, guide) -> None:
        from torch.distributions import biject_to

        self.sites = {}
        for name, site in guide.prototype_trace.iter_stochastic_nodes():
            loc, scale = autonormal_loc_and_scale(guide, name)
            transform = biject_to(site["fn"].support)
            self.sites[name] = (loc.detach(), scale.detach(), transform, site["value"].dim())

    def log_density(self, values: dict, name: str) -> torch.Tensor:
        loc, scale, transform, dim = self.sites[name]
        value = values[name]
        batch = value.shape[: value.dim() - dim]
        u = transform.inv(value)
        log_q = dist.Normal(loc, scale).log_prob(u).reshape(*batch, -1).sum(-1)
        return log_q - transform.log_abs_det_jacobian(u, value).reshape(*batch, -1).sum(-1)


@dataclasses.dataclass
class _LabelSymmetry:
    """Relabellings that leave a model's joint density unchanged: the ``K``-sized
    ``axes`` of each site, permuted together by each row of ``perms``."""

    k: int
    axes: dict
    perms: torch.Tensor
    log_group_size: float

    def permute(self, values: dict) -> dict:
        """``{site: (G, S, *shape)}``: each permutation applied to ``{site: (S, *shape)}``."""
        g, out = len(self.perms), {}
        for name, value in values.items():
            batched = value.unsqueeze(0).expand(g, *value.shape)
            for a in self.axes.get(name, ()):
                shape = [g] + [1] * value.dim()
                shape[a + 2] = self.k
                index = self.perms.reshape(shape).expand(batched.shape)
                batched = batched.gather(a + 2, index)
            out[name] = batched
        return out


@torch.no_grad()
def _find_label_symmetry(model, guide, args, kwargs, max_plate_nesting) -> _LabelSymmetry | None:
    """A mixture-like model's label symmetry, checked numerically (:func:`label_symmetry`)."""
    import itertools

    from pyro.infer.autoguide import AutoNormal as _AutoNormal

    from pyrostruct.infer.importance import _log_weights_once

    if not isinstance(guide, _AutoNormal):
        return None
    with poutine.block():
        model_trace = poutine.trace(model).get_trace(*args, **kwargs)
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    sizes = {support_size(model_trace.nodes[n]["fn"]) for n in _discrete_sites(model_trace)}
    if len(sizes) != 1 or None in sizes or next(iter(sizes)) < 2:
        return None
    (k,) = sizes
    latent = {
        name: guide_trace.nodes[name]["value"]
        for name, _ in guide.prototype_trace.iter_stochastic_nodes()
        if name in guide_trace.nodes
    }

    def empty(*a, **kw):
        pass

    def log_joint(values):
        conditioned = poutine.condition(model, data=values)
        with pyro.validation_enabled(False):
            lw = _log_weights_once(conditioned, empty, args, kwargs, max_plate_nesting, None)
        return float(lw)

    base = log_joint(latent)
    if not math.isfinite(base):
        return None
    all_axes = {n: [a for a, size in enumerate(v.shape) if size == k] for n, v in latent.items()}
    checks = torch.stack([torch.tensor([1, 0] + list(range(2, k))), torch.roll(torch.arange(k), 1)])
    for option in [
        {n: a for n, a in all_axes.items() if a},
        {n: a[:1] for n, a in all_axes.items() if a},
    ]:
        if not option:
            continue
        trial = _LabelSymmetry(k, option, checks, 0.0)
        permuted = trial.permute({n: v.unsqueeze(0) for n, v in latent.items()})
        values = [log_joint({n: v[g, 0] for n, v in permuted.items()}) for g in range(2)]
        if all(abs(v - base) <= 1e-4 * (1 + abs(base)) for v in values):
            if math.factorial(k) <= _MAX_FULL_GROUP:
                perms = list(itertools.permutations(range(k)))
            else:
                perms = [
                    p
                    for p in itertools.permutations(range(k))
                    if sum(i != j for i, j in enumerate(p)) <= 3
                ]
            return _LabelSymmetry(k, option, torch.tensor(perms), math.lgamma(k + 1))
    return None


def _mixture_correction(
    components: list, log_weights: torch.Tensor, own: int, symmetry: _LabelSymmetry | None
) -> Callable:
    """``draws -> log q_mix(z) - log q_own(z)`` for the proposal

    .. math::

        q_{\\mathrm{mix}}(z) = \\sum_r \\alpha_r \\frac{1}{|G|} \\sum_{\\pi \\in G} q_r(\\pi z)

    of mean-field snapshots ``components`` (:class:`_MeanField`) with weights
    ``exp(log_weights)`` (normalized), symmetrized over the label permutations
    ``G`` of ``symmetry`` (none: ``G`` is the identity).
    """
    log_alpha = log_weights - torch.logsumexp(log_weights, 0)

    def correction(draws):
        names = list(components[own].sites)
        fixed = [n for n in names if symmetry is None or n not in symmetry.axes]
        moved = [n for n in names if symmetry is not None and n in symmetry.axes]
        permuted = symmetry.permute({n: draws[n] for n in moved}) if moved else {}
        terms = []
        for r, comp in enumerate(components):
            total = sum((comp.log_density(draws, n) for n in fixed), torch.zeros(()))
            if moved:  # (G, S): log q_r at every relabelling of the draws
                total = total + sum(comp.log_density(permuted, n) for n in moved)
                total = torch.logsumexp(total, 0) - symmetry.log_group_size
            terms.append(log_alpha[r] + total)
        own_density = sum(components[own].log_density(draws, n) for n in names)
        return torch.logsumexp(torch.stack(terms), 0) - own_density

    return correction


def label_symmetry(model, guide, args, kwargs, max_plate_nesting: int) -> Callable | None:
    """The correction that symmetrizes an :class:`~pyro.infer.autoguide.AutoNormal` guide
    over the label permutations of a mixture-like model, or ``None``.

    A model whose discrete latent sites all have the same support size ``K``
    is often invariant under relabelling: permuting the ``K``-sized axes of its
    continuous latents (weights, locations, scales, the rows and columns of a
    transition matrix) leaves ``p(x, z)`` unchanged, so the posterior has ``K!``
    copies of each mode while a unimodal guide covers one, and its ELBO and
    importance-weighted bounds fall short of ``log p(x)`` by up to ``log K!``.
    The symmetrized proposal

    .. math::

        q_{\\mathrm{sym}}(z) = \\frac{1}{K!} \\sum_{\\pi} q(\\pi z)

    is as easy to sample (draw from ``q``, permute at random) and, ``p`` being
    invariant, its importance weights are ``p(x, z) / q_sym(z)`` at ``z ~ q``
    (Frühwirth-Schnatter, "Estimating marginal likelihoods for mixture and
    Markov switching models using bridge sampling techniques", 2004). The
    returned ``correction(draws) = log q_sym(z) - log q(z)`` per particle is
    what :func:`~pyrostruct.infer.evidence.log_importance_weights` takes as
    ``guide_correction``; with well-separated modes it is ``-log K!``, with
    overlapping ones (an empty component) less.

    The invariance is checked numerically, never assumed: ``log p(x, z)`` at a
    guide draw must be unchanged (to 1e-4 relative) under a transposition and a
    cyclic shift of the labels, first permuting every ``K``-sized axis of every
    continuous latent site, then only the first such axis of each. The sum
    runs over all ``K!`` permutations up to ``K = 6``; above, over the
    permutations that move at most three labels (the others contribute
    nothing unless three or more components are nearly interchangeable).
    """
    symmetry = _find_label_symmetry(model, guide, args, kwargs, max_plate_nesting)
    if symmetry is None:
        return None
    return _mixture_correction([_MeanField(guide)], torch.zeros(1), 0, symmetry)


class SymmetrizedStart:
    """A start of guide-started SMC symmetrized over label permutations.

    With ``base`` a start on the unconstrained space ``u`` of ``latents``
    (:mod:`pyrostruct.infer.smc_start`) and ``T`` the map to the constrained
    values, a draw is ``u = T^{-1}(g T(u_0))``, ``u_0 ~ base``, ``g`` uniform
    over the permutations of ``symmetry`` (a set closed under inversion), so

    .. math::

        q_{\\mathrm{sym}}(u) = \\frac{1}{|G|} \\sum_{g} q_0(u_g)\\,
        \\frac{|J_T(u)|}{|J_T(u_g)|}, \\qquad u_g = T^{-1}(g\\, T(u)),

    (a permutation of the constrained coordinates has unit Jacobian). SMC from
    it starts with the ``K!`` copies of the guide's mode that a mixture's
    posterior has, which no Metropolis move crosses.
    """

    def __init__(self, base, latents, symmetry: _LabelSymmetry) -> None:
        self.base, self.latents, self.symmetry = base, latents, symmetry

    def sample(self, num: int) -> torch.Tensor:
        u = self.base.sample(num)
        values, _ = self.latents.constrain(u)
        pick = torch.randint(len(self.symmetry.perms), (num,))
        perms = self.symmetry.perms[pick]  # (num, K)
        for name, axes in self.symmetry.axes.items():
            value = values[name]
            for a in axes:
                shape = [num] + [1] * (value.dim() - 1)
                shape[a + 1] = self.symmetry.k
                value = value.gather(a + 1, perms.reshape(shape).expand(value.shape))
            values[name] = value
        return self.latents.unconstrain(values)

    def log_prob(self, u: torch.Tensor) -> torch.Tensor:
        values, log_det = self.latents.constrain(u)
        permuted = self.symmetry.permute(values)  # sites with a K axis: (G, B, *shape)
        g, b = len(self.symmetry.perms), u.shape[0]
        full = {
            n: permuted[n] if n in permuted else v.unsqueeze(0).expand(g, *v.shape)
            for n, v in values.items()
        }
        flat = {n: v.reshape(g * b, *v.shape[2:]) for n, v in full.items()}
        u_g = self.latents.unconstrain(flat)
        _, log_det_g = self.latents.constrain(u_g)
        terms = (self.base.log_prob(u_g) - log_det_g).reshape(g, b)
        return torch.logsumexp(terms, 0) - math.log(g) + log_det
