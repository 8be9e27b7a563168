"""FederatedLinearRegression: the whole encrypted protocol behind scikit-learn's fit(X, y, groups).

Its coefficients must be exactly those of the exact pooled solve (checked against hefed's exact
solver on the pooled statistics and against an independent rational elimination), close to
scikit-learn's, and it must behave like a scikit-learn regressor: check_estimator, prediction,
scoring, pipelines, cloning, cross-validation.
"""

from __future__ import annotations

import pickle
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from exact_helpers import gauss_solve, normal_equations
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import GroupKFold, KFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

import hefed
from hefed.errors import DataError, EncodingError, HefedError, RoundedValuesWarning, TooFewContributorsError, UsageError
from hefed.sim import SIMULATION_KEY_BITS, FederatedLinearRegression
from hefed.stats import solve_exact_coefficients, statistics_from_arrays

TARGET = "co2_t"
FEATURES = ["coal_t", "natural_gas_t", "diesel_t", "electricity_mwh", "clinker_t"]


@pytest.fixture(scope="module")
def factories() -> dict[str, pd.DataFrame]:
    return hefed.datasets.make_factories(n_factories=4, seed=7)


@pytest.fixture(scope="module")
def pooled(factories) -> pd.DataFrame:
    return pd.concat(list(factories.values()), ignore_index=True)


@pytest.fixture(scope="module")
def groups(factories) -> np.ndarray:
    """The factory of each pooled row."""
    return np.repeat(list(factories), [len(frame) for frame in factories.values()])


def parties_of(factories, features=FEATURES):
    return {name: (frame[features], frame[TARGET]) for name, frame in factories.items()}


@pytest.fixture(scope="module")
def fitted(pooled, groups) -> FederatedLinearRegression:
    return FederatedLinearRegression(key_bits=1024).fit(pooled[FEATURES], pooled[TARGET], groups=groups)


def exact_pooled(X: np.ndarray, y: np.ndarray, ridge: float = 0.0, fit_intercept: bool = True):
    """hefed's exact solver on the plaintext pooled statistics: (coef in column order, intercept)."""
    names = [f"x{j}" for j in range(X.shape[1])]
    stats = statistics_from_arrays(X, y, names, "y")
    coef_sorted, intercept = solve_exact_coefficients(stats, ridge, fit_intercept)
    by_name = dict(zip(sorted(names), coef_sorted, strict=True))
    return [by_name[name] for name in names], intercept


def rational_ridge(X: np.ndarray, y: np.ndarray, alpha: Fraction, fit_intercept: bool = True) -> list[Fraction]:
    """Independent reference: the (ridge) normal equations from the rows, Gauss-Jordan in Fractions.

    Returns [intercept, coef...] (intercept 0 without fit_intercept); the intercept is not penalised.
    """
    rows = [[Fraction(1), *map(Fraction, map(float, r))] if fit_intercept else [*map(Fraction, map(float, r))]
            for r in X]
    a, b = normal_equations(rows, [Fraction(float(v)) for v in y])
    for i in range(1 if fit_intercept else 0, len(b)):
        a[i][i] += alpha
    solution = gauss_solve(a, b)
    return solution if fit_intercept else [Fraction(0), *solution]


# --- scikit-learn's contract ------------------------------------------------------------------
#: Checks hefed fails on purpose. scikit-learn's sample-weight equivalence check fits 15 rows of 30 features: a
#: singular system, which hefed refuses (naming the dependent columns) instead of picking a minimum-norm solution;
#: tests/test_weights.py checks the same equivalence (integer weights = repeated rows) exactly on a full-rank design.
EXPECTED_FAILED_CHECKS = {"check_sample_weight_equivalence_on_dense_data": "a 15×30 design is singular: refused"}


