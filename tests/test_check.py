"""``hefed check`` and :func:`hefed.analysis.check_table`: a factory's dry run of a study on its own table.

Counts are exact, the suggestions work when followed, the verdict agrees with what encryption does,
and nothing is encrypted or written.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from cli_helpers import run_cli

import hefed
from hefed.analysis import CheckReport, check_table
from hefed.analysis import _check as check_module
from hefed.data import Bounds, Cleaning, FileFormat, Holdout
from hefed.errors import DataError, EncodingError, InvalidFileError
from hefed.protocol import ColumnSpec, Study
from hefed.stats import ColumnEncoding, ColumnSummary


@pytest.fixture(scope="module")
def key():
    return hefed.generate_keypair(1024, insecure_test_key=True)[0]


def good_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "co2_t": [10.5, 12.0, 9.25, 11.0, 10.0, 13.5, 8.75, 12.25],
        "coal_t": [4.0, 5.5, 3.25, 4.5, 4.0, 6.0, 3.0, 5.25],
        "gas_m3": [100.0, 120.0, 90.0, 110.0, 95.0, 130.0, 85.0, 125.0],
        "kiln": ["dry", "wet", "dry", "dry", "wet", "wet", "dry", "wet"],
        "date": [f"2024-01-0{i}" for i in range(1, 9)],
        "note": ["a", "b", "a", "c", "a", "b", "a", "c"],
    })


def good_study(key, **options) -> Study:
    return Study.new(key, ColumnSpec("co2_t", "t"), [ColumnSpec("coal_t", "t"), "gas_m3",
                                                     ColumnSpec("kiln", categories=("dry", "wet"))], **options)


def column(report: CheckReport, name: str):
    return next(c for c in report.columns if c.name == name)


# --- the library ---------------------------------------------------------------------------------
def test_a_good_table_fits(key):
    report = check_table(good_frame(), good_study(key), factory_id="plant-1")
    assert report.verdict == "ok" and report.fits and not report.problems and not report.rounding.total
    assert report.rows_read == report.rows_used == 8 and report.holdout_rows is None
    coal = column(report, "coal_t")
    assert (coal.found, coal.type, coal.missing, coal.minimum, coal.maximum) == (True, "numeric", 0, 3.0, 6.0)
    assert coal.bits_needed == (2, 3)  # 3.25 and 5.25 are multiples of 2^-2; 6.0 < 2^3
    assert coal.encoding == ColumnEncoding(84, 64) and coal.status == "ok"
    kiln = column(report, "kiln")
    assert kiln.type == "categorical" and kiln.levels == {"dry": 4, "wet": 4} and not kiln.unknown_levels
    assert [(c.name, c.type) for c in report.unused_columns] == [("date", "date, e.g. '2024-01-01'"),
                                                                 ("note", "text, 3 distinct value(s), e.g. 'a'")]
    assert report.lines()[-1].startswith("verdict: ok: the data fit the study")
    header, rows = report.table()
    assert len(header) == len(rows[0]) and [r[0] for r in rows] == ["co2_t [t]", "coal_t [t]", "gas_m3", "kiln"]
    as_dict = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert as_dict["verdict"] == "ok" and as_dict["study"]["digest"] == report.study_digest
    assert as_dict["columns"][1]["bits_needed"] == {"frac_bits": 2, "int_bits": 3}


def test_out_of_range_refused_and_too_fine_rounded_counts_exact(key):
    frame = good_frame()
    frame["gas_m3"] = [2.0**64, 3e19, -(2.0**65), 1.0, 2.0, 3.0, 4.0, 5.0]  # 3 reach 2^64; |-2^65| needs 66 bits
    frame["coal_t"] = [3e-30, 3 * 2.0**-90, 2.0**-84, 2.0**-85, 1.0, 2.0, 3.0, 4.0]  # 3 are finer than 2^-84
    report = check_table(frame, good_study(key))
    assert report.verdict == "refused" and not report.fits
    gas = column(report, "gas_m3")
    assert gas.out_of_range == 3 and gas.bits_needed[1] == 66 and gas.status == "refused"
    assert report.problems == ["column 'gas_m3': 3 value(s) reach the study's range 2^64 (largest |3.68935e+19|); "
                               "they need int_bits >= 66"]
    coal = column(report, "coal_t")
    assert coal.rounded == 3 and report.rounding.counts == {"coal_t": 3}
    # 2^-85 is a tie: rounded to even (0), moving it by 2^-85, the most any value moves on the 2^-84 grid
    assert coal.largest_change == 2.0**-85 == report.rounding.largest_change["coal_t"]
    suggestion = next(s for s in report.suggestions if s.column == "gas_m3")
    assert "add a per-column encoding for 'gas_m3' with int_bits >= 66 to the study" in suggestion.text
    assert "the same at every factory" in suggestion.text

    # following the suggestion makes the data fit, with the rounding still counted
    wanted = suggestion.change["column_encoding"]["gas_m3"]
    fixed = good_study(key, column_encodings={"gas_m3": ColumnEncoding(**wanted)})
    again = check_table(frame, fixed)
    assert again.verdict == "ok_with_rounding" and again.fits and again.rounding.counts == {"coal_t": 3}
    assert "ok with rounding" in again.lines()[-1]
    assert any("rounded to the 2^-84 grid" in line for line in again.lines())


def test_the_verdict_is_what_encryption_does(key):
    """Encryption refuses what check refuses, with the same bits, and rounds what check says it rounds."""
    frame = pd.DataFrame({"y": [1.0, 2, 3, 4, 5, 6], "a": [3e-30, 2.0**-90 * 3, 2.0**-84, 1, 2, 3],
                          "e": [2.0**64, 3e19, 1, 2, 3, 4]})
    refused = check_table(frame, Study.new(key, "y", ["a", "e"]))
    assert column(refused, "e").bits_needed[1] == 65
    with pytest.raises(EncodingError, match="int_bits >= 65"):
        hefed.encrypt_table(frame, study=Study.new(key, "y", ["a", "e"]), factory_id="f1")
    study = Study.new(key, "y", ["a", "e"], column_encodings={"e": ColumnEncoding(84, 65)})
    report = check_table(frame, study)
    result = hefed.encrypt_table(frame, study=study, factory_id="f1")
    assert report.fits and result.report is not None
    assert report.rounding.counts == result.report.rounding.counts == {"a": 2}
    assert report.rounding.largest_change == result.report.rounding.largest_change


def test_a_missing_column_is_named_with_the_files_spelling(key):
    frame = good_frame().rename(columns={"gas_m3": "GAS_M3", "coal_t": "coal_tonnes"})
    report = check_table(frame, Study.new(key, "co2_t", ["coal_t", "gas_m3", "NOX"]))
    gas, coal, nox = column(report, "gas_m3"), column(report, "coal_t"), column(report, "NOX")
    assert not gas.found and gas.hint == "GAS_M3" and gas.type == "absent"
    assert "column 'gas_m3' not found; the file has 'GAS_M3' (names are case-sensitive)" in report.problems
    assert coal.hint == "coal_tonnes" and "the closest in the file is 'coal_tonnes'" in coal.problems[0]
    assert nox.hint is None and nox.problems[0].startswith("not found; the file has 'co2_t', 'coal_tonnes'")
    assert report.verdict == "refused" and len(report.problems) == 3
    rename = next(s for s in report.suggestions if s.column == "gas_m3")
    assert rename.change == {"rename": {"from": "GAS_M3", "to": "gas_m3"}}


def test_categorical_levels_not_in_the_study_are_refused(key):
    frame = good_frame()
    frame["kiln"] = ["dry", "wet", "Dry", "dry", "moist", "wet", "moist", "wet"]
    report = check_table(frame, good_study(key))
    kiln = column(report, "kiln")
    assert kiln.unknown_levels == {"Dry": 1, "moist": 2} and kiln.levels == {"dry": 2, "wet": 3}
    assert report.problems == ["column 'kiln': 3 value(s) are not levels of the study ('Dry' ×1, 'moist' ×2; the "
                               "study's levels: 'dry', 'wet')"]
    texts = [s.text for s in report.suggestions]
    assert any("'Dry' → 'dry'" in t for t in texts) and any("'moist'" in t for t in texts)


def test_a_numeric_categorical_column_matches_its_levels(key):
    """Levels 1, 2 read as floats (a gap makes the column float) are the study's '1', '2'."""
    frame = good_frame()
    frame["line"] = [1, 2, np.nan, 2, 1, 1, 2, 2]
    study = Study.new(key, "co2_t", ["coal_t", ColumnSpec("line", categories=("1", "2"))])
    report = check_table(frame, study)
    line = column(report, "line")
    assert report.fits and line.missing == 1 and line.levels == {"1": 3, "2": 4} and not line.unknown_levels
    assert report.incomplete_rows == [2] and report.rows_used == 7


