"""Enumerate or relax: one policy for the discrete latent sites of a user's model.

Pyro sums discrete latents out exactly with ``TraceEnum_ELBO`` when their sites
are marked for enumeration (``@config_enumerate`` or
``infer={"enumerate": "parallel"}``); pyrostruct can instead relax them
(Gumbel-softmax, :func:`pyrostruct.relax`) and guide them with
:class:`~pyrostruct.infer.autoguide.AutoGumbelSoftmax`. This module decides,
per site, which of the two a model gets, and applies the decision:

- :func:`enumerate_policy` -- ``{site: "enumerate" | "relax"}`` for every latent
  discrete site, from one trace of the model (two for ``discrete="auto"``);
- :func:`apply_policy` -- the model with exactly those sites marked for parallel
  enumeration and the others relaxed;
- :func:`enumerated_sites` -- the sites a model marks for enumeration;
- :func:`infer_max_plate_nesting` -- the ``max_plate_nesting`` that
  ``TraceEnum_ELBO`` / ``infer_discrete`` need, from a trace.

Their traces are hidden from outer handlers and leave the random state as they
found it, so calling them does not change what a seeded fit does next.

The policies (``discrete=``):

``"auto"``
    Sites the model marks for enumeration are enumerated (the mark is the
    user's word). Unmarked discrete sites are enumerated when that is exact and
    affordable, and relaxed otherwise. *Exact*: the site's distribution has a
    finite enumerable support (``has_enumerate_support``: ``Bernoulli``,
    ``Categorical``, ``OneHotCategorical`` and their ``.expand()`` / ``.mask()``
    forms, in or out of plates; not ``.to_event()`` forms, whose joint support
    grows as :math:`K^n`) of at most ``max_support`` values. *Affordable*: with
    all of them enumerated in parallel, the log-density tensors of the model's
    sample sites hold at most ``max_enum_size`` numbers in total,

    .. math::

        \\sum_{\\text{sites } s} \\prod_{d} \\mathrm{shape}(\\log p_s)_d
        \\le \\texttt{max\\_enum\\_size} \\;(= 2^{22} \\text{ by default}),

    measured on one trace of the model under ``poutine.enum``; that trace stops
    early (and the sites are relaxed) as soon as the enumeration dimensions in use
    at a site, times the sizes of its plates, exceed the same budget, so that no
    model is ever run at a size that would not fit. An enumerated
    site adds a dimension of size :math:`K` to every factor downstream of it,
    so :math:`n` coupled global Bernoulli sites cost :math:`2^n` times the
    data: the sum grows exactly when enumeration stops being cheap. (It is a
    lower bound on the work of ``TraceEnum_ELBO``'s contraction, which is
    linear in it for chains and trees, e.g. HMMs under ``pyro.markov``.) The
    affordable candidates are enumerated together or not at all; a model that
    fails when traced under enumeration (Python control flow on a value, say)
    has its unmarked sites relaxed.
``"enumerate"``
    Every latent discrete site is enumerated, marked or not; a site that cannot
    be (no finite enumerable support) raises :class:`~pyrostruct.errors.InputError`.
``"relax"``
    Every latent discrete site is relaxed, marked or not: the explicit choice
    overrides the model's marks, so a model written for Pyro's enumeration can be
    compared with its relaxation as written.
a dict ``{site: "enumerate" | "relax"}``
    Those sites as given, the others by ``"auto"``.

References: Obermeyer et al., "Tensor Variable Elimination for Plated Factor
Graphs", ICML 2019 (enumeration in Pyro); Jang, Gu, Poole, "Categorical
Reparameterization with Gumbel-Softmax", ICLR 2017, and Maddison, Mnih, Teh,
"The Concrete Distribution", ICLR 2017 (relaxation).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pyro.poutine as poutine
import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from pyrostruct._pyro_compat import enumerate_dim, get_rng_state, set_rng_state
from pyrostruct.distributions.relaxation import RELAXABLE, _is_discrete
from pyrostruct.distributions.util import base_distribution, is_structural
from pyrostruct.errors import InputError

if TYPE_CHECKING:
    from pyro.poutine.runtime import Message

__all__ = [
    "DISCRETE_POLICIES",
    "ENUMERATE",
    "RELAX",
    "PolicyModel",
    "apply_policy",
    "discrete_sites",
    "enumerate_policy",
    "enumerated_sites",
    "infer_max_plate_nesting",
    "support_size",
]

ENUMERATE, RELAX, AUTO = "enumerate", "relax", "auto"
DISCRETE_POLICIES = (AUTO, ENUMERATE, RELAX)
MAX_ENUM_SIZE = 2**22
MAX_SUPPORT = 256


def _trace(model, *args, **kwargs):
    """One trace of ``model``, hidden from outer handlers and leaving the RNG state as it was.

    So the helpers of this module can run anywhere (inside a guide's set-up, under
    an ELBO) without recording sites there or shifting the user's random stream.
    """
    state = get_rng_state()
    try:
        with poutine.block():
            return poutine.trace(model).get_trace(*args, **kwargs)
    finally:
        set_rng_state(state)


def _is_latent_sample(site) -> bool:
    return (
        site["type"] == "sample"
        and not site["is_observed"]
        and not site_is_subsample(site)
        and not (site["infer"] or {}).get("is_auxiliary")
    )


def _is_latent_discrete(site) -> bool:
    if not _is_latent_sample(site):
        return False
    fn = site["fn"]
    return _is_discrete(fn) and not is_structural(fn)


def _is_marked(site) -> bool:
    return bool((site["infer"] or {}).get("enumerate"))


def discrete_sites(model, *args, **kwargs) -> list[str]:
    """Names of the latent discrete sample sites of ``model(*args, **kwargs)``, in trace order.

    Latent: not observed, not a subsample site, not auxiliary. Discrete: the
    support is discrete (``support.is_discrete``). pyrostruct's DAG and
    permutation sites are left out: they have gradient estimators of their own
    and are neither enumerated nor relaxed.
    """
    trace = _trace(model, *args, **kwargs)
    return [name for name, site in trace.nodes.items() if _is_latent_discrete(site)]


def enumerated_sites(model, *args, **kwargs) -> list[str]:
    """Latent sample sites that ``model(*args, **kwargs)`` marks for enumeration, from one trace.

    A site is marked when its ``infer["enumerate"]`` is set (``"parallel"`` or
    ``"sequential"``), by the model itself (``@config_enumerate``,
    ``infer={"enumerate": "parallel"}``) or by :func:`apply_policy`; pass
    ``apply_policy(model, policy)`` to get the sites a policy enumerates. These
    are the sites ``TraceEnum_ELBO`` sums out and a guide must not sample.
    """
    trace = _trace(model, *args, **kwargs)
    return [
        name for name, site in trace.nodes.items() if _is_latent_sample(site) and _is_marked(site)
    ]


def infer_max_plate_nesting(model, *args, **kwargs) -> int:
    """The ``max_plate_nesting`` of ``model(*args, **kwargs)``, from one trace.

    The number of batch dimensions, counted from the right, that the model's
    sample sites use: the deepest vectorized plate (``-frame.dim``) and the
    batch rank of every site's distribution, whichever is larger. Enumerated
    values live to the left of these dimensions, so this is the value
    ``TraceEnum_ELBO(max_plate_nesting=...)`` and
    ``infer_discrete(first_available_dim=-1 - max_plate_nesting)`` want (Pyro's
    own guess looks at plates only, and a site with an unplated batch dimension
    then collides with the enumeration dimensions).

    Example: the GMM of Pyro's tutorial (one ``data`` plate) gives 1;
    ``model_1`` of Pyro's ``examples/hmm.py`` (``sequences`` at ``dim=-2``,
    ``tones`` at ``dim=-1``) gives 2.
    """
    trace = _trace(model, *args, **kwargs)
    nesting = 0
    for site in trace.nodes.values():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        for frame in site["cond_indep_stack"]:
            if frame.vectorized and frame.dim is not None:
                nesting = max(nesting, -frame.dim)
        batch_shape = getattr(site["fn"], "batch_shape", ())
        nesting = max(nesting, len(batch_shape))
    return nesting


def support_size(fn) -> int | None:
    """Number of values of ``fn``'s support when it can be enumerated in parallel, else None."""
    if not getattr(fn, "has_enumerate_support", False):
        return None
    try:
        return int(base_distribution(fn).enumerate_support(expand=False).shape[0])
    except (NotImplementedError, RuntimeError, ValueError, TypeError):
        return None


