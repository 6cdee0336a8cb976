"""Real tables for :func:`~pyrostruct.causal.discover`: missing cells and mixed columns.

:func:`prepare_table` turns ``discover``'s ``data``, ``interventions``, ``missing``,
``transform`` and ``categorical`` arguments into the numeric table the rest of the
pipeline fits (:class:`Table`), with a report of what was done for the result's
metadata.

**Missing cells** (``missing=``):

- ``"error"`` (default): a missing cell is refused, naming the column and the row.
- ``"drop"``: complete rows only (listwise deletion; valid when cells are missing
  completely at random, and then only less efficient).
- ``"pairwise"``: the means from each column's observed cells, the covariance of
  every pair from the rows where both are observed (pairwise deletion), repaired to
  the nearest correlation matrix with eigenvalues at least :data:`MIN_EIGENVALUE`
  by Higham's alternating projections (Higham, "Computing the nearest correlation
  matrix - a problem from finance", IMA J. Numer. Anal. 2002; with the projection
  onto that set of matrices in place of the positive semidefinite cone), then
  rescaled by the columns' standard deviations. The fit then uses a
  *moment-matched table* (:func:`moment_table`): ``n_eff`` rows whose column means
  and covariance equal the estimates exactly (Gaussian rows, whitened to exactly
  zero mean and identity covariance, times the Cholesky factor). This is exact,
  not an imputation: the linear Gaussian SEM's likelihood, its least-squares start
  and the order search depend on the data only through the means and the second
  moments (the Gram matrix), so every stage sees exactly the estimated moments.
  Hence ``"pairwise"`` is refused for models whose likelihood is row-wise (the MLP
  SEM, any ``batch_size``), and with interventions (the regimes would need moments
  of their own).
- ``"em"``: the same, with the maximum-likelihood mean and covariance of a Gaussian
  with missing cells (:func:`em_moments`, expectation-maximization) in place of the
  pairwise estimates: one consistent positive definite matrix, valid when cells are
  missing at random (not only completely at random). Pairwise deletion is fragile on
  strongly correlated columns: each correlation comes from other rows, and errors that
  are small entry by entry become large in the partial correlations once the smallest
  eigenvalue of the correlation matrix is of their order. Measured on simulated linear
  SEMs (d = 8, n = 1000, 5 seeds, smallest eigenvalue 0.001-0.01), see
  ``tests/causal/test_tables.py``.

  **Effective sample size** (both). The moment-matched table has ``n_eff`` rows, the
  *fewest rows in which any two columns are both observed*. The linear SEM's
  posterior takes its confidence from the row count; the full ``n`` would claim
  information that the pairs observed together less often do not have (a pair
  seen together in 40% of the rows has a covariance as uncertain as one from
  ``0.4 n`` rows). The minimum never overstates any entry; its price is power
  for edges among well-observed columns when one column is much worse than the
  rest (drop that column, or ``missing="drop"``, if that matters more).

**Mixed columns** (``transform=``, ``categorical=``): the Gaussian copula (the
nonparanormal of Liu, Lafferty & Wasserman, "The nonparanormal", JMLR 2009; for
binary and ordinal data, Harris & Drton, "PC algorithm for nonparanormal graphical
models", JMLR 2013, and the copula PC of Cui, Groot & Heskes, "Copula PC algorithm
for causal discovery from mixed data", ECML-PKDD 2016): every column is replaced by
its rank-based normal scores ``Phi^{-1}(R / (m + 1))`` (van der Waerden scores; ``R``
the mid-rank among the column's ``m`` observed cells, so a binary or ordinal column
keeps one value per level). Liu et al.'s winsorized scores clip the extreme ranks,
which ties the extreme values of a continuous column and can merge rare levels of
an ordinal one; the van der Waerden scores never reach the clipping region, so they
are used instead. The scores are invariant to strictly increasing transformations
of a column. Edge weights between transformed columns are on the normal-scores
scale (standard deviations of the scores), not in the data's units.

``transform="auto"`` (default) applies the copula to every column when some column
is not continuous: declared categorical, or with at most :data:`MAX_LEVELS` distinct
values that are also at most half its observed cells (a continuous column has
nearly as many values as rows; a coded column has a few, each repeated); otherwise
the table is left as it is, bit for bit. ``"copula"`` always applies it, ``"none"``
never (declared categories are then used as their codes).

``categorical=``: columns that hold categories. Text is accepted in them, and
elsewhere refused. A binary column (two levels) may be unordered: its codes follow
the sorted level names, and swapping them only flips the sign of its edges'
weights. More levels need an order, which ranks use: a ``pandas.Categorical`` with
``ordered=True`` (its category order), or numbers (their numeric order). Unordered
text with more than two levels is refused: ranks of an arbitrary level order would
invent an ordering, and dummy coding breaks the copula model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import special, stats

from pyrostruct.causal.data import MIN_ROWS, warn_if_few_rows
from pyrostruct.causal.interventions import parse_interventions, resolve_interventions
from pyrostruct.data import check_table, parses_as_number
from pyrostruct.errors import InputError

__all__ = [
    "MISSING_MODES",
    "TRANSFORMS",
    "MAX_LEVELS",
    "MAX_MISSING_FRACTION",
    "MIN_EIGENVALUE",
    "Table",
    "prepare_table",
    "pairwise_moments",
    "em_moments",
    "nearest_correlation",
    "moment_table",
    "normal_scores",
    "column_kind",
]

#: ``discover``'s ``missing=`` options.
MISSING_MODES = ("error", "drop", "pairwise", "em")
#: The modes that fit through a moment-matched table.
_MOMENTS = ("pairwise", "em")
#: ``discover``'s ``transform=`` options.
TRANSFORMS = ("auto", "none", "copula")
#: A column with at most this many distinct values (and at most half as many as its
#: observed cells) is binary or ordinal for ``transform="auto"``.
MAX_LEVELS = 10
#: A column missing in more than this fraction of the rows is refused.
MAX_MISSING_FRACTION = 0.5
#: The smallest eigenvalue of the repaired pairwise correlation matrix.
MIN_EIGENVALUE = 1e-4
#: The moment-matched table's rows come from this fixed seed: they depend only on the
#: data (and only their moments, which are exact, reach the fit).
_TABLE_SEED = 0

_HINT_MISSING = (
    "; or pass missing='drop' (complete rows), 'em' or 'pairwise' (moments) to discover "
    "(--missing drop|em|pairwise on the command line)"
)
_HINT_TEXT = " (or declare it categorical: categorical=[...], --categorical COL)"


@dataclasses.dataclass(frozen=True)
class Table:
    """The table ``discover`` fits and what was done to get it.

    :ivar x: ``(n, d)`` float64, no missing cell: the complete rows, their normal
        scores, or the moment-matched table of pairwise moments.
    :ivar names: the column names.
    :ivar mask: ``(n, d)`` boolean intervention mask of ``x``'s rows, or ``None``.
    :ivar missing: the report of missing cells (JSON data, ``metadata["missing"]``).
    :ivar transform: column name -> ``"none"``, ``"copula-continuous"``,
        ``"copula-binary"`` or ``"copula-ordinal"`` (``metadata["transform"]``).
    :ivar levels: declared categorical text columns -> their levels in code order.
    """

    x: np.ndarray
    names: list
    mask: np.ndarray | None
    missing: dict
    transform: dict
    levels: dict


def prepare_table(
    data,
    interventions=None,
    *,
    missing: str = "error",
    transform: str = "auto",
    categorical: Sequence | None = None,
) -> Table:
    """Check ``discover``'s data and apply its ``missing`` and ``transform`` options.

    :param data: the ``(n, d)`` table (see :func:`~pyrostruct.causal.discover`).
    :param interventions: the intervention spec (a column name of ``data``, a mask or
        one entry per row).
    :param str missing: ``"error"``, ``"drop"`` or ``"pairwise"`` (module docstring).
    :param str transform: ``"auto"``, ``"none"`` or ``"copula"`` (module docstring).
    :param categorical: names (or indices) of the columns that hold categories.
    :type categorical: sequence of str or int, optional
    :returns: the table to fit and the report.
    :rtype: Table
    :raises InputError: an unknown option; what
        :func:`~pyrostruct.data.check_table` refuses (a missing cell with
        ``missing="error"``, text outside the categorical columns); an unordered
        categorical column with more than two levels; a column missing in more than
        half its rows; too few complete rows (``"drop"``); two columns observed
        together in fewer than ``MIN_ROWS`` rows, or interventions (``"pairwise"``).
    """
    if missing not in MISSING_MODES:
        raise InputError(f"missing must be 'error', 'drop', 'pairwise' or 'em', got {missing!r}")
    if transform not in TRANSFORMS:
        raise InputError(f"transform must be 'auto', 'none' or 'copula', got {transform!r}")
    data, interventions, source = resolve_interventions(data, interventions)
    data, declared, levels = _encode_categorical(data, categorical)
    x, names = check_table(
        data, min_rows=MIN_ROWS, min_cols=2, name="data", allow_missing=missing != "error",
        missing_hint=_HINT_MISSING, text_hint=_HINT_TEXT,
    )  # fmt: skip
    declared = {_column_index(c, names) for c in declared}
    n, d = x.shape
    mask = parse_interventions(interventions, n, names, source=source)
    absent = np.isnan(x)
    report = {
        "mode": missing,
        "rows": int(n),
        "missing_cells": int(absent.sum()),
        "rows_with_missing": int(absent.any(1).sum()),
        "columns": {names[j]: int(c) for j, c in enumerate(absent.sum(0)) if c},
    }
    fraction = absent.mean(0)
    if (fraction > MAX_MISSING_FRACTION).any():
        j = int(np.argmax(fraction))
        raise InputError(
            f"data: column {names[j]!r} is missing in {fraction[j]:.0%} of the rows "
            f"({int(absent[:, j].sum())} of {n}); more than {MAX_MISSING_FRACTION:.0%} "
            "missing is too little to learn its edges from: drop the column"
        )
    if missing == "drop" and absent.any():
        keep = ~absent.any(1)
        kept = int(keep.sum())
        if kept < MIN_ROWS or kept <= d:
            raise InputError(
                f"data: only {kept} of {n} rows are complete (missing cells in "
                f"{n - kept} rows); at least {max(MIN_ROWS, d + 1)} are needed: use "
                "missing='pairwise', or drop the columns missing most often"
            )
        x = x[keep]
        if mask is not None:
            mask = parse_interventions(mask[keep], kept, names, source=source)
        _check_not_constant(x, names, "on the complete rows")
        absent = absent[keep]
    if missing == "drop":
        report.update(rows_dropped=n - x.shape[0])
    if missing in _MOMENTS and mask is not None:
        raise InputError(
            f"missing={missing!r} is not supported with interventions (every regime would "
            "need moments of its own): use missing='drop'"
        )
    kinds = [column_kind(x[:, j], declared=j in declared) for j in range(d)]
    applied = transform == "copula" or (
        transform == "auto" and any(k != "continuous" for k in kinds)
    )
    if applied:
        x = np.stack([normal_scores(x[:, j]) for j in range(d)], 1)
    kinds = {names[j]: f"copula-{k}" if applied else "none" for j, k in enumerate(kinds)}
    if missing in _MOMENTS and absent.any():
        # scaled by powers of two (exact), so that no square under- or overflows
        exponent = np.frexp(np.nanmax(np.abs(x), 0))[1]
        mean, cov, counts = pairwise_moments(np.ldexp(x, -exponent))
        pairs = counts + np.diag(np.full(d, np.inf))
        i, j = np.unravel_index(int(np.argmin(pairs)), pairs.shape)
        n_eff = int(pairs[i, j])
        if n_eff < MIN_ROWS or n_eff <= d:
            together = (
                "never observed together"
                if n_eff == 0
                else f"observed together in only {n_eff} rows"
            )
            raise InputError(
                f"data: columns {names[i]!r} and {names[j]!r} are {together}; "
                f"missing={missing!r} needs at least {max(MIN_ROWS, d + 1)} rows for every "
                "pair: drop one of them"
            )
        if not np.isfinite(cov).all():
            a, b = np.argwhere(~np.isfinite(cov))[0]
            raise InputError(
                f"data: column {names[a]!r} or {names[b]!r} is constant on the rows where "
                "both are observed; their correlation is undefined: use missing='drop' or "
                "drop one of them"
            )
        if missing == "em":
            mean, cov, iterations = em_moments(np.ldexp(x, -exponent))
            report.update(em_iterations=iterations)
        sd = np.sqrt(np.diag(cov))
        corr = cov / np.outer(sd, sd)
        np.fill_diagonal(corr, 1.0)
        repaired = nearest_correlation(corr)
        cov = repaired * np.outer(sd, sd)
        x = np.ldexp(moment_table(mean, cov, n_eff), exponent)
        report.update(
            effective_rows=n_eff,
            effective_rows_pair=[names[i], names[j]],
            min_eigenvalue=float(np.linalg.eigvalsh(corr)[0]),
            covariance_repair=float(np.abs(repaired - corr).max()),
        )
    elif missing in _MOMENTS:
        report.update(effective_rows=int(n))
    if x.shape[0] <= d:
        raise InputError(
            f"data: {x.shape[0]} rows for {d} columns; with no more rows than columns every "
            f"column is an exact linear function of the others and the posterior "
            f"degenerates: at least {d + 1} rows are needed (and several per column for "
            "reliable edges)"
        )
    warn_if_few_rows(x.shape[0], d)
    return Table(x=x, names=names, mask=mask, missing=report, transform=kinds, levels=levels)


def _column_index(column, names) -> int:
    if isinstance(column, (int, np.integer)) and not isinstance(column, bool):
        if not 0 <= int(column) < len(names):
            raise InputError(f"categorical: column index {column} is out of range")
        return int(column)
    if str(column) not in names:
        raise InputError(f"categorical: no column named {column!r}; columns are {names}")
    return names.index(str(column))


def _encode_categorical(data, categorical):
    """``(data, declared, levels)``: declared text, boolean and categorical columns of a
    DataFrame as float codes (NaN where missing)."""
    if categorical is None:
        return data, [], {}
    if isinstance(categorical, (str, int)):
        categorical = [categorical]
    declared = list(categorical)
    if not isinstance(data, pd.DataFrame):
        return data, declared, {}
    data = data.copy()
    data.attrs = dict(data.attrs)
    names = [str(c) for c in data.columns]
    levels = {}
    for column in declared:
        j = _column_index(column, names)
        values = data.iloc[:, j]
        codes, found = _codes(values, names[j])
        data[data.columns[j]] = codes
        if found is not None:
            levels[names[j]] = found
    return data, declared, levels


def _codes(values: pd.Series, name: str):
    """A categorical column's float codes and its levels in code order (``None`` for
    numbers, which are their own codes)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        cats = [str(c) for c in values.cat.categories]
        if not values.cat.ordered and len(cats) > 2:
            raise InputError(
                f"data: categorical column {name!r} has {len(cats)} unordered levels; ranks "
                "need an order: pass pandas.Categorical(..., ordered=True) with the levels "
                "in their order, or keep at most two levels"
            )
        codes = values.cat.codes.to_numpy().astype(np.float64)
        codes[codes < 0] = np.nan
        return codes, cats
    if pd.api.types.is_bool_dtype(values):
        return values.astype(np.float64).to_numpy(), ["False", "True"]
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype=np.float64, na_value=np.nan), None
    present = [v for v in values if not _is_missing(v)]
    if all(parses_as_number(v) for v in present):  # numbers, or numbers read as text
        return np.array([np.nan if _is_missing(v) else float(v) for v in values]), None
    found = sorted({str(v) for v in present})
    if len(found) > 2:
        shown = ", ".join(repr(v) for v in found[:5]) + (", ..." if len(found) > 5 else "")
        raise InputError(
            f"data: categorical column {name!r} has {len(found)} levels ({shown}) and no "
            "order; ranks need one: encode the levels as numbers in their order (or, in "
            "Python, pass pandas.Categorical(..., ordered=True)); unordered categories "
            "with more than two levels are not supported"
        )
    index = {level: float(k) for k, level in enumerate(found)}
    codes = np.array([np.nan if _is_missing(v) else index[str(v)] for v in values])
    return codes, found


