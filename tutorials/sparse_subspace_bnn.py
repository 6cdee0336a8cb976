# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Sparse subspace variational inference for a Bayesian neural network
#
# A Bayesian neural network (BNN) in Pyro is a `PyroModule` whose weights are
# `PyroSample` sites. The usual guide, `AutoNormal`, keeps a mean and a standard
# deviation for **every** weight and trains all of them for the whole run: twice
# the network's size in variational parameters, four times more in Adam state.
#
# Sparse subspace VI (SSVI; Li, Miao, Qiu and Zhang, *Training Bayesian Neural
# Networks with Sparse Subspace Variational Inference*, ICLR 2024) keeps the
# variational distribution on a sparse subset $S$ of the weights from the first
# step to the last,
#
# $$q(\theta) = \prod_{j \in S} \mathcal N(\theta_j; \mu_j, \sigma_j^2) \prod_{j \notin S} \delta_0(\theta_j),
# \qquad |S| \approx \text{density} \times N,$$
#
# and evolves $S$ during training: every few hundred steps it **removes** the
# active coordinates with the lowest signal-to-noise ratio of $|\theta|$ and
# **adds** as many inactive ones, those where the ELBO's gradient with respect to
# a would-be mean $\mu_j$ (at $\mu_j = 0$) is largest. The fraction replaced
# decays with a cosine schedule and the subspace is frozen for the last quarter
# of training.
#
# In pyrostruct this is `AutoSparseSubspace` (the guide, storing only the active
# means, scales and indices) and `SubspaceScheduler` (the removal-and-addition
# updates, usable from a plain `SVI` loop). This notebook compares them with
# `AutoNormal` on scikit-learn's 8x8 digits: accuracy, negative log-likelihood,
# calibration, and the number of variational parameters.

# %%
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pyro
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from pyrostruct.infer.autoguide import AutoSparseSubspace, SubspaceScheduler
from pyrostruct.nn import BayesianMLP, init_to_fan_in

SMOKE = os.environ.get("PYROSTRUCT_SMOKE") == "1"
HIDDEN = 32 if SMOKE else 128
NUM_STEPS = 80 if SMOKE else 2000
UPDATE_EVERY = 10 if SMOKE else 100
NUM_SAMPLES = 10 if SMOKE else 1000  # predictive draws: too few make the ECE noisy
torch.set_num_threads(1)

# %% [markdown]
# ## Data
#
# 1797 images of 8x8 pixels, ten classes; a stratified 75/25 split, pixels
# standardized with the training statistics.

