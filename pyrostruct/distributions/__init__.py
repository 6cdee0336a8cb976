"""Pyro distributions for structural latents (relaxed discrete, permutations, DAGs)."""

from pyrostruct.distributions.concrete_categorical import ConcreteCategorical
from pyrostruct.distributions.estimators import ESTIMATORS
from pyrostruct.distributions.relaxation import NoRelaxationError, relax_distribution
from pyrostruct.distributions.relaxed import ConcreteBernoulli, ConcreteOneHotCategorical

__all__: list[str] = []
__all__ += [
    "ESTIMATORS",
    "ConcreteBernoulli",
    "ConcreteCategorical",
    "ConcreteOneHotCategorical",
    "NoRelaxationError",
    "relax_distribution",
]

from pyrostruct.distributions.dag import (  # noqa: E402
    OrderedDAG,
    OrderLostWarning,
    SmoothOrientationDAG,
    get_order,
)
from pyrostruct.distributions.dag_mixture import DAGMixture  # noqa: E402
from pyrostruct.distributions.dag_priors import ErdosRenyiDAG, SparsityPenalty  # noqa: E402
from pyrostruct.distributions.partial_order import (  # noqa: E402
    PartialOrderPlackettLuce,
    count_linear_extensions,
)
from pyrostruct.distributions.permutation import PlackettLuce, permutation_matrix  # noqa: E402

__all__ += [
    "PlackettLuce",
    "PartialOrderPlackettLuce",
    "count_linear_extensions",
    "permutation_matrix",
    "OrderedDAG",
    "DAGMixture",
    "OrderLostWarning",
    "SmoothOrientationDAG",
    "get_order",
    "ErdosRenyiDAG",
    "SparsityPenalty",
]

from pyrostruct.distributions.util import base_distribution, is_structural  # noqa: E402

__all__ += ["base_distribution", "is_structural"]
