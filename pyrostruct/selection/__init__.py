"""ELBO-based Bayesian model selection.

:func:`select` fits candidate Pyro models by SVI (with restarts, smart
initializations and successive halving), estimates their log evidence (ELBO
and importance-weighted bound with Monte Carlo error bars) and returns a
:class:`SelectionResult` (table, posterior model probabilities, plot, ArviZ
export). :mod:`~pyrostruct.selection.families` holds Gaussian-mixture and PPCA
families, :mod:`~pyrostruct.selection.structures` candidate causal DAGs, and
:mod:`~pyrostruct.selection.hyper` hyperparameter selection.
"""

from pyrostruct.executors import EXECUTORS
from pyrostruct.selection.arviz import pointwise_log_likelihood, to_inference_data
from pyrostruct.selection.datasets import make_gmm_data, make_ppca_data
from pyrostruct.selection.families import (
    gaussian_mixture,
    kmeans_plus_plus,
    ppca,
    select_components,
    standardize,
)
from pyrostruct.selection.hyper import (
    Type2Result,
    bayesian_regression,
    regression_log_evidence,
    type2_maximum_likelihood,
)
from pyrostruct.selection.result import (
    AmbiguousSelectionWarning,
    CandidateFailedWarning,
    SelectionResult,
)
from pyrostruct.selection.select import (
    Candidate,
    FittedCandidate,
    label_symmetry,
    mixture_init,
    select,
)
from pyrostruct.selection.structures import (
    are_markov_equivalent,
    dag_candidate,
    dag_log_evidence,
    select_structures,
)

__all__ = [
    "AmbiguousSelectionWarning",
    "Candidate",
    "CandidateFailedWarning",
    "EXECUTORS",
    "FittedCandidate",
    "SelectionResult",
    "Type2Result",
    "are_markov_equivalent",
    "bayesian_regression",
    "dag_candidate",
    "dag_log_evidence",
    "gaussian_mixture",
    "kmeans_plus_plus",
    "label_symmetry",
    "make_gmm_data",
    "make_ppca_data",
    "mixture_init",
    "pointwise_log_likelihood",
    "ppca",
    "regression_log_evidence",
    "select",
    "select_components",
    "select_structures",
    "standardize",
    "to_inference_data",
    "type2_maximum_likelihood",
]
