"""Federated preprocessing: the encrypted summary round, missing values, outliers, standardisation."""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from cli_helpers import run_cli, run_cli_parallel
from kind_helpers import decrypt_coefficients, decrypt_summary, encrypt_coefficients, local_summary

import hefed
from hefed.data import Cleaning, compute_fold_statistics, compute_statistics, preprocess
from hefed.errors import DataError, SchemaMismatchError, UsageError
from hefed.roles import average_model, decrypt_bundle, standardized_coefficients
from hefed.stats import ColumnSummary

TARGET = "y"
FEATURES = ["a", "b", "c"]
COLUMNS = [*FEATURES, TARGET]


# --------------------------------------------------------------------------------------
# Fixtures and helpers (local to this file)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pp_keys():
    return hefed.generate_keypair(1024, insecure_test_key=True)


def _frames(seed: int = 2, with_gaps: bool = True) -> dict[str, pd.DataFrame]:
    """Three factories; features on different scales; a few missing cells in every column."""
    rng = np.random.default_rng(seed)
    frames = {}
    for i, n in enumerate((30, 45, 38)):
        a = rng.integers(-4000, 4000, n) / 64 + 10 * i
        b = rng.integers(0, 100_000, n) / 16 + 1000
        c = rng.normal(0, 3, n)  # arbitrary float64s (exactly encodable with the default encoding)
        y = 7 + 0.5 * a - 0.01 * b + 2 * c + rng.normal(0, 1, n)
        frame = pd.DataFrame({"a": a, "b": b, "c": c, TARGET: y})
        if with_gaps:
            for col in COLUMNS:
                frame.loc[rng.choice(n, size=2, replace=False), col] = np.nan
        frames[f"plant-{i}"] = frame
    return frames


@pytest.fixture
def frames() -> dict[str, pd.DataFrame]:
    return _frames()


def _summary(frames: dict[str, pd.DataFrame], keys, features=FEATURES) -> ColumnSummary:
    public_key, private_key = keys
    bundles = [hefed.encrypt_table(f, TARGET, public_key, features=features, factory_id=name,
                                   request=hefed.SummaryRequest()).bundle
               for name, f in frames.items()]
    assert {b.kind for b in bundles} == {"summary"}
    return decrypt_summary(hefed.aggregate(bundles), private_key)


