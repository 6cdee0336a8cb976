"""Causal discovery by variational inference over DAGs.

``discover(data)`` returns a :class:`CausalResult`: posterior edge
probabilities, an always-acyclic consensus ``networkx.DiGraph``, DAG samples,
the ELBO trace, ArviZ export, a plot, and JSON persistence. The likelihoods
(:mod:`pyrostruct.causal.sem`), metrics (:mod:`pyrostruct.causal.metrics`) and
synthetic data (:mod:`pyrostruct.causal.datasets`) are usable on their own.
"""

from pyrostruct.causal import datasets, metrics
from pyrostruct.causal.discover import CausalResult, discover, load_result, parse_interventions
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
    "CausalResult",
    "load_result",
    "parse_interventions",
    "StructuralEquationModel",
    "LinearGaussianSEM",
    "MLPSEM",
    "CustomSEM",
    "SEMLikelihood",
    "make_sem",
    "datasets",
    "metrics",
]
