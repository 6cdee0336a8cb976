"""`pyrostruct discover`: round trip, one-line errors with exit 2 and no output, resume."""

import json
import os

import networkx as nx
import numpy as np
import pytest

from pyrostruct import cli
from pyrostruct.causal import datasets, load_result
from pyrostruct.graph import node_link_graph


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
    graph = node_link_graph(data)
    assert graph.is_directed() and nx.is_directed_acyclic_graph(graph)
    assert list(graph.nodes) == ["X0", "X1", "X2", "X3"]
    for _, _, attrs in graph.edges(data=True):
        assert {"probability", "weight"} <= set(attrs)
    assert list(graph.graph) == ["pyrostruct"]  # the metadata once (issue 15, case 17)
    meta = graph.graph["pyrostruct"]["metadata"]
    assert meta["steps"] == 40 and meta["seed"] == 3 and meta["interventional_rows"] == 60
    assert meta["estimator"] == "analytic"
    assert meta["source"] == str(csv)
    assert set(meta["phase_seconds"]) == {"setup", "order_search", "training", "result"}
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
    assert cli.main(argv) == 0  # the interventional class (issue 24)
    assert load_result(out).equivalence_class and load_result(out).intervention_targets == [[1]]
    assert cli.main([*argv, "--no-average-equivalent"]) == 0
    assert not load_result(out).equivalence_class


def test_progress_bar_shows_the_elbo(csv, tmp_path, capsys):
    argv = ["discover", str(csv), "--out", str(tmp_path / "g.json"), "--steps", "12"]
    assert cli.main([*argv, "--intervention-column", "regime"]) == 0
    err = capsys.readouterr().err
    assert "elbo=" in err and "12/12" in err