@parametrize_with_checks([FederatedLinearRegression()], expected_failed_checks=lambda _: EXPECTED_FAILED_CHECKS,
                         xfail_strict=True)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_cross_val_score_equals_the_exact_fit_of_each_training_fold(pooled):
    X, y = pooled[FEATURES].to_numpy(), pooled[TARGET].to_numpy()
    cv = KFold(4, shuffle=True, random_state=0)
    scores = cross_val_score(FederatedLinearRegression(), X, y, cv=cv, error_score="raise")
    for score, (train, test) in zip(scores, cv.split(X), strict=True):
        coef, intercept = exact_pooled(X[train], y[train])
        prediction = X[test] @ np.array([float(c) for c in coef]) + float(intercept)
        assert score == pytest.approx(r2_score(y[test], prediction), rel=1e-12)
    assert (scores > 0.98).all()


def test_cross_val_score_by_factory_passes_groups_to_fit(pooled, groups):
    """Leave factories out (GroupKFold) and keep each training row's factory (params={"groups": …})."""
    X, y = pooled[FEATURES], pooled[TARGET]
    est = FederatedLinearRegression(ridge=1.0, min_contributors=2)
    cv = GroupKFold(n_splits=2)
    scores = cross_val_score(est, X, y, groups=groups, cv=cv, params={"groups": groups}, error_score="raise")
    for score, (train, test) in zip(scores, cv.split(X, y, groups), strict=True):
        fold = clone(est).fit(X.iloc[train], y.iloc[train], groups=groups[train])
        assert fold.contributors_ == list(dict.fromkeys(groups[train]))  # the training factories, as factories
        assert score == fold.score(X.iloc[test], y.iloc[test])


# --- exactness --------------------------------------------------------------------------------
def test_coefficients_equal_the_exact_pooled_solution(fitted, pooled):
    exact = hefed.solve(hefed.compute_statistics(pooled, TARGET, FEATURES))
    assert np.array_equal(fitted.coef_, exact.coef_)
    assert fitted.intercept_ == exact.intercept_
    assert fitted.model_.coef_exact_ == exact.coef_exact_
    assert fitted.model_.intercept_exact_ == exact.intercept_exact_
    assert fitted.model_.n_samples_ == len(pooled)


@pytest.mark.parametrize("ridge", [0.0, 0.75, 300.0])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_fit_with_groups_is_the_exact_pooled_solution_rational_for_rational(ridge, fit_intercept):
    rng = np.random.default_rng(int(ridge * 10) + fit_intercept)
    X = np.round(rng.normal(0, 20, (40, 3)), 3)
    y = np.round(X @ [1.5, -2.0, 0.25] + 7 + rng.normal(0, 1, 40), 3)
    groups = rng.choice(["north", "south", "east", "west"], size=40)  # interleaved, not contiguous
    est = FederatedLinearRegression(ridge=ridge, fit_intercept=fit_intercept).fit(X, y, groups=groups)
    reference = rational_ridge(X, y, Fraction(ridge), fit_intercept)
    assert est.model_.intercept_exact_ == reference[0]
    assert est.model_.coef_exact_ == reference[1:]
    coef, intercept = exact_pooled(X, y, ridge, fit_intercept)
    assert est.model_.coef_exact_ == coef and est.model_.intercept_exact_ == intercept
    assert est.coef_.tolist() == [float(c) for c in reference[1:]]  # rounded once
    assert est.intercept_ == float(reference[0])
    assert est.contributors_ == list(dict.fromkeys(groups))


def test_fit_without_groups_splits_the_rows_into_min_contributors_factories(pooled, fitted):
    X, y = pooled[FEATURES], pooled[TARGET]
    est = FederatedLinearRegression().fit(X, y)
    assert est.contributors_ == ["factory-1", "factory-2", "factory-3"]
    assert np.array_equal(est.coef_, fitted.coef_) and est.intercept_ == fitted.intercept_  # same pooled rows
    five = FederatedLinearRegression(min_contributors=5).fit(X, y)
    assert five.contributors_ == [f"factory-{i}" for i in range(1, 6)]
    assert five.model_.coef_exact_ == fitted.model_.coef_exact_


