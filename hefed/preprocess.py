"""Federated preprocessing: an encrypted summary round, imputation, dropping bad rows, standardisation.

Real plant data has gaps and bad readings. A first, cheap encrypted round
(``hefed encrypt --summary``) sends, per column, the exact sums

    count of non-missing values,   Σx,   Σx²

which aggregate and decrypt like any bundle into the consortium's per-column
count, mean and standard deviation — no factory's own. With that summary a
factory can then impute missing values with the global means, drop
incomplete rows, or drop rows whose |z| against the global mean and standard
deviation exceeds a threshold. The statistics stay exact for the rows and
values actually used, and every dropped or imputed row is counted.

Standardised coefficients need no extra round: the global means and
variances follow from the aggregate statistics themselves
(:func:`standardized_coefficients`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from phe import PaillierPublicKey

from .bundle import Bundle, check_factory_id
from .data import _numeric_column, default_features, read_table
from .encoding import Encoding
from .errors import DataError, InvalidFileError, UsageError
from .fileio import atomic_write_json, is_version, parse_rational, parse_str_list, read_json_object
from .model import LinearModel
from .statistics import ONES, SufficientStatistics

FORMAT = "hefed.summary"
VERSION = 1


@dataclass
class ColumnSummary:
    """Exact per-column count, Σx and Σx² over the non-missing values of a consortium (or one factory)."""

    columns: list[str]
    count: dict[str, int]
    total: dict[str, Fraction]
    total_sq: dict[str, Fraction]
    contributors: list[str] = field(default_factory=list)

    def mean(self, column: str) -> float:
        return float(self.total[column] / self.count[column]) if self.count[column] else float("nan")

    def variance_exact(self, column: str) -> Fraction | None:
        """Sample variance (n − 1 in the denominator, as pandas' default), exact."""
        n = self.count[column]
        if n < 2:
            return None
        return (self.total_sq[column] - self.total[column] ** 2 / n) / (n - 1)

    def std(self, column: str) -> float:
        var = self.variance_exact(column)
        return float("nan") if var is None else math.sqrt(float(var))

    def table(self) -> list[tuple[str, int, float, float]]:
        return [(c, self.count[c], self.mean(c), self.std(c)) for c in self.columns]

    def to_dict(self) -> dict[str, Any]:
        def frac(v: Fraction) -> str:
            return f"{v.numerator}/{v.denominator}"

        return {
            "format": FORMAT, "version": VERSION, "contributors": self.contributors,
            "columns": {c: {"count": self.count[c], "mean": _js(self.mean(c)), "std": _js(self.std(c)),
                            "sum": frac(self.total[c]), "sum_sq": frac(self.total_sq[c])} for c in self.columns},
        }

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        return atomic_write_json(path, self.to_dict(), force=force)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ColumnSummary:
        obj = read_json_object(path, "summary")
        source = str(path)
        if obj.get("format") != FORMAT or not is_version(obj.get("version"), VERSION):
            raise InvalidFileError(f"{source}: not a hefed summary file (version {VERSION})")
        columns = obj.get("columns")
        if not isinstance(columns, dict) or not columns:
            raise InvalidFileError(f"{source}: 'columns' must be a non-empty object")
        count, total, total_sq = {}, {}, {}
        for name, entry in columns.items():
            n = entry.get("count") if isinstance(entry, dict) else None
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise InvalidFileError(f"{source}: column {name!r}: needs a non-negative integer count")
            count[name] = n
            total[name] = parse_rational(entry.get("sum"), source, f"{name}.sum")
            total_sq[name] = parse_rational(entry.get("sum_sq"), source, f"{name}.sum_sq", non_negative=True)
            # Cauchy–Schwarz: (Σx)² ≤ n·Σx², and nothing at all without values
            if total[name] ** 2 > n * total_sq[name] or (n == 0 and (total[name] or total_sq[name])):
                raise InvalidFileError(f"{source}: column {name!r}: count, sum and sum_sq are inconsistent")
        return cls(list(columns), count, total, total_sq,
                   parse_str_list(obj.get("contributors", []), source, "contributors", non_empty=False))


def _js(value: float) -> float | None:
    return None if value != value else value


def _summary_values(frame: pd.DataFrame, columns: Sequence[str], encoding: Encoding, source: str) -> list[int]:
    values = []
    for name in columns:
        col = _numeric_column(frame, name, source, allow_missing=True)
        present = col[~np.isnan(col)]
        encoded = [int(v) for v in encoding.encode_column(present, name, source)]
        values += [len(encoded), sum(encoded), sum(v * v for v in encoded)]
    return values


def summary_columns(frame: pd.DataFrame, target: str, features: Sequence[str] | None) -> list[str]:
    """The columns a summary covers: the features (default: numeric ones) and the target."""
    features = list(features) if features else default_features(frame, target)
    return [*features, target]


def local_summary(data: pd.DataFrame | str | os.PathLike[str], target: str, features: Sequence[str] | None = None,
                  encoding: Encoding | None = None) -> ColumnSummary:
    """A factory's own summary (plaintext; for checks, stays local)."""
    encoding = encoding or Encoding()
    frame = data if isinstance(data, pd.DataFrame) else read_table(data)
    columns = summary_columns(frame, target, features)
    source = str(data) if not isinstance(data, pd.DataFrame) else "data"
    return _from_values(_summary_values(frame, _canonical(columns), encoding, source), columns, encoding, [])


def _canonical(columns: Sequence[str]) -> list[str]:
    """Travel order of summary columns: features sorted by name, then the target (last)."""
    return [*sorted(columns[:-1]), columns[-1]]


def _from_values(values: Sequence[int], columns: Sequence[str], encoding: Encoding,
                 contributors: Sequence[str]) -> ColumnSummary:
    """``values`` in canonical order; ``columns`` (features then target) in display order."""
    f = encoding.frac_bits
    count, total, total_sq = {}, {}, {}
    for i, name in enumerate(_canonical(columns)):
        n, s, ss = values[3 * i: 3 * i + 3]
        count[name], total[name], total_sq[name] = int(n), Fraction(s, 1 << f), Fraction(ss, 1 << (2 * f))
    return ColumnSummary(list(columns), count, total, total_sq, list(contributors))


def summary_from_values(values: Sequence[int], bundle: Bundle) -> ColumnSummary:
    """Decrypted summary values back into exact sums (columns: the features, then the target)."""
    return _from_values(values, [*bundle.features, bundle.target], bundle.encoding, bundle.contributors)


def encrypt_summary(data: pd.DataFrame | str | os.PathLike[str], target: str, public_key: PaillierPublicKey,
                    features: Sequence[str] | None = None, factory_id: str = "factory",
                    encoding: Encoding | None = None) -> Bundle:
    """Encrypt a factory's per-column count, Σx and Σx² (missing values allowed) into a ``summary`` bundle.

    Columns travel in canonical order (features sorted by name, then the target), so
    factories may order their columns however they like.
    """
    check_factory_id(factory_id)
    encoding = encoding or Encoding()
    frame = data if isinstance(data, pd.DataFrame) else read_table(data)
    source = str(data) if not isinstance(data, pd.DataFrame) else factory_id
    columns = summary_columns(frame, target, features)
    missing = [c for c in columns if c not in map(str, frame.columns)]
    if missing:
        raise DataError(f"{source}: column(s) not found: {', '.join(map(repr, missing))}")
    values = _summary_values(frame, _canonical(columns), encoding, source)
    return Bundle.seal("summary", public_key, target, columns[:-1], encoding, factory_id, values, {}, source)


@dataclass
class PreprocessReport:
    """What preprocessing did to a factory's rows."""

    rows_in: int
    rows_out: int
    dropped_missing: list[int] = field(default_factory=list)
    imputed_cells: int = 0
    dropped_outliers: list[int] = field(default_factory=list)
    clipped_cells: int = 0

    def lines(self) -> list[str]:
        out = []
        if self.dropped_missing:
            out.append(f"dropped {len(self.dropped_missing)} incomplete row(s): {_rows(self.dropped_missing)}")
        if self.imputed_cells:
            out.append(f"imputed {self.imputed_cells} missing value(s) with the consortium means")
        if self.dropped_outliers:
            out.append(f"dropped {len(self.dropped_outliers)} row(s) with |z| above the limit: "
                       f"{_rows(self.dropped_outliers)}")
        if self.clipped_cells:
            out.append(f"clipped {self.clipped_cells} value(s) to the declared bounds")
        return out


def _rows(rows: list[int]) -> str:
    shown = ", ".join(str(r + 1) for r in rows[:8])
    return shown + (f", … ({len(rows) - 8} more)" if len(rows) > 8 else "")


def preprocess(
    frame: pd.DataFrame,
    target: str,
    features: Sequence[str] | None = None,
    summary: ColumnSummary | None = None,
    impute: str | None = None,
    missing: str = "error",
    max_z: float | None = None,
    source: str = "data",
    allow_empty: bool = False,
) -> tuple[pd.DataFrame, PreprocessReport]:
    """Handle missing values and outliers before the statistics are computed.

    ``impute="mean"`` fills gaps with the consortium means of ``summary``;
    otherwise ``missing="drop"`` drops incomplete rows and ``missing="error"``
    refuses them, naming the rows. ``max_z`` drops rows whose |z| against the
    summary's mean and standard deviation exceeds it, in any used column. Rows
    are numbered from 1 (the first data row). ``allow_empty`` lets every row go (one chunk
    of a table read in pieces); otherwise that is refused.
    """
    if missing not in ("drop", "error"):
        raise UsageError(f"missing must be 'drop' or 'error', got {missing!r}")
    if impute not in (None, "mean"):
        raise UsageError(f"impute must be 'mean', got {impute!r}")
    if (impute or max_z is not None) and summary is None:
        raise UsageError("--impute and --max-z need the consortium summary (--summary-file)")
    if max_z is not None and not max_z > 0:
        raise UsageError("max_z must be positive")
    columns = summary_columns(frame, target, features)
    labels = {str(c): c for c in frame.columns}
    absent = [c for c in columns if c not in labels]
    if absent:
        raise DataError(f"{source}: column(s) not found: {', '.join(map(repr, absent))}")
    values = {c: _numeric_column(frame, c, source, labels[c], allow_missing=True) for c in columns}
    report = PreprocessReport(len(frame), len(frame))
    keep = np.ones(len(frame), dtype=bool)
    if impute == "mean" and summary is not None:
        for c in columns:
            if c not in summary.count:
                raise DataError(f"{source}: the summary has no column {c!r}")
            gaps = np.isnan(values[c])
            if gaps.any():
                values[c] = np.where(gaps, summary.mean(c), values[c])
                report.imputed_cells += int(gaps.sum())
    incomplete = np.zeros(len(frame), dtype=bool)
    for c in columns:
        incomplete |= np.isnan(values[c])
    if incomplete.any():
        rows = np.flatnonzero(incomplete).tolist()
        if missing == "error":
            raise DataError(f"{source}: missing values in row(s) {_rows(rows)} (use --missing drop or --impute mean)")
        report.dropped_missing = rows
        keep &= ~incomplete
    if max_z is not None and summary is not None:
        outlier = np.zeros(len(frame), dtype=bool)
        for c in columns:
            std = summary.std(c)
            if std > 0:
                with np.errstate(invalid="ignore"):
                    outlier |= np.abs(values[c] - summary.mean(c)) > max_z * std
        outlier &= keep
        report.dropped_outliers = np.flatnonzero(outlier).tolist()
        keep &= ~outlier
    # Keep every column of the table (a holdout written later keeps dates, ids, ...);
    # the used columns get their numeric (possibly imputed) values.
    cleaned = frame.loc[keep].reset_index(drop=True)
    for c in columns:
        cleaned[labels[c]] = values[c][keep]
    report.rows_out = int(keep.sum())
    if report.rows_out == 0 and not allow_empty:
        raise DataError(f"{source}: no rows left after preprocessing")
    return cleaned, report


def standardized_coefficients(model: LinearModel, stats: SufficientStatistics) -> dict[str, dict[str, float]]:
    """Coefficients per standard deviation of each feature, and fully standardised (÷ sd of y).

    The pooled means and sample variances come exactly from the aggregate:
    ``var_j = (Σx_j² − (Σx_j)²/n) / (n − 1)``.
    """
    from .crossval import FoldStatistics  # crossval builds on the statistics this module preprocesses

    if isinstance(stats, FoldStatistics):
        stats = stats.total()
    if not isinstance(stats, SufficientStatistics):
        raise UsageError("--standardize needs statistics (not a coefficient aggregate): means and SDs come from them")
    n = stats.n
    if n < 2:
        raise UsageError("standardisation needs at least two rows")

    def sd(column: str) -> float:
        s, ss = stats.exact(ONES, column), stats.exact(column, column)
        return math.sqrt(float((ss - s * s / n) / (n - 1)))

    sd_y = sd(stats.target)
    result = {}
    for name, coef in zip(model.feature_names_in_, model.coef_exact_, strict=True):
        sd_x = sd(str(name))
        result[str(name)] = {
            "mean": float(stats.exact(ONES, str(name)) / n),
            "sd": sd_x,
            "per_sd": float(coef) * sd_x,
            "standardized": float(coef) * sd_x / sd_y if sd_y else float("nan"),
        }
    return result
