"""Gumbel-softmax latents vs the score-function estimator and exact enumeration.

Spike-and-slab variable selection (``include_j ~ Bernoulli(0.05)``,
``beta_j ~ Normal(0, 2)``, ``y ~ Normal(X (include * beta), sigma)``), mean-field
guides with the same family for every method: a Bernoulli (relaxed for
pyrostruct) per indicator and ``AutoNormal`` for ``beta`` and ``sigma``.

Methods:

- ``relaxed``: ``SVI(relax(model), auto_discrete_continuous_guide(model), Trace_ELBO())``;
- ``score-fn``: the discrete model with a Bernoulli guide and ``TraceGraph_ELBO``
  (score-function gradients for the indicators);
- ``enum``: ``TraceEnum_ELBO`` with the guide's indicators enumerated in parallel
  (exact expectations over them). It needs one enumeration dimension per indicator,
  so it only applies at small ``p`` (the ``p = 10`` row).

Columns: gradient variance of the indicator logits (one particle, at the initial
parameters, summed over coordinates) and its ratio score-fn / relaxed; F1 of
``{j : q(include_j = 1) > 0.5}``; the *discrete* negative ELBO of each method's
guide (indicators sampled as Bernoulli(q), or enumerated exactly at p = 10),
all evaluated with the same estimator; wall time (training only, not the
evaluations) to reach two fixed losses: 95% of the way from the initial loss to
the best loss any method reached, and that best loss + 0.5% + 2 nats; ms per step.

The last table: per-step time of the autoguide path (``relax(hard=True)`` +
``auto_discrete_continuous_guide(hard=True)``) vs a hand-written guide with
Pyro's ``RelaxedBernoulliStraightThrough`` on the same model at p = 200, n = 300.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, TraceGraph_ELBO, config_enumerate
from pyro.infer.autoguide import AutoGuideList, AutoNormal
from pyro.optim import Adam
from torch.distributions import constraints

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Report, parse_args  # noqa: E402

from pyrostruct.handlers import relax  # noqa: E402
from pyrostruct.infer.autoguide import auto_discrete_continuous_guide  # noqa: E402
from pyrostruct.selection.datasets import make_sparse_regression  # noqa: E402

TAU = 0.5
PRIOR = 0.05


def make_data(p, n, k, seed):
    X, y, beta = make_sparse_regression(n, p, k, seed=seed)
    return X, y, set(beta.nonzero().flatten().tolist())


# ---------------------------------------------------------------- vectorized model (large p)


def model(X, y=None):
    with pyro.plate("features", X.shape[1]):
        include = pyro.sample("include", dist.Bernoulli(PRIOR))
        beta = pyro.sample("beta", dist.Normal(0.0, 2.0))
    sigma = pyro.sample("sigma", dist.HalfNormal(2.0))
    with pyro.plate("data", X.shape[0]):
        pyro.sample("y", dist.Normal(X @ (include * beta), sigma), obs=y)


# ---------------------------------------------------------------- one site per indicator (small p)


def site_model(X, y=None):
    p = X.shape[1]
    beta = pyro.sample("beta", dist.Normal(0.0, 2.0).expand([p]).to_event(1))
    sigma = pyro.sample("sigma", dist.HalfNormal(2.0))
    mean = 0.0
    for j in range(p):
        include_j = pyro.sample(f"include_{j}", dist.Bernoulli(PRIOR))
        mean = mean + include_j * beta[..., j] * X[:, j]
    with pyro.plate("data", X.shape[0]):
        pyro.sample("y", dist.Normal(mean, sigma), obs=y)


def site_bernoulli_guide(X, y=None):
    logits = pyro.param("sf_logits", lambda: torch.zeros(X.shape[1]))
    for j in range(X.shape[1]):
        pyro.sample(f"include_{j}", dist.Bernoulli(logits=logits[j]))


# ---------------------------------------------------------------- guides per method


def build(method, p, vectorized):
    m = model if vectorized else site_model
    names = ["include"] if vectorized else [f"include_{j}" for j in range(p)]
    if method == "relaxed":
        guide = auto_discrete_continuous_guide(m, temperature=TAU)
        return relax(m, temperature=TAU), guide, Trace_ELBO()
    guide = AutoGuideList(m)
    if vectorized:

        def discrete(X, y=None):  # inside the plate object the AutoGuideList created
            logits = pyro.param("sf_logits", lambda: torch.zeros(X.shape[1]))
            with guide.plates["features"]:
                pyro.sample("include", dist.Bernoulli(logits=logits))

    else:
        discrete = site_bernoulli_guide
    guide.append(config_enumerate(discrete) if method == "enum" else discrete)
    guide.append(AutoNormal(poutine.block(m, hide=names)))
    if method == "enum":
        return m, guide, TraceEnum_ELBO(max_plate_nesting=1)
    return m, guide, TraceGraph_ELBO()


def inclusion_logits(method, guide, vectorized, p):
    if method == "relaxed":
        if vectorized:
            return guide[0].logits.include
        return torch.stack([getattr(guide[0].logits, f"include_{j}") for j in range(p)])
    return pyro.param("sf_logits")


def discrete_eval_loss(method, guide, X, y, vectorized, particles):
    """Discrete negative ELBO of the guide's family, the same estimator for every method."""
    p = X.shape[1]
    with torch.no_grad():
        logits = inclusion_logits(method, guide, vectorized, p).detach()
    continuous = guide[1]

    def eval_guide(X, y=None):
        if vectorized:
            with pyro.plate("features", p):
                pyro.sample("include", dist.Bernoulli(logits=logits))
        else:
            for j in range(p):
                pyro.sample(
                    f"include_{j}",
                    dist.Bernoulli(logits=logits[j]),
                    infer={"enumerate": "parallel"},
                )
        continuous(X, y)

    m = model if vectorized else site_model
    with torch.no_grad():
        if vectorized:
            return Trace_ELBO(num_particles=particles).loss(m, eval_guide, X, y)
        return TraceEnum_ELBO(max_plate_nesting=1, num_particles=particles).loss(
            m, eval_guide, X, y
        )


