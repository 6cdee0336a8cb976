"""The tasks an executor runs for :func:`~pyrostruct.select`: fit one candidate from step
``start`` to ``stop`` (one restart, or all restarts vectorized), then estimate its evidence.

A task is a picklable payload dict in and a result dict out, so that the
serial, process and Ray executors (:mod:`pyrostruct.executors`) run
the same code; training goes through :func:`pyrostruct.infer.engine.train`.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import SVI
from pyro.optim import ClippedAdam

from pyrostruct.errors import InputError
from pyrostruct.infer.engine import ValidateFirstStep, param_scope, train
from pyrostruct.infer.evidence import LowESSWarning
from pyrostruct.selection.candidates import Candidate, _build, _Context, _derived_seed
from pyrostruct.selection.evidence import _evidence, _smc, _smc_guide
from pyrostruct.selection.restarts import (
    _VECTORIZED_STREAM,
    _build_vectorized,
    _restart_log_weights,
    _slice_restart,
    _vectorized_step,
    _vmap_restart_log_weights,
)

_SMC_STREAM = 2_000_003  # seeds of the SMC tasks, apart from the fitting ones


def _run_task(ctx: _Context, payload: dict) -> dict:
    """One task: a (candidate, restart), a candidate with all its restarts vectorized, or
    (``payload["task"] == "smc"``) a candidate's SMC evidence estimate.

    An exception raised while fitting (the model's own, or a non-finite ELBO)
    is returned as ``{"failed": message, "exception": exc}`` so that the sweep
    can keep the other candidates (``select(on_error="keep")``); ``exc`` is
    ``None`` when it cannot be pickled back from a worker process.
    """
    try:
        if payload.get("task") == "smc":
            return _run_smc(ctx, payload)
        if payload.get("vectorized"):
            return _run_vectorized(ctx, payload)
        return _run_sequential(ctx, payload)
    except Exception as e:  # noqa: BLE001 - reported per candidate, see select(on_error=...)
        return _failure(payload["index"], payload["restart"], e)


def _run_smc(ctx: _Context, payload: dict) -> dict:
    """The SMC estimate of one candidate's evidence: guide-free (the model's own
    ``pyro.param`` sites at the kept restart's fitted values, ``payload["model_params"]``),
    or (with ``payload["params"]``, the kept restart's fitted parameters) started from
    its fitted guide."""
    index = payload["index"]
    _, cand = ctx.candidates[index]
    tic = time.perf_counter()
    pyro.set_rng_seed(_derived_seed(ctx.seed, index, _SMC_STREAM))
    if payload.get("params") is None:  # prior-started: no guide needed
        with param_scope():  # a model's own parameters at their fitted values, not their init
            if payload.get("model_params") is not None:
                pyro.get_param_store().set_state(payload["model_params"])
            model, _, _, _, mpn = _build(cand, ctx.args, ctx.kwargs, None, 0)
            out = {"index": index, "restart": payload["restart"], **_smc(ctx, model, mpn)}
    else:  # started from the fitted guide of the kept restart
        with param_scope():
            model, guide, _, _, mpn = _build(cand, ctx.args, ctx.kwargs, None, payload["restart"])
            pyro.get_param_store().set_state(payload["params"])
            with poutine.block(), torch.no_grad():
                guide(*ctx.args, **ctx.kwargs)  # set up against the fitted parameters
            out = {"index": index, "restart": payload["restart"],
                   **_smc_guide(ctx, model, guide, mpn, payload.get("stop_below"))}  # fmt: skip
    out["seconds"] = time.perf_counter() - tic
    return out


def _failure(index, restart, exc: Exception) -> dict:
    import pickle

    lines = str(exc).splitlines()
    message = f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    input_error = isinstance(exc, InputError)
    try:
        pickle.dumps(exc)
    except Exception:  # noqa: BLE001 - an unpicklable exception travels as its message
        exc = None
    return {
        "index": index,
        "restart": restart,
        "failed": message,
        "exception": exc,
        "input_error": input_error,
    }


def _optimizer(ctx: _Context, cand: Candidate) -> ClippedAdam:
    lr = cand.lr if cand.lr is not None else ctx.lr
    # learning rate decays tenfold over the full run
    return ClippedAdam({"lr": lr, "lrd": 0.1 ** (1.0 / max(ctx.steps, 1)), "clip_norm": 10.0})


def _run_sequential(ctx: _Context, payload: dict) -> dict:
    """Fit one (candidate, restart) from ``start`` to ``stop`` steps, then estimate evidence."""
    index, restart = payload["index"], payload["restart"]
    name, cand = ctx.candidates[index]
    start, stop = payload["start"], payload["stop"]
    init_values = None
    if cand.init is not None and payload["state"] is None:
        rng = np.random.default_rng(_derived_seed(ctx.seed, index, restart, 999))
        init_values = cand.init(ctx.args, ctx.kwargs, rng)
    tic = time.perf_counter()
    with param_scope(), warnings.catch_warnings():
        warnings.simplefilter("ignore", LowESSWarning)
        pyro.set_rng_seed(_derived_seed(ctx.seed, index, restart, start))
        model, guide, loss, enumerated, mpn = _build(
            cand, ctx.args, ctx.kwargs, init_values, restart
        )
        optim = _optimizer(ctx, cand)
        if payload["state"] is not None:
            pyro.get_param_store().set_state(payload["state"]["params"])
            optim.set_state(payload["state"]["optim"])
        svi = SVI(model, guide, optim, loss)
        elbos = train(
            lambda: -svi.step(*ctx.args, **ctx.kwargs),
            stop,
            start=start,
            hooks=[ValidateFirstStep()],
            name=f"candidate {name!r}",
        )
        result = {
            "index": index,
            "restart": restart,
            "losses": elbos,
            "state": {"params": pyro.get_param_store().get_state(), "optim": optim.get_state()},
            "enumerated": enumerated,
            "max_plate_nesting": mpn,
        }
        others = _other_restarts(ctx, payload, cand) if payload["final"] else []
        result.update(_evidence(ctx, payload, model, guide, mpn, others))
    result["seconds"] = time.perf_counter() - tic
    return result


def _other_restarts(ctx: _Context, payload: dict, cand: Candidate) -> list:
    """``[(guide, param store state, rung ELBO)]`` of a candidate's other fitted restarts."""
    out = []
    for restart, params, elbo in payload.get("others", ()):
        with param_scope():
            if payload["vectorized"]:
                _, guide, _, _ = _slice_restart(
                    cand, ctx.args, ctx.kwargs, payload["state"]["params"], restart
                )
            else:
                _, guide, _, _, _ = _build(cand, ctx.args, ctx.kwargs, None, restart)
                pyro.get_param_store().set_state(params)
                with poutine.block(), torch.no_grad():
                    guide(*ctx.args, **ctx.kwargs)
            out.append((guide, pyro.get_param_store().get_state(), elbo))
    return out


def _run_vectorized(ctx: _Context, payload: dict) -> dict:
    """Fit all restarts of one candidate in one SVI run, batched along a restart plate.

    A fitting payload (``final`` false) runs steps ``start..stop`` and returns per
    restart lists: ``losses`` (the single-sample ELBO of each step), ``elbo`` and
    ``elbo_se`` (a ``rung_particles`` estimate). A final payload slices restart
    ``restart`` out into a plain guide (:func:`_slice_restart`) and returns its
    evidence estimates and parameters, as :func:`_run_sequential` does.
    """
    index, num_restarts = payload["index"], ctx.num_restarts
    name, cand = ctx.candidates[index]
    start, stop = payload["start"], payload["stop"]
    tic = time.perf_counter()
    if payload["final"]:
        restart = payload["restart"]
        with param_scope(), warnings.catch_warnings():
            warnings.simplefilter("ignore", LowESSWarning)
            pyro.set_rng_seed(_derived_seed(ctx.seed, index, restart, start))
            model, guide, enumerated, mpn = _slice_restart(
                cand, ctx.args, ctx.kwargs, payload["state"]["params"], restart
            )
            result = {
                "index": index,
                "restart": restart,
                "losses": [],
                "state": {"params": pyro.get_param_store().get_state(), "optim": None},
                "enumerated": enumerated,
                "max_plate_nesting": mpn,
            }
            others = _other_restarts(ctx, payload, cand)
            result.update(_evidence(ctx, payload, model, guide, mpn, others))
        result["seconds"] = time.perf_counter() - tic
        return result
    inits = None
    if cand.init is not None and payload["state"] is None:
        inits = [
            cand.init(
                ctx.args, ctx.kwargs, np.random.default_rng(_derived_seed(ctx.seed, index, r, 999))
            )
            for r in range(num_restarts)
        ]
    with param_scope(), warnings.catch_warnings():
        warnings.simplefilter("ignore", LowESSWarning)
        pyro.set_rng_seed(_derived_seed(ctx.seed, index, _VECTORIZED_STREAM, start))
        model, guide, enumerated, mpn = _build_vectorized(
            cand, ctx.args, ctx.kwargs, inits, num_restarts, vmap=index in ctx.vmap_restarts
        )
        log_weights = (
            _vmap_restart_log_weights if index in ctx.vmap_restarts else _restart_log_weights
        )
        optim = _optimizer(ctx, cand)
        if payload["state"] is not None:
            pyro.get_param_store().set_state(payload["state"]["params"])
            optim.set_state(payload["state"]["optim"])
        losses = train(
            lambda: _vectorized_step(model, guide, optim, ctx.args, ctx.kwargs, mpn, num_restarts),
            stop,
            start=start,
            hooks=[ValidateFirstStep()],
            name=f"candidate {name!r}",
        )
        losses = torch.stack(losses).T.tolist() if losses else [[]] * num_restarts
        state = {"params": pyro.get_param_store().get_state(), "optim": optim.get_state()}
        # each restart's ELBO, particles vectorized in chunks of ~500 particle-restarts
        chunk = max(1, 500 // num_restarts)
        lws, done = [], 0
        with pyro.validation_enabled(False), torch.no_grad():
            while done < ctx.rung_particles:
                size = min(chunk, ctx.rung_particles - done)
                lws.append(log_weights(model, guide, ctx.args, ctx.kwargs, mpn, num_restarts, size))
                done += size
        lw = torch.cat(lws)
        if not bool(torch.isfinite(lw).all()):
            raise ValueError(
                f"candidate {name!r}: non-finite log importance weights in the ELBO estimate"
            )
        se = (
            lw.std(0) / math.sqrt(len(lw)) if len(lw) > 1 else torch.full((num_restarts,), math.nan)
        )
    return {
        "index": index,
        "losses": losses,
        "state": state,
        "enumerated": enumerated,
        "max_plate_nesting": mpn,
        "elbo": lw.mean(0).tolist(),
        "elbo_se": se.tolist(),
        "seconds": time.perf_counter() - tic,
    }


def _payload(i, r, start, stop, final, evidence, state, vectorized=None) -> dict:
    return {
        "index": i,
        "restart": r,
        "vectorized": r is None if vectorized is None else vectorized,
        "start": start,
        "stop": stop,
        "final": final,
        "iwae": "iwae" in evidence,
        "state": state,
    }
