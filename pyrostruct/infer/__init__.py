"""Inference helpers: temperature schedules (re-exported), evidence estimators, autoguides."""

from pyrostruct.distributions.temperature import (
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

from pyrostruct.infer.evidence import (  # noqa: E402
    EvidenceEstimate,
    LowESSWarning,
    VectorizationWarning,
    effective_sample_size,
    elbo_estimate,
    iwae_estimate,
    log_importance_weights,
    vectorization_method,
)

__all__ += [
    "EvidenceEstimate",
    "LowESSWarning",
    "VectorizationWarning",
    "effective_sample_size",
    "elbo_estimate",
    "iwae_estimate",
    "log_importance_weights",
    "vectorization_method",
]

from pyrostruct.infer.smc import smc_affordable, smc_estimate  # noqa: E402

__all__ += ["smc_affordable", "smc_estimate"]

from pyrostruct.infer.enum import (  # noqa: E402
    apply_policy,
    enumerate_policy,
    enumerated_sites,
    infer_max_plate_nesting,
)

__all__ += ["apply_policy", "enumerate_policy", "enumerated_sites", "infer_max_plate_nesting"]

from pyrostruct.infer.dag_marginals import importance_edge_probs, union_edge_probs  # noqa: E402
from pyrostruct.infer.engine import param_scope, train  # noqa: E402
from pyrostruct.infer.fit import FitResult, fit  # noqa: E402
from pyrostruct.infer.reparam import RelaxReparam  # noqa: E402
from pyrostruct.infer.rloo import TraceRLOO_ELBO, TraceRWS_ELBO  # noqa: E402

__all__ += [
    "FitResult",
    "fit",
    "importance_edge_probs",
    "param_scope",
    "train",
    "RelaxReparam",
    "TraceRLOO_ELBO",
    "TraceRWS_ELBO",
    "union_edge_probs",
]
