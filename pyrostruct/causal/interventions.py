"""Perfect interventions per row: parsing a user's spec into an ``(n, d)`` mask.

A row's entry names the nodes set from outside in that row (a perfect, or
``do``, intervention: Eberhardt & Scheines, "Interventions and causal
inference", 2007). :func:`parse_interventions` accepts a boolean mask or one
entry per row and refuses what is ambiguous; :func:`resolve_interventions`
takes the spec out of a DataFrame column; :func:`target_sets` lists the
distinct intervened node sets (the regimes) of a mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pyrostruct.data import parses_as_number, row_label
from pyrostruct.errors import InputError

__all__ = ["parse_interventions", "resolve_interventions", "target_sets"]

_FORMS = (
    "accepted per row: an empty cell (observational), node names separated by ';' "
    "(e.g. 'X1' or 'X1;X3'), or in Python a list of names or node indices"
)
_FLAGS = {"true", "false", "yes", "no", "0", "1"}


def _targets(entry, row: int, names: Sequence[str], source: str) -> list[int]:
    """The node indices one row's entry names (``[]`` = observational)."""
    index = {str(name): j for j, name in enumerate(names)}
    where = f"{source}, {row}"

    def refuse(what: str):
        raise InputError(f"{where}: {what}; {_FORMS}")

    if not isinstance(entry, (str, list, tuple, set, frozenset, np.ndarray)) and pd.isna(entry):
        return []  # None, NaN, pd.NA, NaT
    if isinstance(entry, str):
        out = []
        for part in entry.split(";"):
            token = part if part in index else part.strip()  # exact names first
            if not token:
                continue
            if token in index:
                out.append(index[token])
            elif token.lower() in _FLAGS:
                refuse(f"{token!r} looks like a yes/no flag, not the name of a node")
            elif parses_as_number(token):
                refuse(f"{token!r} is a number, not the name of a node")
            else:
                refuse(f"unknown node {token!r} (nodes are {list(names)[:20]})")
        return out
    if isinstance(entry, (bool, np.bool_, int, np.integer, float, np.floating)):
        refuse(f"{entry!r} is ambiguous (a yes/no flag or a node index?)")
    if isinstance(entry, (list, tuple, set, frozenset, np.ndarray)):
        out = []
        for target in entry:
            if isinstance(target, str) and target in index:
                out.append(index[target])
            elif isinstance(target, (int, np.integer)) and not isinstance(target, (bool, np.bool_)):
                if not 0 <= int(target) < len(names):
                    refuse(f"node index {int(target)} is out of range ({len(names)} nodes)")
                out.append(int(target))
            else:
                refuse(f"{target!r} is neither a node name nor a node index")
        return out
    refuse(f"cannot read an entry of type {type(entry).__name__}")


def parse_interventions(
    interventions, num_rows: int, names: Sequence[str], *, source: str = "interventions"
):
    """Turn an intervention spec into an ``(n, d)`` boolean mask (``None`` if there is none).

    Accepted: an ``(n, d)`` boolean array (``True`` = node intervened in that
    row; also nested lists of booleans, or a DataFrame with a column per node name); or
    one entry per row, each ``None`` / ``""`` / NaN / ``pd.NA`` (observational),
    a string of node names separated by ``;`` (``"X1;X3"``), or a list of node
    names or indices. Anything else is ambiguous and refused: a bare number or
    boolean per row (``0``/``1``, ``True``/``False``: a flag or an index?), a
    number or flag inside a string, an unknown name. Errors are
    :class:`InputError` naming ``source`` and the row.
    """
    if interventions is None:
        return None
    d = len(names)
    if hasattr(interventions, "detach"):
        interventions = interventions.detach().cpu().numpy()
    if isinstance(interventions, pd.DataFrame):
        interventions = _frame_mask(interventions, names, source)
    elif isinstance(interventions, (list, tuple)) and len(interventions):
        interventions = _nested_mask(interventions, num_rows, d, source)
    if isinstance(interventions, np.ndarray) and interventions.ndim == 2:
        if interventions.shape != (num_rows, d):
            raise InputError(
                f"{source}: expected a mask of shape ({num_rows}, {d}), got {interventions.shape}"
            )
        if interventions.dtype != bool and not np.isin(interventions, (0, 1)).all():
            raise InputError(f"{source}: a mask must contain only True/False (or 0/1)")
        mask = interventions.astype(bool)
    else:
        if isinstance(interventions, (str, bytes)) or not hasattr(interventions, "__len__"):
            raise InputError(
                f"{source}: expected a column name, an (n, d) mask or one entry per row, got "
                f"{type(interventions).__name__}"
            )
        entries = list(interventions)
        if len(entries) != num_rows:
            raise InputError(
                f"{source}: has {len(entries)} entries but the data has {num_rows} rows"
            )
        mask = np.zeros((num_rows, d), dtype=bool)
        for row, entry in enumerate(entries):
            mask[row, _targets(entry, row_label(interventions, row), names, source)] = True
    if mask.all(0).any():
        j = int(np.flatnonzero(mask.all(0))[0])
        raise InputError(
            f"{source}: node {names[j]!r} is intervened on in every row; "
            "keep some rows where its mechanism is observed"
        )
    return mask if mask.any() else None


