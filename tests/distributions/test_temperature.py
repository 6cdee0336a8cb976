"""Temperatures: the one parser (current_temperature) and the schedules: values, stepping,
checkpoints, bad input, and where they may be imported from."""

import io
import json
import math
import subprocess
import sys

import pytest
import torch

from pyrostruct.distributions.temperature import (
    ConstantSchedule,
    ExponentialSchedule,
    LinearSchedule,
    TemperatureSchedule,
    current_temperature,
)


def test_constant():
    s = ConstantSchedule(0.7)
    assert s.temperature == 0.7 and s(0) == 0.7 and s(10_000) == 0.7
    assert s.step() == 0.7 and s.num_steps_taken == 1
    assert float(s) == 0.7


def test_exponential_decays_to_floor_as_in_jang_et_al():
    s = ExponentialSchedule(initial=1.0, rate=1e-2, minimum=0.3)
    assert s(0) == 1.0
    assert s(50) == pytest.approx(math.exp(-0.5))
    assert s(10_000) == 0.3
    values = [s.step() for _ in range(300)]
    assert values[0] == pytest.approx(math.exp(-1e-2))
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert values[-1] == 0.3 and s.temperature == 0.3
    # tau = max(tau_min, tau_0 exp(-r t)) at every step
    assert all(v == pytest.approx(max(0.3, math.exp(-1e-2 * t))) for t, v in enumerate(values, 1))


def test_exponential_interval_updates_every_n_steps():
    s = ExponentialSchedule(initial=2.0, rate=0.1, minimum=0.01, interval=10)
    assert s(0) == s(9) == 2.0
    assert s(10) == s(19) == pytest.approx(2.0 * math.exp(-1.0))


def test_linear():
    s = LinearSchedule(initial=1.0, final=0.2, num_steps=4)
    assert [s(t) for t in range(6)] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2, 0.2])
    s.step()
    s.step()
    assert s.temperature == pytest.approx(0.6)
    s.reset()
    assert s.temperature == 1.0


@pytest.mark.parametrize(
    "make",
    [
        lambda: ConstantSchedule(0.4),
        lambda: ExponentialSchedule(initial=1.5, rate=3e-3, minimum=0.2, interval=5),
        lambda: LinearSchedule(initial=2.0, final=0.5, num_steps=100),
    ],
)
def test_state_dict_round_trip_through_torch_save_and_json(make):
    s = make()
    for _ in range(37):
        s.step()
    state = s.state_dict()
    assert json.loads(json.dumps(state)) == state
    buf = io.BytesIO()
    torch.save({"schedule": state}, buf)
    buf.seek(0)
    restored_state = torch.load(buf)["schedule"]

    fresh = make()
    fresh.reset()
    assert fresh.temperature != s.temperature or isinstance(s, ConstantSchedule)
    fresh.load_state_dict(restored_state)
    assert fresh.num_steps_taken == 37 and fresh.temperature == s.temperature
    assert [fresh.step() for _ in range(5)] == [s.step() for _ in range(5)]


