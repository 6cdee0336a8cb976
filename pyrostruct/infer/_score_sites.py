"""How :func:`~pyrostruct.infer.fit` treats guide sites without a reparameterized sampler
(score-function sites, such as DAG sites under AutoDAG's default estimator): which
models get the default DAG restarts, which sites are score-function ones, the ELBO
they train with and the parameters that learn faster."""

from __future__ import annotations

import warnings

import pyro.poutine as poutine
from pyro.infer.autoguide import AutoGuideList
from pyro.poutine.util import site_is_subsample

from pyrostruct.infer.enum import _trace
from pyrostruct.infer.importance import VectorizationWarning, vectorization_method
from pyrostruct.infer.rloo import TraceRWS_ELBO

__all__ = ["dag_restarts_model", "score_dag_params", "score_elbo", "score_function_sites"]


#: Largest DAG whose model gets the default pooled restarts (see :func:`dag_restarts_model`).
RESTARTS_MAX_NODES = 6


def dag_restarts_model(model, args, kwargs) -> bool:
    """Whether the model gets :func:`~pyrostruct.infer.fit`'s default DAG restarts: every
    latent site is a DAG site of at most ``RESTARTS_MAX_NODES`` nodes or the edge weights
    of one (``infer={"edge_weights_of": ...}``, integrated out of the edge marginals'
    weights, :mod:`pyrostruct.infer.edge_weight_laplace`), a DAG trained by
    score-function gradients (:class:`~pyrostruct.infer.autoguide.AutoDAG`'s default)
    among them. With edge weights, measured on the nonlinear family of
    ``models/dag_posterior.py`` (d = 4, 5; n = 50, 200; 5 seeds each), the weights
    integrated out: one restart of 1000 steps left 6 of the 20 problems more than 0.05
    from the exact edge marginals (worst 0.085), 8 of 250 none (worst 0.016; about 10 s a
    fit against 5). Larger DAGs keep one restart of 1000 steps: measured on BGe problems
    at d = 10 (n = 200, seeds 0-2), 8 pooled restarts of 250 steps gave mean
    edge-marginal errors 0.233, 0.031, 0.014 against 0.155, 0.011, 0.016 from one (the
    weights of a 10-node DAG concentrate on a few draws whatever the proposal, ESS 1-10,
    and a longer fit matters more)."""
    from pyrostruct.distributions.util import base_distribution
    from pyrostruct.infer.autoguide.dag import is_dag_site
    from pyrostruct.infer.autoguide.edge_weights import is_edge_weight_site

    trace = _trace(model, *args, **kwargs)
    latent = [
        site for site in trace.nodes.values()
        if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
    ]  # fmt: skip
    small = all(
        is_edge_weight_site(site)
        or (is_dag_site(site) and base_distribution(site["fn"]).num_nodes <= RESTARTS_MAX_NODES)
        for site in latent
    )
    return small and any(site["infer"].get("dag_estimator", "score") == "score" for site in latent)


def score_function_sites(guide, args, kwargs) -> list[str]:
    """The guide's latent sites without a reparameterized sampler (sets the guide up)."""
    trace = poutine.trace(guide).get_trace(*args, **kwargs)
    return [
        name
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"]
        and not site_is_subsample(site) and not site["fn"].has_rsample
    ]  # fmt: skip


def score_elbo(model, guide, args, kwargs, num_particles: int, max_plate_nesting: int):
    """``TraceRWS_ELBO`` with ``max(num_particles, 2)`` particles: vectorized when the
    model gives the same log weight with and without a particle plate
    (:func:`~pyrostruct.infer.importance.vectorization_method`: a model that merely runs
    under the plate may compute the wrong thing), drawn one by one with a warning
    otherwise. ``max_plate_nesting`` is given, so that Pyro need not guess it (and log
    that it did, at every restart)."""
    num_particles = max(num_particles, 2)
    method, reason = vectorization_method(
        model, guide, *args, max_plate_nesting=max_plate_nesting, **kwargs
    )
    if method == "plate":
        return TraceRWS_ELBO(num_particles=num_particles, max_plate_nesting=max_plate_nesting)
    warnings.warn(
        f"fit: drawing the {num_particles} particles one by one, which is slower: {reason}",
        VectorizationWarning,
        stacklevel=3,
    )
    return TraceRWS_ELBO(num_particles=num_particles, vectorize_particles=False)


def score_dag_params(guide) -> set[str]:
    """Param-store names of the parameters of DAG sites trained by score-function gradients."""
    from pyrostruct._pyro_compat import param_store_name
    from pyrostruct.infer.autoguide.dag import AutoDAG

    parts = list(guide) if isinstance(guide, AutoGuideList) else [guide]
    names = set()
    for part in parts:
        if isinstance(part, AutoDAG) and "score" in part.estimators.values():
            names.update(param_store_name(p) for p in part.parameters())
    return names
