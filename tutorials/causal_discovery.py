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
# # Causal discovery by variational inference over DAGs
#
# `pyrostruct.causal.discover` takes a data table and returns a **posterior over
# causal graphs**: the probability of every edge $i \to j$, a consensus DAG as a
# `networkx.DiGraph`, DAG samples, the ELBO trace and an ArviZ export.
#
# Under the hood it is a Pyro model with a DAG latent,
#
# $$G \sim \text{ErdősRényi}(d, m), \qquad x_j = b_j + \sum_i G_{ij} W_{ij} x_i + \varepsilon_j ,$$
#
# and a variational DAG distribution: a Plackett–Luce order and Bernoulli forward
# edges (Charpentier et al., *Differentiable DAG Sampling*, ICLR 2022), trained on
# the true ELBO: the likelihood minus the exact KL of the order and of the edges
# against the prior, whose sparsity is set by the expected number of edges $m$.
# For this linear SEM the default `estimator="analytic"` samples only orders and
# integrates the edges and the edge weights exactly given each order (the
# likelihood depends on the data through its Gram matrix), so the edges get
# exact gradients; `estimator="straight-through"` samples edges too (`AutoDAG`
# and Pyro's `Trace_ELBO`) and works for any SEM, such as `sem="mlp"`. For a
# linear SEM with one noise variance per node and at most 16 variables,
# `estimator="exact"` needs no variational family at all: it sums the posterior
# of the BGe likelihood exactly over every order and parent set.
#
# This notebook: synthetic data with a known graph, the posterior over edges as
# a heat map, the consensus graph against the truth, where the model is
# uncertain, and how interventions settle orientations that observational data
# leave open. Set `PYROSTRUCT_SMOKE=1` for a tiny run (the tests do).

# %%
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import pandas as pd

from pyrostruct.causal import datasets, discover, metrics

SMOKE = os.environ.get("PYROSTRUCT_SMOKE") == "1"
D = 5 if SMOKE else 12
STEPS = 100 if SMOKE else None  # None: the estimator's default (750 analytic)

# %% [markdown]
# ## Data with a known causal graph
#
# An Erdős–Rényi DAG with about two edges per node, linear Gaussian mechanisms
# with weights in $\pm[0.5, 2]$ and equal noise variances. With equal noise
# variances the DAG itself, not only its Markov equivalence class, is
# identifiable from observational data (Peters & Bühlmann, 2014), so we fit
# the equal-variance SEM on the data's own scale.

# %%
truth = datasets.make_dataset(d=D, n=1000, graph="ER", edges_per_node=2, noise="equal", seed=3)
print(truth.data.shape, "true edges:", int(truth.adjacency.sum()))
truth.data.head()

# %%
result = discover(truth.data, noise="equal", standardize=False, steps=STEPS, seed=0)
print(f"fitted in {result.metadata['fit_seconds']:.1f} s, final ELBO per row "
      f"{result.metadata['final_elbo']:.3f}")  # fmt: skip

# %%
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(result.elbo_trace, lw=0.5)
ax.set_xlabel("step")
ax.set_ylabel("ELBO per row")
fig.savefig("causal_elbo.png", dpi=100, bbox_inches="tight")

# %% [markdown]
# ## The posterior over edges
#
# `result.edge_probs[i, j]` is $P(i \to j \mid \text{data})$, estimated by
# sampling orders (the edges given an order are exact), with a Monte Carlo
# standard error in `result.edge_probs_stderr`.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
for ax, matrix, title in [
    (axes[0], result.edge_probs, "posterior P(i -> j)"),
    (axes[1], truth.adjacency, "true graph"),
]:
    im = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(D), truth.names, rotation=90)
    ax.set_yticks(range(D), truth.names)
    ax.set_xlabel("target j")
    ax.set_ylabel("source i")
    ax.set_title(title)
fig.colorbar(im, ax=axes, shrink=0.8)
fig.savefig("causal_edge_posterior.png", dpi=100, bbox_inches="tight")
print("largest Monte Carlo standard error:", result.edge_probs_stderr.max().round(4))

