"""auto_guide / AutoStructural / AutoPermutation, and AutoDAG against exact enumeration."""

import math

import networkx as nx
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide import AutoDelta, AutoNormal
from pyro.optim import Adam, ClippedAdam
from pyro.poutine.util import site_is_subsample

from pyrostruct.distributions import ErdosRenyiDAG, OrderedDAG, PlackettLuce, get_order
from pyrostruct.distributions.temperature import ExponentialSchedule
from pyrostruct.infer import TraceRLOO_ELBO, TraceRWS_ELBO, fit
from pyrostruct.infer.autoguide import (
    AutoDAG,
    AutoGumbelSoftmax,
    AutoPermutation,
    AutoStructural,
    auto_guide,
    classify_site,
)
from pyrostruct.infer.importance import VectorizationWarning

# ---------------------------------------------------------------------------
# exact posterior over all DAGs on 3 nodes: weights integrated out analytically


def conjugate_log_lik(X, A, noise=1.0, weight_scale=1.0):
    """log p(X | A) of a linear-Gaussian SEM with w_ij ~ N(0, weight_scale^2) integrated out.

    Column j is N(0, noise^2 I + weight_scale^2 X diag(A[:, j]) X^T); with S = X^T X
    (Sylvester and push-through identities, no n x n matrix):
      log det = n log noise^2 + log det(I + M_j S / noise^2),  M_j = weight_scale^2 diag(A[:, j])
      x^T C^-1 x = (x^T x - x^T X (I + M_j S / noise^2)^-1 M_j X^T x / noise^2) / noise^2.
    Differentiable in A (no square roots), so straight-through gradients pass.
    """
    n, d = X.shape
    s2, w2 = noise**2, weight_scale**2
    A = A * (1 - torch.eye(d, dtype=A.dtype))  # no self-loops, not even in the gradient
    S = X.T @ X
    M = w2 * A.transpose(-1, -2).unsqueeze(-1) * torch.eye(d)  # (..., j, d, d) = diag(A[:, j])
    K = torch.eye(d) + M @ S / s2
    b = S.expand(M.shape[:-1])  # row j of S is X^T x_j
    Mb = (M @ b.unsqueeze(-1)).squeeze(-1)
    quad = (torch.diagonal(S) - (b * torch.linalg.solve(K, Mb)).sum(-1) / s2) / s2
    logdet = n * math.log(s2) + torch.logdet(K)
    return (-0.5 * (quad + logdet + n * math.log(2 * math.pi))).sum(-1)


def test_conjugate_log_lik_matches_dense_gaussian():
    torch.manual_seed(0)
    X = torch.randn(7, 3, dtype=torch.float64)
    A = torch.tensor([[0, 1, 1], [0, 0, 1], [0, 0, 0]], dtype=torch.float64)
    expected = 0.0
    for j in range(3):
        cov = 0.8**2 * torch.eye(7) + 1.3**2 * X @ torch.diag(A[:, j]) @ X.T
        expected += dist.MultivariateNormal(torch.zeros(7), cov).log_prob(X[:, j])
    got = conjugate_log_lik(X, A, noise=0.8, weight_scale=1.3)
    assert torch.allclose(got, expected, atol=1e-8)


def _exact_edge_marginals(prior, X):
    dags = prior.enumerate_support(expand=False)
    assert dags.shape[0] == 25
    log_post = prior.log_prob(dags) + conjugate_log_lik(X, dags.to(X.dtype))
    post = torch.softmax(log_post, 0)
    return (post[:, None, None] * dags).sum(0), post.max().item()


def _fit_dag_guide(X, prior, steps=1500, seed=0):
    """AutoDAG with the unbiased score-function estimator and leave-one-out baselines.

    The straight-through estimator is badly biased here: the adjacency enters
    the marginal likelihood non-linearly, and its gradient at a hard sample can
    be a thousand times the finite difference it stands for.
    """

    def model(X):
        G = pyro.sample("G", prior)
        pyro.factor("lik", conjugate_log_lik(X, G.to(X.dtype)))

    pyro.set_rng_seed(seed)
    guide = AutoDAG(model, estimator="score", init_edge_prob=0.5)
    optim = ClippedAdam({"lr": 0.2, "lrd": 0.05 ** (1 / steps)})
    svi = SVI(model, guide, optim, TraceRLOO_ELBO(num_particles=32))
    for _ in range(steps):
        svi.step(X)
    return guide.edge_probs(num_samples=4000).mean


