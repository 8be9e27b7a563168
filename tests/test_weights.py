"""Precision weights (issue 16): the weighted_statistics kind and WLS from it, equal to statsmodels
``WLS(y, X, weights=w)`` on the pooled rows.

The factory's sums are compared with Fraction arithmetic (a hypothesis property), the model with statsmodels at
relative 1e-9 on synthetic plants and on the gas-turbine years (one factory per year), through a real encrypted
round in-process, the command line and the estimator; refusals name the file, column and row.
"""

from __future__ import annotations

import decimal
import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hefed
from hefed.data import Table
from hefed.errors import (
    DataError,
    InvalidFileError,
    SchemaMismatchError,
    SingledOutColumnError,
    SingularSystemError,
    UsageError,
)
from hefed.kinds import WEIGHTED_STATISTICS, WeightedStatisticsRequest, load_result
from hefed.sim import FederatedLinearRegression
from hefed.stats import LOG_GRID_BITS, ONES, Encoding, WeightedStatistics, canonical_block

FEATURES = ["coal_t", "gas_t"]
TARGET = "co2_t"
REL = 1e-9

#: Every float64 of statsmodels' WLS results hefed reports, compared at REL.
SCALARS = ("ssr", "centered_tss", "uncentered_tss", "ess", "rsquared", "rsquared_adj", "fvalue", "f_pvalue", "llf",
           "aic", "bic", "mse_resid", "mse_model", "scale", "condition_number")
ARRAYS = ("params", "bse", "tvalues", "pvalues")


def _plants(seed: int = 0, plants: int = 3, rows: int = 40) -> dict[str, pd.DataFrame]:
    """Plants whose errors grow as their reading durations (hours) shrink: the textbook case for WLS."""
    rng = np.random.default_rng(seed)
    out = {}
    for g in range(plants):
        n = rows + 9 * g
        frame = pd.DataFrame({"coal_t": np.round(rng.uniform(0, 50, n), 3),
                              "gas_t": np.round(rng.uniform(0, 30, n) + 2 * g, 2),
                              "hours": rng.integers(1, 25, n) / 4})
        noise = rng.normal(0, 1, n) / np.sqrt(frame["hours"])
        frame["co2_t"] = np.round(5 + 2.4 * frame.coal_t + 2.75 * frame.gas_t + noise, 3)
        out[f"plant-{g}"] = frame
    return out


def _sums(plants: dict[str, pd.DataFrame], weights: str = "hours", features: list[str] | None = None,
          encoding: Encoding | None = None) -> WeightedStatistics:
    parts = [WEIGHTED_STATISTICS.compute(Table(frame, TARGET, features or FEATURES, name, cleaning=None),
                                         encoding or Encoding(), WeightedStatisticsRequest(weights)).sums
             for name, frame in plants.items()]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def _reference(plants: dict[str, pd.DataFrame], weights: str = "hours", features: list[str] | None = None,
               intercept: bool = True) -> sm.regression.linear_model.RegressionResultsWrapper:
    pooled = pd.concat(list(plants.values()), ignore_index=True)
    design = pooled[features or FEATURES]
    return sm.WLS(pooled[TARGET], sm.add_constant(design) if intercept else design, weights=pooled[weights]).fit()


def assert_equals_statsmodels(results: hefed.InferenceResults, ref, rel: float = REL) -> dict[str, float]:
    """Every quantity against statsmodels' WLS at ``rel``; returns the largest relative difference of each."""
    worst: dict[str, float] = {}
    for name in ARRAYS:
        ours, theirs = np.asarray(getattr(results, name), dtype=float), np.asarray(getattr(ref, name), dtype=float)
        np.testing.assert_allclose(ours, theirs, rtol=rel, atol=1e-300, err_msg=name)
        worst[name] = float(np.max(np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-300)))
    for name in SCALARS:
        ours, theirs = float(getattr(results, name)), float(getattr(ref, name))
        assert ours == pytest.approx(theirs, rel=rel, abs=1e-300), name
        worst[name] = abs(ours - theirs) / abs(theirs) if theirs else abs(ours)
    np.testing.assert_allclose(results.conf_int(), np.asarray(ref.conf_int()), rtol=rel)
    np.testing.assert_allclose(results.cov_params(), np.asarray(ref.cov_params()), rtol=rel, atol=1e-300)
    assert (results.nobs, results.df_resid, results.df_model) == (ref.nobs, ref.df_resid, ref.df_model)
    return worst


