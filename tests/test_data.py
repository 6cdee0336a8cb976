"""Data tables: every kind of bad input gets a clear InputError naming the column."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pyrostruct.data import check_table, read_csv
from pyrostruct.errors import InputError


def test_dataframe_names_and_values_pass_through():
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0, 1, 5]})
    array, names = check_table(frame)
    assert names == ["a", "b"]
    assert array.dtype == np.float64
    np.testing.assert_array_equal(array, [[1, 0], [2, 1], [3, 5]])


@pytest.mark.parametrize("make", [np.asarray, torch.tensor], ids=["numpy", "torch"])
def test_arrays_get_default_names(make):
    array, names = check_table(make([[1.0, 2.0], [3.0, 5.0]]))
    assert names == ["X0", "X1"] and array.shape == (2, 2)


@pytest.mark.parametrize(
    "data, kwargs, match",
    [
        (pd.DataFrame({"a": [1.0, 2.0], "s": ["x", "y"]}), {}, r"column 's' is not numeric \(found 'x', row 0\)"),
        (pd.DataFrame({"a": [1.0, np.nan, 2.0]}), {}, r"column 'a' contains a missing value \(NaN\) \(row 1\)"),
        (np.array([[1.0, np.inf], [2.0, 3.0]]), {}, r"column 'X1' contains an infinite value"),
        (pd.DataFrame({"a": [1.0, 2.0], "c": [4.0, 4.0]}), {}, r"column 'c' is constant"),
        (np.ones((5, 1)) * np.arange(5)[:, None], {"min_cols": 2}, r"found 1 column\(s\).*at least 2"),
        (np.arange(6.0).reshape(1, 6), {}, r"found 1 row\(s\).*at least 2"),
        (np.arange(6.0), {}, r"expected a 2-D table.*reshape"),
        (np.array([["a", "b"], ["c", "d"]]), {}, r"expected a numeric array"),
        (pd.DataFrame([[1.0, 2.0], [3.0, 4.0]], columns=["a", "a"]), {}, r"duplicate column name 'a'"),
        ("data.csv", {}, r"got a path, not a table: read it first \(pandas.read_csv\('data.csv'\)\)"),
        (Path("data.csv"), {}, r"got a path, not a table"),
    ],
    ids=["non-numeric", "nan", "inf", "constant", "too-few-columns", "too-few-rows", "1d", "strings", "duplicate",
         "path", "pathlib"],
)
def test_bad_tables_raise_input_error(data, kwargs, match):
    with pytest.raises(InputError, match=match):
        check_table(data, **kwargs)


def test_constant_column_allowed_when_asked():
    array, _ = check_table(np.array([[1.0, 2.0], [1.0, 3.0]]), allow_constant=True)
    assert array.shape == (2, 2)


def test_input_error_is_a_value_error():
    assert issubclass(InputError, ValueError)


def test_read_csv_good_file(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("x,y\n1,2\n3,4\n")
    frame = read_csv(path)
    assert list(frame.columns) == ["x", "y"] and len(frame) == 2


@pytest.mark.parametrize(
    "content, match",
    [
        ("", "the file is empty"),
        ("\n\n", "has no columns"),
        ("x,x\n1,2\n", "duplicate column name 'x'"),
        ('x,y\n1,2\n3,"4\n', "not a readable CSV"),
    ],
    ids=["empty", "blank-lines", "duplicate-header", "unterminated-quote"],
)
def test_read_csv_bad_files(tmp_path, content, match):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(InputError, match=match):
        read_csv(path)


def test_read_csv_missing_file_and_missing_column(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_csv(tmp_path / "nope.csv")
    path = tmp_path / "d.csv"
    path.write_text("x,y\n1,2\n")
    with pytest.raises(InputError, match="no column named 'regime'"):
        read_csv(path, exclude=["regime"])


def test_read_csv_of_a_file_it_may_not_read_says_so(tmp_path, monkeypatch):
    """A file without read permission gave the bare "[Errno 13] Permission denied: ..."
    (hostile-user sweep; monkeypatched: root reads a chmod 000 file)."""
    import builtins

    path = tmp_path / "d.csv"
    path.write_text("x,y\n1,2\n")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(builtins, "open", refuse)
    with pytest.raises(InputError, match=r"d.csv: cannot be read \(Permission denied\)"):
        read_csv(path)


def test_read_csv_keeps_the_text_of_an_excluded_column_verbatim(tmp_path):
    """An intervention column holds node names: a node named NA, None or null is a name
    there, not pandas' missing value (its rows were read as observational); only an empty
    cell is empty. The data columns keep pandas' missing markers."""
    path = tmp_path / "d.csv"
    path.write_text("NA,null,regime\n1,2,NA\n3,NA,null\n5,6,\n7,8,NA;null\n")
    frame = read_csv(path, exclude=["regime"])
    assert frame["regime"].tolist() == ["NA", "null", "", "NA;null"]
    assert np.isnan(frame["null"].iloc[1])