def _data(kind, n=200, seed=1):
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(n, 3, generator=g, dtype=torch.float64)
    if kind == "collider":  # 0 -> 2 <- 1, strong effects: the orientation is identified
        x0, x1 = e[:, 0], e[:, 1]
        x2 = 2.0 * x0 - 2.0 * x1 + e[:, 2]
    else:  # weak chain 0 -> 1 -> 2: Markov-equivalent orientations share the mass
        x0 = e[:, 0]
        x1 = 0.5 * x0 + e[:, 1]
        x2 = 0.5 * x1 + e[:, 2]
    return torch.stack([x0, x1, x2], -1)


def test_autodag_matches_exact_posterior_on_concentrated_collider():
    X = _data("collider")
    prior = OrderedDAG(torch.zeros(3, dtype=torch.float64), torch.zeros(3, 3, dtype=torch.float64))
    exact, top = _exact_edge_marginals(prior, X)
    assert top > 0.9  # the posterior is concentrated on one DAG
    assert exact[0, 2] > 0.95 and exact[1, 2] > 0.95 and exact[0, 1] + exact[1, 0] < 0.1
    approx = _fit_dag_guide(X, prior)
    assert (approx - exact).abs().max() < 0.1, (approx, exact)


def _integrated_model(prior):
    def model(X):
        G = pyro.sample("G", prior)
        pyro.factor("lik", conjugate_log_lik(X, G.to(X.dtype)))

    return model


def test_fit_by_default_gives_the_exact_posterior_when_the_dag_enters_nonlinearly():
    """Issue 22: a 3-node model whose only latent is the DAG, the linear weights
    integrated out. With the straight-through gradient (the former default) the edge
    marginals landed 0.57 from exact; the default is now the unbiased score-function
    estimator, trained by fit with TraceRWS_ELBO, and result.edge_probs weighs the
    guide's draws by the model."""
    X = _data("collider")
    prior = OrderedDAG(torch.zeros(3, dtype=torch.float64), torch.zeros(3, 3, dtype=torch.float64))
    exact, _ = _exact_edge_marginals(prior, X)
    result = fit(_integrated_model(prior), X, seed=0)
    assert result.score_function_sites == ["G"]
    assert result.guide.part("G").estimators == {"G": "score"}
    assert isinstance(result.elbo, TraceRWS_ELBO) and result.elbo.num_particles == 16
    assert result.elbo.vectorize_particles
    approx = result.edge_probs("G")
    assert approx.method == "importance-union"  # the default restarts, pooled
    assert (approx.mean - exact).abs().max() < 0.05, (approx, exact)


def test_fit_draws_particles_one_by_one_for_a_model_that_does_not_broadcast():
    X = _data("collider", n=50)
    prior = OrderedDAG(torch.zeros(3, dtype=torch.float64), torch.zeros(3, 3, dtype=torch.float64))

    def model(X):
        G = pyro.sample("G", prior)
        mean = torch.mm(X, G * 1.5)  # 2-d only: fails under a vectorized particle plate
        pyro.factor("lik", dist.Normal(mean, 1.0).log_prob(X).sum())

    with pytest.warns(VectorizationWarning, match="one by one"):
        result = fit(model, X, steps=20, seed=0, num_particles=4)
    assert isinstance(result.elbo, TraceRLOO_ELBO)
    assert not result.elbo.vectorize_particles and result.elbo.num_particles == 4
    assert all(math.isfinite(loss) for loss in result.losses)


def test_fit_does_not_vectorize_a_model_that_runs_but_computes_wrong_under_particles():
    """X @ (G * W) inside a plate of rows runs under a particle plate but gives a
    (particles, 1, rows) likelihood that Pyro broadcasts against (particles, rows): the
    wrong number. fit checks particle 0 against a plain run and draws one by one."""
    X = _data("collider", n=30).float()

    def model(X):
        G = pyro.sample("G", ErdosRenyiDAG(3, expected_edges=1.5))
        W = pyro.sample("W", dist.Normal(0.0, 1.0).expand([3, 3]).to_event(2))
        with pyro.plate("rows", X.shape[0]):
            pyro.sample("X", dist.Normal(X @ (G * W), 1.0).to_event(1), obs=X)

    with pytest.warns(VectorizationWarning, match="one by one"):
        result = fit(model, X, steps=3, seed=0)
    assert not result.elbo.vectorize_particles


def test_autodag_on_spread_out_chain_posterior_reports_gap():
    """On a chain the exact posterior spreads over Markov-equivalent DAGs.

    The order-then-edges family is a mixture over orders and can hold several
    of them; the edge logits given the order are shared by all orders, so the
    split between orientations is only approximate. Measured here (n = 60,
    seed 1): the skeleton marginals match within 0.1, the directed-edge
    marginals within 0.21 (max |q - p|).
    """
    X = _data("chain", n=60)
    prior = OrderedDAG(torch.zeros(3, dtype=torch.float64), torch.zeros(3, 3, dtype=torch.float64))
    exact, top = _exact_edge_marginals(prior, X)
    assert top < 0.5  # spread out
    approx = _fit_dag_guide(X, prior)
    skeleton_exact = exact + exact.T
    skeleton_approx = approx + approx.T
    # The skeleton (edge present in either direction) is identified and matched closely...
    assert (skeleton_approx - skeleton_exact).abs().max() < 0.1, (approx, exact)
    # ...while the orientation split is only approximate.
    gap = (approx - exact).abs().max().item()
    print(f"chain: max |q - p| over directed edges = {gap:.3f}")
    assert gap < 0.5


