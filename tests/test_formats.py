"""Every file format plants export reads into the same statistics as the clean CSV, integer for integer.

Each format is read with detection and no options; explicit :class:`FileFormat` choices override
detection; a file that cannot be read says what it looks like and which option reads it; a zip
bomb dressed as a workbook is refused in bounded memory. Then the columns the default features
leave out (each with its reason) and one-hot encoding with levels fixed in advance.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import struct
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import run_cli
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import hefed
from hefed._keys import save_public_key
from hefed.data import (
    FileFormat,
    default_features,
    detect_format,
    left_out_columns,
    one_hot,
    read_table,
    select_xy,
)
from hefed.data import _formats as formats
from hefed.data import _streaming as streaming
from hefed.errors import DataError, InvalidFileError, UsageError
from hefed.protocol import ColumnSpec

TARGET = "co2_t"
FEATURES = ["température °C", "débit µg/s", "load_kW", "trace"]


def plant_frame(rows: int = 150, seed: int = 0) -> pd.DataFrame:
    """A plant's table: non-ASCII names (é, °, µ), decimals of many magnitudes, integers, a text column."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "plant": [f"Werk {'ÄÖÜ'[i % 3]}" for i in range(rows)],  # text: never a default feature
        "température °C": np.round(rng.normal(450, 30, rows), 2),
        "débit µg/s": np.round(rng.lognormal(0, 3, rows), 6),
        "load_kW": rng.integers(-5000, 90_000, rows),
        "trace": np.round(rng.normal(0, 1e-6, rows), 12),
        TARGET: np.round(rng.normal(1000, 200, rows), 3),
    })


def _text(frame: pd.DataFrame, path: Path, *, sep: str = ",", decimal: str = ".", encoding: str = "utf-8",
          newline: str = "\n") -> None:
    path.write_bytes(frame.to_csv(index=False, sep=sep, decimal=decimal, lineterminator=newline).encode(encoding))


def _workbook(frame: pd.DataFrame, path: Path, sheets: tuple[str, ...] = ("Data",), data_sheet: str = "Data") -> None:
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for name in sheets:
            (frame if name == data_sheet else frame.head(3).drop(columns=[TARGET])).to_excel(
                writer, sheet_name=name, index=False)


#: Each export, as the plants' software writes it: name → (writer, the options that read it; None = detect).
EXPORTS: dict[str, tuple[Callable[[pd.DataFrame, Path], None], FileFormat | None]] = {
    "comma.csv": (lambda f, p: _text(f, p), None),
    "semicolon-decimal-comma.csv": (lambda f, p: _text(f, p, sep=";", decimal=","), None),
    "excel-europe.csv": (lambda f, p: _text(f, p, sep=";", decimal=",", encoding="cp1252", newline="\r\n"), None),
    "tab.tsv": (lambda f, p: _text(f, p, sep="\t"), None),
    "tab-decimal-comma.txt": (lambda f, p: _text(f, p, sep="\t", decimal=","), None),
    "utf8-bom.csv": (lambda f, p: _text(f, p, encoding="utf-8-sig"), None),
    "windows-cp1252.csv": (lambda f, p: _text(f, p, encoding="cp1252", newline="\r\n"), None),
    "latin-1.csv": (lambda f, p: _text(f, p, sep=";", decimal=",", encoding="latin-1"), None),
    "book.xlsx": (lambda f, p: _workbook(f, p), None),
    "second-sheet-by-name.xlsx": (lambda f, p: _workbook(f, p, ("Notes", "Daten"), "Daten"), FileFormat(sheet="Daten")),
    "second-sheet-by-position.xlsx": (lambda f, p: _workbook(f, p, ("Notes", "Daten"), "Daten"), FileFormat(sheet=1)),
    "table.parquet": (lambda f, p: f.to_parquet(p, index=False), None),
    "utf-16.csv": (lambda f, p: _text(f, p, sep="\t", encoding="utf-16"), FileFormat(encoding="utf-16")),
}


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[pd.DataFrame, hefed.SufficientStatistics]:
    """The plant's table and the statistics of its clean CSV (comma, decimal point, UTF-8)."""
    frame = plant_frame()
    path = tmp_path_factory.mktemp("clean") / "clean.csv"
    frame.to_csv(path, index=False)
    stats = hefed.compute_statistics(path, TARGET)
    assert stats.features == FEATURES
    return frame, stats


@pytest.fixture
def small_blocks(monkeypatch):
    """Streamed in many blocks even for small files."""
    monkeypatch.setattr(streaming, "BLOCK_BYTES", 1024)
    monkeypatch.setattr(streaming, "BATCH_ROWS", 16)


