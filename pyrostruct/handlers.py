"""Effect handlers (Pyro messengers) of pyrostruct.

:func:`relax` turns the latent discrete sample sites of an ordinary Pyro model
into Gumbel-softmax (Concrete) relaxations, so that ``Trace_ELBO`` gets
reparameterized, low-variance gradients for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pyro.poutine.messenger import Messenger

from pyrostruct.distributions.relaxed import (
    RELAXED_TYPES,
    _is_discrete,
    relax_distribution,
)
from pyrostruct.distributions.util import is_structural
from pyrostruct.infer.schedules import current_temperature

if TYPE_CHECKING:
    from pyro.poutine.runtime import Message

__all__ = ["RelaxMessenger", "relax"]


class RelaxMessenger(Messenger):
    """Replace latent Bernoulli / Categorical / OneHotCategorical sites by Concrete relaxations.

    A latent discrete site ``z ~ Bernoulli(p)`` becomes ``z ~ ConcreteBernoulli(tau, p)``
    (Maddison et al., Jang et al., ICLR 2017), a reparameterizable distribution, so
    ``Trace_ELBO`` differentiates through the sample instead of using the
    high-variance score-function estimator. See :func:`relax` for the rules.
    """

    def __init__(
        self,
        temperature: Any = 0.5,
        hard: bool = False,
        exclude: Iterable[str] = (),
    ) -> None:
        current_temperature(temperature, name="relax: temperature")  # validate early
        if not isinstance(hard, bool):
            raise ValueError(f"relax: hard must be True or False, got {hard!r}.")
        if isinstance(exclude, str):
            exclude = [exclude]
        super().__init__()
        self.temperature = temperature
        self.hard = hard
        self.exclude = frozenset(exclude)

    def _process_message(self, msg: Message) -> None:
        if msg["type"] != "sample" or msg["is_observed"]:
            return
        infer = msg["infer"] or {}
        if msg["name"] in self.exclude or infer.get("relax", True) is False:
            return
        if infer.get("enumerate") or infer.get("is_auxiliary"):
            return
        fn = msg["fn"]
        # pyrostruct's DAG and permutation distributions are discrete but carry
        # their own gradient estimators: leave them.
        if isinstance(fn, RELAXED_TYPES) or is_structural(fn) or not _is_discrete(fn):
            return
        tau = current_temperature(self.temperature, name="relax: temperature")
        hard = infer.get("relax_hard", self.hard)
        msg["fn"] = relax_distribution(fn, tau, hard, site=msg["name"])


def relax(
    fn: Callable | None = None,
    temperature: Any = 0.5,
    hard: bool = False,
    exclude: Iterable[str] = (),
):
    r"""Relax the latent discrete sites of a Pyro model (Gumbel-softmax / Concrete).

    Each *latent* sample site whose distribution is ``Bernoulli``,
    ``OneHotCategorical`` or ``Categorical`` (possibly inside ``.to_event()``,
    ``.mask()`` or ``.expand()``) is replaced by its Concrete relaxation at
    temperature :math:`\tau`:

    .. math::

        z = \mathrm{softmax}((\ell + g)/\tau), \quad g_k \sim \mathrm{Gumbel}(0, 1),

    (``ConcreteBernoulli``, ``ConcreteOneHotCategorical``), which has a
    reparameterized sample and a density, so ``Trace_ELBO`` gets pathwise gradients.

    Unchanged: observed sites, sites named in ``exclude`` or marked
    ``infer={"relax": False}``, sites marked for enumeration
    (``infer={"enumerate": ...}``), continuous sites, and pyrostruct's DAG and
    permutation distributions (discrete, but with gradient estimators of their own).

    Shapes: a relaxed site returns a value of the shape the model expects.
    ``Bernoulli`` gives a value in ``(0, 1)`` (``hard=True``: exactly 0 or 1);
    ``OneHotCategorical`` a point of the simplex (``hard=True``: exactly one-hot).
    ``Categorical`` sites give an **index** (a float tensor holding an exact
    integer ``0..K-1``, whatever ``hard`` says): the straight-through index
    :math:`\sum_k k\,\hat y_k` of a hard relaxed one-hot :math:`\hat y`, whose
    gradient flows through the relaxed one-hot as if the categories were the
    numbers ``0..K-1`` (see :class:`~pyrostruct.distributions.ConcreteCategorical`).
    A model that indexes a table with the value (``locs[z]``) gets no gradient
    through the index; write it with ``OneHotCategorical`` and ``z @ locs``.

    Order of handlers: put ``relax`` *outside* ``poutine.condition``
    (``relax(poutine.condition(model, data))``) so that conditioned sites are seen
    as observed. A per-site ``infer={"relax_hard": True}`` overrides ``hard``.

    :param fn: a model (or guide); omit to use ``relax`` as a context manager.
    :param temperature: a positive float, tensor, or a
        :class:`~pyrostruct.infer.TemperatureSchedule` (read at every site, so
        stepping the schedule anneals the model).
    :param bool hard: straight-through samples (exact 0/1 or one-hot in the forward pass).
    :param exclude: names of sites to leave as they are.
    :raises NoRelaxationError: (a ``NotImplementedError`` and a ``ValueError``) when a
        latent site is discrete but has no relaxation (e.g. ``Poisson``); the
        message names the site.

    Example::

        >>> import pyro, pyro.distributions as dist
        >>> def model():
        ...     return pyro.sample("z", dist.Bernoulli(0.3))
        >>> with relax(temperature=0.5):
        ...     z = model()
        >>> bool(0 < z < 1)
        True

    References: C. J. Maddison, A. Mnih, Y. W. Teh, "The Concrete Distribution",
    ICLR 2017; E. Jang, S. Gu, B. Poole, "Categorical Reparameterization with
    Gumbel-Softmax", ICLR 2017.
    """
    msngr = RelaxMessenger(temperature=temperature, hard=hard, exclude=exclude)
    return msngr(fn) if fn is not None else msngr
