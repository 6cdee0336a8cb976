"""AutoGumbelSoftmax and auto_discrete_continuous_guide."""

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoGuideList, AutoNormal
from pyro.optim import Adam, ClippedAdam

from pyrostruct.distributions import (
    ConcreteBernoulli,
    ConcreteCategorical,
    ConcreteOneHotCategorical,
)
from pyrostruct.handlers import relax
from pyrostruct.infer import ExponentialSchedule
from pyrostruct.infer.autoguide import (
    AutoGumbelSoftmax,
    auto_discrete_continuous_guide,
    is_discrete_site,
)
from pyrostruct.selection.datasets import make_sparse_regression
from tests.reference_models import load_model


def prior_model():
    with pyro.plate("items", 6):
        flag = pyro.sample("flag", dist.Bernoulli(0.2))
        label = pyro.sample("label", dist.Categorical(torch.tensor([0.5, 0.3, 0.2])))
    code = pyro.sample("code", dist.OneHotCategorical(torch.tensor([0.1, 0.6, 0.3])))
    loc = pyro.sample("loc", dist.Normal(0.0, 1.0))
    return flag, label, code, loc


@pytest.mark.parametrize("relaxed_prototype", [False, True], ids=["on_model", "on_relaxed_model"])
def test_guide_learns_prior_probabilities_when_there_is_no_data(relaxed_prototype):
    # With no likelihood the relaxed KL(q || p) is zero at q = p (same family and
    # temperature), so the learned probabilities must match the prior's.
    discrete_model = poutine.block(prior_model, hide=["loc"])
    model = relax(discrete_model, temperature=0.5)
    guide = AutoGumbelSoftmax(model if relaxed_prototype else discrete_model, temperature=0.5)
    optim = ClippedAdam({"lr": 0.1, "lrd": 0.99})
    svi = SVI(model, guide, optim, Trace_ELBO(num_particles=16, vectorize_particles=True))
    for _ in range(300):
        svi.step()
    probs = guide.probs()
    assert set(probs) == {"flag", "label", "code"}  # the continuous site is not the guide's
    assert (
        probs["flag"].shape == (6,)
        and probs["label"].shape == (6, 3)
        and probs["code"].shape == (3,)
    )
    assert torch.allclose(probs["flag"], torch.full((6,), 0.2), atol=0.06)
    assert torch.allclose(probs["label"], torch.tensor([0.5, 0.3, 0.2]).expand(6, 3), atol=0.08)
    assert torch.allclose(probs["code"], torch.tensor([0.1, 0.6, 0.3]), atol=0.08)


def test_guide_samples_relaxed_values_of_the_model_shapes_and_median_is_hard():
    guide = AutoGumbelSoftmax(prior_model, temperature=0.5)
    trace = poutine.trace(guide).get_trace()
    assert isinstance(trace.nodes["flag"]["fn"], ConcreteBernoulli)
    assert isinstance(trace.nodes["label"]["fn"], ConcreteCategorical)
    assert isinstance(trace.nodes["code"]["fn"], ConcreteOneHotCategorical)
    assert "loc" not in trace.nodes
    model_trace = poutine.trace(prior_model).get_trace()
    for name in ["flag", "label", "code"]:
        assert trace.nodes[name]["value"].shape == model_trace.nodes[name]["value"].shape
    # the guide's values can be scored by the relaxed model (Trace_ELBO's replay)
    replayed = poutine.trace(poutine.replay(relax(prior_model), trace=trace)).get_trace()
    assert torch.isfinite(replayed.log_prob_sum())

    with torch.no_grad():
        guide.logits.flag.copy_(torch.tensor([3.0, -3.0, 0.5, -0.5, 2.0, -2.0]))
        guide.logits.label.copy_(torch.tensor([0.0, 2.0, 0.0]).expand(6, 3))
        guide.logits.code.copy_(torch.tensor([0.0, 0.0, 4.0]))
    median = guide.median()
    assert torch.equal(median["flag"], torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0]))
    assert median["label"].dtype == torch.long and torch.equal(
        median["label"], torch.ones(6, dtype=torch.long)
    )
    assert torch.equal(median["code"], torch.tensor([0.0, 0.0, 1.0]))
    # hard medians can be plugged into the original (unrelaxed) model
    conditioned = poutine.trace(poutine.condition(prior_model, data=median)).get_trace()
    assert torch.isfinite(conditioned.log_prob_sum())


