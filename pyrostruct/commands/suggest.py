"""``pyrostruct suggest DATA.csv --out design.csv``: which experiments to run next.

Takes the posterior over causal DAGs of a CSV table (a ``discover`` fit, or one that
``pyrostruct discover`` wrote, ``--result graph.json``, pooled with the exact posterior up
to 12 columns), ranks candidate perfect interventions by their expected information gain
about the graph (or AIT's score, or at random) with
:func:`pyrostruct.causal.suggest_interventions`, and writes the ranked candidates as
CSV, the chosen batch numbered in its ``batch`` column; optionally a plot of the
scores. Outputs are written atomically at the end.
"""

from __future__ import annotations

import argparse

from pyrostruct.commands._types import (
    add_csv_arguments,
    column_name,
    positive_int,
    seed,
    step_count,
)

__all__ = ["add_subparser", "run"]


def add_subparser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "suggest",
        help="rank the experiments that would tell most about the causal graph",
        description=__doc__.split("\n\n")[0],
    )
    add_csv_arguments(parser)
    parser.add_argument("--out", required=True, metavar="design.csv", help="output CSV table")
    parser.add_argument("--plot", metavar="design.png",
                        help="also plot the candidates' scores (.png, .pdf or .svg)")  # fmt: skip
    parser.add_argument("--result", metavar="graph.json",
                        help="the posterior of `pyrostruct discover` on the same data (default: "
                        "fit it now)")  # fmt: skip
    parser.add_argument("--intervention-column", metavar="COL", type=column_name,
                        help="column naming, per row, the nodes an experiment set (';'-joined; "
                        "empty: observational)")  # fmt: skip
    parser.add_argument("--posterior", choices=["auto", "fit", "exact", "both"],
                        default="auto",
                        help="the posterior to design on: discover's fit (or --result), the "
                        "exact one (up to 16 columns), both pooled, or auto: both up to 12 "
                        "columns, else the fit (auto)")  # fmt: skip
    parser.add_argument("--strategy", choices=["eig", "ait", "random"], default="eig",
                        help="expected information gain, AIT's score, or random (eig)")  # fmt: skip
    parser.add_argument("--batch-size", type=positive_int, default=1, metavar="B",
                        help="experiments to choose (1)")  # fmt: skip
    parser.add_argument("--max-targets", type=positive_int, default=1, metavar="K",
                        help="nodes set together in one experiment (1)")  # fmt: skip
    parser.add_argument("--targets", metavar="A,B,...",
                        help="the nodes that may be intervened on (default: all)")  # fmt: skip
    parser.add_argument("--samples", type=positive_int, default=10, metavar="N",
                        help="rows each experiment yields (10)")  # fmt: skip
    parser.add_argument("--dag-samples", type=positive_int, default=256, metavar="M",
                        help="posterior DAG draws (256)")  # fmt: skip
    parser.add_argument("--steps", type=step_count, metavar="N",
                        help="optimization steps of the fit (default: discover's)")  # fmt: skip
    parser.add_argument("--seed", type=seed, default=0, help="random seed, 0 .. 2**32-1 (0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run, api_names=API_NAMES)
    return parser


#: The flags that stand for suggest_interventions' parameters, for error messages.
API_NAMES = {
    "max_targets_per_experiment": "max_targets",
    "samples_per_experiment": "samples",
    "num_dag_samples": "dag_samples",
}


def run(args: argparse.Namespace) -> int:
    from pyrostruct._io import check_output_paths, figure_format
    from pyrostruct.causal.active import EXACT_DESIGN_NODES
    from pyrostruct.causal.design import suggest_interventions
    from pyrostruct.causal.discover import discover
    from pyrostruct.causal.exact import exact_posterior
    from pyrostruct.causal.result import load_result
    from pyrostruct.data import read_csv
    from pyrostruct.errors import InputError

    check_output_paths(
        {"DATA.csv": args.data, "--result": args.result}, {"--out": args.out, "--plot": args.plot}
    )
    if args.result and args.steps:
        raise InputError("--steps sets the fit's steps; with --result nothing is fitted")
    if args.result and args.posterior == "exact":
        raise InputError("--posterior exact computes the posterior from DATA.csv: drop --result")
    if args.posterior == "exact" and args.steps:
        raise InputError("--steps sets the fit's steps; with --posterior exact nothing is fitted")
    if args.plot:
        figure_format(args.plot, flag="--plot")
    exclude = [args.intervention_column] if args.intervention_column else []
    frame = read_csv(args.data, exclude=exclude, sep=args.sep, decimal=args.decimal)
    columns = [c for c in frame.columns if c not in exclude]
    # a name as written when a column has it (headers keep their spaces), else stripped
    targets = None if args.targets is None else [
        t if t in columns else t.strip() for t in args.targets.split(",")
    ]
    unknown = [t for t in targets or () if t not in columns]
    if unknown:  # before any fit
        raise InputError(f"--targets: unknown node(s) {unknown}; the columns are {columns}")
    kind = args.posterior
    if kind == "auto":
        kind = "both" if len(columns) <= EXACT_DESIGN_NODES else "fit"
    result = []
    if kind in ("exact", "both"):
        result.append(exact_posterior(frame, interventions=args.intervention_column))
    if kind in ("fit", "both") and args.result:
        fitted = load_result(args.result)
        if list(fitted.names) != columns:
            raise InputError(
                f"--result {args.result} was fitted on the columns {fitted.names}, "
                f"not on those of {args.data}"
            )
        result.insert(0, fitted)
    elif kind in ("fit", "both"):
        result.insert(0, discover(frame, interventions=args.intervention_column, steps=args.steps,
                                  seed=args.seed, progress=not args.quiet))  # fmt: skip
    design = suggest_interventions(
        result,
        frame,
        interventions=args.intervention_column,
        batch_size=args.batch_size,
        targets=targets,
        max_targets_per_experiment=args.max_targets,
        samples_per_experiment=args.samples,
        strategy=args.strategy,
        num_dag_samples=args.dag_samples,
        seed=args.seed,
        progress=not args.quiet,
    )
    if args.plot:
        import matplotlib.pyplot as plt

        ax = design.plot(args.plot)
        plt.close(ax.figure)
    design.to_csv(args.out)
    best = design.batch.iloc[0]
    gain = f"expected gain {best['gain']:.3g} nats, " if args.strategy == "eig" else ""
    print(
        f"next: {'; '.join(design.batch['experiment'])} ({gain}posterior ({kind}) entropy "
        f"{design.metadata['posterior_entropy']:.3g} nats over "
        f"{design.metadata['distinct_graphs']} graphs); wrote {args.out}"
        + (f" and {args.plot}" if args.plot else "")
    )
    return 0