class _OverBudget(Exception):
    pass


class _EnumBudgetMessenger(Messenger):
    """Stop a trace under ``poutine.enum`` before the model builds a tensor over ``budget``.

    Sits outside ``poutine.enum``; at every sample site it bounds the largest
    tensor the model can build from the enumerated values alive so far: the
    product of the sizes of the enumeration dimensions in use (a dimension
    reused under ``pyro.markov`` counts once) times the sizes of the site's plates.
    """

    def __init__(self, budget: int) -> None:
        super().__init__()
        self.budget = budget
        self.dims: dict[int, int] = {}

    def _postprocess_message(self, msg: Message) -> None:
        if msg["type"] != "sample":
            return
        dim = enumerate_dim(msg)
        if dim is not None:
            self.dims[dim] = support_size(msg["fn"]) or 1
        bound = 1
        for size in self.dims.values():
            bound *= size
        for frame in msg["cond_indep_stack"]:
            if frame.vectorized:
                bound *= frame.size
        if bound > self.budget:
            raise _OverBudget(msg["name"])


def _enumerated_size(model, policy, max_plate_nesting, budget, args, kwargs) -> int:
    """Total numel of the sites' log-density tensors with ``policy`` applied and enumerated."""
    marked = _PolicyMessenger(policy)(model)
    enumerated = poutine.enum(marked, first_available_dim=-1 - max_plate_nesting)
    trace = _trace(_EnumBudgetMessenger(budget)(enumerated), *args, **kwargs)
    total = 0
    for site in trace.nodes.values():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        fn, value = site["fn"], site["value"]
        event_dim = getattr(fn, "event_dim", 0)
        value_batch = value.shape[: value.dim() - event_dim] if torch.is_tensor(value) else ()
        shape = torch.broadcast_shapes(tuple(getattr(fn, "batch_shape", ())), tuple(value_batch))
        total += int(torch.Size(shape).numel())
    return total


