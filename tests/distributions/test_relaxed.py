"""Concrete / Gumbel-softmax distributions: exactness, sampling, gradients, shapes, bad input."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from pyrostruct.distributions import (
    ConcreteBernoulli,
    ConcreteCategorical,
    ConcreteOneHotCategorical,
    relax_distribution,
)

LOGITS3 = torch.tensor([0.3, -0.5, 1.0])


# ---------------------------------------------------------------- exactness


@pytest.mark.parametrize("tau", [2.0, 1.0, 0.5, 0.1, 0.01])
@pytest.mark.parametrize("logit", [-2.0, 0.0, 1.5])
def test_bernoulli_density_integrates_to_one_by_quadrature(tau, logit):
    # integrate p(y) dy over (0, 1) with the substitution y = sigmoid(l),
    # dy = sigmoid(l) sigmoid(-l) dl, on a fine grid of l.
    d = ConcreteBernoulli(tau, logits=torch.tensor(logit, dtype=torch.float64))
    half_width = 40.0 / tau
    grid = torch.linspace(-half_width, half_width, 400_001, dtype=torch.float64)
    log_jacobian = F.logsigmoid(grid) + F.logsigmoid(-grid)

    # (a) the log-space path: values carrying their logit, as rsample() returns them
    y = grid.sigmoid()
    y._concrete_logit_value = grid
    total = torch.trapezoid((d.log_prob(y) + log_jacobian).exp(), grid).item()
    assert total == pytest.approx(1.0, abs=1e-4)

    # (b) the y-space path on plain values (float64 resolves y near 0 and 1 only
    # while the mass sits at |l| < 36, i.e. at moderate temperatures)
    if tau >= 0.5:
        plain = grid.sigmoid()
        keep = (plain > 0) & (plain < 1)
        integrand = (d.log_prob(plain[keep]) + log_jacobian[keep]).exp()
        assert torch.trapezoid(integrand, grid[keep]).item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("tau", [1.0, 0.5, 0.3])
def test_categorical_density_normalized_by_importance_sampling(tau):
    # E_q[p(y)/q(y)] = 1 for any proposal q on the simplex. q = Dirichlet(tau/3, ...)
    # shares the Lebesgue base measure on K-1 coordinates and has heavier corners
    # than the Concrete density (which behaves like a Dirichlet with total mass tau
    # near each vertex), so the weights have finite variance.
    torch.manual_seed(0)
    logits = LOGITS3.double()
    p = ConcreteOneHotCategorical(tau, logits=logits)
    q = dist.Dirichlet(torch.full((3,), tau / 3, dtype=torch.float64))
    y = q.sample((400_000,))
    y = y[(y > 0).all(-1)]
    w = (p.log_prob(y) - q.log_prob(y)).exp()
    mean, stderr = w.mean().item(), (w.std() / math.sqrt(len(w))).item()
    assert abs(mean - 1.0) < max(4 * stderr, 1e-3), (mean, stderr)
    assert stderr < 0.03


@pytest.mark.parametrize("tau", [1.0, 0.5, 0.3])
def test_matches_pyro_density_where_pyro_is_accurate(tau):
    pyro.set_rng_seed(1)
    logits = torch.tensor([[0.3, -0.5, 1.0], [2.0, 0.0, -1.0]], dtype=torch.float64)
    ours = ConcreteOneHotCategorical(tau, logits=logits)
    y = ours.rsample((50,))
    theirs = dist.RelaxedOneHotCategorical(torch.tensor(tau, dtype=torch.float64), logits=logits)
    assert torch.allclose(ours.log_prob(y), theirs.log_prob(y.clone()), rtol=1e-8, atol=1e-8)

    blogits = torch.tensor([0.3, -1.0, 2.5], dtype=torch.float64)
    ours_b = ConcreteBernoulli(tau, logits=blogits)
    yb = ours_b.rsample((50,))
    theirs_b = dist.RelaxedBernoulli(torch.tensor(tau, dtype=torch.float64), logits=blogits)
    assert torch.allclose(ours_b.log_prob(yb), theirs_b.log_prob(yb.clone()), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("tau", [0.05, 0.01])
def test_log_prob_finite_and_accurate_at_low_temperature_where_pyro_fails(tau):
    # The measurement: Pyro's RelaxedOneHotCategorical scores many of its
    # own float32 samples as non-finite at low temperature. Ours stays finite and
    # agrees with a float64 evaluation at the same (log-space) point.
    pyro.set_rng_seed(2)
    n = 20_000
    theirs = dist.RelaxedOneHotCategorical(torch.tensor(tau), logits=LOGITS3, validate_args=False)
    their_lp = theirs.log_prob(theirs.sample((n,)))
    their_bad = (~torch.isfinite(their_lp)).float().mean().item()
    assert their_bad > (0.02 if tau == 0.05 else 0.5)

    ours = ConcreteOneHotCategorical(tau, logits=LOGITS3)
    y = ours.rsample((n,))
    lp = ours.log_prob(y)
    assert torch.isfinite(lp).all()
    # float64 evaluation at the same point (the float32 log-space sample, promoted)
    log_y = y._concrete_log_value.double()
    point = log_y.exp()
    point._concrete_log_value = log_y
    reference = ConcreteOneHotCategorical(tau, logits=LOGITS3.double()).log_prob(point)
    assert torch.allclose(lp.double(), reference, rtol=1e-5, atol=1e-3)


def test_samples_pass_simplex_support_check_where_pyros_fail():
    pyro.set_rng_seed(3)
    n = 20_000
    theirs = dist.RelaxedOneHotCategorical(torch.tensor(0.1), logits=LOGITS3, validate_args=False)
    assert (~theirs.support.check(theirs.sample((n,)))).any()
    for tau in [0.1, 0.01]:
        ours = ConcreteOneHotCategorical(tau, logits=LOGITS3, validate_args=True)
        assert ours.support.check(ours.sample((n,))).all()


@pytest.mark.parametrize("tau, pyro_wrong", [(0.05, 0.3), (0.01, 0.8)])
def test_bernoulli_log_prob_accurate_at_low_temperature_where_pyro_is_not(tau, pyro_wrong):
    pyro.set_rng_seed(4)
    logits = torch.tensor(0.7)
    ours = ConcreteBernoulli(tau, logits=logits)
    y = ours.rsample((5_000,))
    lp = ours.log_prob(y)
    logit64 = y._concrete_logit_value.double()
    # float64 truth at the same point, in logit space (Maddison et al., eq. for BinConcrete)
    diff = logits.double() - tau * logit64
    softplus = torch.nn.functional.softplus
    truth = math.log(tau) + diff - 2 * softplus(diff) + softplus(logit64) + softplus(-logit64)
    assert torch.isfinite(lp).all()
    assert torch.allclose(lp.double(), truth, rtol=1e-5, atol=1e-3)
    theirs = dist.RelaxedBernoulli(torch.tensor(tau), logits=logits).log_prob(y.clone())
    # Pyro inverts a saturated sigmoid (clamped): its density is far off for most samples
    assert ((theirs.double() - truth).abs() > 1.0).float().mean() > pyro_wrong


# ---------------------------------------------------------------- sampling


def test_hard_one_hot_frequencies_match_categorical_chi_square():
    pyro.set_rng_seed(5)
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    n = 20_000
    y = ConcreteOneHotCategorical(0.1, probs=probs, hard=True).sample((n,))
    counts = y.sum(0)
    assert counts.sum().item() == n
    chi2 = ((counts - n * probs) ** 2 / (n * probs)).sum().item()
    assert stats.chi2.sf(chi2, df=3) > 0.01


def test_hard_bernoulli_and_index_frequencies_match():
    pyro.set_rng_seed(6)
    n = 20_000
    z = ConcreteBernoulli(0.05, probs=torch.tensor(0.3), hard=True).sample((n,))
    assert set(z.unique().tolist()) <= {0.0, 1.0}
    assert stats.binomtest(int(z.sum()), n, 0.3).pvalue > 0.01

    probs = torch.tensor([0.5, 0.3, 0.2])
    idx = ConcreteCategorical(0.1, probs=probs).sample((n,))
    counts = torch.stack([(idx == k).sum() for k in range(3)]).double()
    assert counts.sum().item() == n
    chi2 = ((counts - n * probs.double()) ** 2 / (n * probs.double())).sum().item()
    assert stats.chi2.sf(chi2, df=2) > 0.01


@pytest.mark.parametrize("tau", [1.0, 0.3, 0.01])
def test_straight_through_forward_is_exactly_one_hot_and_gradient_is_relaxed(tau):
    logits = torch.randn(6, 5, requires_grad=True)
    weights = torch.randn(5)

    pyro.set_rng_seed(7)
    hard = ConcreteOneHotCategorical(tau, logits=logits, hard=True).rsample((4,))
    assert ((hard == 0) | (hard == 1)).all()
    assert (hard.sum(-1) == 1).all()
    (grad_hard,) = torch.autograd.grad((hard * weights).sum(), logits)

    pyro.set_rng_seed(7)
    soft = ConcreteOneHotCategorical(tau, logits=logits).rsample((4,))
    assert torch.equal(hard.argmax(-1), soft.argmax(-1))
    (grad_soft,) = torch.autograd.grad((soft * weights).sum(), logits)
    assert torch.allclose(grad_hard, grad_soft)
    assert grad_soft.abs().sum() > 0

    blogits = torch.randn(7, requires_grad=True)
    pyro.set_rng_seed(8)
    bh = ConcreteBernoulli(tau, logits=blogits, hard=True).rsample((3,))
    assert ((bh == 0) | (bh == 1)).all()
    (gh,) = torch.autograd.grad((bh * torch.arange(7.0)).sum(), blogits)
    pyro.set_rng_seed(8)
    bs = ConcreteBernoulli(tau, logits=blogits).rsample((3,))
    (gs,) = torch.autograd.grad((bs * torch.arange(7.0)).sum(), blogits)
    assert torch.allclose(gh, gs)


def test_hard_log_prob_scores_the_relaxed_sample():
    pyro.set_rng_seed(9)
    d_hard = ConcreteOneHotCategorical(0.5, logits=LOGITS3, hard=True)
    d_soft = ConcreteOneHotCategorical(0.5, logits=LOGITS3)
    pyro.set_rng_seed(9)
    h = d_hard.rsample((10,))
    pyro.set_rng_seed(9)
    s = d_soft.rsample((10,))
    assert torch.allclose(d_hard.log_prob(h), d_soft.log_prob(s.clone()))


def test_categorical_index_is_exact_integer_with_relaxed_gradient():
    logits = torch.randn(4, 3, requires_grad=True)
    d = ConcreteCategorical(0.5, logits=logits)
    z = d.rsample((5,))
    assert z.shape == (5, 4) and z.dtype == torch.long
    assert ((z >= 0) & (z <= 2)).all()
    assert d.support.check(z).all()
    # as a number, the index is sum_k k y_k: exact forward, relaxed gradient
    number = z.float()
    assert torch.equal(number, z.as_plain().float())
    (g,) = torch.autograd.grad(number.sum(), logits)
    assert g.abs().sum() > 0
    assert torch.isfinite(d.log_prob(z)).all() and d.log_prob(z).shape == (5, 4)


def test_categorical_log_prob_is_the_categorical_log_probability_with_a_straight_through_path():
    logits = torch.tensor(
        [[0.3, -0.5, 1.0], [2.0, 0.0, -1.0]], dtype=torch.float64, requires_grad=True
    )
    d = ConcreteCategorical(0.5, logits=logits)
    pyro.set_rng_seed(3)
    z = d.rsample((7,))
    expected = dist.Categorical(logits=logits).log_prob(z.as_plain())
    assert torch.equal(d.log_prob(z), expected)
    # d log_prob / d y_k = log p_k: the straight-through linearization sum_k y_k log p_k
    (g,) = torch.autograd.grad(d.log_prob(z).sum(), z.__dict__["_scored"])
    assert torch.allclose(g, logits.log_softmax(-1).detach().expand(7, 2, 3))
    # plain integer values (e.g. from a Categorical guide) are scored too
    plain = torch.tensor([[0, 2], [1, 1]])
    assert torch.equal(d.log_prob(plain), dist.Categorical(logits=logits).log_prob(plain))


def test_bias_of_relaxed_gradient_shrinks_with_temperature():
    # E_{z ~ Bernoulli(sigmoid(phi))}[f(z)] = p f(1) + (1 - p) f(0) has gradient
    # p (1 - p) (f(1) - f(0)); the relaxed pathwise estimator d/dphi f(y_tau) is
    # unbiased for d/dphi E[f(y_tau)], which tends to it as tau -> 0.
    def f(y):
        return (y - 0.3) ** 2 + 2 * y**3

    phi = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    p = torch.sigmoid(phi).item()
    true_grad = p * (1 - p) * (f(torch.tensor(1.0)) - f(torch.tensor(0.0))).item()
    biases = []
    for tau in [1.0, 0.5, 0.2]:
        pyro.set_rng_seed(10)
        y = ConcreteBernoulli(tau, logits=phi).rsample((400_000,))
        (grad,) = torch.autograd.grad(f(y).mean(), phi)
        biases.append(abs(grad.item() - true_grad))
    assert biases[0] > biases[1] > biases[2]
    assert biases[2] < 0.25 * biases[0]
    assert biases[2] < 0.05 * abs(true_grad)


# ---------------------------------------------------------------- shapes


def test_batched_temperature_and_hard_flag_survive_expand():
    # (shapes, expand, support, validation, pickling: the generic tests in test_distributions.py)
    # batched temperatures really apply per batch element
    d2 = ConcreteOneHotCategorical(torch.tensor([0.01, 5.0]), logits=torch.zeros(2, 3))
    y2 = d2.sample((2000,))
    assert y2[:, 0].max(-1).values.mean() > 0.99 and y2[:, 1].max(-1).values.mean() < 0.6

    b = ConcreteBernoulli(0.5, probs=torch.full((3, 2), 0.3), hard=True)
    eb = b.expand((4, 3, 2))
    assert eb.hard and set(eb.rsample().unique().tolist()) <= {0.0, 1.0}
    ind = b.to_event(1)
    assert ind.log_prob(ind.rsample((6,))).shape == (6, 3)
    assert ConcreteCategorical(0.5, logits=torch.zeros(3, 5)).num_categories == 5


def test_relax_distribution_maps_each_discrete_family():
    assert isinstance(relax_distribution(dist.Bernoulli(0.3), 0.5), ConcreteBernoulli)
    assert isinstance(
        relax_distribution(dist.Categorical(logits=torch.zeros(3)), 0.5), ConcreteCategorical
    )
    oh = relax_distribution(dist.OneHotCategorical(logits=torch.zeros(3)), 0.5, hard=True)
    assert isinstance(oh, ConcreteOneHotCategorical) and oh.hard
    wrapped = relax_distribution(dist.Bernoulli(torch.full((2, 3), 0.3)).to_event(1), 0.5)
    assert isinstance(wrapped.base_dist, ConcreteBernoulli) and wrapped.event_shape == (3,)
    normal = dist.Normal(0.0, 1.0)
    assert relax_distribution(normal, 0.5) is normal
    with pytest.raises(NotImplementedError, match="site 'counts'.*Poisson"):
        relax_distribution(dist.Poisson(3.0), 0.5, site="counts")


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("cls", [ConcreteBernoulli, ConcreteOneHotCategorical, ConcreteCategorical])
@pytest.mark.parametrize("tau", [0.0, -0.5, float("nan"), float("inf"), torch.tensor([0.5, -1.0])])
def test_bad_temperature_raises(cls, tau):
    with pytest.raises(ValueError, match="temperature"):
        cls(tau, logits=torch.zeros(2, 3))


def test_wrong_shapes_and_arguments_raise():
    with pytest.raises(ValueError, match="does not broadcast to the batch shape"):
        ConcreteOneHotCategorical(torch.ones(5), logits=torch.zeros(3, 4))
    with pytest.raises(ValueError, match="does not broadcast to the batch shape"):
        ConcreteBernoulli(torch.ones(2), logits=torch.zeros(3))
    with pytest.raises(ValueError, match="shape \\(\\.\\.\\., K\\)"):
        ConcreteOneHotCategorical(0.5, logits=torch.tensor(1.0))
    with pytest.raises(ValueError, match="exactly one of"):
        ConcreteBernoulli(0.5, probs=torch.tensor(0.3), logits=torch.tensor(0.0))
    with pytest.raises(ValueError, match="exactly one of"):
        ConcreteOneHotCategorical(0.5)
    with pytest.raises(ValueError, match="temperature must be a positive float"):
        ConcreteBernoulli("hot", logits=torch.zeros(2))
    with pytest.raises(ValueError, match="probs"):
        ConcreteOneHotCategorical(0.5, probs=torch.tensor([-0.1, 1.1]))
    with pytest.raises(ValueError, match="support"):
        ConcreteCategorical(0.5, logits=torch.zeros(3), validate_args=True).log_prob(
            torch.tensor(3)
        )
    with pytest.raises(ValueError, match="support"):
        ConcreteOneHotCategorical(0.5, logits=LOGITS3, validate_args=True).log_prob(
            torch.tensor([0.5, 0.6, 0.1])
        )


# ---------------------------------------------------------------- issue 17 defects


def _log_prob_grad(make_value, dist_fn, seed=0):
    logits = torch.tensor([[0.3, -0.5, 1.0, 0.2], [1.0, 0.0, -1.0, 0.5]], requires_grad=True)
    torch.manual_seed(seed)
    d = dist_fn(logits)
    return torch.autograd.grad(d.log_prob(make_value(d)).sum(), logits)[0]


@pytest.mark.parametrize(
    "derive",
    [
        lambda z: z.clone(),
        lambda z: z.reshape(-1).reshape(z.shape),
        lambda z: z.unsqueeze(0).squeeze(0),
        lambda z: z.long(),
        lambda z: torch.stack([z[0], z[1]]),
    ],
    ids=["clone", "reshape", "unsqueeze", "long", "stack"],
)
def test_categorical_log_prob_keeps_its_straight_through_path_on_derived_values(derive):
    # the straight-through term of log_prob (d log_prob / d y_k = log p_k) was dropped
    # for any value other than the exact output of rsample: a different gradient
    def make(d):
        return d.rsample()

    def dist_fn(logits):
        return ConcreteCategorical(0.5, logits=logits, validate_args=True)

    exact = _log_prob_grad(make, dist_fn)
    derived = _log_prob_grad(lambda d: derive(d.rsample()), dist_fn)
    assert_close = torch.testing.assert_close
    assert_close(derived, exact)
    # the test has teeth: without the straight-through term the gradient differs
    plain = _log_prob_grad(lambda d: d.rsample().as_plain(), dist_fn)
    assert not torch.allclose(plain, exact)
    # and the derived value is still scored with the hard index (the forward value)
    torch.manual_seed(0)
    d = dist_fn(torch.zeros(2, 4, requires_grad=True))
    z = d.rsample()
    assert_close(d.log_prob(derive(z)), d.log_prob(z))


def test_categorical_log_prob_through_pyros_expanded_distribution():
    from pyro.distributions.torch_distribution import ExpandedDistribution

    logits = torch.tensor([0.3, -0.5, 1.0, 0.2], requires_grad=True)
    grads = []
    for expand in (ExpandedDistribution, lambda base, shape: base.expand(shape)):
        torch.manual_seed(0)  # the same noise either way
        d = expand(ConcreteCategorical(0.5, logits=logits, validate_args=True), (2, 3))
        z = d.rsample()
        grads.append(torch.autograd.grad(d.log_prob(z).sum(), logits)[0])
    torch.testing.assert_close(grads[0], grads[1])


def test_a_masked_category_gives_the_concrete_density_of_the_others():
    """Hostile sweep: a category of logit -inf (a standard way to forbid it) made log_prob
    NaN (-inf + inf). The density lives on the face of the other categories: it equals
    the Concrete density over them, and a point with mass on the masked one has -inf."""
    from pyrostruct.distributions import ConcreteOneHotCategorical

    torch.manual_seed(0)
    masked = ConcreteOneHotCategorical(0.5, logits=torch.tensor([0.3, -math.inf, 1.0]))
    y = masked.rsample((200,))
    assert (y[:, 1] == 0).all()
    face = ConcreteOneHotCategorical(0.5, logits=torch.tensor([0.3, 1.0]))
    want = face.log_prob(y[:, [0, 2]].clone())  # the same points, scored from their values
    got = masked.log_prob(y.clone())
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert torch.isfinite(masked.log_prob(y)).all()
    off = torch.tensor([0.5, 0.2, 0.3])
    assert masked.log_prob(off) == -math.inf


def test_the_relaxed_guide_rules_out_the_categories_its_prior_rules_out():
    """With relax and auto_guide a masked OneHotCategorical site gave an infinite ELBO:
    the guide put mass on the category the prior forbids."""
    from pyro.infer import Trace_ELBO

    from pyrostruct import auto_guide, relax

    def model():
        with pyro.plate("n", 5):
            pyro.sample("z", dist.OneHotCategorical(logits=torch.tensor([0.0, -math.inf, 1.0])))

    relaxed = relax(model)
    guide = auto_guide(relaxed)
    losses = [Trace_ELBO().loss(relaxed, guide) for _ in range(20)]
    assert all(math.isfinite(loss) for loss in losses)
    with pyro.poutine.trace() as tr:
        guide()
    assert (tr.trace.nodes["z"]["value"][..., 1] == 0).all()


def test_binary_concrete_density_at_exact_zero_and_one_is_its_limit():
    """Hostile sweep: log_prob(0.0) and log_prob(1.0), values the support admits (a detached
    hard sample), were NaN. The density's limit there: +inf for tau < 1, -inf for tau > 1,
    and at tau = 1 the finite values -logit (y = 0) and +logit (y = 1)."""
    from pyrostruct.distributions import ConcreteBernoulli

    edges = torch.tensor([0.0, 1.0], dtype=torch.float64)
    logit = torch.tensor(0.7, dtype=torch.float64)
    low = ConcreteBernoulli(torch.tensor(0.5, dtype=torch.float64), logits=logit)
    high = ConcreteBernoulli(torch.tensor(2.0, dtype=torch.float64), logits=logit)
    one = ConcreteBernoulli(torch.tensor(1.0, dtype=torch.float64), logits=logit)
    assert low.log_prob(edges).tolist() == [math.inf, math.inf]
    assert high.log_prob(edges).tolist() == [-math.inf, -math.inf]
    near = one.log_prob(torch.tensor([1e-12, 1 - 1e-12], dtype=torch.float64))
    torch.testing.assert_close(one.log_prob(edges), near, rtol=0, atol=1e-6)
    torch.testing.assert_close(one.log_prob(edges), torch.stack([-logit, logit]))
