"""One test per Pyro internal that pyrostruct uses (pyrostruct/_pyro_compat.py).

Each test checks the behaviour pyrostruct relies on, so that a Pyro release
that changes an internal fails here, naming the access, rather than somewhere
downstream. Run this file on a new Pyro before raising the ``pyro-ppl`` bound.
"""

import math
import random
from collections import OrderedDict

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.infer import SVI, Trace_ELBO, config_enumerate
from pyro.nn import PyroModule, PyroParam, PyroSample
from torch import nn
from torch.distributions import biject_to, transform_to

from pyrostruct import _pyro_compat as compat


@pytest.fixture(autouse=True)
def _clean_param_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


class _Net(PyroModule):
    def __init__(self):
        super().__init__()
        self.layer = PyroModule[nn.Linear](3, 2)
        self.layer.weight = PyroSample(dist.Normal(0.0, 1.0).expand([2, 3]).to_event(2))
        self.layer.scale = PyroParam(torch.ones(2), constraints.positive)


# ---------------------------------------------------------------- PyroModule internals


def test_param_name_is_the_param_store_name_of_a_submodule_attribute():
    net = _Net()
    with compat.pyro_module_context(net):
        net.layer.scale  # noqa: B018  (a read within the context registers the param)
    prefix = compat.pyro_module_name(net.layer)
    assert compat.param_name(prefix, "scale") in pyro.get_param_store()
    assert compat.param_name("net.0", "weight") == "net.0.weight"
    assert compat.param_name("", "w") == "w"


def test_pyro_module_name_is_the_attribute_path():
    net = _Net()
    assert compat.pyro_module_name(net) == ""
    assert compat.pyro_module_name(net.layer) == "layer"
    seq = PyroModule[nn.Sequential](PyroModule[nn.Linear](2, 2))
    assert compat.pyro_module_name(seq[0]) == "0"


def test_pyro_module_context_reads_and_writes_the_param_store():
    net = _Net()
    with compat.pyro_module_context(net.layer):
        value = net.layer.scale
        stored = dict(pyro.get_param_store().named_parameters())["layer.scale"]
        assert value.unconstrained() is stored  # the store's own leaf tensor
        stored.data.fill_(0.0)  # an in-place edit is what training reads next
    with compat.pyro_module_context(net.layer):
        expected = transform_to(constraints.positive)(torch.zeros(2))
        assert torch.allclose(net.layer.scale, expected)
    pyro.clear_param_store()
    pyro.param("layer.scale", torch.full((2,), 5.0), constraint=constraints.positive)
    with compat.pyro_module_context(net.layer):  # the store's value wins over the module's
        assert torch.allclose(net.layer.scale, torch.full((2,), 5.0))


def test_pyro_sample_names_and_param_constraints():
    net = _Net()
    assert compat.pyro_sample_names(net.layer) == ["weight"]
    params = compat.pyro_param_constraints(net.layer)
    assert list(params) == ["scale"]
    constraint, event_dim = params["scale"]
    assert constraint is constraints.positive and event_dim is None
    assert compat.pyro_sample_names(net) == [] and compat.pyro_param_constraints(net) == {}


def test_unconstrained_name_is_where_a_pyro_param_is_stored():
    net = _Net()
    name = compat.unconstrained_name("scale")
    stored = net.layer._parameters[name]
    assert torch.allclose(transform_to(constraints.positive)(stored), net.layer.scale)
    assert "scale" not in net.layer._parameters


def test_torch_class_of():
    class Custom(PyroModule[nn.Linear]):
        pass

    assert compat.torch_class_of(PyroModule[nn.Linear](2, 2)) is nn.Linear
    assert compat.torch_class_of(PyroModule[nn.Sequential]()) is nn.Sequential
    assert compat.torch_class_of(nn.Linear(2, 2)) is None
    assert compat.torch_class_of(PyroModule()) is None
    assert compat.torch_class_of(_Net()) is None
    assert compat.torch_class_of(Custom(2, 2)) is None


def test_demote_pyro_module_gives_a_plain_torch_module():
    layer = PyroModule[nn.Linear](3, 2)
    x = torch.randn(4, 3)
    expected = layer(x)
    compat.demote_pyro_module(layer, nn.Linear)
    assert type(layer) is nn.Linear
    assert not any(attr in layer.__dict__ for attr in compat.PYRO_MODULE_ATTRS)
    assert torch.equal(layer(x), expected)
    assert sorted(name for name, _ in layer.named_parameters()) == ["bias", "weight"]


# ---------------------------------------------------------------- autoguides and distributions


def _local_model(x):
    with pyro.plate("data", len(x), subsample_size=2) as idx:
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x[idx])


def test_guide_plates_are_the_models_plates_with_the_guides_subsample():
    from pyro.infer.autoguide import AutoNormal

    x = torch.arange(5.0)
    guide = AutoNormal(_local_model)
    guide(x)  # set-up
    plates = compat.guide_plates(guide, x)
    assert set(plates) == {"data"}
    with plates["data"] as idx:
        assert idx.shape == (2,) and plates["data"].size == 5


