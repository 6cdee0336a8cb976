"""Sparse subspace variational inference (SSVI) for Bayesian neural networks.

:class:`AutoSparseSubspace` is an autoguide whose Gaussian variational family
lives on a sparse, evolving subset of a Bayesian neural network's weights, and
:class:`SubspaceScheduler` evolves that subset during an ordinary ``SVI`` loop.
Both implement

    Junbo Li, Zichen Miao, Qiang Qiu, Ruqi Zhang. *Training Bayesian Neural
    Networks with Sparse Subspace Variational Inference.* ICLR 2024.

The variational distribution of one weight site :math:`\\theta \\in \\mathbb{R}^N`
with active set :math:`S` (:math:`|S| = k \\approx \\text{density} \\cdot N`) is

.. math::

    q(\\theta) = \\prod_{j \\in S} \\mathcal{N}(\\theta_j; \\mu_j, \\sigma_j^2)
                 \\prod_{j \\notin S} \\delta_0(\\theta_j),

so only the :math:`2k` numbers :math:`(\\mu_S, \\sigma_S)` and the :math:`k`
indices :math:`S` are stored and optimized. A forward pass samples the
:math:`k` active coordinates by reparameterization and scatters them into a
dense zero tensor of the layer's shape (``Tensor.scatter``; its timings
against ``index_put`` and a sparse COO tensor are in
``benchmarks/results/ssvi.md``).

Every ``update_every`` steps until a fraction of training, the scheduler
removes the fraction :math:`r_t = r_0 \\tfrac12 (1 + \\cos(\\pi t / T_{\\rm stop}))`
of each site's active coordinates with the lowest score and adds as many
inactive coordinates with the largest :math:`|\\partial \\mathcal{L} /
\\partial \\mu_j|`. For an inactive :math:`j`, :math:`\\theta_j = 0` exactly, so the
gradient of the ELBO with respect to its would-be mean (at :math:`\\mu_j = 0`)
is the gradient with respect to the weight itself, read from the dense weight
tensor the forward pass builds anyway; no dense variational parameter is ever
stored.

**Layout.** :mod:`.subspace` holds the arithmetic shared by the rest (active-set
sizes, index dtypes, removal scores); :mod:`.guide` the guide; :mod:`.scheduler`
the removal-and-addition schedule; :mod:`.optim_state` the reset of the
optimizer state of replaced slots; :mod:`.export` the surgery that turns the
posterior mean of a ``PyroModule`` into a plain torch module.
"""

from pyrostruct.infer.autoguide.sparse_subspace.guide import AutoSparseSubspace
from pyrostruct.infer.autoguide.sparse_subspace.optim_state import reset_optimizer_slots
from pyrostruct.infer.autoguide.sparse_subspace.scheduler import (
    SubspaceScheduler,
    SubspaceUpdate,
)
from pyrostruct.infer.autoguide.sparse_subspace.subspace import (  # noqa: F401 (old paths)
    CRITERIA,
    _index_dtype,
    active_count,
    folded_normal_snr,
)

__all__ = [
    "AutoSparseSubspace",
    "SubspaceScheduler",
    "SubspaceUpdate",
    "active_count",
    "folded_normal_snr",
    "reset_optimizer_slots",
]
