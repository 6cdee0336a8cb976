"""Gradient estimators for discrete latents on a categorical VAE (issue 21).

A categorical VAE on binarized 8x8 digits (scikit-learn ``load_digits``, pixel
> 8 is 1; 1300 training, 200 validation and 297 test images, fixed split): ``L = 8`` latent
variables of ``K = 8`` categories, uniform prior, encoder and decoder MLPs with
one hidden layer of 128 units. The encoder's logits give
``q(z | x) = prod_l Cat(z_l | softmax(phi_l(x)))``; the decoder gives Bernoulli
pixel probabilities from the concatenated one-hots.

Training loss (per image): ``-log p(x | z) + KL(q(z | x) || p(z))`` with the KL of
the *categorical* distributions in closed form (Jang et al. 2017 do the same) and
one sample ``z`` from :class:`~pyrostruct.distributions.ConcreteOneHotCategorical`
with ``estimator=``: ``gumbel-softmax`` (the decoder sees the soft sample),
``straight-through``, ``reinmax``, ``gumbel-rao`` (its default 5 conditional draws), so the
estimators differ only in the gradient of the reconstruction term w.r.t. the
encoder. Adam (lr 1e-3), batches of 100, the same seeds, data order and
initialization for every estimator.

Columns:

- ``test ELBO``: the discrete ELBO (hard samples for every estimator, 10 samples
  per image; closed-form KL), nats per image, mean over seeds ± the seed-to-seed
  standard deviation; higher is better;
- ``train ELBO``: the same on the training images at the end: what the estimator's
  gradient optimizes (on 1300 images the 10000-step fits overfit, so the test ELBO
  also measures the generalization gap);
- ``test ELBO, early-stopped``: the test ELBO of the parameters with the best
  validation ELBO (checked every 500 steps);
- ``test IWAE``: the importance-weighted bound with 50 hard samples per image;
- ``grad var``: variance of the encoder's gradient over 32 draws of ``z`` on one
  fixed batch at the final parameters, summed over coordinates and divided by
  the squared norm of its mean (lower is better; a relative measure, comparable
  across estimators at the same temperature);
- ``ms/step``: training wall time per step (1 thread).

Second problem (``problem = spike-slab``): the spike-and-slab variable selection
of the Gumbel tutorial and ``benchmarks/gumbel.py`` (p = 100 predictors, n = 200,
5 true ones; ``relax(model, estimator=...)`` with
``auto_discrete_continuous_guide(model, estimator=...)``, 800 Adam steps at lr
0.05): F1 of ``{j : q(include_j) > 0.5}`` (mean ± sd over data seeds 0..2) and
ms per SVI step. Its ``gumbel-softmax`` row is the tutorial's default path.

``--quick`` trains 1500 steps (about 3 minutes on 1 thread), the full run 10000.
"""

from __future__ import annotations

import copy
import math
import statistics
import sys
import time
from pathlib import Path

import pyro
import torch
import torch.nn.functional as F
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Report, load_script, parse_args  # noqa: E402

from pyrostruct.distributions import ConcreteOneHotCategorical  # noqa: E402
from pyrostruct.handlers import relax  # noqa: E402
from pyrostruct.infer.autoguide import auto_discrete_continuous_guide  # noqa: E402
from pyrostruct.selection.datasets import make_sparse_regression  # noqa: E402

ESTIMATORS = ("gumbel-softmax", "straight-through", "reinmax", "gumbel-rao")
TEMPERATURES = (0.1, 0.5, 1.0)
SEEDS = (0, 1, 2)
LATENTS, CATEGORIES, HIDDEN, BATCH = 8, 8, 128, 100
VALID, TRAIN = 1300, 1500  # images [0, 1300) train, [1300, 1500) validation, the rest test
EVAL_EVERY = 500  # steps between two validation ELBOs (early stopping)