def _frame_mask(frame: pd.DataFrame, names: Sequence[str], source: str) -> np.ndarray:
    """A DataFrame mask as an array, its columns put in the order of ``names``."""
    columns = [str(c) for c in frame.columns]
    if sorted(columns) != sorted(str(name) for name in names):
        raise InputError(
            f"{source}: a DataFrame mask needs one column per node, named as the data's "
            f"columns {list(names)[:20]}; got {columns[:20]}"
        )
    return frame.set_axis(columns, axis=1)[[str(name) for name in names]].to_numpy()


def _nested_mask(rows, num_rows: int, d: int, source: str):
    """Nested lists of ``True``/``False`` as a mask array; nested ``0``/``1`` lists of mask
    shape refused (read per row, they would be lists of node indices); else ``rows``."""
    try:
        array = np.asarray(rows)
    except ValueError:  # ragged: one entry per row
        return rows
    if array.shape != (num_rows, d) or array.dtype == object:
        return rows
    if array.dtype == bool:
        return array
    if d > 2 and np.isin(array, (0, 1)).all():
        raise InputError(
            f"{source}: nested lists of 0/1 of shape ({num_rows}, {d}) look like a mask, but "
            "per row they would be read as node indices; pass the mask as a boolean array "
            "(np.asarray(mask, dtype=bool)) or, per row, the names of the intervened nodes"
        )
    return rows


def _aligned(spec, data: pd.DataFrame, source: str):
    """A pandas spec (Series or DataFrame) on the rows of ``data``: reindexed to its index
    (pandas aligns by labels), or refused when the labels differ."""
    if spec.index.equals(data.index):
        return spec
    if not (spec.index.is_unique and data.index.is_unique) or set(spec.index) != set(data.index):
        raise InputError(
            f"{source}: its index does not match the data's rows (labels "
            f"{list(spec.index[:5])} against {list(data.index[:5])}); give it the data's index, "
            "or pass a list or array in the data's row order"
        )
    return spec.reindex(data.index)


def resolve_interventions(data, interventions):
    """Split an intervention column off ``data``: ``(data, spec, source)``.

    ``interventions`` given as a string names a column of the DataFrame
    ``data``; it is removed from the data and returned as the spec, with
    ``source`` naming it for messages. A pandas Series or DataFrame spec with a DataFrame
    ``data`` is aligned on the data's index (refused when the labels differ); any other
    spec passes through.
    """
    if isinstance(interventions, str):
        if not isinstance(data, pd.DataFrame):
            raise InputError(
                f"interventions={interventions!r} names a column, which needs a pandas DataFrame"
            )
        if interventions not in data.columns:
            raise InputError(
                f"no intervention column {interventions!r}; columns are {list(data.columns)}"
            )
        column = data[interventions].copy()
        column.attrs = dict(data.attrs)  # where the rows came from, for messages
        return data.drop(columns=[interventions]), column, f"intervention column {interventions!r}"
    if isinstance(interventions, (pd.Series, pd.DataFrame)) and isinstance(data, pd.DataFrame):
        interventions = _aligned(interventions, data, "interventions")
    return data, interventions, "interventions"


def target_sets(mask) -> list[list[int]]:
    """The distinct non-empty intervened node sets of the rows of ``mask`` ``(n, d)``."""
    if mask is None:
        return []
    rows = np.unique(np.asarray(mask, dtype=bool), axis=0)
    return [np.flatnonzero(r).tolist() for r in rows if r.any()]