def test_coefficients_are_close_to_sklearn(fitted, pooled):
    reference = LinearRegression().fit(pooled[FEATURES].to_numpy(), pooled[TARGET].to_numpy())
    np.testing.assert_allclose(fitted.coef_, reference.coef_, rtol=1e-10, atol=0)
    np.testing.assert_allclose(fitted.intercept_, reference.intercept_, rtol=1e-10, atol=1e-9)


def test_fitted_attributes(fitted, factories):
    assert list(fitted.feature_names_in_) == FEATURES
    assert fitted.n_features_in_ == len(FEATURES)
    assert fitted.coef_.shape == (len(FEATURES),)
    assert isinstance(fitted.intercept_, float)
    assert fitted.contributors_ == list(factories)
    assert fitted.model_.target_ == TARGET
    assert list(fitted.model_.feature_names_in_) == FEATURES


def test_predict_takes_the_columns_of_fit_and_the_model_matches_them_by_name(fitted, pooled):
    X = pooled[FEATURES]
    expected = X.to_numpy() @ fitted.coef_ + fitted.intercept_
    np.testing.assert_allclose(fitted.predict(X), expected, rtol=1e-13)
    # The published model matches DataFrame columns by name ...
    shuffled = pooled[list(reversed(FEATURES)) + ["date", "plant_kind"]]
    assert np.array_equal(fitted.model_.predict(shuffled), fitted.predict(X))
    # ... the estimator, as every scikit-learn estimator, wants the columns of fit in their order.
    with pytest.raises(DataError, match="same order"):
        fitted.predict(pooled[list(reversed(FEATURES))])
    with pytest.raises(DataError, match="clinker_t"):
        fitted.predict(pooled[FEATURES[:-1]])


def test_fit_parties_is_fit_with_groups(factories, fitted):
    est = FederatedLinearRegression(key_bits=1024).fit_parties(parties_of(factories))
    assert np.array_equal(est.coef_, fitted.coef_) and est.intercept_ == fitted.intercept_
    assert est.contributors_ == list(factories)
    assert est.model_.target_ == TARGET


def test_parties_may_order_their_columns_differently(factories, fitted):
    parties = parties_of(factories)
    for i, name in enumerate(parties):
        X, y = parties[name]
        if i % 2:
            parties[name] = (X[list(reversed(FEATURES))], y)
    refit = FederatedLinearRegression(key_bits=1024).fit_parties(parties)
    assert list(refit.feature_names_in_) == FEATURES
    assert np.array_equal(refit.coef_, fitted.coef_)
    assert refit.intercept_ == fitted.intercept_


def test_parties_with_different_columns_are_refused(factories):
    parties = parties_of(factories)
    name = list(parties)[1]
    X, y = parties[name]
    parties[name] = (X.drop(columns="diesel_t"), y)
    with pytest.raises(DataError, match="diesel_t"):
        FederatedLinearRegression(key_bits=1024).fit_parties(parties)


def test_last_step_of_a_pipeline_predicts_and_scores(fitted, pooled):
    select = FunctionTransformer(lambda frame: frame[FEATURES])
    pipeline = Pipeline([("select", select), ("regress", fitted)])
    assert np.array_equal(pipeline.predict(pooled), fitted.predict(pooled[FEATURES]))
    score = pipeline.score(pooled, pooled[TARGET])
    assert score == pytest.approx(r2_score(pooled[TARGET], fitted.predict(pooled[FEATURES])), rel=1e-14)
    assert score == pytest.approx(fitted.score(pooled[FEATURES], pooled[TARGET]), rel=1e-14)
    reference = LinearRegression().fit(pooled[FEATURES], pooled[TARGET])
    assert score == pytest.approx(reference.score(pooled[FEATURES], pooled[TARGET]), rel=1e-12)