@pytest.mark.parametrize("name", list(EXPORTS))
def test_every_export_reads_into_the_statistics_of_the_clean_csv(tmp_path, clean, small_blocks, name):
    frame, expected = clean
    write, options = EXPORTS[name]
    path = tmp_path / name
    write(frame, path)
    stats = hefed.compute_statistics(path, TARGET, file_format=options)  # streamed where the format allows
    assert stats.features == FEATURES
    assert stats.gram == expected.gram
    whole = read_table(path, options)  # and the whole-table reader agrees
    assert list(whole.columns) == list(frame.columns)
    assert default_features(whole, TARGET) == FEATURES
    assert left_out_columns(whole, TARGET) == {"plant": "category with 3 levels: 'Werk Ä', 'Werk Ö', 'Werk Ü': "
                                                        "one-hot encode it with levels fixed in the study"}
    X, y, _ = select_xy(whole, TARGET, FEATURES, str(path))
    assert np.array_equal(X, frame[FEATURES].to_numpy(dtype=np.float64)) and np.array_equal(y, frame[TARGET])
    assert hefed.compute_fold_statistics(path, TARGET, folds=3, file_format=options).folds[0].gram == \
        hefed.compute_fold_statistics(frame, TARGET, folds=3).folds[0].gram


@pytest.mark.parametrize("name", [n for n in EXPORTS if not n.endswith(".xlsx")])
def test_text_and_parquet_exports_are_streamed_not_read_whole(tmp_path, clean, small_blocks, monkeypatch, name):
    frame, expected = clean
    write, options = EXPORTS[name]
    path = tmp_path / name
    write(frame, path)

    def whole_table(*args, **kwargs):
        raise AssertionError("fell back to the whole-table reader")

    monkeypatch.setattr(streaming, "read_table", whole_table)
    stats, report = streaming.stream_statistics(path, TARGET, file_format=options)
    assert stats.gram == expected.gram and report.rows_in == len(frame)


@pytest.mark.parametrize("name, resolved", [
    ("comma.csv", (",", ".", "utf-8")),
    ("semicolon-decimal-comma.csv", (";", ",", "utf-8")),
    ("excel-europe.csv", (";", ",", "cp1252")),
    ("tab.tsv", ("\t", ".", "utf-8")),
    ("tab-decimal-comma.txt", ("\t", ",", "utf-8")),
    ("utf8-bom.csv", (",", ".", "utf-8")),
    ("windows-cp1252.csv", (",", ".", "cp1252")),
])
def test_detection_names_what_it_chose(tmp_path, clean, name, resolved):
    path = tmp_path / name
    EXPORTS[name][0](clean[0], path)
    found = detect_format(path)
    assert (found.kind, found.delimiter, found.decimal, found.encoding) == ("csv", *resolved)
    assert found.detected == ("encoding", "delimiter", "decimal")
    given = detect_format(path, FileFormat(*resolved))
    assert given.detected == () and (given.delimiter, given.decimal, given.encoding) == resolved


# --- property tests: any dialect, any encoding, the same statistics --------------------------------

_NAMES = st.lists(st.text(alphabet="abcxyzéèàüöäßµ°² _-", min_size=1, max_size=8).map(str.strip)
                  .filter(lambda s: s and s not in (TARGET, "(intercept)")), min_size=1, max_size=4, unique=True)


@st.composite
def tables(draw) -> pd.DataFrame:
    names = draw(_NAMES)
    rows = draw(st.integers(3, 25))
    scale = st.sampled_from([1e-6, 1e-3, 1.0, 1e3, 1e6, 1e9])
    columns = {}
    for name in [*names, TARGET]:
        digits = draw(st.integers(0, 6))
        values = draw(st.lists(st.integers(-10**7, 10**7), min_size=rows, max_size=rows))
        columns[name] = np.round(np.asarray(values, dtype=np.float64) * draw(scale) / 10**digits, 12)
    # a row of 0.5s: every column then shows its decimal mark unambiguously (a column of values like
    # 1.234 only could be thousands separators: that ambiguity has its own test)
    return pd.concat([pd.DataFrame({name: [0.5] for name in columns}), pd.DataFrame(columns)], ignore_index=True)


@pytest.mark.filterwarnings("ignore::hefed.errors.RoundedValuesWarning")  # rounded alike in both
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=tables(), sep=st.sampled_from([",", ";", "\t"]), decimal=st.sampled_from([".", ","]),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "latin-1"]), newline=st.sampled_from(["\n", "\r\n"]),
       suffix=st.sampled_from([".csv", ".txt", ".tsv"]))
def test_any_dialect_and_encoding_reads_into_the_same_statistics(tmp_path, frame, sep, decimal, encoding, newline,
                                                                  suffix):
    assume(sep != decimal and (suffix != ".tsv" or sep == "\t"))
    clean, path = tmp_path / "clean.csv", tmp_path / f"export{suffix}"
    frame.to_csv(clean, index=False)
    _text(frame, path, sep=sep, decimal=decimal, encoding=encoding, newline=newline)
    expected = hefed.compute_statistics(clean, TARGET)
    if not _also_utf8(path.read_bytes(), encoding):
        stats = hefed.compute_statistics(path, TARGET)  # detected
        assert stats.features == expected.features and stats.gram == expected.gram
    named = FileFormat(delimiter=sep, decimal=decimal, encoding=encoding)
    assert hefed.compute_statistics(path, TARGET, file_format=named).gram == expected.gram


