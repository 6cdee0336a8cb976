"""The active-learning loop and its simulated lab (issue 18)."""

import numpy as np
import pandas as pd
import pytest

from pyrostruct.causal import discover
from pyrostruct.causal.active import ActiveLearner, _mode_order, edge_entropy
from pyrostruct.causal.datasets import LinearSEMEnvironment
from pyrostruct.errors import InputError


def test_environment_sets_the_values_and_names_the_targets():
    env = LinearSEMEnvironment.random(4, seed=0)
    obs = env.observe(30)
    assert list(obs.columns) == ["X0", "X1", "X2", "X3", "intervention"]
    assert (obs["intervention"] == "").all()
    rows = env.intervene({"X2": 1.5, 0: -1.0}, 5)
    assert (rows["X2"] == 1.5).all() and (rows["X0"] == -1.0).all()
    assert (rows["intervention"] == "X0;X2").all()
    batch = pd.DataFrame({"targets": [("X1",), ("X3",)], "values": [(2.0,), (0.5,)],
                          "samples": [3, 4]})  # fmt: skip
    out = env.acquire(batch)
    assert len(out) == 7 and (out["X1"][:3] == 2.0).all() and (out["X3"][3:] == 0.5).all()
    children = np.flatnonzero(env.adjacency[1])
    # the intervened node's children move with it; its mechanism is cut
    assert env.adjacency.shape == (4, 4) and len(children) >= 0
    with pytest.raises(InputError, match="unknown node 'X9'"):
        env.intervene({"X9": 1.0}, 2)
    with pytest.raises(InputError, match="must be a finite number"):
        env.intervene({"X1": float("nan")}, 2)


def test_an_intervention_shifts_descendants_only():
    w = np.array([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # 0 -> 1, 2 alone
    env = LinearSEMEnvironment(w, np.ones(3), ["a", "b", "c"], seed=1)
    rows = env.intervene({"a": 5.0}, 4000)
    assert rows["b"].mean() == pytest.approx(10.0, abs=0.1)
    assert rows["c"].mean() == pytest.approx(0.0, abs=0.1)
    back = env.intervene({"b": 5.0}, 4000)
    assert back["a"].mean() == pytest.approx(0.0, abs=0.1)  # no effect upstream


@pytest.fixture(scope="module")
def lab():
    return LinearSEMEnvironment.random(8, seed=1)


def _learner(lab, strategy, posterior="variational", fit=None, **kwargs):
    lab = LinearSEMEnvironment(lab.weights, lab.noise_scales, lab.names, seed=7)
    if fit is None:
        fit = {"steps": 300} if posterior == "variational" else {}
    return ActiveLearner(lab.observe(50), lab.acquire, strategy=strategy, batch_size=2,
                         truth=lab.adjacency, seed=0, fit=fit, posterior=posterior,
                         **kwargs)  # fmt: skip


def test_information_gain_learns_faster_than_random_experiments(lab):
    """Over three 8-node systems, two rounds of experiments chosen by information gain
    leave a smaller expected SHD than two rounds of random ones (one seed per system)."""
    eig, rnd = [], []
    for seed in (1, 3, 4):
        system = LinearSEMEnvironment.random(8, seed=seed)
        eig.append(_learner(system, "eig").run(2))
        rnd.append(_learner(system, "random").run(2))
    assert list(eig[0]["rows"]) == [50, 70, 90]
    assert np.mean([h["expected_shd"].iloc[-1] for h in eig]) < np.mean(
        [h["expected_shd"].iloc[-1] for h in rnd]
    )
    assert all(h["entropy"].iloc[-1] < h["entropy"].iloc[0] for h in eig)
    assert set(eig[0].columns) >= {"round", "rows", "experiments", "entropy", "expected_shd",
                                   "auprc", "seconds"}  # fmt: skip
    assert eig[0]["experiments"].iloc[-1] == "" and eig[0]["experiments"].iloc[0].startswith("do(")


def test_designs_on_the_fit_or_on_the_exact_posterior(lab):
    """design_posterior='exact' and 'fit' choose differently here."""
    exact = _learner(lab, "eig", design_posterior="exact").run(1)
    fit = _learner(lab, "eig", design_posterior="fit").run(1)
    assert list(exact["rows"]) == list(fit["rows"]) == [50, 70]
    assert exact["experiments"].iloc[0] != fit["experiments"].iloc[0]


def test_the_loop_is_reproducible_under_a_seed(lab):
    a = _learner(lab, "eig").run(1)
    b = _learner(lab, "eig").run(1)
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))


def test_a_warm_started_refit_gives_the_cold_posterior(lab):
    learner = _learner(lab, "eig")
    learner.run(1)
    x = learner.data[learner.names]
    interventions = learner.data["intervention"].tolist()
    cold = discover(x, interventions=interventions, steps=300, seed=1)
    start = _mode_order(learner.results[0])
    warm = discover(x, interventions=interventions, steps=300, seed=1, search_start=start)
    assert np.abs(warm.edge_probs - cold.edge_probs).max() < 0.1
    assert warm.metadata["elbo"] == pytest.approx(cold.metadata["elbo"], abs=0.02)
    assert learner.results[1].metadata["search_start"] == start


def test_the_exact_posterior_drives_the_loop_too(lab):
    history = _learner(lab, "eig", posterior="exact").run(1)
    assert list(history["rows"]) == [50, 70]
    assert history["expected_shd"].iloc[1] < history["expected_shd"].iloc[0]


