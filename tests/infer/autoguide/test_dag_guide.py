"""AutoDAG: set-up, summaries, the ELBO against enumeration, and the posterior against
the exact posterior over all 25 DAGs on 3 nodes."""

import itertools
import math

import networkx as nx
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO
from pyro.optim import Adam

from pyrostruct.distributions import DAGMixture, ErdosRenyiDAG, OrderedDAG, SmoothOrientationDAG
from pyrostruct.distributions.temperature import ExponentialSchedule
from pyrostruct.infer.autoguide import AutoDAG


def _dag_model(d=4, expected_edges=2.0):
    def model():
        return pyro.sample("G", ErdosRenyiDAG(d, expected_edges=expected_edges))

    return model


def test_setup_initializes_from_the_prior_and_from_an_order():
    model = _dag_model(4, expected_edges=3.0)
    mixture = AutoDAG(model, init_orders={"G": [2, 0, 3, 1]})
    mixture()
    first = mixture.scores.G.detach()[0]  # the first component starts at the given order
    assert torch.argsort(first, descending=True).tolist() == [2, 0, 3, 1]
    pyro.clear_param_store()  # same param names: a new guide would read the old values
    guide = AutoDAG(model, init_orders={"G": [2, 0, 3, 1]}, num_components=1)
    value = guide()["G"]
    assert value.shape == (4, 4)
    probs = torch.sigmoid(guide.edge_logits.G)
    assert torch.allclose(probs, torch.full((4, 4), 3.0 / 6.0))  # the prior's p = m / C(d, 2)
    scores = guide.scores.G.detach()
    assert torch.argsort(scores, descending=True).tolist() == [2, 0, 3, 1]
    median = guide.median()["G"]
    assert nx.is_directed_acyclic_graph(nx.DiGraph(median.numpy()))
    assert isinstance(guide.get_distribution("G"), OrderedDAG)


def test_smooth_orientation_prior_gets_a_smooth_orientation_guide():
    def model():
        return pyro.sample("G", SmoothOrientationDAG(torch.zeros(3), torch.zeros(3, 3), shift=0.5))

    for K in (1, 2):
        pyro.clear_param_store()
        guide = AutoDAG(model, init_edge_prob=0.3, num_components=K)
        guide()
        q = guide.get_distribution("G")
        q = q if K == 1 else q.components
        assert isinstance(q, SmoothOrientationDAG) and q.shift == 0.5
        assert torch.allclose(q.edge_probs, torch.full((3, 3), 0.3).expand(q.batch_shape + (3, 3)))


def test_summaries():
    guide = AutoDAG(_dag_model(5), init_scale=3.0)
    guide()
    dags = guide.sample_dags(200)
    assert dags.shape == (200, 5, 5)
    assert all(nx.is_directed_acyclic_graph(nx.DiGraph(a.numpy())) for a in dags)
    few, many = guide.edge_probs(num_samples=100), guide.edge_probs(num_samples=10_000)
    assert few.stderr.max() > 1.5 * many.stderr.max()
    assert torch.allclose(few.mean, many.mean, atol=5 * few.stderr.max().item() + 1e-3)
    # Rao-Blackwellized estimate agrees with plain sample frequencies
    freq = guide.sample_dags(10_000).mean(0)
    assert torch.allclose(freq, many.mean, atol=0.03)
    with pytest.raises(ValueError, match="no DAG site named"):
        guide.edge_probs("H")


def test_non_dag_site_is_refused_with_the_fix():
    def model():
        pyro.sample("G", ErdosRenyiDAG(3, expected_edges=1.0))
        pyro.sample("w", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match=r"site 'w'.*poutine.block\(model, hide=\['w'\]\)"):
        AutoDAG(model)()


def test_estimator_is_score_by_default_unless_the_model_declares_another():
    def model(declared=None):
        infer = {} if declared is None else {"dag_estimator": declared}
        pyro.sample("G", ErdosRenyiDAG(3, expected_edges=1.0), infer=infer)

    guide = AutoDAG(model)
    assert not guide()["G"].requires_grad
    assert guide.estimators == {"G": "score"}
    assert not guide.get_distribution("G").has_rsample
    guide = AutoDAG(model)
    guide("straight-through")
    assert guide.estimators == {"G": "straight-through"}
    assert guide.get_distribution("G").has_rsample
    guide = AutoDAG(model, estimator="score")  # the guide's choice beats the declaration
    guide("straight-through")
    assert guide.estimators == {"G": "score"}
    with pytest.raises(ValueError, match=r"site 'G': infer\['dag_estimator'\] must be one of"):
        AutoDAG(model)("pathwise")
    with pytest.raises(ValueError, match="estimator must be one of 'auto', 'score'"):
        AutoDAG(model, estimator="reinforce")


