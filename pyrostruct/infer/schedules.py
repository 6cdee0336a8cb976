"""Re-export of :mod:`pyrostruct.distributions.temperature` (its former home).

The temperature schedules and :func:`current_temperature` moved below ``infer/``
so that ``handlers.py`` and ``distributions/`` do not import upward. This module
stays only until every importer uses the new path; new code imports from
:mod:`pyrostruct.distributions.temperature`.
"""

from pyrostruct.distributions.temperature import (
    ConstantSchedule,
    ExponentialSchedule,
    LinearSchedule,
    TemperatureSchedule,
    current_temperature,
)

__all__ = [
    "TemperatureSchedule",
    "ConstantSchedule",
    "ExponentialSchedule",
    "LinearSchedule",
    "current_temperature",
]
