"""The analytic estimator of discover: exact expectations, exact ELBO, unbiased gradients."""

import itertools
import math

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch

from pyrostruct.causal import datasets, discover, metrics
from pyrostruct.causal.collapsed import CollapsedOrderVI, order_regression_init
from pyrostruct.causal.orders import (
    greedy_sparsest,
    improve_order,
    order_scores,
    sparse_sinks_order,
)
from pyrostruct.causal.orders.greedy_sparsest import (
    _insertion_scores,
    _moved_local,
    _order_factors,
)
from pyrostruct.causal.orders.scores import local_scores
from pyrostruct.causal.sem import LinearGaussianSEM
from pyrostruct.distributions.permutation import PlackettLuce
from pyrostruct.errors import InputError


def _random_sem(d, noise="nonequal", seed=0):
    torch.manual_seed(seed)
    sem = LinearGaussianSEM(d, noise=noise)
    with torch.no_grad():
        sem.weight.normal_()
        sem.log_weight_sd.uniform_(-2.0, -0.5)
        sem.bias.normal_()
        sem.log_scale.uniform_(-0.5, 0.5)
        sem.weight_unit.uniform_(0.5, 2.0)
    return sem


def _data(d=3, n=60, seed=0):
    return torch.tensor(np.random.default_rng(seed).normal(size=(n, d)), dtype=torch.float32)


@pytest.mark.parametrize("interventions", [False, True])
def test_expected_log_prob_is_the_average_over_all_adjacencies(interventions):
    d = 3
    x = _data(d)
    mask = torch.zeros(x.shape, dtype=torch.bool)
    if interventions:
        mask[:20, 0] = True
        mask[20:30, 2] = True
    sem = _random_sem(d)
    stats = sem.sufficient_statistics(x, mask if interventions else None)
    probs = torch.rand(d, d) * (1 - torch.eye(d))
    pairs = [(i, j) for i in range(d) for j in range(d) if i != j]
    exact = 0.0
    for bits in itertools.product([0.0, 1.0], repeat=len(pairs)):
        adj = torch.zeros(d, d)
        weight = 1.0
        for (i, j), b in zip(pairs, bits):
            adj[i, j] = b
            weight *= float(probs[i, j]) if b else 1.0 - float(probs[i, j])
        with torch.no_grad():
            exact += weight * float(sem.log_prob_from_statistics(stats, adj))
    analytic = float(sem.expected_log_prob_from_statistics(stats, probs).detach())
    assert analytic == pytest.approx(exact, rel=1e-4)


