"""The files plants export: CSV dialects, text encodings, Excel workbooks, Parquet — detected or named.

A plant's table arrives as whatever its software exports: comma- or semicolon-separated CSV
with a decimal point or a decimal comma (European Excel), tab-separated text, UTF-8 with or
without a byte-order mark or Windows' cp1252 / Latin-1, an ``.xlsx`` workbook, or Parquet.
:func:`detect_format` looks at the first bytes and decides each of these, unless the user
named it (:class:`FileFormat`); a file that cannot be read as a table gets a message saying
what the file looks like and which option reads it.

Detection, in order:

* **kind** — by suffix (``.parquet``/``.pq``, ``.xlsx``/``.xlsm``, else text); a file whose
  first bytes say it is something else (a workbook or zip archive, Parquet, an old ``.xls``,
  gzip, text under a workbook's suffix) is refused, naming what it is and how to read it;
* **text encoding** — UTF-8 (a BOM is skipped) when the first 64 KiB decode as UTF-8, else cp1252
  (Windows Excel's), else Latin-1; when those 64 KiB are plain ASCII and a later byte is not
  UTF-8, the whole-table reader reads the file again as cp1252 (else Latin-1). UTF-16 (a
  UTF-16 byte-order mark, or NUL bytes between ASCII letters) is refused naming the encoding
  that reads it;
* **delimiter** — ``\\t`` for ``.tsv``; otherwise, of ``\\t`` ``;`` ``,`` (in that order of
  preference: a header such as ``Flow, m³/h;Temp, °C`` above decimal commas splits on ``,``
  too), the first that splits every sampled line into the same number (at least two) of
  fields; if none does (a ragged file), the one that splits most lines like the header;
* **decimal separator** — ``.`` with the delimiter ``,``; otherwise each column votes by its
  cells (``1,5`` for a comma, ``1.5`` for a point; ``1.234`` and ``1,234`` could be thousands
  separators and do not vote): the majority decides, and a tie means ``,`` after ``;``
  (European Excel's pairing) and ``.`` after a tab.

The reader keeps the decimal separator of a text file in ``frame.attrs["decimal"]``, so text
cells are converted to numbers as the file writes them (:func:`to_numbers`): in a file with a
decimal comma, ``1.234`` is not silently read as 1.234.

:func:`cell_look` and :func:`bad_cells_hint` say what a cell that is not a number looks like
(thousands separators, a decimal comma, a percentage, a date, a boolean, text).
"""

from __future__ import annotations

import codecs
import csv
import datetime as _dt
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ..errors import DataError, InvalidFileError, UsageError

PARQUET_SUFFIXES = {".parquet", ".pq"}
EXCEL_SUFFIXES = {".xlsx", ".xlsm"}
DELIMITERS = (",", ";", "\t")
#: The order in which delimiters that split every line alike are preferred.
_PREFERENCE = ("\t", ";", ",")
#: Bytes looked at to detect the dialect and encoding.
SNIFF_BYTES = 64 << 10
#: Largest uncompressed workbook read (the sum the zip directory declares, and what it really holds).
MAX_WORKBOOK_BYTES = 512 << 20

