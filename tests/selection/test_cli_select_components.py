"""``pyrostruct select-components``: table, plot, progress; bad input is one line, exit 2."""

import subprocess
import sys

import pandas as pd
import pytest

from pyrostruct import cli
from pyrostruct.selection.datasets import make_gmm_data, make_ppca_data

FAST = ["--steps", "120", "--restarts", "1", "--seed", "1"]


@pytest.fixture
def gmm_csv(tmp_path):
    x, _ = make_gmm_data(150, 2, 2, separation=8.0, seed=2)
    path = tmp_path / "data.csv"
    pd.DataFrame(x, columns=["a", "b"]).to_csv(path, index=False)
    return path


def test_gmm_table_and_plot(gmm_csv, tmp_path, capsys):
    out, png = tmp_path / "table.csv", tmp_path / "evidence.png"
    code = cli.main(
        [
            "select-components",
            str(gmm_csv),
            "--family",
            "gmm",
            "--max",
            "4",
            "--out",
            str(out),
            "--plot",
            str(png),
            "--quiet",
            *FAST,
        ]
    )
    assert code == 0
    table = pd.read_csv(out)
    assert list(table.candidate) == [1, 2, 3, 4]
    for col in ["elbo", "elbo_se", "iwae", "iwae_se", "ess", "log_posterior_prob", "fit_seconds"]:
        assert col in table.columns
    assert table.candidate[table.posterior_prob.idxmax()] == 2
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "best components: 2" in capsys.readouterr().out


def test_ppca_through_python_m_shows_progress(tmp_path):
    x = make_ppca_data(120, 6, 2, seed=0)
    data = tmp_path / "p.csv"
    pd.DataFrame(x, columns=[f"x{i}" for i in range(6)]).to_csv(data, index=False)
    out = tmp_path / "t.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyrostruct",
            "select-components",
            str(data),
            "--family",
            "ppca",
            "--max",
            "3",
            "--out",
            str(out),
            *FAST,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "candidates" in proc.stderr  # the tqdm bar over candidates
    assert "best rank: 2" in proc.stdout
    assert len(pd.read_csv(out)) == 3


@pytest.mark.parametrize(
    "content,extra,match",
    [
        ("a,b\n1,2\n3,x\n4,5\n", [], "not numeric"),
        ("a,b\n1,2\n3,\n4,5\n", [], "NaN"),
        ("a,b\n1,2\n1,3\n1,5\n", [], "constant"),
        ("", [], "empty"),
        ("a,b\n1,2\n2,1\n3,5\n", ["--max", "9"], "exceeds the number of rows"),
    ],
    ids=["text", "nan", "constant", "empty", "too-many-components"],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(content, extra, match, tmp_path, capsys):
    data = tmp_path / "bad.csv"
    data.write_text(content)
    out, png = tmp_path / "t.csv", tmp_path / "e.png"
    argv = [
        "select-components",
        str(data),
        "--family",
        "gmm",
        "--max",
        "2",
        "--out",
        str(out),
        "--plot",
        str(png),
        "--quiet",
        *FAST,
        *extra,
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyrostruct: error:") and err.count("\n") == 1
    assert match in err
    assert "Traceback" not in err
    assert not out.exists() and not png.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--family", "kmeans", "--max", "3"], "invalid choice"),
        (["--family", "gmm", "--max", "0"], "positive integer"),
        (["--family", "ppca", "--max", "2"], "below the number of columns"),
        (["--family", "gmm", "--max", "2", "--executor", "gpu"], "invalid choice"),
    ],
)
def test_bad_arguments(argv, match, gmm_csv, tmp_path, capsys):
    out = tmp_path / "t.csv"
    assert cli.main(["select-components", str(gmm_csv), *argv, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1
    assert not out.exists()


def test_missing_file(tmp_path, capsys):
    assert (
        cli.main(
            [
                "select-components",
                str(tmp_path / "nope.csv"),
                "--family",
                "gmm",
                "--max",
                "2",
                "--out",
                str(tmp_path / "t.csv"),
            ]
        )
        == 2
    )
    assert "no such file" in capsys.readouterr().err