def _also_utf8(raw: bytes, encoding: str) -> bool:
    """Windows text that happens to be valid UTF-8 as well (``'ß°'`` in cp1252 is the bytes of
    U+07F0): no detection can tell, and the text encoding must be named (as the test then does)."""
    if encoding.startswith("utf-8") or raw.isascii():
        return False
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_windows_text_that_is_also_valid_utf8_is_read_as_named(tmp_path):
    path = tmp_path / "ambiguous.csv"
    path.write_bytes("Maß°,co2_t\n1.5,2.5\n3.5,4.25\n".encode("cp1252"))
    assert detect_format(path).encoding == "utf-8"  # b"\xdf\xb0" is U+07F0 in UTF-8
    assert read_table(path, FileFormat(encoding="cp1252")).columns[0] == "Maß°"


# --- explicit choices override detection ----------------------------------------------------------

def test_explicit_decimal_overrides_a_tie_read_as_decimal_comma(tmp_path):
    """';' with values like 1.234 only: detection cannot tell (a thousands separator in Europe?) and
    reads a decimal comma, leaving the columns out (with the reason); decimal='.' reads them."""
    frame = pd.DataFrame({"a": [1.234, 12.5, 999.001, 7.25], TARGET: [2.345, 3.5, 4.125, 5.75]})
    frame["a"] = ["1.234", "12.500", "999.001", "7.250"]
    frame[TARGET] = ["2.345", "3.500", "4.125", "5.750"]
    path = tmp_path / "points.csv"
    frame.to_csv(path, index=False, sep=";")
    assert detect_format(path).decimal == ","
    table = read_table(path)
    assert default_features(table, TARGET) == []
    assert left_out_columns(table, TARGET) == {
        "a": "numbers with thousands separators, or a decimal point (e.g. '1.234', '12.500'): export them without "
             "thousands separators, or read the file with decimal '.'"}
    with pytest.raises(DataError, match="no feature columns"):
        hefed.compute_statistics(path, TARGET)
    with pytest.raises(DataError, match=r"'1\.234'.*decimal '\.'") as info:
        hefed.compute_statistics(path, TARGET, ["a"])
    assert info.value.parameters == ("decimal",)
    stats = hefed.compute_statistics(path, TARGET, file_format=FileFormat(decimal="."))
    assert stats.features == ["a"]
    assert stats.gram == hefed.compute_statistics(frame.astype(float), TARGET).gram


def test_explicit_delimiter_overrides_a_semicolon_inside_every_line(tmp_path):
    """A comma file whose header and every row hold one ';' (in a text cell) splits alike on ';',
    which detection prefers; delimiter=',' reads it."""
    path = tmp_path / "notes.csv"
    path.write_text("notes; remarks,x,co2_t\n" + "".join(f"a;b,{i}.5,{2 * i}.25\n" for i in range(10)))
    assert detect_format(path).delimiter == ";"
    stats = hefed.compute_statistics(path, TARGET, file_format=FileFormat(delimiter=","))
    assert stats.features == ["x"]
    frame = pd.DataFrame({"x": [i + 0.5 for i in range(10)], TARGET: [2 * i + 0.25 for i in range(10)]})
    assert stats.gram == hefed.compute_statistics(frame, TARGET).gram


def test_a_header_with_commas_above_decimal_commas_is_semicolon_separated(tmp_path):
    """'Flow, m³/h;Temp, °C;co2_t' over '1,5;2,5;3,5' splits alike on ',' and ';': ';' wins."""
    path = tmp_path / "units.csv"
    path.write_text("Flow, m³/h;Temp, °C;co2_t\n" + "".join(f"{i},5;{i},25;{3 * i},75\n" for i in range(20)))
    found = detect_format(path)
    assert (found.delimiter, found.decimal) == (";", ",")
    assert hefed.compute_statistics(path, TARGET).features == ["Flow, m³/h", "Temp, °C"]


def test_a_text_column_of_versions_does_not_outvote_the_decimal_commas(tmp_path, clean):
    frame = clean[0].copy()
    frame.insert(0, "firmware", "1.5")
    path = tmp_path / "versions.csv"
    _text(frame, path, sep=";", decimal=",")
    assert detect_format(path).decimal == ","
    assert hefed.compute_statistics(path, TARGET).gram == clean[1].gram


