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

__all__ = ["dag_restarts", "score_dag_params", "score_elbo", "score_function_sites"]


#: Default restarts, steps of each and particles of a step for a DAG model
#: (:func:`dag_restarts`): many short ones up to this many nodes, fewer and longer ones above.
RESTARTS_MAX_NODES = 6
SMALL_DAG_RESTARTS = (8, 250, 16)
LARGE_DAG_RESTARTS = (4, 750, 32)


def dag_restarts(model, args, kwargs) -> tuple[int, int, int] | None:
    """``(restarts, steps, particles)`` of :func:`~pyrostruct.infer.fit`'s default for a DAG
    model, or ``None`` (one restart of 1000 steps): every latent site is a DAG site or the edge
    weights of one (``infer={"edge_weights_of": ...}``, integrated out of the edge
    marginals' weights, :mod:`pyrostruct.infer.edge_weight_laplace`), a DAG trained by
    score-function gradients (:class:`~pyrostruct.infer.autoguide.AutoDAG`'s default)
    among them. The restarts' guides are pooled by ``FitResult.edge_probs`` (the union
    proposal).

    DAGs of at most ``RESTARTS_MAX_NODES`` nodes: 8 restarts of 250 steps of 16 particles
    (:data:`~pyrostruct.infer.fit.SCORE_PARTICLES`). Measured on
    the d = 5 problems of ``benchmarks/posterior_accuracy.py`` (logistic, n = 200, seed
    3, the worst): one restart 0.11 from the exact edge marginals, 4 x 1000 steps pooled
    0.05, 8 x 250 pooled 0.02 (with the draws' own importance weights). With edge
    weights, measured on the nonlinear family of ``models/dag_posterior.py`` (d = 4, 5;
    n = 50, 200; 5 seeds each), the weights integrated out: one restart of 1000 steps left
    6 of the 20 problems more than 0.05 from the exact edge marginals (worst 0.085), 8 of
    250 none (worst 0.016; about 10 s a fit against 5).

    Larger DAGs: 4 restarts of 750 steps of 32 particles. A step's cost is mostly fixed
    (Pyro's traces, the guide's sampler): a step of 32 particles took 1.3 times one of 16,
    so half the steps of twice the particles take about 0.65 of the time. Measured on BGe
    problems (n = 200, d = 20, seeds 3-5 of ``benchmarks/posterior_accuracy.py``'s large
    rows, one run): AUROC 0.83, 0.82, 0.71 in 17-19 s a fit against 0.82, 0.79, 0.81 in
    26-29 s from 4 restarts of 1500 steps of 16 particles; at d = 10 (seeds 0-2) mean
    errors against the exact posterior 0.163, 0.011, 0.007 (4 x 1500 x 16, another day:
    0.083, 0.013, 0.010; seed 0's fits sit in a wrong mode either way). Before that, 4
    restarts of 1500 steps of 16 particles on seeds 0-2 (n = 200): AUROC of the edge
    marginals at d = 20 0.83 (0.84, 0.99, 0.68) against 0.64 from one restart of 1000
    steps, 0.71 from one of 4000, 0.78 from 4 of 1000; at d = 10 0.99 against 0.88, mean
    error against the exact posterior 0.083, 0.013, 0.010 against 0.168, 0.010, 0.016;
    8 restarts of 250 steps were worse than one of 1000 at d = 10 (mean errors 0.233,
    0.031, 0.014 against 0.155, 0.011, 0.016): at that size a longer fit matters more
    than more of them."""
    from pyrostruct.distributions.util import base_distribution
    from pyrostruct.infer.autoguide.dag import is_dag_site
    from pyrostruct.infer.autoguide.edge_weights import is_edge_weight_site

    trace = _trace(model, *args, **kwargs)
    latent = [
        site for site in trace.nodes.values()
        if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
    ]  # fmt: skip
    dags = [site for site in latent if is_dag_site(site)]
    if not dags or not all(is_dag_site(s) or is_edge_weight_site(s) for s in latent):
        return None
    if not any(site["infer"].get("dag_estimator", "score") == "score" for site in dags):
        return None
    largest = max(base_distribution(site["fn"]).num_nodes for site in dags)
    return SMALL_DAG_RESTARTS if largest <= RESTARTS_MAX_NODES else LARGE_DAG_RESTARTS


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
