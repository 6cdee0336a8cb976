"""How a relaxed categorical value reports its misuse (see ``_relaxed_index.py``).

- :class:`RelaxedValueError`: a conversion that leaves torch (``int(z)``,
  ``z.item()``, ...) while the value carries a gradient, which would silently
  drop it; the message names the site and the fix (:func:`_escape_message`).
- :class:`RelaxationWarning`: after a backward pass in which the value's
  gradient path was lost entirely; a :class:`_Probe`, shared by a sample and
  every index derived from it, holds the site's name and the backward hooks
  that notice it.
"""

from __future__ import annotations

import warnings

__all__ = ["RelaxedValueError", "RelaxationWarning"]


class RelaxedValueError(ValueError):
    """A relaxed categorical value was used in a way that would silently drop its gradient."""


class RelaxationWarning(UserWarning):
    """A relaxed site's value had no gradient path to the loss in a backward pass."""


class _Probe:
    """Book-keeping shared by a sample and every relaxed index derived from it."""

    __slots__ = ("site", "escapes", "value_reached")

    def __init__(self) -> None:
        self.site: str | None = None
        self.escapes: list[str] = []
        self.value_reached = False

    def escape(self, what: str) -> None:
        if what not in self.escapes and len(self.escapes) < 8:
            self.escapes.append(what)

    # backward hooks -------------------------------------------------------
    def mark_value(self, grad):
        self.value_reached = True

    def check_scores(self, grad):
        # Runs after every consumer of the Gumbel scores (the model's one-hot and
        # the one scored by log_prob) has sent its gradient. A value the model
        # used (escapes recorded) but that did not reach the loss is reported; an
        # unused value (a prior-only site) is not.
        if self.site is not None and not self.value_reached and self.escapes:
            warnings.warn(
                f"relax: site '{self.site}' is relaxed, but in this backward pass its value had "
                "no gradient path to the loss (only its own log-probability did): the model "
                f"used it only in ways that drop the gradient ({', '.join(self.escapes)}), so "
                "it learns nothing through it. Index tables with the value itself "
                f"(locs[{self.site}], Vindex(locs)[..., {self.site}]), use "
                f"F.one_hot({self.site}, K) or {self.site}.float() for arithmetic, or exclude "
                f"the site (relax(model, exclude=['{self.site}'])) and enumerate it.",
                RelaxationWarning,
                stacklevel=2,
            )
        self.value_reached = False


def _escape_message(probe: _Probe, what: str) -> str:
    site = probe.site or "z"
    where = (
        f"site '{probe.site}' is relaxed (pyrostruct.relax): its value"
        if probe.site is not None
        else "this value comes from a relaxed Categorical (ConcreteCategorical): it"
    )
    return (
        f"{where} is a straight-through "
        f"Gumbel-softmax sample, and {what} would turn it into a Python/NumPy number without "
        f"a gradient, so the model would silently learn nothing about it. Use the tensor "
        f"itself: index tables with it (locs[{site}], Vindex(locs)[..., {site}], "
        f"probs[{site}]), or use F.one_hot({site}, K) / {site}.float() for arithmetic; or "
        f"exclude the site from relax (relax(model, exclude=['{site}'])) and enumerate it "
        "(infer={'enumerate': 'parallel'} with TraceEnum_ELBO). Inside torch.no_grad() the "
        "conversion is allowed."
    )
