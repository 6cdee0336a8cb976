"""Gradient estimators of the relaxed distributions (``estimator=``).

The estimators are checked against the exact gradient of E[f(z)] on cases small
enough to enumerate: a quadratic f of one 3-category variable and the product
of 3 Bernoullis. Per-draw gradients come from one vectorized call (the logits
repeated N times), so bias and variance are measured over N draws.
"""

from __future__ import annotations

import math

import pytest
import torch

from pyrostruct.distributions import (
    ConcreteBernoulli,
    ConcreteCategorical,
    ConcreteOneHotCategorical,
    relax_distribution,
)
from pyrostruct.distributions.estimators import ESTIMATORS, conditional_gumbel
from pyrostruct.errors import InputError

HARD = ("straight-through", "reinmax", "gumbel-rao")
N = 20000

LOGITS = torch.tensor([0.5, -0.3, 0.2], dtype=torch.float64)
A = torch.tensor([[1.0, -2.0, 0.5], [-2.0, 0.3, 1.0], [0.5, 1.0, -1.0]], dtype=torch.float64)
B = torch.tensor([0.4, -1.0, 2.0], dtype=torch.float64)
BERNOULLI_LOGITS = torch.tensor([0.3, -0.5, 1.0], dtype=torch.float64)


def quadratic(z):
    return ((z @ A) * z).sum(-1) + z @ B


def exact_quadratic_grad():
    logits = LOGITS.clone().requires_grad_()
    (logits.softmax(-1) * quadratic(torch.eye(3, dtype=torch.float64))).sum().backward()
    return logits.grad


def exact_product_grad():
    logits = BERNOULLI_LOGITS.clone().requires_grad_()
    logits.sigmoid().prod().backward()
    return logits.grad


def per_draw_grads(make, logits, f):
    """(N, ...) gradients of f(z) w.r.t. the logits, one row per draw."""
    rows = logits.repeat(N, 1).requires_grad_()
    f(make(rows).rsample()).sum().backward()
    return rows.grad


def bias_and_var(grads, exact):
    """(|mean - exact|, its standard error, total variance) of per-draw gradients."""
    var = grads.var(0).sum().item()
    return (grads.mean(0) - exact).norm().item(), math.sqrt(var / grads.size(0)), var


def categorical_stats(estimator, tau, seed=0):
    torch.manual_seed(seed)
    grads = per_draw_grads(
        lambda lg: ConcreteOneHotCategorical(tau, logits=lg, estimator=estimator),
        LOGITS,
        quadratic,
    )
    return bias_and_var(grads, exact_quadratic_grad())


def bernoulli_stats(estimator, tau, seed=0):
    torch.manual_seed(seed)
    grads = per_draw_grads(
        lambda lg: ConcreteBernoulli(tau, logits=lg, estimator=estimator),
        BERNOULLI_LOGITS,
        lambda z: z.prod(-1),
    )
    return bias_and_var(grads, exact_product_grad())


@pytest.mark.parametrize("stats", [categorical_stats, bernoulli_stats], ids=["quad", "prod"])
def test_reinmax_bias_lower_than_straight_through_at_temperature_one(stats):
    # ReinMax is second-order accurate: at tau = 1 it is unbiased for a quadratic f
    # and for a multilinear f of independent Bernoullis (Liu et al. 2023).
    st_bias, st_se, _ = stats("straight-through", 1.0)
    rm_bias, rm_se, _ = stats("reinmax", 1.0)
    assert st_bias > 6 * st_se  # straight-through is measurably biased here
    assert rm_bias < 4 * rm_se  # ReinMax is not
    assert rm_bias < 0.25 * st_bias


@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("stats", [categorical_stats, bernoulli_stats], ids=["quad", "prod"])
def test_gumbel_rao_lowers_variance_keeps_mean(stats, tau):
    st_bias, st_se, st_var = stats("straight-through", tau)
    gr_bias, gr_se, gr_var = stats("gumbel-rao", tau, seed=1)
    assert gr_var < 0.85 * st_var
    # Rao-Blackwellization keeps the mean: the same bias within the noise
    assert abs(gr_bias - st_bias) < 4 * math.hypot(st_se, gr_se)


def test_reinmax_bias_grows_below_temperature_one():
    # documented limitation: ReinMax wants tau >= 1 (Liu et al. 2023)
    low, low_se, _ = categorical_stats("reinmax", 0.1)
    one, _, _ = categorical_stats("reinmax", 1.0)
    assert low > one + 6 * low_se