def test_options_that_do_not_apply_are_refused_not_ignored(tmp_path, clean):
    csv_path, book, parquet = tmp_path / "t.csv", tmp_path / "t.xlsx", tmp_path / "t.parquet"
    clean[0].to_csv(csv_path, index=False)
    _workbook(clean[0], book)
    clean[0].to_parquet(parquet)
    with pytest.raises(UsageError, match="sheet option is for Excel") as info:
        read_table(csv_path, FileFormat(sheet="Data"))
    assert info.value.parameters == ("sheet",)
    with pytest.raises(UsageError, match="Excel workbook has no delimiter, decimal") as info:
        hefed.compute_statistics(book, TARGET, file_format=FileFormat(delimiter=";", decimal=","))
    assert info.value.parameters == ("delimiter", "decimal")
    with pytest.raises(UsageError, match="Parquet file has no text encoding"):
        read_table(parquet, FileFormat(encoding="cp1252"))
    for bad in ({"delimiter": "|"}, {"decimal": ";"}, {"delimiter": ",", "decimal": ","}, {"encoding": "klingon"},
                {"sheet": -1}, {"sheet": True}, {"sheet": 1.5}):
        with pytest.raises(UsageError):
            FileFormat(**bad)


# --- files that cannot be read say what they are and which option reads them -----------------------