# --- the factory's sums, exactly ------------------------------------------------------------------------
@st.composite
def _grid_rows(draw):
    """A few rows of integer-grid data (multiples of 2^-s) and weights on the grid 2^-2, zeros included."""
    n = draw(st.integers(1, 12))
    scales = draw(st.lists(st.integers(0, 6), min_size=3, max_size=3))
    cells = st.integers(-2**20, 2**20)
    columns = [[draw(cells) / 2**s for _ in range(n)] for s in scales]
    weights = [draw(st.integers(0, 4000)) / 4 for _ in range(n)]
    return columns, weights


@given(_grid_rows())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_weighted_statistics_equal_the_fraction_sums(rows) -> None:
    columns, weights = rows
    encoding = Encoding.with_columns({"w": hefed.stats.ColumnEncoding(2, 20)}, frac_bits=6, int_bits=24)
    X, y = np.array(columns[:2]).T, np.array(columns[2])
    sums = WeightedStatistics.of_rows(canonical_block(X, y, ["a", "b"]), np.array(weights), ["a", "b"], "y", "w",
                                      encoding)
    values = {ONES: [Fraction(1)] * len(y), "a": list(map(Fraction, columns[0])), "b": list(map(Fraction, columns[1])),
              "y": list(map(Fraction, columns[2]))}
    w = list(map(Fraction, weights))
    for a in values:
        for b in values:
            assert sums.exact(a, b) == sum(wi * va * vb for wi, va, vb in zip(w, values[a], values[b], strict=True))
    assert (sums.n, sums.zero_weights) == (len(w), sum(wi == 0 for wi in w))
    # each row's ln w rounded to 2^-64, independently in 90-digit decimal arithmetic
    def on_grid(wi: Fraction) -> int:
        ln = decimal.Decimal(wi.numerator).ln() - decimal.Decimal(wi.denominator).ln()
        return int((ln * (1 << LOG_GRID_BITS)).to_integral_value(decimal.ROUND_HALF_EVEN))

    with decimal.localcontext() as ctx:
        ctx.prec = 90
        expected = sum(on_grid(wi) for wi in w if wi > 0)
    assert sums.log_weight_sum == expected
    if sums.zero_weights:
        assert sums.log_weights() is None
    else:
        exact = sum(math.log(float(wi)) for wi in w)
        assert abs(float(sums.log_weights()) - exact) <= sums.log_weight_bound() + 1e-12 * max(1.0, abs(exact))


def test_weights_are_a_column_on_its_grid_rounded_and_counted() -> None:
    frame = _plants(plants=1)["plant-0"]
    frame.loc[3, "hours"] = 0.1  # not a multiple of 2^-4
    encoding = Encoding.with_columns({"hours": hefed.stats.ColumnEncoding(4, 8)})
    computed = WEIGHTED_STATISTICS.compute(Table(frame, TARGET, FEATURES, "p", cleaning=None), encoding,
                                           WeightedStatisticsRequest("hours"))
    assert computed.report.rounding.counts == {"hours": 1}
    rounded = frame.assign(hours=frame.hours.where(frame.index != 3, 0.125))  # 0.1 to the nearest 2^-4
    assert computed.sums.weighted.gram == _sums({"p": rounded}, encoding=encoding).weighted.gram


# --- WLS equal to statsmodels ---------------------------------------------------------------------------
def test_wls_equals_statsmodels_on_synthetic_plants() -> None:
    plants = _plants()
    model = hefed.solve(_sums(plants))
    assert model.weights_ == "hours" and model.n_samples_ == sum(map(len, plants.values()))
    assert_equals_statsmodels(model.inference(), _reference(plants))
    assert "WLS (weights hours)" in model.summary()


