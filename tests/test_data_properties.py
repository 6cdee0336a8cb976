"""Property tests of the table reader (issue 15): any file gives a finite table or an
InputError, never another exception and never a non-finite value."""

import math
import os
import tempfile

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from pyrostruct.data import check_table, read_csv
from pyrostruct.errors import InputError

CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1e-300", "-1e308", "1e309", "0", "", " ", "NA", "nan", "x", "1,5", '"2"',
                     "True", "1;2", "\u00e9"]),  # fmt: skip
    st.integers(-(10**20), 10**20).map(str),
)
NAMES = st.one_of(st.sampled_from(["a", "b", "a", "", '"x,y"', " c", "\ufeffd"]), st.text(max_size=4))


@st.composite
def csv_texts(draw):
    d = draw(st.integers(1, 4))
    header = [draw(NAMES) for _ in range(d)]
    rows = []
    for _ in range(draw(st.integers(0, 12))):
        width = d + draw(st.sampled_from([0, 0, 0, 0, 1, -1]))
        rows.append([draw(CELLS) for _ in range(max(width, 0))])
    sep = draw(st.sampled_from([",", ",", ";"]))
    lines = [sep.join(header)] + [sep.join(r) for r in rows]
    text = "\n".join(lines) + draw(st.sampled_from(["\n", "", "\n\n"]))
    return draw(st.sampled_from(["", "\ufeff"])) + text


@given(csv_texts(), st.sampled_from([",", ";"]), st.sampled_from([".", ","]))
def test_any_file_gives_a_finite_table_or_an_input_error(text, sep, decimal):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.csv")
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        try:
            frame = read_csv(path, sep=sep, decimal=decimal)
            array, names = check_table(frame, allow_constant=True, min_rows=1)
        except InputError as e:
            message = str(e)
            assert message and "\n" not in message.strip().splitlines()[0]
            return
        assert np.isfinite(array).all()
        assert array.shape == (len(frame), len(names))
        assert len(set(names)) == len(names) and all(n.strip() for n in names)
        assert not any(n.startswith("\ufeff") for n in names)
        for j, name in enumerate(names):  # the real names, not pandas' renamings
            assert not (name.endswith(".1") and name[:-2] in names[:j])


@given(
    st.integers(0, 12),
    st.integers(1, 4),
    st.sampled_from([np.nan, np.inf, 1e308, 1e-300, 0.0, None]),
)
def test_arrays_are_finite_or_refused(n, d, special):
    rng = np.random.default_rng(n * 10 + d)
    x = rng.normal(size=(n, d))
    if special is not None and n:
        x[rng.integers(n), rng.integers(d)] = special
    try:
        array, names = check_table(x)
    except InputError:
        return
    assert np.isfinite(array).all() and array.shape == (n, d) and n >= 2
    assert not math.isnan(float(array.sum()))