def _message(path: Path, options: FileFormat | None = None) -> tuple[str, tuple[str, ...]]:
    """The one-line error of both readers (whole table and streamed), which must agree."""
    with pytest.raises(InvalidFileError) as whole:
        read_table(path, options)
    with pytest.raises(InvalidFileError) as streamed:
        hefed.compute_statistics(path, TARGET, file_format=options)
    assert str(whole.value) == str(streamed.value)
    message = str(whole.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message, whole.value.parameters


def test_utf16_says_so_and_names_the_encoding_that_reads_it(tmp_path):
    text = "x,co2_t\n1.5,2.5\n3.5,4.5\n"
    bom, plain = tmp_path / "bom.csv", tmp_path / "plain.csv"
    bom.write_bytes(text.encode("utf-16"))
    plain.write_bytes(text.encode("utf-16-le"))
    message, parameters = _message(bom)
    assert "UTF-16 text with a byte-order mark" in message and "text encoding 'utf-16'" in message
    assert parameters == ("file_encoding",)
    message, parameters = _message(plain)
    assert "UTF-16 text (little-endian, no byte-order mark)" in message and "'utf-16-le'" in message
    assert hefed.compute_statistics(plain, TARGET, file_format=FileFormat(encoding="utf-16-le")).features == ["x"]


def test_a_workbook_zip_or_parquet_under_a_text_suffix_is_named(tmp_path, clean):
    book = tmp_path / "export.csv"
    _workbook(clean[0], book)
    message, parameters = _message(book)
    assert "this is an Excel workbook, not a CSV/text table; name it .xlsx" in message and parameters == ("sheet",)
    archive = tmp_path / "archive.csv"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("plant-7/data.csv", "x,co2_t\n1,2\n")
    message, _ = _message(archive)
    assert "zip archive (holding plant-7/data.csv)" in message and "unzip it" in message
    parquet = tmp_path / "table.csv"
    clean[0].to_parquet(parquet)
    message, _ = _message(parquet)
    assert "this is a Parquet file, not a CSV/text table; name it .parquet" in message
    old = tmp_path / "old.csv"
    old.write_bytes(bytes.fromhex("d0cf11e0a1b11ae1") + bytes(512))
    assert "Excel 97-2003 workbook (.xls)" in _message(old)[0]
    packed = tmp_path / "packed.csv"
    packed.write_bytes(__import__("gzip").compress(b"x,co2_t\n1,2\n"))
    assert "gzip-compressed" in _message(packed)[0]
    binary = tmp_path / "image.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))
    assert "binary file (NUL bytes)" in _message(binary)[0]


def test_text_under_a_workbook_or_parquet_suffix_is_named(tmp_path):
    for suffix, expected in ((".xlsx", "an Excel workbook"), (".parquet", "a Parquet file")):
        path = tmp_path / f"table{suffix}"
        path.write_text("x,co2_t\n1,2\n")
        message, _ = _message(path)
        assert f"named like {expected} but this is text (a CSV table?); name it .csv" in message
    book_as_parquet = tmp_path / "book.parquet"
    _workbook(pd.DataFrame({"x": [1.0], TARGET: [2.0]}), book_as_parquet)
    assert "but this is an Excel workbook; name it .xlsx" in _message(book_as_parquet)[0]


def test_an_unknown_sheet_lists_the_sheets(tmp_path, clean):
    book = tmp_path / "book.xlsx"
    _workbook(clean[0], book, ("Notes", "Daten"), data_sheet="Daten")
    message, parameters = _message(book, FileFormat(sheet="Data"))
    assert message.endswith("no sheet 'Data' (sheets: 'Notes', 'Daten')") and parameters == ("sheet",)
    message, _ = _message(book, FileFormat(sheet=2))
    assert message.endswith("the workbook has 2 sheet(s), no sheet 2 (sheets: 'Notes', 'Daten')")


def test_a_ragged_file_names_the_line_and_the_detected_dialect(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("x;z;co2_t\n1,5;2;3\n4;5;6;7\n8;9;10\n")
    message, parameters = _message(path)
    assert message.endswith("line 3 has 4 fields where the header has 3 (read as text, semicolon-separated, "
                            "decimal comma, utf-8; the delimiter was detected: choose it if the file uses another)")
    assert parameters == ("delimiter",)
    message, parameters = _message(path, FileFormat(delimiter=";"))
    assert message.endswith("(read as text, semicolon-separated, decimal comma, utf-8)") and parameters == ()


def test_windows_text_beyond_the_sample_is_read_as_cp1252(tmp_path, clean):
    """The first 64 KiB are plain ASCII (UTF-8 as far as detection can see); a comment far down is cp1252."""
    frame = pd.concat([clean[0].drop(columns="plant")] * 60, ignore_index=True)
    frame.insert(0, "comment", "ok")
    frame.loc[len(frame) - 2, "comment"] = "arrêt"
    path = tmp_path / "late.csv"
    frame.rename(columns=lambda c: c.encode("ascii", "replace").decode()).to_csv(path, index=False,
                                                                                 encoding="cp1252")
    assert path.stat().st_size > formats.SNIFF_BYTES and detect_format(path).encoding == "utf-8"
    table = read_table(path)
    assert table["comment"].iloc[-2] == "arrêt"
    assert hefed.compute_statistics(path, TARGET).gram == hefed.compute_statistics(
        frame.drop(columns="comment").rename(columns=lambda c: c.encode("ascii", "replace").decode()), TARGET).gram


def test_text_that_is_not_utf8_after_utf8_names_the_line(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_bytes("note,x,co2_t\nété,1,2\n".encode() + b"".join(b"ok,%d,%d\n" % (i, i) for i in range(9000))
                     + b"caf\xe9,1,2\n")
    assert path.stat().st_size > formats.SNIFF_BYTES
    message, parameters = _message(path)
    assert message.endswith("line 9003 (byte 0xe9) is not utf-8 text; give the text encoding (e.g. cp1252 or "
                            "latin-1 for Windows exports)")
    assert parameters == ("file_encoding",)


# --- workbooks -----------------------------------------------------------------------------------

def test_workbook_cells_keep_their_kind_and_blank_rows_are_skipped(tmp_path):
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["when", "running", "kiln", "coal", "as text", "share", TARGET])
    for i in range(8):
        sheet.append([dt.datetime(2024, 1, i + 1, 6), i % 3 == 0, ["dry", "wet"][i % 2], 1.5 * i, f"{2.5 * i}",
                      f"{10 * i}%", 3.25 * i + 1])
        if i == 3:
            sheet.append([None] * 7)  # an empty row, as a blank line of a CSV file
    sheet.cell(row=30, column=12).number_format = "0.00"  # a formatted, empty cell far off
    path = tmp_path / "plant.xlsx"
    book.save(path)
    table = read_table(path)
    assert len(table) == 8 and list(table.columns) == ["when", "running", "kiln", "coal", "as text", "share", TARGET]
    assert default_features(table, TARGET) == ["coal", "as text"]
    assert left_out_columns(table, TARGET) == {
        "when": "dates/times (e.g. '2024-01-01 06:00:00', '2024-01-02 06:00:00')",
        "running": "booleans (e.g. 'True', 'False'): one-hot encode them with levels fixed in the study",
        "kiln": "category with 2 levels: 'dry', 'wet': one-hot encode it with levels fixed in the study",
        "share": "percentages (e.g. '0%', '10%'): export them as plain numbers",
    }
    frame = pd.DataFrame({"coal": [1.5 * i for i in range(8)], "as text": [2.5 * i for i in range(8)],
                          TARGET: [3.25 * i + 1 for i in range(8)]})
    assert hefed.compute_statistics(path, TARGET).gram == hefed.compute_statistics(frame, TARGET).gram


def test_a_workbook_whose_header_is_not_in_the_first_row_says_so(tmp_path):
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["Plant report, March"])
    sheet.append(["x", TARGET])
    sheet.append([1.5, 2.5])
    path = tmp_path / "report.xlsx"
    book.save(path)
    with pytest.raises(DataError, match="column 2 has values but no name in the first row"):
        read_table(path)


def _bomb(path: Path, inflated: int, declared: int | None = None) -> None:
    """A workbook with one more member that inflates to ``inflated`` zero bytes; with ``declared``,
    its zip headers claim that size instead."""
    _workbook(pd.DataFrame({"x": [1.0, 2.0], TARGET: [3.0, 4.0]}), path)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive, \
            archive.open("xl/media/image1.bin", "w", force_zip64=False) as member:
        block = bytes(1 << 20)
        for _ in range(inflated >> 20):
            member.write(block)
    if declared is not None:  # patch the sizes in the local header and in the central directory
        data = bytearray(path.read_bytes())
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("xl/media/image1.bin")
        struct.pack_into("<I", data, info.header_offset + 22, declared)
        end = data.rindex(b"PK\x05\x06")
        entries, at = struct.unpack_from("<HI", data, end + 10)[0], struct.unpack_from("<I", data, end + 16)[0]
        for _ in range(entries):
            name_length, extra_length, comment_length = struct.unpack_from("<HHH", data, at + 28)
            if data[at + 46: at + 46 + name_length] == b"xl/media/image1.bin":
                struct.pack_into("<I", data, at + 24, declared)
            at += 46 + name_length + extra_length + comment_length
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("declared", [None, 1000], ids=["honest-directory", "lying-directory"])
def test_a_zip_bomb_workbook_is_refused_in_bounded_memory(tmp_path, monkeypatch, declared):
    monkeypatch.setattr(formats, "MAX_WORKBOOK_BYTES", 8 << 20)
    path = tmp_path / "bomb.xlsx"
    _bomb(path, 64 << 20, declared)
    assert path.stat().st_size < 1 << 20  # 64 MiB of zeros in well under 1 MiB
    tracemalloc.start()
    try:
        with pytest.raises(InvalidFileError) as info:
            read_table(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 12 << 20, f"{peak} bytes traced while refusing the bomb"
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    if declared is None:
        assert re.search(r"the workbook inflates to \d{8} bytes, more than hefed reads \(8388608\); export the "
                         "sheet as CSV$", message)
    else:
        assert "not a readable Excel workbook (BadZipFile" in message
    with pytest.raises(InvalidFileError):
        hefed.compute_statistics(path, TARGET)


def test_a_workbook_within_the_limit_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(formats, "MAX_WORKBOOK_BYTES", 8 << 20)
    path = tmp_path / "fine.xlsx"
    _bomb(path, 2 << 20)
    assert hefed.compute_statistics(path, TARGET).features == ["x"]


# --- columns left out of the default features, each with its reason ------------------------------

def test_every_left_out_column_is_named_with_its_reason(tmp_path):
    rows = 12
    frame = pd.DataFrame({
        "coal_t": np.arange(rows) * 1.5,
        "site": [f"free text {i}" for i in range(rows)],
        "kiln": ["dry", "wet", "semi-dry", "wet"] * 3,
        "when": [f"2024-01-{i + 1:02d} 13:00" for i in range(rows)],
        "clock": [f"{i:02d}:30" for i in range(rows)],
        "running": [True, False] * 6,
        "gas_m3": [f"{44 + i},725.5" for i in range(rows)],
        "share": [f"{i}%" for i in range(rows)],
        "unused": [np.nan] * rows,
        "plant": ["A"] * rows,
        TARGET: np.arange(rows) * 2.25,
    })
    path = tmp_path / "mixed.csv"
    frame.to_csv(path, index=False)
    table = read_table(path)
    left_out = left_out_columns(table, TARGET)
    assert default_features(table, TARGET) == ["coal_t"]
    assert left_out == {
        "site": "text (e.g. 'free text 0', 'free text 1')",
        "kiln": "category with 3 levels: 'dry', 'semi-dry', 'wet': one-hot encode it with levels fixed in the study",
        "when": "dates/times (e.g. '2024-01-01 13:00', '2024-01-02 13:00')",
        "clock": "dates/times (e.g. '00:30', '01:30')",
        "running": "booleans (e.g. 'True', 'False'): one-hot encode them with levels fixed in the study",
        "gas_m3": "numbers with thousands separators (e.g. '44,725.5', '45,725.5'): export them without thousands "
                  "separators",
        "share": "percentages (e.g. '0%', '1%'): export them as plain numbers",
        "unused": "empty (no values)",
        "plant": "one value only ('A')",
    }
    assert hefed.compute_statistics(path, TARGET).features == ["coal_t"]


def test_european_thousands_and_decimal_commas_are_told_apart(tmp_path):
    path = tmp_path / "europe.csv"
    path.write_text("gas;coal;co2_t\n" + "".join(f"{i + 1}.725,5;{i},25;{i},5\n" for i in range(10)))
    table = read_table(path)
    assert table.attrs["decimal"] == ","
    assert left_out_columns(table, TARGET) == {
        "gas": "numbers with thousands separators (e.g. '1.725,5', '2.725,5'): export them without thousands "
               "separators"}
    comma = tmp_path / "quoted.csv"  # a comma file with decimal commas in quotes
    comma.write_text("x,co2_t\n" + "".join(f'"{i},5",{i}\n' for i in range(10)))
    assert left_out_columns(read_table(comma), TARGET) == {
        "x": "numbers with a decimal comma (e.g. '0,5', '1,5'): read the file with decimal ','"}


@pytest.mark.parametrize("cells, hint, parameters", [
    (["1", "2", "3", "44,725.5"], "(numbers with thousands separators? export them without thousands separators)", ()),
    (["1", "2", "3", "12%"], "(percentages? export them as plain numbers)", ()),
    (["1", "2", "3", "1,5"], "(numbers with a decimal comma? read the file with decimal ',')", ("decimal",)),
    (["1", "2", "3", "oops"], "'oops')", ()),
])
def test_bad_cells_say_what_they_look_like(cells, hint, parameters):
    frame = pd.DataFrame({"x": cells, TARGET: [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(DataError) as info:
        select_xy(frame, TARGET, source="plant")
    assert str(info.value).startswith("plant: column 'x' has non-numeric cells: row 4 (")
    assert str(info.value).endswith(hint) and info.value.parameters == parameters


_CELLS = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: round(v, 3)),
    st.integers(-1000, 1000),
    st.sampled_from(["a", "b", "text", "12%", "44,725.5", "1,5", "2024-01-05", "True", "", "n/a"]),
    st.none(),
    st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(columns=st.lists(st.lists(_CELLS, min_size=6, max_size=6), min_size=1, max_size=6))
def test_every_column_is_a_default_feature_or_left_out_with_a_reason(columns):
    frame = pd.DataFrame({f"c{j}": pd.Series(cells, dtype=object) for j, cells in enumerate(columns)})
    frame[TARGET] = np.arange(6.0)
    chosen, left_out = default_features(frame, TARGET), left_out_columns(frame, TARGET)
    assert not set(chosen) & set(left_out)
    assert set(chosen) | set(left_out) == set(frame.columns) - {TARGET}
    assert list(left_out) == [c for c in frame.columns if c in left_out]  # in the table's order
    assert all(reason and "\n" not in reason for reason in left_out.values())


# --- one-hot encoding with levels fixed in advance ---------------------------------------------------

def test_one_hot_replaces_the_column_by_dummies_of_the_fixed_levels():
    frame = pd.DataFrame({"coal": [1.0, 2.0, 3.0, 4.0, 5.0], "kiln": ["dry", "wet", " semi ", None, "dry"],
                          TARGET: [1.0, 2.0, 3.0, 4.0, 5.0]})
    before = frame.copy()
    encoded = one_hot(frame, "kiln", ["dry", "wet", "semi"], "plant-3")
    assert list(encoded.columns) == ["coal", "kiln=wet", "kiln=semi", TARGET]
    assert ColumnSpec("kiln", categories=("dry", "wet", "semi")).dummies == ["kiln=wet", "kiln=semi"]
    assert encoded["kiln=wet"].dtype == np.float64
    assert encoded["kiln=wet"].tolist()[:3] == [0.0, 1.0, 0.0] and encoded["kiln=semi"].tolist()[:3] == [0, 0, 1]
    assert np.isnan(encoded.loc[3, "kiln=wet"]) and np.isnan(encoded.loc[3, "kiln=semi"])  # missing stays missing
    assert encoded.loc[4, ["kiln=wet", "kiln=semi"]].tolist() == [0.0, 0.0]  # the reference level: no column
    pd.testing.assert_frame_equal(frame, before)
    with pytest.raises(DataError, match="column 'kiln=wet', row 4: value is missing"):
        hefed.compute_statistics(encoded, TARGET)
    stats = hefed.compute_statistics(encoded.dropna(), TARGET)
    assert stats.features == ["coal", "kiln=wet", "kiln=semi"]


def test_one_hot_gives_every_factory_the_same_columns():
    only_dry = pd.DataFrame({"kiln": ["dry", "dry"], TARGET: [1.0, 2.0]})
    encoded = one_hot(only_dry, "kiln", ["dry", "wet", "semi"])
    assert list(encoded.columns) == ["kiln=wet", "kiln=semi", TARGET]
    assert encoded[["kiln=wet", "kiln=semi"]].to_numpy().sum() == 0


def test_one_hot_refuses_a_value_that_is_not_a_level_naming_column_row_and_value():
    frame = pd.DataFrame({"kiln": ["dry", "wet", "Wet"], TARGET: [1.0, 2.0, 3.0]})
    with pytest.raises(DataError) as info:
        one_hot(frame, "kiln", ["dry", "wet"], "plant-3.csv")
    assert str(info.value) == "plant-3.csv: column 'kiln', row 3: value 'Wet' is not one of its levels ('dry', 'wet')"


def test_one_hot_of_numbers_and_booleans_names_levels_as_text():
    frame = pd.DataFrame({"line": [1.0, 2.0, 3.0, np.nan], "on": [True, False, True, True], TARGET: [1.0] * 4})
    encoded = one_hot(one_hot(frame, "line", ["1", "2", "3"]), "on", ["False", "True"])
    assert list(encoded.columns) == ["line=2", "line=3", "on=True", TARGET]
    assert encoded["line=3"].tolist()[:3] == [0.0, 0.0, 1.0] and np.isnan(encoded["line=3"].iloc[3])
    assert encoded["on=True"].tolist() == [1.0, 0.0, 1.0, 1.0]
    with pytest.raises(DataError, match=r"column 'line', row 2: value 2\.0 is not one of its levels \('1', '3'\)"):
        one_hot(frame, "line", ["1", "3"])


def test_one_hot_refuses_bad_levels_missing_columns_and_clashes():
    frame = pd.DataFrame({"kiln": ["dry"], "kiln=wet": [1.0], TARGET: [1.0]})
    for levels in (["dry"], ["dry", "dry"], []):
        with pytest.raises(UsageError, match="at least two distinct levels"):
            one_hot(frame, "kiln", levels)
    with pytest.raises(DataError, match="categorical column not found: 'Kiln'"):
        one_hot(frame, "Kiln", ["dry", "wet"])
    with pytest.raises(DataError, match="column 'kiln=wet' already exists"):
        one_hot(frame, "kiln", ["dry", "wet"])


def test_one_hot_on_a_file_read_with_a_decimal_comma_keeps_reading_it_so(tmp_path):
    path = tmp_path / "kiln.csv"
    path.write_text("kiln;coal;co2_t\n" + "".join(f"{['dry', 'wet'][i % 2]};{i},5;{i}\n" for i in range(6)))
    encoded = one_hot(read_table(path), "kiln", ["dry", "wet"], str(path))
    assert encoded.attrs["decimal"] == ","
    assert hefed.compute_statistics(encoded, TARGET).features == ["kiln=wet", "coal"]


def test_read_table_keeps_the_decimal_so_text_cells_are_not_misread(tmp_path):
    """In a file with a decimal comma, '1.234' is a thousands separator (or a mistake), never 1.234."""
    path = tmp_path / "thousands.csv"
    path.write_text("a;b;co2_t\n1.234;1,5;2\n12.500;2,5;3\n1.000;2,5;4\n")
    table = read_table(path)
    assert default_features(table, TARGET) == ["b"]
    assert hefed.compute_statistics(path, TARGET).features == ["b"]  # streamed (or not), the same choice
    with pytest.raises(DataError, match=r"column 'a' has non-numeric cells: row 1 \('1\.234'\)"):
        hefed.compute_statistics(path, TARGET, ["a", "b"])


@pytest.mark.parametrize("delimiter, decimal", [(",", "."), (";", ",")])
def test_a_column_that_starts_empty_is_chosen_as_the_whole_table_reader_does(tmp_path, delimiter, decimal):
    """Without a feature list the streamed reader watches columns its first block left out (arrow reads empty
    text cells as "", not missing), and with a decimal comma '1,5' is a number there as in the whole-table
    reader: both readers pick the same features and sums, so nothing is left out silently."""
    rows = 150_000  # the first block (1 MiB, ~90,000 rows) holds only empty cells of 'late'
    x = np.arange(rows) % 97 / 4

    def number(value: float) -> str:
        return str(value).replace(".", decimal)

    lines = [delimiter.join(["x", "late", "y"]),
             *(delimiter.join([number(a), "" if i < 120_000 else number(i % 13 + 0.5), number(2 * a + 1)])
               for i, a in enumerate(x))]
    path = tmp_path / "late.csv"
    path.write_text("\n".join(lines) + "\n")
    streamed, _ = hefed.data.stream_statistics(path, "y", None, cleaning=hefed.data.Cleaning("drop"))
    (whole,), _ = hefed.data.table_statistics(hefed.data.read_table(path), "y", None,
                                              cleaning=hefed.data.Cleaning("drop"))
    assert streamed.features == whole.features == ["x", "late"] and streamed.gram == whole.gram


def test_encrypt_names_every_column_the_default_features_leave_out(tmp_path, keypair):
    """Without --features a column that cannot be a feature is never left out silently: encrypt names it with the
    reason, whichever reader ran (streamed file, or whole table with a holdout), and --json lists them."""
    frame = hefed.datasets.make_factories(n_factories=1, seed=1).popitem()[1]
    frame["fuel_mix"] = [f"{44 + i % 7},725.5" for i in range(len(frame))]
    path = tmp_path / "plant.csv"
    frame.to_csv(path, index=False)
    public = save_public_key(keypair[0], tmp_path / "public_key.json")
    for extra in ([], ["--test-fraction", "0.2"]):
        out = tmp_path / f"b{len(extra)}.json"
        result = run_cli("encrypt", path, "--target", "co2_t", "--public-key", public, "--factory-id", "p",
                         "--out", out, *extra)
        assert result.returncode == 0, result.stderr
        assert "left out column 'fuel_mix': numbers with thousands separators" in result.stdout
        assert "left out column 'date': dates/times" in result.stdout
        assert "left out column 'plant_kind': one value only ('cement')" in result.stdout
    as_json = run_cli("encrypt", path, "--target", "co2_t", "--public-key", public, "--factory-id", "p",
                      "--out", tmp_path / "j.json", "--json")
    assert set(json.loads(as_json.stdout)["left_out_columns"]) == {"date", "plant_kind", "fuel_mix"}
