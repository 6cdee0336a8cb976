"""Edge marginals from the distinct DAGs among importance draws: the DAGs' neighbourhood
enumerated, the rest by the Horvitz-Thompson estimator.

Where the model's latents are a DAG alone, or a DAG and its declared edge weights
(integrated out, :func:`integrated_log_joint`), each distinct DAG ``A`` among the draws has
a known (estimated) ``p(x, A)``, and its weight need not carry the noise of how often it
was drawn. The draws of each guide are split in two halves. The distinct DAGs of the
first half, and every DAG one edge away (added, removed or reversed) from those of them
that hold most of its mass, form an *enumerated* set ``D``, each weighted by ``p(x, A)``
itself; a DAG of the second half outside ``D`` is weighted by ``p(x, A) / pi(A)``, with

.. math::

    \\pi(A) = 1 - \\prod_r (1 - q_r(A))^{n_r}

its probability of being among the second half's ``n_r`` draws of each guide ``q_r``
(Horvitz & Thompson, "A generalization of sampling without replacement from a finite
universe", JASA 1952). ``D`` depends on the first half only, so the sum over the second
half is unbiased for the mass outside ``D``: the self-normalized estimate is
consistent, exact once ``D`` holds the posterior's mass, and where the proposal is
diffuse (``pi(A) ≈ sum_r n_r q_r(A)``) it is the usual importance estimate with
duplicates merged. Measured on ``models/dag_posterior.py``'s nonlinear family (d = 5,
n = 200, seed 4): the union of 8 restarts drew DAGs holding 0.86 of the posterior; a DAG
of mass 0.025 never drawn left the Horvitz-Thompson estimate over all draws 0.053 from
exact.
"""

from __future__ import annotations

import torch

from pyrostruct.distributions._dag_ops import get_order
from pyrostruct.graph import is_acyclic
from pyrostruct.infer.edge_weight_laplace import ModelRun, laplace_log_marginal, take_draws

__all__ = ["distinct_dag_weights", "integrated_log_joint"]

#: The enumerated set holds the neighbours of the first half's DAGs that carry this
#: share of its mass, at most ``MAX_SEEDS`` of them.
SEED_MASS = 0.999
MAX_SEEDS = 64


def distinct_dag_weights(
    model, adj, log_joint, log_q, counts, source, args, kwargs, *, site, weight_site,
    max_plate_nesting, neighbours: bool = True,
):  # fmt: skip
    """``(log weights (U,), DAGs (U, d, d), probabilities of not being drawn (U,))`` of the
    distinct DAGs of the estimate (see the module docstring).

    :param adj: the draws ``(S, d, d)`` (orders attached or not).
    :param log_joint: ``log p(x, A_s)`` of each draw ``(S,)``.
    :param log_q: every guide's log density of every draw ``(R, S)``.
    :param counts: draws per guide ``(R,)``; ``source`` ``(S,)`` the guide of each draw.
    :param weight_site: the integrated weight site, or ``None`` (the DAG is the only latent).
    :param neighbours: enumerate the first half's neighbourhood (draws without orders only:
        a neighbour's order is not defined); ``False``: Horvitz-Thompson over all draws.
    """
    if not neighbours or get_order(adj) is not None:
        return _horvitz_thompson(log_joint, log_q, torch.as_tensor(counts), adj)
    rank = torch.zeros(len(adj), dtype=torch.long)
    for r in range(len(counts)):  # position of each draw among its guide's draws
        mine = source == r
        rank[mine] = torch.arange(int(mine.sum()))
    half = torch.tensor(counts)[source] // 2
    first = rank < half
    seen = adj[first]
    seen_log_p = log_joint[first]
    _, keep = distinct_draws(seen)
    seen, seen_log_p = seen[keep], seen_log_p[keep]
    extra = _new(_neighbourhood(seen, seen_log_p), seen)
    if len(extra):
        extra_log_p = _log_joint_of(model, extra, args, kwargs, site, weight_site,
                                    max_plate_nesting)  # fmt: skip
        seen, seen_log_p = torch.cat([seen, extra]), torch.cat([seen_log_p, extra_log_p])
    rest = ~first & ~_member(adj, seen)
    second = torch.tensor(counts) - torch.tensor(counts) // 2
    if bool(rest.any()):
        log_u, dags, missed = _horvitz_thompson(
            log_joint[rest], log_q[:, rest], second, adj[rest]
        )  # fmt: skip
    else:
        log_u, dags, missed = seen_log_p[:0], seen[:0], seen_log_p[:0]
    return (
        torch.cat([seen_log_p.double(), log_u.double()]),
        torch.cat([seen, dags]),
        torch.cat([torch.zeros(len(seen), dtype=torch.float64), missed.double()]),
    )