@pytest.mark.parametrize("missing", ["error", "drop"])
def test_missing_values_refused_or_dropped_as_the_study_says(key, missing):
    frame = good_frame()
    frame.loc[1, "coal_t"] = np.nan
    frame.loc[3, "co2_t"] = np.nan
    frame.loc[3, "gas_m3"] = np.nan
    frame.loc[5, "note"] = np.nan  # not used by the study: no effect
    report = check_table(frame, good_study(key, cleaning=Cleaning(missing=missing)))
    assert report.incomplete_rows == [1, 3]
    assert [column(report, c).missing for c in ("co2_t", "coal_t", "gas_m3", "kiln")] == [1, 1, 1, 0]
    assert report.rows_used == 6
    if missing == "error":
        assert report.verdict == "refused" and report.dropped_missing == 0
        assert report.problems == ["missing values in 2 row(s) (2, 4); the study's cleaning refuses them "
                                   "(missing='error')"]
        assert any(s.change == {"cleaning": {"missing": "drop"}} for s in report.suggestions)
    else:
        assert report.verdict == "ok" and report.dropped_missing == 2
        assert "2 row(s) with missing values (row(s) 2, 4): dropped (missing='drop')" in report.lines()


def test_the_holdout_and_the_bounds(key):
    frame = good_frame()
    frame.loc[0, "gas_m3"] = 1e30  # beyond 2^64, but clipped to the bounds before encoding
    bounds = Bounds({"co2_t": (0, 20), "coal_t": (0, 5), "gas_m3": (0, 200), "kiln=wet": (0, 1)})
    report = check_table(frame, good_study(key, holdout=Holdout(0.25, seed=3), bounds=bounds))
    assert report.fits and report.holdout_rows == 2 and report.to_dict()["rows"]["statistics_rows"] == 6
    assert column(report, "coal_t").outside_bounds == 3 and column(report, "gas_m3").outside_bounds == 1
    assert column(report, "gas_m3").out_of_range == 0 and column(report, "gas_m3").maximum == 1e30
    tiny = check_table(good_frame().head(2), good_study(key, holdout=Holdout(0.1)))
    assert tiny.problems == ["the study's holdout (test_fraction 0.1) of 2 row(s) leaves an empty training or "
                             "holdout set"]


