"""Inference helpers: temperature schedules, evidence estimators, autoguides."""

__all__: list[str] = []
