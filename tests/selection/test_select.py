"""select(): evidence on a conjugate model, recovery of component counts, halving, results."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import config_enumerate
from pyro.ops.indexing import Vindex

from pyrostruct.errors import InputError
from pyrostruct.selection import (
    AmbiguousSelectionWarning,
    Candidate,
    SelectionResult,
    gaussian_mixture,
    select,
    select_components,
)
from pyrostruct.selection.datasets import make_gmm_data, make_ppca_data
from pyrostruct.selection.families import ppca_loadings

FAST = dict(elbo_particles=200, iwae_particles=50, iwae_repeats=4)


@pytest.fixture(scope="module")
def prior_scale_result(conjugate, normal_data):
    make, _ = conjugate
    return select(
        {0.1: make(0.1), 1.0: make(1.0), 10.0: make(10.0), 100.0: make(100.0)},
        normal_data,
        steps=300,
        num_restarts=1,
        halving=None,
        elbo_particles=1000,
        iwae_particles=100,
        iwae_repeats=10,
    )


def test_conjugate_evidence_within_error_of_exact(prior_scale_result, conjugate, normal_data):
    _, exact_fn = conjugate
    t = prior_scale_result.table.set_index("candidate")
    for scale in [0.1, 1.0, 10.0, 100.0]:
        exact = exact_fn(normal_data, scale)
        row = t.loc[scale]
        # ELBO is a lower bound; the Gaussian guide holds the posterior, so the gap is small
        assert row.elbo < exact + 3 * row.elbo_se
        assert exact - row.elbo < 0.1
        assert abs(row.iwae - exact) < 3 * row.iwae_se + 5e-3
        assert row.iwae >= row.elbo - 3 * math.hypot(row.elbo_se, row.iwae_se)
        assert abs(row.smc - exact) < 4 * row.smc_se + 0.02  # guide-free, small model
        assert row.log_evidence == row.smc
    assert prior_scale_result.evidence_method == "smc"
    assert prior_scale_result.smc_skipped == {}
    # the data (mean ~2) support scale 1-10; a tiny scale is strongly disfavoured
    assert prior_scale_result.best in (1.0, 10.0)
    probs = prior_scale_result.posterior_probs
    assert probs.sum() == pytest.approx(1.0)
    assert probs[0.1] < 1e-6
    exact_post = np.array([exact_fn(normal_data, s) for s in [0.1, 1.0, 10.0, 100.0]])
    exact_post = np.exp(exact_post - np.logaddexp.reduce(exact_post))
    assert np.allclose(probs.to_numpy(), exact_post, atol=0.03)


def test_large_candidates_get_guide_started_smc_within_error_of_exact(conjugate):
    make, exact_fn = conjugate
    y = torch.randn(300, generator=torch.Generator().manual_seed(1))  # > 100 observed values
    r = select({"a": make(1.0), "b": make(5.0)}, y, steps=100, num_restarts=1, **FAST)
    assert r.evidence_method == "smc" and r.smc_skipped == {}
    assert (r.table.smc_start == "guide").all() and (r.table.evidence_method == "smc").all()
    assert (r.table.log_evidence == r.table.smc).all()
    for scale, row in zip([1.0, 5.0], r.table.itertuples()):
        assert abs(row.smc - exact_fn(y, scale)) <= 4 * row.smc_se + 0.05
    assert (r.table.posterior_prob_se >= 0).all()


def test_guide_started_smc_only_for_candidates_in_contention(conjugate):
    make, _ = conjugate
    y = torch.randn(300, generator=torch.Generator().manual_seed(1)) + 3.0
    cands = {"good": make(5.0), "ok": make(1.0), "bad": make(0.01)}
    r = select(cands, y, steps=150, num_restarts=1, halving=None, **FAST)
    t = r.table.set_index("candidate")
    assert t.loc["bad", "evidence_method"] == "iwae" and math.isnan(t.loc["bad", "smc"])
    assert t.loc["good", "evidence_method"] == t.loc["ok", "evidence_method"] == "smc"
    assert list(r.smc_skipped) == ["bad"] and "not in contention" in r.smc_skipped["bad"]
    assert r.best == "good"


def _twelve_means(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0).expand([12]).to_event(1))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(mu.mean(), 1.0), obs=y)


def test_one_candidate_too_large_for_guide_free_smc_means_guide_started_smc_for_all(conjugate, normal_data):
    make, _ = conjugate
    r = select({"small": make(1.0), "big": _twelve_means}, normal_data, steps=50,
               num_restarts=1, **FAST)  # fmt: skip
    # no guide-free SMC for either: both are ranked by the guide-started one
    assert r.evidence_method == "smc" and (r.table.smc_start == "guide").all()
    assert r.smc_skipped == {}
    r = select({"small": make(1.0), "big": _twelve_means}, normal_data, steps=50,
               num_restarts=1, evidence=("elbo", "iwae"), **FAST)  # fmt: skip
    assert r.evidence_method == "iwae" and r.table.smc.isna().all()


def test_a_failing_smc_estimate_leaves_the_candidates_fitted_and_ranked_by_iwae(
    conjugate, normal_data, monkeypatch
):
    import pyrostruct.selection.evidence as final_evidence

    def fails(*args, **kwargs):
        raise ValueError("no temperature schedule within 1000 steps")

    monkeypatch.setattr(final_evidence, "smc_estimate", fails)
    with pytest.warns(UserWarning, match=r"SMC evidence estimate failed for candidates \['a', 'b'\]"):
        r = select({"a": _folded, "b": _folded}, FOLDED_DATA, steps=100, num_restarts=1, **FAST)
    assert (r.table.status == "fitted").all()
    assert r.evidence_method == "iwae"
    assert r.smc_failed == {
        n: "ValueError: no temperature schedule within 1000 steps" for n in "ab"
    }


def _folded(y):  # y_i ~ N(|mu|, 1): two mirror modes, a mean-field guide finds one
    mu = pyro.sample("mu", dist.Normal(0.0, 3.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(mu.abs(), 1.0), obs=y)


FOLDED_DATA = torch.tensor([2.1, 1.7, 2.6, 2.2])


def _folded_log_evidence(y):
    mu = torch.linspace(-15.0, 15.0, 30001, dtype=torch.float64)
    y = y.double()
    lp = dist.Normal(0.0, 3.0).log_prob(mu) + dist.Normal(mu.abs()[:, None], 1.0).log_prob(y).sum(
        -1
    )
    return float(torch.logsumexp(lp, 0) + math.log(float(mu[1] - mu[0])))


def test_smc_ranks_when_a_guide_misses_a_mode():
    r = select({"a": _folded, "b": _folded}, FOLDED_DATA, steps=200, num_restarts=1, **FAST)
    exact = _folded_log_evidence(FOLDED_DATA)
    assert r.evidence_method == "smc" and r.smc_skipped == {}
    for _, row in r.table.iterrows():
        assert row.ess > 40  # the guide fits one of the two modes well: its ESS cannot tell
        assert abs(row.smc - exact) < 4 * row.smc_se + 0.05
        assert exact - row.iwae > 0.5  # the bound misses the other mode's mass (log 2)


def test_smc_is_not_run_for_a_single_candidate():
    r = select({"folded": _folded}, FOLDED_DATA, steps=50, num_restarts=1, **FAST)
    assert r.evidence_method == "iwae"
    assert r.smc_skipped == {"folded": "not needed: one candidate left to rank"}


def test_evidence_without_smc_ranks_by_iwae(conjugate, normal_data):
    make, _ = conjugate
    r = select({"a": make(1.0)}, normal_data, steps=50, num_restarts=1, evidence=("elbo", "iwae"),
               **FAST)  # fmt: skip
    assert r.evidence_method == "iwae" and r.table.smc.isna().all()
    with pytest.raises(InputError, match="evidence must be a subset"):
        select({"a": make(1.0)}, normal_data, evidence=("elbo", "ais"))


def test_table_columns_and_types(prior_scale_result):
    r = prior_scale_result
    assert isinstance(r, SelectionResult)
    for col in [
        "candidate",
        "elbo",
        "elbo_se",
        "iwae",
        "iwae_se",
        "ess",
        "log_posterior_prob",
        "fit_seconds",
    ]:
        assert col in r.table.columns
    assert (r.table.fit_seconds > 0).all()
    assert (r.table.steps == 300).all()
    assert r.savings["fraction_saved"] == 0.0
    assert set(r.fits) == {0.1, 1.0, 10.0, 100.0}
    assert "best=" in repr(r)


def test_fitted_posterior_matches_conjugate_posterior(prior_scale_result, normal_data):
    fit = prior_scale_result.posterior(1.0)
    n = len(normal_data)
    post_mean = normal_data.sum().item() / (n + 1)
    post_sd = 1 / math.sqrt(n + 1)
    samples = fit.sample_posterior(500)["mu"]
    assert samples.shape == (500,)
    assert samples.mean().item() == pytest.approx(post_mean, abs=0.05)
    assert samples.std().item() == pytest.approx(post_sd, rel=0.2)
    assert fit.median()["mu"].item() == pytest.approx(post_mean, abs=0.05)
    with pytest.raises(KeyError, match="no fitted posterior"):
        prior_scale_result.posterior("nope")


def test_plot_writes_png(prior_scale_result, tmp_path):
    path = tmp_path / "evidence.png"
    fig = prior_scale_result.plot(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(fig.axes[0].get_xticklabels()) == 4
    assert not list(tmp_path.glob(".*.tmp"))


def test_tied_candidates_warn(conjugate, normal_data):
    make, _ = conjugate
    r = select({"a": make(1.0), "b": make(1.0)}, normal_data, steps=100, num_restarts=1, **FAST)
    with pytest.warns(AmbiguousSelectionWarning, match="within the Monte Carlo error"):
        probs = r.posterior_probs
    assert probs.sum() == pytest.approx(1.0)
    assert abs(probs["a"] - 0.5) < 0.2


def test_tie_warning_names_integer_candidates_as_the_user_wrote_them(conjugate, normal_data):
    make, _ = conjugate
    r = select({1: make(1.0), 2: make(1.0)}, normal_data, steps=100, num_restarts=1, **FAST)
    with pytest.warns(AmbiguousSelectionWarning, match=r"candidates [12] and [12] differ"):
        _ = r.posterior_probs  # not "np.int64(1)"


def test_prior_shifts_posterior_probs(conjugate, normal_data):
    make, _ = conjugate
    kw = dict(steps=100, num_restarts=1, halving=None, **FAST)
    flat = select({"a": make(1.0), "b": make(10.0)}, normal_data, **kw)
    tilted = select(
        {"a": make(1.0), "b": make(10.0)}, normal_data, prior={"a": 0.9, "b": 0.1}, **kw
    )
    lp_flat = flat.table.set_index("candidate").log_posterior_prob
    lp_tilt = tilted.table.set_index("candidate").log_posterior_prob
    odds_change = (lp_tilt["a"] - lp_tilt["b"]) - (lp_flat["a"] - lp_flat["b"])
    assert odds_change == pytest.approx(math.log(9.0), abs=0.2)


def test_same_seed_same_result(conjugate, normal_data):
    make, _ = conjugate
    kw = dict(steps=60, num_restarts=2, **FAST)
    a = select({"a": make(1.0), "b": make(3.0)}, normal_data, seed=5, **kw)
    b = select({"a": make(1.0), "b": make(3.0)}, normal_data, seed=5, **kw)
    c = select({"a": make(1.0), "b": make(3.0)}, normal_data, seed=6, **kw)
    assert np.array_equal(a.table.elbo.to_numpy(), b.table.elbo.to_numpy())
    assert not np.array_equal(a.table.elbo.to_numpy(), c.table.elbo.to_numpy())


# --- component counts --------------------------------------------------------------------


@pytest.mark.parametrize("k,d", [(1, 2), (3, 2), (5, 3)])
def test_gmm_recovers_number_of_components(k, d):
    x, _ = make_gmm_data(200, k, d, separation=8.0, seed=k)
    result = select_components(
        x, "gmm", k + 2, min_components=max(1, k - 2), steps=200, num_restarts=1, seed=k, **FAST
    )
    assert result.best == k, result.table
    assert result.posterior_probs[k] > 0.9


@pytest.mark.parametrize("rank", [1, 3])
def test_ppca_recovers_rank(rank):
    x = make_ppca_data(150, 8, rank, seed=rank)
    result = select_components(
        x,
        "ppca",
        rank + 2,
        min_components=max(1, rank - 1),
        steps=200,
        num_restarts=1,
        seed=rank,
        **FAST,
    )
    assert result.best == rank, result.table


@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 2, 3, 4, 6])
def test_gmm_full_sweep_recovers_k_in_5d(k):
    x, _ = make_gmm_data(400, k, 5, separation=6.0, seed=10 + k)
    result = select_components(x, "gmm", 8, steps=500, num_restarts=2, seed=k)
    assert result.best == k, result.table


@pytest.mark.slow
@pytest.mark.parametrize("rank", [1, 3, 5])
def test_ppca_full_sweep_recovers_rank(rank):
    # up to rank + 3: every candidate above the truth stays in contention (the ELBO's gap
    # grows with the rank) and its SMC estimate costs 15-130 s at D = 20 (150-170 dims);
    # rank 8 (candidates 1..11) ran over 13 minutes, so it is left out (issue 23)
    x = make_ppca_data(300, 20, rank, seed=20 + rank)
    result = select_components(x, "ppca", rank + 3, steps=500, num_restarts=1, seed=rank)
    assert result.best == rank, result.table


def test_successive_halving_keeps_the_true_best_and_saves_steps():
    x, _ = make_gmm_data(200, 3, 2, separation=8.0, seed=3)
    full = select_components(x, "gmm", 5, steps=160, num_restarts=2, halving=None, **FAST)
    halved = select_components(x, "gmm", 5, steps=160, num_restarts=2, **FAST)
    assert full.best == halved.best == 3
    row = halved.table.set_index("candidate").loc[3]
    assert row.status == "fitted" and row.steps > 0
    assert halved.savings["fraction_saved"] > 0.2
    assert halved.savings["steps_run"] < full.savings["steps_run"]
    dropped = halved.table[halved.table.status.str.startswith("dropped")]
    assert len(dropped) >= 2
    # every dropped candidate really is worse than the winner in the full run
    t = full.table.set_index("candidate")
    for cand in dropped.candidate:
        assert t.loc[cand].elbo < t.loc[3].elbo


def test_kmeanspp_init_lands_on_clusters():
    x, _ = make_gmm_data(300, 4, 2, separation=10.0, seed=1)
    xs = torch.tensor((x - x.mean(0)) / x.std(0), dtype=torch.float32)
    cand = gaussian_mixture(4)
    a = cand.init((xs,), {}, np.random.default_rng(0))["locs"]
    assert a.shape == (4, 2)
    # after k-means, each true cluster mean is close to some initial location
    for j in range(4):
        center = xs[torch.tensor(_labels(x, 4, 1) == j)].mean(0)
        assert torch.cdist(center[None], a).min() < 0.3


def _labels(x, k, seed):
    return make_gmm_data(300, k, 2, separation=10.0, seed=seed)[1]


# --- generic candidates: (model, guide), enumeration ----------------------------------------


@config_enumerate
def enum_mixture(x, k=2):
    w = pyro.sample("w", dist.Dirichlet(torch.ones(k)))
    locs = pyro.sample("locs", dist.Normal(0.0, 5.0).expand([k]).to_event(1))
    with pyro.plate("n", len(x)):
        z = pyro.sample("z", dist.Categorical(w))
        pyro.sample("x", dist.Normal(Vindex(locs)[..., z], 1.0), obs=x)


def one_normal(x):
    loc = pyro.sample("loc", dist.Normal(0.0, 5.0))
    scale = pyro.sample("scale", dist.LogNormal(0.0, 1.0))
    with pyro.plate("n", len(x)):
        pyro.sample("x", dist.Normal(loc, scale), obs=x)


def test_discrete_sites_are_enumerated_and_the_mixture_wins():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(60, generator=g) - 3, torch.randn(60, generator=g) + 3])

    def init(args, kwargs, rng):
        return {"locs": torch.tensor([-2.0, 2.0])}

    result = select(
        {"mixture": Candidate(enum_mixture, init=init), "normal": one_normal},
        x,
        steps=300,
        num_restarts=1,
        **FAST,
    )
    assert result.best == "mixture"
    assert result.posterior("mixture").enumerated
    locs = result.posterior("mixture").median()["locs"].sort().values
    assert torch.allclose(locs, torch.tensor([-3.0, 3.0]), atol=0.5)


def test_model_guide_pair(conjugate, normal_data):
    make, exact_fn = conjugate
    model = make(1.0)

    def guide(y):
        loc = pyro.param("q_loc", torch.tensor(0.0))
        scale = pyro.param("q_scale", torch.tensor(1.0), constraint=dist.constraints.positive)
        pyro.sample("mu", dist.Normal(loc, scale))

    pyro.param("user_param", torch.tensor(7.0))  # the user's param store is left alone
    result = select(
        {"pair": (model, guide)}, normal_data, steps=300, num_restarts=1, evidence=("elbo",), **FAST
    )
    assert pyro.param("user_param").item() == 7.0
    assert "q_loc" not in pyro.get_param_store()
    row = result.table.iloc[0]
    assert math.isnan(row.iwae)
    assert abs(row.elbo - exact_fn(normal_data, 1.0)) < 0.1
    assert row.log_evidence == row.elbo


def test_family_with_grid(conjugate, normal_data):
    make, _ = conjugate
    result = select(make, normal_data, grid=[0.01, 1.0], steps=100, num_restarts=1, **FAST)
    assert list(result.table.candidate) == [0.01, 1.0]
    assert result.best == 1.0


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(steps=0), "steps"),
        (dict(steps=2.5), "steps"),
        (dict(num_restarts=0), "num_restarts"),
        (dict(evidence=("bic",)), "evidence"),
        (dict(evidence=()), "evidence"),
        (dict(executor="gpu"), "executor"),
        (dict(prior={"zzz": 1.0}), "unknown candidate"),
        (dict(prior={"a": -1.0}), "prior"),
        (dict(halving=(1.5,)), "halving"),
        (dict(lr=0), "lr"),
        (dict(lr=float("inf")), "lr must be a finite number"),
        (dict(lr=float("nan")), "lr must be a finite number"),
        (dict(lr="0.1"), "lr"),
        (dict(on_error="ignore"), "on_error"),
        (dict(seed=-1), "seed must be an integer from 0 to 2\\*\\*32 - 1"),  # every fit failed
        (dict(seed=1.5), "seed must be an integer"),  # cut to 1, silently
        (dict(seed="7"), "seed must be an integer"),
    ],
)
def test_bad_options_raise_input_error(kwargs, match, conjugate, normal_data):
    make, _ = conjugate
    with pytest.raises(InputError, match=match):
        select({"a": make(1.0)}, normal_data, **kwargs)


def test_bad_candidates_raise_input_error(conjugate, normal_data):
    make, _ = conjugate
    with pytest.raises(InputError, match="no candidates"):
        select({}, normal_data)
    with pytest.raises(InputError, match="needs grid"):
        select(make, normal_data)
    with pytest.raises(InputError, match="expected a model"):
        select({"a": 3}, normal_data)
    with pytest.raises(InputError, match="grid is empty"):
        select(make, normal_data, grid=[])


def test_discrete_site_without_finite_support_is_explained(normal_data):
    def poisson_model(y):
        k = pyro.sample("k", dist.Poisson(3.0))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(k, 1.0), obs=y)

    with pytest.raises(InputError, match="cannot be enumerated"):
        select({"p": poisson_model}, normal_data, steps=5, num_restarts=1)


@pytest.mark.parametrize(
    "data,match",
    [
        (np.array([[1.0, np.nan], [2.0, 3.0], [3.0, 1.0]]), "NaN"),
        (np.ones((10, 2)), "constant"),
        (np.zeros((2, 2)), "row"),
        (np.arange(10.0), "2-D"),
    ],
)
def test_select_components_rejects_bad_data(data, match):
    with pytest.raises(InputError, match=match):
        select_components(data, "gmm", 3)


def test_select_components_rejects_bad_family_and_counts():
    x = np.random.default_rng(0).normal(size=(30, 3))
    with pytest.raises(InputError, match="family"):
        select_components(x, "kmeans", 3)
    with pytest.raises(InputError, match="below the number of columns"):
        select_components(x, "ppca", 3)
    with pytest.raises(InputError, match="max_components"):
        select_components(x, "gmm", 0)
    with pytest.raises(InputError, match="exceed"):
        select_components(x, "gmm", 2, min_components=3)


def test_low_ess_warning_names_the_candidate_with_a_poor_guide(conjugate, normal_data):
    make, _ = conjugate

    def wide_guide(y):  # far wider than the posterior (sd ~0.16): weights degenerate
        loc = pyro.param("loc", torch.tensor(0.0))
        pyro.sample("mu", dist.Normal(loc, 20.0))

    from pyrostruct.infer import LowESSWarning

    with pytest.warns(LowESSWarning, match="'wide'"):
        result = select(
            {"wide": (make(1.0), wide_guide), "auto": make(1.0)},
            normal_data,
            steps=100,
            num_restarts=1,
            halving=None,
            **FAST,
        )
    t = result.table.set_index("candidate")
    assert t.loc["wide"].ess < 0.05 * 50 < t.loc["auto"].ess


# --- vectorized restarts -------------------------------------------------------------------


def test_vectorized_and_sequential_restarts_pick_the_same_k_gmm():
    x, _ = make_gmm_data(200, 3, 2, separation=8.0, seed=3)
    kw = dict(min_components=2, steps=150, num_restarts=2, halving=None, seed=1, **FAST)
    vec = select_components(x, "gmm", 4, vectorize_restarts=True, **kw)
    seq = select_components(x, "gmm", 4, vectorize_restarts=False, **kw)
    assert all(vec.vectorized_restarts.values()) and not any(seq.vectorized_restarts.values())
    assert vec.best == seq.best == 3
    a, b = vec.table.set_index("candidate"), seq.table.set_index("candidate")
    # same model, same inits, different random draws: evidence agrees within error
    assert (
        abs(a.loc[3].iwae - b.loc[3].iwae) < 4 * math.hypot(a.loc[3].iwae_se, b.loc[3].iwae_se) + 1
    )
    assert (a.steps == b.steps).all() and (a.steps == 2 * 150).all()
    # the fitted posterior is a plain (non-vectorized) one
    assert vec.posterior(3).median()["locs"].shape == (3, 2)
    assert vec.posterior(3).sample_posterior(5)["locs"].shape == (5, 3, 2)


def test_vectorized_and_sequential_restarts_pick_the_same_ppca_rank():
    x = make_ppca_data(150, 8, 2, seed=2)
    kw = dict(min_components=1, steps=200, num_restarts=2, seed=2, **FAST)
    vec = select_components(x, "ppca", 3, **kw)  # auto: vectorized
    seq = select_components(x, "ppca", 3, vectorize_restarts=False, **kw)
    assert all(vec.vectorized_restarts.values())
    assert vec.best == seq.best == 2, (vec.table, seq.table)
    median = vec.posterior(2).median()  # the canonical loadings, as a (d, r) matrix
    assert ppca_loadings(median["W_lower"], median["W_diag_sq"], 8).shape == (8, 2)


def test_vectorized_restarts_start_from_different_inits():
    import importlib

    sel = importlib.import_module("pyrostruct.selection.restarts")
    x = torch.randn(30, generator=torch.Generator().manual_seed(0))
    with pyro.get_param_store().scope():
        pyro.set_rng_seed(0)
        model, guide, _, mpn = sel._build_vectorized(Candidate(one_normal), (x,), {}, None, 3)
        guide(x)
        locs = guide.locs.loc.detach().reshape(3)
        assert locs[0] == 0.0  # restart 0 starts at the feasible point, as sequentially
        assert len(set(locs.tolist())) == 3
        lw = sel._restart_log_weights(model, guide, (x,), {}, mpn, 3, 50)
        assert lw.shape == (50, 3)
    # a GMM family: one k-means++ init per restart, different per-restart ELBOs
    data, _ = make_gmm_data(150, 3, 2, separation=3.0, seed=4)
    r = select_components(
        data, "gmm", 3, min_components=3, steps=20, num_restarts=3, halving=None, seed=0, **FAST
    )
    elbos = r.restart_elbos[3]
    assert r.vectorized_restarts[3] and len(set(elbos)) == 3
    assert r.table.best_restart.iloc[0] == int(np.argmax(elbos))


def _bad_first_init():
    """An init whose first restart puts both locations far from the data."""
    calls = []

    def init(args, kwargs, rng):
        calls.append(None)
        if len(calls) % 2 == 1:
            return {"locs": torch.tensor([40.0, 41.0])}
        return {"locs": torch.tensor([-2.0, 2.0])}

    return init


@pytest.mark.parametrize("vectorize", [True, False])
def test_best_restart_is_the_one_with_the_highest_elbo(vectorize):
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(60, generator=g) - 3, torch.randn(60, generator=g) + 3])
    cand = Candidate(enum_mixture, init=_bad_first_init())
    r = select(
        {"mix": cand},
        x,
        steps=80,
        num_restarts=2,
        halving=None,
        vectorize_restarts=vectorize,
        **FAST,
    )
    assert r.vectorized_restarts["mix"] == vectorize
    bad, good = r.restart_elbos["mix"]
    assert good > bad + 100
    row = r.table.iloc[0]
    assert row.best_restart == 1
    # the sliced fit is restart 1's: its evidence and locations, not restart 0's
    assert abs(row.elbo - good) < 4 * math.hypot(row.elbo_se, 1.0) + 2
    locs = r.posterior("mix").median()["locs"].sort().values
    assert torch.allclose(locs, torch.tensor([-3.0, 3.0]), atol=0.7), locs  # not ~40


def test_vectorized_restarts_same_seed_same_result():
    x, _ = make_gmm_data(120, 2, 2, separation=8.0, seed=0)
    kw = dict(steps=60, num_restarts=3, **FAST)
    a = select_components(x, "gmm", 3, seed=5, **kw)
    b = select_components(x, "gmm", 3, seed=5, **kw)
    c = select_components(x, "gmm", 3, seed=6, **kw)
    assert all(a.vectorized_restarts.values())
    assert np.array_equal(a.table.elbo.to_numpy(), b.table.elbo.to_numpy())
    assert np.array_equal(a.table.iwae.to_numpy(), b.table.iwae.to_numpy(), equal_nan=True)
    assert a.restart_elbos == b.restart_elbos
    assert not np.array_equal(a.table.elbo.to_numpy(), c.table.elbo.to_numpy())


def test_user_guide_falls_back_to_sequential_restarts(conjugate, normal_data):
    make, exact_fn = conjugate

    def guide(y):
        loc = pyro.param("q_loc", torch.tensor(0.0))
        scale = pyro.param("q_scale", torch.tensor(1.0), constraint=dist.constraints.positive)
        pyro.sample("mu", dist.Normal(loc, scale))

    cands = {"pair": (make(1.0), guide), "auto": make(1.0)}
    r = select(cands, normal_data, steps=300, num_restarts=2, halving=None, **FAST)
    assert r.vectorized_restarts == {"pair": False, "auto": True}
    assert "guide" in r.not_vectorized["pair"]
    t = r.table.set_index("candidate")
    exact = exact_fn(normal_data, 1.0)
    assert abs(t.loc["pair"].elbo - exact) < 0.3 and abs(t.loc["auto"].elbo - exact) < 0.1
    assert t.loc["pair"].steps == t.loc["auto"].steps == 600
    with pytest.raises(InputError, match="cannot be vectorized.*own guide"):
        select(cands, normal_data, steps=5, num_restarts=2, vectorize_restarts=True)
    with pytest.raises(InputError, match="vectorize_restarts"):
        select(cands, normal_data, steps=5, vectorize_restarts="yes")


def test_models_that_do_not_broadcast_are_vmapped_or_fall_back(conjugate, normal_data):
    def plain_indexing(y):  # mu[0] drops the restart dim of a plate: vmap runs it as written
        mu = pyro.sample("mu", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(mu[0], 1.0), obs=y)

    def with_param(y):  # a pyro.param would be shared by the restarts
        scale = pyro.param("prior_scale", torch.tensor(1.0), constraint=dist.constraints.positive)
        mu = pyro.sample("mu", dist.Normal(0.0, scale))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    r = select(
        {"idx": plain_indexing, "param": with_param},
        normal_data,
        steps=300,
        num_restarts=2,
        halving=None,
        evidence=("elbo",),
        **FAST,
    )
    assert r.vectorized_restarts == {"idx": True, "param": False}
    assert "pyro.param" in r.not_vectorized["param"]
    # mu[1] does not touch the data: the evidence is the conjugate one with prior scale 1
    _, exact_fn = conjugate
    t = r.table.set_index("candidate")
    assert abs(t.loc["idx"].elbo - exact_fn(normal_data, 1.0)) < 0.1
    assert all(len(v) == 2 and v[0] != v[1] for v in [r.restart_elbos["idx"]])


def test_candidate_lr_must_be_finite(conjugate, normal_data):
    make, _ = conjugate
    with pytest.raises(InputError, match="candidate 'a': lr must be a finite number"):
        select({"a": Candidate(make(1.0), lr=math.inf)}, normal_data, steps=5)


# --- a candidate that raises ---------------------------------------------------------------


def _broken(y):
    pyro.sample("mu", dist.Normal(0.0, 1.0))
    raise ZeroDivisionError("the user's model is broken")


def _nan_model(y):  # fits until its ELBO becomes NaN
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(mu * math.nan, 1.0), obs=y)


@pytest.mark.parametrize("num_restarts", [1, 2], ids=["sequential", "vectorized"])
def test_failed_candidate_is_reported_and_the_others_kept(num_restarts, conjugate, normal_data):
    make, exact_fn = conjugate
    cands = {"good": make(1.0), "broken": _broken, "nan": _nan_model}
    with (
        pyro.validation_enabled(False),
        pytest.warns(UserWarning, match="2 of 3 candidates failed"),
    ):
        r = select(cands, normal_data, steps=100, num_restarts=num_restarts, halving=None, **FAST)
    assert set(r.failures) == {"broken", "nan"}
    assert "ZeroDivisionError: the user's model is broken" in r.failures["broken"]
    t = r.table.set_index("candidate")
    assert t.loc["broken"].status.startswith("failed: ZeroDivisionError")
    assert np.isnan(t.loc["broken"].posterior_prob) and np.isnan(t.loc["nan"].log_evidence)
    assert t.loc["good"].posterior_prob == pytest.approx(1.0)
    assert abs(t.loc["good"].elbo - exact_fn(normal_data, 1.0)) < 0.2
    assert r.best == "good" and list(r.fits) == ["good"]


def test_failed_candidate_with_on_error_raise_names_it(conjugate, normal_data):
    make, _ = conjugate
    cands = {"good": make(1.0), "broken": _broken}
    with pytest.raises(RuntimeError, match="candidate 'broken' failed: ZeroDivisionError") as info:
        select(cands, normal_data, steps=20, num_restarts=1, on_error="raise", **FAST)
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_every_candidate_failing_raises_with_each_error(normal_data):
    with pytest.raises(RuntimeError, match="every candidate failed: 'a': ZeroDivision.*'b': Zero"):
        select({"a": _broken, "b": _broken}, normal_data, steps=20, num_restarts=1, **FAST)


def test_the_guide_free_smc_estimate_uses_the_fitted_model_parameters():
    """Hostile sweep: a candidate with a pyro.param site had its prior-started SMC
    estimate computed at the parameter's initial value (s = 1: 57 nats below its own ELBO)
    and lost to a worse model. log p(x | s) is exact here (Gaussian in mu)."""
    data = torch.tensor([0.0, 1.0, 10.0, 11.0, 12.0])

    def with_param(data):
        s = pyro.param("s", torch.tensor(1.0), constraint=dist.constraints.positive)
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        with pyro.plate("data", len(data)):
            pyro.sample("obs", dist.Normal(mu, s), obs=data)

    def latent_scale(data):
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        s = pyro.sample("s", dist.LogNormal(0.0, 2.0))
        with pyro.plate("data", len(data)):
            pyro.sample("obs", dist.Normal(mu, s), obs=data)

    result = select({"param": with_param, "latent": latent_scale}, data, steps=300,
                    num_restarts=1, smc_particles=200, iwae_particles=50, iwae_repeats=2,
                    elbo_particles=100, seed=0)  # fmt: skip
    row = result.table.set_index("candidate").loc["param"]
    s = float(result.fits["param"].params["params"]["s"].exp())
    x = data.double()
    cov = s**2 * torch.eye(5, dtype=torch.float64) + 100.0
    exact = float(dist.MultivariateNormal(torch.zeros(5, dtype=torch.float64), cov).log_prob(x))
    assert row["smc"] == pytest.approx(exact, abs=1.0), (row["smc"], exact, s)
    assert result.best == "param"
