"""ArviZ export of a fitted candidate: posterior samples and per-datum log-likelihoods.

``arviz.loo`` (Pareto-smoothed importance-sampling leave-one-out; Vehtari,
Gelman & Gabry, "Practical Bayesian model evaluation using leave-one-out
cross-validation and WAIC", 2017) and ``arviz.compare`` need, for each
posterior draw ``z_s`` and each datum ``x_i``, ``log p(x_i | z_s)``. Draws come
from the fitted guide (so LOO here cross-checks the variational posterior, not
an MCMC one). Discrete sites that the fit summed out by enumeration are summed
out here too: for each observed site,

.. math::

    \\log p(x_i \\mid z_s) = \\log \\sum_{k} p(k \\mid z_s)\\, p(x_i \\mid k, z_s),

which is exact when the enumerated variables are local to the datum (the
mixture case: one assignment per datum).
"""

from __future__ import annotations

import numpy as np
import pyro
import torch
from pyro import poutine

from pyrostruct._pyro_compat import enumerate_dim

__all__ = ["to_inference_data", "pointwise_log_likelihood"]


def pointwise_log_likelihood(fit, samples: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """``{observed site: array (num_samples, *data_shape)}`` of per-datum log-likelihoods."""
    num = next(iter(samples.values())).shape[0] if samples else 1
    out: dict[str, list] = {}
    mpn = fit.max_plate_nesting
    for s in range(num):
        values = {k: v[s] for k, v in samples.items()}
        model = poutine.condition(fit.model, data=values)
        if fit.enumerated:
            model = poutine.enum(model, first_available_dim=-1 - mpn)
        with torch.no_grad(), poutine.block():
            tr = poutine.trace(model).get_trace(*fit.args, **fit.kwargs)
        enum_terms = []
        for site in tr.nodes.values():
            if (
                site["type"] == "sample"
                and not site["is_observed"]
                and enumerate_dim(site) is not None
            ):
                enum_terms.append(site["fn"].log_prob(site["value"]))
        for name, site in tr.nodes.items():
            if site["type"] != "sample" or not site["is_observed"] or name in samples:
                continue
            lp = site["fn"].log_prob(site["value"])
            if enum_terms:
                for term in enum_terms:
                    lp = lp + term
                extra = lp.dim() - mpn
                if extra > 0:
                    lp = torch.logsumexp(lp.reshape(-1, *lp.shape[extra:]), 0)
            # broadcast to the shape of the observed batch (plates)
            batch = site["value"].shape[: site["value"].dim() - site["fn"].event_dim]
            lp = lp.expand(torch.broadcast_shapes(lp.shape, batch)) if lp.dim() else lp
            out.setdefault(name, []).append(lp.detach().cpu().numpy())
    return {k: np.stack(v) for k, v in out.items()}


def to_inference_data(fit, num_samples: int = 200, seed: int = 0):
    """An :class:`arviz.InferenceData` of a :class:`~pyrostruct.selection.FittedCandidate`.

    Groups: ``posterior`` (``num_samples`` guide draws, one chain),
    ``log_likelihood`` (per-datum, per observed site) and ``observed_data``.
    """
    import arviz as az

    if not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples must be an integer >= 2, got {num_samples!r}")
    samples = fit.sample_posterior(num_samples, seed=seed)
    with pyro.get_param_store().scope(fit.params):
        loglik = pointwise_log_likelihood(fit, samples)
    with torch.no_grad(), poutine.block():
        tr = poutine.trace(poutine.condition(fit.model, data={k: v[0] for k, v in samples.items()}))
        tr = tr.get_trace(*fit.args, **fit.kwargs)
    observed = {
        name: site["value"].detach().cpu().numpy()
        for name, site in tr.nodes.items()
        if site["type"] == "sample" and site["is_observed"] and name not in samples
    }
    posterior = {k: v.cpu().numpy()[None] for k, v in samples.items()}
    return az.from_dict(
        posterior=posterior,
        log_likelihood={k: v[None] for k, v in loglik.items()},
        observed_data=observed,
    )
