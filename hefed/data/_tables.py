"""Reading a factory's table and choosing the target and feature columns.

CSV and other text files (dialect and encoding detected or named, :mod:`hefed.data._formats`),
Excel workbooks and Parquet are read. Columns are always matched by name. Duplicate column
names are refused rather than renamed. A column that is numeric except for a few cells is
refused with the cells named (and what they look like: thousands separators, a decimal comma,
percentages); the columns left out of the default features are listed, with the reason, by
:func:`hefed.data.left_out_columns`.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._files import atomic_write_bytes
from ..errors import DataError, InvalidFileError, UsageError
from ..stats import canonical_order, check_seed
from ._formats import (
    PARQUET_SUFFIXES,
    FileFormat,
    ResolvedFormat,
    bad_cells_hint,
    check_workbook,
    decimal_of,
    detect_format,
    fallback_encoding,
    to_numbers,
)

# Each decimal must parse to the correctly rounded float64, as float() does: pandas 3 does so by
# default (and deprecates the option); pandas 2's default parser does not, so ask for round_trip.
_CORRECTLY_ROUNDED: dict[str, Any] = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}


def read_table(path: str | os.PathLike[str], file_format: FileFormat | None = None) -> pd.DataFrame:
    """Read a CSV/text, Excel or Parquet file into a DataFrame, refusing unreadable or ambiguous files.

    The dialect and text encoding of text files, and the sheet of a workbook, are detected unless
    ``file_format`` names them (:mod:`hefed.data._formats`). A text file's decimal separator is kept
    in ``frame.attrs["decimal"]``, so its text cells become numbers as the file writes them.
    """
    return read_table_and_format(path, file_format)[0]


def read_table_and_format(
    path: str | os.PathLike[str], file_format: FileFormat | None = None,
) -> tuple[pd.DataFrame, ResolvedFormat]:
    """:func:`read_table`, and how the file was really read: the detected format, with the text
    encoding the reader fell back to when UTF-8 failed beyond the detection sample."""
    path = Path(path)
    check_data_file(path)
    resolved = detect_format(path, file_format)
    if resolved.kind == "parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises many types for corrupt files
            raise InvalidFileError(f"{path}: not a readable Parquet file ({type(exc).__name__})") from None
        check_unique_columns(list(map(str, frame.columns)), path)
        return frame, resolved
    if resolved.kind == "excel":
        return _read_workbook(path, resolved.sheet), resolved
    try:
        frame = _read_text(path, resolved)
    except UnicodeDecodeError:
        encoding = fallback_encoding(path, resolved)  # ASCII at first, Windows text further on
        if encoding is None:
            raise _not_encoded(path, resolved.encoding) from None
        resolved = dataclasses.replace(resolved, encoding=encoding)
        frame = _read_text(path, resolved)
    frame.attrs["decimal"] = resolved.decimal
    return frame, resolved


def _read_text(path: Path, resolved: ResolvedFormat) -> pd.DataFrame:
    """A text table as ``resolved`` says (UnicodeDecodeError is the caller's)."""
    read_csv_header(path, resolved)
    try:
        with warnings.catch_warnings():
            # A row with more fields than the header would otherwise be read with its first
            # column as the index, silently shifting every column by one.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(path, sep=resolved.delimiter, decimal=resolved.decimal,
                                encoding=_python_encoding(resolved.encoding), skipinitialspace=True, index_col=False,
                                **_CORRECTLY_ROUNDED)
    except pd.errors.ParserWarning:
        raise InvalidFileError(f"{path}: rows have more fields than the header (read as {resolved.describe()})",
                               parameters=resolved.options("delimiter")) from None
    except (pd.errors.ParserError, ValueError) as exc:
        if isinstance(exc, UnicodeDecodeError):
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        ragged = _RAGGED.search(first)
        if ragged:
            expected, line, saw = ragged.groups()
            raise InvalidFileError(f"{path}: line {line} has {saw} fields where the header has {expected} (read as "
                                   f"{resolved.describe()}{_detected_note(resolved, 'delimiter')})",
                                   parameters=resolved.options("delimiter")) from None
        raise InvalidFileError(f"{path}: cannot parse CSV ({first}; read as {resolved.describe()}"
                               f"{_detected_note(resolved)})", parameters=resolved.options()) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    _refuse_rounded_integers(path, frame, resolved)
    return frame


