"""`pyrostruct discover`: round trip, one-line errors with exit 2 and no output, resume."""

import json

import networkx as nx
import numpy as np
import pytest

from pyrostruct import cli
from pyrostruct.causal import datasets, load_result


@pytest.fixture
def csv(tmp_path):
    ds = datasets.make_dataset(d=4, n=120, seed=0, interventions=[[1]])
    frame = ds.data.assign(regime=ds.intervention_column())
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    return path


def _outputs(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir() if p.name != "data.csv")


def test_round_trip(csv, tmp_path, capsys):
    out, png = tmp_path / "graph.json", tmp_path / "graph.png"
    rc = cli.main(
        ["discover", str(csv), "--out", str(out), "--plot", str(png), "--steps", "40",
         "--seed", "3", "--intervention-column", "regime", "--quiet"]
    )  # fmt: skip
    assert rc == 0
    assert "wrote" in capsys.readouterr().out
    with open(out) as f:
        data = json.load(f)
    graph = nx.node_link_graph(data)
    assert graph.is_directed() and nx.is_directed_acyclic_graph(graph)
    assert list(graph.nodes) == ["X0", "X1", "X2", "X3"]
    for _, _, attrs in graph.edges(data=True):
        assert {"probability", "weight"} <= set(attrs)
    meta = graph.graph
    assert meta["steps"] == 40 and meta["seed"] == 3 and meta["interventional_rows"] == 60
    assert meta["estimator"] == "analytic"
    assert meta["pyrostruct"]["metadata"]["source"] == str(csv)
    assert png.read_bytes()[:4] == b"\x89PNG"
    result = load_result(out)
    assert result.edge_probs.shape == (4, 4) and len(result.elbo_trace) == 40
    assert _outputs(tmp_path) == ["graph.json", "graph.png"]  # no temporary files left


def test_estimator_flag(csv, tmp_path):
    out = tmp_path / "g.json"
    argv = ["discover", str(csv), "--out", str(out), "--steps", "8", "--quiet",
            "--intervention-column", "regime"]  # fmt: skip
    assert cli.main([*argv, "--estimator", "straight-through"]) == 0
    assert load_result(out).metadata["estimator"] == "straight-through"


def test_weight_prior_flag(csv, tmp_path):
    out = tmp_path / "g.json"
    argv = ["discover", str(csv), "--out", str(out), "--steps", "8", "--quiet",
            "--intervention-column", "regime"]  # fmt: skip
    assert cli.main(argv) == 0
    assert load_result(out).metadata["weight_prior"] == "pmom"
    assert cli.main([*argv, "--weight-prior", "normal"]) == 0
    assert load_result(out).metadata["weight_prior"] == "normal"


def test_average_equivalent_flag(csv, tmp_path):
    out, observational = tmp_path / "g.json", tmp_path / "obs.csv"
    datasets.make_dataset(d=4, n=120, seed=0).data.to_csv(observational, index=False)
    argv = ["--out", str(out), "--steps", "8", "--quiet"]
    assert cli.main(["discover", str(observational), *argv]) == 0
    assert load_result(out).equivalence_class
    assert cli.main(["discover", str(observational), *argv, "--no-average-equivalent"]) == 0
    assert not load_result(out).equivalence_class
    argv = ["discover", str(csv), *argv, "--intervention-column", "regime"]
    assert cli.main(argv) == 0
    assert not load_result(out).equivalence_class
    assert cli.main([*argv, "--average-equivalent"]) == 0
    assert load_result(out).equivalence_class


def test_progress_bar_shows_the_elbo(csv, tmp_path, capsys):
    argv = ["discover", str(csv), "--out", str(tmp_path / "g.json"), "--steps", "12"]
    assert cli.main([*argv, "--intervention-column", "regime"]) == 0
    err = capsys.readouterr().err
    assert "elbo=" in err and "12/12" in err


BAD_TABLES = {
    "non-numeric": ("a,b\n" + "1,x\n2,y\n" * 10, "column 'b' is not numeric"),
    "nan": ("a,b\n" + "1,2\n,3\n" * 10, "column 'a' contains NaN"),
    "inf": ("a,b\n" + "1,2\ninf,3\n" * 10, "column 'a' contains an infinite value"),
    "constant": ("a,b\n" + "1,2\n1,3\n" * 10, "column 'a' is constant"),
    "one column": ("a\n" + "1\n2\n" * 10, "at least 2 needed"),
    "few rows": ("a,b\n1,2\n2,1\n3,5\n", "at least 10 needed"),
    "duplicate names": ("a,a\n" + "1,2\n2,3\n" * 10, "duplicate column name 'a'"),
    "empty file": ("", "the file is empty"),
    "intervention names an unknown node": (
        "a,b,regime\n" + "1,2,\n2,3,c\n" * 10,
        "intervention column 'regime': row 1 names unknown node 'c'",
    ),
    "missing intervention column": ("a,b\n" + "1,2\n2,3\n" * 10, "no column named 'regime'"),
}


@pytest.mark.parametrize("case", list(BAD_TABLES), ids=list(BAD_TABLES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys):
    text, message = BAD_TABLES[case]
    path = tmp_path / "data.csv"
    path.write_text(text)
    argv = ["discover", str(path), "--out", str(tmp_path / "g.json"), "--plot",
            str(tmp_path / "g.png"), "--checkpoint", str(tmp_path / "ck.pt"), "--steps", "5"]  # fmt: skip
    if "intervention" in case:
        argv += ["--intervention-column", "regime"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pyrostruct: error: ")
    assert message in err, err
    assert "Traceback" not in err
    assert _outputs(tmp_path) == []


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--steps", "0"], "argument --steps: expected a positive integer"),
        (["--sem", "gp"], "argument --sem: invalid choice"),
        (["--dag", "x"], "argument --dag: invalid choice"),
        (["--weight-prior", "flat"], "argument --weight-prior: invalid choice"),
    ],
)
def test_bad_arguments(csv, tmp_path, capsys, extra, message):
    assert cli.main(["discover", str(csv), "--out", str(tmp_path / "g.json"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert _outputs(tmp_path) == []


def test_missing_file(tmp_path, capsys):
    assert (
        cli.main(["discover", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "g.json")]) == 2
    )
    assert "no such file" in capsys.readouterr().err


def test_interrupt_leaves_no_output_and_checkpoint_resumes(csv, tmp_path, capsys, monkeypatch):
    import importlib

    discover_module = importlib.import_module("pyrostruct.causal.discover")

    out, ckpt = tmp_path / "graph.json", tmp_path / "run.ckpt"
    argv = ["discover", str(csv), "--out", str(out), "--steps", "230", "--checkpoint",
            str(ckpt), "--quiet", "--intervention-column", "regime"]  # fmt: skip
    step = discover_module._Run.step
    calls = {"n": 0}

    def flaky(self):
        calls["n"] += 1
        if calls["n"] == 215:
            raise KeyboardInterrupt
        return step(self)

    monkeypatch.setattr(discover_module._Run, "step", flaky)
    assert cli.main(argv) == 130
    assert not out.exists() and ckpt.exists()
    assert _outputs(tmp_path) == ["run.ckpt"]
    monkeypatch.setattr(discover_module._Run, "step", step)
    calls["n"] = 0

    def counting(self):
        calls["n"] += 1
        return step(self)

    monkeypatch.setattr(discover_module._Run, "step", counting)
    assert cli.main(argv) == 0
    assert calls["n"] == 30  # resumed at step 200
    result = load_result(out)
    assert len(result.elbo_trace) == 230 and np.all(np.isfinite(result.elbo_trace))
