"""fit / auto_guide on models with enumerated discrete sites (issue 16, items 1 and 2).

Before issue 16 both raised ``ValueError: cannot guide site 'k'`` on a
``@config_enumerate`` model.
"""

import math
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, config_enumerate
from pyro.infer.autoguide import AutoNormal
from pyro.optim import Adam

from pyrostruct.errors import InputError
from pyrostruct.infer import fit
from pyrostruct.infer.autoguide import auto_guide

# well separated clusters at -3 and 3; asymmetric prior means, so no label switching
DATA = torch.tensor([-3.2, -2.9, -3.1, 2.8, 3.0, 3.3, 3.1])
TRUTH = torch.tensor([0, 0, 0, 1, 1, 1, 1])


@config_enumerate
def gmm(data):
    weights = pyro.sample("weights", dist.Dirichlet(torch.ones(2)))
    with pyro.plate("components", 2):
        locs = pyro.sample("locs", dist.Normal(torch.tensor([-1.0, 1.0]), 3.0))
    with pyro.plate("data", len(data)):
        k = pyro.sample("k", dist.Categorical(weights))
        pyro.sample("x", dist.Normal(locs[k], 0.5), obs=data)


def unmarked_mixture(data):
    locs = pyro.param("locs", torch.tensor([-1.0, 1.0]))
    with pyro.plate("data", len(data)):
        z = pyro.sample("z", dist.Bernoulli(0.4))
        loc = locs[0] + z * (locs[1] - locs[0])
        pyro.sample("x", dist.Normal(loc, 0.5), obs=data)


def test_auto_guide_hides_enumerated_sites_and_trains_with_trace_enum():
    guide = auto_guide(gmm)
    svi = SVI(guide.model, guide, Adam({"lr": 0.05}), TraceEnum_ELBO(max_plate_nesting=1))
    for _ in range(5):
        svi.step(DATA)
    assert guide.enumerated_sites == ["k"]
    assert set(guide.site_parts) == {"weights", "locs"}
    assert "k" not in guide(DATA)
    assert guide.discrete_policy == {"k": "enumerate"}


def test_auto_guide_discrete_policy_is_resolved_at_the_first_call():
    guide = auto_guide(unmarked_mixture, discrete="auto")
    guide(DATA)
    assert guide.discrete_policy == {"z": "enumerate"}
    assert guide.enumerated_sites == ["z"]
    relaxed = auto_guide(unmarked_mixture)  # default: the model's marks decide
    relaxed(DATA)
    assert relaxed.discrete_policy == {"z": "relax"}
    assert relaxed.site_parts == {"z": "discrete"}


def test_auto_guide_overrides_cannot_name_an_enumerated_site():
    with pytest.raises(ValueError, match="summed out by TraceEnum_ELBO"):
        auto_guide(gmm, overrides={"k": AutoNormal})(DATA)


def test_fit_enumerates_marked_sites_with_trace_enum_and_inferred_nesting():
    result = fit(gmm, DATA, steps=300, lr=0.05)
    assert isinstance(result.elbo, TraceEnum_ELBO)
    assert result.max_plate_nesting == 1
    assert result.discrete_policy == {"k": "enumerate"}
    assert result.enumerated_sites == ["k"]
    locs = result.guide.median(DATA)["locs"].sort().values  # the labels are arbitrary
    assert torch.allclose(locs, torch.tensor([-3.07, 3.05]), atol=0.3)
    assert result.data_init and len(result.restart_elbos) == 1
    model, guide, losses = result  # still a 3-tuple
    assert len(losses) == 300


def test_fit_infer_discrete_recovers_local_latents():
    result = fit(gmm, DATA, steps=300, lr=0.05)
    k = result.infer_discrete()["k"]  # MAP, the fit's own data
    truth = TRUTH if k[0] == TRUTH[0] else 1 - TRUTH  # the labels are arbitrary
    assert torch.equal(k, truth)
    new = torch.tensor([-3.0, 4.0])
    assert result.infer_discrete(new)["k"].tolist() == [int(truth[DATA.argmin()]),
                                                        int(truth[DATA.argmax()])]  # fmt: skip
    sample = result.infer_discrete(temperature=1)["k"]
    assert sample.shape == TRUTH.shape and sample.dtype == torch.long
    # the clusters are far apart: posterior samples agree with the MAP
    assert torch.equal(sample, truth)
    with pytest.raises(InputError, match="temperature must be 0"):
        result.infer_discrete(temperature=0.5)


def test_fit_enumeration_is_exact():
    """With every latent enumerated, the loss is exactly -log p(x; locs)."""
    result = fit(unmarked_mixture, DATA, steps=200, lr=0.05)
    assert result.discrete_policy == {"z": "enumerate"}
    locs = pyro.param("locs").detach()
    comps = torch.stack(
        [
            dist.Normal(locs[0], 0.5).log_prob(DATA) + math.log(0.6),
            dist.Normal(locs[1], 0.5).log_prob(DATA) + math.log(0.4),
        ]
    )
    exact = torch.logsumexp(comps, 0).sum().item()
    loss = result.elbo.loss(result.model, result.guide, DATA)
    assert loss == pytest.approx(-exact, abs=1e-4)
    assert sorted(locs.tolist()) == pytest.approx([-3.07, 3.05], abs=0.1)


