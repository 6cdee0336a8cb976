"""Tests for OrderedDAG and SmoothOrientationDAG.

Enumeration is the oracle: the exact marginal log_prob sums to one over all 25
(543) DAGs on 3 (4) nodes, the joint sums to one over (order, DAG) pairs, and
sample frequencies pass a chi-square test against it. Acyclicity is a
hypothesis property checked by networkx and by the batched torch check.
"""

import itertools
import math
import warnings

import networkx as nx
import pyro
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pyro.distributions.testing.gof import multinomial_goodness_of_fit
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyrostruct.distributions import (
    ErdosRenyiDAG,
    OrderedDAG,
    OrderLostWarning,
    PlackettLuce,
    SmoothOrientationDAG,
    get_order,
)
from pyrostruct.distributions._dag_ops import order_edge_sample
from pyrostruct.distributions.temperature import ExponentialSchedule
from pyrostruct.graph import NUM_DAGS, enumerate_dags, is_acyclic

TEST_FAILURE_RATE = 1e-3


def _make(kind, scores, edge_logits, **kw):
    if kind == "ordered":
        return OrderedDAG(scores, edge_logits, **kw)
    return SmoothOrientationDAG(scores, edge_logits, shift=0.3, **kw)


def _nx_acyclic(adj):
    g = nx.DiGraph()
    g.add_nodes_from(range(adj.shape[-1]))
    g.add_edges_from((adj != 0).nonzero().tolist())
    return nx.is_directed_acyclic_graph(g)


# ---------------------------------------------------------------------------
# acyclicity by construction (property tests)


