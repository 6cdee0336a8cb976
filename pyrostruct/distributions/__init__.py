"""Pyro distributions for structural latents (relaxed discrete, permutations, DAGs)."""

__all__: list[str] = []
