"""Causal discovery by variational inference over DAGs.

``discover(data)`` returns a :class:`CausalResult`: posterior edge
probabilities, an always-acyclic consensus ``networkx.DiGraph``, DAG samples,
the ELBO trace, ArviZ export, a plot, and JSON persistence. The likelihoods
(:mod:`pyrostruct.causal.sem`), metrics (:mod:`pyrostruct.causal.metrics`) and
synthetic data (:mod:`pyrostruct.causal.datasets`) are usable on their own.
For up to 16 variables :func:`exact_posterior` gives the exact posterior of the
linear Gaussian model with the BGe likelihood, the reference ``discover`` is
measured against. :func:`suggest_interventions` ranks the experiments that would
tell most about the graph (:mod:`pyrostruct.causal.design`), and
:class:`ActiveLearner` runs the loop of fits, designs and experiments.
:class:`Knowledge` (forbidden and required edges, temporal tiers; :func:`read_knowledge`
for Tetrad's files) is background knowledge that ``discover`` enforces exactly.

Layout: :mod:`~pyrostruct.causal.discover` (the pipeline),
:mod:`~pyrostruct.causal.data` and :mod:`~pyrostruct.causal.interventions`
(checked data), :mod:`~pyrostruct.causal.knowledge`, :mod:`~pyrostruct.causal.settings`,
:mod:`~pyrostruct.causal.orders` (initial orders and the order search, one module
per method), :mod:`~pyrostruct.causal.estimators` (analytic and straight-through
strategies), :mod:`~pyrostruct.causal.result`, :mod:`~pyrostruct.causal.sem`,
:mod:`~pyrostruct.causal.collapsed` (the analytic estimator's maths) and
:mod:`~pyrostruct.causal.equivalence`, :mod:`~pyrostruct.causal.restarts` (several
fits, the best kept) and :mod:`~pyrostruct.causal.exact` (enumeration by subsets),
:mod:`~pyrostruct.causal.information` (expected information gain) and
:mod:`~pyrostruct.causal.design`, :mod:`~pyrostruct.causal.export` (GraphML, DOT, CSV,
causal-learn).
"""

from pyrostruct.causal import datasets, metrics
from pyrostruct.causal.active import ActiveLearner
from pyrostruct.causal.design import DesignResult, suggest_interventions
from pyrostruct.causal.discover import discover
from pyrostruct.causal.exact import ExactPosterior, exact_posterior
from pyrostruct.causal.interventions import parse_interventions
from pyrostruct.causal.knowledge import Knowledge, read_knowledge
from pyrostruct.causal.result import CausalResult, load_result
from pyrostruct.causal.sem import (
    MLPSEM,
    CustomSEM,
    LinearGaussianSEM,
    SEMLikelihood,
    StructuralEquationModel,
    make_sem,
)

__all__ = [
    "discover",
    "exact_posterior",
    "ExactPosterior",
    "suggest_interventions",
    "DesignResult",
    "ActiveLearner",
    "CausalResult",
    "load_result",
    "parse_interventions",
    "Knowledge",
    "read_knowledge",
    "StructuralEquationModel",
    "LinearGaussianSEM",
    "MLPSEM",
    "CustomSEM",
    "SEMLikelihood",
    "make_sem",
    "datasets",
    "metrics",
]
