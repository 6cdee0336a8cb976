"""Hostile input to ``discover(estimator="exact")`` (:mod:`pyrostruct.causal.estimators.exact`)
and to :func:`exact_posterior`: bad settings are one-line :class:`InputError` s before any
work, corrupted saved records are refused the same way, odd but valid tables give finite
results, and outputs never hold NaN or overwrite the input."""

import json
import math

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from pyrostruct import cli
from pyrostruct.causal import datasets, discover, exact_posterior, load_result
from pyrostruct.causal.settings import MAX_NUM_SAMPLES
from pyrostruct.errors import InputError


def exact(data, **kwargs):
    return discover(data, estimator="exact", **kwargs)


@pytest.fixture(scope="module")
def frame():
    return datasets.make_dataset(d=4, n=200, seed=0, noise="nonequal").data


@pytest.mark.parametrize("num_samples", [1, 2.5, float("nan"), "10", True, None])
def test_num_samples_must_be_an_integer_of_at_least_2(frame, num_samples):
    """2.5 used to be taken as 2, "10" as 10, NaN raised "cannot convert float NaN"."""
    with pytest.raises(InputError, match="num_samples must be an integer >= 2") as info:
        exact(frame, num_samples=num_samples)
    assert "\n" not in str(info.value)


def test_num_samples_too_large_is_refused_before_any_work(frame):
    """10**12 used to end in a MemoryError allocating 116 TiB of draws."""
    with pytest.raises(InputError, match=f"num_samples must be at most {MAX_NUM_SAMPLES}"):
        exact(frame, num_samples=10**12)
    exact(frame, num_samples=2)  # the smallest count works


def test_sample_dags_refuses_a_huge_or_fractional_count(frame):
    posterior = exact_posterior(frame)
    with pytest.raises(InputError, match="at most"):
        posterior.sample_dags(10**12)
    result = exact(frame, num_samples=10)
    with pytest.raises(InputError, match="at most"):
        result.sample_dags(10**12)
    for n in (1.5, "3", 0):  # 1.5 used to draw 1 DAG and "3" three
        with pytest.raises(InputError, match="n must be a positive integer"):
            result.sample_dags(n)
    variational = discover(frame, steps=2, num_samples=10)  # 10**12 was a MemoryError
    with pytest.raises(InputError, match="n must be at most"):
        variational.sample_dags(10**12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(standardize="no"), "standardize must be True or False"),  # was silently True
        (dict(standardize=None), "standardize must be True or False"),
        (dict(threshold="0.5"), "threshold must be a number"),
        (dict(expected_edges="2"), "expected_edges must be a number"),
        (dict(expected_edges=True), "expected_edges must be a number"),
    ],
)
def test_settings_of_the_wrong_type_are_refused(frame, kwargs, match):
    with pytest.raises(InputError, match=match):
        exact(frame, **kwargs)


def _mutations():
    def set_(key, value):
        return lambda record: record.__setitem__(key, value)

    return [
        ("grams missing", lambda r: r.pop("grams")),
        ("grams cut", lambda r: r.__setitem__("grams", r["grams"][:2])),
        ("grams text", set_("grams", "x")),
        ("grams NaN", lambda r: r["grams"][0][0].__setitem__(0, math.nan)),
        ("nu text", set_("nu", "x")),
        ("nu NaN", set_("nu", math.nan)),
        ("edge probability 2", set_("edge_probability", 2.0)),
        ("edge probability 0", set_("edge_probability", 0.0)),
        ("rows negative", set_("rows", [-5, -5, -5, -5])),
        ("names short", set_("names", ["a"])),
        ("names 20", set_("names", [str(i) for i in range(20)])),
        ("target out of range", set_("intervention_targets", [[9]])),
        ("target a bool", set_("intervention_targets", [[True]])),
        ("names repeated", set_("names", ["a", "a", "b", "c"])),
        ("rows huge", set_("rows", [1e300] * 4)),  # overflowed to NaN edge_probs
        ("grams not PSD", lambda r: r.__setitem__("grams", (-np.ones((4, 4, 4))).tolist())),
        ("grams not symmetric", lambda r: r["grams"][0][0].__setitem__(1, 99.0)),
        ("record empty", lambda r: r.clear()),
        ("record a list", None),
    ]