def test_autonormal_loc_and_scale_are_the_unconstrained_site_parameters():
    from pyro.infer.autoguide import AutoNormal

    def model():
        pyro.sample("s", dist.LogNormal(0.0, 1.0))

    guide = AutoNormal(model, init_loc_fn=lambda site: torch.tensor(2.0), init_scale=0.3)
    guide()
    loc, scale = compat.autonormal_loc_and_scale(guide, "s")
    assert torch.allclose(loc, torch.tensor(math.log(2.0)))  # log space
    assert torch.allclose(scale, torch.tensor(0.3))


def test_distribution_mask():
    mask = torch.tensor([True, False])
    fn = dist.Normal(torch.zeros(2), 1.0).mask(mask)
    assert torch.equal(compat.distribution_mask(fn), mask)
    assert compat.distribution_mask(dist.Normal(0.0, 1.0).mask(False)) is False


# ---------------------------------------------------------------- param store and optimizers


def test_param_store_name_maps_the_unconstrained_tensor_to_its_name():
    pyro.param("a", torch.ones(2), constraint=constraints.positive)
    pyro.param("b", torch.zeros(3))
    for name, unconstrained in pyro.get_param_store().named_parameters():
        assert compat.param_store_name(unconstrained) == name
    assert compat.param_store_name(torch.zeros(2)) is None


def _plated_model():
    loc = pyro.sample("loc", dist.Normal(0.0, 1.0))
    with pyro.plate("data", 4):
        pyro.sample("x", dist.Normal(loc, 1.0), obs=torch.zeros(4))


def _plated_guide():
    pyro.sample("loc", dist.Normal(0.3, 1.0))


@pytest.mark.parametrize("vectorize", [True, False])
def test_elbo_traces_yield_scored_pairs(vectorize):
    elbo = Trace_ELBO(num_particles=3, vectorize_particles=vectorize)
    pairs = list(compat.elbo_traces(elbo, _plated_model, _plated_guide, (), {}))
    assert len(pairs) == (1 if vectorize else 3)
    model_trace, guide_trace = pairs[0]
    log_prob = model_trace.nodes["x"]["log_prob"]
    assert "log_prob" in guide_trace.nodes["loc"]
    if vectorize:  # the particle plate is the outermost, at -max_plate_nesting
        assert elbo.max_plate_nesting == 2
        assert log_prob.shape == (3, 4) and log_prob.shape[-elbo.max_plate_nesting] == 3
    else:
        assert log_prob.shape == (4,)


def _svi_step(optim):
    def model():
        pyro.sample("z", dist.Normal(0.0, 1.0))

    def guide():
        loc = pyro.param("loc", torch.tensor([0.5]))
        pyro.sample("z", dist.Normal(loc[0], 1.0))

    SVI(model, guide, optim, Trace_ELBO()).step()
    return dict(pyro.get_param_store().named_parameters())["loc"]


def test_pyro_optim_states_live_and_waiting():
    optim = pyro.optim.Adam({"lr": 0.1})
    loc = _svi_step(optim)
    (live,) = list(compat.pyro_optim_states(optim, loc))
    assert live["exp_avg"].shape == loc.shape and live["exp_avg"].abs().sum() > 0
    fresh = pyro.optim.Adam({"lr": 0.1})
    fresh.set_state(optim.get_state())  # waits for loc's first step
    (waiting,) = list(compat.pyro_optim_states(fresh, loc))
    assert torch.equal(waiting["exp_avg"], live["exp_avg"])
    assert list(compat.pyro_optim_states(pyro.optim.Adam({}), loc)) == []


# ---------------------------------------------------------------- enumeration internals


@config_enumerate
def _mixture(x):
    z = pyro.sample("z", dist.Bernoulli(0.3))
    pyro.sample("x", dist.Normal(2.0 * z, 1.0), obs=x)


def _guide(x):
    pass


def _exact_log_evidence(x):
    a = math.log(0.3) + dist.Normal(2.0, 1.0).log_prob(x)
    b = math.log(0.7) + dist.Normal(0.0, 1.0).log_prob(x)
    return torch.logaddexp(a, b)


def test_enumerate_dim_reads_the_dim_enumeration_gave_a_site():
    trace = poutine.trace(poutine.enum(_mixture, first_available_dim=-2)).get_trace(
        torch.tensor(0.5)
    )
    assert compat.enumerate_dim(trace.nodes["z"]) == -2
    assert trace.nodes["z"]["value"].shape == (2, 1)
    assert compat.enumerate_dim(trace.nodes["x"]) is None


def _enum(first_available_dim=None):
    return poutine.enum(first_available_dim=first_available_dim)


