"""Differentiable DAG sampling: one rsample + backward of OrderedDAG against its peers.

For d in {10, 100, 1000} and batch in {1, 64}, in the same run:

- pyrostruct: ``OrderedDAG(scores, edge_logits, temperature=0.5).rsample((batch,))``
  then a backward pass (fused O(d^2) straight-through kernel); also at the default
  temperature 1, where the relaxed edges have a cheaper rational form;
- naive: the same straight-through estimator written with plain autograd ops
  (what the fused kernel replaces);
- floor: the work any sampler must do, ``torch.rand(batch, d, d)`` plus
  ``torch.sort`` of ``(batch, d)`` scores;
- Gumbel-Sinkhorn: a 20-iteration log-space Sinkhorn permutation sampler on a
  ``(d, d)`` parameter with Gumbel noise, plus backward (Mena et al. 2018);
- DAGMA: the log-det acyclicity ``-log det(sI - W*W) + d log s`` and its
  gradient for one ``(d, d)`` matrix (Bello et al. 2022), in torch float32 (autograd
  through ``slogdet``) and as the dagma package computes it (``DagmaLinear._h``:
  numpy float64 ``slogdet`` plus an explicit inverse);
- NOTEARS: the trace-exponential acyclicity ``tr exp(W*W) - d`` and its
  gradient for one ``(d, d)`` matrix (Zheng et al. 2018).

The acyclicity functions act on one graph; their times are per graph (for a
batch of 64 graphs multiply by 64). Run: ``python benchmarks/dag_sampling.py
[--quick] [--threads N]``; the quick size skips the slow peers at d = 1000.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    Report,
    parse_args,
    peak_memory,
    time_call,
    use_exact_memory_accounting,
)

use_exact_memory_accounting()  # peak_memory below must be exact

from pyrostruct.distributions import OrderedDAG  # noqa: E402
from pyrostruct.distributions._dag_ops import (  # noqa: E402
    forward_mask,
    gumbel_perturb,
    order_from_scores,
    ranks_from_order,
)


def floor(d, batch):
    torch.rand(batch, d, d)
    torch.sort(torch.randn(batch, d), dim=-1)


def make_pyrostruct(d, batch, temperature=0.5):
    scores = torch.zeros(d, requires_grad=True)
    logits = torch.zeros(d, d, requires_grad=True)
    weight = torch.randn(d, d)

    def run():
        value = OrderedDAG(scores, logits, temperature=temperature).rsample((batch,))
        value.backward(weight.expand(batch, d, d))
        scores.grad = logits.grad = None

    return run


def make_naive(d, batch):
    """Straight-through order-then-edges with plain autograd ops (no fused kernel)."""
    scores = torch.zeros(d, requires_grad=True)
    logits = torch.zeros(d, d, requires_grad=True)
    weight = torch.randn(d, d)
    tau = 0.5

    def run():
        g = gumbel_perturb(scores.expand(batch, d))
        rank = ranks_from_order(order_from_scores(g.detach()))
        u = torch.rand(batch, d, d)
        logistic = torch.log(u) - torch.log1p(-u)
        soft_edges = torch.sigmoid((logits + logistic) / tau)
        soft_mask = torch.sigmoid((g.unsqueeze(-1) - g.unsqueeze(-2)) / tau)
        hard = ((logits + logistic > 0) & forward_mask(rank)).float()
        soft = soft_edges * soft_mask
        value = hard + (soft - soft.detach())
        value.backward(weight.expand(batch, d, d))
        scores.grad = logits.grad = None

    return run


def make_sinkhorn(d, batch, iters=20, tau=0.5):
    log_alpha = (0.01 * torch.randn(d, d)).requires_grad_()
    weight = torch.randn(d, d)

    def run():
        u = torch.rand(batch, d, d).clamp_min(1e-20)
        x = (log_alpha - torch.log(-torch.log(u))) / tau
        for _ in range(iters):
            x = x - x.logsumexp(-1, keepdim=True)
            x = x - x.logsumexp(-2, keepdim=True)
        x.exp().backward(weight.expand(batch, d, d))
        log_alpha.grad = None

    return run


def make_dagma(d, s=1.0):
    w = (0.1 * torch.randn(d, d) / math.sqrt(d)).requires_grad_()
    eye = torch.eye(d)

    def run():
        h = -torch.linalg.slogdet(s * eye - w * w)[1] + d * math.log(s)
        h.backward()
        w.grad = None

    return run


def make_dagma_package(d):
    """DAGMA's own ``DagmaLinear._h`` (numpy float64 slogdet + inverse), if dagma is installed."""
    try:
        import numpy as np
        from dagma.linear import DagmaLinear
    except ImportError:
        return None
    model = DagmaLinear(loss_type="l2")
    model.d, model.Id = d, np.eye(d)
    w = 0.1 * np.random.default_rng(0).standard_normal((d, d)) / math.sqrt(d)
    return lambda: model._h(w)


