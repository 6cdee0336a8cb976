"""Tests for PlackettLuce: exact normalization, sampling vs log_prob, gradients, Pyro conventions."""

import itertools
import math
import warnings

import pyro
import pytest
import torch
from pyro.distributions.testing.gof import multinomial_goodness_of_fit
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyrostruct.distributions import PlackettLuce, get_order, permutation_matrix

TEST_FAILURE_RATE = 1e-3


def _brute_log_prob(scores, order):
    w = scores.exp()
    lp = 0.0
    remaining = list(range(len(scores)))
    for item in order:
        lp += math.log(w[item] / sum(w[j] for j in remaining))
        remaining.remove(item)
    return lp


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("d", [1, 2, 3, 4, 5])
def test_log_prob_sums_to_one_over_all_permutations(d, dtype):
    dist = PlackettLuce(3 * torch.randn(d, dtype=dtype))
    values = dist.enumerate_support()
    assert values.shape == (math.factorial(d), d, d)
    assert len({tuple(v.argmax(-1).tolist()) for v in values}) == math.factorial(d)
    total = dist.log_prob(values).logsumexp(0)
    assert total.dtype == dtype
    assert abs(total.item()) < (1e-5 if dtype == torch.float32 else 1e-12)


def test_log_prob_matches_sequential_definition():
    scores = torch.tensor([0.3, -1.2, 2.0, 0.0], dtype=torch.float64)
    dist = PlackettLuce(scores)
    for order in itertools.permutations(range(4)):
        o = torch.tensor(order)
        expected = _brute_log_prob(scores, order)
        assert dist.log_prob_order(o).item() == pytest.approx(expected, abs=1e-12)
        assert dist.log_prob(permutation_matrix(o)).item() == pytest.approx(expected, abs=1e-12)


def test_sample_frequencies_agree_with_log_prob():
    pyro.set_rng_seed(1)
    dist = PlackettLuce(torch.tensor([1.0, 0.2, -0.5, 0.0]))
    orders = dist.sample_order((20000,))
    index = {o: k for k, o in enumerate(itertools.permutations(range(4)))}
    counts = torch.zeros(24)
    for o in orders.tolist():
        counts[index[tuple(o)]] += 1
    probs = dist.log_prob_order(torch.tensor(list(index))).exp()
    assert multinomial_goodness_of_fit(probs, counts) > TEST_FAILURE_RATE
    # the test has power: a wrong distribution (uniform) is rejected
    assert multinomial_goodness_of_fit(torch.full((24,), 1 / 24), counts) < TEST_FAILURE_RATE


def test_samples_are_permutation_matrices_carrying_their_order():
    dist = PlackettLuce(torch.randn(3, 6))
    for value in (dist.sample((5,)), dist.rsample((5,))):
        assert value.shape == (5, 3, 6, 6)
        assert dist.support.check(value).all()
        order = get_order(value)
        assert order.shape == (5, 3, 6) and order.dtype == torch.long
        assert torch.equal(value.argmax(-1), order)


def test_ties_and_extreme_scores_give_permutations():
    for scores in (torch.zeros(50), torch.full((50,), 1e30), torch.tensor([1e30, -1e30] * 25)):
        value = PlackettLuce(scores).sample((3,))
        assert PlackettLuce(scores).support.check(value).all()


@pytest.mark.parametrize("relaxation", ["softsort", "sinkhorn"])
def test_rsample_is_exact_forward_with_finite_nonzero_gradients(relaxation):
    scores = torch.randn(6, requires_grad=True)
    dist = PlackettLuce(scores, temperature=0.5, relaxation=relaxation)
    value, order = dist.rsample_with_order((8,))
    assert torch.equal(value.detach(), permutation_matrix(order))
    target = torch.arange(6.0)
    loss = ((value @ target) * torch.linspace(-1, 1, 6)).sum()
    loss.backward()
    assert torch.isfinite(scores.grad).all()
    assert (scores.grad.abs() > 0).all()


