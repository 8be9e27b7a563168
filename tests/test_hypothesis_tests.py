"""Tests and model choice from one aggregate (issue 16) against statsmodels on the pooled data: t/F/Wald tests of
linear restrictions, compare_f_test of nested models, subsets solved from the same statistics, VIF, AIC/BIC
selection, and the emission-factor report."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hefed
from hefed.errors import DataError, UsageError
from hefed.models import InferenceResults, LinearModel, inference, select_features
from hefed.protocol import ColumnSpec, Study
from hefed.stats import ONES

sm = pytest.importorskip("statsmodels.api")
from statsmodels.stats.outliers_influence import variance_inflation_factor  # noqa: E402

GAS_TURBINE = Path(__file__).resolve().parents[2] / "shared" / "data" / "gas-turbine"
RTOL = 1e-9
TARGET = "co2_t"
FEATURES = ["coal_t", "natural_gas_t", "diesel_t", "electricity_mwh", "clinker_t"]
RESTRICTIONS = "coal_t = 2.4, diesel_t = natural_gas_t, 2 * clinker_t - electricity_mwh = 0.5"


@pytest.fixture(scope="module")
def factories() -> dict[str, pd.DataFrame]:
    return hefed.datasets.make_factories(n_factories=4, seed=1)


@pytest.fixture(scope="module")
def pooled(factories) -> pd.DataFrame:
    return pd.concat(list(factories.values()), ignore_index=True)


@pytest.fixture(scope="module")
def stats(factories) -> hefed.SufficientStatistics:
    parts = [hefed.compute_statistics(df, TARGET, FEATURES, factory_id=name) for name, df in factories.items()]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def _ols(pooled: pd.DataFrame, features: list[str], fit_intercept: bool = True, target: str = TARGET):
    X = pooled[features].astype(np.float64)
    return sm.OLS(pooled[target].to_numpy(np.float64), sm.add_constant(X) if fit_intercept else X).fit()


def _close(actual, expected, what: str, rtol: float = RTOL) -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float).reshape(
        np.shape(actual)), rtol=rtol, atol=0, err_msg=what)


def _sm_names(text: str, fit_intercept: bool) -> str:
    return text.replace(ONES, "const") if fit_intercept else text


def _check_tests(res: InferenceResults, ref, restrictions: str, array: np.ndarray, q: np.ndarray) -> None:
    for form, ref_form in ((restrictions, restrictions), ((array, q), (array, q))):
        t, rt = res.t_test(form), ref.t_test(ref_form)
        for name in ("effect", "sd", "tvalue", "pvalue"):
            _close(getattr(t, name), getattr(rt, name), f"t_test {name}")
        _close(t.conf_int(), rt.conf_int(), "t_test conf_int")
        _close(t.conf_int(0.1), rt.conf_int(0.1), "t_test conf_int(0.1)")
        f, rf = res.f_test(form), ref.f_test(ref_form)
        _close(f.fvalue, rf.fvalue, "f_test fvalue")
        _close(f.pvalue, rf.pvalue, "f_test pvalue")
        assert (f.df_num, f.df_denom) == (rf.df_num, rf.df_denom)
        w, rw = res.wald_test(form, scalar=True), ref.wald_test(ref_form, scalar=True)
        _close(w.statistic, rw.statistic, "wald F")
        _close(w.pvalue, rw.pvalue, "wald F pvalue")
        c, rc = res.wald_test(form, use_f=False), ref.wald_test(ref_form, use_f=False, scalar=True)
        _close(c.statistic, rc.statistic, "wald chi2")
        _close(c.pvalue, rc.pvalue, "wald chi2 pvalue")
        assert c.df_denom == rc.df_denom and c.distribution == "chi2"


def _restriction_array(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    r = np.zeros((3, len(names)))
    r[0, names.index("coal_t")] = 1
    r[1, names.index("diesel_t")], r[1, names.index("natural_gas_t")] = 1, -1
    r[2, names.index("clinker_t")], r[2, names.index("electricity_mwh")] = 2, -1
    return r, np.array([2.4, 0.0, 0.5])


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_t_f_wald_tests_match_statsmodels(stats, pooled, fit_intercept: bool) -> None:
    res = hefed.solve(stats, fit_intercept=fit_intercept).inference()
    ref = _ols(pooled, FEATURES, fit_intercept)
    r, q = _restriction_array(res.param_names)
    _check_tests(res, ref, RESTRICTIONS, r, q)
    if fit_intercept:  # the intercept by hefed's name and by statsmodels'
        t = res.t_test("(intercept) = 1, const + coal_t = 3")
        rt = ref.t_test("const = 1, const + coal_t = 3")
        _close(t.tvalue, rt.tvalue, "t_test on the intercept")
    # a single restriction as a 1-d array and a scalar q
    row = r[0]
    _close(res.t_test(row, q=2.4).tvalue, ref.t_test((row, 2.4)).tvalue, "1-d r_matrix")


def test_tests_from_a_model_file_use_the_stored_covariance(stats, pooled, tmp_path) -> None:
    model = hefed.solve(stats)
    model.release_covariance = True
    path = model.save(tmp_path / "model.json")
    loaded = LinearModel.load(path).inference()
    ref = _ols(pooled, FEATURES)
    r, q = _restriction_array(loaded.param_names)
    _check_tests(loaded, ref, RESTRICTIONS, r, q)
    with pytest.raises(UsageError, match="statistics"):
        loaded.vif()


def test_certified_tests_are_exact_where_statsmodels_rounds(stats) -> None:
    res = hefed.solve(stats).inference()
    # a restriction the exact solution satisfies exactly: effect − q is exactly 0, t and F exactly 0
    theta = res.params_exact
    coal = theta[res.param_names.index("coal_t")]
    t = res.t_test(([[0, 1, 0, 0, 0, 0]], [coal]))
    assert t.tvalue[0] == 0.0 and t.effect[0] == float(coal)
    assert res.f_test(([[0, 1, 0, 0, 0, 0]], [coal])).fvalue == 0.0
    # sd² = σ̂²·(G⁻¹)_jj: a single-coefficient test reproduces the certified bse bit for bit
    for j in range(len(res.param_names)):
        unit = np.eye(len(res.param_names))[j]
        assert res.t_test(unit).sd[0] == res.bse[j]
        assert res.t_test(unit).tvalue[0] == res.tvalues[j]


def test_bad_restrictions_are_refused(stats) -> None:
    res = hefed.solve(stats).inference()
    with pytest.raises(UsageError, match="cannot read"):
        res.t_test("coal = 0")
    with pytest.raises(UsageError, match="linearly dependent"):
        res.f_test("coal_t = 0, 2 * coal_t = 0")
    with pytest.raises(UsageError, match="one column per parameter"):
        res.t_test(np.ones((1, 3)))
    with pytest.raises(UsageError, match="tests nothing"):
        res.t_test(np.zeros(6))
    ridge = hefed.solve(stats, ridge=1.0).inference()
    with pytest.raises(UsageError, match="ridge"):
        ridge.t_test("coal_t = 0")


def test_subset_statistics_are_the_statistics_of_the_subset(factories, stats) -> None:
    chosen = ["clinker_t", "coal_t"]
    direct = [hefed.compute_statistics(df, TARGET, chosen, factory_id=name) for name, df in factories.items()]
    total = direct[0]
    for part in direct[1:]:
        total = total + part
    sub = stats.subset(chosen)
    assert sub.features == chosen and sub.gram == total.gram and sub.contributors == stats.contributors
    with pytest.raises(DataError, match="not among"):
        stats.subset(["nope"])


@pytest.mark.parametrize("chosen", [["coal_t", "clinker_t", "electricity_mwh"], ["diesel_t"], []])
def test_subset_solving_and_compare_f_test_match_statsmodels(stats, pooled, chosen: list[str]) -> None:
    full, ref_full = hefed.solve(stats).inference(), _ols(pooled, FEATURES)
    model = hefed.solve(stats.subset(chosen))
    sub = model.inference()
    if chosen:
        ref = _ols(pooled, chosen)
        for name in ("params", "bse", "pvalues"):
            _close(getattr(sub, name), getattr(ref, name), f"subset {name}")
        for name in ("ssr", "aic", "bic", "rsquared", "fvalue"):
            _close(getattr(sub, name), getattr(ref, name), f"subset {name}")
    else:  # the intercept-only model
        ref = sm.OLS(pooled[TARGET].to_numpy(np.float64), np.ones((len(pooled), 1))).fit()
        _close(sub.params, ref.params, "intercept only")
    f, p, df = full.compare_f_test(sub)
    rf, rp, rdf = ref_full.compare_f_test(ref)
    _close(f, rf, "compare_f_test F")
    if rp > 0:
        _close(p, rp, "compare_f_test p")
    assert df == rdf
    # nested-model F equals the Wald F of the dropped coefficients being zero
    dropped = [name for name in FEATURES if name not in chosen]
    _close(f, full.f_test(", ".join(f"{name} = 0" for name in dropped)).fvalue, "compare_f_test = f_test", 1e-12)


def test_compare_f_test_refuses_models_that_are_not_nested(stats) -> None:
    a = hefed.solve(stats.subset(["coal_t", "diesel_t"])).inference()
    b = hefed.solve(stats.subset(["coal_t", "clinker_t"])).inference()
    with pytest.raises(UsageError, match="subset"):
        a.compare_f_test(b)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_vif_matches_statsmodels(stats, pooled, fit_intercept: bool) -> None:
    res = hefed.solve(stats, fit_intercept=fit_intercept).inference()
    X = pooled[FEATURES].to_numpy(np.float64)
    exog = sm.add_constant(X) if fit_intercept else X
    for standardize in (True, False):
        expected = [variance_inflation_factor(exog, j, standardize=standardize) for j in range(exog.shape[1])]
        _close(res.vif(standardize=standardize), expected, f"vif standardize={standardize}")
    if fit_intercept:
        assert res.vif()[0] == 1.0


@pytest.mark.parametrize("criterion", ["aic", "bic"])
def test_exhaustive_selection_equals_fitting_every_subset(stats, pooled, criterion: str) -> None:
    selection = select_features(stats, criterion=criterion, method="exhaustive")
    assert len(selection.fits) == 2 ** len(FEATURES)
    best, best_value = None, math.inf
    for size in range(len(FEATURES) + 1):
        for combo in itertools.combinations(FEATURES, size):
            fit = next(f for f in selection.fits if set(f.features) == set(combo))
            if combo:
                ref = _ols(pooled, list(combo))
            else:
                ref = sm.OLS(pooled[TARGET].to_numpy(np.float64), np.ones((len(pooled), 1))).fit()
            _close(fit.aic, ref.aic, f"aic {combo}")
            _close(fit.bic, ref.bic, f"bic {combo}")
            if getattr(ref, criterion) < best_value:
                best, best_value = set(combo), getattr(ref, criterion)
    assert set(selection.best_features) == best
    # the criteria are the subset's certified inference, bit for bit
    some = selection.fits[7]
    assert some.aic == inference(stats.subset(list(some.features))).aic


def test_backward_elimination_drops_a_useless_feature(factories, pooled) -> None:
    rng = np.random.default_rng(3)
    noisy = {name: df.assign(noise=np.round(rng.normal(size=len(df)), 2)) for name, df in factories.items()}
    features = [*FEATURES, "noise"]
    parts = [hefed.compute_statistics(df, TARGET, features, factory_id=name) for name, df in noisy.items()]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    data = pd.concat(list(noisy.values()), ignore_index=True)
    selection = select_features(total, criterion="bic", method="backward")
    current = set(features)
    for removed, fit in selection.path:
        if removed is not None:
            current.discard(removed)
        assert set(fit.features) == current
        _close(fit.bic, _ols(data, list(fit.features)).bic, f"bic {fit.features}")
    # each step took the candidate of lowest BIC, and no further removal lowers it
    last = selection.path[-1][1]
    for name in last.features:
        assert _ols(data, [f for f in last.features if f != name]).bic >= last.bic
    assert "noise" not in selection.best_features
    assert "drop noise" in selection.summary()
    keep = select_features(total, criterion="bic", method="backward", keep=["noise"])
    assert "noise" in keep.best_features


def test_selection_refuses_bad_options(stats) -> None:
    with pytest.raises(UsageError, match="criterion"):
        select_features(stats, criterion="r2")
    with pytest.raises(UsageError, match="method"):
        select_features(stats, method="forward")


def _study(public_key) -> Study:
    return Study.new(public_key, ColumnSpec(TARGET, "t"), [
        ColumnSpec("coal_t", "t"), ColumnSpec("natural_gas_t", "t"), "diesel_t",
        ColumnSpec("electricity_mwh", "MWh"), "clinker_t"])


def test_emission_factor_report_from_a_study_with_units(stats, pooled, public_key, tmp_path) -> None:
    study = _study(public_key)
    with_study = hefed.SufficientStatistics(stats.target, stats.features, stats.encoding, stats.gram,
                                            list(stats.contributors), study.digest)
    model = hefed.solve(with_study, study=study)
    res = model.inference()
    assert res.units == {"coal_t": "t", "natural_gas_t": "t", "electricity_mwh": "MWh"} and res.target_unit == "t"
    ref = _ols(pooled, FEATURES)
    ci = ref.conf_int()
    factors = res.emission_factors()
    assert [f.feature for f in factors] == ["coal_t", "natural_gas_t", "electricity_mwh"]
    for f in factors:
        j = FEATURES.index(f.feature) + 1
        _close(f.factor, ref.params.iloc[j], "factor")
        _close(f.bse, ref.bse.iloc[j], "bse")
        _close([f.conf_low, f.conf_high], ci.iloc[j].to_numpy(), "interval")
        half = (ci.iloc[j, 1] - ci.iloc[j, 0]) / 2
        _close(f.relative_uncertainty, half / abs(ref.params.iloc[j]) * 100, "relative uncertainty")
    assert factors[2].unit == "t/MWh"
    text = model.summary()
    assert "Emission factors" in text and "t/MWh" in text and "U (%)" in text
    # in the model file, and back
    path = model.save(tmp_path / "model.json")
    body = json.loads(path.read_text())
    assert [e["feature"] for e in body["emission_factors"]] == ["coal_t", "natural_gas_t", "electricity_mwh"]
    assert body["emission_factors"][2]["unit"] == "t/MWh"
    _close(body["emission_factors"][0]["relative_uncertainty_pct"], factors[0].relative_uncertainty, "file U")
    loaded = LinearModel.load(path)
    assert loaded.inference().units == res.units and "Emission factors" in loaded.summary()
    # without units: no block, no entry
    plain = hefed.solve(stats)
    assert "Emission factors" not in plain.summary() and "emission_factors" not in plain.to_dict()


@pytest.mark.skipif(not GAS_TURBINE.is_dir(), reason=f"gas-turbine data not found at {GAS_TURBINE}")
def test_gas_turbine_by_year_tests_and_selection_match_statsmodels() -> None:
    frames = hefed.datasets.load_gas_turbine(GAS_TURBINE)
    features = [c for c in next(iter(frames.values())).columns if c != "NOX"]
    parts = [hefed.compute_statistics(df, "NOX", features, factory_id=name) for name, df in frames.items()]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    data = pd.concat(list(frames.values()), ignore_index=True)
    res = hefed.solve(total).inference()
    ref = _ols(data, features, target="NOX")
    text = f"{features[0]} = 0, {features[1]} = {features[2]}, {features[3]} + {features[4]} = 1"
    t, rt = res.t_test(text), ref.t_test(text)
    _close(t.tvalue, rt.tvalue, "gt t")
    _close(res.f_test(text).fvalue, ref.f_test(text).fvalue, "gt F")
    exog = sm.add_constant(data[features].to_numpy(np.float64))
    _close(res.vif(), [variance_inflation_factor(exog, j) for j in range(exog.shape[1])], "gt vif")
    chosen = features[:4]
    sub_ref = _ols(data, chosen, target="NOX")
    f, _, df = res.compare_f_test(hefed.solve(total.subset(chosen)).inference())
    _close(f, ref.compare_f_test(sub_ref)[0], "gt compare_f_test")
    selection = select_features(total, criterion="aic", method="backward")
    for _, fit in selection.path:
        _close(fit.aic, _ols(data, list(fit.features), target="NOX").aic, f"gt aic {fit.features}")