def _is_missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _check_not_constant(x: np.ndarray, names, where: str) -> None:
    constant = np.flatnonzero(np.ptp(x, axis=0) == 0)
    if constant.size:
        raise InputError(
            f"data: column {names[int(constant[0])]!r} is constant {where}; it carries no "
            "information there: drop it"
        )


def column_kind(values: np.ndarray, *, declared: bool = False) -> str:
    """``"binary"``, ``"ordinal"`` or ``"continuous"``: how ``transform="auto"`` sees a
    column (NaN cells ignored).

    Binary: two distinct values. Ordinal: declared categorical, or at most
    :data:`MAX_LEVELS` distinct values that are also at most half the observed cells.
    """
    observed = values[~np.isnan(values)]
    k = len(np.unique(observed))
    if k == 2:
        return "binary"
    if declared or k <= min(MAX_LEVELS, len(observed) / 2):
        return "ordinal"
    return "continuous"


def normal_scores(values: np.ndarray) -> np.ndarray:
    """Rank-based normal scores of a column: ``Phi^{-1}(R / (m + 1))`` with ``R`` the
    mid-rank of each of the ``m`` observed cells (van der Waerden scores, the Gaussian
    copula's margins); NaN cells stay NaN.

    Ties share one score (one per level of a binary or ordinal column); a strictly
    increasing transformation of the column gives the same scores, bit for bit.
    """
    values = np.asarray(values, dtype=np.float64)
    observed = ~np.isnan(values)
    ranks = stats.rankdata(values[observed], method="average")
    out = np.full(values.shape, np.nan)
    out[observed] = special.ndtri(ranks / (observed.sum() + 1.0))
    return out


