"""Autoguides for structural latents (discrete, permutation, DAG, sparse subspace)."""

from pyrostruct.infer.autoguide.gumbel import (
    AutoGumbelSoftmax,
    auto_discrete_continuous_guide,
    is_discrete_site,
)

__all__: list[str] = []
__all__ += ["AutoGumbelSoftmax", "auto_discrete_continuous_guide", "is_discrete_site"]

from pyrostruct.infer.autoguide.sparse_subspace import (  # noqa: E402
    AutoSparseSubspace,
    SubspaceScheduler,
    SubspaceUpdate,
)

__all__ += ["AutoSparseSubspace", "SubspaceScheduler", "SubspaceUpdate"]

from pyrostruct.infer.autoguide.dag import AutoDAG, EdgeProbs, is_dag_site  # noqa: E402

__all__ += ["AutoDAG", "EdgeProbs", "is_dag_site"]

from pyrostruct.infer.autoguide.permutation import (  # noqa: E402
    AutoPermutation,
    PositionProbs,
    is_permutation_site,
)
from pyrostruct.infer.autoguide.structural import (  # noqa: E402
    AutoStructural,
    auto_guide,
    classify_site,
)

__all__ += ["AutoPermutation", "PositionProbs", "is_permutation_site"]
__all__ += ["AutoStructural", "auto_guide", "classify_site"]
