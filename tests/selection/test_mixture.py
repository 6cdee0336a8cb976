"""DiagonalNormalMixture: the same density as Pyro's MixtureSameFamily, by matrix products."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyrostruct.selection._mixture import DiagonalNormalMixture
from pyrostruct.selection.families import gaussian_mixture


def _params(batch, k=3, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    weights = torch.softmax(torch.randn(batch + (k,), generator=g), -1)
    locs = torch.randn(batch + (k, d), generator=g)
    scales = 0.2 + torch.rand(batch + (k, d), generator=g)
    return weights, locs, scales


@pytest.mark.parametrize("batch", [(), (6, 1), (2, 6, 1), (5,)], ids=str)
def test_log_prob_matches_mixture_same_family(batch):
    weights, locs, scales = _params(batch)
    x = torch.randn(20, 4)
    ours = DiagonalNormalMixture(weights, locs, scales)
    ref = dist.MixtureSameFamily(dist.Categorical(weights), dist.Normal(locs, scales).to_event(1))
    if batch and batch[-1] == 5:  # a batch not broadcasting against 20 points: one point
        x = x[:5]
    else:
        plate = batch[:-1] + (20,)
        ours, ref = ours.expand(plate), ref.expand(plate)
    assert ours.batch_shape == ref.batch_shape
    expected = ref.log_prob(x)
    actual = ours.log_prob(x)
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected, atol=1e-4, rtol=1e-5)


def test_sample_has_the_mixture_moments():
    weights, locs, scales = _params(())
    pyro.set_rng_seed(0)
    draws = DiagonalNormalMixture(weights, locs, scales).sample((20000,))
    assert draws.shape == (20000, 4)
    mean = (weights[:, None] * locs).sum(0)
    assert torch.allclose(draws.mean(0), mean, atol=0.05)


def test_gaussian_mixture_model_scores_data_as_the_enumerated_mixture():
    x = torch.randn(30, 2)
    model = gaussian_mixture(3).model
    with pyro.plate("particles", 7, dim=-2):
        tr = poutine.trace(model).get_trace(x)
    tr.compute_log_prob()
    site = tr.nodes["obs"]
    w, loc, scale = (tr.nodes[n]["value"] for n in ["weights", "locs", "scales"])
    ref = dist.MixtureSameFamily(dist.Categorical(w), dist.Normal(loc, scale).to_event(1))
    assert site["log_prob"].shape == (7, 30)
    assert torch.allclose(site["log_prob"], ref.log_prob(x), atol=1e-4)