def test_bad_input(lab):
    data = lab.observe(30)
    with pytest.raises(InputError, match="posterior must be 'variational' or 'exact'"):
        ActiveLearner(data, lab.acquire, posterior="laplace")
    with pytest.raises(InputError, match="design_posterior must be 'auto', 'fit', 'exact' or"):
        ActiveLearner(data, lab.acquire, design_posterior="vi")
    with pytest.raises(InputError, match="must be a pandas DataFrame"):
        ActiveLearner(data.to_numpy(), lab.acquire)
    with pytest.raises(InputError, match="truth must be"):
        ActiveLearner(data, lab.acquire, truth=np.zeros((3, 3)))
    with pytest.raises(InputError, match="truth must be"):
        ActiveLearner(data, lab.acquire, truth=lab.weights)  # not 0/1
    with pytest.raises(InputError, match="exact_posterior does not take \\['steps'\\]"):
        ActiveLearner(data, lab.acquire, posterior="exact", fit={"steps": 40})
    with pytest.raises(InputError, match="suggest_interventions does not take \\['batch_size'\\]"):
        ActiveLearner(data, lab.acquire, design={"batch_size": 2})
    with pytest.raises(InputError, match="seed must be"):
        ActiveLearner(data, lab.acquire, seed=-1)
    with pytest.raises(InputError, match="rounds must be"):
        ActiveLearner(data, lab.acquire).run(-1)
    with pytest.raises(InputError, match="acquire must return a DataFrame"):
        ActiveLearner(data, lambda batch: None, fit={"steps": 20}).run(1)
    with pytest.raises(InputError, match="without the columns"):
        ActiveLearner(data, lambda b: data[["X0"]], fit={"steps": 20}).run(1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(strategy="foo"), "strategy must be one of"),
        (dict(batch_size=0), "batch_size must be"),
        (dict(strategy="ait", samples_per_experiment=1), "samples_per_experiment >= 2"),
        (dict(design={"targets": ["Q"]}), "unknown node 'Q'"),
        (dict(design={"max_targets_per_experiment": 9}), "only 8 targets"),
        (dict(fit={"missing": "drop"}), "complete rows"),
    ],
)
def test_design_settings_are_checked_before_the_first_fit(lab, kwargs, match):
    """Hostile sweep: these were refused only after round 0's fit had run."""

    def acquire(batch):
        raise AssertionError("not reached")

    with pytest.raises(InputError, match=match):
        ActiveLearner(lab.observe(30), acquire, **kwargs)


def test_an_empty_intervention_column_read_from_a_file_needs_no_text_fill(lab, recwarn):
    """A CSV's all-empty intervention column is float NaN; filling it with '' warned (an
    error in pandas 4)."""
    import io
    import warnings

    data = pd.read_csv(io.StringIO(lab.observe(40).to_csv(index=False)))
    assert data["intervention"].dtype == float
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.filterwarnings("error", message=".*fill value.*")
        learner = ActiveLearner(data, lab.acquire, fit={"steps": 20})
        learner.run(0)
    assert learner.history[0]["rows"] == 40


def test_edge_entropy():
    assert edge_entropy(np.array([[0.3, 0.5], [0.0, 1.0]])) == pytest.approx(np.log(2))


def test_bad_rows_from_acquire_are_refused_and_the_learner_can_go_on(lab):
    """The hostile sweep: rows with NaN were appended first, and every later fit failed."""
    data = lab.observe(40)

    def nan_rows(batch):
        rows = lab.acquire(batch)
        rows.iloc[0, 0] = float("nan")
        return rows

    learner = ActiveLearner(data, nan_rows, fit={"steps": 20})
    with pytest.raises(InputError, match="acquire's rows"):
        learner.run(1)
    assert len(learner.data) == 40  # nothing was appended
    learner.acquire = lambda batch: lab.acquire(batch).assign(intervention="Z9")
    with pytest.raises(InputError, match="acquire's intervention column"):
        learner.run(1)
    learner.acquire = lambda batch: lab.acquire(batch).iloc[:0]
    with pytest.raises(InputError, match="acquire returned no rows"):
        learner.run(1)
    learner.acquire = lab.acquire
    assert len(learner.run(1)) >= 2


def test_environment_refuses_bad_requests(lab):
    with pytest.raises(InputError, match="n must be a positive integer"):
        lab.intervene({"X0": 1.0}, -1)
    with pytest.raises(InputError, match="must be a finite number"):
        lab.intervene({"X0": "1"}, 2)
    with pytest.raises(InputError, match="named twice"):  # the last value won, silently
        lab.intervene({0: 1.0, "X0": 2.0}, 2)
    with pytest.raises(InputError, match="2 targets and 1 values"):  # X1 was dropped
        lab.acquire(pd.DataFrame({"targets": [("X0", "X1")], "values": [(1.0,)], "samples": [2]}))
    with pytest.raises(InputError, match="samples"):  # a raw KeyError
        lab.acquire(pd.DataFrame({"targets": [("X0",)], "values": [(1.0,)]}))


def test_an_exact_fit_is_designed_on_alone(lab):
    """A fit that is exact (``discover(estimator="exact")``): "auto" designs on it instead
    of pooling it with a second exact posterior of the same rows."""
    learner = _learner(lab, "eig", fit={"estimator": "exact"})
    learner.run(1)
    result = learner.results[0]
    assert result.metadata["estimator"] == "exact" and result.exact is not None
    x = learner.data[learner.names].iloc[:50]
    assert learner._design_posterior(result, x, None) is result
