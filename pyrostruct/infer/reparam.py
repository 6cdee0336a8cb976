"""A Pyro reparameterizer that relaxes one discrete site (Gumbel-softmax / Concrete).

:class:`RelaxReparam` is the per-site, :func:`pyro.poutine.reparam` spelling of
:func:`pyrostruct.relax`::

    model = poutine.reparam(model, config={"z": RelaxReparam(0.5, estimator="reinmax")})

It uses the same conversion (:func:`~pyrostruct.distributions.relax_distribution`),
so a site relaxed either way has the same distribution and the same values.
"""

from __future__ import annotations

from typing import Any

from pyro.infer.reparam.reparam import Reparam

from pyrostruct.distributions.estimators import resolve_estimator
from pyrostruct.distributions.relaxation import relax_distribution
from pyrostruct.distributions.temperature import current_temperature

__all__ = ["RelaxReparam"]


class RelaxReparam(Reparam):
    r"""Turn a latent ``Bernoulli`` / ``Categorical`` / ``OneHotCategorical`` site into its
    Concrete relaxation, with a chosen gradient estimator.

    A site :math:`z \sim \mathrm{Cat}(\mathrm{softmax}(\ell))` becomes a sample of
    :math:`\mathrm{softmax}((\ell + g)/\tau)`, :math:`g_k \sim \mathrm{Gumbel}(0, 1)`
    (``"gumbel-softmax"``), or the exact draw
    :math:`\mathrm{one\_hot}(\arg\max_k(\ell_k + g_k))` with the gradient of
    ``"straight-through"``, ``"reinmax"`` or ``"gumbel-rao"`` (see
    :mod:`pyrostruct.distributions.estimators`). ``Categorical`` sites give exact
    indices (:class:`~pyrostruct.distributions.ConcreteCategorical`, hard whatever
    the estimator: ``"gumbel-softmax"`` gives them ``"straight-through"``);
    ``.to_event()``, ``.mask()`` and ``.expand()`` wrappers are kept. Observed
    sites, continuous sites and already relaxed sites are left as they are.

    Use it through :func:`pyro.poutine.reparam` for the sites you name, where
    :func:`pyrostruct.relax` relaxes every latent discrete site of a model::

        >>> import pyro, pyro.distributions as dist, pyro.poutine as poutine
        >>> def model():
        ...     return pyro.sample("z", dist.Bernoulli(0.3))
        >>> relaxed = poutine.reparam(model, config={"z": RelaxReparam(0.5)})
        >>> bool(0 < relaxed() < 1)
        True

    :param temperature: a positive float, tensor, or
        :class:`~pyrostruct.infer.TemperatureSchedule` (read at every site).
    :param str estimator: ``"gumbel-softmax"`` (default), ``"straight-through"``,
        ``"reinmax"`` or ``"gumbel-rao"``.
    :param int num_rao_samples: noise draws per sample for ``"gumbel-rao"`` (default 5).
    :raises NoRelaxationError: (a ``ValueError``) when applied to a discrete site
        without a relaxation (``Poisson``, ...), naming the site.

    References: C. J. Maddison, A. Mnih, Y. W. Teh, "The Concrete Distribution",
    ICLR 2017; E. Jang, S. Gu, B. Poole, "Categorical Reparameterization with
    Gumbel-Softmax", ICLR 2017.
    """

    def __init__(
        self, temperature: Any = 0.5, estimator: str = "gumbel-softmax", num_rao_samples=None
    ) -> None:
        current_temperature(temperature, name="RelaxReparam: temperature")  # validate early
        self.estimator, self.num_rao_samples = resolve_estimator(
            estimator, False, num_rao_samples, "RelaxReparam"
        )
        self.temperature = temperature

    def apply(self, msg: dict) -> dict:
        """Relax ``msg["fn"]`` unless the site is observed.

        :param dict msg: Pyro's simplified message (``name``, ``fn``, ``value``,
            ``is_observed``).
        :returns: ``{"fn", "value", "is_observed"}``: the relaxed distribution, the
            site's value as it was, and whether it is observed.
        """
        fn, value, is_observed = msg["fn"], msg["value"], bool(msg["is_observed"])
        if not is_observed:
            tau = current_temperature(self.temperature, name="RelaxReparam: temperature")
            fn = relax_distribution(
                fn,
                tau,
                site=msg["name"],
                estimator=self.estimator,
                num_rao_samples=self.num_rao_samples,
            )
        return {"fn": fn, "value": value, "is_observed": is_observed}
