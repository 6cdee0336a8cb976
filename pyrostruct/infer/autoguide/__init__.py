"""Autoguides for structural latents (discrete, permutation, DAG, sparse subspace)."""

__all__: list[str] = []