# ---------------------------------------------------------------------------
# auto_guide on a mixed model


def mixed_model(y):
    pyro.sample("G", ErdosRenyiDAG(4, expected_edges=2.0))
    pyro.sample("perm", PlackettLuce(torch.zeros(3)))
    w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    s = pyro.sample("s", dist.LogNormal(0.0, 1.0))
    with pyro.plate("data", len(y)):
        z = pyro.sample("z", dist.Bernoulli(0.3))
        mean = w[..., 0] * z + w[..., 1]
        pyro.sample("y", dist.Normal(mean, s), obs=y)


def test_auto_guide_assigns_every_site_to_its_part():
    y = torch.randn(5)
    guide = auto_guide(mixed_model)
    values = guide(y)
    assert set(values) == {"G", "perm", "w", "s", "z"}
    assert guide.site_parts == {
        "G": "dag",
        "perm": "permutation",
        "z": "discrete",
        "w": "continuous",
        "s": "continuous",
    }
    assert isinstance(guide, AutoStructural)
    assert isinstance(guide.part("G"), AutoDAG)
    assert isinstance(guide.part("perm"), AutoPermutation)
    assert isinstance(guide.part("z"), AutoGumbelSoftmax)
    assert isinstance(guide.part("w"), AutoNormal)
    # The discrete site of the model the guide trains on is relaxed; the others are not.
    trace = pyro.poutine.trace(guide.model).get_trace(y)
    assert type(trace.nodes["z"]["fn"]).__name__.startswith("Concrete")
    assert isinstance(trace.nodes["G"]["fn"], OrderedDAG)
    assert values["z"].shape == (5,) and values["G"].shape == (4, 4)


def test_auto_guide_overrides_and_predictive():
    y = torch.randn(6)
    guide = auto_guide(
        mixed_model, overrides={"w": AutoDelta, "s": lambda m: AutoNormal(m, init_scale=0.01)}
    )
    svi = SVI(guide.model, guide, Adam({"lr": 0.01}), Trace_ELBO())
    for _ in range(3):
        assert math.isfinite(svi.step(y))
    assert guide.site_parts["w"] == "override" and isinstance(guide.part("w"), AutoDelta)
    assert guide.site_parts["s"] == "override" and guide.part("s") is not guide.part("G")
    samples = Predictive(guide.model, guide=guide, num_samples=4, return_sites=["G", "w", "y"])(y)
    # Global sites get a singleton plate dimension, as in Pyro's own Predictive.
    assert samples["G"].shape == (4, 1, 4, 4) and samples["w"].shape == (4, 1, 2)
    assert samples["y"].shape == (4, 6)
    for G in samples["G"].reshape(-1, 4, 4):
        assert nx.is_directed_acyclic_graph(nx.DiGraph(G.numpy()))
    median = guide.median(y)
    assert nx.is_directed_acyclic_graph(nx.DiGraph(median["G"].numpy()))
    assert median["perm"].sum(-1).eq(1).all() and median["perm"].sum(-2).eq(1).all()


def test_auto_guide_bad_sites_name_the_site_and_the_fix():
    def poisson_model():
        pyro.sample("k", dist.Poisson(3.0))

    with pytest.raises(NotImplementedError, match=r"'k'.*exclude"):
        auto_guide(poisson_model)()

    class Spiky(dist.constraints.Constraint):  # a continuous support with no bijection
        def check(self, value):
            return value == value

    class Odd(dist.Normal):
        support = Spiky()

    def odd_model():
        pyro.sample("odd", Odd(0.0, 1.0))

    with pytest.raises(ValueError, match=r"'odd'.*poutine.block.*overrides"):
        auto_guide(odd_model)()
    with pytest.raises(ValueError, match="not latent sites of the model: \\['nope'\\]"):
        auto_guide(mixed_model, overrides={"nope": AutoDelta})(torch.randn(3))
    with pytest.raises(ValueError, match="must be an autoguide class"):
        auto_guide(mixed_model, overrides={"w": 3})