def test_rsample_gradient_sorts_items_toward_a_target_order():
    pyro.set_rng_seed(0)
    scores = torch.zeros(5, requires_grad=True)
    opt = torch.optim.Adam([scores], lr=0.1)
    target = torch.tensor([3, 0, 4, 1, 2])
    target_matrix = permutation_matrix(target)
    for _ in range(200):
        value = PlackettLuce(scores, temperature=0.3).rsample((16,))
        loss = -(value * target_matrix).sum((-1, -2)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.equal(PlackettLuce(scores).mode.argmax(-1), target)


def test_log_prob_broadcasts_and_enumerate_support_shapes():
    # (shapes, expand, support, validation, pickling: the generic tests in test_distributions.py)
    dist = PlackettLuce(torch.randn(2, 1, 4))
    big = dist.expand((2, 3))
    value = big.sample((7,))
    assert dist.log_prob(value).shape == (7, 2, 3)
    support = big.enumerate_support()
    assert support.shape == (24, 2, 3, 4, 4)
    assert big.enumerate_support(expand=False).shape == (24, 1, 1, 4, 4)


def test_validation_errors():
    with pytest.raises(ValueError, match="NaN or infinite"):
        PlackettLuce(torch.tensor([0.0, float("nan")]), validate_args=True)
    with pytest.raises(ValueError, match="temperature > 0"):
        PlackettLuce(torch.zeros(3), temperature=0.0)
    with pytest.raises(ValueError, match="temperature > 0"):
        PlackettLuce(torch.zeros(3), temperature=-1.0)
    with pytest.raises(ValueError, match="relaxation"):
        PlackettLuce(torch.zeros(3), relaxation="bogus")
    with pytest.raises(ValueError, match=r"batch_shape \+ \(d,\)"):
        PlackettLuce(torch.tensor(1.0))
    dist = PlackettLuce(torch.zeros(3), validate_args=True)
    with pytest.raises(ValueError):
        dist.log_prob(torch.ones(3, 3))
    with pytest.raises(NotImplementedError, match="d <= 8"):
        PlackettLuce(torch.zeros(9)).enumerate_support()


def test_svi_learns_a_posterior_over_orders():
    """Model: uniform prior over orders, a likelihood that prefers item 2 first."""
    d = 3

    def model():
        perm = pyro.sample("perm", PlackettLuce(torch.zeros(d)))
        first = perm[..., 0, :]  # one-hot of the first item
        pyro.factor("lik", 3.0 * first[..., 2])

    def guide():
        s = pyro.param("s", torch.zeros(d))
        pyro.sample("perm", PlackettLuce(s, temperature=0.5))

    svi = SVI(model, guide, Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(400):
        svi.step()
    s = pyro.param("s").detach()
    # exact posterior: P(2 first) = e^3 / (e^3 + 2)
    p_first = torch.softmax(s, 0)[2].item()
    assert p_first > 0.75
    assert s.argmax().item() == 2


@pytest.mark.parametrize("scores", [torch.tensor([3, 1, 2]), torch.tensor([True, False, True])])
def test_integer_and_boolean_scores_act_as_floats(scores):
    """Issue 15, case 6: integer scores crashed in rsample ('not implemented for Long')."""
    d = PlackettLuce(scores)
    assert d.scores.dtype == torch.get_default_dtype()
    sample = d.sample()
    assert torch.isfinite(d.log_prob(sample))
    ref = PlackettLuce(scores.to(torch.get_default_dtype()))
    assert torch.equal(d.log_prob(sample), ref.log_prob(sample))


def test_log_prob_is_the_same_quantity_with_or_without_the_attached_order():
    # a permutation matrix determines its order: nothing can switch when the order is lost
    torch.manual_seed(0)
    d = PlackettLuce(torch.randn(5, requires_grad=True))
    p = d.rsample((4,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for copy in (p.clone(), p.detach() + 0, p.expand(2, 4, 5, 5)):
            assert get_order(copy) is None
            torch.testing.assert_close(d.log_prob(copy), d.log_prob(p).expand(copy.shape[:-2]))


@pytest.mark.parametrize("order", [[0, 0, 1], [0, 1, 5], [0.0, 1.0, 2.0], [0, 1]])
def test_an_order_that_is_not_a_permutation_is_refused_when_validating(order):
    """Hostile sweep: [0, 0, 1] was scored as a permutation (the 27 index triples summed to
    4.5), [0, 1, 5] raised an index error and a float order a gather error."""
    from pyrostruct.distributions import OrderedDAG

    order = torch.tensor(order)
    with pytest.raises(ValueError, match="order must be"):
        PlackettLuce(torch.tensor([2.0, 0.0, -2.0]), validate_args=True).log_prob_order(order)
    dag = OrderedDAG(torch.zeros(3), torch.zeros(3, 3), validate_args=True)
    with pytest.raises(ValueError, match="order must be"):
        dag.log_prob(torch.zeros(3, 3), order=order)
    valid = PlackettLuce(torch.tensor([2.0, 0.0, -2.0]), validate_args=True)
    total = sum(valid.log_prob_order(torch.tensor(p)).exp() for p in itertools.permutations(range(3)))
    assert float(total) == pytest.approx(1.0)