def test_numpy_parties_get_positional_names(factories, fitted):
    parties = {name: (frame[FEATURES].to_numpy(), frame[TARGET].to_numpy()) for name, frame in factories.items()}
    est = FederatedLinearRegression(key_bits=1024).fit_parties(parties)
    names = [f"x{j}" for j in range(len(FEATURES))]
    assert not hasattr(est, "feature_names_in_")  # scikit-learn: only for string-named DataFrame columns
    assert list(est.model_.feature_names_in_) == names
    assert est.n_features_in_ == len(FEATURES)
    # The same data, differently named: the same exact solution.
    assert np.array_equal(est.coef_, fitted.coef_)
    assert est.intercept_ == fitted.intercept_
    X = np.vstack([frame[FEATURES].to_numpy() for frame in factories.values()])
    assert np.array_equal(est.predict(X), fitted.model_.predict(X))


def test_many_numpy_columns_keep_their_order():
    # Twelve columns: names x0..x11 sort as text differently (x10 < x2) from their positions.
    rng = np.random.default_rng(3)
    beta = np.arange(1, 13) * 1.5
    blocks = []
    for _ in range(3):
        X = np.round(rng.normal(0, 10, (60, 12)), 3)
        y = np.round(X @ beta + 4 + rng.normal(0, 0.5, 60), 3)
        blocks.append((X, y))
    X_all = np.vstack([b[0] for b in blocks])
    y_all = np.concatenate([b[1] for b in blocks])
    est = FederatedLinearRegression(key_bits=1024).fit(X_all, y_all, groups=np.repeat(["p0", "p1", "p2"], 60))
    reference = LinearRegression().fit(X_all, y_all)
    np.testing.assert_allclose(est.coef_, reference.coef_, rtol=1e-10)
    np.testing.assert_allclose(est.intercept_, reference.intercept_, rtol=1e-10)
    assert list(est.model_.feature_names_in_) == [f"x{j}" for j in range(12)]


@pytest.mark.parametrize("alpha", [0.5, 250.0])
def test_ridge_matches_sklearn_ridge(pooled, groups, alpha):
    est = FederatedLinearRegression(ridge=alpha, key_bits=1024).fit(pooled[FEATURES], pooled[TARGET], groups)
    reference = Ridge(alpha=alpha, fit_intercept=True, solver="svd").fit(pooled[FEATURES].to_numpy(),
                                                                          pooled[TARGET].to_numpy())
    np.testing.assert_allclose(est.coef_, reference.coef_, rtol=1e-8)
    np.testing.assert_allclose(est.intercept_, reference.intercept_, rtol=1e-8)
    exact = hefed.solve(hefed.compute_statistics(pooled, TARGET, FEATURES), ridge=alpha)
    assert np.array_equal(est.coef_, exact.coef_)
    assert est.model_.ridge == alpha


def test_no_intercept_matches_sklearn(pooled, groups):
    est = FederatedLinearRegression(fit_intercept=False, key_bits=1024).fit(pooled[FEATURES], pooled[TARGET], groups)
    reference = LinearRegression(fit_intercept=False).fit(pooled[FEATURES].to_numpy(), pooled[TARGET].to_numpy())
    np.testing.assert_allclose(est.coef_, reference.coef_, rtol=1e-10)
    assert est.intercept_ == 0.0


# --- the protocol's refusals ------------------------------------------------------------------
def test_fewer_parties_than_the_threshold_are_refused(factories, pooled, groups):
    two = dict(list(parties_of(factories).items())[:2])
    with pytest.raises(TooFewContributorsError):
        FederatedLinearRegression(key_bits=1024).fit_parties(two)
    with pytest.raises(TooFewContributorsError):
        FederatedLinearRegression(key_bits=1024, min_contributors=5).fit(pooled[FEATURES], pooled[TARGET], groups)
    est = FederatedLinearRegression(key_bits=1024, min_contributors=2).fit_parties(two)
    assert est.contributors_ == list(two)


