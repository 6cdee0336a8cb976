"""TraceRLOO_ELBO: unbiased score-function gradients with a lower variance than Trace_ELBO;
TraceRWS_ELBO: the mass-covering wake update."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyrostruct.infer import TraceRLOO_ELBO, TraceRWS_ELBO

# A log-likelihood far from zero, as in real models: the baseline matters.
F1, F0, PRIOR = -48.0, -51.0, 0.3


def model():
    z = pyro.sample("z", dist.Bernoulli(PRIOR))
    pyro.factor("f", torch.where(z > 0, torch.tensor(F1), torch.tensor(F0)))


def guide():
    phi = pyro.param("phi", torch.tensor(0.4))
    pyro.sample("z", dist.Bernoulli(logits=phi))


def exact_elbo_grad(phi):
    phi = torch.tensor(phi, requires_grad=True)
    q = torch.sigmoid(phi)
    elbo = (
        q * (F1 + torch.log(torch.tensor(PRIOR) / q))
        + (1 - q) * (F0 + torch.log(torch.tensor(1 - PRIOR) / (1 - q)))
    )
    return -torch.autograd.grad(elbo, phi)[0].item()  # gradient of the loss


def grad_samples(elbo, reps=400):
    out = []
    for _ in range(reps):
        pyro.get_param_store().get_param("phi").grad = None
        loss = elbo.differentiable_loss(model, guide)
        (g,) = torch.autograd.grad(loss, [pyro.param("phi").unconstrained()])
        out.append(g.item())
    return torch.tensor(out)


@pytest.mark.parametrize("vectorize", [True, False])
def test_rloo_gradient_is_unbiased_and_less_variable_than_trace_elbo(vectorize):
    guide()  # create phi
    exact = exact_elbo_grad(0.4)
    rloo = grad_samples(TraceRLOO_ELBO(num_particles=8, vectorize_particles=vectorize))
    plain = grad_samples(Trace_ELBO(num_particles=8, vectorize_particles=True))
    se = rloo.std() / len(rloo) ** 0.5
    assert abs(rloo.mean() - exact) < 4 * se, (rloo.mean(), exact, se)
    assert abs(plain.mean() - exact) < 4 * plain.std() / len(plain) ** 0.5
    assert rloo.var() < 0.5 * plain.var(), (rloo.var(), plain.var())


def test_rloo_loss_is_the_elbo_estimate():
    guide()
    torch.manual_seed(0)
    losses = torch.tensor([TraceRLOO_ELBO(num_particles=50).loss(model, guide) for _ in range(40)])
    q = torch.sigmoid(torch.tensor(0.4))
    elbo = q * (F1 + torch.log(PRIOR / q)) + (1 - q) * (F0 + torch.log((1 - PRIOR) / (1 - q)))
    assert abs(losses.mean() + elbo) < 4 * losses.std() / 40**0.5 + 1e-6


@pytest.mark.parametrize("vectorize", [True, False])
def test_rloo_particle_terms_are_one_per_particle_with_plates(vectorize):
    """Sites in a plate are summed per particle, vectorized or drawn one by one."""
    data = torch.tensor([0.5, -1.0, 2.0])

    def plated_model():
        z = pyro.sample("z", dist.Bernoulli(PRIOR))
        with pyro.plate("data", 3):
            pyro.sample("x", dist.Normal(z, 1.0), obs=data)

    elbo = TraceRLOO_ELBO(num_particles=5, vectorize_particles=vectorize, max_plate_nesting=1)
    with torch.no_grad():
        f, score = elbo._particle_terms(plated_model, guide, (), {})
    assert f.shape == score.shape == (5,)
    for fk, sk in zip(f, score):
        z = 1.0 if sk.exp() == pytest.approx(torch.sigmoid(torch.tensor(0.4)).item()) else 0.0
        expected = (
            dist.Bernoulli(PRIOR).log_prob(torch.tensor(z))
            + dist.Normal(z, 1.0).log_prob(data).sum()
            - sk
        )
        assert fk.item() == pytest.approx(expected.item(), abs=1e-5)


@pytest.mark.parametrize("k", [1, 0, 2.5])
def test_rloo_needs_two_particles(k):
    with pytest.raises(ValueError, match="num_particles >= 2"):
        TraceRLOO_ELBO(num_particles=k)


def test_rws_update_follows_the_inclusive_divergence():
    """With many particles, TraceRWS_ELBO's gradient of phi is a positive multiple of
    the gradient of -KL(p(z | x) || q_phi) (exact here), and vanishes where q = p."""
    post1 = PRIOR * math.exp(F1) / (PRIOR * math.exp(F1) + (1 - PRIOR) * math.exp(F0))

    def inclusive_grad(phi):
        phi = torch.tensor(phi, requires_grad=True)
        q1 = torch.sigmoid(phi)
        kl = post1 * torch.log(post1 / q1) + (1 - post1) * torch.log((1 - post1) / (1 - q1))
        return torch.autograd.grad(kl, phi)[0].item()  # gradient of the loss (the KL)

    for phi, expected_sign in [(0.4, -1.0), (4.0, 1.0)]:  # post1 = 0.90: below, above
        pyro.get_param_store().clear()
        pyro.param("phi", torch.tensor(phi))
        elbo = TraceRWS_ELBO(num_particles=4000)
        torch.manual_seed(0)
        loss = elbo.differentiable_loss(model, guide)
        (g,) = torch.autograd.grad(loss, [pyro.param("phi").unconstrained()])
        assert math.copysign(1.0, g.item()) == expected_sign == math.copysign(
            1.0, inclusive_grad(phi)
        )
    pyro.get_param_store().clear()
    pyro.param("phi", torch.tensor(math.log(post1 / (1 - post1))))  # q = p
    torch.manual_seed(0)
    loss = TraceRWS_ELBO(num_particles=4000).differentiable_loss(model, guide)
    (g,) = torch.autograd.grad(loss, [pyro.param("phi").unconstrained()])
    elbo_at_phi = TraceRLOO_ELBO(num_particles=4000).differentiable_loss(model, guide)
    (g_rloo,) = torch.autograd.grad(elbo_at_phi, [pyro.param("phi").unconstrained()])
    assert abs(g.item()) < 0.1 * max(1.0, abs(g_rloo.item())) + 0.05, g


def test_rws_loss_is_the_elbo_estimate():
    guide()
    torch.manual_seed(0)
    a = TraceRWS_ELBO(num_particles=50).loss(model, guide)
    torch.manual_seed(0)
    b = TraceRLOO_ELBO(num_particles=50).loss(model, guide)
    assert a == b
