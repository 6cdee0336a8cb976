"""Gumbel-Rao's cost and variance as its number of conditional draws grows.

On the categorical VAE of ``discrete_estimators.py`` (8 latent variables x 8
categories, batch 100, one thread): the time of a training step with
``estimator="straight-through"`` and with ``"gumbel-rao"`` at 3, 5, 10 and 30 draws,
the estimators' steps interleaved in blocks of 20 (so that a change of the machine's
load hits them alike; median over blocks), and the gradient noise-to-signal ratio of
the encoder's parameters (``sum Var / |mean|^2`` over 200 gradients of one batch) on a
model trained 300 steps, at temperatures 0.1, 0.5 and 1.0.

    python benchmarks/gumbel_rao_draws.py --threads 1
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import discrete_estimators as vae_bench  # noqa: E402
from harness import Report, parse_args  # noqa: E402

from pyrostruct.distributions.estimators import DEFAULT_NUM_RAO_SAMPLES  # noqa: E402

DRAWS = (3, 5, 10, 30)
VARIANTS = {"straight-through": None, **{f"gumbel-rao {k}": k for k in DRAWS}}


def loss(vae, x, tau, name):
    from pyrostruct.distributions import ConcreteOneHotCategorical

    draws = VARIANTS[name]
    kw = {"estimator": "straight-through"}
    if draws is not None:
        kw = {"estimator": "gumbel-rao", "num_rao_samples": draws}
    logits = vae.logits(x)
    z = ConcreteOneHotCategorical(tau, logits=logits, **kw).rsample()
    return (vae_bench.kl_to_uniform(logits) - vae.log_likelihood(x, z)).mean()


def step_times(train, blocks, per_block=20, tau=0.5):
    vaes = {name: vae_bench.VAE() for name in VARIANTS}
    optims = {name: torch.optim.Adam(v.parameters(), lr=1e-3) for name, v in vaes.items()}
    batches = torch.Generator().manual_seed(0)
    times = {name: [] for name in VARIANTS}
    for _ in range(blocks):
        for name in VARIANTS:
            start = time.perf_counter()
            for _ in range(per_block):
                x = train[torch.randint(len(train), (vae_bench.BATCH,), generator=batches)]
                optims[name].zero_grad()
                loss(vaes[name], x, tau, name).backward()
                optims[name].step()
            times[name].append(1000 * (time.perf_counter() - start) / per_block)
    return {name: statistics.median(t[blocks // 6 :]) for name, t in times.items()}


def noise_to_signal(train, tau, gradients):
    torch.manual_seed(0)
    vae = vae_bench.VAE()
    optim = torch.optim.Adam(vae.parameters(), lr=1e-3)
    batches = torch.Generator().manual_seed(0)
    for _ in range(300):  # a partly trained model
        x = train[torch.randint(len(train), (vae_bench.BATCH,), generator=batches)]
        optim.zero_grad()
        loss(vae, x, 0.5, "straight-through").backward()
        optim.step()
    x = train[: vae_bench.BATCH]
    out = {}
    for name in VARIANTS:
        grads = []
        for _ in range(gradients):
            vae.zero_grad()
            loss(vae, x, tau, name).backward()
            grads.append(torch.cat([p.grad.flatten() for p in vae.encoder.parameters()]))
        g = torch.stack(grads)
        out[name] = float(g.var(0).sum() / g.mean(0).pow(2).sum())
    return out


def main() -> None:
    args = parse_args("gumbel_rao_draws", __doc__)
    report = Report("gumbel_rao_draws", quick=args.quick, command=args.command)
    train = vae_bench.load_data()[0]
    ms = step_times(train, blocks=30 if args.quick else 60)
    variance = {
        tau: noise_to_signal(train, tau, 100 if args.quick else 200) for tau in (0.1, 0.5, 1.0)
    }
    for name in VARIANTS:
        report.add_row(
            {"estimator": name, "ms/step": ms[name],
             "x straight-through": ms[name] / ms["straight-through"],
             **{f"noise/signal tau {tau}": variance[tau][name] for tau in variance}}
        )  # fmt: skip
    ratio = ms[f"gumbel-rao {DEFAULT_NUM_RAO_SAMPLES}"] / ms["straight-through"]
    report.write(
        headline=f"gumbel-rao with its default {DEFAULT_NUM_RAO_SAMPLES} draws: "
        f"{ratio:.2f}x straight-through"
    )


if __name__ == "__main__":
    main()
