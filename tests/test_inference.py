"""Exact inference from aggregate statistics agrees with statsmodels OLS on the pooled data."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hefed
from hefed.errors import SingularSystemError, UsageError
from hefed.models import RIDGE_NOT_APPLICABLE, InferenceResults, inference
from hefed.primitives.exactsolve import exact_inverse
from hefed.stats import ONES

sm = pytest.importorskip("statsmodels.api")

GAS_TURBINE = Path(__file__).resolve().parents[2] / "shared" / "data" / "gas-turbine"

FEATURES = ["zeta", "alpha", "mid"]  # deliberately not sorted: display order is the user's
RTOL = 1e-9

# statsmodels attribute names compared one to one
SCALAR_ATTRS = [
    "rsquared", "rsquared_adj", "fvalue", "f_pvalue", "ssr", "df_resid", "df_model",
    "llf", "aic", "bic", "scale", "mse_resid", "mse_model", "ess", "centered_tss", "uncentered_tss",
]
ARRAY_ATTRS = ["params", "bse", "tvalues", "pvalues"]


def _frame(n: int = 600, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = np.round(rng.normal(size=(n, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, 0.0], 3)
    y = np.round(1.5 + X @ [2.0, -0.03, 0.05] + rng.normal(size=n), 3)
    frame = pd.DataFrame(X, columns=FEATURES)
    frame["y"] = y
    return frame


def _pooled_stats(frame: pd.DataFrame, target: str, features: list[str], parts: int = 3) -> hefed.SufficientStatistics:
    stats = [
        hefed.compute_statistics(frame.iloc[i::parts], target, features, factory_id=f"f{i}") for i in range(parts)
    ]
    total = stats[0]
    for s in stats[1:]:
        total = total + s
    return total


def _compare(res: InferenceResults, ref, rtol: float = RTOL) -> None:
    for name in ARRAY_ATTRS:
        np.testing.assert_allclose(getattr(res, name), np.asarray(getattr(ref, name)), rtol=rtol, atol=0, err_msg=name)
    for name in SCALAR_ATTRS:
        np.testing.assert_allclose(getattr(res, name), getattr(ref, name), rtol=rtol, atol=0, err_msg=name)
    np.testing.assert_allclose(res.conf_int(), np.asarray(ref.conf_int()), rtol=rtol, atol=0, err_msg="conf_int")
    np.testing.assert_allclose(
        res.conf_int(alpha=0.1), np.asarray(ref.conf_int(alpha=0.1)), rtol=rtol, atol=0, err_msg="conf_int(0.1)"
    )
    np.testing.assert_allclose(res.rmse, math.sqrt(ref.scale), rtol=rtol)
    np.testing.assert_allclose(res.cov_params(), np.asarray(ref.cov_params()), rtol=rtol, atol=0)
    assert res.nobs == int(ref.nobs)
    np.testing.assert_allclose(res.condition_number, ref.condition_number, rtol=1e-6)


def test_matches_statsmodels_with_intercept() -> None:
    frame = _frame()
    res = inference(_pooled_stats(frame, "y", FEATURES))
    assert res.param_names == [ONES, *FEATURES]
    assert res.fit_intercept and not res.is_ridge and res.not_applicable == []
    ref = sm.OLS(frame["y"].to_numpy(), sm.add_constant(frame[FEATURES].to_numpy())).fit()
    _compare(res, ref)
    text = res.summary()
    for name in res.param_names:
        assert name in text
    for label in ("std err", "P>|t|", "[0.025", "0.975]", "R-squared", "F-statistic", "AIC", "BIC", "Condition no."):
        assert label in text


def test_matches_statsmodels_without_intercept() -> None:
    frame = _frame(seed=2)
    res = inference(_pooled_stats(frame, "y", FEATURES), fit_intercept=False)
    assert res.param_names == FEATURES and res.df_model == 3
    ref = sm.OLS(frame["y"].to_numpy(), frame[FEATURES].to_numpy()).fit()
    assert ref.k_constant == 0
    _compare(res, ref)
    # statsmodels' convention without an intercept: R² against the uncentred yᵀy.
    assert res.rsquared == pytest.approx(1 - res.ssr / res.uncentered_tss, rel=1e-12)
    assert "uncentred" in res.summary()


def test_matches_library_model_and_is_independent_of_factory_split() -> None:
    frame = _frame(seed=3)
    one = inference(hefed.compute_statistics(frame, "y", FEATURES))
    split = inference(_pooled_stats(frame, "y", FEATURES, parts=4))
    assert one.params_exact == split.params_exact and one.ssr_exact == split.ssr_exact
    assert one.xtx_inv_diag_exact == split.xtx_inv_diag_exact
    model = hefed.solve(_pooled_stats(frame, "y", FEATURES))
    np.testing.assert_array_equal(split.params, [model.intercept_, *model.coef_])
    assert split.ssr_exact == model.sse_exact_


@pytest.mark.skipif(not GAS_TURBINE.is_dir(), reason=f"gas-turbine data not found at {GAS_TURBINE}")
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_gas_turbine_by_year_matches_statsmodels(fit_intercept: bool) -> None:
    frames = hefed.datasets.load_gas_turbine(GAS_TURBINE)
    assert len(frames) == 5
    features = [c for c in next(iter(frames.values())).columns if c != "NOX"]
    parts = [hefed.compute_statistics(df, "NOX", features, factory_id=name) for name, df in frames.items()]
    stats = parts[0]
    for part in parts[1:]:
        stats = stats + part
    res = inference(stats, fit_intercept=fit_intercept)
    pooled = pd.concat(list(frames.values()), ignore_index=True)
    X, y = pooled[features].to_numpy(np.float64), pooled["NOX"].to_numpy(np.float64)
    ref = sm.OLS(y, sm.add_constant(X) if fit_intercept else X).fit()
    assert res.nobs == len(pooled) and res.param_names == ([ONES] if fit_intercept else []) + features
    _compare(res, ref)


def _fraction_ssr(frame: pd.DataFrame, res: InferenceResults) -> Fraction:
    theta = dict(zip(res.param_names, res.params_exact, strict=True))
    total = Fraction(0)
    for row in frame.itertuples(index=False):
        values = row._asdict()
        fit = theta.get(ONES, Fraction(0)) + sum(theta[f] * Fraction(values[f]) for f in FEATURES)
        total += (Fraction(values["y"]) - fit) ** 2
    return total


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_ssr_is_exact(fit_intercept: bool) -> None:
    frame = _frame(n=150, seed=4)
    res = inference(_pooled_stats(frame, "y", FEATURES), fit_intercept=fit_intercept)
    assert isinstance(res.ssr_exact, Fraction)
    assert res.ssr_exact == _fraction_ssr(frame, res)
    assert res.ssr == float(res.ssr_exact)
    ys = [Fraction(v) for v in frame["y"]]
    assert res.uncentered_tss_exact == sum(v * v for v in ys)
    mean = sum(ys) / len(ys)
    assert res.centered_tss_exact == sum((v - mean) ** 2 for v in ys)
    assert res.scale_exact == res.ssr_exact / (len(frame) - len(res.param_names))


def _fraction_normal_matrix(frame: pd.DataFrame, with_ones: bool) -> tuple[list[list[Fraction]], list[Fraction]]:
    rows = [
        ([Fraction(1)] if with_ones else []) + [Fraction(r[f]) for f in FEATURES]
        for r in frame[FEATURES].to_dict("records")
    ]
    ys = [Fraction(v) for v in frame["y"]]
    k = len(rows[0])
    gram = [[sum(r[a] * r[b] for r in rows) for b in range(k)] for a in range(k)]
    rhs = [sum(r[a] * v for r, v in zip(rows, ys, strict=True)) for a in range(k)]
    return gram, rhs


def _fraction_solve(matrix: list[list[Fraction]], rhs: list[Fraction]) -> list[Fraction]:
    """Plain Gaussian elimination in Fractions (independent of hefed's Bareiss solver)."""
    m = len(matrix)
    a = [list(row) + [b] for row, b in zip(matrix, rhs, strict=True)]
    for k in range(m):
        p = next(i for i in range(k, m) if a[i][k] != 0)
        a[k], a[p] = a[p], a[k]
        for i in range(k + 1, m):
            f = a[i][k] / a[k][k]
            a[i] = [x - f * y for x, y in zip(a[i], a[k], strict=True)]
    x = [Fraction(0)] * m
    for i in range(m - 1, -1, -1):
        x[i] = (a[i][m] - sum(a[i][j] * x[j] for j in range(i + 1, m))) / a[i][i]
    return x


def test_exact_inverse_of_gram() -> None:
    frame = _frame(n=80, seed=5)
    gram, _ = _fraction_normal_matrix(frame, with_ones=True)
    inv = exact_inverse(gram)
    assert inv is not None
    k = len(gram)
    for i in range(k):
        for j in range(k):
            assert sum(gram[i][t] * inv[t][j] for t in range(k)) == (1 if i == j else 0)
    res = inference(hefed.compute_statistics(frame, "y", FEATURES))
    assert res.xtx_inv_diag_exact == [inv[j][j] for j in range(k)]
    assert exact_inverse([[1, 2], [2, 4]]) is None


def test_ridge_matches_exact_fraction_solution() -> None:
    frame = _frame(n=120, seed=6)
    alpha = Fraction(5, 2)
    stats = _pooled_stats(frame, "y", FEATURES)
    res = inference(stats, ridge=2.5)
    gram, rhs = _fraction_normal_matrix(frame, with_ones=True)
    for j in range(1, len(gram)):  # the intercept is not penalised
        gram[j][j] += alpha
    expected = _fraction_solve(gram, rhs)
    assert res.params_exact == expected
    np.testing.assert_array_equal(res.params, [float(v) for v in expected])
    assert res.is_ridge and res.ridge == 2.5 and res.ridge_exact == alpha
    model = hefed.solve(stats, ridge=2.5)
    np.testing.assert_array_equal(res.params, [model.intercept_, *model.coef_])
    # what still applies: exact SSR, the centred R², nominal df, llf, condition number
    assert res.ssr_exact == _fraction_ssr(frame, res)
    assert res.rsquared == float(1 - res.ssr_exact / res.centered_tss_exact)
    assert res.rsquared == pytest.approx(model.r2_, rel=1e-15)
    assert (res.df_model, res.df_resid) == (3, len(frame) - 4)
    assert math.isfinite(res.llf) and math.isfinite(res.condition_number)
    # what does not: NaN, and said so
    for name in ("bse", "tvalues", "pvalues"):
        assert np.isnan(getattr(res, name)).all(), name
    assert np.isnan(res.conf_int()).all()
    for name in ("fvalue", "f_pvalue", "aic", "bic", "rsquared_adj", "scale", "mse_resid", "rmse", "resid_std_err"):
        assert math.isnan(getattr(res, name)), name
    assert res.not_applicable == list(RIDGE_NOT_APPLICABLE)
    text = res.summary()
    assert "do not apply to ridge" in text.lower()
    assert "n/a" in text and "standard errors" in text and "AIC" in text


def test_ridge_without_intercept_matches_exact_fraction_solution() -> None:
    frame = _frame(n=60, seed=7)
    res = inference(hefed.compute_statistics(frame, "y", FEATURES), ridge=Fraction(1, 3), fit_intercept=False)
    gram, rhs = _fraction_normal_matrix(frame, with_ones=False)
    for j in range(len(gram)):
        gram[j][j] += Fraction(1, 3)
    assert res.params_exact == _fraction_solve(gram, rhs)
    assert res.param_names == FEATURES


def test_singular_design() -> None:
    frame = _frame(n=50, seed=8)
    frame["twice"] = 2 * frame["zeta"]
    features = [*FEATURES, "twice"]
    stats = hefed.compute_statistics(frame, "y", features)
    with pytest.raises(SingularSystemError):
        inference(stats)
    res = inference(stats, ridge=1.0)  # ridge still solves; the design's condition number is infinite
    assert res.condition_number == math.inf
    assert res.xtx_inv_diag_exact is None and np.isfinite(res.params).all()
    json.dumps(res.to_dict(), allow_nan=False)
    assert InferenceResults.from_dict(res.to_dict()).condition_number == math.inf


def test_perfect_fit_is_handled() -> None:
    rng = np.random.default_rng(9)
    frame = pd.DataFrame(rng.integers(-64, 64, size=(40, 3)) / 8.0, columns=FEATURES)  # dyadic: y below is exact
    frame["y"] = 0.5 + 2 * frame["zeta"] - 0.25 * frame["alpha"]
    res = inference(hefed.compute_statistics(frame, "y", FEATURES))
    assert res.ssr_exact == 0 and res.rsquared == 1.0
    assert res.params_exact[:3] == [Fraction(1, 2), Fraction(2), Fraction(-1, 4)] and res.params_exact[3] == 0
    assert res.bse.tolist() == [0.0] * 4
    assert res.fvalue == math.inf and res.llf == math.inf and res.aic == -math.inf
    assert math.isnan(res.tvalues[3]) and math.isinf(res.tvalues[0])
    json.dumps(res.to_dict(), allow_nan=False)
    res.summary()


@pytest.mark.parametrize("ridge", [0.0, 0.75])
def test_to_dict_is_json_and_round_trips(ridge: float) -> None:
    frame = _frame(n=100, seed=10)
    res = inference(_pooled_stats(frame, "y", FEATURES), ridge=ridge)
    record = res.to_dict(exact=True)
    text = json.dumps(record, allow_nan=False)
    again = InferenceResults.from_dict(json.loads(text))
    assert again.to_dict(exact=True) == record
    assert again.params_exact == res.params_exact and again.ssr_exact == res.ssr_exact
    np.testing.assert_array_equal(again.bse, res.bse)
    assert record["method"] == ("ridge" if ridge else "ols")
    if ridge:
        assert record["bse"] == [None] * 4 and record["aic"] is None and record["not_applicable"]
    else:
        assert record["bse"] == res.bse.tolist()
    with pytest.raises(hefed.errors.InvalidFileError):
        InferenceResults.from_dict({**record, "format": "other"})


def test_bad_arguments() -> None:
    frame = _frame(n=30, seed=11)
    stats = hefed.compute_statistics(frame, "y", FEATURES)
    with pytest.raises(UsageError):
        inference(stats, ridge=-1.0)
    with pytest.raises(UsageError):
        inference(stats).conf_int(alpha=1.5)
