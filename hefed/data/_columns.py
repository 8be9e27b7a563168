"""Columns that are not plain numbers: why the default features leave them out, and one-hot encoding.

* :func:`left_out_columns` — every column the default features leave out, with the reason
  (text, dates/times, booleans, a category and its levels, thousands separators, percentages,
  a decimal comma, empty), so no column disappears silently;
* :func:`one_hot` — a categorical column as 0/1 dummies for levels fixed in advance (a study's),
  so every factory has the same columns whatever levels its own rows happen to hold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import DataError, UsageError
from ._formats import Look, column_look, decimal_of, look_reason, to_numbers
from ._tables import default_features, missing_columns_error

#: A text column with at most this many distinct values (and each seen twice on average) is a category.
MAX_LEVELS = 20
#: Levels and examples shown in a reason.
_SHOWN = 5
#: Distinct non-numeric cells looked at to say what a column holds.
_LOOKED_AT = 10_000


def left_out_columns(frame: pd.DataFrame, target: str) -> dict[str, str]:
    """Every column :func:`~hefed.data.default_features` leaves out (the target aside), in the
    table's order, mapped to why: one line each, saying what the column holds and, where there
    is one, how to use it. The reasons read, for example::

        empty (no values)
        booleans (e.g. 'True', 'False'): one-hot encode them with levels fixed in the study
        dates/times (e.g. '2024-01-05 13:00:00', '2024-01-06 13:00:00')
        category with 3 levels: 'coal', 'gas', 'oil': one-hot encode it with levels fixed in the study
        numbers with thousands separators (e.g. '44,725.5', '1,204.0'): export them without thousands separators
        percentages (e.g. '12%', '7.5%'): export them as plain numbers
        numbers with a decimal comma (e.g. '1,5', '2,25'): read the file with decimal ','
        one value only ('plant A')
        text (e.g. 'restart after trip', 'ok')

    A text file's decimal separator (``frame.attrs["decimal"]``, set by
    :func:`~hefed.data.read_table`) decides which cells are numbers, as for the features.
    """
    return columns_left_out(frame, target, default_features(frame, target))


def columns_left_out(frame: pd.DataFrame, target: str, chosen: Sequence[str]) -> dict[str, str]:
    """:func:`left_out_columns` when the default features ``chosen`` are already known."""
    decimal, kept = decimal_of(frame), set(chosen)
    return {str(label): _reason(frame[label], decimal) for label in frame.columns
            if str(label) != target and str(label) not in kept}


def _reason(column: pd.Series, decimal: str) -> str:
    present = column.dropna()
    if isinstance(present.dtype, pd.StringDtype) or pd.api.types.is_object_dtype(present):
        present = present[present.map(lambda v: not (isinstance(v, str) and not v.strip()))]
    if present.empty:
        return "empty (no values)"
    if pd.api.types.is_bool_dtype(present):
        look: Look = "boolean"
        others = present
    elif pd.api.types.is_datetime64_any_dtype(present) or pd.api.types.is_timedelta64_dtype(present):
        look, others = "date", present
    else:
        others = present[to_numbers(present, decimal).isna()]
        look = column_look(pd.unique(others)[:_LOOKED_AT], decimal)
    examples = [_shown(v) for v in pd.unique(others)[:_SHOWN]]
    described = look_reason(look, examples, decimal)
    if described is not None:
        return described
    levels = sorted({_shown(v) for v in pd.unique(present)[: MAX_LEVELS + 1]})
    if len(levels) == 1:
        return f"one value only ({levels[0]!r})"
    if len(levels) <= MAX_LEVELS and 2 * len(levels) <= len(present):
        shown = ", ".join(repr(level) for level in levels[:_SHOWN]) + (", …" if len(levels) > _SHOWN else "")
        return f"category with {len(levels)} levels: {shown}: one-hot encode it with levels fixed in the study"
    return f"text (e.g. {', '.join(repr(e) for e in examples[:2])})"


def _shown(value: object) -> str:
    return str(value).strip()


def level_of(value: object) -> str | None:
    """How a cell names its level (``None`` for a missing cell): text stripped of spaces, an
    integral number as an integer (``2.0`` → ``'2'``), a boolean as ``'True'``/``'False'``."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if math.isnan(number):
            return None
        return str(int(number)) if number.is_integer() else repr(number)
    text = str(value).strip()
    return text or None


def one_hot(frame: pd.DataFrame, column: str, levels: Sequence[str], source: str = "data") -> pd.DataFrame:
    """``frame`` with the categorical ``column`` replaced, in place, by one dummy column per
    level but the first (the reference), named ``f"{column}={level}"``, holding 0.0 or 1.0.

    ``levels`` are fixed in advance (a study's, in its order), so every factory gets the same
    columns. A cell is matched to a level as :func:`level_of` names it (exactly, case and all);
    a cell that is none of the levels is refused naming the column, the row and the value; a
    missing cell stays missing in every dummy (for the cleaning to drop or refuse). The
    original frame is not changed.
    """
    levels = [str(level) for level in levels]
    if len(levels) < 2 or len(set(levels)) != len(levels):
        raise UsageError(f"column {column!r}: one-hot encoding needs at least two distinct levels, got {levels!r}")
    labels = {str(c): c for c in frame.columns}
    if column not in labels:
        raise missing_columns_error(source, [column], list(labels), "categorical column")
    dummies = [f"{column}={level}" for level in levels[1:]]
    clash = [name for name in dummies if name in labels]
    if clash:
        raise DataError(f"{source}: column {clash[0]!r} already exists; it would be a dummy of {column!r}")
    cells = frame[labels[column]]
    if pd.api.types.is_string_dtype(cells):  # text: vectorized
        names = cells.str.strip()
        names = names.where(names != "")
    else:
        names = cells.map(level_of)
    missing = names.isna().to_numpy(dtype=bool)
    codes = names.map({level: float(j) for j, level in enumerate(levels)}).to_numpy(dtype=np.float64,
                                                                                     na_value=np.nan)
    unknown = np.isnan(codes) & ~missing
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        shown = ", ".join(repr(level) for level in levels[:10]) + (", …" if len(levels) > 10 else "")
        value = cells.iloc[row]
        value = value.item() if isinstance(value, np.generic) else value
        raise DataError(f"{source}: column {column!r}, row {row + 1}: value {value!r} is not one of its "
                        f"levels ({shown})")
    at = list(frame.columns).index(labels[column])
    out = frame.drop(columns=[labels[column]])
    for offset, name in enumerate(dummies):
        values = (codes == offset + 1).astype(np.float64)
        values[missing] = np.nan
        out.insert(at + offset, name, values)
    return out
