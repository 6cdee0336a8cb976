"""``fit``: model in, trained posterior out.

A small SVI driver for the common case: decide, per discrete site, between
exact enumeration and relaxation (:mod:`pyrostruct.infer.enum`), build the
guide with :func:`~pyrostruct.infer.autoguide.auto_guide` (unless one is
given), run ``TraceEnum_ELBO`` (when a site is enumerated, with
``max_plate_nesting`` read off a trace) or ``Trace_ELBO`` with Adam for a fixed
number of steps, step every temperature schedule once per step, and return the
trained guide with its loss trace. The result recovers the enumerated local
latents afterwards (:meth:`FitResult.infer_discrete`).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, TraceTMC_ELBO
from pyro.infer.autoguide import AutoGuideList
from pyro.infer.autoguide.initialization import init_to_feasible, init_to_value
from pyro.optim import ClippedAdam

from pyrostruct.data import model_arguments
from pyrostruct.distributions.temperature import TemperatureSchedule
from pyrostruct.errors import InputError, check_seed
from pyrostruct.infer._score_sites import (
    dag_restarts,
    score_dag_params,
    score_elbo,
    score_function_sites,
)
from pyrostruct.infer.engine import (
    CallbackHook,
    ProgressHook,
    SubspaceHook,
    TemperatureHook,
    param_scope,
    publish_params,
    train,
)
from pyrostruct.infer.enum import (
    ENUMERATE,
    RELAX,
    _check_policy,
    _is_latent_discrete,
    _is_marked,
    _trace,
    enumerate_policy,
    enumerated_sites,
    infer_max_plate_nesting,
)
from pyrostruct.infer.init import mixture_init

__all__ = ["FitResult", "fit"]

#: Particles of the default ``TraceRWS_ELBO`` when the guide has score-function sites.
SCORE_PARTICLES = 16
#: Learning-rate multiplier of DAG sites trained by score-function gradients. Adam
#: normalizes their noisy gradients; measured on the 3-node collider of the tests
#: (1000 steps, 16 particles), edge marginals land 0.17 from exact at the base
#: rate 0.02 and within 0.02 at 0.2.
SCORE_DAG_LR = 10.0
#: SVI steps by default.
STEPS = 1000


class _FitResultFields(NamedTuple):
    model: Any
    guide: Any
    losses: list[float]


class FitResult(_FitResultFields):
    """What :func:`fit` returns: the model it trained on, the guide, the losses (-ELBO).

    A named tuple ``(model, guide, losses)`` (so ``model, guide, losses = fit(...)``
    works), with more attributes:

    - ``discrete_policy``: ``{site: "enumerate" | "relax"}`` for every latent
      discrete site, the choice :func:`fit` made (or found in the model);
    - ``elbo``: the ELBO object trained with (``TraceEnum_ELBO``,
      :class:`~pyrostruct.infer.TraceRWS_ELBO` or ``Trace_ELBO``);
    - ``score_function_sites``: the guide's sites trained by score-function
      gradients (for example DAG sites under
      :class:`~pyrostruct.infer.autoguide.AutoDAG`'s default estimator);
    - ``max_plate_nesting``: the value given to ``TraceEnum_ELBO`` or to the
      score-function sites' ``TraceRWS_ELBO`` (``None`` otherwise);
    - ``args``, ``kwargs``: the data the model was fitted to;
    - ``restart_elbos``: the final ELBO of every restart (the best was kept),
      ``restart_guides`` and ``restart_states`` (every restart's guide and its
      param-store state, pooled by :meth:`edge_probs`), and ``data_init``: whether
      the restarts started from the data (:func:`~pyrostruct.infer.init.mixture_init`).

    ``model`` is the model as trained (enumeration marks and relaxations
    applied); use it, not the model you passed, with ``guide`` in ``Predictive``
    or ``TraceEnum_ELBO``.
    """

    def __new__(
        cls,
        model,
        guide,
        losses,
        *,
        discrete_policy=None,
        elbo=None,
        max_plate_nesting=None,
        args=(),
        kwargs=None,
    ):
        self = super().__new__(cls, model, guide, losses)
        self.discrete_policy = dict(discrete_policy or {})
        self.elbo = elbo
        self.score_function_sites: list[str] = []  # set by fit
        self.max_plate_nesting = max_plate_nesting
        self.restart_elbos: list[float] = []  # set by fit when it built the guide
        self.restart_guides: list = []
        self.restart_states: list[dict] = []
        self.data_init = False
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        return self

    def edge_probs(self, name: str | None = None, num_samples: int = 4000, proposal: str = "union"):
        """Posterior edge marginals ``P(i -> j | x)`` of DAG site ``name`` (``None``: the only
        one): guide draws importance-weighted by the model, or the guide's own marginals
        where the weights are unreliable
        (:func:`~pyrostruct.infer.dag_marginals.posterior_edge_probs`).

        :param str proposal: ``"union"`` (default): when the fit trained several restarts,
            the proposal is the equal mixture of all their guides
            (:func:`~pyrostruct.infer.dag_marginals.union_edge_probs`: a posterior mode
            that one restart missed still gets its weight from another); ``"best"``: the
            returned guide (the best final ELBO) alone. A model with parameters of its
            own (``pyro.param``) always uses ``"best"``: each restart fitted them apart.
        :returns: :class:`~pyrostruct.infer.autoguide.EdgeProbs` ``(mean, stderr, ess,
            method, khat)``, ``method`` ``"importance-union"``, ``"importance"`` or
            ``"guide"``.
        """
        from pyrostruct.infer.autoguide.dag import is_dag_site
        from pyrostruct.infer.dag_marginals import posterior_edge_probs

        if proposal not in ("union", "best"):
            raise InputError(f"proposal must be 'union' or 'best', got {proposal!r}")
        trace = _trace(self.model, *self.args, **self.kwargs)
        sites = [n for n, site in trace.nodes.items() if is_dag_site(site)]
        if name is None:
            if len(sites) != 1:
                raise InputError(f"the model has DAG sites {sites}; pass name= (one of them)")
            name = sites[0]
        elif name not in sites:
            raise InputError(f"no DAG site named {name!r}; the model's DAG sites are {sites}")
        pooled = {}
        own_params = any(site["type"] == "param" for site in trace.nodes.values())
        if proposal == "union" and len(self.restart_guides) > 1 and not own_params:
            pooled = {"restarts": (self.restart_guides, self.restart_states)}
        return posterior_edge_probs(
            self.model, self.guide, *self.args, site=name, num_samples=num_samples,
            max_plate_nesting=self.max_plate_nesting, **pooled, **self.kwargs,
        )  # fmt: skip

    @property
    def enumerated_sites(self) -> list[str]:
        """Sites summed out by enumeration during the fit."""
        return [name for name, choice in self.discrete_policy.items() if choice == ENUMERATE]

    @torch.no_grad()
    def infer_discrete(self, *args, temperature: int = 0, **kwargs) -> dict[str, torch.Tensor]:
        r"""Values of the enumerated sites given the data: MAP (``temperature=0``) or a sample.

        Runs Pyro's :func:`~pyro.infer.infer_discrete` (forward-filter
        backward-sample / Viterbi-like max-product over the enumerated sites,
        exact, including ``pyro.markov`` chains) on the trained model with the
        global latents fixed by the guide:

        - ``temperature=0``: the global latents at the guide's median
          (``guide.median()``; the MAP for ``AutoDelta``; a guide sample when the
          guide has no median) and the joint MAP
          :math:`\arg\max_z p(z \mid x, \hat\theta)` of the enumerated sites;
        - ``temperature=1``: one posterior sample, :math:`\theta \sim q(\theta)`
          then :math:`z \sim p(z \mid x, \theta)`; call repeatedly for more.

        :param args, kwargs: the model's arguments; none given: the data of the fit.
            New data of the same structure classifies new points (as in Pyro's
            GMM tutorial).
        :param temperature: 0 (MAP) or 1 (sample).
        :returns: ``{site name: value}`` for every enumerated site, in trace order.
        :raises InputError: bad ``temperature``, or nothing was enumerated.

        Example (Pyro's GMM tutorial)::

            result = pyrostruct.fit(model, data)
            result.infer_discrete()["assignment"]          # MAP cluster of each point
            result.infer_discrete(temperature=1)["assignment"]  # a posterior sample

        Reference: Pyro's ``infer_discrete`` (Obermeyer et al., "Tensor Variable
        Elimination for Plated Factor Graphs", ICML 2019).
        """
        if temperature not in (0, 1):
            raise InputError(
                f"temperature must be 0 (MAP) or 1 (posterior sample), got {temperature!r}."
            )
        if not args and not kwargs:
            args, kwargs = self.args, self.kwargs
        names = enumerated_sites(self.model, *args, **kwargs)
        if not names:
            raise InputError(
                "infer_discrete: the fitted model enumerates no site (policy "
                f"{self.discrete_policy}); fit with discrete='enumerate' or mark the sites "
                "with @config_enumerate."
            )
        nesting = self.max_plate_nesting
        if nesting is None:
            nesting = infer_max_plate_nesting(self.model, *args, **kwargs)
        median = None
        if temperature == 0 and hasattr(self.guide, "median"):
            try:
                median = self.guide.median(*args, **kwargs)
            except NotImplementedError:  # a part without a median: use a guide sample
                median = None
        if median is not None:
            fixed = poutine.condition(self.model, data=median)
        else:
            guide_trace = poutine.trace(self.guide).get_trace(*args, **kwargs)
            fixed = poutine.replay(self.model, trace=guide_trace)
        inferred = pyro.infer.infer_discrete(
            fixed, temperature=temperature, first_available_dim=-1 - nesting
        )
        trace = poutine.trace(inferred).get_trace(*args, **kwargs)
        partial = _subsampled_plates(trace, names)
        if partial:
            warnings.warn(
                "infer_discrete: the model subsamples "
                + ", ".join(f"plate {p!r} ({k} of {n} points)" for p, (k, n) in partial.items())
                + ": the values are for this call's random subsample, without its indices "
                "(for every point, run pyro.infer.infer_discrete on a copy of the model "
                "without subsample_size, with this fit's guide)",
                UserWarning,
                stacklevel=3,
            )
        return {name: trace.nodes[name]["value"] for name in names if name in trace.nodes}


def _subsampled_plates(trace, names) -> dict[str, tuple[int, int]]:
    """``{plate: (subsample size, size)}`` of the plates around the sites ``names`` of
    ``trace`` that hold fewer points than their size."""
    out = {}
    for name in names:
        for frame in trace.nodes.get(name, {}).get("cond_indep_stack", ()):
            indices = trace.nodes.get(frame.name, {}).get("value")
            size = frame.full_size if frame.full_size is not None else frame.size
            if indices is not None and len(indices) < size:
                out[frame.name] = (len(indices), int(size))
    return out


def fit(
    model,
    *args,
    guide=None,
    discrete: str | dict[str, str] = "auto",
    steps: int | None = None,
    lr: float = 0.02,
    num_particles: int | None = None,
    temperature: Any = 0.5,
    elbo=None,
    max_plate_nesting: int | None = None,
    num_restarts: int | None = None,
    init: str | None = "auto",
    seed: int | None = 0,
    progress: bool = False,
    callback=None,
    **kwargs,
) -> FitResult:
    """Fit ``guide`` (default: ``auto_guide(model)``) to ``model(*args, **kwargs)`` by SVI.

    Maximizes the ELBO :math:`\\mathbb{E}_q[\\log p(x, z) - \\log q(z)]` with
    ``ClippedAdam(lr)`` for ``steps`` steps. Discrete latent sites are either
    *enumerated*, summed out exactly by ``TraceEnum_ELBO``
    (:math:`\\log p(x, \\theta) = \\log \\sum_z p(x, z, \\theta)`; the guide covers
    only the other sites), or *relaxed* (Gumbel-softmax, guided by
    :class:`~pyrostruct.infer.autoguide.AutoGumbelSoftmax`), as ``discrete`` says:

    - ``"auto"`` (default): sites the model marks for enumeration
      (``@config_enumerate``, ``infer={"enumerate": "parallel"}``) are
      enumerated; an unmarked site is enumerated when its support is finite and
      enumerable in parallel (``Bernoulli``, ``Categorical``,
      ``OneHotCategorical``, in or out of plates, at most 256 values) and, with
      all such sites enumerated, the model's log-density tensors hold at most
      :math:`2^{22}` numbers in total; it is relaxed otherwise (e.g. ``.to_event()``
      discrete sites, many coupled global indicators);
    - ``"enumerate"``: every discrete latent site is enumerated (an error names a
      site that cannot be);
    - ``"relax"``: every discrete latent site is relaxed, the model's marks
      overridden;
    - a dict ``{site: "enumerate" | "relax"}``: those sites as given, ``"auto"``
      for the others.

    The choice per site is reported as ``result.discrete_policy``. With an
    enumerated site the ELBO is ``TraceEnum_ELBO(max_plate_nesting=...)``,
    ``max_plate_nesting`` read off a trace of the model
    (:func:`~pyrostruct.infer.enum.infer_max_plate_nesting`) unless given.
    When the guide has sites without a reparameterized sampler (DAG sites
    under :class:`~pyrostruct.infer.autoguide.AutoDAG`'s default, unbiased
    score-function estimator; reported as ``result.score_function_sites``) it is
    :class:`~pyrostruct.infer.TraceRWS_ELBO` with 16 particles (vectorized when
    the model broadcasts over a particle plate, drawn one by one otherwise): those
    sites follow the mass-covering wake update of reweighted wake-sleep, the
    others the ELBO's gradient; the parameters of score-function DAG sites learn
    at ``10 * lr`` (Adam normalizes their noisy gradients; at ``lr`` alone 1000
    steps leave the edge marginals of a 3-node collider 0.17 from exact, at
    ``10 * lr`` within 0.02). Otherwise ``Trace_ELBO``. A model whose latents are all
    DAGs and their declared edge weights (the guide built here) trains 8 restarts of 250
    steps by default, or 4 of 750 steps of 32 particles where a DAG has more than 6 nodes
    (one guide can miss a posterior mode, and which it misses changes between restarts;
    the measurements are in :mod:`pyrostruct.infer._score_sites`), and the posterior edge
    marginals :meth:`FitResult.edge_probs` weigh the DAGs drawn by all their guides by the
    model against their equal mixture, the union proposal
    (:func:`~pyrostruct.infer.dag_marginals.union_edge_probs`), the edge weights
    integrated out per distinct DAG (:mod:`pyrostruct.infer.edge_weight_laplace`). The
    rules and the size budget are in :mod:`pyrostruct.infer.enum`. After the fit,
    :meth:`FitResult.infer_discrete` recovers the enumerated local latents (MAP
    or posterior samples).

    Mixture-like models start from the data: with ``init="auto"`` and the guide
    built here, a model that :func:`~pyrostruct.infer.init.mixture_init`
    recognizes (a discrete assignment indexing component parameters, as in
    Pyro's GMM tutorial) starts its component locations at k-means++ centres,
    scales at within-cluster spreads and weights at cluster proportions, a
    different seeding per restart; from the default start such a fit tends to
    merge the components. ``num_restarts`` fits run one after another (each
    with a fresh guide) and the one with the highest final ELBO (the mean of
    its last tenth of steps) is returned; ``result.restart_elbos`` lists them,
    ``result.restart_guides`` and ``result.restart_states`` (their parameters)
    keep every restart for :meth:`FitResult.edge_probs`.

    Training runs through the one loop of :mod:`pyrostruct.infer.engine`. A
    :class:`~pyrostruct.infer.TemperatureSchedule` passed as ``temperature`` (or
    held by the guide or its parts as ``.temperature``) is stepped after every
    SVI step; an :class:`~pyrostruct.infer.autoguide.AutoSparseSubspace` guide (or
    part) gets a :class:`~pyrostruct.infer.autoguide.SubspaceScheduler` with its
    default settings, so its subspace evolves (Li et al., ICLR 2024); for other
    settings write the loop with :func:`pyrostruct.infer.engine.train` and a
    :class:`~pyrostruct.infer.engine.SubspaceHook`. Each restart trains in a
    parameter store of its own (:func:`~pyrostruct.infer.engine.param_scope`),
    and the returned guide's parameters are then written into the caller's
    store, replacing those of the same name and keeping the others (what a plain
    ``SVI`` run leaves); with ``seed`` set, the same call gives the same result.

    :param model: a Pyro model.
    :param args, kwargs: the model's arguments (data); NumPy arrays and numeric pandas
        objects among them are passed on as tensors (:func:`pyrostruct.data.model_arguments`).
    :param guide: a guide; default ``auto_guide(model, discrete=policy, temperature=temperature)``.
        With a guide from :func:`~pyrostruct.infer.autoguide.auto_guide`, training
        runs on ``guide.model`` (the marked and relaxed model), whatever ``model``
        is passed; with another guide, on ``model`` as it is (``discrete`` must
        then stay ``"auto"``).
    :param discrete: the discrete policy (see above).
    :param steps: SVI steps of each restart (>= 1); default 1000, or 250 (750) for each
        of the default restarts of a DAG model (see above).
    :param float lr: Adam learning rate (> 0).
    :param num_particles: ELBO particles per step; default 1, or 16 with
        ``TraceRWS_ELBO`` (32 for the default restarts of a DAG of more than 6 nodes; see
        above).
    :param temperature: Gumbel-softmax temperature of the relaxed sites.
    :param elbo: an ELBO instance (default: ``TraceEnum_ELBO`` or ``Trace_ELBO``
        with ``num_particles``, see above); with enumerated sites it must handle
        enumeration (``TraceEnum_ELBO``, ``JitTraceEnum_ELBO``, ``TraceTMC_ELBO``).
    :param max_plate_nesting: for ``TraceEnum_ELBO``; default: from a trace.
    :param num_restarts: independent fits, the best by final ELBO returned (>= 1);
        default 1, or 8 (4) for a DAG model (see above).
    :param init: ``"auto"`` (data-aware start of mixture-like models, see above) or
        ``None`` (the guide's default start).
    :param seed: passed to ``pyro.set_rng_seed`` (``None``: leave the RNG alone).
    :param bool progress: show a tqdm progress bar with the ELBO.
    :param callback: ``callback(step, loss)`` after every step; returning ``True``
        stops the fit early.
    :returns: :class:`FitResult` ``(model, guide, losses)`` with
        ``discrete_policy``, ``elbo``, ``max_plate_nesting`` and
        :meth:`~FitResult.infer_discrete`.
    :raises InputError: (a ``ValueError``) bad ``steps``/``lr``/``num_particles``/
        ``discrete``/``max_plate_nesting``, or an ELBO that cannot enumerate for a
        model that enumerates.
    :raises NonFiniteLossError: (a ``RuntimeError``) when the loss becomes NaN or infinite.

    Example (the Gaussian mixture of Pyro's GMM tutorial, ``@config_enumerate``)::

        result = fit(model, data, steps=200)
        result.discrete_policy            # {'assignment': 'enumerate'}
        result.guide.median(data)         # weights, scale, locs
        result.infer_discrete()["assignment"]   # MAP cluster of each point
    """
    if steps is not None and not (isinstance(steps, int) and steps >= 1):
        raise InputError(f"steps must be a positive integer or None, got {steps!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise InputError(f"lr must be a finite number > 0, got {lr!r}")
    if num_restarts is not None and not (isinstance(num_restarts, int) and num_restarts >= 1):
        raise InputError(f"num_restarts must be a positive integer or None, got {num_restarts!r}")
    if init not in ("auto", None):
        raise InputError(f"init must be 'auto' or None, got {init!r}")
    if guide is not None and (num_restarts or 1) > 1:
        raise InputError("num_restarts > 1 builds a fresh guide per restart: leave guide=None")
    if num_particles is not None and not (isinstance(num_particles, int) and num_particles >= 1):
        raise InputError(f"num_particles must be a positive integer or None, got {num_particles!r}")
    if max_plate_nesting is not None and not (
        isinstance(max_plate_nesting, int) and max_plate_nesting >= 0
    ):
        raise InputError(
            f"max_plate_nesting must be a non-negative integer or None, got {max_plate_nesting!r}"
        )
    _check_policy(discrete)
    args, kwargs = model_arguments(args, kwargs)
    if seed is not None:
        pyro.set_rng_seed(check_seed(seed))
    from pyrostruct.infer.autoguide.structural import auto_guide

    dag_default = None
    if guide is None and num_restarts is None:
        dag_default = dag_restarts(model, args, kwargs)
    if num_restarts is None:
        num_restarts = dag_default[0] if dag_default else 1
    if steps is None:
        steps = dag_default[1] if dag_default else STEPS
    if num_particles is None and dag_default:
        num_particles = dag_default[2]
    options = (steps, lr, num_particles, temperature, elbo, max_plate_nesting, progress, callback)
    if guide is not None:
        if discrete != "auto":
            raise InputError(
                f"discrete={discrete!r} needs the guide that fit builds: with guide= given, "
                "the guide's model decides. Build it with auto_guide(model, discrete=...) "
                "instead."
            )
        with param_scope(publish=True):
            return _fit_once(model, guide, args, kwargs, *options)
    policy = enumerate_policy(model, *args, discrete=discrete, **kwargs)
    starts = mixture_init(model, *args, **kwargs) if init == "auto" else None
    rng = np.random.default_rng(0 if seed is None else seed)
    best, best_state, elbos, guides, states = None, None, [], [], []
    for _ in range(num_restarts):
        with param_scope() as store:
            init = {}
            if starts is not None:
                init["init_loc_fn"] = init_to_value(
                    values=starts(args, kwargs, rng), fallback=init_to_feasible
                )
            guide = auto_guide(model, discrete=policy, temperature=temperature,
                               continuous_options=init)  # fmt: skip
            result = _fit_once(model, guide, args, kwargs, *options)
            tail = result.losses[-max(1, steps // 10) :]
            elbos.append(-float(np.mean(tail)))
            guides.append(guide)
            states.append(store.get_state())
            if best is None or elbos[-1] > max(elbos[:-1]):
                best, best_state = result, store.get_state()
    publish_params(best_state)  # the best restart's parameters, into the caller's store
    best.restart_elbos = elbos
    best.restart_guides, best.restart_states = guides, states
    best.data_init = starts is not None
    return best


def _fit_once(
    model, guide, args, kwargs, steps, lr, num_particles, temperature, elbo,
    max_plate_nesting, progress, callback,
) -> FitResult:  # fmt: skip
    """One SVI run of ``guide`` on ``model`` (see :func:`fit`)."""
    from pyrostruct.infer.autoguide.structural import AutoStructural

    if isinstance(guide, AutoStructural):
        model = guide.model  # the marked and relaxed model the guide was built on
    enumerated = enumerated_sites(model, *args, **kwargs)
    nesting = None
    score_sites = score_function_sites(guide, args, kwargs)
    if enumerated or (elbo is None and score_sites):
        nesting = (
            max_plate_nesting
            if max_plate_nesting is not None
            else infer_max_plate_nesting(model, *args, **kwargs)
        )
    if elbo is None:
        if enumerated:
            elbo = TraceEnum_ELBO(max_plate_nesting=nesting, num_particles=num_particles or 1)
        elif score_sites:
            particles = num_particles or SCORE_PARTICLES
            elbo = score_elbo(model, guide, args, kwargs, particles, nesting)
        else:
            elbo = Trace_ELBO(num_particles=num_particles or 1)
    elif enumerated and not isinstance(elbo, (TraceEnum_ELBO, TraceTMC_ELBO)):
        raise InputError(
            f"the model enumerates sites {enumerated}, which {type(elbo).__name__} would "
            "sample without gradient; pass elbo=TraceEnum_ELBO(max_plate_nesting="
            f"{nesting}) or leave elbo=None."
        )
    fast = score_dag_params(guide)
    optim = ClippedAdam(lambda name: {"lr": lr * (SCORE_DAG_LR if name in fast else 1.0)})
    svi = SVI(model, guide, optim, elbo)
    svi.evaluate_loss(*args, **kwargs)  # sets the guide up, so its schedules can be found
    hooks = [TemperatureHook(_schedules(temperature, guide))]
    hooks += [SubspaceHook(scheduler) for scheduler in _subspace_schedulers(guide, optim, steps)]
    if progress:
        hooks.append(ProgressHook("fit", total=steps))
    if callback is not None:
        hooks.append(CallbackHook(callback))
    losses = train(lambda: svi.step(*args, **kwargs), steps, hooks=hooks, name="fit")
    result = FitResult(
        model,
        guide,
        losses,
        discrete_policy=_policy_of(model, guide, args, kwargs),
        elbo=elbo,
        max_plate_nesting=nesting,
        args=args,
        kwargs=kwargs,
    )
    result.score_function_sites = score_sites
    return result


def _subspace_schedulers(guide, optim, steps: int) -> list:
    """A default :class:`~pyrostruct.infer.autoguide.SubspaceScheduler` for each
    :class:`~pyrostruct.infer.autoguide.AutoSparseSubspace` that is ``guide`` or one of its parts.
    """
    from pyrostruct.infer.autoguide import AutoSparseSubspace, SubspaceScheduler

    parts = list(guide) if isinstance(guide, AutoGuideList) else [guide]
    return [
        SubspaceScheduler(part, optim, num_steps=steps)
        for part in parts
        if isinstance(part, AutoSparseSubspace)
    ]


def _policy_of(model, guide, args, kwargs) -> dict[str, str]:
    """The discrete policy a fit used: the guide's record, else the model's marks."""
    policy = getattr(guide, "discrete_policy", None)
    if isinstance(policy, dict):
        return dict(policy)
    trace = _trace(model, *args, **kwargs)
    out = {}
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"]:
            continue
        if _is_marked(site):
            out[name] = ENUMERATE
        elif _is_latent_discrete(site) or _is_relaxed(site):
            out[name] = RELAX
    return out


def _is_relaxed(site) -> bool:
    from pyrostruct.distributions.relaxation import RELAXED_TYPES
    from pyrostruct.distributions.util import base_distribution

    return isinstance(base_distribution(site["fn"]), RELAXED_TYPES)


def _schedules(temperature, guide) -> list[TemperatureSchedule]:
    """Distinct temperature schedules held by ``temperature``, the guide and its parts."""
    found: dict[int, TemperatureSchedule] = {}
    candidates = [temperature, getattr(guide, "temperature", None)]
    if hasattr(guide, "__iter__"):
        candidates += [getattr(part, "temperature", None) for part in guide]
    for t in candidates:
        if isinstance(t, TemperatureSchedule):
            found[id(t)] = t
    return list(found.values())
