"""Intervention design (issue 18): the expected information gain against exact mutual
information, the experiments that separate Markov-equivalent graphs, greedy batches, and
the errors of bad input."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from pyrostruct.causal import datasets, discover
from pyrostruct.causal.design import suggest_interventions
from pyrostruct.causal.information import Experiment, GraphPosterior
from pyrostruct.errors import InputError
from pyrostruct.infer.bge import bge_hyperparameters

CHAIN = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])  # 0 -> 1 -> 2
FORK = np.array([[0, 0, 0], [1, 0, 1], [0, 0, 0]])  # 0 <- 1 -> 2: Markov equivalent


def _trapezoid(y, x):
    """The trapezoid rule along axis 0 (``numpy.trapezoid`` needs numpy >= 2)."""
    widths = np.diff(x).reshape(-1, *([1] * (np.ndim(y) - 1)))
    return (0.5 * (y[1:] + y[:-1]) * widths).sum(0)


def _standardized(w, n, seed):
    x, _ = datasets.simulate_linear_sem(np.asarray(w, dtype=float), n, seed=seed)
    return (x - x.mean(0)) / x.std(0)


def _posterior(dags, z, counts):
    nu, c = bge_hyperparameters(z.shape[1], None, 1.0)
    draws = np.concatenate([np.repeat(a[None], k, 0) for a, k in zip(dags, counts)])
    return GraphPosterior(draws, z, None, nu=nu, c=c)


def test_two_node_gain_matches_the_exact_mutual_information():
    """0 -> 1 against 1 -> 0 at 1/2 each, one row of do(X0 = 2): the gain is I(G; y1), a
    one-dimensional integral of the two predictive densities, done by quadrature."""
    z = _standardized([[0.0, 0.8], [0.0, 0.0]], 30, 0)
    forward, backward = np.array([[0, 1], [0, 0]]), np.array([[0, 0], [1, 0]])
    post = _posterior([forward, backward], z, [2000, 2000])
    grid = np.linspace(-15, 15, 6001)
    y = torch.zeros(len(grid), 1, 2, dtype=torch.float64)
    y[:, 0, 0], y[:, 0, 1] = 2.0, torch.as_tensor(grid)
    keep = torch.tensor([[0.0, 1.0]])  # node 0 intervened on
    log_p = post.log_predictive(y, keep).numpy()  # (grid, graph): densities of y1
    dens = np.exp(log_p)
    np.testing.assert_allclose(_trapezoid(dens, grid), 1.0, atol=1e-6)
    # under 1 -> 0 node 1 has no parents: a Student t, written out independently
    a = (post.nu - 2 + 1) / 2 + 30 / 2
    b = post.c / 2 + float(z[:, 1] @ z[:, 1]) / 2
    backward_index = int(np.flatnonzero([g[1, 0] for g in post.graphs])[0])
    t = stats.t(df=2 * a, scale=math.sqrt(b / a)).logpdf(grid)
    np.testing.assert_allclose(log_p[:, backward_index], t, atol=1e-8)
    mix = dens.mean(1)
    exact = 0.5 * sum(_trapezoid(dens[:, u] * (log_p[:, u] - np.log(mix)), grid) for u in (0, 1))
    torch.manual_seed(0)
    gain, se = post.information_gain([Experiment((0,), (2.0,), 1)], post.draw_parameters())
    assert 0.05 < exact < math.log(2)
    assert abs(gain - exact) < 4 * se, (gain, exact, se)


def test_the_experiment_that_separates_a_chain_from_a_fork_gains_most():
    """Chain and fork are Markov equivalent: do(X0) or do(X1) tells them apart, do(X2)
    (a sink in both) tells nothing: zero gain within its error."""
    z = _standardized(1.2 * CHAIN, 200, 1)
    post = _posterior([CHAIN, FORK], z, [128, 128])
    torch.manual_seed(1)
    params = post.draw_parameters()
    gains = {t: post.information_gain([Experiment((t,), (2.0,), 10)], params) for t in range(3)}
    assert abs(gains[2][0]) < 4 * gains[2][1] + 1e-3
    for t in (0, 1):
        assert gains[t][0] > 0.5  # of at most log 2 = 0.69
        assert gains[t][0] <= math.log(2) + 4 * gains[t][1]


def test_a_posterior_of_one_graph_gains_nothing():
    z = _standardized(1.2 * CHAIN, 200, 2)
    post = _posterior([CHAIN], z, [64])
    torch.manual_seed(0)
    gain, se = post.information_gain([Experiment((0,), (2.0,), 10)], post.draw_parameters())
    assert gain == pytest.approx(0.0, abs=1e-9) and post.entropy == 0.0
    assert math.copysign(1.0, post.entropy) == 1.0  # not -0.0 ("entropy -0 nats" in the CLI)


@pytest.fixture(scope="module")
def fitted():
    ds = datasets.make_dataset(d=5, n=80, seed=3)
    return ds, discover(ds.data, steps=200, seed=0)


def test_suggest_ranks_by_gain_and_is_reproducible(fitted):
    ds, result = fitted
    design = suggest_interventions(result, ds.data, seed=4)
    scores = design.table["score"].to_numpy()
    assert (np.diff(scores) <= 0).all() and len(design.table) == 5
    assert design.metadata["posterior_entropy"] >= scores[0] - 4 * design.table["score_stderr"][0]
    again = suggest_interventions(result, ds.data, seed=4)
    assert again.table.equals(design.table)
    ((name, value),) = design.best.items()
    assert name in ds.names and value == pytest.approx(
        ds.data[name].mean() + 2 * ds.data[name].std(ddof=0)
    )


def test_greedy_batch_scores_the_joint_gain_and_never_repeats(fitted):
    ds, result = fitted
    design = suggest_interventions(result, ds.data, batch_size=3, seed=0)
    chosen = list(design.batch["experiment"])
    assert len(set(chosen)) == 3 and chosen[0] == design.table["experiment"][0]
    single = dict(zip(design.table["experiment"], design.table["score"]))
    joint = design.batch["gain"].cumsum().to_numpy()
    assert (np.diff(joint) > -0.05).all()  # adding an experiment loses no information
    # the second adds at most what it would alone (shared parameters, overlapping questions)
    second = design.batch.iloc[1]
    assert second["gain"] <= single[second["experiment"]] + 4 * second["gain_stderr"] + 0.05


def test_multi_target_candidates_and_given_values(fitted):
    ds, result = fitted
    design = suggest_interventions(
        result, ds.data, max_targets_per_experiment=2, values={"X0": [-1.0, 3.0]},
        targets=["X0", "X1", "X2"], strategy="ait", seed=0,
    )  # fmt: skip
    # X0 at two values, X1 and X2 at one: 2 + 1 + 1 singles, 2 + 2 + 1 pairs
    assert len(design.table) == 9
    assert {v for t, v in zip(design.table["targets"], design.table["values"]) if t == ("X0",)} == {
        (-1.0,),
        (3.0,),
    }
    assert design.table["experiment"].str.startswith("do(").all()


def test_repeated_values_are_one_candidate_and_the_batch_column_follows_the_batch(fitted):
    """Hostile sweep: values given twice made two copies of one candidate (picked twice in a
    batch), and to_frame marked the batch by the experiment's text, rounded to 4 digits,
    so two near-equal values were both marked as chosen."""
    ds, result = fitted
    design = suggest_interventions(result, ds.data, targets=["X1"], values=[1.0, 1.0], seed=0)
    assert len(design.table) == 1
    design = suggest_interventions(result, ds.data, targets=["X1"], values={"X1": [3.0, 3.0]},
                                   seed=0)  # fmt: skip
    assert len(design.table) == 1
    near = suggest_interventions(result, ds.data, targets=["X1"], values=[1.0, 1.00001], seed=0)
    frame = near.to_frame()
    assert len(frame) == 2 and frame["experiment"].nunique() == 1  # the same text
    assert sorted(frame["batch"]) == [0, 1]


def test_sets_of_targets_are_formed_from_the_best_single_targets(fitted):
    ds, result = fitted
    design = suggest_interventions(result, ds.data, max_targets_per_experiment=2, prescreen=2,
                                   values=[1.0, 2.0], seed=0)  # fmt: skip
    table = design.table
    singles = table[table["targets"].map(len) == 1]
    pairs = table[table["targets"].map(len) == 2]
    assert len(singles) == 10 and len(pairs) == 4  # 5 nodes x 2 values; 1 pair x 2 x 2
    best_nodes = set(singles.drop_duplicates("targets")["targets"].head(2).sum())
    assert set(pairs["targets"].iloc[0]) == best_nodes
    means, sds = ds.data.mean(), ds.data.std(ddof=0)
    node, value = singles["targets"].iloc[0][0], singles["values"].iloc[0][0]
    assert (value - means[node]) / sds[node] in (pytest.approx(1.0), pytest.approx(2.0))


def test_the_exact_posterior_can_be_designed_on(fitted):
    from pyrostruct.causal import exact_posterior

    ds, _ = fitted
    design = suggest_interventions(exact_posterior(ds.data), ds.data, batch_size=2, seed=0)
    assert len(design.batch) == 2 and design.metadata["distinct_graphs"] > 1
    assert (design.table["score"] <= design.metadata["posterior_entropy"] + 0.1).all()


def test_posteriors_are_pooled_in_equal_shares(fitted):
    from pyrostruct.causal import exact_posterior

    ds, result = fitted
    exact = exact_posterior(ds.data)
    both = suggest_interventions([result, exact], ds.data, num_dag_samples=64, seed=0)
    alone = [suggest_interventions(p, ds.data, num_dag_samples=64, seed=0) for p in (result, exact)]
    # pooled draws hold at least the distinct graphs of each half
    assert (
        both.metadata["distinct_graphs"] >= max(a.metadata["distinct_graphs"] for a in alone) // 2
    )
    with pytest.raises(InputError, match="at least 4 \\(2 per posterior\\)"):
        suggest_interventions([result, exact], ds.data, num_dag_samples=3)
    with pytest.raises(InputError, match="no posterior given"):
        suggest_interventions([], ds.data)


def test_random_strategy_is_a_seeded_permutation(fitted):
    ds, result = fitted
    a = suggest_interventions(result, ds.data, strategy="random", batch_size=2, seed=1)
    b = suggest_interventions(result, ds.data, strategy="random", batch_size=2, seed=1)
    assert a.batch.equals(b.batch) and (a.table["score"] == 0).all()


def test_plot(fitted, tmp_path):
    ds, result = fitted
    design = suggest_interventions(result, ds.data, seed=0)
    design.plot(tmp_path / "design.png")
    assert (tmp_path / "design.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(targets=["nope"]), "unknown node 'nope'"),
        (dict(batch_size=6), "batch_size 6 exceeds the 5 candidates"),
        (dict(batch_size=0), "batch_size must be a positive integer"),
        (dict(values={"X0": float("nan")}), "must be finite numbers"),
        (dict(values=float("inf")), "values must be finite numbers"),
        (dict(values=[]), "values must be finite numbers"),
        (dict(prescreen=0), "prescreen must be a positive integer"),
        (dict(values="high"), "values must be 'auto'"),
        (dict(strategy="bald"), "strategy must be one of"),
        (dict(max_targets_per_experiment=9), "only 5 targets"),
        (dict(samples_per_experiment=0), "samples_per_experiment must be a positive integer"),
    ],
)
def test_bad_input(fitted, kwargs, match):
    ds, result = fitted
    with pytest.raises(InputError, match=match):
        suggest_interventions(result, ds.data, **kwargs)


def test_a_result_without_closed_form_outcomes_or_other_data_is_refused(fitted):
    ds, result = fitted
    mlp = discover(ds.data, sem="mlp", steps=5, seed=0)
    with pytest.raises(InputError, match="needs the linear Gaussian SEM"):
        suggest_interventions(mlp, ds.data)
    with pytest.raises(InputError, match="3 columns for a result over 5 nodes"):
        suggest_interventions(result, ds.data.iloc[:, :3])
    with pytest.raises(InputError, match="must be a CausalResult of discover or an ExactPosterior"):
        suggest_interventions(ds, ds.data)


def test_data_that_do_not_match_the_result_are_refused_or_warned_about():
    """Hostile sweep: a posterior fitted with interventions, designed on the same rows
    without them, took the intervened rows as observational, silently; other rows than
    the fit's were silently accepted (the CLI warned)."""
    ds = datasets.make_dataset(d=4, n=120, seed=3, interventions=[[1]])
    frame = ds.data.assign(regime=ds.intervention_column())
    result = discover(frame, interventions="regime", steps=30, seed=0)
    with pytest.raises(InputError, match="fitted with interventions"):
        suggest_interventions(result, ds.data, seed=0)
    with pytest.warns(UserWarning, match="fitted on 120 rows"):
        suggest_interventions(result, frame.iloc[:100], interventions="regime", seed=0)


