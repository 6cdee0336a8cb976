"""Reading and checking user data tables (the public boundary for data).

Every entry point that takes a data table (``discover``, ``select``, the CLI)
calls :func:`check_table` (and :func:`read_csv` for files). Problems are
reported as :class:`~pyrostruct.errors.InputError` naming the problem, the
column and the fix, in the style of scikit-learn's ``check_array``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pyrostruct.errors import InputError

__all__ = ["read_csv", "check_table"]


def read_csv(path: str | os.PathLike, *, exclude: Sequence[str] = ()) -> pd.DataFrame:
    """Read a CSV file with a header row.

    Raises :class:`InputError` for a missing, empty or unparsable file; data
    checks are left to :func:`check_table`. ``exclude`` names columns that must
    exist (for example an intervention column) and are kept as they are.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: the file is empty; expected a CSV with a header row")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise InputError(
            f"{path}: the file has no columns; expected a CSV with a header row"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        reason = str(e).strip().splitlines()[0]
        raise InputError(f"{path}: not a readable CSV file ({reason})") from None
    missing = [c for c in exclude if c not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: no column named {missing[0]!r}; columns are {list(frame.columns)}"
        )
    # pandas renames duplicate headers to "x.1"; detect them from the raw header.
    with open(path, encoding="utf-8", errors="replace") as f:
        header = [h.strip().strip('"') for h in f.readline().rstrip("\r\n").split(",")]
    _check_unique_names(header, source=path)
    return frame


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
    name: str = "data",
) -> tuple[np.ndarray, list[str]]:
    """Validate a numeric data table and return ``(array, column_names)``.

    Parameters
    ----------
    data : numpy.ndarray, torch.Tensor or pandas.DataFrame
        Shape ``(n_rows, n_columns)``. A DataFrame's column names become the
        names; otherwise columns are named ``"X0", "X1", ...``.
    min_rows, min_cols : int
        The fewest rows / columns the caller can use.
    allow_constant : bool
        Whether a column with a single repeated value is allowed (it cannot be
        standardized and carries no information for most models).
    name : str
        What to call the table in messages.

    Returns
    -------
    (numpy.ndarray of float64, list of str)

    Raises
    ------
    InputError
        Wrong dimensionality, too few rows or columns, duplicate column names,
        non-numeric columns, NaN or infinite values, constant columns.
    """
    if isinstance(data, pd.DataFrame):
        names = [str(c) for c in data.columns]
        _check_unique_names(names, source=name)
        for col in data.columns:
            column = data[col]
            if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
                example = next((v for v in data[col] if not _is_number(v)), data[col].iloc[0])
                raise InputError(
                    f"{name}: column {str(col)!r} is not numeric (found {example!r}); "
                    "encode it as numbers or drop it"
                )
        array = data.to_numpy(dtype=np.float64)
    else:
        if hasattr(data, "detach"):  # torch.Tensor
            data = data.detach().cpu().numpy()
        array = np.asarray(data)
        if array.dtype.kind not in "iuf":
            raise InputError(f"{name}: expected a numeric array, got dtype {array.dtype}")
        array = array.astype(np.float64)
        names = None
    if array.ndim != 2:
        raise InputError(
            f"{name}: expected a 2-D table of shape (rows, columns), got shape {array.shape}; "
            "use array.reshape(-1, 1) for a single column"
        )
    n, d = array.shape
    if names is None:
        names = [f"X{j}" for j in range(d)]
    if d < min_cols:
        raise InputError(
            f"{name}: found {d} column(s) (shape={array.shape}); at least {min_cols} needed"
        )
    if n < min_rows:
        raise InputError(
            f"{name}: found {n} row(s) (shape={array.shape}); at least {min_rows} needed"
        )
    bad = ~np.isfinite(array)
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        what = "NaN" if np.isnan(array[row, col]) else "an infinite value"
        raise InputError(
            f"{name}: column {names[col]!r} contains {what} (row {row}); "
            "remove or impute missing and infinite values first"
        )
    if not allow_constant:
        constant = np.flatnonzero(np.ptp(array, axis=0) == 0)
        if constant.size:
            raise InputError(
                f"{name}: column {names[constant[0]]!r} is constant; "
                "drop it (it carries no information)"
            )
    return array, names


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
