"""Pyro distributions for structural latents (relaxed discrete, permutations, DAGs)."""

from pyrostruct.distributions.relaxed import (
    ConcreteBernoulli,
    ConcreteCategorical,
    ConcreteOneHotCategorical,
    relax_distribution,
)

__all__: list[str] = []
__all__ += [
    "ConcreteBernoulli",
    "ConcreteCategorical",
    "ConcreteOneHotCategorical",
    "relax_distribution",
]
