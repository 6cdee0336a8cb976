"""Order MCMC with candidate parent sets (``pyrostruct.causal.order_mcmc``) against the exact
posterior and against ``discover``'s variational default.

Linear Gaussian data (``datasets.make_dataset``, unequal noise variances; ER2 graphs, and
SF2 too in part (b)), n in {200, 1000}, 3 seeds; every method standardizes the columns.

(a) d in {12, 14}: max and mean absolute edge-probability error (over ordered pairs)
    against ``exact_posterior`` for ``order_mcmc_posterior(x, max_candidates=K)``, K in {6,
    8, 10} (defaults otherwise: 4 chains x 1000 retained orders, thin d, burn-in half the
    run), and for ``discover(x, estimator="analytic")``; wall time of each call, R-hat of
    the log score for order MCMC.
(b) d in {20, 30}, ER2 and SF2 graphs: AUROC / AUPRC of edge probabilities against the
    true graph, expected calibration error (``metrics.calibration_error``), SHD of the
    consensus graph, wall time, for order MCMC (K = 10) and ``discover(x,
    estimator="analytic")``.

In both parts ``hybrid`` is order MCMC (K = 10) whose candidates start from the
variational fit's likely pairs (``candidate_probs=`` that fit); its time includes the fit.

``--quick``: d = 12 / 20, n = 200, 1 seed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from harness import Report, parse_args  # noqa: E402


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def hybrid(order_mcmc_posterior, x, seed, vi):
    """Order MCMC started from the variational fit ``vi = (result, seconds)``'s likely pairs;
    the time includes the fit's."""
    result, seconds = timed(order_mcmc_posterior, x, seed=seed, candidate_probs=vi[0])
    return result, seconds + vi[1]


def main() -> int:
    args = parse_args("causal_order_mcmc", __doc__)
    import pandas as pd

    from pyrostruct.causal import datasets, discover, metrics
    from pyrostruct.causal.exact import exact_posterior
    from pyrostruct.causal.order_mcmc import order_mcmc_posterior

    quick = args.quick
    rows_n = [200] if quick else [200, 1000]
    seeds = [args.seed + k for k in range(1 if quick else 3)]
    small, large = ([12], [20]) if quick else ([12, 14], [20, 30])
    report = Report("causal_order_mcmc", quick=quick, command=args.command)
    warm = datasets.make_dataset(d=5, n=200, seed=0).data.to_numpy()
    discover(warm, estimator="analytic")  # one-time costs, untimed
    order_mcmc_posterior(warm, num_samples=20)

    rows = []
    for d in small:
        for n in rows_n:
            for seed in seeds:
                ds = datasets.make_dataset(d=d, n=n, edges_per_node=2, noise="nonequal",
                                           seed=seed)  # fmt: skip
                x = ds.data.to_numpy()
                exact, t_exact = timed(exact_posterior, x)
                off = ~np.eye(d, dtype=bool)
                fits = {}
                for k in (6, 8, 10):
                    fits[f"order MCMC K={k}"] = timed(order_mcmc_posterior, x,
                                                      max_candidates=k, seed=seed)  # fmt: skip
                fits["discover (VI)"] = vi = timed(discover, x, seed=seed, estimator="analytic")
                fits["hybrid"] = hybrid(order_mcmc_posterior, x, seed, vi)
                for method, (res, t) in fits.items():
                    err = np.abs(res.edge_probs - exact.edge_probs)[off]
                    diag = getattr(res, "diagnostics", None)
                    rows.append({
                        "part": "a", "d": d, "n": n, "seed": seed, "method": method,
                        "max err": float(err.max()), "mean err": float(err.mean()),
                        "seconds": t, "exact seconds": t_exact,
                        "R-hat log score": np.nan if diag is None else diag.rhat_log_score,
                    })  # fmt: skip
                    print(rows[-1], flush=True)
    for d, graph in [(d, g) for d in large for g in ("ER", "SF")]:
        for n in rows_n:
            for seed in seeds:
                ds = datasets.make_dataset(d=d, n=n, graph=graph, edges_per_node=2,
                                           noise="nonequal", seed=seed)  # fmt: skip
                x = ds.data.to_numpy()
                truth = ds.adjacency
                vi = timed(discover, x, seed=seed, estimator="analytic")
                fits = {
                    "order MCMC K=10": timed(order_mcmc_posterior, x, seed=seed),
                    "discover (VI)": vi,
                    "hybrid": hybrid(order_mcmc_posterior, x, seed, vi),
                }
                for method, (res, t) in fits.items():
                    diag = getattr(res, "diagnostics", None)
                    missing = np.nan
                    if diag is not None:
                        missing = sum(int(i not in res.candidates[j])
                                      for i, j in zip(*np.nonzero(truth)))  # fmt: skip
                    rows.append({
                        "part": "b", "d": d, "graph": graph, "n": n, "seed": seed,
                        "method": method,
                        "AUROC": metrics.auroc(truth, res.edge_probs),
                        "AUPRC": metrics.auprc(truth, res.edge_probs),
                        "ECE": metrics.calibration_error(truth, res.edge_probs),
                        "SHD": float(metrics.shd(truth, res.adjacency)),
                        "seconds": t,
                        "R-hat log score": np.nan if diag is None else diag.rhat_log_score,
                        "true parents not candidates": missing,
                    })  # fmt: skip
                    print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    cols_a = ["max err", "mean err", "seconds", "exact seconds", "R-hat log score"]
    part_a = frame[frame.part == "a"].groupby(["d", "n", "method"], sort=False)[cols_a].mean()
    cols_b = ["AUROC", "AUPRC", "ECE", "SHD", "seconds", "R-hat log score",
              "true parents not candidates"]  # fmt: skip
    part_b = (frame[frame.part == "b"]
              .groupby(["d", "graph", "n", "method"], sort=False)[cols_b].mean())  # fmt: skip
    for _, values in part_a.reset_index().iterrows():
        report.add_row({"part": "a (vs exact)", **values.to_dict()})
    for _, values in part_b.reset_index().iterrows():
        report.add_row({"part": "b (vs truth)", **values.to_dict()})
    means = frame.groupby(["part", "method"], sort=False).mean(numeric_only=True)
    report.add_note("Means over seeds per cell; (a) errors over ordered pairs against "
                    "exact_posterior on the same data; (b) against the true graph.")  # fmt: skip
    report.add_note("Per-case rows: " + "; ".join(
        f"{r.part} d={r.d}{'' if r.part == 'a' else ' ' + r.graph} n={r.n} s={r.seed} "
        f"{r.method}: "
        + (f"max {r['max err']:.3f}" if r.part == "a" else f"AUROC {r.AUROC:.3f}")
        for _, r in frame.iterrows()))  # fmt: skip
    a = means.loc["a"]
    b = means.loc["b"]
    headline = (
        f"vs exact (d {'/'.join(map(str, small))}): mean |err| "
        + ", ".join(f"{m} {a.loc[m, 'mean err']:.3f}" for m in a.index)
        + f"; vs truth (d {'/'.join(map(str, large))}): AUROC "
        + ", ".join(f"{m} {b.loc[m, 'AUROC']:.3f}" for m in b.index)
    )
    report.write(headline=headline)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
