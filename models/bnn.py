"""Bayesian MLP trained with sparse subspace VI (AutoSparseSubspace) or dense AutoNormal.

A reference model for :class:`pyrostruct.infer.autoguide.AutoSparseSubspace`
(Li et al., "Training Bayesian Neural Networks with Sparse Subspace Variational
Inference", ICLR 2024): an MLP whose weights and biases are ``PyroSample``
sites with Gaussian priors, on a data set that ships with scikit-learn:

* ``--task digits``: 8x8 handwritten digits, 10-class classification;
* ``--task diabetes``: diabetes progression, regression with a learned noise scale.

It trains a dense ``AutoNormal`` guide and ``AutoSparseSubspace`` guides at the
requested densities for the same number of steps, and prints test accuracy
(or RMSE), NLL, expected calibration error and the number of variational
parameters of each. The model is :class:`pyrostruct.nn.BayesianMLP`, its guides
start from :func:`pyrostruct.nn.init_to_fan_in`; the functions here are also
used by ``benchmarks/ssvi.py``.

    python models/bnn.py --task digits --densities 0.1 0.05
    python models/bnn.py --smoke
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal

from pyrostruct.infer.autoguide import AutoSparseSubspace, SubspaceScheduler
from pyrostruct.infer.engine import CallbackHook, SubspaceHook, train
from pyrostruct.nn import BayesianMLP, init_to_fan_in


def load_data(task: str, seed: int = 0, test_fraction: float = 0.25):
    """Standardized train/test tensors of the digits or diabetes data set."""
    from sklearn.datasets import load_diabetes, load_digits
    from sklearn.model_selection import train_test_split

    if task == "digits":
        x, y = load_digits(return_X_y=True)
        stratify = y
    elif task == "diabetes":
        x, y = load_diabetes(return_X_y=True)
        stratify = None
    else:
        raise ValueError(f"task must be 'digits' or 'diabetes', got {task!r}")
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=stratify
    )
    # a feature constant in training (an always-blank pixel) is only centred: dividing by a
    # tiny std would turn its rare non-zero test values into outliers of size ~1e6
    mean, std = x_tr.mean(0), x_tr.std(0)
    std = np.where(std > 0, std, 1.0)
    x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
    x_tr = torch.as_tensor(x_tr, dtype=torch.float32)
    x_te = torch.as_tensor(x_te, dtype=torch.float32)
    if task == "digits":
        return x_tr, torch.as_tensor(y_tr), x_te, torch.as_tensor(y_te)
    y_mean, y_std = y_tr.mean(), y_tr.std()
    y_tr = torch.as_tensor((y_tr - y_mean) / y_std, dtype=torch.float32)
    y_te = torch.as_tensor((y_te - y_mean) / y_std, dtype=torch.float32)
    return x_tr, y_tr, x_te, y_te


def make_guide(model, density: float | None, init_scale: float = 0.01, seed: int = 0):
    """``AutoNormal`` when ``density`` is None, else ``AutoSparseSubspace``.

    Both start from :func:`init_to_fan_in` means and ``init_scale`` standard deviations.
    """
    if density is None:
        return AutoNormal(model, init_loc_fn=init_to_fan_in, init_scale=init_scale)
    return AutoSparseSubspace(
        model, density=density, init_loc_fn=init_to_fan_in, init_scale=init_scale, seed=seed
    )


def fit(
    model,
    guide,
    x,
    y,
    *,
    num_steps,
    lr=0.01,
    update_every=100,
    criterion="snr",
    batch_size=None,
    seed=0,
    warmup_steps=0,
):
    """Train with Adam; returns the losses, the seconds per step and the optimizer.

    ``AutoSparseSubspace`` guides are trained through a :class:`SubspaceScheduler`.
    The seconds per step are averaged over the steps after ``warmup_steps``.
    """
    pyro.set_rng_seed(seed)
    optim = pyro.optim.Adam({"lr": lr})
    svi = SVI(model, guide, optim, Trace_ELBO())
    n = x.shape[0]
    batch_size = batch_size or n
    generator = torch.Generator().manual_seed(seed)

    def step():
        if batch_size < n:
            idx = torch.randint(n, (batch_size,), generator=generator)
            return svi.step(x[idx], y[idx], num_data=n)
        return svi.step(x, y)

    clock = {"start": time.perf_counter()}

    def restart_clock(step, loss):  # time the steps after the warm-up only
        if step + 1 == warmup_steps:
            clock["start"] = time.perf_counter()

    hooks = [CallbackHook(restart_clock)]
    if isinstance(guide, AutoSparseSubspace):
        scheduler = SubspaceScheduler(
            guide, optim, num_steps=num_steps, update_every=update_every, criterion=criterion
        )
        hooks.insert(0, SubspaceHook(scheduler))
    losses = train(step, num_steps, hooks=hooks, name="bnn")
    seconds_per_step = (time.perf_counter() - clock["start"]) / max(num_steps - warmup_steps, 1)
    return losses, seconds_per_step, optim


@torch.no_grad()
def posterior_outputs(model, guide, x, num_samples=100):
    """Network outputs (and sigma for regression) under ``num_samples`` guide draws."""
    outs, sigmas = [], []
    for _ in range(num_samples):
        guide_trace = poutine.trace(guide).get_trace(x)
        with poutine.block():
            out = poutine.replay(model, trace=guide_trace)(x)
        outs.append(out)
        if "sigma" in guide_trace.nodes:
            sigmas.append(guide_trace.nodes["sigma"]["value"])
    return torch.stack(outs), (torch.stack(sigmas) if sigmas else None)


def expected_calibration_error(probs, y, num_bins=15):
    """ECE of a classifier: sum_b |B_b|/n |acc(B_b) - conf(B_b)| over confidence bins."""
    conf, pred = probs.max(-1)
    correct = (pred == y).float()
    edges = torch.linspace(0, 1, num_bins + 1)
    ece = torch.zeros(())
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.float().mean() * (correct[in_bin].mean() - conf[in_bin].mean()).abs()
    return ece.item()


def reliability_curve(probs, y, num_bins=10):
    """(confidence, accuracy, count) per bin, for a reliability diagram."""
    conf, pred = probs.max(-1)
    correct = (pred == y).float()
    edges = torch.linspace(0, 1, num_bins + 1)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            rows.append(
                (conf[in_bin].mean().item(), correct[in_bin].mean().item(), int(in_bin.sum()))
            )
    return rows


def evaluate(model, guide, x, y, num_samples=100):
    """Test metrics under the posterior predictive (``num_samples`` draws).

    Classification: accuracy, NLL per point, ECE (15 bins), and the predictive
    probabilities. Regression: RMSE of the predictive mean, NLL per point of the
    Gaussian mixture, and the calibration error of the predictive quantiles
    (mean |fraction of y below the p-quantile - p| over p = 0.05, ..., 0.95).
    """
    outs, sigmas = posterior_outputs(model, guide, x, num_samples)
    if model.task == "classification":
        log_probs = torch.log_softmax(outs, -1).logsumexp(0) - math.log(num_samples)
        probs = log_probs.exp()
        return {
            "accuracy": (probs.argmax(-1) == y).float().mean().item(),
            "nll": -log_probs.gather(-1, y[:, None]).mean().item(),
            "ece": expected_calibration_error(probs, y),
            "probs": probs,
        }
    sigmas = sigmas.reshape(-1, 1)
    normal = torch.distributions.Normal(outs, sigmas)
    log_lik = normal.log_prob(y).logsumexp(0) - math.log(num_samples)
    pit = normal.cdf(y).mean(0)
    levels = torch.linspace(0.05, 0.95, 19)
    calibration = ((pit[None, :] <= levels[:, None]).float().mean(1) - levels).abs().mean()
    return {
        "rmse": (outs.mean(0) - y).pow(2).mean().sqrt().item(),
        "nll": -log_lik.mean().item(),
        "ece": calibration.item(),
    }


def run(
    task,
    densities,
    *,
    hidden,
    num_steps,
    lr,
    update_every,
    num_samples,
    seed,
    batch_size=None,
    prior_scale=1.0,
    init_scale=0.01,
    verbose=True,
):
    """Train dense AutoNormal and AutoSparseSubspace at each density; one row each."""
    x_tr, y_tr, x_te, y_te = load_data(task, seed)
    out_dim = 10 if task == "digits" else 1
    sizes = [x_tr.shape[1], *hidden, out_dim]
    kind = "classification" if task == "digits" else "regression"
    rows = []
    for density in [None, *densities]:
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        model = BayesianMLP(sizes, task=kind, prior_scale=prior_scale)
        guide = make_guide(model, density, init_scale=init_scale, seed=seed)
        losses, sec, optim = fit(
            model,
            guide,
            x_tr,
            y_tr,
            num_steps=num_steps,
            lr=lr,
            update_every=update_every,
            batch_size=batch_size,
            seed=seed,
        )
        metrics = evaluate(model, guide, x_te, y_te, num_samples=num_samples)
        num_params = sum(p.numel() for p in guide.parameters())
        row = {
            "guide": "AutoNormal" if density is None else f"AutoSparseSubspace({density})",
            "params": num_params,
            "final loss": losses[-1],
            "ms/step": 1e3 * sec,
        }
        row.update({k: v for k, v in metrics.items() if k != "probs"})
        if density is not None:  # while its parameters are the ones in the param store
            net = guide.export_module(root="net")
            row["exported nonzero"] = sum(int((p != 0).sum()) for p in net.parameters())
            row["exported total"] = sum(p.numel() for p in net.parameters())
        rows.append((row, model, guide, optim, metrics))
        if verbose:
            print(
                "  ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                ),
                flush=True,
            )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", choices=["digits", "diabetes"], default="digits")
    parser.add_argument("--densities", type=float, nargs="+", default=[0.1, 0.05])
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 128])
    parser.add_argument("--num-steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--update-every", type=int, default=100)
    parser.add_argument("--num-samples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny fast run (seconds)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.smoke:
        args.hidden, args.num_steps, args.update_every, args.num_samples = [32], 60, 10, 10
    rows = run(
        args.task,
        args.densities,
        hidden=args.hidden,
        num_steps=args.num_steps,
        lr=args.lr,
        update_every=args.update_every,
        num_samples=args.num_samples,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    for row, *_ in rows:
        if "exported nonzero" in row:
            print(
                f"{row['guide']}: the exported posterior-mean network keeps "
                f"{row['exported nonzero']} of {row['exported total']} weights"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
