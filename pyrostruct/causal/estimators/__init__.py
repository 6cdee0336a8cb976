"""The ELBO estimators of :func:`~pyrostruct.causal.discover`, one strategy class each.

- :class:`~.analytic.AnalyticEstimator` (``estimator="analytic"``): linear SEM,
  ordered DAGs; only the order is sampled, edges and weights are integrated.
- :class:`~.straight_through.StraightThroughEstimator`
  (``estimator="straight-through"``): any SEM, either DAG family; order and edges
  sampled with straight-through gradients.
- :func:`~.exact.exact_result` (``estimator="exact"``): linear SEM with unequal noise,
  ``d <= 16``; no variational family and no training: the exact BGe posterior
  (:mod:`pyrostruct.causal.exact`) as a :class:`~pyrostruct.causal.CausalResult`.

Each variational estimator owns its guide, model and optimizer; :class:`~.base.Estimator`
holds the shared step; training runs in :func:`pyrostruct.infer.engine.train`;
:func:`~.result.variational_result` turns a trained one into a
:class:`~pyrostruct.causal.CausalResult`.
"""

from pyrostruct.causal.estimators.analytic import AnalyticEstimator
from pyrostruct.causal.estimators.base import Estimator
from pyrostruct.causal.estimators.exact import exact_result
from pyrostruct.causal.estimators.result import variational_result
from pyrostruct.causal.estimators.straight_through import StraightThroughEstimator

__all__ = [
    "ESTIMATORS",
    "AnalyticEstimator",
    "Estimator",
    "StraightThroughEstimator",
    "exact_result",
    "variational_result",
]

#: Variational estimator classes by the name ``discover(estimator=...)`` takes (the other
#: name, ``"exact"``, is :func:`exact_result`).
ESTIMATORS = {cls.name: cls for cls in (AnalyticEstimator, StraightThroughEstimator)}
