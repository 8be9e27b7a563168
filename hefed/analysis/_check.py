"""A factory's dry run of a study on its own table: do the data fit, what would change, what to do.

:func:`check_table` reads the table as ``hefed encrypt --study`` would (the same reader, the same
detected file format) and, without encrypting or writing anything, reports for every column the
study uses:

* whether the file has it (a column of the same name but for case, or a close one, is named);
* its type (numeric, categorical, text, boolean, date, empty) and, for a column that should be
  numeric but is not, why (thousands separators, percent signs, decimal commas, dates, a few
  bad cells) — the cells that would make encryption refuse the table;
* its missing values, minimum and maximum, and the binary digits its values need
  (:func:`hefed.stats.column_bits_needed`) against the study's encoding of the column
  (``study.encoding.column(name)``): values reaching ``2^int_bits`` would be **refused** (how
  many, and the ``int_bits`` they need); values finer than the grid ``2^-frac_bits`` would be
  **rounded** (how many, by at most how much — the same :class:`~hefed.stats.Rounding` the
  factory's encryption records);
* for a categorical feature, the levels found, and values that are not levels of the study
  (refused: every factory must have the same one-hot columns).

Then, for the rows: those the study's cleaning would drop (missing values under
``missing="drop"``, refused under ``"error"``), outliers (``max_z``: only with the consortium
summary, otherwise said to be not checkable here), values beyond the study's declared bounds,
and the holdout the study keeps back. Columns of the file the study does not use are listed
(informational). The verdict is ``ok``, ``ok_with_rounding`` or ``refused``, with concrete
suggestions ("add a per-column encoding for 'energy_wh' with int_bits >= 42 to the study, the
same at every factory"; "column 'NOX' not found; the file has 'nox'").

Counts are over the rows encryption would use: after the cleaning, the holdout included (its rows
are encoded too, in an evaluation bundle). Missing-value counts are over every row read.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..data import FileFormat, ResolvedFormat, left_out_columns, read_table_and_format, row_list
from ..errors import DataError
from ..protocol import ColumnSpec, Study, check_factory_id
from ..stats import ColumnEncoding, ColumnSummary, Rounding, column_bits_needed

Verdict = Literal["ok", "ok_with_rounding", "refused"]

#: The most encoding bits a column may have (``frac_bits + int_bits``, :class:`~hefed.stats.ColumnEncoding`).
_MAX_VALUE_BITS = 1000
#: Cells quoted as examples in a message.
_EXAMPLES = 3

_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:([,.' \u00a0\u202f])\d{3})(?:\1\d{3})*(?:[.,]\d+)?$")
_PERCENT = re.compile(r"^[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)\s*%$")
_DECIMAL_COMMA = re.compile(r"^[+-]?\d*,\d+(?:[eE][+-]?\d+)?$")
_DATE = re.compile(r"^(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4})(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?")
_BOOLEANS = {"true", "false", "yes", "no", "wahr", "falsch", "vrai", "faux"}


@dataclass(frozen=True)
class Suggestion:
    """What to change, in words, and (where it is a setting) as a machine-readable ``change``.

    ``change`` keys: ``column_encoding`` (``{column: {"frac_bits", "int_bits"}}``, to add to the
    study at every factory), ``rename`` (``{"from", "to"}``, in this factory's file),
    ``file_format`` (a :class:`~hefed.data.FileFormat` field and value), ``categories``
    (``{column: [levels]}``, to declare in the study), ``cleaning`` (a study cleaning field and value).
    """

    text: str
    column: str | None = None
    change: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "column": self.column, "change": dict(self.change)}


@dataclass
class ColumnCheck:
    """How one column of the study fits this factory's table."""

    name: str
    role: Literal["target", "feature"]
    unit: str | None = None
    categories: tuple[str, ...] | None = None
    found: bool = True
    #: a column of the file the study may mean (same name but case, or a close name), when not found
    hint: str | None = None
    #: numeric, categorical, text, boolean, date, empty, or absent
    type: str = "numeric"
    #: why the column is not numeric, when it should be
    detail: str = ""
    missing: int = 0
    non_numeric: int = 0
    not_finite: int = 0
    minimum: float | None = None
    maximum: float | None = None
    #: ``(frac_bits, int_bits)`` the values used need to be encoded exactly
    bits_needed: tuple[int, int] | None = None
    #: the study's encoding of the column (None for a categorical column: see ``dummies``)
    encoding: ColumnEncoding | None = None
    out_of_range: int = 0
    rounded: int = 0
    largest_change: float = 0.0
    outside_bounds: int = 0
    #: categorical: how often each level of the study occurs in the rows used
    levels: dict[str, int] = field(default_factory=dict)
    #: categorical: values that are not levels of the study, with their counts
    unknown_levels: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> Literal["ok", "rounded", "refused"]:
        if self.problems:
            return "refused"
        return "rounded" if self.rounded else "ok"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "role": self.role, "unit": self.unit, "found": self.found, "hint": self.hint,
            "type": self.type, "detail": self.detail or None, "status": self.status, "missing": self.missing,
            "non_numeric": self.non_numeric, "not_finite": self.not_finite,
            "min": self.minimum, "max": self.maximum,
            "bits_needed": None if self.bits_needed is None else
            {"frac_bits": self.bits_needed[0], "int_bits": self.bits_needed[1]},
            "encoding": None if self.encoding is None else self.encoding.to_dict(),
            "out_of_range": self.out_of_range, "rounded": self.rounded, "largest_change": self.largest_change,
            "outside_bounds": self.outside_bounds, "problems": list(self.problems), "notes": list(self.notes),
        }
        if self.categories is not None:
            out.update(categories=list(self.categories), levels=dict(self.levels),
                       unknown_levels=dict(self.unknown_levels))
        return out


