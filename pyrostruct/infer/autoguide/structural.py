"""One call builds the guide of a mixed model: DAG, permutation, discrete and continuous sites.

:func:`auto_guide` relaxes the model's discrete sites with
:func:`pyrostruct.relax` and returns an :class:`AutoStructural` guide, an
``AutoGuideList`` that, the first time it runs, inspects the model and assigns
each latent site to a part:

=====================================  ==========================================
site distribution                      part
=====================================  ==========================================
``OrderedDAG`` and its subclasses,     :class:`~pyrostruct.infer.autoguide.AutoDAG`
sites with ``infer={"edge_weights_of":
"G"}`` (weights used only on edges)
``PlackettLuce``                       :class:`~pyrostruct.infer.autoguide.AutoPermutation`
``Bernoulli``, ``Categorical``,        :class:`~pyrostruct.infer.autoguide.AutoGumbelSoftmax`
``OneHotCategorical`` (relaxed)
anything with a bijection to R^n       ``continuous_guide`` (default ``AutoNormal``)
=====================================  ==========================================

so the variational family is the mean-field product
:math:`q = q_{\\mathrm{DAG}}\\, q_{\\mathrm{perm}}\\, q_{\\mathrm{Concrete}}\\,
q_{\\mathcal N}` (edge weights declared by the model follow their DAG
instead: :mod:`~pyrostruct.infer.autoguide.edge_weights`).
``overrides={"site": GuideClass}`` gives a site its own guide.

Sites marked for enumeration (``@config_enumerate``,
``infer={"enumerate": "parallel"}``) are hidden from the guide and summed out
exactly by ``TraceEnum_ELBO``, as in Pyro's
``AutoDelta(poutine.block(model, expose=[...]))`` idiom; ``discrete=`` chooses,
per site, between enumeration and relaxation (:mod:`pyrostruct.infer.enum`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pyro.poutine as poutine
from pyro.infer.autoguide import AutoGuideList, AutoNormal
from torch.distributions import biject_to

from pyrostruct._pyro_compat import helpful_support_errors, prototype_hide_fn
from pyrostruct.handlers import relax
from pyrostruct.infer.autoguide.dag import AutoDAG, is_dag_site
from pyrostruct.infer.autoguide.edge_weights import is_edge_weight_site
from pyrostruct.infer.autoguide.gumbel import AutoGumbelSoftmax, is_discrete_site
from pyrostruct.infer.autoguide.permutation import AutoPermutation, is_permutation_site
from pyrostruct.infer.enum import ENUMERATE, RELAX, PolicyModel, apply_policy

__all__ = ["AutoStructural", "auto_guide", "classify_site"]

DAG, PERMUTATION, DISCRETE, CONTINUOUS = "dag", "permutation", "discrete", "continuous"


def classify_site(site: dict[str, Any]) -> str:
    """Which part of :class:`AutoStructural` guides a latent site.

    Returns ``"dag"``, ``"permutation"``, ``"discrete"`` or ``"continuous"``;
    raises ``ValueError`` naming the site, and how to exclude it, when no part
    can guide it (for example a discrete site without a relaxation, or a
    constrained support without a registered bijection).
    """
    if is_dag_site(site) or is_edge_weight_site(site):
        return DAG
    if is_permutation_site(site):
        return PERMUTATION
    if is_discrete_site(site):
        return DISCRETE
    name = site["name"]
    try:
        with helpful_support_errors(site):
            biject_to(site["fn"].support)
    except (ValueError, NotImplementedError) as e:
        raise ValueError(
            f"auto_guide cannot guide site {name!r} ({type(site['fn']).__name__}): "
            f"{str(e).splitlines()[0]} Exclude it with poutine.block(model, hide=[{name!r}]), "
            f"give it a guide with overrides={{{name!r}: GuideClass}}, or register a "
            "bijection for its support with torch.distributions.biject_to.register."
        ) from None
    return CONTINUOUS


class AutoStructural(AutoGuideList):
    """The guide of a model with structural, discrete and continuous latents.

    Build it with :func:`auto_guide`, which also relaxes the model's discrete
    sites; train with ``SVI(guide.model, guide, optim, Trace_ELBO())``.

    After the first call, :attr:`site_parts` maps every guided site to its part
    (``"dag"``, ``"permutation"``, ``"discrete"``, ``"continuous"`` or
    ``"override"``), :meth:`part` returns the guide of a site,
    :attr:`enumerated_sites` lists the sites left to ``TraceEnum_ELBO`` (marked
    for enumeration: the guide does not sample them) and
    :attr:`discrete_policy` maps every latent discrete site to ``"enumerate"`` or
    ``"relax"``.

    :param callable model: a Pyro model (already relaxed when it has discrete
        sites).
    :param continuous_guide: guide class for the continuous sites (default
        ``AutoNormal``).
    :type continuous_guide: AutoGuide class
    :param overrides: optional per-site guides: each is called with
        ``poutine.block(model, expose=[name])`` and must return an autoguide for
        that site.
    :type overrides: dict site name -> callable
    :param dict dag_options: keyword arguments for ``AutoDAG``.
    :param dict permutation_options: keyword arguments for ``AutoPermutation``.
    :param dict discrete_options: keyword arguments for ``AutoGumbelSoftmax``.
    :param dict continuous_options: keyword arguments for ``continuous_guide``.
    :param callable create_plates: optional, as in Pyro's autoguides.
    """

    def __init__(
        self,
        model,
        *,
        continuous_guide: Callable = AutoNormal,
        overrides: Mapping[str, Callable] | None = None,
        dag_options: Mapping | None = None,
        permutation_options: Mapping | None = None,
        discrete_options: Mapping | None = None,
        continuous_options: Mapping | None = None,
        create_plates=None,
    ):
        overrides = dict(overrides or {})
        for name, factory in overrides.items():
            if not callable(factory):
                raise ValueError(
                    f"overrides[{name!r}] must be an autoguide class or a callable "
                    f"model -> guide, got {factory!r}"
                )
        self._overrides = overrides
        self._factories = {
            DAG: (AutoDAG, dict(dag_options or {})),
            PERMUTATION: (AutoPermutation, dict(permutation_options or {})),
            DISCRETE: (AutoGumbelSoftmax, dict(discrete_options or {})),
            CONTINUOUS: (continuous_guide, dict(continuous_options or {})),
        }
        self.site_parts: dict[str, str] = {}
        self.enumerated_sites: list[str] = []
        self.discrete_policy: dict[str, str] = {}
        self._part_index: dict[str, int] = {}
        super().__init__(model, create_plates=create_plates)

    def _prototype_hide_fn(self, msg) -> bool:
        # Sites marked for enumeration are summed out by TraceEnum_ELBO, not guided:
        # hidden from the prototype (so they may even sit in sequential plates).
        if (
            msg["type"] == "sample"
            and not msg["is_observed"]
            and (msg["infer"] or {}).get("enumerate")
        ):
            if msg["name"] not in self.enumerated_sites:
                self.enumerated_sites.append(msg["name"])
            return True
        return prototype_hide_fn(msg)

    def _setup_prototype(self, *args, **kwargs):
        self.enumerated_sites = []
        super()._setup_prototype(*args, **kwargs)
        latent = dict(self.prototype_trace.iter_stochastic_nodes())
        unknown = sorted(set(self._overrides) - set(latent))
        if unknown:
            raise ValueError(
                f"overrides name sites that are not latent sites of the model: {unknown}; "
                f"latent sites are {sorted(latent)}"
                + (
                    f" (sites marked for enumeration, {self.enumerated_sites}, are summed "
                    "out by TraceEnum_ELBO and take no guide)"
                    if self.enumerated_sites
                    else ""
                )
            )
        groups: dict[str, list[str]] = {DAG: [], PERMUTATION: [], DISCRETE: [], CONTINUOUS: []}
        for name, site in latent.items():
            if name not in self._overrides:
                groups[classify_site(site)].append(name)
        for kind, names in groups.items():
            if names:
                factory, options = self._factories[kind]
                part = factory(poutine.block(self.model, expose=names), **options)
                self._append_part(part, names, kind)
        for name, factory in self._overrides.items():
            part = factory(poutine.block(self.model, expose=[name]))
            self._append_part(part, [name], "override")
        self._record_policy()

    def _append_part(self, part, names, kind):
        self.append(part)
        for name in names:
            self.site_parts[name] = kind
            self._part_index[name] = len(self) - 1

    def _record_policy(self):
        policy = (
            getattr(self.model, "policy", None) if isinstance(self.model, PolicyModel) else None
        )
        if policy is not None:
            self.discrete_policy = dict(policy)
            return
        self.discrete_policy = {name: ENUMERATE for name in self.enumerated_sites}
        self.discrete_policy.update(
            {name: RELAX for name, kind in self.site_parts.items() if kind == DISCRETE}
        )

    def part(self, name: str):
        """The guide (a part of this list) that guides site ``name``."""
        if self.prototype_trace is None:
            raise RuntimeError("AutoStructural is not set up yet: call it (or train it) first.")
        if name not in self._part_index:
            raise ValueError(f"no latent site named {name!r}; sites are {sorted(self.site_parts)}")
        return self[self._part_index[name]]

    def edge_probs(self, name: str, num_samples: int = 1000):
        """Marginal edge probabilities of DAG site ``name`` (see :meth:`AutoDAG.edge_probs`)."""
        return self.part(name).edge_probs(name, num_samples=num_samples)

    def probs(self, name: str):
        """Posterior probabilities of discrete site ``name`` (:meth:`AutoGumbelSoftmax.probs`)."""
        return self.part(name).probs()[name]


def auto_guide(
    model,
    *,
    discrete: str | Mapping[str, str] | None = None,
    temperature: Any = 0.5,
    hard: bool = False,
    continuous_guide: Callable = AutoNormal,
    overrides: Mapping[str, Callable] | None = None,
    dag_options: Mapping | None = None,
    permutation_options: Mapping | None = None,
    continuous_options: Mapping | None = None,
) -> AutoStructural:
    """Build the whole guide of a model with DAG, permutation, discrete and continuous sites.

    Relaxes the model's latent ``Bernoulli`` / ``Categorical`` /
    ``OneHotCategorical`` sites with :func:`pyrostruct.relax` (sites in
    ``overrides`` excepted) and returns an :class:`AutoStructural` guide over the
    relaxed model. **Train on** ``guide.model``::

        guide = auto_guide(model)
        svi = SVI(guide.model, guide, Adam({"lr": 0.02}), Trace_ELBO())

    or in one line with :func:`pyrostruct.infer.fit`. The same ``temperature``
    (a float or a :class:`~pyrostruct.infer.TemperatureSchedule`) and ``hard``
    serve the relaxed model and the discrete guide.

    Sites marked for enumeration are hidden from the guide and summed out by
    ``TraceEnum_ELBO``; train a model with such sites with
    ``SVI(guide.model, guide, optim, TraceEnum_ELBO(max_plate_nesting=...))``
    (:func:`~pyrostruct.infer.enum.infer_max_plate_nesting` gives the value;
    :func:`~pyrostruct.infer.fit` does all of this itself). ``discrete`` decides
    which discrete sites are enumerated and which relaxed:

    - ``None`` (default): the model's marks decide: marked sites are enumerated,
      unmarked discrete sites relaxed (so with no marks, ``Trace_ELBO`` works);
    - ``"auto"``, ``"enumerate"``, ``"relax"`` or a dict ``{site: choice}``: the
      policies of :func:`~pyrostruct.infer.enum.enumerate_policy` (``"auto"``
      enumerates unmarked sites when exact and affordable), resolved with the
      arguments of the first call. :attr:`AutoStructural.discrete_policy` reports
      the choice per site after that call.

    :param model: a Pyro model.
    :param discrete: the discrete policy (see above).
    :param temperature: Gumbel-softmax temperature of the discrete sites.
    :param bool hard: straight-through discrete samples.
    :param continuous_guide: autoguide class for the continuous sites.
    :param overrides: ``{site name: autoguide class or callable(model) -> guide}``.
    :param dag_options: keyword arguments for :class:`AutoDAG` (e.g. ``temperature``).
    :param permutation_options: keyword arguments for :class:`AutoPermutation`.
    :param continuous_options: keyword arguments for ``continuous_guide``.
    :raises ValueError: when a site can be guided by no part (the message names it).
    """
    overrides = dict(overrides or {})
    if discrete is None:
        relaxed = relax(model, temperature=temperature, hard=hard, exclude=overrides)
    else:
        relaxed = apply_policy(
            model, discrete, temperature=temperature, hard=hard, exclude=overrides
        )
    return AutoStructural(
        relaxed,
        continuous_guide=continuous_guide,
        overrides=overrides,
        dag_options=dag_options,
        permutation_options=permutation_options,
        discrete_options={"temperature": temperature, "hard": hard},
        continuous_options=continuous_options,
    )