@pytest.mark.parametrize("noise", ["equal", "nonequal"])
def test_profiled_noise_is_the_optimal_noise(noise):
    d = 3
    x = _data(d)
    sem = _random_sem(d, noise)
    stats = sem.sufficient_statistics(x)
    probs = torch.rand(d, d) * (1 - torch.eye(d))
    profiled = float(sem.expected_log_prob_from_statistics(stats, probs, profile_noise=True))
    assert profiled >= float(sem.expected_log_prob_from_statistics(stats, probs))
    n = x.shape[0]
    # optimizing the shared scale(s) numerically reaches the profiled value
    log_scale = sem.log_scale.detach().clone().requires_grad_()
    opt = torch.optim.LBFGS([log_scale], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        with torch.no_grad():
            sem.log_scale.copy_(log_scale)
        sem.log_scale.grad = None
        value = -sem.expected_log_prob_from_statistics(stats, probs)
        value.backward()
        log_scale.grad = sem.log_scale.grad.clone()
        return value

    opt.step(closure)
    with torch.no_grad():
        sem.log_scale.copy_(log_scale)
        best = float(sem.expected_log_prob_from_statistics(stats, probs))
    assert best == pytest.approx(profiled, abs=1e-3 * n)


def _exact_elbo_by_enumeration(vi: CollapsedOrderVI, d: int, prior_logit: float):
    """sum_pi q(pi) [sum_A q(A|pi) (log p(X, A | pi) - log q(A|pi)) + log p(pi) - log q(pi)]."""
    p0 = 1 / (1 + math.exp(-prior_logit))
    q_edge = torch.sigmoid(vi.edge_logits)
    total = 0.0
    for order in itertools.permutations(range(d)):
        lq = float(PlackettLuce(vi.scores).log_prob_order(torch.tensor(order)))
        pairs = [(order[a], order[b]) for a in range(d) for b in range(a + 1, d)]
        inner = 0.0
        for bits in itertools.product([0.0, 1.0], repeat=len(pairs)):
            adj = torch.zeros(d, d)
            log_q = log_p = 0.0
            for (i, j), b in zip(pairs, bits):
                adj[i, j] = b
                qi = float(q_edge[i, j])
                log_q += math.log(qi if b else 1 - qi)
                log_p += math.log(p0 if b else 1 - p0)
            with torch.no_grad():
                data = float(vi.sem.log_prob_from_statistics(vi.stats, adj))
            inner += math.exp(log_q) * (data + log_p - log_q)
        total += math.exp(lq) * (inner - math.lgamma(d + 1) - lq)
    return total


def _all_orders(d):
    return torch.tensor(list(itertools.permutations(range(d))))


def test_collapsed_elbo_equals_the_enumerated_elbo():
    d, prior_logit = 3, -0.7
    x = _data(d)
    sem = _random_sem(d)
    stats = sem.sufficient_statistics(x)
    vi = CollapsedOrderVI(
        sem, stats, prior_logit, torch.randn(d), torch.randn(d, d), profile_noise=False
    )
    orders = _all_orders(d)
    f, log_q = vi.particle_elbos(orders)
    collapsed = float((log_q.exp() * f).sum())
    assert collapsed == pytest.approx(_exact_elbo_by_enumeration(vi, d, prior_logit), rel=1e-4)


def test_rloo_gradient_is_unbiased():
    d = 3
    x = _data(d, seed=1)
    sem = _random_sem(d, seed=1)
    stats = sem.sufficient_statistics(x)
    torch.manual_seed(0)
    vi = CollapsedOrderVI(sem, stats, -0.5, torch.randn(d), torch.randn(d, d))
    params = [vi.scores, vi.edge_logits, sem.weight]
    f, log_q = vi.particle_elbos(_all_orders(d))
    exact = torch.autograd.grad(-(log_q.exp() * f).sum(), params)
    draws = [[] for _ in params]
    for _ in range(1500):
        loss, _ = vi.loss(8)
        for k, g in enumerate(torch.autograd.grad(loss, params)):
            draws[k].append(g)
    for k, e in enumerate(exact):
        g = torch.stack(draws[k])
        mean, se = g.mean(0), g.std(0) / math.sqrt(len(g))
        assert torch.all((mean - e).abs() <= 5 * se + 1e-3 * e.abs().max()), (k, mean, e, se)


def test_order_regression_init_is_least_squares_in_the_order():
    d, n = 5, 400
    rng = np.random.default_rng(3)
    w = np.triu(rng.normal(size=(d, d)), 1) * (rng.random((d, d)) < 0.6)
    x_np, _ = datasets.simulate_linear_sem(w, n, seed=4)
    x = torch.tensor(x_np, dtype=torch.float32)
    sem = LinearGaussianSEM(d)
    order = [2, 0, 4, 1, 3]
    logits = order_regression_init(x, order, sem, prior_logit=-1.0)
    weights = sem.weights().detach().double().numpy()
    pos = {node: k for k, node in enumerate(order)}
    for j in range(d):
        for direction in (1, -1):
            preds = [i for i in range(d) if direction * (pos[i] - pos[j]) < 0]
            if not preds:
                continue
            design = np.column_stack([x_np[:, preds], np.ones(n)])
            beta, *_ = np.linalg.lstsq(design, x_np[:, j], rcond=None)
            np.testing.assert_allclose(weights[preds, j], beta[:-1], atol=2e-3)
            if direction == 1:
                rss = np.sum((x_np[:, j] - design @ beta) ** 2)
                assert float(sem.log_scale[j]) == pytest.approx(0.5 * math.log(rss / n), abs=1e-3)
    assert torch.all(torch.diagonal(logits) == 0)
    # a strong coefficient starts as an edge, a null one below the prior
    strong = np.abs(weights) > 0.5
    assert (logits.numpy()[strong] > 0).all()


def test_regressions_given_parents_are_least_squares_given_the_parents():
    """A parent's coefficient is its coefficient in the regression on the parent set, another
    predecessor's that in the regression on the set plus itself; the squared standard error
    is ``sigma^2 [Sigma^{-1}]_ii / n`` of that regression, the noise the set's residual."""
    from pyrostruct.causal.regressions import regressions_given_parents

    rng = np.random.default_rng(0)
    d, n = 6, 300
    x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    cov = torch.cov(torch.tensor(x).T, correction=0)
    order = [3, 1, 0, 5, 2, 4]
    parents = np.zeros((d, d), dtype=bool)
    parents[[3, 1, 0, 5, 3], [0, 0, 2, 4, 4]] = True
    coef, se2, noise_var = regressions_given_parents(cov, n, order, parents)
    for k, j in enumerate(order):
        chosen = [i for i in order[:k] if parents[i, j]]
        for i in order[:k]:
            inputs = chosen if i in chosen else [*chosen, i]
            design = np.column_stack([x[:, inputs], np.ones(n)])
            beta, *_ = np.linalg.lstsq(design, x[:, j], rcond=None)
            resid = x[:, j] - design @ beta
            inv = np.linalg.inv(np.atleast_2d(np.cov(x[:, inputs].T, bias=True)))
            where = inputs.index(i)
            assert float(coef[i, j]) == pytest.approx(beta[where], abs=1e-8)
            assert float(se2[i, j]) == pytest.approx(resid @ resid / n * inv[where, where] / n,
                                                     rel=1e-8)  # fmt: skip
        design = np.column_stack([x[:, chosen], np.ones(n)])
        beta, *_ = np.linalg.lstsq(design, x[:, j], rcond=None)
        resid = x[:, j] - design @ beta
        assert float(noise_var[j]) == pytest.approx(resid @ resid / n, rel=1e-8)
    position = {v: k for k, v in enumerate(order)}
    later = np.array([[position[i] >= position[j] for j in range(d)] for i in range(d)])
    assert (coef.numpy()[later] == 0).all() and (se2.numpy()[later] == 0).all()


def test_a_parent_its_children_share_starts_off_and_the_refit_start_has_it():
    """The least-squares start regresses a node on all its predecessors: ``A``'s two children,
    near copies of it, take its share of ``Y``, and ``A -> Y`` starts off (the trap
    :data:`~pyrostruct.causal.estimators.analytic.REFIT_AT` is about). Given the parent
    set ``{B}`` the refit's start has it, with its coefficient."""
    rng = np.random.default_rng(0)
    n = 300
    a, b = rng.normal(size=n), rng.normal(size=n)
    c1, c2 = a + 0.05 * rng.normal(size=n), a + 0.05 * rng.normal(size=n)
    y = 0.2 * a + b + 0.1 * rng.normal(size=n)
    x = torch.tensor(np.c_[a, c1, c2, b, y], dtype=torch.float32)
    parents = np.zeros((5, 5), dtype=bool)
    parents[0, [1, 2]] = parents[3, 4] = True
    starts = {}
    for given in (None, parents):
        sem = LinearGaussianSEM(5, weight_prior="pmom")
        sem.initialize(x)
        logits = order_regression_init(x, list(range(5)), sem, prior_logit=-1.0, parents=given)
        starts[given is None] = (float(logits[0, 4]), float(sem.weights()[0, 4]))
    assert starts[True][0] < 0 < starts[False][0]
    assert starts[False][1] == pytest.approx(0.2, abs=0.03)


def test_the_refit_recovers_the_structure_the_start_misses():
    """SF2, d = 100, n = 500, standardized (seed 1 of the grid in ``REFIT_AT``'s text):
    CPDAG-SHD 24 after 750 steps without the refit (27 after 500), 11 with it."""
    ds = datasets.make_dataset(d=100, n=500, graph="SF", edges_per_node=2, noise="nonequal",
                               seed=1)  # fmt: skip
    x = ds.data.to_numpy()
    x = (x - x.mean(0)) / x.std(0)
    result = discover(x, seed=1)
    assert metrics.shd_cpdag(ds.adjacency, result.adjacency) <= 15


def test_sparse_sinks_order_puts_sinks_last():
    # A -> C <- B, C -> D, C -> E: D and E have one neighbour in the moral graph
    w = np.zeros((5, 5))
    w[0, 2], w[1, 2], w[2, 3], w[2, 4] = 1.0, -1.0, 0.8, 1.2
    x, _ = datasets.simulate_linear_sem(w, 5000, seed=0)
    order = sparse_sinks_order(x)
    assert sorted(order) == list(range(5))
    assert order.index(2) < min(order.index(3), order.index(4))


def test_sparse_sinks_order_breaks_exact_ties_the_same_way_whatever_the_row_order():
    # A -> B, A -> C with B and C exchangeable (each row also appears with B and C
    # swapped): their strengths are equal and differed only in the last bits, which
    # depend on the summation order (and the machine): the order a search starts from
    # changed with the order of the rows (an Intel machine failed the search test below
    # that an AMD one passed)
    rng = np.random.default_rng(0)
    a = rng.normal(size=400)
    x = np.c_[a, a + rng.normal(size=400), a + rng.normal(size=400)]
    x = np.r_[x, x[:, [0, 2, 1]]]
    orders = {tuple(sparse_sinks_order(x[np.random.default_rng(s).permutation(len(x))]))
              for s in range(20)}  # fmt: skip
    assert len(orders) == 1


def test_best_position_takes_the_first_of_scores_equal_up_to_rounding():
    from pyrostruct.causal.orders.precedence import best_position

    scores = np.array([-np.inf, -830.5, -830.5 + 1e-13, -831.0])  # argmax: 2
    assert best_position(scores) == 1
    assert best_position(torch.tensor(scores)) == 1
    assert best_position(np.array([-830.5, -830.4])) == 1  # a real difference counts
    assert best_position(np.array([0.3, 0.3 + 1e-7]), tol=1e-6) == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(estimator="magic"), "estimator"),
        (dict(estimator="analytic", sem="mlp"), "linear SEM"),
        (dict(estimator="analytic", dag="smooth"), "dag='order'"),
        (dict(estimator="analytic", batch_size=50), "batch_size"),
    ],
)
def test_analytic_estimator_bad_settings(kwargs, match):
    ds = datasets.make_dataset(d=4, n=100, seed=0)
    with pytest.raises(InputError, match=match):
        discover(ds.data, steps=5, **kwargs)


