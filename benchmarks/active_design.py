"""Active causal discovery: experiments chosen by expected information gain against AIT,
random experiments and more observational rows, same run, same hidden systems.

The protocol of CBED (Tigas et al., "Interventions, Where and How?", NeurIPS 2022):
linear Gaussian ER graphs (one or two expected parents per node) with unequal noise,
50 observational rows to start, then rounds of 2 experiments of 10 rows each, perfect
interventions from :class:`pyrostruct.causal.datasets.LinearSEMEnvironment`. Every
strategy runs :class:`pyrostruct.causal.ActiveLearner` (``discover`` refits warm-started
from the previous order) on the same system with the same outcome noise:

- ``eig``: single-node experiments at 2 sd above the mean, by expected information gain
  (``design_posterior="auto"``: on the variational and the exact posterior pooled up to
  12 nodes, on the variational one above);
- ``eig-fit``: the same, chosen on the variational posterior alone (d <= 12 only; above
  it is ``eig``);
- ``eig-multi``: sets of up to 2 nodes (from the 8 best single nodes) at 1 or 2 sd;
- ``ait``: AIT's discrepancy score (Scherrer et al. 2021);
- ``random``: random single-node experiments;
- ``observational``: 20 more observational rows per round.

Reported per round (means over seeds): the posterior's expected SHD to the truth, the
AUPRC of its edge probabilities, seconds per round (fit and design), one thread.

    python benchmarks/active_design.py --threads 1            # d = 10, 20; 5 seeds; 10 rounds
    python benchmarks/active_design.py --threads 1 --quick    # d = 10, ER1; 2 seeds; 5 rounds
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import RESULTS_DIR, Report, parse_args  # noqa: E402

STRATEGIES = ("eig", "eig-fit", "eig-multi", "ait", "random", "observational")


def run(strategy, d, parents, seed, rounds):
    from pyrostruct.causal import ActiveLearner
    from pyrostruct.causal.datasets import LinearSEMEnvironment

    lab = LinearSEMEnvironment.random(d, edges_per_node=parents, seed=seed)
    start = lab.observe(50)
    env = LinearSEMEnvironment(lab.weights, lab.noise_scales, lab.names, seed=seed + 1000)
    kwargs = {"strategy": strategy}
    acquire = env.acquire
    if strategy == "eig-fit":
        kwargs = {"strategy": "eig", "design_posterior": "fit"}
    elif strategy == "eig-multi":
        kwargs = {"strategy": "eig",
                  "design": {"max_targets_per_experiment": 2, "values": [1.0, 2.0]}}  # fmt: skip
    elif strategy == "observational":
        kwargs = {"strategy": "random"}

        def acquire(batch):
            return env.observe(int(batch["samples"].sum()))

    learner = ActiveLearner(start, acquire, batch_size=2, samples_per_experiment=10,
                            truth=lab.adjacency, seed=seed, **kwargs)  # fmt: skip
    return learner.run(rounds)


def main() -> None:
    args = parse_args("active_design", __doc__)
    report = Report("active_design", quick=args.quick, command=args.command)
    cases = [(10, 1.0)] if args.quick else [(10, 1.0), (10, 2.0), (20, 1.0), (20, 2.0)]
    seeds = [args.seed + k for k in range(2 if args.quick else 5)]
    rounds = 5 if args.quick else 10
    shown = [0, 1, 2, 3, 5] if args.quick else [0, 1, 2, 3, 5, 10]
    warnings.simplefilter("ignore")
    run("eig", 5, 1.0, 0, 1)  # warm-up, untimed
    curves = {}
    for d, parents in cases:
        for strategy in STRATEGIES:
            if strategy == "eig-fit" and d > 12:
                continue
            histories = [run(strategy, d, parents, seed, rounds) for seed in seeds]
            shd = np.mean([h["expected_shd"].to_numpy() for h in histories], 0)
            auprc = np.mean([h["auprc"].to_numpy() for h in histories], 0)
            seconds = np.mean([h["seconds"].to_numpy()[:-1].mean() for h in histories])
            curves[(d, parents, strategy)] = (shd, auprc)
            report.add_row(
                {"d": d, "graph": f"ER{int(parents)}", "strategy": strategy, "seeds": len(seeds),
                 **{f"E-SHD r{r}": shd[r] for r in shown},
                 **{f"AUPRC r{r}": auprc[r] for r in shown},
                 "s/round": seconds}
            )  # fmt: skip
    _plot(curves, cases, rounds, "active_design-quick" if args.quick else "active_design")
    report.add_note(
        "E-SHD: expected structural Hamming distance of the posterior (500 draws) to the "
        "true DAG; round 0 is the fit on the 50 observational rows; each round adds 20 rows."
    )
    report.write(headline=_headline(curves, cases, rounds))


def _headline(curves, cases, rounds) -> str:
    parts = []
    for d, parents in cases:
        eig, _ = curves[(d, parents, "eig")]
        rnd, rnd_auprc = curves[(d, parents, "random")]
        reach = next((r for r in range(rounds + 1) if eig[r] <= rnd[rounds]), None)
        auprc_wins = sum(
            curves[(d, parents, "eig")][1][r] >= rnd_auprc[r] for r in range(1, rounds + 1)
        )
        parts.append(
            f"d={d} ER{int(parents)}: eig reaches random's round-{rounds} E-SHD "
            f"({rnd[rounds]:.2f}) at round {reach}, AUPRC >= random in {auprc_wins}/{rounds}"
        )
    return "; ".join(parts)


def _plot(curves, cases, rounds, name) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(cases), figsize=(4 * len(cases), 3.2), squeeze=False)
    for ax, (d, parents) in zip(axes[0], cases):
        for strategy in STRATEGIES:
            if (d, parents, strategy) not in curves:
                continue
            ax.plot(range(rounds + 1), curves[(d, parents, strategy)][0], marker=".",
                    label=strategy)  # fmt: skip
        ax.set_title(f"d = {d}, ER{int(parents)}")
        ax.set_xlabel("round")
        ax.set_ylabel("expected SHD")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS_DIR / f"{name}.png", dpi=110)


if __name__ == "__main__":
    main()
