"""Property tests of both subcommands (issue 15): for random tables and flag values,
``exit 0 with a valid output, or exit 2 with one line on stderr and no file written, and the
input unchanged``."""

import contextlib
import io
import json
import os
import tempfile

import numpy as np
import pandas as pd
from hypothesis import event, given, settings
from hypothesis import strategies as st

from pyrostruct import cli
from pyrostruct.causal import load_result

SPECIAL = [np.nan, np.inf, 1e300, 1e-300, 0.0, 12345.0]


@st.composite
def tables(draw, max_cols=4):
    # valid tables first and most often (hypothesis also shrinks towards the first choice)
    n = draw(st.sampled_from([40, 40, 40, 12, 3, 1, 0]))
    d = draw(st.sampled_from([3, 2, max_cols, 1]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.normal(size=(n, d))
    if d > 1 and n:
        x[:, 1] += 2 * x[:, 0]
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        kind = draw(st.sampled_from(["cell", "column-constant", "column-scale"]))
        if n == 0:
            break
        j = draw(st.integers(0, d - 1))
        if kind == "cell":
            x[draw(st.integers(0, n - 1)), j] = draw(st.sampled_from(SPECIAL))
        elif kind == "column-constant":
            x[:, j] = 1.0
        else:
            x[:, j] *= draw(st.sampled_from([1e-300, 1e200, 1e300]))
    names = [f"v{j}" for j in range(d)]
    rare = st.sampled_from([False, False, False, True])
    if draw(rare) and d > 1:
        names[-1] = names[0]  # duplicate
    text = pd.DataFrame(x, columns=names).to_csv(index=False)
    if draw(rare) and n:
        lines = text.splitlines()
        lines[1 + draw(st.integers(0, n - 1))] += ",7"  # ragged row
        text = "\n".join(lines) + "\n"
    return text


FLAG_VALUES = {  # flags drawn one time in four, a bad value one time in four
    "--seed": (["0", "3", "4294967295"], ["-1", "1e20", "4294967296", "x"]),
    "--steps": (["3", "5"], ["0", "-2", "1.5"]),
    "--threshold": (["0.5", "1", "0.2"], ["0", "inf", "nan", "2"]),
    "--sep": ([","], [";", ";;"]),
    "--noise": (["equal", "nonequal"], ["big"]),
    "--expected-edges": (["1", "2.5"], ["0", "1e9", "nan"]),
}


@st.composite
def discover_flags(draw):
    flags = []
    for flag, (good, bad) in FLAG_VALUES.items():
        if draw(st.sampled_from([False, False, False, True])):
            values = draw(st.sampled_from([good, good, good, bad]))
            flags += [flag, draw(st.sampled_from(values))]
    for switch in ("--no-standardize", "--quiet"):
        if draw(st.booleans()):
            flags.append(switch)
    if "--steps" not in flags:
        flags += ["--steps", "3"]
    return flags


def _run(argv, tmp):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(argv)
    files = sorted(os.listdir(tmp))
    event(f"exit {code}")
    return code, err.getvalue(), files


def _check_failure(code, err, files):
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("pyrostruct: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert files == ["data.csv"], files


@settings(max_examples=40)
@given(tables(), discover_flags())
def test_discover_gives_a_valid_result_or_one_line_and_nothing(text, flags):
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data.csv")
        with open(data, "w") as f:
            f.write(text)
        out, png = os.path.join(tmp, "g.json"), os.path.join(tmp, "g.png")
        code, err, files = _run(["discover", data, "--out", out, "--plot", png, *flags], tmp)
        with open(data) as f:
            assert f.read() == text
        if code != 0:
            _check_failure(code, err, files)
            return
        assert files == ["data.csv", "g.json", "g.png"]
        with open(out) as f:
            json.loads(f.read(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        result = load_result(out)
        assert np.isfinite(result.edge_probs).all() and np.isfinite(result.weights).all()
        assert np.isfinite(result.elbo_trace).all()


@settings(max_examples=15)
@given(
    tables(max_cols=3),
    st.sampled_from(["gmm", "ppca"]),
    st.sampled_from([["--max", "2"], ["--max", "2", "--min", "3"], ["--max", "0"]]),
    st.sampled_from([[], ["--seed", "-4"], ["--sep", ";"]]),
)
def test_select_components_gives_a_table_or_one_line_and_nothing(text, family, counts, extra):
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data.csv")
        with open(data, "w") as f:
            f.write(text)
        out = os.path.join(tmp, "t.csv")
        argv = ["select-components", data, "--family", family, *counts, *extra, "--out", out,
                "--steps", "20", "--restarts", "1", "--quiet"]  # fmt: skip
        code, err, files = _run(argv, tmp)
        with open(data) as f:
            assert f.read() == text
        if code != 0:
            _check_failure(code, err, files)
            return
        assert files == ["data.csv", "t.csv"]
        table = pd.read_csv(out)
        assert len(table) >= 1 and np.isfinite(table["elbo"]).all()