def test_cells_that_are_not_numbers(key):
    frame = good_frame()
    frame["gas_m3"] = frame["gas_m3"].map(lambda v: f"{v * 1000:,.1f}")  # '100,000.0'
    frame["coal_t"] = ["4", "5.5", "n/a", "4.5", "4", "6", "3", "5.25"]
    frame["co2_t"] = frame["co2_t"].astype(str).str.replace(".", ",")
    frame.loc[0, "co2_t"] = "inf"
    report = check_table(frame, good_study(key))
    gas, coal, co2 = column(report, "gas_m3"), column(report, "coal_t"), column(report, "co2_t")
    assert (gas.type, gas.non_numeric) == ("text", 8) and gas.detail.startswith("thousands separators")
    assert (coal.type, coal.non_numeric) == ("text", 1) and coal.detail.startswith("mostly numbers; 1 cell(s)")
    assert "row 3: 'n/a'" in coal.problems[0] and coal.minimum == 3.0
    assert co2.detail.startswith("decimal commas") and co2.not_finite == 1
    texts = [s.text for s in report.suggestions]
    assert "export 'gas_m3' without thousands separators" in texts
    assert "read the file with the decimal separator ','" in texts
    assert report.verdict == "refused" and len(report.problems) == 4


def test_empty_columns_big_integers_and_duplicate_names(key):
    frame = good_frame()
    frame["gas_m3"] = np.nan
    frame["co2_t"] = pd.array([10, None, 9, 11, 10, 2**60, 8, 12], dtype="Int64")
    report = check_table(frame, good_study(key))
    assert column(report, "gas_m3").type == "empty" and column(report, "gas_m3").missing == 8
    assert report.problems == [
        "column 'co2_t': 1 integer(s) beyond 2^53 (row 6: 1152921504606846976) cannot be represented exactly as "
        "float64", "no rows left after the study's cleaning (every row misses a value)"]
    with pytest.raises(DataError, match="duplicate column name 'coal_t'"):
        check_table(pd.concat([good_frame(), good_frame()[["coal_t"]]], axis=1), good_study(key))


