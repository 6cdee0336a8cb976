"""Tests for the DAG priors: ErdosRenyiDAG (normalized, exact edge count) and SparsityPenalty."""

import math

import pyro
import pytest
import torch
from pyro.distributions.testing.gof import auto_goodness_of_fit

from pyrostruct.distributions import ErdosRenyiDAG, OrderedDAG, SparsityPenalty, get_order
from pyrostruct.graph import is_acyclic

TEST_FAILURE_RATE = 1e-3


@pytest.mark.parametrize("d", [1, 2, 3, 4])
@pytest.mark.parametrize("m", [0.0, 0.5, 1.0])
def test_erdos_renyi_is_normalized_with_exact_expected_edge_count(d, m):
    n_pairs = d * (d - 1) // 2
    m = m * n_pairs  # as a fraction of the maximum
    prior = ErdosRenyiDAG(d, expected_edges=m)
    values = prior.enumerate_support()
    probs = prior.log_prob(values).exp()
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-5)
    expected = (probs * values.sum((-1, -2))).sum().item()
    assert expected == pytest.approx(m, abs=1e-4)


def test_erdos_renyi_marginal_counts_linear_extensions():
    d, p = 4, 0.3
    prior = ErdosRenyiDAG(d, edge_prob=p)
    chain = torch.diag(torch.ones(3), 1)  # 0->1->2->3: one linear extension
    empty = torch.zeros(4, 4)  # 24 linear extensions
    star = torch.zeros(4, 4)
    star[0, 1:] = 1.0  # 0 -> {1,2,3}: 6 linear extensions
    for adj, n_ext in ((chain, 1), (empty, 24), (star, 6)):
        k = int(adj.sum())
        expected = math.log(n_ext / 24) + k * math.log(p) + (6 - k) * math.log(1 - p)
        assert prior.marginal_log_prob(adj).item() == pytest.approx(expected, abs=1e-5)


def test_erdos_renyi_joint_log_prob_and_samples():
    pyro.set_rng_seed(0)
    d, m = 8, 7.0
    prior = ErdosRenyiDAG(d, expected_edges=m)
    value = prior.sample((4000,))
    assert is_acyclic(value).all()
    assert value.sum((-1, -2)).mean().item() == pytest.approx(m, abs=0.15)
    p = m / 28
    k = value.sum((-1, -2))
    expected = -math.lgamma(d + 1) + k * math.log(p) + (28 - k) * math.log(1 - p)
    assert torch.allclose(prior.log_prob(value), expected, atol=1e-4)
    assert get_order(value) is not None


def test_erdos_renyi_extremes():
    empty = ErdosRenyiDAG(4, expected_edges=0.0)
    assert empty.sample((10,)).sum() == 0
    assert empty.marginal_log_prob(torch.zeros(4, 4)).item() == pytest.approx(0.0, abs=1e-6)
    full = ErdosRenyiDAG(4, edge_prob=1.0)
    value = full.sample((10,))
    assert (value.sum((-1, -2)) == 6).all()
    # a complete DAG has one linear extension: probability 1 / 4!
    assert full.marginal_log_prob(value[0].clone()).item() == pytest.approx(-math.log(24), abs=1e-5)


def test_erdos_renyi_is_an_ordered_dag_with_batch_shape():
    # (shapes, expand, support, validation, pickling: the generic tests in test_distributions.py)
    prior = ErdosRenyiDAG(5, expected_edges=torch.tensor([1.0, 4.0]))
    assert isinstance(prior, OrderedDAG)
    assert torch.allclose(prior.expected_edges, torch.tensor([1.0, 4.0]))
    torch.testing.assert_close(prior.edge_prob, torch.tensor([0.1, 0.4]))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(num_nodes=0, expected_edges=1.0), "num_nodes"),
        (dict(num_nodes=3.5, expected_edges=1.0), "num_nodes"),
        (dict(num_nodes=3), "exactly one"),
        (dict(num_nodes=3, expected_edges=1.0, edge_prob=0.5), "exactly one"),
        (dict(num_nodes=3, expected_edges=4.0), r"\[0, 3\]"),
        (dict(num_nodes=3, expected_edges=-1.0), r"\[0, 3\]"),
        (dict(num_nodes=3, expected_edges=float("nan")), r"\[0, 3\]"),
        (dict(num_nodes=3, edge_prob=1.5), r"\[0, 1\]"),
    ],
)
def test_erdos_renyi_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ErdosRenyiDAG(**kwargs)


