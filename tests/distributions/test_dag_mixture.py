"""DAGMixture: exact normalization, the joint density, sampling frequencies, shapes, errors."""

import itertools
import math

import pytest
import torch

from pyrostruct.distributions import DAGMixture, OrderedDAG, get_order
from pyrostruct.graph import is_acyclic


def _mixture(K=3, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    components = OrderedDAG(torch.randn(K, d, generator=g), 2 * torch.randn(K, d, d, generator=g))
    return DAGMixture(torch.randn(K, generator=g), components)


def test_joint_density_is_the_weighted_sum_of_the_components_and_normalizes():
    q = _mixture()
    w = torch.softmax(q.mixture_logits, -1)
    total = 0.0
    for order in itertools.permutations(range(3)):
        pairs = [(order[a], order[b]) for a in range(3) for b in range(a + 1, 3)]
        for bits in itertools.product([0.0, 1.0], repeat=3):
            adj = torch.zeros(3, 3)
            for (i, j), bit in zip(pairs, bits):
                adj[i, j] = bit
            o = torch.tensor(order)
            expected = sum(
                w[k] * OrderedDAG(q.components.scores[k], q.components.edge_logits[k])
                .joint_log_prob(adj, o).exp()
                for k in range(3)
            )
            got = q.log_prob(adj, order=o).exp()
            assert got.item() == pytest.approx(expected.item(), rel=1e-5)
            total += got.item()
    assert total == pytest.approx(1.0, abs=1e-5)
    # the marginal over DAGs (orders summed out) normalizes too
    dags = OrderedDAG(torch.zeros(3), torch.zeros(3, 3)).enumerate_support()
    assert q.log_prob(dags).exp().sum().item() == pytest.approx(1.0, abs=1e-5)


def test_sampling_frequencies_match_the_marginal_density():
    torch.manual_seed(1)
    q = _mixture(seed=1)
    samples = q.sample((40_000,))
    assert samples.shape == (40_000, 3, 3)
    assert get_order(samples).shape == (40_000, 3)
    dags = OrderedDAG(torch.zeros(3), torch.zeros(3, 3)).enumerate_support()
    probs = q.log_prob(dags).exp()
    keys = (samples.flatten(1) * 2 ** torch.arange(9)).sum(-1)
    dag_keys = (dags.flatten(1) * 2 ** torch.arange(9)).sum(-1)
    freq = torch.stack([(keys == k).float().mean() for k in dag_keys])
    assert freq.sum().item() == pytest.approx(1.0)  # every sample is one of the 25 DAGs
    se = (probs * (1 - probs) / 40_000).sqrt()
    assert ((freq - probs).abs() <= 5 * se + 1e-4).all(), (freq, probs)
    # samples score with their own orders: joint <= marginal
    joint = q.log_prob(samples[:50], order=get_order(samples)[:50])
    assert (joint <= q.marginal_log_prob(samples[:50]) + 1e-5).all()


def test_shapes_expand_mode_and_responsibilities():
    q = _mixture(K=4, d=5)
    assert q.batch_shape == () and q.event_shape == (5, 5) and not q.has_rsample
    e = q.expand((2, 3))
    x = e.sample((7,))
    assert x.shape == (7, 2, 3, 5, 5) and e.log_prob(x).shape == (7, 2, 3)
    assert all(is_acyclic(a) for a in x.reshape(-1, 5, 5))
    r = q.order_responsibilities(get_order(x))
    assert r.shape == (7, 2, 3, 4) and torch.allclose(r.sum(-1), torch.ones(7, 2, 3))
    mode = q.mode
    assert mode.shape == (5, 5) and is_acyclic(mode)
    # the mode is the best of the components' modes under the mixture density
    modes = q.components.mode
    best = max(
        q.log_prob(modes[k], order=get_order(modes)[k]).item() for k in range(4)
    )
    assert q.log_prob(mode).item() == pytest.approx(best, rel=1e-6)
    assert math.isfinite(best)


def test_bad_arguments_are_refused():
    components = OrderedDAG(torch.zeros(3, 4), torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="agree on K"):
        DAGMixture(torch.zeros(2), components)
    with pytest.raises(ValueError, match="must be an OrderedDAG"):
        DAGMixture(torch.zeros(3), torch.distributions.Normal(0, 1))
