"""``estimator="exact"``: the exact posterior instead of a variational one (d <= 16).

For the linear Gaussian SEM with unequal noise variances the posterior of
:func:`~pyrostruct.causal.discover`'s order-modular prior with the BGe likelihood (weights
and noise variances integrated in closed form, score-equivalent) is summed exactly over
all orders and parent sets by :func:`~pyrostruct.causal.exact.exact_posterior`'s dynamic
programming over subsets (Koivisto & Sood, JMLR 2004), ``O(d^2 2^d)``. There is no
training and no Monte Carlo: ``edge_probs`` are exact (``edge_probs_stderr`` is 0),
:meth:`CausalResult.sample_dags` draws exactly from the posterior, and the weights are the
BGe posterior means given the consensus graph's parents.
"""

from __future__ import annotations

import time

import numpy as np

from pyrostruct import __version__
from pyrostruct.causal.exact import check_size, posterior_of_table
from pyrostruct.causal.result import CausalResult
from pyrostruct.causal.settings import Settings
from pyrostruct.infer.bge import bge_hyperparameters

__all__ = ["exact_result"]


def exact_result(x: np.ndarray, names, mask, settings: Settings) -> CausalResult:
    """The :class:`CausalResult` of the exact posterior of the table ``x`` ``(n, d)``
    (intervention ``mask`` or ``None``) under ``settings`` (``estimator="exact"``)."""
    started = time.perf_counter()
    n, d = x.shape
    check_size(d)
    nu, c = bge_hyperparameters(d, None, 1.0)
    posterior = posterior_of_table(
        x, names, mask, knowledge=settings.knowledge, expected_edges=settings.expected_edges,
        standardize=settings.standardize, nu=nu, c=c, threshold=settings.threshold,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    metadata = {
        "pyrostruct_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "num_rows": int(n),
        "num_nodes": int(d),
        "interventional_rows": 0 if mask is None else int(np.asarray(mask).any(1).sum()),
        "fit_seconds": round(seconds, 3),
        "phase_seconds": {"exact": round(seconds, 3)},
        **settings.config(),
        "average_equivalent": False,
        "monte_carlo": False,
        "log_evidence": posterior.log_evidence,
        "bge": {"prior_df": nu, "prior_scale": c},
    }
    result = CausalResult(
        names=list(names),
        edge_probs=posterior.edge_probs.copy(),
        edge_probs_stderr=np.zeros((d, d)),
        weights=np.zeros((d, d)),
        scores=np.zeros(d),
        edge_logits=np.zeros((d, d)),
        elbo_trace=np.zeros(0),
        metadata=metadata,
        threshold=settings.threshold,
        equivalence_class=False,
        intervention_targets=posterior.intervention_targets,
        knowledge=settings.knowledge,
        exact=posterior,
    )
    result.weights = posterior.mean_weights(result.adjacency)
    return result