def test_sparsity_penalty_normalized_is_a_laplace_density():
    d, lam = 3, 2.5
    penalty = SparsityPenalty(d, lam)
    off = ~torch.eye(d, dtype=torch.bool)
    w = torch.randn(7, d, d) * off
    laplace = torch.distributions.Laplace(0.0, 1 / lam)
    expected = laplace.log_prob(w[:, off]).sum(-1)
    assert torch.allclose(penalty.log_prob(w), expected, atol=1e-5)
    # the diagonal is outside the support: refused when validating, ignored when not
    w2 = w.clone()
    w2[:, 0, 0] = 100.0
    with pytest.raises(ValueError, match="support"):
        SparsityPenalty(d, lam, validate_args=True).log_prob(w2)
    unchecked = SparsityPenalty(d, lam, validate_args=False)
    assert torch.allclose(unchecked.log_prob(w2), penalty.log_prob(w))


def test_sparsity_penalty_samples_agree_with_log_prob():
    pyro.set_rng_seed(0)
    d = 2
    penalty = SparsityPenalty(d, 1.5)
    samples = penalty.sample((4000,))
    assert (torch.diagonal(samples, dim1=-2, dim2=-1) == 0).all()
    off = ~torch.eye(d, dtype=torch.bool)
    probs = penalty.log_prob(samples).exp()
    assert auto_goodness_of_fit(samples[:, off], probs) > TEST_FAILURE_RATE
    assert samples[:, off].var().item() == pytest.approx(2 / 1.5**2, rel=0.1)


def test_sparsity_penalty_unnormalized_factor_on_dag_samples():
    value = OrderedDAG(torch.zeros(6), torch.zeros(6, 6)).sample((5,))
    penalty = SparsityPenalty(6, 0.7, normalized=False)
    assert torch.allclose(penalty.log_prob(value), -0.7 * value.sum((-1, -2)))
    with pytest.raises(NotImplementedError, match="unnormalised"):
        penalty.sample()


def test_sparsity_penalty_error_messages():
    with pytest.raises(ValueError, match="strength"):
        SparsityPenalty(3, 0.0)
    with pytest.raises(ValueError, match="num_nodes"):
        SparsityPenalty(0, 1.0)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 3, 3\)"):
        SparsityPenalty(3, torch.tensor([1.0, 2.0])).log_prob(torch.zeros(2, 2))


# ---------------------------------------------------------------- issue 17 defects


@pytest.mark.parametrize(
    "kwargs", [{"expected_edges": torch.tensor([1.0, 2.0])}, {"edge_prob": 0.25}]
)
def test_erdos_renyi_expand_expands_its_own_parameters(kwargs):
    prior = ErdosRenyiDAG(3, **kwargs)
    big = prior.expand((4,) + tuple(prior.batch_shape))
    assert big.batch_shape == (4,) + tuple(prior.batch_shape)
    assert big.edge_prob.shape == big.batch_shape
    assert big.expected_edges.shape == big.batch_shape
    torch.testing.assert_close(big.expected_edges[0], prior.expected_edges)
    assert prior.edge_prob.shape == prior.batch_shape  # the original is untouched


def test_sparsity_penalty_support_has_a_zero_diagonal():
    penalty = SparsityPenalty(3, 2.0)
    w = penalty.sample((5,))
    assert penalty.support.event_dim == 2
    assert penalty.support.check(w).shape == (5,) and penalty.support.check(w).all()
    w[1, 0, 0] = 0.5  # the density ignores the diagonal: it is not in the support
    assert penalty.support.check(w).tolist() == [True, False, True, True, True]
    # a guide built from the support has the d(d-1) free weights only, and keeps the
    # diagonal at 0 (an unconstrained diagonal would make the ELBO unbounded)
    transform = torch.distributions.biject_to(penalty.support)
    free = torch.randn(6)
    matrix = transform(free)
    assert matrix.shape == (3, 3) and (matrix.diagonal() == 0).all()
    torch.testing.assert_close(transform.inv(matrix), free)


def test_sparsity_penalty_as_a_latent_site_with_autonormal():
    from pyro.infer import SVI, Trace_ELBO
    from pyro.infer.autoguide import AutoNormal
    from pyro.optim import Adam

    def model():
        w = pyro.sample("W", SparsityPenalty(3, 2.0))
        pyro.sample("obs", pyro.distributions.Normal(w.sum(), 1.0), obs=torch.tensor(1.0))

    pyro.clear_param_store()
    guide = AutoNormal(model)
    svi = SVI(model, guide, Adam({"lr": 0.01}), Trace_ELBO())
    for _ in range(3):
        svi.step()
    w = guide()["W"]
    assert w.shape == (3, 3) and (w.diagonal() == 0).all()
    assert pyro.param("AutoNormal.locs.W").shape == (6,)


def test_a_float64_expected_edge_count_gives_float64_draws():
    """Hostile sweep: the parameter was cast to the default float32 (OrderedDAG keeps it)."""
    m = torch.tensor(1.0, dtype=torch.float64)
    assert ErdosRenyiDAG(3, expected_edges=m).sample().dtype == torch.float64
    assert ErdosRenyiDAG(3, edge_prob=m / 3).edge_logits.dtype == torch.float64
    assert ErdosRenyiDAG(3, expected_edges=1.0).sample().dtype == torch.get_default_dtype()
