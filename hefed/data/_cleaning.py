"""Cleaning a factory's rows before their statistics are computed: gaps, outliers, bounds.

Real plant data has gaps and bad readings. With the consortium's summary (the
decrypted ``summary`` round: per-column count, mean and standard deviation) a
factory can impute missing values with the global means, drop incomplete rows,
or drop rows whose |z| against the global mean and standard deviation exceeds
a threshold; with declared bounds it clips values for a differentially private
release. The statistics stay exact for the rows and values actually used, and
every dropped, imputed or clipped value is counted (:class:`PreprocessReport`).

What to do is one typed option object, :class:`Cleaning`, the same for a whole
table, a streamed file and every bundle kind.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._files import atomic_write_json, is_version, read_json_object
from ..errors import DataError, InvalidFileError, RoundedValuesWarning, UsageError
from ..stats import ColumnSummary, Rounding
from ._tables import default_features, missing_columns_error, numeric_column

BOUNDS_FORMAT = "hefed.bounds"
BOUNDS_VERSION = 1


@dataclass(frozen=True)
class Bounds:
    """Declared per-column value bounds, public and identical at every factory (for a DP release).

    File format (JSON)::

        {"format": "hefed.bounds", "version": 1, "columns": {"coal_t": [0, 400], "co2_t": [0, 2000]}}
    """

    columns: dict[str, tuple[float, float]]

    def bound(self, column: str) -> float:
        """``max(|lo|, |hi|)`` of a column: what one row can contribute to its sums."""
        try:
            lo, hi = self.columns[column]
        except KeyError:
            raise UsageError(f"the bounds file declares no bounds for column {column!r}") from None
        return max(abs(lo), abs(hi))

    def clip(self, frame: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, int]:
        """Clip the given columns to their bounds; returns the frame and the number of cells changed."""
        frame = frame.copy()
        changed = 0
        for column in columns:
            lo, hi = self.columns.get(column, (None, None))
            if lo is None or hi is None:
                raise UsageError(f"the bounds file declares no bounds for column {column!r}")
            values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
            clipped = np.clip(values, lo, hi)
            changed += int(np.sum((clipped != values) & ~np.isnan(values)))
            frame[column] = clipped
        return frame, changed

    def to_dict(self) -> dict[str, Any]:
        return {"format": BOUNDS_FORMAT, "version": BOUNDS_VERSION,
                "columns": {k: list(v) for k, v in self.columns.items()}}

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        return atomic_write_json(path, self.to_dict(), force=force)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Bounds:
        obj = read_json_object(path, "bounds")
        source = str(path)
        if obj.get("format") != BOUNDS_FORMAT or not is_version(obj.get("version"), BOUNDS_VERSION):
            raise InvalidFileError(f"{source}: not a hefed bounds file (version {BOUNDS_VERSION})")
        columns = obj.get("columns")
        if not isinstance(columns, dict) or not columns:
            raise InvalidFileError(f"{source}: 'columns' must map column names to [lo, hi]")
        parsed = {}
        for name, pair in columns.items():
            if (not isinstance(pair, list) or len(pair) != 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                               for v in pair) or pair[0] > pair[1]):
                raise InvalidFileError(f"{source}: bounds of {name!r} must be [lo, hi] with finite lo <= hi")
            parsed[str(name)] = (float(pair[0]), float(pair[1]))
        return cls(parsed)


@dataclass(frozen=True)
class Cleaning:
    """What to do with a factory's rows before their statistics are computed (the same at every factory).

    Attributes:
        missing: rows with a missing value in a used column: ``"error"`` refuses them, naming
            the rows; ``"drop"`` drops them and counts them.
        impute: ``"mean"`` fills gaps with the consortium means of ``summary`` first.
        max_z: drop rows whose |z| against the ``summary``'s mean and standard deviation
            exceeds this, in any used column.
        summary: the decrypted consortium summary, needed by ``impute`` and ``max_z`` when rows are
            cleaned (a study agrees on the policy before the summary exists; it is given at encryption).
        bounds: clip the used columns to these declared bounds (for a differentially private release).
    """

    missing: Literal["error", "drop"] = "error"
    impute: Literal["mean"] | None = None
    max_z: float | None = None
    summary: ColumnSummary | None = None
    bounds: Bounds | None = None

    def __post_init__(self) -> None:
        if self.missing not in ("drop", "error"):
            raise UsageError(f"missing must be 'drop' or 'error', got {self.missing!r}", parameters=("missing",))
        if self.impute not in (None, "mean"):
            raise UsageError(f"impute must be 'mean', got {self.impute!r}", parameters=("impute",))
        if self.max_z is not None and not (isinstance(self.max_z, (int, float)) and self.max_z > 0):
            raise UsageError("max_z must be positive", parameters=("max_z",))


@dataclass
class PreprocessReport:
    """What preprocessing did to a factory's rows."""

    rows_in: int
    rows_out: int
    dropped_missing: list[int] = field(default_factory=list)
    imputed_cells: int = 0
    dropped_outliers: list[int] = field(default_factory=list)
    clipped_cells: int = 0
    #: values rounded to their column's grid (the encoding), per column
    rounding: Rounding = field(default_factory=Rounding)
    #: columns the default features left out (no feature list given), each with the reason
    left_out: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"left out column {name!r}: {reason}" for name, reason in self.left_out.items()]
        if self.dropped_missing:
            out.append(f"dropped {len(self.dropped_missing)} incomplete row(s): {row_list(self.dropped_missing)}")
        if self.imputed_cells:
            out.append(f"imputed {self.imputed_cells} missing value(s) with the consortium means")
        if self.dropped_outliers:
            out.append(f"dropped {len(self.dropped_outliers)} row(s) with |z| above the limit: "
                       f"{row_list(self.dropped_outliers)}")
        if self.clipped_cells:
            out.append(f"clipped {self.clipped_cells} value(s) to the declared bounds")
        return out + self.rounding.lines()