def test_outliers_are_checked_only_with_the_consortium_summary(key):
    study = good_study(key, cleaning=Cleaning(missing="drop", max_z=2.0))  # the summary comes at encryption
    frame = good_frame()
    frame.loc[4, "coal_t"] = 40.0
    unchecked = check_table(frame, study)
    assert unchecked.outlier_rows is None and "not checkable here" in (unchecked.outliers_note or "")
    columns = ["co2_t", "coal_t", "gas_m3", "kiln=wet"]
    summary = ColumnSummary(columns, dict.fromkeys(columns, 100), {c: Fraction(0) for c in columns},
                            {c: Fraction(100) for c in columns})  # mean 0, sd ≈ 1.005
    summary.total["co2_t"], summary.total_sq["co2_t"] = Fraction(1000), Fraction(100 * 101)  # mean 10, sd ≈ 1
    summary.total["coal_t"], summary.total_sq["coal_t"] = Fraction(450), Fraction(100 * 4.5**2 + 99 * 4)  # sd 2
    summary.total["gas_m3"], summary.total_sq["gas_m3"] = Fraction(10000), Fraction(10**6 + 99 * 900)  # sd 30
    summary.total["kiln=wet"], summary.total_sq["kiln=wet"] = Fraction(50), Fraction(50)
    checked = check_table(frame, study, summary=summary)
    assert checked.outlier_rows == [4, 5, 7]  # coal_t 40 (|z| = 17.75); co2_t 13.5, 12.25 (|z| ≈ 3.5, 2.2)
    assert checked.rows_used == 5


def test_unused_columns_carry_the_librarys_reasons(key):
    """Columns the study does not use are listed (informational), with hefed.data.left_out_columns's reasons."""
    frame = good_frame()
    frame["flag"] = [True, False] * 4
    frame["spare_kw"] = np.arange(8.0)
    report = check_table(frame, good_study(key))
    assert report.fits and [c.name for c in report.unused_columns] == ["date", "note", "flag", "spare_kw"]
    assert [c.type for c in report.unused_columns][2:] == ["boolean", "numeric"]
    reasons = hefed.data.left_out_columns(frame, "co2_t")
    assert {c.name: c.reason for c in report.unused_columns if c.name in reasons} == \
        {name: reason for name, reason in reasons.items() if name in ("date", "note", "flag")}
    assert all(reasons[name] for name in ("date", "note", "flag"))  # each says why
    assert [c.reason for c in report.unused_columns][3] == ""  # a numeric column is left out by the study only


