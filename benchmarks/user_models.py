"""Users' own enumerated models: Pyro's way, written out, against pyrostruct's automation.

Same run, same data, interleaved:

* **GMM tutorial** (Pyro's Gaussian mixture tutorial, model copied unchanged in
  ``tests/pyro_examples/gmm_tutorial.py``; data ``[0, 1, 10, 11, 12]``, K = 2):
  Pyro's way = ``AutoNormal`` on the globals + ``TraceEnum_ELBO`` + Adam, against
  ``pyrostruct.fit(model, data)`` and ``pyrostruct.select({2: model}, data)`` (one
  candidate: its data-aware initialization and restarts, ELBO only). ELBO (one
  200-particle ``TraceEnum_ELBO`` estimate for all), its gap to the exact log
  evidence (-17.13, assignments summed, weights and locations integrated in closed
  form, the scale by quadrature), locations error (mean |sorted median locs - [0.5, 11]|), seconds.
* **HMM** (``model_1`` and ``model_2`` of Pyro's ``examples/hmm.py``, copied
  unchanged in ``tests/pyro_examples/hmm.py``; 20 sequences of a sticky
  3-state HMM): Pyro's ``AutoDelta`` (as ``examples/hmm.py``) and ``AutoNormal``
  against ``pyrostruct.fit``; ELBO (AutoNormal and fit), hidden-state accuracy
  of MAP decoding (``infer_discrete``) up to relabelling, seconds. The exact
  evidence is not computable here.
* **Model selection on the tutorial's data**, K = 1..4: Pyro's way = the same
  fit for each K and the ELBOs as log evidence, against ``pyrostruct.select``
  with its defaults (ELBO, IWAE, and the guide-free SMC estimate, which ranks
  these small candidates) and with the bounds only. Posterior model
  probabilities against the exact ones, max abs error, rank of K = 1, seconds.
* **A user-written 2-D GMM swept over K = 1..8** (Dirichlet weights, Normal
  locs, LogNormal scales, Categorical assignments, ``locs[z]`` indexing, marked
  by ``config_enumerate``), 1000 points, 4 well-separated clusters: Pyro's way
  (a loop over K, ELBO by a 100-particle ``TraceEnum_ELBO`` estimate, which
  cannot vectorize particles for ``locs[z]``) against ``pyrostruct.select`` with
  the serial executor and with ``executor="process"`` (2 workers).

``--quick`` uses fewer steps and 400 points for the sweep. One torch thread per
process is the fair setting on the 2-core machine these numbers come from.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pyro  # noqa: E402
import torch  # noqa: E402
from harness import Report, load_script, parse_args  # noqa: E402
from pyro import poutine  # noqa: E402
from pyro.infer import SVI, TraceEnum_ELBO, infer_discrete  # noqa: E402
from pyro.infer.autoguide import AutoDelta, AutoNormal  # noqa: E402
from pyro.optim import Adam  # noqa: E402

import pyrostruct  # noqa: E402
from pyrostruct.selection import select  # noqa: E402
from pyrostruct.selection.datasets import (  # noqa: E402
    make_hmm_data,
    mixture_model,
    state_accuracy,
    tutorial_gmm,
    tutorial_gmm_log_evidence,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "tests" / "pyro_examples"


def _load(name):
    return load_script(EXAMPLES / f"{name}.py", f"pyro_examples_{name}")


# ------------------------------------------------------------------ shared pieces


def elbo_of(model, guide, *args, max_plate_nesting, num_particles=200, seed=123):
    """One many-particle TraceEnum_ELBO estimate (enumerated sites summed out exactly)."""
    pyro.set_rng_seed(seed)
    with torch.no_grad(), pyro.validation_enabled(False):
        elbo = TraceEnum_ELBO(max_plate_nesting=max_plate_nesting, num_particles=num_particles)
        return -elbo.loss(model, guide, *args)


def pyro_recipe(model, guide_class, expose_fn, args, *, steps, lr, max_plate_nesting, seed=0):
    """Pyro's way: an autoguide on the exposed globals, TraceEnum_ELBO, Adam."""
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    guide = guide_class(poutine.block(model, expose_fn=expose_fn))
    svi = SVI(model, guide, Adam({"lr": lr}), TraceEnum_ELBO(max_plate_nesting=max_plate_nesting))
    svi.step(*args)  # validated once, as fit does
    with pyro.validation_enabled(False):
        for _ in range(steps - 1):
            svi.step(*args)
    return guide


