"""``pyrostruct select-components`` on hostile input (issue 15): one line, exit 2, nothing
written, the input unchanged; the table it does write has no NaN and normal permissions."""

import os
import stat

import numpy as np
import pandas as pd
import pytest

from pyrostruct import cli

FAST = ["--steps", "60", "--restarts", "1", "--quiet", "--family", "gmm", "--max", "2"]


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(30, 2)), rng.normal(size=(30, 2)) + 8])
    pd.DataFrame(x, columns=["a", "b"]).to_csv("data.csv", index=False)
    return tmp_path / "data.csv"


def _run_fails(argv, capsys, message, tmp_path, data):
    before = data.read_bytes()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pyrostruct: error: ") and message in err, err
    assert data.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--out", "data.csv"], "--out data.csv is the input file data.csv"),
        (["--out", "t.csv", "--plot", "data.csv"], "--plot data.csv is the input file"),
        (["--out", "t.csv", "--plot", "t.csv"], "--out and --plot name the same file"),
        (["--out", "data.csv/t.csv"], "is not a directory"),
        (["--out", "t.csv", "--min", "4"], "--min 4 is larger than --max 2"),
        (["--out", "t.csv", "--seed", "-1"], "argument --seed: expected an integer from 0"),
        # the hostile-user sweep of 2026-12-07: a CSV written into t.json, --workers ignored
        (["--out", "t.json"], "--out t.json: the evidence table is written as CSV"),
        (["--out", "t.csv", "--workers", "3"], "--workers 3 applies to --executor process or ray"),
        (["--out", "t.csv", "--steps", "1e20"], "argument --steps: expected a positive integer"),
        (["--out", "t.csv", "--steps", "20000000"], "--steps: expected at most 10_000_000"),
    ],
)
def test_bad_outputs_and_flags(data, tmp_path, capsys, extra, message):
    _run_fails(["select-components", "data.csv", *FAST, *extra], capsys, message, tmp_path, data)


@pytest.mark.parametrize(
    "text, message",
    [
        ("a,b\n", "the header has no data rows"),
        ("a,b\n" + "9,1,2\n8,2,3\n" * 10, "line 2 has 3 fields but the header has 2"),
        ("a;b\n" + "1;2\n2;3\n" * 10, "looks ';'-separated"),
    ],
    ids=["header-only", "ragged", "semicolon"],
)
def test_bad_tables(data, tmp_path, capsys, text, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(text)
    argv = ["select-components", "bad.csv", *FAST, "--out", "t.csv"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "t.csv").exists()


def test_written_table_has_open_permissions_and_no_nan(data, tmp_path):
    old = os.umask(0o022)
    try:
        assert cli.main(["select-components", "data.csv", *FAST, "--out", "t.csv"]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "t.csv").stat().st_mode) == 0o644
    text = (tmp_path / "t.csv").read_text()
    assert "nan" not in text.lower() and "inf" not in text.lower()
    assert pd.read_csv(tmp_path / "t.csv").shape[0] == 2


def test_values_near_float64s_limits(data, tmp_path):
    """Found by the hostile sweep: data times 1e-300 failed every candidate (traceback)."""
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(size=(30, 2)), rng.normal(size=(30, 2)) + 8]) * 1e-300
    pd.DataFrame(x, columns=["a", "b"]).to_csv("tiny.csv", index=False)
    for family, count in (("gmm", "2"), ("ppca", "1")):
        argv = ["select-components", "tiny.csv", *FAST[:-4], "--family", family, "--max", count,
                "--out", f"{family}.csv"]  # fmt: skip
        assert cli.main(argv) == 0
        table = pd.read_csv(f"{family}.csv")
        assert np.isfinite(table["elbo"]).all()


def test_no_smc_ranks_a_small_table_by_the_iwae_bound(data, tmp_path, capsys):
    small = pd.read_csv("data.csv").iloc[::2].iloc[:20]  # 40 values: SMC-eligible
    small.to_csv("small.csv", index=False)
    flags = ["--steps", "60", "--restarts", "1", "--quiet", "--family", "gmm", "--max", "2",
             "--no-halving"]  # fmt: skip
    assert cli.main(["select-components", "small.csv", *flags, "--out", "a.csv"]) == 0
    assert "ranked by smc" in capsys.readouterr().out
    assert cli.main(["select-components", "small.csv", *flags, "--no-smc", "--out", "b.csv"]) == 0
    assert "ranked by iwae" in capsys.readouterr().out
    assert pd.read_csv("b.csv")["smc"].isna().all()