def test_wls_without_intercept_equals_statsmodels() -> None:
    plants = _plants(seed=3)
    results = hefed.solve(_sums(plants), fit_intercept=False).inference()
    assert_equals_statsmodels(results, _reference(plants, intercept=False))


def test_zero_weights_count_as_rows_and_give_llf_minus_inf_as_statsmodels() -> None:
    plants = _plants(seed=4)
    plants["plant-1"].loc[[2, 7], "hours"] = 0.0
    results = hefed.solve(_sums(plants)).inference()
    ref = _reference(plants)
    with np.errstate(divide="ignore"):
        assert ref.llf == -math.inf and ref.aic == math.inf
    assert results.llf == -math.inf and results.aic == math.inf and results.bic == math.inf
    np.testing.assert_allclose(results.params, ref.params, rtol=REL)
    np.testing.assert_allclose(results.bse, ref.bse, rtol=REL)
    assert results.nobs == ref.nobs and results.df_resid == ref.df_resid and results.rsquared == pytest.approx(
        ref.rsquared, rel=REL)


def test_tests_and_predictions_of_a_wls_model_equal_statsmodels() -> None:
    plants = _plants(seed=20, plants=4)
    model, ref = hefed.solve(_sums(plants)), _reference(plants)
    results = model.inference()
    ours, theirs = results.t_test("coal_t = 2.4"), ref.t_test("coal_t = 2.4")
    np.testing.assert_allclose([np.ravel(ours.tvalue)[0], np.ravel(ours.pvalue)[0]],
                               [np.ravel(theirs.tvalue)[0], np.ravel(theirs.pvalue)[0]], rtol=REL)
    ours, theirs = results.f_test("coal_t = 2.4, gas_t = 2.75"), ref.f_test("coal_t = 2.4, gas_t = 2.75")
    assert np.ravel(ours.fvalue)[0] == pytest.approx(np.ravel(theirs.fvalue)[0], rel=REL)
    new = pd.DataFrame({"coal_t": [10.0, 20.0], "gas_t": [5.0, 7.5]})  # observation intervals for weight 1, as theirs
    np.testing.assert_allclose(model.get_prediction(new).summary_frame().to_numpy(),
                               ref.get_prediction(sm.add_constant(new, has_constant="add")).summary_frame().to_numpy(),
                               rtol=REL)


def test_weighted_ridge_equals_scikit_learn_ridge_with_sample_weight() -> None:
    """The penalty is on the real weighted Gram, not on its 2^F_w-scaled integers: sklearn's objective
    Σ w(y − b − xθ)² + α‖θ‖² (intercept unpenalised)."""
    from sklearn.linear_model import Ridge

    plants = _plants(seed=21)
    pooled = pd.concat(list(plants.values()), ignore_index=True)
    model = hefed.solve(_sums(plants), ridge=50.0)
    ref = Ridge(alpha=50.0, solver="cholesky").fit(pooled[FEATURES], pooled[TARGET], sample_weight=pooled["hours"])
    np.testing.assert_allclose(model.coef_, ref.coef_, rtol=REL)
    assert model.intercept_ == pytest.approx(ref.intercept_, rel=REL)


def test_integer_weights_equal_repeated_rows_exactly() -> None:
    plants = _plants(seed=6, plants=1)
    frame = plants["plant-0"].assign(hours=lambda f: np.ceil(f.hours))
    weighted = hefed.solve(_sums({"p": frame}))
    repeated = frame.loc[frame.index.repeat(frame.hours.astype(int))].reset_index(drop=True)
    ols = hefed.solve(hefed.compute_statistics(repeated, TARGET, FEATURES))
    assert weighted.coef_exact_ == ols.coef_exact_ and weighted.intercept_exact_ == ols.intercept_exact_
    assert weighted.inference().ssr == ols.inference().ssr


def test_all_zero_weights_refused() -> None:
    plants = {"p": _plants(plants=1)["plant-0"].assign(hours=0.0)}
    with pytest.raises(SingularSystemError, match="weight zero"):
        hefed.solve(_sums(plants))


