"""The SEM interface: :class:`StructuralEquationModel` and :class:`SEMLikelihood`
(see :mod:`pyrostruct.causal.sem` for the conventions)."""

from __future__ import annotations

import functools
import math

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule

from pyrostruct._pyro_compat import pyro_module_context
from pyrostruct.errors import InputError

__all__ = ["StructuralEquationModel", "SEMLikelihood"]

_LOG_2PI = math.log(2 * math.pi)


def _pyro_params(method):
    """Run a method inside the module's Pyro context, so that its parameters are
    registered as Pyro params (trained by SVI) like in ``forward``."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with pyro_module_context(self):
            return method(self, *args, **kwargs)

    return wrapper


@functools.lru_cache(maxsize=16)
def _identities(d: int, dtype: torch.dtype):
    """``(eye(d + 1, d), 1 - eye(d))`` (cached; never modify them)."""
    return torch.eye(d + 1, d, dtype=dtype), 1.0 - torch.eye(d, dtype=dtype)


def _row_batch(result: torch.Tensor, batch: torch.Size) -> torch.Tensor:
    """``(*B, n)`` -> ``(*B[:-1], n)`` when the adjacency batch ends in a row-plate singleton."""
    if len(batch) >= 1 and batch[-1] == 1:
        return result.squeeze(-2)
    return result


class StructuralEquationModel(PyroModule):
    """Base class of SEM likelihoods over ``num_nodes`` variables.

    Subclasses implement :meth:`node_log_prob`. ``sufficient_statistics`` /
    ``log_prob_from_statistics`` are an optional fast path for SEMs whose
    full-data likelihood depends on the data only through summaries (the
    linear Gaussian SEM: the Gram matrix), which makes one step's cost
    independent of the number of rows.
    """

    def __init__(self, num_nodes: int) -> None:
        super().__init__()
        if int(num_nodes) < 1:
            raise InputError(f"num_nodes must be >= 1, got {num_nodes}")
        self.num_nodes = int(num_nodes)

    # -- to implement -------------------------------------------------------
    def node_log_prob(self, data: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        """Per-row, per-node ``log p_j(x_j | x_pa(j))``: shape ``(*B, n, d)``."""
        raise NotImplementedError

    # -- provided -------------------------------------------------------------
    def _check(self, data: torch.Tensor, adjacency: torch.Tensor) -> None:
        d = self.num_nodes
        if data.dim() != 2 or data.shape[-1] != d:
            raise InputError(f"expected data of shape (n, {d}), got {tuple(data.shape)}")
        if adjacency.shape[-2:] != (d, d):
            raise InputError(
                f"expected adjacency of shape (..., {d}, {d}), got {tuple(adjacency.shape)}"
            )

    def forward(self, data, adjacency, intervention_mask=None):
        """Same as :meth:`log_prob`."""
        return self.log_prob(data, adjacency, intervention_mask)

    @_pyro_params
    def log_prob(
        self,
        data: torch.Tensor,
        adjacency: torch.Tensor,
        intervention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-row log-likelihood ``log p(x_r | A)``, intervened nodes dropped.

        :param torch.Tensor data: the data ``(n, d)``.
        :param torch.Tensor adjacency: adjacency ``(*B, d, d)``,
            ``A[..., i, j] = 1`` for ``i -> j``.
        :param intervention_mask: booleans ``(n, d)`` (optional), ``True`` where
            the node was set by a perfect intervention in that row.
        :type intervention_mask: torch.Tensor or None
        :returns: the per-row log-likelihoods ``(*B, n)`` (or ``(*B[:-1], n)``,
            see the module docstring).
        :rtype: torch.Tensor
        """
        self._check(data, adjacency)
        lp = self.node_log_prob(data, adjacency.to(data.dtype))
        if intervention_mask is not None:
            lp = lp.masked_fill(intervention_mask.bool(), 0.0)
        return _row_batch(lp.sum(-1), adjacency.shape[:-2])

    def register_params(self) -> None:
        """Register every parameter with Pyro's param store (as ``forward`` does)."""
        with pyro_module_context(self):
            for name, _ in self.named_parameters():
                obj = self
                for part in name.split("."):
                    obj = getattr(obj, part)

    def sufficient_statistics(self, data, intervention_mask=None):
        """Summaries of the data for :meth:`log_prob_from_statistics` (``None``: no fast path)."""
        return None

    #: Whether data from this SEM identify only the Markov equivalence class of the DAG
    #: (then ``discover`` averages edge probabilities over each class by default).
    identifies_equivalence_class_only: bool = False

    def initialize(self, data: torch.Tensor) -> None:
        """Set the parameters to a start fitted to ``data`` ``(n, d)`` before training.

        ``discover`` calls it once on the prepared table; the default leaves the
        parameters as they are. Override it to start from the data.
        """

    def edge_strengths(self, columns) -> torch.Tensor | None:
        """The strength of every edge ``i -> j`` ``(d, d)`` to report, or ``None`` for none
        (then ``discover`` reports the edge probabilities).

        :param columns: the :class:`~pyrostruct.causal.data.Columns` the SEM was fitted
            on, which convert effects back to the data's units.
        """
        return None

    def log_prob_from_statistics(self, stats, adjacency: torch.Tensor) -> torch.Tensor:
        """Total log-likelihood over all rows from :meth:`sufficient_statistics`: ``(*B,)``
        (for SEMs with latent parameters integrated analytically: their ELBO term)."""
        raise NotImplementedError

    def distribution(
        self,
        adjacency: torch.Tensor,
        num_rows: int,
        intervention_mask: torch.Tensor | None = None,
    ) -> SEMLikelihood:
        """The likelihood as a distribution over rows, for ``pyro.sample(..., obs=data)``.

        Call it inside the model: it registers the SEM's parameters as Pyro params
        there (Pyro evaluates ``log_prob`` of observed sites after the model ran).
        """
        self.register_params()
        return SEMLikelihood(self, adjacency, num_rows, intervention_mask)


class SEMLikelihood(dist.TorchDistribution):
    """``p(x | A)`` of a :class:`StructuralEquationModel` as a distribution over rows.

    Batch shape: the adjacency batch broadcast with ``(num_rows,)``; event
    shape ``(d,)``. Only ``log_prob`` is implemented: it is meant for observed
    sites (``pyro.sample("X", sem.distribution(A, n), obs=data)``).
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.real, 1)

    def __init__(self, sem, adjacency, num_rows, intervention_mask=None, validate_args=None):
        self.sem, self.adjacency = sem, adjacency
        self.num_rows, self.intervention_mask = int(num_rows), intervention_mask
        batch = adjacency.shape[:-2]
        if len(batch) >= 1 and batch[-1] == 1:
            batch = batch[:-1]
        batch_shape = torch.Size(batch) + (self.num_rows,)
        super().__init__(batch_shape, torch.Size([sem.num_nodes]), validate_args=False)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        if batch_shape == self.batch_shape:
            return self
        adj = self.adjacency.expand(batch_shape[:-1] + (1,) + self.adjacency.shape[-2:])
        return SEMLikelihood(self.sem, adj, batch_shape[-1], self.intervention_mask)

    def log_prob(self, value):
        return self.sem.log_prob(value, self.adjacency, self.intervention_mask)

    def sample(self, sample_shape=()):
        raise NotImplementedError("SEMLikelihood is for observed sites; simulate with the SEM")