@given(
    d=st.integers(1, 200),
    logit_scale=st.sampled_from([0.0, 1e-6, 1.0, 30.0, 1e4, 1e30]),
    score_scale=st.sampled_from([0.0, 1e-8, 1.0, 1e4, 1e30]),
    round_scores=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    kind=st.sampled_from(["ordered", "smooth"]),
    seed=st.integers(0, 2**16),
)
def test_every_hard_sample_is_acyclic(d, logit_scale, score_scale, round_scores, dtype, kind, seed):
    gen = torch.Generator().manual_seed(seed)
    scores = score_scale * torch.randn(d, generator=gen, dtype=dtype)
    if round_scores:  # many exact ties
        scores = scores.sign() * score_scale
    edge_logits = logit_scale * torch.randn(d, d, generator=gen, dtype=dtype)
    if logit_scale == 0.0:
        edge_logits = edge_logits + 50.0  # dense: every forward pair is an edge
    torch.manual_seed(seed)
    dist = _make(kind, scores.requires_grad_(), edge_logits.requires_grad_(), temperature=0.5)
    samples = [dist.sample((2,)), dist.rsample((2,))]
    for value in samples:
        assert value.dtype == dtype and value.shape == (2, d, d)
        assert ((value == 0) | (value == 1)).all()
        assert is_acyclic(value).all()
        assert dist.support.check(value).all()
        assert all(_nx_acyclic(a) for a in value.detach())
        lp = dist.log_prob(value)
        assert not torch.isnan(lp).any() and (lp > -math.inf).all()
    # straight-through gradients stay finite for extreme parameters
    (samples[1] * torch.randn(d, d, generator=gen, dtype=dtype)).sum().backward()
    assert torch.isfinite(scores.grad).all()
    assert torch.isfinite(edge_logits.grad).all()
    if logit_scale == 0.0 and d > 1:  # complete DAG: every forward pair present
        assert (samples[0].sum((-1, -2)) == d * (d - 1) // 2).all()


def test_infinite_edge_logits_force_and_forbid_edges():
    logits = torch.full((4, 4), -math.inf)
    logits[0, 1] = logits[1, 0] = math.inf
    dist = OrderedDAG(torch.zeros(4), logits)
    value = dist.sample((200,))
    pair = value[:, 0, 1] + value[:, 1, 0]
    assert (pair == 1).all()  # exactly one orientation of the forced pair
    assert value.sum((-1, -2)).eq(1).all()
    assert torch.isfinite(dist.log_prob(value)).all()
    assert dist.marginal_log_prob(torch.zeros(4, 4)).item() == -math.inf


# ---------------------------------------------------------------------------
# exact normalization


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("kind", ["ordered", "smooth"])
@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_marginal_log_prob_sums_to_one_over_all_dags(d, kind, dtype):
    dist = _make(kind, 2 * torch.randn(d, dtype=dtype), 3 * torch.randn(d, d, dtype=dtype))
    values = dist.enumerate_support()
    assert len(values) == NUM_DAGS[d]
    lp = dist.log_prob(values)
    assert torch.isfinite(lp).all()
    assert abs(lp.logsumexp(0).item()) < (1e-5 if dtype == torch.float32 else 1e-10)


def test_marginal_sums_to_one_over_29281_dags_on_5_nodes():
    dist = OrderedDAG(torch.randn(5, dtype=torch.float64), torch.randn(5, 5, dtype=torch.float64))
    assert abs(dist.log_prob(dist.enumerate_support()).logsumexp(0).item()) < 1e-10


def test_joint_log_prob_sums_to_one_over_orders_and_dags():
    d = 3
    dist = OrderedDAG(torch.randn(d, dtype=torch.float64), torch.randn(d, d, dtype=torch.float64))
    values = enumerate_dags(d, dtype=torch.float64)
    total = []
    for order in itertools.permutations(range(d)):
        lp = dist.log_prob(values, order=torch.tensor(order).expand(len(values), d))
        total.append(lp)
    total = torch.stack(total)  # (orders, dags); -inf where the DAG is not forward in the order
    assert abs(total.logsumexp((0, 1)).item()) < 1e-12
    # the marginal is the sum of the joint over linear extensions
    assert torch.allclose(total.logsumexp(0), dist.marginal_log_prob(values), atol=1e-12)
    # each order carries 2^3 compatible DAGs
    assert (total > -math.inf).sum().item() == math.factorial(d) * 2**3


def test_joint_log_prob_closed_form():
    scores = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    logits = torch.tensor(
        [[0.0, 1.0, -2.0], [0.3, 0.0, 0.7], [1.5, -0.4, 0.0]], dtype=torch.float64
    )
    dist = OrderedDAG(scores, logits)
    order = torch.tensor([2, 0, 1])  # 2 first, then 0, then 1
    value = torch.zeros(3, 3, dtype=torch.float64)
    value[2, 1] = 1.0  # 2 -> 1
    p = torch.sigmoid(logits)
    expected = PlackettLuce(scores).log_prob_order(order) + torch.log(
        (1 - p[2, 0]) * p[2, 1] * (1 - p[0, 1])
    )
    assert dist.log_prob(value, order=order).item() == pytest.approx(expected.item(), abs=1e-12)
    # an edge against the order is impossible under the joint
    back = value.clone()
    back[1, 2] = 1.0
    back[2, 1] = 0.0
    assert dist.log_prob(back, order=order).item() == -math.inf


def test_marginal_is_refused_beyond_the_exact_limit():
    dist = OrderedDAG(torch.zeros(13), torch.zeros(13, 13))
    with pytest.raises(ValueError, match="d <= 12"):
        dist.marginal_log_prob(torch.zeros(13, 13))
    value = dist.sample()  # carries its order: joint log_prob works at any d
    assert torch.isfinite(dist.log_prob(value))


# ---------------------------------------------------------------------------
# sampling agrees with log_prob


def _dag_index(values):
    d = values.shape[-1]
    weights = 2 ** torch.arange(d * d)
    return (values.reshape(-1, d * d).long() * weights).sum(-1)


@pytest.mark.parametrize("kind", ["ordered", "smooth"])
def test_chi_square_of_sample_frequencies_over_the_25_dags(kind):
    pyro.set_rng_seed(3)
    dist = _make(
        kind,
        torch.tensor([0.5, -0.3, 0.1]),
        torch.tensor([[0, 1.0, -1], [0.5, 0, 0], [-0.5, 2, 0]]),
    )
    support = dist.enumerate_support()
    probs = dist.log_prob(support).exp()
    samples = dist.sample((20000,))
    keys = _dag_index(support)
    lookup = {k: i for i, k in enumerate(keys.tolist())}
    counts = torch.zeros(len(support))
    for k in _dag_index(samples).tolist():
        counts[lookup[k]] += 1  # KeyError would mean a non-DAG sample
    assert multinomial_goodness_of_fit(probs, counts) > TEST_FAILURE_RATE
    # power: a different parameter value is rejected
    other = _make(kind, torch.zeros(3), torch.zeros(3, 3)).log_prob(support).exp()
    assert multinomial_goodness_of_fit(other, counts) < TEST_FAILURE_RATE


def test_rsample_has_the_same_distribution_as_sample():
    pyro.set_rng_seed(4)
    dist = OrderedDAG(torch.tensor([1.0, 0.0, -1.0], requires_grad=True), torch.zeros(3, 3))
    support = dist.enumerate_support()
    probs = dist.log_prob(support).exp().detach()
    keys = {k: i for i, k in enumerate(_dag_index(support).tolist())}
    counts = torch.zeros(len(support))
    for k in _dag_index(dist.rsample((10000,)).detach()).tolist():
        counts[keys[k]] += 1
    assert multinomial_goodness_of_fit(probs, counts) > TEST_FAILURE_RATE


def test_sampled_order_is_plackett_luce():
    pyro.set_rng_seed(5)
    scores = torch.tensor([1.0, 0.0, -0.5])
    orders = get_order(OrderedDAG(scores, torch.zeros(3, 3)).sample((12000,)))
    perms = list(itertools.permutations(range(3)))
    counts = torch.tensor([float((orders == torch.tensor(p)).all(-1).sum()) for p in perms])
    probs = PlackettLuce(scores).log_prob_order(torch.tensor(perms)).exp()
    assert multinomial_goodness_of_fit(probs, counts) > TEST_FAILURE_RATE


def test_smooth_orientation_priorities_point_upstream():
    # COSMO convention: lower priority = upstream; edges go from low to high priority
    dist = SmoothOrientationDAG(torch.tensor([0.0, 100.0, 200.0]), torch.full((3, 3), 50.0))
    value = dist.sample((10,))
    expected = torch.tensor([[0.0, 1, 1], [0, 0, 1], [0, 0, 0]])
    assert (value == expected).all()
    assert torch.allclose(dist.priorities, torch.tensor([0.0, 100.0, 200.0]))


# ---------------------------------------------------------------------------
# gradients


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("temperature,shift", [(1.0, 0.0), (0.3, 0.5)])
@pytest.mark.parametrize("shared_logits", [True, False])
def test_fused_backward_matches_autograd_of_the_relaxed_sample(
    dtype, temperature, shift, shared_logits
):
    """The analytic backward equals autograd through sigma((g_i-g_j-shift)/tau) sigma((l+L)/tau)."""
    n, d = 5, 7
    g = torch.randn(n, d, dtype=dtype, requires_grad=True)
    shape = (d, d) if shared_logits else (n, d, d)
    logits = torch.randn(shape, dtype=dtype, requires_grad=True)
    weight = torch.randn(n, d, d, dtype=dtype)
    torch.manual_seed(11)
    adj, order = order_edge_sample(g, logits, temperature, shift)
    (adj * weight).sum().backward()
    grad_g, grad_l = g.grad.clone(), logits.grad.clone()
    # same noise again: the kernel draws U with one uniform_ call per chunk
    torch.manual_seed(11)
    u = torch.rand(n, d, d, dtype=dtype)
    g.grad = logits.grad = None
    soft_edges = torch.sigmoid((logits + torch.logit(u)) / temperature)
    soft_orient = torch.sigmoid((g.unsqueeze(-1) - g.unsqueeze(-2) - shift) / temperature)
    off_diagonal = ~torch.eye(d, dtype=torch.bool)  # the diagonal logits get no gradient
    (soft_edges * soft_orient * weight * off_diagonal).sum().backward()
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert torch.allclose(grad_g, g.grad, atol=tol)
    assert torch.allclose(grad_l, logits.grad, atol=tol)
    # and the forward value is the hard version of the same noise
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(d).expand(n, d))
    hard = (u > torch.sigmoid(-logits)) & (rank.unsqueeze(-1) < rank.unsqueeze(-2))
    assert torch.equal(adj.detach(), hard.to(dtype))


