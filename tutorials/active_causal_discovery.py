# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Active causal discovery: which experiment next?
#
# From observational data a linear Gaussian SEM is identified only up to its Markov
# equivalence class, and with few rows not even that: `discover` returns a posterior
# that spreads over the graphs the data cannot tell apart. An experiment, a perfect
# intervention $do(X_j := v)$ on some rows, tells them apart. Which one, when
# experiments are expensive?
#
# `suggest_interventions` scores every candidate experiment $\xi$ by its **expected
# information gain** about the graph,
#
# $$\mathrm{EIG}(\xi) = I(G; Y \mid \xi) = E_{G}\, E_{Y \mid G}\Big[\log p(Y \mid G, D, \xi)
#   - \log E_{G'}\, p(Y \mid G', D, \xi)\Big],$$
#
# where $G$ runs over the posterior's DAG draws and, given a graph, the SEM's weights and
# noise are integrated in closed form (the BGe priors), so $p(Y \mid G, D, \xi)$ is exact.
# A batch is chosen greedily on the joint gain (Tigas et al., *Interventions, Where and
# How?*, NeurIPS 2022). `ActiveLearner` runs the loop: fit, choose, run the experiments,
# refit. Here the lab is a simulator with a hidden graph, so we can score each round
# against the truth.
#
# Set `PYROSTRUCT_SMOKE=1` for a tiny run (the tests do).

# %%
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from pyrostruct.causal import ActiveLearner, discover, suggest_interventions
from pyrostruct.causal.datasets import LinearSEMEnvironment

SMOKE = os.environ.get("PYROSTRUCT_SMOKE") == "1"
D = 5 if SMOKE else 10
ROUNDS = 1 if SMOKE else 8
STEPS = 100 if SMOKE else None  # None: discover's default

# %% [markdown]
# ## A hidden system and 50 observational rows
#
# An Erdős–Rényi DAG with one expected parent per node, weights in $\pm[0.5, 2]$,
# unequal noise variances. `observe` and `intervene` return data tables with an
# `intervention` column naming, per row, the nodes an experiment set.

# %%
lab = LinearSEMEnvironment.random(D, edges_per_node=1.0, seed=3)
data = lab.observe(50)
print("true edges:", [(lab.names[i], lab.names[j]) for i, j in zip(*np.nonzero(lab.adjacency))])
result = discover(data.drop(columns="intervention"), steps=STEPS, seed=0)
print(result.edge_probs.round(2))

# %% [markdown]
# ## What each experiment would tell
#
# Every node set 2 standard deviations above its mean (`values="auto"`), 10 rows each.
# A node whose setting moves no edge's probability (a sink that every posterior graph
# agrees on) gains about nothing; the most informative are nodes whose edges the
# posterior is unsure of. The gain is bounded by the entropy of the posterior's
# graphs (`metadata["posterior_entropy"]`).

# %%
design = suggest_interventions(result, data.drop(columns="intervention"), batch_size=2, seed=0)
print(design.table[["experiment", "score", "score_stderr"]].to_string(index=False))
print("batch:", design.experiments, "| posterior entropy", design.metadata["posterior_entropy"])
design.plot("design.png")

# %% [markdown]
# ## The loop, against random experiments
#
# Each round: two experiments of 10 rows each, chosen by expected information gain or
# at random, then a refit warm-started from the previous posterior's order. Up to 12
# nodes the experiments are chosen on the *exact* posterior of the rows so far
# (`design_posterior="auto"`): the variational posterior that `discover` reports can be
# confidently wrong about an edge early on, and a design never targets an edge its
# posterior is sure of. The history records the expected structural Hamming distance of
# the reported posterior to the truth, $E_G[\mathrm{SHD}(G, G^*)]$, and the AUPRC of the
# edge probabilities.

# %%
histories = {}
for strategy in ("eig", "random"):
    env = LinearSEMEnvironment(lab.weights, lab.noise_scales, lab.names, seed=11)
    learner = ActiveLearner(
        data, env.acquire, strategy=strategy, batch_size=2, samples_per_experiment=10,
        truth=lab.adjacency, seed=0, fit={"steps": STEPS} if STEPS else {},
    )  # fmt: skip
    histories[strategy] = learner.run(ROUNDS)
    print(strategy)
    print(histories[strategy][["round", "rows", "expected_shd", "auprc"]].to_string(index=False))

# %%
fig, ax = plt.subplots(figsize=(5, 3.2))
for strategy, history in histories.items():
    ax.plot(history["round"], history["expected_shd"], marker="o", label=strategy)
ax.set_xlabel("round (2 experiments x 10 rows each)")
ax.set_ylabel("expected SHD to the truth")
ax.legend()
fig.tight_layout()
fig.savefig("active_rounds.png", dpi=120)

# %% [markdown]
# Information-guided experiments settle the graph in fewer rounds than random ones:
# each round targets the nodes whose edges the posterior is unsure of, and the greedy
# batch avoids a second experiment that would answer the same question.
# `benchmarks/active_design.py` measures this over seeds and sizes (the protocol of
# Tigas et al. 2022). From the command line, `pyrostruct suggest data.csv
# --intervention-column intervention --batch-size 2 --out design.csv` writes the ranked
# experiments of one round.