def one_line_error(result: subprocess.CompletedProcess, code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("hefed: error:"), result.stderr
    return lines[0]


# --------------------------------------------------------------------------------------
# The encrypted summary round
# --------------------------------------------------------------------------------------


def test_summary_is_exact_over_non_missing_values(pp_keys, frames):
    summary = _summary(frames, pp_keys)
    pooled = pd.concat(frames.values(), ignore_index=True)
    assert summary.columns == COLUMNS
    assert summary.contributors == list(frames)
    for col in COLUMNS:
        present = pooled[col].dropna().to_numpy()
        assert summary.count[col] == len(present) == len(pooled) - 6
        assert summary.total[col] == sum((Fraction(float(v)) for v in present), Fraction(0))
        assert summary.total_sq[col] == sum((Fraction(float(v)) ** 2 for v in present), Fraction(0))
        assert summary.mean(col) == pytest.approx(pooled[col].mean(), rel=1e-12)
        assert summary.std(col) == pytest.approx(pooled[col].std(ddof=1), rel=1e-12)
        n = len(present)
        exact_mean = summary.total[col] / n
        assert summary.variance_exact(col) == sum((Fraction(float(v)) - exact_mean) ** 2 for v in present) / (n - 1)
    assert [row[0] for row in summary.table()] == COLUMNS


def test_summary_is_the_sum_of_local_summaries(pp_keys, frames):
    summary = _summary(frames, pp_keys)
    locals_ = [local_summary(f, TARGET, FEATURES) for f in frames.values()]
    for col in COLUMNS:
        assert summary.count[col] == sum(s.count[col] for s in locals_)
        assert summary.total[col] == sum((s.total[col] for s in locals_), Fraction(0))
        assert summary.total_sq[col] == sum((s.total_sq[col] for s in locals_), Fraction(0))


def test_summary_does_not_depend_on_column_order(pp_keys, frames):
    same_order = _summary(frames, pp_keys, features=None)
    orders = [["a", "b", "c", TARGET], [TARGET, "c", "b", "a"], ["b", TARGET, "a", "c"]]
    shuffled = {name: f[order] for (name, f), order in zip(frames.items(), orders, strict=True)}
    mixed = _summary(shuffled, pp_keys, features=None)
    assert set(mixed.columns) == set(COLUMNS) and mixed.columns[-1] == TARGET
    for col in COLUMNS:
        assert (mixed.count[col], mixed.total[col], mixed.total_sq[col]) == \
               (same_order.count[col], same_order.total[col], same_order.total_sq[col])
    # explicit feature lists in different orders too
    public_key, private_key = pp_keys
    bundles = [hefed.encrypt_table(f, TARGET, public_key, features=feats, factory_id=name,
                                   request=hefed.SummaryRequest()).bundle
               for (name, f), feats in zip(frames.items(), (["a", "b", "c"], ["c", "a", "b"], ["b", "c", "a"]),
                                           strict=True)]
    explicit = decrypt_summary(hefed.aggregate(bundles), private_key)
    for col in COLUMNS:
        assert explicit.total[col] == same_order.total[col] and explicit.count[col] == same_order.count[col]


def test_summary_file_round_trip(pp_keys, frames, tmp_path):
    summary = _summary(frames, pp_keys)
    summary.save(tmp_path / "summary.json")
    obj = json.loads((tmp_path / "summary.json").read_text())
    assert obj["columns"]["a"]["count"] == summary.count["a"]
    assert obj["columns"]["b"]["mean"] == summary.mean("b")
    loaded = ColumnSummary.load(tmp_path / "summary.json")
    assert loaded.columns == summary.columns
    assert (loaded.count, loaded.total, loaded.total_sq) == (summary.count, summary.total, summary.total_sq)


def test_summary_bundles_never_mix_with_other_kinds(pp_keys, frames):
    public_key, private_key = pp_keys
    complete = {n: f.dropna() for n, f in frames.items()}
    summary_bundles = [hefed.encrypt_table(f, TARGET, public_key, features=FEATURES, factory_id=n,
                                           request=hefed.SummaryRequest()).bundle
                       for n, f in complete.items()]
    stats_bundle = hefed.encrypt_statistics(complete["plant-1"], TARGET, public_key, FEATURES, factory_id="x")
    with pytest.raises(SchemaMismatchError):
        hefed.aggregate([summary_bundles[0], stats_bundle])
    with pytest.raises(SchemaMismatchError):
        hefed.decrypt_statistics(hefed.aggregate(summary_bundles), private_key, allow_unsigned=True)
    assert isinstance(decrypt_bundle(hefed.aggregate(summary_bundles), private_key, allow_unsigned=True), ColumnSummary)


# --------------------------------------------------------------------------------------
# preprocess(): missing values
# --------------------------------------------------------------------------------------


def _frame_with_gaps() -> pd.DataFrame:
    frame = _frames(seed=5, with_gaps=False)["plant-1"].copy()
    frame.loc[2, "a"] = np.nan
    frame.loc[5, TARGET] = np.nan
    frame.loc[9, "b"] = np.nan
    frame.loc[9, "c"] = np.nan
    return frame


def test_missing_error_names_the_rows_one_based():
    with pytest.raises(DataError) as info:
        preprocess(_frame_with_gaps(), TARGET, FEATURES, Cleaning(missing="error"), source="plant-x")
    message = str(info.value)
    assert message.startswith("plant-x:")
    assert "row(s) 3, 6, 10 " in message


def test_missing_error_is_the_library_default():
    with pytest.raises(DataError, match="row\\(s\\) 3, 6, 10"):
        preprocess(_frame_with_gaps(), TARGET, FEATURES)


def test_missing_error_abbreviates_long_lists():
    frame = _frame_with_gaps()
    frame.loc[10:20, "a"] = np.nan
    with pytest.raises(DataError, match="row\\(s\\) 3, 6, 10, 11, 12, 13, 14, 15, … \\(6 more\\)"):
        preprocess(frame, TARGET, FEATURES, Cleaning(missing="error"))


def test_missing_drop_drops_exactly_the_incomplete_rows():
    frame = _frame_with_gaps()
    cleaned, report = preprocess(frame, TARGET, FEATURES, Cleaning(missing="drop"))
    assert report.dropped_missing == [2, 5, 9]
    assert (report.rows_in, report.rows_out) == (len(frame), len(frame) - 3)
    assert report.imputed_cells == 0 and report.dropped_outliers == []
    expected = frame.drop(index=[2, 5, 9]).reset_index(drop=True)[COLUMNS]
    pd.testing.assert_frame_equal(cleaned[COLUMNS], expected, check_exact=True)
    assert report.lines() == ["dropped 3 incomplete row(s): 3, 6, 10"]
    assert compute_statistics(cleaned, TARGET, FEATURES).gram == compute_statistics(expected, TARGET, FEATURES).gram


def test_missing_values_in_unused_columns_are_ignored():
    frame = _frame_with_gaps().dropna().reset_index(drop=True)
    frame["notes"] = np.nan
    frame.loc[0, "notes"] = 1.0
    frame["date"] = [f"2025-01-{i % 28 + 1:02d}" for i in range(len(frame))]
    cleaned, report = preprocess(frame, TARGET, FEATURES, Cleaning(missing="error"))
    assert report.dropped_missing == [] and len(cleaned) == len(frame)
    # the other columns travel along untouched (for holdouts), but are not checked or used
    pd.testing.assert_frame_equal(cleaned, frame, check_exact=True)
    assert compute_statistics(cleaned, TARGET, FEATURES).gram == compute_statistics(frame, TARGET, FEATURES).gram


def test_impute_mean_fills_with_consortium_means(pp_keys, frames):
    summary = _summary(frames, pp_keys)
    frame = frames["plant-2"]
    n_gaps = int(frame[COLUMNS].isna().sum().sum())
    cleaned, report = preprocess(frame, TARGET, FEATURES, Cleaning(summary=summary, impute="mean", missing="error"))
    assert report.imputed_cells == n_gaps == 8
    assert report.dropped_missing == [] and report.rows_out == len(frame)
    filled = frame.fillna({c: summary.mean(c) for c in COLUMNS})
    # the means used are the consortium's, not this factory's
    pooled = pd.concat(frames.values(), ignore_index=True)
    for c in COLUMNS:
        assert summary.mean(c) == float(summary.total[c] / summary.count[c])
        assert summary.mean(c) == pytest.approx(pooled[c].mean(), rel=1e-12)
        assert summary.mean(c) != pytest.approx(frame[c].mean(), rel=1e-9)
    pd.testing.assert_frame_equal(cleaned[COLUMNS], filled[COLUMNS].reset_index(drop=True), check_exact=True)
    assert compute_statistics(cleaned, TARGET, FEATURES).gram == compute_statistics(filled, TARGET, FEATURES).gram
    assert any("imputed 8 missing value(s)" in line for line in report.lines())


def test_impute_through_encrypt_table_gives_the_filled_frames_statistics(pp_keys, frames):
    public_key, private_key = pp_keys
    summary = _summary(frames, pp_keys)
    bundles, filled = [], []
    for name, frame in frames.items():
        result = hefed.encrypt_table(frame, TARGET, public_key, features=FEATURES, factory_id=name,
                                     cleaning=Cleaning(summary=summary, impute="mean"))
        assert result.report.imputed_cells == 8
        bundles.append(result.bundle)
        filled.append(frame.fillna({c: summary.mean(c) for c in COLUMNS}))
    stats = hefed.decrypt_statistics(hefed.aggregate(bundles), private_key, allow_unsigned=True)
    assert stats.gram == compute_statistics(pd.concat(filled, ignore_index=True), TARGET, FEATURES).gram


# --------------------------------------------------------------------------------------
# preprocess(): outliers
# --------------------------------------------------------------------------------------


def _with_outliers(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[4, "a"] = 900.0
    frame.loc[11, "b"] = -50_000.0
    frame.loc[17, TARGET] = 1e4
    return frame


@pytest.mark.parametrize("max_z", [1.5, 2.0, 3.0])
def test_max_z_drops_exactly_rows_beyond_the_limit(pp_keys, frames, max_z):
    complete = {n: f.dropna().reset_index(drop=True) for n, f in frames.items()}
    complete["plant-1"] = _with_outliers(complete["plant-1"])
    summary = _summary(complete, pp_keys)
    frame = complete["plant-1"]
    cleaned, report = preprocess(frame, TARGET, FEATURES, Cleaning(summary=summary, max_z=max_z, missing="error"))
    mask = np.zeros(len(frame), dtype=bool)
    for c in COLUMNS:
        mask |= np.abs(frame[c].to_numpy() - summary.mean(c)) > max_z * summary.std(c)
    assert {4, 11, 17} <= set(np.flatnonzero(mask).tolist())
    assert report.dropped_outliers == np.flatnonzero(mask).tolist()
    assert report.rows_out == len(frame) - int(mask.sum())
    pd.testing.assert_frame_equal(cleaned[COLUMNS], frame.loc[~mask, COLUMNS].reset_index(drop=True),
                                  check_exact=True)
    assert any(line.startswith(f"dropped {int(mask.sum())} row(s) with |z| above the limit") for line in report.lines())


def test_max_z_uses_the_consortium_summary_not_the_local_one(pp_keys, frames):
    complete = {n: f.dropna().reset_index(drop=True) for n, f in frames.items()}
    summary = _summary(complete, pp_keys)
    # shift every local value far from the consortium mean of 'a': all rows are outliers globally
    frame = complete["plant-0"].assign(a=lambda f: f["a"] + 100 * summary.std("a"))
    with pytest.raises(DataError, match="no rows left"):
        preprocess(frame, TARGET, FEATURES, Cleaning(summary=summary, max_z=3.0))


def test_rows_dropped_for_gaps_are_not_counted_as_outliers(pp_keys, frames):
    summary = _summary(frames, pp_keys)
    frame = _with_outliers(frames["plant-1"].dropna().reset_index(drop=True))
    frame.loc[4, "c"] = np.nan  # row 4 is both incomplete and an outlier
    cleaned, report = preprocess(frame, TARGET, FEATURES, Cleaning(summary=summary, max_z=3.0, missing="drop"))
    assert report.dropped_missing == [4]
    assert 4 not in report.dropped_outliers and {11, 17} <= set(report.dropped_outliers)
    assert report.rows_out == len(frame) - 1 - len(report.dropped_outliers) == len(cleaned)


# --------------------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{"impute": "mean"}, {"max_z": 3.0}, {"impute": "mean", "max_z": 2.0}])
def test_impute_or_max_z_without_summary_is_a_usage_error(pp_keys, kwargs):
    frame = _frame_with_gaps()
    with pytest.raises(UsageError, match="summary"):
        preprocess(frame, TARGET, FEATURES, Cleaning(missing="drop", **kwargs))


@pytest.mark.parametrize("kwargs", [{"missing": "ignore"}, {"impute": "median"}, {"max_z": 0.0}, {"max_z": -1.0}])
def test_bad_preprocess_options_are_usage_errors(pp_keys, frames, kwargs):
    summary = _summary(frames, pp_keys)
    with pytest.raises(UsageError):
        preprocess(_frame_with_gaps(), TARGET, FEATURES, Cleaning(summary=summary, **kwargs))


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_infinite_values_stay_errors(pp_keys, frames, value):
    summary = _summary(frames, pp_keys)
    frame = _frame_with_gaps()
    frame.loc[7, "b"] = value
    for kwargs in ({"missing": "drop"}, {"missing": "drop", "impute": "mean", "summary": summary},
                   {"missing": "drop", "max_z": 3.0, "summary": summary}):
        with pytest.raises(DataError, match="'b', row 8: value is not finite"):
            preprocess(frame, TARGET, FEATURES, Cleaning(**kwargs))
    with pytest.raises(DataError, match="row 8"):
        hefed.encrypt_table(frame, TARGET, pp_keys[0], features=FEATURES, factory_id="p",
                            request=hefed.SummaryRequest())
    with pytest.raises(DataError, match="row 8"):
        hefed.encrypt_table(frame, TARGET, pp_keys[0], features=FEATURES, factory_id="p",
                            cleaning=Cleaning(missing="drop"))


def test_coefficient_mode_preprocesses_too(pp_keys, frames):
    public_key, private_key = pp_keys
    bundles = [hefed.encrypt_table(f, TARGET, public_key, features=FEATURES, factory_id=n,
                                   request=hefed.CoefficientsRequest(), cleaning=Cleaning(missing="drop")).bundle
               for n, f in frames.items()]
    direct = [encrypt_coefficients(f.dropna(), TARGET, public_key, FEATURES, factory_id=n)
              for n, f in frames.items()]
    via_table = decrypt_coefficients(hefed.aggregate(bundles), private_key)
    reference = decrypt_coefficients(hefed.aggregate(direct), private_key)
    assert via_table.n == reference.n == sum(len(f.dropna()) for f in frames.values())
    assert via_table.weighted_coef == reference.weighted_coef


# --------------------------------------------------------------------------------------
# Standardised coefficients
# --------------------------------------------------------------------------------------


def test_standardized_coefficients_match_pandas(frames):
    pooled = pd.concat([f.dropna() for f in frames.values()], ignore_index=True)
    parts = [compute_statistics(f.dropna(), TARGET, FEATURES, factory_id=n) for n, f in frames.items()]
    stats = parts[0] + parts[1] + parts[2]
    model = hefed.solve(stats, ridge=0.5)
    table = standardized_coefficients(model, stats)
    sd_y = pooled[TARGET].std(ddof=1)
    assert list(table) == FEATURES
    for name, coef in zip(model.feature_names_in_, model.coef_, strict=True):
        row = table[str(name)]
        sd_x = pooled[str(name)].std(ddof=1)
        assert row["sd"] == pytest.approx(sd_x, rel=1e-12)
        assert row["mean"] == pytest.approx(pooled[str(name)].mean(), rel=1e-12)
        assert row["per_sd"] == pytest.approx(coef * sd_x, rel=1e-12)
        assert row["standardized"] == pytest.approx(coef * sd_x / sd_y, rel=1e-12)
    # fully standardised coefficients are what OLS on z-scored data gives
    ols = hefed.solve(stats)
    z = (pooled - pooled.mean()) / pooled.std(ddof=1)
    beta = np.linalg.lstsq(np.column_stack([np.ones(len(z)), z[FEATURES].to_numpy()]), z[TARGET].to_numpy(),
                           rcond=None)[0][1:]
    np.testing.assert_allclose([standardized_coefficients(ols, stats)[f]["standardized"] for f in FEATURES], beta,
                               rtol=1e-9)


def test_standardized_coefficients_from_fold_statistics_and_refusals(pp_keys, frames):
    complete = pd.concat([f.dropna() for f in frames.values()], ignore_index=True)
    folds = compute_fold_statistics(complete, TARGET, FEATURES, folds=3)
    stats = compute_statistics(complete, TARGET, FEATURES)
    model = hefed.solve(stats)
    assert standardized_coefficients(model, folds) == standardized_coefficients(model, stats)
    public_key, private_key = pp_keys
    coef = decrypt_coefficients(hefed.aggregate(
        [encrypt_coefficients(f.dropna(), TARGET, public_key, FEATURES, factory_id=n) for n, f in frames.items()]),
        private_key)
    with pytest.raises(UsageError, match="statistics"):
        standardized_coefficients(average_model(coef), coef)
    with pytest.raises(UsageError, match="two rows"):
        one = compute_statistics(complete.iloc[:1], TARGET, FEATURES)
        standardized_coefficients(model, one)


# --------------------------------------------------------------------------------------
# CLI, as real subprocesses
# --------------------------------------------------------------------------------------


def test_cli_missing_values_drop_error_and_impute(pp_keys, frames, tmp_path):
    public_key, private_key = pp_keys
    hefed.save_public_key(public_key, tmp_path / "public_key.json")
    frame = _frame_with_gaps()
    csv = tmp_path / "plant.csv"
    frame.to_csv(csv, index=False)
    assert ",," in csv.read_text() or "\n," in csv.read_text()  # really blank cells
    summary = _summary(frames, pp_keys)
    summary.save(tmp_path / "summary.json")
    common = ["encrypt", csv, "--target", TARGET, "--public-key", tmp_path / "public_key.json",
              "--factory-id", "plant"]
    dropped, refused, imputed = run_cli_parallel([
        [*common, "--out", tmp_path / "dropped.json"],
        [*common, "--out", tmp_path / "refused.json", "--missing", "error"],
        [*common, "--out", tmp_path / "imputed.json", "--impute", "mean", "--summary-file", tmp_path / "summary.json",
         "--missing", "error"],
    ])
    assert dropped.returncode == 0, dropped.stderr
    assert "dropped 3 incomplete row(s): 3, 6, 10" in dropped.stdout
    line = one_line_error(refused, 1)
    assert "row(s) 3, 6, 10" in line and str(csv) in line
    assert not (tmp_path / "refused.json").exists()
    assert imputed.returncode == 0, imputed.stderr
    assert "imputed 4 missing value(s) with the consortium means" in imputed.stdout

    # what the bundles hold (decrypted here with a threshold of 1, for the test only)
    drop_stats = hefed.decrypt_statistics(hefed.Bundle.load(tmp_path / "dropped.json"), private_key, 1,
            allow_unsigned=True)
    assert drop_stats.gram == compute_statistics(frame.dropna(), TARGET, FEATURES).gram
    impute_stats = hefed.decrypt_statistics(hefed.Bundle.load(tmp_path / "imputed.json"), private_key, 1,
            allow_unsigned=True)
    filled = frame.fillna({c: summary.mean(c) for c in COLUMNS})
    assert impute_stats.gram == compute_statistics(filled, TARGET, FEATURES).gram


def test_cli_solve_standardize(frames, tmp_path):
    parts = [compute_statistics(f.dropna(), TARGET, FEATURES, factory_id=n) for n, f in frames.items()]
    stats = parts[0] + parts[1] + parts[2]
    stats.save(tmp_path / "statistics.json")
    res = run_cli("solve", tmp_path / "statistics.json", "--standardize", "--out", tmp_path / "model.json")
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stdout.split())
    assert "standardised coefficients" in text
    for column in ("feature", "mean", "SD", "coef per SD of feature", "fully standardised"):
        assert column in text
    obj = json.loads((tmp_path / "model.json").read_text())
    assert "standardized" in obj
    expected = standardized_coefficients(hefed.solve(stats), stats)
    assert obj["standardized"] == expected
    pooled = pd.concat([f.dropna() for f in frames.values()], ignore_index=True)
    for name, coef in zip(obj["features"], obj["coef"], strict=True):
        sd_x, sd_y = pooled[name].std(ddof=1), pooled[TARGET].std(ddof=1)
        assert obj["standardized"][name]["standardized"] == pytest.approx(coef * sd_x / sd_y, rel=1e-12)
        assert f"{obj['standardized'][name]['standardized']:.6g}" in res.stdout