def test_reasons_are_worked_out_for_the_unused_columns_only(key, monkeypatch):
    """Why a column would be left out is asked only about the columns the study does not use (a reason looks at
    every cell of a text column: the study's categorical columns would cost the most)."""
    asked: list[list[str]] = []
    real = check_module.left_out_columns

    def spy(frame, target):
        asked.append([str(c) for c in frame.columns])
        return real(frame, target)

    monkeypatch.setattr(check_module, "left_out_columns", spy)
    report = check_table(good_frame(), good_study(key))
    assert asked == [["date", "note"]] and [c.name for c in report.unused_columns] == ["date", "note"]
    assert all(c.reason for c in report.unused_columns)
    asked.clear()
    assert check_table(good_frame()[["co2_t", "coal_t", "gas_m3", "kiln"]], good_study(key)).fits
    assert asked == []


def test_blank_categorical_cells_are_missing(key):
    frame = good_frame()
    frame.loc[2, "kiln"] = "  "
    report = check_table(frame, good_study(key))
    assert column(report, "kiln").missing == 1 and report.incomplete_rows == [2] and report.fits


def test_imputing_means_keeps_the_rows(key):
    study = good_study(key, cleaning=Cleaning(missing="drop", impute="mean"))  # the summary comes at encryption
    frame = good_frame()
    frame.loc[[1, 2], "gas_m3"] = np.nan
    frame.loc[3, "kiln"] = np.nan  # a category cannot be imputed: that row is dropped
    unchecked = check_table(frame, study)
    assert unchecked.fits and unchecked.rows_used == 7 and unchecked.imputed_cells == 2
    assert any("2 missing value(s) would be imputed" in note for note in unchecked.notes)
    columns = ["co2_t", "coal_t", "gas_m3", "kiln=wet"]
    summary = ColumnSummary(columns, dict.fromkeys(columns, 10), dict.fromkeys(columns, Fraction(10**21)),
                            dict.fromkeys(columns, Fraction(10**42)))  # means of 1e20: beyond 2^64
    checked = check_table(frame, study, summary=summary)
    assert column(checked, "gas_m3").out_of_range == 2 and not checked.fits
    partial = ColumnSummary(columns[:2], dict.fromkeys(columns[:2], 10), dict.fromkeys(columns[:2], Fraction(1)),
                            dict.fromkeys(columns[:2], Fraction(1)))
    assert "the consortium summary has no column 'gas_m3' to impute its means from" in \
        check_table(frame, study, summary=partial).problems


def test_a_file_as_read(tmp_path, key):
    path = tmp_path / "plant.csv"
    good_frame().to_csv(path, sep=";", decimal=",", index=False, encoding="cp1252")
    report = check_table(path, good_study(key), factory_id="plant-1")
    assert report.fits and report.source == str(path) and report.file_format is not None
    assert (report.file_format.delimiter, report.file_format.decimal) == (";", ",")
    assert report.heading()[0].startswith(f"{path}: text, semicolon-separated, decimal comma")
    assert column(report, "coal_t").maximum == 6.0
    given = check_table(path, good_study(key), file_format=FileFormat(delimiter="\t"))  # one column
    assert not given.fits and not any(c.found for c in given.columns)
    assert [s.change for s in given.suggestions if "delimiter" in s.text] == [{"file_format": {"delimiter": ";"}}]
    with pytest.raises(InvalidFileError, match="data file not found"):
        check_table(tmp_path / "nowhere.csv", good_study(key))


def test_the_report_names_the_encoding_the_file_was_read_with(tmp_path, key):
    """A file that is plain ASCII for more than the detection sample and Windows text further on is read
    as cp1252 (UTF-8 fails beyond the sample): the report names the encoding it was read with."""
    frame = pd.concat([good_frame()] * 2000, ignore_index=True)
    frame.loc[len(frame) - 1, "note"] = "caf\u00e9"
    path = tmp_path / "plant.csv"
    frame.to_csv(path, index=False, encoding="cp1252")
    assert path.stat().st_size > 64 << 10 and path.read_bytes()[:64 << 10].isascii()
    report = check_table(path, good_study(key))
    assert report.fits and report.rows_read == len(frame)
    assert report.file_format is not None and report.file_format.encoding == "cp1252"
    assert "cp1252" in report.heading()[0]