@pytest.mark.parametrize(
    "kind,kw",
    [
        ("ordered", {}),
        ("ordered", {"relaxation": "softsort"}),
        ("ordered", {"relaxation": "sinkhorn"}),
        ("ordered", {"hard": False}),
        ("smooth", {}),
        ("smooth", {"hard": False}),
    ],
)
def test_rsample_gradients_are_finite_and_nonzero(kind, kw):
    d = 6
    scores = torch.randn(d, requires_grad=True)
    logits = torch.randn(d, d, requires_grad=True)
    dist = _make(kind, scores, logits, temperature=0.7, **kw)
    value = dist.rsample((32,))
    weight = torch.randn(d, d)
    (value * weight).sum().backward()
    assert torch.isfinite(scores.grad).all() and torch.isfinite(logits.grad).all()
    assert (scores.grad.abs() > 0).all()
    off_diag = ~torch.eye(d, dtype=torch.bool)
    assert (logits.grad[off_diag].abs() > 0).all()
    if dist.hard:
        assert ((value == 0) | (value == 1)).all()
    else:
        assert ((value > 0) & (value < 1)).any()


def _fit_target(target, steps, lr, batch=16):
    d = target.shape[-1]
    scores = torch.zeros(d, requires_grad=True)
    logits = torch.zeros(d, d, requires_grad=True)
    opt = torch.optim.Adam([scores, logits], lr=lr)
    for _ in range(steps):
        value = OrderedDAG(scores, logits, temperature=0.5).rsample((batch,))
        loss = (value - target).abs().sum((-1, -2)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return OrderedDAG(scores.detach(), logits.detach())


@pytest.mark.parametrize("d,steps,lr", [(5, 300, 0.1), (20, 1000, 0.2)])
def test_adam_on_relaxed_samples_recovers_a_target_dag(d, steps, lr):
    pyro.set_rng_seed(0)
    gen = torch.Generator().manual_seed(d)
    perm = torch.randperm(d, generator=gen)
    target = (torch.rand(d, d, generator=gen) < 0.3).float().triu(1)[perm][:, perm]
    assert target.sum() >= d // 3  # a non-trivial target
    fitted = _fit_target(target, steps, lr=lr)
    assert torch.equal(fitted.mode, target)
    samples = fitted.sample((500,))
    assert (samples == target).all(-1).all(-1).float().mean() > 0.5
    assert (samples - target).abs().sum((-1, -2)).mean() < 0.5  # mean Hamming distance


# ---------------------------------------------------------------------------
# Pyro conventions


# (shapes, expand, support, validation, pickling: the generic tests in test_distributions.py)


def test_scores_and_logits_broadcast_and_orders_follow_the_batch():
    dist = OrderedDAG(torch.randn(2, 1, 4), torch.randn(3, 4, 4))
    assert dist.batch_shape == (2, 3) and dist.event_shape == (4, 4)
    value = dist.rsample((5,))
    assert get_order(value).shape == (5, 2, 3, 4)
    big = OrderedDAG(torch.zeros(4), torch.zeros(4, 4)).expand((6, 2))
    assert big.enumerate_support().shape == (543, 6, 2, 4, 4)
    assert big.enumerate_support(expand=False).shape == (543, 1, 1, 4, 4)
    smooth = SmoothOrientationDAG(torch.zeros(4), torch.zeros(4, 4), shift=0.2).expand((3,))
    assert smooth.shift == 0.2


def test_batched_parameters_sample_independently():
    scores = torch.stack([torch.tensor([100.0, 0.0, -100.0]), torch.tensor([-100.0, 0.0, 100.0])])
    dist = OrderedDAG(scores, torch.full((3, 3), 100.0))
    value = dist.sample()
    assert torch.equal(value[0], torch.tensor([[0.0, 1, 1], [0, 0, 1], [0, 0, 0]]))
    assert torch.equal(value[1], value[0].T)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(scores=torch.tensor([0.0, float("nan"), 1.0]), edge_logits=torch.zeros(3, 3)), "NaN"),
        (dict(scores=torch.zeros(3), edge_logits=torch.full((3, 3), float("nan"))), "NaN"),
        (dict(scores=torch.zeros(3), edge_logits=torch.zeros(3, 4)), "square edge_logits"),
        (dict(scores=torch.zeros(4), edge_logits=torch.zeros(3, 3)), "do not match"),
        (dict(scores=torch.zeros(2, 3), edge_logits=torch.zeros(4, 3, 3)), "do not broadcast"),
        (
            dict(scores=torch.zeros(3), edge_logits=torch.zeros(3, 3), temperature=0.0),
            "temperature > 0",
        ),
        (
            dict(scores=torch.zeros(3), edge_logits=torch.zeros(3, 3), temperature=-2.0),
            "temperature > 0",
        ),
        (
            dict(scores=torch.zeros(3), edge_logits=torch.zeros(3, 3), temperature=float("nan")),
            "temperature > 0",
        ),
        (dict(scores=torch.zeros(3), edge_logits=torch.zeros(3, 3), relaxation="x"), "relaxation"),
    ],
)
def test_validation_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OrderedDAG(validate_args=True, **kwargs)


