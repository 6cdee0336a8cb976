"""``estimator="straight-through"``: sample order and edges, any SEM, either DAG family.

The model is an ordinary Pyro model with a DAG latent (an Erdős–Rényi prior over
orders and forward edges, or the smooth-orientation family) and the SEM's
likelihood; the guide is :class:`~pyrostruct.infer.autoguide.AutoDAG` with
straight-through gradients, trained with ``Trace_ELBO``. The relaxation
temperature is annealed from ``temperature[0]`` to ``temperature[1]`` over the
first 60% of the steps. Row-wise likelihoods are mini-batched (1000 rows when
``n > 2000``) unless the SEM has sufficient statistics.
"""

from __future__ import annotations

import math

import pyro
import torch
from pyro.infer import Trace_ELBO

from pyrostruct.causal.estimators.base import Estimator, adam
from pyrostruct.distributions import ErdosRenyiDAG, OrderedDAG, SmoothOrientationDAG
from pyrostruct.infer.autoguide.dag import AutoDAG

__all__ = ["StraightThroughEstimator"]

#: Learning-rate factor of the node scores.
SCORE_LR = 1.0
#: Initial P(i -> j | i before j) of the guide (then pulled to the prior by the KL).
INIT_EDGE = 0.5


class StraightThroughEstimator(Estimator):
    """``Trace_ELBO`` of the DAG model with an :class:`~pyrostruct.infer.autoguide.AutoDAG`
    guide."""

    name = "straight-through"

    def __init__(self, problem, sem, settings, order, stats=None):
        super().__init__(problem, sem, settings, order, stats)
        d, n = problem.d, problem.n
        if stats is None:
            batch = settings.batch_size
            self.batch = batch if batch is not None else (n if n <= 2000 else 1000)
        else:
            self.batch = None
        forbidden = None if settings.knowledge is None else settings.knowledge.forbidden
        if settings.dag == "smooth" or forbidden is not None:
            # the Erdős–Rényi prior, forbidden edges at -inf (the guide then never draws them)
            logits = torch.full((d, d), self.prior_logit)
            if forbidden is not None:
                logits = logits.masked_fill(torch.as_tensor(forbidden), -math.inf)
            family = SmoothOrientationDAG if settings.dag == "smooth" else OrderedDAG
            self.prior = family(torch.zeros(d), logits)
        else:
            self.prior = ErdosRenyiDAG(d, expected_edges=settings.expected_edges)
        self.guide = AutoDAG(
            self.model,
            estimator="straight-through",
            temperature=self.schedule,
            init_orders=None if order is None else {"G": order},
            init_scale=0.01,
            rao_blackwellize=True,
            init_edge_prob=INIT_EDGE,
        )
        self.guide._setup_prototype()
        named = list(self.guide.named_parameters())
        scores = [p for name, p in named if name.startswith("scores")]
        others = [p for name, p in named if not name.startswith("scores")]
        lr = settings.lr
        self.optim = adam(
            [
                {"params": scores, "lr": lr * SCORE_LR},
                {"params": others + list(sem.parameters()), "lr": lr},
            ]
        )
        particles = settings.num_particles
        self.elbo = Trace_ELBO(
            num_particles=particles, vectorize_particles=particles > 1, max_plate_nesting=1
        )

    def model(self):
        """``G ~ prior``; ``X | G ~ SEM(G)`` (from the sufficient statistics when there are)."""
        graph = pyro.sample("G", self.prior)
        self.sem.register_params()
        if self.stats is not None:
            pyro.factor("X", self.sem.log_prob_from_statistics(self.stats, graph))
            return graph
        if hasattr(self.sem, "weight_kl"):
            pyro.factor("weights_kl", -self.sem.weight_kl(graph))
        problem = self.problem
        with pyro.plate("rows", problem.n, subsample_size=self.batch) as idx:
            obs = problem.x[idx]
            mask = None if problem.mask is None else problem.mask[idx]
            pyro.sample("X", self.sem.distribution(graph, len(idx), mask), obs=obs)
        return graph

    def loss(self):
        loss = self.elbo.differentiable_loss(self.model, self.guide)
        return loss, -float(loss.detach())

    def after_step(self):
        self.schedule.step()

    def progress_info(self, elbo):
        return {**super().progress_info(elbo), "tau": f"{self.schedule.temperature:.2f}"}

    def dag_parameters(self):
        # the raw parameters (forbidden edges are the result's knowledge, not -inf logits)
        return self.guide.scores.G, self.guide.edge_logits.G
