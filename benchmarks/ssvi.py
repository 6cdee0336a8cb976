"""Sparse subspace VI (AutoSparseSubspace) against dense AutoNormal on Bayesian MLPs.

Same run, same model, same seed, same number of Adam steps: digits
classification (test accuracy, NLL, ECE) and diabetes regression (test RMSE,
NLL, calibration error of the predictive quantiles), for dense ``AutoNormal``
and ``AutoSparseSubspace`` at densities 0.1 and 0.05. Also: variational
parameter count, exact bytes of the guide's parameters + buffers + optimizer
state, peak resident memory of the training run, mean time per step, and a
micro-benchmark of the ways to build a layer's sampled weights from the active
coordinates (scatter vs index_put vs a sparse COO tensor, and scatter + dense
matmul vs a sparse matmul).

    python benchmarks/ssvi.py [--quick] [--num-seeds 3] [--num-samples 1000] [--prior-scale S]
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from pathlib import Path

import pyro
import torch
from harness import Report, parse_args, peak_memory, time_call, use_exact_memory_accounting
from pyro.infer import SVI, Trace_ELBO

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "models"))
import bnn  # noqa: E402

from pyrostruct.infer.autoguide.sparse_subspace.subspace import _index_dtype  # noqa: E402
from pyrostruct.nn import BayesianMLP  # noqa: E402

use_exact_memory_accounting()  # peak_memory below must be exact

DENSITIES = (0.1, 0.05)
NUM_SAMPLES = 1000  # posterior predictive draws; with fewer the ECE is noisy
PRIOR_SCALE = "1.0"


def guide_optimizer_bytes(guide, optim) -> int:
    """Exact bytes of the guide's parameters and buffers and the optimizer state."""
    total = sum(t.numel() * t.element_size() for t in guide.parameters())
    total += sum(t.numel() * t.element_size() for t in guide.buffers())
    for obj in optim.optim_objs.values():
        torch_optim = obj if isinstance(obj, torch.optim.Optimizer) else obj.optimizer
        for state in torch_optim.state.values():
            total += sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v))
    return total


def run_task(task, *, hidden, num_steps, batch_size, num_samples, seed, rounds, prior_scale):
    """Train each guide on one seed's split, evaluate it, then time the trained guides.

    Returns ``{density: row}`` (``None`` is the dense ``AutoNormal``).
    """
    x_tr, y_tr, x_te, y_te = bnn.load_data(task, seed)
    kind = "classification" if task == "digits" else "regression"
    sizes = [x_tr.shape[1], *hidden, 10 if task == "digits" else 1]
    n = x_tr.shape[0]
    batch = torch.arange(min(batch_size or n, n))
    xb, yb = x_tr[batch], y_tr[batch]
    rows, runs = {}, {}
    # Warm-up: a few steps of each guide first, so that one-time allocations of the
    # process (kernels, allocator pools) are not charged to the first measured run.
    for density in (None, DENSITIES[0]):
        model = BayesianMLP(sizes, task=kind, prior_scale=prior_scale)
        bnn.fit(
            model,
            bnn.make_guide(model, density, seed=seed),
            x_tr,
            y_tr,
            num_steps=20,
            update_every=10,
            batch_size=batch_size,
            seed=seed,
        )
    for density in (None, *DENSITIES):
        pyro.set_rng_seed(seed)
        model = BayesianMLP(sizes, task=kind, prior_scale=prior_scale)
        guide = bnn.make_guide(model, density, seed=seed)
        result = {}

        def train(model=model, guide=guide, result=result):
            result["fit"] = bnn.fit(
                model, guide, x_tr, y_tr, num_steps=num_steps, batch_size=batch_size, seed=seed
            )

        peak = peak_memory(train)
        losses, seconds, optim = result["fit"]
        pyro.set_rng_seed(10_000 + seed)  # the same predictive draws' seed for every guide
        metrics = bnn.evaluate(model, guide, x_te, y_te, num_samples=num_samples)
        row = {
            "var. params": sum(p.numel() for p in guide.parameters()),
            "density": 1.0 if density is None else guide.density,
            "guide+optim KiB": guide_optimizer_bytes(guide, optim) / 1024,
            "train peak RSS MiB": peak / 2**20,
            "train s": seconds * num_steps,
            "NLL": metrics["nll"],
            "ECE": metrics["ece"],
        }
        if kind == "classification":
            row["accuracy"] = metrics["accuracy"]
        else:
            row["RMSE"] = metrics["rmse"]
        rows[density] = row
        svi = SVI(model, guide, optim, Trace_ELBO())
        runs[density] = lambda svi=svi: svi.step(xb, yb, num_data=n)
    # Time per step: the trained guides' SVI steps, interleaved in rounds so that
    # the load of a shared machine hits all of them alike; median over all repeats.
    times = {density: [] for density in runs}
    for _ in range(rounds):
        for density, step in runs.items():
            times[density] += time_call(step, warmup=2, repeats=10).times
    for density, row in rows.items():
        row["ms/step"] = 1e3 * statistics.median(times[density])
    return rows


