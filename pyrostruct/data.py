"""Reading and checking user data tables (the public boundary for data).

Every entry point that takes a data table (``discover``, ``select``, the CLI)
calls :func:`check_table` (and :func:`read_csv` for files). Problems are
reported as :class:`~pyrostruct.errors.InputError` naming the problem, the
column, the line of the file and the fix, in the style of scikit-learn's
``check_array``.

**The CSV format.** One header row of unique, non-empty column names (not all
numbers, unless they count 0..d-1 or 1..d as pandas' default names do: a file
whose first line is data is refused rather than losing that row), then one row
per observation with exactly as many fields as the header; fields separated by
``sep`` (default ``,``), numbers with a ``.`` decimal point (``decimal=","``
reads decimal commas); a UTF-8 byte-order mark is ignored. Blank lines are
skipped. Every data cell of a numeric column must be a number; empty cells,
``NA`` and ``NaN`` are read as missing values (NaN), which :func:`check_table`
refuses unless its caller handles them (``discover``'s ``missing=``). Text is
refused except in the columns the caller declares categorical (``categorical=``).
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from pyrostruct.errors import InputError

__all__ = [
    "read_csv",
    "check_table",
    "column_exponents",
    "parses_as_number",
    "is_real_number",
    "model_arguments",
]

#: DataFrame ``attrs`` key under which :func:`read_csv` keeps where the table
#: came from: ``{"path": str, "lines": list of the file line of each row}``.
SOURCE_ATTR = "pyrostruct_source"


def row_label(data, row: int) -> str:
    """``"line 7 of data.csv"`` for a table read by :func:`read_csv`, else ``"row 5"``."""
    attrs = getattr(data, "attrs", None) if isinstance(data, (pd.DataFrame, pd.Series)) else None
    source = attrs.get(SOURCE_ATTR) if attrs else None
    if source is not None and row < len(source["lines"]):
        return f"line {source['lines'][row]} of {source['path']}"
    return f"row {row}"


def _scan(
    text: str, path: str, sep: str, keep: Sequence[str] = ()
) -> tuple[list[str], list[int], dict[str, list[str]]]:
    """The header, the file line of every data row and the verbatim text of the columns
    ``keep`` (those of them in the header); refuses ragged rows."""
    lines: list[int] = []
    kept: dict[str, list[str]] = {}
    with io.StringIO(text, newline="") as f:
        reader = csv.reader(f, delimiter=sep, strict=True)
        header = None
        try:
            for fields in reader:
                if not fields:
                    continue  # an empty line (pandas skips it too)
                if header is None:
                    header = fields
                    kept = {c: [] for c in keep if c in header}
                    where = {c: header.index(c) for c in kept}
                    continue
                if len(fields) != len(header):
                    raise InputError(
                        f"{path}: line {reader.line_num} has {len(fields)} fields but the "
                        f"header has {len(header)}; every row needs one value per column"
                        + _delimiter_hint(fields, sep)
                    )
                lines.append(reader.line_num)
                for c, j in where.items():
                    kept[c].append(fields[j])
        except csv.Error as e:
            raise InputError(
                f"{path}: not a readable CSV file (line {reader.line_num}: {e})"
            ) from None
    if header is None:
        raise InputError(f"{path}: the file has no columns; expected a CSV with a header row")
    return header, lines, kept


def _delimiter_hint(fields: Sequence[str], sep: str, others: str = ";\t") -> str:
    """A hint that the file uses one of ``others`` as separator, where ``fields`` hold it."""
    text = sep.join(fields)
    for other, flag in ((";", "';'"), ("\t", "'\\t'"), (",", "','")):
        if other in others and other != sep and other in text:
            return f" (the file looks {flag}-separated: pass sep={flag})"
    return ""


def read_csv(
    path: str | os.PathLike,
    *,
    exclude: Sequence[str] = (),
    sep: str = ",",
    decimal: str = ".",
    categorical: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read a CSV file in the format of this module's docstring.

    Other checks of the values are left to :func:`check_table`, which names
    file lines for tables read here.

    :param path: the CSV file.
    :type path: str or os.PathLike
    :param exclude: columns that must exist (for example an intervention
        column): they are read as text, verbatim (only an empty cell is empty: ``NA``
        or ``null`` there is text, a node's name), and not checked.
    :type exclude: sequence of str
    :param str sep: the field separator, one character (default ``,``).
    :param str decimal: the decimal mark, ``"."`` (default) or ``","``.
    :param categorical: columns that must exist and may hold text (categories): read
        as text, empty cells and ``NA`` as missing. ``None`` (default): the caller
        takes no categorical columns; a sequence, even empty, says that it does, and
        the refusal of a text column then points to ``--categorical``.
    :type categorical: sequence of str, optional
    :returns: the table, with the file's column names; its ``attrs`` keep the
        path and the file line of every row (:data:`SOURCE_ATTR`).
    :rtype: pandas.DataFrame
    :raises InputError: for a bad ``sep`` or ``decimal``, a missing, empty,
        ragged or unparsable file, an empty or duplicate column name, no data
        rows, or a cell of a data column (not in ``exclude`` or ``categorical``)
        that is not a number (naming its line).
    """
    path = os.fspath(path)
    if not isinstance(sep, str) or len(sep) != 1:
        raise InputError(f"sep must be one character (',', ';', '\\t', ...), got {sep!r}")
    if sep in '\r\n"':
        raise InputError(f"sep cannot be {sep!r}: CSV quotes fields with '\"' and ends rows with "
                         "line breaks; use ',', ';' or '\\t'")  # fmt: skip
    if decimal not in (".", ","):
        raise InputError(f"decimal must be '.' or ',', got {decimal!r}")
    if decimal == sep:
        raise InputError(
            f"the field separator and the decimal mark cannot both be {sep!r} "
            "(--sep and --decimal / sep= and decimal=)"
        )
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, not a CSV file")
    try:  # read once: a pipe (``<(...)``) can only be read once
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    except OSError as e:  # no permission to read, a device that refuses
        raise InputError(f"{path}: cannot be read ({e.strerror or type(e).__name__})") from None
    if not text:
        raise InputError(f"{path}: the file is empty; expected a CSV with a header row")
    header, lines, verbatim = _scan(text, path, sep, keep=exclude)
    for j, name in enumerate(header):
        if not name.strip():
            raise InputError(f"{path}: column {j + 1} of the header has no name; name every column")
    _check_unique_names(header, source=path)
    counting = [str(i + start) for start in (0, 1) for i in range(len(header))]
    default_names = header in (counting[: len(header)], counting[len(header) :])  # pandas' 0..d-1
    if all(parses_as_number(name) for name in header) and not default_names and lines:
        raise InputError(
            f"{path}: every name in the first line is a number ({', '.join(header[:4])}"
            f"{', ...' if len(header) > 4 else ''}): the file seems to have no header row, and "
            "its first row would be lost; add a header line of column names"
        )
    # one column: a comma in its name means a comma file too (not so in a ragged row,
    # where it can be a decimal comma)
    hint = _delimiter_hint(header, sep, others=";\t,") if len(header) == 1 else ""
    text_columns = list(exclude) + list(categorical or ())
    missing = [c for c in text_columns if c not in header]
    if missing:
        raise InputError(f"{path}: no column named {missing[0]!r}; columns are {header}{hint}")
    if not lines:
        raise InputError(f"{path}: the header has no data rows below it{hint}")
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=sep,
            decimal=decimal,
            index_col=False,
            dtype={c: str for c in text_columns},
        )
    except (pd.errors.ParserError, ValueError) as e:
        reason = str(e).strip().splitlines()[0]
        raise InputError(f"{path}: not a readable CSV file ({reason})") from None
    if frame.shape != (len(lines), len(header)):  # pandas and the csv module disagree
        raise InputError(
            f"{path}: not a readable CSV file (read as {frame.shape[0]} rows and "
            f"{frame.shape[1]} columns, but the file has {len(lines)} rows of {len(header)} "
            "fields); check its quoting"
        )
    frame.columns = header  # pandas would rename duplicates / strip nothing; keep the real names
    for col, cells in verbatim.items():  # a node named NA is a name there, only '' is empty
        frame[col] = np.asarray(cells, dtype=object)
    frame.attrs[SOURCE_ATTR] = {"path": path, "lines": lines}
    for col in header:
        if col in text_columns or pd.api.types.is_numeric_dtype(frame[col]):
            continue
        # pandas' number parser is stricter than float() ('1_000', other scripts' digits)
        row = next((i for i, v in enumerate(frame[col]) if not parses_as_number(v)), None)
        if row is None:
            row = next(i for i, v in enumerate(frame[col]) if isinstance(v, str))
        value = frame[col].iloc[row]
        decimal_hint = hint  # a one-column header: the separator's hint says it all
        if not hint and isinstance(value, str):
            if decimal == "." and sep != ",":
                if parses_as_number(value.replace(",", ".")):
                    decimal_hint = " (decimal commas? pass decimal=',')"
            elif decimal == "," and parses_as_number(value):
                decimal_hint = " (the numbers use '.' as decimal mark: drop --decimal ',')"
        if categorical is not None and not parses_as_number(value) and not hint:
            decimal_hint = (
                f" (if it holds categories, declare it: --categorical {col}){decimal_hint}"
            )
        if _names_columns(frame[col], set(header) - {col}):
            decimal_hint = (
                f" (it names other columns: if it marks interventions, pass "
                f"--intervention-column {col})"
            )
        raise InputError(
            f"{path}: column {col!r} is not numeric: {value!r} at line {lines[row]}; "
            f"encode it as numbers or drop it{decimal_hint}"
        )
    return frame