def pairwise_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means and covariances of a table with missing cells (NaN), pairwise-complete.

    ``mean[j]`` and ``cov[j, j]``: the mean and variance (divided by the count) of column
    ``j``'s observed cells. ``cov[i, j] = r_ij sd_i sd_j``, with ``r_ij`` the Pearson
    correlation over the rows where both are observed (as pandas' ``DataFrame.corr``) and
    ``sd`` from all observed cells. Not the covariance of the pair's rows divided by
    variances of other rows: on strongly correlated columns the variances' sampling error
    (relative ``sqrt(2 / n)``) would then enter every correlation and make the matrix
    inconsistent by more than its smallest eigenvalue; a correlation from one set of rows
    errs by only about ``(1 - r^2) / sqrt(n)``. ``counts[i, j]``: the rows where both are
    observed. Without missing cells these are the complete data's mean and covariance (to
    rounding). ``cov`` need not be positive definite (:func:`nearest_correlation`), and is
    NaN for a pair in whose common rows a column is constant.

    :returns: ``(mean (d,), cov (d, d), counts (d, d))``.
    """
    x = np.asarray(x, dtype=np.float64)
    observed = ~np.isnan(x)
    o = observed.astype(np.float64)
    mean = np.nanmean(x, 0)
    centred = np.where(observed, x - mean, 0.0)  # centred first: no cancellation below
    counts = o.T @ o
    safe = np.maximum(counts, 1.0)
    sums = (centred.T @ o) / safe  # [i, j]: mean of centred x_i over the rows where j is too
    cross = (centred.T @ centred) / safe - sums * sums.T
    var = (centred**2).T @ o / safe - sums**2  # [i, j]: variance of x_i over the same rows
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cross / np.sqrt(var * var.T)
    np.fill_diagonal(corr, 1.0)
    sd = np.sqrt(np.diag(var))
    return mean, corr * np.outer(sd, sd), counts


def em_moments(
    x: np.ndarray, *, tol: float = 1e-9, max_iter: int = 1000
) -> tuple[np.ndarray, np.ndarray, int]:
    """Maximum-likelihood mean and covariance of a Gaussian table with missing cells (NaN),
    by expectation-maximization (Dempster, Laird & Rubin 1977; Little & Rubin,
    "Statistical Analysis with Missing Data", ch. 11): valid when cells are missing at
    random, not only completely at random, and one consistent, positive definite matrix
    where pairwise estimates can contradict each other.

    Each E-step fills a row's missing cells by their regression on its observed ones and
    adds the conditional covariance to the second moments, one missingness pattern at a
    time; the M-step takes the moments. Starts from the observed cells' means and
    variances (no correlation); stops when no entry of the mean or of the covariance (in
    units of the standard deviations) moves by more than ``tol``.

    :returns: ``(mean (d,), cov (d, d), iterations)``; ``cov`` is divided by ``n``.
    """
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    observed = ~np.isnan(x)
    mean = np.nanmean(x, 0)
    cov = np.diag(np.nanvar(x, 0))
    patterns, which = np.unique(observed, axis=0, return_inverse=True)
    groups = [(p, x[which.ravel() == k]) for k, p in enumerate(patterns)]
    iteration = 0
    while iteration < max_iter:
        iteration += 1
        first, second = np.zeros(d), np.zeros((d, d))
        for o, rows in groups:
            m = ~o
            full = np.where(np.isnan(rows), 0.0, rows)
            if m.any():
                coef = np.linalg.solve(cov[np.ix_(o, o)], cov[np.ix_(o, m)])  # (o, m)
                full[:, m] = mean[m] + (rows[:, o] - mean[o]) @ coef
                second[np.ix_(m, m)] += len(rows) * (cov[np.ix_(m, m)] - cov[np.ix_(m, o)] @ coef)
            first += full.sum(0)
            second += full.T @ full
        new_mean = first / n
        new_cov = second / n - np.outer(new_mean, new_mean)
        sd = np.sqrt(np.diag(new_cov))
        change = max(
            np.abs((new_mean - mean) / sd).max(), np.abs((new_cov - cov) / np.outer(sd, sd)).max()
        )
        mean, cov = new_mean, new_cov
        if change <= tol:
            break
    return mean, (cov + cov.T) / 2, iteration


def nearest_correlation(corr: np.ndarray, *, floor: float = MIN_EIGENVALUE,
                        tol: float = 1e-10, max_iter: int = 200) -> np.ndarray:  # fmt: skip
    """The nearest correlation matrix (Frobenius norm) whose eigenvalues are at least
    ``floor``: Higham's alternating projections with Dykstra's correction (Higham 2002)
    between the matrices with a unit diagonal and those with eigenvalues ``>= floor``.

    A matrix that already qualifies is returned unchanged (a copy). The last iterate's
    eigenvalues are clipped at ``floor`` and its diagonal rescaled to one, so the result
    is a positive definite correlation matrix even where the iteration stopped early.
    """
    corr = np.array(corr, dtype=np.float64)
    corr = (corr + corr.T) / 2
    if (np.diag(corr) == 1.0).all() and np.linalg.eigvalsh(corr)[0] >= floor:
        return corr

    def clip(a):
        w, v = np.linalg.eigh(a)
        return (v * np.maximum(w, floor)) @ v.T

    y, correction = corr, np.zeros_like(corr)
    for _ in range(max_iter):
        r = y - correction
        p = clip(r)
        correction = p - r
        previous, y = y, p.copy()
        np.fill_diagonal(y, 1.0)
        if np.linalg.norm(y - previous) <= tol * np.linalg.norm(y):
            break
    y = clip((y + y.T) / 2)
    scale = 1.0 / np.sqrt(np.diag(y))
    return y * np.outer(scale, scale)


def moment_table(mean: np.ndarray, cov: np.ndarray, n: int) -> np.ndarray:
    """``n`` rows whose column means are ``mean`` and whose covariance (divided by ``n``)
    is ``cov``, exactly up to rounding: Gaussian rows centred and orthonormalized (a QR
    factorization), so their mean is zero and ``Z^T Z / n = I``, then ``mean + Z L^T``
    with ``L L^T = cov``. Needs ``n > d`` and a positive definite ``cov``; the rows come
    from a fixed seed (only their moments matter).
    """
    d = len(mean)
    # scaled by powers of two (exact), so that no square under- or overflows
    exponent = np.frexp(np.maximum(np.abs(mean), np.sqrt(np.diag(cov))))[1]
    scale = np.ldexp(1.0, -exponent)
    z = np.random.default_rng(_TABLE_SEED).standard_normal((n, d))
    z -= z.mean(0)
    q, _ = np.linalg.qr(z)
    chol = np.linalg.cholesky(cov * np.outer(scale, scale))
    rows = mean * scale + np.sqrt(n) * q @ chol.T
    return np.ldexp(rows, exponent)