def test_given_keys_are_used(pooled, groups, keypair, fitted):
    public_key, private_key = keypair
    X, y = pooled[FEATURES], pooled[TARGET]
    est = FederatedLinearRegression(public_key=public_key, private_key=private_key).fit(X, y, groups)
    assert np.array_equal(est.coef_, fitted.coef_)
    with pytest.raises(UsageError):
        FederatedLinearRegression(public_key=public_key).fit(X, y, groups)


def test_fit_takes_scikit_learns_signature_and_points_mappings_to_fit_parties(factories, pooled):
    est = FederatedLinearRegression(key_bits=1024)
    assert est.fit(pooled[FEATURES], pooled[TARGET]) is est
    with pytest.raises(UsageError, match="fit_parties"):
        FederatedLinearRegression(key_bits=1024).fit(parties_of(factories), None)
    with pytest.raises(UsageError):
        FederatedLinearRegression(key_bits=1024).fit_parties({})


def test_predict_before_fit_raises_not_fitted(pooled):
    with pytest.raises(NotFittedError):
        FederatedLinearRegression().predict(pooled[FEATURES])


def test_a_failed_refit_leaves_no_stale_model(fitted, pooled):
    est = clone(fitted).fit(pooled[FEATURES], pooled[TARGET])
    with pytest.raises(DataError):
        est.fit(pooled[FEATURES].iloc[:2], pooled[TARGET].iloc[:2])
    with pytest.raises(NotFittedError):
        est.predict(pooled[FEATURES])


def test_clone_get_params_set_params(fitted, pooled, groups):
    params = fitted.get_params()
    assert set(params) == {"ridge", "fit_intercept", "key_bits", "min_contributors", "encoding",
                           "public_key", "private_key", "fixed_effects", "cov_type", "maxlags"}
    assert params["key_bits"] == 1024 == SIMULATION_KEY_BITS
    copy = clone(fitted)
    assert copy is not fitted
    assert copy.get_params() == params
    assert not hasattr(copy, "coef_")
    with pytest.raises(NotFittedError):
        copy.predict(np.zeros((1, len(FEATURES))))
    assert copy.set_params(ridge=2.0, min_contributors=4) is copy
    assert copy.ridge == 2.0 and copy.min_contributors == 4
    assert fitted.ridge == 0.0
    copy.fit(pooled[FEATURES], pooled[TARGET], groups)
    assert copy.model_.ridge == 2.0
    assert not np.array_equal(copy.coef_, fitted.coef_)


