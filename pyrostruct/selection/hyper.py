"""Hyperparameters by evidence: a grid through :func:`~pyrostruct.selection.select`, or
gradient-based type-II maximum likelihood.

Type-II maximum likelihood (empirical Bayes; MacKay, "Bayesian interpolation",
1992) picks hyperparameters ``h`` by maximizing the evidence ``log p(x | h)``.
Variational EM maximizes its lower bound jointly over the guide and ``h``:

.. math::

    \\max_{h, \\phi} \\; \\mathbb{E}_{q_\\phi(z)}[\\log p(x, z \\mid h) - \\log q_\\phi(z)]
    \\le \\max_h \\log p(x \\mid h),

so ``h`` is learned on the whole training set, with no held-out split. In Pyro
this is a model whose hyperparameters are ``pyro.param``s: SVI trains them
with the guide's parameters (:func:`type2_maximum_likelihood`).

:func:`bayesian_regression` and :func:`regression_log_evidence` give a linear
regression with a Gaussian prior of scale ``tau`` on the weights, whose
evidence ``N(y | 0, tau^2 X X^T + sigma^2 I)`` is known in closed form, to
compare both routes against the exact answer.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from pyro.optim import ClippedAdam

from pyrostruct.data import model_arguments
from pyrostruct.errors import InputError, check_seed
from pyrostruct.infer.engine import CallbackHook, param_scope, train
from pyrostruct.infer.evidence import EvidenceEstimate, elbo_estimate
from pyrostruct.selection.select import Candidate

__all__ = [
    "bayesian_regression",
    "regression_log_evidence",
    "Type2Result",
    "type2_maximum_likelihood",
]


def _check_scale(value, name):
    if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
        raise InputError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def bayesian_regression(prior_scale: float | None = 1.0, noise_scale: float = 1.0) -> Candidate:
    """Linear regression ``y ~ N(X w, sigma^2)`` with ``w ~ N(0, tau^2 I)`` (model ``(X, y)``).

    With ``prior_scale=None``, ``tau`` is a ``pyro.param("prior_scale")`` for
    :func:`type2_maximum_likelihood` (initialized at 1).
    """
    noise_scale = _check_scale(noise_scale, "noise_scale")
    if prior_scale is not None:
        prior_scale = _check_scale(prior_scale, "prior_scale")

    def model(X, y):
        if prior_scale is None:
            tau = pyro.param("prior_scale", torch.tensor(1.0), constraint=dist.constraints.positive)
        else:
            tau = torch.tensor(prior_scale)
        w = pyro.sample("w", dist.Normal(0.0, tau).expand([X.shape[1]]).to_event(1))
        with pyro.plate("data", X.shape[0]):
            pyro.sample("y", dist.Normal((X * w).sum(-1), noise_scale), obs=y)

    return Candidate(model=model)


def regression_log_evidence(X, y, prior_scale: float, noise_scale: float = 1.0) -> float:
    """Exact ``log N(y | 0, tau^2 X X^T + sigma^2 I)`` of :func:`bayesian_regression`."""
    X = torch.as_tensor(X, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64)
    cov = prior_scale**2 * X @ X.T + noise_scale**2 * torch.eye(len(y), dtype=torch.float64)
    return float(dist.MultivariateNormal(torch.zeros(len(y), dtype=torch.float64), cov).log_prob(y))


@dataclasses.dataclass
class Type2Result:
    """Hyperparameters learned by type-II maximum likelihood.

    :ivar dict values: name -> learned value (constrained) of every
        ``pyro.param`` of the model.
    :ivar EvidenceEstimate elbo: the ELBO at the learned hyperparameters (a lower
        bound on their evidence).
    :ivar dict history: name -> list of values during training (every
        ``record_every`` steps).
    :ivar list losses: per-step ELBO.
    :ivar callable guide: the fitted guide; its parameters are in ``params``.
    :ivar dict params: the guide's parameters (a param-store state).
    :ivar float seconds: training time.
    """

    values: dict
    elbo: EvidenceEstimate
    history: dict
    losses: list
    guide: Callable
    params: dict
    seconds: float


def type2_maximum_likelihood(
    model: Callable,
    *args,
    guide: Callable | None = None,
    steps: int = 2000,
    lr: float = 0.05,
    num_particles: int = 4,
    seed: int = 0,
    elbo_particles: int = 1000,
    record_every: int = 10,
    **kwargs,
) -> Type2Result:
    """Learn a model's ``pyro.param`` hyperparameters by maximizing the ELBO (variational EM).

    The model's latent sites get an :class:`~pyro.infer.autoguide.AutoNormal`
    guide (or ``guide``); its parameters and the model's ``pyro.param``s are
    trained together by SVI with ``num_particles`` vectorized particles. Runs in
    its own parameter store: the caller's is left untouched.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be a positive integer, got {steps!r}")
    if isinstance(model, Candidate):
        model = model.model
    seed = check_seed(seed)
    args, kwargs = model_arguments(args, kwargs)
    tic = time.perf_counter()
    with param_scope():
        pyro.set_rng_seed(seed)
        guide = guide if guide is not None else AutoNormal(model)
        elbo = Trace_ELBO(num_particles=num_particles, vectorize_particles=True)
        optim = ClippedAdam({"lr": lr, "lrd": 0.1 ** (1.0 / steps)})
        svi = SVI(model, guide, optim, elbo)
        with poutine.block():
            svi.step(*args, **kwargs)
        model_params = _model_param_names(model, guide, args, kwargs)
        if not model_params:
            raise InputError(
                "the model has no pyro.param hyperparameters to learn; declare them with "
                "pyro.param(name, init, constraint=...) inside the model"
            )
        history = {name: [] for name in model_params}

        def record(step, loss) -> None:
            if step % record_every == 0 or step == steps - 1:
                for name in model_params:
                    history[name].append(pyro.param(name).detach().clone())

        with pyro.validation_enabled(False):
            losses = train(
                lambda: -svi.step(*args, **kwargs),
                steps,
                hooks=[CallbackHook(record)],
                name="type2_maximum_likelihood",
            )
            values = {name: pyro.param(name).detach().clone() for name in model_params}
            est = elbo_estimate(model, guide, *args, num_particles=elbo_particles, **kwargs)
        params = pyro.get_param_store().get_state()
    return Type2Result(values, est, history, losses, guide, params, time.perf_counter() - tic)


def _model_param_names(model, guide, args, kwargs) -> list[str]:
    with poutine.block(), torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
    return [name for name, site in model_trace.nodes.items() if site["type"] == "param"]
