"""pyrostruct.infer.enum: the enumerate-or-relax policy, its application, plate nesting."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import config_enumerate

from pyrostruct.distributions import ConcreteBernoulli
from pyrostruct.distributions.util import base_distribution
from pyrostruct.errors import InputError
from pyrostruct.infer.enum import (
    apply_policy,
    discrete_sites,
    enumerate_policy,
    enumerated_sites,
    infer_max_plate_nesting,
)


def plated_mixture(data):
    with pyro.plate("data", len(data)):
        z = pyro.sample("z", dist.Bernoulli(0.3))
        pyro.sample("x", dist.Normal(3.0 * z, 1.0), obs=data)


def to_event_indicators(data):
    z = pyro.sample("z", dist.Bernoulli(0.5 * torch.ones(4)).to_event(1))
    pyro.sample("x", dist.Normal(z.sum(-1), 1.0), obs=data)


def many_globals(data, n=30):
    total = 0.0
    for i in range(n):
        total = total + pyro.sample(f"z{i}", dist.Bernoulli(0.5))
    pyro.sample("x", dist.Normal(total, 1.0), obs=data)


def control_flow(data):
    z = pyro.sample("z", dist.Bernoulli(0.5))
    loc = 3.0 if z.item() > 0 else 0.0  # a Python branch on the value: not enumerable
    pyro.sample("x", dist.Normal(loc, 1.0), obs=data)


@config_enumerate
def marked_gmm(data):
    weights = pyro.sample("weights", dist.Dirichlet(torch.ones(2)))
    with pyro.plate("components", 2):
        locs = pyro.sample("locs", dist.Normal(0.0, 10.0))
    with pyro.plate("data", len(data)):
        k = pyro.sample("k", dist.Categorical(weights))
        pyro.sample("x", dist.Normal(locs[k], 1.0), obs=data)


DATA = torch.tensor([0.0, 0.5, 3.0, 3.5])


def test_auto_enumerates_plated_local_sites_and_keeps_marks():
    assert enumerate_policy(plated_mixture, DATA) == {"z": "enumerate"}
    assert enumerate_policy(marked_gmm, DATA) == {"k": "enumerate"}


def test_auto_relaxes_what_enumeration_cannot_do_exactly_or_cheaply():
    # .to_event(): 2^4 joint values, not enumerable in parallel
    assert enumerate_policy(to_event_indicators, torch.tensor(1.0)) == {"z": "relax"}
    # 30 coupled globals: the likelihood factor alone would hold 2^30 numbers
    policy = enumerate_policy(many_globals, torch.tensor(1.0))
    assert set(policy.values()) == {"relax"} and len(policy) == 30
    # a few coupled globals are cheap: enumerated
    assert set(enumerate_policy(many_globals, torch.tensor(1.0), n=3).values()) == {"enumerate"}
    # the model fails under enumeration: relaxed
    assert enumerate_policy(control_flow, torch.tensor(1.0)) == {"z": "relax"}


def test_auto_budget_is_the_total_size_of_the_enumerated_factors():
    # z: 2 values x 4 points = 8; x: 2 x 4 = 8 -> 16 numbers in all
    assert enumerate_policy(plated_mixture, DATA, max_enum_size=16) == {"z": "enumerate"}
    assert enumerate_policy(plated_mixture, DATA, max_enum_size=15) == {"z": "relax"}
    # support size rule
    assert enumerate_policy(marked_gmm, DATA, max_support=1) == {"k": "enumerate"}  # marked
    assert enumerate_policy(plated_mixture, DATA, max_support=1) == {"z": "relax"}


def test_explicit_policies_override_marks_and_name_impossible_sites():
    assert enumerate_policy(marked_gmm, DATA, discrete="relax") == {"k": "relax"}
    assert enumerate_policy(plated_mixture, DATA, discrete="enumerate") == {"z": "enumerate"}
    assert enumerate_policy(marked_gmm, DATA, discrete={"k": "relax"}) == {"k": "relax"}
    with pytest.raises(InputError, match="'z'.*cannot be enumerated"):
        enumerate_policy(to_event_indicators, torch.tensor(1.0), discrete="enumerate")
    with pytest.raises(InputError, match="not latent discrete sites.*'w'"):
        enumerate_policy(plated_mixture, DATA, discrete={"w": "relax"})
    with pytest.raises(InputError, match="discrete must be one of"):
        enumerate_policy(plated_mixture, DATA, discrete="exact")
    with pytest.raises(InputError, match="'enumerate' or 'relax'"):
        enumerate_policy(plated_mixture, DATA, discrete={"z": "sum"})
    with pytest.raises(InputError, match="max_enum_size"):
        enumerate_policy(plated_mixture, DATA, max_enum_size=0)


def test_apply_policy_marks_enumerated_sites_and_relaxes_the_others():
    enumerated = apply_policy(plated_mixture, {"z": "enumerate"})
    assert enumerated_sites(enumerated, DATA) == ["z"]
    assert enumerated_sites(plated_mixture, DATA) == []
    relaxed = apply_policy(marked_gmm, {"k": "relax"})
    trace = poutine.trace(apply_policy(plated_mixture, "relax")).get_trace(DATA)
    assert isinstance(base_distribution(trace.nodes["z"]["fn"]), ConcreteBernoulli)
    assert not trace.nodes["z"]["infer"].get("enumerate")
    assert enumerated_sites(relaxed, DATA) == []
    # a policy name is resolved on the first call, with that call's arguments
    lazy = apply_policy(plated_mixture, "auto")
    assert lazy.policy is None
    lazy(DATA)
    assert lazy.policy == {"z": "enumerate"}


def test_apply_policy_keeps_a_sequential_mark():
    def model():
        pyro.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "sequential"})

    trace = poutine.trace(apply_policy(model, {"z": "enumerate"})).get_trace()
    assert trace.nodes["z"]["infer"]["enumerate"] == "sequential"


def test_discrete_sites_leave_out_observed_and_continuous_sites():
    assert discrete_sites(marked_gmm, DATA) == ["k"]


def test_max_plate_nesting_counts_plates_and_unplated_batch_dims():
    assert infer_max_plate_nesting(marked_gmm, DATA) == 1

    def nested(data):
        with pyro.plate("rows", data.shape[0], dim=-2), pyro.plate("cols", data.shape[1]):
            z = pyro.sample("z", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(z, 1.0), obs=data)

    assert infer_max_plate_nesting(nested, torch.zeros(3, 2)) == 2

    def unplated(data):
        # batch shape (3,) outside any plate: Pyro's plate-based guess says 0
        z = pyro.sample("z", dist.Bernoulli(0.5 * torch.ones(3)))
        pyro.sample("x", dist.Normal(z, 1.0), obs=data)

    assert infer_max_plate_nesting(unplated, torch.zeros(3)) == 1
    assert infer_max_plate_nesting(lambda: pyro.sample("a", dist.Normal(0.0, 1.0))) == 0


def test_tracing_is_invisible_to_outer_handlers():
    with poutine.trace() as outer:
        enumerate_policy(plated_mixture, DATA)
        infer_max_plate_nesting(plated_mixture, DATA)
    assert len(outer.trace.nodes) == 0


def test_auto_enumerates_an_unmarked_markov_chain():
    """3^50 joint paths, but pyro.markov recycles two enumeration dims: affordable."""

    def hmm(ys):
        trans = pyro.sample("trans", dist.Dirichlet(torch.ones(3, 3)).to_event(1))
        x = 0
        with pyro.plate("seqs", ys.shape[0]):
            for t in pyro.markov(range(ys.shape[1])):
                x = pyro.sample(f"x_{t}", dist.Categorical(trans[x]))
                pyro.sample(f"y_{t}", dist.Normal(x.float(), 0.5), obs=ys[:, t])

    policy = enumerate_policy(hmm, torch.zeros(4, 50))
    assert len(policy) == 50 and set(policy.values()) == {"enumerate"}

    def no_markov(ys):  # the same chain without pyro.markov: every step keeps its dim
        trans = pyro.sample("trans", dist.Dirichlet(torch.ones(3, 3)).to_event(1))
        x = 0
        with pyro.plate("seqs", ys.shape[0]):
            for t in range(ys.shape[1]):
                x = pyro.sample(f"x_{t}", dist.Categorical(trans[x]))
                pyro.sample(f"y_{t}", dist.Normal(x.float(), 0.5), obs=ys[:, t])

    assert set(enumerate_policy(no_markov, torch.zeros(4, 50)).values()) == {"relax"}