def _check_policy(discrete) -> None:
    if isinstance(discrete, str):
        if discrete not in DISCRETE_POLICIES:
            raise InputError(
                f"discrete must be one of {DISCRETE_POLICIES} or a dict "
                f"{{site: 'enumerate' | 'relax'}}, got {discrete!r}."
            )
        return
    if isinstance(discrete, Mapping):
        bad = {k: v for k, v in discrete.items() if v not in (ENUMERATE, RELAX)}
        if bad:
            raise InputError(
                f"discrete: every value of the dict must be 'enumerate' or 'relax', got {bad}."
            )
        return
    raise InputError(
        f"discrete must be 'auto', 'enumerate', 'relax' or a dict {{site: 'enumerate' | "
        f"'relax'}}, got {type(discrete).__name__} {discrete!r}."
    )


def enumerate_policy(
    model,
    *args,
    discrete: str | Mapping[str, str] = "auto",
    max_enum_size: int = MAX_ENUM_SIZE,
    max_support: int = MAX_SUPPORT,
    **kwargs,
) -> dict[str, str]:
    """Decide, for every latent discrete site of ``model``, whether to enumerate or relax it.

    The rules of each policy (``"auto"``, ``"enumerate"``, ``"relax"``, or a dict
    of per-site choices with ``"auto"`` for the rest) are in this module's
    docstring: ``"auto"`` keeps the model's enumeration marks and enumerates an
    unmarked site when its support is finite and enumerable (at most
    ``max_support`` values) and all such sites enumerated together keep the
    model's log-density tensors under ``max_enum_size`` numbers in total; it
    relaxes the others.

    :param model: a Pyro model; ``args``/``kwargs`` are its arguments (data).
    :param discrete: the policy.
    :param int max_enum_size: budget of ``"auto"`` (total numel of the log-density tensors).
    :param int max_support: largest support size ``"auto"`` enumerates.
    :returns: ``{site name: "enumerate" | "relax"}`` in trace order (empty when
        the model has no latent discrete site).
    :raises InputError: a bad ``discrete``; under ``"enumerate"`` (or a dict
        asking for it), a site whose support cannot be enumerated; a dict naming
        a site that is not a latent discrete site.

    Example::

        >>> import torch, pyro, pyro.distributions as dist
        >>> def model(data):
        ...     with pyro.plate("data", len(data)):
        ...         z = pyro.sample("z", dist.Bernoulli(0.3))
        ...         pyro.sample("x", dist.Normal(z, 1.0), obs=data)
        >>> enumerate_policy(model, torch.zeros(5))
        {'z': 'enumerate'}
        >>> enumerate_policy(model, torch.zeros(5), discrete="relax")
        {'z': 'relax'}
    """
    _check_policy(discrete)
    for name, value in (("max_enum_size", max_enum_size), ("max_support", max_support)):
        if not (isinstance(value, int) and value >= 1):
            raise InputError(f"{name} must be a positive integer, got {value!r}.")
    trace = _trace(model, *args, **kwargs)
    sites = {name: s for name, s in trace.nodes.items() if _is_latent_discrete(s)}
    given = dict(discrete) if isinstance(discrete, Mapping) else {}
    unknown = sorted(set(given) - set(sites))
    if unknown:
        raise InputError(
            f"discrete names sites that are not latent discrete sites of the model: {unknown}; "
            f"its latent discrete sites are {list(sites)}."
        )
    mode = discrete if isinstance(discrete, str) else AUTO
    policy: dict[str, str] = {}
    candidates: list[str] = []
    for name, site in sites.items():
        choice = given.get(name)
        if choice is None and mode != AUTO:
            choice = mode
        if choice is None and _is_marked(site):
            choice = ENUMERATE
        if choice == ENUMERATE and not _is_marked(site) and support_size(site["fn"]) is None:
            base = base_distribution(site["fn"])
            event = site["fn"].event_dim > 0
            what = f"{type(base).__name__}{'.to_event()' if event else ''}"
            if not isinstance(base, RELAXABLE):
                raise InputError(
                    f"discrete site {name!r} ({what}) can be neither enumerated (its support "
                    "is not finite and enumerable in parallel) nor relaxed (Gumbel-softmax "
                    "relaxes Bernoulli, Categorical and OneHotCategorical): give it a guide of "
                    f"its own, auto_guide(model, overrides={{{name!r}: GuideClass}}), or sum it "
                    "out in the model"
                )
            raise InputError(
                f"discrete site {name!r} ({what}) cannot be enumerated: its support is not "
                f"finite and enumerable in parallel. Relax it (discrete='auto' or "
                f"discrete={{{name!r}: 'relax'}})"
                + (", or write it without .to_event()." if event else ".")
            )
        if choice is None:
            size = support_size(site["fn"])
            if size is not None and size <= max_support:
                candidates.append(name)
                choice = ENUMERATE  # provisional, checked against the budget below
            else:
                choice = RELAX
        policy[name] = choice
    if candidates:
        nesting = infer_max_plate_nesting(model, *args, **kwargs)
        try:
            size = _enumerated_size(model, policy, nesting, max_enum_size, args, kwargs)
        except Exception:  # over budget, or the model does not run under enumeration
            size = None
        if size is None or size > max_enum_size:
            for name in candidates:
                policy[name] = RELAX
    return policy