def timed(fn, *args, **kwargs):
    tic = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - tic


# ------------------------------------------------------------------ the tutorial's GMM


def gmm_tutorial_rows(report, gmm, steps, lr, exact):
    def locs_error(locs):
        return float((locs.sort().values - torch.tensor([0.5, 11.0])).abs().mean())

    globals_ = lambda msg: msg["name"] in ("weights", "scale", "locs")  # noqa: E731
    rows = {}
    for method in ["Pyro AutoNormal + TraceEnum_ELBO", "pyrostruct.fit", "pyrostruct.select"]:
        if method == "pyrostruct.select":  # one candidate: data-aware init, 2 restarts (vmap)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result, seconds = timed(
                    select, {2: gmm.model}, gmm.data, steps=steps, lr=lr, halving=None,
                    evidence=("elbo",),
                )  # fmt: skip
            fitted = result.posterior(2)
            model, guide, median = fitted.model, fitted.guide, fitted.median()
            with pyro.get_param_store().scope(fitted.params):
                elbo = elbo_of(model, guide, gmm.data, max_plate_nesting=1)
        elif method.startswith("Pyro"):
            guide, seconds = timed(
                pyro_recipe, gmm.model, AutoNormal, globals_, (gmm.data,), steps=steps, lr=lr,
                max_plate_nesting=1,
            )  # fmt: skip
            model, median = gmm.model, guide.median(gmm.data)
        else:
            result, seconds = timed(pyrostruct.fit, gmm.model, gmm.data, steps=steps, lr=lr, seed=0)
            model, guide, median = result.model, result.guide, result.guide.median(gmm.data)
        if method != "pyrostruct.select":
            elbo = elbo_of(model, guide, gmm.data, max_plate_nesting=1)
        rows[method] = {
            "example": "GMM tutorial, K = 2",
            "method": method,
            "ELBO": elbo,
            "gap to exact": exact - elbo,
            "posterior error": locs_error(median["locs"]),
            "error measure": "mean abs error of sorted locs",
            "seconds": seconds,
        }
    base = rows["Pyro AutoNormal + TraceEnum_ELBO"]["seconds"]
    for row in rows.values():
        row["x Pyro time"] = row["seconds"] / base
        report.add_row(row)


# ------------------------------------------------------------------ HMM (examples/hmm.py)


def _stack_states(values, num_sequences):
    return torch.stack([values[f"x_{t}"].reshape(num_sequences) for t in range(len(values))], 1)


