"""RelaxReparam: poutine.reparam spelling of relax for chosen sites."""

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyrostruct.distributions import (
    ConcreteBernoulli,
    ConcreteCategorical,
    ConcreteOneHotCategorical,
    NoRelaxationError,
)
from pyrostruct.distributions.temperature import LinearSchedule
from pyrostruct.distributions.util import base_distribution
from pyrostruct.handlers import relax
from pyrostruct.infer.autoguide import AutoGumbelSoftmax
from pyrostruct.infer.reparam import RelaxReparam

ESTIMATORS = ["gumbel-softmax", "straight-through", "reinmax", "gumbel-rao"]


def model(data=None):
    with pyro.plate("items", 4):
        flag = pyro.sample("flag", dist.Bernoulli(0.3))
        label = pyro.sample("label", dist.Categorical(logits=torch.zeros(3)))
    code = pyro.sample("code", dist.OneHotCategorical(logits=torch.zeros(2, 3)).to_event(1))
    untouched = pyro.sample("untouched", dist.Bernoulli(0.5))
    pyro.sample("obs", dist.Bernoulli(0.2 + 0.6 * untouched), obs=data)
    return flag, label, code


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_named_sites_are_relaxed_with_the_estimator(estimator):
    config = {name: RelaxReparam(0.5, estimator=estimator) for name in ("flag", "label", "code")}
    config["obs"] = RelaxReparam(0.5, estimator=estimator)
    trace = poutine.trace(poutine.reparam(model, config)).get_trace(torch.tensor(1.0))
    kinds = {
        "flag": ConcreteBernoulli,
        "label": ConcreteCategorical,
        "code": ConcreteOneHotCategorical,
    }
    for name, kind in kinds.items():
        fn = base_distribution(trace.nodes[name]["fn"])
        assert isinstance(fn, kind)
        expected = (
            "straight-through"
            if (kind is ConcreteCategorical and estimator == ESTIMATORS[0])
            else estimator
        )
        assert fn.estimator == expected
    assert trace.nodes["flag"]["value"].shape == (4,)
    assert trace.nodes["label"]["value"].dtype == torch.long
    assert trace.nodes["code"]["value"].shape == (2, 3)
    assert trace.nodes["code"]["fn"].event_dim == 2
    hard = estimator != "gumbel-softmax"
    flag = trace.nodes["flag"]["value"]
    assert bool(((flag == 0) | (flag == 1)).all()) == hard
    # sites not named, and observed ones, are left as they are
    assert type(trace.nodes["untouched"]["fn"]) is dist.Bernoulli
    assert type(trace.nodes["obs"]["fn"]) is dist.Bernoulli
    assert trace.nodes["obs"]["is_observed"]


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_same_values_as_relax(estimator):
    names = ("flag", "label", "code", "untouched")
    config = {name: RelaxReparam(0.7, estimator=estimator) for name in names}
    pyro.set_rng_seed(3)
    by_reparam = poutine.trace(poutine.reparam(model, config)).get_trace()
    pyro.set_rng_seed(3)
    by_relax = poutine.trace(relax(model, temperature=0.7, estimator=estimator)).get_trace()
    for name in names:
        assert torch.equal(by_reparam.nodes[name]["value"], by_relax.nodes[name]["value"])
        assert torch.allclose(
            by_reparam.nodes[name]["fn"].log_prob(by_reparam.nodes[name]["value"]),
            by_relax.nodes[name]["fn"].log_prob(by_relax.nodes[name]["value"]),
        )


def test_schedule_is_read_at_every_call():
    schedule = LinearSchedule(initial=1.0, final=0.2, num_steps=4)
    relaxed = poutine.reparam(model, {"flag": RelaxReparam(schedule)})
    assert float(poutine.trace(relaxed).get_trace().nodes["flag"]["fn"].temperature) == 1.0
    for _ in range(4):
        schedule.step()
    temperature = poutine.trace(relaxed).get_trace().nodes["flag"]["fn"].temperature
    assert float(temperature) == pytest.approx(0.2)


@pytest.mark.parametrize("estimator", ["straight-through", "reinmax", "gumbel-rao"])
def test_reparameterized_model_trains_with_a_gumbel_guide(estimator):
    # z ~ Bernoulli(0.5); ten observations that say z = 1: the posterior is near 1
    def coin(data):
        z = pyro.sample("z", dist.Bernoulli(0.5))
        with pyro.plate("data", len(data)):
            pyro.sample("obs", dist.Normal(3.0 * z, 1.0), obs=data)

    pyro.set_rng_seed(0)
    data = 3.0 + torch.randn(10)
    relaxed = poutine.reparam(coin, {"z": RelaxReparam(1.0, estimator=estimator)})
    guide = AutoGumbelSoftmax(relaxed, temperature=1.0, estimator=estimator)
    svi = SVI(relaxed, guide, Adam({"lr": 0.1}), Trace_ELBO())
    for _ in range(300):
        svi.step(data)
    assert guide.probs()["z"].item() > 0.8  # from 0.5


def test_bad_arguments_and_unrelaxable_sites_raise():
    with pytest.raises(ValueError, match="'reinmax'"):
        RelaxReparam(0.5, estimator="rein")
    with pytest.raises(ValueError, match="temperature"):
        RelaxReparam(-1.0)
    with pytest.raises(ValueError, match="num_rao_samples"):
        RelaxReparam(0.5, estimator="gumbel-rao", num_rao_samples=0)

    def counts():
        return pyro.sample("n", dist.Poisson(3.0))

    with pytest.raises(NoRelaxationError, match="'n'"):
        poutine.reparam(counts, {"n": RelaxReparam(0.5)})()
