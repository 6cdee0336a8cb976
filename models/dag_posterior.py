"""Bayesian structure learning with exact answers: three DAG models small enough to enumerate.

Each family is a Pyro model with a DAG latent ``G ~ ErdosRenyiDAG`` and a likelihood
whose ``log p(X | G)`` is known exactly, so the exact posterior over all DAGs (25 on 3
nodes, 543 on 4, 29,281 on 5) is a sum away and ``fit``'s variational edge marginals
``q(i -> j)`` can be checked against it:

- ``linear-gaussian``: ``x_j = sum_i G_ij w_ij x_i + e_j`` with the weights and noise
  variances integrated out (the BGe score, :class:`pyrostruct.infer.bge.BGeScore`),
  standardized data;
- ``logistic``: binary ``x_j ~ Bernoulli(sigmoid(w sum_i G_ij (2 x_i - 1)))`` with a
  known weight ``w``;
- ``nonlinear``: ``x_j ~ N(sum_i G_ij W_ij tanh(x_i), 1)`` with the weights ``W`` as
  a latent site of the model (``W_ij ~ N(0, 1)``) declared the edge weights of ``G``
  (``infer={"edge_weights_of": "G"}``: their guide follows the sampled DAG); the exact
  reference integrates them analytically (``x_j`` is Gaussian given ``G``).

In every family the adjacency enters the likelihood non-linearly, the case where the
straight-through gradient is badly biased; ``fit(model, data)`` with its defaults uses
the unbiased score-function estimator (``AutoDAG``'s default) with ``TraceRWS_ELBO``, and
for the two families whose only latent is the DAG trains 8 restarts whose guides
``result.edge_probs()`` pools (the union proposal).

Usage::

    python models/dag_posterior.py                        # every family, d = 4
    python models/dag_posterior.py --family logistic --num-nodes 5 --num-rows 200
    python models/dag_posterior.py --smoke                # tiny, a few seconds (tests)
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from typing import NamedTuple

import pyro
import pyro.distributions as dist
import torch

from pyrostruct.distributions import ErdosRenyiDAG
from pyrostruct.infer import fit
from pyrostruct.infer.bge import BGeScore

FAMILIES = ("linear-gaussian", "logistic", "nonlinear")
LOGISTIC_WEIGHT = 1.5


class Problem(NamedTuple):
    family: str
    data: torch.Tensor  # (n, d) float64
    truth: torch.Tensor  # (d, d) the DAG the data were drawn from
    prior: ErdosRenyiDAG
    model: Callable  # model(data)
    log_likelihood: Callable  # exact log p(X | G) for a batch of DAGs (..., d, d)


def gaussian_columns_log_lik(features, targets, adjacency, noise=1.0, weight_scale=1.0):
    """``sum_j log N(y_j; 0, noise^2 I + weight_scale^2 F diag(A[:, j]) F^T)``: column
    ``j`` of ``targets`` regressed on the columns of ``features`` that ``A`` makes its
    parents, the Gaussian weights integrated out. Push-through identities with
    ``S = F^T F``: no ``n x n`` matrix. Batched over ``adjacency`` ``(..., d, d)``."""
    n, d = targets.shape
    s2, w2 = noise**2, weight_scale**2
    a = adjacency.to(targets.dtype) * (1 - torch.eye(d, dtype=targets.dtype))
    S = features.T @ features
    B = features.T @ targets  # column j: F^T y_j
    M = w2 * a.transpose(-1, -2).unsqueeze(-1) * torch.eye(d, dtype=targets.dtype)
    K = torch.eye(d, dtype=targets.dtype) + M @ S / s2  # (..., j, d, d)
    Mb = (M @ B.T.unsqueeze(-1)).squeeze(-1)  # (..., j, d)
    yy = (targets * targets).sum(0)
    quad = (yy - (B.T * torch.linalg.solve(K, Mb)).sum(-1) / s2) / s2
    logdet = n * math.log(s2) + torch.logdet(K)
    return (-0.5 * (quad + logdet + n * math.log(2 * math.pi))).sum(-1)


def _random_dag(prior: ErdosRenyiDAG, generator) -> torch.Tensor:
    """A DAG from the ER prior, nodes relabelled so that ``0..d-1`` is not always an order."""
    d = prior.num_nodes
    p = torch.sigmoid(prior.edge_logits[0, 1]).item()
    upper = torch.triu((torch.rand(d, d, generator=generator) < p).double(), 1)
    perm = torch.randperm(d, generator=generator)
    return upper[perm][:, perm]


def _topological(adj: torch.Tensor) -> list[int]:
    d, done, order = adj.shape[0], set(), []
    while len(order) < d:
        for j in range(d):
            if j not in done and all(i in done for i in range(d) if adj[i, j] > 0):
                done.add(j)
                order.append(j)
    return order


def make_problem(family: str, d: int = 4, n: int = 100, *, seed: int = 0,
                 edge_prob: float = 0.3, edge_weights: bool = True) -> Problem:  # fmt: skip
    """Data from a random DAG of the family's own model, and that model. ``edge_weights``
    (nonlinear family): the model declares ``W`` as the edge weights of ``G``, so that
    ``W``'s guide follows the sampled DAG (:mod:`pyrostruct.infer.autoguide.edge_weights`);
    ``False``: a plain latent site, guided by ``AutoNormal`` beside the DAG."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    g = torch.Generator().manual_seed(seed)
    prior = ErdosRenyiDAG(d, expected_edges=edge_prob * d * (d - 1) / 2)
    truth = _random_dag(prior, g)
    sign = torch.where(torch.rand(d, d, generator=g) < 0.5, -1.0, 1.0).double()
    weights = truth * sign * (1.0 + torch.rand(d, d, generator=g).double())
    x = torch.zeros(n, d, dtype=torch.float64)
    for j in _topological(truth):
        if family == "linear-gaussian":
            x[:, j] = x @ weights[:, j] + torch.randn(n, generator=g, dtype=torch.float64)
        elif family == "logistic":
            logits = LOGISTIC_WEIGHT * ((2 * x - 1) @ truth[:, j])
            x[:, j] = (torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(logits))
        else:
            noise = torch.randn(n, generator=g, dtype=torch.float64)
            x[:, j] = torch.tanh(x) @ weights[:, j] + noise
    if family == "linear-gaussian":
        x = (x - x.mean(0)) / x.std(0, correction=0)  # as pyrostruct.causal standardizes
        score = BGeScore(x)

        def log_likelihood(adj):
            return score(adj)

        def model(data):
            G = pyro.sample("G", prior)
            pyro.factor("X", score(G))

    elif family == "logistic":
        signs = 2 * x - 1

        def log_likelihood(adj):
            logits = LOGISTIC_WEIGHT * (signs @ adj.to(x.dtype))  # (..., n, d)
            return dist.Bernoulli(logits=logits).log_prob(x).sum((-1, -2))

        def model(data):
            G = pyro.sample("G", prior)
            pyro.factor("X", log_likelihood(G))

    else:
        features = torch.tanh(x)

        def log_likelihood(adj):
            return gaussian_columns_log_lik(features, x, adj)

        def model(data):
            G = pyro.sample("G", prior)
            # W matters only where G has an edge: the guide of W follows G
            W = pyro.sample("W", dist.Normal(0.0, 1.0).expand([d, d]).to_event(2),
                            infer={"edge_weights_of": "G"} if edge_weights else {})  # fmt: skip
            with pyro.plate("rows", data.shape[0]):
                # row by row, so that G and W batched over particles broadcast
                weights = G.to(data.dtype) * W.to(data.dtype)
                mean = (torch.tanh(data).unsqueeze(-2) @ weights).squeeze(-2)
                pyro.sample("X", dist.Normal(mean, 1.0).to_event(1), obs=data)

    return Problem(family, x, truth, prior, model, log_likelihood)