def test_default_estimator_per_sem():
    ds = datasets.make_dataset(d=4, n=100, seed=0)
    assert discover(ds.data, steps=5).metadata["estimator"] == "analytic"
    mlp = discover(ds.data, steps=5, sem="mlp").metadata
    assert mlp["estimator"] == "straight-through" and mlp["init_order"] == "greedy-sparsest"
    assert discover(ds.data, steps=5, noise="equal").metadata["init_order"] == "equal-variance"
    assert discover(ds.data, steps=5, dag="smooth").metadata["estimator"] == "straight-through"


def _standardized(d, graph, seed, n=500):
    ds = datasets.make_dataset(d=d, n=n, graph=graph, seed=seed)
    x = ds.data.to_numpy()
    return ds, (x - x.mean(0)) / x.std(0)


@pytest.mark.parametrize("block_entries", [None, 7])
@pytest.mark.parametrize("refit", [False, True])
@pytest.mark.parametrize("q", [0, 3, 7])
def test_insertion_scores_equal_the_scores_of_the_inserted_orders(refit, q, block_entries,
                                                                  monkeypatch):  # fmt: skip
    """Issue 19: the scores come from rank-one changes of the current order's regressions
    (no factorization), formed in cache-sized blocks of rows (``block_entries``: blocks
    of one to a few rows here); they equal the scores of the inserted orders from scratch."""
    if block_entries is not None:
        monkeypatch.setattr(greedy_sparsest, "_BLOCK_ENTRIES", block_entries)
    _, x = _standardized(8, "SF", 0)
    xt = torch.tensor(x, dtype=torch.float64)
    n, d = xt.shape
    cov = torch.cov(xt.T, correction=0) + 1e-9 * torch.eye(d, dtype=torch.float64)
    order = [3, 1, 7, 0, 5, 2, 6, 4]
    order.insert(q, order.pop(order.index(4)))
    local, _ = local_scores(cov, n, order, -1.0, 1.0, refit)
    factors = _order_factors(cov, None, order)
    fast, parts = _insertion_scores(factors, n, order, q, local, -1.0, 1.0, refit)
    rest = [i for i in order if i != 4]
    orders = [rest[:p] + [4] + rest[p:] for p in range(d)]
    slow = order_scores(cov, n, torch.tensor(orders), -1.0, refit=refit).numpy()
    np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-6)
    for p in range(d):  # the local terms of the chosen order, for the next move
        expected, _ = local_scores(cov, n, orders[p], -1.0, 1.0, refit)
        np.testing.assert_allclose(_moved_local(parts, p), expected, rtol=1e-9, atol=1e-6)


