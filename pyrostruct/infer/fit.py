"""``fit``: model in, trained posterior out.

A small SVI driver for the common case: build the guide with
:func:`~pyrostruct.infer.autoguide.auto_guide` (unless one is given), run
``Trace_ELBO`` with Adam for a fixed number of steps, step every temperature
schedule once per step, and return the trained guide with its loss trace.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import pyro
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import ClippedAdam

from pyrostruct.infer.schedules import TemperatureSchedule

__all__ = ["FitResult", "fit"]


class FitResult(NamedTuple):
    """What :func:`fit` returns: the model it trained on, the guide, the losses (-ELBO)."""

    model: Any
    guide: Any
    losses: list[float]


def fit(
    model,
    *args,
    guide=None,
    steps: int = 1000,
    lr: float = 0.02,
    num_particles: int = 1,
    temperature: Any = 0.5,
    elbo=None,
    seed: int | None = 0,
    progress: bool = False,
    **kwargs,
) -> FitResult:
    """Fit ``guide`` (default: ``auto_guide(model)``) to ``model(*args, **kwargs)`` by SVI.

    Maximizes the ELBO :math:`\\mathbb{E}_q[\\log p(x, z) - \\log q(z)]` with
    ``ClippedAdam(lr)`` for ``steps`` steps. A
    :class:`~pyrostruct.infer.TemperatureSchedule` passed as ``temperature`` (or
    held by the guide or its parts as ``.temperature``) is stepped after every
    SVI step. The Pyro parameter store is cleared first and ``seed`` set, so the
    same call gives the same result.

    :param model: a Pyro model.
    :param args, kwargs: the model's arguments (data).
    :param guide: a guide; default ``auto_guide(model, temperature=temperature)``.
        With a guide from :func:`~pyrostruct.infer.autoguide.auto_guide`, training
        runs on ``guide.model`` (the relaxed model), whatever ``model`` is passed.
    :param int steps: number of SVI steps (>= 1).
    :param float lr: Adam learning rate (> 0).
    :param int num_particles: ELBO particles per step.
    :param temperature: Gumbel-softmax temperature for ``auto_guide``.
    :param elbo: an ELBO instance (default ``Trace_ELBO(num_particles)``).
    :param seed: passed to ``pyro.set_rng_seed`` (``None``: leave the RNG alone).
    :param bool progress: show a tqdm progress bar with the ELBO.
    :returns: :class:`FitResult` ``(model, guide, losses)``.
    :raises ValueError: bad ``steps``/``lr``/``num_particles``.
    :raises RuntimeError: when the loss becomes NaN or infinite.

    Example::

        model, guide, losses = fit(model, data, steps=2000)
        guide.median(data)
    """
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if not (isinstance(num_particles, int) and num_particles >= 1):
        raise ValueError(f"num_particles must be a positive integer, got {num_particles!r}")
    if seed is not None:
        pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    from pyrostruct.infer.autoguide.structural import AutoStructural, auto_guide

    if guide is None:
        guide = auto_guide(model, temperature=temperature)
    if isinstance(guide, AutoStructural):
        model = guide.model  # the relaxed model the guide was built on
    elbo = elbo if elbo is not None else Trace_ELBO(num_particles=num_particles)
    svi = SVI(model, guide, ClippedAdam({"lr": lr}), elbo)
    svi.evaluate_loss(*args, **kwargs)  # sets the guide up, so its schedules can be found
    schedules = _schedules(temperature, guide)
    losses: list[float] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="fit", unit="step")
    try:
        for step in range(steps):
            loss = svi.step(*args, **kwargs)
            if not math.isfinite(loss):
                raise RuntimeError(
                    f"the loss became {loss} at step {step}; lower lr, raise the "
                    "temperature, or check the model for impossible values"
                )
            losses.append(loss)
            for schedule in schedules:
                schedule.step()
            if bar is not None:
                bar.update()
                if step % 10 == 0 or step == steps - 1:
                    bar.set_postfix(elbo=f"{-loss:.4g}")
    finally:
        if bar is not None:
            bar.close()
    return FitResult(model, guide, losses)


def _schedules(temperature, guide) -> list[TemperatureSchedule]:
    """Distinct temperature schedules held by ``temperature``, the guide and its parts."""
    found: dict[int, TemperatureSchedule] = {}
    candidates = [temperature, getattr(guide, "temperature", None)]
    if hasattr(guide, "__iter__"):
        candidates += [getattr(part, "temperature", None) for part in guide]
    for t in candidates:
        if isinstance(t, TemperatureSchedule):
            found[id(t)] = t
    return list(found.values())