@dataclass(frozen=True)
class UnusedColumn:
    """A column of the file the study does not use (informational)."""

    name: str
    type: str
    reason: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type, "reason": self.reason}


@dataclass
class CheckReport:
    """What :func:`check_table` found: per column, per row, the verdict and what to change."""

    source: str
    study_id: str
    study_digest: str
    study_title: str
    factory_id: str | None
    #: how the file was read (None for a data frame)
    file_format: ResolvedFormat | None
    rows_read: int
    columns: list[ColumnCheck]
    missing_policy: str
    #: rows (0-based) with a missing value in a column the study uses
    incomplete_rows: list[int]
    imputed_cells: int
    #: rows (0-based) the study's ``max_z`` would drop; None when not checked (see ``outliers_note``)
    outlier_rows: list[int] | None
    outliers_note: str | None
    rows_used: int
    holdout_rows: int | None
    rounding: Rounding
    unused_columns: list[UnusedColumn]
    problems: list[str]
    notes: list[str]
    suggestions: list[Suggestion]

    @property
    def verdict(self) -> Verdict:
        """``refused`` when encryption would refuse the table, ``ok_with_rounding`` when values would be
        rounded to their grids (counted), else ``ok``."""
        if self.problems:
            return "refused"
        return "ok_with_rounding" if self.rounding.total else "ok"

    @property
    def fits(self) -> bool:
        """True when the data fit the study (rounding allowed)."""
        return self.verdict != "refused"

    @property
    def dropped_missing(self) -> int:
        """Rows the study's cleaning drops for missing values (0 under ``missing="error"``, which refuses them)."""
        return len(self.incomplete_rows) if self.missing_policy == "drop" else 0

    # --- the report --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (rows numbered from 1, as the user reads them)."""
        fmt = self.file_format
        return {
            "verdict": self.verdict, "fits": self.fits, "source": self.source,
            "file_format": None if fmt is None else {
                "kind": fmt.kind, "delimiter": fmt.delimiter, "decimal": fmt.decimal, "encoding": fmt.encoding,
                "sheet": fmt.sheet, "detected": list(fmt.detected), "description": fmt.describe()},
            "study": {"study_id": self.study_id, "digest": self.study_digest, "title": self.study_title},
            "factory_id": self.factory_id, "rows_read": self.rows_read, "rows_used": self.rows_used,
            "columns": [c.to_dict() for c in self.columns],
            "rows": {
                "missing": self.missing_policy, "incomplete_rows": [r + 1 for r in self.incomplete_rows],
                "dropped_missing": self.dropped_missing, "imputed_cells": self.imputed_cells,
                "outlier_rows": None if self.outlier_rows is None else [r + 1 for r in self.outlier_rows],
                "outliers_note": self.outliers_note, "holdout_rows": self.holdout_rows,
                "statistics_rows": self.rows_used - (self.holdout_rows or 0),
            },
            "rounding": self.rounding.to_dict(),
            "unused_columns": [c.to_dict() for c in self.unused_columns],
            "problems": list(self.problems), "notes": list(self.notes),
            "suggestions": [s.to_dict() for s in self.suggestions],
        }

    def table(self) -> tuple[list[str], list[list[str]]]:
        """(header, rows): one row per column of the study, for a terminal table."""
        header = ["column", "role", "type", "missing", "min", "max", "needs (frac/int bits)",
                  "study (frac/int bits)", "status"]
        rows = []
        for c in self.columns:
            name = c.name + (f" [{c.unit}]" if c.unit else "")
            if c.categories is not None:
                kind = f"categorical ({len(c.categories)} levels)" if c.found else "absent"
            else:
                kind = c.type
            rows.append([
                name, c.role, kind, str(c.missing) if c.found else "", _num(c.minimum), _num(c.maximum),
                "" if c.bits_needed is None else f"{c.bits_needed[0]} / {c.bits_needed[1]}",
                "" if c.encoding is None else f"{c.encoding.frac_bits} / {c.encoding.int_bits}",
                _brief(c),
            ])
        return header, rows

    def heading(self) -> list[str]:
        """What was checked against what: the file as read, the study, the factory."""
        read = self.file_format.describe() if self.file_format is not None else "a data frame"
        detected = (f"; detected: {', '.join(self.file_format.detected)}"
                    if self.file_format is not None and self.file_format.detected else "")
        study = f"study {self.study_digest}" + (f" ({self.study_title})" if self.study_title else "")
        factory = f", factory {self.factory_id}" if self.factory_id else ""
        return [f"{self.source}: {read}{detected}; {self.rows_read} row(s) read",
                f"{study}, digest {self.study_digest}{factory}"]

    def column_lines(self) -> list[str]:
        """One line per column of the study."""
        out = []
        for c in self.columns:
            name = f"{c.role} {c.name!r}" + (f" [{c.unit}]" if c.unit else "")
            if not c.found:
                out.append(f"{name}: {_status(c)}")
                continue
            parts = [c.type + (f", {c.detail}" if c.detail else ""), f"{c.missing} missing"]
            if c.minimum is not None:
                parts.append(f"min {_num(c.minimum)}, max {_num(c.maximum)}")
            if c.bits_needed is not None and c.encoding is not None:
                parts.append(f"needs frac_bits {c.bits_needed[0]}, int_bits {c.bits_needed[1]}; the study's grid "
                             f"2^-{c.encoding.frac_bits}, range 2^{c.encoding.int_bits}")
            if c.categories is not None:
                parts.append("levels " + ", ".join(f"{level!r} ×{c.levels.get(level, 0)}" for level in c.categories))
            out.append(f"{name}: {'; '.join(parts)}: {_status(c)}")
        return out

    def row_lines(self) -> list[str]:
        """What happens to the rows: dropped, imputed, outliers, holdout, what remains."""
        out = []
        if self.incomplete_rows:
            rows = (f"{len(self.incomplete_rows)} row(s) with missing values (row(s) "
                    f"{row_list(self.incomplete_rows)})")
            out.append(f"{rows}: dropped (missing='drop')" if self.missing_policy == "drop"
                       else f"{rows}: refused (missing='error')")
        if self.imputed_cells:
            out.append(f"{self.imputed_cells} missing value(s) imputed with the consortium means")
        if self.outlier_rows:
            out.append(f"{len(self.outlier_rows)} row(s) dropped as outliers (max_z): {row_list(self.outlier_rows)}")
        if self.outliers_note:
            out.append(self.outliers_note)
        used = f"{self.rows_used} row(s) used"
        if self.holdout_rows is not None:
            used += (f": {self.rows_used - self.holdout_rows} in the statistics, {self.holdout_rows} kept back as "
                     "the study's holdout")
        return [*out, used]

    def lines(self) -> list[str]:
        """The whole report as plain text lines (the terminal shows :meth:`table` in place of the column lines)."""
        return [*self.heading(), *self.column_lines(), *self.detail_lines()]

    def detail_lines(self) -> list[str]:
        """Everything after the columns: rows, rounding, notes, unused columns, problems, suggestions, verdict."""
        out = self.row_lines() + self.rounding.lines() + [f"note: {note}" for note in self.notes]
        if self.unused_columns:
            out.append(f"not used by the study ({len(self.unused_columns)}): " + ", ".join(
                f"{c.name!r} ({c.reason or c.type})" for c in self.unused_columns))
        out += [f"refused: {problem}" for problem in self.problems]
        out += [f"suggestion: {s.text}" for s in self.suggestions]
        verdict = {"ok": "the data fit the study",
                   "ok_with_rounding": f"the data fit the study, {self.rounding.total} value(s) rounded to their grids",
                   "refused": f"the data do not fit the study ({len(self.problems)} problem(s))"}[self.verdict]
        return [*out, f"verdict: {self.verdict.replace('_', ' ')}: {verdict}; nothing was encrypted or written"]