def test_odd_but_numeric_frames_are_read_exactly():
    """Found beyond issue 15's list: numbers held as objects were refused; nullable types."""
    frame = pd.DataFrame(
        {
            "obj": pd.Series([1.0, 2, 3.5], dtype=object),
            "int64": pd.array([1, 2, 3], dtype="Int64"),
            "f32": np.array([0.5, 1.5, 2.5], dtype=np.float32),
        }
    )
    array, names = check_table(frame)
    assert names == ["obj", "int64", "f32"] and array.dtype == np.float64
    np.testing.assert_array_equal(array, [[1, 1, 0.5], [2, 2, 1.5], [3.5, 3, 2.5]])


@pytest.mark.parametrize(
    "data, match",
    [
        (pd.DataFrame({"a": np.arange(4) * 1j, "b": np.arange(4.0)}), "column 'a' holds complex"),
        (pd.DataFrame({"a": pd.array([1, None, 3, 4], dtype="Int64"), "b": np.arange(4.0)}),
         r"column 'a' contains a missing value \(NaN\) \(row 1\)"),
        (np.ma.masked_array(np.random.default_rng(0).random((4, 2)), mask=np.eye(4, 2, dtype=bool)),
         "masked entries"),
        (pd.DataFrame({"a": pd.Series([1.0, "x", 2.0], dtype=object), "b": np.arange(3.0)}),
         r"column 'a' is not numeric \(found 'x', row 1\)"),
    ],
    ids=["complex (imaginary part silently dropped before)", "nullable NA",
         "masked array (mask silently ignored before)", "mixed object column"],
)  # fmt: skip
def test_values_that_would_be_silently_changed_are_refused(data, match):
    with pytest.raises(InputError, match=match):
        check_table(data)


def test_read_csv_blank_and_whitespace_lines(tmp_path):
    """An empty line is skipped (as pandas does); a line of spaces is a row with too few
    fields, reported with its line number, not read as a row of NaN."""
    blank = tmp_path / "blank.csv"
    blank.write_text("a,b\n1,2\n\n3,4\n5,6\n")
    frame = read_csv(blank)
    assert frame.shape == (3, 2)
    x, _ = check_table(frame)
    assert x.tolist() == [[1, 2], [3, 4], [5, 6]]
    spaces = tmp_path / "spaces.csv"
    spaces.write_text("a,b\n1,2\n   \n3,4\n")
    with pytest.raises(InputError, match="line 3 has 1 fields but the header has 2"):
        read_csv(spaces)


def test_bfloat16_tensors_and_3d_arrays():
    """Found by the hostile sweep: bfloat16 raised torch's TypeError; a 3-D table was told to
    reshape(-1, 1)."""
    x = torch.randn(12, 3).to(torch.bfloat16)
    array, _ = check_table(x)
    assert array.dtype == np.float64 and np.array_equal(array, x.double().numpy())
    with pytest.raises(InputError, match=r"got shape \(1, 4, 3\)$"):
        check_table(np.ones((1, 4, 3)))


def test_a_file_without_header_is_refused_not_read_one_row_short(tmp_path):
    """Found by the hostile sweep: '1,2,3' as the first line became the column names."""
    path = tmp_path / "noheader.csv"
    path.write_text("1.5,2,3\n4,5,6.5\n7,8,9\n")
    with pytest.raises(InputError, match="seems to have no header row"):
        read_csv(path)
    path.write_text("x,2,3\n4,5,6.5\n7,8,9\n")  # one name is a name: a header
    assert list(read_csv(path).columns) == ["x", "2", "3"]
    for names in ("0,1,2", "1,2,3"):  # pandas' default names (DataFrame(array).to_csv)
        path.write_text(f"{names}\n4,5,6.5\n7,8,9\n")
        assert list(read_csv(path).columns) == names.split(",")
    path.write_text("1,2,3.5\n4,5,6.5\n7,8,9\n")
    with pytest.raises(InputError, match="no header row"):
        read_csv(path)


def test_model_arguments_make_numpy_and_numeric_pandas_tensors():
    import torch

    from pyrostruct.data import model_arguments

    x = np.arange(6.0).reshape(3, 2)
    args, kwargs = model_arguments(
        (x, np.array([1, 2]), pd.Series([True, False]), "text", None),
        {"y": pd.DataFrame({"a": [0.5, 1.5]}), "names": pd.Series(["a", "b"]), "k": 3},
    )
    assert args[0].dtype == torch.get_default_dtype() and torch.equal(args[0], torch.tensor(x).float())
    assert args[1].dtype == torch.int64 and args[2].dtype == torch.bool
    assert args[3:] == ("text", None)
    assert kwargs["y"].shape == (2, 1) and kwargs["y"].dtype == torch.get_default_dtype()
    assert isinstance(kwargs["names"], pd.Series) and kwargs["k"] == 3


def test_an_identical_copy_of_a_column_is_warned_of():
    """A copied column (hostile-user sweep: select-components spent 224 s in SMC on such a
    table, discover reported a positive ELBO per row) is named; distinct ones are not."""
    import warnings

    frame = pd.DataFrame({"a": [0.1, 0.5, 0.2, 0.9], "b": [1.0, 2.0, 4.0, 3.0]})
    with pytest.warns(UserWarning, match="columns 'a' and 'c' are identical; drop one of them"):
        check_table(frame.assign(c=frame["a"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_table(frame.assign(c=frame["a"] + 1e-12))  # near copies are the model's matter