class _PolicyMessenger(Messenger):
    """Mark ``policy``'s "enumerate" sites for parallel enumeration; unmark its "relax" sites."""

    def __init__(self, policy: Mapping[str, str], exclude=frozenset()) -> None:
        super().__init__()
        self.policy = dict(policy)
        self.exclude = frozenset(exclude)

    def _process_message(self, msg: Message) -> None:
        if msg["type"] != "sample" or msg["is_observed"] or msg["name"] in self.exclude:
            return
        choice = self.policy.get(msg["name"])
        infer = dict(msg["infer"] or {})
        if choice == ENUMERATE:
            if not infer.get("enumerate"):
                infer["enumerate"] = "parallel"
                msg["infer"] = infer
        elif choice == RELAX and infer.get("enumerate"):
            infer.pop("enumerate")
            msg["infer"] = infer


class PolicyModel:
    """A model with a discrete policy applied: ``relax(mark(model))``.

    Made by :func:`apply_policy`. ``policy`` may be a dict (fixed) or one of
    ``"auto"``, ``"enumerate"``, ``"relax"``: then it is resolved by
    :func:`enumerate_policy` on the first call (or :meth:`resolve`), with that
    call's arguments, and :attr:`policy` holds the dict from then on.
    """

    def __init__(
        self, model, policy, *, temperature: Any = 0.5, hard: bool = False, exclude=()
    ) -> None:
        _check_policy(policy)
        if not callable(model):
            raise InputError(f"model must be callable, got {type(model).__name__}.")
        self.fn = model
        self.temperature = temperature
        self.hard = hard
        self.exclude = frozenset([exclude] if isinstance(exclude, str) else exclude)
        self.discrete = policy
        self.policy: dict[str, str] | None = dict(policy) if isinstance(policy, Mapping) else None
        self._relaxed: Callable | None = None

    def resolve(self, *args, **kwargs) -> dict[str, str]:
        """Resolve the policy on ``model(*args, **kwargs)`` (once) and return it."""
        if self.policy is None:
            discrete = self.discrete
            if isinstance(discrete, Mapping):
                discrete = {k: v for k, v in discrete.items() if k not in self.exclude}
            policy = enumerate_policy(self.fn, *args, discrete=discrete, **kwargs)
            self.policy = {k: v for k, v in policy.items() if k not in self.exclude}
        return self.policy

    def _model(self, *args, **kwargs):
        if self._relaxed is None:
            from pyrostruct.handlers import relax

            policy = self.resolve(*args, **kwargs)
            marked = _PolicyMessenger(policy, self.exclude)(self.fn)
            self._relaxed = relax(
                marked, temperature=self.temperature, hard=self.hard, exclude=self.exclude
            )
        return self._relaxed

    def __call__(self, *args, **kwargs):
        return self._model(*args, **kwargs)(*args, **kwargs)

    def __repr__(self) -> str:
        name = getattr(self.fn, "__name__", self.fn)
        return f"PolicyModel({name!r}, policy={self.policy or self.discrete!r})"