def _num(value: float | None) -> str:
    return "" if value is None else format(value, ".6g")


def _brief(c: ColumnCheck) -> str:
    if not c.found:
        return "REFUSED: absent"
    return {"refused": "REFUSED", "rounded": f"ok, {c.rounded} rounded", "ok": "ok"}[c.status]


def _status(c: ColumnCheck) -> str:
    if c.status == "refused":
        return "refused: " + "; ".join(c.problems)
    if c.status == "rounded":
        return f"ok, {c.rounded} rounded (by at most {c.largest_change:.3g})"
    return "ok"


# --- the check -----------------------------------------------------------------------------------------
def check_table(
    data: pd.DataFrame | str | os.PathLike[str],
    study: Study | str | os.PathLike[str],
    *,
    factory_id: str | None = None,
    file_format: FileFormat | None = None,
    summary: ColumnSummary | None = None,
) -> CheckReport:
    """A factory's dry run of ``study`` on its own table; nothing is encrypted and nothing is written.

    Args:
        data: the table (a DataFrame, or a CSV/text, Excel or Parquet file read as encryption reads it).
        study: the study (or the path of its file).
        factory_id: this factory's id (names a data frame in the report).
        file_format: how to read the file (default: detected, as encryption does).
        summary: the decrypted consortium summary, when the study's cleaning drops outliers
            (``max_z``) or imputes means: without it those are reported as not checkable here.

    Returns:
        a :class:`CheckReport`; its :attr:`~CheckReport.verdict` says whether encryption would
        accept the table. A file that cannot be read at all raises, as encryption would.
    """
    if not isinstance(study, Study):
        study = Study.load(study)
    if factory_id is not None:
        check_factory_id(factory_id)
    resolved: ResolvedFormat | None = None
    if isinstance(data, pd.DataFrame):
        frame, source = data, factory_id or "data"
        names = [str(c) for c in frame.columns]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:  # as encryption refuses them
            raise DataError(f"{source}: duplicate column name {twice[0]!r}")
    else:
        frame, resolved = read_table_and_format(data, file_format)
        source = str(Path(data))
    return _Checker(frame, study, source, summary).report(factory_id, resolved)