_RAGGED = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _detected_note(resolved: ResolvedFormat, *which: str) -> str:
    """'; the delimiter was detected: choose it if it is another' (for what detection chose)."""
    names = [name for name in resolved.detected if not which or name in which]
    if not names:
        return ""
    chosen = " and ".join(f"the {'text encoding' if n == 'encoding' else n}" for n in names)
    return f"; {chosen} {'was' if len(names) == 1 else 'were'} detected: choose {'it' if len(names) == 1 else 'them'}" \
        " if the file uses another"


def _not_encoded(path: Path, encoding: str) -> InvalidFileError:
    """The error for a text file that does not decode: where, and the option that reads it."""
    line, byte = _first_undecodable(path, encoding)
    where = f"line {line} (byte 0x{byte:02x})" if line else "somewhere"
    return InvalidFileError(f"{path}: {where} is not {encoding} text; give the text encoding (e.g. cp1252 or "
                            "latin-1 for Windows exports)", parameters=("file_encoding",))


def _first_undecodable(path: Path, encoding: str) -> tuple[int, int]:
    """(line, byte value) of the first byte ``encoding`` cannot decode, or (0, 0)."""
    decoder = codecs.getincrementaldecoder(_python_encoding(encoding))()
    line = 1
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            try:
                line += decoder.decode(chunk).count("\n")
            except UnicodeDecodeError as exc:  # exc.object: the bytes held back from before, then this chunk
                data = bytes(exc.object)
                return line + data[: exc.start].count(b"\n"), data[exc.start]
    return 0, 0


def _python_encoding(encoding: str) -> str:
    """The codec that also drops a UTF-8 byte-order mark."""
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


def _read_workbook(path: Path, sheet: str | int) -> pd.DataFrame:
    """One sheet of an Excel workbook: its first row names the columns; empty rows are skipped
    (as blank lines of a CSV file); cells that are all numbers (or numbers as text) make a
    numeric column, while dates, times and booleans stay what they are."""
    from python_calamine import CalamineError, CalamineWorkbook

    check_workbook(path)
    try:
        workbook = CalamineWorkbook.from_path(str(path))
        try:
            names = list(workbook.sheet_names)
            if isinstance(sheet, int):
                if not 0 <= sheet < len(names):
                    raise InvalidFileError(f"{path}: the workbook has {len(names)} sheet(s), no sheet {sheet} "
                                           f"(sheets: {_sheet_list(names)})", parameters=("sheet",))
                rows = workbook.get_sheet_by_index(sheet).to_python()
            else:
                if sheet not in names:
                    raise InvalidFileError(f"{path}: no sheet {sheet!r} (sheets: {_sheet_list(names)})",
                                           parameters=("sheet",))
                rows = workbook.get_sheet_by_name(sheet).to_python()
        finally:
            workbook.close()
    except CalamineError as exc:
        raise InvalidFileError(f"{path}: not a readable Excel workbook ({str(exc).splitlines()[0][:200]})") from None
    if not rows or all(cell in ("", None) for cell in rows[0]):
        raise DataError(f"{path}: sheet {sheet!r} has no header row (the first row is empty)")
    header = [str(cell).strip() for cell in rows[0]]
    body = [[None if cell == "" else cell for cell in row] for row in rows[1:]]
    body = [row for row in body if any(cell is not None for cell in row)]
    width = len(header)
    while width and not header[width - 1] and all(len(row) < width or row[width - 1] is None for row in body):
        width -= 1  # trailing columns with neither a name nor a value (a formatted range)
    header, body = header[:width], [row[:width] for row in body]
    unnamed = [j + 1 for j, name in enumerate(header) if not name]
    if unnamed:
        raise DataError(f"{path}: sheet {sheet!r}: column {unnamed[0]} has values but no name in the first row "
                        "(is the header lower down? the first row must name the columns)")
    check_unique_columns(header, path)
    frame = pd.DataFrame(body, columns=header, dtype=object)
    for column in frame.columns:  # a column of numbers (or numbers as text) and blanks is numeric, as in a CSV
        cells = frame[column]
        converted = to_numbers(cells)  # booleans, dates and times are never numbers
        if converted.notna().sum() == cells.notna().sum():
            frame[column] = converted
    return frame


