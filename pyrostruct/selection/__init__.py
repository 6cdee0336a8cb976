"""ELBO-based Bayesian model selection.

:func:`select` fits candidate Pyro models by SVI (with restarts, smart
initializations and successive halving), estimates their log evidence (ELBO
and importance-weighted bound with Monte Carlo error bars) and returns a
:class:`SelectionResult` (table, posterior model probabilities, plot, ArviZ
export). :mod:`~pyrostruct.selection.families` holds Gaussian-mixture and PPCA
families, :mod:`~pyrostruct.selection.structures` candidate causal DAGs, and
:mod:`~pyrostruct.selection.hyper` hyperparameter selection.
"""

from pyrostruct.selection.arviz import pointwise_log_likelihood, to_inference_data
from pyrostruct.selection.executors import EXECUTORS
from pyrostruct.selection.families import (
    gaussian_mixture,
    kmeans_plus_plus,
    ppca,
    select_components,
    standardize,
)
from pyrostruct.selection.result import AmbiguousSelectionWarning, SelectionResult
from pyrostruct.selection.select import Candidate, FittedCandidate, select

__all__ = [
    "AmbiguousSelectionWarning",
    "Candidate",
    "EXECUTORS",
    "FittedCandidate",
    "SelectionResult",
    "gaussian_mixture",
    "kmeans_plus_plus",
    "pointwise_log_likelihood",
    "ppca",
    "select",
    "select_components",
    "standardize",
    "to_inference_data",
]