def apply_policy(
    model, policy, *, temperature: Any = 0.5, hard: bool = False, exclude=()
) -> PolicyModel:
    """The model with ``policy`` applied: "enumerate" sites marked, "relax" sites relaxed.

    A site the policy enumerates gets ``infer={"enumerate": "parallel"}`` (a mark
    the model already has, e.g. ``"sequential"``, is kept); a site it relaxes
    loses any enumeration mark and is relaxed by :func:`pyrostruct.relax` at
    ``temperature`` (``hard``: straight-through). Other sites are unchanged, except
    that a latent discrete site the policy does not name (a site that did not
    exist when it was made) and the model does not mark is relaxed, as
    :func:`pyrostruct.relax` would. Equivalent to
    ``relax(mark(model), temperature, hard)``.

    :param model: a Pyro model.
    :param policy: ``{site: "enumerate" | "relax"}`` from :func:`enumerate_policy`,
        or a policy name (``"auto"``, ``"enumerate"``, ``"relax"``) resolved on
        the first call with that call's arguments.
    :param temperature: relaxation temperature (float, tensor or
        :class:`~pyrostruct.infer.TemperatureSchedule`), as in :func:`pyrostruct.relax`.
    :param bool hard: straight-through relaxed samples.
    :param exclude: names of sites left exactly as the model has them (neither
        marked, unmarked nor relaxed), e.g. sites with a guide of their own.
    :returns: a :class:`PolicyModel` (a callable Pyro model).
    """
    return PolicyModel(model, policy, temperature=temperature, hard=hard, exclude=exclude)
