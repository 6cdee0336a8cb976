"""Bayesian variable selection with spike-and-slab indicators, learned by Gumbel-softmax VI.

Model (``p`` candidate predictors, ``n`` observations)::

    include_j ~ Bernoulli(prior_inclusion)          j = 1..p   (spike-and-slab indicator)
    beta_j    ~ Normal(0, slab_scale)
    sigma     ~ HalfNormal(2)
    y_i       ~ Normal(x_i . (include * beta), sigma)

The ``p`` coupled binary indicators are out of reach of enumeration (2^p joint
states) and give a noisy score-function gradient. ``pyrostruct.relax`` turns
them into Binary Concrete variables (Maddison et al.; Jang et al., ICLR 2017),
and ``auto_discrete_continuous_guide`` builds a mean-field guide: relaxed
Bernoulli for ``include``, ``AutoNormal`` for ``beta`` and ``sigma``. The
posterior inclusion probabilities ``q(include_j = 1)`` select the predictors.

Usage::

    python models/spike_slab.py                 # p=200, n=300, 5 true predictors
    python models/spike_slab.py --p 500 --n 400 --hard
    python models/spike_slab.py --smoke         # tiny, a few seconds (used by the tests)
"""

from __future__ import annotations

import argparse
import json
import time

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import ClippedAdam

from pyrostruct.handlers import relax
from pyrostruct.infer import ExponentialSchedule
from pyrostruct.infer.autoguide import auto_discrete_continuous_guide
from pyrostruct.selection.datasets import make_sparse_regression


def make_data(p: int, n: int, k: int, *, seed: int = 0, noise: float = 1.0):
    """Standard-normal design, ``k`` non-zero coefficients of size 1..2 with random signs
    (:func:`pyrostruct.selection.datasets.make_sparse_regression`)."""
    return make_sparse_regression(n, p, k, noise=noise, seed=seed)


def model(X, y=None, prior_inclusion: float = 0.05, slab_scale: float = 2.0):
    """Spike-and-slab linear regression (see the module docstring)."""
    with pyro.plate("features", X.shape[1]):
        include = pyro.sample("include", dist.Bernoulli(prior_inclusion))
        beta = pyro.sample("beta", dist.Normal(0.0, slab_scale))
    sigma = pyro.sample("sigma", dist.HalfNormal(2.0))
    with pyro.plate("data", X.shape[0]):
        pyro.sample("y", dist.Normal(X @ (include * beta), sigma), obs=y)


def fit(X, y, *, steps: int, temperature, hard: bool = False, lr: float = 0.05, seed: int = 0):
    """Relaxed SVI; returns (guide, losses). ``temperature`` may be a schedule (stepped here)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    guide = auto_discrete_continuous_guide(model, temperature=temperature, hard=hard)
    relaxed = relax(model, temperature=temperature, hard=hard)
    svi = SVI(
        relaxed, guide, ClippedAdam({"lr": lr, "lrd": 0.1 ** (1 / max(steps, 1))}), Trace_ELBO()
    )
    losses = []
    for _ in range(steps):
        losses.append(svi.step(X, y))
        if hasattr(temperature, "step"):
            temperature.step()
    return guide, losses


def selection_scores(selected: set[int], truth: set[int]) -> dict[str, float]:
    tp = len(selected & truth)
    precision = tp / len(selected) if selected else 0.0
    recall = tp / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--p", type=int, default=200, help="candidate predictors")
    parser.add_argument("--n", type=int, default=300, help="observations")
    parser.add_argument("--k", type=int, default=5, help="truly non-zero predictors")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--temperature", type=float, default=0.5, help="final temperature")
    parser.add_argument("--anneal", action="store_true", help="anneal from 1.0 to --temperature")
    parser.add_argument(
        "--hard", action="store_true", help="straight-through (exact 0/1) indicators"
    )
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=str, default=None, help="write results to this JSON file")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes for a fast check")
    args = parser.parse_args(argv)
    if args.smoke:
        args.p, args.n, args.k, args.steps = 30, 80, 3, 300
    torch.set_num_threads(1)

    X, y, beta = make_data(args.p, args.n, args.k, seed=args.seed)
    truth = set(beta.nonzero().flatten().tolist())
    temperature = (
        ExponentialSchedule(initial=1.0, rate=5.0 / args.steps, minimum=args.temperature)
        if args.anneal
        else args.temperature
    )
    start = time.perf_counter()
    guide, losses = fit(
        X, y, steps=args.steps, temperature=temperature, hard=args.hard, lr=args.lr, seed=args.seed
    )
    seconds = time.perf_counter() - start

    probs = guide[0].probs()["include"]
    selected = set((probs > 0.5).nonzero().flatten().tolist())
    scores = selection_scores(selected, truth)
    sigma = guide.median(X, y)["sigma"].item()
    print(f"spike-and-slab selection: p={args.p}, n={args.n}, {args.k} true predictors")
    print(f"  true set:      {sorted(truth)}")
    print(f"  selected set:  {sorted(selected)} (posterior inclusion probability > 0.5)")
    print(
        "  inclusion probabilities of the true predictors: "
        + ", ".join(f"{probs[j]:.2f}" for j in sorted(truth))
    )
    print("  precision {precision:.2f}  recall {recall:.2f}  F1 {f1:.2f}".format(**scores))
    final_loss = sum(losses[-50:]) / min(50, len(losses))
    print(f"  noise scale (median): {sigma:.2f}  final loss: {final_loss:.1f}")
    print(f"  {args.steps} steps, {seconds:.1f} s ({1e3 * seconds / args.steps:.1f} ms per step)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "truth": sorted(truth),
                    "selected": sorted(selected),
                    "probs": probs.tolist(),
                    **scores,
                },
                f,
            )
    if not losses or not all(map(lambda v: v == v, losses)):
        print("error: the loss became NaN")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
