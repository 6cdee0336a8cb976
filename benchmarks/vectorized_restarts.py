"""Restarts of model selection: vectorized along a restart plate vs fitted one by one.

The K = 1..8 Gaussian-mixture sweep of ``benchmarks/model_selection.py`` (n = 1000,
5-D, 4 clusters, k-means++ inits) with ``num_restarts`` in {1, 2, 4}, timed in
the same run with ``select(..., vectorize_restarts=False)`` (one SVI run per
restart, the sequential path) and ``vectorize_restarts=True`` (the restarts of
a candidate batched along an extra outermost plate, one SVI run per
candidate). Serial executor, one torch thread, no successive halving (so that
every restart runs every step), then once more with halving; a short untimed
warm-up sweep first.

The headline is the cost of R restarts relative to one restart, in each mode.
``--quick`` uses 150 steps and n = 400.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from harness import Report, parse_args  # noqa: E402

from pyrostruct.selection import make_gmm_data, select_components  # noqa: E402

FAST = dict(elbo_particles=200, iwae_particles=50, iwae_repeats=4)


def sweep(x, steps, restarts, vectorize, halving, seed):
    tic = time.perf_counter()
    result = select_components(
        x, "gmm", 8, steps=steps, num_restarts=restarts, seed=seed, halving=halving,
        vectorize_restarts=vectorize, **FAST,
    )  # fmt: skip
    return time.perf_counter() - tic, result


def main() -> int:
    args = parse_args("vectorized_restarts", __doc__)
    torch.set_num_threads(args.threads or 1)
    report = Report("vectorized_restarts", quick=args.quick, command=args.command)
    steps, n = (150, 400) if args.quick else (400, 1000)
    x, _ = make_gmm_data(n, 4, 5, separation=6.0, seed=args.seed)
    for vectorize in [False, True]:  # warm-up: first calls (imports, allocator) not timed
        sweep(x, 10, 2, vectorize, None, args.seed)
    base = {}
    for halving in [None, (0.25, 0.5)]:
        for restarts in [1, 2, 4]:
            for vectorize in [False, True]:
                if restarts == 1 and vectorize:
                    continue  # one restart: nothing to vectorize (same path)
                seconds, result = sweep(x, steps, restarts, vectorize, halving, args.seed)
                if restarts == 1:
                    base[halving] = seconds
                report.add_row({
                    "halving": "yes" if halving else "no",
                    "restarts": restarts,
                    "mode": "vectorized" if vectorize else "sequential",
                    "wall s": seconds,
                    "x 1 restart": seconds / base[halving],
                    "picked K": result.best,
                    "SVI steps run": result.savings["steps_run"],
                })  # fmt: skip
    rows = {(r["halving"], r["restarts"], r["mode"]): r for r in report.rows}
    report.add_note(
        f"K = 1..8 GMM sweep, n = {n}, 5-D, 4 clusters, {steps} steps, serial executor, "
        "1 torch thread; 'x 1 restart' = wall time / the same sweep with num_restarts=1"
    )
    headline = (
        "no halving, 4 restarts: sequential "
        f"{rows[('no', 4, 'sequential')]['x 1 restart']:.2f}x one restart, vectorized "
        f"{rows[('no', 4, 'vectorized')]['x 1 restart']:.2f}x"
    )
    report.write(headline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