class _Checker:
    """One check of one table against one study (see :func:`check_table`)."""

    def __init__(self, frame: pd.DataFrame, study: Study, source: str, summary: ColumnSummary | None) -> None:
        self.frame, self.study, self.source, self.summary = frame, study, source, summary
        self.labels = {str(c): c for c in frame.columns}
        self.n = len(frame)
        self.decimal = "."
        self.suggestions: list[Suggestion] = []
        self.notes: list[str] = []
        self.problems: list[str] = []
        self.rounding = Rounding()

    def report(self, factory_id: str | None, resolved: ResolvedFormat | None) -> CheckReport:
        study, cleaning = self.study, self.study.cleaning
        if resolved is not None:
            self.decimal = resolved.decimal
        specs = [(study.target, "target"), *((spec, "feature") for spec in study.features)]
        checks: list[ColumnCheck] = []
        numeric: dict[str, np.ndarray] = {}  # float64, NaN where missing or not a number
        text: dict[str, np.ndarray] = {}  # categorical columns as level strings, None where missing
        missing = np.zeros(self.n, dtype=bool)
        for spec, role in specs:
            check = ColumnCheck(spec.name, "target" if role == "target" else "feature", spec.unit, spec.categories)
            checks.append(check)
            if spec.name not in self.labels:
                self._absent(check)
                continue
            series = self.frame[self.labels[spec.name]]
            if spec.categories is not None:
                text[spec.name], gaps = self._categorical(check, series)
            else:
                numeric[spec.name], gaps = self._numeric(check, series)
            check.missing = int(gaps.sum())
            missing |= gaps
        if not any(c.found for c in checks) and len(self.labels) == 1 and resolved is not None \
                and resolved.kind == "csv":
            self._one_column(resolved)

        # the rows the study's cleaning keeps (as hefed.data.preprocess: impute, then drop or refuse, then outliers)
        incomplete_rows = np.flatnonzero(missing).tolist()
        imputed = 0
        keep = ~missing
        if cleaning.impute == "mean":
            imputed, keep = self._impute(numeric, text, missing)
        elif incomplete_rows and cleaning.missing == "error":
            self.problems.append(f"missing values in {len(incomplete_rows)} row(s) ({row_list(incomplete_rows)}); "
                                 "the study's cleaning refuses them (missing='error')")
            self.suggestions.append(Suggestion(
                "fill in or remove the rows with missing values, or agree on missing='drop' in the study (the "
                "same at every factory)", None, {"cleaning": {"missing": "drop"}}))
        outlier_rows, outliers_note = self._outliers(numeric, text, keep)
        if outlier_rows:
            keep = keep.copy()
            keep[outlier_rows] = False

        for check in checks:
            if check.found and check.name in numeric:
                self._encoding(check, numeric[check.name], keep)
            elif check.found and check.name in text:
                self._levels(check, text[check.name], keep)
        rows_used = int(keep.sum())
        holdout_rows = self._rows(rows_used, incomplete_rows if cleaning.impute != "mean" else [])
        problems = [f"column {c.name!r}{' ' if p.startswith('not found') else ': '}{p}" for c in checks
                    for p in c.problems]
        suggestions = list({s.text: s for s in self.suggestions}.values())
        return CheckReport(
            source=self.source, study_id=study.study_id, study_digest=study.digest, study_title=study.title,
            factory_id=factory_id, file_format=resolved, rows_read=self.n, columns=checks,
            missing_policy=cleaning.missing, incomplete_rows=incomplete_rows, imputed_cells=imputed,
            outlier_rows=outlier_rows, outliers_note=outliers_note, rows_used=rows_used, holdout_rows=holdout_rows,
            rounding=self.rounding, unused_columns=self._unused(), problems=problems + self.problems,
            notes=self.notes, suggestions=suggestions,
        )

    # --- columns ---------------------------------------------------------------------------------------
    def _absent(self, check: ColumnCheck) -> None:
        check.found, check.type = False, "absent"
        name = check.name
        same_case = [c for c in self.labels if c.strip().lower() == name.strip().lower()]
        lowered = name.strip().lower()
        prefixed = [c for c in self.labels if min(len(c.strip()), len(lowered)) >= 3
                    and (c.strip().lower().startswith(lowered) or lowered.startswith(c.strip().lower()))]
        close = same_case or prefixed or difflib.get_close_matches(name, list(self.labels), n=1, cutoff=0.75)
        check.hint = close[0] if close else None
        if same_case:
            message = f"not found; the file has {check.hint!r} (names are case-sensitive)"
        elif check.hint:
            message = f"not found; the closest in the file is {check.hint!r}"
        else:
            shown = ", ".join(map(repr, list(self.labels)[:12])) + (" …" if len(self.labels) > 12 else "")
            message = f"not found; the file has {shown or 'no columns'}"
        check.problems.append(message)
        if check.hint:
            self.suggestions.append(Suggestion(
                f"rename the file's column {check.hint!r} to {name!r} (the study's name), if it is the same "
                "quantity" + (f" in {check.unit}" if check.unit else ""), name, {"rename": {"from": check.hint,
                                                                                            "to": name}}))
        else:
            self.suggestions.append(Suggestion(
                f"add the column {name!r} to the file (the study's {check.role}; every factory needs it)", name))

    def _one_column(self, resolved: ResolvedFormat) -> None:
        only = next(iter(self.labels))
        self.notes.append(f"the file was read as one column ({only[:60]!r}) as {resolved.describe()}; its "
                          "delimiter may be another")
        for delimiter in (";", "\t", ","):
            if delimiter in only and delimiter != resolved.delimiter:
                name = {",": "','", ";": "';'", "\t": "tab"}[delimiter]
                self.suggestions.append(Suggestion(f"read the file with the delimiter {name}", None,
                                                   {"file_format": {"delimiter": delimiter}}))
                break

    def _numeric(self, check: ColumnCheck, series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """The column as float64 (NaN where missing or not a number) and its missing cells; problems noted."""
        gaps = series.isna().to_numpy()
        if pd.api.types.is_bool_dtype(series):
            check.type, check.non_numeric = "boolean", int((~gaps).sum())
            self._not_numeric(check, series, np.flatnonzero(~gaps))
            return np.full(self.n, np.nan), gaps
        if pd.api.types.is_integer_dtype(series):  # nullable integers too: only the cells present
            rows = np.flatnonzero(~gaps)
            ints = series.iloc[rows].to_numpy().astype(object)
            big = rows[np.abs(ints) > 2**53] if len(ints) else rows
            if len(big):
                check.problems.append(f"{len(big)} integer(s) beyond 2^53 (row {int(big[0]) + 1}: "
                                      f"{series.iloc[big[0]]}) cannot be represented exactly as float64")
        if pd.api.types.is_numeric_dtype(series):
            values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        elif pd.api.types.is_datetime64_any_dtype(series) or isinstance(series.dtype, pd.PeriodDtype):
            check.type, check.non_numeric = "date", int((~gaps).sum())
            self._not_numeric(check, series, np.flatnonzero(~gaps))
            return np.full(self.n, np.nan), gaps
        else:
            converted = pd.to_numeric(series, errors="coerce")
            if pd.api.types.is_bool_dtype(converted):
                converted = converted.astype(np.float64)
            values = converted.to_numpy(dtype=np.float64, na_value=np.nan)
            bad = np.isnan(values) & ~gaps
            if bad.any():
                check.non_numeric = int(bad.sum())
                check.type, check.detail = _text_kind(series[bad], self.decimal, int((~gaps).sum()))
                self._not_numeric(check, series, np.flatnonzero(bad))
        infinite = np.isinf(values)
        if infinite.any():
            check.not_finite = int(infinite.sum())
            row = int(np.flatnonzero(infinite)[0])
            check.problems.append(f"{check.not_finite} value(s) not finite (row {row + 1}: "
                                  f"{values[row]})")
            self.suggestions.append(Suggestion(f"replace the infinite values of {check.name!r} by real readings, "
                                               "or clear them (empty cells are missing values)", check.name))
            values = np.where(infinite, np.nan, values)
        if self.n and gaps.all():
            check.type = "empty"
        return values, gaps

    def _not_numeric(self, check: ColumnCheck, series: pd.Series, bad: np.ndarray) -> None:
        """A numeric column of the study with cells that are not numbers: the problem and what to change."""
        name = check.name
        cells = ", ".join(f"row {r + 1}: {series.iloc[r]!r}" for r in bad[:_EXAMPLES].tolist())
        what = check.type + (f", {check.detail}" if check.detail else "")
        check.problems.append(f"not numeric ({what}): {len(bad)} cell(s) that are not numbers "
                              f"({cells})")
        if check.type == "boolean":
            self.suggestions.append(Suggestion(
                f"export {name!r} as 0/1, or declare it a categorical feature of the study with its levels (the "
                "same at every factory)", name))
        elif "thousands" in check.detail:
            self.suggestions.append(Suggestion(f"export {name!r} without thousands separators", name))
        elif "percent" in check.detail:
            self.suggestions.append(Suggestion(f"export {name!r} as plain numbers, without '%'", name))
        elif "decimal comma" in check.detail:
            self.suggestions.append(Suggestion("read the file with the decimal separator ','", name,
                                               {"file_format": {"decimal": ","}}))
        elif check.type == "date":
            self.suggestions.append(Suggestion(f"{name!r} holds dates: convert them to a number (e.g. days since a "
                                               "fixed date), the same at every factory, or leave it out", name))
        elif check.type == "text" and check.detail.startswith("mostly numbers"):
            self.suggestions.append(Suggestion(f"correct or clear the cells of {name!r} that are not numbers (an "
                                               "empty cell is a missing value)", name))
        elif check.role == "feature":
            levels = sorted({str(v).strip() for v in series.dropna()})
            self.suggestions.append(Suggestion(
                f"{name!r} holds text: declare it a categorical feature of the study with its levels "
                f"({', '.join(map(repr, levels[:8]))}{' …' if len(levels) > 8 else ''}), the same at every factory",
                name, {"categories": {name: levels}} if len(levels) <= 50 else {}))
        else:
            self.suggestions.append(Suggestion(f"the target {name!r} must be numbers", name))

    def _categorical(self, check: ColumnCheck, series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """The column as level strings (None where missing) and its missing cells."""
        check.type = "categorical"
        gaps = (series.isna() | series.map(lambda v: isinstance(v, str) and not v.strip())).to_numpy(dtype=bool)
        values = np.array([None if gap else _level(v) for v, gap in zip(series.tolist(), gaps, strict=True)],
                          dtype=object)
        return values, gaps

    def _encoding(self, check: ColumnCheck, values: np.ndarray, keep: np.ndarray) -> None:
        """Range, grid, bounds of a numeric column over the rows used."""
        encoding = self.study.encoding.column(check.name)
        check.encoding = encoding
        x = values[keep]
        x = x[~np.isnan(x)]
        if not len(x):
            return
        check.minimum, check.maximum = float(x.min()), float(x.max())
        bounds = self.study.bounds.columns.get(check.name) if self.study.bounds is not None else None
        if bounds is not None:  # encryption clips to the study's bounds after cleaning, before encoding
            lo, hi = bounds
            check.outside_bounds = int(((x < lo) | (x > hi)).sum())
            if check.outside_bounds:
                check.notes.append(f"{check.outside_bounds} value(s) outside the study's bounds [{lo:g}, {hi:g}]: "
                                   "clipped")
                self.notes.append(f"{check.outside_bounds} value(s) of {check.name!r} lie outside the study's "
                                  f"declared bounds [{lo:g}, {hi:g}]: they are clipped to them before encoding")
            x = np.clip(x, lo, hi)
        check.bits_needed = column_bits_needed(x)
        frac_needed, int_needed = check.bits_needed
        too_big = np.abs(x) >= 2.0**encoding.int_bits
        if too_big.any():
            check.out_of_range = int(too_big.sum())
            largest = float(np.abs(x[too_big]).max())
            check.problems.append(
                f"{check.out_of_range} value(s) reach the study's range 2^{encoding.int_bits} "
                f"(largest |{largest:.6g}|); they need int_bits >= {int_needed}")
            frac = min(encoding.frac_bits, _MAX_VALUE_BITS - int_needed)
            self.suggestions.append(Suggestion(
                f"add a per-column encoding for {check.name!r} with int_bits >= {int_needed} to the study "
                f"(ColumnEncoding(frac_bits={frac}, int_bits={int_needed})), the same at every factory; or rescale "
                f"the column (e.g. a larger unit) at every factory", check.name,
                {"column_encoding": {check.name: {"frac_bits": frac, "int_bits": int_needed}}}))
        column_rounding = Rounding()
        self.study.encoding.to_grid(x[~too_big], check.name, column_rounding, self.source)
        if column_rounding.total:
            check.rounded = column_rounding.counts[check.name]
            check.largest_change = column_rounding.largest_change[check.name]
            self.rounding.merge(column_rounding)
            if frac_needed + max(encoding.int_bits, int_needed) <= _MAX_VALUE_BITS:
                self.suggestions.append(Suggestion(
                    f"optional: to encode {check.name!r} without rounding, a per-column encoding with frac_bits >= "
                    f"{frac_needed} (ColumnEncoding(frac_bits={frac_needed}, int_bits="
                    f"{max(encoding.int_bits, int_needed)})) in the study, the same at every factory (wider "
                    "encodings make bundles larger)", check.name,
                    {"column_encoding": {check.name: {"frac_bits": frac_needed,
                                                      "int_bits": max(encoding.int_bits, int_needed)}}}))

    def _levels(self, check: ColumnCheck, values: np.ndarray, keep: np.ndarray) -> None:
        """Levels of a categorical column over the rows used; values that are not levels of the study refused."""
        categories = check.categories or ()
        used = [v for v in values[keep].tolist() if v is not None]
        counts: dict[str, int] = {}
        for value in used:
            counts[value] = counts.get(value, 0) + 1
        check.levels = {level: counts.get(level, 0) for level in categories}
        check.unknown_levels = {v: c for v, c in sorted(counts.items()) if v not in categories}
        if check.unknown_levels:
            total = sum(check.unknown_levels.values())
            shown = ", ".join(f"{v!r} ×{c}" for v, c in list(check.unknown_levels.items())[:6])
            check.problems.append(f"{total} value(s) are not levels of the study ({shown}; "
                                  f"the study's levels: {', '.join(map(repr, categories))})")
            lowered = {level.lower(): level for level in categories}
            renames = {v: lowered[v.lower()] for v in check.unknown_levels if v.lower() in lowered}
            if renames:
                self.suggestions.append(Suggestion(
                    f"in {check.name!r}, write the levels as the study does: "
                    + ", ".join(f"{a!r} → {b!r}" for a, b in renames.items()) + " (levels are case-sensitive)",
                    check.name))
            others = [v for v in check.unknown_levels if v not in renames]
            if others:
                self.suggestions.append(Suggestion(
                    f"map the values {', '.join(map(repr, others[:6]))} of {check.name!r} to the study's levels, or "
                    "agree on a study that lists them (the same levels at every factory)", check.name,
                    {"categories": {check.name: [*categories, *others]}}))
        absent = [level for level in categories if not check.levels[level]]
        if absent and used:
            check.notes.append(f"level(s) {', '.join(map(repr, absent))} do not occur here")
            with_columns = [level for level in absent if level != categories[0]]
            columns = (f" (their one-hot column(s) are all zeros here: {', '.join(map(repr, with_columns))}; fine "
                       "for pooled statistics)" if with_columns else " (the reference level, which has no column)")
            self.notes.append(f"the level(s) {', '.join(map(repr, absent))} of {check.name!r} do not occur in this "
                              f"table{columns}")
        for dummy, level in zip(ColumnSpec(check.name, None, categories).dummies, categories[1:], strict=True):
            indicator = np.array([v == level for v in used], dtype=np.float64)
            self.study.encoding.to_grid(indicator, dummy, self.rounding, self.source)

    # --- rows ------------------------------------------------------------------------------------------
    def _impute(self, numeric: dict[str, np.ndarray], text: dict[str, np.ndarray],
                missing: np.ndarray) -> tuple[int, np.ndarray]:
        """Imputing the consortium means: numeric gaps filled (with the summary) or left unchecked (without);
        rows missing a categorical value are still incomplete."""
        keep = np.ones(self.n, dtype=bool)
        for levels in text.values():
            keep &= np.array([v is not None for v in levels], dtype=bool)
        cells = 0
        for name, values in numeric.items():
            gaps = np.isnan(values) & missing
            cells += int(gaps.sum())
            if self.summary is not None and name not in self.summary.count:
                self.problems.append(f"the consortium summary has no column {name!r} to impute its means from")
            elif self.summary is not None and gaps.any():
                numeric[name] = np.where(gaps, self.summary.mean(name), values)
        if cells and self.summary is None:
            self.notes.append(f"{cells} missing value(s) would be imputed with the consortium means; their values "
                              "are not checked here (no consortium summary given)")
        dropped = int((~keep).sum())
        if dropped:
            if self.study.cleaning.missing == "error":
                rows = np.flatnonzero(~keep).tolist()
                self.problems.append(f"missing categorical values in {dropped} row(s) ({row_list(rows)}); the "
                                     "study's cleaning refuses them (missing='error')")
            else:
                self.notes.append(f"{dropped} row(s) miss a categorical value: dropped (means impute numbers only)")
        return cells, keep

    def _outliers(self, numeric: dict[str, np.ndarray], text: dict[str, np.ndarray],
                  keep: np.ndarray) -> tuple[list[int] | None, str | None]:
        max_z = self.study.cleaning.max_z
        if max_z is None:
            return None, None
        if self.summary is None:
            return None, (f"outliers (|z| > {max_z:g} against the consortium summary): not checkable here without "
                          "the consortium summary (the decrypted summary round)")
        columns = dict(numeric)
        for spec in self.study.features:
            if spec.categories is not None and spec.name in text:
                for dummy, level in zip(spec.dummies, spec.categories[1:], strict=True):
                    columns[dummy] = np.array([v == level for v in text[spec.name].tolist()], dtype=np.float64)
        outlier = np.zeros(self.n, dtype=bool)
        unchecked = []
        for name, values in columns.items():
            if name not in self.summary.count:
                unchecked.append(name)
                continue
            std = self.summary.std(name)
            if std > 0:
                with np.errstate(invalid="ignore"):
                    outlier |= np.abs(values - self.summary.mean(name)) > max_z * std
        note = (f"the consortium summary has no column {', '.join(map(repr, unchecked))}: no outliers checked there"
                if unchecked else None)
        return np.flatnonzero(outlier & keep).tolist(), note

    def _rows(self, rows_used: int, incomplete_rows: list[int]) -> int | None:
        """Problems of the rows as a whole: none left, more than the encoding holds, a holdout that leaves none."""
        encoding, holdout = self.study.encoding, self.study.holdout
        if rows_used == 0 and self.n:
            self.problems.append("no rows left after the study's cleaning" +
                                 (" (every row misses a value)" if len(incomplete_rows) == self.n else ""))
        elif self.n == 0:
            self.problems.append("the table has no data rows")
        if rows_used > 2**encoding.max_rows_bits:
            self.problems.append(f"{rows_used} rows exceed the study's encoding bound of 2^{encoding.max_rows_bits} "
                                 "rows per factory")
        if holdout is None or not rows_used:
            return None
        k = int(round(holdout.test_fraction * rows_used))
        if k < 1 or k > rows_used - 1:
            self.problems.append(f"the study's holdout (test_fraction {holdout.test_fraction:g}) of {rows_used} "
                                 "row(s) leaves an empty training or holdout set")
            return None
        return k

    def _unused(self) -> list[UnusedColumn]:
        used = {self.study.target.name, *self.study.feature_names}
        unused = {name: label for name, label in self.labels.items() if name not in used}
        # a column's reason depends on that column alone: work them out for the unused ones only
        reasons = left_out_columns(self.frame[list(unused.values())], self.study.target.name) if unused else {}
        out = []
        for name, label in unused.items():
            kind, detail = _column_kind(self.frame[label], self.decimal)
            out.append(UnusedColumn(name, kind + (f", {detail}" if detail else ""), reasons.get(name, "")))
        return out


# --- column types --------------------------------------------------------------------------------------
def _level(value: object) -> str:
    """A cell as a level name: integer-valued numbers without '.0' (a column 1, 2 read as floats), text stripped."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def _text_kind(bad: pd.Series, decimal: str, present: int) -> tuple[str, str]:
    """(type, detail) of a column with cells that are not numbers (``bad``: those cells; ``present``:
    the column's non-missing cells)."""
    cells = [str(v).strip() for v in bad.tolist()]
    example = cells[0] if cells else ""

    def share(pattern: re.Pattern[str]) -> float:
        return sum(bool(pattern.match(c)) for c in cells) / len(cells) if cells else 0.0

    if cells and all(c.lower() in _BOOLEANS for c in cells):
        return "boolean", f"e.g. {example!r}"
    if share(_DATE) >= 0.8:
        return "date", f"e.g. {example!r}"
    if share(_PERCENT) >= 0.8:
        return "text", f"percent signs, e.g. {example!r}"
    if decimal == "." and share(_DECIMAL_COMMA) >= 0.8 and share(_THOUSANDS) < 0.5:
        return "text", f"decimal commas, e.g. {example!r}"
    if share(_THOUSANDS) >= 0.8:
        return "text", f"thousands separators, e.g. {example!r}"
    if len(cells) * 2 <= present:
        return "text", f"mostly numbers; {len(cells)} cell(s) are not, e.g. {example!r}"
    distinct = len(set(cells))
    return "text", f"{distinct} distinct value(s), e.g. {example!r}"


def _column_kind(series: pd.Series, decimal: str) -> tuple[str, str]:
    """(type, detail) of any column of the file: numeric, text, boolean, date or empty."""
    present = series.dropna()
    if present.empty:
        return "empty", ""
    if pd.api.types.is_bool_dtype(series):
        return "boolean", ""
    if pd.api.types.is_numeric_dtype(series):
        return "numeric", ""
    if pd.api.types.is_datetime64_any_dtype(series):
        return "date", ""
    if all(isinstance(v, (bool, np.bool_)) for v in present.tolist()):
        return "boolean", ""
    converted = pd.to_numeric(present, errors="coerce")
    bad = present[converted.isna().to_numpy()]
    if bad.empty:
        return "numeric", "as text"
    return _text_kind(bad, decimal, len(present))