def load_data():
    from sklearn.datasets import load_digits

    images = torch.tensor(load_digits().data, dtype=torch.float32)
    x = (images > 8).float()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1234))
    x = x[order]
    return x[:VALID], x[VALID:TRAIN], x[TRAIN:]


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(64, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, LATENTS * CATEGORIES)
        )
        self.decoder = nn.Sequential(
            nn.Linear(LATENTS * CATEGORIES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 64)
        )

    def logits(self, x):
        return self.encoder(x).view(*x.shape[:-1], LATENTS, CATEGORIES)

    def log_likelihood(self, x, z):
        pixel_logits = self.decoder(z.flatten(-2))
        return -F.binary_cross_entropy_with_logits(
            pixel_logits, x.expand_as(pixel_logits), reduction="none"
        ).sum(-1)


def kl_to_uniform(logits):
    log_q = logits.log_softmax(-1)
    return (log_q.exp() * (log_q + math.log(CATEGORIES))).sum((-2, -1))


def loss_fn(vae, x, tau, estimator):
    logits = vae.logits(x)
    z = ConcreteOneHotCategorical(tau, logits=logits, estimator=estimator).rsample()
    return (kl_to_uniform(logits) - vae.log_likelihood(x, z)).mean()


@torch.no_grad()
def evaluate(vae, x, num_elbo=10, num_iwae=50):
    logits = vae.logits(x)
    log_q = logits.log_softmax(-1)
    kl = kl_to_uniform(logits)
    draws = torch.distributions.OneHotCategorical(logits=logits)
    elbo = (vae.log_likelihood(x, draws.sample((num_elbo,))).mean(0) - kl).mean().item()
    z = draws.sample((num_iwae,))
    log_w = (
        vae.log_likelihood(x, z)
        - LATENTS * math.log(CATEGORIES)  # log p(z), uniform
        - (z * log_q).sum((-2, -1))
    )
    iwae = (log_w.logsumexp(0) - math.log(num_iwae)).mean().item()
    return elbo, iwae


def gradient_variance(vae, x, tau, estimator, draws=32):
    grads = []
    for _ in range(draws):
        vae.zero_grad()
        loss_fn(vae, x, tau, estimator).backward()
        grads.append(torch.cat([p.grad.flatten() for p in vae.encoder.parameters()]))
    g = torch.stack(grads)
    return (g.var(0).sum() / g.mean(0).pow(2).sum()).item()


def run(estimator, tau, seed, steps, train, valid, test):
    torch.manual_seed(seed)
    vae = VAE()
    optim = torch.optim.Adam(vae.parameters(), lr=1e-3)
    batches = torch.Generator().manual_seed(seed)
    seconds, best = 0.0, (-math.inf, None)
    for step in range(1, steps + 1):
        start = time.perf_counter()
        index = torch.randint(len(train), (BATCH,), generator=batches)
        optim.zero_grad()
        loss_fn(vae, train[index], tau, estimator).backward()
        optim.step()
        seconds += time.perf_counter() - start
        if step % EVAL_EVERY == 0 or step == steps:
            with torch.random.fork_rng():
                torch.manual_seed(20_000 + seed)
                valid_elbo = evaluate(vae, valid)[0]
            if valid_elbo > best[0]:
                best = (valid_elbo, copy.deepcopy(vae.state_dict()))
    torch.manual_seed(10_000 + seed)
    elbo, iwae = evaluate(vae, test)
    train_elbo = evaluate(vae, train)[0]
    var = gradient_variance(vae, train[:BATCH], tau, estimator)
    vae.load_state_dict(best[1])
    torch.manual_seed(10_000 + seed)
    stopped = evaluate(vae, test)[0]
    return {"elbo": elbo, "iwae": iwae, "train": train_elbo, "stopped": stopped, "var": var,
            "ms": 1000 * seconds / steps}  # fmt: skip


def spike_slab_data(seed, p=100, n=200, k=5):
    X, y, beta = make_sparse_regression(n, p, k, seed=seed)
    return X, y, set(beta.nonzero().flatten().tolist())


# the reference model of models/spike_slab.py (the Gumbel tutorial's)
spike_slab_model = load_script(
    Path(__file__).resolve().parents[1] / "models" / "spike_slab.py", "spike_slab"
).model


