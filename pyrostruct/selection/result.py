"""The outcome of :func:`~pyrostruct.selection.select`: a table, the best model, plots."""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["SelectionResult", "AmbiguousSelectionWarning", "CandidateFailedWarning"]


class AmbiguousSelectionWarning(UserWarning):
    """The best candidates' log evidence differ by less than their Monte Carlo error."""


class CandidateFailedWarning(UserWarning):
    """Some candidates raised while fitting; the result holds the others."""


@dataclasses.dataclass(eq=False)
class SelectionResult:
    """Evidence of each candidate, posterior model probabilities and fitted posteriors.

    :ivar pandas.DataFrame table: one row per candidate, sorted as given:
        ``candidate``, ``elbo``, ``elbo_se``, ``iwae``, ``iwae_se``, ``ess`` (of
        the IWAE weights), ``smc``, ``smc_se`` (the SMC estimate, NaN where not
        computed), ``smc_start`` (``"prior"``, ``"guide"`` or empty),
        ``log_evidence`` (the estimate used), ``log_evidence_se``,
        ``evidence_method`` (which estimate: ``"smc"``, ``"iwae"`` or
        ``"elbo"``), ``log_prior``, ``log_posterior_prob``, ``posterior_prob``,
        ``posterior_prob_se`` (its Monte Carlo error, :func:`_bootstrap_se`),
        ``fit_seconds``, ``steps`` (SVI steps run, all restarts),
        ``best_restart`` and ``status`` (``"fitted"``, ``"dropped at step N"`` by successive
        halving (a dropped candidate's evidence is its ELBO at that step, a lower bound), or
        ``"failed: <error>"``: a candidate
        that raised has NaN evidence and posterior probability, and the others'
        posterior probabilities are normalized over the candidates that did not
        fail).
    :ivar dict fits: candidate name -> :class:`~pyrostruct.selection.FittedCandidate`
        (the best restart), for candidates fitted to the end.
    :ivar dict savings: ``steps_full``, ``steps_run`` and ``fraction_saved`` by
        successive halving.
    :ivar dict vectorized_restarts: candidate name -> whether its restarts ran as
        one vectorized SVI fit.
    :ivar dict not_vectorized: candidate name -> why its restarts were not
        vectorized (when tried).
    :ivar dict restart_elbos: candidate name -> list of each restart's last ELBO
        estimate (100 particles), the ranking that picks ``best_restart``.
    :ivar dict failures: candidate name -> the error it raised
        (``"TypeError: ..."``), for the candidates that failed
        (``select(on_error="keep")``).
    :ivar str evidence_method: the estimate behind the best candidates'
        ``log_evidence``: ``"smc"`` when computed (for every candidate, started
        from the prior, or for those in contention, started from their
        guides; the table's ``evidence_method`` says which), else ``"iwae"``
        when computed, else ``"elbo"``.
    :ivar dict smc_skipped: candidate name -> why it got no SMC estimate (no
        guide-free one: a candidate too large for it; no guide-started one:
        not in contention); empty when every candidate got one or none was
        asked for.
    :ivar dict smc_failed: candidate name -> the error of an SMC estimate that
        failed; the candidates are then ranked by the IWAE bound.
    :ivar tuple evidence: the estimators computed.
    :ivar list names: the candidate names, in the order given.
    :ivar dict data_init: candidate name -> whether a data-aware initialization
        (:func:`~pyrostruct.infer.init.mixture_init`) started it.
    :ivar dict iwae_restarts: candidate name -> how many restarts the IWAE
        proposal mixes.
    :ivar dict symmetrized: candidate name -> whether its final evidence accounts
        for label switching.
    """

    table: pd.DataFrame
    fits: dict
    savings: dict
    evidence: tuple
    names: list | None = None
    vectorized_restarts: dict = dataclasses.field(default_factory=dict)
    not_vectorized: dict = dataclasses.field(default_factory=dict)
    restart_elbos: dict = dataclasses.field(default_factory=dict)
    failures: dict = dataclasses.field(default_factory=dict)
    smc_skipped: dict = dataclasses.field(default_factory=dict)
    smc_failed: dict = dataclasses.field(default_factory=dict)
    evidence_method: str = "iwae"
    data_init: dict = dataclasses.field(default_factory=dict)
    iwae_restarts: dict = dataclasses.field(default_factory=dict)
    symmetrized: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.names = list(self.names if self.names is not None else self.table["candidate"])

    @classmethod
    def _from_fits(
        cls, cands, ctx, state, alive, dropped_at, log_prior, evidence, failures, savings
    ):
        from pyrostruct.selection.candidates import FittedCandidate

        rows, fits = [], {}
        chosen = [st for k, st in state.items() if k in alive and st.chosen]
        smc_failed = {cands[k[0]][0]: st.smc_failed for k, st in state.items()
                      if st.smc_failed is not None}  # fmt: skip
        guide_smc = any(st.smc_start == "guide" for st in state.values())
        if "smc" in evidence and chosen and (guide_smc or not smc_failed):
            use = "smc"
        else:
            use = "iwae" if "iwae" in evidence else "elbo"
        for i, (name, cand) in enumerate(cands):
            keys = [k for k in state if k[0] == i]
            if name in failures:
                rows.append(_failed_row(name, failures[name], state, keys))
                continue
            live = [k for k in keys if k in alive]
            picked = [k for k in live if state[k].chosen]
            best = picked[0] if picked else max(keys, key=lambda k: state[k].elbo)
            st = state[best]
            row = {
                "candidate": name,
                "elbo": st.elbo,
                "elbo_se": st.elbo_se,
                "iwae": st.iwae if live else math.nan,
                "iwae_se": st.iwae_se if live else math.nan,
                "ess": st.ess if live else math.nan,
                "smc": st.smc if live else math.nan,
                "smc_se": st.smc_se if live else math.nan,
            }
            row["smc_start"] = st.smc_start if live and math.isfinite(st.smc) else ""
            method = "elbo"
            if live and use == "smc" and math.isfinite(st.smc):
                method = "smc"  # guide-started: only the candidates in contention have it
            elif live and "iwae" in evidence and math.isfinite(st.iwae):
                method = "iwae"
            row["log_evidence"], row["log_evidence_se"] = row[method], row[f"{method}_se"]
            row["evidence_method"] = method
            row["fit_seconds"] = sum(state[k].seconds for k in keys)
            row["steps"] = sum(len(state[k].losses) for k in keys)
            row["best_restart"] = best[1]
            row["status"] = "fitted" if live else f"dropped at step {dropped_at.get(i, '?')}"
            rows.append(row)
            if live:
                fits[name] = FittedCandidate(
                    name=name,
                    model=None,
                    guide=None,
                    params=st.checkpoint["params"],
                    args=ctx.args,
                    kwargs=ctx.kwargs,
                    losses=st.losses,
                    restart=best[1],
                    enumerated=st.enumerated,
                    max_plate_nesting=st.max_plate_nesting,
                )
                _attach_model_and_guide(fits[name], cand, ctx)
        table = pd.DataFrame(rows)
        table["log_prior"] = log_prior
        logpost = _posterior_probs(table["log_evidence"].to_numpy(dtype=float), log_prior)
        failed = table["candidate"].isin(list(failures)).to_numpy()
        logpost[failed] = math.nan
        table["log_posterior_prob"] = logpost
        table["posterior_prob"] = np.exp(logpost)
        table["posterior_prob_se"] = _bootstrap_se(
            table["log_evidence"].to_numpy(dtype=float),
            table["log_evidence_se"].to_numpy(dtype=float),
            log_prior,
            ctx.seed,
        )
        table.loc[failed, "posterior_prob_se"] = math.nan
        order = [
            "candidate",
            "elbo",
            "elbo_se",
            "iwae",
            "iwae_se",
            "ess",
            "smc",
            "smc_se",
            "smc_start",
            "log_evidence",
            "log_evidence_se",
            "evidence_method",
            "log_prior",
            "log_posterior_prob",
            "posterior_prob",
            "posterior_prob_se",
            "fit_seconds",
            "steps",
            "best_restart",
            "status",
        ]
        result = cls(table[order], fits, savings, tuple(evidence), [n for n, _ in cands])
        result.failures = dict(failures)
        result.evidence_method = use
        result.smc_failed = smc_failed
        return result

    # ------------------------------------------------------------------ queries
    @property
    def best(self) -> Any:
        """Name of the candidate with the highest posterior probability."""
        return self.names[int(np.nanargmax(self.table["log_posterior_prob"].to_numpy()))]

    @property
    def posterior_probs(self) -> pd.Series:
        """Posterior model probabilities, ``softmax(log evidence + log prior)``.

        Warns (:class:`AmbiguousSelectionWarning`) when the two most probable
        candidates' log evidence differ by less than twice their combined
        Monte Carlo standard error: the ranking is then not resolved.
        """
        t = self.table.sort_values("log_posterior_prob", ascending=False)
        if len(t) > 1:
            a, b = t.iloc[0], t.iloc[1]
            gap = (a["log_evidence"] + a["log_prior"]) - (b["log_evidence"] + b["log_prior"])
            se = math.hypot(_nz(a["log_evidence_se"]), _nz(b["log_evidence_se"]))
            if gap < 2 * se:
                warnings.warn(
                    f"candidates {_plain(a['candidate'])!r} and {_plain(b['candidate'])!r} "
                    "differ by "
                    f"{gap:.2f} nats in log evidence, within the Monte Carlo error "
                    f"(2 se = {2 * se:.2f}); increase the particles or treat them as tied",
                    AmbiguousSelectionWarning,
                    stacklevel=2,
                )
        return pd.Series(
            self.table["posterior_prob"].to_numpy(),
            index=pd.Index(self.names, name="candidate"),
            name="posterior_prob",
        )

    def posterior(self, name) -> Any:
        """The :class:`~pyrostruct.selection.FittedCandidate` of candidate ``name``."""
        if name not in self.fits:
            raise KeyError(
                f"no fitted posterior for {name!r} (dropped early or unknown); "
                f"fitted: {list(self.fits)}"
            )
        return self.fits[name]

    def __repr__(self) -> str:
        cols = ["candidate", "elbo", "elbo_se", "iwae", "iwae_se", "ess", "posterior_prob"]
        return (
            f"SelectionResult(best={self.best!r}, "
            f"saved {100 * self.savings['fraction_saved']:.0f}% of SVI steps)\n"
            + self.table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}")
        )

    # ------------------------------------------------------------------ output
    def to_csv(self, path: str | os.PathLike) -> None:
        """Write :attr:`table` to ``path`` atomically."""
        from pyrostruct._io import atomic_open

        with atomic_open(path, "w") as f:
            self.table.to_csv(f, index=False)

    def plot(self, path: str | os.PathLike | None = None, *, ax=None, title: str | None = None):
        """Evidence per candidate with 2-standard-error bars (ELBO and IWAE).

        Candidates stopped early by successive halving are drawn hollow, at
        their ELBO when stopped.

        Returns the matplotlib Figure; with ``path``, also saves it atomically, as
        PNG, PDF or SVG by its suffix.
        """
        import matplotlib

        if path is not None and ax is None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        fig = None
        if ax is None:
            fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(self.table) + 2), 3.2))
        else:
            fig = ax.figure
        x = np.arange(len(self.table))
        labels = [str(c) for c in self.table["candidate"]]
        fitted = (self.table["status"] == "fitted").to_numpy()
        for col, offset, marker in [("elbo", -0.1, "o"), ("iwae", 0.1, "s")]:
            if col in self.evidence and self.table[col].notna().any():
                ax.errorbar(
                    x[fitted] + offset,
                    self.table[col][fitted],
                    yerr=2 * self.table[f"{col}_se"][fitted].fillna(0),
                    fmt=marker,
                    capsize=3,
                    label=col.upper(),
                )
        if (~fitted).any():
            ax.errorbar(
                x[~fitted] - 0.1,
                self.table["elbo"][~fitted],
                yerr=2 * self.table["elbo_se"][~fitted].fillna(0),
                fmt="o",
                mfc="none",
                color="0.4",
                capsize=3,
                label="ELBO when stopped early",
            )
        best = int(np.nanargmax(self.table["log_posterior_prob"].to_numpy()))
        ax.axvline(best, color="0.8", zorder=0, lw=6)
        ax.set_xticks(x, labels, rotation=45 if max(map(len, labels)) > 4 else 0)
        ax.set_xlabel("candidate")
        ax.set_ylabel("log evidence bound (nats)")
        ax.set_title(title or f"best: {self.best} (error bars: 2 se)")
        ax.legend()
        fig.tight_layout()
        if path is not None:
            from pyrostruct._io import save_figure

            save_figure(fig, path, dpi=120)
        return fig

    def to_arviz(self, num_samples: int = 200, seed: int = 0) -> dict:
        """``{name: arviz.InferenceData}`` with posterior samples and per-datum log-likelihoods.

        Ready for ``arviz.loo`` and ``arviz.compare`` (see
        :func:`pyrostruct.selection.arviz.to_inference_data`).
        """
        from pyrostruct.selection.arviz import to_inference_data

        return {
            name: to_inference_data(fit, num_samples=num_samples, seed=seed)
            for name, fit in self.fits.items()
        }


