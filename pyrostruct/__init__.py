"""pyrostruct: differentiable structural latents for Pyro.

Gumbel-softmax latents, distributions over permutations and DAGs that are
acyclic by construction, sparse subspace variational inference, and an
ELBO-based model-selection layer. See README.md for what exists today.
"""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
