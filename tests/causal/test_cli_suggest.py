"""`pyrostruct suggest`: the ranked design as CSV, and one-line errors with exit 2."""

import pandas as pd
import pytest

from pyrostruct import cli
from pyrostruct.causal.datasets import LinearSEMEnvironment


@pytest.fixture
def csv(tmp_path):
    env = LinearSEMEnvironment.random(5, seed=2)
    frame = pd.concat([env.observe(60), env.intervene({"X1": 2.0}, 10)], ignore_index=True)
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    return path


def test_round_trip(csv, tmp_path, capsys):
    out, png = tmp_path / "design.csv", tmp_path / "design.png"
    argv = ["suggest", str(csv), "--intervention-column", "intervention", "--batch-size", "2",
            "--steps", "100", "--out", str(out), "--plot", str(png), "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.startswith("next: do(")
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns) == ["experiment", "targets", "values", "samples", "score",
                                   "score_stderr", "batch"]  # fmt: skip
    assert len(table) == 5 and sorted(table["batch"]) == [0, 0, 0, 1, 2]
    assert (table["score"].diff().dropna() <= 0).all()
    assert "nan" not in out.read_text().lower()
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_a_saved_posterior_and_multi_target_candidates(csv, tmp_path):
    graph = tmp_path / "graph.json"
    assert cli.main(["discover", str(csv), "--intervention-column", "intervention",
                     "--steps", "100", "--out", str(graph), "--quiet"]) == 0  # fmt: skip
    out = tmp_path / "d.csv"
    argv = ["suggest", str(csv), "--intervention-column", "intervention", "--result", str(graph),
            "--strategy", "ait", "--max-targets", "2", "--targets", "X0,X2,X3", "--out",
            str(out), "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0
    table = pd.read_csv(out, keep_default_na=False)
    assert len(table) == 6 and "X0;X2" in set(table["targets"])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--targets", "X9"], "--targets: unknown node(s) ['X9']"),
        (["--targets", "X0", "--max-targets", "2"], "--max-targets is 2 but only 1 targets"),
        (["--dag-samples", "1"], "--dag-samples must be at least 4 (2 per posterior)"),
        (["--strategy", "ait", "--samples", "1"], "samples_per_experiment >= 2"),
        (["--result", "{data}.json", "--steps", "5"], "with --result nothing is fitted"),
        (["--result", "{data}.json", "--posterior", "exact"], "drop --result"),
        (["--batch-size", "9"], "--batch-size 9 exceeds the 5 candidates"),
        (["--out", "{data}"], "is the input file"),
        (["--result", "{data}"], "not a pyrostruct"),
        (["--strategy", "bald"], "argument --strategy: invalid choice"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(csv, tmp_path, capsys, extra, message):
    before = csv.read_bytes()
    extra = [e.format(data=csv) for e in extra]
    argv = ["suggest", str(csv), "--intervention-column", "intervention", "--quiet"]
    if "--result" not in extra:
        argv += ["--steps", "20"]
    if "--out" not in extra:
        argv += ["--out", str(tmp_path / "d.csv")]
    assert cli.main(argv + extra) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert csv.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv"]


def test_small_tables_are_designed_on_the_fit_and_the_exact_posterior(csv, tmp_path, capsys):
    out = tmp_path / "d.csv"
    argv = ["suggest", str(csv), "--intervention-column", "intervention", "--out", str(out),
            "--quiet"]  # fmt: skip
    assert cli.main([*argv, "--steps", "50"]) == 0
    assert "posterior (both)" in capsys.readouterr().out
    assert cli.main([*argv, "--posterior", "fit", "--steps", "50"]) == 0
    assert "posterior (fit)" in capsys.readouterr().out
    assert cli.main([*argv, "--posterior", "exact"]) == 0
    assert "posterior (exact)" in capsys.readouterr().out


def test_a_result_fitted_on_other_rows_is_used_with_a_warning(csv, tmp_path, capsys):
    graph = tmp_path / "graph.json"
    short = tmp_path / "short.csv"
    pd.read_csv(csv, keep_default_na=False).iloc[:50].to_csv(short, index=False)
    assert cli.main(["discover", str(short), "--intervention-column", "intervention",
                     "--steps", "50", "--out", str(graph), "--quiet"]) == 0  # fmt: skip
    argv = ["suggest", str(csv), "--intervention-column", "intervention", "--result",
            str(graph), "--out", str(tmp_path / "d.csv"), "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0
    assert "was fitted on 50 rows" in capsys.readouterr().err


def test_an_intervention_column_without_its_flag_gets_a_hint(csv, tmp_path, capsys):
    """The hostile sweep: 'column ... is not numeric' did not say which flag was missing."""
    assert cli.main(["suggest", str(csv), "--out", str(tmp_path / "d.csv"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "pass --intervention-column intervention" in err and err.count("\n") == 1


def test_a_target_named_with_spaces_as_the_header_has_it(tmp_path):
    """Headers keep their spaces; --targets stripped its names, so a column ' X1 ' could not
    be targeted (hostile-user sweep, 2026-12-07)."""
    env = LinearSEMEnvironment.random(3, seed=2)
    path = tmp_path / "data.csv"
    env.observe(60).drop(columns="intervention").rename(columns={"X1": " X1 "}).to_csv(
        path, index=False
    )
    out = tmp_path / "d.csv"
    argv = ["suggest", str(path), "--targets", " X1 ,X2", "--strategy", "random", "--steps",
            "20", "--out", str(out), "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0
    assert set(pd.read_csv(out)["targets"]) == {" X1 ", "X2"}
