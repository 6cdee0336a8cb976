"""SEM likelihoods: exact Gaussian densities, fast path == row path, masking, batching."""

import math

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyrostruct.causal import datasets
from pyrostruct.causal.sem import MLPSEM, CustomSEM, LinearGaussianSEM, make_sem
from pyrostruct.errors import InputError


def _data(d=5, n=300, seed=1, interventions=None, sem="linear"):
    ds = datasets.make_dataset(d=d, n=n, seed=seed, interventions=interventions, sem=sem)
    x = torch.tensor(ds.data.values, dtype=torch.float64)
    a = torch.tensor(ds.adjacency, dtype=torch.float64)
    m = torch.tensor(ds.intervention_mask)
    return ds, x, a, m


def test_linear_log_prob_is_the_gaussian_density():
    torch.set_default_dtype(torch.float64)
    try:
        sem = LinearGaussianSEM(3)
        with torch.no_grad():
            sem.weight.copy_(torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, -1.0], [5.0, 0.0, 0.0]]))
            sem.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
            sem.log_scale.copy_(torch.log(torch.tensor([1.0, 0.5, 2.0])))
        adj = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])  # 2->0 masked out
        x = torch.tensor([[1.0, 1.0, 1.0]])
        means = [0.1, 0.2 + 2.0, 0.3 - 1.0]
        sds = [1.0, 0.5, 2.0]
        expected = sum(
            -0.5 * ((1.0 - m) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)
            for m, s in zip(means, sds)
        )
        assert sem.log_prob(x, adj).item() == pytest.approx(expected)
        # intervening on node 1 drops its term
        mask = torch.tensor([[False, True, False]])
        term1 = -0.5 * ((1.0 - 2.2) / 0.5) ** 2 - math.log(0.5) - 0.5 * math.log(2 * math.pi)
        assert sem.log_prob(x, adj, mask).item() == pytest.approx(expected - term1)
    finally:
        torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("interventions", [None, [[0], [2, 3]]])
@pytest.mark.parametrize("noise", ["equal", "nonequal"])
def test_sufficient_statistics_path_equals_row_path(interventions, noise):
    ds, x, a, m = _data(interventions=interventions)
    sem = LinearGaussianSEM(5, noise=noise, weight_prior_scale=None).double()
    with torch.no_grad():
        sem.weight.normal_()
        sem.bias.normal_()
        sem.log_scale.uniform_(-0.5, 0.5)
    batch = torch.stack([a, a.T, torch.zeros_like(a)]).unsqueeze(1)  # (3, 1, d, d)
    rows = sem.log_prob(x, batch, m if interventions else None)
    assert rows.shape == (3, 300)
    stats = sem.sufficient_statistics(x, m if interventions else None)
    total = sem.log_prob_from_statistics(stats, batch)
    assert total.shape == (3, 1)
    assert torch.allclose(rows.sum(-1), total.squeeze(-1), rtol=1e-10)


@pytest.mark.parametrize("interventions", [None, [[1]]])
def test_bayesian_weights_term_is_expected_log_lik_minus_kl(interventions):
    """The analytic E_q(W)[log p(X | A, W)] - KL matches Monte Carlo over q(W)."""
    ds, x, a, m = _data(n=200, interventions=interventions)
    mask = m if interventions else None
    sem = LinearGaussianSEM(5, weight_prior_scale=0.7).double()
    torch.manual_seed(0)
    with torch.no_grad():
        sem.weight.normal_()
        sem.log_weight_sd.uniform_(-2.0, -0.5)
        sem.log_scale.uniform_(-0.3, 0.3)
    analytic = sem.log_prob_from_statistics(sem.sufficient_statistics(x, mask), a)
    point = LinearGaussianSEM(5, weight_prior_scale=None).double()
    point.load_state_dict({k: v for k, v in sem.state_dict().items() if k != "log_weight_sd"})
    draws = []
    for _ in range(1500):
        with torch.no_grad():
            eps = torch.randn(5, 5, dtype=torch.float64)
            point.weight.copy_(sem.weight + torch.exp(sem.log_weight_sd) * eps)
            draws.append(point.log_prob(x, a, mask).sum())
    mc = torch.stack(draws)
    q = torch.distributions.Normal(sem.weight, torch.exp(sem.log_weight_sd))
    p = torch.distributions.Normal(0.0, 0.7)
    kl = (torch.distributions.kl_divergence(q, p) * a).sum()
    expected = mc.mean() - kl
    assert analytic.item() == pytest.approx(
        expected.item(), abs=4 * mc.std().item() / len(draws) ** 0.5 + 1e-6
    )
    assert sem.weight_kl(torch.zeros_like(a)).item() == 0.0


def test_fit_recovers_weights_and_maximizes_likelihood():
    ds, x, a, m = _data(n=5000)
    sem = LinearGaussianSEM(5).double().fit(x, a)
    assert torch.allclose(sem.weight.detach(), torch.tensor(ds.weights), atol=0.1)
    best = sem.log_prob(x, a).sum().item()
    with torch.no_grad():
        sem.weight.add_(0.05 * torch.randn(5, 5, dtype=torch.float64))
    assert sem.log_prob(x, a).sum().item() < best
    # the true graph explains the data better than the empty graph
    empty = LinearGaussianSEM(5).double().fit(x, torch.zeros_like(a))
    assert best > empty.log_prob(x, torch.zeros_like(a)).sum().item() + 100


