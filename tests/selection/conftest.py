"""Small models shared by the selection tests."""

import pyro
import pyro.distributions as dist
import pytest
import torch

SIGMA = 1.0


def normal_mean_model(prior_scale):
    """y_i ~ N(mu, 1), mu ~ N(0, prior_scale^2): a conjugate candidate per prior scale."""

    def model(y):
        mu = pyro.sample("mu", dist.Normal(0.0, prior_scale))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(mu, SIGMA), obs=y)

    return model


def normal_mean_log_evidence(y, prior_scale):
    n = len(y)
    cov = SIGMA**2 * torch.eye(n) + prior_scale**2 * torch.ones(n, n)
    return dist.MultivariateNormal(torch.zeros(n), cov).log_prob(y).item()


@pytest.fixture(scope="module")
def normal_data():
    return 2.0 + torch.randn(40, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def conjugate():
    """(model factory by prior scale, exact log evidence function)."""
    return normal_mean_model, normal_mean_log_evidence