def _names_columns(values, names: set) -> bool:
    """Whether every entry is empty or other columns' names joined by ``;`` (an
    intervention column), with at least one name."""
    seen = False
    for v in values:
        text = "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v).strip()
        if text:
            if not all(part.strip() in names for part in text.split(";")):
                return False
            seen = True
    return seen


#: A number as pandas reads one: optional sign, digits with one ``.``, optional exponent,
#: or inf/nan (float() also takes '1_000' and other scripts' digits; pandas does not).
_NUMBER = re.compile(
    r"\s*[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf|infinity|nan)\s*", re.I | re.ASCII
)


def parses_as_number(value) -> bool:
    """Whether ``value`` is a number as pandas reads one (a string) or a real number."""
    if isinstance(value, str):
        return _NUMBER.fullmatch(value) is not None
    return is_real_number(value)


def _check_unique_names(names: Sequence[str], *, source: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputError(
                f"{source}: duplicate column name {name!r}; give every column a unique name"
            )
        seen.add(name)


def check_table(
    data,
    *,
    min_rows: int = 2,
    min_cols: int = 1,
    allow_constant: bool = False,
    allow_missing: bool = False,
    name: str = "data",
    missing_hint: str = "",
    text_hint: str = "",
) -> tuple[np.ndarray, list[str]]:
    """Validate a numeric data table and return ``(array, column_names)``.

    :param data: shape ``(n_rows, n_columns)``. A DataFrame's column names become
        the names; otherwise columns are named ``"X0", "X1", ...``.
    :type data: numpy.ndarray, torch.Tensor or pandas.DataFrame
    :param int min_rows: the fewest rows the caller can use.
    :param int min_cols: the fewest columns the caller can use.
    :param bool allow_constant: whether a column with a single repeated value is
        allowed (it cannot be standardized and carries no information for most
        models).
    :param bool allow_missing: whether NaN cells (missing values: empty cells, ``NA``,
        ``None``) are returned as NaN rather than refused; infinite values are refused
        either way, a column with no value at all too, and a column is constant when its
        observed values are.
    :param str name: what to call the table in messages.
    :param str missing_hint: appended to the refusal of a NaN cell (the caller's option
        that accepts missing values, if it has one).
    :param str text_hint: appended to the refusal of a non-numeric column (the caller's
        option that accepts one, if it has one).
    :returns: the values as float64 and the column names.
    :rtype: tuple(numpy.ndarray, list(str))
    :raises InputError: for the wrong dimensionality, too few rows or columns,
        duplicate column names, non-numeric columns, NaN (unless ``allow_missing``) or
        infinite values, or constant columns. Rows are named by their file line for
        tables from :func:`read_csv`, else by their position (from 0).
    """
    if isinstance(data, pd.DataFrame):
        names = [str(c) for c in data.columns]
        _check_unique_names(names, source=name)
        _check_shape(data.shape, min_rows, min_cols, name)
        columns = {}
        for j, col in enumerate(data.columns):
            column = data.iloc[:, j]
            if column.dtype == object and all(is_real_number(v) for v in column):
                column = column.astype(np.float64)  # numbers held as Python objects
            columns[j] = column
            if pd.api.types.is_complex_dtype(column):
                raise InputError(
                    f"{name}: column {str(col)!r} holds complex numbers; pass real parts, "
                    "imaginary parts or magnitudes as columns of their own"
                )
            if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
                row = next((i for i, v in enumerate(column) if not is_real_number(v)), None)
                found = ""
                if row is not None:
                    value = column.iloc[row]  # a numpy scalar shown as Python writes it
                    value = value.item() if isinstance(value, np.generic) else value
                    found = f" (found {value!r}, {row_label(data, row)})"
                raise InputError(
                    f"{name}: column {str(col)!r} is not numeric{found}; "
                    f"encode it as numbers or drop it{text_hint}"
                )
        array = (
            np.stack([c.to_numpy(dtype=np.float64, na_value=np.nan) for c in columns.values()], 1)
            if columns
            else data.to_numpy(dtype=np.float64)
        )
    else:
        if isinstance(data, (str, bytes, os.PathLike)):
            raise InputError(
                f"{name}: got a path, not a table: read it first (pandas.read_csv({data!r})), "
                "or run the command-line tool on the file"
            )
        if hasattr(data, "detach"):  # torch.Tensor (bfloat16 has no numpy dtype)
            data = data.detach().cpu()
            data = (data.double() if data.is_floating_point() else data).numpy()
        if np.ma.is_masked(data):
            raise InputError(
                f"{name}: the masked array has masked entries; fill them (array.filled(...)) "
                "or drop those rows first"
            )
        array = np.asarray(data)
        if array.dtype.kind not in "iuf":
            raise InputError(f"{name}: expected a numeric array, got dtype {array.dtype}")
        array = array.astype(np.float64)
        names = None
    if array.ndim != 2:
        hint = "; use array.reshape(-1, 1) for a single column" if array.ndim == 1 else ""
        raise InputError(
            f"{name}: expected a 2-D table of shape (rows, columns), got shape {array.shape}" + hint
        )
    _check_shape(array.shape, min_rows, min_cols, name)
    if names is None:
        names = [f"X{j}" for j in range(array.shape[1])]
    missing = np.isnan(array)
    bad = ~np.isfinite(array) & ~missing if allow_missing else ~np.isfinite(array)
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        if np.isnan(array[row, col]):
            raise InputError(
                f"{name}: column {names[col]!r} contains a missing value (NaN) "
                f"({row_label(data, row)}); remove or impute missing values first{missing_hint}"
            )
        raise InputError(
            f"{name}: column {names[col]!r} contains an infinite value "
            f"({row_label(data, row)}); remove or replace infinite values first"
        )
    if missing.all(0).any():  # only with allow_missing
        raise InputError(
            f"{name}: column {names[int(np.flatnonzero(missing.all(0))[0])]!r} has no values "
            "(every cell is missing); drop it"
        )
    if not allow_constant:
        observed = np.ma.masked_array(array, mask=missing)
        constant = np.flatnonzero(np.asarray(observed.max(0) - observed.min(0)) == 0)
        if constant.size:
            raise InputError(
                f"{name}: column {names[constant[0]]!r} is constant; "
                "drop it (it carries no information)"
            )
        _warn_identical_columns(array, names, name)
    return array, names


def _warn_identical_columns(array: np.ndarray, names: list[str], name: str) -> None:
    """Warn of the first column that is an exact copy of an earlier one: it carries no
    information of its own, and a model of both is degenerate (a noiseless edge between
    them, a singular covariance: select_components spent minutes in SMC on such a table)."""
    seen: dict[int, int] = {}
    for j in range(array.shape[1]):
        key = hash(array[:, j].tobytes())
        k = seen.setdefault(key, j)
        if k != j and np.array_equal(array[:, k], array[:, j], equal_nan=True):
            warnings.warn(
                f"{name}: columns {names[k]!r} and {names[j]!r} are identical; drop one of them "
                "(a copy carries no information of its own and makes the model degenerate)",
                UserWarning,
                stacklevel=3,
            )
            return


def column_exponents(x: np.ndarray) -> np.ndarray:
    """Per column, ``e`` with ``max |x| / 2**e`` in ``[0.5, 1)`` (0 for an all-zero column):
    dividing by ``2**e`` is exact and brings every value to order one, so that no square
    under- or overflows (values from 1e-300 to 1e308)."""
    return np.frexp(np.abs(x).max(0))[1].astype(np.int64)


def _check_shape(shape: tuple, min_rows: int, min_cols: int, name: str) -> None:
    n, d = shape
    if d < min_cols:
        raise InputError(f"{name}: found {d} column(s) (shape={shape}); at least {min_cols} needed")
    if n < min_rows:
        raise InputError(f"{name}: found {n} row(s) (shape={shape}); at least {min_rows} needed")


def is_real_number(value, *, finite: bool = False) -> bool:
    """Whether ``value`` is a real Python or numpy number (not a bool), and finite if asked."""
    real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )
    return real and (not finite or math.isfinite(value))


def model_arguments(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """A user model's arguments with NumPy arrays and numeric pandas objects made tensors.

    Pyro's distributions take tensors only: a NumPy array passed to ``fit`` or
    ``select`` failed inside the model ("'numpy.ndarray' object has no attribute
    'dim'", once per candidate). Floating arrays become tensors of torch's default
    dtype (the dtype of the model's parameters), integer and boolean ones keep
    their type; everything else is passed on as it is.
    """

    def convert(value):
        if isinstance(value, (pd.DataFrame, pd.Series)):
            array = value.to_numpy()
            if array.dtype.kind not in "fiub":
                return value
            value = array
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiub":
            return value
        if value.dtype.kind == "f":
            return torch.as_tensor(value, dtype=torch.get_default_dtype())
        return torch.as_tensor(value)

    return tuple(convert(a) for a in args), {k: convert(v) for k, v in kwargs.items()}