def test_mlp_masks_non_parents_and_batches_over_graphs():
    torch.manual_seed(0)
    sem = MLPSEM(4, hidden=6).eval()  # posterior-mean weights: deterministic
    x = torch.randn(20, 4)
    adj = torch.zeros(4, 4)
    adj[0, 3] = adj[1, 3] = 1.0
    mean = sem.mean(x, adj)
    x2 = x.clone()
    x2[:, 2] += 10.0  # not a parent of anyone
    assert torch.allclose(sem.mean(x2, adj), mean)
    x3 = x.clone()
    x3[:, 0] += 1.0  # parent of 3 only
    changed = (sem.mean(x3, adj) - mean).abs().amax(0) > 1e-6
    assert changed.tolist() == [False, False, False, True]
    # diagonal entries of the adjacency are ignored
    assert torch.allclose(sem.mean(x, adj + torch.eye(4)), mean)
    batch = torch.stack([adj, torch.zeros(4, 4)])
    lp = sem.log_prob(x, batch)
    assert lp.shape == (2, 20)
    assert torch.allclose(lp[0], sem.log_prob(x, adj))


def test_mlp_fits_a_nonlinear_mechanism_with_svi():
    torch.manual_seed(0)
    n = 400
    x0 = torch.randn(n)
    x1 = torch.tanh(2 * x0) * 2 + 0.1 * torch.randn(n)
    x = torch.stack([x0, x1], 1)
    adj = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    sem = MLPSEM(2, hidden=8)

    def model():
        with pyro.plate("rows", n):
            pyro.sample("x", sem.distribution(adj, n), obs=x)

    svi = SVI(model, lambda: None, Adam({"lr": 0.03}), Trace_ELBO())
    for _ in range(600):
        svi.step()
    assert torch.exp(sem.log_scale[1]).item() < 0.3  # explains x1 from x0


def test_custom_likelihood_interface():
    def laplace(data, adjacency):
        mean = data @ adjacency
        return torch.distributions.Laplace(mean, 1.0).log_prob(data)

    sem = CustomSEM(3, laplace)
    x = torch.randn(7, 3)
    adj = torch.zeros(2, 3, 3)
    assert sem.log_prob(x, adj).shape == (2, 7)
    expected = torch.distributions.Laplace(0.0, 1.0).log_prob(x).sum(-1)
    assert torch.allclose(sem.log_prob(x, adj)[0], expected)
    bad = CustomSEM(3, lambda data, adjacency: data.sum(-1))
    with pytest.raises(InputError, match="expected"):
        bad.log_prob(x, adj)


def test_shape_errors_and_factory():
    sem = make_sem("linear", 3)
    with pytest.raises(InputError, match=r"\(n, 3\)"):
        sem.log_prob(torch.randn(5, 4), torch.zeros(3, 3))
    with pytest.raises(InputError, match="adjacency"):
        sem.log_prob(torch.randn(5, 3), torch.zeros(4, 4))
    assert isinstance(make_sem("mlp", 3), MLPSEM)
    assert make_sem("linear-equal", 3).noise == "equal"
    with pytest.raises(InputError, match="unknown sem"):
        make_sem("gp", 3)
    with pytest.raises(InputError, match="has 3 nodes"):
        make_sem(sem, 4)


@pytest.mark.parametrize("interventions", [None, [[1]]])
@pytest.mark.parametrize("prior", ["normal", "pmom"])
def test_expected_log_prob_with_a_mask_equals_the_masked_probabilities(interventions, prior):
    """mask (S, d, d) with shared probabilities p (d, d) == edge probabilities mask * p."""
    ds, x, a, m = _data(n=200, interventions=interventions)
    mask = m if interventions else None
    sem = LinearGaussianSEM(5, weight_prior=prior).double()
    torch.manual_seed(0)
    with torch.no_grad():
        sem.weight.normal_()
        sem.log_weight_sd.uniform_(-2.0, -0.5)
    stats = sem.sufficient_statistics(x, mask)
    orders = torch.stack([torch.randperm(5) for _ in range(4)])
    rank = torch.argsort(orders, -1)
    forward = (rank[:, :, None] < rank[:, None, :]).double()
    logits = torch.randn(5, 5, dtype=torch.float64, requires_grad=True)
    dense = sem.expected_log_prob_from_statistics(stats, forward * torch.sigmoid(logits),
                                                  profile_noise=True)  # fmt: skip
    grads = torch.autograd.grad(dense.sum(), [logits, sem.weight, sem.log_weight_sd])
    masked = sem.expected_log_prob_from_statistics(stats, torch.sigmoid(logits),
                                                   profile_noise=True, mask=forward)  # fmt: skip
    torch.testing.assert_close(masked, dense)
    for g, h in zip(grads, torch.autograd.grad(masked.sum(), [logits, sem.weight, sem.log_weight_sd])):
        torch.testing.assert_close(g, h)


