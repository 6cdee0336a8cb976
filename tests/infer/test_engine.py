"""The one training loop (pyrostruct.infer.engine) and the policies it sets for every caller."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule, PyroSample

import pyrostruct
from pyrostruct.distributions.temperature import ExponentialSchedule
from pyrostruct.errors import NonFiniteLossError
from pyrostruct.infer.autoguide import AutoSparseSubspace
from pyrostruct.infer.engine import (
    CallbackHook,
    CheckpointHook,
    Hook,
    SubspaceHook,
    TemperatureHook,
    param_scope,
    train,
)


def test_train_runs_the_steps_from_start_to_stop_and_returns_their_losses():
    calls = []

    def step():
        calls.append(1)
        return float(len(calls))

    assert train(step, 5, start=2) == [1.0, 2.0, 3.0]


def test_hooks_wrap_in_order_run_after_each_step_and_close_once():
    log = []

    class Tag(Hook):
        def __init__(self, tag):
            self.tag = tag

        def around(self, step):
            def wrapped():
                log.append(f"{self.tag}<")
                return step()

            return wrapped

        def after(self, step, loss):
            log.append(f"{self.tag}.after({step})")

        def close(self):
            log.append(f"{self.tag}.close")

    train(lambda: 0.0, 1, hooks=[Tag("a"), Tag("b")])
    assert log == ["b<", "a<", "a.after(0)", "b.after(0)", "a.close", "b.close"]


def test_a_callback_returning_true_stops_the_run():
    losses = train(lambda: 1.0, 100, hooks=[CallbackHook(lambda step, loss: step == 3)])
    assert len(losses) == 4


@pytest.mark.parametrize("bad", [math.nan, math.inf, torch.tensor([0.0, math.nan])])
def test_a_non_finite_loss_raises_naming_the_run_and_step_and_closes_hooks(bad):
    closed = []

    class Close(Hook):
        def close(self):
            closed.append(True)

    values = iter([1.0, 2.0, bad])
    with pytest.raises(NonFiniteLossError, match="candidate 'x': the loss became .* at step 2"):
        train(lambda: next(values), 10, hooks=[Close()], name="candidate 'x'")
    assert closed == [True]
    assert issubclass(NonFiniteLossError, RuntimeError)


def test_checkpoints_every_k_steps_and_at_the_end():
    saved = []
    train(lambda: 0.0, 7, start=1, hooks=[CheckpointHook(saved.append, every=3, stop=7)])
    assert saved == [3, 6, 7]


def test_temperature_hook_steps_each_schedule_once_per_step():
    schedule = ExponentialSchedule(1.0, rate=0.1, minimum=0.01)
    train(lambda: 0.0, 4, hooks=[TemperatureHook([schedule])])
    assert schedule.temperature == pytest.approx(math.exp(-0.4))


def test_param_scope_keeps_the_callers_store_and_publishes_only_on_request():
    pyro.clear_param_store()
    pyro.param("mine", torch.tensor(1.0))
    pyro.param("shared", torch.tensor(2.0))
    with param_scope():
        assert "mine" not in pyro.get_param_store()
        pyro.param("shared", torch.tensor(20.0))
    assert pyro.param("shared").item() == 2.0
    with param_scope(publish=True):
        pyro.param("shared", torch.tensor(30.0))
        pyro.param("new", torch.tensor(4.0))
    store = pyro.get_param_store()
    assert {k: store[k].item() for k in store.keys()} == {"mine": 1.0, "shared": 30.0, "new": 4.0}


def test_param_scope_publishes_nothing_when_the_run_fails():
    pyro.clear_param_store()
    with pytest.raises(KeyError), param_scope(publish=True):
        pyro.param("half", torch.tensor(1.0))
        raise KeyError("the run failed")
    assert "half" not in pyro.get_param_store()


# --- every caller follows the same policies ------------------------------------------------------


def _normal_model(data):
    loc = pyro.sample("loc", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(data)):
        pyro.sample("obs", dist.Normal(loc, 1.0), obs=data)


def test_fit_leaves_the_users_other_parameters_alone():
    pyro.clear_param_store()
    pyro.param("my_model_param", torch.tensor(3.0))
    result = pyrostruct.fit(_normal_model, torch.ones(5), steps=5)
    store = pyro.get_param_store()
    assert store["my_model_param"].item() == 3.0  # fit used to clear the store
    assert result.guide.median()["loc"].shape == ()


def _explodes(data):
    loc = pyro.sample("loc", dist.Normal(0.0, 1.0))
    pyro.factor("boom", loc * 0.0 - math.inf)


def test_fit_and_select_raise_the_same_error_on_a_non_finite_loss():
    with pytest.raises(NonFiniteLossError, match="fit: the loss became"):
        pyrostruct.fit(_explodes, torch.ones(3), steps=3)
    with pytest.raises(RuntimeError, match="NonFiniteLossError"):
        pyrostruct.select({"a": _explodes}, torch.ones(3), steps=3, num_restarts=1)


class _TinyNet(PyroModule):
    def __init__(self, width=40):
        super().__init__()
        self.layer = PyroModule[torch.nn.Linear](width, 1)
        self.layer.weight = PyroSample(dist.Normal(0.0, 1.0).expand([1, width]).to_event(2))
        self.layer.bias = PyroSample(dist.Normal(0.0, 1.0).expand([1]).to_event(1))

    def forward(self, x, y=None):
        mean = self.layer(x).squeeze(-1)
        with pyro.plate("data", len(x)):
            pyro.sample("y", dist.Normal(mean, 0.1), obs=y)


def test_fit_with_a_sparse_subspace_guide_evolves_the_subspace():
    # fit used to step only temperature schedules: the subspace stayed the random start
    pyro.set_rng_seed(0)
    x = torch.randn(64, 40)
    y = 3.0 * x[:, 5]  # only weight 5 matters; a 25% subspace must find it
    net = _TinyNet()
    guide = AutoSparseSubspace(net, density=0.25, sites=["layer.weight"])
    guide(x, y)
    assert 5 not in guide.active_indices("layer.weight").tolist()  # the random start misses it
    pyrostruct.fit(net, x, y, guide=guide, steps=400, lr=0.05)
    assert 5 in guide.active_indices("layer.weight").tolist()


def test_subspace_hook_runs_the_step_through_the_scheduler():
    seen = []

    class Scheduler:
        def step(self, fn):
            seen.append("scheduler")
            return fn()

    assert train(lambda: 1.5, 2, hooks=[SubspaceHook(Scheduler())]) == [1.5, 1.5]
    assert seen == ["scheduler", "scheduler"]


def test_fit_and_select_take_numpy_data():
    """A NumPy array failed inside the model ("The value argument to log_prob must be a
    Tensor"; select: "every candidate failed: ... has no attribute 'dim'")."""
    import numpy as np

    from pyrostruct.infer import fit
    from pyrostruct.selection import ppca, select

    x = np.random.default_rng(0).normal(size=(40, 3)) + 2.0

    def model(data):
        mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
        with pyro.plate("n", len(data)):
            pyro.sample("obs", dist.Normal(mu, 1.0), obs=data)

    result = fit(model, x[:, 0], steps=300, lr=0.05)
    assert abs(float(result.guide.median()["mu"]) - x[:, 0].mean()) < 0.2
    chosen = select({1: ppca(1), 2: ppca(2)}, x - x.mean(0), steps=30, evidence="elbo")
    assert set(chosen.table.status) == {"fitted"}
