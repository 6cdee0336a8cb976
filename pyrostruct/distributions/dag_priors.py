"""Priors over DAGs for Pyro models: Erdős–Rényi-style edges and a sparsity penalty."""

from __future__ import annotations

import torch
from pyro.distributions import TorchDistribution, constraints
from torch.distributions import biject_to, transform_to
from torch.distributions.transforms import Transform

from .dag import OrderedDAG

__all__ = ["ErdosRenyiDAG", "SparsityPenalty"]

_EMPTY = torch.Size()


def _float_tensor(value) -> torch.Tensor:
    """``value`` as a tensor of its own floating dtype, else of torch's default one."""
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value
    return torch.as_tensor(value, dtype=torch.get_default_dtype())


class ErdosRenyiDAG(OrderedDAG):
    r"""Erdős–Rényi prior over DAGs: a uniform order, then i.i.d. forward edges.

    .. math::

        \pi \sim \mathrm{Uniform}(S_d), \quad A_{ij} \sim \mathrm{Bernoulli}(p)
        \ \text{for each of the}\ d(d-1)/2\ \text{pairs with}\ i\ \text{before}\ j,
        \qquad p = m / \tbinom{d}{2},

    so the expected number of edges is exactly ``m = expected_edges``. This is
    :class:`~pyrostruct.distributions.OrderedDAG` with zero scores and constant
    edge logits ``logit(p)``, so it lives on the same extended ``(order, A)``
    space as an ``OrderedDAG`` guide: in a model, ``pyro.sample("G",
    ErdosRenyiDAG(d, expected_edges=m))`` with ``pyro.sample("G", OrderedDAG(...))``
    in the guide gives a valid ELBO. Both the joint

    .. math::

        \log p(\pi, A) = -\log d! + |A| \log p + (\tbinom{d}{2} - |A|) \log(1 - p)

    and the marginal ``p(A) = (#linear extensions of A / d!) p^{|A|} (1-p)^{C(d,2)-|A|}``
    (exact for ``d <= 12``) are normalised. This is the random-DAG model of the
    causal-discovery literature (random order, Erdős–Rényi edges), e.g. the
    "ER" graphs of Zheng et al. 2018.

    :param int num_nodes: ``d >= 1``.
    :param expected_edges: expected number of edges ``m`` in ``[0, d(d-1)/2]``
        (float or tensor giving a batch shape).
    :param edge_prob: alternatively the edge probability ``p`` in ``[0, 1]``.

    References:

    [1] P. Erdős, A. Rényi, "On Random Graphs I", 1959.
    [2] X. Zheng, B. Aragam, P. Ravikumar, E. Xing, "DAGs with NO TEARS: Continuous
        Optimization for Structure Learning", NeurIPS 2018.
    """

    def __init__(
        self,
        num_nodes: int,
        *,
        expected_edges=None,
        edge_prob=None,
        validate_args=None,
    ):
        d = _check_num_nodes(num_nodes)
        n_pairs = d * (d - 1) // 2
        if (expected_edges is None) == (edge_prob is None):
            raise ValueError("ErdosRenyiDAG: pass exactly one of expected_edges or edge_prob.")
        if expected_edges is not None:
            m = _float_tensor(expected_edges)
            if bool(torch.isnan(m).any()) or bool((m < 0).any()) or bool((m > n_pairs).any()):
                raise ValueError(
                    f"ErdosRenyiDAG: expected_edges must lie in [0, d(d-1)/2] = [0, {n_pairs}] "
                    f"for d = {d} nodes, got {expected_edges}."
                )
            p = m / n_pairs if n_pairs else torch.zeros_like(m)
        else:
            p = _float_tensor(edge_prob)
            if bool(torch.isnan(p).any()) or bool((p < 0).any()) or bool((p > 1).any()):
                raise ValueError(f"ErdosRenyiDAG: edge_prob must lie in [0, 1], got {edge_prob}.")
        self.edge_prob = p
        self.expected_edges = p * n_pairs
        logits = torch.logit(p)  # +-inf at p = 1 / 0: edges forced / forbidden
        edge_logits = logits[..., None, None].expand(p.shape + (d, d))
        super().__init__(
            torch.zeros(d, dtype=logits.dtype), edge_logits, validate_args=validate_args
        )

    @classmethod
    def infer_shapes(cls, num_nodes, expected_edges=(), edge_prob=(), **kwargs):
        """``batch_shape`` from ``expected_edges`` (or ``edge_prob``), ``event_shape = (d, d)``.

        The event shape depends on the *value* of ``num_nodes``, so pass the int itself.
        """
        d = _check_num_nodes(num_nodes)
        batch = expected_edges if len(expected_edges) else edge_prob
        return torch.Size(batch), torch.Size((d, d))

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(ErdosRenyiDAG, _instance)
        new = super().expand(batch_shape, _instance=new)
        batch_shape = torch.Size(batch_shape)
        new.edge_prob = self.edge_prob.expand(batch_shape)
        new.expected_edges = self.expected_edges.expand(batch_shape)
        return new