def gradient_variance(method, p, X, y, vectorized, repeats, seed):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    m, guide, elbo = build(method, p, vectorized)
    guide(X, y)  # create the parameters at their initial values
    grads = []
    for _ in range(repeats):
        params = [v.unconstrained() for _, v in pyro.get_param_store().items()]
        for q in params:
            q.grad = None
        elbo.loss_and_grads(m, guide, X, y)
        logits = inclusion_logits(method, guide, vectorized, p)
        if vectorized or method != "relaxed":
            leaf = (
                pyro.get_param_store()
                .get_param("sf_logits" if method != "relaxed" else _param_name(guide, "include"))
                .unconstrained()
            )
            grads.append(leaf.grad.detach().clone())
        else:
            grads.append(
                torch.stack(
                    [
                        pyro.get_param_store()
                        .get_param(_param_name(guide, f"include_{j}"))
                        .unconstrained()
                        .grad.detach()
                        .reshape(())
                        for j in range(p)
                    ]
                )
            )
        del logits
    return torch.stack(grads).var(0).sum().item()


def _param_name(guide, site):
    for name in pyro.get_param_store().keys():
        if name.endswith(f"logits.{site}"):
            return name
    raise KeyError(site)


def train(method, p, X, y, truth, vectorized, steps, every, particles, seed):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    m, guide, elbo = build(method, p, vectorized)
    svi = SVI(m, guide, Adam({"lr": 0.05}), elbo)
    guide(X, y)  # parameters at their initial values
    curve, elapsed = [(0.0, discrete_eval_loss(method, guide, X, y, vectorized, particles))], 0.0
    for step in range(1, steps + 1):
        start = time.perf_counter()
        svi.step(X, y)
        elapsed += time.perf_counter() - start
        if step % every == 0 or step == steps:
            curve.append((elapsed, discrete_eval_loss(method, guide, X, y, vectorized, particles)))
    with torch.no_grad():
        probs = inclusion_logits(method, guide, vectorized, p).sigmoid()
    selected = set((probs > 0.5).nonzero().flatten().tolist())
    tp = len(selected & truth)
    f1 = 2 * tp / (len(selected) + len(truth)) if tp else 0.0
    return {"curve": curve, "f1": f1, "ms_per_step": 1e3 * elapsed / steps}


