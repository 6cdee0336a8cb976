"""Causal discovery with a DAG latent, written out as a plain Pyro model.

The model a user would adapt: an Erdős–Rényi prior over DAGs (uniform order,
sparse forward edges), a linear Gaussian structural equation per node whose
parents are read off the sampled adjacency ``G[i, j] = 1`` (``i -> j``), and a
subsampled plate over rows. The guide is :class:`pyrostruct.infer.autoguide.AutoDAG`
(a Plackett-Luce order and Bernoulli edges with learnable parameters); the
relaxation temperature is annealed with
:class:`pyrostruct.distributions.temperature.ExponentialSchedule`.
:func:`pyrostruct.causal.discover` runs the same model with more machinery
(Bayesian weights with a non-local pMOM slab, :mod:`pyrostruct.causal.priors`,
instead of the point weights and Gaussian penalty here; vectorized particles;
checkpoints) and, for this linear
SEM, by default with edges and weights integrated exactly given each sampled
order (``estimator="analytic"``, :mod:`pyrostruct.causal.collapsed`).

    python models/causal_sem.py --num-nodes 10 --num-steps 2000
    python models/causal_sem.py --smoke        # seconds
"""

import argparse
import time

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyrostruct.causal import datasets, metrics
from pyrostruct.distributions import ErdosRenyiDAG
from pyrostruct.distributions.temperature import ExponentialSchedule
from pyrostruct.infer.autoguide import AutoDAG


def model(data, expected_edges, batch_size=None):
    n, d = data.shape
    # the causal graph: a latent DAG. The likelihood below changes smoothly with each
    # edge (the weights are multiplied by G), so the low-variance straight-through
    # gradient serves; AutoDAG's default would be the unbiased score-function one.
    graph = pyro.sample(
        "G",
        ErdosRenyiDAG(d, expected_edges=expected_edges),
        infer={"dag_estimator": "straight-through"},
    )
    # the structural equations: x_j = b_j + sum_i G_ij W_ij x_i + noise_j
    weight = pyro.param("W", torch.zeros(d, d))
    bias = pyro.param("b", torch.zeros(d))
    scale = pyro.param("sigma", torch.ones(d), constraint=dist.constraints.positive)
    # a weak Gaussian prior on the weights of the edges that are present
    pyro.factor("weight_prior", dist.Normal(0.0, 1.0).log_prob(weight * graph).sum((-1, -2)))
    with pyro.plate("rows", n, subsample_size=batch_size) as idx:
        x = data[idx]
        mean = bias + x @ (graph * weight)
        pyro.sample("X", dist.Normal(mean, scale).to_event(1), obs=x)


def main(args):
    pyro.set_rng_seed(args.seed)
    pyro.clear_param_store()
    truth = datasets.make_dataset(
        d=args.num_nodes, n=args.num_rows, graph="ER", edges_per_node=2, noise="equal",
        seed=args.seed,
    )  # fmt: skip
    data = torch.tensor(truth.data.values, dtype=torch.float32)
    data = (data - data.mean(0)) / data.std(0) if args.standardize else data
    schedule = ExponentialSchedule(initial=1.0, rate=3.0 / args.num_steps, minimum=0.2)
    guide = AutoDAG(model, temperature=schedule, init_edge_prob=0.5, rao_blackwellize=True)
    svi = SVI(model, guide, Adam({"lr": args.learning_rate}), Trace_ELBO())
    expected_edges = float(args.num_nodes)
    batch = min(args.batch_size, args.num_rows)
    start = time.perf_counter()
    for step in range(args.num_steps):
        loss = svi.step(data, expected_edges, batch)
        schedule.step()
        if step % max(1, args.num_steps // 10) == 0:
            elbo = -loss / args.num_rows
            print(f"step {step:5d}  ELBO/row {elbo:9.3f}  tau {schedule.temperature:.2f}")
    probs = guide.edge_probs(num_samples=1000).mean.numpy()
    median = guide.median(data, expected_edges, batch)["G"].numpy()
    print(f"trained in {time.perf_counter() - start:.1f} s")
    print(f"SHD of the most probable DAG: {metrics.shd(truth.adjacency, median)}")
    print(f"AUPRC of the edge probabilities: {metrics.auprc(truth.adjacency, probs):.3f}")

    expected = metrics.expected_shd(truth.adjacency, guide.sample_dags(500).numpy())
    print(f"expected SHD under the posterior: {expected:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-nodes", type=int, default=10)
    parser.add_argument("--num-rows", type=int, default=1000)
    parser.add_argument("--num-steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--learning-rate", type=float, default=0.03)
    parser.add_argument("--standardize", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes for the tests")
    args = parser.parse_args()
    if args.smoke:
        args.num_nodes, args.num_rows, args.num_steps = 4, 100, 100
    main(args)
