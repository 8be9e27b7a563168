"""Predictions with uncertainty and annual totals (issue 16): equal to statsmodels' OLS ``get_prediction`` on the
pooled data, totals equal to a direct numpy computation, refusals (ridge, withheld covariance, averaged models,
bad tables) with one clear line, and the ``hefed predict`` command."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats as sps

import hefed
from hefed.errors import DataError, UsageError
from hefed.models import PredictionResults, TotalResults, predict_table

FEATURES = ["coal_t", "gas_t", "load"]
RTOL = 1e-9
ROOT = Path(__file__).resolve().parents[1]


def _frame(n: int = 240, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    coal = rng.uniform(50, 150, n)
    gas = rng.uniform(10, 40, n)
    load = rng.normal(80, 5, n)
    co2 = 2.4 * coal + 2.75 * gas + 0.3 * load + 12 + rng.normal(0, 4, n)
    return pd.DataFrame({"coal_t": coal, "gas_t": gas, "load": load, "co2_t": co2})


def _pooled(frame: pd.DataFrame, factories: int, target: str = "co2_t",
            features: list[str] = FEATURES) -> hefed.SufficientStatistics:
    """Statistics summed over ``factories`` plants (≥ 4 release the full covariance, as in test_certified)."""
    parts = [hefed.compute_statistics(frame.iloc[idx], target, features, factory_id=f"plant-{i}")
             for i, idx in enumerate(np.array_split(np.arange(len(frame)), factories))]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def _design(X: pd.DataFrame, fit_intercept: bool) -> pd.DataFrame:
    return sm.add_constant(X, has_constant="add") if fit_intercept else X


def _statsmodels(frame: pd.DataFrame, new: pd.DataFrame, fit_intercept: bool, alpha: float,
                 features: list[str] = FEATURES, target: str = "co2_t") -> pd.DataFrame:
    fit = sm.OLS(frame[target], _design(frame[features], fit_intercept)).fit()
    return fit.get_prediction(_design(new[features], fit_intercept)).summary_frame(alpha=alpha)


def _at_column_sums(frame: pd.DataFrame, new: pd.DataFrame, fit_intercept: bool,
                    features: list[str] = FEATURES, target: str = "co2_t") -> pd.Series:
    """statsmodels' prediction summary at the one row s = 1ᵀX (n for the constant, then each column's sum)."""
    fit = sm.OLS(frame[target], _design(frame[features], fit_intercept)).fit()
    s = _design(new[features], fit_intercept).sum().to_numpy()[None, :]
    return fit.get_prediction(s).summary_frame(alpha=0.05).iloc[0]


def _new_rows(seed: int = 7, n: int = 30) -> pd.DataFrame:
    new = _frame(n, seed).drop(columns="co2_t")
    new.index = pd.RangeIndex(100, 100 + n)  # labels carried through, as statsmodels does
    return new


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return _frame()


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_summary_frame_equals_statsmodels(frame, fit_intercept: bool, alpha: float) -> None:
    model = hefed.solve(_pooled(frame, 4), fit_intercept=fit_intercept)
    new = _new_rows()
    ours = model.get_prediction(new).summary_frame(alpha)
    ref = _statsmodels(frame, new, fit_intercept, alpha)
    assert list(ours.columns) == list(ref.columns)
    assert list(ours.index) == list(ref.index)
    np.testing.assert_allclose(ours.to_numpy(), ref.to_numpy(), rtol=RTOL, atol=0)
    # the same rows as an array (columns in the model's order), and statsmodels' other names
    res = model.get_prediction(new[FEATURES].to_numpy(), alpha=alpha)
    ref_res = sm.OLS(frame["co2_t"], _design(frame[FEATURES], fit_intercept)).fit().get_prediction(
        _design(new[FEATURES], fit_intercept))
    assert isinstance(res, PredictionResults)
    for name in ("predicted_mean", "se_mean", "var_pred_mean", "se_obs"):
        np.testing.assert_allclose(getattr(res, name), np.asarray(getattr(ref_res, name)), rtol=RTOL, atol=0)
    np.testing.assert_allclose(res.conf_int(obs=True, alpha=alpha), ref_res.conf_int(obs=True, alpha=alpha),
                               rtol=RTOL)
    np.testing.assert_allclose(res.se_obs, np.sqrt(res.se_mean ** 2 + model.inference().scale), rtol=1e-14)


def test_columns_are_matched_by_name_and_a_missing_one_is_named(frame) -> None:
    model = hefed.solve(_pooled(frame, 4))
    new = _new_rows()
    shuffled = new[["load", "gas_t", "coal_t"]].assign(extra=1.0)
    np.testing.assert_array_equal(model.get_prediction(shuffled).predicted_mean,
                                  model.get_prediction(new).predicted_mean)
    with pytest.raises(DataError, match="gas_t"):
        model.get_prediction(new.drop(columns="gas_t"))


def test_after_a_save_and_load_round_trip(frame, tmp_path) -> None:
    model = hefed.solve(_pooled(frame, 5))
    model.save(tmp_path / "model.json")
    loaded = hefed.LinearModel.load(tmp_path / "model.json")
    new = _new_rows()
    ours = loaded.get_prediction(new).summary_frame()
    np.testing.assert_allclose(ours.to_numpy(), _statsmodels(frame, new, True, 0.05).to_numpy(), rtol=RTOL)
    # the file's covariance is the certified one: the loaded model predicts exactly as the one in memory
    np.testing.assert_array_equal(ours.to_numpy(), model.get_prediction(new).summary_frame().to_numpy())


def _direct_total(frame: pd.DataFrame, new: pd.DataFrame, alpha: float) -> dict[str, float]:
    """The total and its intervals from numpy on the pooled rows (no hefed)."""
    X = np.column_stack([np.ones(len(frame)), frame[FEATURES].to_numpy()])
    y = frame["co2_t"].to_numpy()
    theta, *_ = np.linalg.lstsq(X, y, rcond=None)
    df = len(y) - X.shape[1]
    scale = float(np.sum((y - X @ theta) ** 2) / df)
    cov = scale * np.linalg.inv(X.T @ X)
    Xn = np.column_stack([np.ones(len(new)), new[FEATURES].to_numpy()])
    ones = np.ones(len(new))
    total = float(ones @ Xn @ theta)
    var_mean = float(ones @ Xn @ cov @ Xn.T @ ones)  # the n × n form, directly
    q = float(sps.t.ppf(1 - alpha / 2, df))
    return {"total": total, "var_mean": var_mean, "var_obs": var_mean + len(new) * scale, "q": q,
            "theta_coal": float(theta[1]), "theta_gas": float(theta[2])}


def test_total_equals_a_direct_computation_and_statsmodels(frame) -> None:
    model = hefed.solve(_pooled(frame, 4))
    new = _new_rows(n=365)
    res = model.predict_total(new)
    assert isinstance(res, TotalResults) and res.n == 365
    direct = _direct_total(frame, new, 0.05)
    assert res.total == pytest.approx(direct["total"], rel=RTOL)
    assert res.var_mean == pytest.approx(direct["var_mean"], rel=RTOL)
    assert res.var_obs == pytest.approx(direct["var_obs"], rel=RTOL)
    half = direct["q"] * math.sqrt(direct["var_obs"])
    np.testing.assert_allclose(res.pred_int, [direct["total"] - half, direct["total"] + half], rtol=RTOL)
    # the expected total's interval is statsmodels' mean interval at the column-sum row s = (n, Σcoal, …)
    ref = _at_column_sums(frame, new, True)
    assert _design(new[FEATURES], True).sum().iloc[0] == 365
    assert res.total == pytest.approx(ref["mean"], rel=RTOL)
    assert res.se_mean == pytest.approx(ref["mean_se"], rel=RTOL)
    np.testing.assert_allclose(res.conf_int, [ref["mean_ci_lower"], ref["mean_ci_upper"]], rtol=RTOL)
    # MRR/IPCC: half-width of the 95 % interval over the estimate, in per cent
    assert res.relative_uncertainty == pytest.approx((ref["mean_ci_upper"] - ref["mean"]) / ref["mean"] * 100,
                                                     rel=1e-8)
    assert res.relative_uncertainty_obs > res.relative_uncertainty > 0
    assert res.column_sums["(intercept)"] == 365.0


def test_activity_uncertainty_is_propagated_as_the_gum_says(frame) -> None:
    model = hefed.solve(_pooled(frame, 4))
    new = _new_rows(n=365)
    plain = model.predict_total(new)
    res = model.predict_total(new, activity_uncertainty={"coal_t": 0.025, "gas_t": 0.015})
    direct = _direct_total(frame, new, 0.05)
    u_coal = abs(direct["theta_coal"]) * 0.025 / 1.96 * new["coal_t"].sum()
    u_gas = abs(direct["theta_gas"]) * 0.015 / 1.96 * new["gas_t"].sum()
    a = res.activity
    assert a is not None
    assert a.contributions["coal_t"] == pytest.approx(u_coal, rel=RTOL)
    assert a.contributions["gas_t"] == pytest.approx(u_gas, rel=RTOL)
    assert a.se == pytest.approx(math.sqrt(direct["var_mean"] + u_coal ** 2 + u_gas ** 2), rel=RTOL)
    nu = a.se ** 4 / (direct["var_mean"] ** 2 / model.inference().df_resid)
    assert a.df == pytest.approx(nu, rel=1e-9)
    half = float(sps.t.ppf(0.975, nu)) * a.se
    np.testing.assert_allclose(a.interval, [res.total - half, res.total + half], rtol=RTOL)
    assert a.relative_uncertainty == pytest.approx(half / res.total * 100, rel=1e-9)
    assert a.relative_uncertainty > plain.relative_uncertainty
    # the model's own intervals are unchanged; a zero declared uncertainty gives back the expected total's
    assert res.conf_int == plain.conf_int
    zero = model.predict_total(new, activity_uncertainty={"coal_t": 0.0}).activity
    assert zero is not None
    np.testing.assert_allclose(zero.interval, plain.conf_int, rtol=1e-12)
    with pytest.raises(UsageError, match="not a feature"):
        model.predict_total(new, activity_uncertainty={"oil_t": 0.05})
    with pytest.raises(UsageError, match="non-negative"):
        model.predict_total(new, activity_uncertainty={"coal_t": -0.05})


def test_intervals_are_refused_without_a_covariance(frame, tmp_path) -> None:
    new = _new_rows()
    # three factories: the file withholds the covariance (it would give back the pooled Gram)
    withheld = tmp_path / "withheld.json"
    hefed.solve(_pooled(frame, 3)).save(withheld)
    model = hefed.LinearModel.load(withheld)
    model.predict(new)  # point predictions still work
    with pytest.raises(UsageError, match="withheld.*min_contributors \\+ 1"):
        model.get_prediction(new)
    with pytest.raises(UsageError, match="withheld"):
        model.predict_total(new)
    ridge = hefed.solve(_pooled(frame, 4), ridge=1.0)
    with pytest.raises(UsageError, match="ridge model"):
        ridge.get_prediction(new)
    with pytest.raises(UsageError, match="ridge model"):
        ridge.predict_total(new)
    averaged = hefed.LinearModel.from_dict({k: v for k, v in hefed.solve(_pooled(frame, 4)).to_dict().items()
                                            if k != "inference"})
    with pytest.raises(UsageError, match="no inference"):
        averaged.get_prediction(new)
    with pytest.raises(UsageError, match="alpha"):
        hefed.solve(_pooled(frame, 4)).get_prediction(new, alpha=1.5)


# --- the gas-turbine data: four years pooled, the fifth predicted -----------------------------------------------
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_gas_turbine_predictions_for_a_year_equal_statsmodels(gas_turbine_dir, fit_intercept: bool) -> None:
    frames = hefed.datasets.load_gas_turbine(gas_turbine_dir)
    features = [c for c in frames["gt_2011"].columns if c not in ("NOX", "CO")]
    train = {name: df for name, df in frames.items() if name != "gt_2015"}
    parts = [hefed.compute_statistics(df, "NOX", features, factory_id=name) for name, df in train.items()]
    stats = parts[0]
    for part in parts[1:]:
        stats = stats + part
    model = hefed.solve(stats, fit_intercept=fit_intercept)
    pooled = pd.concat(list(train.values()), ignore_index=True)
    year = frames["gt_2015"]
    ours = model.get_prediction(year).summary_frame()
    ref = _statsmodels(pooled, year, fit_intercept, 0.05, features, "NOX")
    np.testing.assert_allclose(ours.to_numpy(), ref.to_numpy(), rtol=RTOL, atol=0)
    # the year's total: statsmodels at the column-sum row, and the realised total's prediction interval
    res = model.predict_total(year)
    ref_total = _at_column_sums(pooled, year, fit_intercept, features, "NOX")
    assert res.total == pytest.approx(ref_total["mean"], rel=RTOL)
    np.testing.assert_allclose(res.conf_int, [ref_total["mean_ci_lower"], ref_total["mean_ci_upper"]], rtol=RTOL)
    scale = float(sm.OLS(pooled["NOX"], _design(pooled[features], fit_intercept)).fit().scale)
    assert res.var_obs == pytest.approx(ref_total["mean_se"] ** 2 + len(year) * scale, rel=RTOL)


# --- the command --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory, frame) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("predict")
    hefed.solve(_pooled(frame, 4)).save(folder / "model.json")
    hefed.solve(_pooled(frame, 3)).save(folder / "withheld.json")
    hefed.solve(_pooled(frame, 4), ridge=1.0).save(folder / "ridge.json")
    _new_rows(n=365).to_csv(folder / "plant.csv", index=False)
    return {"dir": folder, "model": folder / "model.json", "withheld": folder / "withheld.json",
            "ridge": folder / "ridge.json", "data": folder / "plant.csv"}


def test_cli_writes_predictions_and_the_total(cli, files, frame, tmp_path) -> None:
    out = tmp_path / "predictions.csv"
    done = cli("predict", files["data"], "--model", files["model"], "--out", out, "--total",
               "--activity-uncertainty", "coal_t=2.5%,gas_t=1.5%", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    written = pd.read_csv(out)
    assert list(written.columns) == ["row", "prediction", "mean_se", "mean_ci_lower", "mean_ci_upper",
                                     "obs_ci_lower", "obs_ci_upper"]
    assert written["row"].tolist() == list(range(1, 366))
    new = _new_rows(n=365)
    ref = _statsmodels(frame, new, True, 0.05)
    np.testing.assert_allclose(written.iloc[:, 1:].to_numpy(), ref.to_numpy(), rtol=RTOL)
    expected = hefed.LinearModel.load(files["model"]).predict_total(
        new, activity_uncertainty={"coal_t": 0.025, "gas_t": 0.015})
    total = report["total"]
    assert report["ok"] and report["rows"] == 365
    assert total["total"] == pytest.approx(expected.total, rel=1e-12)
    assert total["conf_int"] == pytest.approx(list(expected.conf_int), rel=1e-12)
    assert total["pred_int"] == pytest.approx(list(expected.pred_int), rel=1e-12)
    assert total["relative_uncertainty_pct"] == pytest.approx(expected.relative_uncertainty, rel=1e-12)
    assert total["activity"]["relative"] == {"coal_t": 0.025, "gas_t": 0.015}
    # human output names the total and the relative uncertainty
    text = cli("predict", files["data"], "--model", files["model"], "--out", out, "--total", "--force",
               "--alpha", "0.1")
    assert text.returncode == 0, text.stderr
    assert "total over 365 rows" in text.stdout and "90% interval" in text.stdout and "%)" in text.stdout


@pytest.mark.parametrize(("case", "needle", "code"), [
    ("missing column", "'gas_t'", 1),
    ("non-numeric", "row 3", 1),
    ("withheld", "withheld", 2),
    ("ridge", "ridge model", 2),
    ("bad activity", "COLUMN=PERCENT%", 2),
    ("unknown activity", "not a feature", 2),
])
def test_cli_refuses_bad_input_in_one_line_writing_nothing(cli, files, tmp_path, case: str, needle: str,
                                                           code: int) -> None:
    data, model, extra = files["data"], files["model"], []
    table = pd.read_csv(files["data"])
    if case == "missing column":
        data = tmp_path / "no_gas.csv"
        table.drop(columns="gas_t").to_csv(data, index=False)
    elif case == "non-numeric":
        data = tmp_path / "text.csv"
        table = table.astype({"coal_t": object})
        table.loc[2, "coal_t"] = "n/a"
        table.to_csv(data, index=False)
    elif case in ("withheld", "ridge"):
        model = files[case]
    elif case == "bad activity":
        extra = ["--activity-uncertainty", "coal_t=0.025"]
    else:
        extra = ["--activity-uncertainty", "oil_t=5%"]
    out = tmp_path / "predictions.csv"
    done = cli("predict", data, "--model", model, "--out", out, *extra)
    assert done.returncode == code, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hefed: error:") and needle in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == ([] if data == files["data"] else [data])


def test_cli_refuses_to_replace_predictions_without_force(cli, files, tmp_path) -> None:
    out = tmp_path / "predictions.csv"
    out.write_text("keep me\n")
    done = cli("predict", files["data"], "--model", files["model"], "--out", out)
    assert done.returncode != 0 and "exists" in done.stderr
    assert out.read_text() == "keep me\n"


def test_cli_as_a_real_process(files, tmp_path) -> None:
    out = tmp_path / "predictions.csv"
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "hefed"), "predict", str(files["data"]), "--model",
                           str(files["model"]), "--out", str(out), "--total"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "relative" not in done.stderr and "total over 365 rows" in done.stdout
    assert len(pd.read_csv(out)) == 365
    bad = subprocess.run([str(ROOT / ".venv" / "bin" / "hefed"), "predict", str(files["data"]), "--model",
                          str(files["withheld"]), "--out", str(tmp_path / "none.csv")],
                         capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "withheld" in bad.stderr
    assert not (tmp_path / "none.csv").exists()


def test_predict_table_reads_a_data_frame_too(frame, files) -> None:
    model = hefed.LinearModel.load(files["model"])
    table = pd.read_csv(files["data"])
    result = predict_table(model, table, total=True)
    assert result.total is not None and result.total.n == len(table)
    np.testing.assert_array_equal(result.frame()["prediction"], model.predict(table))