def test_score_sites_get_a_mixture_guide_straight_through_sites_one_component():
    def model(declared=None):
        infer = {} if declared is None else {"dag_estimator": declared}
        pyro.sample("G", ErdosRenyiDAG(4, expected_edges=2.0), infer=infer)

    guide = AutoDAG(model)
    guide()
    assert guide.num_components == {"G": 4}
    q = guide.get_distribution("G")
    assert isinstance(q, DAGMixture) and q.num_components == 4
    scores = guide.scores.G.detach()
    assert scores.shape == (4, 4) and (scores[1:] - scores[0]).abs().max() > 0.1  # spread
    assert guide.mixture_logits.G.shape == (4,)
    guide = AutoDAG(model)
    guide("straight-through")
    assert guide.num_components == {"G": 1}
    assert AutoDAG(model, num_components=2).__call__() is not None
    with pytest.raises(ValueError, match="num_components=3 needs the score estimator"):
        AutoDAG(model, estimator="straight-through", num_components=3)()
    with pytest.raises(ValueError, match="rao_blackwellize needs one component"):
        AutoDAG(model, num_components=2, rao_blackwellize=True)()
    guide = AutoDAG(model, rao_blackwellize=True)  # the explicit option wins
    guide()
    assert guide.num_components == {"G": 1}
    with pytest.raises(ValueError, match="num_components must be a positive integer"):
        AutoDAG(model, num_components=0)


def test_mixture_edge_probs_agree_with_sample_frequencies():
    def model():
        pyro.sample("G", ErdosRenyiDAG(4, expected_edges=2.0))

    pyro.set_rng_seed(3)
    guide = AutoDAG(model, num_components=3)
    guide()
    with torch.no_grad():
        guide.edge_logits.G.copy_(3 * torch.randn(3, 4, 4))
        guide.mixture_logits.G.copy_(torch.tensor([0.0, 1.0, -1.0]))
    probs = guide.edge_probs(num_samples=20_000)
    freq = guide.sample_dags(20_000).mean(0)
    assert torch.allclose(probs.mean, freq, atol=0.02), (probs.mean, freq)
    assert guide.median()["G"].shape == (4, 4)


def _joint_states(d):
    """All (order, adjacency) pairs of the order-then-edges space."""
    for order in itertools.permutations(range(d)):
        rank = {node: k for k, node in enumerate(order)}
        pairs = [(i, j) for i in range(d) for j in range(d) if rank[i] < rank[j]]
        for bits in itertools.product([0.0, 1.0], repeat=len(pairs)):
            adj = torch.zeros(d, d)
            for (i, j), b in zip(pairs, bits):
                adj[i, j] = b
            yield torch.tensor(order), adj


@pytest.mark.parametrize("rao_blackwellize, components", [(False, 1), (True, 1), (False, 3)])
def test_trace_elbo_equals_the_enumerated_elbo(rao_blackwellize, components):
    d = 3
    target = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    prior = ErdosRenyiDAG(d, expected_edges=1.2)

    def model():
        g = pyro.sample("G", prior)
        pyro.factor("fit", -1.5 * (g - target).abs().sum((-1, -2)))

    guide = AutoDAG(model, rao_blackwellize=rao_blackwellize, num_components=components)
    guide()
    with torch.no_grad():
        guide.scores.G.copy_(torch.randn(guide.scores.G.shape))
        guide.edge_logits.G.copy_(torch.randn(guide.edge_logits.G.shape))
    q = guide.get_distribution("G")
    exact = 0.0
    for order, adj in _joint_states(d):
        log_q = q.log_prob(adj, order=order).detach()
        f = -1.5 * (adj - target).abs().sum()
        exact += float(log_q.exp() * (f + prior.joint_log_prob(adj, order) - log_q))
    total = sum(float(q.log_prob(a, order=o).exp()) for o, a in _joint_states(d))
    assert total == pytest.approx(1)
    n = 20_000
    elbo = Trace_ELBO(num_particles=n, vectorize_particles=True, max_plate_nesting=0)
    with torch.no_grad():
        estimate = -elbo.loss(model, guide)
    # standard error from a second, independent estimate of the spread
    per_particle = []
    for _ in range(200):
        with torch.no_grad():
            per_particle.append(-Trace_ELBO().loss(model, guide))
    se = torch.tensor(per_particle).std().item() / math.sqrt(n)
    assert estimate == pytest.approx(exact, abs=5 * se + 1e-3)


