"""The serial, process and ray executors give the same result for the same seed."""

import numpy as np
import pytest

from pyrostruct.errors import InputError
from pyrostruct.executors import executor_session
from pyrostruct.selection import select, select_components
from pyrostruct.selection.datasets import make_gmm_data

KW = dict(steps=80, num_restarts=2, elbo_particles=100, iwae_particles=20, iwae_repeats=3, seed=3)


def _square(ctx, payload):
    return ctx["offset"] + payload**2


def test_executor_session_maps_with_a_closure_context():
    ctx = {"offset": 1, "fn": lambda v: v}  # a lambda: not picklable, reaches workers by fork
    for executor in ["serial", "process"]:
        with executor_session(executor, ctx, max_workers=2) as run:
            assert run(_square, [1, 2, 3]) == [2, 5, 10]


def _threads(ctx, payload):
    import torch

    return torch.get_num_threads()


def test_process_workers_use_one_torch_thread():
    with executor_session("process", None, max_workers=2) as run:
        assert run(_threads, [0, 1]) == [1, 1]


@pytest.fixture(scope="module")
def gmm_data():
    return make_gmm_data(120, 2, 2, separation=8.0, seed=0)[0]


@pytest.fixture(scope="module")
def serial_result(gmm_data):
    return select_components(gmm_data, "gmm", 3, executor="serial", **KW)


def _assert_same(a, b):
    assert list(a.table.candidate) == list(b.table.candidate)
    assert a.best == b.best
    assert list(a.table.status) == list(b.table.status)
    for col in ["elbo", "iwae"]:
        x, y = a.table[col].to_numpy(), b.table[col].to_numpy()
        assert np.allclose(x, y, rtol=1e-4, atol=1e-3, equal_nan=True), (col, x, y)


def test_process_executor_matches_serial(gmm_data, serial_result):
    result = select_components(gmm_data, "gmm", 3, executor="process", max_workers=2, **KW)
    _assert_same(serial_result, result)
    assert result.best == 2
    # the fitted posterior came back from a worker and is usable here
    assert result.posterior(2).median()["locs"].shape == (2, 2)


def test_process_executor_runs_lambdas_defined_here(gmm_data):
    import pyro
    import pyro.distributions as dist

    def make(scale):
        def model(y):
            mu = pyro.sample("mu", dist.Normal(0.0, scale))
            with pyro.plate("data", len(y)):
                pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

        return model

    import torch

    y = torch.tensor(gmm_data[:, 0], dtype=torch.float32)
    kw = dict(KW, halving=None)
    a = select(lambda s: make(s), y, grid=[0.5, 5.0], executor="serial", **kw)
    b = select(lambda s: make(s), y, grid=[0.5, 5.0], executor="process", **kw)
    _assert_same(a, b)


@pytest.mark.slow
def test_ray_executor_matches_serial(gmm_data, serial_result):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = select_components(gmm_data, "gmm", 3, executor="ray", **KW)
    finally:
        ray.shutdown()
    _assert_same(serial_result, result)


def test_unknown_executor():
    with pytest.raises(InputError, match="executor must be one of"):
        with executor_session("threads", {}):
            pass