def test_gradient_search_improves_on_its_random_start_and_finds_a_good_set(fitted):
    from pyrostruct.causal.relaxed_design import optimize_experiment

    ds, result = fitted
    z = ((ds.data - ds.data.mean()) / ds.data.std(ddof=0)).to_numpy()
    nu, c = bge_hyperparameters(5, None, 1.0)
    torch.manual_seed(0)
    post = GraphPosterior(result.sample_dags(64, seed=0), z, None, nu=nu, c=c)
    params = post.draw_parameters()
    found, start = optimize_experiment(post, params, nodes=list(range(5)), max_targets=2,
                                       samples=10, steps=80)  # fmt: skip
    gain, se = post.information_gain([found], params)
    start_gain, _ = post.information_gain([start], params)
    best_single = max(
        post.information_gain([Experiment((j,), (2.0,), 10)], params)[0] for j in range(5)
    )
    assert len(found.targets) == 2 and all(abs(v) <= 2.0 for v in found.values)
    assert gain > start_gain
    assert gain > best_single - 4 * se


def test_gradient_search_in_suggest(fitted):
    ds, result = fitted
    design = suggest_interventions(result, ds.data, max_targets_per_experiment=2,
                                   search="gradient", num_dag_samples=64, seed=0)  # fmt: skip
    assert len(design.table) == 6  # 5 single nodes and the optimized set
    assert (design.table["targets"].map(len) == 2).sum() == 1
    with pytest.raises(InputError, match="needs strategy='eig'"):
        suggest_interventions(result, ds.data, search="gradient", strategy="ait")
    with pytest.raises(InputError, match="search must be"):
        suggest_interventions(result, ds.data, search="anneal")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(values=1e308), "at most 100 in size"),
        (dict(values=[True]), "values must be finite numbers"),
        (dict(values={"X0": True}), "must be finite numbers"),
        (dict(values={"X0": 1e308}), "more than 100 standard deviations"),
        (dict(values={"Z": 1.0}), "values: unknown node 'Z'"),
        (dict(search="gradient", values={"X0": 1.0}), "not per node"),
        (dict(seed=-1), "seed must be an integer from 0"),
        (dict(num_dag_samples=1), "num_dag_samples must be at least 2"),
        (dict(strategy="ait", samples_per_experiment=1), "samples_per_experiment >= 2"),
    ],
)
def test_hostile_sweep_inputs(fitted, kwargs, match):
    """Found by the hostile sweep: each of these gave a torch/numpy exception or NaN."""
    ds, result = fitted
    with pytest.raises(InputError, match=match):
        suggest_interventions(result, ds.data, **kwargs)


def test_batches_as_large_as_the_candidates_are_accepted(fitted):
    """The hostile sweep: sets of three targets were not counted, so valid batches were
    refused."""
    ds, result = fitted
    design = suggest_interventions(result, ds.data, targets=["X0", "X1", "X2", "X3"],
                                   max_targets_per_experiment=3, batch_size=11,
                                   strategy="ait", num_dag_samples=16)  # fmt: skip
    assert len(design.table) == 14 and len(design.batch) == 11


def test_data_in_extreme_units_gives_the_same_design(fitted):
    """The hostile sweep: at 1e200 the values overflowed to inf in the table."""
    ds, result = fitted
    base = suggest_interventions(result, ds.data, seed=0)
    for scale in (1e200, 1e-200):
        scaled = suggest_interventions(result, ds.data * scale, seed=0)
        np.testing.assert_allclose(scaled.table["score"], base.table["score"], atol=1e-9)
        values = np.array([v[0] for v in scaled.table["values"]])
        np.testing.assert_allclose(values / scale, [v[0] for v in base.table["values"]],
                                   rtol=1e-9)  # fmt: skip
