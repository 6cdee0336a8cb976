"""Tests of pyrostruct.nn: the Bayesian MLP and its fan-in initialization."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal, init_to_median
from torch import nn

from pyrostruct.infer.autoguide import AutoSparseSubspace, SubspaceScheduler
from pyrostruct.nn import BayesianMLP, init_to_fan_in


def _trace(model, *args, **kwargs):
    return poutine.trace(model).get_trace(*args, **kwargs)


def _data(n=80, d=6, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x @ torch.randn(d, c, generator=g)).argmax(-1)
    return x, y


def test_sites_and_shapes_of_a_classifier():
    model = BayesianMLP([5, 7, 4, 3])
    x = torch.randn(9, 5)
    trace = _trace(model, x)
    expected = {
        "net.0.weight": (7, 5),
        "net.0.bias": (7,),
        "net.2.weight": (4, 7),
        "net.2.bias": (4,),
        "net.4.weight": (3, 4),
        "net.4.bias": (3,),
    }
    latent = {
        name: tuple(site["value"].shape)
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and name.startswith("net.")
    }
    assert latent == expected
    for name, shape in expected.items():
        site = trace.nodes[name]
        assert site["fn"].event_dim == len(shape)  # one site per tensor, outside any plate
        assert not site["cond_indep_stack"]
    assert trace.nodes["obs"]["value"].shape == (9,)
    assert isinstance(trace.nodes["obs"]["fn"], dist.Categorical)
    assert trace.nodes["_RETURN"]["value"].shape == (9, 3)
    assert [type(m) for m in model.net] == [type(model.net[0]), nn.ReLU] * 2 + [type(model.net[0])]


@pytest.mark.parametrize("prior_scale", [1.0, 0.3, 2, "fan_in"])
def test_priors_are_centred_normals_of_the_requested_scale(prior_scale):
    sizes = [4, 9, 2]
    model = BayesianMLP(sizes, prior_scale=prior_scale)
    trace = _trace(model, torch.randn(3, 4))
    for i, fan_in in ((0, 4), (2, 9)):
        scale = 1 / math.sqrt(fan_in) if prior_scale == "fan_in" else float(prior_scale)
        for part in ("weight", "bias"):
            site = trace.nodes[f"net.{i}.{part}"]
            value = site["value"]
            expected = dist.Normal(0.0, scale).log_prob(value).sum()
            assert torch.allclose(site["fn"].log_prob(value), expected)
            base = site["fn"].base_dist  # Independent(Normal)
            assert torch.all(base.loc == 0) and torch.allclose(base.scale, torch.tensor(scale))


def test_regression_has_a_positive_noise_latent_and_a_gaussian_likelihood():
    model = BayesianMLP([3, 5, 1], task="regression")
    x, y = torch.randn(6, 3), torch.randn(6)
    trace = _trace(model, x, y)
    sigma = trace.nodes["sigma"]
    assert isinstance(sigma["fn"], dist.LogNormal)
    assert sigma["fn"].loc == -1.0 and sigma["fn"].scale == 1.0
    obs = trace.nodes["obs"]
    assert torch.equal(obs["value"], y)
    out = trace.nodes["_RETURN"]["value"]
    assert out.shape == (6,)
    expected = dist.Normal(out, sigma["value"]).log_prob(y)
    assert torch.allclose(obs["fn"].log_prob(y), expected)


def test_num_data_scales_the_likelihood_of_a_minibatch():
    model = BayesianMLP([4, 2])
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 1, 0, 1])
    full = _trace(model, x, y)
    scaled = _trace(poutine.replay(model, trace=full), x, y, num_data=20)
    full.compute_log_prob()
    scaled.compute_log_prob()
    assert scaled.nodes["obs"]["scale"] == pytest.approx(4.0)
    ratio = scaled.nodes["obs"]["log_prob_sum"] / full.nodes["obs"]["log_prob_sum"]
    assert ratio == pytest.approx(4.0)


def test_construction_draws_what_the_torch_layers_draw():
    """Same seed, same numbers: building the model consumes torch's generator exactly as
    the ``nn.Linear`` layers do, so every later draw (guide init, SVI) is unchanged from
    the per-script definitions this class replaced."""
    pyro.set_rng_seed(3)
    nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 2)
    after_torch = torch.rand(5)
    pyro.set_rng_seed(3)
    BayesianMLP([6, 8, 8, 2])
    assert torch.equal(torch.rand(5), after_torch)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sizes": [4]}, "at least the input and the output"),
        ({"sizes": 4}, "list of layer widths"),
        ({"sizes": "64,10"}, "list of layer widths"),
        ({"sizes": [4, 0, 2]}, "positive integer"),
        ({"sizes": [4, 2.5]}, "positive integer"),
        ({"sizes": [4, True]}, "positive integer"),
        ({"sizes": [4, 2], "task": "ranking"}, "task must be"),
        ({"sizes": [4, 2], "prior_scale": 0.0}, "prior_scale"),
        ({"sizes": [4, 2], "prior_scale": -1}, "prior_scale"),
        ({"sizes": [4, 2], "prior_scale": float("nan")}, "prior_scale"),
        ({"sizes": [4, 2], "prior_scale": True}, "prior_scale"),
        ({"sizes": [4, 2], "prior_scale": "wide"}, "prior_scale"),
        ({"sizes": [4, 2], "task": "regression"}, "one output"),
    ],
)
def test_invalid_arguments_are_refused(kwargs, match):
    sizes = kwargs.pop("sizes")
    with pytest.raises(ValueError, match=match):
        BayesianMLP(sizes, **kwargs)


def test_inputs_of_the_wrong_width_are_refused():
    model = BayesianMLP([4, 2])
    with pytest.raises(ValueError, match=r"shape \(batch, 4\)"):
        model(torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"shape \(batch, 4\)"):
        model(torch.randn(4))


def test_init_to_fan_in():
    model = BayesianMLP([400, 300, 1], task="regression")
    trace = _trace(model, torch.randn(2, 400), torch.randn(2))
    pyro.set_rng_seed(0)
    weight = init_to_fan_in(trace.nodes["net.0.weight"])
    assert weight.shape == (300, 400)
    assert weight.mean().abs() < 0.01
    assert weight.std().item() == pytest.approx(1 / math.sqrt(400), rel=0.02)
    assert torch.equal(init_to_fan_in(trace.nodes["net.0.bias"]), torch.zeros(300))
    pyro.set_rng_seed(1)
    sigma = init_to_fan_in(trace.nodes["sigma"])  # positive: Pyro's init_to_median
    pyro.set_rng_seed(1)
    assert torch.equal(sigma, init_to_median(trace.nodes["sigma"]))
    assert sigma > 0


def _fit(model, guide, x, y, num_steps, scheduler_kwargs=None):
    optim = pyro.optim.Adam({"lr": 0.05})
    svi = SVI(model, guide, optim, Trace_ELBO())
    scheduler = None
    if scheduler_kwargs is not None:
        scheduler = SubspaceScheduler(guide, optim, num_steps=num_steps, **scheduler_kwargs)
    losses = []
    for _ in range(num_steps):
        losses.append(scheduler.step(svi.step, x, y) if scheduler else svi.step(x, y))
    return losses, scheduler


def _accuracy(model, guide, x, y):
    medians = guide.median(x, y)
    logits = poutine.condition(model, data=medians)(x)
    return (logits.argmax(-1) == y).float().mean().item()


@pytest.mark.parametrize("guide_kind", ["AutoNormal", "AutoSparseSubspace"])
def test_trains_under_autonormal_and_sparse_subspace(guide_kind):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    x, y = _data()
    model = BayesianMLP([6, 16, 3])
    start = AutoNormal(model, init_loc_fn=init_to_fan_in)
    start(x, y)
    before = _accuracy(model, start, x, y)
    pyro.clear_param_store()
    if guide_kind == "AutoNormal":
        guide = AutoNormal(model, init_loc_fn=init_to_fan_in, init_scale=0.01)
        losses, _ = _fit(model, guide, x, y, 300)
    else:
        guide = AutoSparseSubspace(
            model, density=0.5, init_loc_fn=init_to_fan_in, init_scale=0.01, seed=0
        )
        losses, scheduler = _fit(model, guide, x, y, 300, {"update_every": 25})
        assert scheduler.history  # the subspace moved
        assert guide.density == pytest.approx(0.5, abs=0.02)
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.5 * first
    accuracy = _accuracy(model, guide, x, y)
    assert accuracy >= 0.85 and accuracy > before


def test_posterior_mean_exports_as_a_plain_sequential():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    x, y = _data()
    model = BayesianMLP([6, 16, 3])
    guide = AutoSparseSubspace(model, density=0.5, init_loc_fn=init_to_fan_in, seed=0)
    _fit(model, guide, x, y, 20, {"update_every": 5})
    net = guide.export_module(root="net")
    assert type(net) is nn.Sequential
    assert [type(m) for m in net] == [nn.Linear, nn.ReLU, nn.Linear]
    medians = guide.median(x, y)
    expected = poutine.condition(model, data=medians)(x)
    assert torch.allclose(net(x), expected, atol=1e-6)
