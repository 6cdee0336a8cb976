"""Causal discovery by variational inference over DAGs."""

__all__: list[str] = []
