"""The candidates of :func:`~pyrostruct.select`: what one is, how its model and guide are built.

A :class:`Candidate` is a model with an optional guide (or guide factory),
initialization and learning rate; :func:`_build` turns one into the model,
guide and ELBO a restart trains (an :class:`~pyro.infer.autoguide.AutoNormal`
over the continuous sites, discrete sites enumerated by
:class:`~pyro.infer.TraceEnum_ELBO`). A :class:`FittedCandidate` is what a
:class:`~pyrostruct.selection.result.SelectionResult` holds afterwards.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceEnum_ELBO, config_enumerate
from pyro.infer.autoguide import AutoNormal
from pyro.infer.autoguide.initialization import (
    init_to_feasible,
    init_to_uniform,
    init_to_value,
)
from pyro.poutine.util import site_is_subsample

from pyrostruct.errors import InputError


@dataclasses.dataclass
class Candidate:
    """A candidate model for :func:`select`, with optional guide and initialization.

    :param callable model: a Pyro model called as ``model(*args, **kwargs)``.
    :param callable guide: optional, a guide, or ``None`` for an automatic one:
        :class:`~pyro.infer.autoguide.AutoNormal` over the continuous latent
        sites, with discrete latent sites summed out by parallel enumeration
        (:class:`~pyro.infer.TraceEnum_ELBO`). Discrete sites are never relaxed
        automatically: the ELBO of a Gumbel-softmax relaxation
        (:func:`pyrostruct.relax`) bounds the evidence of a different, continuous
        model, so it would not rank the candidates' evidence; a discrete site
        without finite support (Poisson, ...) needs a user guide. A guide that
        is a :class:`~pyro.nn.PyroModule` must be built afresh for each restart:
        pass a zero-argument factory as ``guide_factory`` instead.
    :param callable guide_factory: optional, ``guide_factory(model) -> guide``;
        called once per restart.
    :param callable init: optional, ``init(args, kwargs, rng) -> {site: value}``:
        initial values (constrained space) of latent sites for one restart
        (``rng`` is a seeded :class:`numpy.random.Generator`, one per restart),
        e.g. k-means++ locations for a mixture. Vectorized restarts stack the
        restarts' values along the restart dim. Without one, a model with a
        discrete assignment gets :func:`mixture_init` when it recognizes the
        model (``result.data_init`` says which did);
        ``init=lambda args, kwargs, rng: {}`` turns that off.
    :param float lr: optional, learning rate of the ClippedAdam optimizer
        (default: ``select``'s ``lr``).
    """

    model: Callable
    guide: Callable | None = None
    guide_factory: Callable | None = None
    init: Callable | None = None
    lr: float | None = None


@dataclasses.dataclass
class FittedCandidate:
    """A fitted candidate: the model, its guide and the fitted parameters.

    The parameters live in their own parameter-store state (``params``);
    :meth:`sample_posterior` and :meth:`median` enter it, so fitted candidates
    do not clash with each other or with the user's parameter store.
    """

    name: Any
    model: Callable
    guide: Callable
    params: dict
    args: tuple
    kwargs: dict
    losses: list
    restart: int
    enumerated: bool
    max_plate_nesting: int

    def sample_posterior(self, num_samples: int = 100, seed: int = 0) -> dict[str, torch.Tensor]:
        """Draw ``num_samples`` joint samples of the latent sites from the fitted guide."""
        samples: dict[str, list] = {}
        pyro.set_rng_seed(seed)
        with pyro.get_param_store().scope(self.params), torch.no_grad():
            for _ in range(num_samples):
                tr = poutine.trace(self.guide).get_trace(*self.args, **self.kwargs)
                for name, site in tr.nodes.items():
                    if site["type"] == "sample" and not site["infer"].get("is_auxiliary"):
                        samples.setdefault(name, []).append(site["value"].detach())
        return {k: torch.stack(v) for k, v in samples.items()}

    def median(self) -> dict[str, torch.Tensor]:
        """Posterior median of each latent site (autoguides only)."""
        if not hasattr(self.guide, "median"):
            raise TypeError(
                f"candidate {self.name!r}: its guide has no median(); use sample_posterior()"
            )
        with pyro.get_param_store().scope(self.params), torch.no_grad():
            return {k: v.detach() for k, v in self.guide.median(*self.args, **self.kwargs).items()}


def _derived_seed(seed: int, *keys: int) -> int:
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


def _as_candidate(value, name) -> Candidate:
    if isinstance(value, Candidate):
        return value
    if isinstance(value, tuple) and len(value) == 2 and all(callable(v) for v in value):
        return Candidate(model=value[0], guide=value[1])
    if callable(value):
        return Candidate(model=value)
    raise InputError(
        f"candidate {name!r}: expected a model, a (model, guide) pair or a Candidate, "
        f"got {type(value).__name__}"
    )


def _max_plate_nesting(trace) -> int:
    dims = [
        -f.dim
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for f in site["cond_indep_stack"]
        if f.vectorized and f.dim is not None
    ]
    return max(dims, default=0)


def _discrete_sites(trace) -> list:
    return [
        name
        for name, site in trace.nodes.items()
        if site["type"] == "sample"
        and not site["is_observed"]
        and not site_is_subsample(site)
        and site["fn"].support.is_discrete
    ]


def _is_enumerated(trace, discrete) -> bool:
    return bool(discrete) or any(
        site["type"] == "sample" and site["infer"].get("enumerate") == "parallel"
        for site in trace.nodes.values()
    )


def _build(cand: Candidate, args, kwargs, init_values, restart: int):
    """Model, guide, loss and metadata for one restart of one candidate."""
    with poutine.block(), torch.no_grad():
        trace = poutine.trace(cand.model).get_trace(*args, **kwargs)
    discrete = _discrete_sites(trace)
    mpn = _max_plate_nesting(trace)
    model = cand.model
    enumerated = _is_enumerated(trace, discrete)
    if cand.guide is not None:
        guide = cand.guide
    elif cand.guide_factory is not None:
        guide = cand.guide_factory(model)
    else:
        for name in discrete:
            if not trace.nodes[name]["fn"].has_enumerate_support:
                raise InputError(
                    f"site {name!r} is discrete without finite support, so it cannot be "
                    "enumerated; relax it (pyrostruct.handlers.relax) or pass a guide"
                )
        if discrete:
            model = config_enumerate(model, "parallel")
        if init_values:
            init_fn = init_to_value(values=init_values, fallback=init_to_feasible)
        elif restart == 0:
            init_fn = init_to_feasible  # 0 in unconstrained space, as Pyro's autoguides
        else:
            init_fn = init_to_uniform(radius=2.0)
        guide = AutoNormal(poutine.block(model, hide=discrete), init_loc_fn=init_fn)
    if enumerated:
        loss = TraceEnum_ELBO(max_plate_nesting=mpn, strict_enumeration_warning=False)
    else:
        loss = Trace_ELBO(max_plate_nesting=mpn)
    return model, guide, loss, enumerated, mpn


def _check_lr(value, name) -> None:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be a finite number > 0, got {value!r}")


def _check_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _normalize_candidates(candidates, grid) -> list:
    if callable(candidates) and not isinstance(candidates, Mapping):
        if grid is None:
            raise InputError(
                "a candidate family (a function of one argument) needs grid=, "
                "e.g. select(lambda k: model_k, data, grid=range(1, 9))"
            )
        grid = list(grid)
        if not grid:
            raise InputError("grid is empty; give at least one value")
        candidates = {g: candidates(g) for g in grid}
    elif grid is not None:
        raise InputError("grid= is only used with a candidate family (a function of one argument)")
    if not isinstance(candidates, Mapping):
        raise InputError(
            "candidates must be a mapping name -> model (or (model, guide)), "
            f"or a family with grid=; got {type(candidates).__name__}"
        )
    if len(candidates) == 0:
        raise InputError("no candidates given; pass at least one model")
    return [(name, _as_candidate(value, name)) for name, value in candidates.items()]


def _log_prior(prior, names) -> np.ndarray:
    if prior is None:
        return np.full(len(names), -math.log(len(names)))
    if not isinstance(prior, Mapping):
        raise InputError(f"prior must be a mapping candidate -> probability, got {prior!r}")
    unknown = [k for k in prior if k not in names]
    if unknown:
        raise InputError(f"prior names unknown candidate {unknown[0]!r}; candidates are {names}")
    missing = [n for n in names if n not in prior]
    if missing:
        raise InputError(f"prior gives no probability for candidate {missing[0]!r}")
    p = np.array([float(prior[n]) for n in names])
    if not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
        raise InputError("prior probabilities must be finite, >= 0 and not all zero")
    with np.errstate(divide="ignore"):
        return np.log(p / p.sum())


@dataclasses.dataclass
class _Context:
    candidates: list  # of (name, Candidate)
    args: tuple
    kwargs: dict
    steps: int
    lr: float
    seed: int
    elbo_particles: int
    iwae_particles: int
    iwae_repeats: int
    rung_particles: int
    num_restarts: int = 1
    symmetrize: bool = True
    vmap_restarts: frozenset = frozenset()  # vectorized candidates whose model needs vmap
    smc_particles: int = 500
    smc_guide_particles: int = 200
    smc_target_se: float = 0.5


@dataclasses.dataclass
class RestartFit:
    """What the sweep knows of one (candidate, restart): its fit so far and its evidence.

    :ivar list losses: the ELBO sample of every SVI step taken.
    :ivar float seconds: time spent on it (a vectorized fit's time split evenly).
    :ivar checkpoint: ``{"params": param-store state, "optim": optimizer state}`` to
        resume from, or ``None`` before the first rung (the vectorized candidates
        keep theirs per candidate).
    :ivar float elbo: the latest ELBO estimate (rung particles, then final).
    :ivar float rung_elbo: the ELBO at the last rung, which ranks the restarts.
    :ivar bool chosen: the candidate's kept restart, whose final evidence was estimated.
    """

    losses: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    checkpoint: dict | None = None
    elbo: float = math.nan
    elbo_se: float = math.nan
    rung_elbo: float = math.nan
    enumerated: bool = False
    max_plate_nesting: int = 0
    iwae: float = math.nan
    iwae_se: float = math.nan
    ess: float = math.nan
    iwae_restarts: int = 0
    symmetrized: bool = False
    smc: float = math.nan
    smc_se: float = math.nan
    smc_failed: str | None = None
    smc_start: str = ""
    smc_evaluations: int = 0
    chosen: bool = False

    def absorb(self, out: dict) -> None:
        """Take a task's result (:mod:`~pyrostruct.selection.tasks`): steps and seconds add
        up, its ``state`` becomes the checkpoint, every other field is replaced."""
        for key, value in out.items():
            if key == "losses":
                self.losses += value
            elif key == "seconds":
                self.seconds += value
            elif key == "state":
                self.checkpoint = value
            elif key not in ("index", "restart"):
                if not hasattr(self, key):
                    raise AttributeError(f"RestartFit has no field {key!r} (task output)")
                setattr(self, key, value)