def test_straight_through_gradient_is_the_relaxed_samples():
    w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    logits = LOGITS.clone().requires_grad_()
    torch.manual_seed(3)
    (ConcreteOneHotCategorical(0.4, logits=logits, hard=True).rsample((50,)) @ w).sum().backward()
    hard_grad = logits.grad.clone()
    logits.grad = None
    torch.manual_seed(3)
    (ConcreteOneHotCategorical(0.4, logits=logits).rsample((50,)) @ w).sum().backward()
    assert torch.equal(hard_grad, logits.grad)


def test_hard_alias_is_straight_through():
    d = ConcreteOneHotCategorical(0.5, logits=LOGITS, hard=True)
    assert d.estimator == "straight-through" and d.hard
    d = ConcreteBernoulli(0.5, logits=BERNOULLI_LOGITS)
    assert d.estimator == "gumbel-softmax" and not d.hard
    torch.manual_seed(0)
    a = ConcreteBernoulli(0.5, logits=BERNOULLI_LOGITS, hard=True).rsample((10,))
    torch.manual_seed(0)
    b = ConcreteBernoulli(0.5, logits=BERNOULLI_LOGITS, estimator="straight-through").rsample((10,))
    assert torch.equal(a, b)


@pytest.mark.parametrize("estimator", HARD)
def test_forward_values_are_exact_draws(estimator):
    torch.manual_seed(0)
    y = ConcreteOneHotCategorical(0.5, logits=LOGITS, estimator=estimator).rsample((1000,))
    assert ((y == 0) | (y == 1)).all() and (y.sum(-1) == 1).all()
    torch.manual_seed(0)
    reference = ConcreteOneHotCategorical(0.5, logits=LOGITS, hard=True).rsample((1000,))
    assert torch.equal(y, reference)  # the same draw whatever the estimator
    freq = y.mean(0)
    assert torch.allclose(freq, LOGITS.softmax(-1), atol=0.05)
    torch.manual_seed(0)
    z = ConcreteBernoulli(0.5, logits=BERNOULLI_LOGITS, estimator=estimator).rsample((1000,))
    assert ((z == 0) | (z == 1)).all()
    assert torch.allclose(z.mean(0), BERNOULLI_LOGITS.sigmoid(), atol=0.05)


def test_gumbel_softmax_values_are_soft():
    y = ConcreteOneHotCategorical(1.0, logits=LOGITS, estimator="gumbel-softmax").rsample((100,))
    assert ((y > 0) & (y < 1)).all()


@pytest.mark.parametrize("estimator", HARD)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_dtypes_expand(estimator, dtype):
    logits = torch.randn(4, 3, 5, dtype=dtype, requires_grad=True)
    tau = torch.full((4, 1), 0.7, dtype=dtype)
    d = ConcreteOneHotCategorical(tau, logits=logits, estimator=estimator, num_rao_samples=3)
    y = d.rsample((2,))
    assert y.shape == (2, 4, 3, 5) and y.dtype == dtype
    assert d.log_prob(y).shape == (2, 4, 3)
    (y * torch.arange(5.0, dtype=dtype)).sum().backward()
    assert logits.grad.shape == logits.shape and torch.isfinite(logits.grad).all()
    e = d.expand((6, 4, 3))
    assert (e.estimator, e.num_rao_samples) == (estimator, 3)
    assert e.rsample().shape == (6, 4, 3, 5)

    blogits = torch.randn(4, 3, dtype=dtype, requires_grad=True)
    b = ConcreteBernoulli(tau, logits=blogits, estimator=estimator).to_event(1)
    z = b.rsample((2,))
    assert z.shape == (2, 4, 3) and z.dtype == dtype and b.log_prob(z).shape == (2, 4)
    z.sum().backward()
    assert torch.isfinite(blogits.grad).all() and blogits.grad.abs().sum() > 0
    eb = b.base_dist.expand((5, 4, 3))
    assert eb.estimator == estimator and eb.rsample().shape == (5, 4, 3)

    c = ConcreteCategorical(tau, logits=logits.detach(), estimator=estimator)
    assert c.expand((2, 4, 3)).estimator == estimator
    assert c.rsample((2,)).shape == (2, 4, 3)