# --- a real encrypted round, in-process --------------------------------------------------------------------
def test_encrypted_round_gives_the_plain_sums_and_statsmodels(public_key, private_key) -> None:
    plants = _plants(seed=8)
    bundles = [hefed.encrypt_table(frame, TARGET, public_key, features=FEATURES, factory_id=name,
                                   request=WeightedStatisticsRequest("hours"), insecure_test_key=True).bundle
               for name, frame in plants.items()]
    assert all(b.kind == "weighted_statistics" and b.parameters == {"weights": "hours"} for b in bundles)
    decrypted = hefed.decrypt_bundle(hefed.aggregate(bundles), private_key, min_contributors=3, allow_unsigned=True)
    plain = _sums(plants)
    assert decrypted.to_vector() == plain.to_vector() and decrypted.weights == "hours"
    assert sorted(decrypted.contributors) == sorted(plants)
    model = hefed.solve(decrypted)
    assert_equals_statsmodels(model.inference(), _reference(plants))


def test_bundles_weighted_by_another_column_do_not_mix(public_key) -> None:
    plants = _plants(seed=9)
    plants["plant-1"]["minutes"] = plants["plant-1"]["hours"] * 60
    a = hefed.encrypt_table(plants["plant-0"], TARGET, public_key, features=FEATURES, factory_id="a",
                            request=WeightedStatisticsRequest("hours"), insecure_test_key=True).bundle
    b = hefed.encrypt_table(plants["plant-1"], TARGET, public_key, features=FEATURES, factory_id="b",
                            request=WeightedStatisticsRequest("minutes"), insecure_test_key=True).bundle
    with pytest.raises(SchemaMismatchError, match="weights"):
        hefed.aggregate([a, b])
    with pytest.raises(SchemaMismatchError, match="weighted by"):
        _sums({"a": plants["plant-0"]}) + _sums({"b": plants["plant-1"]}, weights="minutes")


def test_a_study_fixes_the_weights_column(public_key) -> None:
    plants = _plants(seed=10)
    study = hefed.Study.new(public_key, TARGET, FEATURES, kinds={"weighted_statistics": {"weights": "hours"}})
    bundle = hefed.encrypt_for_study(plants["plant-0"], study, factory_id="a", kind="weighted_statistics",
                                     insecure_test_key=True).bundle
    study.check_bundle(bundle)
    with pytest.raises(UsageError, match="contradict"):
        hefed.encrypt_table(plants["plant-0"], request=WeightedStatisticsRequest("gas_t"), factory_id="a",
                            study=study, insecure_test_key=True)


# --- refusals ---------------------------------------------------------------------------------------------
def test_negative_weight_refused_naming_file_column_row(tmp_path: Path, cli) -> None:
    frame = _plants(plants=1)["plant-0"]
    frame.loc[6, "hours"] = -0.5
    frame.to_csv(tmp_path / "plant.csv", index=False)
    public_key, _ = hefed.generate_keypair(1024, insecure_test_key=True)
    hefed.save_public_key(public_key, tmp_path / "pub.json")
    result = cli("encrypt", tmp_path / "plant.csv", "--target", TARGET, "--features", ",".join(FEATURES),
                 "--weights", "hours", "--public-key", tmp_path / "pub.json", "--factory-id", "a",
                 "--out", tmp_path / "bundle.json", "--insecure-test-key")
    assert result.returncode != 0 and not (tmp_path / "bundle.json").exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"{tmp_path / 'plant.csv'}: column 'hours', row 7: a negative weight" in lines[0]
    assert "-0.5" not in lines[0]  # no data in the message


def test_weights_column_must_exist_and_not_be_a_model_column() -> None:
    frame = _plants(plants=1)["plant-0"]
    with pytest.raises(DataError, match="weights column not found: 'Hours'"):
        WEIGHTED_STATISTICS.compute(Table(frame, TARGET, FEATURES, "p"), Encoding(), WeightedStatisticsRequest("Hours"))
    with pytest.raises(DataError, match="also the target or a feature"):
        WEIGHTED_STATISTICS.compute(Table(frame, TARGET, FEATURES, "p"), Encoding(), WeightedStatisticsRequest("gas_t"))
    # without a feature list the weights column is not a feature
    computed = WEIGHTED_STATISTICS.compute(Table(frame, TARGET, None, "p"), Encoding(),
                                           WeightedStatisticsRequest("hours"))
    assert computed.sums.features == FEATURES


