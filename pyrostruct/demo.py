"""``make demo``: a short end-to-end tour of what pyrostruct can do today.

Each section is a real (small) run on built-in synthetic data and prints what
it did. Run with ``python -m pyrostruct.demo [--out DIR] [--smoke]``; ``--smoke``
runs every section with a few steps (what the tests run; the printed
results then mean nothing).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch

SECTIONS: list[tuple[str, Callable[[Path, bool], None]]] = []


def section(title: str):
    """Register a demo section (run in registration order)."""

    def register(fn: Callable[[Path, bool], None]) -> Callable[[Path, bool], None]:
        SECTIONS.append((title, fn))
        return fn

    return register


@section("Gumbel-softmax latents: spike-and-slab selection of 5 among 100 predictors")
def gumbel_variable_selection(out: Path, smoke: bool) -> None:
    import pyro
    import pyro.distributions as dist
    from pyro.infer import SVI, Trace_ELBO
    from pyro.optim import Adam

    from pyrostruct.handlers import relax
    from pyrostruct.infer.autoguide import auto_discrete_continuous_guide

    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    generator = torch.Generator().manual_seed(0)
    p, n = 100, 200
    X = torch.randn(n, p, generator=generator)
    truth = sorted(torch.randperm(p, generator=generator)[:5].tolist())
    beta = torch.zeros(p)
    beta[truth] = torch.tensor([1.5, -2.0, 1.0, -1.2, 1.8])
    y = X @ beta + torch.randn(n, generator=generator)

    def model(X, y=None):  # plain Pyro: 100 discrete inclusion indicators
        with pyro.plate("features", p):
            include = pyro.sample("include", dist.Bernoulli(0.05))
            coef = pyro.sample("coef", dist.Normal(0.0, 2.0))
        sigma = pyro.sample("sigma", dist.HalfNormal(2.0))
        with pyro.plate("data", n):
            pyro.sample("y", dist.Normal(X @ (include * coef), sigma), obs=y)

    guide = auto_discrete_continuous_guide(model, temperature=0.5)
    svi = SVI(relax(model, temperature=0.5), guide, Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(20 if smoke else 600):
        svi.step(X, y)
    probs = guide[0].probs()["include"]
    selected = sorted((probs > 0.5).nonzero().flatten().tolist())
    print(f"  true predictors:     {truth}")
    print(f"  selected predictors: {selected}  (posterior inclusion probability > 0.5)")
    print("  inclusion probabilities: " + ", ".join(f"x{j}: {probs[j]:.2f}" for j in selected))
    print(f"  largest among the other {p - len(selected)}: {probs[probs <= 0.5].max():.3f}")


@section("Sparse subspace VI: a Bayesian MLP on 8x8 digits with 10% of the variational parameters")
def sparse_subspace_bnn(out: Path, smoke: bool) -> None:
    import pyro
    from pyro import poutine
    from pyro.infer import SVI, Trace_ELBO

    from pyrostruct.infer.autoguide import AutoSparseSubspace, SubspaceScheduler
    from pyrostruct.nn import BayesianMLP, init_to_fan_in

    try:
        from sklearn.datasets import load_digits
    except ImportError:  # scikit-learn is a dev/bench extra
        print("  skipped: needs scikit-learn (pip install scikit-learn)")
        return
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    x, y = load_digits(return_X_y=True)
    x = torch.tensor((x - x.mean(0)) / (x.std(0) + 1e-6), dtype=torch.float32)
    y = torch.tensor(y)
    perm = torch.randperm(len(x))
    train, test = perm[:1347], perm[1347:]

    sizes = [64, 128, 128, 10]
    model = BayesianMLP(sizes)  # N(0, 1) priors on every weight and bias
    guide = AutoSparseSubspace(model, density=0.1, init_loc_fn=init_to_fan_in, init_scale=0.01)
    optim = pyro.optim.Adam({"lr": 0.01})
    svi = SVI(model, guide, optim, Trace_ELBO())
    num_steps = 20 if smoke else 800
    scheduler = SubspaceScheduler(guide, optim, num_steps=num_steps, update_every=100)
    for _ in range(num_steps):
        idx = train[torch.randint(len(train), (256,))]
        scheduler.step(svi.step, x[idx], y[idx], num_data=len(train))
    with torch.no_grad():
        probs = 0.0
        for _ in range(50):
            guide_trace = poutine.trace(guide).get_trace(x[test])
            with poutine.block():
                logits = poutine.replay(model, trace=guide_trace)(x[test])
            probs = probs + torch.softmax(logits, -1) / 50
    accuracy = (probs.argmax(-1) == y[test]).float().mean().item()
    dense = 2 * sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    print(f"  test accuracy {accuracy:.3f} (posterior predictive, 50 draws)")
    print(
        f"  variational parameters: {guide.num_variational_params} "
        f"(density {guide.density:.3f}); a dense AutoNormal would train {dense}"
    )
    print(f"  {len(scheduler.history)} layer updates moved the subspace during training")


@section("Differentiable DAG sampling: OrderedDAG samples on 6 nodes, acyclic by construction")
def dag_sampling(out: Path, smoke: bool) -> None:
    import networkx as nx
    import pyro

    from pyrostruct.distributions import OrderedDAG, get_order
    from pyrostruct.graph import is_acyclic, to_networkx

    pyro.set_rng_seed(0)
    d = 6
    scores = torch.linspace(1.0, -1.0, d, requires_grad=True)  # node 0 tends to come first
    edge_logits = torch.full((d, d), -0.5, requires_grad=True)
    dist = OrderedDAG(scores, edge_logits, temperature=0.5)
    graphs = dist.rsample((1000,))
    graphs.sum().backward()  # straight-through gradients reach both parameters
    acyclic = is_acyclic(graphs).all().item()
    nx_ok = all(nx.is_directed_acyclic_graph(to_networkx(a)) for a in graphs[:50].detach())
    print(f"  1000 samples, all acyclic: {acyclic} (torch check), {nx_ok} (networkx, first 50)")
    orders = get_order(graphs)
    joint = dist.log_prob(graphs)
    for k in range(3):
        edges = [tuple(e) for e in graphs[k].detach().nonzero().tolist()]
        marginal = dist.marginal_log_prob(graphs[k].detach())  # summed over orders
        print(f"  order {orders[k].tolist()}  edges {edges}")
        print(f"    log p(order, G) = {joint[k].item():.2f}, log p(G) = {marginal.item():.2f}")
    mean_edges = graphs.detach().sum((-1, -2)).mean().item()
    print(
        f"  mean edge count {mean_edges:.2f}; |grad scores| {scores.grad.norm():.2f}, "
        f"|grad edge_logits| {edge_logits.grad.norm():.2f}"
    )


@section("Structural autoguides: a ranking of 6 items from noisy games, guide built by auto_guide")
def structural_autoguide(out: Path, smoke: bool) -> None:
    import pyro
    import pyro.distributions as dist

    from pyrostruct.distributions import PlackettLuce
    from pyrostruct.infer import fit

    pyro.set_rng_seed(0)
    m, games = 6, 300
    true_order = torch.tensor([4, 1, 5, 0, 3, 2])
    position = torch.empty(m)
    position[true_order] = torch.arange(m, dtype=torch.float)
    i = torch.randint(0, m, (games,))
    j = (i + torch.randint(1, m, (games,))) % m
    wins = torch.bernoulli(torch.sigmoid(2.0 * (position[j] - position[i])))

    def model(i, j, wins):  # who wins depends on the hidden order (a permutation latent)
        P = pyro.sample("order", PlackettLuce(torch.zeros(m)))
        pos = P.transpose(-1, -2) @ torch.arange(m, dtype=P.dtype)
        with pyro.plate("games", len(i)):
            pyro.sample("win", dist.Bernoulli(logits=2.0 * (pos[..., j] - pos[..., i])), obs=wins)

    steps = 20 if smoke else 300
    model, guide, losses = fit(model, i, j, wins, steps=steps, lr=0.05, num_particles=4)
    found = guide.median(i, j, wins)["order"].argmax(-1)
    print(f"  guide parts: {guide.site_parts}; ELBO {-losses[0]:.1f} -> {-losses[-1]:.1f}")
    print(f"  true order  {true_order.tolist()}\n  found order {found.tolist()}")


@section("Model selection: how many clusters? Evidence of K = 1..5 Gaussian mixtures")
def model_selection(out: Path, smoke: bool) -> None:
    from pyrostruct.selection import make_gmm_data, select_components

    x, _ = make_gmm_data(300, 3, 2, separation=7.0, seed=0)
    result = select_components(
        x, "gmm", 5, steps=20 if smoke else 250, num_restarts=1, seed=0,
        elbo_particles=300, iwae_particles=50, iwae_repeats=6,
        **({"smc_particles": 50} if smoke else {}),
    )  # fmt: skip
    table = result.table[["candidate", "elbo", "elbo_se", "iwae", "iwae_se", "ess",
                          "posterior_prob", "status"]]  # fmt: skip
    for line in table.to_string(index=False, float_format=lambda v: f"{v:.3f}").splitlines():
        print("  " + line)
    saved = 100 * result.savings["fraction_saved"]
    print(f"  true K = 3; chosen K = {result.best}; successive halving saved {saved:.0f}% of steps")
    result.plot(out / "gmm_evidence.png")
    print(f"  wrote {out / 'gmm_evidence.png'}")


@section("Causal discovery: `pyrostruct discover` on synthetic linear data with 20 variables")
def causal_discovery(out: Path, smoke: bool) -> None:
    import networkx as nx

    from pyrostruct import cli
    from pyrostruct.causal import datasets, load_result, metrics

    truth = datasets.make_dataset(d=20, n=1000, graph="ER", edges_per_node=2, noise="equal", seed=0)
    csv = out / "causal_data.csv"
    truth.data.to_csv(csv, index=False)
    graph_json, graph_png = out / "graph.json", out / "graph.png"
    # equal noise variances on the data's own scale: the DAG itself is identifiable
    argv = ["discover", str(csv), "--out", str(graph_json), "--plot", str(graph_png),
            "--noise", "equal", "--no-standardize", "--seed", "0"]  # fmt: skip
    if smoke:
        argv += ["--steps", "20"]
    print("  $ pyrostruct " + " ".join(argv[:2] + ["..."] + argv[6:]), flush=True)
    if cli.main(argv) != 0:
        raise RuntimeError("pyrostruct discover failed")
    result = load_result(graph_json)
    est = nx.to_numpy_array(result.graph, nodelist=truth.names, weight=None)
    shd = metrics.shd(truth.adjacency, est)
    auprc = metrics.auprc(truth.adjacency, result.edge_probs)
    print(f"  truth: {int(truth.adjacency.sum())} edges; consensus DAG: {int(est.sum())} edges")
    print(f"  SHD {shd}, TPR {metrics.tpr(truth.adjacency, est):.2f}, "
          f"FDR {metrics.fdr(truth.adjacency, est):.2f}, AUPRC {auprc:.3f}")  # fmt: skip
    print(f"  wrote {graph_json} and {graph_png}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyrostruct.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder")
    parser.add_argument("--smoke", action="store_true", help="a few steps per section (tests)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for i, (title, fn) in enumerate(SECTIONS, 1):
        print(f"[{i}/{len(SECTIONS)}] {title}", flush=True)
        start = time.perf_counter()
        fn(args.out, args.smoke)
        print(f"  ({time.perf_counter() - start:.1f} s)", flush=True)
    print(f"demo finished; outputs in {args.out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
