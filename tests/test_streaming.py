"""Statistics read block by block equal the whole-table statistics, integer for integer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hefed
from hefed.data import Bounds, Cleaning, detect_format, read_table, select_xy
from hefed.data import _streaming as streaming
from hefed.errors import DataError, EncodingError, HefedError
from hefed.stats import ColumnSummary, statistics_from_arrays


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of ~1 KiB (CSV) and 7 rows (Parquet): many blocks even for small test files."""
    monkeypatch.setattr(streaming, "BLOCK_BYTES", 1024)
    monkeypatch.setattr(streaming, "BATCH_ROWS", 7)


def _frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "plant": [f"p{i % 3}" for i in range(rows)],  # text column: never a default feature
        "coal_t": np.round(rng.uniform(0, 500, rows), 3),
        "gas_t": np.round(rng.normal(100, 30, rows), 4),
        "hours": rng.integers(0, 9000, rows),
        "co2_t": np.round(rng.normal(1000, 200, rows), 2),
    })


def _whole(path, target="co2_t", features=None):
    frame = read_table(path)
    X, y, names = select_xy(frame, target, features, str(path))
    return statistics_from_arrays(X, y, names, target)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_blocks_equal_the_whole_table(tmp_path, small_blocks, suffix):
    frame = _frame(400)
    path = tmp_path / f"plant{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    parquet = suffix == ".parquet"
    resolved = detect_format(path)
    assert (resolved.kind == "parquet") == parquet
    raw = streaming._first_block(path, resolved)[2]
    blocks = list(streaming._blocks(path, resolved, raw, ["coal_t", "co2_t"]))
    assert len(blocks) > 5, "the test must really read several blocks"
    stats, report = streaming.stream_statistics(path, "co2_t", cleaning=Cleaning())
    assert stats.features == ["coal_t", "gas_t", "hours"]
    assert stats.gram == _whole(path).gram
    assert (report.rows_in, report.rows_out) == (400, 400)
    chosen = ["hours", "gas_t"]
    assert hefed.compute_statistics(path, "co2_t", chosen).gram == _whole(path, features=chosen).gram


def _summary(frame: pd.DataFrame, columns: list[str]) -> ColumnSummary:
    from fractions import Fraction

    clean = {c: frame[c].dropna().to_numpy(dtype=float) for c in columns}
    return ColumnSummary(columns, {c: len(v) for c, v in clean.items()},
                         {c: sum(map(Fraction, v)) for c, v in clean.items()},
                         {c: sum(Fraction(x) ** 2 for x in v) for c, v in clean.items()})


@pytest.mark.parametrize("options", [
    {"missing": "drop"},
    {"missing": "drop", "max_z": 3.0},
    {"impute": "mean"},
    {"missing": "drop", "bounds": True},
])
def test_preprocessing_per_block_matches_the_whole_table(tmp_path, small_blocks, options):
    frame = _frame(300, seed=1).drop(columns="plant")
    frame.loc[[5, 150, 299], "gas_t"] = np.nan
    frame.loc[[77, 210], "coal_t"] = 10_000.0  # outliers
    path = tmp_path / "plant.csv"
    frame.to_csv(path, index=False)
    used = ["coal_t", "gas_t", "hours", "co2_t"]
    options = dict(options)
    if options.pop("bounds", False):
        options["bounds"] = Bounds({"coal_t": (0.0, 400.0), "gas_t": (0.0, 200.0), "hours": (0.0, 9000.0),
                                    "co2_t": (0.0, 2000.0)})
    if "max_z" in options or "impute" in options:
        options["summary"] = _summary(frame, used)
    stats, report = streaming.stream_statistics(path, "co2_t", cleaning=Cleaning(**options))
    # the whole-table path (what encrypt_table runs when the file is not streamed)
    (whole,), whole_report = streaming._process(read_table(path), str(path), "co2_t", None, hefed.Encoding(), None,
                                                Cleaning(**options))
    assert stats.gram == whole.gram
    assert report.dropped_missing == whole_report.dropped_missing
    assert report.dropped_outliers == whole_report.dropped_outliers
    assert (report.imputed_cells, report.clipped_cells) == (whole_report.imputed_cells, whole_report.clipped_cells)
    if options.get("missing") == "drop":
        assert report.dropped_missing == [5, 150, 299]  # rows of the file (0-based), across blocks
    if "max_z" in options:
        assert {77, 210} <= set(report.dropped_outliers)
    if "bounds" in options:
        assert report.clipped_cells > 0


