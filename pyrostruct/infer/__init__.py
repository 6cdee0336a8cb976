"""Inference helpers: temperature schedules, evidence estimators, autoguides."""

from pyrostruct.infer.schedules import (
    ConstantSchedule,
    ExponentialSchedule,
    LinearSchedule,
    TemperatureSchedule,
    current_temperature,
)

__all__: list[str] = []
__all__ += [
    "ConstantSchedule",
    "ExponentialSchedule",
    "LinearSchedule",
    "TemperatureSchedule",
    "current_temperature",
]
