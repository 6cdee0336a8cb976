"""The :class:`~pyrostruct.causal.CausalResult` of a trained variational estimator of
:func:`~pyrostruct.causal.discover`: edge probabilities (averaged over equivalence classes
where only the class is identified), the record of the run, and the fit's ELBO estimate.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import torch

from pyrostruct import __version__
from pyrostruct.causal.interventions import target_sets
from pyrostruct.causal.result import CausalResult

__all__ = ["variational_result", "ELBO_DRAWS"]

#: Loss evaluations of the trained fit's ELBO estimate (``metadata["elbo"]``).
ELBO_DRAWS = 16


@contextlib.contextmanager
def _ticker(progress: bool, total: int, desc: str, unit: str):
    """The ``update`` of a transient tqdm bar (``None`` without ``progress``), closed on
    exit."""
    if not progress:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, leave=False)
    try:
        yield bar.update
    finally:
        bar.close()


def variational_result(fit, elbo_trace, settings, config, phases, fingerprint,
                       progress) -> CausalResult:  # fmt: skip
    """The :class:`CausalResult` of a trained variational estimator ``fit`` (its ELBO
    trace, the run's settings, their JSON record ``config``, the seconds of each phase so
    far, the data's fingerprint; ``progress``: bars for the draws), the twin of
    :func:`~.exact.exact_result`."""
    sem, problem = fit.sem, fit.problem
    average = settings.average_equivalent
    if average is None:  # only the (interventional) Markov equivalence class is identified
        average = sem.identifies_equivalence_class_only
    num = settings.num_samples
    strengths = sem.edge_strengths(problem.columns)
    # averaged over equivalence classes, the Rao-Blackwellized estimate is replaced below
    probs = None if average and strengths is not None else fit.edge_probs(num)
    scores, logits = fit.dag_parameters()
    with torch.no_grad():
        w = (probs.mean if strengths is None else strengths).double().numpy().copy()
    np.fill_diagonal(w, 0.0)
    metadata = {
        "pyrostruct_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "num_rows": int(problem.n),
        "num_nodes": int(problem.d),
        "interventional_rows": 0 if problem.mask is None else int(problem.mask.any(1).sum()),
        "fit_seconds": round(float(sum(phases.values())), 3),  # all phases before the result
        "final_elbo": float(np.mean(elbo_trace[-50:])) if elbo_trace else float("nan"),
        "fingerprint": fingerprint,
        **config,
        "average_equivalent": bool(average),
    }
    d = problem.d
    result = CausalResult(
        names=list(problem.names),
        edge_probs=np.zeros((d, d)) if probs is None else probs.mean.double().numpy(),
        edge_probs_stderr=np.zeros((d, d)) if probs is None else probs.stderr.double().numpy(),
        weights=w,
        scores=scores.detach().double().numpy().copy(),
        edge_logits=logits.detach().double().numpy().copy(),
        elbo_trace=np.asarray(elbo_trace, dtype=np.float64),
        metadata=metadata,
        threshold=settings.threshold,
        equivalence_class=bool(average),
        intervention_targets=target_sets(problem.mask),
        knowledge=settings.knowledge,
    )
    if average:
        with _ticker(progress, num, "equivalence classes", "DAG") as tick:
            result._average_draws(num, config["seed"], tick)
    # after the draws above, which it would otherwise shift
    with _ticker(progress, ELBO_DRAWS, "ELBO estimate", "draw") as tick:
        elbo, stderr = fit.evaluate(ELBO_DRAWS, tick)
    result.metadata.update(elbo=round(elbo, 6), elbo_stderr=round(stderr, 6))
    return result