def test_estimator_sample_weight_equals_statsmodels_and_refuses_negative_weights() -> None:
    plants = _plants(seed=11, plants=3)
    pooled = pd.concat(list(plants.values()), ignore_index=True)
    groups = np.repeat(list(plants), [len(f) for f in plants.values()])
    est = FederatedLinearRegression(key_bits=1024).fit(pooled[FEATURES], pooled[TARGET], groups=groups,
                                                       sample_weight=pooled["hours"])
    assert est.model_.weights_ is not None
    assert_equals_statsmodels(est.results_, _reference(plants))
    bad = pooled["hours"].to_numpy().copy()
    bad[17] = -1.0
    with pytest.raises(DataError, match="sample_weight: row 18"):
        FederatedLinearRegression(key_bits=1024).fit(pooled[FEATURES], pooled[TARGET], groups=groups,
                                                     sample_weight=bad)


# --- files ------------------------------------------------------------------------------------------------
def test_files_round_trip_and_tampered_files_are_refused(tmp_path: Path) -> None:
    sums = _sums(_plants(seed=12))
    sums.save(tmp_path / "w.json")
    again = WeightedStatistics.load(tmp_path / "w.json")
    assert again.to_vector() == sums.to_vector() and again.weights == "hours"
    assert load_result(tmp_path / "w.json").to_vector() == sums.to_vector()
    obj = json.loads((tmp_path / "w.json").read_text())
    for field, value, message in [("zero_weights", obj["n"] + 1, "zero weights"), ("weights", TARGET, "model column"),
                                  ("log_grid_bits", 32, "log_grid_bits"), ("n", -1, "'n'")]:
        with pytest.raises(InvalidFileError, match=message):
            WeightedStatistics.from_dict({**obj, field: value}, "w.json")
    gram = list(obj["gram_upper"])
    gram[0] = str(-1)  # a negative Σw
    with pytest.raises(InvalidFileError, match="beyond"):
        WeightedStatistics.from_dict({**obj, "gram_upper": gram}, "w.json")


def test_model_file_records_the_weights_column(tmp_path: Path) -> None:
    plants = _plants(seed=13, plants=4)  # min_contributors + 1: the file keeps the covariance
    model = hefed.solve(_sums(plants))
    model.save(tmp_path / "model.json")
    obj = json.loads((tmp_path / "model.json").read_text())
    assert obj["weights"] == "hours" and obj["inference"]["weights"] == "hours" and obj["inference"]["method"] == "wls"
    again = hefed.LinearModel.load(tmp_path / "model.json")
    assert again.weights_ == "hours" and again.inference().weights == "hours"
    assert_equals_statsmodels(again.inference(), _reference(plants))
    obj["weights"] = "minutes"
    with pytest.raises(InvalidFileError, match="weights differ"):
        hefed.LinearModel.from_dict(obj, "model.json")