def test_pickled_estimator_predicts_the_same_and_holds_no_key(fitted, pooled):
    data = pickle.dumps(fitted)
    again = pickle.loads(data)
    assert np.array_equal(again.predict(pooled[FEATURES]), fitted.predict(pooled[FEATURES]))
    p = hefed.sim.simulation_keypair(1024)[1].p  # the key every default fit used
    assert b"PaillierPrivateKey" not in data
    assert p.to_bytes((p.bit_length() + 8) // 8, "little", signed=True) not in data  # how pickle writes an int


def test_dataframes_with_integer_column_labels_fit_or_are_refused_cleanly(factories, fitted):
    parties = {name: (pd.DataFrame(frame[FEATURES].to_numpy()), frame[TARGET]) for name, frame in factories.items()}
    try:
        est = FederatedLinearRegression(key_bits=1024).fit_parties(parties)
    except HefedError:
        return  # a clean, named refusal would be acceptable too
    # scikit-learn keeps no feature_names_in_ for non-string labels; the model names columns by position
    assert not hasattr(est, "feature_names_in_")
    assert list(est.model_.feature_names_in_) == [f"x{j}" for j in range(len(FEATURES))]
    assert np.array_equal(est.coef_, fitted.coef_)


# --- messages name the offending column and row -----------------------------------------------
def test_non_finite_values_are_refused_naming_column_and_row(pooled, fitted):
    X, y = pooled[FEATURES].copy(), pooled[TARGET]
    X.iloc[5, 2] = np.nan
    with pytest.raises(DataError, match=r"X: column 'diesel_t', row 6: value is NaN"):
        FederatedLinearRegression().fit(X, y)
    X.iloc[5, 2] = 1.0
    X.iloc[9, 4] = -np.inf
    with pytest.raises(DataError, match=r"X: column 'clinker_t', row 10: value is -inf"):
        fitted.predict(X)
    with pytest.raises(ValueError, match="NaN"):
        FederatedLinearRegression().fit(X.iloc[:, :3], y.where(y.index != 3))


def test_values_the_encoding_cannot_hold_are_refused_naming_column_and_row(pooled):
    X, y = pooled[FEATURES].copy(), pooled[TARGET]
    X.iloc[7, 1] = 1e30  # beyond the encoding's range (2^64)
    with pytest.raises(EncodingError, match=r"column 'natural_gas_t', row 8: .* int_bits >= 100"):
        FederatedLinearRegression().fit(X, y)
    X.iloc[7, 1] = 1e-12 + 1e-30  # binary digits far below the 2^-84 grid: rounded to it, and said
    with pytest.warns(RoundedValuesWarning, match="1 value\\(s\\) of 'natural_gas_t' rounded"):
        FederatedLinearRegression().fit(X, y)
    big = X.assign(coal_t=np.arange(len(X), dtype=np.int64) + 2**60)
    with pytest.raises(DataError, match=r"column 'coal_t', row 1: integer 1152921504606846976 is beyond 2\^53"):
        FederatedLinearRegression().fit(big, y)


def test_bad_groups_and_parameters_are_refused_clearly(pooled):
    X, y = pooled[FEATURES], pooled[TARGET]
    with pytest.raises(DataError, match="'plant a' is not a factory id"):
        FederatedLinearRegression().fit(X, y, groups=["plant a"] * len(X))
    with pytest.raises(DataError, match=f"each of the {len(X)} rows"):
        FederatedLinearRegression().fit(X, y, groups=["a"] * (len(X) - 1))
    with pytest.raises(DataError, match="1 sample"):
        FederatedLinearRegression().fit(X.iloc[:1], y.iloc[:1])
    with pytest.raises(UsageError, match="ridge"):
        FederatedLinearRegression(ridge=-1.0).fit(X, y)
    with pytest.raises(UsageError, match="min_contributors"):
        FederatedLinearRegression(min_contributors=0).fit(X, y)
    duplicated = X.set_axis(["a", "b", "a", "c", "d"], axis=1)
    with pytest.raises(DataError, match="'a'"):
        FederatedLinearRegression().fit(duplicated, y)


def test_results_are_statsmodels_ordered_and_equal() -> None:
    """results_: the inference of the pooled fit, intercept first then X's columns, as statsmodels orders
    OLS(y, add_constant(X)); a notebook user compares them side by side."""
    import statsmodels.api as sm

    rng = np.random.default_rng(21)
    X = pd.DataFrame({"gas": rng.integers(0, 400, 240) / 4, "coal": rng.integers(0, 800, 240) / 8,
                      "hours": rng.integers(100, 700, 240).astype(float)})
    y = 2.0 * X["gas"] + 3.0 * X["coal"] + 0.01 * X["hours"] + rng.integers(-40, 40, 240) / 8
    groups = np.repeat(["plant-a", "plant-b", "plant-c", "plant-d"], 60)
    est = hefed.FederatedLinearRegression().fit(X, y, groups=groups)
    ref = sm.OLS(y, sm.add_constant(X)).fit()
    assert est.results_.param_names == ["(intercept)", "gas", "coal", "hours"]
    np.testing.assert_allclose(est.results_.params, ref.params.to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(est.results_.bse, ref.bse.to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(est.results_.conf_int(), ref.conf_int().to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(est.results_.cov_params(), ref.cov_params().to_numpy(), rtol=1e-9)
    assert est.results_.params[1:].tolist() == est.coef_.tolist()
