"""``pyrostruct select-components DATA.csv --family gmm|ppca --max K --out table.csv``.

Chooses the number of Gaussian-mixture components (``gmm``) or the rank of a
probabilistic PCA (``ppca``) by the log evidence of each count 1..K (ELBO and
importance-weighted bound with Monte Carlo error bars, successive halving),
with :func:`pyrostruct.selection.select_components`. Writes the evidence table
as CSV and optionally a PNG of the evidence per count; both are written
atomically after all fits, so a failed run leaves nothing behind.
"""

from __future__ import annotations

import argparse

from pyrostruct.commands._types import (
    add_csv_arguments,
    check_workers,
    positive_int,
    seed,
    step_count,
)

__all__ = ["add_subparser", "run"]


def add_subparser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "select-components",
        help="choose the number of mixture components or the PPCA rank by evidence",
        description=__doc__.split("\n\n")[0],
    )
    add_csv_arguments(parser)
    parser.add_argument("--family", choices=["gmm", "ppca"], required=True,
                        help="Gaussian mixture (components) or PPCA (rank)")  # fmt: skip
    parser.add_argument("--max", type=positive_int, required=True, metavar="K",
                        help="largest count to try (from 1, or --min)")  # fmt: skip
    parser.add_argument("--min", type=positive_int, default=1, metavar="K",
                        help="smallest count to try (1)")  # fmt: skip
    parser.add_argument("--out", required=True, metavar="table.csv", help="output CSV table")
    parser.add_argument("--plot", metavar="evidence.png",
                        help="also plot the evidence (.png, .pdf or .svg)")  # fmt: skip
    parser.add_argument("--executor", choices=["serial", "process", "ray"], default="serial",
                        help="where the fits run (serial)")  # fmt: skip
    parser.add_argument("--workers", type=positive_int, help="workers for process/ray")
    parser.add_argument("--steps", type=step_count, default=1000, help="SVI steps (1000)")
    parser.add_argument("--restarts", type=positive_int, default=2,
                        help="initializations per count (2)")  # fmt: skip
    parser.add_argument("--no-halving", action="store_true",
                        help="fit every count to the end (no successive halving)")  # fmt: skip
    parser.add_argument("--no-smc", action="store_true",
                        help="rank by the IWAE bound only, without the SMC estimate that "
                             "small tables (<= 100 values) otherwise get")  # fmt: skip
    parser.add_argument("--seed", type=seed, default=0, help="random seed, 0 .. 2**32-1 (0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from pyrostruct._io import check_output_paths, figure_format
    from pyrostruct.data import read_csv
    from pyrostruct.errors import InputError
    from pyrostruct.selection.families import select_components

    if args.min > args.max:
        raise InputError(f"--min {args.min} is larger than --max {args.max}")
    check_output_paths({"DATA.csv": args.data}, {"--out": args.out, "--plot": args.plot})
    if not str(args.out).lower().endswith((".csv", ".txt")):
        raise InputError(f"--out {args.out}: the evidence table is written as CSV; name it .csv")
    check_workers(args)
    if args.plot:
        figure_format(args.plot, flag="--plot")
    frame = read_csv(args.data, sep=args.sep, decimal=args.decimal)
    result = select_components(
        frame,
        args.family,
        args.max,
        min_components=args.min,
        steps=args.steps,
        num_restarts=args.restarts,
        executor=args.executor,
        max_workers=args.workers,
        halving=None if args.no_halving else (0.25, 0.5),
        evidence=("elbo", "iwae") if args.no_smc else ("elbo", "iwae", "smc"),
        seed=args.seed,
        progress=not args.quiet,
    )
    if args.plot:
        what = "components" if args.family == "gmm" else "rank"
        fig = result.plot(args.plot, title=f"{args.family}: best {what} = {result.best}")
        import matplotlib.pyplot as plt

        plt.close(fig)
    result.to_csv(args.out)
    saved = 100 * result.savings["fraction_saved"]
    what = "components" if args.family == "gmm" else "rank"
    table = result.table.set_index("candidate")
    method = table.loc[result.best, "evidence_method"]  # the best's own: SMC can fail for one
    print(
        f"best {what}: {result.best} (posterior probability "
        f"{table.loc[result.best, 'posterior_prob']:.3f}, ranked by {method}); "
        f"successive halving saved {saved:.0f}% "
        f"of SVI steps; wrote {args.out}" + (f" and {args.plot}" if args.plot else "")
    )
    return 0
