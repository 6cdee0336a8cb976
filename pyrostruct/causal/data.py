"""Data of a causal-discovery problem: numerically safe scaling, then :class:`Problem`.

Values anywhere in float64's range (``1e-300`` to ``1e308``) are brought to
order one by exact powers of two before any moment is computed, so squares
neither underflow nor overflow; the results are reported back in the data's
own units. A power-of-two scaling is exact in floating point: on ordinary
data nothing changes, bit for bit. :class:`Problem` is what every later stage of
:func:`~pyrostruct.causal.discover` reads: the scaled table as a tensor, the
node names and the intervention mask.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import torch

from pyrostruct.causal.interventions import parse_interventions, resolve_interventions
from pyrostruct.data import check_table, column_exponents
from pyrostruct.errors import InputError

#: The fewest rows ``discover`` accepts.
MIN_ROWS = 10

__all__ = ["Columns", "Problem", "prepare_columns", "warn_if_few_rows", "FewRowsWarning"]

#: In raw units (``standardize=False``) all columns share one scale factor, so
#: their magnitudes must lie within this many powers of two of each other.
_MAX_RAW_SPREAD = 400
#: Columns whose magnitudes differ by more than 2**this cannot share a model: the
#: weights between them in the data's units would overflow float64.
_MAX_WEIGHT_SPREAD = 900
#: Raw values whose largest magnitude is within 2**±this are used as they are.
_SAFE_EXPONENT = 400


class FewRowsWarning(UserWarning):
    """Fewer than twice as many rows as columns: the posterior leans on the prior."""


@dataclasses.dataclass
class Columns:
    """A table ready for the SEM: ``x`` (what the model sees) and the way back to units.

    Column ``j`` of the data is ``x[:, j] * sd[j] * 2**exponent[j]`` plus a
    constant (``sd`` stays finite where the data's standard deviation would
    overflow). ``elbo_shift`` turns a log density per row of ``x`` in raw
    units into one of the data (``-d log c`` for a common factor ``c``).
    """

    x: np.ndarray
    sd: np.ndarray
    exponent: np.ndarray
    elbo_shift: float = 0.0

    def to_data_units(self, weights: np.ndarray) -> np.ndarray:
        """Linear-SEM weights ``i -> j`` of ``x``'s columns in the data's units."""
        ratio = weights * self.sd[None, :] / self.sd[:, None]
        with np.errstate(over="ignore"):
            return np.ldexp(ratio, self.exponent[None, :] - self.exponent[:, None])


def prepare_columns(x: np.ndarray, *, standardize: bool, mask=None, names=None) -> Columns:
    """Scale a finite, non-constant ``(n, d)`` table for fitting.

    ``standardize=True``: every column to mean 0 and standard deviation 1, over
    the rows where it is not intervened on (``mask`` ``(n, d)``: a perfect
    intervention sets the column by another law, which says nothing of its units).
    ``standardize=False``: the raw units, divided by one common power of two
    only where squares would under- or overflow (the columns' ratios, so the
    SEM's weights, unchanged); refused when the columns' magnitudes differ by
    more than a factor ``2**400``, which no common unit holds.

    :raises InputError: columns whose magnitudes differ by more than ``2**900``
        (effects between them overflow float64 in any units), or by more than
        ``2**400`` in raw units; a column constant on its non-intervened rows.
    """
    d = x.shape[1]
    exponent = column_exponents(x)
    if int(exponent.max() - exponent.min()) > _MAX_WEIGHT_SPREAD:
        raise InputError(
            f"data: the columns' magnitudes differ by a factor of about "
            f"2**{int(exponent.max() - exponent.min())}; effects between them would not fit "
            "in a float64 (over 1e300): rescale the columns to comparable units first"
        )
    if standardize:
        scaled = np.ldexp(x, -exponent[None, :])
        if mask is None:
            mean, sd = scaled.mean(0), scaled.std(0)
        else:
            observed = np.ma.masked_array(scaled, mask=np.asarray(mask, dtype=bool))
            mean, sd = observed.mean(0).filled(0.0), observed.std(0).filled(0.0)
            if (sd <= 0).any():
                j = int(np.flatnonzero(sd <= 0)[0])
                name = repr(names[j]) if names is not None else j
                raise InputError(
                    f"data: column {name} is constant on the rows where it is not intervened "
                    "on; it carries no information there"
                )
        return Columns((scaled - mean) / sd, sd, exponent)
    lo, hi = int(exponent.min()), int(exponent.max())
    if hi - lo > _MAX_RAW_SPREAD:
        raise InputError(
            f"data: the columns' magnitudes differ by a factor of about 2**{hi - lo}, too much "
            "for one common unit; standardize them (the default; drop --no-standardize)"
        )
    common = 0 if -_SAFE_EXPONENT < hi < _SAFE_EXPONENT else hi
    return Columns(
        np.ldexp(x, -common), np.ones(d), np.zeros(d, dtype=np.int64), -d * common * math.log(2.0)
    )


def observational_moments(x: np.ndarray, mask) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of every column for a model without intercepts.

    A linear SEM without intercepts holds in every regime only for columns centred at
    their *observational* means: a node downstream of an intervened one has another mean
    in that regime, and centring it over all its rows leaves an intercept that a
    constant intervened column then stands in for (spurious edges from every node set to
    one value). So the moments come from the rows without any intervention, when there
    are at least two with a positive spread; else from each column's non-intervened
    rows.
    """
    if mask is not None:
        observational = ~np.asarray(mask, dtype=bool).any(1)
        if observational.sum() >= 2 and (x[observational].std(0) > 0).all():
            return x[observational].mean(0), x[observational].std(0)
        observed = np.ma.masked_array(x, mask=np.asarray(mask, dtype=bool))
        sd = observed.std(0).filled(0.0)
        return observed.mean(0).filled(0.0), np.where(sd > 0, sd, 1.0)
    sd = x.std(0)
    return x.mean(0), np.where(sd > 0, sd, 1.0)


def bge_columns(x: np.ndarray, mask, *, standardize: bool = True, names=None):
    """Columns for a model without intercepts (the BGe score): ``(z, mean, sd)`` with
    ``x = mean + z * sd`` column by column (``sd = 1`` unless ``standardize``).

    Each column is first divided by a power of two (exact) so that no square under- or
    overflows whatever its units, then centred (and scaled) by
    :func:`observational_moments`; ``mean`` and ``sd`` are in the data's units. Without
    ``standardize`` the columns keep their raw units up to one common power of two, as
    :func:`prepare_columns` does.

    :raises InputError: what :func:`prepare_columns` refuses (a column constant on its
        non-intervened rows, magnitudes too far apart).
    """
    columns = prepare_columns(x, standardize=standardize, mask=mask, names=names)
    if not standardize:
        mean, _ = observational_moments(columns.x, mask)
        return columns.x - mean, mean, np.ones(x.shape[1])
    exponent = column_exponents(x)
    scaled = np.ldexp(x, -exponent[None, :])
    mean, sd = observational_moments(scaled, mask)
    return (scaled - mean) / sd, np.ldexp(mean, exponent), np.ldexp(sd, exponent)


def check_data(data, interventions) -> tuple[np.ndarray, list, np.ndarray | None]:
    """``(x, names, mask)``: the numeric table, its column names and the intervention mask
    of :func:`~pyrostruct.causal.discover`'s ``data`` and ``interventions`` (see there).

    :raises InputError: bad data (:func:`pyrostruct.data.check_table`), no more rows than
        columns, or a bad intervention spec.
    """
    data, interventions, source = resolve_interventions(data, interventions)
    x, names = check_table(data, min_rows=MIN_ROWS, min_cols=2, name="data")
    n, d = x.shape
    if n <= d:
        raise InputError(
            f"data: {n} rows for {d} columns; with no more rows than columns every column is "
            f"an exact linear function of the others and the posterior degenerates: at least "
            f"{d + 1} rows are needed (and several per column for reliable edges)"
        )
    warn_if_few_rows(n, d)
    return x, names, parse_interventions(interventions, n, names, source=source)


def warn_if_few_rows(n: int, d: int) -> None:
    """Warn (:class:`FewRowsWarning`) when there are fewer than two rows per column."""
    if n < 2 * d:
        warnings.warn(
            f"data: {n} rows for {d} columns; with fewer than 2 rows per column the edge "
            "probabilities depend strongly on the prior (expected_edges, weight_prior)",
            FewRowsWarning,
            stacklevel=4,
        )


@dataclasses.dataclass(frozen=True)
class Problem:
    """A checked, scaled table ready for fitting: build with :meth:`create`.

    :ivar names: node names (the data's columns).
    :ivar columns: the scaled table and the way back to the data's units.
    :ivar x: ``columns.x`` as a tensor of torch's default dtype ``(n, d)``.
    :ivar mask: boolean tensor ``(n, d)`` of perfect interventions, or ``None``.
    :ivar mask_np: the same as a numpy array, or ``None``.
    """

    names: list
    columns: Columns
    x: torch.Tensor
    mask: torch.Tensor | None
    mask_np: np.ndarray | None

    @classmethod
    def create(cls, columns: Columns, names, mask=None) -> Problem:
        """:param columns: from :func:`prepare_columns`.
        :param names: one name per column.
        :param mask: ``(n, d)`` boolean intervention mask, or ``None``.
        """
        x = torch.tensor(np.array(columns.x), dtype=torch.get_default_dtype())
        return cls(
            names=list(names),
            columns=columns,
            x=x,
            mask=None if mask is None else torch.as_tensor(mask),
            mask_np=None if mask is None else np.asarray(mask, dtype=bool),
        )

    @property
    def n(self) -> int:
        """Number of rows."""
        return self.x.shape[0]

    @property
    def d(self) -> int:
        """Number of nodes."""
        return self.x.shape[1]