@pytest.mark.parametrize("spacing", [3.0, 0.0])
def test_agreeing_masks_give_the_dense_residual_sums_and_contractions(spacing):
    """The majority mask plus sparse differences gives each mask's residual sums of squares
    c^T G c and its column sums, values and gradients: concentrated orders take the sparse
    form (at most d differences a mask), uniform ones do not."""
    from pyrostruct.causal.sem.linear import _AgreeingMasks
    from pyrostruct.distributions.permutation import PlackettLuce

    d, num = 12, 6
    torch.manual_seed(1)
    x1 = torch.randn(50, d + 1, dtype=torch.float64)
    gram = x1.T @ x1
    b = torch.randn(d, d, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(d, dtype=torch.float64, requires_grad=True)
    x = torch.randn(d, d, dtype=torch.float64, requires_grad=True)
    scores = spacing * torch.arange(d, 0, -1.0, dtype=torch.float64)
    orders = PlackettLuce(scores).sample_order((num,))
    rank = torch.argsort(orders, -1)
    masks = (rank[:, :, None] < rank[:, None, :]).double().reshape(2, 3, d, d)
    agreeing = _AgreeingMasks(masks)
    assert agreeing.sparse == (spacing > 0)
    coef = torch.eye(d + 1, d, dtype=torch.float64) - torch.cat(
        [masks * b, bias.expand(2, 3, 1, d)], dim=-2
    )
    want = [(coef * (gram @ coef)).sum(-2), (masks * x).sum(-2)]
    eye = torch.eye(d + 1, d, dtype=torch.float64)
    got = [agreeing.residual_sums(gram, b, bias, eye), agreeing.column_sums(x)]
    for w, g in zip(want, got):
        assert g.shape == w.shape
        torch.testing.assert_close(g, w)
        weights = torch.randn_like(w)
        for h, k in zip(torch.autograd.grad((w * weights).sum(), [b, bias, x], allow_unused=True),
                        torch.autograd.grad((g * weights).sum(), [b, bias, x], allow_unused=True)):  # fmt: skip
            if h is None:
                assert k is None or not k.any()
            else:
                torch.testing.assert_close(k, h)


def test_a_mask_that_needs_gradients_gets_them():
    """Masks are sampled orders in discover, but a caller's relaxed mask that requires grad
    is differentiated like the edge probabilities it multiplies."""
    ds, x, a, m = _data(n=200, interventions=None)
    sem = LinearGaussianSEM(5).double()
    stats = sem.sufficient_statistics(x)
    probs = torch.sigmoid(torch.randn(5, 5, dtype=torch.float64))
    rank = torch.argsort(torch.stack([torch.arange(5)] * 3 + [torch.tensor([1, 0, 2, 3, 4])]), -1)
    forward = (rank[:, :, None] < rank[:, None, :]).double().requires_grad_()
    masked = sem.expected_log_prob_from_statistics(stats, probs, mask=forward)
    (grad,) = torch.autograd.grad(masked.sum(), forward)
    dense = forward.detach().requires_grad_()
    want = sem.expected_log_prob_from_statistics(stats, dense * probs)
    (expected,) = torch.autograd.grad(want.sum(), dense)
    torch.testing.assert_close(masked, want)
    torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize("per_node", [False, True])
def test_quadratic_forms_reuse_the_product_for_the_exact_gradient(per_node):
    """c^T G c with the gradient from the forward product: the value, gradient and second
    derivatives of plain autograd, for one Gram matrix and for one per node; a Gram matrix
    that needs a gradient gets it."""
    from pyrostruct.causal.sem.linear import _quadratic_forms

    d = 6
    torch.manual_seed(3)
    x1 = torch.randn(40, d + 1, dtype=torch.float64)
    weights = torch.rand(40, d, dtype=torch.float64)
    gram = torch.einsum("nj,na,nb->jab", weights, x1, x1) if per_node else x1.T @ x1
    coef = torch.randn(3, d + 1, d, dtype=torch.float64, requires_grad=True)
    times = gram @ coef if not per_node else torch.einsum("jab,...bj->...aj", gram, coef)
    want = (coef * times).sum(-2)
    got = _quadratic_forms(gram, coef)
    torch.testing.assert_close(got, want)
    upstream = torch.randn_like(want)
    (g_want,) = torch.autograd.grad((want * upstream).sum(), coef)
    (g_got,) = torch.autograd.grad((got * upstream).sum(), coef)
    torch.testing.assert_close(g_got, g_want)
    # second derivatives (a Laplace approximation's Hessian) are those of plain autograd
    torch.autograd.gradgradcheck(lambda c: _quadratic_forms(gram, c), (coef,))
    gram = gram.clone().requires_grad_()
    (g_gram,) = torch.autograd.grad((_quadratic_forms(gram, coef) * upstream).sum(), gram)
    assert g_gram.abs().sum() > 0