def _log_marginal_likelihood(y, x):
    """log N(y; 0, I + X X^T): y = X w + e, w ~ N(0, I), e ~ N(0, I)."""
    n = y.shape[0]
    cov = torch.eye(n, dtype=y.dtype) + x @ x.T
    return dist.MultivariateNormal(torch.zeros(n, dtype=y.dtype), cov).log_prob(y)


def _family_tables(data):
    """Per node j and parent set within the other two nodes: the conjugate log evidence."""
    d = data.shape[1]
    tables = {}
    for j in range(d):
        others = [i for i in range(d) if i != j]
        for a, b in itertools.product([0, 1], repeat=2):
            parents = [p for p, on in zip(others, (a, b)) if on]
            tables[j, a, b] = _log_marginal_likelihood(data[:, j], data[:, parents]).item()
    return tables


def _score(tables, adj):
    """Multilinear in the parent indicators, so straight-through gradients are finite
    differences of the exact family scores."""
    d = adj.shape[-1]
    total = 0.0
    for j in range(d):
        others = [i for i in range(d) if i != j]
        a, b = adj[..., others[0], j], adj[..., others[1], j]
        total = total + (
            tables[j, 0, 0] * (1 - a) * (1 - b)
            + tables[j, 1, 0] * a * (1 - b)
            + tables[j, 0, 1] * (1 - a) * b
            + tables[j, 1, 1] * a * b
        )
    return total


def _exact_and_variational(data, steps=700, seed=0):
    pyro.set_rng_seed(seed)
    tables = _family_tables(data)
    prior = ErdosRenyiDAG(3, expected_edges=1.5)
    dags = prior.enumerate_support()
    assert len(dags) == 25
    log_post = prior.log_prob(dags) + torch.stack([torch.as_tensor(_score(tables, a)) for a in dags])
    post = torch.softmax(log_post, 0)
    exact = (post[:, None, None] * dags).sum(0)

    def model():
        # multilinear in the edges: the model declares the straight-through estimator
        g = pyro.sample("G", prior, infer={"dag_estimator": "straight-through"})
        pyro.factor("evidence", _score(tables, g))

    schedule = ExponentialSchedule(initial=1.0, rate=3.0 / steps, minimum=0.3)
    guide = AutoDAG(model, temperature=schedule, rao_blackwellize=True)
    elbo = Trace_ELBO(num_particles=16, vectorize_particles=True, max_plate_nesting=0)
    svi = SVI(model, guide, Adam({"lr": 0.05}), elbo)
    for _ in range(steps):
        svi.step()
        schedule.step()
    return exact, guide


def test_concentrated_posterior_matches_enumeration():
    """Collider 0 -> 2 <- 1 with strong effects: its orientation is identified.

    Straight-through estimator (declared by the model) on the multilinear
    extension of the family scores. The score-function estimator on the raw marginal likelihood,
    and the spread-out (chain) case, are in test_structural.py.
    """
    torch.manual_seed(0)
    n = 60
    x0, x1 = torch.randn(n), torch.randn(n)
    x2 = 1.5 * x0 - 1.5 * x1 + torch.randn(n)
    data = torch.stack([x0, x1, x2], 1).double()
    exact, guide = _exact_and_variational(data)
    assert exact[0, 2] > 0.9 and exact[1, 2] > 0.9  # the posterior is concentrated
    approx = guide.edge_probs(num_samples=4000).mean
    assert (approx - exact.float()).abs().max() < 0.1, (approx, exact)
    assert guide.median()["G"].tolist() == [[0, 0, 1], [0, 0, 1], [0, 0, 0]]


def test_predictive_with_the_guide():
    model = _dag_model(4)
    guide = AutoDAG(model)
    guide()
    samples = Predictive(model, guide=guide, num_samples=7, return_sites=["G"])()
    assert samples["G"].shape == (7, 4, 4)