def _factors(enum, x):
    guide = enum(first_available_dim=-1)(_guide)
    model = enum()(_mixture)
    model_trace, guide_trace = compat.get_importance_trace("flat", 0, model, guide, (x,), {})
    guide_trace.pack_tensors()
    model_trace.pack_tensors(guide_trace.plate_to_symbol)
    return model_trace, compat.compute_model_factors(model_trace, guide_trace)


def test_importance_trace_model_factors_and_contraction_give_the_exact_evidence():
    x = torch.tensor(0.7)
    model_trace, (costs, log_factors, _, sum_dims, scale) = _factors(_enum, x)
    assert not costs  # x depends on the enumerated z: everything is contracted
    assert compat.packed_dims(model_trace.nodes["z"]["packed"]["log_prob"])  # one enum dim
    assert compat.packed_dims(torch.zeros(())) == ""
    tree = OrderedDict(log_factors)
    total = compat.contract_to_tensor(tree, sum_dims, target_ordinal=frozenset())
    assert torch.allclose(scale * total, _exact_log_evidence(x))


def test_vmap_enum_messenger_and_log_ring_agree_with_pyro_and_run_under_vmap():
    x = torch.tensor([0.7, -1.0, 3.0])

    def evidence(xi, enum, ring):
        _, (_, log_factors, _, sum_dims, scale) = _factors(enum, xi)
        tree = OrderedDict(log_factors)
        return scale * compat.contract_to_tensor(
            tree, sum_dims, target_ordinal=frozenset(), ring=ring
        )

    with pyro.validation_enabled(False):  # validation's checks are data-dependent
        vmapped = torch.func.vmap(
            lambda xi: evidence(xi, compat.VmapEnumMessenger, compat.VmapLogRing())
        )(x)
    plain = torch.stack([evidence(xi, _enum, None) for xi in x])
    assert torch.allclose(vmapped, plain)
    assert torch.allclose(plain, _exact_log_evidence(x))


def test_align_packed_permutes_and_unsqueezes_to_the_sorted_dims():
    t = torch.arange(6.0).reshape(3, 2)
    t._pyro_dims = "ba"
    out = compat.align_packed(t, "abc")
    assert out.shape == (2, 3, 1)
    assert torch.equal(out[..., 0], t.T)
    assert compat.align_packed(2.0, "a").shape == ()


# ---------------------------------------------------------------- helpers of unpublished modules


def test_deep_setattr_creates_the_intermediate_pyro_modules():
    root = PyroModule()
    compat.deep_setattr(root, "a.b.c", PyroParam(torch.ones(2)))
    assert isinstance(root.a, PyroModule) and isinstance(root.a.b, PyroModule)
    assert torch.equal(root.a.b.c, torch.ones(2))
    with compat.pyro_module_context(root):
        root.a.b.c  # noqa: B018
    assert "a.b.c" in pyro.get_param_store()


def test_helpful_support_errors_names_a_discrete_site():
    site = {"name": "k", "fn": dist.Categorical(torch.ones(3))}
    with pytest.raises(ValueError, match="discrete sample site 'k'"):
        with compat.helpful_support_errors(site):
            biject_to(site["fn"].support)
    with compat.helpful_support_errors({"name": "r", "fn": dist.Normal(0.0, 1.0)}):
        biject_to(constraints.real)  # no error to translate


def test_prototype_hide_fn_keeps_only_latent_sample_sites():
    def model():
        pyro.param("p", torch.ones(1))
        with pyro.plate("data", 3, subsample_size=3):
            pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(0.0, 1.0), obs=torch.zeros(3))

    trace = poutine.trace(model).get_trace()
    hidden = {name for name, site in trace.nodes.items() if compat.prototype_hide_fn(site)}
    assert hidden == set(trace.nodes) - {"z"}


def test_sum_rightmost_and_periodic_repeat():
    x = torch.ones(2, 3, 4)
    assert compat.sum_rightmost(x, 2).shape == (2,)
    assert torch.equal(compat.sum_rightmost(x, 2), torch.full((2,), 12.0))
    assert compat.sum_rightmost(x, 0) is x
    repeated = compat.periodic_repeat(torch.tensor([[1.0, 2.0]]), 5, -1)
    assert torch.equal(repeated, torch.tensor([[1.0, 2.0, 1.0, 2.0, 1.0]]))


def test_rng_state_round_trip_covers_torch_random_and_numpy():
    state = compat.get_rng_state()
    first = (torch.rand(2), random.random(), np.random.rand())
    compat.set_rng_state(state)
    second = (torch.rand(2), random.random(), np.random.rand())
    assert torch.equal(first[0], second[0]) and first[1:] == second[1:]


def test_warn_if_nan_and_torch_item():
    with pytest.warns(UserWarning, match="loss"):
        value = compat.warn_if_nan(float("nan"), "loss")
    assert math.isnan(value)
    tensor = torch.tensor(1.5)
    assert compat.warn_if_nan(tensor, "loss") is tensor
    assert compat.torch_item(torch.tensor(2.5)) == 2.5 and compat.torch_item(3) == 3
