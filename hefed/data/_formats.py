"""The files plants export: CSV dialects, text encodings, Excel workbooks, Parquet — detected or named.

A plant's table arrives as whatever its software exports: comma- or semicolon-separated CSV
with a decimal point or a decimal comma (European Excel), tab-separated text, UTF-8 with or
without a byte-order mark or Windows' cp1252 / Latin-1, an ``.xlsx`` workbook, or Parquet.
:func:`detect_format` looks at the first bytes and decides each of these, unless the user
named it (:class:`FileFormat`); a file that cannot be read as a table gets a message saying
what the file looks like and which option reads it.

Detection, in order:

* **kind** — by suffix (``.parquet``/``.pq``, ``.xlsx``/``.xlsm``, else text); a text-suffixed
  file that starts like a zip archive is an Excel workbook in disguise and is refused naming it;
* **text encoding** — UTF-8 (a BOM is skipped) when the first 64 KiB decode as UTF-8, else cp1252
  (Windows Excel's), else Latin-1; UTF-16 (NUL bytes) is refused with the option that reads it;
* **delimiter** — ``\\t`` for ``.tsv``; otherwise whichever of ``,`` ``;`` ``\\t`` splits the first
  lines into the same number (at least two) of fields, preferring the most fields;
* **decimal separator** — ``,`` when the delimiter is not ``,`` and the cells look like ``1,5``
  and never like ``1.5``; else ``.``.
"""

from __future__ import annotations

import codecs
import csv
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import DataError, InvalidFileError, UsageError

PARQUET_SUFFIXES = {".parquet", ".pq"}
EXCEL_SUFFIXES = {".xlsx", ".xlsm"}
DELIMITERS = (",", ";", "\t")
#: Bytes looked at to detect the dialect and encoding.
SNIFF_BYTES = 64 << 10
#: Largest uncompressed workbook read (the sum the zip directory declares, and what it really holds).
MAX_WORKBOOK_BYTES = 512 << 20

_COMMA_DECIMAL = re.compile(r"^\s*[+-]?\d+,\d+(?:[eE][+-]?\d+)?\s*$")
_POINT_DECIMAL = re.compile(r"^\s*[+-]?\d*\.\d+(?:[eE][+-]?\d+)?\s*$")

Kind = Literal["csv", "excel", "parquet"]


@dataclass(frozen=True)
class FileFormat:
    """How to read a table file; ``None`` means detect it (see the module docstring).

    Attributes:
        delimiter: ``","``, ``";"`` or ``"\\t"`` (CSV and text files).
        decimal: ``"."`` or ``","``.
        encoding: the text encoding, e.g. ``"utf-8"``, ``"cp1252"``, ``"latin-1"``, ``"utf-16"``.
        sheet: the worksheet of an Excel workbook, by name or 0-based position (default: the first).
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


def file_kind(path: Path) -> Kind:
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in EXCEL_SUFFIXES:
        return "excel"
    return "csv"


def detect_format(path: Path, given: FileFormat | None = None) -> ResolvedFormat:
    """Decide how to read ``path`` (see the module docstring); ``given`` choices are kept as they are."""
    given = given or FileFormat()
    kind = file_kind(path)
    if kind == "parquet":
        return ResolvedFormat("parquet")
    if kind == "excel":
        return ResolvedFormat("excel", sheet=given.sheet if given.sheet is not None else 0)
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if head.startswith(b"PK\x03\x04"):
        raise InvalidFileError(f"{path}: this is a zip archive, likely an Excel workbook saved with another suffix; "
                               "name it .xlsx (and choose the sheet with the sheet option)", parameters=("sheet",))
    if head.startswith(b"PAR1"):
        raise InvalidFileError(f"{path}: this is a Parquet file; name it .parquet")
    detected: list[str] = []
    encoding = given.encoding or _detect_encoding(path, head)
    if given.encoding is None:
        detected.append("encoding")
    text = _decode_head(path, head, encoding)
    lines = [line for line in text.splitlines() if line.strip()][:50]
    if not lines:
        raise DataError(f"{path}: no header row")
    delimiter = given.delimiter or ("\t" if path.suffix.lower() == ".tsv" else _detect_delimiter(lines))
    if given.delimiter is None:
        detected.append("delimiter")
    decimal = given.decimal or _detect_decimal(lines, delimiter)
    if given.decimal is None:
        detected.append("decimal")
    return ResolvedFormat("csv", delimiter, decimal, encoding, detected=tuple(detected))


def _detect_encoding(path: Path, head: bytes) -> str:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in head[:4096]:
        raise InvalidFileError(f"{path}: looks like UTF-16 text or a binary file, not a table in UTF-8 or Latin-1; "
                               "save it as UTF-8 CSV, or give the text encoding (e.g. utf-16)",
                               parameters=("file_encoding",))
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


def _decode_head(path: Path, head: bytes, encoding: str) -> str:
    try:
        text = head.decode(encoding, errors="strict" if len(head) < SNIFF_BYTES else "ignore")
    except UnicodeDecodeError as exc:
        raise InvalidFileError(f"{path}: not {encoding} text at byte {exc.start}; give the text encoding "
                               "(e.g. cp1252 or latin-1 for Windows exports)", parameters=("file_encoding",)) from None
    return text.removeprefix("\ufeff")


def _detect_delimiter(lines: list[str]) -> str:
    best, best_fields = ",", 1
    for delimiter in DELIMITERS:
        counts = {len(row) for row in csv.reader(lines, delimiter=delimiter)}
        if len(counts) == 1:
            fields = counts.pop()
            if fields > best_fields:
                best, best_fields = delimiter, fields
    if best_fields == 1:  # no delimiter splits every line alike: take the one in the header most often
        header = lines[0]
        best = max(DELIMITERS, key=header.count)
    return best


def _detect_decimal(lines: list[str], delimiter: str) -> str:
    if delimiter == ",":
        return "."
    comma = point = 0
    for row in csv.reader(lines[1:], delimiter=delimiter):
        for cell in row:
            comma += bool(_COMMA_DECIMAL.match(cell))
            point += bool(_POINT_DECIMAL.match(cell))
    return "," if comma and not point else "."


def check_workbook(path: Path) -> None:
    """Refuse a workbook that is not a zip archive, or that would inflate beyond :data:`MAX_WORKBOOK_BYTES`
    (counted as it really decompresses, whatever its directory declares)."""
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
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise InvalidFileError(f"{path}: not a readable Excel workbook ({type(exc).__name__})") from None
