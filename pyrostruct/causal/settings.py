"""The settings of one :func:`~pyrostruct.causal.discover` call, checked once.

:class:`Settings` is a frozen dataclass built from ``discover``'s keyword
arguments by :meth:`Settings.create`, which fills the defaults that depend on
the data and on other settings (the estimator, the number of steps, the
learning rate, the expected number of edges, the initial order) and refuses bad
values with an :class:`~pyrostruct.errors.InputError` naming the argument.
:meth:`Settings.config` is the JSON record of the run (the result's metadata and
the checkpoint's fingerprint).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from pyrostruct import errors
from pyrostruct.causal.knowledge import KnowledgeMasks
from pyrostruct.causal.orders import check_init_order
from pyrostruct.causal.priors import WEIGHT_PRIORS
from pyrostruct.causal.sem import MLPSEM, LinearGaussianSEM, StructuralEquationModel
from pyrostruct.data import is_real_number
from pyrostruct.errors import InputError, check_count

__all__ = ["Settings", "check_seed", "check_pairwise", "check_num_samples", "check_draw_count",
           "expected_edge_count", "ESTIMATOR_NAMES", "MAX_NUM_SAMPLES"]  # fmt: skip

_SEMS = ("linear", "linear-equal", "mlp")

#: The names ``discover(estimator=...)`` takes.
ESTIMATOR_NAMES = ("analytic", "straight-through", "exact")

#: Settings only the variational estimators use, with their defaults: a value other than
#: the default is refused by ``estimator="exact"``.
#: (``search_start``, a hint for the order search, is ignored by ``"exact"``, which has no
#: search; ``hidden`` and ``checkpoint_every`` only matter with the MLP SEM and a
#: checkpoint.)
VARIATIONAL_DEFAULTS = {
    "steps": None, "lr": None, "num_particles": 8, "batch_size": None,
    "temperature": (1.0, 0.2), "init_order": None, "weight_prior": None,
}  # fmt: skip


#: The most DAGs ``discover`` draws (``num_samples``) or ``sample_dags`` returns in one call:
#: the draws are held in memory, ``num_samples x d x d``, and the Monte Carlo standard error
#: of an edge probability is at most ``0.5 / sqrt(num_samples)``, 0.0005 there.
MAX_NUM_SAMPLES = 10**6


def expected_edge_count(expected_edges, d: int) -> float:
    """The prior expected number of edges ``m`` of ``d`` nodes: ``expected_edges`` checked,
    or by default ``min(d, d (d - 1) / 4)``; it must lie strictly between 0 and ``d (d -
    1) / 2``."""
    pairs = d * (d - 1) / 2
    if expected_edges is not None and not is_real_number(expected_edges):
        raise InputError(f"expected_edges must be a number, got {expected_edges!r}")
    m = min(float(d), pairs / 2) if expected_edges is None else float(expected_edges)
    if not 0 < m < pairs:
        raise InputError(
            f"expected_edges must lie strictly between 0 and d(d-1)/2 = {pairs:g}, got {m}"
        )
    return m


def check_num_samples(value, name: str = "num_samples", minimum: int = 2) -> int:
    """``value`` as an int from ``minimum`` to :data:`MAX_NUM_SAMPLES` (Python or numpy
    integers; floats, strings and bools refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value > MAX_NUM_SAMPLES:
        raise InputError(
            f"{name} must be at most {MAX_NUM_SAMPLES} (the draws are held in memory; the "
            f"Monte Carlo error of an edge probability is below 0.0005 there), got {value}"
        )
    return int(value)


def check_draw_count(n) -> int:
    """``n``, the number of DAGs a ``sample_dags`` call draws: a positive integer
    (:func:`~pyrostruct.errors.check_count`) of at most :data:`MAX_NUM_SAMPLES`."""
    return check_num_samples(check_count(n, "n"), "n", minimum=1)


def _differs(value, default) -> bool:
    if default is None or value is None:
        return value is not default
    if isinstance(default, tuple):
        try:
            return tuple(float(v) for v in value) != default
        except (TypeError, ValueError):  # refused by the checks below
            return True
    return value != default


def check_seed(seed) -> int:
    """``seed`` as an int in numpy's range (:func:`pyrostruct.errors.check_seed`); ``None``
    draws a fresh one."""
    if seed is None:
        return int(np.random.SeedSequence().entropy % 2**32)
    return errors.check_seed(seed)


def _is_linear(sem) -> bool:
    return sem in ("linear", "linear-equal") or isinstance(sem, LinearGaussianSEM)


def check_pairwise(missing, sem, batch_size) -> None:
    """Refuse ``missing="pairwise"`` or ``"em"`` where the likelihood is not a function of the
    columns' means and second moments (:mod:`pyrostruct.causal.tables`): any SEM but the
    linear Gaussian one, or row-wise likelihoods on mini-batches (``batch_size``)."""
    if missing not in ("pairwise", "em"):
        return
    if not _is_linear(sem):
        name = sem if isinstance(sem, str) else type(sem).__name__
        raise InputError(
            f"missing={missing!r} needs the linear Gaussian SEM, whose likelihood depends on "
            f"the data only through means and covariances; sem={name!r} scores rows: use "
            "missing='drop'"
        )
    if batch_size is not None:
        raise InputError(
            f"missing={missing!r} fits the linear SEM from its moments over all rows; drop "
            "batch_size (mini-batches score rows), or use missing='drop'"
        )


@dataclasses.dataclass(frozen=True)
class Settings:
    """Checked settings of a ``discover`` call (see :func:`~pyrostruct.causal.discover` for
    each one's meaning); build with :meth:`create`."""

    sem: str | StructuralEquationModel
    dag: str
    estimator: str
    steps: int
    expected_edges: float
    lr: float
    num_particles: int
    batch_size: int | None
    temperature: tuple[float, float]
    threshold: float
    num_samples: int
    checkpoint_every: int
    average_equivalent: bool | None
    seed: int
    standardize: bool
    noise: str
    init_order: str | tuple[int, ...]
    hidden: int
    weight_prior: str
    search_start: tuple[int, ...] | None = None
    knowledge: KnowledgeMasks | None = None

    @classmethod
    def create(
        cls, *, n: int, d: int, sem, dag, steps, estimator, seed, standardize, noise,
        expected_edges, lr, num_particles, batch_size, temperature, init_order, hidden,
        weight_prior, threshold, average_equivalent, num_samples, checkpoint_every,
        search_start=None, knowledge=None, training=(),
    ) -> Settings:  # fmt: skip
        """Check ``discover``'s arguments for data of ``n`` rows and ``d`` columns and fill
        the defaults.

        :param training: the names of ``discover``'s other training-only arguments given
            (``checkpoint``, ``callback``, ``restarts``), which ``estimator="exact"``
            refuses.
        :raises InputError: an unknown name or a value out of range, naming the argument.
        """
        if isinstance(sem, str) and sem not in _SEMS:
            raise InputError(
                f"unknown sem {sem!r}; use 'linear', 'mlp' or a StructuralEquationModel"
            )
        if dag not in ("order", "smooth"):
            raise InputError(f"unknown dag {dag!r}; use 'order' or 'smooth'")
        if noise not in ("equal", "nonequal"):
            raise InputError(f"noise must be 'equal' or 'nonequal', got {noise!r}")
        if weight_prior is not None and weight_prior not in WEIGHT_PRIORS:
            raise InputError(f"weight_prior must be one of {WEIGHT_PRIORS}, got {weight_prior!r}")
        is_linear = _is_linear(sem)
        if estimator is None:
            analytic_ok = is_linear and dag == "order" and batch_size is None
            estimator = "analytic" if analytic_ok else "straight-through"
        elif estimator not in ESTIMATOR_NAMES:
            raise InputError(
                f"unknown estimator {estimator!r}; use one of {', '.join(ESTIMATOR_NAMES)}"
            )
        elif estimator == "exact":
            values = {"steps": steps, "lr": lr, "num_particles": num_particles,
                      "batch_size": batch_size, "temperature": temperature,
                      "init_order": init_order, "weight_prior": weight_prior}  # fmt: skip
            given = [k for k, v in values.items() if _differs(v, VARIATIONAL_DEFAULTS[k])]
            _check_exact(sem, dag, noise, given + list(training))
        elif estimator == "analytic" and not (is_linear and dag == "order"):
            raise InputError(
                "estimator='analytic' needs the linear SEM and dag='order' (the edges are "
                "integrated in closed form); use estimator='straight-through'"
            )
        elif estimator == "analytic" and batch_size is not None:
            raise InputError(
                "estimator='analytic' uses the full data through its Gram matrix; drop "
                "batch_size or use estimator='straight-through'"
            )
        if knowledge is not None and not (
            knowledge.forbidden.any() or knowledge.required.any() or knowledge.precedes.any()
        ):
            knowledge = None
        if (knowledge is not None and estimator not in ("analytic", "exact")
                and (knowledge.required.any() or knowledge.precedes.any())):  # fmt: skip
            raise InputError(
                f"estimator={estimator!r} enforces forbidden edges only: required edges and "
                "tiers constrain the order, which its relaxed order sampler cannot keep; "
                "they are enforced by estimator='analytic' (the linear SEM with dag='order', "
                "on the full data) and 'exact'"
            )
        if weight_prior is None:
            weight_prior = "pmom"
        if steps is None:
            steps = 750 if estimator == "analytic" else 2000
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise InputError(f"steps must be a positive integer, got {steps!r}")
        m = expected_edge_count(expected_edges, d)
        is_mlp = sem == "mlp" or isinstance(sem, MLPSEM)
        default_lr = 0.1 if estimator == "analytic" else 0.01 if is_mlp else 0.2
        lr = lr if lr is not None else default_lr
        if not (isinstance(lr, (int, float, np.number)) and math.isfinite(lr) and lr > 0):
            raise InputError(f"lr must be a finite number > 0, got {lr!r}")
        if int(num_particles) < 1:
            raise InputError(f"num_particles must be >= 1, got {num_particles}")
        if batch_size is not None and not 1 <= int(batch_size):
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        t0, t1 = (float(v) for v in temperature)
        if not (0 < t0 < math.inf and 0 < t1 < math.inf):
            raise InputError(f"temperatures must be finite and > 0, got {temperature}")
        if not is_real_number(threshold):
            raise InputError(f"threshold must be a number in (0, 1], got {threshold!r}")
        if not 0 < float(threshold) <= 1:
            raise InputError(f"threshold must lie in (0, 1], got {threshold}")
        num_samples = check_num_samples(num_samples)
        if not isinstance(standardize, (bool, np.bool_)):
            raise InputError(f"standardize must be True or False, got {standardize!r}")
        if int(checkpoint_every) < 1:
            raise InputError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
        if average_equivalent not in (None, True, False):
            raise InputError(
                f"average_equivalent must be True, False or None, got {average_equivalent!r}"
            )
        if init_order is None:
            init_order = "equal-variance" if noise == "equal" else "greedy-sparsest"
        if search_start is not None:
            if init_order != "greedy-sparsest":
                raise InputError(
                    "search_start is the start of the greedy order search: it needs "
                    f"init_order='greedy-sparsest', got init_order={init_order!r}"
                )
            search_start = check_init_order(search_start, d, name="search_start")
        return cls(
            sem=sem,
            dag=dag,
            estimator=estimator,
            steps=int(steps),
            expected_edges=m,
            lr=float(lr),
            num_particles=int(num_particles),
            batch_size=None if batch_size is None else min(int(batch_size), n),
            temperature=(t0, t1),
            threshold=float(threshold),
            num_samples=int(num_samples),
            checkpoint_every=int(checkpoint_every),
            average_equivalent=average_equivalent,
            seed=seed,
            standardize=bool(standardize),
            noise=noise,
            init_order=check_init_order(init_order, d),
            hidden=int(hidden),
            weight_prior=weight_prior,
            search_start=search_start,
            knowledge=knowledge,
        )

    def prior_logit(self, d: int) -> float:
        """Prior log-odds of an edge between two nodes given their order: ``log(p / (1 -
        p))`` with ``p = expected_edges / (d (d - 1) / 2)``."""
        p = self.expected_edges / (d * (d - 1) / 2)
        return math.log(p / (1 - p))

    def config(self) -> dict[str, Any]:
        """The run's settings as JSON data, in the order the result's metadata lists them
        (its keys and values are the checkpoint fingerprint's: keep them stable)."""
        init_order = self.init_order
        if self.estimator == "exact":  # no training: the settings that shape the posterior
            return {
                "sem": self.sem, "dag": self.dag, "seed": self.seed,
                "standardize": self.standardize, "noise": self.noise,
                "estimator": self.estimator, "expected_edges": self.expected_edges,
                "threshold": self.threshold, "num_samples": self.num_samples,
                **({} if self.knowledge is None else {"knowledge": self.knowledge.to_dict()}),
            }  # fmt: skip
        return {
            "sem": self.sem if isinstance(self.sem, str) else type(self.sem).__name__,
            "dag": self.dag,
            "seed": self.seed,
            "standardize": self.standardize,
            "noise": self.noise,
            "init_order": init_order if isinstance(init_order, str) else list(init_order),
            "hidden": self.hidden,
            "weight_prior": self.weight_prior,
            "estimator": self.estimator,
            "steps": self.steps,
            "expected_edges": self.expected_edges,
            "lr": self.lr,
            "num_particles": self.num_particles,
            "batch_size": self.batch_size,
            "temperature": list(self.temperature),
            "threshold": self.threshold,
            "num_samples": self.num_samples,
            "checkpoint_every": self.checkpoint_every,
            "average_equivalent": self.average_equivalent,
            # only when set: the fingerprints of checkpoints without it stay the same
            **({} if self.search_start is None else {"search_start": list(self.search_start)}),
            **({} if self.knowledge is None else {"knowledge": self.knowledge.to_dict()}),
        }


def _check_exact(sem, dag: str, noise: str, given: list[str]) -> None:
    """Refuse what ``estimator="exact"`` cannot honour (one line each; more nodes than it
    takes: :func:`~pyrostruct.causal.exact.check_size`)."""
    if not (sem == "linear" and dag == "order" and noise == "nonequal"):
        name = sem if isinstance(sem, str) else type(sem).__name__
        raise InputError(
            "estimator='exact' is the BGe posterior of the linear SEM with noise='nonequal' "
            f"and dag='order'; got sem={name!r}, noise={noise!r}, dag={dag!r}: use "
            "estimator='analytic' or 'straight-through'"
        )
    if given:
        raise InputError(
            f"estimator='exact' has no training to set: drop {', '.join(given)}, "
            "or use estimator='analytic'"
        )
