"""Generic tests run over every distribution in the registry (``conftest.DISTRIBUTIONS``).

As Pyro's ``tests/distributions/test_distributions.py``: batch and event shapes,
``expand`` (every parameter follows the new batch shape), the support (samples
lie in it, its ``event_dim`` matches the event shape), ``log_prob`` of the
distribution's own samples, ``validate_args``, pickling and ``infer_shapes``.
"""

import inspect
import pickle

import pytest
import torch

import pyrostruct.distributions as pyrostruct_dists
from tests.distributions.conftest import BAD_EXAMPLES, DISTRIBUTIONS, EXAMPLES


def _samplers(d):
    yield "sample", d.sample
    if d.has_rsample:
        yield "rsample", d.rsample


def test_every_distribution_is_registered():
    public = {
        obj
        for name in pyrostruct_dists.__all__
        if inspect.isclass(obj := getattr(pyrostruct_dists, name))
        and issubclass(obj, torch.distributions.Distribution)
    }
    assert public == {fixture.pyro_dist for fixture in DISTRIBUTIONS}


@pytest.mark.parametrize("fixture, idx", EXAMPLES)
def test_batch_and_event_shapes(fixture, idx):
    d = fixture.make(idx)
    for name, sample in _samplers(d):
        for sample_shape in [(), (2,), (3, 1)]:
            x = sample(torch.Size(sample_shape))
            assert x.shape == sample_shape + d.batch_shape + d.event_shape, name
            assert d.log_prob(x).shape == sample_shape + d.batch_shape, name


@pytest.mark.parametrize("fixture, idx", EXAMPLES)
@pytest.mark.parametrize("new_dims", [(), (2,), (3, 1)], ids=["same", "new", "new2"])
def test_expand(fixture, idx, new_dims):
    d = fixture.make(idx)
    before = {name: value.shape for name, value, _ in fixture.batch_params(d)}
    # new leading dims, and the existing ones (size-1 dims grown to 2)
    batch_shape = torch.Size(new_dims) + torch.Size(2 if n == 1 else n for n in d.batch_shape)
    e = d.expand(batch_shape)
    assert type(e) is type(d)
    assert e.batch_shape == batch_shape and e.event_shape == d.event_shape
    assert e._validate_args == d._validate_args
    for name, value, event_dim in fixture.batch_params(e):
        shape = value.shape[: value.dim() - event_dim]
        if name in fixture.broadcast_params:
            assert torch.broadcast_shapes(shape, batch_shape) == batch_shape, name
        else:
            assert shape == batch_shape, name
    for name, sample in _samplers(e):
        x = sample(torch.Size((2,)))
        assert x.shape == (2,) + batch_shape + d.event_shape, name
        assert e.log_prob(x).shape == (2,) + batch_shape, name
        assert bool(e.support.check(x).all()), name
    # the original is left as it was
    assert {name: value.shape for name, value, _ in fixture.batch_params(d)} == before


@pytest.mark.parametrize("fixture, idx", EXAMPLES)
def test_expand_rejects_incompatible_shapes(fixture, idx):
    d = fixture.make(idx)
    sizes = [k for k, n in enumerate(d.batch_shape) if n > 1]
    if not sizes:
        pytest.skip("every batch shape is compatible with one made of 1s")
    bad = list(d.batch_shape)
    bad[sizes[-1]] += 1
    with pytest.raises((RuntimeError, ValueError)):
        d.expand(bad).sample()


@pytest.mark.parametrize("fixture, idx", EXAMPLES)
def test_support(fixture, idx):
    d = fixture.make(idx)
    assert d.support.event_dim == len(d.event_shape)
    for name, sample in _samplers(d):
        x = sample(torch.Size((20,)))
        ok = d.support.check(x)
        assert ok.shape == (20,) + d.batch_shape, name
        assert bool(ok.all()), name
        if d.support.is_discrete:
            assert torch.equal(x.detach(), x.detach().round()), name


@pytest.mark.parametrize("fixture, idx", EXAMPLES)
def test_log_prob_of_own_samples_is_finite(fixture, idx):
    d = fixture.make(idx, validate_args=True)
    for name, sample in _samplers(d):
        lp = d.log_prob(sample(torch.Size((50,))))
        assert bool(torch.isfinite(lp).all()), name


@pytest.mark.parametrize("fixture, idx", BAD_EXAMPLES)
def test_validate_args_rejects_bad_params(fixture, idx):
    with pytest.raises(ValueError):
        fixture.make_bad(idx)


@pytest.mark.parametrize("fixture, idx", EXAMPLES)
def test_pickle(fixture, idx):
    d = fixture.make(idx)
    copy = pickle.loads(pickle.dumps(d))
    assert type(copy) is type(d)
    assert copy.batch_shape == d.batch_shape and copy.event_shape == d.event_shape
    for (name, value, _), (_, value2, _) in zip(
        fixture.batch_params(d), fixture.batch_params(copy)
    ):
        assert torch.equal(value, value2), name
    x = d.sample()
    torch.testing.assert_close(copy.log_prob(x), d.log_prob(x))


@pytest.mark.parametrize("fixture, idx", EXAMPLES)
def test_infer_shapes(fixture, idx):
    params = fixture.get_dist_params(idx)
    constraints = fixture.pyro_dist.arg_constraints
    arg_shapes = {}
    for name, value in params.items():
        if isinstance(value, torch.Tensor):
            arg_shapes[name] = value.shape
        elif name == "num_nodes" or isinstance(value, torch.distributions.Distribution):
            arg_shapes[name] = value  # a size or a distribution: passed as it is
        elif name in constraints:
            arg_shapes[name] = ()  # a Python number (or None)
    batch_shape, event_shape = fixture.pyro_dist.infer_shapes(**arg_shapes)
    d = fixture.make(idx)
    assert batch_shape == d.batch_shape
    assert event_shape == d.event_shape