def test_errors_name_the_row_of_the_file_not_of_the_block(tmp_path, small_blocks):
    frame = _frame(300, seed=2).drop(columns="plant")
    frame.loc[250, "gas_t"] = 1e30  # beyond the encoding's range: refused
    path = tmp_path / "plant.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(EncodingError, match=r"column 'gas_t', row 251\b"):
        hefed.compute_statistics(path, "co2_t")
    frame.loc[250, "gas_t"] = np.nan
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"row\(s\) 251\b"):
        streaming.stream_statistics(path, "co2_t", cleaning=Cleaning(missing="error"))


@pytest.mark.parametrize("cell, error, named", [
    ("oops", DataError, "'oops'"),
    ("9007199254740993", DataError, "row 281"),  # float64 would round it: refused, not rounded
    ("True", DataError, "gas_t"),
])
def test_cells_pyarrow_will_not_take_get_the_whole_table_message(tmp_path, small_blocks, cell, error, named):
    frame = _frame(300, seed=3).drop(columns="plant").astype({"gas_t": object})
    frame.loc[280, "gas_t"] = cell
    path = tmp_path / "plant.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(error, match=named):
        hefed.compute_statistics(path, "co2_t", ["coal_t", "gas_t"])


decimal_cells = st.builds(
    lambda mantissa, digits: f"{mantissa / 10**digits:.{digits}f}",
    st.integers(min_value=-(10**12), max_value=10**12), st.integers(min_value=0, max_value=9),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(decimal_cells, decimal_cells), min_size=1, max_size=30))
def test_pyarrow_parses_decimals_as_python_does(tmp_path, rows):
    """The block reader must give the correctly rounded float64 of every decimal, as float() does."""
    path = tmp_path / "decimals.csv"
    path.write_text("x,y\n" + "".join(f"{a},{b}\n" for a, b in rows))
    encoding = hefed.Encoding(frac_bits=120)  # room for the last binary digit of 1e-9
    stats, _ = streaming.stream_statistics(path, "y", ["x"], encoding, progress=False)
    xs = np.array([float(a) for a, _ in rows])
    ys = np.array([float(b) for _, b in rows])
    assert stats.gram == statistics_from_arrays(xs[:, None], ys, ["x"], "y", encoding).gram


def test_progress_bar_only_when_asked_or_on_a_terminal(tmp_path, capsys):
    path = tmp_path / "plant.csv"
    _frame(50).to_csv(path, index=False)
    streaming.stream_statistics(path, "co2_t")  # pytest's stderr is not a terminal
    assert capsys.readouterr().err == ""
    streaming.stream_statistics(path, "co2_t", progress=True)
    assert "reading plant.csv" in capsys.readouterr().err


def test_read_ahead_keeps_order_raises_errors_and_stops_early():
    assert list(streaming._prefetch(iter(range(50)))) == list(range(50))

    def failing():
        yield 1
        raise ValueError("bad block")

    with pytest.raises(ValueError, match="bad block"):
        list(streaming._prefetch(failing()))
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    reader = streaming._prefetch(endless(), depth=2)
    assert [next(reader) for _ in range(3)] == [0, 1, 2]
    reader.close()  # the consumer stops early: the producer thread must stop too
    count = len(produced)
    import time

    time.sleep(0.3)
    assert len(produced) == count <= 3 + 2 + 1


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_fold_statistics_streamed_equal_the_whole_table(tmp_path, small_blocks, suffix):
    """Folds hash the row's number among the kept rows: dropped rows shift later rows' folds
    exactly as on the whole preprocessed table."""
    from hefed.data import compute_fold_statistics

    frame = _frame(500, seed=4).drop(columns="plant")
    frame.loc[[3, 100, 101, 420], "gas_t"] = np.nan
    path = tmp_path / f"plant{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    folds, report = streaming.stream_fold_statistics(path, "co2_t", None, None, "f", 4, 11,
                                                     cleaning=Cleaning(missing="drop"))
    whole = compute_fold_statistics(frame.dropna().reset_index(drop=True), "co2_t", ["coal_t", "gas_t", "hours"],
                                    None, "f", 4, 11)
    assert [f.gram for f in folds.folds] == [f.gram for f in whole.folds]
    assert report.dropped_missing == [3, 100, 101, 420]
    assert len({f.n for f in folds.folds}) > 1 and sum(f.n for f in folds.folds) == 496
    # and the library's compute_fold_statistics on the file (no preprocessing) agrees with the frame
    clean = tmp_path / f"clean{suffix}"
    tidy = frame.dropna()
    tidy.to_csv(clean, index=False) if suffix == ".csv" else tidy.to_parquet(clean, index=False)
    from_file = compute_fold_statistics(clean, "co2_t", None, None, "f", 4, 11)
    assert [f.gram for f in from_file.folds] == [f.gram for f in whole.folds]