# %% [markdown]
# ## The consensus graph against the truth
#
# `result.graph` keeps the edges with probability at least 0.5, most probable
# first, skipping any edge that would close a cycle: it is always a DAG. Its
# edges carry `probability` and `weight` (the posterior mean effect, in the
# data's units).

# %%
graph = result.graph
est = nx.to_numpy_array(graph, nodelist=truth.names, weight=None)
scores = metrics.evaluate(truth.adjacency, est, probs=result.edge_probs,
                          dags=result.sample_dags(500, seed=0))  # fmt: skip
pd.Series(scores).round(3)

# %%
result.plot("causal_consensus.png")
rows = []
for i, j in zip(*np.nonzero(np.maximum(est, truth.adjacency))):
    rows.append({
        "edge": f"{truth.names[i]} -> {truth.names[j]}",
        "in truth": bool(truth.adjacency[i, j]),
        "in consensus": bool(est[i, j]),
        "P": round(result.edge_probs[i, j], 3),
        "weight (est)": round(result.weights[i, j], 2),
        "weight (true)": round(truth.weights[i, j], 2),
    })  # fmt: skip
pd.DataFrame(rows)

# %% [markdown]
# ## Where the model is uncertain
#
# Edges whose posterior probability is neither near 0 nor near 1, and the
# posterior spread of the number of edges. The expected SHD above is the mean
# distance to the truth of graphs drawn from the posterior.

# %%
uncertain = [
    (truth.names[i], truth.names[j], round(result.edge_probs[i, j], 2))
    for i, j in zip(*np.nonzero((result.edge_probs > 0.1) & (result.edge_probs < 0.9)))
]
print("uncertain edges (source, target, P):", uncertain or "none")
n_edges = result.sample_dags(1000, seed=1).sum((1, 2))
print(f"number of edges: posterior mean {n_edges.mean():.1f}, 90% interval "
      f"[{np.quantile(n_edges, 0.05):.0f}, {np.quantile(n_edges, 0.95):.0f}], "
      f"true {int(truth.adjacency.sum())}")  # fmt: skip

# %% [markdown]
# ## Interventions settle orientations
#
# With unequal noise variances (or standardized data) a linear Gaussian chain
# $X_0 \to X_1 \to X_2$ is Markov equivalent to $X_0 \leftarrow X_1 \leftarrow X_2$
# and $X_0 \leftarrow X_1 \to X_2$: observational data cannot orient it. Rows in
# which a node was set by an experiment (a *perfect intervention*) drop that
# node's mechanism from their likelihood, and that breaks the symmetry. Pass them
# as a column of node names (`"X1"`, `""` for observational rows) or a boolean
# mask.