# --- the command -----------------------------------------------------------------------------------
@pytest.fixture
def files(tmp_path, key):
    good_study(key).save(tmp_path / "study.json")
    good_frame().to_csv(tmp_path / "good.csv", index=False)
    bad = good_frame()
    bad["gas_m3"] = bad["gas_m3"] * 2.0**70
    bad.to_csv(tmp_path / "bad.csv", index=False)
    return tmp_path


def listing(folder):
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


def test_cli_exit_codes_and_nothing_written(files):
    before = listing(files)
    good = run_cli("check", "good.csv", "--study", "study.json", "--factory-id", "plant-1", cwd=files)
    assert good.returncode == 0, good.stderr
    assert "verdict: ok: the data fit the study" in good.stdout and good.stderr == ""
    assert "coal_t [t]" in good.stdout and "not used by the study (2): 'date'" in good.stdout
    bad = run_cli("check", "bad.csv", "--study", "study.json", cwd=files)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr + bad.stdout
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("hefed: error: bad.csv: the data do not fit study")
    assert "int_bits >= 78" in bad.stdout and "verdict: refused" in bad.stdout  # 130 · 2^70 < 2^78
    assert "[hefed study new --column-encoding gas_m3=84:78]" in bad.stdout
    quiet = run_cli("check", "bad.csv", "--study", "study.json", "--quiet", cwd=files)
    assert quiet.returncode == 1 and quiet.stdout == "" and quiet.stderr == bad.stderr
    missing = run_cli("check", "nowhere.csv", "--study", "study.json", cwd=files)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "data file not found" in missing.stderr
    assert listing(files) == before


def test_cli_json(files):
    good = run_cli("check", "good.csv", "--study", "study.json", "--json", cwd=files)
    data = json.loads(good.stdout)
    assert good.returncode == 0 and data["ok"] is True and data["verdict"] == "ok"
    assert [c["name"] for c in data["columns"]] == ["co2_t", "coal_t", "gas_m3", "kiln"]
    assert data["file_format"]["delimiter"] == "," and data["rows_read"] == 8
    bad = run_cli("check", "bad.csv", "--study", "study.json", "--json", cwd=files)
    data = json.loads(bad.stdout)
    assert bad.returncode == 1 and data["ok"] is False and data["verdict"] == "refused" and data["exit_code"] == 1
    gas = data["columns"][2]
    assert gas["out_of_range"] == 8 and gas["bits_needed"]["int_bits"] == 78
    assert {"gas_m3": {"frac_bits": 84, "int_bits": 78}} in [s["change"].get("column_encoding")
                                                             for s in data["suggestions"]]
    assert math.isclose(gas["max"], 130 * 2.0**70)


def test_cli_file_format_options_and_their_suggestion(files):
    good_frame().to_csv(files / "semicolon.csv", sep=";", decimal=",", index=False)
    detected = run_cli("check", "semicolon.csv", "--study", "study.json", cwd=files)
    assert detected.returncode == 0, detected.stdout + detected.stderr
    forced = run_cli("check", "semicolon.csv", "--study", "study.json", "--delimiter", "tab", "--json", cwd=files)
    data = json.loads(forced.stdout)
    assert forced.returncode == 1 and data["file_format"]["delimiter"] == "\t"
    assert {"file_format": {"delimiter": ";"}} in [s["change"] for s in data["suggestions"]]
    text = run_cli("check", "semicolon.csv", "--study", "study.json", "--delimiter", "tab", cwd=files)
    assert "suggestion: read the file with the delimiter ';' [--delimiter ';']" in text.stdout


def test_cli_json_of_an_error_is_one_object(files):
    result = run_cli("check", "nowhere.csv", "--study", "study.json", "--json", cwd=files)
    assert result.returncode == 1 and json.loads(result.stdout)["ok"] is False
    assert "data file not found" in json.loads(result.stdout)["error"]


def test_cli_refuses_a_study_file_that_was_edited(files):
    study = json.loads((files / "study.json").read_text())
    study["title"] = "edited"
    (files / "edited.json").write_text(json.dumps(study))
    result = run_cli("check", "good.csv", "--study", "edited.json", cwd=files)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "digest does not match" in result.stderr
