"""Tests of AutoSparseSubspace and SubspaceScheduler (sparse subspace VI)."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from pyro.nn import PyroModule
from torch import nn

from pyrostruct.infer.autoguide.sparse_subspace import (
    AutoSparseSubspace,
    SubspaceScheduler,
    active_count,
    folded_normal_snr,
)
from pyrostruct.nn import BayesianMLP


class TemperedMLP(BayesianMLP):
    """A BayesianMLP classifier whose logits are divided by a positive latent temperature
    (a latent site that is not a weight)."""

    def forward(self, x, y=None):
        logits = self.net(x)
        temp = pyro.sample("temperature", dist.LogNormal(0.0, 0.3))
        logits = logits / temp
        with pyro.plate("data", x.shape[0]):
            pyro.sample("obs", dist.Categorical(logits=logits), obs=y)
        return logits


def make_bnn(d=8, h=16, c=3, noise_site=False):
    """Two-layer MLP classifier with N(0, 1) priors on all weights and biases."""
    return (TemperedMLP if noise_site else BayesianMLP)([d, h, c])


def data(n=60, d=8, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, c, generator=g)
    y = (x @ w).argmax(-1)
    return x, y


def train(guide_fn, num_steps=40, update_every=5, criterion="snr", seed=1, lr=0.02, model=None):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    x, y = data()
    model = make_bnn() if model is None else model
    guide = guide_fn(model)
    optim = pyro.optim.Adam({"lr": lr})
    svi = SVI(model, guide, optim, Trace_ELBO())
    scheduler = None
    if isinstance(guide, AutoSparseSubspace):
        scheduler = SubspaceScheduler(
            guide, optim, num_steps=num_steps, update_every=update_every, criterion=criterion
        )
        losses = [scheduler.step(svi.step, x, y) for _ in range(num_steps)]
    else:
        losses = [svi.step(x, y) for _ in range(num_steps)]
    return model, guide, optim, scheduler, losses


def unconstrained(guide, name):
    with guide._pyro_context:
        loc, scale = guide._get_loc_and_scale(name)
        return loc.unconstrained(), scale.unconstrained()


def set_params(guide, name, loc, scale):
    loc_u, scale_u = unconstrained(guide, name)
    with torch.no_grad():
        loc_u.copy_(torch.as_tensor(loc))
        scale_u.copy_(dist.transforms.SoftplusTransform().inv(torch.as_tensor(scale)))


# --------------------------------------------------------------------------- storage


def test_active_count_rule():
    assert active_count(100, 0.1) == 10
    assert active_count(100, 0.29) == 29  # not 28 from 28.999999999999996
    assert active_count(128, 0.1) == 12  # 12.8 rounds down
    assert active_count(16, 0.05) == 1  # 0.8 -> at least one
    assert active_count(3, 0.05) == 1
    assert active_count(7, 1.0) == 7
    for numel in range(1, 300):
        for density in (0.05, 0.1, 0.25, 0.5, 1.0):
            k = active_count(numel, density)
            assert 1 <= k <= numel and (k <= density * numel + 1e-9 or k == 1)


@pytest.mark.parametrize("density", [0.05, 0.1, 0.5])
def test_compact_storage_matches_density(density):
    pyro.clear_param_store()
    model = make_bnn(d=20, h=50, c=4)
    x, y = torch.randn(5, 20), torch.randint(0, 4, (5,))
    guide = AutoSparseSubspace(model, density=density)
    guide(x, y)
    sizes = {"net.0.weight": 1000, "net.0.bias": 50, "net.2.weight": 200, "net.2.bias": 4}
    expected = {name: active_count(n, density) for name, n in sizes.items()}
    assert guide.active_counts() == expected
    for name, n in sizes.items():
        loc, scale = guide._get_loc_and_scale(name)
        assert loc.shape == scale.shape == (expected[name],)
        assert guide.active_indices(name).shape == (expected[name],)
        assert abs(expected[name] - density * n) <= 1
        assert guide.active_indices(name).unique().numel() == expected[name]
    # Nothing of the dense size is stored: every tensor of the guide is compact.
    for tensor in list(guide.parameters()) + list(guide.buffers()):
        assert tensor.numel() <= expected["net.0.weight"]
    assert guide.num_variational_params == 2 * sum(expected.values())
    assert guide.density == pytest.approx(sum(expected.values()) / sum(sizes.values()))
    # Compared with AutoNormal, the parameter bytes shrink by the density.
    dense = AutoNormal(model)
    dense(x, y)
    dense_bytes = sum(p.numel() * p.element_size() for p in dense.parameters())
    sparse_bytes = sum(p.numel() * p.element_size() for p in guide.parameters())
    assert sparse_bytes / dense_bytes == pytest.approx(density, rel=0.1)
    index_bytes = sum(b.numel() * b.element_size() for b in guide.buffers())
    assert index_bytes == 2 * sum(expected.values())  # int16 indices for these sizes


def _guide_and_adam_bytes(guide, optim):
    total = sum(t.numel() * t.element_size() for t in guide.parameters())
    total += sum(t.numel() * t.element_size() for t in guide.buffers())
    for obj in optim.optim_objs.values():
        for state in obj.state.values():
            total += sum(v.numel() * v.element_size() for v in state.values() if v.dim() > 0)
    return total


def test_guide_and_adam_bytes_per_coordinate_bound_the_memory_ratio():
    """24 B per active coordinate plus its index, against 24 B per dense weight (docstring)."""
    model = make_bnn(d=200, h=200, c=4)  # 40000 first-layer weights: int32 indices
    x, y = torch.randn(5, 200), torch.randint(0, 4, (5,))
    sizes = {"net.0.weight": 40000, "net.0.bias": 200, "net.2.weight": 800, "net.2.bias": 4}
    measured = {}
    for density in (None, 0.1):
        pyro.clear_param_store()
        guide = AutoNormal(model) if density is None else AutoSparseSubspace(model, density=0.1)
        optim = pyro.optim.Adam({"lr": 0.01})
        SVI(model, guide, optim, Trace_ELBO()).step(x, y)
        measured[density] = _guide_and_adam_bytes(guide, optim)
    assert measured[None] == 24 * sum(sizes.values())
    index_bytes = {"net.0.weight": 4, "net.0.bias": 2, "net.2.weight": 2, "net.2.bias": 2}
    expected = sum(active_count(n, 0.1) * (24 + index_bytes[k]) for k, n in sizes.items())
    assert measured[0.1] == expected
    ratio = measured[None] / measured[0.1]
    assert ratio < 10 and ratio == pytest.approx(24 / (0.1 * 28), rel=0.01)


def test_forward_scatters_active_samples_and_zeros_elsewhere():
    pyro.clear_param_store()
    model = make_bnn()
    x, y = data()
    guide = AutoSparseSubspace(model, density=0.25)
    trace = poutine.trace(guide).get_trace(x, y)
    for name in guide.weight_sites:
        value = trace.nodes[name]["value"]
        active = trace.nodes[name + "_active"]["value"]
        mask = guide.active_mask(name)
        assert value.shape == mask.shape
        assert torch.equal(value[~mask], torch.zeros(int((~mask).sum())))
        assert torch.equal(value.reshape(-1)[guide.active_indices(name)], active)


# --------------------------------------------------------------------------- updates


def test_exact_active_counts_after_every_update():
    pyro.clear_param_store()
    pyro.set_rng_seed(3)
    x, y = data()
    model = make_bnn()
    guide = AutoSparseSubspace(model, density=0.2)
    optim = pyro.optim.Adam({"lr": 0.02})
    svi = SVI(model, guide, optim, Trace_ELBO())
    scheduler = SubspaceScheduler(guide, optim, num_steps=60, update_every=4)
    svi.step(x, y)  # set up
    expected = guide.active_counts()
    assert expected == {
        "net.0.weight": active_count(128, 0.2),
        "net.0.bias": active_count(16, 0.2),
        "net.2.weight": active_count(48, 0.2),
        "net.2.bias": active_count(3, 0.2),
    }
    num_updates = 0
    for _ in range(60):
        before = {n: set(guide.active_indices(n).tolist()) for n in expected}
        scheduler.step(svi.step, x, y)
        after = {n: set(guide.active_indices(n).tolist()) for n in expected}
        if scheduler.is_update_step(scheduler.step_count):
            num_updates += 1
            fraction = scheduler.fraction_at(scheduler.step_count)
            for name, k in expected.items():
                numel = guide._weight_sites[name].numel
                num = min(int(fraction * k), numel - k)
                assert len(before[name] - after[name]) == num, name
                assert len(after[name] - before[name]) == num, name
        else:
            assert after == before
        assert guide.active_counts() == expected
        for name, k in expected.items():
            assert len(after[name]) == k  # no duplicates
            assert int(guide.active_mask(name).sum()) == k
            loc, scale = guide._get_loc_and_scale(name)
            assert loc.numel() == scale.numel() == k
    assert num_updates == 11  # steps 4, 8, ..., 44 <= 0.75 * 60
    assert sum(len(u.removed) for u in scheduler.history) > 0


def test_removal_fraction_is_cosine_decayed():
    pyro.clear_param_store()
    guide = AutoSparseSubspace(make_bnn(), density=0.5)
    s = SubspaceScheduler(guide, num_steps=1000, update_every=100, removal_fraction=0.3)
    assert s.fraction_at(0) == pytest.approx(0.3)
    assert s.fraction_at(375) == pytest.approx(0.15)
    assert s.fraction_at(750) == pytest.approx(0.0, abs=1e-12)
    assert s.fraction_at(800) == 0.0
    assert [t for t in range(1, 1001) if s.is_update_step(t)] == list(range(100, 701, 100))


def test_folded_normal_snr_matches_monte_carlo():
    loc = torch.tensor([0.0, 0.3, -1.0, 2.0, 5.0], dtype=torch.float64)
    scale = torch.tensor([1.0, 0.5, 1.0, 0.7, 1.0], dtype=torch.float64)
    samples = torch.distributions.Normal(loc, scale).sample((400_000,)).abs()
    mc = samples.mean(0) / samples.std(0)
    assert torch.allclose(folded_normal_snr(loc, scale), mc, rtol=0.01)
    ratios = torch.linspace(0, 6, 50, dtype=torch.float64)
    snr = folded_normal_snr(ratios, torch.ones_like(ratios))
    assert (snr.diff() > 0).all()  # increasing in |mu| / sigma


def linear_model(x, y):
    """y ~ N(x . w, 1) with w ~ N(0, 1): dloss/dw_j = -(y - x.w) x_j + w_j."""

    def model():
        w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[0]]).to_event(1))
        pyro.sample("obs", dist.Normal((x * w).sum(), 1.0), obs=y)

    return model


HAND_LOC = [3.0, 0.5, 2.0, -0.4, 1.0]
HAND_SCALE = [1.0, 0.1, 0.1, 0.1, 10.0]
# |mu| / sigma = [3, 5, 20, 4, 0.1]; |mu| = [3, 0.5, 2, 0.4, 1]


@pytest.mark.parametrize(
    "criterion, removed_slots", [("snr", {4, 0}), ("magnitude", {3, 1})], ids=str
)
def test_removal_takes_lowest_scores_on_hand_built_case(criterion, removed_slots):
    pyro.clear_param_store()
    x = torch.tensor([1.0, -2.0, 3.0, 0.5, -4.0, 6.0, 0.1, 5.0, -0.2, 2.5])
    guide = AutoSparseSubspace(linear_model(x, torch.tensor(1.0)), density=0.5, seed=0)
    guide()
    index = guide.active_indices("w")
    set_params(guide, "w", HAND_LOC, HAND_SCALE)
    # fraction at step 1 = 0.5 * (1 + cos(pi / 100)) / 2 ~ 0.4999: 2 of 5 removed
    scheduler = SubspaceScheduler(
        guide, num_steps=100, update_until=1.0, removal_fraction=0.5, criterion=criterion
    )
    scheduler.step_count = 1
    inactive = sorted(set(range(10)) - set(index.tolist()))
    grads = torch.zeros(10)
    grads[inactive[0]], grads[inactive[3]], grads[inactive[4]] = 7.0, -9.0, 0.5
    (update,) = scheduler.update({"w": grads})
    assert set(update.removed.tolist()) == {index[s].item() for s in removed_slots}
    assert set(update.added.tolist()) == {inactive[0], inactive[3]}
    # New coordinates sit in the freed slots, at mean 0 and the kept coordinates' mean scale.
    new_index = guide.active_indices("w")
    loc, scale = guide._get_loc_and_scale("w")
    kept = [s for s in range(5) if s not in removed_slots]
    for s in removed_slots:
        assert new_index[s].item() in {inactive[0], inactive[3]}
        assert loc[s].item() == 0.0
        expected_scale = sum(HAND_SCALE[i] for i in kept) / len(kept)
        assert scale[s].item() == pytest.approx(expected_scale, rel=1e-5)
    for s in kept:
        assert new_index[s] == index[s]
        assert loc[s].item() == pytest.approx(HAND_LOC[s])


def test_addition_takes_largest_captured_elbo_gradient():
    """The captured gradient is dloss/dw at w = 0 for inactive coordinates; the
    largest |x_j| among them have the largest gradient, whatever the sample."""
    pyro.clear_param_store()
    x = torch.tensor([1.0, -2.0, 3.0, 0.5, -4.0, 6.0, 0.1, 5.0, -0.2, 2.5, -7.0, 0.3])
    y = torch.tensor(40.0)
    model = linear_model(x, y)
    guide = AutoSparseSubspace(model, density=0.25, seed=1)
    guide()
    index = guide.active_indices("w")
    # The captured gradient equals the analytic gradient of -ELBO w.r.t. the dense w.
    with guide.capture_gradients() as grads:
        tr = poutine.trace(guide).get_trace()
        w = tr.nodes["w"]["value"]
        model_tr = poutine.trace(poutine.replay(model, trace=tr)).get_trace()
        (-(model_tr.log_prob_sum() - tr.log_prob_sum())).backward()
    assert set(grads) == {"w"} and grads["w"].shape == (12,)
    residual = (y - (x * w).sum()).detach()
    analytic = -residual * x + w.detach()
    assert torch.allclose(grads["w"], analytic, rtol=1e-5, atol=1e-5)
    inactive = sorted(set(range(12)) - set(index.tolist()))
    scheduler = SubspaceScheduler(guide, num_steps=10, update_until=1.0, removal_fraction=1.0)
    scheduler.step_count = 1
    (update,) = scheduler.update(grads)
    num = int(scheduler.fraction_at(1) * 3)
    assert num == 2
    by_x = sorted(inactive, key=lambda j: -abs(x[j].item()))[:num]
    assert set(update.added.tolist()) == set(by_x)
    assert not set(update.added.tolist()) & set(index.tolist())


# --------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("noise_site", [False, True], ids=["weights", "weights+fallback"])
def test_density_one_without_updates_matches_autonormal(noise_site):
    x, y = data()

    def run(make_guide):
        pyro.clear_param_store()
        pyro.set_rng_seed(7)
        model = make_bnn(noise_site=noise_site)
        guide = make_guide(model)
        svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO(num_particles=2))
        return [svi.step(x, y) for _ in range(8)], guide

    dense, dense_guide = run(AutoNormal)
    sparse, sparse_guide = run(lambda m: AutoSparseSubspace(m, density=1.0))
    assert dense == pytest.approx(sparse, rel=1e-5)
    assert len(set(dense)) > 1  # the ELBO really moved
    assert sparse_guide.num_variational_params == sum(p.numel() for p in dense_guide.parameters())
    dense_median = dense_guide.median()
    for name, value in sparse_guide.median().items():
        assert torch.allclose(value, dense_median[name], atol=1e-5)


# --------------------------------------------------------------------------- optimizer state


def adam_states(optim, guide, name):
    loc_u, scale_u = unconstrained(guide, name)
    return [optim.optim_objs[p].state[p] for p in (loc_u, scale_u)]


@pytest.mark.parametrize("use_pyro_optim", [True, False], ids=["pyro.optim.Adam", "torch.Adam"])
def test_adam_state_follows_coordinates(use_pyro_optim):
    pyro.clear_param_store()
    pyro.set_rng_seed(2)
    x, y = data()
    model = make_bnn()
    guide = AutoSparseSubspace(model, density=0.3)
    if use_pyro_optim:
        optim = pyro.optim.Adam({"lr": 0.02})
        svi = SVI(model, guide, optim, Trace_ELBO())
        step = lambda: svi.step(x, y)  # noqa: E731
    else:
        guide(x, y)
        optim = torch.optim.Adam(guide.parameters(), lr=0.02)
        loss_fn = Trace_ELBO().differentiable_loss

        def step():
            optim.zero_grad()
            loss = loss_fn(model, guide, x, y)
            loss.backward()
            optim.step()
            return loss.item()

    for _ in range(5):
        step()
    name = "net.0.weight"
    params = unconstrained(guide, name)

    def states():
        if use_pyro_optim:
            return [optim.optim_objs[p].state[p] for p in params]
        return [optim.state[p] for p in params]

    with guide.capture_gradients() as grads:
        step()
    old_index = guide.active_indices(name)
    old = [{k: v.clone() for k, v in s.items()} for s in states()]
    num_objs = len(optim.optim_objs) if use_pyro_optim else None
    scheduler = SubspaceScheduler(guide, optim, num_steps=10, update_every=1, update_until=1.0)
    scheduler.step_count = 1
    scheduler.update(grads)
    new_index = guide.active_indices(name)
    changed = (new_index != old_index).nonzero().squeeze(-1)
    kept = (new_index == old_index).nonzero().squeeze(-1)
    assert changed.numel() == int(scheduler.fraction_at(1) * old_index.numel()) > 0
    for before, after in zip(old, states()):
        for key in ("exp_avg", "exp_avg_sq"):
            # the replaced slots had state that is now reset...
            assert before[key][changed].abs().sum() > 0
            assert torch.equal(after[key][changed], torch.zeros(changed.numel()))
            # ...and the kept coordinates keep theirs, slot for slot.
            assert torch.equal(after[key][kept], before[key][kept])
        assert after["step"] == before["step"]
    if use_pyro_optim:
        assert len(optim.optim_objs) == num_objs  # the same optimizer objects are reused
    # Training continues and the moments of a new coordinate start from its first gradient.
    step()
    for after in states():
        assert after["exp_avg"][changed].abs().sum() > 0


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("criterion", ["snr", "magnitude", "random"])
def test_elbo_finite_and_decreasing_through_updates(criterion):
    _, guide, _, scheduler, losses = train(
        lambda m: AutoSparseSubspace(m, density=0.3),
        num_steps=120,
        update_every=10,
        criterion=criterion,
    )
    assert all(math.isfinite(v) for v in losses)
    assert len(scheduler.history) > 0
    assert sum(losses[-20:]) < sum(losses[:20])
    for name in guide.weight_sites:
        loc, scale = guide._get_loc_and_scale(name)
        assert torch.isfinite(loc).all() and (scale > 0).all()


def test_same_seed_same_result():
    def run(seed):
        _, guide, _, scheduler, losses = train(
            lambda m: AutoSparseSubspace(m, density=0.2),
            num_steps=30,
            update_every=5,
            criterion="random",
            seed=seed,
        )
        return losses, {n: guide.active_indices(n) for n in guide.weight_sites}

    losses_a, index_a = run(11)
    losses_b, index_b = run(11)
    losses_c, index_c = run(12)
    assert losses_a == losses_b
    assert all(torch.equal(index_a[n], index_b[n]) for n in index_a)
    assert losses_a != losses_c
    assert not all(torch.equal(index_a[n], index_c[n]) for n in index_a)


def test_guide_seed_fixes_initial_subspace():
    pyro.clear_param_store()
    x, y = data()
    a = AutoSparseSubspace(make_bnn(), density=0.2, seed=4)
    a(x, y)
    pyro.set_rng_seed(123)
    b = AutoSparseSubspace(make_bnn(), density=0.2, seed=4)
    b(x, y)
    assert torch.equal(a.active_indices("net.0.weight"), b.active_indices("net.0.weight"))


# --------------------------------------------------------------------------- posterior use


def test_predictive_and_export_module():
    model, guide, *_ = train(lambda m: AutoSparseSubspace(m, density=0.25), num_steps=20)
    x, y = data()
    samples = Predictive(model, guide=guide, num_samples=7)(x)
    dense = AutoNormal(make_bnn())
    dense(x, y)
    reference = Predictive(model, guide=dense, num_samples=7)(x)
    assert {k: v.shape for k, v in samples.items()} == {k: v.shape for k, v in reference.items()}
    for name in guide.weight_sites:
        mask = guide.active_mask(name)
        assert (samples[name][..., ~mask] == 0).all()
        assert (samples[name][..., mask] != 0).any()
        assert samples[name].std(0)[..., mask].min() > 0  # really random on the subspace

    net = guide.export_module(root="net")
    assert type(net) is nn.Sequential
    assert all(not isinstance(m, PyroModule) for m in net.modules())
    assert type(net[0]) is nn.Linear
    median = guide.median()
    for name in guide.weight_sites:
        exported = net.get_parameter(name[len("net.") :])
        assert torch.equal(exported, median[name])
        assert int((exported != 0).sum()) <= guide.active_counts()[name]
        assert not exported.requires_grad
    expected = poutine.condition(model, data=median)(x)
    assert torch.allclose(net(x), expected, atol=1e-6)
    assert torch.equal(net(x), net(x))  # deterministic
    with pytest.raises(ValueError, match="root="):
        guide.export_module()  # BayesianMLP's own forward calls pyro.sample


def test_quantiles_and_median_respect_the_point_mass():
    _, guide, *_ = train(lambda m: AutoSparseSubspace(m, density=0.25), num_steps=5)
    q = guide.quantiles([0.1, 0.5, 0.9])
    median = guide.median()
    for name in guide.weight_sites:
        mask = guide.active_mask(name)
        assert q[name].shape == (3,) + mask.shape
        assert (q[name][:, ~mask] == 0).all()
        assert (q[name][0][mask] < q[name][2][mask]).all()
        assert torch.allclose(q[name][1], median[name])


def test_non_weight_latents_fall_back_to_dense_normal():
    pyro.clear_param_store()
    x, y = data()
    model = make_bnn(noise_site=True)
    guide = AutoSparseSubspace(model, density=0.1, exclude=["net.2.bias"])
    guide(x, y)
    assert guide.weight_sites == ["net.0.weight", "net.0.bias", "net.2.weight"]
    loc, _ = guide._get_loc_and_scale("temperature")
    assert loc.shape == ()
    loc, _ = guide._get_loc_and_scale("net.2.bias")
    assert loc.shape == (3,)  # dense
    median = guide.median()
    assert median["temperature"] > 0
    sparse = active_count(128, 0.1) + active_count(16, 0.1) + active_count(48, 0.1)
    assert sparse == 12 + 1 + 4
    assert guide.num_variational_params == 2 * sparse + 2 * 3 + 2  # + dense bias, temperature
    pyro.clear_param_store()  # both guides would share the parameter names
    chosen = AutoSparseSubspace(model, density=0.1, sites=["net.0.weight"])
    chosen(x, y)
    assert chosen.weight_sites == ["net.0.weight"]
    with pytest.raises(ValueError, match="temperature"):
        AutoSparseSubspace(model, density=0.1, fallback="error")(x, y)


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("density", [0.0, -0.1, 1.5, True, "0.1", float("nan")])
def test_bad_density(density):
    with pytest.raises(ValueError, match="density"):
        AutoSparseSubspace(make_bnn(), density=density)


def test_model_without_weight_sites():
    def positive_only():
        pyro.sample("scale", dist.LogNormal(0.0, 1.0))

    def no_latents():
        pyro.sample("obs", dist.Normal(0.0, 1.0), obs=torch.tensor(0.5))

    def plated_only():
        with pyro.plate("rows", 5):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    for model in (positive_only, no_latents, plated_only):
        with pytest.raises(ValueError, match="no weight site"):
            AutoSparseSubspace(model)()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"update_until": -0.1}, "update_until must be in \\[0, 1\\]"),
        ({"update_until": 1.5}, "update_until must be in \\[0, 1\\]"),
        ({"update_until": 750}, "fraction of num_steps"),
        ({"removal_fraction": 1.2}, "removal_fraction"),
        ({"criterion": "fisher"}, "criterion"),
        ({"update_every": 0}, "update_every"),
        ({"num_steps": 0}, "num_steps"),
    ],
)
def test_bad_scheduler_arguments(kwargs, match):
    guide = AutoSparseSubspace(make_bnn())
    kwargs = {"num_steps": 100, **kwargs}
    with pytest.raises(ValueError, match=match):
        SubspaceScheduler(guide, None, **kwargs)


def test_bad_guide_arguments():
    x, y = data()
    with pytest.raises(ValueError, match="name no latent site"):
        AutoSparseSubspace(make_bnn(), sites=["net.9.weight"])(x, y)
    with pytest.raises(ValueError, match="name no latent site"):
        AutoSparseSubspace(make_bnn(), exclude=["nope"])(x, y)
    with pytest.raises(ValueError, match="cannot be a weight site"):
        AutoSparseSubspace(make_bnn(noise_site=True), sites=["temperature"])(x, y)
    with pytest.raises(ValueError, match="init_scale"):
        AutoSparseSubspace(make_bnn(), init_scale=-1.0)
    with pytest.raises(ValueError, match="fallback"):
        AutoSparseSubspace(make_bnn(), fallback="drop")
    with pytest.raises(ValueError, match="AutoSparseSubspace"):
        SubspaceScheduler(AutoNormal(make_bnn()), num_steps=10)
    with pytest.raises(ValueError, match="optim"):
        SubspaceScheduler(AutoSparseSubspace(make_bnn()), "adam", num_steps=10)
    with pytest.raises(RuntimeError, match="not set up"):
        AutoSparseSubspace(make_bnn()).density  # noqa: B018


@pytest.mark.parametrize("rescale", [True, False])
def test_initial_means_are_rescaled_by_inverse_sqrt_density(rescale):
    pyro.clear_param_store()
    x, y = data()
    ones = lambda site: torch.ones(site["fn"].shape())  # noqa: E731
    guide = AutoSparseSubspace(make_bnn(), density=0.25, init_loc_fn=ones, init_rescale=rescale)
    guide(x, y)
    for name, k in guide.active_counts().items():
        numel = guide._weight_sites[name].numel
        loc, scale = guide._get_loc_and_scale(name)
        expected = math.sqrt(numel / k) if rescale else 1.0
        assert torch.allclose(loc, torch.full((k,), expected))
        assert torch.allclose(scale, torch.full((k,), 0.1))


def test_adam_state_follows_coordinates_with_module_local_params():
    """With pyro.settings module_local_params the guide's own tensors are optimized."""
    with pyro.settings.context(module_local_params=True):
        pyro.set_rng_seed(4)
        x, y = data()
        model = make_bnn()
        guide = AutoSparseSubspace(model, density=0.3)
        optim = pyro.optim.Adam({"lr": 0.02})
        svi = SVI(model, guide, optim, Trace_ELBO())
        for _ in range(3):
            svi.step(x, y)
        assert len(pyro.get_param_store()) == 0
        scheduler = SubspaceScheduler(guide, optim, num_steps=10, update_every=1, update_until=1.0)
        loc_u, _ = unconstrained(guide, "net.0.weight")
        before = optim.optim_objs[loc_u].state[loc_u]["exp_avg"].clone()
        old_index = guide.active_indices("net.0.weight")
        scheduler.step(svi.step, x, y)
        changed = guide.active_indices("net.0.weight") != old_index
        after = optim.optim_objs[loc_u].state[loc_u]["exp_avg"]
        assert changed.any() and (before[changed] != 0).all()
        assert (after[changed] == 0).all()
        assert (loc_u[changed] == 0).all()


def test_export_posterior_mean_takes_any_guides_medians():
    """The export surgery is not tied to AutoSparseSubspace: AutoNormal's medians work."""
    from pyrostruct.infer.autoguide.sparse_subspace.export import export_posterior_mean

    model, guide, *_ = train(lambda m: AutoNormal(m), num_steps=5)
    x, _ = data()
    medians = guide.median()
    net = export_posterior_mean(model, medians, root="net")
    assert type(net) is nn.Sequential and not any(p.requires_grad for p in net.parameters())
    expected = poutine.condition(model, data=medians)(x)
    assert torch.allclose(net(x), expected, atol=1e-6)
    with pytest.raises(ValueError, match="PyroModule"):
        export_posterior_mean(lambda x: x, medians)
    with pytest.raises(ValueError, match="no posterior"):
        export_posterior_mean(model, {}, root="net")
