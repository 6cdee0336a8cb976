"""ELBO-based Bayesian model selection."""

__all__: list[str] = []
