"""Structural equation models: the likelihood ``p(X | A)`` of data given a DAG.

A structural equation model (SEM) gives every node ``j`` a mechanism
``p(x_j | x_pa(j))`` whose parents are read off an adjacency matrix
(``A[..., i, j] = 1`` meaning ``i -> j``). The log-likelihood of a row is the
sum of its nodes' conditional log densities,

.. math::

    \\log p(x \\mid A) = \\sum_j [1 - m_j] \\log p_j(x_j \\mid x_{\\mathrm{pa}_A(j)}),

where ``m_j = 1`` marks a *perfect intervention* on node ``j`` in that row: its
mechanism was replaced by an outside assignment and is dropped from the row's
likelihood (Eberhardt & Scheines, "Interventions and causal inference", 2007).

Every SEM here is a :class:`~pyro.nn.PyroModule` whose parameters (weights,
noise scales) are Pyro params, and is **vectorized over nodes and over a batch
of adjacency matrices** (no Python loop over nodes), so one call scores many
sampled DAGs at once.

Interface for a user-defined likelihood
---------------------------------------
Subclass :class:`StructuralEquationModel` and implement
``node_log_prob(data, adjacency)`` returning per-row, per-node log densities of
shape ``adjacency.shape[:-2] + (n, d)``; everything else (intervention masking,
the row plate, :meth:`~StructuralEquationModel.distribution` for
``pyro.sample(..., obs=...)``, use inside :func:`pyrostruct.causal.discover`)
comes from the base class. Or wrap a plain function with :class:`CustomSEM`.

Use with a fixed graph
----------------------
``sem.log_prob(data, adjacency)`` scores a given DAG (for example a candidate
of model selection); :meth:`LinearGaussianSEM.fit` sets a linear SEM's
parameters to their maximum-likelihood values for a fixed graph in closed form.

Shapes: ``data`` is ``(n, d)``; ``adjacency`` is ``(*B, d, d)``. When the
adjacency batch ends in a singleton dimension (the row plate's dimension, as in
a Pyro model with ``vectorize_particles``), that dimension is the row
dimension of the result: ``(P, 1, d, d)`` gives ``(P, n)``.

Layout: :mod:`.base` (the interface, :class:`StructuralEquationModel` and
:class:`SEMLikelihood`), :mod:`.linear` (:class:`LinearGaussianSEM`),
:mod:`.mlp` (:class:`MLPSEM`), :mod:`.custom` (:class:`CustomSEM`); this
package re-exports them and builds one by name (:func:`make_sem`).
"""

from __future__ import annotations

from pyrostruct.causal.sem.base import SEMLikelihood, StructuralEquationModel
from pyrostruct.causal.sem.custom import CustomSEM
from pyrostruct.causal.sem.linear import LinearGaussianSEM
from pyrostruct.causal.sem.mlp import MLPSEM
from pyrostruct.errors import InputError

__all__ = [
    "StructuralEquationModel",
    "LinearGaussianSEM",
    "MLPSEM",
    "CustomSEM",
    "SEMLikelihood",
    "make_sem",
]


def make_sem(
    sem, num_nodes: int, *, noise: str = "nonequal", hidden: int = 10, weight_prior="normal"
):
    """Build a SEM from a name (``"linear"``, ``"linear-equal"``, ``"mlp"``) or pass one
    through; ``weight_prior`` is the slab of the linear SEM's weights."""
    if isinstance(sem, StructuralEquationModel):
        if sem.num_nodes != num_nodes:
            raise InputError(f"the SEM has {sem.num_nodes} nodes but the data has {num_nodes}")
        return sem
    if sem == "linear":
        return LinearGaussianSEM(num_nodes, noise=noise, weight_prior=weight_prior)
    if sem == "linear-equal":
        return LinearGaussianSEM(num_nodes, noise="equal", weight_prior=weight_prior)
    if sem == "mlp":
        return MLPSEM(num_nodes, hidden=hidden, noise=noise)
    raise InputError(
        f"unknown sem {sem!r}; use 'linear', 'linear-equal', 'mlp' or a StructuralEquationModel"
    )