@pytest.mark.parametrize("estimator", HARD)
def test_low_temperature_float32_is_finite(estimator):
    logits = torch.tensor([[30.0, -30.0, 0.0], [0.1, 0.0, -0.1]], requires_grad=True)
    d = ConcreteOneHotCategorical(0.01, logits=logits, estimator=estimator)
    y = d.rsample((500,))
    loss = quadratic(y.double()).sum() + d.log_prob(y).sum()
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    blogits = torch.tensor([40.0, -40.0, 0.3], requires_grad=True)
    b = ConcreteBernoulli(0.01, logits=blogits, estimator=estimator)
    z = b.rsample((500,))
    loss = (z.prod(-1) + z.sum(-1)).sum() + b.log_prob(z).sum()
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(blogits.grad).all()


@pytest.mark.parametrize("estimator", HARD)
def test_impossible_category_gets_finite_gradients(estimator):
    logits = torch.tensor([0.0, -math.inf, 1.0], requires_grad=True)
    y = ConcreteOneHotCategorical(0.5, logits=logits, estimator=estimator).rsample((200,))
    assert (y[:, 1] == 0).all()
    (y * torch.tensor([1.0, 2.0, -1.0])).sum().backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("estimator", HARD)
def test_categorical_index_gradient(estimator):
    # E[locs[z]] for an index-valued relaxed categorical, against the exact gradient
    locs = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    exact = LOGITS.clone().requires_grad_()
    (exact.softmax(-1) * locs**2).sum().backward()
    torch.manual_seed(0)
    rows = LOGITS.repeat(N, 1).requires_grad_()
    z = ConcreteCategorical(1.0, logits=rows, estimator=estimator).rsample()
    assert z.dtype == torch.long
    (locs[z] ** 2).sum().backward()
    bias, se, _ = bias_and_var(rows.grad, exact.grad)
    if estimator == "reinmax":
        assert bias < 4 * se  # quadratic in the one-hot: exact at tau = 1
    assert torch.isfinite(rows.grad).all() and rows.grad.abs().sum() > 0


@pytest.mark.parametrize("estimator", HARD)
def test_categorical_log_prob_straight_through_path(estimator):
    logits = LOGITS.clone().requires_grad_()
    d = ConcreteCategorical(0.5, logits=logits, estimator=estimator)
    z = d.rsample((7,))
    lp = d.log_prob(z)
    assert torch.allclose(lp, torch.distributions.Categorical(logits=LOGITS).log_prob(z.long()))
    lp.sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_relax_distribution_passes_estimator():
    bern = relax_distribution(
        torch.distributions.Bernoulli(logits=torch.zeros(3)), 0.5, estimator="reinmax"
    )
    assert isinstance(bern, ConcreteBernoulli) and bern.estimator == "reinmax"
    cat = relax_distribution(torch.distributions.Categorical(logits=torch.zeros(3)), 0.5)
    assert isinstance(cat, ConcreteCategorical) and cat.estimator == "straight-through"
    cat = relax_distribution(
        torch.distributions.Categorical(logits=torch.zeros(3)),
        0.5,
        estimator="gumbel-rao",
        num_rao_samples=4,
    )
    assert (cat.estimator, cat.num_rao_samples) == ("gumbel-rao", 4)


def test_validation():
    with pytest.raises(InputError, match="reinmax"):
        ConcreteOneHotCategorical(0.5, logits=LOGITS, estimator="rein-max")
    with pytest.raises(InputError, match="gumbel-rao"):
        ConcreteBernoulli(0.5, logits=BERNOULLI_LOGITS, estimator="st")
    with pytest.raises(InputError, match="contradicts"):
        ConcreteBernoulli(0.5, logits=BERNOULLI_LOGITS, hard=True, estimator="gumbel-softmax")
    with pytest.raises(InputError, match="num_rao_samples"):
        ConcreteBernoulli(0.5, logits=BERNOULLI_LOGITS, estimator="gumbel-rao", num_rao_samples=0)
    with pytest.raises(InputError, match="num_rao_samples"):
        ConcreteBernoulli(0.5, logits=BERNOULLI_LOGITS, num_rao_samples=2.5)
    with pytest.raises(InputError, match="index cannot be soft"):
        ConcreteCategorical(0.5, logits=LOGITS, estimator="gumbel-softmax")
    with pytest.raises(InputError, match="hard must be"):
        ConcreteBernoulli(0.5, logits=BERNOULLI_LOGITS, hard="yes")
    assert set(ESTIMATORS) == {"gumbel-softmax", *HARD}


