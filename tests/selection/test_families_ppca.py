"""The canonical (LQ) form of the PPCA candidate has the evidence of the rotation-invariant one."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyrostruct.errors import InputError
from pyrostruct.selection.families import ppca, ppca_loadings


def test_canonical_loadings_have_the_covariance_distribution_of_iid_gaussian_loadings():
    d, rank, num = 6, 3, 100000
    data = torch.zeros(5, d)
    pyro.set_rng_seed(0)
    with poutine.block(), pyro.plate("draws", num, dim=-2):
        trace = poutine.trace(ppca(rank, w_scale=1.0).model).get_trace(data)
    lower = trace.nodes["W_lower"]["value"].reshape(num, -1)
    diag_sq = trace.nodes["W_diag_sq"]["value"].reshape(num, rank)
    canonical = ppca_loadings(lower, diag_sq, d)
    assert (canonical.triu(1) == 0).all() and (canonical.diagonal(dim1=-2, dim2=-1) > 0).all()
    iid = dist.Normal(0.0, 1.0).sample((num, d, rank))
    for w in (canonical, iid):
        cov = w @ w.mT
        eig = torch.linalg.eigvalsh(cov)[:, -rank:]
        stats = torch.cat([eig.mean(0), eig.std(0), cov[:, 0, 0].mean()[None],
                           cov[:, d - 1, d - 2].square().mean()[None]])  # fmt: skip
        if w is canonical:
            first = stats
    # E[eig] = (1.68, 5.0, 11.3), sd (1.14, 2.23, 4.22) at d = 6, r = 3; 1% Monte Carlo error
    assert torch.allclose(first, stats, rtol=0.03)


def test_learned_scale_gives_iid_gaussian_loadings_of_that_scale():
    # w_scale=None: given the sampled scale s, L L^T has the distribution of W W^T with
    # iid N(0, s^2) entries (Bartlett at scale s), so dividing by s^2 gives the s = 1 law
    d, rank, num = 6, 3, 100000
    data = torch.zeros(5, d)
    pyro.set_rng_seed(1)
    with poutine.block(), pyro.plate("draws", num, dim=-2):
        trace = poutine.trace(ppca(rank, w_scale=None).model).get_trace(data)
    s = trace.nodes["W_scale"]["value"].reshape(num, 1, 1)
    lower = trace.nodes["W_lower"]["value"].reshape(num, -1)
    diag_sq = trace.nodes["W_diag_sq"]["value"].reshape(num, rank)
    w = ppca_loadings(lower, diag_sq, d) / s
    cov = w @ w.mT
    eig = torch.linalg.eigvalsh(cov)[:, -rank:]
    iid = dist.Normal(0.0, 1.0).sample((num, d, rank))
    eig_iid = torch.linalg.eigvalsh(iid @ iid.mT)[:, -rank:]
    assert torch.allclose(eig.mean(0), eig_iid.mean(0), rtol=0.03)
    assert torch.allclose(eig.std(0), eig_iid.std(0), rtol=0.03)
    # and the scale follows its LogNormal(-1, 1) hyperprior
    assert abs(float(s.log().mean()) + 1.0) < 0.02 and abs(float(s.log().std()) - 1.0) < 0.02


def test_bad_w_scale_is_refused():
    for bad in (0.0, -1.0, "1"):
        with pytest.raises(InputError, match="w_scale"):
            ppca(2, w_scale=bad)