def run_selection(estimator, tau, seed, steps=800):
    X, y, truth = spike_slab_data(seed)
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    guide = auto_discrete_continuous_guide(spike_slab_model, temperature=tau, estimator=estimator)
    model = relax(spike_slab_model, temperature=tau, estimator=estimator)
    svi = SVI(model, guide, Adam({"lr": 0.05}), Trace_ELBO())
    svi.step(X, y)  # builds the guide
    start = time.perf_counter()
    for _ in range(steps - 1):
        svi.step(X, y)
    ms = 1000 * (time.perf_counter() - start) / (steps - 1)
    selected = set((guide[0].probs()["include"] > 0.5).nonzero().flatten().tolist())
    tp = len(selected & truth)
    return {"f1": 2 * tp / (len(selected) + len(truth)) if tp else 0.0, "ms": ms}


def _mean_sd(values, digits=2):
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _reinmax_margin(summary, column, name):
    """Issue 21's target in one line: ReinMax's best mean against straight-through's best
    mean (each at its best temperature), the margin against the seed-to-seed spread."""

    def best(estimator):
        tau = max(TEMPERATURES, key=lambda t: statistics.fmean(
            r[column] for r in summary[t, estimator]))  # fmt: skip
        values = [r[column] for r in summary[tau, estimator]]
        return tau, statistics.fmean(values), statistics.stdev(values)

    (t_r, m_r, s_r), (t_s, m_s, s_s) = best("reinmax"), best("straight-through")
    return (
        f"{name}: reinmax {m_r:.2f} ± {s_r:.2f} (tau {t_r}) against straight-through "
        f"{m_s:.2f} ± {s_s:.2f} (tau {t_s}): margin {m_r - m_s:+.2f}, spread "
        f"{max(s_r, s_s):.2f}"
    )


def main() -> int:
    args = parse_args("discrete_estimators", __doc__)
    report = Report("discrete_estimators", quick=args.quick, command=args.command)
    steps = 1500 if args.quick else 10000
    train, valid, test = load_data()
    summary = {}
    for tau in TEMPERATURES:
        for estimator in ESTIMATORS:
            results = [run(estimator, tau, seed, steps, train, valid, test) for seed in SEEDS]
            summary[tau, estimator] = results
            report.add_row(
                {
                    "problem": "VAE",
                    "tau": tau,
                    "estimator": estimator,
                    "train ELBO": _mean_sd([r["train"] for r in results]),
                    "test ELBO": _mean_sd([r["elbo"] for r in results]),
                    "test ELBO, early-stopped": _mean_sd([r["stopped"] for r in results]),
                    "test IWAE": _mean_sd([r["iwae"] for r in results]),
                    "grad var": _mean_sd([r["var"] for r in results], 3),
                    "ms/step": f"{statistics.median(r['ms'] for r in results):.2f}",
                }
            )
    for tau in (0.5, 1.0):
        for estimator in ESTIMATORS:
            results = [run_selection(estimator, tau, seed) for seed in SEEDS]
            report.add_row(
                {
                    "problem": "spike-slab",
                    "tau": tau,
                    "estimator": estimator,
                    "F1": _mean_sd([r["f1"] for r in results]),
                    "ms/step": f"{statistics.median(r['ms'] for r in results):.2f}",
                }
            )
    best = max(summary, key=lambda key: statistics.fmean(r["elbo"] for r in summary[key]))
    for column, name in (("train", "train ELBO"), ("elbo", "test ELBO"),
                         ("stopped", "early-stopped test ELBO")):  # fmt: skip
        report.add_note(_reinmax_margin(summary, column, name))
    st_time = statistics.median(
        r["ms"] for tau in TEMPERATURES for r in summary[tau, "straight-through"]
    )
    for estimator in ESTIMATORS:
        ratio = (
            statistics.median(r["ms"] for tau in TEMPERATURES for r in summary[tau, estimator])
            / st_time
        )
        report.add_note(f"VAE time per step of {estimator} / straight-through: {ratio:.2f}")
    report.add_note(
        f"{LATENTS} latent variables x {CATEGORIES} categories, {steps} steps, seeds "
        f"{list(SEEDS)}, batch {BATCH}; ELBO and IWAE in nats per image (higher is better); "
        "mean ± standard deviation over seeds."
    )
    headline = f"best test ELBO: {best[1]} at tau = {best[0]}"
    report.write(headline=headline)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
