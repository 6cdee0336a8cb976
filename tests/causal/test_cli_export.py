"""`pyrostruct discover --format json|graphml|dot|csv [--cpdag] [--all-pairs]` (issue 20,
part 4): every format reads back to the graph of the same run, format and path mistakes
are one line with exit 2 before any work."""

import importlib
import json

import networkx as nx
import pandas as pd
import pytest

from pyrostruct import cli
from pyrostruct.causal import load_result
from pyrostruct.graph import node_link_graph


def _argv(csv, out, *extra):
    return ["discover", str(csv), "--out", str(out), "--steps", "20", "--seed", "1", "--quiet",
            "--intervention-column", "regime", *extra]  # fmt: skip


def _edges(graph):
    return {
        (u, v): (a["probability"], a["weight"], a.get("undirected"))
        for u, v, a in graph.edges(data=True)
    }


@pytest.fixture
def reference(csv, tmp_path):
    """The run's result, from its JSON (the same seed gives the same result)."""
    out = tmp_path / "reference.json"
    assert cli.main(_argv(csv, out)) == 0
    return load_result(out)


@pytest.mark.parametrize("cpdag", [False, True], ids=["dag", "cpdag"])
def test_every_format_reads_back_to_the_same_graph(csv, tmp_path, reference, capsys, cpdag):
    expected = reference.to_networkx(cpdag=cpdag)
    flags = ["--cpdag"] if cpdag else []
    paths = {fmt: tmp_path / f"g.{fmt}" for fmt in ["json", "graphml", "dot", "csv"]}
    for fmt, path in paths.items():
        capsys.readouterr()
        assert cli.main(_argv(csv, path, *flags)) == 0
        out = capsys.readouterr().out
        assert f"wrote {path} ({fmt})" in out
        assert ("undirected in its CPDAG" in out) == cpdag
    with open(paths["json"], encoding="utf-8") as f:
        assert _edges(node_link_graph(json.load(f))) == _edges(expected)
    graphml = nx.read_graphml(paths["graphml"])
    assert list(graphml.nodes) == reference.names and _edges(graphml) == _edges(expected)
    assert graphml.graph["source"] == str(csv)
    table = pd.read_csv(
        paths["csv"],
        dtype={"cause": str, "effect": str},
        keep_default_na=False,
        float_precision="round_trip",
    )
    pd.testing.assert_frame_equal(table, reference.edge_table(cpdag=cpdag))
    assert paths["dot"].read_text(encoding="utf-8") == reference.to_dot(cpdag=cpdag)


def test_explicit_format_for_a_file_of_another_suffix(csv, tmp_path, reference):
    out = tmp_path / "edges.txt"
    assert cli.main(_argv(csv, out, "--format", "csv", "--all-pairs")) == 0
    table = pd.read_csv(
        out,
        dtype={"cause": str, "effect": str},
        keep_default_na=False,
        float_precision="round_trip",
    )
    pd.testing.assert_frame_equal(table, reference.edge_table(all_pairs=True))
    assert len(table) == int((reference.edge_probs > 0).sum())
    plain = tmp_path / "result.out"  # an unknown suffix without --format: JSON, as before
    assert cli.main(_argv(csv, plain)) == 0
    assert load_result(plain).names == reference.names
    dot = tmp_path / "graph"
    assert cli.main(_argv(csv, dot, "--format", "dot")) == 0
    assert dot.read_text().startswith("// pyrostruct")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--format", "xml"], "argument --format: invalid choice: 'xml'"),
        (["--format", "csv"], "--format csv contradicts --out g.json, whose suffix .json means"),
        (["--all-pairs"], "--all-pairs applies to the CSV edge list only; --out g.json is "),
        (["--out", "data.csv", "--format", "csv"], "--out data.csv is the input file data.csv"),
        (["--out", "data.csv"], "--out data.csv is the input file data.csv"),
        (["--out", "g.gv", "--format", "graphml"], "name the file .graphml or leave out"),
    ],
)
def test_format_mistakes_are_one_line_before_any_work(
    csv, tmp_path, capsys, monkeypatch, extra, message
):
    monkeypatch.chdir(tmp_path)
    before = csv.read_bytes()
    discover_module = importlib.import_module("pyrostruct.causal.discover")
    monkeypatch.setattr(discover_module, "discover", lambda *a, **k: pytest.fail("ran"))
    argv = ["discover", "data.csv", "--out", "g.json", "--quiet", *extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pyrostruct: error: "), err
    assert message in err and "Traceback" not in err, err
    assert csv.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv"]
