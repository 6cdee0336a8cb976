"""Choosing the weight prior of the ssvi benchmark on a validation split (never the test split).

Trains one guide (dense ``AutoNormal``, or ``AutoSparseSubspace`` with ``--density``)
on 80% of a seed's digits training split, with the ``N(0, s^2)`` (or
``N(0, 1/fan_in)``) prior on every weight and bias, and prints one JSON line of
validation accuracy, NLL, ECE and mean confidence on the other 20%, for each
number of posterior predictive draws in ``--samples``. The test split of
``benchmarks/ssvi.py`` is not touched.

    python benchmarks/ssvi_prior_sweep.py --prior 1.0 --seed 0 [--density 0.1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pyro
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
import bnn  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--density", type=float, default=None, help="default: dense AutoNormal")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prior", default="1.0", help="'fan_in' or a float s")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--samples", type=int, nargs="+", default=[1000])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pyro.settings.set(module_local_params=True)
    x_tr, y_tr, _, _ = bnn.load_data("digits", args.seed)
    perm = torch.randperm(len(x_tr), generator=torch.Generator().manual_seed(100 + args.seed))
    nv = len(x_tr) // 5
    xv, yv = x_tr[perm[:nv]], y_tr[perm[:nv]]
    xt, yt = x_tr[perm[nv:]], y_tr[perm[nv:]]
    prior = args.prior if args.prior == "fan_in" else float(args.prior)
    pyro.set_rng_seed(args.seed)
    model = bnn.BayesianMLP([64, *args.hidden, 10], prior_scale=prior)
    guide = bnn.make_guide(model, args.density, seed=args.seed)
    start = time.time()
    losses, _, _ = bnn.fit(
        model, guide, xt, yt, num_steps=args.steps, batch_size=256, seed=args.seed
    )
    out = {
        "density": args.density,
        "seed": args.seed,
        "prior": args.prior,
        "train_s": round(time.time() - start, 1),
        "loss": losses[-1],
    }
    for draws in args.samples:
        pyro.set_rng_seed(1000 + args.seed)
        m = bnn.evaluate(model, guide, xv, yv, num_samples=draws)
        row = {k: round(v, 4) for k, v in m.items() if k != "probs"}
        row["meanconf"] = round(m["probs"].max(-1).values.mean().item(), 4)
        out[f"val{draws}"] = row
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
