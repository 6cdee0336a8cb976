"""The ELBO estimators of :func:`~pyrostruct.causal.discover`, one strategy class each.

- :class:`~.analytic.AnalyticEstimator` (``estimator="analytic"``): linear SEM,
  ordered DAGs; only the order is sampled, edges and weights are integrated.
- :class:`~.straight_through.StraightThroughEstimator`
  (``estimator="straight-through"``): any SEM, either DAG family; order and edges
  sampled with straight-through gradients.

Each owns its guide, model and optimizer; :class:`~.base.Estimator` holds the
shared step; training runs in :func:`pyrostruct.infer.engine.train`.
"""

from pyrostruct.causal.estimators.analytic import AnalyticEstimator
from pyrostruct.causal.estimators.base import Estimator
from pyrostruct.causal.estimators.straight_through import StraightThroughEstimator

__all__ = ["ESTIMATORS", "AnalyticEstimator", "Estimator", "StraightThroughEstimator"]

#: Estimator classes by the name ``discover(estimator=...)`` takes.
ESTIMATORS = {cls.name: cls for cls in (AnalyticEstimator, StraightThroughEstimator)}