def hmm_rows(report, hmm, steps, lr):
    sequences, lengths, states = make_hmm_data()
    args = argparse.Namespace(hidden_dim=3, jit=False)
    data = (sequences, lengths, args)
    probs = lambda msg: msg["name"].startswith("probs_")  # noqa: E731 (as in examples/hmm.py)
    for name in ["model_1", "model_2"]:
        model = getattr(hmm, name)
        rows = {}
        for method in ["Pyro AutoDelta + TraceEnum_ELBO", "Pyro AutoNormal + TraceEnum_ELBO",
                       "pyrostruct.fit"]:  # fmt: skip
            if method.startswith("Pyro"):
                guide_class = AutoDelta if "Delta" in method else AutoNormal
                guide, seconds = timed(
                    pyro_recipe, model, guide_class, probs, data, steps=steps, lr=lr,
                    max_plate_nesting=2,
                )  # fmt: skip
                fixed = poutine.condition(model, data=guide.median(*data))
                inferred = infer_discrete(fixed, temperature=0, first_available_dim=-3)
                trace = poutine.trace(inferred).get_trace(*data)
                values = {n: s["value"] for n, s in trace.nodes.items() if n.startswith("x_")}
                decoded = _stack_states(values, len(sequences))
                elbo = (
                    elbo_of(model, guide, *data, max_plate_nesting=2)
                    if guide_class is AutoNormal
                    else math.nan  # a point mass: its "ELBO" is not a bound on log p(x)
                )
            else:
                result, seconds = timed(pyrostruct.fit, model, *data, steps=steps, lr=lr, seed=0)
                decoded = _stack_states(result.infer_discrete(), len(sequences))
                elbo = elbo_of(result.model, result.guide, *data, max_plate_nesting=2)
            rows[method] = {
                "example": f"HMM {name} (examples/hmm.py)",
                "method": method,
                "ELBO": elbo,
                "gap to exact": math.nan,
                "posterior error": 1.0 - state_accuracy(decoded, states, lengths),
                "error measure": "1 - hidden-state accuracy",
                "seconds": seconds,
            }
        base = rows["Pyro AutoNormal + TraceEnum_ELBO"]["seconds"]
        for row in rows.values():
            row["x Pyro time"] = row["seconds"] / base
            report.add_row(row)


# ------------------------------------------------------------------ model selection


def pyro_select(family, ks, data, *, steps, lr, num_particles, hide, max_plate_nesting=1):
    """Pyro's way of comparing K: fit each with AutoNormal + TraceEnum_ELBO, compare ELBOs."""
    elbos = []
    for K in ks:
        model = family(K)
        guide = pyro_recipe(
            model, AutoNormal, lambda msg, hide=hide: msg["name"] not in hide, (data,),
            steps=steps, lr=lr, max_plate_nesting=max_plate_nesting,
        )  # fmt: skip
        elbos.append(
            elbo_of(model, guide, data, max_plate_nesting=max_plate_nesting,
                    num_particles=num_particles)
        )  # fmt: skip
    elbos = np.array(elbos)
    return elbos, np.exp(elbos - np.logaddexp.reduce(elbos))


def tutorial_selection_rows(report, data, steps, exact, seed):
    ks = [1, 2, 3, 4]
    exact_probs = np.exp(exact - np.logaddexp.reduce(exact))
    fmt = lambda p: "/".join(f"{v:.2f}" for v in p)  # noqa: E731
    report.add_row({
        "example": "select on the tutorial's data, K = 1..4",
        "method": "exact (enumeration + quadrature)",
        "posterior probs": fmt(exact_probs),
    })  # fmt: skip
    rows = []
    methods = {
        "Pyro's way (AutoNormal + TraceEnum_ELBO per K, ELBO)": None,
        "pyrostruct.select (defaults: ELBO, IWAE, SMC)": {},
        "pyrostruct.select (bounds only: evidence=('elbo', 'iwae'))": dict(
            evidence=("elbo", "iwae")
        ),
    }
    for method, options in methods.items():
        if options is None:
            (_, probs), seconds = timed(
                pyro_select, tutorial_gmm, ks, data, steps=steps, lr=0.1, num_particles=200,
                hide={"assignment"},
            )  # fmt: skip
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result, seconds = timed(
                    select, {K: tutorial_gmm(K) for K in ks}, data, steps=steps, seed=seed,
                    **options,
                )  # fmt: skip
            probs = result.posterior_probs.to_numpy()
        rows.append({
            "example": "select on the tutorial's data, K = 1..4",
            "method": method,
            "posterior probs": fmt(probs),
            "posterior error": float(np.abs(probs - exact_probs).max()),
            "error measure": "max abs error of posterior probs",
            "K = 1 ranked last": bool(np.argmin(probs) == 0),
            "seconds": seconds,
        })  # fmt: skip
    for row in rows:
        row["x Pyro time"] = row["seconds"] / rows[0]["seconds"]
        report.add_row(row)