# ---------------------------------------------------------------- overhead


def overhead(p, n, steps, rounds, seed):
    X, y, _ = make_data(p, n, 5, seed)
    tau = torch.tensor(TAU)

    def hand_model(X, y=None):
        with pyro.plate("features", X.shape[1]):
            include = pyro.sample(
                "include", dist.RelaxedBernoulliStraightThrough(tau, probs=torch.tensor(PRIOR))
            )
            beta = pyro.sample("beta", dist.Normal(0.0, 2.0))
        sigma = pyro.sample("sigma", dist.HalfNormal(2.0))
        with pyro.plate("data", X.shape[0]):
            pyro.sample("y", dist.Normal(X @ (include * beta), sigma), obs=y)

    def hand_guide(X, y=None):
        p = X.shape[1]
        logits = pyro.param("h_logits", torch.zeros(p))
        loc = pyro.param("h_loc", torch.zeros(p))
        scale = pyro.param("h_scale", torch.full((p,), 0.1), constraint=constraints.positive)
        s_loc = pyro.param("h_s_loc", torch.tensor(0.0))
        s_scale = pyro.param("h_s_scale", torch.tensor(0.1), constraint=constraints.positive)
        with pyro.plate("features", p):
            pyro.sample("include", dist.RelaxedBernoulliStraightThrough(tau, logits=logits))
            pyro.sample("beta", dist.Normal(loc, scale))
        pyro.sample("sigma", dist.LogNormal(s_loc, s_scale))

    def per_step(make):
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        m, g = make()
        svi = SVI(m, g, Adam({"lr": 0.01}), Trace_ELBO())
        for _ in range(10):
            svi.step(X, y)
        start = time.perf_counter()
        for _ in range(steps):
            svi.step(X, y)
        return 1e3 * (time.perf_counter() - start) / steps

    def make_auto():
        return relax(model, temperature=TAU, hard=True), auto_discrete_continuous_guide(
            model, temperature=TAU, hard=True
        )

    hand, auto = [], []
    for _ in range(rounds):  # interleaved, so that load changes on a shared machine hit both
        hand.append(per_step(lambda: (hand_model, hand_guide)))
        auto.append(per_step(make_auto))
    return statistics.median(hand), statistics.median(auto)


