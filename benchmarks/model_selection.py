"""ELBO-based model selection vs scikit-learn: recovery of component counts, wall time, coverage.

* Gaussian mixtures (2-D and 5-D, K in {1, 2, 3, 4, 6}, n in {200, 1000},
  separated and overlapping clusters), K = 1..8: pyrostruct's evidence
  (``select_components(x, "gmm", 8)``) against ``GaussianMixture`` + BIC and
  ``BayesianGaussianMixture`` (Dirichlet process, components with weight > 0.01
  counted), both with diagonal covariances like pyrostruct's model.
* PPCA (D = 20, rank in {1, 3, 5, 8}, n in {100, 500}, two noise levels), rank
  1..12: pyrostruct's evidence against ``PCA(n_components="mle")`` (Minka 2000).
* A full K = 1..8 GMM sweep at n = 1000 (5-D, 4 clusters), timed with and
  without successive halving (``executor="process"``, 2 workers).
* Coverage: on a conjugate Bayesian linear regression (1500 SVI steps), how often the IWAE
  estimate +- 2 se covers the exact log evidence (and the ELBO's, a biased lower
  bound, for contrast).

``--quick`` runs a subset (a few minutes on 2 cores).
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from harness import Report, parse_args  # noqa: E402

from pyrostruct.selection import (  # noqa: E402
    bayesian_regression,
    make_gmm_data,
    make_ppca_data,
    regression_log_evidence,
    select,
    select_components,
)

SEPARATION = {"separated": 6.0, "overlapping": 3.0}
NOISE = {"low": 0.5, "high": 1.0}


def sklearn_gmm(x, max_k, seed):
    from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

    tic = time.perf_counter()
    bics = [
        GaussianMixture(k, covariance_type="diag", random_state=seed).fit(x).bic(x)
        for k in range(1, max_k + 1)
    ]
    bic_k, bic_s = int(np.argmin(bics)) + 1, time.perf_counter() - tic
    tic = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        dp = BayesianGaussianMixture(
            n_components=max_k,
            weight_concentration_prior_type="dirichlet_process",
            covariance_type="diag",
            max_iter=500,
            random_state=seed,
        ).fit(x)
    dp_k, dp_s = int((dp.weights_ > 0.01).sum()), time.perf_counter() - tic
    return bic_k, bic_s, dp_k, dp_s


def minka(x):
    from sklearn.decomposition import PCA

    tic = time.perf_counter()
    k = int(PCA(n_components="mle").fit(x).n_components_)
    return k, time.perf_counter() - tic


def run_gmm(report, quick, seed, steps):
    dims, ks, ns, seps = ([2, 5], [1, 3, 6], [200], ["separated"]) if quick else (
        [2, 5], [1, 2, 3, 4, 6], [200, 1000], ["separated", "overlapping"])  # fmt: skip
    hits = {"pyrostruct": 0, "BIC": 0, "DPGMM": 0}
    total = 0
    for d in dims:
        for k in ks:
            for n in ns:
                for sep in seps:
                    x, _ = make_gmm_data(n, k, d, separation=SEPARATION[sep], seed=seed + 7 * k + d)
                    tic = time.perf_counter()
                    result = select_components(
                        x, "gmm", 8, steps=steps, num_restarts=1, seed=seed,
                        executor="process", max_workers=2,
                    )  # fmt: skip
                    ours_s = time.perf_counter() - tic
                    bic_k, bic_s, dp_k, dp_s = sklearn_gmm(x, 8, seed)
                    total += 1
                    hits["pyrostruct"] += result.best == k
                    hits["BIC"] += bic_k == k
                    hits["DPGMM"] += dp_k == k
                    report.add_row({
                        "family": "gmm", "dim": d, "true": k, "n": n, "setting": sep,
                        "pyrostruct": result.best, "BIC": bic_k, "DPGMM/Minka": dp_k,
                        "pyrostruct s": ours_s, "BIC s": bic_s, "DPGMM/Minka s": dp_s,
                        "halving saved %": 100 * result.savings["fraction_saved"],
                    })  # fmt: skip
    return {m: h / total for m, h in hits.items()}, total


def run_ppca(report, quick, seed, steps):
    ranks, ns, noises = ([1, 5], [500], ["high"]) if quick else (
        [1, 3, 5, 8], [100, 500], ["low", "high"])  # fmt: skip
    hits = {"pyrostruct": 0, "Minka": 0}
    total = 0
    for r in ranks:
        for n in ns:
            for noise in noises:
                x = make_ppca_data(n, 20, r, noise=NOISE[noise], seed=seed + r)
                tic = time.perf_counter()
                result = select_components(
                    x, "ppca", 12, steps=steps, num_restarts=1, seed=seed,
                    executor="process", max_workers=2,
                )  # fmt: skip
                ours_s = time.perf_counter() - tic
                mk, mk_s = minka(x)
                total += 1
                hits["pyrostruct"] += result.best == r
                hits["Minka"] += mk == r
                report.add_row({
                    "family": "ppca", "dim": 20, "true": r, "n": n, "setting": f"noise {noise}",
                    "pyrostruct": result.best, "BIC": "", "DPGMM/Minka": mk,
                    "pyrostruct s": ours_s, "BIC s": float("nan"), "DPGMM/Minka s": mk_s,
                    "halving saved %": 100 * result.savings["fraction_saved"],
                })  # fmt: skip
    return {m: h / total for m, h in hits.items()}, total


def timed_sweep(seed, steps, halving):
    x, _ = make_gmm_data(1000, 4, 5, separation=6.0, seed=seed)
    tic = time.perf_counter()
    result = select_components(
        x, "gmm", 8, steps=steps, num_restarts=1, seed=seed, executor="process", max_workers=2,
        halving=(0.25, 0.5) if halving else None,
    )  # fmt: skip
    return time.perf_counter() - tic, result


def coverage(seeds, steps):
    iwae_hits = elbo_hits = 0
    for s in seeds:
        g = torch.Generator().manual_seed(1000 + s)
        X = torch.randn(50, 3, generator=g)
        y = (X * torch.randn(3, generator=g)).sum(-1) + torch.randn(50, generator=g)
        exact = regression_log_evidence(X, y, 1.0)
        result = select({"m": bayesian_regression(1.0)}, X, y, steps=steps, num_restarts=1,
                        seed=s, halving=None)  # fmt: skip
        row = result.table.iloc[0]
        iwae_hits += abs(row.iwae - exact) <= 2 * row.iwae_se
        elbo_hits += abs(row.elbo - exact) <= 2 * row.elbo_se
    return iwae_hits / len(seeds), elbo_hits / len(seeds)


def main() -> int:
    args = parse_args("model_selection", __doc__)
    torch.set_num_threads(1)
    report = Report("model_selection", quick=args.quick, command=args.command)
    steps = 300 if args.quick else 400
    tic = time.perf_counter()
    gmm_acc, gmm_n = run_gmm(report, args.quick, args.seed, steps)
    ppca_acc, ppca_n = run_ppca(report, args.quick, args.seed, steps)
    sweep_s, sweep = timed_sweep(args.seed, steps, halving=True)
    report.add_note(
        f"K = 1..8 GMM sweep, n = 1000, 5-D, 4 clusters, {steps} steps, successive halving, "
        f"process executor (2 workers): {sweep_s:.1f} s, picked K = {sweep.best}, halving saved "
        f"{100 * sweep.savings['fraction_saved']:.0f}% of SVI steps"
    )
    if not args.quick:
        full_s, full = timed_sweep(args.seed, steps, halving=False)
        report.add_note(
            f"same sweep without successive halving: {full_s:.1f} s, picked K = {full.best}"
        )
    seeds = range(10 if args.quick else 40)
    cov_iwae, cov_elbo = coverage(seeds, 1500)  # a converged guide
    report.add_note(
        f"conjugate Bayesian linear regression (n = 50, 3 features), {len(seeds)} seeds: the "
        f"IWAE estimate +- 2 se covers the exact log evidence in {100 * cov_iwae:.0f}% of seeds "
        f"(ELBO +- 2 se: {100 * cov_elbo:.0f}%; the ELBO is biased low by KL(q || p))"
    )
    report.add_note(
        f"recovery accuracy, GMM ({gmm_n} data sets): "
        + ", ".join(f"{m} {100 * a:.0f}%" for m, a in gmm_acc.items())
    )
    report.add_note(
        f"recovery accuracy, PPCA ({ppca_n} data sets): "
        + ", ".join(f"{m} {100 * a:.0f}%" for m, a in ppca_acc.items())
    )
    report.add_note(
        "columns: true = true K or rank; pyrostruct / BIC / DPGMM/Minka = count chosen "
        "(DPGMM for GMM rows, Minka's PCA MLE for PPCA rows); * s = wall seconds per data set "
        "(pyrostruct: the whole sweep with restarts, evidence estimates and halving)"
    )
    report.add_note(f"total benchmark wall time {time.perf_counter() - tic:.0f} s (shared machine)")
    headline = (
        f"recovery GMM: pyrostruct {100 * gmm_acc['pyrostruct']:.0f}% vs BIC "
        f"{100 * gmm_acc['BIC']:.0f}% vs DPGMM {100 * gmm_acc['DPGMM']:.0f}%; "
        f"PPCA: pyrostruct {100 * ppca_acc['pyrostruct']:.0f}% vs Minka "
        f"{100 * ppca_acc['Minka']:.0f}%; K=1..8 sweep at n=1000: {sweep_s:.0f} s; "
        f"IWAE error-bar coverage {100 * cov_iwae:.0f}%"
    )
    report.write(headline=headline)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