def test_load_state_dict_restores_hyperparameters_and_rejects_other_types():
    a = ExponentialSchedule(initial=3.0, rate=0.5, minimum=0.1)
    b = ExponentialSchedule()
    b.load_state_dict(a.state_dict())
    assert (b.initial, b.rate, b.minimum) == (3.0, 0.5, 0.1)
    with pytest.raises(
        ValueError, match="Cannot load a LinearSchedule state into a ExponentialSchedule"
    ):
        b.load_state_dict(LinearSchedule().state_dict())
    with pytest.raises(ValueError, match="num_steps_taken"):
        b.load_state_dict({**a.state_dict(), "num_steps_taken": -3})


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ConstantSchedule(0.0), "value must be > 0"),
        (lambda: ConstantSchedule(float("nan")), "value must be > 0"),
        (lambda: ExponentialSchedule(minimum=0.0), "minimum must be > 0"),
        (lambda: ExponentialSchedule(initial=-1.0), "initial must be > 0"),
        (lambda: ExponentialSchedule(rate=-0.1), "rate must be >= 0"),
        (lambda: ExponentialSchedule(interval=0), "interval must be an int >= 1"),
        (lambda: LinearSchedule(final=0.0), "final must be > 0"),
        (lambda: LinearSchedule(num_steps=0), "num_steps must be an int >= 1"),
        (lambda: ConstantSchedule("hot"), "must be a positive number"),
    ],
)
def test_bad_hyperparameters_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_current_temperature_resolves_floats_tensors_and_schedules():
    assert current_temperature(0.5) == 0.5
    t = torch.tensor([0.5, 1.0])
    assert current_temperature(t) is t
    s = LinearSchedule(initial=1.0, final=0.5, num_steps=2)
    assert current_temperature(s) == 1.0
    s.step()
    assert current_temperature(s) == 0.75
    assert isinstance(s, TemperatureSchedule)
    for bad in [0.0, -1.0, float("inf"), torch.tensor([0.5, 0.0]), None]:
        with pytest.raises(ValueError):
            current_temperature(bad)


def test_current_temperature_scalar_mode_gives_one_float():
    assert current_temperature(torch.tensor(0.25), scalar=True) == 0.25
    assert isinstance(current_temperature(torch.tensor([0.25]), scalar=True), float)
    assert current_temperature(ConstantSchedule(0.3), scalar=True) == 0.3
    with pytest.raises(ValueError, match="expected a scalar temperature"):
        current_temperature(torch.tensor([0.5, 1.0]), scalar=True)


def test_current_temperature_type_rules():
    # integer tensors are numbers like any other; booleans, strings, complex are refused
    t = current_temperature(torch.tensor(2))
    assert t.is_floating_point() and t.item() == 2.0
    for bad in [True, "0.5", torch.tensor(True), torch.tensor(1j), [0.5]]:
        with pytest.raises(ValueError, match="temperature"):
            current_temperature(bad)
    with pytest.raises(ValueError, match="relax: temperature must be > 0"):
        current_temperature(-1.0, name="relax: temperature")


class _LookAlike:
    """Not a TemperatureSchedule, but has ``.temperature``: read like one."""

    temperature = 0.25


def test_every_consumer_reads_temperatures_through_the_one_parser():
    from pyrostruct.distributions import (
        ConcreteBernoulli,
        ConcreteCategorical,
        OrderedDAG,
        PlackettLuce,
    )
    from pyrostruct.handlers import RelaxMessenger

    schedule = LinearSchedule(initial=1.0, final=0.5, num_steps=2)
    schedule.step()
    # the same inputs are accepted (schedules and look-alikes included) ...
    assert ConcreteBernoulli(schedule, logits=torch.zeros(2)).temperature.item() == 0.75
    assert ConcreteCategorical(_LookAlike(), logits=torch.zeros(3)).temperature.item() == 0.25
    PlackettLuce(torch.zeros(3), temperature=_LookAlike())
    OrderedDAG(None, torch.zeros(3, 3), temperature=torch.tensor([0.5]))
    RelaxMessenger(temperature=schedule)
    # ... and the same ones refused, with the same message
    for make in [
        lambda t: ConcreteBernoulli(t, logits=torch.zeros(2)),
        lambda t: PlackettLuce(torch.zeros(3), temperature=t),
        lambda t: OrderedDAG(None, torch.zeros(3, 3), temperature=t),
        lambda t: RelaxMessenger(temperature=t),
    ]:
        for bad in [0.0, float("nan"), "0.5", True]:
            with pytest.raises(ValueError, match="temperature"):
                make(bad)


def test_handlers_and_distributions_do_not_import_infer():
    code = (
        "import sys, pyrostruct.handlers, pyrostruct.distributions; "
        "print(sorted(m for m in sys.modules if m.startswith('pyrostruct.infer')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_infer_reexports_the_same_objects():
    import pyrostruct.infer as infer
    from pyrostruct.distributions import temperature as new

    for name in new.__all__:
        assert getattr(new, name) is getattr(infer, name)