def _failed_row(name, message: str, state: dict, keys: list) -> dict:
    nan = math.nan
    row = {c: nan for c in ["elbo", "elbo_se", "iwae", "iwae_se", "ess"]}
    row.update(candidate=name, log_evidence=nan, log_evidence_se=nan, evidence_method="")
    row.update(smc=nan, smc_se=nan, smc_start="")
    row["fit_seconds"] = sum(state[k].seconds for k in keys)
    row["steps"] = sum(len(state[k].losses) for k in keys)
    row["best_restart"] = -1
    row["status"] = f"failed: {message}"
    return row


def _nz(value) -> float:
    return 0.0 if value is None or not np.isfinite(value) else float(value)


def _attach_model_and_guide(fit, cand, ctx) -> None:
    """Rebuild the fitted candidate's model and guide (cheap; params come from ``fit.params``)."""
    import pyro

    from pyrostruct.selection.candidates import _build

    with pyro.get_param_store().scope(fit.params):
        model, guide, _, _, _ = _build(cand, ctx.args, ctx.kwargs, None, fit.restart)
        # set the guide up against the fitted parameters
        with pyro.poutine.block(), pyro.poutine.trace():
            guide(*ctx.args, **ctx.kwargs)
    fit.model, fit.guide = model, guide


def _plain(value):
    """A table cell as the user wrote it: numpy scalars as Python ones (``2``, not
    ``np.int64(2)``)."""
    return value.item() if isinstance(value, np.generic) else value


def _bootstrap_se(log_evidence, se, log_prior, seed: int, draws: int = 2000) -> np.ndarray:
    """Monte Carlo standard errors of the posterior model probabilities.

    A parametric bootstrap: the log evidence of each candidate is redrawn from
    ``N(estimate, se^2)`` (independent estimates), the probabilities recomputed
    for each draw, and their standard deviation over ``draws`` draws returned.
    A bound's ``se`` is its Monte Carlo error only: its bias (the gap to the
    evidence) is not in it.
    """
    rng = np.random.default_rng([seed, 7919])
    sd = np.where(np.isfinite(se), se, 0.0)
    sample = log_evidence + sd * rng.standard_normal((draws, len(log_evidence)))
    probs = np.exp(np.stack([_posterior_probs(row, log_prior) for row in sample]))
    return probs.std(0)


def _posterior_probs(log_evidence: np.ndarray, log_prior: np.ndarray) -> np.ndarray:
    joint = log_evidence + log_prior
    finite = np.isfinite(joint)
    out = np.full_like(joint, -np.inf)
    if finite.any():
        m = joint[finite].max()
        out[finite] = joint[finite] - (m + np.log(np.exp(joint[finite] - m).sum()))
    return out