def test_hard_guide_gives_exact_values_and_schedule_sets_temperature():
    schedule = ExponentialSchedule(initial=1.0, rate=0.5, minimum=0.2)
    guide = AutoGumbelSoftmax(prior_model, temperature=schedule, hard=True)
    trace = poutine.trace(guide).get_trace()
    assert set(trace.nodes["flag"]["value"].unique().tolist()) <= {0.0, 1.0}
    assert (trace.nodes["code"]["value"].sum() == 1) and (
        (trace.nodes["code"]["value"] == 0) | (trace.nodes["code"]["value"] == 1)
    ).all()
    assert float(trace.nodes["flag"]["fn"].temperature) == pytest.approx(1.0)
    for _ in range(10):
        schedule.step()
    trace = poutine.trace(guide).get_trace()
    assert float(trace.nodes["flag"]["fn"].temperature) == pytest.approx(0.2)


def test_is_discrete_site_classification():
    trace = poutine.trace(relax(prior_model)).get_trace()
    plain = poutine.trace(prior_model).get_trace()
    for t in (trace, plain):
        assert (
            is_discrete_site(t.nodes["flag"])
            and is_discrete_site(t.nodes["label"])
            and is_discrete_site(t.nodes["code"])
        )
        assert not is_discrete_site(t.nodes["loc"])
        assert not is_discrete_site(t.nodes["items"])  # the plate's subsample site

    def model():
        pyro.sample("obs", dist.Bernoulli(0.5), obs=torch.tensor(1.0))
        pyro.sample("enum", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})

    t = poutine.trace(model).get_trace()
    assert not is_discrete_site(t.nodes["obs"]) and not is_discrete_site(t.nodes["enum"])


def test_unsupported_discrete_site_raises_naming_the_site():
    def model():
        pyro.sample("flag", dist.Bernoulli(0.5))
        pyro.sample("count", dist.Poisson(2.0))

    with pytest.raises(NotImplementedError, match="site 'count'.*Poisson"):
        AutoGumbelSoftmax(model)()
    guide = AutoGumbelSoftmax(poutine.block(model, hide=["count"]))
    assert set(guide()) == {"flag"}


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="temperature"):
        AutoGumbelSoftmax(prior_model, temperature=0.0)
    with pytest.raises(ValueError, match="hard"):
        AutoGumbelSoftmax(prior_model, hard=1)
    with pytest.raises(ValueError, match="init_logits"):
        AutoGumbelSoftmax(prior_model, init_logits=float("nan"))
    with pytest.raises(RuntimeError, match="has not seen the model"):
        AutoGumbelSoftmax(prior_model).probs()
    with pytest.raises(NotImplementedError, match="probs"):
        AutoGumbelSoftmax(prior_model).quantiles([0.5])


# ------------------------------------------------------------- spike and slab


def spike_slab_data(p=100, n=200, k=5, seed=0):
    X, y, beta = make_sparse_regression(n, p, k, seed=seed)
    return X, y, set(beta.nonzero().flatten().tolist())


spike_slab_model = load_model("spike_slab").model  # the reference model (models/spike_slab.py)


def f1(selected, truth):
    tp = len(selected & truth)
    return 0.0 if tp == 0 else 2 * tp / (len(selected) + len(truth))


