"""PartialOrderPlackettLuce: exact normalization over the linear extensions, sampling
frequencies, agreement with PlackettLuce without constraints, refusals."""

from __future__ import annotations

import collections
import itertools
import math

import pytest
import torch

from pyrostruct.distributions import (
    PartialOrderPlackettLuce,
    PlackettLuce,
    count_linear_extensions,
    get_order,
)


def _random_partial_order(d: int, density: float, seed: int) -> torch.Tensor:
    """``precedes`` from a random DAG over a random order of ``d`` items."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(d, generator=g)
    pre = torch.zeros(d, d, dtype=torch.bool)
    for a in range(d):
        for b in range(a + 1, d):
            if torch.rand((), generator=g) < density:
                pre[perm[a], perm[b]] = True
    return pre


def _keeps(order, pre) -> bool:
    rank = {v: k for k, v in enumerate(order)}
    return all(rank[int(i)] < rank[int(j)] for i, j in pre.nonzero().tolist())


@pytest.mark.parametrize("d,density,seed", [(3, 0.5, 0), (4, 0.3, 1), (5, 0.4, 2), (6, 0.2, 3),
                                            (6, 0.6, 4), (5, 0.0, 5)])  # fmt: skip
def test_normalizes_exactly_over_the_linear_extensions(d, density, seed):
    pre = _random_partial_order(d, density, seed)
    torch.manual_seed(seed)
    pl = PartialOrderPlackettLuce(torch.randn(d, dtype=torch.float64), pre)
    orders = torch.tensor(list(itertools.permutations(range(d))))
    logp = pl.log_prob_order(orders)
    allowed = torch.tensor([_keeps(o, pre) for o in orders.tolist()])
    assert torch.isneginf(logp[~allowed]).all()
    assert torch.isfinite(logp[allowed]).all()
    assert float(logp[allowed].exp().sum()) == pytest.approx(1.0, abs=1e-12)
    assert count_linear_extensions(pre) == int(allowed.sum())
    assert len(pl.enumerate_support()) == int(allowed.sum())


def test_sampling_frequencies_match_the_probabilities():
    pre = torch.zeros(5, 5, dtype=torch.bool)
    pre[0, 2] = pre[1, 2] = pre[3, 4] = True
    torch.manual_seed(0)
    pl = PartialOrderPlackettLuce(torch.tensor([0.3, -0.5, 1.0, 0.8, -1.2]), pre)
    n = 100_000
    counts = collections.Counter(map(tuple, pl.sample_order((n,)).tolist()))
    support = pl.enumerate_support().argmax(-1)
    probs = pl.log_prob_order(support).exp()
    assert sum(counts.values()) == n and set(counts) <= set(map(tuple, support.tolist()))
    for order, p in zip(support.tolist(), probs.tolist()):
        se = math.sqrt(p * (1 - p) / n)
        assert abs(counts[tuple(order)] / n - p) < 5 * se + 1e-4


def test_without_constraints_it_is_plackett_luce():
    scores = torch.randn(2, 5)
    pl = PartialOrderPlackettLuce(scores, torch.zeros(5, 5, dtype=torch.bool))
    orders = PlackettLuce(scores).sample_order((7,))
    assert torch.allclose(pl.log_prob_order(orders), PlackettLuce(scores).log_prob_order(orders))


def test_samples_keep_the_order_in_batches_and_carry_it():
    pre = _random_partial_order(6, 0.4, 7)
    pl = PartialOrderPlackettLuce(torch.randn(3, 6), pre)
    value = pl.sample((50,))
    assert value.shape == (50, 3, 6, 6)
    orders = get_order(value)
    assert all(_keeps(o, pre) for o in orders.reshape(-1, 6).tolist())
    assert torch.isfinite(pl.log_prob(value)).all()
    assert bool(pl.support.check(value).all())
    assert _keeps(pl.mode.argmax(-1).reshape(-1, 6)[0].tolist(), pre)


def test_gradient_of_log_prob_is_exact_on_a_small_case():
    # items 0 and 1 before 2: p(0, 1, 2) = softmax(s0, s1)[0]; the last choice is forced
    s = torch.tensor([0.2, -0.4, 3.0], requires_grad=True)
    pre = torch.tensor([[0, 0, 1], [0, 0, 1], [0, 0, 0]], dtype=torch.bool)
    PartialOrderPlackettLuce(s, pre).log_prob_order(torch.tensor([0, 1, 2])).backward()
    p0 = torch.sigmoid(torch.tensor(0.6))
    assert torch.allclose(s.grad, torch.stack([1 - p0, p0 - 1, torch.tensor(0.0)]), atol=1e-6)


def test_count_factors_out_free_items_and_reports_cycles():
    pre = torch.zeros(7, 7, dtype=torch.bool)
    pre[0, 1] = True  # 7! / 2 orders keep 0 before 1
    assert count_linear_extensions(pre) == math.factorial(7) // 2
    pre[1, 0] = True
    assert count_linear_extensions(pre) == 0


def test_refusals():
    with pytest.raises(ValueError, match="cycle"):
        PartialOrderPlackettLuce(torch.zeros(3), torch.tensor([[0, 1, 0], [0, 0, 1], [1, 0, 0]]))
    with pytest.raises(ValueError, match="shape"):
        PartialOrderPlackettLuce(torch.zeros(3), torch.zeros(2, 2))
    with pytest.raises(NotImplementedError, match="score-function"):
        PartialOrderPlackettLuce(torch.zeros(3), torch.zeros(3, 3)).rsample()
