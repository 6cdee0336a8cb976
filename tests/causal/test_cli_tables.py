"""`pyrostruct discover --missing / --transform / --categorical` (issue 20, parts 2-3)."""

import numpy as np
import pytest

from pyrostruct import cli
from pyrostruct.causal import datasets, load_result


@pytest.fixture
def frame():
    return datasets.make_dataset(d=4, n=120, seed=0).data


def _outputs(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".csv")


def _run(path, tmp_path, *flags):
    out = tmp_path / "g.json"
    argv = ["discover", str(path), "--out", str(out), "--steps", "10", "--quiet", *flags]
    return cli.main(argv), out


def test_missing_pairwise_and_drop(frame, tmp_path, capsys):
    holes = frame.mask(np.random.default_rng(0).random(frame.shape) < 0.1)
    path = tmp_path / "data.csv"
    holes.to_csv(path, index=False)  # missing cells as empty fields
    assert ",," in path.read_text() or ",\n" in path.read_text()
    rc, out = _run(path, tmp_path, "--missing", "pairwise")
    assert rc == 0
    assert "pairwise moments as" in capsys.readouterr().out
    report = load_result(out).metadata["missing"]
    assert report["mode"] == "pairwise" and report["missing_cells"] == int(holes.isna().sum().sum())
    rc, out = _run(path, tmp_path, "--missing", "drop")
    assert rc == 0
    dropped = int(holes.isna().any(axis=1).sum())
    assert f"{dropped} of 120 rows dropped" in capsys.readouterr().out
    assert load_result(out).metadata["num_rows"] == 120 - dropped


def test_categorical_text_column(frame, tmp_path, capsys):
    mixed = frame.assign(X1=np.where(frame["X1"] > 0, "on", "off"))
    path = tmp_path / "data.csv"
    mixed.to_csv(path, index=False)
    rc, out = _run(path, tmp_path, "--categorical", "X1")
    assert rc == 0
    assert "copula transform of 4 columns" in capsys.readouterr().out
    meta = load_result(out).metadata
    assert meta["transform"]["X1"] == "copula-binary"
    assert meta["categorical_levels"] == {"X1": ["off", "on"]}
    rc, out = _run(path, tmp_path, "--categorical", "X1", "--transform", "none")
    assert rc == 0 and set(load_result(out).metadata["transform"].values()) == {"none"}


def test_categorical_numbers_read_as_text_keep_their_order(frame, tmp_path):
    """A declared column is read as text; numbers in it are still numbers (10 > 9)."""
    levels = np.digitize(frame["X2"], np.quantile(frame["X2"], [0.25, 0.5, 0.75])) + 8
    path = tmp_path / "data.csv"
    frame.assign(X2=levels).to_csv(path, index=False)
    rc, out = _run(path, tmp_path, "--categorical", "X2,X3")
    assert rc == 0
    assert load_result(out).metadata["transform"]["X2"] == "copula-ordinal"
    assert "categorical_levels" not in load_result(out).metadata  # numbers: no text levels


BAD = {
    "an empty cell by default": (
        lambda f: f.mask(np.eye(len(f), f.shape[1], dtype=bool)),
        [],
        "missing value (NaN) (line 2 of",
        "--missing drop|em|pairwise",
    ),
    "text without --categorical": (
        lambda f: f.assign(X1=np.where(f["X1"] > 0, "on", "off")),
        [],
        "column 'X1' is not numeric",
        "declare it: --categorical X1",
    ),
    "three unordered text levels": (
        lambda f: f.assign(X1=np.array(["a", "b", "c"])[np.arange(len(f)) % 3]),
        ["--categorical", "X1"],
        "'X1' has 3 levels ('a', 'b', 'c') and no order",
        "encode the levels as numbers",
    ),
    "an unknown categorical column": (
        lambda f: f,
        ["--categorical", "Y"],
        "no column named 'Y'",
        "",
    ),
    "pairwise with the MLP SEM": (
        lambda f: f,
        ["--missing", "pairwise", "--sem", "mlp"],
        "--missing pairwise needs the linear Gaussian SEM",
        "",
    ),
    "a column mostly missing": (
        lambda f: f.assign(X3=f["X3"].where(np.arange(len(f)) % 3 == 0)),
        ["--missing", "drop"],
        "column 'X3' is missing in 67% of the rows",
        "drop the column",
    ),
    "an empty --categorical name": (lambda f: f, ["--categorical", "X1,"], "--categorical", ""),
    "an unknown --missing": (lambda f: f, ["--missing", "mean"], "invalid choice", ""),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(frame, case, tmp_path, capsys):
    make, flags, message, hint = BAD[case]
    path = tmp_path / "data.csv"
    make(frame).to_csv(path, index=False)
    argv = ["discover", str(path), "--out", str(tmp_path / "g.json"), "--plot",
            str(tmp_path / "g.png"), "--checkpoint", str(tmp_path / "ck.pt"), "--steps", "5",
            *flags]  # fmt: skip
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pyrostruct: error: "), err
    assert message in err and hint in err, err
    assert _outputs(tmp_path) == []


def test_the_intervention_column_declared_categorical_is_named_as_such(frame, tmp_path, capsys):
    path = tmp_path / "data.csv"
    frame.assign(I=["", "X1"] * 60).to_csv(path, index=False)
    rc, _ = _run(path, tmp_path, "--intervention-column", "I", "--categorical", "I")
    err = capsys.readouterr().err
    assert rc == 2 and "--categorical I: that is the --intervention-column" in err, err