# %%
x, y = load_digits(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(
    x, y, test_size=0.25, random_state=0, stratify=y
)
mean, std = x_train.mean(0), x_train.std(0)
std[std == 0] = 1.0  # a pixel blank in every training image is only centred
x_train = torch.tensor((x_train - mean) / std, dtype=torch.float32)
x_test = torch.tensor((x_test - mean) / std, dtype=torch.float32)
y_train, y_test = torch.tensor(y_train), torch.tensor(y_test)
print(x_train.shape, x_test.shape)

# %% [markdown]
# ## The model
#
# An MLP 64 → H → H → 10 with a Gaussian prior $\mathcal N(0, 1)$ on each weight
# and bias: `pyrostruct.nn.BayesianMLP`, the model of `models/bnn.py` and
# `benchmarks/ssvi.py`, whose weights and biases are `PyroSample` sites and whose
# likelihood is $y \sim \text{Categorical}(\text{logits} = f(x))$. A narrower
# prior such as $\mathcal N(0, 1/\text{fan-in})$ sounds more natural, but with
# about a thousand training images the KL term then wins: mean-field guides
# collapse towards the prior and the sparse ones predict at chance
# (`benchmarks/results/ssvi.md`). The deterministic network lives in `self.net`,
# so that the posterior mean can later be exported as a plain `nn.Sequential`.


# %%
SIZES = [64, HIDDEN, HIDDEN, 10]
print(BayesianMLP(SIZES).net)

# %% [markdown]
# ## Training
#
# The same loop trains the three guides: Adam, minibatches of 256, the same
# number of steps. For the sparse guides a `SubspaceScheduler` wraps
# `svi.step`: on every `update_every`-th step it records the gradient of the
# loss with respect to the dense weight tensors the forward pass builds anyway
# (the gradient with respect to the would-be means of the inactive coordinates)
# and then swaps coordinates. It is given the optimizer, so that Adam's moments
# stay with the coordinates that are kept and start from zero for new ones.
# Both guides start from the usual fan-in-scaled means
# (`pyrostruct.nn.init_to_fan_in`: $\mathcal N(0, 1/\text{fan-in})$ draws for the
# weights, zero biases) and standard deviations 0.01.


# %%
def train(density, seed=0):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    model = BayesianMLP(SIZES)
    if density is None:
        guide = AutoNormal(model, init_loc_fn=init_to_fan_in, init_scale=0.01)
    else:
        guide = AutoSparseSubspace(
            model, density=density, init_loc_fn=init_to_fan_in, init_scale=0.01
        )
    optim = pyro.optim.Adam({"lr": 0.01})
    svi = SVI(model, guide, optim, Trace_ELBO())
    scheduler = None
    if density is not None:
        scheduler = SubspaceScheduler(
            guide, optim, num_steps=NUM_STEPS, update_every=UPDATE_EVERY, criterion="snr"
        )
    n = len(x_train)
    for _ in range(NUM_STEPS):
        idx = torch.randint(n, (256,))
        args = (x_train[idx], y_train[idx])
        if scheduler is None:
            svi.step(*args, num_data=n)
        else:
            scheduler.step(svi.step, *args, num_data=n)
    return model, guide, scheduler


runs = {"AutoNormal": train(None)}

# %% [markdown]
# ## Posterior predictive metrics
#
# The predictive distribution averages the softmax over posterior draws of the
# weights. The expected calibration error (ECE) bins test points by their
# confidence (max probability) and averages |accuracy − confidence| over bins.
# With few draws the Monte Carlo noise of the averaged probabilities makes the
# ECE noisy (one sparse run of `benchmarks/ssvi_prior_sweep.py`: 0.032 at 100
# draws, 0.015-0.021 at 400-2000), so we use 1000.


# %%
@torch.no_grad()
def predictive_log_probs(model, guide, x, num_samples=NUM_SAMPLES):
    log_probs = []
    for _ in range(num_samples):
        guide_trace = poutine.trace(guide).get_trace(x)
        with poutine.block():
            logits = poutine.replay(model, trace=guide_trace)(x)
        log_probs.append(torch.log_softmax(logits, -1))
    return torch.stack(log_probs).logsumexp(0) - math.log(num_samples)


def ece(probs, y, num_bins=15):
    conf, pred = probs.max(-1)
    correct = (pred == y).float()
    total = 0.0
    edges = torch.linspace(0, 1, num_bins + 1)
    for lo, hi in zip(edges[:-1], edges[1:]):
        b = (conf > lo) & (conf <= hi)
        if b.any():
            total += b.float().mean().item() * abs(correct[b].mean() - conf[b].mean()).item()
    return total


def metrics(model, guide):
    # The NLL is read from the log-probabilities: a confidently wrong prediction
    # can have a probability that rounds to 0 in float32 (log 0 = -inf).
    log_probs = predictive_log_probs(model, guide, x_test)
    probs = log_probs.exp()
    nll = -log_probs.gather(-1, y_test[:, None]).mean().item()
    assert math.isfinite(nll), nll
    return {
        "accuracy": (probs.argmax(-1) == y_test).float().mean().item(),
        "NLL": nll,
        "ECE": ece(probs, y_test),
        "variational params": sum(p.numel() for p in guide.parameters()),
        "probs": probs,
    }


# Pyro keeps parameters in a global store under the guide's class name, so each
# guide is evaluated right after its own training run.
results = {"AutoNormal": metrics(*runs["AutoNormal"][:2])}
for density in (0.05, 0.1):
    name = f"SSVI density {density}"
    runs[name] = train(density)
    results[name] = metrics(*runs[name][:2])
print(f"{'guide':<22}{'accuracy':>10}{'NLL':>8}{'ECE':>8}{'var. params':>13}")
for name, r in results.items():
    print(
        f"{name:<22}{r['accuracy']:>10.3f}{r['NLL']:>8.3f}{r['ECE']:>8.3f}"
        f"{r['variational params']:>13}"
    )

# %% [markdown]
# The sparse guides train and store a tenth (a twentieth) of the variational
# parameters; `guide.density` and `guide.num_variational_params` say so directly.

# %%
for name, (_, guide, scheduler) in runs.items():
    if isinstance(guide, AutoSparseSubspace):
        print(
            f"{name}: density {guide.density:.3f}, {guide.num_variational_params} "
            f"variational parameters, {len(scheduler.history)} site updates, "
            f"active per layer {guide.active_counts()}"
        )

# %% [markdown]
# ## Reliability diagram
#
# Accuracy against confidence per bin; a calibrated model follows the diagonal.

# %%
fig, ax = plt.subplots(figsize=(5, 5))
ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
edges = torch.linspace(0, 1, 11)
for name, r in results.items():
    conf, pred = r["probs"].max(-1)
    correct = (pred == y_test).float()
    xs, ys = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        b = (conf > lo) & (conf <= hi)
        if b.any():
            xs.append(conf[b].mean().item())
            ys.append(correct[b].mean().item())
    ax.plot(xs, ys, "o-", label=f"{name} (ECE {r['ECE']:.3f})")
ax.set_xlabel("confidence")
ax.set_ylabel("accuracy")
ax.set_title("Reliability on the digits test set")
ax.legend(loc="upper left", fontsize=8)
fig.tight_layout()
fig.savefig("sparse_subspace_reliability.png", dpi=100)
print("saved sparse_subspace_reliability.png")

# %% [markdown]
# ## How the subspace moved
#
# The scheduler's `history` records the flat indices removed from and added to
# each site at each update. The number replaced shrinks with the cosine schedule.

# %%
_, guide, scheduler = runs["SSVI density 0.1"]
per_step = {}
for u in scheduler.history:
    per_step[u.step] = per_step.get(u.step, 0) + len(u.added)
print("coordinates replaced per update:", per_step)

# %% [markdown]
# ## Deployment: a pruned, deterministic network
#
# `export_module(root="net")` returns the posterior mean of `self.net` as a
# plain `torch.nn.Sequential`: the weights outside the subspace are exactly
# zero, and it runs without Pyro.

# %%
net = guide.export_module(root="net")
print(net)
nonzero = sum(int((p != 0).sum()) for p in net.parameters())
total = sum(p.numel() for p in net.parameters())
accuracy = (net(x_test).argmax(-1) == y_test).float().mean().item()
print(f"{nonzero} of {total} weights are non-zero; posterior-mean accuracy {accuracy:.3f}")