def _sheet_list(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:20])
    return shown + (f", … ({len(names) - 20} more)" if len(names) > 20 else "") if names else "none"


def check_data_file(path: Path) -> None:
    """Refuse a data file that is missing or empty."""
    if not path.is_file():
        raise InvalidFileError(f"{path}: data file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: data file is empty")


def read_csv_header(path: Path, resolved: ResolvedFormat | None = None) -> list[str]:
    """A CSV file's header as written (names not stripped): refused if it cannot be decoded, is
    missing, or has two columns of the same (stripped) name."""
    resolved = resolved or detect_format(path)
    try:
        with path.open("r", encoding=_python_encoding(resolved.encoding), newline="") as handle:
            header = next(csv.reader(handle, delimiter=resolved.delimiter), None)
    except UnicodeDecodeError:
        raise InvalidFileError(f"{path}: not {resolved.encoding} text; give the text encoding",
                               parameters=("file_encoding",)) from None
    if not header or all(not h.strip() for h in header):
        raise DataError(f"{path}: no header row")
    check_unique_columns([h.strip() for h in header], path)
    return header


def _refuse_rounded_integers(path: Path, frame: pd.DataFrame, resolved: ResolvedFormat) -> None:
    """Integers beyond 2^53 in a float column were rounded by the parse; refuse them, naming the cell.

    Only the (rare) columns holding such magnitudes are read a second time, as text.
    """
    suspects = [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])
                and bool((np.abs(frame[c].to_numpy()) >= 2**53).any())]
    if not suspects:
        return
    text = pd.read_csv(path, sep=resolved.delimiter, encoding=_python_encoding(resolved.encoding),
                       skipinitialspace=True, index_col=False, dtype=str, usecols=lambda c: str(c).strip() in suspects)
    text.columns = [str(c).strip() for c in text.columns]
    for column in suspects:
        values = frame[column].to_numpy()
        for row in np.flatnonzero(np.abs(values) >= 2**53):
            cell = str(text[column].iloc[row]).strip()
            if cell.lstrip("+-").isdigit() and int(cell) != int(values[row]):
                raise DataError(f"{path}: column {column!r}, row {row + 1}: integer {cell} cannot be "
                                "represented exactly as float64")


def missing_columns_error(source: str, absent: Sequence[str], available: Sequence[str],
                          what: str = "column(s)") -> DataError:
    """A one-line error naming the absent columns, a same-name-but-case match where there is one,
    and the columns the table has."""
    lowered: dict[str, list[str]] = {}
    for name in available:
        lowered.setdefault(name.lower(), []).append(name)
    hints = [f"{name!r} → {lowered[name.lower()][0]!r}" for name in absent if name.lower() in lowered]
    hint = f" (names are case-sensitive: {', '.join(hints)}?)" if hints else ""
    shown = ", ".join(available[:40]) + (f", … ({len(available) - 40} more)" if len(available) > 40 else "")
    return DataError(f"{source}: {what} not found: {', '.join(map(repr, absent))}{hint}; columns: {shown}")


def check_unique_columns(columns: Sequence[str], source: os.PathLike[str] | str) -> None:
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            raise DataError(f"{source}: duplicate column name {name!r}")
        seen.add(name)


