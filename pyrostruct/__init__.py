"""pyrostruct: differentiable structural latents for Pyro.

Gumbel-softmax latents, distributions over permutations and DAGs that are
acyclic by construction, sparse subspace variational inference, and an
ELBO-based model-selection layer. See README.md for what exists today.

The most used entry points are available at the top level (imported on first
use, so that ``pyrostruct --version`` stays fast):

- :func:`relax` — relax the discrete latent sites of a Pyro model;
- :func:`auto_guide` and :func:`fit` — one call builds (and trains) the guide
  of a model with DAG, permutation, discrete and continuous latents;
- :func:`discover` — causal discovery by variational inference over DAGs;
- :func:`select` — ELBO-based Bayesian model selection.
"""

from importlib import import_module

__version__ = "0.1.0.dev0"

_LAZY = {
    "relax": "pyrostruct.handlers",
    "auto_guide": "pyrostruct.infer.autoguide",
    "fit": "pyrostruct.infer",
    "discover": "pyrostruct.causal",
    "select": "pyrostruct.selection",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pyrostruct' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