def warn_rounding(report: PreprocessReport | None, source: str) -> None:
    """Say, as a :class:`~hefed.errors.RoundedValuesWarning`, what was rounded, where a call returns no report."""
    if report is not None and report.rounding.total:
        warnings.warn(f"{source}: " + "; ".join(report.rounding.lines()), RoundedValuesWarning, stacklevel=3)


def row_list(rows: list[int]) -> str:
    """Row numbers (0-based positions) as the user reads them: 1-based, the first eight, then a count."""
    shown = ", ".join(str(r + 1) for r in rows[:8])
    return shown + (f", … ({len(rows) - 8} more)" if len(rows) > 8 else "")


def used_columns(frame: pd.DataFrame, target: str, features: Sequence[str] | None) -> list[str]:
    """The columns a factory uses: the features (default: every numeric column but the target), then the target."""
    features = list(features) if features else default_features(frame, target)
    return [*features, target]


def preprocess(
    frame: pd.DataFrame,
    target: str,
    features: Sequence[str] | None = None,
    cleaning: Cleaning | None = None,
    source: str = "data",
    allow_empty: bool = False,
) -> tuple[pd.DataFrame, PreprocessReport]:
    """Handle missing values, outliers and bounds as ``cleaning`` says, before statistics are computed.

    Rows are numbered from 1 (the first data row) in the report and in errors. ``allow_empty``
    lets every row go (one block of a table read in pieces); otherwise that is refused.
    """
    cleaning = cleaning or Cleaning()
    summary, max_z = cleaning.summary, cleaning.max_z
    if (cleaning.impute or max_z is not None) and summary is None:
        raise UsageError("imputing means and dropping outliers need the consortium summary (the decrypted "
                         "summary round)", parameters=("summary",))
    columns = used_columns(frame, target, features)
    labels = {str(c): c for c in frame.columns}
    absent = [c for c in columns if c not in labels]
    if absent:
        raise missing_columns_error(source, absent, list(labels))
    values = {c: numeric_column(frame, c, source, labels[c], allow_missing=True) for c in columns}
    report = PreprocessReport(len(frame), len(frame))
    keep = np.ones(len(frame), dtype=bool)
    if cleaning.impute == "mean" and summary is not None:  # summary is set: checked above
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
        if cleaning.missing == "error":
            raise DataError(f"{source}: missing values in row(s) {row_list(rows)} (drop those rows, or impute the "
                            "consortium means)", parameters=("missing", "impute"))
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
    unchanged = (keep.all() and not report.imputed_cells and isinstance(frame.index, pd.RangeIndex)
                 and frame.index.start == 0 and frame.index.step == 1
                 and all(frame[labels[c]].dtype == np.float64 for c in columns))
    if unchanged:  # every row kept, the used columns float64 already: no copy of the table (issue 15)
        cleaned = frame.copy(deep=False)
    else:
        cleaned = frame.loc[keep].reset_index(drop=True)
        for c in columns:
            cleaned[labels[c]] = values[c][keep]
    if cleaning.bounds is not None:
        cleaned, report.clipped_cells = cleaning.bounds.clip(cleaned, columns)
    report.rows_out = int(keep.sum())
    if report.rows_out == 0 and not allow_empty:
        raise DataError(f"{source}: no rows left after preprocessing")
    return cleaned, report