def _both_paths(path, target="y", **options):
    """(streamed, whole-table) outcome: the statistics and report, or the error type and message."""
    def outcome(function):
        try:
            stats, report = function()
        except HefedError as exc:
            return type(exc).__name__, str(exc)
        return stats.features, stats.gram, report.dropped_missing
    clean = options.pop("clean", True)
    cleaning = Cleaning(**options) if clean else None
    streamed = outcome(lambda: streaming.stream_statistics(path, target, cleaning=cleaning))

    def whole():
        parts, report = streaming._process(read_table(path), str(path), target, None, hefed.Encoding(), None,
                                           cleaning)
        return parts[0], report
    return streamed, outcome(whole)


@pytest.mark.parametrize("missing", ["drop", "error"])
def test_a_column_empty_in_the_first_blocks_is_still_a_default_feature(tmp_path, small_blocks, missing):
    rng = np.random.default_rng(8)
    frame = pd.DataFrame({"x": np.round(rng.normal(size=300), 3), "z": np.round(rng.normal(size=300), 3)})
    frame["y"] = np.round(frame["x"] + rng.normal(size=300), 3)
    frame.loc[:199, "z"] = np.nan
    path = tmp_path / "late.csv"
    frame.to_csv(path, index=False)
    streamed, whole = _both_paths(path, missing=missing)
    assert streamed == whole
    if missing == "drop":
        assert streamed[0] == ["x", "z"] and len(streamed[2]) == 200
    else:
        assert "row(s) 1, 2, 3" in streamed[1]


def test_default_features_are_chosen_from_the_table_as_read_not_after_cleaning(tmp_path):
    """A text column that is numeric only in the rows cleaning keeps is left out on both paths, and the
    report's reason agrees with the statistics (it used to be left out in the report and used in the model)."""
    frame = pd.DataFrame({"y": [1.0, 2, 3, 4, 5, 6, 7.5, 8, 9.25, 10], "x": [np.nan] * 6 + [1.0, 2.5, 3, 4.75],
                          "z": ["off"] * 6 + ["3.5", "1", "2", "7"]})
    (stats,), report = hefed.data.table_statistics(frame, "y", cleaning=Cleaning(missing="drop"))
    assert stats.features == ["x"] and list(report.left_out) == ["z"] and report.rows_out == 4
    path = tmp_path / "late-numbers.csv"
    frame.to_csv(path, index=False)
    streamed, whole = _both_paths(path, missing="drop")
    assert streamed == whole and streamed[0] == ["x"]


def test_statistics_without_a_report_do_not_work_out_why_columns_are_left_out(monkeypatch):
    """compute_statistics returns no report, so it does not spend time on the reasons (a text column's
    reason looks at every one of its cells); encrypt_table, which reports them, still does."""
    frame = _frame(50)
    expected = statistics_from_arrays(frame[["coal_t", "gas_t", "hours"]].to_numpy(dtype=float),
                                      frame["co2_t"].to_numpy(), ["coal_t", "gas_t", "hours"], "co2_t").gram
    monkeypatch.setattr("hefed.data._columns._reason", lambda *args: pytest.fail("a reason was worked out"))
    assert hefed.compute_statistics(frame, "co2_t").gram == expected
    assert [f.n for f in hefed.compute_fold_statistics(frame, "co2_t", folds=2).folds] != []
    monkeypatch.undo()
    (_, report) = hefed.data.table_statistics(frame, "co2_t")
    assert list(report.left_out) == ["plant"]


