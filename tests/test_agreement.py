"""Agreement with established float64 solvers on well-conditioned data, and exact
agreement between the federated model and the pooled exact solve on real data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hefed

sm = pytest.importorskip("statsmodels.api")
sklearn_linear = pytest.importorskip("sklearn.linear_model")

TARGET = "co2_t"


def _federated(frames: dict[str, pd.DataFrame], target, features, keypair, **solve_kwargs):
    public_key, private_key = keypair
    bundles = [
        hefed.encrypt_statistics(frame, target, public_key, features, factory_id=name) for name, frame in frames.items()
    ]
    stats = hefed.decrypt_statistics(hefed.aggregate(bundles), private_key, allow_unsigned=True)
    return stats, hefed.solve(stats, **solve_kwargs)


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


# --------------------------------------------------------------------------------------
# Synthetic consortium (well conditioned)
# --------------------------------------------------------------------------------------


def test_federated_ols_matches_statsmodels_on_consortium(consortium, consortium_features, keypair):
    stats, model = _federated(consortium, TARGET, consortium_features, keypair)
    pooled = pd.concat(consortium.values(), ignore_index=True)
    X = sm.add_constant(pooled[consortium_features].to_numpy())
    result = sm.OLS(pooled[TARGET].to_numpy(), X).fit(method="qr")
    np.testing.assert_allclose(model.coef_, result.params[1:], rtol=1e-9, atol=0)
    np.testing.assert_allclose(model.intercept_, result.params[0], rtol=1e-9, atol=0)
    np.testing.assert_allclose(model.r2_, result.rsquared, rtol=1e-9)
    np.testing.assert_allclose(model.sse_, result.ssr, rtol=1e-9)
    assert model.n_samples_ == len(pooled) == int(result.nobs)
    # the federated model is the exact pooled one, rational for rational
    exact = hefed.solve(hefed.compute_statistics(pooled, TARGET, consortium_features))
    assert model.coef_exact_ == exact.coef_exact_ and model.intercept_exact_ == exact.intercept_exact_
    # predictions and score as scikit-learn's LinearRegression computes them from the same coefficients
    np.testing.assert_allclose(model.predict(pooled), pooled[consortium_features].to_numpy() @ result.params[1:]
                               + result.params[0], rtol=1e-9)
    np.testing.assert_allclose(model.score(pooled, pooled[TARGET]), result.rsquared, rtol=1e-9)


@pytest.mark.parametrize("alpha", [1e-3, 0.7, 25.0, 1e4])
@pytest.mark.parametrize("solver", ["cholesky", "svd"])
def test_ridge_matches_sklearn(consortium, consortium_features, alpha, solver):
    pooled = pd.concat(consortium.values(), ignore_index=True)
    stats = hefed.compute_statistics(pooled, TARGET, consortium_features)
    model = hefed.solve(stats, ridge=alpha)
    ref = sklearn_linear.Ridge(alpha=alpha, solver=solver, fit_intercept=True).fit(
        pooled[consortium_features].to_numpy(), pooled[TARGET].to_numpy()
    )
    np.testing.assert_allclose(model.coef_, ref.coef_, rtol=1e-8, atol=0)
    np.testing.assert_allclose(model.intercept_, ref.intercept_, rtol=1e-8, atol=0)
    assert model.ridge == alpha


@pytest.mark.parametrize("alpha", [0.5, 100.0])
def test_ridge_without_intercept_matches_sklearn(consortium, consortium_features, alpha):
    pooled = pd.concat(consortium.values(), ignore_index=True)
    model = hefed.solve(hefed.compute_statistics(pooled, TARGET, consortium_features), ridge=alpha, fit_intercept=False)
    ref = sklearn_linear.Ridge(alpha=alpha, solver="cholesky", fit_intercept=False).fit(
        pooled[consortium_features].to_numpy(), pooled[TARGET].to_numpy()
    )
    np.testing.assert_allclose(model.coef_, ref.coef_, rtol=1e-8, atol=0)
    assert model.intercept_ == 0.0


def test_ridge_penalty_matters_and_intercept_is_not_penalised(consortium, consortium_features):
    """A huge penalty shrinks every coefficient towards 0 but leaves the intercept at mean(y)."""
    pooled = pd.concat(consortium.values(), ignore_index=True)
    stats = hefed.compute_statistics(pooled, TARGET, consortium_features)
    ols, heavy = hefed.solve(stats), hefed.solve(stats, ridge=1e30)
    assert np.all(np.abs(heavy.coef_) < 1e-15 * np.abs(ols.coef_).max())
    np.testing.assert_allclose(heavy.intercept_, pooled[TARGET].mean(), rtol=1e-12)


def test_no_intercept_ols_matches_statsmodels(consortium, consortium_features):
    pooled = pd.concat(consortium.values(), ignore_index=True)
    model = hefed.solve(hefed.compute_statistics(pooled, TARGET, consortium_features), fit_intercept=False)
    result = sm.OLS(pooled[TARGET].to_numpy(), pooled[consortium_features].to_numpy()).fit(method="qr")
    np.testing.assert_allclose(model.coef_, result.params, rtol=1e-9, atol=0)
    assert model.intercept_ == 0.0


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(30, 300),
    d=st.integers(1, 6),
    decimals=st.integers(0, 6),
)
def test_ols_matches_numpy_lstsq_on_random_well_conditioned_data(seed, n, d, decimals):
    rng = np.random.default_rng(seed)
    X = np.round(rng.normal(0, 1, (n, d)) * rng.uniform(0.5, 100, d) + rng.uniform(-10, 10, d), decimals)
    y = np.round(X @ rng.normal(0, 3, d) + rng.normal(0, 1, n) + 4.0, decimals)
    names = [f"f{j}" for j in range(d)][::-1]
    frame = pd.DataFrame(X, columns=names)
    frame["target"] = y
    design = np.column_stack([np.ones(n), X])
    if np.linalg.cond(design) > 1e6:  # rounding can make tiny columns constant; not this test's business
        return
    model = hefed.solve(hefed.compute_statistics(frame, "target", names))
    ref = np.linalg.lstsq(design, y, rcond=None)[0]
    np.testing.assert_allclose(model.intercept_, ref[0], rtol=1e-9, atol=1e-9 * np.abs(ref).max())
    np.testing.assert_allclose(model.coef_, ref[1:], rtol=1e-9, atol=1e-9 * np.abs(ref).max())


# --------------------------------------------------------------------------------------
# Real data: UCI gas-turbine CO/NOx, one factory per year
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gas_turbine(gas_turbine_dir):
    return hefed.datasets.load_gas_turbine(gas_turbine_dir)


def test_gas_turbine_loader_gives_five_sites(gas_turbine):
    assert sorted(gas_turbine) == [f"gt_{y}" for y in range(2011, 2016)]
    assert [len(gas_turbine[f"gt_{y}"]) for y in range(2011, 2016)] == [7411, 7628, 7152, 7158, 7384]
    for frame in gas_turbine.values():
        assert list(frame.columns) == ["AT", "AP", "AH", "AFDP", "GTEP", "TIT", "TAT", "TEY", "CDP", "CO", "NOX"]


def test_gas_turbine_federated_equals_pooled_exactly_and_statsmodels(gas_turbine, keypair):
    stats, model = _federated(gas_turbine, "NOX", None, keypair)
    # default features: every numeric column but the target, CO included
    expected_features = ["AT", "AP", "AH", "AFDP", "GTEP", "TIT", "TAT", "TEY", "CDP", "CO"]
    assert list(model.feature_names_in_) == expected_features
    assert stats.contributors == [f"gt_{y}" for y in range(2011, 2016)]

    pooled = pd.concat(gas_turbine.values(), ignore_index=True)
    pooled_stats = hefed.compute_statistics(pooled, "NOX", expected_features)
    assert stats.gram == pooled_stats.gram
    exact = hefed.solve(pooled_stats)
    assert model.coef_exact_ == exact.coef_exact_
    assert model.intercept_exact_ == exact.intercept_exact_
    assert model.coef_.tolist() == exact.coef_.tolist()
    assert model.n_samples_ == len(pooled) == 36733

    result = sm.OLS(pooled["NOX"].to_numpy(), sm.add_constant(pooled[expected_features].to_numpy())).fit()
    np.testing.assert_allclose(model.coef_, result.params[1:], rtol=1e-9, atol=0)
    np.testing.assert_allclose(model.intercept_, result.params[0], rtol=1e-9, atol=0)
    np.testing.assert_allclose(model.r2_, result.rsquared, rtol=1e-9)


@pytest.mark.parametrize("alpha", [1.0, 1e3])
def test_gas_turbine_ridge_matches_sklearn(gas_turbine, alpha):
    pooled = pd.concat(gas_turbine.values(), ignore_index=True)
    features = [c for c in pooled.columns if c != "NOX"]
    # standardise-free ridge on raw data is well defined; compare on the raw columns
    model = hefed.solve(hefed.compute_statistics(pooled, "NOX", features), ridge=alpha)
    ref = sklearn_linear.Ridge(alpha=alpha, solver="svd").fit(pooled[features].to_numpy(), pooled["NOX"].to_numpy())
    np.testing.assert_allclose(model.coef_, ref.coef_, rtol=1e-8, atol=0)
    np.testing.assert_allclose(model.intercept_, ref.intercept_, rtol=1e-8, atol=0)