# --- the command line -------------------------------------------------------------------------------------
def test_cli_weighted_round(tmp_path: Path, cli) -> None:
    plants = _plants(seed=14, plants=4)  # min_contributors + 1: the model file keeps the covariance
    public_key, private_key = hefed.generate_keypair(1024, insecure_test_key=True)
    hefed.save_public_key(public_key, tmp_path / "pub.json")
    hefed.save_private_key(private_key, tmp_path / "priv.json")

    def ok(*args: object) -> str:
        result = cli(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    for name, frame in plants.items():
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        ok("encrypt", tmp_path / f"{name}.csv", "--target", TARGET, "--features", ",".join(FEATURES),
           "--weights", "hours", "--public-key", tmp_path / "pub.json", "--factory-id", name,
           "--out", tmp_path / f"{name}.bundle.json", "--insecure-test-key")
    ok("aggregate", *(tmp_path / f"{name}.bundle.json" for name in plants), "--out", tmp_path / "agg.json")
    ok("decrypt", "--allow-unsigned", tmp_path / "agg.json", "--private-key", tmp_path / "priv.json",
       "--out", tmp_path / "weighted.json")
    out = ok("solve", tmp_path / "weighted.json", "--out", tmp_path / "model.json")
    assert "WLS (weights hours)" in out
    model = hefed.LinearModel.load(tmp_path / "model.json")
    assert model.weights_ == "hours"
    assert_equals_statsmodels(model.inference(), _reference(plants))


# --- the gas-turbine years, one factory each -----------------------------------------------------------------
GT_FEATURES = ["AT", "AP", "AFDP", "GTEP", "TIT", "TAT", "CDP"]


@pytest.mark.slow
def test_gas_turbine_wls_by_year_equals_statsmodels(gas_turbine_dir: Path) -> None:
    """NOX on the turbine's settings, weighted by ambient humidity AH (a positive column with decimals: its
    float64 values lie on the default 2^-84 grid), one factory per year (36,733 rows)."""
    frames = hefed.datasets.load_gas_turbine(gas_turbine_dir)
    parts = [WEIGHTED_STATISTICS.compute(Table(gas_turbine_dir / f"{name}.csv", "NOX", GT_FEATURES, name), Encoding(),
                                         WeightedStatisticsRequest("AH")).sums for name in frames]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    results = hefed.solve(total).inference()
    pooled = pd.concat(list(frames.values()), ignore_index=True)
    ref = sm.WLS(pooled["NOX"], sm.add_constant(pooled[GT_FEATURES]), weights=pooled["AH"]).fit()
    worst = assert_equals_statsmodels(results, ref)
    assert max(worst.values()) < REL


def test_weights_that_keep_one_factory_only_are_refused_by_the_threshold(public_key, private_key) -> None:
    """A weights column zero at every factory but one would make the sum that factory's own statistics: the
    support counts factories with non-zero values on rows of positive weight, and the key holder refuses it."""
    plants = _plants(seed=15)
    for name in ("plant-1", "plant-2"):
        plants[name]["hours"] = 0.0
    study = hefed.Study.new(public_key, TARGET, FEATURES, kinds={"weighted_statistics": {"weights": "hours"}})
    bundles = [hefed.encrypt_for_study(frame, study, factory_id=name, kind="weighted_statistics",
                                       insecure_test_key=True).bundle for name, frame in plants.items()]
    aggregate = hefed.aggregate(bundles, study=study)
    with pytest.raises(SingledOutColumnError, match="co2_t"):
        hefed.decrypt_bundle(aggregate, private_key, study=study, allow_unsigned=True)
    plants["plant-1"]["hours"] = 1.0  # every factory with positive weights: decrypted
    plants["plant-2"]["hours"] = 2.0
    bundles = [hefed.encrypt_for_study(frame, study, factory_id=name, kind="weighted_statistics",
                                       insecure_test_key=True).bundle for name, frame in plants.items()]
    assert hefed.decrypt_bundle(hefed.aggregate(bundles, study=study), private_key, study=study,
                                allow_unsigned=True).n == sum(map(len, plants.values()))


def test_cli_study_fixes_the_weights_column(tmp_path: Path, cli) -> None:
    plants = _plants(seed=16)
    public_key, _ = hefed.generate_keypair(1024, insecure_test_key=True)
    hefed.save_public_key(public_key, tmp_path / "pub.json")
    new = ("study", "new", "--public-key", tmp_path / "pub.json", "--target", TARGET, "--features", ",".join(FEATURES),
           "--kinds", "statistics,weighted_statistics", "--out", tmp_path / "study.json", "--insecure-test-key")
    refused = cli(*new)
    assert refused.returncode != 0 and "needs --weights COLUMN" in refused.stderr
    assert cli(*new, "--weights", "hours").returncode == 0
    assert hefed.Study.load(tmp_path / "study.json").kinds["weighted_statistics"] == {"weights": "hours"}
    plants["plant-0"].to_csv(tmp_path / "a.csv", index=False)
    encrypt = ("encrypt", tmp_path / "a.csv", "--study", tmp_path / "study.json", "--factory-id", "a",
               "--out", tmp_path / "a.bundle.json", "--insecure-test-key")
    result = cli(*encrypt, "--mode", "weighted_statistics")  # the study's column
    assert result.returncode == 0, result.stderr
    assert hefed.Bundle.load(tmp_path / "a.bundle.json").parameters == {"weights": "hours"}
    result = cli(*encrypt, "--weights", "gas_t", "--force")
    assert result.returncode != 0 and "contradict the study's (weights=hours)" in result.stderr


def test_packed_size_is_what_the_bounds_make() -> None:
    """The closed form a hostile header is measured by before any layout is built equals the slots of the bounds
    (the weighted entries are wider than the plain Gram's by the weights column's value bits)."""
    from hefed.primitives.packing import slot_width
    from hefed.stats import ColumnEncoding, support_size

    features = ["a", "b", "c"]
    for encoding in (Encoding(), Encoding.with_columns({"w": ColumnEncoding(2, 6), "b": ColumnEncoding(10, 30)},
                                                       max_contributors=7)):
        bounds = WEIGHTED_STATISTICS.bounds(features, "y", encoding, {"weights": "w"})
        values, bits = WEIGHTED_STATISTICS.packed_size(features, "y", encoding, {"weights": "w"})
        assert values == len(bounds) == 15 + 3 + support_size(features, "y")
        assert bits == sum(slot_width(lo, hi, encoding.max_contributors) for lo, hi in bounds)
        plain = hefed.kinds.get_kind("statistics").bounds(features, "y", encoding, {})
        wider = encoding.value_bits_of("w")  # every entry wider by the weight's value bits
        assert [hi.bit_length() for _, hi in bounds[:15]] == [hi.bit_length() + wider for _, hi in plain[:15]]


def test_cleaning_holdout_and_categories_apply_to_the_weighted_rows() -> None:
    """The weights column is one more used column: rows missing a weight are dropped with the others, the holdout
    is the one the statistics keep back, categorical features are one-hot encoded; WLS on exactly the rows used."""
    from hefed.data import Cleaning, Holdout, split_holdout

    frame = _plants(seed=17, plants=1)["plant-0"]
    frame["kiln"] = np.where(np.arange(len(frame)) % 3 == 0, "wet", "dry")
    frame.loc[4, "hours"] = np.nan
    frame.loc[9, "gas_t"] = np.nan
    table = Table(frame, TARGET, ["coal_t", "gas_t", "kiln=wet"], "p", Cleaning(missing="drop"), Holdout(0.25, 3),
                  categories={"kiln": ("dry", "wet")})
    computed = WEIGHTED_STATISTICS.compute(table, Encoding(), WeightedStatisticsRequest("hours"))
    assert computed.report.dropped_missing == [4, 9]
    kept = frame.drop(index=[4, 9]).reset_index(drop=True).assign(**{"kiln=wet": lambda f: (f.kiln == "wet") * 1.0})
    train, holdout = split_holdout(kept, 0.25, 3)
    assert len(computed.holdout) == len(holdout) and "hours" in computed.holdout.columns
    features = ["coal_t", "gas_t", "kiln=wet"]
    results = hefed.solve(computed.sums).inference()
    ref = sm.WLS(train[TARGET], sm.add_constant(train[features]), weights=train["hours"]).fit()
    assert results.nobs == len(train)
    assert_equals_statsmodels(results, ref)


def test_a_bundle_with_a_bad_weights_parameter_is_refused(tmp_path: Path, public_key) -> None:
    bundle = hefed.encrypt_table(_plants(seed=18, plants=1)["plant-0"], TARGET, public_key, features=FEATURES,
                                 factory_id="a", request=WeightedStatisticsRequest("hours"),
                                 insecure_test_key=True).bundle
    bundle.save(tmp_path / "a.json")
    obj = json.loads((tmp_path / "a.json").read_text())
    for parameters in ({"weights": 5}, {"weights": ""}, {}, {"weights": "hours", "grid_bits": 0}):
        (tmp_path / "bad.json").write_text(json.dumps({**obj, "parameters": parameters}))
        with pytest.raises(InvalidFileError, match="weights"):
            hefed.Bundle.load(tmp_path / "bad.json")
