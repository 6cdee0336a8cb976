"""Edge weights guided given the sampled DAG.

A model whose weights ``W`` (``d x d``) matter only where the DAG ``A`` has an edge (a
linear or nonlinear SEM computing with ``A * W``) declares it on the weights' site::

    A = pyro.sample("G", ErdosRenyiDAG(d, expected_edges=d))
    W = pyro.sample("W", dist.Normal(0, 1).expand([d, d]).to_event(2),
                    infer={"edge_weights_of": "G"})

and :class:`~pyrostruct.infer.autoguide.AutoDAG` (which then guides both sites) uses

.. math::

    q(W_{ij} \\mid A) = \\begin{cases} p(W_{ij}) & A_{ij} = 0 \\\\
        \\mathcal N(W_{ij}; \\mu_{ij}, \\sigma_{ij}) & A_{ij} = 1 \\end{cases}

(a :class:`pyro.distributions.MaskedMixture` driven by the sampled DAG, with pathwise
gradients). Where an edge is absent the weight is drawn from its prior, so its terms
cancel exactly in the ELBO and in importance weights, per draw: a mean-field
``q(A) q(W)`` must instead fit one Gaussian to a weight that is pinned down when its
edge is present and free when it is not, which overconfident edge marginals and
collapsed importance weights follow from. This is the spike-and-slab guide of
variable selection (the slab's guide conditioned on the spike), applied to DAG edges.
The weights' prior is read once, at set-up: it must not depend on other latents.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.distributions import Independent

__all__ = [
    "EDGE_WEIGHTS_OF",
    "edge_weight_distribution",
    "edge_weight_prior",
    "is_edge_weight_site",
]

#: The ``infer`` key a model sets on a weight site: the name of its DAG site.
EDGE_WEIGHTS_OF = "edge_weights_of"
#: Initial scale of the weights' guide where an edge is present.
INIT_SCALE = 0.1


def is_edge_weight_site(site) -> bool:
    """Whether a trace site is a latent site that declares ``infer={"edge_weights_of": ...}``."""
    return (
        site["type"] == "sample"
        and not site["is_observed"]
        and site["infer"].get(EDGE_WEIGHTS_OF) is not None
    )


def edge_weight_prior(site, d: int):
    """The weights' prior as a distribution of batch shape ``(d, d)``; a one-line error
    for a site whose values are not ``(d, d)`` reals with a reparameterized sampler."""
    fn = site["fn"]
    name, dag = site["name"], site["infer"][EDGE_WEIGHTS_OF]
    if tuple(fn.batch_shape) + tuple(fn.event_shape) != (d, d) or not fn.has_rsample:
        raise ValueError(
            f"site {name!r} declares edge_weights_of={dag!r}: its values must be {d} x {d} "
            f"reals with rsample, one per possible edge; got batch {tuple(fn.batch_shape)}, "
            f"event {tuple(fn.event_shape)} ({type(fn).__name__})"
        )
    while isinstance(fn, Independent):
        fn = fn.base_dist
    return fn.expand(torch.Size((d, d)))


def edge_weight_distribution(prior, loc, scale, adjacency: torch.Tensor):
    """``q(W | A)``: the prior where ``A`` has no edge, ``N(loc, scale)`` where it has one."""
    mask = adjacency.detach() > 0.5
    shape = mask.shape
    present = dist.Normal(loc, scale).expand(shape)
    return dist.MaskedMixture(mask, prior.expand(shape), present).to_event(2)