def numeric_column(
    frame: pd.DataFrame, name: str, source: str, label: object = None, allow_missing: bool = False
) -> np.ndarray:
    """The column as float64, naming the first cells that are not numbers (and what they look like).

    Text cells are read as the file writes numbers (a decimal comma where the file has one:
    ``frame.attrs["decimal"]``). Integers beyond 2^53 are refused: float64 cannot hold them
    exactly, and converting them would silently change the data.
    """
    col = frame[name if label is None else label]
    if pd.api.types.is_bool_dtype(col):
        raise DataError(f"{source}: column {name!r} is boolean, not numeric")
    if pd.api.types.is_integer_dtype(col):
        ints = col.to_numpy()
        big = np.abs(ints.astype(object)) > 2**53 if len(ints) else np.zeros(0, dtype=bool)
        if big.any():
            row = int(np.flatnonzero(big)[0])
            raise DataError(
                f"{source}: column {name!r}, row {row + 1}: integer {ints[row]} is beyond 2^53 and "
                "cannot be represented exactly as float64"
            )
    if pd.api.types.is_numeric_dtype(col):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        decimal = decimal_of(frame)
        converted = to_numbers(col, decimal)
        bad = converted.isna() & col.notna()
        if bad.any():
            rows = np.flatnonzero(bad.to_numpy())[:3]
            cells = ", ".join(f"row {r + 1} ({col.iloc[r]!r})" for r in rows)
            hint, parameters = bad_cells_hint(col[bad].iloc[:100], decimal)
            raise DataError(f"{source}: column {name!r} has non-numeric cells: {cells}{hint}", parameters=parameters)
        values = converted.to_numpy(dtype=np.float64, na_value=np.nan)
        big = np.flatnonzero(np.abs(values) >= 2**53)
        for row in big.tolist():
            text = str(col.iloc[row]).strip()
            if text.lstrip("+-").isdigit() and int(text) != int(values[row]):
                raise DataError(
                    f"{source}: column {name!r}, row {row + 1}: integer {text} cannot be represented "
                    "exactly as float64"
                )
    if allow_missing:
        missing = np.isinf(values)
    elif len(values) and np.isfinite(values.min()) and np.isfinite(values.max()):
        return values  # every value finite (NaN propagates through min and max): no n-sized mask needed
    else:
        missing = ~np.isfinite(values)
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        what = "missing" if np.isnan(values[row]) else f"not finite ({values[row]})"
        raise DataError(f"{source}: column {name!r}, row {row + 1}: value is {what}")
    return values


def _mostly_numeric(col: pd.Series, decimal: str = ".") -> bool:
    """True for numeric columns with a value, and for text columns most of whose cells are
    numbers (as the file writes them): the columns the default features take."""
    if pd.api.types.is_bool_dtype(col):
        return False
    if len(col) and bool(col.isna().all()):
        return False  # empty: no values at all
    if pd.api.types.is_numeric_dtype(col):
        return True
    if not (pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col)):
        return False
    present = col.dropna()
    if present.empty:
        return False
    return bool(to_numbers(present, decimal).notna().mean() >= 0.5)


def default_features(frame: pd.DataFrame, target: str) -> list[str]:
    """Every numeric column but the target (mostly-numeric text columns included, so
    their bad cells are reported instead of the column silently disappearing).

    The columns left out, each with the reason, are :func:`hefed.data.left_out_columns`.
    """
    decimal = decimal_of(frame)
    return [str(c) for c in frame.columns if str(c) != target and _mostly_numeric(frame[c], decimal)]