def test_smooth_orientation_validation_errors():
    with pytest.raises(ValueError, match="shift >= 0"):
        SmoothOrientationDAG(torch.zeros(3), torch.zeros(3, 3), shift=-0.1)
    with pytest.raises(ValueError, match="NaN"):
        SmoothOrientationDAG(
            torch.tensor([float("nan")] * 3), torch.zeros(3, 3), validate_args=True
        )
    with pytest.raises(ValueError, match="temperature > 0"):
        SmoothOrientationDAG(torch.zeros(3), torch.zeros(3, 3), temperature=0)


def test_log_prob_validation():
    dist = OrderedDAG(torch.zeros(3), torch.zeros(3, 3), validate_args=True)
    cycle = torch.tensor([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]])
    with pytest.raises(ValueError):
        dist.marginal_log_prob(cycle)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 3, 3\)"):
        dist.log_prob(torch.zeros(4, 4))
    relaxed = OrderedDAG(torch.zeros(3), torch.zeros(3, 3), hard=False).rsample()
    with pytest.raises(ValueError, match="relaxed"):
        dist.log_prob(relaxed)
    assert not dist.support.check(cycle)
    assert dist.support.check(torch.zeros(3, 3))


def test_joint_elbo_in_svi_with_model_and_guide():
    """Model: ER prior on a 3-node DAG and a factor rewarding a target; guide: OrderedDAG."""
    d = 3
    target = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])

    def model():
        graph = pyro.sample("G", ErdosRenyiDAG(d, expected_edges=1.5))
        pyro.factor("fit", -4.0 * (graph - target).abs().sum((-1, -2)))

    def guide():
        scores = pyro.param("scores", torch.zeros(d))
        logits = pyro.param("logits", torch.zeros(d, d))
        pyro.sample("G", OrderedDAG(scores, logits, temperature=0.5))

    elbo = Trace_ELBO()
    # the loss is -(log p(order, G) + factor - log q(order, G)) on the guide's sample
    guide_tr = pyro.poutine.trace(guide).get_trace()
    model_tr = pyro.poutine.trace(pyro.poutine.replay(model, trace=guide_tr)).get_trace()
    value = guide_tr.nodes["G"]["value"]
    assert get_order(value) is not None
    manual = (
        ErdosRenyiDAG(d, expected_edges=1.5).log_prob(value)
        - 4.0 * (value - target).abs().sum()
        - guide_tr.nodes["G"]["fn"].log_prob(value)
    )
    model_tr.compute_log_prob()
    guide_tr.compute_log_prob()
    assert torch.allclose(model_tr.log_prob_sum() - guide_tr.log_prob_sum(), manual)

    svi = SVI(model, guide, Adam({"lr": 0.05}), elbo)
    losses = [svi.step() for _ in range(500)]
    assert all(math.isfinite(x) for x in losses)
    fitted = OrderedDAG(pyro.param("scores").detach(), pyro.param("logits").detach())
    assert torch.equal(fitted.mode, target)
    # the fitted guide concentrates on the target (exact marginals at d = 3)
    prior = ErdosRenyiDAG(d, expected_edges=1.5).marginal_log_prob(target).exp()
    assert fitted.marginal_log_prob(target).exp() > max(0.3, 10 * prior)