def exact_posterior(problem: Problem, log_prior=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every DAG ``(G, d, d)`` (``d <= 5``) and its exact posterior probability ``(G,)``,
    under the problem's prior or, given, ``log_prior(dags)`` (up to a constant)."""
    dags = problem.prior.enumerate_support(expand=False)
    prior = problem.prior.log_prob(dags) if log_prior is None else log_prior(dags)
    return dags, torch.softmax(prior.double() + problem.log_likelihood(dags), 0)


def exact_edge_marginals(problem: Problem, log_prior=None) -> torch.Tensor:
    """``P(i -> j | X)`` by enumeration of every DAG (``d <= 5``)."""
    dags, post = exact_posterior(problem, log_prior)
    return (post[:, None, None] * dags.double()).sum(0)


def main(args):
    families = FAMILIES if args.family is None else (args.family,)
    for family in families:
        problem = make_problem(family, args.num_nodes, args.num_rows, seed=args.seed)
        exact = exact_edge_marginals(problem)
        pyro.clear_param_store()
        start = time.perf_counter()
        result = fit(problem.model, problem.data, steps=args.num_steps, seed=args.seed)
        seconds = time.perf_counter() - start
        guide_only = result.guide.edge_probs("G", num_samples=4000).mean.double()
        weighted = result.edge_probs("G")
        for how, approx in [("guide", guide_only), (weighted.method, weighted.mean)]:
            error = (approx - exact).abs()
            print(
                f"{family:16s} d={args.num_nodes} n={args.num_rows} {how:8s}: max |q - p| "
                f"{error.max():.3f}, mean {error.mean():.3f} ({seconds:.1f} s fit; weights: "
                f"ESS {weighted.ess:.0f}, Pareto k {weighted.khat:.2f})"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=FAMILIES, default=None)
    parser.add_argument("--num-nodes", type=int, default=4)
    parser.add_argument("--num-rows", type=int, default=100)
    parser.add_argument("--num-steps", type=int, default=None, help="default: fit's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the tests")
    args = parser.parse_args()
    if args.smoke:
        args.num_nodes, args.num_rows, args.num_steps = 3, 40, 50
    main(args)