_NUMBER_TAIL = r"(?:[eE][+-]?\d+)?"
_COMMA_DECIMAL = re.compile(rf"^\s*[+-]?\d*,\d+{_NUMBER_TAIL}\s*$")
_POINT_DECIMAL = re.compile(rf"^\s*[+-]?\d*\.\d+{_NUMBER_TAIL}\s*$")
# One thousands group, as ``1,234`` or ``1.234``: either a thousands separator or a decimal mark.
_ONE_GROUP = re.compile(r"^\s*[+-]?[1-9]\d{0,2}[.,]\d{3}\s*$")
_THOUSANDS = (
    re.compile(r"^[+-]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?$"),  # 44,725.5
    re.compile(r"^[+-]?[1-9]\d{0,2}(?:\.\d{3})+(?:,\d+)?$"),  # 44.725,5
    re.compile(r"^[+-]?[1-9]\d{0,2}(?:[ '\u00a0\u2009\u202f\u2019]\d{3})+(?:[.,]\d+)?$"),  # 44 725,5 / 44'725.5
)
_PERCENT = re.compile(r"^[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)\s?%$")
_CELL_COMMA_DECIMAL = re.compile(rf"^[+-]?\d*,\d+{_NUMBER_TAIL}$")
_CELL_POINT_DECIMAL = re.compile(rf"^[+-]?\d*\.\d+{_NUMBER_TAIL}$")
_CLOCK = r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:\s?[AaPp]\.?[Mm]\.?)?"
_DATES = (
    re.compile(rf"^\d{{4}}[-/.]\d{{1,2}}[-/.]\d{{1,2}}(?:[ T]{_CLOCK}(?:Z|[+-]\d{{2}}:?\d{{2}})?)?$"),
    re.compile(rf"^\d{{1,2}}[-/.]\d{{1,2}}[-/.]\d{{2,4}}(?:,?\s{_CLOCK})?$"),
    re.compile(rf"^{_CLOCK}$"),
)
_BOOLEANS = {"true", "false", "yes", "no", "wahr", "falsch", "vrai", "faux"}
#: Cells of a workbook (or a data frame) that are never numbers.
_DATE_TYPES = (_dt.date, _dt.time, _dt.timedelta, np.datetime64, np.timedelta64)
_NOT_NUMBERS = (bool, np.bool_, *_DATE_TYPES)

Kind = Literal["csv", "excel", "parquet"]
#: What a cell that is not a number looks like (see :func:`cell_look`).
Look = Literal["thousands", "grouped", "percent", "decimal comma", "decimal point", "date", "boolean", "text"]


@dataclass(frozen=True)
class FileFormat:
    """How to read a table file; ``None`` means detect it (see the module docstring).

    Attributes:
        delimiter: ``","``, ``";"`` or ``"\\t"`` (CSV and text files).
        decimal: ``"."`` or ``","`` (CSV and text files).
        encoding: the text encoding, e.g. ``"utf-8"``, ``"cp1252"``, ``"latin-1"``, ``"utf-16"``
            (CSV and text files).
        sheet: the worksheet of an Excel workbook, by name or 0-based position (default: the first).

    A choice that does not apply to the file (a sheet for a CSV file, a delimiter for a
    workbook or Parquet) is refused when the file is read, rather than ignored.
    """

    delimiter: str | None = None
    decimal: str | None = None
    encoding: str | None = None
    sheet: str | int | None = None

    def __post_init__(self) -> None:
        if self.delimiter is not None and self.delimiter not in DELIMITERS:
            raise UsageError(f"delimiter must be one of ',', ';', tab, got {self.delimiter!r}",
                             parameters=("delimiter",))
        if self.decimal is not None and self.decimal not in (".", ","):
            raise UsageError(f"decimal separator must be '.' or ',', got {self.decimal!r}", parameters=("decimal",))
        if self.delimiter is not None and self.delimiter == self.decimal:
            raise UsageError("the delimiter and the decimal separator must differ", parameters=("delimiter",))
        if self.encoding is not None:
            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise UsageError(f"unknown text encoding {self.encoding!r}", parameters=("file_encoding",)) from None
        if self.sheet is not None and (isinstance(self.sheet, bool) or not isinstance(self.sheet, (str, int))
                                       or (isinstance(self.sheet, int) and self.sheet < 0)):
            raise UsageError(f"sheet must be a name or a 0-based position, got {self.sheet!r}",
                             parameters=("sheet",))