def blobs(n, seed, separation=8.0):
    g = torch.Generator().manual_seed(seed)
    centers = separation * torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    z = torch.randint(4, (n,), generator=g)
    return centers[z] + torch.randn(n, 2, generator=g)


def sweep_rows(report, x, steps, seed):
    ks = list(range(1, 9))
    rows = []
    methods = [
        "Pyro's way (AutoNormal + TraceEnum_ELBO per K, ELBO)",
        "pyrostruct.select (serial)",
        "pyrostruct.select (process, 2 workers)",
    ]
    for method in methods:
        if method.startswith("Pyro"):
            (elbos, _), seconds = timed(
                pyro_select, mixture_model, ks, x, steps=steps, lr=0.05, num_particles=100,
                hide={"z"},
            )  # fmt: skip
            picked = ks[int(np.argmax(elbos))]
        else:
            executor = "process" if "process" in method else "serial"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result, seconds = timed(
                    select, {K: mixture_model(K) for K in ks}, x, steps=steps, seed=seed,
                    executor=executor, max_workers=2,
                )  # fmt: skip
            picked = result.best
        rows.append({
            "example": f"user GMM sweep K = 1..8, n = {len(x)}, 2-D, 4 clusters",
            "method": method,
            "picked K": picked,
            "posterior error": float(picked != 4),
            "error measure": "wrong K (0/1)",
            "seconds": seconds,
        })  # fmt: skip
    for row in rows:
        row["x Pyro time"] = row["seconds"] / rows[0]["seconds"]
        report.add_row(row)


def main() -> int:
    args = parse_args("user_models", __doc__)
    torch.set_num_threads(args.threads or 1)
    report = Report("user_models", quick=args.quick, command=args.command)
    gmm, hmm = _load("gmm_tutorial"), _load("hmm")
    fit_steps, select_steps, n = (200, 300, 400) if args.quick else (500, 1000, 1000)
    exact = np.array([tutorial_gmm_log_evidence(K, gmm.data) for K in [1, 2, 3, 4]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gmm_tutorial_rows(report, gmm, fit_steps, 0.1, float(exact[1]))
        hmm_rows(report, hmm, fit_steps, 0.05)
    tutorial_selection_rows(report, gmm.data, select_steps, exact, args.seed)
    sweep_rows(report, blobs(n, args.seed), select_steps, args.seed)
    report.add_note(
        f"fit rows: {fit_steps} steps (lr 0.1 GMM, 0.05 HMM) for every method; select rows: "
        f"{select_steps} steps per restart (select's defaults otherwise: 2 restarts, successive "
        "halving, 500-particle ELBO, 10 x 100-particle IWAE, and on the tutorial's 5 points "
        "the guide-free SMC estimate, 8 x 500 particles; the 1000-point sweep is too large "
        "for SMC); Pyro's way fits each K once with the same steps"
    )
    report.add_note(
        "ELBO: one 200-particle TraceEnum_ELBO estimate (HMM, GMM fit rows); the exact log "
        f"evidence of the tutorial's data is {exact[1]:.3f} (K = 2), "
        f"{'/'.join(f'{v:.3f}' for v in exact)} for K = 1..4"
    )
    report.add_note(
        "timings: one torch thread per process, on a 2-core machine shared with other jobs "
        "(noisy); methods interleaved in the same run"
    )
    rows = [r for r in report.rows if "seconds" in r]
    sweep = [r for r in rows if r["example"].startswith("user GMM") and "serial" in r["method"]]
    headline = (
        f"user GMM K = 1..8 sweep (n = {n}): select picks K = {sweep[0]['picked K']} in "
        f"{sweep[0]['seconds']:.0f} s serial"
    )
    report.write(headline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
