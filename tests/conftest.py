"""Shared test set-up: one torch thread per worker, fresh Pyro state, fixed seeds."""

import os

import pyro
import pytest
import torch
from hypothesis import HealthCheck, settings

# Under pytest-xdist each worker gets a core; more threads only oversubscribe.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

settings.register_profile(
    "ci",
    deadline=None,
    max_examples=50,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _fresh_pyro_state():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    pyro.enable_validation(True)
    yield
    pyro.clear_param_store()