def make_notears(d):
    w = (0.1 * torch.randn(d, d) / math.sqrt(d)).requires_grad_()

    def run():
        h = torch.trace(torch.linalg.matrix_exp(w * w)) - d
        h.backward()
        w.grad = None

    return run


def measure(fn, repeats):
    t = time_call(fn, warmup=1, repeats=repeats)
    mem = peak_memory(fn)
    return 1e3 * t.median, mem / 2**20


def main(argv=None):
    args = parse_args("dag_sampling", __doc__, argv)
    torch.manual_seed(args.seed)
    report = Report("dag_sampling", quick=args.quick, command=args.command)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    nan = float("nan")
    headline = {}
    for d in (10, 100, 1000):
        peers_per_graph = {}
        big = d >= 1000
        slow_ok = not (args.quick and big)
        if slow_ok:
            peers_per_graph["dagma"] = measure(make_dagma(d), 3 if big else 7)
            package = make_dagma_package(d)
            if package is not None:
                peers_per_graph["dagma_pkg"] = measure(package, 3 if big else 7)
            peers_per_graph["notears"] = measure(make_notears(d), 3 if big else 7)
        for batch in (1, 64):
            reps = 5 if d * d * batch >= 10**6 else 11
            ours = measure(make_pyrostruct(d, batch), reps)
            ours_t1 = measure(make_pyrostruct(d, batch, temperature=1.0), reps)
            base = measure(lambda d=d, b=batch: floor(d, b), reps)
            naive = measure(make_naive(d, batch), reps)
            # the 20-iteration Sinkhorn keeps ~40 (batch, d, d) tensors for backward
            sink_ok = slow_ok and not (big and batch > 1)
            sink = measure(make_sinkhorn(d, batch), 3 if big else reps) if sink_ok else (nan, nan)
            dagma = peers_per_graph.get("dagma", (nan, nan))
            notears = peers_per_graph.get("notears", (nan, nan))
            dagma_pkg = peers_per_graph.get("dagma_pkg", (nan, nan))
            per_graph = ours[0] / batch  # one DAG sample + its gradient
            row = {
                "d": d,
                "batch": batch,
                "pyrostruct ms": ours[0],
                "floor ms": base[0],
                "pyrostruct/floor": ours[0] / base[0],
                "pyrostruct tau=1 ms": ours_t1[0],
                "naive autograd ms": naive[0],
                "Gumbel-Sinkhorn ms": sink[0],
                "DAGMA ms (1 graph)": dagma[0],
                "dagma pkg ms (1 graph)": dagma_pkg[0],
                "NOTEARS ms (1 graph)": notears[0],
                "pyrostruct ms/graph": per_graph,
                "DAGMA/pyrostruct": dagma[0] / per_graph,
                "dagma pkg/pyrostruct": dagma_pkg[0] / per_graph,
                "NOTEARS/pyrostruct": notears[0] / per_graph,
                "pyrostruct MiB": ours[1],
                "floor MiB": base[1],
                "naive MiB": naive[1],
                "Sinkhorn MiB": sink[1],
                "DAGMA MiB": dagma[1],
                "dagma pkg MiB": dagma_pkg[1],
                "NOTEARS MiB": notears[1],
            }
            report.add_row(row)
            if d == 1000:
                headline[batch] = row
    report.add_note(
        "Times are medians of repeated calls; memory is the peak resident-set growth during "
        "one call. DAGMA/NOTEARS act on one graph and have no batch dimension: their columns "
        "repeat the per-graph time, and the X/pyrostruct ratios compare it with pyrostruct's "
        "time per sampled graph (batch time / batch)."
    )
    report.add_note(
        "Gumbel-Sinkhorn at d = 1000 is run for batch 1 only (batch 64 would keep ~40 tensors "
        "of 256 MB for its backward); the quick size skips all slow peers at d = 1000."
    )
    if hasattr(os, "getloadavg"):
        report.add_note(
            f"1-minute load average {load_before:.1f} at the start and "
            f"{os.getloadavg()[0]:.1f} at the end of the run on {os.cpu_count()} cores "
            "(other processes share the machine: compare ratios, not absolute times)."
        )
    parts = []
    for batch, row in sorted(headline.items()):
        part = f"d=1000, batch {batch}: rsample+backward {row['pyrostruct/floor']:.1f}x the floor"
        if row["DAGMA/pyrostruct"] == row["DAGMA/pyrostruct"]:
            part += (
                f", {row['DAGMA/pyrostruct']:.1f}x faster than the torch DAGMA log-det grad "
                f"({row['dagma pkg/pyrostruct']:.1f}x than the dagma package's) per graph, "
                f"{row['NOTEARS/pyrostruct']:.0f}x than NOTEARS"
            )
        parts.append(part)
    path = report.write(headline="; ".join(parts))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
