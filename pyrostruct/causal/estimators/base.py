"""What every estimator of ``discover`` shares: the per-step update and the step loop.

An estimator (:class:`Estimator`) owns the variational family, the model it
fits, the optimizer and what one step does (:meth:`Estimator.loss`). The update
around the loss is shared: the node scores (the first parameter group) are held
at their initial values for the first 20% of the steps while the mechanisms and
edges adapt to the initial order, then everything trains with Adam. :func:`train`
is the one loop that calls :meth:`Estimator.step`, with the progress bar, the
user's callback and the checkpoints as hooks.
"""

from __future__ import annotations

import math

import torch

from pyrostruct.causal.data import Problem
from pyrostruct.causal.sem import StructuralEquationModel
from pyrostruct.causal.settings import Settings
from pyrostruct.distributions.temperature import ExponentialSchedule
from pyrostruct.infer.autoguide.dag import EdgeProbs

__all__ = ["Estimator"]

#: Fraction of the steps during which the order is held at its initial value
#: while the mechanisms and edges adapt to it.
WARMUP = 0.2

#: torch runs fused Adam on the CPU from 2.4 on; 2.2-2.3 accept ``fused=True`` and fail at
#: the first step.
_FUSED_ADAM_ON_CPU = tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4)


def adam(groups) -> torch.optim.Adam:
    """Adam with torch's fused kernel where it runs on these tensors (CPU: torch >= 2.4;
    a step over ~30k parameters costs about a third of the unfused loop's)."""
    return torch.optim.Adam(groups, fused=_FUSED_ADAM_ON_CPU)


class Estimator:
    """Base class of the ELBO estimators of :func:`~pyrostruct.causal.discover`.

    Subclasses set ``self.guide`` (with :meth:`edge_probs`) and ``self.optim``
    (node scores first) in ``__init__`` and implement :meth:`loss` and
    :meth:`dag_parameters`.

    :param problem: the data (:class:`~pyrostruct.causal.data.Problem`).
    :param sem: the likelihood, already initialized (:meth:`StructuralEquationModel.initialize`).
    :param settings: the checked settings.
    :param order: the initial order (node indices, upstream first), or ``None``.
    :param stats: ``sem.sufficient_statistics`` of the data, or ``None``.
    """

    #: the name ``discover(estimator=...)`` selects it by
    name = ""

    def __init__(
        self,
        problem: Problem,
        sem: StructuralEquationModel,
        settings: Settings,
        order: list[int] | None,
        stats=None,
    ):
        self.problem, self.sem, self.settings, self.stats = problem, sem, settings, stats
        self.prior_logit = settings.prior_logit(problem.d)
        t0, t1 = settings.temperature
        horizon = max(1, int(0.6 * settings.steps))
        rate = math.log(t0 / t1) / horizon if t0 > t1 else 0.0
        self.schedule = ExponentialSchedule(initial=t0, rate=rate, minimum=min(t0, t1))
        self.warmup = int(WARMUP * settings.steps)
        self.num_steps_taken = 0
        self.guide = None
        self.optim: torch.optim.Optimizer | None = None

    # -- to implement -------------------------------------------------------------
    def loss(self) -> tuple[torch.Tensor, float]:
        """One estimate: ``(loss to minimize, ELBO estimate)`` (the ELBO over all rows)."""
        raise NotImplementedError

    def dag_parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The variational order scores ``(d,)`` and edge logits ``(d, d)``."""
        raise NotImplementedError

    def after_step(self) -> None:
        """Called after every optimizer step (the default does nothing)."""

    # -- shared -----------------------------------------------------------------
    def step(self) -> float:
        """One optimizer step; returns the ELBO per row in the data's units."""
        self.optim.zero_grad()
        loss, elbo = self.loss()
        loss.backward()
        if self.num_steps_taken < self.warmup:
            # warm-up: fit the mechanisms and edges to the initial order first
            for p in self.optim.param_groups[0]["params"]:
                p.grad = None
        self.optim.step()
        self.after_step()
        self.num_steps_taken += 1
        return elbo / self.problem.n + self.problem.columns.elbo_shift

    def evaluate(self, num_draws: int = 16, tick=None) -> tuple[float, float]:
        """The trained fit's ELBO per row in the data's units, without gradients: the mean of
        ``num_draws`` estimates of :meth:`loss` (``num_particles`` particles each) and its
        Monte Carlo standard error. ``tick(1)`` is called after each draw (a progress bar's
        ``update``)."""
        draws = []
        with torch.no_grad():
            for _ in range(num_draws):
                draws.append(self.loss()[1])
                if tick is not None:
                    tick(1)
        draws = torch.tensor(draws, dtype=torch.float64) / self.problem.n
        mean = float(draws.mean()) + self.problem.columns.elbo_shift
        return mean, float(draws.std() / math.sqrt(num_draws))

    def progress_info(self, elbo: float) -> dict:
        """The progress bar's postfix."""
        return {"elbo": f"{elbo:.4g}"}

    def edge_probs(self, num_samples: int) -> EdgeProbs:
        """Posterior ``P(i -> j)`` and its Monte Carlo error."""
        return self.guide.edge_probs(num_samples=num_samples)

    def state_dict(self) -> dict:
        """The trained state (tensors and plain data) for a checkpoint."""
        return {
            "guide": self.guide.state_dict(),
            "sem": self.sem.state_dict(),
            "optim": self.optim.state_dict(),
            "schedule": self.schedule.state_dict(),
        }

    def load_state_dict(self, state: dict, step: int) -> None:
        """Continue from :meth:`state_dict`'s entries of a checkpoint taken after ``step``."""
        self.guide.load_state_dict(state["guide"])
        self.sem.load_state_dict(state["sem"])
        self.optim.load_state_dict(state["optim"])
        self.schedule.load_state_dict(state["schedule"])
        self.num_steps_taken = int(step)