BAD_TABLES = {
    "non-numeric": ("a,b\n" + "1,x\n2,y\n" * 10, "column 'b' is not numeric"),
    "nan": ("a,b\n" + "1,2\n,3\n" * 10, "column 'a' contains a missing value (NaN) (line 3 of"),
    "inf": ("a,b\n" + "1,2\ninf,3\n" * 10, "column 'a' contains an infinite value"),
    "constant": ("a,b\n" + "1,2\n1,3\n" * 10, "column 'a' is constant"),
    "one column": ("a\n" + "1\n2\n" * 10, "at least 2 needed"),
    "few rows": ("a,b\n1,2\n2,1\n3,5\n", "at least 10 needed"),
    "duplicate names": ("a,a\n" + "1,2\n2,3\n" * 10, "duplicate column name 'a'"),
    "empty file": ("", "the file is empty"),
    "intervention names an unknown node": (
        "a,b,regime\n" + "1,2,\n2,3,c\n" * 10,
        "intervention column 'regime', line 3 of",
    ),
    # issue 15, each a traceback or a silent wrong answer before
    "header and no rows": ("a,b,c\n", "the header has no data rows"),
    "ragged rows (one field more than the header)": (
        "a,b\n" + "7,1,2\n8,2,5\n" * 10,
        "line 2 has 3 fields but the header has 2",
    ),
    "intervention column of 0/1": (
        "a,b,regime\n" + "1,2,0\n2,3,1\n" * 10,
        "'0' looks like a yes/no flag, not the name of a node",
    ),
    "intervention column of True/False": (
        "a,b,regime\n" + "1,2,False\n2,3,True\n" * 10,
        "'False' looks like a yes/no flag",
    ),
    "intervention column of floats": (
        "a,b,regime\n" + "1,2,\n2,3,0.5\n" * 10,
        "line 3 of",
    ),
    "intervention column of negative numbers": (
        "a,b,regime\n" + "1,2,-1\n2,3,\n" * 10,
        "'-1' is a number, not the name of a node",
    ),
    "fewer rows than columns": (
        ",".join(f"v{j}" for j in range(20))
        + "\n"
        + "".join(",".join(str((i * 7 + j * 3) % 11 + j) for j in range(20)) + "\n" for i in range(12)),
        "12 rows for 20 columns",
    ),
    "semicolon-separated": ("a;b\n" + "1;2\n2;5\n" * 10, "the file looks ';'-separated"),
    "byte-order mark and a duplicate name": (
        "\ufeffa,b,a\n" + "1,2,3\n2,5,1\n" * 10,
        "duplicate column name 'a'",
    ),
    "a column without a name": (
        "a,,b\n" + "1,2,3\n2,5,1\n" * 10,
        "column 2 of the header has no name",
    ),
    "non-numeric cell names its line": ("a,b\n" + "1,2\n" * 5 + "1,x\n", "'x' at line 7"),
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
    "text, sep, message",
    [
        ("a;b\n" + "1;2\n2;5\n" * 10, ",", "is not numeric: '1;2' at line 2; encode it as "
         "numbers or drop it (the file looks ';'-separated: pass --sep ';')\n"),
        ("a,b\n" + "1,2\n2,5\n" * 10, "tab", "(the file looks ','-separated: pass --sep ,)\n"),
        ("a,b\n" + "1,2\n2,5\n" * 10, '"', "--sep cannot be '\"': CSV quotes fields"),
        ("a,b\n" + "1,True\n2,False\n" * 10, ",", "(found True, line 2 of"),
        ("a;b\n" + "1,5;2\n2;5\n" * 10, ";", "(decimal commas? pass --decimal ,)\n"),
    ],
)
def test_separator_and_value_hints_speak_the_command_line(text, sep, message, tmp_path, capsys):
    """The hostile-user sweep of 2026-12-07: a semicolon file's hint read "pass --sep ';' /
    --sep ;" after an advice to declare the column categorical; a comma file read with
    --sep tab got no hint; --sep '"' was refused as "not one character"; a yes/no column
    showed numpy's np.True_."""
    path = tmp_path / "data.csv"
    path.write_text(text)
    assert cli.main(["discover", str(path), "--sep", sep, "--out", str(tmp_path / "g.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--steps", "0"], "argument --steps: expected a positive integer"),
        (["--steps", "99999999999999999999"], "--steps: expected at most 10_000_000 steps"),
        (["--sem", "gp"], "argument --sem: invalid choice"),
        (["--dag", "x"], "argument --dag: invalid choice"),
        (["--weight-prior", "flat"], "argument --weight-prior: invalid choice"),
        (["--workers", "2"], "--workers 2 applies to --executor process or ray"),
        (["--intervention-column", "regime", "--estimator", "exact", "--steps", "50"],
         "drop --steps, or use --estimator analytic"),  # was "drop steps"
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

    estimator = importlib.import_module("pyrostruct.causal.estimators.base").Estimator

    out, ckpt = tmp_path / "graph.json", tmp_path / "run.ckpt"
    argv = ["discover", str(csv), "--out", str(out), "--steps", "230", "--checkpoint",
            str(ckpt), "--quiet", "--intervention-column", "regime"]  # fmt: skip
    step = estimator.step
    calls = {"n": 0}

    def flaky(self):
        calls["n"] += 1
        if calls["n"] == 215:
            raise KeyboardInterrupt
        return step(self)

    monkeypatch.setattr(estimator, "step", flaky)
    assert cli.main(argv) == 130
    assert not out.exists() and ckpt.exists()
    assert _outputs(tmp_path) == ["run.ckpt"]
    monkeypatch.setattr(estimator, "step", step)
    calls["n"] = 0

    def counting(self):
        calls["n"] += 1
        return step(self)

    monkeypatch.setattr(estimator, "step", counting)
    assert cli.main(argv) == 0
    assert calls["n"] == 30  # resumed at step 200
    result = load_result(out)
    assert len(result.elbo_trace) == 230 and np.all(np.isfinite(result.elbo_trace))


def _chain_csv(path, *, scale=1.0, sep=",", decimal=".", header=("a", "b", "c"), bom=False):
    """40 rows of a -> b (strong), c independent, times ``scale``."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=40)
    x = np.stack([a, 2.0 * a + 0.5 * rng.normal(size=40), rng.normal(size=40)], 1) * scale
    rows = [sep.join(header)] + [
        sep.join(repr(float(v)).replace(".", decimal) for v in row) for row in x
    ]
    path.write_text(("\ufeff" if bom else "") + "\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "kwargs, flags",
    [
        ({"scale": 1e-300}, []),
        ({"scale": 1e-300}, ["--no-standardize"]),
        ({"scale": 1e200}, []),
        ({"scale": 1e300}, ["--no-standardize"]),
        ({"sep": ";"}, ["--sep", ";"]),
        ({"sep": ";", "decimal": ","}, ["--sep", ";", "--decimal", ","]),
        ({"sep": "\t"}, ["--sep", "\\t"]),
        ({"header": ('"a,b"', "a", "c")}, []),  # was refused: "duplicate column name 'a'"
        ({"bom": True}, []),
    ],
    ids=[
        "tiny",
        "tiny-raw",
        "huge",
        "huge-raw",
        "semicolon",
        "decimal-comma",
        "tab",
        "quoted-header-with-comma",
        "byte-order-mark",
    ],  # fmt: skip
)
def test_unusual_but_valid_files_give_the_right_graph(tmp_path, capsys, kwargs, flags):
    """Values near float64's limits, other delimiters, quoted names, a BOM: a -> b found,
    finite numbers, strict JSON (issue 15: a traceback or NaN weights before)."""
    path = _chain_csv(tmp_path / "data.csv", **kwargs)
    out = tmp_path / "g.json"
    assert cli.main(["discover", str(path), "--out", str(out), "--quiet", *flags]) == 0
    text = out.read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    result = load_result(out)
    first = result.names[0]
    assert first == ("a,b" if "header" in kwargs else "a")
    assert result.edge_probs[0, 1] + result.edge_probs[1, 0] > 0.95
    assert result.edge_probs[[0, 1], 2].max() < 0.5 and result.edge_probs[2, [0, 1]].max() < 0.5
    assert np.isfinite(result.weights).all() and np.isfinite(result.elbo_trace).all()
    j = 0 if result.edge_probs[0, 1] > result.edge_probs[1, 0] else 1
    effect = result.weights[j, 1 - j]
    assert abs(effect) > 0.1  # in the data's units (a -> b has slope 2, b -> a about 0.5)


def test_raw_columns_of_incompatible_magnitudes_are_refused(tmp_path, capsys):
    path = tmp_path / "data.csv"
    rng = np.random.default_rng(0)
    rows = ["a,b"] + [f"{rng.normal() * 1e-130!r},{rng.normal() * 1e130!r}" for _ in range(30)]
    path.write_text("\n".join(rows) + "\n")
    argv = ["discover", str(path), "--out", str(tmp_path / "g.json"), "--no-standardize"]
    assert cli.main(argv) == 2
    assert "standardize them" in capsys.readouterr().err
    assert _outputs(tmp_path) == []
    # 1e-300 next to 1e300: no float64 holds the effects between them, in any units; refused
    # before any work (the sweep found it refused only when the JSON was written)
    rows = ["a,b"] + [f"{rng.normal() * 1e-300!r},{rng.normal() * 1e300!r}" for _ in range(30)]
    path.write_text("\n".join(rows) + "\n")
    assert cli.main(argv[:-1]) == 2
    assert "rescale the columns to comparable units" in capsys.readouterr().err
    assert _outputs(tmp_path) == []


def test_a_data_column_as_intervention_column_is_refused(tmp_path, capsys):
    path = _chain_csv(tmp_path / "data.csv")
    argv = ["discover", str(path), "--out", str(tmp_path / "g.json"), "--intervention-column", "b"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "intervention column 'b', line 2 of" in err and "is a number" in err


@pytest.mark.parametrize(
    "outputs, message",
    [
        (["--out", "{data}"], "--out {data} is the input file"),
        (["--out", "./{data}"], "is the input file"),
        (["--out", "{link}"], "is the input file"),
        (["--out", "g.json", "--plot", "{data}"], "--plot {data} is the input file"),
        (["--out", "g.json", "--checkpoint", "{data}"], "--checkpoint {data} is the input file"),
        (["--out", "g.json", "--plot", "g.json"], "--out and --plot name the same file"),
        (["--out", "g.json", "--checkpoint", "g.json"], "--out and --checkpoint name the same"),
        (["--out", "{data}/g.json"], "is not a directory"),
        (["--out", "."], "is a directory"),
        (["--out", "g.json", "--plot", "g.jpg"], "--plot g.jpg: cannot tell the figure format"),
    ],
)
def test_output_paths_that_would_lose_data_are_refused_before_any_work(
    tmp_path, capsys, monkeypatch, outputs, message
):
    """Issue 15, cases 1 and 13: the input overwritten, outputs on each other, unwritable."""
    monkeypatch.chdir(tmp_path)
    data = _chain_csv(tmp_path / "data.csv")
    (tmp_path / "link.csv").symlink_to(data)
    before = data.read_bytes()
    argv = ["discover", "data.csv", "--steps", "5", "--quiet"]
    argv += [o.format(data="data.csv", link="link.csv") for o in outputs]
    import importlib

    discover_module = importlib.import_module("pyrostruct.causal.discover")
    monkeypatch.setattr(discover_module, "discover", lambda *a, **k: pytest.fail("ran"))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(data="data.csv") in err, err
    assert data.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "link.csv"]


@pytest.mark.parametrize(
    "flag, message",
    [
        (["--seed", "-1"], "argument --seed: expected an integer from 0 to 4294967295, got '-1'"),
        (["--seed", "1e20"], "argument --seed: expected an integer from 0"),
        (["--seed", str(2**32)], "argument --seed: expected an integer from 0"),
        (["--threshold", "inf"], "argument --threshold: expected a positive number"),
        (["--sep", ";;"], "argument --sep: expected one character"),
        (["--intervention-column", ""], "argument --intervention-column: expected a column"),
    ],
)
def test_bad_flag_values_name_the_flag(tmp_path, capsys, flag, message):
    data = _chain_csv(tmp_path / "data.csv")
    assert cli.main(["discover", str(data), "--out", str(tmp_path / "g.json"), *flag]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_same_seed_same_picture_and_same_json_in_fresh_processes(tmp_path):
    """Issue 15, case 17: the PNG's layout followed string hashing, so it flipped between runs."""
    import subprocess
    import sys

    path = tmp_path / "data.csv"
    datasets.make_dataset(d=8, n=300, seed=3).data.to_csv(path, index=False)
    outputs = []
    for hash_seed in ("1", "2"):
        out, png = tmp_path / f"g{hash_seed}.json", tmp_path / f"g{hash_seed}.png"
        argv = [sys.executable, "-m", "pyrostruct", "discover", str(path), "--out", str(out),
                "--plot", str(png), "--steps", "30", "--quiet"]  # fmt: skip
        env = {**__import__("os").environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run(argv, check=True, env=env, capture_output=True)
        meta = json.loads(out.read_text())["graph"]["pyrostruct"]
        for volatile in ("created", "fit_seconds", "phase_seconds"):
            meta["metadata"].pop(volatile)
        outputs.append((png.read_bytes(), meta))
    assert outputs[0][0] == outputs[1][0]
    assert outputs[0][1] == outputs[1][1]


def test_order_search_shows_progress_and_a_resumed_run_says_so(tmp_path, capsys, monkeypatch):
    """Issue 15, case 16: the order search ran silently; a resume repeated it and said nothing."""
    import importlib

    estimator = importlib.import_module("pyrostruct.causal.estimators.base").Estimator
    search = importlib.import_module("pyrostruct.causal.orders.greedy_sparsest")
    path = tmp_path / "data.csv"
    datasets.make_dataset(d=6, n=200, seed=1).data.to_csv(path, index=False)
    out, ckpt = tmp_path / "g.json", tmp_path / "run.ckpt"
    argv = ["discover", str(path), "--out", str(out), "--steps", "220", "--checkpoint", str(ckpt)]
    step = estimator.step
    calls = {"n": 0}

    def flaky(self):
        calls["n"] += 1
        if calls["n"] == 210:
            raise KeyboardInterrupt
        return step(self)

    monkeypatch.setattr(estimator, "step", flaky)
    assert cli.main(argv) == 130
    assert "order search" in capsys.readouterr().err  # every 200 steps

    def no_search(*args, **kwargs):
        raise AssertionError("the order search ran again on resume")

    monkeypatch.setattr(search, "improve_order", no_search)
    monkeypatch.setattr(estimator, "step", step)
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "discover: resuming from step 200 of 220" in err
    assert "ELBO estimate" in err  # the result phase's last step has its bar too (issue 19)
    assert "equivalence classes" in err  # the result phase's bar
    full = tmp_path / "full.json"
    monkeypatch.undo()
    assert cli.main(["discover", str(path), "--out", str(full), "--steps", "220", "--quiet"]) == 0
    assert np.allclose(load_result(out).edge_probs, load_result(full).edge_probs)
    assert np.allclose(load_result(out).elbo_trace, load_result(full).elbo_trace)


def test_hostile_sweep_cases(tmp_path, capsys, monkeypatch):
    """Found by the hostile-user sweep: a FIFO or device as --out was replaced by a regular
    file, a symbolic link replaced instead of written through, a loop of links gave an
    errno line, a pipe as input read as empty, and numbers Python accepts but pandas does
    not ('1_000') ended in a StopIteration traceback."""
    import os

    monkeypatch.chdir(tmp_path)
    data = _chain_csv(tmp_path / "data.csv")
    os.mkfifo("fifo")
    (tmp_path / "target.json").write_text("old")
    os.symlink("target.json", "link.json")
    os.symlink("loopB", "loopA")
    os.symlink("loopA", "loopB")
    run = ["discover", "data.csv", "--steps", "5", "--quiet", "--out"]
    for out, message in [("fifo", "--out fifo is not a regular file"),
                         ("loopA", "--out loopA: Too many levels of symbolic links"),
                         ("", "--out '' does not name a file"),
                         ("newdir/", "--out 'newdir/' does not name a file")]:  # fmt: skip
        assert cli.main([*run, out]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert stat_is_fifo(tmp_path / "fifo")
    assert cli.main([*run, "link.json"]) == 0  # written through the link, which stays
    assert os.path.islink("link.json") and load_result("target.json").names == ["a", "b", "c"]
    text = data.read_text().splitlines()
    text[1] = text[1].replace(".", "_", 1)
    (tmp_path / "under.csv").write_text("\n".join(text) + "\n")
    assert cli.main(["discover", "under.csv", "--out", "u.json", "--quiet"]) == 2
    assert "is not numeric" in capsys.readouterr().err and not os.path.exists("u.json")
    read_end, write_end = os.pipe()  # a pipe as input, like <(cat data.csv)
    os.write(write_end, data.read_bytes())
    os.close(write_end)
    assert cli.main(["discover", f"/dev/fd/{read_end}", "--out", "p.json", "--quiet",
                     "--steps", "5"]) == 0  # fmt: skip
    os.close(read_end)


def stat_is_fifo(path) -> bool:
    import stat

    return stat.S_ISFIFO(path.lstat().st_mode)


def test_restarts_flags(csv, tmp_path, capsys):
    out = tmp_path / "g.json"
    argv = ["discover", str(csv), "--out", str(out), "--steps", "20", "--quiet",
            "--intervention-column", "regime", "--restarts", "2", "--executor", "process",
            "--workers", "2"]  # fmt: skip
    assert cli.main(argv) == 0
    assert "restart" in capsys.readouterr().out
    meta = load_result(out).metadata
    assert [r["init_order"] for r in meta["restarts"]] == ["greedy-sparsest", "greedy-random"]
    assert meta["restart_chosen"] in (0, 1)


def test_a_restart_checkpoint_that_is_the_input_is_refused(tmp_path, capsys, monkeypatch):
    """Restart r > 0 checkpoints to FILE.restart<r>: that path is checked like the others."""
    monkeypatch.chdir(tmp_path)
    data = _chain_csv(tmp_path / "run.ckpt.restart1")
    before = data.read_bytes()
    argv = ["discover", "run.ckpt.restart1", "--out", "g.json", "--checkpoint", "run.ckpt",
            "--restarts", "2", "--steps", "5", "--quiet"]  # fmt: skip
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "--checkpoint of restart 1 run.ckpt.restart1 is the input file" in err, err
    assert data.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt.restart1"]


def test_knowledge_flag_enforces_the_file(csv, tmp_path, capsys):
    knowledge = tmp_path / "prior.txt"
    knowledge.write_text("/knowledge\naddtemporal\n1 X3\n2 X0 X1 X2\nforbiddirect\nX0 X2\n"
                         "requiredirect\nX3 X1\n")  # fmt: skip
    out = tmp_path / "g.json"
    argv = ["discover", str(csv), "--out", str(out), "--steps", "40", "--quiet",
            "--intervention-column", "regime", "--knowledge", str(knowledge)]  # fmt: skip
    assert cli.main(argv) == 0
    result = load_result(out)
    p = result.edge_probs
    assert p[0, 2] == 0 and p[3, 1] == 1 and (p[:3, 3] == 0).all()
    assert result.knowledge.admits(result.sample_dags(100, seed=0)).all()
    # the same rules as a cause,effect,kind CSV
    table = tmp_path / "prior.csv"
    table.write_text("cause,effect,kind\nX0,X2,forbidden\nX3,X1,required\n")
    assert cli.main([*argv[:-1], str(table)]) == 0
    assert load_result(out).edge_probs[3, 1] == 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("cause,effect,kind\nX0,X9,required\n", "unknown node 'X9'"),
        ("cause,effect,kind\nX0,X1,required\nX1,X0,required\n", "cycle"),
        ("/knowledge\nrequiredirect\nX0\n", "line 3: an edge line"),
        ("", "empty"),
    ],
)
def test_bad_knowledge_files_are_one_line_and_write_nothing(csv, tmp_path, capsys, text, message):
    knowledge = tmp_path / "k.txt"
    knowledge.write_text(text)
    argv = ["discover", str(csv), "--out", str(tmp_path / "g.json"), "--steps", "5", "--quiet",
            "--intervention-column", "regime", "--knowledge", str(knowledge)]  # fmt: skip
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert _outputs(tmp_path) == ["k.txt"]


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc")
def test_an_output_in_a_folder_that_takes_no_files_is_refused_before_training(
    csv, capsys, monkeypatch
):
    """/proc and /sys take no new files even for root, whom access() tells they can: the
    run trained to the end, then failed to write (hostile-user sweep, 2026-12-07)."""
    import importlib

    module = importlib.import_module("pyrostruct.causal.discover")
    monkeypatch.setattr(module, "discover", lambda *a, **k: pytest.fail("it trained"))
    for out in ["/proc/graph.json", "/sys/graph.json"]:
        argv = ["discover", str(csv), "--intervention-column", "regime", "--quiet", "--out", out]
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"--out {out} cannot be created" in err, err


def test_knowledge_file_as_output_is_refused(csv, tmp_path, capsys):
    knowledge = tmp_path / "k.csv"
    knowledge.write_text("cause,effect,kind\nX0,X1,forbidden\n")
    argv = ["discover", str(csv), "--out", str(knowledge), "--format", "csv", "--quiet",
            "--knowledge", str(knowledge)]  # fmt: skip
    assert cli.main(argv) == 2
    assert "input file" in capsys.readouterr().err
    assert knowledge.read_text() == "cause,effect,kind\nX0,X1,forbidden\n"


def test_errors_name_flags_not_python_keywords(csv, tmp_path, capsys):
    """The exact estimator's refusals said "use estimator='analytic'" on the command line."""
    out = str(tmp_path / "g.json")
    code = cli.main(["discover", str(csv), "--out", out, "--intervention-column", "regime",
                     "--estimator", "exact", "--steps", "5", "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "use --estimator analytic" in err and "estimator='" not in err
    assert err.count("\n") == 1