def select_xy(
    frame: pd.DataFrame,
    target: str,
    features: Sequence[str] | None = None,
    source: str = "data",
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Return (X, y, feature names) as float64, validated.

    Raises :class:`DataError` naming the source, column and row of any problem.
    """
    labels, features = _checked_columns(frame, target, features, source)
    X = np.empty((len(frame), len(features)), order="F")  # column by column, as it is filled and read
    for j, f in enumerate(features):
        X[:, j] = numeric_column(frame, f, source, labels[f])
    y = numeric_column(frame, target, source, labels[target])
    return X, y, features


def select_block(
    frame: pd.DataFrame,
    target: str,
    features: Sequence[str] | None = None,
    source: str = "data",
) -> tuple[np.ndarray, list[str]]:
    """(canonical block, feature names): what :func:`select_xy` validates, refusing the same data with the same
    errors, copied once, straight from the frame, into the ``(d + 2) × n`` float64 block the statistics read
    (:func:`hefed.stats.canonical_block`: the column of ones, the features by sorted name, the target)."""
    labels, features = _checked_columns(frame, target, features, source)
    columns = np.empty((len(features) + 2, len(frame)))
    columns[0] = 1.0
    for f, row in zip(features, canonical_order(features), strict=True):
        columns[row] = numeric_column(frame, f, source, labels[f])
    columns[-1] = numeric_column(frame, target, source, labels[target])
    return columns, features


def _checked_columns(
    frame: pd.DataFrame, target: str, features: Sequence[str] | None, source: str,
) -> tuple[dict[str, Any], list[str]]:
    """(label of each column by name, the feature names): the target and features exist, once each,
    and the table has rows."""
    labels = {str(c): c for c in frame.columns}
    columns = list(labels)
    check_unique_columns([str(c) for c in frame.columns], source)
    if target not in columns:
        raise missing_columns_error(source, [target], columns, "target column")
    if features is None:
        features = default_features(frame, target)
    features = [str(f) for f in features]
    if not features:
        raise DataError(f"{source}: no feature columns (no numeric column besides {target!r})")
    check_unique_columns(features, f"{source}: features")
    missing = [f for f in features if f not in columns]
    if missing:
        raise missing_columns_error(source, missing, columns, "feature column(s)")
    if target in features:
        raise DataError(f"{source}: target {target!r} is also listed as a feature")
    if len(frame) == 0:
        raise DataError(f"{source}: no data rows")
    return labels, features


@dataclass(frozen=True)
class Holdout:
    """Keep ``round(test_fraction · n)`` rows, drawn with ``seed``, out of what a factory sends."""

    test_fraction: float
    seed: int = 0

    def __post_init__(self) -> None:
        check_test_fraction(self.test_fraction)
        check_seed(self.seed)

    def split(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(training rows, holdout rows) of ``frame``: :func:`split_holdout`."""
        return split_holdout(frame, self.test_fraction, self.seed)


def check_test_fraction(test_fraction: object) -> float:
    """A holdout fraction is a number strictly between 0 and 1."""
    if (isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float))
            or not 0 < test_fraction < 1):
        raise UsageError(f"test fraction must be strictly between 0 and 1, got {test_fraction!r}",
                         parameters=("test_fraction",))
    return float(test_fraction)


def split_holdout(frame: pd.DataFrame, test_fraction: float, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows into (train, holdout), reproducibly for a given ``seed``.

    ``round(test_fraction · n)`` rows, drawn uniformly without replacement, form
    the holdout; both parts keep the original row order.
    """
    check_seed(seed)
    check_test_fraction(test_fraction)
    n = len(frame)
    k = int(round(test_fraction * n))
    if k < 1 or k > n - 1:
        raise UsageError(f"test fraction {test_fraction} of {n} rows leaves an empty training or holdout set")
    rng = np.random.default_rng(seed)
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[:k]] = True
    return frame.loc[~mask].reset_index(drop=True), frame.loc[mask].reset_index(drop=True)


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str], force: bool = False) -> Path:
    """Write a table atomically as Parquet (.parquet/.pq) or CSV (anything else)."""
    path = Path(path)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        import io

        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        data = buffer.getvalue()
    else:
        data = frame.to_csv(index=False).encode("utf-8")
    return atomic_write_bytes(path, data, force=force)
