"""``estimator="exact"``: the exact posterior instead of a variational one (d <= 16).

For the linear Gaussian SEM with unequal noise variances the posterior of
:func:`~pyrostruct.causal.discover`'s order-modular prior with the BGe likelihood (weights
and noise variances integrated in closed form, score-equivalent) is summed exactly over
all orders and parent sets by :func:`~pyrostruct.causal.exact.exact_posterior`'s dynamic
programming over subsets (Koivisto & Sood, JMLR 2004), ``O(d^2 2^d)``. There is no
training: :meth:`CausalResult.sample_dags` draws exactly from the posterior, and the
weights are the BGe posterior means given the consensus graph's parents.

The BGe likelihood cannot tell the members of a (interventional) Markov equivalence class
apart, but the order-modular prior can: a DAG with more linear extensions gets more prior
mass, so observational data of the chain ``X0 -> X1 -> X2`` give the fork ``X0 <- X1 ->
X2`` (two orders) 1/2 and each chain (one order) 1/4, where uniform members give a third
each; under do(X2) the class keeps the chain and the fork, and the unidentified ``X0 - X1``
gets 1/3 against 2/3 instead of 1/2. By
default (``average_equivalent`` not ``False``) the result is therefore averaged as the
variational one is: ``num_samples`` exact draws, each moved to a uniform member of its
class, estimate ``edge_probs`` (with ``edge_probs_stderr``); each class keeps its exact
posterior probability and an unidentified edge gets 1/2 each way. With
``average_equivalent=False``, ``edge_probs`` are the exact order-modular ones (no Monte
Carlo, ``edge_probs_stderr`` 0).

Against ``estimator="analytic"`` (``benchmarks/causal_exact_vs_vi.py``, ER2 and SF2, d = 8
and 12, n = 200 and 1000, 5 seeds, paired mean +- s.e. over 40 cases): SHD -0.8 +- 0.8,
AUPRC +0.06 +- 0.03, pooled calibration error 0.043 -> 0.028, and issue 24's property
(rows of perfect interventions never make a correct edge confidently reversed) fails in 1
of 60 random cases instead of 11. It is not ``discover``'s default because its likelihood
has a measured weakness: BGe's prior on a node's coefficients scales with that node's
noise variance, so on standardized data a nearly deterministic node (residual variance
0.008 of 1) takes a parent that explains 0.8% of its residual: P = 0.97 for an edge that
does not exist (d = 10, 30% of the nodes intervened, 800 rows), where the pMOM slab gives
0. With this estimator as the default up to 12 nodes, the d = 10 cells of
``benchmarks/causal_interventions.py`` had calibration errors of 0.008-0.053 (variational:
0.001-0.035) and a worse I-essential SHD in 5 of 6, and the active-learning loop (d = 10,
ER1) ended its 10 rounds at an expected SHD of 1.63 against 0.012.
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
    # the exact posterior of the order-modular prior weighs the members of a Markov
    # equivalence class by their numbers of linear extensions (a chain's unidentified edge
    # gets 1/3 against the fork's 2/3); averaged like the variational posterior, each
    # class keeps its exact probability and spreads it uniformly over its members
    average = settings.average_equivalent is not False
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
        "average_equivalent": average,
        "monte_carlo": average,
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
        equivalence_class=average,
        intervention_targets=posterior.intervention_targets,
        knowledge=settings.knowledge,
        exact=posterior,
    )
    if average:
        result._average_draws(settings.num_samples, settings.seed)
        result.metadata["phase_seconds"]["equivalence_classes"] = round(
            time.perf_counter() - started - seconds, 3
        )
    result.weights = posterior.mean_weights(result.adjacency)
    return result