def test_a_text_column_numeric_after_the_first_blocks_is_decided_on_the_whole_file(tmp_path, small_blocks):
    rows = ["x,code,y"] + [f"{i}.5,n/a{i % 3},{i}.25" for i in range(80)] + [f"{i}.5,{i},{i}.75" for i in range(200)]
    path = tmp_path / "codes.csv"
    path.write_text("\n".join(rows) + "\n")
    streamed, whole = _both_paths(path, clean=False)
    assert streamed == whole
    assert streamed[0] == "DataError" and "'code'" in streamed[1]


def test_an_empty_header_name_is_read_as_the_whole_table_reader_names_it(tmp_path, small_blocks):
    path = tmp_path / "unnamed.csv"
    path.write_text("x,,y\n" + "".join(f"{i}.5,{i},{i}.25\n" for i in range(100)))
    streamed, whole = _both_paths(path, clean=False)
    assert streamed == whole


@pytest.mark.parametrize("features", [None, ["x", "nope"]])
def test_missing_columns_are_reported_from_the_header_like_the_whole_table(tmp_path, small_blocks, features):
    path = tmp_path / "cols.csv"
    path.write_text("x,w\n" + "".join(f"{i}.5,{i}\n" for i in range(3000)))
    target = "y" if features is None else "w"
    for clean in (False, True):
        with pytest.raises(DataError) as streamed:
            streaming.stream_statistics(path, target, features, cleaning=Cleaning() if clean else None)
        cleaning = Cleaning(missing="error") if clean else None
        with pytest.raises(DataError) as whole:
            streaming._process(read_table(path), str(path), target, features, hefed.Encoding(), None, cleaning)
        assert str(streamed.value) == str(whole.value)


def test_errors_after_dropped_rows_name_the_row_of_the_file(tmp_path, small_blocks):
    frame = _frame(300, seed=9).drop(columns="plant")
    frame.loc[[4, 40, 120], "gas_t"] = np.nan  # dropped
    frame.loc[200, "coal_t"] = 1e30  # refused: must be named as row 201 of the file
    path = tmp_path / "plant.csv"
    frame.to_csv(path, index=False)
    for run in (lambda: streaming.stream_statistics(path, "co2_t", cleaning=Cleaning(missing="drop")),
                lambda: streaming._process(read_table(path), str(path), "co2_t", None, hefed.Encoding(), None,
                                           Cleaning(missing="drop"))):
        with pytest.raises(EncodingError, match=r"column 'coal_t', row 201\b"):
            run()
    with pytest.raises(EncodingError, match=r"row 201\b"):
        streaming.stream_fold_statistics(path, "co2_t", folds=3, cleaning=Cleaning(missing="drop"))


def test_row_renumbering_leaves_names_that_contain_row_alone():
    assert streaming._renumber("plant.csv: column 'arrow 7', row 5: bad", 100) == \
        "plant.csv: column 'arrow 7', row 105: bad"
    assert streaming._renumber("plant.csv: missing values in row(s) 1, 9 (use --missing drop)", 10) == \
        "plant.csv: missing values in row(s) 11, 19 (use --missing drop)"


def test_missing_values_win_over_a_later_check_in_the_same_block(tmp_path, small_blocks):
    """--missing error: a gap is reported even when its block also holds a value that
    cannot be encoded, as the whole table checks gaps first."""
    frame = _frame(300, seed=10).drop(columns="plant")
    frame.loc[150, "gas_t"] = np.nan
    frame.loc[151, "coal_t"] = 1e30
    path = tmp_path / "plant.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"missing values in row\(s\) 151 "):
        streaming.stream_statistics(path, "co2_t", cleaning=Cleaning(missing="error"))
    with pytest.raises(DataError, match=r"missing values in row\(s\) 151 "):
        streaming._process(read_table(path), str(path), "co2_t", None, hefed.Encoding(), None,
                           Cleaning(missing="error"))
