"""Hostile data tables: hypothesis generates malformed CSV and Parquet files for ``compute_statistics``.

Every generated table has a known ground truth: the float64 value of every numeric cell, and the defects
planted in it (missing cells, ±inf, text in a numeric column, integers beyond 2^53, values outside the
encoding, duplicate column names, absent columns, one extra field on every row, ...). Tables also vary in
what is *not* a defect: zero, one or fewer rows than features, constant and collinear columns, a
byte-order mark, CRLF line ends, non-ASCII and quoted column names, explicit or default features.

For every table, :func:`hefed.compute_statistics` (and for some, :func:`hefed.encrypt_statistics` followed
by decryption) must either

* raise the right :class:`~hefed.errors.HefedError` subclass — ``DataError`` for missing, infinite, text
  and too-large-integer cells, absent or duplicate columns and empty tables; ``EncodingError`` for values
  outside the encoding; ``InvalidFileError`` for unparseable files — whose message names the file and the
  defective column and row, or
* return statistics equal, integer for integer, to the exact (``Fraction``) statistics of the parsed values.

A column that is numeric but for a few text cells must be refused with those cells named whenever it would
be a default feature (never silently dropped from the default features), and is ignored when the caller
lists other features.

The bugs this fuzzer found (columns shifted by a CSV with one extra field per row, integers beyond 2^53
silently rounded) have regression tests at the end. ``HEFED_FUZZ_EXAMPLES`` sets the number of generated
tables per test (default small for CI).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import json
import os
import re
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import hypothesis
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hefed
from hefed.errors import DataError, EncodingError, HefedError, InvalidFileError
from hefed.roles import decrypt_statistics
from hefed.stats import ONES

_ENV_EXAMPLES = int(os.environ.get("HEFED_FUZZ_EXAMPLES", "0") or 0)
LONG_MODE = _ENV_EXAMPLES > 0
TABLE_EXAMPLES = _ENV_EXAMPLES or 60

FUZZ_SETTINGS = dict(
    max_examples=TABLE_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=not LONG_MODE,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)

#: {(test, outcome): n} for this module, printed when it finishes.
CASES: collections.Counter[tuple[str, str]] = collections.Counter()

DEFAULT_ENCODING = hefed.Encoding()
WIDE_ENCODING = hefed.Encoding(frac_bits=400, int_bits=400)

NAMES = ["coal_t", "gas_t", "power_mwh", "co2_t", "température", "µg/m³", "CO₂ (t)", "日本語", "a,b", 'say "hi"',
         "two words", "Ünïcödé", "1", "x.1", "naïve", "clinker_t"]
MISSING_TOKENS = ["", "nan", "NaN", "NA", "n/a", "null", "None", "#N/A", "<NA>"]
INF_TOKENS = ["inf", "-inf", "Infinity", "-Infinity", "INF", "1e999", "-1e400"]
TEXT_TOKENS = ["oops", "12 kg", "1,5", "—", "x1", "1.2.3", "--5", "0x1F", "4%", "1_000", "½", "٣", "e",
               "1e", "+-1", "§"]
BIG_INTS = [2**53 + 1, -(2**53 + 1), 2**60 + 3, 10**17 + 1, 2**63 - 1, -(2**63) + 1, 2**64 + 1, 10**30 + 7]
EXTREME_FLOATS = [1e300, -1e300, 1e-300, 5e-324, 2.0**40, -(2.0**40), 2.0**-80, 1e100, 1e-100, 2.0**-60]


# --------------------------------------------------------------------------------------------------
# Table model: cells with a ground truth
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Cell:
    kind: str  # num | int | missing | inf | text | bigint
    text: str  # as written in a CSV
    value: Any = None  # float for num/int/inf, int for bigint


@dataclasses.dataclass
class Table:
    names: list[str]  # header, in file order (may contain duplicates when that is the defect)
    columns: list[list[Cell]]
    target: str
    features: list[str] | None  # passed to compute_statistics (None: default features)
    fmt: str = "csv"  # csv | parquet
    bom: bool = False
    crlf: bool = False
    extra_field: bool = False  # one more field than the header on every row
    encoding: hefed.Encoding = DEFAULT_ENCODING

    @property
    def n_rows(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def column(self, name: str) -> list[Cell]:
        return self.columns[self.names.index(name)]


def _num(value: float) -> Cell:
    return Cell("num", repr(float(value)), float(value))


def _int(value: int) -> Cell:
    return Cell("int", str(value), float(value))


NUMBERS = st.one_of(
    st.integers(-10**6, 10**6).map(_int),
    st.integers(-2**20, 2**20).map(lambda k: _num(k / 64)),
    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False).filter(lambda x: x == 0 or abs(x) >= 2**-19).map(_num),
)
DEFECTS = {
    "missing": st.sampled_from(MISSING_TOKENS).map(lambda t: Cell("missing", t)),
    "inf": st.sampled_from(INF_TOKENS).map(lambda t: Cell("inf", t, float(t.replace("Infinity", "inf")))),
    "text": st.sampled_from(TEXT_TOKENS).map(lambda t: Cell("text", t)),
    "bigint": st.sampled_from(BIG_INTS).map(lambda v: Cell("bigint", str(v), v)),
    "extreme": st.sampled_from(EXTREME_FLOATS).map(_num),
}


@st.composite
def tables(draw, fmt: str) -> Table:
    n_rows = draw(st.integers(0, 9))
    n_cols = draw(st.integers(2, 5))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=n_cols, max_size=n_cols, unique=True))
    shapes = draw(st.lists(st.sampled_from(["random", "random", "random", "constant", "copy", "ints"]),
                           min_size=n_cols, max_size=n_cols))
    columns: list[list[Cell]] = []
    for j, shape in enumerate(shapes):
        if shape == "constant" and n_rows:
            columns.append([draw(NUMBERS)] * n_rows)
        elif shape == "copy" and j:  # collinear with an earlier column
            columns.append(list(columns[draw(st.integers(0, j - 1))]))
        elif shape == "ints":
            columns.append([_int(v) for v in draw(st.lists(st.integers(-1000, 1000), min_size=n_rows,
                                                          max_size=n_rows))])
        else:
            columns.append(draw(st.lists(NUMBERS, min_size=n_rows, max_size=n_rows)))
    # plant defects: a few cells of a few columns
    if n_rows and draw(st.booleans()):
        for _ in range(draw(st.integers(1, 3))):
            kind = draw(st.sampled_from(sorted(DEFECTS)))
            j = draw(st.integers(0, n_cols - 1))
            rows = draw(st.lists(st.integers(0, n_rows - 1), min_size=1, max_size=max(1, (n_rows - 1) // 2),
                                 unique=True))
            for r in rows:
                columns[j][r] = draw(DEFECTS[kind])
    target = draw(st.sampled_from(names))
    others = [n for n in names if n != target]
    features: list[str] | None = None
    choice = draw(st.sampled_from(["default", "default", "subset", "absent", "target"]))
    if choice == "subset":
        features = draw(st.lists(st.sampled_from(others), min_size=1, max_size=len(others), unique=True))
    elif choice == "absent":
        features = [*others[:1], draw(st.sampled_from(["no_such_column", "Coal_T", "température "]))]
    elif choice == "target":
        features = [target, *others[:1]]
    header = list(names)
    if draw(st.sampled_from(range(10))) == 9:  # a duplicate column name
        header[draw(st.integers(1, n_cols - 1))] = header[0]
    encoding = draw(st.sampled_from([DEFAULT_ENCODING, DEFAULT_ENCODING, WIDE_ENCODING]))
    extra_field = fmt == "csv" and n_rows > 0 and draw(st.sampled_from(range(15))) == 14
    return Table(header, columns, target, features, fmt, bom=fmt == "csv" and draw(st.booleans()),
                 crlf=draw(st.booleans()), extra_field=extra_field, encoding=encoding)


def write_csv(table: Table, path: Path) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n" if table.crlf else "\n")
    writer.writerow(table.names)
    for r in range(table.n_rows):
        row = [col[r].text for col in table.columns]
        writer.writerow(row + (["1"] if table.extra_field else []))
    path.write_bytes((b"\xef\xbb\xbf" if table.bom else b"") + buffer.getvalue().encode("utf-8"))
    return path


def _arrow_column(cells: list[Cell]) -> pa.Array:
    kinds = {c.kind for c in cells}
    if kinds <= {"int", "bigint"} and all(-(2**63) <= int(c.text) < 2**63 for c in cells):
        return pa.array([int(c.text) for c in cells], type=pa.int64())
    if kinds <= {"num", "int", "missing", "inf"}:
        return pa.array([None if c.kind == "missing" else c.value for c in cells], type=pa.float64())
    return pa.array([None if c.kind == "missing" else c.text for c in cells], type=pa.string())


def write_parquet(table: Table, path: Path) -> Path:
    arrays = [_arrow_column(col) for col in table.columns]
    pq.write_table(pa.Table.from_arrays(arrays, names=table.names), path)
    return path


# --------------------------------------------------------------------------------------------------
# The oracle
# --------------------------------------------------------------------------------------------------
DATA_DEFECTS = {"missing", "inf", "text", "bigint"}


def _is_numeric_column(table: Table, cells: list[Cell]) -> bool:
    """What the reader considers numeric (a default-feature candidate): no text, or mostly numbers."""
    present = [c for c in cells if c.kind != "missing"]
    if not present:
        return True  # an all-missing column reads as float64 NaN
    text = sum(c.kind == "text" for c in present)
    return text == 0 or (len(present) - text) / len(present) >= 0.5


def _cell_defect(cell: Cell, encoding: hefed.Encoding) -> str | None:
    if cell.kind in DATA_DEFECTS:
        return cell.kind
    x = cell.value
    if abs(x) >= 2.0**encoding.int_bits:
        return "range"
    if Fraction(x) * 2**encoding.frac_bits != int(Fraction(x) * 2**encoding.frac_bits):
        return "precision"
    return None


@dataclasses.dataclass
class Expected:
    error: tuple[type[HefedError], ...] | None = None
    must_name: list[str] = dataclasses.field(default_factory=list)  # all of these in the message
    cells: dict[str, dict[int, str]] = dataclasses.field(default_factory=dict)  # column -> {row: defect}
    features: list[str] = dataclasses.field(default_factory=list)
    #: cells outside the used columns that may also be refused: integers beyond 2^53 in a decimal CSV column
    #: are refused while the file is read, whichever columns are used (see _read_time_refusals)
    other_cells: dict[str, dict[int, str]] = dataclasses.field(default_factory=dict)


def expected_outcome(table: Table) -> Expected:
    expected = _expected_outcome(table)
    if len(set(table.names)) == len(table.names) and not table.extra_field:  # the file is read
        expected.other_cells = _read_time_refusals(table)
    return expected


def _expected_outcome(table: Table) -> Expected:
    header = table.names
    if len(set(header)) != len(header):
        dup = next(n for n in header if header.count(n) > 1)
        errors = (DataError,) if table.fmt == "csv" else (DataError, InvalidFileError)
        return Expected(errors, [repr(dup)] if table.fmt == "csv" else [])
    if table.extra_field:
        # Every row has one more field than the header: malformed, refused (pandas alone would shift the columns).
        return Expected((InvalidFileError,), ["more fields than the header"])
    if table.target not in header:
        return Expected((DataError,), [repr(table.target)])
    if table.features is None:
        if table.n_rows == 0 and table.fmt == "csv":  # a header-only CSV has text (object) columns
            return Expected((DataError,), ["no feature columns"])
        features = [n for n, col in zip(header, table.columns, strict=True)
                    if n != table.target and _is_numeric_column(table, col)]
        if not features:
            return Expected((DataError,), ["no feature columns"])
    else:
        features = list(table.features)
        absent = [f for f in features if f not in header]
        if absent:
            return Expected((DataError,), [repr(absent[0])])
        if table.target in features:
            return Expected((DataError,), [repr(table.target)])
    if table.n_rows == 0:
        return Expected((DataError,), ["no data rows"])
    cells: dict[str, dict[int, str]] = {}
    for name in [*features, table.target]:
        defects = {r + 1: d for r, c in enumerate(table.column(name)) if (d := _cell_defect(c, table.encoding))}
        if defects:
            cells[name] = defects
    if not cells:
        return Expected(None, features=features)
    kinds = {d for defects in cells.values() for d in defects.values()}
    errors: tuple[type[HefedError], ...] = ()
    if kinds & DATA_DEFECTS:
        errors += (DataError,)
    if kinds & {"range", "precision", "bigint"}:
        errors += (EncodingError,)
    return Expected(errors, cells=cells, features=features)


def _read_time_refusals(table: Table) -> dict[str, dict[int, str]]:
    """Integers beyond 2^53 in CSV columns that pandas parses as float64 (they also hold a decimal, a missing
    or an infinite cell): the reader refuses them while reading the file, used column or not."""
    if table.fmt != "csv":
        return {}
    found = {}
    for name, col in zip(table.names, table.columns, strict=True):
        kinds = {c.kind for c in col}
        if "bigint" in kinds and "text" not in kinds and kinds & {"num", "missing", "inf"}:
            found[name] = {r + 1: "bigint" for r, c in enumerate(col) if c.kind == "bigint"}
    return found


def exact_gram(table: Table, features: list[str]) -> list[list[int]]:
    """Σ z_a z_b · 2^(F_a + F_b) over the rows, z = [1, sorted features, target], as exact integers."""
    columns = [ONES, *sorted(features), table.target]
    scale = [0] + [table.encoding.frac_bits] * (len(columns) - 1)
    values = [[Fraction(1)] * table.n_rows] + [[Fraction(c.value) for c in table.column(n)] for n in columns[1:]]
    m = len(columns)
    gram = [[0] * m for _ in range(m)]
    for a in range(m):
        for b in range(m):
            total = sum((x * y for x, y in zip(values[a], values[b], strict=True)), Fraction(0))
            total *= 2 ** (scale[a] + scale[b])
            assert total.denominator == 1
            gram[a][b] = int(total)
    return gram


_ROW = re.compile(r"\brow (\d+)\b")


def check_error(exc: HefedError, expected: Expected, path: Path, table: Table) -> str:
    """Check a refusal; returns 'expected' or 'read-time' (refused for a cell of an unused column)."""
    message = str(exc)
    assert "\n" not in message, message
    assert str(path) in message, f"the message does not name the file: {message}"
    if expected.other_cells and isinstance(exc, DataError) and _names_cells(message, expected.other_cells):
        return "read-time"
    assert expected.error is not None, f"a valid table was refused: {type(exc).__name__}: {message}"
    assert isinstance(exc, expected.error), f"{type(exc).__name__} instead of {expected.error}: {message}"
    for text in expected.must_name:
        assert text in message, f"{text} not named in: {message}"
    if expected.cells:
        kinds = _names_cells(message, expected.cells)
        assert kinds, f"no defective cell of {expected.cells} named in: {message}"
        if isinstance(exc, EncodingError):
            assert kinds & {"range", "precision", "bigint"}, (kinds, message)
        else:
            assert kinds & DATA_DEFECTS, (kinds, message)
    return "expected"


def _names_cells(message: str, cells: dict[str, dict[int, str]]) -> set[str]:
    """The defect kinds of the cells the message names (a defective column, and only its defective rows)."""
    named = [name for name in cells if repr(name) in message]
    rows = [int(r) for r in _ROW.findall(message)]
    if not named or not rows:
        return set()
    defects: dict[int, str] = {}
    for name in named:
        defects.update(cells[name])
    if not set(rows) <= set(defects):
        return set()
    return {defects[r] for r in rows}


def run_case(test: str, table: Table, path: Path, public_key=None, private_key=None) -> str:
    expected = expected_outcome(table)
    try:
        stats = hefed.compute_statistics(path, table.target, table.features, table.encoding, "plant")
    except HefedError as exc:
        kind = check_error(exc, expected, path, table)
        outcome = f"refused:{type(exc).__name__}" + (":unused-column" if kind == "read-time" else "")
        if public_key is not None and table.encoding == DEFAULT_ENCODING:
            with pytest.raises(type(exc)):
                hefed.encrypt_statistics(path, table.target, public_key, table.features, "plant", table.encoding)
        CASES[(test, outcome)] += 1
        return outcome
    if expected.error is not None:
        raise AssertionError(f"statistics returned although {expected.error} was expected "
                             f"(defects {expected.cells or expected.must_name})")
    assert stats.target == table.target
    assert stats.features == expected.features, (stats.features, expected.features)
    assert stats.gram == exact_gram(table, expected.features), "statistics differ from the exact ones"
    if public_key is not None and table.encoding == DEFAULT_ENCODING:
        bundle = hefed.encrypt_statistics(path, table.target, public_key, table.features, "plant", table.encoding)
        assert decrypt_statistics(bundle, private_key, min_contributors=1, allow_unsigned=True).gram == stats.gram
    CASES[(test, "ok")] += 1
    return "ok"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-tables")


def _report_counts() -> None:
    total = sum(CASES.values())
    by_outcome = collections.Counter()
    for (_test, outcome), n in CASES.items():
        by_outcome[outcome] += n
    line = f"hefed fuzz (test_fuzz_tables): {total} cases — " + ", ".join(
        f"{k}: {v}" for k, v in sorted(by_outcome.items()))
    sys.stderr.write("\n" + line + "\n")
    report = os.environ.get("HEFED_FUZZ_REPORT")
    if report:
        with open(report, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"module": "test_fuzz_tables", "total": total, "by_outcome": dict(by_outcome),
                                     "cases": {"/".join(k): v for k, v in sorted(CASES.items())}}) + "\n")


@pytest.fixture(scope="module", autouse=True)
def _case_report(request):
    """Print (and record) the case counts when pytest finishes, after output capture has ended."""
    request.config.add_cleanup(_report_counts)


_counter = iter(range(10**9))


def _path(workdir: Path, suffix: str) -> Path:
    return workdir / f"table-{next(_counter):06d}{suffix}"


# --------------------------------------------------------------------------------------------------
# Fuzz tests
# --------------------------------------------------------------------------------------------------
@settings(**FUZZ_SETTINGS)
@given(table=tables("csv"), encrypt=st.integers(0, 5))
def test_csv_tables(workdir, keypair, table, encrypt):
    hypothesis.note(f"table: {table}")
    path = write_csv(table, _path(workdir, ".csv"))
    keys = keypair if encrypt == 0 else (None, None)
    try:
        run_case("csv", table, path, *keys)
    finally:
        path.unlink()


@settings(**{**FUZZ_SETTINGS, "max_examples": max(1, TABLE_EXAMPLES // 2)})
@given(table=tables("parquet"), encrypt=st.integers(0, 5))
def test_parquet_tables(workdir, keypair, table, encrypt):
    hypothesis.note(f"table: {table}")
    path = write_parquet(table, _path(workdir, ".parquet"))
    keys = keypair if encrypt == 0 else (None, None)
    try:
        run_case("parquet", table, path, *keys)
    finally:
        path.unlink()


# --------------------------------------------------------------------------------------------------
# Explicit cases from the list
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, error, named", [
    (b"", DataError, "empty"),
    (b"\n\n\n", DataError, "header"),
    (b"co2_t,coal_t\n", DataError, "no feature columns"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", InvalidFileError, "UTF-8"),
    ("co2_t,coal_t\n1,2\n".encode("utf-16"), InvalidFileError, "UTF-8"),
    (b"co2_t,coal_t\n1,2\n\xff\xfe\n", DataError, "row 2"),  # not UTF-8: read as cp1252, a row of one field
    (b"co2_t,coal_t,coal_t\n1,2,3\n", DataError, "'coal_t'"),
    (b"co2_t,coal_t, coal_t\n1,2,3\n", DataError, "'coal_t'"),
    (b'co2_t,"coal_t",coal_t\n1,2,3\n', DataError, "'coal_t'"),
    (b"co2_t,(intercept)\n1,2\n", DataError, "(intercept)"),
    (b"co2_t,coal_t\n1,2\n3,4,5\n", InvalidFileError, ""),
    (b"co2_t,coal_t\n1,2\n3\n", DataError, "row 2"),
    (b"co2_t,coal_t\n1,2\n3,1e400\n", DataError, "row 2"),
    (b"co2_t,coal_t\n1,2\n3,1e300\n", EncodingError, "row 2"),
    (b"co2_t,coal_t\n1,2\n3,1e-300\n", None, ""),  # finer than the grid: rounded (to 0) and counted
    (b"co2_t,coal_t\n1,2\n3,9007199254740993\n", DataError, "row 2"),
    (b"co2_t,coal_t\n1,2\n3,oops\n5,6\n", DataError, "'oops'"),
    (b"co2_t,coal_t,flag\n1,2,True\n3,4,False\n", None, ""),  # boolean column: not a default feature
], ids=["empty", "blank-lines", "header-only", "binary", "utf-16", "invalid-utf8-row", "duplicate",
        "duplicate-after-strip", "duplicate-quoted", "reserved-name", "ragged-long", "ragged-short", "overflow",
        "1e300", "1e-300", "int-beyond-2^53", "text-cell", "boolean-column"])
def test_explicit_bad_csv(workdir, content, error, named):
    path = _path(workdir, ".csv")
    path.write_bytes(content)
    if error is None:
        stats = hefed.compute_statistics(path, "co2_t")
        assert stats.features == ["coal_t"]
        CASES[("explicit", "ok")] += 1
        return
    with pytest.raises(error) as info:
        hefed.compute_statistics(path, "co2_t")
    assert str(path) in str(info.value) and named in str(info.value), str(info.value)
    CASES[("explicit", f"refused:{error.__name__}")] += 1


def test_bom_crlf_and_non_ascii_names_work(workdir, keypair):
    path = _path(workdir, ".csv")
    path.write_bytes(b"\xef\xbb\xbf" + "CO₂ (t),température,µg/m³\r\n1.5,2,3\r\n4,5.25,6\r\n7,8,10.125\r\n".encode())
    stats = hefed.compute_statistics(path, "CO₂ (t)")
    assert stats.features == ["température", "µg/m³"]
    frame = pd.DataFrame({"CO₂ (t)": [1.5, 4, 7], "température": [2, 5.25, 8], "µg/m³": [3, 6, 10.125]})
    assert stats.gram == hefed.compute_statistics(frame, "CO₂ (t)").gram
    bundle = hefed.encrypt_statistics(path, "CO₂ (t)", keypair[0], factory_id="plant")
    assert decrypt_statistics(bundle, keypair[1], min_contributors=1, allow_unsigned=True).gram == stats.gram
    CASES[("explicit", "ok")] += 1


def test_text_column_outside_the_listed_features_is_ignored(workdir):
    path = _path(workdir, ".csv")
    path.write_text("co2_t,coal_t,notes\n1,2,3\n4,5,oops\n7,8,9\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"'notes'.*row 2 \('oops'\)"):
        hefed.compute_statistics(path, "co2_t")  # numeric but for one cell: a default feature, refused
    assert hefed.compute_statistics(path, "co2_t", ["coal_t"]).features == ["coal_t"]
    CASES[("explicit", "refused:DataError")] += 1
    CASES[("explicit", "ok")] += 1


@pytest.mark.filterwarnings("ignore:invalid value encountered in greater:RuntimeWarning")  # hefed/data.py, Int64 NA
def test_parquet_specials(workdir):
    dup = _path(workdir, ".parquet")
    pq.write_table(pa.Table.from_arrays([pa.array([1.0, 2.0]), pa.array([1.0, 2.0]), pa.array([3.0, 4.0])],
                                        names=["co2_t", "x", "x"]), dup)
    with pytest.raises((DataError, InvalidFileError), match=re.escape(str(dup))):
        hefed.compute_statistics(dup, "co2_t")
    nullable = _path(workdir, ".parquet")
    pd.DataFrame({"co2_t": [1.0, 2.0, 3.0], "x": pd.array([1, None, 3], dtype="Int64")}).to_parquet(nullable)
    with pytest.raises(DataError, match=r"'x', row 2"):
        hefed.compute_statistics(nullable, "co2_t")
    big = _path(workdir, ".parquet")
    pd.DataFrame({"co2_t": [1.0, 2.0], "x": np.array([1, 2**53 + 1], dtype=np.int64)}).to_parquet(big)
    with pytest.raises(DataError, match=r"'x', row 2"):
        hefed.compute_statistics(big, "co2_t", encoding=hefed.Encoding(int_bits=60))
    corrupt = _path(workdir, ".parquet")
    corrupt.write_bytes(b"PAR1" + b"\x00" * 50 + b"PAR1")
    with pytest.raises(InvalidFileError, match=re.escape(str(corrupt))):
        hefed.compute_statistics(corrupt, "co2_t")
    CASES[("explicit", "refused")] += 4


# --------------------------------------------------------------------------------------------------
# Reproducers of the bugs found (fixed: regression tests)
# --------------------------------------------------------------------------------------------------
ROWS = st.lists(st.tuples(*[st.integers(-99, 99)] * 3), min_size=1, max_size=5).map(
    lambda rows: "".join(f"{a},{b},{c}\n" for a, b, c in rows))


@settings(max_examples=5, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@hypothesis.example(rows="1,2,3\n4,5,6\n7,8,10\n")
@given(rows=ROWS)
def test_regression_extra_field_on_every_row_is_refused(workdir, rows):
    """Found by the fuzzer: a CSV whose every row has one field more than the header was read with its first
    column as the index, every column silently shifted by one (co2_t = 2, 5, 8 where the file says 1, 4, 7)."""
    path = _path(workdir, ".csv")
    path.write_text("co2_t,coal_t\n" + rows, encoding="utf-8")
    with pytest.raises(InvalidFileError, match=re.escape(str(path))):
        hefed.compute_statistics(path, "co2_t")


def test_regression_integer_beyond_2_53_in_a_decimal_column_is_refused(workdir):
    """Found by the fuzzer: an integer beyond 2^53 in a column that also holds a decimal was silently rounded
    by the float64 parse (9007199254740993 -> 9007199254740992)."""
    path = _path(workdir, ".csv")
    path.write_text("co2_t,coal_t\n1,0.5\n2,9007199254740993\n3,1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"'coal_t', row 2"):
        hefed.compute_statistics(path, "co2_t", encoding=hefed.Encoding(int_bits=60))


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_regression_integer_beyond_2_53_read_from_text_is_refused(workdir, fmt):
    """Found by the fuzzer: integers beyond 2^53 read from text (a Parquet string column, a CSV integer column
    beyond uint64) were never refused: int(text) != np.float64(...) rounds the int before comparing."""
    path = _path(workdir, f".{fmt}")
    if fmt == "parquet":
        pq.write_table(pa.Table.from_arrays([pa.array([1.0, 2.0, 3.0]), pa.array(["9007199254740993", "0.5", "1"])],
                                            names=["co2_t", "coal_t"]), path)
    else:  # 2^100 (exact in float64) is beyond uint64, so pandas keeps the integer column as text
        path.write_text(f"co2_t,coal_t\n1,{2**53 + 1}\n2,{2**100}\n3,1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"'coal_t', row 1"):
        hefed.compute_statistics(path, "co2_t", ["coal_t"], encoding=hefed.Encoding(frac_bits=8, int_bits=120))