def test_svi_recovers_inclusion_set_f1_at_p100_n200():
    pyro.set_rng_seed(0)
    X, y, truth = spike_slab_data(p=100, n=200)
    guide = auto_discrete_continuous_guide(spike_slab_model, temperature=0.5)
    assert isinstance(guide, AutoGuideList) and isinstance(guide[0], AutoGumbelSoftmax)
    assert isinstance(guide[1], AutoNormal)
    svi = SVI(relax(spike_slab_model, temperature=0.5), guide, Adam({"lr": 0.05}), Trace_ELBO())
    losses = [svi.step(X, y) for _ in range(1000)]
    assert sum(losses[-100:]) < 0.7 * sum(losses[:100])

    probs = guide[0].probs()["include"]
    selected = set((probs > 0.5).nonzero().flatten().tolist())
    assert f1(selected, truth) >= 0.9, (sorted(selected), sorted(truth))
    # median merges hard indicators and continuous medians; both parts cover their sites only
    median = guide.median(X, y)
    assert set(median) == {"include", "beta", "sigma"}
    assert set(median["include"].unique().tolist()) <= {0.0, 1.0}
    assert set(guide[1].median()) == {"beta", "sigma"}
    # the noise scale is over-estimated (about 1.6 for a true 1.0): soft indicators of the
    # excluded features are small but never exactly 0, and their slabs add noise
    assert 0.7 < median["sigma"].item() < 3.0


def test_guide_built_on_relaxed_model_trains_the_same_way():
    pyro.set_rng_seed(0)
    X, y, truth = spike_slab_data(p=30, n=100, k=3, seed=1)
    model = relax(spike_slab_model, temperature=0.5)
    guide = auto_discrete_continuous_guide(model, temperature=0.5)
    svi = SVI(model, guide, Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(600):
        svi.step(X, y)
    selected = set((guide[0].probs()["include"] > 0.5).nonzero().flatten().tolist())
    assert selected == truth


def test_subsampled_plate_gets_full_size_logits():
    # local indicators under a subsampled plate: the guide keeps one logit per data point
    pyro.set_rng_seed(0)
    data = torch.cat([torch.randn(50) + 3, torch.randn(50) - 3])

    def model(data):
        with pyro.plate("data", 100, subsample_size=20) as idx:
            z = pyro.sample("z", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(6 * z - 3, 1.0), obs=data[idx])

    guide = AutoGumbelSoftmax(model, temperature=0.5)
    svi = SVI(relax(model, temperature=0.5), guide, Adam({"lr": 0.1}), Trace_ELBO())
    for _ in range(500):
        svi.step(data)
    probs = guide.probs()["z"]
    assert probs.shape == (100,)
    assert probs[:50].mean() > 0.8 and probs[50:].mean() < 0.2


@pytest.mark.parametrize("estimator", ["straight-through", "reinmax", "gumbel-rao"])
def test_guide_estimator_gives_hard_values_to_every_site(estimator):
    guide = AutoGumbelSoftmax(prior_model, estimator=estimator, num_rao_samples=2)
    trace = poutine.trace(guide).get_trace()
    for name in ("flag", "code"):
        value = trace.nodes[name]["value"]
        assert ((value == 0) | (value == 1)).all()
        fn = trace.nodes[name]["fn"]
        assert (fn.estimator, fn.num_rao_samples) == (estimator, 2)
    assert trace.nodes["label"]["fn"].estimator == estimator
    assert guide.hard
    soft = AutoGumbelSoftmax(prior_model)
    assert poutine.trace(soft).get_trace().nodes["label"]["fn"].estimator == "straight-through"
    with pytest.raises(ValueError, match="'straight-through'"):
        AutoGumbelSoftmax(prior_model, estimator="ST")


@pytest.mark.parametrize("estimator", ["reinmax", "gumbel-rao"])
def test_new_estimators_train_the_spike_and_slab_selection(estimator):
    pyro.set_rng_seed(0)
    X, y, truth = spike_slab_data(p=30, n=100, k=3, seed=1)
    model = relax(spike_slab_model, temperature=1.0, estimator=estimator)
    guide = auto_discrete_continuous_guide(
        spike_slab_model, temperature=1.0, estimator=estimator, num_rao_samples=4
    )
    assert guide[0].estimator == estimator
    svi = SVI(model, guide, Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(600):
        svi.step(X, y)
    selected = set((guide[0].probs()["include"] > 0.5).nonzero().flatten().tolist())
    assert selected == truth
