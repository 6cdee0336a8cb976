"""Pieces shared by pyrostruct's per-site-family autoguides."""

from __future__ import annotations

from contextlib import ExitStack

import pyro
from pyro.infer.autoguide import AutoGuide

from pyrostruct._pyro_compat import guide_plates

__all__ = ["SiteFamilyGuide"]


class SiteFamilyGuide(AutoGuide):
    """An autoguide that samples each of its sites from ``self.get_distribution(name)``.

    Subclasses set up their parameters in ``_setup_prototype`` and record the
    names of the sites they guide in ``self._site_names``; this base class
    provides ``forward`` (sites sampled inside their vectorized plates) and the
    site lookup used by the posterior summaries.
    """

    _site_names: list[str]
    _site_kind = "guided"  # how error messages call the sites (e.g. "DAG")

    def get_distribution(self, name: str):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, *args, **kwargs):
        """Sample every guided site; returns ``{name: value}``."""
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        plates = guide_plates(self, *args, **kwargs)
        result = {}
        for name, site in self.prototype_trace.iter_stochastic_nodes():
            with ExitStack() as stack:
                for frame in site["cond_indep_stack"]:
                    if frame.vectorized:
                        stack.enter_context(plates[frame.name])
                result[name] = pyro.sample(name, self.get_distribution(name))
                self._after_sample(name, result[name])
        return result

    def _after_sample(self, name: str, value) -> None:
        """Hook run inside the site's plates right after it is sampled (default: nothing)."""

    def _site(self, name: str | None) -> str:
        """Resolve ``name`` (``None``: the only site) or raise a helpful error."""
        kind = type(self).__name__
        if self.prototype_trace is None:
            raise RuntimeError(f"{kind} is not set up yet: call it (or train it) first.")
        names = list(self._site_names)
        if name is None:
            if len(names) != 1:
                raise ValueError(f"{kind} guides several sites {names}; pass name=")
            return names[0]
        if name not in names:
            raise ValueError(
                f"{kind}: no {self._site_kind} site named {name!r}; its sites are {names}"
            )
        return name
