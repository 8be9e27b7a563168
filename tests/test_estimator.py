"""FederatedLinearRegression: the whole encrypted protocol behind a scikit-learn estimator.

Its coefficients must be exactly those of the exact pooled solve, close to scikit-learn's,
and it must behave like a scikit-learn regressor for prediction, scoring, pipelines and cloning.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.metrics import r2_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

import hefed
from hefed.errors import DataError, HefedError, TooFewContributorsError, UsageError

TARGET = "co2_t"
FEATURES = ["coal_t", "natural_gas_t", "diesel_t", "electricity_mwh", "clinker_t"]


@pytest.fixture(scope="module")
def factories() -> dict[str, pd.DataFrame]:
    return hefed.datasets.make_factories(n_factories=4, seed=7)


@pytest.fixture(scope="module")
def pooled(factories) -> pd.DataFrame:
    return pd.concat(list(factories.values()), ignore_index=True)


def parties_of(factories, features=FEATURES):
    return {name: (frame[features], frame[TARGET]) for name, frame in factories.items()}


@pytest.fixture(scope="module")
def fitted(factories) -> hefed.FederatedLinearRegression:
    return hefed.FederatedLinearRegression(key_bits=1024).fit(parties_of(factories))


def test_coefficients_equal_the_exact_pooled_solution(fitted, pooled):
    exact = hefed.solve(hefed.compute_statistics(pooled, TARGET, FEATURES))
    assert np.array_equal(fitted.coef_, exact.coef_)
    assert fitted.intercept_ == exact.intercept_
    assert fitted.model_.coef_exact_ == exact.coef_exact_
    assert fitted.model_.intercept_exact_ == exact.intercept_exact_
    assert fitted.model_.n_samples_ == len(pooled)


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


def test_predict_matches_columns_by_name(fitted, pooled):
    X = pooled[FEATURES]
    expected = X.to_numpy() @ fitted.coef_ + fitted.intercept_
    np.testing.assert_allclose(fitted.predict(X), expected, rtol=1e-13)
    shuffled = pooled[list(reversed(FEATURES)) + ["date", "plant_kind"]]
    assert np.array_equal(fitted.predict(shuffled), fitted.predict(X))
    with pytest.raises(DataError):
        fitted.predict(pooled[FEATURES[:-1]])


def test_parties_may_order_their_columns_differently(factories, fitted):
    parties = parties_of(factories)
    for i, name in enumerate(parties):
        X, y = parties[name]
        if i % 2:
            parties[name] = (X[list(reversed(FEATURES))], y)
    refit = hefed.FederatedLinearRegression(key_bits=1024).fit(parties)
    assert list(refit.feature_names_in_) == FEATURES
    assert np.array_equal(refit.coef_, fitted.coef_)
    assert refit.intercept_ == fitted.intercept_


def test_parties_with_different_columns_are_refused(factories):
    parties = parties_of(factories)
    name = list(parties)[1]
    X, y = parties[name]
    parties[name] = (X.drop(columns="diesel_t"), y)
    with pytest.raises(DataError):
        hefed.FederatedLinearRegression(key_bits=1024).fit(parties)


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
    est = hefed.FederatedLinearRegression(key_bits=1024).fit(parties)
    names = [f"x{j}" for j in range(len(FEATURES))]
    assert list(est.feature_names_in_) == names
    assert list(est.model_.feature_names_in_) == names
    assert est.n_features_in_ == len(FEATURES)
    # The same data, differently named: the same exact solution.
    assert np.array_equal(est.coef_, fitted.coef_)
    assert est.intercept_ == fitted.intercept_
    X = np.vstack([frame[FEATURES].to_numpy() for frame in factories.values()])
    assert np.array_equal(est.predict(X), fitted.predict(X))


def test_many_numpy_columns_keep_their_order():
    # Twelve columns: names x0..x11 sort as text differently (x10 < x2) from their positions.
    rng = np.random.default_rng(3)
    beta = np.arange(1, 13) * 1.5
    parties, blocks = {}, []
    for i in range(3):
        X = np.round(rng.normal(0, 10, (60, 12)), 3)
        y = np.round(X @ beta + 4 + rng.normal(0, 0.5, 60), 3)
        parties[f"p{i}"] = (X, y)
        blocks.append((X, y))
    est = hefed.FederatedLinearRegression(key_bits=1024).fit(parties)
    X_all = np.vstack([b[0] for b in blocks])
    y_all = np.concatenate([b[1] for b in blocks])
    reference = LinearRegression().fit(X_all, y_all)
    np.testing.assert_allclose(est.coef_, reference.coef_, rtol=1e-10)
    np.testing.assert_allclose(est.intercept_, reference.intercept_, rtol=1e-10)
    assert list(est.feature_names_in_) == [f"x{j}" for j in range(12)]


@pytest.mark.parametrize("alpha", [0.5, 250.0])
def test_ridge_matches_sklearn_ridge(factories, pooled, alpha):
    est = hefed.FederatedLinearRegression(ridge=alpha, key_bits=1024).fit(parties_of(factories))
    reference = Ridge(alpha=alpha, fit_intercept=True, solver="svd").fit(pooled[FEATURES].to_numpy(),
                                                                          pooled[TARGET].to_numpy())
    np.testing.assert_allclose(est.coef_, reference.coef_, rtol=1e-8)
    np.testing.assert_allclose(est.intercept_, reference.intercept_, rtol=1e-8)
    exact = hefed.solve(hefed.compute_statistics(pooled, TARGET, FEATURES), ridge=alpha)
    assert np.array_equal(est.coef_, exact.coef_)
    assert est.model_.ridge == alpha


def test_no_intercept_matches_sklearn(factories, pooled):
    est = hefed.FederatedLinearRegression(fit_intercept=False, key_bits=1024).fit(parties_of(factories))
    reference = LinearRegression(fit_intercept=False).fit(pooled[FEATURES].to_numpy(), pooled[TARGET].to_numpy())
    np.testing.assert_allclose(est.coef_, reference.coef_, rtol=1e-10)
    assert est.intercept_ == 0.0


def test_fewer_parties_than_the_threshold_are_refused(factories):
    two = dict(list(parties_of(factories).items())[:2])
    with pytest.raises(TooFewContributorsError):
        hefed.FederatedLinearRegression(key_bits=1024).fit(two)
    with pytest.raises(TooFewContributorsError):
        hefed.FederatedLinearRegression(key_bits=1024, min_contributors=5).fit(parties_of(factories))
    est = hefed.FederatedLinearRegression(key_bits=1024, min_contributors=2).fit(two)
    assert est.contributors_ == list(two)


def test_given_keys_are_used(factories, keypair, fitted):
    public_key, private_key = keypair
    est = hefed.FederatedLinearRegression(public_key=public_key, private_key=private_key).fit(parties_of(factories))
    assert np.array_equal(est.coef_, fitted.coef_)
    with pytest.raises(UsageError):
        hefed.FederatedLinearRegression(public_key=public_key).fit(parties_of(factories))


def test_fit_refuses_the_usual_sklearn_signature(pooled):
    with pytest.raises(UsageError):
        hefed.FederatedLinearRegression(key_bits=1024).fit(pooled[FEATURES], pooled[TARGET])
    with pytest.raises(UsageError):
        hefed.FederatedLinearRegression(key_bits=1024).fit({})


def test_predict_before_fit_raises_not_fitted(pooled):
    with pytest.raises(NotFittedError):
        hefed.FederatedLinearRegression().predict(pooled[FEATURES])


def test_clone_get_params_set_params(fitted, factories):
    params = fitted.get_params()
    assert set(params) == {"ridge", "fit_intercept", "key_bits", "min_contributors", "encoding",
                           "public_key", "private_key"}
    assert params["key_bits"] == 1024
    copy = clone(fitted)
    assert copy is not fitted
    assert copy.get_params() == params
    assert not hasattr(copy, "coef_")
    with pytest.raises(NotFittedError):
        copy.predict(np.zeros((1, len(FEATURES))))
    assert copy.set_params(ridge=2.0, min_contributors=4) is copy
    assert copy.ridge == 2.0 and copy.min_contributors == 4
    assert fitted.ridge == 0.0
    copy.fit(parties_of(factories))
    assert copy.model_.ridge == 2.0
    assert not np.array_equal(copy.coef_, fitted.coef_)


def test_dataframes_with_integer_column_labels_fit_or_are_refused_cleanly(factories, fitted):
    parties = {name: (pd.DataFrame(frame[FEATURES].to_numpy()), frame[TARGET]) for name, frame in factories.items()}
    try:
        est = hefed.FederatedLinearRegression(key_bits=1024).fit(parties)
    except HefedError:
        return  # a clean, named refusal would be acceptable too
    assert list(est.feature_names_in_) == [str(j) for j in range(len(FEATURES))]
    assert np.array_equal(est.coef_, fitted.coef_)