@pytest.mark.parametrize("name, mutate", _mutations(), ids=[m[0] for m in _mutations()])
def test_a_corrupted_exact_record_is_a_one_line_input_error(frame, tmp_path, name, mutate):
    """Each of these used to raise KeyError, IndexError, ValueError("math domain error"),
    a broadcasting error, or load silently (NaN nu, negative row counts)."""
    path = tmp_path / "graph.json"
    exact(frame, num_samples=10).save(path)
    data = json.loads(path.read_text())
    record = data["graph"]["pyrostruct"]
    if mutate is None:
        record["exact"] = [1, 2]
    else:
        mutate(record["exact"])
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="exact posterior record") as info:
        load_result(path)
    assert "\n" not in str(info.value)


def test_odd_but_valid_tables_give_finite_results(frame):
    cases = {
        "duplicate column": frame.assign(X4=frame["X0"]),
        "collinear column": frame.assign(X4=2 * frame["X0"] - frame["X1"]),
        "scale 1e200": frame * 1e200,
        "scale 1e-200": frame * 1e-200,
        "integers": frame.assign(X0=(frame["X0"] * 3).round().astype(int)),
        "text levels": frame.assign(X0=np.where(frame["X0"] > 0, "high", "low")),
        "d = 2": frame[["X0", "X1"]],
        "d + 1 rows": datasets.make_dataset(d=12, n=13, seed=0).data,
    }
    for name, data in cases.items():
        categorical = ["X0"] if name == "text levels" else None
        with pytest.warns() if name == "d + 1 rows" else _nothing():
            result = exact(data, num_samples=20, categorical=categorical)
        assert result.metadata["estimator"] == "exact", name
        for values in (result.edge_probs, result.edge_probs_stderr, result.weights):
            assert np.isfinite(values).all(), name
        assert nx.is_directed_acyclic_graph(result.graph), name


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_seed_none_is_recorded_and_reproduces(frame):
    result = exact(frame, seed=None, num_samples=50)
    seed = result.metadata["seed"]
    assert isinstance(seed, int)
    again = exact(frame, seed=seed, num_samples=50)
    np.testing.assert_array_equal(result.edge_probs, again.edge_probs)


def test_exact_stops_at_17_nodes():
    data16 = datasets.make_dataset(d=16, n=60, seed=0).data
    assert exact(data16, num_samples=10).metadata["estimator"] == "exact"
    data17 = datasets.make_dataset(d=17, n=60, seed=0).data
    with pytest.raises(InputError, match="at most 16 nodes, got 17"):
        discover(data17, estimator="exact")


def test_exports_hold_no_nan_and_open_in_networkx_and_pandas(frame, tmp_path):
    result = exact(frame, num_samples=20, knowledge={"forbidden": [("X3", "X0")]})
    for suffix in ("json", "graphml", "dot", "csv"):
        path = tmp_path / f"graph.{suffix}"
        result.save(path)
        text = path.read_text()
        assert "NaN" not in text and "Infinity" not in text and "nan" not in text.lower().split()
    graph = nx.read_graphml(tmp_path / "graph.graphml")
    assert set(graph.edges) == set(result.graph.edges)
    table = pd.read_csv(tmp_path / "graph.csv")
    assert len(table) == result.graph.number_of_edges() and table["probability"].between(0, 1).all()
    again = load_result(tmp_path / "graph.json")
    np.testing.assert_array_equal(again.edge_probs, result.edge_probs)
    np.testing.assert_array_equal(again.sample_dags(5, seed=1), result.sample_dags(5, seed=1))


def test_a_variational_result_saved_by_an_older_version_still_loads(frame, tmp_path):
    """A file without the ``exact`` record (every variational result) loads
    as a variational result and works with every method."""
    path = tmp_path / "old.json"
    discover(frame, estimator="analytic", steps=20, progress=False).save(path)
    data = json.loads(path.read_text())
    assert "exact" not in data["graph"]["pyrostruct"]
    old = load_result(path)
    assert old.exact is None
    assert old.sample_dags(3, seed=0).shape == (3, 4, 4)
    old.save(tmp_path / "again.graphml")


def test_cli_refuses_the_input_as_output_and_a_huge_threshold(tmp_path, capsys):
    path = tmp_path / "data.csv"
    datasets.make_dataset(d=4, n=60, seed=0).data.to_csv(path, index=False)
    before = path.read_bytes()
    for extra in (["--out", str(path)], ["--out", str(path), "--format", "csv"]):
        assert cli.main(["discover", str(path), *extra, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "input" in err
    assert path.read_bytes() == before
    out = tmp_path / "graph.json"
    assert cli.main(["discover", str(path), "--out", str(out), "--estimator", "exact",
                     "--steps", "10", "--quiet"]) == 2  # fmt: skip
    assert "no training to set" in capsys.readouterr().err and not out.exists()