def test_fit_discrete_relax_uses_trace_elbo_and_reports_it():
    result = fit(unmarked_mixture, DATA, discrete="relax", steps=20)
    assert isinstance(result.elbo, Trace_ELBO) and not isinstance(result.elbo, TraceEnum_ELBO)
    assert result.discrete_policy == {"z": "relax"}
    assert result.max_plate_nesting is None
    with pytest.raises(InputError, match="enumerates no site"):
        result.infer_discrete()


def test_fit_relax_overrides_the_models_marks():
    result = fit(gmm, DATA, discrete={"k": "relax"}, steps=2)
    assert result.discrete_policy == {"k": "relax"}
    assert result.guide.site_parts["k"] == "discrete"


def test_fit_refuses_what_would_silently_go_wrong():
    with pytest.raises(InputError, match="TraceEnum_ELBO"):
        fit(gmm, DATA, steps=2, elbo=Trace_ELBO())
    guide = auto_guide(gmm)
    with pytest.raises(InputError, match="guide's model decides"):
        fit(gmm, DATA, guide=guide, discrete="relax", steps=2)
    with pytest.raises(InputError, match="discrete must be"):
        fit(gmm, DATA, discrete=True, steps=2)
    with pytest.raises(InputError, match="max_plate_nesting"):
        fit(gmm, DATA, max_plate_nesting=-1, steps=2)
    for seed in (-1, 1.5, "7", True):  # numpy's own errors before
        with pytest.raises(InputError, match="seed must be an integer"):
            fit(gmm, DATA, seed=seed, steps=2)


def test_fit_with_a_given_guide_on_an_enumerated_model():
    guide = auto_guide(gmm)
    result = fit(gmm, DATA, guide=guide, steps=5)
    assert isinstance(result.elbo, TraceEnum_ELBO)
    assert result.discrete_policy == {"k": "enumerate"}


def test_auto_guide_policy_leaves_override_sites_alone():
    def model(data):
        p = pyro.sample("p", dist.Beta(2.0, 2.0))
        with pyro.plate("data", len(data)):
            z = pyro.sample("z", dist.Bernoulli(p))
            pyro.sample("x", dist.Normal(3.0 * z, 0.5), obs=data)

    guide = auto_guide(model, discrete="auto", overrides={"p": AutoNormal})
    guide(DATA)
    assert guide.discrete_policy == {"z": "enumerate"}
    assert guide.site_parts == {"p": "override"}


def test_fit_names_a_discrete_site_it_can_neither_enumerate_nor_relax():
    def model(data):
        n = pyro.sample("n", dist.Poisson(3.0))
        pyro.sample("x", dist.Normal(n, 1.0), obs=data)

    with pytest.raises(ValueError, match="'n'"):
        fit(model, torch.tensor(2.0), steps=1)


def test_a_site_that_can_be_neither_enumerated_nor_relaxed_says_so():
    """Hostile sweep: for a Poisson latent the enumeration error advised relaxing it and the
    relaxation error advised enumerating it; neither can be done."""
    from pyrostruct.distributions.relaxation import NoRelaxationError

    def model(y):
        n = pyro.sample("n", dist.Poisson(3.0))
        pyro.sample("obs", dist.Normal(n, 1.0), obs=y)

    for discrete, error in [("enumerate", InputError), ({"n": "relax"}, NoRelaxationError)]:
        with pytest.raises(error) as info:
            fit(model, torch.tensor(2.0), steps=2, discrete=discrete)
        message = str(info.value)
        assert "neither enumerated" in message and "nor relaxed" in message, message
        assert "overrides" in message, message
        assert "Relax it" not in message and "and enumerate it" not in message
        assert ".to_event()" not in message


def test_infer_discrete_warns_that_a_subsampled_plate_gives_a_random_subset():
    """Hostile sweep: each call returned 4 values for another random 4 of the 20 points,
    without saying so (Pyro's infer_discrete does the same)."""

    def model(y):
        p = pyro.sample("p", dist.Beta(1.0, 1.0))
        with pyro.plate("data", len(y), subsample_size=4) as idx:
            z = pyro.sample("z", dist.Bernoulli(p))
            pyro.sample("obs", dist.Normal(3 * z, 1.0), obs=y[idx])

    y = torch.cat([torch.randn(10), torch.randn(10) + 3])
    result = fit(model, y, steps=5)
    with pytest.warns(UserWarning, match=r"plate 'data' \(4 of 20 points\)"):
        values = result.infer_discrete()
    assert values["z"].shape == (4,)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning where every point is kept
        fit(gmm, DATA, steps=2).infer_discrete()