@dataclass(frozen=True)
class ResolvedFormat:
    """What a file is and how it is read: every choice made (detected or given)."""

    kind: Kind
    delimiter: str = ","
    decimal: str = "."
    encoding: str = "utf-8"
    sheet: str | int = 0
    detected: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind == "parquet":
            return "Parquet"
        if self.kind == "excel":
            return f"Excel workbook, sheet {self.sheet!r}"
        names = {",": "comma", ";": "semicolon", "\t": "tab"}
        return (f"text, {names[self.delimiter]}-separated, decimal {'comma' if self.decimal == ',' else 'point'}, "
                f"{self.encoding}")

    def options(self, *which: str) -> tuple[str, ...]:
        """The library parameters that choose what detection chose (of ``which``, default all),
        for the message of a file it may have misread."""
        names = {"delimiter": "delimiter", "decimal": "decimal", "encoding": "file_encoding"}
        return tuple(names[d] for d in self.detected if not which or d in which)


def file_kind(path: Path) -> Kind:
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in EXCEL_SUFFIXES:
        return "excel"
    return "csv"


def detect_format(path: Path, given: FileFormat | None = None) -> ResolvedFormat:
    """Decide how to read ``path`` (see the module docstring); ``given`` choices are kept as they are.

    Raises :class:`~hefed.errors.InvalidFileError` for a file that is not what its suffix says
    (naming what it is), and :class:`~hefed.errors.UsageError` for a choice that does not apply.
    """
    given = given or FileFormat()
    kind = file_kind(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError as exc:
        raise InvalidFileError(f"{path}: cannot read the data file ({exc.strerror})") from None
    _check_kind(path, kind, head)
    text_options = [name for name, value in (("delimiter", given.delimiter), ("decimal", given.decimal),
                                             ("file_encoding", given.encoding)) if value is not None]
    if kind != "csv" and text_options:
        what = "a Parquet file" if kind == "parquet" else "an Excel workbook"
        raise UsageError(f"{path}: {what} has no {', '.join(n.replace('file_', 'text ') for n in text_options)}; "
                         "those options are for CSV and other text files", parameters=tuple(text_options))
    if kind == "parquet":
        return ResolvedFormat("parquet")
    if kind == "excel":
        return ResolvedFormat("excel", sheet=given.sheet if given.sheet is not None else 0)
    if given.sheet is not None:
        raise UsageError(f"{path}: the sheet option is for Excel workbooks (.xlsx); this file is read as text",
                         parameters=("sheet",))
    detected: list[str] = []
    encoding = given.encoding or _detect_encoding(path, head)
    if given.encoding is None:
        detected.append("encoding")
    text = _decode_head(path, head, encoding)
    lines = [line for line in text.splitlines() if line.strip()][:50]
    if len(head) == SNIFF_BYTES and len(lines) > 2:
        lines = lines[:-1]  # the sample may end within a line
    if not lines:
        raise DataError(f"{path}: no header row")
    delimiter = given.delimiter or ("\t" if path.suffix.lower() == ".tsv" else _detect_delimiter(lines))
    if given.delimiter is None:
        detected.append("delimiter")
    decimal = given.decimal or _detect_decimal(lines, delimiter)
    if given.decimal is None:
        detected.append("decimal")
    return ResolvedFormat("csv", delimiter, decimal, encoding, detected=tuple(detected))


# --- what a file's first bytes say it is --------------------------------------------------------


def _zip_contents(path: Path) -> tuple[str, str]:
    """(what a zip archive is, how to read it), from its directory (nothing is inflated)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()[:10_000]
            mimetype = archive.read("mimetype")[:200].decode("ascii", "replace") if "mimetype" in names else ""
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, KeyError):
        return "a zip archive (damaged)", "unzip it, or export the table again"
    if "xl/workbook.xml" in names or "xl/workbook.bin" in names:
        return "an Excel workbook", "name it .xlsx (and choose the sheet with the sheet option)"
    if "opendocument.spreadsheet" in mimetype:
        return "an OpenDocument spreadsheet (.ods)", "save it as .xlsx or CSV"
    shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
    return f"a zip archive (holding {shown or 'nothing'})", "unzip it and read the table inside"


def _looks_like(path: Path, head: bytes) -> tuple[str, str] | None:
    """(what the file is, how to read it) when its first bytes say it is not a text table."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_contents(path)
    if head.startswith(b"PAR1"):
        return "a Parquet file", "name it .parquet"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "an Excel 97-2003 workbook (.xls)", "save it as .xlsx or CSV"
    if head.startswith(b"\x1f\x8b"):
        return "gzip-compressed", "decompress it first (gunzip)"
    if (head.startswith((b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd"))
            or (head.startswith(b"BZh") and head[3:4].isdigit() and head[4:10] == b"1AY&SY")):
        return "compressed (bzip2, xz or zstd)", "decompress it first"
    if head.startswith(b"%PDF"):
        return "a PDF document", "export the table as CSV, .xlsx or Parquet"
    return None


def _check_kind(path: Path, kind: Kind, head: bytes) -> None:
    """Refuse a file whose first bytes contradict its suffix, naming what it is."""
    if not head:
        return  # an empty file gets its own message
    looks = _looks_like(path, head)
    if kind == "csv":
        if looks is not None:
            what, advice = looks
            parameters = ("sheet",) if "sheet" in advice else ()
            raise InvalidFileError(f"{path}: this is {what}, not a CSV/text table; {advice}", parameters=parameters)
        return
    is_zip, is_parquet = head.startswith(b"PK\x03\x04"), head.startswith(b"PAR1")
    if (kind == "excel" and is_zip) or (kind == "parquet" and is_parquet):
        return
    if looks is not None:
        what, advice = looks
    elif _utf16_or_binary(head) is None:
        what, advice = "text (a CSV table?)", "name it .csv"
    else:
        what, advice = "neither a workbook nor Parquet", "export the table as CSV, .xlsx or Parquet"
    expected = "an Excel workbook" if kind == "excel" else "a Parquet file"
    raise InvalidFileError(f"{path}: named like {expected} but this is {what}; {advice}")


def _utf16_or_binary(head: bytes) -> tuple[str, str] | None:
    """(what the bytes are, the text encoding that reads them or '') for UTF-16 or binary data."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "UTF-16 text with a byte-order mark (as Excel's 'Unicode text' export)", "utf-16"
    sample = head[:4096]
    if b"\x00" not in sample:
        return None
    pairs = sample[: len(sample) // 2 * 2]
    even, odd = pairs[0::2], pairs[1::2]
    if odd and odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
        return "UTF-16 text (little-endian, no byte-order mark)", "utf-16-le"
    if even and even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
        return "UTF-16 text (big-endian, no byte-order mark)", "utf-16-be"
    return "a binary file", ""


def _detect_encoding(path: Path, head: bytes) -> str:
    odd = _utf16_or_binary(head)
    if odd is not None:
        what, encoding = odd
        if encoding:
            raise InvalidFileError(f"{path}: this is {what}; read it with the text encoding {encoding!r}, "
                                   "or save it as UTF-8 CSV", parameters=("file_encoding",))
        raise InvalidFileError(f"{path}: this is {what} (NUL bytes), not UTF-8 or Latin-1 text; export the table as "
                               "CSV, .xlsx or Parquet")
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(head, final=len(head) < SNIFF_BYTES)  # a character cut at the end of the sample is fine
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        head.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"  # decodes any byte


def fallback_encoding(path: Path, resolved: ResolvedFormat) -> str | None:
    """The encoding to read a file again with, after UTF-8 failed beyond the sample: cp1252
    (else Latin-1) when the encoding was detected and the sample was plain ASCII (which reads
    alike in all three), else ``None`` (the error stands)."""
    if "encoding" not in resolved.detected or codecs.lookup(resolved.encoding).name != "utf-8":
        return None
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if not head.removeprefix(codecs.BOM_UTF8).isascii():
        return None
    decoder = codecs.getincrementaldecoder("cp1252")()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                decoder.decode(chunk)
        decoder.decode(b"", final=True)
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def _decode_head(path: Path, head: bytes, encoding: str) -> str:
    try:
        text = head.decode(encoding, errors="strict" if len(head) < SNIFF_BYTES else "ignore")
    except UnicodeDecodeError as exc:
        raise InvalidFileError(f"{path}: not {encoding} text at byte {exc.start}; give the text encoding "
                               "(e.g. cp1252 or latin-1 for Windows exports)", parameters=("file_encoding",)) from None
    return text.removeprefix("\ufeff")


def _detect_delimiter(lines: list[str]) -> str:
    counts = {d: [len(row) for row in csv.reader(lines, delimiter=d)] for d in _PREFERENCE}
    for delimiter in _PREFERENCE:  # every line split alike, into at least two fields
        if len(set(counts[delimiter])) == 1 and counts[delimiter][0] >= 2:
            return delimiter

    def like_header(delimiter: str) -> int:  # a ragged file: most lines split as the header is
        fields = counts[delimiter]
        return sum(n == fields[0] for n in fields) if fields[0] >= 2 else 0

    best = max(_PREFERENCE, key=like_header)
    return best if like_header(best) else ","


def _detect_decimal(lines: list[str], delimiter: str) -> str:
    if delimiter == ",":
        return "."
    rows = list(csv.reader(lines[1:], delimiter=delimiter))
    width = max((len(row) for row in rows), default=0)
    comma_columns = point_columns = 0
    for j in range(width):
        cells = [row[j] for row in rows if j < len(row) and not _ONE_GROUP.match(row[j])]
        comma = sum(bool(_COMMA_DECIMAL.match(cell)) for cell in cells)
        point = sum(bool(_POINT_DECIMAL.match(cell)) for cell in cells)
        comma_columns += comma > point
        point_columns += point > comma
    if comma_columns != point_columns:
        return "," if comma_columns > point_columns else "."
    return "," if delimiter == ";" else "."


def check_workbook(path: Path) -> None:
    """Refuse a workbook that is not a zip archive, or that would inflate beyond :data:`MAX_WORKBOOK_BYTES`
    (counted as it really decompresses, a block at a time, whatever its directory declares)."""
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
            if declared > MAX_WORKBOOK_BYTES:
                raise InvalidFileError(f"{path}: the workbook inflates to {declared} bytes, more than hefed reads "
                                       f"({MAX_WORKBOOK_BYTES}); export the sheet as CSV")
            total = 0
            for info in archive.infolist():
                with archive.open(info) as member:
                    while chunk := member.read(1 << 20):
                        total += len(chunk)
                        if total > MAX_WORKBOOK_BYTES:
                            raise InvalidFileError(f"{path}: the workbook inflates to more than "
                                                   f"{MAX_WORKBOOK_BYTES} bytes; export the sheet as CSV")
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
        if isinstance(exc, InvalidFileError):
            raise
        raise InvalidFileError(f"{path}: not a readable Excel workbook ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0][:120] if str(exc) else 'damaged'})") from None


# --- cells: numbers as the file writes them, and what the others look like ----------------------


def decimal_of(frame: pd.DataFrame) -> str:
    """The decimal separator of the text file ``frame`` was read from (``"."`` for anything else)."""
    decimal = frame.attrs.get("decimal", ".")
    return decimal if decimal in (".", ",") else "."


def to_numbers(column: pd.Series, decimal: str = ".") -> pd.Series:
    """``column`` as float64, NaN where a cell is missing or not a number as the file writes
    numbers: with ``decimal=","``, ``1,5`` is 1.5 and a cell holding a point (``1.234``: a
    thousands separator?) is not a number."""
    if (pd.api.types.is_bool_dtype(column) or pd.api.types.is_datetime64_any_dtype(column)
            or pd.api.types.is_timedelta64_dtype(column)):
        return pd.Series(np.nan, index=column.index, dtype=np.float64)
    if pd.api.types.is_numeric_dtype(column):
        return pd.Series(column.to_numpy(dtype=np.float64, na_value=np.nan), index=column.index)
    if pd.api.types.is_string_dtype(column):  # text only (and gaps): vectorized
        text = column.str.strip()
        if decimal == ",":
            text = text.where(~text.str.contains(".", regex=False, na=False)).str.replace(",", ".", regex=False)
        values = pd.to_numeric(text, errors="coerce")
    else:  # mixed cells (a workbook's): numbers stay numbers, booleans and dates are not numbers
        def number(v: object) -> object:
            if isinstance(v, _NOT_NUMBERS):
                return np.nan
            if isinstance(v, str):
                v = v.strip()
                if decimal == ",":
                    return np.nan if "." in v else v.replace(",", ".")
            return v

        values = pd.to_numeric(column.map(number), errors="coerce")
    return pd.Series(np.asarray(values.to_numpy(dtype=np.float64, na_value=np.nan)), index=column.index)


def cell_look(cell: object, decimal: str = ".") -> Look:
    """What a cell that is not a number (as the file writes numbers) looks like: ``"grouped"``
    is one group of three digits after the other mark (``1,234`` in a file with a decimal
    point, ``1.234`` in one with a decimal comma): a thousands separator, or another decimal mark."""
    if isinstance(cell, (bool, np.bool_)):
        return "boolean"
    if isinstance(cell, _DATE_TYPES):
        return "date"
    text = str(cell).strip()
    if text.lower() in _BOOLEANS:
        return "boolean"
    if _PERCENT.match(text):
        return "percent"
    if _ONE_GROUP.match(text):
        return "grouped"
    if any(pattern.match(text) for pattern in _THOUSANDS):
        return "thousands"
    if decimal == "." and _CELL_COMMA_DECIMAL.match(text):
        return "decimal comma"
    if decimal == "," and _CELL_POINT_DECIMAL.match(text):
        return "decimal point"
    if any(pattern.match(text) for pattern in _DATES):
        return "date"
    return "text"


def column_look(cells: Iterable[object], decimal: str = ".") -> Look:
    """What the non-numeric cells of a column look like, together: one look they share (a
    ``"grouped"`` cell goes with thousands separators or a decimal mark beside it), else ``"text"``."""
    looks = {cell_look(c, decimal) for c in cells}
    if len(looks) > 1:
        looks.discard("grouped")
    return looks.pop() if len(looks) == 1 else "text"


def _look_fix(look: Look, decimal: str) -> tuple[str, str, tuple[str, ...]] | None:
    """(what the cells are, how to make them numbers, the parameters that do) for a look that has one."""
    other = "," if decimal == "." else "."
    return {
        "thousands": ("numbers with thousands separators", "export them without thousands separators", ()),
        "grouped": (f"numbers with thousands separators, or a decimal {'comma' if other == ',' else 'point'}",
                    f"export them without thousands separators, or read the file with decimal {other!r}",
                    ("decimal",)),
        "percent": ("percentages", "export them as plain numbers", ()),
        "decimal comma": ("numbers with a decimal comma", "read the file with decimal ','", ("decimal",)),
        "decimal point": ("numbers with a decimal point in a file read with a decimal comma",
                          "read the file with decimal '.'", ("decimal",)),
    }.get(look)


def bad_cells_hint(cells: Iterable[object], decimal: str = ".") -> tuple[str, tuple[str, ...]]:
    """A hint for a column's non-numeric cells that all look alike (``" (numbers with a decimal
    comma? read the file with decimal ',')"``) and the parameters it names; ``("", ())`` if none."""
    present = [c for c in cells if not (c is None or (isinstance(c, float) and np.isnan(c)))]
    fix = _look_fix(column_look(present, decimal), decimal)
    if fix is None:
        return "", ()
    what, advice, parameters = fix
    return f" ({what}? {advice})", parameters


def look_reason(look: Look, examples: list[str], decimal: str = ".") -> str | None:
    """``"what (e.g. 'x', 'y'): how to fix"`` for a column whose non-numeric cells have ``look``
    (``None`` for text, which has no fixed reading)."""
    shown = ", ".join(repr(e) for e in examples[:2])
    fix = _look_fix(look, decimal)
    if fix is not None:
        what, advice, _ = fix
        return f"{what} (e.g. {shown}): {advice}"
    if look == "date":
        return f"dates/times (e.g. {shown})"
    if look == "boolean":
        return f"booleans (e.g. {shown}): one-hot encode them with levels fixed in the study"
    return None