def _horvitz_thompson(log_joint, log_q, counts, adj):
    """Distinct DAGs' ``log p(x, A) - log pi(A)``, the DAGs and ``1 - pi(A)``."""
    _, first = distinct_draws(adj)
    lq = log_q[:, first].clamp_max(0.0)
    n = counts.to(torch.float64).unsqueeze(-1)
    log_missed = (n * torch.log1p(-lq.exp())).sum(0)  # log (1 - pi)
    small = torch.logsumexp(n.log() + lq, 0)  # log pi to first order, where pi is tiny
    log_pi = torch.where(log_missed > -1e-8, small, torch.log(-torch.expm1(log_missed)))
    return log_joint[first] - log_pi, adj[first], log_missed.exp()


def _neighbourhood(dags: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """The acyclic DAGs one edge away from those of ``dags`` that hold ``SEED_MASS`` of
    their total ``exp(log_p)`` (at most ``MAX_SEEDS``), duplicates included."""
    order = torch.argsort(log_p, descending=True)
    share = torch.softmax(log_p[order].double(), 0).cumsum(0)
    count = min(MAX_SEEDS, int((share < SEED_MASS).sum()) + 1)
    seeds = dags[order[:count]]
    d = dags.shape[-1]
    i, j = torch.nonzero(~torch.eye(d, dtype=torch.bool), as_tuple=True)
    flipped = seeds.unsqueeze(1).repeat(1, len(i), 1, 1)  # (seeds, pairs, d, d)
    pairs = torch.arange(len(i))
    flipped[:, pairs, i, j] = 1 - flipped[:, pairs, i, j]  # add or remove i -> j
    reversed_ = seeds.unsqueeze(1).repeat(1, len(i), 1, 1)
    present = reversed_[:, pairs, i, j] > 0.5
    reversed_[:, pairs, i, j] = 0.0
    reversed_[:, pairs, j, i] = torch.where(present, 1.0, reversed_[:, pairs, j, i])
    candidates = torch.cat([flipped.reshape(-1, d, d), reversed_[present].reshape(-1, d, d)])
    return candidates[is_acyclic(candidates)]


def _new(candidates: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """The distinct ``candidates`` not among ``known``."""
    if not len(candidates):
        return candidates
    _, first = distinct_draws(candidates)
    candidates = candidates[first]
    return candidates[~_member(candidates, known)]


def _member(adj: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Whether each DAG of ``adj`` ``(S, d, d)`` is among ``known`` ``(K, d, d)``."""
    a = adj.reshape(len(adj), -1).double()
    k = known.reshape(len(known), -1).double()
    both, inverse = torch.unique(torch.cat([k, a]), dim=0, return_inverse=True)
    is_known = torch.zeros(len(both), dtype=torch.bool)
    is_known[inverse[: len(k)]] = True
    return is_known[inverse[len(k) :]]


def _log_joint_of(model, dags, args, kwargs, site, weight_site, max_plate_nesting):
    """``log p(x, A)`` of DAGs not drawn (no order attached: the prior's marginal), their
    edge weights integrated out from a zero start where there are some."""
    dags = dags.to(torch.get_default_dtype())
    if weight_site is None:
        with torch.no_grad():
            return ModelRun(model, args, kwargs, max_plate_nesting)({site: dags}).double()
    log_p, _ = laplace_log_marginal(
        model, dags, torch.zeros_like(dags), *args, site=site, weight_site=weight_site,
        max_plate_nesting=max_plate_nesting, **kwargs,
    )  # fmt: skip
    return log_p


def distinct_draws(adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For DAG draws ``(S, d, d)`` (with their orders, where attached): the index of each
    draw's distinct value ``(S,)`` and the first draw of each distinct value ``(U,)``."""
    key = adj.reshape(len(adj), -1).double()
    order = get_order(adj)
    if order is not None:
        key = torch.cat([key, order.double()], -1)
    _, inverse = torch.unique(key, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), len(adj)).scatter_reduce(
        0, inverse, torch.arange(len(adj)), "amin"
    )
    return inverse, first


def integrated_log_joint(model, draws, site, weight_site, args, kwargs, max_plate_nesting):
    """``log p̂(x, A_s)`` of every draw, the weights of ``weight_site`` integrated out once
    per distinct DAG (with its order, where the draws keep one) by
    :func:`~pyrostruct.infer.edge_weight_laplace.laplace_log_marginal`, from the draw's
    weights."""
    adj = draws[site]
    inverse, first = distinct_draws(adj)
    log_p, _ = laplace_log_marginal(
        model, take_draws(adj, first), draws[weight_site][first], *args, site=site,
        weight_site=weight_site, max_plate_nesting=max_plate_nesting, **kwargs,
    )  # fmt: skip
    return log_p[inverse]