def test_refitted_score_prefers_a_chain_to_a_complete_dag():
    """X0 -> X1 -> X2, standardized: the orders of the chain's Markov equivalence class
    score above the orders whose least-squares DAG is complete (0, 2, 1) and (2, 0, 1),
    once dropped coefficients are refitted; the mean-field score ranks them the other way."""
    w = np.array([[0.0, 1.2, 0.0], [0.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    x, _ = datasets.simulate_linear_sem(w, 900, noise_scales=[1.4, 0.6, 0.9], seed=1)
    x = (x - x.mean(0)) / x.std(0)
    cov = torch.cov(torch.tensor(x).T, correction=0)
    orders = torch.tensor([[0, 1, 2], [1, 0, 2], [1, 2, 0], [2, 1, 0], [0, 2, 1], [2, 0, 1]])
    refit = order_scores(cov, 900, orders, 0.0, refit=True)
    assert refit[:4].min() > refit[4:].max()
    mean_field = order_scores(cov, 900, orders, 0.0)
    assert mean_field[4:].max() > mean_field[:4].max()
    # the variational fit (explicitly: this test is about it)
    result = discover(x, seed=0, estimator="analytic")  # no edge between X0 and X2 either way
    p = result.edge_probs
    assert p[0, 2] + p[2, 0] < 0.1
    # averaged over the class {0->1->2, 0<-1<-2, 0<-1->2}: P(1 -> 2) = P(1 -> 0) = 2/3
    np.testing.assert_allclose([p[1, 2], p[1, 0], p[0, 1], p[2, 1]], [2 / 3, 2 / 3, 1 / 3, 1 / 3],
                               atol=0.07)  # fmt: skip
    assert result.adjacency.sum() == 2 and metrics.shd_cpdag(w, result.adjacency) == 0


def test_order_scores_prefer_the_true_order_to_its_reverse():
    ds, x = _standardized(12, "SF", 1, n=2000)
    xt = torch.tensor(x, dtype=torch.float64)
    cov = torch.cov(xt.T, correction=0)
    true = list(nx.topological_sort(nx.DiGraph(ds.adjacency)))
    scores = order_scores(cov, 2000, torch.tensor([true, true[::-1]]), -1.5)
    assert scores[0] > scores[1] + 50


def _reversed_edges(adjacency, order):
    pos = {node: k for k, node in enumerate(order)}
    return sum(int(adjacency[i, j]) for i, j in zip(*np.nonzero(adjacency)) if pos[i] > pos[j])


def test_improve_order_climbs_from_a_bad_start():
    ds, x = _standardized(15, "SF", 2, n=1000)
    xt = torch.tensor(x, dtype=torch.float64)
    cov = torch.cov(xt.T, correction=0)
    start = sparse_sinks_order(x)
    better = improve_order(x, start, -1.5)
    assert sorted(better) == list(range(15))
    s0, s1 = order_scores(cov, 1000, torch.tensor([start, better]), -1.5)
    assert s1 >= s0
    assert _reversed_edges(ds.adjacency, better) < _reversed_edges(ds.adjacency, start)
    assert _reversed_edges(ds.adjacency, better) <= 2


def test_discover_recovers_a_standardized_er2_graph():
    """Standardized data (variance no longer grows along the order), unequal noise model:
    the greedy sparsest start and the analytic estimator find the graph at d = 20 (40
    edges) up to three edge errors (DAGMA: SHD 34 on the same data)."""
    ds = datasets.make_dataset(d=20, n=1000, graph="ER", seed=0)
    result = discover(ds.data, seed=0)  # defaults: standardize, noise="nonequal"
    assert result.metadata["init_order"] == "greedy-sparsest"
    assert metrics.shd(ds.adjacency, result.adjacency) <= 3
    assert metrics.auprc(ds.adjacency, result.edge_probs) > 0.95


@pytest.mark.parametrize(
    "kwargs", [dict(), dict(estimator="straight-through"), dict(sem="mlp", steps=3)]
)
def test_discover_follows_the_default_dtype(kwargs):
    """A float64 default (set by the user, or by another library such as DAGMA) works."""
    ds = datasets.make_dataset(d=4, n=100, seed=0)
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        result = discover(ds.data, steps=kwargs.pop("steps", 5), **kwargs)
    finally:
        torch.set_default_dtype(before)
    assert np.isfinite(result.elbo_trace).all()


@pytest.mark.parametrize("prior_logit", [-3.0, -1.25, 0.0, 2.0])
def test_bernoulli_kl_equals_torchs(prior_logit):
    from pyrostruct.causal.collapsed import _bernoulli_kl

    logits = torch.linspace(-30, 30, 2001, dtype=torch.float64)
    q = torch.distributions.Bernoulli(logits=logits)
    p = torch.distributions.Bernoulli(logits=torch.tensor(prior_logit, dtype=torch.float64))
    expected = torch.distributions.kl_divergence(q, p)
    torch.testing.assert_close(_bernoulli_kl(logits, prior_logit), expected, rtol=0, atol=1e-12)


def _term(cov, n, prefix, refit):
    """The last node's term in ``prefix``, from the public score: independent of the search."""
    whole = order_scores(cov, n, torch.tensor([prefix]), -1.0, refit=refit)
    rest = (
        order_scores(cov, n, torch.tensor([prefix[:-1]]), -1.0, refit=refit)
        if len(prefix) > 1
        else torch.zeros(1)
    )
    return float(whole - rest)


@pytest.mark.parametrize("refit", [False, True])
@pytest.mark.parametrize("q", [0, 2, 5])
@pytest.mark.parametrize("targets", [(2, 4), (0, 1, 2, 3, 4, 5), (1, 3)])
def test_insertion_scores_with_interventions_score_each_node_on_its_own_rows(refit, q, targets):
    """Issue 24: a node intervened on in some rows is scored on the others only; every
    insertion score equals the sum of the node terms computed from scratch that way
    (the moved node intervened or not, intervened nodes before and after it)."""
    from pyrostruct.causal.regressions import regime_covariances

    _, x = _standardized(6, "ER", 1)
    mask = np.zeros(x.shape, dtype=bool)
    for k, j in enumerate(targets):
        mask[k * 60 : (k + 1) * 60 + 20 * j, j] = True
    regimes = regime_covariances(x, mask)
    assert set(regimes) == set(targets) and regimes[targets[0]][1] == len(x) - 60 - 20 * targets[0]
    n, d = x.shape
    cov = torch.cov(torch.tensor(x).T, correction=0) + 1e-9 * torch.eye(d, dtype=torch.float64)
    order = [3, 1, 5, 0, 2, 4]
    order.insert(q, order.pop(order.index(2)))
    local, _ = local_scores(cov, n, order, -1.0, 1.0, refit, regimes=regimes)
    factors = _order_factors(cov, regimes, order)
    fast, parts = _insertion_scores(factors, n, order, q, local, -1.0, 1.0, refit)
    rest = [i for i in order if i != 2]
    for p in range(d):
        inserted = rest[:p] + [2] + rest[p:]
        terms = [
            _term(*regimes.get(node, (cov, n)), inserted[: k + 1], refit)
            for k, node in enumerate(inserted)
        ]
        np.testing.assert_allclose(fast[p], sum(terms), rtol=1e-9, atol=1e-6)
        np.testing.assert_allclose(_moved_local(parts, p), terms, rtol=1e-9, atol=1e-6)


def test_position_regressions_with_one_covariance_per_order_equal_one_call_each():
    """The regimes' factors come from one batched call with a covariance per order; each
    equals the single-order call on that covariance (whose inverse factor is LAPACK's)."""
    from pyrostruct.causal.regressions import _position_regressions

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(3, 6, 40, generator=gen, dtype=torch.float64)
    covs = a @ a.transpose(-1, -2) / 40
    orders = torch.stack([torch.randperm(6, generator=gen) for _ in range(3)])
    batched = _position_regressions(covs, orders)
    for k in range(3):
        single = _position_regressions(covs[k], orders[k : k + 1])
        for got, want in zip(batched, single):
            torch.testing.assert_close(got[k], want[0], rtol=1e-10, atol=1e-12)


def test_least_squares_start_regresses_an_intervened_node_on_its_own_rows():
    """Issue 24: do(X1) rows say nothing about X1's mechanism: its start is the least
    squares of the other rows, and the other nodes use every row."""
    w = np.array([[0.0, 1.5, 0.0], [0.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    x, mask = datasets.simulate_linear_sem(w, 900, noise_scales=[1.0, 0.5, 0.7],
                                           interventions=[[1]], seed=3)  # fmt: skip
    sem = LinearGaussianSEM(3, weight_prior_scale=1.0)
    order_regression_init(torch.tensor(x), [0, 1, 2], sem, -1.0, mask)
    keep = ~mask[:, 1]
    slope = np.polyfit(x[keep, 0], x[keep, 1], 1)
    unit = sem.weight_unit.detach().numpy()
    assert sem.weight.detach().numpy()[0, 1] * unit[0, 1] == pytest.approx(slope[0], rel=1e-6)
    assert float(sem.bias.detach()[1]) == pytest.approx(slope[1], abs=1e-6)
    pooled = np.polyfit(x[:, 0], x[:, 1], 1)[0]
    assert abs(pooled - slope[0]) > 0.2  # pooling the do(X1) rows would have blurred it


def test_greedy_search_with_interventions_also_starts_from_the_observational_rows():
    """Issue 24: rows pooled over regimes mislead the sparse-sinks start (an intervened node
    is cut from its parents in some rows). On this 6-node graph with 13 edges and do(X2) the
    search from the pooled start alone stopped 277 nats below the true order's score, and
    discover reversed the edges at the intervened node; from the observational rows' start
    it reaches an order at least as good as the true one by the mean-field score that
    chooses the search's ending (the true order up to where X0 stands among its parents
    X4, X5: 1.2 nats below it by the refitted score)."""
    from pyrostruct.causal.data import Problem, prepare_columns
    from pyrostruct.causal.orders.greedy_sparsest import greedy_sparsest_order
    from pyrostruct.causal.regressions import regime_covariances
    from pyrostruct.graph import topological_order

    ds = datasets.make_dataset(d=6, n=600, graph="ER", noise="nonequal", interventions=[[2]],
                               seed=6)  # fmt: skip
    x = ds.data.to_numpy()
    mask = np.zeros(x.shape, dtype=bool)
    mask[:, 2] = np.asarray(ds.intervention_column()) == ds.names[2]
    problem = Problem.create(prepare_columns(x, standardize=True, mask=mask, names=ds.names), ds.names, mask)
    xs = problem.x.double()
    prior = math.log(0.4 / 0.6)
    found = greedy_sparsest_order(xs.numpy(), prior, mask=mask)
    cov = torch.cov(xs.T, correction=0) + 1e-9 * torch.eye(6, dtype=torch.float64)
    regimes = regime_covariances(xs, mask)

    def score(order):
        return float(local_scores(cov, len(xs), order, prior, 1.0, regimes=regimes)[0].sum())

    truth = topological_order(torch.as_tensor(ds.adjacency)).tolist()
    assert score(found) >= score(truth) - 1.0
    result = discover(x, interventions=mask, steps=300, seed=0)
    for parent in np.nonzero(ds.adjacency[:, 2])[0]:  # the edges into and out of X2
        assert result.edge_probs[parent, 2] > 0.9
    for child in np.nonzero(ds.adjacency[2])[0]:
        assert result.edge_probs[2, child] > 0.9


def test_order_searches_take_read_only_tables_without_warnings():
    """A read-only table (pandas' copy-on-write ``to_numpy()``, a memory map) is copied, not
    shared with torch: torch warns on non-writable arrays. Run in a fresh interpreter,
    since torch warns only once a process."""
    import subprocess
    import sys

    code = """
import warnings
warnings.simplefilter("error")
import math
import numpy as np
from pyrostruct.causal import datasets
from pyrostruct.causal.orders import initial_order
x = datasets.make_dataset(d=6, n=200, seed=0).data.to_numpy().copy()
x.flags.writeable = False
mask = np.zeros(x.shape, dtype=bool)
mask[:20, 1] = True
for spec in ("sparse-sinks", "equal-variance", "greedy-sparsest", "greedy-random"):
    initial_order(spec, x, math.log(0.3))
    initial_order(spec, x, math.log(0.3), mask=mask)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_greedy_search_with_interventions_takes_the_bic_ending_where_the_refitted_one_errs():
    """Issue 18: after the first round of active design on a 20-node ER1 graph (50
    observational rows, then do(X9) and do(X14), 10 rows each: the experiments
    ``benchmarks/active_design.py`` chose for seed 2), the refitted ending alone gave an
    order whose grow-shrink DAG is 20 edges from the truth, and discover's posterior an
    expected SHD of 18 (ELBO -21.16 a row); the BIC ending, chosen by its mean-field
    score, gives 12 edges and an expected SHD of 11.5 (ELBO -20.82). The true order's
    DAG is 3 edges away: the search is still far from it, but no longer as far."""
    from pyrostruct.causal.data import Problem, prepare_columns
    from pyrostruct.causal.datasets import LinearSEMEnvironment
    from pyrostruct.causal.orders.greedy_sparsest import greedy_sparsest_order
    from pyrostruct.causal.orders.grow_shrink import grow_shrink_parents
    from pyrostruct.causal.regressions import regime_covariances

    lab = LinearSEMEnvironment.random(20, edges_per_node=1.0, seed=2)
    env = LinearSEMEnvironment(lab.weights, lab.noise_scales, lab.names, seed=1002)
    table = pd.concat([lab.observe(50), env.intervene({"X9": 1.7420820722059354}, 10),
                       env.intervene({"X14": 3.0320551858960485}, 10)], ignore_index=True)  # fmt: skip
    mask = np.zeros((len(table), 20), dtype=bool)
    mask[50:60, 9] = mask[60:, 14] = True
    x = table[lab.names].to_numpy()
    columns = prepare_columns(x, standardize=True, mask=mask, names=lab.names)
    xs = Problem.create(columns, lab.names, mask).x.double()
    order = greedy_sparsest_order(xs.numpy(), math.log(2 / 17), mask=mask)
    regimes = {j: (c.numpy(), m) for j, (c, m) in regime_covariances(xs, mask).items()}
    cov = torch.cov(xs.T, correction=0).numpy()
    found, _ = grow_shrink_parents(cov, len(xs), order, regimes=regimes)
    assert np.abs(found - lab.adjacency).sum() <= 14
    result = discover(x, interventions=mask, seed=0)
    assert metrics.expected_shd(lab.adjacency, result.sample_dags(300, seed=1)) < 15