def test_conditional_gumbel_respects_the_argmax_and_the_law():
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 0.0, -1.0], [-50.0, 0.0, 50.0]], dtype=torch.float64)
    index = torch.distributions.Categorical(logits=logits).sample((20000,))
    hard = torch.nn.functional.one_hot(index, 3).to(logits.dtype)
    noise = conditional_gumbel(logits, hard, 2)
    assert noise.shape == (2, 20000, 2, 3) and torch.isfinite(noise).all()
    assert torch.equal((logits + noise).argmax(-1), index.expand(2, -1, -1))
    # with D drawn from its law, the noise given D is unconditionally Gumbel(0, 1)
    euler_gamma = 0.5772156649
    mean = noise[:, :, 0].mean((0, 1))
    assert torch.allclose(mean, torch.full_like(mean, euler_gamma), atol=0.03)
    var = noise[:, :, 0].var((0, 1))
    assert torch.allclose(var, torch.full_like(var, math.pi**2 / 6), atol=0.08)


@pytest.mark.parametrize("family", ["one-hot", "binary"])
def test_gumbel_rao_gradient_is_the_surrogates_gradient(family):
    """The hand-written backward of "gumbel-rao" equals autograd through its surrogate
    ``mean_s softmax((logits + g_s) / tau)`` on the same conditional draws."""
    from pyrostruct.distributions.estimators import (
        gumbel_rao_binary_surrogate,
        gumbel_rao_surrogate,
        hard_binary,
        hard_one_hot,
    )

    tau = torch.tensor(0.7, dtype=torch.float64)
    weight = torch.randn(5, 4, dtype=torch.float64)
    if family == "one-hot":
        raw = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
        logits = raw.log_softmax(-1)
        soft = ((logits + torch.rand(5, 4, dtype=torch.float64)) / tau).softmax(-1)
        hard = torch.zeros_like(soft).scatter_(-1, soft.argmax(-1, keepdim=True), 1.0)
        torch.manual_seed(3)
        out = hard_one_hot("gumbel-rao", soft, soft.log(), logits, tau, 7)
        torch.manual_seed(3)
        surrogate = gumbel_rao_surrogate(logits, hard, tau, 7)
    else:
        raw = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
        logits = raw * 1.0
        noisy = logits + torch.randn(5, 4, dtype=torch.float64)
        soft = (noisy / tau).sigmoid()
        torch.manual_seed(3)
        out = hard_binary("gumbel-rao", soft, noisy, logits, tau, 7)
        torch.manual_seed(3)
        surrogate = gumbel_rao_binary_surrogate(logits, (noisy > 0).double(), tau, 7)
    (grad,) = torch.autograd.grad((out * weight).sum(), raw, retain_graph=True)
    (expected,) = torch.autograd.grad((surrogate * weight).sum(), raw)
    assert torch.allclose(grad, expected, atol=1e-12)
    assert torch.equal(out.detach(), hard if family == "one-hot" else (noisy > 0).double())


@pytest.mark.parametrize("k", [1, 2, 8, 32, 33, 200])
def test_softmax_helpers_equal_torchs(k):
    """``log_softmax`` / ``softmax`` (elementwise for small event sizes, torch's kernels
    above ``SMALL_EVENT``) give torch's values and gradients, with impossible categories."""
    from pyrostruct.distributions.estimators import log_softmax, softmax

    x = (5 * torch.randn(6, 3, k, dtype=torch.float64)).requires_grad_()
    blocked = torch.zeros(k, dtype=torch.bool)
    blocked[1::3] = True  # a logit -inf (no category at k = 1)
    xb = x.masked_fill(blocked, -math.inf)
    w = torch.randn(6, 3, k, dtype=torch.float64)
    for ours, theirs in ((log_softmax, torch.log_softmax), (softmax, torch.softmax)):
        a, b = ours(xb), theirs(xb, -1)
        assert torch.equal(torch.isinf(a), torch.isinf(b))
        finite = torch.isfinite(b)
        assert torch.allclose(a[finite], b[finite], atol=1e-12)
        (ga,) = torch.autograd.grad((a[finite] * w[finite]).sum(), x, retain_graph=True)
        (gb,) = torch.autograd.grad((b[finite] * w[finite]).sum(), x, retain_graph=True)
        assert torch.allclose(ga, gb, atol=1e-12)