def mean_sd(values) -> str:
    """``mean ± sd`` (sample standard deviation; just the value for one seed)."""
    values = list(values)
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.4f}"
    return f"{mean:.4f} ± {statistics.stdev(values):.4f}"


def aggregate(task, per_seed) -> dict:
    """One table row per guide: metrics as mean ± sd over seeds, sizes and times as means."""
    rows = {}
    for density in per_seed[0]:
        runs = [seed_rows[density] for seed_rows in per_seed]
        name = "AutoNormal" if density is None else f"AutoSparseSubspace({density})"
        row = {"task": task, "guide": name}
        for key in ("density", "var. params", "guide+optim KiB"):
            row[key] = runs[0][key]  # the same in every seed
        for key in ("train peak RSS MiB", "train s", "ms/step"):
            row[key] = statistics.fmean(r[key] for r in runs)
        for key in ("accuracy", "RMSE", "NLL", "ECE"):
            if key in runs[0]:
                row[key] = mean_sd(r[key] for r in runs)
                row["_" + key] = [r[key] for r in runs]
        rows[density] = row
    return rows


def index_bytes(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def memory_bound_notes(report, sizes, densities=(0.1, 0.09, 0.085, 0.08)):
    """Exact guide+Adam bytes of untrained guides at several densities, vs dense.

    Per active coordinate a guide holds 2 values (loc, scale), each with Adam's two
    moments: 6 x 4 B = 24 B, plus its index; a dense AutoNormal holds 24 B per
    weight. So the ratio is at most 24 / (density (24 + index bytes)) < 1/density.
    """
    x = torch.randn(8, sizes[0])
    y = torch.zeros(8, dtype=torch.long)

    def bytes_of(density):
        pyro.set_rng_seed(0)
        model = BayesianMLP(sizes)
        guide = bnn.make_guide(model, density)
        optim = pyro.optim.Adam({"lr": 1e-3})
        SVI(model, guide, optim, Trace_ELBO()).step(x, y)  # creates Adam's state
        return guide_optimizer_bytes(guide, optim)

    dense = bytes_of(None)
    ratios = {d: dense / bytes_of(d) for d in densities}
    numel = max(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    b = index_bytes(_index_dtype(numel))
    line = (
        f"memory bound: per active coordinate 2 values (loc, scale) x (value + 2 Adam moments) "
        f"x 4 B = 24 B plus a {b} B index ({_index_dtype(numel)} for a layer of {numel} "
        f"weights), against 24 B per weight for dense AutoNormal, so the ratio is at most "
        f"24 / (density x {24 + b}) = {24 / (0.1 * (24 + b)):.2f}x at density 0.1: 10x at "
        f"exactly density 0.1 needs a zero-byte index, unreachable with any explicit index"
        + (f" (an int16 CSR index, 2 B, would give {24 / (0.1 * 26):.2f}x)" if b > 2 else "")
        + f". 10x needs density <= "
        f"{2.4 / (24 + b):.4f}. Exact guide+Adam bytes of the {'-'.join(map(str, sizes))} "
        f"digits MLP, dense / sparse: "
        + ", ".join(f"density {d}: {r:.2f}x" for d, r in ratios.items())
    )
    report.add_note(line)
    print(line, flush=True)
    return ratios


def scatter_microbenchmark(report, *, out_features, in_features, batch, rounds=10):
    """Ways to turn k active values into a layer's weights, forward + backward."""
    torch.manual_seed(0)
    numel = out_features * in_features
    x = torch.randn(batch, in_features)
    lines = []
    shape = (out_features, in_features)
    for density in DENSITIES:
        k = int(density * numel)
        index = torch.randperm(numel)[:k].sort().values
        values = torch.randn(k, requires_grad=True)
        rows2d = torch.stack([index // in_features, index % in_features])

        def scatter(values=values, index=index):
            w = values.new_zeros(numel).scatter(0, index, values)
            (x @ w.view(shape).T).sum().backward()

        def index_put(values=values, index=index):
            w = values.new_zeros(numel).index_put((index,), values)
            (x @ w.view(shape).T).sum().backward()

        # A CSR-style index: int16 column within the row + int32 row pointers (2 B per
        # coordinate instead of 4), decoded to flat indices before the same scatter.
        crow = torch.zeros(out_features + 1, dtype=torch.int32)
        crow[1:] = torch.bincount(rows2d[0], minlength=out_features).cumsum(0)
        col16 = rows2d[1].to(torch.int16)
        row_ids = torch.arange(out_features)
        index32 = index.to(torch.int32)

        def scatter_int32(values=values, index32=index32):  # what the guide does
            w = values.new_zeros(numel).scatter(0, index32.long(), values)
            (x @ w.view(shape).T).sum().backward()

        def csr_int16_scatter(values=values, crow=crow, col16=col16, k=k, row_ids=row_ids):
            rows = torch.repeat_interleave(row_ids, crow.diff().long(), output_size=k)
            flat = rows * in_features + col16.long()
            w = values.new_zeros(numel).scatter(0, flat, values)
            (x @ w.view(shape).T).sum().backward()

        def coo_to_dense(values=values, rows2d=rows2d):
            w = torch.sparse_coo_tensor(rows2d, values, shape)
            (x @ w.to_dense().T).sum().backward()

        def sparse_matmul(values=values, rows2d=rows2d):
            w = torch.sparse_coo_tensor(rows2d, values, shape)
            torch.sparse.mm(w, x.T).sum().backward()

        fns = (scatter, scatter_int32, csr_int16_scatter, index_put, coo_to_dense, sparse_matmul)
        times = {fn.__name__: [] for fn in fns}
        for _ in range(rounds):  # interleaved rounds; the minimum is robust to the machine's load
            for fn in fns:
                times[fn.__name__] += time_call(fn, warmup=2, repeats=10).times
        mins = {name: 1e6 * min(ts) for name, ts in times.items()}
        medians = {name: 1e6 * statistics.median(ts) for name, ts in times.items()}
        lines.append(
            f"weights of a {out_features}x{in_features} layer at density {density}, with a "
            f"{batch}x{in_features} matmul, forward+backward (min / median us): "
            + ", ".join(f"{k} {mins[k]:.0f} / {medians[k]:.0f}" for k in mins)
            + "; the int16 CSR index costs "
            f"{mins['csr_int16_scatter'] / mins['scatter_int32']:.3f}x (min) / "
            f"{medians['csr_int16_scatter'] / medians['scatter_int32']:.3f}x (median) of "
            "the guide's int32 flat index"
        )
    for line in lines:
        report.add_note(line)
        print(line, flush=True)


def _extra_args(argv):
    """Options beyond the harness's: seeds, predictive draws, the weight prior."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "--num-seeds",
        type=int,
        default=None,
        help="seeds (data split, init, training); default 3, 1 with --quick",
    )
    parser.add_argument(
        "--num-samples",
        type=int,
        default=None,
        help=f"posterior predictive draws per test set (default {NUM_SAMPLES})",
    )
    parser.add_argument(
        "--prior-scale",
        default=PRIOR_SCALE,
        help="'fan_in' or a float: the N(0, s^2) weight prior of both guides",
    )
    return parser.parse_known_args(argv)


def main(argv=None):
    extra, rest = _extra_args(argv)
    args = parse_args("ssvi", __doc__, rest)
    given = sys.argv[1:] if argv is None else argv
    args.command = " ".join(["python benchmarks/ssvi.py", *given])
    warnings.filterwarnings("ignore", message="Sparse invariant checks")
    prior = extra.prior_scale if extra.prior_scale == "fan_in" else float(extra.prior_scale)
    num_seeds = extra.num_seeds or (1 if args.quick else 3)
    seeds = [args.seed + k for k in range(num_seeds)]
    num_samples = extra.num_samples or NUM_SAMPLES
    if args.quick:
        digits = dict(hidden=[128, 128], num_steps=600, batch_size=256, rounds=3)
        diabetes = dict(hidden=[64, 64], num_steps=600, batch_size=None, rounds=3)
    else:
        digits = dict(hidden=[256, 256], num_steps=2000, batch_size=256, rounds=4)
        diabetes = dict(hidden=[128, 128], num_steps=2000, batch_size=None, rounds=4)
    # Each guide keeps its own parameters, so that the trained guides can be timed
    # side by side (Pyro's global parameter store keys them by the guide's class name).
    pyro.settings.set(module_local_params=True)
    # The default prior writes results/ssvi.md; another prior its own file.
    name = "ssvi" if extra.prior_scale == PRIOR_SCALE else f"ssvi_prior_{extra.prior_scale}"
    report = Report(name, quick=args.quick, command=args.command)
    start = time.perf_counter()
    per_seed = {"digits": [], "diabetes": []}
    for seed in seeds:
        for task, config in (("digits", digits), ("diabetes", diabetes)):
            rows = run_task(task, seed=seed, num_samples=num_samples, prior_scale=prior, **config)
            per_seed[task].append(rows)
            for density, row in rows.items():
                print(
                    f"seed {seed} {task} {density or 'AutoNormal'}: "
                    + ", ".join(f"{k} {v:.4g}" for k, v in row.items()),
                    flush=True,
                )
    results = {task: aggregate(task, runs) for task, runs in per_seed.items()}
    for rows in results.values():
        for row in rows.values():
            report.add_row({k: v for k, v in row.items() if not k.startswith("_")})
    sizes = [64, *digits["hidden"], 10]
    memory_bound_notes(report, sizes)
    scatter_microbenchmark(
        report, out_features=digits["hidden"][1], in_features=digits["hidden"][0], batch=256
    )
    dense, sparse = results["digits"][None], results["digits"][0.1]
    sparse05 = results["digits"][0.05]

    def mean(row, key):
        return statistics.fmean(row["_" + key])

    ece_gaps = [s - d for s, d in zip(sparse["_ECE"], dense["_ECE"])]
    checks = {
        ">= 10x fewer variational params": dense["var. params"] / sparse["var. params"] >= 10,
        ">= 10x less guide+optimizer memory": dense["guide+optim KiB"] / sparse["guide+optim KiB"]
        >= 10,
        "accuracy within 1.5 points": mean(dense, "accuracy") - mean(sparse, "accuracy") <= 0.015,
        "NLL within 10%": mean(sparse, "NLL") <= 1.1 * mean(dense, "NLL"),
        "ECE <= dense + 0.02": statistics.fmean(ece_gaps) <= 0.02,
        "time/step <= dense": sparse["ms/step"] <= dense["ms/step"],
        "time/step at 0.05 < dense": sparse05["ms/step"] < dense["ms/step"],
    }
    for task, rows in results.items():
        d, s = rows[None], rows[0.1]
        gaps = [b - a for a, b in zip(d["_ECE"], s["_ECE"])]
        report.add_note(
            f"{task}, density 0.1 vs dense: {d['var. params'] / s['var. params']:.1f}x fewer "
            f"variational params, {d['guide+optim KiB'] / s['guide+optim KiB']:.2f}x less "
            f"guide+optimizer memory, {d['ms/step'] / s['ms/step']:.2f}x time per step; "
            f"ECE(sparse) - ECE(dense) per seed: {', '.join(f'{g:+.4f}' for g in gaps)} "
            f"(mean {mean_sd(gaps)})"
        )
    report.add_note(
        "issue targets on digits at density 0.1 (means over seeds): "
        + "; ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in checks.items())
    )
    report.add_note(
        f"{num_seeds} seed(s) {', '.join(map(str, seeds))}: each seed has its own train/test "
        f"split, initialization and minibatches; accuracy / RMSE / NLL / ECE are mean ± sd over "
        f"seeds, from {num_samples} posterior predictive draws per test set. Prior on every "
        f"weight and bias: N(0, {'1/fan_in' if prior == 'fan_in' else f'{prior:g}^2'}), the same "
        "for both guides. Diabetes ECE is the calibration error of the predictive quantiles."
    )
    report.add_note(
        "guide+optim KiB counts the guide's parameters, its index buffers (int16/int32) and "
        "Adam's state tensors exactly; gradients (one more copy of the parameters) are not "
        "counted. ms/step: median of one SVI step of each trained guide, the guides timed in "
        "interleaved rounds, averaged over seeds; train s: the whole training run, subspace "
        "updates included. The machine's 2 cores were shared with other jobs, so times are "
        "noisy."
    )
    report.add_note(f"total benchmark time {time.perf_counter() - start:.0f} s")
    report.write(
        headline=(
            f"digits, density 0.1 vs dense AutoNormal ({num_seeds} seeds): "
            f"{dense['var. params'] / sparse['var. params']:.1f}x fewer variational params, "
            f"{dense['guide+optim KiB'] / sparse['guide+optim KiB']:.2f}x less guide+optimizer "
            f"memory, accuracy {sparse['accuracy']} vs {dense['accuracy']}, "
            f"ECE {sparse['ECE']} vs {dense['ECE']}, "
            f"{dense['ms/step'] / sparse['ms/step']:.2f}x time per step"
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