class SparsityPenalty(TorchDistribution):
    r"""L1 sparsity penalty on (weighted) adjacency matrices, optionally normalised.

    .. math::

        \log p(W) = -\lambda \sum_{i \ne j} |W_{ij}|
            \;+\; \underbrace{d(d-1) \log(\lambda / 2)}_{\text{if normalized}} .

    With ``normalized=True`` (default) this is the proper density of i.i.d.
    ``Laplace(0, 1/lambda)`` off-diagonal weights (diagonal fixed at 0): the
    Bayesian counterpart of the L1 penalty of NOTEARS/DAGMA-style objectives,
    with ``sample``/``rsample``. With ``normalized=False`` ``log_prob`` is the
    bare penalty ``-lambda ||W||_1``, an unnormalised factor for
    ``pyro.factor("sparsity", penalty.log_prob(A))`` on DAG samples (e.g.
    ``-lambda |A|`` edges); it claims no normalisation and ``sample`` refuses.

    The support is the real ``(d, d)`` matrices with a zero diagonal (the density
    has no factor for the diagonal, so a value with a non-zero one is outside it).
    ``biject_to(support)`` maps the ``d(d-1)`` free weights to such a matrix, so an
    autoguide (e.g. ``AutoNormal``) learns the off-diagonal weights only.

    :param int num_nodes: ``d >= 1``.
    :param strength: ``lambda > 0`` (float or tensor giving a batch shape).
    :param bool normalized: Laplace density (True) or bare penalty (False).

    References:

    [1] R. Tibshirani, "Regression Shrinkage and Selection via the Lasso", 1996.
    [2] T. Park, G. Casella, "The Bayesian Lasso", JASA 2008.
    """

    arg_constraints = {"strength": constraints.positive}
    has_rsample = True

    def __init__(self, num_nodes: int, strength, *, normalized: bool = True, validate_args=None):
        d = _check_num_nodes(num_nodes)
        lam = torch.as_tensor(strength, dtype=torch.get_default_dtype())
        if (
            bool(torch.isnan(lam).any())
            or bool((lam <= 0).any())
            or not bool(torch.isfinite(lam).all())
        ):
            raise ValueError(f"SparsityPenalty: strength must be finite and > 0, got {strength}.")
        self.num_nodes = d
        self.strength = lam
        self.normalized = bool(normalized)
        super().__init__(lam.shape, torch.Size((d, d)), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=2)
    def support(self):
        return _ZeroDiagonalReal(self.num_nodes)

    @classmethod
    def infer_shapes(cls, num_nodes, strength=(), **kwargs):
        """``batch_shape = strength``, ``event_shape = (d, d)``; pass ``num_nodes`` as the int."""
        d = _check_num_nodes(num_nodes)
        return torch.Size(strength), torch.Size((d, d))

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(SparsityPenalty, _instance)
        batch_shape = torch.Size(batch_shape)
        new.num_nodes = self.num_nodes
        new.strength = self.strength.expand(batch_shape)
        new.normalized = self.normalized
        super(SparsityPenalty, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _off_diagonal(self, value):
        d = self.num_nodes
        eye = torch.eye(d, dtype=torch.bool, device=value.device)
        return value.masked_fill(eye, 0.0)

    def log_prob(self, value):
        d = self.num_nodes
        if value.dim() < 2 or tuple(value.shape[-2:]) != (d, d):
            raise ValueError(f"Expected values of shape (..., {d}, {d}), got {tuple(value.shape)}.")
        if self._validate_args:
            self._validate_sample(value)
        lam = self.strength
        lp = -lam * self._off_diagonal(value).abs().sum((-1, -2))
        if self.normalized:
            lp = lp + d * (d - 1) * torch.log(lam / 2)
        return lp

    def rsample(self, sample_shape=_EMPTY):
        if not self.normalized:
            raise NotImplementedError(
                "SparsityPenalty(normalized=False) is an unnormalised factor and cannot be "
                "sampled; use normalized=True (Laplace weights) or pyro.factor."
            )
        shape = self._extended_shape(sample_shape)
        lam = self.strength[..., None, None]
        u = torch.rand(shape, dtype=lam.dtype, device=lam.device) - 0.5
        eps = torch.finfo(lam.dtype).eps
        w = -torch.sign(u) * torch.log1p(-2 * u.abs().clamp(max=0.5 - eps)) / lam
        return self._off_diagonal(w)

    @property
    def mean(self):
        return torch.zeros(self._extended_shape(), dtype=self.strength.dtype)

    @property
    def variance(self):
        d = self.num_nodes
        var = (2 / self.strength**2)[..., None, None].expand(self._extended_shape())
        return self._off_diagonal(var.clone()) if d else var


class _ZeroDiagonalReal(constraints.Constraint):
    """Real ``(d, d)`` matrices whose diagonal is exactly 0 (``check``: batch-shaped mask)."""

    is_discrete = False
    event_dim = 2

    def __init__(self, num_nodes: int):
        self.num_nodes = num_nodes
        super().__init__()

    def check(self, value):
        real = (value == value).all(-1).all(-1)  # no NaN, as constraints.real
        zero_diagonal = (value.diagonal(dim1=-2, dim2=-1) == 0).all(-1)
        return real & zero_diagonal

    def __repr__(self):
        return f"{type(self).__name__}(num_nodes={self.num_nodes})"


class _OffDiagonalTransform(Transform):
    """Bijection from ``d(d-1)`` free weights (row-major off-diagonal order) to a
    ``(d, d)`` matrix with a zero diagonal; volume preserving (log-Jacobian 0)."""

    domain = constraints.real_vector
    bijective = True

    def __init__(self, num_nodes: int, cache_size: int = 0):
        super().__init__(cache_size=cache_size)
        self.num_nodes = num_nodes
        self.codomain = _ZeroDiagonalReal(num_nodes)
        d = num_nodes
        self._index = (~torch.eye(d, dtype=torch.bool)).reshape(-1).nonzero().squeeze(-1)

    def with_cache(self, cache_size=1):
        return (
            self
            if self._cache_size == cache_size
            else _OffDiagonalTransform(self.num_nodes, cache_size=cache_size)
        )

    def __eq__(self, other):
        return isinstance(other, _OffDiagonalTransform) and other.num_nodes == self.num_nodes

    def _call(self, x):
        d = self.num_nodes
        flat = x.new_zeros(x.shape[:-1] + (d * d,))
        flat = flat.index_copy(-1, self._index.to(x.device), x)
        return flat.reshape(x.shape[:-1] + (d, d))

    def _inverse(self, y):
        d = self.num_nodes
        return y.reshape(y.shape[:-2] + (d * d,)).index_select(-1, self._index.to(y.device))

    def log_abs_det_jacobian(self, x, y):
        return x.new_zeros(x.shape[:-1])

    def forward_shape(self, shape):
        d = self.num_nodes
        if shape[-1:] != (d * (d - 1),):
            raise ValueError(f"Expected {d * (d - 1)} free weights, got shape {tuple(shape)}.")
        return torch.Size(shape[:-1]) + (d, d)

    def inverse_shape(self, shape):
        d = self.num_nodes
        return torch.Size(shape[:-2]) + (d * (d - 1),)


@biject_to.register(_ZeroDiagonalReal)
@transform_to.register(_ZeroDiagonalReal)
def _zero_diagonal_transform(constraint):
    return _OffDiagonalTransform(constraint.num_nodes)


def _check_num_nodes(num_nodes) -> int:
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
        raise ValueError(f"Expected num_nodes to be an int >= 1, got {num_nodes!r}.")
    return num_nodes
