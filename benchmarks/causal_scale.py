"""Causal discovery as d grows: pyrostruct against PC, BOSS and DAGMA, same data, same run.

Standardized linear Gaussian data (``datasets.make_dataset``, unequal noise, n = 2000), ER2
and SF2 graphs. Every method runs in a fresh process with one thread and a time limit
(:func:`harness.in_fresh_process`), which also gives its peak memory:

- pyrostruct: ``discover(x, seed=seed)`` (defaults), and with ``restarts=4`` on the
  process executor (2 workers) where ``d <= 200``;
- PC: ``causallearn.search.ConstraintBased.PC.pc``, Fisher z, ``alpha = 0.01``
  (``causal_real_tables.run_pc``);
- BOSS: ``causallearn.search.PermutationBased.BOSS.boss``, ``local_score_BIC_from_cov``
  (Andrews et al., NeurIPS 2023);
- DAGMA: ``dagma.linear.DagmaLinear``, ``lambda1 = 0.02``, ``w_threshold = 0.3``.

Metrics: CPDAG-SHD (true CPDAG against the estimated DAG's CPDAG, or the estimated CPDAG
for PC and BOSS), directed SHD (DAG outputs only), AUPRC of edge scores (pyrostruct's
edge probabilities, DAGMA's ``|W|``, for PC and BOSS 1 for a directed edge and 0.5 each
way for an undirected one), seconds, peak MiB. A method past its time limit is shown as
``timeout`` and left out of the larger sizes of the same graph.

    python benchmarks/causal_scale.py --threads 1              # d = 100, 200, 500, 1000
    python benchmarks/causal_scale.py --threads 1 --sizes 100 200
    python benchmarks/causal_scale.py --threads 1 --sizes 500 --graphs ER  # causal_scale_large.md
    python benchmarks/causal_scale.py --threads 1 --sizes 1000 --methods pyrostruct
        # causal_scale_d1000.md (the peers ran past 30 minutes at d = 500)
    python benchmarks/causal_scale.py --threads 1 --sizes 1000 --graphs ER \
        --methods "pyrostruct restarts 4"  # restarts run above d = 200 only when named
    python benchmarks/causal_scale.py --threads 1 --quick      # d = 50; 1 seed
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from causal_real_tables import general_graph_to_cpdag, run_pc  # noqa: E402
from harness import Report, in_fresh_process, parse_args, peak_memory  # noqa: E402

METHODS = ("pyrostruct", "pyrostruct restarts 4", "PC", "BOSS", "DAGMA")


def make_case(d: int, graph: str, seed: int):
    from pyrostruct.causal import datasets

    ds = datasets.make_dataset(d=d, n=2000, graph=graph, edges_per_node=2, noise="nonequal",
                               seed=seed)  # fmt: skip
    x = ds.data.to_numpy()
    return (x - x.mean(0)) / x.std(0), np.asarray(ds.adjacency)


def fit(method: str, x: np.ndarray, seed: int) -> dict:
    """One method on the table ``x``: ``{"dag" or "cpdag": 0/1 matrix, "scores": edge scores}``."""
    if method.startswith("pyrostruct"):
        from pyrostruct.causal import discover

        kwargs = {}
        if "restarts" in method:
            kwargs = {"restarts": 4, "executor": "process", "workers": 2}
        result = discover(x, seed=seed, progress=False, **kwargs)
        return {"dag": result.adjacency, "scores": result.edge_probs}
    if method == "PC":
        cp, scores = run_pc(x)
        return {"cpdag": cp, "scores": scores}
    if method == "BOSS":
        from causallearn.search.PermutationBased.BOSS import boss

        cp = general_graph_to_cpdag(boss(x, "local_score_BIC_from_cov", verbose=False))
        return {"cpdag": cp, "scores": cp * np.where(cp.T == 1, 0.5, 1.0)}
    from dagma.linear import DagmaLinear

    w = DagmaLinear(loss_type="l2", verbose=False).fit(x.copy(), lambda1=0.02, w_threshold=0.3)
    return {"dag": (w != 0).astype(np.int64), "scores": np.abs(w)}


def estimate(method: str, d: int, graph: str, seed: int) -> dict:
    """One method on one case, in its own process, after a warm-up call on a 5-node table
    (imports and first-call costs are not timed): :func:`fit`'s output with ``s`` and
    ``peak`` (MiB)."""
    fit(method, make_case(5, graph, seed)[0][:200], seed)
    x, _ = make_case(d, graph, seed)
    out: dict = {}
    started = time.perf_counter()
    peak = peak_memory(lambda: out.update(fit(method, x, seed)))
    out.update(s=time.perf_counter() - started, peak=peak / 2**20)
    return out


def score(truth: np.ndarray, out: dict) -> dict:
    from pyrostruct.causal import metrics
    from pyrostruct.causal.equivalence import cpdag

    dag = out.get("dag")
    est = cpdag(dag) if dag is not None else out["cpdag"]
    return {
        "CPDAG-SHD": float(metrics.shd(cpdag(truth), est)),
        "SHD": float(metrics.shd(truth, dag)) if dag is not None else float("nan"),
        "AUPRC": float(metrics.auprc(truth, out["scores"])),
        "s": out["s"],
        "peak MiB": out["peak"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--graphs", nargs="+", choices=("ER", "SF"), default=("ER", "SF"))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    extra, rest = parser.parse_known_args()
    args = parse_args("causal_scale", __doc__, rest)
    args.command = " ".join(["python benchmarks/causal_scale.py", *sys.argv[1:]])
    sizes = args.sizes or ((50,) if args.quick else (100, 200, 500, 1000))
    limit = 600 if args.quick else 1800
    # the one-seed sizes (hours of peers) have their own tables
    name = "causal_scale" if min(sizes) < 500 else "causal_scale_large"
    if min(sizes) >= 1000:
        name = "causal_scale_d1000"
    report = Report(name, quick=args.quick, command=args.command)
    chosen = tuple(extra.methods) != METHODS  # restarts above d = 200 only when asked for
    for graph in extra.graphs:
        timed_out: set = set()
        for d in sizes:
            seeds = 1 if args.quick or d >= 500 else 3
            for method in extra.methods:
                if method in timed_out or ("restarts" in method and d > 200 and not chosen):
                    continue
                rows = []
                for seed in range(args.seed, args.seed + seeds):
                    out = in_fresh_process(estimate, method, d, graph, seed,
                                           threads=args.threads, timeout=limit)  # fmt: skip
                    if out is None:
                        timed_out.add(method)
                        break
                    rows.append(score(make_case(d, graph, seed)[1], out))
                row = {"graph": f"{graph}2", "d": d, "method": method, "seeds": len(rows)}
                if method in timed_out:
                    row.update({"CPDAG-SHD": "timeout", "s": f"> {limit}"})
                else:
                    row.update({k: float(np.mean([r[k] for r in rows])) for k in rows[0]})
                report.add_row(row)
                print(row, flush=True)
    report.add_note(
        f"Time limit {limit} s a run; pyrostruct with restarts "
        f"{'where named' if chosen else 'only at d <= 200'} (4 restarts, process executor, 2 "
        "workers; peak MiB is the parent process's); one seed at d >= 500, three below. "
        "CPDAG-SHD, SHD, AUPRC, s and peak MiB are means over seeds."
    )
    graphs = " and ".join(f"{g}2" for g in extra.graphs)
    report.write(headline=f"sizes {', '.join(map(str, sizes))}; {graphs}, n = 2000")


if __name__ == "__main__":
    main()