def test_declared_edge_weights_follow_the_sampled_dag():
    """infer={"edge_weights_of": "G"}: q(W_ij | G) is the prior where G has no edge."""
    prior_w = dist.Normal(0.0, 2.0).expand([3, 3]).to_event(2)

    def model():
        G = pyro.sample("G", ErdosRenyiDAG(3, expected_edges=1.5))
        W = pyro.sample("W", prior_w, infer={"edge_weights_of": "G"})
        pyro.factor("lik", -((G * W - 1.0) ** 2).sum((-1, -2)))

    guide = AutoDAG(model)
    pyro.set_rng_seed(0)
    values = guide()
    G, W = values["G"], values["W"]
    assert W.shape == (3, 3) and W.requires_grad
    q = guide.get_distribution("W")
    assert isinstance(q.base_dist, dist.MaskedMixture)
    # per element: the prior's density where G_ij = 0, the slab's where G_ij = 1
    base = q.base_dist.log_prob(W.detach())
    off = G == 0
    assert torch.allclose(base[off], dist.Normal(0.0, 2.0).log_prob(W.detach())[off])
    slab = dist.Normal(guide.weight_locs.W, guide.weight_scales.W).log_prob(W.detach())
    assert torch.allclose(base[~off], slab[~off])
    with torch.no_grad():
        guide.weight_locs.W.fill_(0.7)
    median = guide.median()
    assert torch.equal(median["W"], torch.where(median["G"] > 0.5, torch.tensor(0.7), 0.0))
    # vectorized particles: each particle's W follows its own G
    with pyro.plate("particles", 5, dim=-1):
        batch = guide()
    assert batch["G"].shape == batch["W"].shape == (5, 3, 3)


def test_declared_edge_weights_are_checked():
    def after(dag="G", shape=(3, 3)):
        def model():
            pyro.sample("G", ErdosRenyiDAG(3, expected_edges=1.5))
            pyro.sample("W", dist.Normal(0.0, 1.0).expand(shape).to_event(len(shape)),
                        infer={"edge_weights_of": dag})  # fmt: skip

        return model

    with pytest.raises(ValueError, match="edge_weights_of='H', which is not a DAG site"):
        AutoDAG(after("H"))()
    with pytest.raises(ValueError, match=r"must be 3 x 3 reals"):
        AutoDAG(after(shape=(3,)))()

    def before():
        pyro.sample("W", dist.Normal(0.0, 1.0).expand([3, 3]).to_event(2),
                    infer={"edge_weights_of": "G"})  # fmt: skip
        pyro.sample("G", ErdosRenyiDAG(3, expected_edges=1.5))

    with pytest.raises(ValueError, match="sampled before it"):
        AutoDAG(before)()


def test_an_edge_the_prior_rules_out_is_never_drawn_by_the_guide():
    """A prior logit of -inf (a forbidden edge) rules the edge out of AutoDAG's guide too,
    in every estimator and in a mixture: never drawn, probability exactly 0, finite loss
    (before, the guide drew it at its initial 0.5 and the prior's log density was -inf)."""
    from pyrostruct.infer import fit

    logits = torch.zeros(3, 3)
    logits[0, 1] = -math.inf

    def model():
        graph = pyro.sample("G", OrderedDAG(torch.zeros(3), logits))
        pyro.factor("lik", 2.0 * graph[..., 0, 2] + graph[..., 1, 0])

    guide = AutoDAG(model)
    guide()  # untrained: the other edges at the initial 0.5
    draws = guide.sample_dags(400)
    assert not draws[:, 0, 1].any() and draws[:, 1, 0].any()
    assert guide.edge_probs("G").mean[0, 1] == 0.0
    result = fit(model, steps=40, seed=0)
    assert all(math.isfinite(loss) for loss in result.losses)
    probs = result.edge_probs("G")
    assert probs.mean[0, 1] == 0.0 and probs.mean[0, 2] > 0.5
    assert not result.guide.part("G").sample_dags(400)[:, 0, 1].any()


def test_what_one_set_of_guide_parameters_cannot_guide_is_refused_at_set_up():
    """Hostile sweep: a plate of DAGs with different priors was guided by the first one's
    (draws the second forbids: ELBO 3.4e38 half the time), and a batch of DAGs declared
    an event failed at the first ELBO with Pyro's shape error."""
    logits = torch.zeros(2, 3, 3)
    logits[1, 0, 1] = -math.inf

    def differing():
        with pyro.plate("groups", 2):
            pyro.sample("G", OrderedDAG(torch.zeros(3), logits))

    def as_event():
        pyro.sample("G", OrderedDAG(torch.zeros(2, 3), torch.zeros(3, 3)).to_event(1))

    def same():
        with pyro.plate("groups", 2):
            pyro.sample("G", OrderedDAG(torch.zeros(3), torch.zeros(2, 3, 3)))

    with pytest.raises(ValueError, match="batch of different priors"):
        AutoDAG(differing)()
    with pytest.raises(ValueError, match="put the batch in a pyro.plate"):
        AutoDAG(as_event)()
    assert math.isfinite(Trace_ELBO().loss(same, AutoDAG(same)))
