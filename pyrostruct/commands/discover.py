"""``pyrostruct discover DATA.csv --out graph.json``: causal discovery from a CSV file.

Reads a table (one column per variable, a header row), learns a posterior over
causal DAGs with :func:`pyrostruct.causal.discover`, and writes the consensus
DAG as networkx node-link JSON (edge attributes ``probability`` and ``weight``;
edge probabilities, DAG-distribution parameters, the ELBO trace and run
metadata under ``graph.pyrostruct``), optionally a PNG plot. ``--format``
(default: from the suffix of ``--out``, else JSON) writes GraphML, Graphviz DOT
or an edge-list CSV instead, and ``--cpdag`` the consensus DAG's CPDAG
(:mod:`pyrostruct.causal.export`). Outputs are written atomically after
training; ``--checkpoint FILE`` saves the state every 200 steps and resumes
from it when the same command is run again.
"""

from __future__ import annotations

import argparse

from pyrostruct.commands._types import (
    add_csv_arguments,
    check_workers,
    column_list,
    column_name,
    positive_float,
    positive_int,
    seed,
    step_count,
)

__all__ = ["add_subparser", "run"]


def add_subparser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "discover",
        help="learn a posterior over causal DAGs from a CSV file",
        description=__doc__.split("\n\n")[0],
    )
    add_csv_arguments(parser)
    parser.add_argument("--out", required=True, metavar="graph.json",
                        help="output file; its suffix (.json, .graphml, .dot or .gv, .csv) "
                        "names the format, any other suffix means JSON")  # fmt: skip
    parser.add_argument("--format", choices=["json", "graphml", "dot", "csv"],
                        help="output format (default: from the suffix of --out, else json); "
                        "only JSON can be read back as a result (--result of suggest)")  # fmt: skip
    parser.add_argument("--cpdag", action="store_true",
                        help="write the CPDAG of the consensus DAG (interventional essential "
                        "graph with --intervention-column): edges whose direction the data "
                        "cannot identify are undirected")  # fmt: skip
    parser.add_argument("--all-pairs", action="store_true",
                        help="CSV only: one row per ordered pair with a positive edge "
                        "probability, not only the consensus edges")  # fmt: skip
    parser.add_argument("--plot", metavar="graph.png",
                        help="also draw the consensus DAG (.png, .pdf or .svg)")  # fmt: skip
    parser.add_argument("--sem", choices=["linear", "mlp"], default="linear",
                        help="structural equations (default: linear)")  # fmt: skip
    parser.add_argument("--dag", choices=["order", "smooth"], default="order",
                        help="DAG family: order-then-edges or smooth orientations (COSMO, "
                             "shift 0: the same results as order)")  # fmt: skip
    parser.add_argument("--steps", type=step_count, metavar="N",
                        help="steps (500 analytic, 2000 straight-through)")  # fmt: skip
    parser.add_argument("--estimator", choices=["analytic", "straight-through", "exact"],
                        help="estimator (default: see discover's estimator; analytic for the "
                        "linear SEM with --dag order: edges integrated exactly given the "
                        "order; exact: the exact BGe posterior, up to 16 columns, no "
                        "training)")  # fmt: skip
    parser.add_argument("--seed", type=seed, default=0, help="random seed, 0 .. 2**32-1 (0)")
    parser.add_argument("--intervention-column", metavar="COL", type=column_name,
                        help="column naming the nodes intervened on in each row "
                        "(node names separated by ';', an empty cell for an observational "
                        "row)")  # fmt: skip
    parser.add_argument("--knowledge", metavar="FILE",
                        help="background knowledge, enforced exactly: Tetrad's knowledge file "
                        "(/knowledge with addtemporal, forbiddirect, requiredirect) or a CSV "
                        "with columns cause,effect,kind (forbidden or required)")  # fmt: skip
    parser.add_argument("--missing", choices=["error", "drop", "pairwise", "em"],
                        default="error",
                        help="empty or NA cells: refuse them (error, default), keep the "
                        "complete rows (drop), or fit the linear SEM to pairwise-complete "
                        "(pairwise) or maximum-likelihood (em) means and covariances")  # fmt: skip
    parser.add_argument("--transform", choices=["auto", "none", "copula"], default="auto",
                        help="Gaussian copula (rank-based normal scores) of every column: "
                        "auto (default) when a column is categorical or has at most 10 "
                        "distinct values, copula always, none never")  # fmt: skip
    parser.add_argument("--categorical", type=column_list, action="append", default=[],
                        metavar="COL[,COL...]",
                        help="columns holding categories (text allowed: two levels, or "
                        "numbers in their order); repeatable")  # fmt: skip
    parser.add_argument("--checkpoint", metavar="FILE", help="save/resume training state here")
    parser.add_argument("--noise", choices=["nonequal", "equal"], default="nonequal",
                        help="noise variances: one per node (default) or shared")  # fmt: skip
    parser.add_argument("--no-standardize", action="store_true",
                        help="keep the columns' scales (default: standardize)")  # fmt: skip
    parser.add_argument("--expected-edges", type=positive_float, metavar="M",
                        help="prior expected number of edges (default: columns)")  # fmt: skip
    parser.add_argument("--weight-prior", choices=["pmom", "normal"],
                        help="slab of the variational linear SEM's edge weights: the "
                        "non-local pMOM on standardized effects (default) or a normal "
                        "N(0, 1)")  # fmt: skip
    parser.add_argument("--threshold", type=positive_float, default=0.5,
                        help="adjacency probability for the consensus DAG (0.5)")  # fmt: skip
    parser.add_argument("--average-equivalent", action=argparse.BooleanOptionalAction,
                        default=None,
                        help="spread the posterior over (interventional) Markov equivalence "
                        "classes (default: when only the class is identified: linear SEM, "
                        "unequal noise)")  # fmt: skip
    parser.add_argument("--restarts", type=positive_int, default=1, metavar="R",
                        help="fits from R starts (the default order, then greedy searches from "
                        "random orders); the one with the highest ELBO is kept (1)")  # fmt: skip
    parser.add_argument("--executor", choices=["serial", "process", "ray"], default="serial",
                        help="where restarts run (serial)")  # fmt: skip
    parser.add_argument("--workers", type=positive_int, help="workers for process/ray")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from pyrostruct._io import check_output_paths, figure_format
    from pyrostruct.causal.discover import discover
    from pyrostruct.causal.export import output_format
    from pyrostruct.causal.knowledge import read_knowledge
    from pyrostruct.causal.restarts import restart_checkpoint
    from pyrostruct.data import read_csv
    from pyrostruct.errors import InputError

    outputs = {"--out": args.out, "--plot": args.plot, "--checkpoint": args.checkpoint}
    for r in range(1, args.restarts if args.checkpoint else 1):
        outputs[f"--checkpoint of restart {r}"] = restart_checkpoint(args.checkpoint, r)
    check_output_paths({"DATA.csv": args.data, "--knowledge": args.knowledge}, outputs)
    fmt = output_format(args.out, args.format, path_name="--out", format_name="--format")
    check_workers(args)
    if args.all_pairs and fmt != "csv":
        raise InputError(f"--all-pairs applies to the CSV edge list only; --out {args.out} "
                         f"is written as {fmt} (name it .csv or add --format csv)")  # fmt: skip
    if args.plot:
        figure_format(args.plot, flag="--plot")
    knowledge = read_knowledge(args.knowledge) if args.knowledge else None
    exclude = [args.intervention_column] if args.intervention_column else []
    categorical = [c for group in args.categorical for c in group]
    if args.intervention_column in categorical:
        raise InputError(
            f"--categorical {args.intervention_column}: that is the --intervention-column, "
            "which names the nodes intervened on in each row, not a variable"
        )
    frame = read_csv(
        args.data, exclude=exclude, sep=args.sep, decimal=args.decimal, categorical=categorical
    )
    result = discover(
        frame,
        sem=args.sem,
        dag=args.dag,
        steps=args.steps,
        estimator=args.estimator,
        seed=args.seed,
        interventions=args.intervention_column,
        knowledge=knowledge,
        missing=args.missing,
        transform=args.transform,
        categorical=categorical or None,
        standardize=not args.no_standardize,
        noise=args.noise,
        expected_edges=args.expected_edges,
        weight_prior=args.weight_prior,
        threshold=args.threshold,
        average_equivalent=args.average_equivalent,
        checkpoint=args.checkpoint,
        progress=not args.quiet,
        restarts=args.restarts,
        executor=args.executor,
        workers=args.workers,
    )
    result.metadata["source"] = str(args.data)
    if args.plot:
        result.plot(args.plot)
    result.save(args.out, format=fmt, cpdag=args.cpdag, all_pairs=args.all_pairs)
    graph = result.graph
    chosen = result.metadata.get("restart_chosen")
    undirected = ""
    if args.cpdag:
        count = sum(u for _, _, u in result.to_networkx(cpdag=True).edges(data="undirected")) // 2
        undirected = f", {count} undirected in its CPDAG"
    if result.exact is not None:
        fit = f"exact posterior, log evidence {result.metadata['log_evidence']:.6g}"
    else:
        elbo, stderr = result.metadata["elbo"], result.metadata["elbo_stderr"]
        fit = f"ELBO {elbo:.4g} +- {stderr:.2g} per row"
    table = _table_note(result.metadata)
    print(
        f"{graph.number_of_nodes()} nodes, {graph.number_of_edges()} edges in the consensus DAG"
        f"{undirected} ({fit}"
        + (f", restart {chosen + 1} of {args.restarts}" if chosen is not None else "")
        + f"){table}; wrote {args.out} ({fmt})"
        + (f" and {args.plot}" if args.plot else "")
    )
    return 0


def _table_note(metadata: dict) -> str:
    """What ``--missing`` and ``--transform`` did, for the summary line ("" if nothing)."""
    notes = []
    missing = metadata.get("missing", {})
    if missing.get("rows_dropped"):
        notes.append(f"{missing['rows_dropped']} of {missing['rows']} rows dropped")
    if missing.get("mode") in ("pairwise", "em") and missing.get("missing_cells"):
        notes.append(
            f"{missing['missing_cells']} missing cells, {missing['mode']} moments as "
            f"{missing['effective_rows']} rows"
        )
    copula = [k for k, v in metadata.get("transform", {}).items() if v != "none"]
    if copula:
        notes.append(f"copula transform of {len(copula)} columns")
    return "".join(f"; {note}" for note in notes)