def main() -> int:
    args = parse_args("gumbel", __doc__)
    torch.set_num_threads(args.threads or 1)
    report = Report("gumbel", quick=args.quick, command=args.command)
    quick = args.quick
    settings = [  # (p, n, k, vectorized, methods, steps, eval particles)
        (10, 300, 3, False, ["relaxed", "score-fn", "enum"], 300 if quick else 1000, 3),
        (100, 200, 5, True, ["relaxed", "score-fn"], 600 if quick else 2000, 10 if quick else 30),
        (500, 400, 5, True, ["relaxed", "score-fn"], 600 if quick else 2000, 10 if quick else 30),
    ]
    repeats = 30 if quick else 100
    ratios, f1s, enum_vs_relaxed = [], [], None
    for p, n, k, vectorized, methods, steps, particles in settings:
        every = max(1, steps // 12)
        X, y, truth = make_data(p, n, k, args.seed)
        results = {}
        for method in methods:
            var = (
                gradient_variance(method, p, X, y, vectorized, repeats, args.seed)
                if method != "enum"
                else float("nan")
            )
            res = train(method, p, X, y, truth, vectorized, steps, every, particles, args.seed)
            res["var"] = var
            results[method] = res
        best = min(loss for r in results.values() for _, loss in r["curve"])
        start = max(r["curve"][0][1] for r in results.values())
        target = best + 0.005 * abs(best) + 2.0  # near the best any method reached
        target_95 = start - 0.95 * (start - best)  # 95% of the best improvement
        for method, r in results.items():
            reached = [t for t, loss in r["curve"] if loss <= target]
            reached_95 = [t for t, loss in r["curve"] if loss <= target_95]
            r["time_to_target"] = reached[0] if reached else float("nan")
            r["time_to_95"] = reached_95[0] if reached_95 else float("nan")
            ratio = results["score-fn"]["var"] / r["var"] if method == "relaxed" else float("nan")
            report.add_row(
                {
                    "p": p,
                    "n": n,
                    "method": method,
                    "grad var (logits)": r["var"],
                    "var ratio score-fn/relaxed": ratio,
                    "F1": r["f1"],
                    "final -ELBO (discrete)": r["curve"][-1][1],
                    "best -ELBO (any method)": best,
                    "s to 95% of best gain": r["time_to_95"],
                    "s to best+0.5%": r["time_to_target"],
                    "ms/step": r["ms_per_step"],
                }
            )
        ratios.append(results["score-fn"]["var"] / results["relaxed"]["var"])
        f1s.append(results["relaxed"]["f1"])
        if "enum" in results:
            gap = min(x for _, x in results["relaxed"]["curve"]) - min(
                x for _, x in results["enum"]["curve"]
            )
            report.add_note(
                f"At p = {p} the relaxed guide's best discrete -ELBO stays {gap:.1f} nats above "
                "enum's: the relaxed objective's optimum is not the discrete one. Null "
                "indicators keep q ~ 0.005-0.025 where enum drives them to ~0 (a Concrete "
                "sample saturated near 0 has a vanishing pathwise gradient, and the relaxed "
                "KL is not the discrete KL)."
            )
            enum_vs_relaxed = (
                results["relaxed"]["time_to_95"],
                results["enum"]["time_to_95"],
            )

    o_steps, rounds = (100, 3) if args.quick else (300, 5)
    hand_ms, auto_ms = overhead(200, 300, o_steps, rounds, args.seed)
    report.add_row(
        {
            "p": 200,
            "n": 300,
            "method": "per-step overhead",
            "hand-written straight-through ms/step": hand_ms,
            "relax + autoguide ms/step": auto_ms,
            "autoguide / hand-written": auto_ms / hand_ms,
        }
    )
    report.add_note(
        "SVI steps: "
        + ", ".join(f"{s[5]} at p = {s[0]}" for s in settings)
        + f" (Adam lr 0.05, temperature {TAU}, one particle); gradient variance over "
        f"{repeats} one-particle estimates at the initial parameters; discrete -ELBO "
        "evaluated 12 times per run from "
        + ", ".join(f"{s[6]}" for s in settings)
        + " particles (indicators enumerated exactly at p = 10)."
    )
    report.add_note(
        "enum applies only at p = 10: it needs one enumeration dimension per indicator "
        "(2^p joint states); at p = 100, 500 it cannot run."
    )
    report.add_note(
        "The variance ratio is measured at the initial parameters (q = 0.5 for every "
        "indicator, a poor fit), where the score-function estimator is at its noisiest."
    )
    report.add_note(
        "The machine (2 cores) is shared with other jobs running at the same time; "
        "timings are indicative, ratios measured in one run are more reliable."
    )
    enum_text = ""
    if enum_vs_relaxed is not None:
        relaxed_s, enum_s = enum_vs_relaxed
        enum_text = f"; s to 95% of best gain at p=10: relaxed {relaxed_s:.2f}, enum {enum_s:.2f}"
    headline = (
        "gradient variance score-fn / relaxed: "
        + ", ".join(f"{r:.0f}x" for r in ratios)
        + " (p=10, 100, 500); relaxed F1: "
        + ", ".join(f"{f:.2f}" for f in f1s)
        + enum_text
        + f"; autoguide / hand-written per-step time at p=200: {auto_ms / hand_ms:.2f}x"
    )
    report.write(headline=headline)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