# %%
w = np.array([[0.0, 1.2, 0.0], [0.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
names = ["X0", "X1", "X2"]
x_obs, _ = datasets.simulate_linear_sem(w, 900, noise_scales=[1.4, 0.6, 0.9], seed=1)
x_int, mask = datasets.simulate_linear_sem(
    w, 900, noise_scales=[1.4, 0.6, 0.9], interventions=[[0], [1]], seed=2
)
observational = discover(pd.DataFrame(x_obs, columns=names), steps=STEPS, seed=1)
frame = pd.DataFrame(x_int, columns=names).assign(
    intervened=[";".join(np.array(names)[row]) for row in mask]
)
interventional = discover(frame, interventions="intervened", steps=STEPS, seed=1)
pd.DataFrame(
    {
        "observational": [observational.edge_probs[i, j] for i, j in [(0, 1), (1, 0), (1, 2), (2, 1)]],
        "with interventions": [interventional.edge_probs[i, j] for i, j in [(0, 1), (1, 0), (1, 2), (2, 1)]],
    },
    index=["P(X0->X1)", "P(X1->X0)", "P(X1->X2)", "P(X2->X1)"],
).round(3)

# %% [markdown]
# The observational column is not a failure to learn: with unequal noise
# variances and no interventions only the equivalence class is identified, so
# `discover` spreads every DAG drawn from its posterior uniformly over its class
# (`average_equivalent`, on by default in exactly that case).
# Each of the chain's three equivalent DAGs gets a third, so $P(X_1 \to X_2) =
# P(X_1 \to X_0) \approx 2/3$. The consensus graph keeps both edges, in one of
# the equivalent orientations. `pyrostruct.causal.equivalence` gives the class
# itself (its CPDAG, its size, uniform members), and `metrics.shd_cpdag` scores
# only what observational data can identify.
#
# Interventions identify more, but not everything: perfect interventions on
# known targets identify the graph up to its *interventional* equivalence class
# (Hauser & Bühlmann, JMLR 2012), where an edge is oriented when exactly one of
# its ends is intervened on in some regime, or when Meek's rules force it. Above,
# the two regimes cut both edges, so the interventional column is confident.
# With experiments on $X_2$ alone, only $X_1 - X_2$ is cut: the class has two
# members, $X_0 \to X_1 \to X_2$ and $X_0 \leftarrow X_1 \to X_2$, and
# `discover` spreads the posterior over them instead of settling on one, so
# $X_0 - X_1$ gets about 0.5 each way while $X_1 \to X_2$ is certain.

# %%
from pyrostruct.causal.equivalence import interventional_essential_graph

x_x2, mask_x2 = datasets.simulate_linear_sem(
    w, 1200, noise_scales=[1.4, 0.6, 0.9], interventions=[[2]], seed=3
)
only_x2 = discover(x_x2, interventions=mask_x2, steps=STEPS, seed=1)
print("targets:", only_x2.intervention_targets)
print("I-essential graph of the truth (both ways = not identified):")
print(interventional_essential_graph(w != 0, only_x2.intervention_targets))
print(f"P(X0->X1) = {only_x2.edge_probs[0, 1]:.2f}, P(X1->X0) = {only_x2.edge_probs[1, 0]:.2f}, "
      f"P(X1->X2) = {only_x2.edge_probs[1, 2]:.2f}")

# %%
from pyrostruct.causal.equivalence import count_equivalent_dags, cpdag

est = observational.adjacency
print("CPDAG of the consensus graph (an edge both ways is reversible):")
print(cpdag(est))
print("DAGs in its equivalence class:", count_equivalent_dags(est))
# the same CPDAG as a networkx graph, to save as GraphML, DOT or CSV: result.save("g.graphml", cpdag=True)
exported = observational.to_networkx(cpdag=True)
print("undirected in the exported CPDAG:", sorted((u, v) for u, v, x in exported.edges(data="undirected") if x and u < v))
print("SHD to the truth:", metrics.shd(w != 0, est), "| between CPDAGs:", metrics.shd_cpdag(w != 0, est))

# %% [markdown]
# ## The exact posterior of a small problem
#
# Up to 16 variables the posterior of the linear model need not be approximated:
# `estimator="exact"` sums it over every order and parent set (the BGe likelihood,
# weights and noise variances integrated; Koivisto & Sood's recursion over node
# subsets), with no training and no basin to get stuck in. The order-modular prior
# weighs the members of an equivalence class by their numbers of orders (the fork
# $X_0 \leftarrow X_1 \to X_2$ has two, each chain one), so the unidentified edge of
# the experiment above gets 1/3 against 2/3 with `average_equivalent=False`; by
# default the exact draws are spread uniformly over their classes as above, and it
# gets about 1/2 (0.45 +- 0.02 here: a little mass sits on denser graphs). It is not
# the default: BGe's prior on a node's coefficients scales with
# that node's noise variance, so a nearly deterministic node of standardized data
# can take a parent that explains under 1% of its residual (see the `estimator`
# parameter of `discover` for the measurements).

# %%
exact = discover(x_x2, interventions=mask_x2, estimator="exact", seed=1)
order_modular = discover(x_x2, interventions=mask_x2, estimator="exact", average_equivalent=False)
print(f"exact, averaged over classes: P(X0->X1) = {exact.edge_probs[0, 1]:.2f} "
      f"(+- {exact.edge_probs_stderr[0, 1]:.2f}); order-modular: "
      f"{order_modular.edge_probs[0, 1]:.2f}; log evidence {exact.metadata['log_evidence']:.1f}")

# %% [markdown]
# ## Weak effects and the weight prior
#
# Every edge that is present has a weight with a *slab* prior, and pays the KL of
# its weight posterior against it: the Occam factor that keeps the graph sparse.
# A Gaussian slab $N(0, 1)$ is largest at $w = 0$, so a small but clear effect
# (here $|t| \approx 3$ at $n = 1000$) is a plausible edge, and the posterior
# keeps it even where the data were simulated without it. The default slab is
# the non-local pMOM prior $p(w) = (w^2/\tau)\,N(w; 0, \tau)$ (Johnson &
# Rossell, JASA 2012), which vanishes at zero, on the standardized effect $W_{ij}
# \mathrm{sd}_i / \mathrm{sd}_j$: an edge must have an effect bounded away from
# zero to enter, and the result does not depend on the columns' units.
#
# The scale-free graph below has one such pair, $X_2 \to X_7$: not an edge, but
# least squares given the true parents of $X_7$ gives it $t = 3.15$ (coefficient
# 0.19). The data are raw and the noise variances equal, so the model is the
# one that generated them.

# %%
weak = datasets.make_dataset(d=10, n=1000, graph="SF", edges_per_node=2, seed=2)
kw = dict(standardize=False, noise="equal", seed=2, steps=STEPS)
by_prior = {prior: discover(weak.data, weight_prior=prior, **kw) for prior in ("normal", "pmom")}
pd.DataFrame(
    {
        prior: {
            "P(X2->X7)": r.edge_probs[2, 7],
            "SHD": metrics.shd(weak.adjacency, r.adjacency),
            "smallest P of a true edge": r.edge_probs[weak.adjacency == 1].min(),
        }
        for prior, r in by_prior.items()
    }
).round(3)

# %% [markdown]
# ## Background knowledge, on real data
#
# What a scientist knows before the data goes in as a `Knowledge`: forbidden and
# required edges, and temporal *tiers* (a variable cannot cause one of an earlier
# tier). `discover` enforces it exactly, not as a soft penalty: orders are drawn from
# a Plackett-Luce distribution restricted to the orders the tiers and required edges
# allow (normalized exactly over them), a forbidden edge has probability 0 and a
# required one probability 1 in every drawn DAG, so `edge_probs`, the consensus graph
# and the CPDAG obey it too. Contradictions (a required edge against the tiers, a
# cycle of required edges) are refused with a message that names them. The CLI reads
# Tetrad's knowledge files or a `cause,effect,kind` CSV: `--knowledge prior.txt`.
# With the MLP SEM (`estimator="straight-through"`) forbidden edges are enforced the
# same way; required edges and tiers need the linear SEM's analytic estimator (they
# constrain the order, which the straight-through estimator's relaxed sampler cannot keep).
#
# The data: Sachs et al.'s protein-signalling measurements (Science 2005; 7466 cells,
# 11 phosphoproteins and phospholipids, log scale) with the consensus network of 18
# edges, from the copy the `cdt` package ships (`pip install cdt`; the benchmark extra
# installs it). The tiers are the pathway's textbook layout: membrane phospholipids and
# PLC-gamma, then the kinases PKC and PKA, then the MAP-kinase cascades and Akt. The
# rows pool the study's experimental conditions without labels, so none can be marked
# as interventional, and real data is neither linear nor Gaussian: read the numbers as
# what the knowledge changes, not as a solved problem
# (`benchmarks/results/causal_real_tables.md` has PC, GES and DAGMA on the same rows).

# %%
from pyrostruct.causal import Knowledge

try:
    sachs, consensus = datasets.load_sachs()
except ImportError:
    sachs = None
    print("pip install cdt to run this section (it ships the Sachs data)")
if sachs is not None:
    if SMOKE:
        sachs = sachs.iloc[::10]
    tiers = Knowledge(tiers=datasets.SACHS_TIERS)
    fits = {
        "no knowledge": discover(sachs, steps=STEPS, seed=0),
        "tiers": discover(sachs, knowledge=tiers, steps=STEPS, seed=0),
    }
    masks = fits["tiers"].knowledge
    print(pd.DataFrame({
        name: {
            "edges": int(r.adjacency.sum()),
            "SHD to the consensus network": metrics.shd(consensus, r.adjacency),
            "consensus edges found (directed)": int((r.adjacency * consensus).sum()),
            "P of edges the tiers forbid (max)": r.edge_probs[masks.forbidden].max(),
        }
        for name, r in fits.items()
    }).round(3))

# %% [markdown]
# ## Missing values and mixed columns
#
# Real tables have holes and coded columns. `missing="drop"` keeps the complete
# rows; `missing="pairwise"` estimates every covariance from the rows where both
# columns are observed, repairs the matrix to the nearest positive definite one
# (Higham 2002) and fits the linear SEM to exactly those moments, counting the
# fewest rows any two columns share as its sample size (the linear Gaussian
# likelihood depends on the data only through means and covariances, so this is
# exact; other SEMs refuse it). `missing="em"` fits the maximum-likelihood moments
# instead (EM): one consistent matrix, valid when cells are missing at random, and
# nearer than pairwise estimates on strongly correlated columns like these. Binary and ordinal columns go through the Gaussian
# copula: every column becomes its rank-based normal scores, one value per level
# (Harris & Drton 2013); `transform="auto"` does this as soon as a column has few
# distinct values, and leaves all-continuous tables untouched. Text columns are
# accepted when declared `categorical=[...]`. What was done is in the metadata;
# the weights of transformed columns are on the normal-scores scale.

# %%
table = datasets.make_dataset(d=6, n=400 if SMOKE else 2000, seed=4)
rng = np.random.default_rng(0)
holes = table.data.mask(rng.random(table.data.shape) < 0.1)  # 10% of the cells missing at random
mixed = table.data.copy()
mixed["X0"] = np.where(mixed["X0"] > 0, "high", "low")  # binary, as text
mixed["X3"] = pd.cut(mixed["X3"], 4, labels=False)  # ordinal, 4 levels
runs = {
    "complete": discover(table.data, steps=STEPS),
    "10% missing, pairwise": discover(holes, missing="pairwise", steps=STEPS),
    "10% missing, em": discover(holes, missing="em", steps=STEPS),
    "10% missing, drop": discover(holes, missing="drop", steps=STEPS),
    "binary + ordinal, copula": discover(mixed, categorical=["X0"], steps=STEPS),
}
print(runs["10% missing, pairwise"].metadata["missing"])
print(runs["binary + ordinal, copula"].metadata["transform"])
print(pd.DataFrame({
    name: {"rows fitted": r.metadata["num_rows"], "CPDAG SHD": metrics.shd_cpdag(table.adjacency, r.adjacency)}
    for name, r in runs.items()
}).T)

# %% [markdown]
# ## The same from the command line
#
# ```bash
# pyrostruct discover data.csv --out graph.json --plot graph.png --intervention-column intervened
# ```
#
# writes the consensus DAG as networkx node-link JSON (read it back with
# `networkx.node_link_graph` or `pyrostruct.causal.load_result`), shows a progress
# bar with the ELBO, and resumes from `--checkpoint FILE` after an interruption.
# `--out graph.graphml`, `graph.dot` or `edges.csv` (or `--format`) write GraphML,
# Graphviz DOT or an edge list instead, and `--cpdag` the CPDAG, with the edges the
# data cannot orient undirected (README, "Output formats").
