"""The accurate evidence, spent on the candidates still in contention after the cheap pass.

After successive halving and the final ELBO / IWAE bounds, :func:`~pyrostruct.select`
ranks candidates too large for the guide-free SMC estimate by the SMC
estimate started from their fitted guides
(:func:`~pyrostruct.selection.evidence._smc_guide`), but only for the
candidates that could still be the best. A bound ``B_j`` (IWAE, else ELBO)
falls short of the evidence by an unknown gap ``log p(x | j) - B_j >= 0``, and
that gap grows with the model's size (the reason the bounds alone mis-rank), so
a candidate is in contention when

.. math::

    B_j + 2 \\hat g + m \\ge \\hat A_{\\mathrm{best}} - z\\, \\mathrm{se}_{\\mathrm{best}},

with ``A`` the accurate estimates so far, ``g = max_k (A_k - B_k)`` the
largest gap measured on them (doubled: gaps grow with size) and ``m`` the
margin ``contention_margin``. The candidate with the best bound is estimated
first, alone (the next in line if its estimator fails); each round then
estimates every candidate that the rule admits, until none is left, and a
candidate's budget stops doubling once its estimate plus 3 standard errors
lies below ``A_best - z se_best - m`` (its
posterior probability is then at most about ``exp(-m)`` of the best's, whatever
a tighter estimate would say). The others keep their bound as their evidence:
their posterior probability is then at most ``exp(-m)`` of the best's if the
rule's gap allowance holds.
"""

from __future__ import annotations

import math

from pyrostruct.selection.tasks import _run_task


def _bound(st, evidence) -> tuple[float, float]:
    if "iwae" in evidence and math.isfinite(st.iwae):
        return st.iwae, st.iwae_se
    return st.elbo, st.elbo_se


def _contention_pass(run, kept, state, names, evidence, margin, z, bar=None) -> dict:
    """Guide-started SMC on the candidates ``kept`` (keys ``(i, r)``) in contention; returns
    ``{candidate name: why it was not estimated}`` for the others."""
    bounds = {key: _bound(state[key], evidence) for key in kept}
    order = sorted(kept, key=lambda k: -bounds[k][0])
    done: dict = {}
    todo = order[:1]  # alone: the others' estimates can then stop below it
    rule, stop_below = "", None
    while todo:
        payloads = [
            {"index": i, "restart": r, "task": "smc", "params": state[(i, r)].checkpoint["params"],
             "stop_below": stop_below}
            for i, r in todo
        ]  # fmt: skip

        def tick(payload, out):
            if bar is not None:
                bar.update(1)

        for key, out in zip(todo, run(_run_task, payloads, tick)):
            st = state[key]
            if "failed" in out:
                st.smc_failed = out["failed"]
            else:
                st.absorb(out)
            done[key] = math.isfinite(st.smc) and st.smc_failed is None
        ok = [k for k, good in done.items() if good]
        if not ok:
            todo = [k for k in order if k not in done][:1]
            continue
        best = max(ok, key=lambda k: state[k].smc)
        gap = max(0.0, max(state[k].smc - bounds[k][0] for k in ok))
        se = state[best].smc_se if math.isfinite(state[best].smc_se) else 0.0
        threshold = state[best].smc - z * se - (2 * gap + margin)
        stop_below = state[best].smc - z * se - margin
        rule = (
            f"not in contention: bound below {threshold:.1f} = best SMC estimate "
            f"{state[best].smc:.1f} - {z:g} se - (2 x largest measured gap {gap:.1f} + "
            f"margin {margin:g})"
        )
        todo = [k for k in order if k not in done and bounds[k][0] >= threshold]
    return {names[i]: f"{rule} (bound {bounds[(i, r)][0]:.1f})"
            for i, r in kept if (i, r) not in done}  # fmt: skip