def test_pyro_sample_inside_plate_and_predictive():
    def model():
        with pyro.plate("graphs", 4):
            return pyro.sample("G", OrderedDAG(torch.zeros(5), torch.zeros(5, 5)))

    tr = pyro.poutine.trace(model).get_trace()
    value = tr.nodes["G"]["value"]
    assert value.shape == (4, 5, 5)
    tr.compute_log_prob()
    assert tr.nodes["G"]["log_prob"].shape == (4,)
    assert is_acyclic(value).all()


def test_temperature_schedule_is_read_at_every_rsample():
    schedule = ExponentialSchedule(initial=1.0, rate=1.0, minimum=0.1)
    scores = torch.zeros(4, requires_grad=True)
    dist = OrderedDAG(scores, torch.zeros(4, 4), temperature=schedule)
    grads = []
    for _ in range(2):
        torch.manual_seed(0)  # same noise: only the temperature differs
        (dist.rsample() * torch.arange(16.0).reshape(4, 4)).sum().backward()
        grads.append(scores.grad.clone())
        scores.grad = None
        schedule.step()
    assert not torch.allclose(grads[0], grads[1])
    with pytest.raises(ValueError, match="temperature > 0"):
        OrderedDAG(scores, torch.zeros(4, 4), temperature=torch.tensor(-1.0))


