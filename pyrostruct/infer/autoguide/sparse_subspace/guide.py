"""The sparse subspace guide: :class:`AutoSparseSubspace`.

Set-up (which sites are weight sites, the initial active sets), sampling
(scatter of the active coordinates into a dense weight tensor), summaries,
and the two moves the scheduler drives (:meth:`~AutoSparseSubspace.removal_scores`,
:meth:`~AutoSparseSubspace.replace_coordinates`). The maths is in the
package docstring, :mod:`pyrostruct.infer.autoguide.sparse_subspace`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from operator import attrgetter

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.infer.autoguide import AutoGuide
from pyro.infer.autoguide.initialization import InitMessenger, init_to_feasible
from pyro.nn import PyroModule, PyroParam
from torch.distributions import biject_to, transform_to

from pyrostruct._pyro_compat import (
    deep_setattr,
    guide_plates,
    helpful_support_errors,
    periodic_repeat,
    pyro_module_context,
    sum_rightmost,
)
from pyrostruct.infer.autoguide.sparse_subspace.export import export_posterior_mean
from pyrostruct.infer.autoguide.sparse_subspace.optim_state import reset_optimizer_slots
from pyrostruct.infer.autoguide.sparse_subspace.subspace import (
    CRITERIA,
    _check_density,
    _has_real_support,
    _index_dtype,
    _WeightSite,
    active_count,
    folded_normal_snr,
)

__all__ = ["AutoSparseSubspace"]


class AutoSparseSubspace(AutoGuide):
    """Sparse subspace mean-field Gaussian guide for the weights of a BNN.

    For each *weight site* :math:`\\theta \\in \\mathbb{R}^N` (a latent site with
    real support, outside any plate, e.g. ``PyroSample(dist.Normal(0., 1.)
    .expand([out, in]).to_event(2))``) the guide is Gaussian on an active set
    :math:`S` of :math:`k` coordinates and a point mass at zero elsewhere
    (Li et al., *Training Bayesian Neural Networks with Sparse Subspace
    Variational Inference*, ICLR 2024):

    .. math::

        q(\\theta) = \\prod_{j\\in S}\\mathcal{N}(\\theta_j;\\mu_j,\\sigma_j^2)
                     \\prod_{j\\notin S}\\delta_0(\\theta_j).

    **Storage.** Per site it keeps the loc and (softplus-parameterized) scale
    of the :math:`k` active coordinates as :class:`~pyro.nn.PyroParam` vectors
    of length :math:`k`, and their flat indices as an integer buffer of length
    :math:`k` (``int16``/``int32`` when the site is small enough); nothing of
    size :math:`N` is kept between steps. :math:`k` follows :func:`active_count`,
    the same density for every site. With Adam, an active coordinate costs
    2 values x (value + 2 moments) x 4 B = 24 B plus its index :math:`b` B, a
    dense ``AutoNormal`` weight 24 B: memory shrinks by at most
    :math:`24 / (\\text{density}\\,(24 + b)) < 1/\\text{density}` (8.6x at density
    0.1 with ``int32`` indices; 10x needs density :math:`\\le 2.4/(24+b)`).

    **Sites.** By default every latent site with real support outside plates is
    a weight site (weights and biases alike). ``sites=[...]`` picks them by
    name, ``exclude=[...]`` drops some. All other latent sites (e.g. a positive
    noise scale, or an excluded layer) get an ``AutoNormal``-style dense
    mean-field Gaussian in unconstrained space when ``fallback="normal"``
    (default), or are rejected with ``fallback="error"``.

    **ELBO.** The model scores the full weight tensor, so the reported ELBO
    contains the constant :math:`\\sum_{j\\notin S}\\log p(\\theta_j=0)` of the
    pruned coordinates; it does not depend on the variational parameters, and
    the gradients are exactly those of the subspace ELBO of the paper. With
    ``density=1.0`` the guide is ``AutoNormal`` (same parameters, same random
    draws, same ELBO).

    Usage::

        guide = AutoSparseSubspace(bnn, density=0.1)
        optim = pyro.optim.Adam({"lr": 1e-2})
        svi = SVI(bnn, guide, optim, Trace_ELBO())
        scheduler = SubspaceScheduler(guide, optim, num_steps=2000)
        for step in range(2000):
            loss = scheduler.step(svi.step, x, y)
        net = guide.export_module(root="net")  # pruned posterior-mean nn.Module

    :param callable model: a Pyro model, usually a :class:`~pyro.nn.PyroModule`.
    :param float density: fraction of each weight site's coordinates that are
        active, in (0, 1].
    :param sites: names of the weight sites (default: all real-support latent
        sites outside plates).
    :param exclude: names of sites that are not weight sites.
    :param str fallback: ``"normal"`` (dense mean-field Gaussian for the other
        latent sites) or ``"error"``.
    :param callable init_loc_fn: per-site initialization of the means, as in
        ``AutoNormal`` (the active coordinates take their values from it).
    :param bool init_rescale: multiply the initial active means by
        :math:`1/\\sqrt{\\text{density}}` (default ``True``), so that with a
        fan-in-scaled initialization (or a prior sample) each pre-activation of
        the sparse network has the variance it has in the dense one; without it
        the signal shrinks by :math:`\\sqrt{\\text{density}}` per layer and the KL
        term can collapse a deep sparse network at the start. No effect at
        density 1 or with ``init_to_feasible`` (zeros).
    :param float init_scale: initial standard deviation, as in ``AutoNormal``.
    :param callable create_plates: as in ``AutoNormal``.
    :param int seed: seed of the random initial active sets (default: torch's
        global generator, seeded by ``pyro.set_rng_seed``).

    **References**

    1. Junbo Li, Zichen Miao, Qiang Qiu, Ruqi Zhang. Training Bayesian Neural
       Networks with Sparse Subspace Variational Inference. ICLR 2024.
    """

    scale_constraint = constraints.softplus_positive

    def __init__(
        self,
        model: Callable,
        *,
        density: float = 0.1,
        sites: Iterable[str] | None = None,
        exclude: Iterable[str] = (),
        fallback: str = "normal",
        init_loc_fn: Callable = init_to_feasible,
        init_scale: float = 0.1,
        init_rescale: bool = True,
        create_plates: Callable | None = None,
        seed: int | None = None,
    ) -> None:
        self._density = _check_density(density)
        if isinstance(sites, str) or isinstance(exclude, str):
            raise ValueError("sites and exclude take a list of site names, not a string")
        self._requested_sites = None if sites is None else list(sites)
        self._exclude = list(exclude)
        if self._requested_sites is not None and not self._requested_sites:
            raise ValueError("sites=[] selects no weight site; pass None to use all of them")
        if fallback not in ("normal", "error"):
            raise ValueError(f"fallback must be 'normal' or 'error', got {fallback!r}")
        self._fallback = fallback
        if isinstance(init_scale, int) and not isinstance(init_scale, bool):
            init_scale = float(init_scale)
        if not isinstance(init_scale, float) or not init_scale > 0:
            raise ValueError(f"Expected init_scale > 0. but got {init_scale}")
        self._init_scale = init_scale
        self._init_rescale = bool(init_rescale)
        self._seed = seed
        self.init_loc_fn = init_loc_fn
        self._original_model = (model,)
        super().__init__(InitMessenger(init_loc_fn)(model), create_plates=create_plates)
        self._weight_sites: dict[str, _WeightSite] = {}
        self._event_dims: dict[str, int] = {}
        self._grad_sink: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------ set-up
    def _setup_prototype(self, *args, **kwargs) -> None:
        super()._setup_prototype(*args, **kwargs)
        nodes = list(self.prototype_trace.iter_stochastic_nodes())
        names = [name for name, _ in nodes]
        requested_lists = (("sites", self._requested_sites or []), ("exclude", self._exclude))
        for label, requested in requested_lists:
            unknown = [n for n in requested if n not in names]
            if unknown:
                raise ValueError(
                    f"AutoSparseSubspace: {label}={unknown} name no latent site of the model; "
                    f"its latent sites are {names}"
                )

        def is_candidate(site) -> bool:
            return _has_real_support(site["fn"]) and not site["cond_indep_stack"]

        weight_names = []
        for name, site in nodes:
            if self._requested_sites is not None:
                if name in self._requested_sites:
                    if not is_candidate(site):
                        raise ValueError(
                            f"AutoSparseSubspace: site '{name}' cannot be a weight site: weight "
                            "sites need real support and must be sampled outside any plate "
                            "(declare the layer shape with .expand([...]).to_event(n)); got "
                            f"support {site['fn'].support} and plates "
                            f"{[f.name for f in site['cond_indep_stack']]}"
                        )
                    weight_names.append(name)
            elif is_candidate(site) and name not in self._exclude:
                weight_names.append(name)
        if not weight_names:
            raise ValueError(
                "AutoSparseSubspace found no weight site in the model: a weight site is a latent "
                "site with real support sampled outside any plate, e.g. "
                "PyroSample(dist.Normal(0., 1.).expand([out, in]).to_event(2)). Latent sites "
                f"seen: {names or 'none'}. For other models use AutoNormal."
            )
        others = [n for n in names if n not in weight_names]
        if others and self._fallback == "error":
            raise ValueError(
                f"AutoSparseSubspace: latent sites {others} are not weight sites and "
                "fallback='error'. Pass fallback='normal' to give them a dense mean-field "
                "Gaussian, or hide them with poutine.block(model, hide=[...])."
            )

        self.locs = PyroModule()
        self.scales = PyroModule()
        self._weight_sites = {}
        self._event_dims = {}
        generator = None
        if self._seed is not None:
            generator = torch.Generator().manual_seed(self._seed)
        for i, (name, site) in enumerate(nodes):
            with helpful_support_errors(site):
                transform = biject_to(site["fn"].support)
            if name in weight_names:
                value = site["value"].detach()
                numel = value.numel()
                k = active_count(numel, self._density)
                if k == numel:
                    index = torch.arange(numel)
                else:
                    index = torch.randperm(numel, generator=generator)[:k].sort().values
                init_loc = value.reshape(-1)[index].clone()
                if self._init_rescale and k < numel:
                    init_loc = init_loc * math.sqrt(numel / k)
                buffer = f"_active_index_{i}"
                self.register_buffer(buffer, index.to(_index_dtype(numel)))
                self._weight_sites[name] = _WeightSite(
                    value.shape, numel, k, site["fn"].event_dim, buffer
                )
                event_dim = 1
            else:
                init_loc = transform.inv(site["value"].detach()).detach()
                event_dim = site["fn"].event_dim + init_loc.dim() - site["value"].dim()
                for frame in site["cond_indep_stack"]:
                    full_size = frame.full_size or frame.size
                    if full_size != frame.size:
                        init_loc = periodic_repeat(init_loc, full_size, frame.dim - event_dim)
                        init_loc = init_loc.contiguous()
            self._event_dims[name] = event_dim
            init_scale = torch.full_like(init_loc, self._init_scale)
            deep_setattr(self.locs, name, PyroParam(init_loc, constraints.real, event_dim))
            deep_setattr(self.scales, name, PyroParam(init_scale, self.scale_constraint, event_dim))

    def _require_setup(self) -> None:
        if self.prototype_trace is None:
            raise RuntimeError(
                "AutoSparseSubspace is not set up yet: call the guide once with the model's "
                "arguments (or run one svi.step) first"
            )

    def _get_loc_and_scale(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return attrgetter(name)(self.locs), attrgetter(name)(self.scales)

    def _index(self, name: str) -> torch.Tensor:
        return getattr(self, self._weight_sites[name].buffer)

    # ------------------------------------------------------------------ sampling
    def _scatter(self, name: str, active: torch.Tensor) -> torch.Tensor:
        """Dense weight tensor with ``active`` at the active coordinates, zeros elsewhere."""
        meta = self._weight_sites[name]
        batch = active.shape[:-1]
        index = self._index(name).long()
        if batch:
            index = index.expand(batch + index.shape)
        dense = active.new_zeros(batch + (meta.numel,)).scatter(-1, index, active)
        return dense.reshape(batch + meta.shape)

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """Sample every latent site; returns ``{site name: value}``."""
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        plates = guide_plates(self, *args, **kwargs)
        result = {}
        for name, site in self.prototype_trace.iter_stochastic_nodes():
            site_loc, site_scale = self._get_loc_and_scale(name)
            if name in self._weight_sites:
                active = pyro.sample(
                    name + "_active",
                    dist.Normal(site_loc, site_scale).to_event(1),
                    infer={"is_auxiliary": True},
                )
                value = self._scatter(name, active)
                sink = self._grad_sink
                if sink is not None and value.requires_grad:
                    value.register_hook(self._make_grad_hook(sink, name))
                result[name] = pyro.sample(name, dist.Delta(value, event_dim=site["fn"].event_dim))
                continue
            # Dense AutoNormal-style fallback for the other latent sites.
            transform = biject_to(site["fn"].support)
            with ExitStack() as stack:
                for frame in site["cond_indep_stack"]:
                    if frame.vectorized:
                        stack.enter_context(plates[frame.name])
                unconstrained = pyro.sample(
                    name + "_unconstrained",
                    dist.Normal(site_loc, site_scale).to_event(self._event_dims[name]),
                    infer={"is_auxiliary": True},
                )
                value = transform(unconstrained)
                if poutine.get_mask() is False:
                    log_density = 0.0
                else:
                    log_density = transform.inv.log_abs_det_jacobian(value, unconstrained)
                    log_density = sum_rightmost(
                        log_density, log_density.dim() - value.dim() + site["fn"].event_dim
                    )
                result[name] = pyro.sample(
                    name,
                    dist.Delta(value, log_density=log_density, event_dim=site["fn"].event_dim),
                )
        return result

    def _make_grad_hook(self, sink: dict[str, torch.Tensor], name: str):
        numel = self._weight_sites[name].numel

        def hook(grad: torch.Tensor) -> None:
            flat = grad.detach().reshape(-1, numel).sum(0)
            sink[name] = sink[name] + flat if name in sink else flat.clone()

        return hook

    @contextlib.contextmanager
    def capture_gradients(self) -> Iterator[dict[str, torch.Tensor]]:
        """Record the gradient of the loss with respect to each dense weight tensor.

        Within the block, every backward pass through a weight site adds
        :math:`\\partial \\text{loss} / \\partial \\theta` (flattened, length
        :math:`N`, summed over particles) into the yielded dict. At inactive
        coordinates this is the gradient with respect to their would-be means.
        Only the transient dense gradient of the forward pass is used; the dict
        holds one vector per site until the block's owner drops it.
        """
        sink: dict[str, torch.Tensor] = {}
        previous, self._grad_sink = self._grad_sink, sink
        try:
            yield sink
        finally:
            self._grad_sink = previous

    # ------------------------------------------------------------------ summaries
    @property
    def weight_sites(self) -> list[str]:
        """Names of the sites with a sparse subspace guide."""
        self._require_setup()
        return list(self._weight_sites)

    @property
    def density(self) -> float:
        """Fraction of the weight sites' coordinates that are active."""
        self._require_setup()
        total = sum(m.numel for m in self._weight_sites.values())
        return sum(m.active for m in self._weight_sites.values()) / total

    @property
    def num_variational_params(self) -> int:
        """Number of trained variational parameters (locs and scales)."""
        self._require_setup()
        return sum(p.numel() for p in self.parameters())

    def active_counts(self) -> dict[str, int]:
        """``{weight site: number of active coordinates}``."""
        self._require_setup()
        return {name: m.active for name, m in self._weight_sites.items()}

    def active_indices(self, name: str) -> torch.Tensor:
        """Flat (row-major) indices of the active coordinates of ``name``, in slot order."""
        self._require_setup()
        if name not in self._weight_sites:
            raise ValueError(f"'{name}' is not a weight site; weight sites: {self.weight_sites}")
        return self._index(name).long().clone()

    def active_mask(self, name: str) -> torch.Tensor:
        """Boolean tensor of the site's shape, True at active coordinates."""
        index = self.active_indices(name)
        meta = self._weight_sites[name]
        mask = torch.zeros(meta.numel, dtype=torch.bool)
        mask[index] = True
        return mask.reshape(meta.shape)

    @torch.no_grad()
    def median(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """Posterior median (= mean) of every latent site; pruned weights are 0."""
        self._require_setup()
        medians = {}
        for name, site in self.prototype_trace.iter_stochastic_nodes():
            loc, _ = self._get_loc_and_scale(name)
            if name in self._weight_sites:
                medians[name] = self._scatter(name, loc.detach())
            else:
                value = biject_to(site["fn"].support)(loc)
                medians[name] = value.clone() if value is loc else value
        return medians

    @torch.no_grad()
    def quantiles(self, quantiles, *args, **kwargs) -> dict[str, torch.Tensor]:
        """Posterior quantiles of every latent site, stacked along a leading dim.

        Pruned weights are a point mass at 0, so all their quantiles are 0.
        """
        self._require_setup()
        results = {}
        for name, site in self.prototype_trace.iter_stochastic_nodes():
            loc, scale = self._get_loc_and_scale(name)
            qs = torch.tensor(quantiles, dtype=loc.dtype, device=loc.device)
            qs = qs.reshape(qs.shape + (1,) * loc.dim())
            values = dist.Normal(loc, scale).icdf(qs)
            if name in self._weight_sites:
                results[name] = self._scatter(name, values)
            else:
                results[name] = biject_to(site["fn"].support)(values)
        return results

    # ------------------------------------------------------------------ subspace moves
    @torch.no_grad()
    def removal_scores(self, name: str, criterion: str = "snr", generator=None) -> torch.Tensor:
        """Score of each active coordinate (slot order); the lowest are removed.

        * ``"snr"``: signal-to-noise ratio of :math:`|\\theta|` under
          :math:`q`, a folded normal: :math:`E|\\theta| / \\sqrt{Var|\\theta|}` with
          :math:`E|\\theta| = \\sigma\\sqrt{2/\\pi}e^{-\\mu^2/2\\sigma^2} +
          \\mu(1 - 2\\Phi(-\\mu/\\sigma))` and :math:`Var|\\theta| = \\mu^2 +
          \\sigma^2 - (E|\\theta|)^2` (the paper's default).
        * ``"magnitude"``: :math:`|\\mu|`.
        * ``"random"``: uniform noise (a baseline).
        """
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
        self._require_setup()
        loc, scale = self._get_loc_and_scale(name)
        loc, scale = loc.detach(), scale.detach()
        if criterion == "magnitude":
            return loc.abs()
        if criterion == "random":
            return torch.rand(loc.shape, generator=generator, dtype=loc.dtype)
        return folded_normal_snr(loc, scale)

    @torch.no_grad()
    def replace_coordinates(
        self, name: str, slots: torch.Tensor, new_indices: torch.Tensor, optim=None
    ) -> None:
        """Put new coordinates ``new_indices`` into the active ``slots`` of ``name``.

        The new coordinates start at mean 0 and at the mean scale of the
        site's other (kept) coordinates. Kept coordinates stay in their slots,
        so their optimizer state stays with them; the state of the replaced
        slots (Adam's moments) is reset to zero in ``optim`` (a
        :class:`pyro.optim.PyroOptim` or a :class:`torch.optim.Optimizer`).
        """
        self._require_setup()
        meta = self._weight_sites[name]
        slots = torch.as_tensor(slots, dtype=torch.long).reshape(-1)
        new_indices = torch.as_tensor(new_indices, dtype=torch.long).reshape(-1)
        if slots.numel() != new_indices.numel():
            raise ValueError("slots and new_indices must have the same length")
        if slots.numel() == 0:
            return
        index = self._index(name)
        keep = torch.ones(meta.active, dtype=torch.bool)
        keep[slots] = False
        remaining = index.long()[keep]
        taken = torch.cat([remaining, new_indices])
        if taken.unique().numel() != taken.numel() or new_indices.min() < 0:
            raise ValueError("new_indices must be distinct inactive coordinates")
        if new_indices.max() >= meta.numel:
            raise ValueError(f"new_indices out of range for site '{name}' of size {meta.numel}")
        with pyro_module_context(self):
            loc, scale = self._get_loc_and_scale(name)
            loc_u, scale_u = loc.unconstrained(), scale.unconstrained()
            mean_scale = scale[keep].mean() if keep.any() else scale.mean()
            loc_u[slots] = 0.0
            scale_u[slots] = transform_to(self.scale_constraint).inv(mean_scale)
        index[slots] = new_indices.to(index.dtype)
        reset_optimizer_slots(optim, [loc_u, scale_u], slots)

    # ------------------------------------------------------------------ export
    def export_module(self, root: str | None = None) -> torch.nn.Module:
        """The posterior mean as a pruned, deterministic ``torch.nn.Module``.

        Deep-copies the model (or its submodule at attribute path ``root``,
        e.g. ``"net"``), sets every sampled weight to its posterior mean (zero
        off the active set), and turns every ``PyroModule[nn.X]`` into the plain
        ``nn.X``, so the result runs without Pyro. ``root`` must name a part of
        the model built from ``PyroModule[nn.X]`` layers: a custom
        ``PyroModule`` subclass (whose ``forward`` may call ``pyro.sample``)
        cannot be exported and raises ``ValueError``
        (:func:`~pyrostruct.infer.autoguide.sparse_subspace.export.export_posterior_mean`).
        """
        self._require_setup()
        return export_posterior_mean(self._original_model[0], self.median(), root)