def test_classify_site_of_relaxed_and_plain_sites():
    trace = pyro.poutine.trace(mixed_model).get_trace(torch.randn(2))
    kinds = {
        n: classify_site(s) for n, s in trace.iter_stochastic_nodes() if not site_is_subsample(s)
    }
    assert kinds == {
        "G": "dag", "perm": "permutation", "w": "continuous", "s": "continuous", "z": "discrete"
    }


# ---------------------------------------------------------------------------
# AutoPermutation: seriation from noisy pairwise comparisons


def test_autopermutation_recovers_a_ranking_from_pairwise_comparisons():
    d = 5
    true_order = torch.tensor([3, 0, 4, 1, 2])
    rank = torch.empty(d, dtype=torch.long)
    rank[true_order] = torch.arange(d)
    g = torch.Generator().manual_seed(0)
    i = torch.randint(0, d, (300,), generator=g)
    j = torch.randint(0, d, (300,), generator=g)
    keep = i != j
    i, j = i[keep], j[keep]
    wins = (torch.rand(len(i), generator=g) < torch.sigmoid(2.0 * (rank[j] - rank[i]).float()))

    def model(i, j, wins):
        P = pyro.sample("perm", PlackettLuce(torch.zeros(d)))
        position = P.T @ torch.arange(d, dtype=P.dtype)  # position of each item
        with pyro.plate("games", len(i)):
            pyro.sample("win", dist.Bernoulli(logits=2.0 * (position[j] - position[i])),
                        obs=wins.float())

    result = fit(model, i, j, wins, steps=300, lr=0.05, num_particles=4)
    guide = result.guide
    assert guide.site_parts == {"perm": "permutation"}
    assert get_order(guide.median(i, j, wins)["perm"]) is None  # mode: a plain matrix
    assert guide.median(i, j, wins)["perm"].argmax(-1).tolist() == true_order.tolist()
    probs = guide.part("perm").position_probs(num_samples=500)
    assert probs.mean.shape == (d, d)
    assert torch.allclose(probs.mean.sum(-1), torch.ones(d))
    assert probs.mean[0, 3] > 0.8  # item 3 first with high probability
    assert result.losses[-1] < result.losses[0]


def test_autopermutation_rejects_other_sites_and_bad_options():
    def model():
        pyro.sample("x", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="PlackettLuce sites only.*poutine.block"):
        AutoPermutation(model)()
    with pytest.raises(ValueError, match="relaxation"):
        AutoPermutation(model, relaxation="magic")
    with pytest.raises(ValueError, match="init_scale"):
        AutoPermutation(model, init_scale=-1.0)


# ---------------------------------------------------------------------------
# fit


def test_fit_is_reproducible_and_steps_schedules():
    def model(y):
        p = pyro.sample("p", dist.Beta(2.0, 2.0))
        with pyro.plate("n", len(y)):
            z = pyro.sample("z", dist.Bernoulli(p))
            pyro.sample("y", dist.Normal(3.0 * z, 0.5), obs=y)

    y = torch.cat([torch.randn(20) * 0.5, 3.0 + torch.randn(20) * 0.5])
    schedule = ExponentialSchedule(initial=1.0, rate=0.01, minimum=0.2)
    # discrete="relax": fit's default, "auto", would sum z out exactly (enumeration)
    a = fit(model, y, steps=50, temperature=schedule, seed=3, discrete="relax")
    assert schedule.num_steps_taken == 50
    b = fit(model, y, steps=50, temperature=0.5, seed=3, discrete="relax")
    c = fit(model, y, steps=50, temperature=0.5, seed=3, discrete="relax")
    assert b.losses == c.losses
    assert a.guide.site_parts == {"p": "continuous", "z": "discrete"}
    # A guide from auto_guide trains on its relaxed model even when given the plain one.
    guide = auto_guide(model, temperature=0.5)
    d = fit(model, y, guide=guide, steps=50, seed=3)
    assert d.model is guide.model and d.losses == b.losses
    with pytest.raises(ValueError, match="steps"):
        fit(model, y, steps=0)
    with pytest.raises(ValueError, match="lr"):
        fit(model, y, lr=-1.0)


def test_structural_sites_are_never_relaxed_or_taken_for_discrete():
    """Score-function DAG priors (has_rsample off) still go to AutoDAG, unrelaxed."""

    def model():
        pyro.sample("G", OrderedDAG(torch.zeros(3), torch.zeros(3, 3), reparameterized=False))
        pyro.sample("P", PlackettLuce(torch.zeros(3)).has_rsample_(False))

    guide = auto_guide(model)
    guide()
    assert guide.site_parts == {"G": "dag", "P": "permutation"}
    trace = pyro.poutine.trace(guide.model).get_trace()
    assert isinstance(trace.nodes["G"]["fn"], OrderedDAG)
    assert isinstance(trace.nodes["P"]["fn"], PlackettLuce)