def test_score_function_mode_with_exact_joint_log_prob():
    """reparameterized=False: Pyro draws without gradient and uses the score function."""
    d = 3
    target = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])  # collider
    dist = OrderedDAG(torch.zeros(d), torch.zeros(d, d), reparameterized=False)
    assert not dist.has_rsample and not dist.expand((2,)).has_rsample
    assert OrderedDAG(torch.zeros(d), torch.zeros(d, d)).has_rsample

    def model():
        graph = pyro.sample("G", ErdosRenyiDAG(d, expected_edges=1.5))
        pyro.factor("fit", -4.0 * (graph - target).abs().sum((-1, -2)))

    def guide():
        scores = pyro.param("scores", torch.zeros(d))
        logits = pyro.param("logits", torch.zeros(d, d))
        value = pyro.sample("G", OrderedDAG(scores, logits, reparameterized=False))
        assert not value.requires_grad

    svi = SVI(
        model, guide, Adam({"lr": 0.05}), Trace_ELBO(num_particles=16, vectorize_particles=True)
    )
    for _ in range(300):
        svi.step()
    fitted = OrderedDAG(pyro.param("scores").detach(), pyro.param("logits").detach())
    assert torch.equal(fitted.mode, target)
    assert fitted.marginal_log_prob(target).exp() > 0.3


@pytest.mark.parametrize("shared_logits", [True, False])
@pytest.mark.parametrize("n,d", [(2, 600), (60, 100)])
def test_fused_backward_in_several_work_blocks(n, d, shared_logits):
    """d = 600: each sample is split into row blocks; d = 100: 60 samples in 3 blocks."""
    tau = 0.7
    g = torch.randn(n, d, dtype=torch.float64, requires_grad=True)
    logits = torch.randn((d, d) if shared_logits else (n, d, d), dtype=torch.float64)
    logits.requires_grad_()
    weight = torch.randn(n, d, d, dtype=torch.float64)
    torch.manual_seed(5)
    adj, order = order_edge_sample(g, logits, tau)
    (adj * weight).sum().backward()
    grad_g, grad_l = g.grad.clone(), logits.grad.clone()
    torch.manual_seed(5)
    u = torch.rand(n, d, d, dtype=torch.float64)
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(d).expand(n, d))
    hard = (u > torch.sigmoid(-logits)) & (rank.unsqueeze(-1) < rank.unsqueeze(-2))
    assert torch.equal(adj.detach(), hard.double())
    g.grad = logits.grad = None
    soft = torch.sigmoid((logits + torch.logit(u)) / tau) * torch.sigmoid(
        (g.unsqueeze(-1) - g.unsqueeze(-2)) / tau
    )
    (soft * weight * ~torch.eye(d, dtype=torch.bool)).sum().backward()
    assert torch.allclose(grad_g, g.grad, atol=1e-9)
    assert torch.allclose(grad_l, logits.grad, atol=1e-9)


# ---------------------------------------------------------------- issue 17 defects


@pytest.mark.parametrize("cls", [OrderedDAG, SmoothOrientationDAG, ErdosRenyiDAG])
def test_a_value_that_lost_its_order_is_not_silently_scored_by_the_marginal(cls):
    torch.manual_seed(0)
    d = (
        ErdosRenyiDAG(4, expected_edges=2.0)
        if cls is ErdosRenyiDAG
        else cls(torch.randn(4), torch.randn(4, 4))
    )
    a = d.sample((3,))
    joint = d.log_prob(a)
    torch.testing.assert_close(joint, d.joint_log_prob(a, get_order(a)))
    # the order rides on the tensor object: a copy has none. The marginal is a different
    # quantity, so falling back to it says so ...
    with pytest.warns(OrderLostWarning, match="marginal_log_prob"):
        lost = d.log_prob(a.clone())
    assert not torch.allclose(lost, joint)
    # ... and asking for it explicitly is quiet
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.testing.assert_close(d.marginal_log_prob(a.clone()), lost)
        torch.testing.assert_close(d.log_prob(a.clone(), order=get_order(a)), joint)
        support = d.enumerate_support()  # values that never had an order: the marginal
        torch.testing.assert_close(d.log_prob(support).logsumexp(0), torch.zeros(()))
