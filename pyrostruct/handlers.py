"""Effect handlers (Pyro messengers) of pyrostruct.

:func:`relax` turns the latent discrete sample sites of an ordinary Pyro model
into Gumbel-softmax (Concrete) relaxations, so that ``Trace_ELBO`` gets
reparameterized, low-variance gradients for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pyro.poutine.messenger import Messenger

from pyrostruct.distributions._relaxed_index import RelaxedIndex
from pyrostruct.distributions.estimators import resolve_estimator
from pyrostruct.distributions.relaxation import RELAXED_TYPES, _is_discrete, relax_distribution
from pyrostruct.distributions.temperature import current_temperature
from pyrostruct.distributions.util import is_structural

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
        estimator: str | None = None,
        num_rao_samples: int | None = None,
    ) -> None:
        current_temperature(temperature, name="relax: temperature")  # validate early
        self.estimator, self.num_rao_samples = resolve_estimator(
            estimator, hard, num_rao_samples, "relax"
        )
        if isinstance(exclude, str):
            exclude = [exclude]
        super().__init__()
        self.temperature = temperature
        self.hard = self.estimator != "gumbel-softmax"
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
        estimator = infer.get("relax_estimator")
        if estimator is None:
            hard = infer.get("relax_hard")
            if hard is None or hard == self.hard:
                estimator = self.estimator
            else:
                estimator = "straight-through" if hard else "gumbel-softmax"
        msg["fn"] = relax_distribution(
            fn,
            tau,
            site=msg["name"],
            estimator=estimator,
            num_rao_samples=self.num_rao_samples,
        )

    def _postprocess_message(self, msg: Message) -> None:
        # Name the site on its relaxed index (sampled here or replayed from a guide), so
        # that a refused conversion (int(z), z.item()) and the no-gradient warning can
        # say which site it is.
        value = msg.get("value")
        if msg["type"] == "sample" and isinstance(value, RelaxedIndex):
            value.__dict__["_probe"].site = msg["name"]


def relax(
    fn: Callable | None = None,
    temperature: Any = 0.5,
    hard: bool = False,
    exclude: Iterable[str] = (),
    estimator: str | None = None,
    num_rao_samples: int | None = None,
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
    ``Bernoulli`` gives a value in ``(0, 1)`` (a hard estimator: exactly 0 or 1);
    ``OneHotCategorical`` a point of the simplex (a hard estimator: exactly one-hot).

    Gradient estimators (``estimator=``, see
    :mod:`pyrostruct.distributions.estimators`): ``"gumbel-softmax"`` (soft values,
    the default), ``"straight-through"`` (``hard=True``: exact values, the relaxed
    sample's gradient), ``"reinmax"`` (exact values, a second-order accurate
    gradient: unbiased for quadratic losses at :math:`\tau = 1`; use
    :math:`\tau \ge 1`), ``"gumbel-rao"`` (exact values, straight-through's
    gradient averaged over ``num_rao_samples`` draws of the noise given the value:
    the same mean, a lower variance).

    ``Categorical`` sites give an exact **index** (``torch.long``, whatever
    ``hard`` says), a :class:`~pyrostruct.distributions._relaxed_index.RelaxedIndex`
    that carries the straight-through one-hot :math:`\hat y` it came from
    (forward exactly one-hot, backward the Gumbel-softmax sample), so the
    model's own code keeps a gradient path (straight-through: Bengio et al.
    2013; Jang et al. 2017):

    - tables indexed with it (``locs[z]``, ``locs[..., z]``,
      ``Vindex(probs)[..., z, :]``, ``probs_x[x_prev]``, several relaxed indices in
      one expression, ``torch.gather``, ``index_select``, ``F.embedding``) give the
      exact lookup ``locs[z]`` in the forward pass and the gradient of
      :math:`\sum_k \hat y_k\,\mathrm{locs}[k]` in the backward pass;
    - ``F.one_hot(z, K)`` is :math:`\hat y` (float); ``z.float()`` and floating
      arithmetic (``z * 0.5``) use :math:`\sum_k k\,\hat y_k` (the categories as
      numbers ``0..K-1``); ``z.long()``, ``z.unsqueeze(-1)``, ``z.squeeze(-1)``,
      ``reshape`` etc. keep it relaxed;
    - integer and boolean results (``z == k``, ``z + 1``, ``z.sum()``) have no
      gradient (as for any integer tensor);
    - ``int(z)``, ``float(z)``, ``bool(z)``, ``z.item()``, ``z.tolist()``,
      ``z.numpy()`` and Python indexing (``my_list[z]``) would silently cut the
      gradient and raise :class:`~pyrostruct.distributions._relaxed_index.RelaxedValueError`
      naming the site (they work under ``torch.no_grad()``, e.g. in ``Predictive``);
    - if, in a backward pass, a relaxed site's value reached the loss only through
      its own log-density (the model used it in non-differentiable ways only), a
      :class:`~pyrostruct.distributions._relaxed_index.RelaxationWarning` names the site.

    A relaxed ``Categorical`` site is scored by its *categorical* log-probability
    (with a straight-through path), so with such sites ``Trace_ELBO``'s loss is an
    unbiased estimate of the discrete model's ELBO; ``Bernoulli`` and
    ``OneHotCategorical`` sites are scored by their Concrete densities.

    Order of handlers: put ``relax`` *outside* ``poutine.condition``
    (``relax(poutine.condition(model, data))``) so that conditioned sites are seen
    as observed. A per-site ``infer={"relax_estimator": "reinmax"}`` overrides
    ``estimator``, and ``infer={"relax_hard": True}`` (``"straight-through"``) or
    ``False`` (``"gumbel-softmax"``) overrides ``hard``.

    :param fn: a model (or guide); omit to use ``relax`` as a context manager.
    :param temperature: a positive float, tensor, or a
        :class:`~pyrostruct.infer.TemperatureSchedule` (read at every site, so
        stepping the schedule anneals the model).
    :param bool hard: straight-through samples (exact 0/1 or one-hot in the forward pass)
        for Bernoulli and OneHotCategorical sites; Categorical sites are straight-through
        either way.
    :param exclude: names of sites to leave as they are.
    :param str estimator: ``"gumbel-softmax"``, ``"straight-through"``, ``"reinmax"`` or
        ``"gumbel-rao"`` (default: from ``hard``); Categorical sites get
        ``"straight-through"`` for ``"gumbel-softmax"``.
    :param int num_rao_samples: noise draws per sample for ``"gumbel-rao"`` (default 5).
    :raises NoRelaxationError: (a ``NotImplementedError`` and a ``ValueError``) when a
        latent site is discrete but has no relaxation (e.g. ``Poisson``); the
        message names the site.

    Example::

        >>> import pyro, pyro.distributions as dist
        >>> def model():
        ...     return pyro.sample("z", dist.Bernoulli(0.3))
        >>> pyro.set_rng_seed(0)
        >>> with relax(temperature=0.5):
        ...     z = model()
        >>> bool(0 < z < 1)
        True

    References: C. J. Maddison, A. Mnih, Y. W. Teh, "The Concrete Distribution",
    ICLR 2017; E. Jang, S. Gu, B. Poole, "Categorical Reparameterization with
    Gumbel-Softmax", ICLR 2017; Y. Bengio, N. Leonard, A. Courville, "Estimating or
    Propagating Gradients Through Stochastic Neurons for Conditional Computation",
    arXiv:1308.3432, 2013 (straight-through).
    """
    msngr = RelaxMessenger(
        temperature=temperature,
        hard=hard,
        exclude=exclude,
        estimator=estimator,
        num_rao_samples=num_rao_samples,
    )
    return msngr(fn) if fn is not None else msngr
