"""Held-out evaluation: reproducible holdouts, exact local residual sums, and encrypted
evaluation bundles that aggregate and decrypt to exactly the pooled sums."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

import hefed
from hefed.errors import (
    OutputExistsError,
    SchemaMismatchError,
    SingularSystemError,
    TooFewContributorsError,
    UsageError,
)
from hefed.kinds import evaluation_parameters
from hefed.stats import Encoding, EvaluationSums

TARGET = "co2_t"
FEATURES = ["coal_t", "natural_gas_t", "diesel_t", "electricity_mwh", "clinker_t"]
SUM_FIELDS = ("sse", "sae", "sum_y", "sum_y2")


# --------------------------------------------------------------------------------------
# Helpers: the exact sums, computed here independently of hefed
# --------------------------------------------------------------------------------------


def exact_sums(model: hefed.LinearModel, frame: pd.DataFrame, target: str) -> dict[str, Fraction | int]:
    """n, Σr², Σ|r|, Σy, Σy² with r = y − (b0 + Σ b_j x_j), all in exact rationals."""
    names = [str(f) for f in model.feature_names_in_]
    coef = [Fraction(float(c)) for c in model.coef_]
    intercept = Fraction(float(model.intercept_))
    sse = sae = sum_y = sum_y2 = Fraction(0)
    for _, row in frame.iterrows():
        y = Fraction(float(row[target]))
        pred = intercept + sum((c * Fraction(float(row[name])) for c, name in zip(coef, names, strict=True)),
                               Fraction(0))
        r = y - pred
        sse += r * r
        sae += abs(r)
        sum_y += y
        sum_y2 += y * y
    return {"n": len(frame), "sse": sse, "sae": sae, "sum_y": sum_y, "sum_y2": sum_y2}


def assert_sums_equal(sums: EvaluationSums, expected: dict[str, Fraction | int]) -> None:
    assert sums.n == expected["n"]
    for name in SUM_FIELDS:
        value = getattr(sums, name)
        assert isinstance(value, Fraction), name
        assert value == expected[name], name


def add_sums(parts: list[dict[str, Fraction | int]]) -> dict[str, Fraction | int]:
    return {k: sum((p[k] for p in parts), Fraction(0) if k != "n" else 0) for k in ("n", *SUM_FIELDS)}


def rel_close(a: float, b: float, rtol: float) -> bool:
    return math.isclose(a, b, rel_tol=rtol, abs_tol=0.0)


# --------------------------------------------------------------------------------------
# split_holdout
# --------------------------------------------------------------------------------------


def _numbered(n: int) -> pd.DataFrame:
    return pd.DataFrame({"row": np.arange(n), "x": np.arange(n) * 0.5, TARGET: np.arange(n) * 2.0 + 1})


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 400), fraction=st.floats(0.001, 0.999), seed=st.integers(0, 2**32 - 1))
def test_split_holdout_is_a_partition_of_round_f_n_rows(n, fraction, seed):
    frame = _numbered(n)
    k = round(fraction * n)
    if k < 1 or k > n - 1:
        with pytest.raises(UsageError):
            hefed.split_holdout(frame, fraction, seed)
        return
    train, holdout = hefed.split_holdout(frame, fraction, seed)
    assert len(holdout) == k
    assert len(train) == n - k
    train_rows, holdout_rows = set(train["row"]), set(holdout["row"])
    assert train_rows.isdisjoint(holdout_rows)
    assert train_rows | holdout_rows == set(range(n))
    # Both parts keep the original order, with a fresh index, and intact rows.
    assert list(train["row"]) == sorted(train_rows)
    assert list(holdout["row"]) == sorted(holdout_rows)
    assert list(train.index) == list(range(n - k))
    pd.testing.assert_frame_equal(holdout, frame.iloc[holdout["row"].to_numpy()].reset_index(drop=True))


def test_split_holdout_is_reproducible_for_a_seed_and_depends_on_it():
    frame = _numbered(200)
    first = hefed.split_holdout(frame, 0.3, seed=11)
    again = hefed.split_holdout(frame.copy(), 0.3, seed=11)
    for a, b in zip(first, again, strict=True):
        pd.testing.assert_frame_equal(a, b)
    other = hefed.split_holdout(frame, 0.3, seed=12)
    assert set(other[1]["row"]) != set(first[1]["row"])
    # The default seed is fixed too.
    pd.testing.assert_frame_equal(hefed.split_holdout(frame, 0.3)[1], hefed.split_holdout(frame, 0.3)[1])


@pytest.mark.parametrize("fraction", [0, 0.0, 1, 1.0, -0.1, 1.5, float("nan"), float("inf"), "0.2", None])
def test_split_holdout_refuses_fractions_outside_the_open_unit_interval(fraction):
    with pytest.raises(UsageError):
        hefed.split_holdout(_numbered(50), fraction, 0)


@pytest.mark.parametrize(("n", "fraction"), [(1, 0.5), (10, 0.01), (10, 0.99), (3, 0.1), (0, 0.5)])
def test_split_holdout_refuses_an_empty_side(n, fraction):
    with pytest.raises(UsageError):
        hefed.split_holdout(_numbered(n), fraction, 0)


# --------------------------------------------------------------------------------------
# evaluate_local: exact sums
# --------------------------------------------------------------------------------------


_values = st.integers(-10**7, 10**7).map(lambda v: v / 1000)


@st.composite
def _table(draw):
    p = draw(st.integers(1, 3))
    n_train = draw(st.integers(p + 3, 25))
    n_test = draw(st.integers(1, 15))
    cols = {f"f{j}": draw(st.lists(_values, min_size=n_train + n_test, max_size=n_train + n_test))
            for j in range(p)}
    cols["resp"] = draw(st.lists(_values, min_size=n_train + n_test, max_size=n_train + n_test))
    frame = pd.DataFrame(cols)
    return frame.iloc[:n_train].reset_index(drop=True), frame.iloc[n_train:].reset_index(drop=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables=_table(), ridge=st.sampled_from([0.0, 0.5, 3.0]))
def test_evaluate_local_sums_are_exact_rationals(tables, ridge):
    train, test = tables
    try:
        model = hefed.solve(hefed.compute_statistics(train, "resp"), ridge=ridge)
    except SingularSystemError:
        assume(False)
    sums = hefed.evaluate_local(model, test, "resp")
    expected = exact_sums(model, test, "resp")
    assert_sums_equal(sums, expected)
    assert sums.target == "resp"
    assert sums.features == [str(f) for f in model.feature_names_in_]
    assert sums.mse == float(expected["sse"] / expected["n"])
    assert sums.mae == float(expected["sae"] / expected["n"])
    assert sums.rmse == math.sqrt(float(expected["sse"] / expected["n"]))


def test_evaluate_local_with_an_arbitrary_dyadic_model_and_extra_columns():
    # A hand-made model with coefficients of very different binary exponents.
    model = hefed.LinearModel(
        ["b", "a"], "y", [Fraction(3, 2**60), Fraction(-12345, 7)], Fraction(1, 3),
        n_samples=10, sse=Fraction(1), sst=Fraction(2),
    )
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "a": np.round(rng.normal(0, 1000, 40), 3),
        "noise": rng.normal(size=40),  # not a feature; must be ignored, even if not encodable
        "y": np.round(rng.normal(0, 10, 40), 2),
        "b": np.round(rng.uniform(0, 2**20, 40), 1),
    })
    sums = hefed.evaluate_local(model, frame, "y")
    assert_sums_equal(sums, exact_sums(model, frame, "y"))
    # The default target is the model's.
    assert_sums_equal(hefed.evaluate_local(model, frame), exact_sums(model, frame, "y"))


def test_evaluate_local_metrics_match_sklearn(consortium):
    frame = consortium["cement-01"]
    train, test = hefed.split_holdout(frame, 0.3, seed=2)
    model = hefed.solve(hefed.compute_statistics(train, TARGET, FEATURES))
    metrics = hefed.evaluate_local(model, test, TARGET).metrics()
    y, pred = test[TARGET].to_numpy(), model.predict(test)
    assert metrics["n"] == len(test)
    assert rel_close(metrics["mse"], mean_squared_error(y, pred), 1e-12)
    assert rel_close(metrics["rmse"], math.sqrt(mean_squared_error(y, pred)), 1e-12)
    assert rel_close(metrics["mae"], mean_absolute_error(y, pred), 1e-12)
    assert rel_close(metrics["r2"], r2_score(y, pred), 1e-12)


def test_evaluate_local_reads_a_file_like_a_frame(tmp_path, consortium):
    frame = consortium["steel-02"]
    model = hefed.solve(hefed.compute_statistics(frame, TARGET, FEATURES[:4]))
    path = tmp_path / "holdout.csv"
    frame.to_csv(path, index=False)
    from_file = hefed.evaluate_local(model, path, TARGET)
    assert_sums_equal(from_file, exact_sums(model, pd.read_csv(path), TARGET))
    assert from_file == hefed.evaluate_local(model, pd.read_csv(path), TARGET)


def test_r2_of_a_constant_holdout_follows_sklearn():
    model = hefed.LinearModel(["x"], "y", [Fraction(1)], Fraction(0), n_samples=3, sse=Fraction(0),
                              sst=Fraction(1))
    perfect = pd.DataFrame({"x": [2.0, 2.0, 2.0], "y": [2.0, 2.0, 2.0]})
    off = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [2.0, 2.0, 2.0]})
    assert hefed.evaluate_local(model, perfect).r2 == r2_score(perfect["y"], model.predict(perfect)) == 1.0
    assert hefed.evaluate_local(model, off).r2 == r2_score(off["y"], model.predict(off)) == 0.0


# --------------------------------------------------------------------------------------
# Encrypted evaluation
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def setting():
    """Four factories split 80/20, the model fitted on the pooled training rows, local sums per factory."""
    factories = hefed.datasets.make_factories(n_factories=4, seed=1)
    splits = {name: hefed.split_holdout(frame, 0.2, seed=5) for name, frame in factories.items()}
    pooled = pd.concat([train for train, _ in splits.values()], ignore_index=True)
    model = hefed.solve(hefed.compute_statistics(pooled, TARGET, FEATURES))
    holdouts = {name: test for name, (_, test) in splits.items()}
    return model, holdouts


@pytest.fixture(scope="module")
def evaluation_bundles(setting, keypair):
    model, holdouts = setting
    return [hefed.encrypt_evaluation(model, test, TARGET, keypair[0], name) for name, test in holdouts.items()]


def test_encrypted_evaluation_decrypts_to_exactly_the_sum_of_local_sums(setting, evaluation_bundles, keypair):
    model, holdouts = setting
    local = {name: exact_sums(model, test, TARGET) for name, test in holdouts.items()}
    for name, test in holdouts.items():
        assert_sums_equal(hefed.evaluate_local(model, test, TARGET), local[name])
    aggregate = hefed.aggregate(evaluation_bundles)
    assert aggregate.kind == "evaluation"
    result = hefed.decrypt_evaluation(aggregate, keypair[1], allow_unsigned=True)
    assert_sums_equal(result, add_sums(list(local.values())))
    assert result.contributors == list(holdouts)
    assert result.target == TARGET
    assert result.features == FEATURES
    # decrypt_bundle dispatches on the kind.
    assert hefed.decrypt_bundle(aggregate, keypair[1], allow_unsigned=True) == result

    y = np.concatenate([test[TARGET].to_numpy() for test in holdouts.values()])
    pred = np.concatenate([model.predict(test) for test in holdouts.values()])
    metrics = result.metrics()
    assert metrics["n"] == len(y)
    assert rel_close(metrics["mse"], mean_squared_error(y, pred), 1e-12)
    assert rel_close(metrics["rmse"], math.sqrt(mean_squared_error(y, pred)), 1e-12)
    assert rel_close(metrics["mae"], mean_absolute_error(y, pred), 1e-12)
    assert rel_close(metrics["r2"], r2_score(y, pred), 1e-12)


def test_evaluation_bundles_aggregate_from_files_too(tmp_path, evaluation_bundles, keypair):
    paths = []
    for i, bundle in enumerate(evaluation_bundles):
        paths.append(bundle.save(tmp_path / f"e{i}.json"))
    from_files = hefed.decrypt_evaluation(hefed.aggregate(paths), keypair[1], allow_unsigned=True)
    assert from_files == hefed.decrypt_evaluation(hefed.aggregate(evaluation_bundles), keypair[1], allow_unsigned=True)


def test_evaluation_and_statistics_bundles_never_mix(setting, evaluation_bundles, keypair, consortium_bundles):
    with pytest.raises(SchemaMismatchError, match="kind"):
        hefed.aggregate([evaluation_bundles[0], consortium_bundles[1]])
    with pytest.raises(SchemaMismatchError, match="kind"):
        hefed.aggregate([consortium_bundles[0], evaluation_bundles[1]])
    evaluation_aggregate = hefed.aggregate(evaluation_bundles)
    with pytest.raises(SchemaMismatchError):
        hefed.decrypt_statistics(evaluation_aggregate, keypair[1], allow_unsigned=True)
    with pytest.raises(SchemaMismatchError):
        hefed.decrypt_evaluation(hefed.aggregate(consortium_bundles), keypair[1], allow_unsigned=True)


def _other_model(model: hefed.LinearModel, coef: list[Fraction], intercept: Fraction) -> hefed.LinearModel:
    return hefed.LinearModel(list(model.feature_names_in_), model.target_, coef, intercept,
                             n_samples=model.n_samples_, sse=model.sse_exact_, sst=model.sst_exact_)


def test_evaluation_bundles_of_models_with_different_parameters_refuse_to_aggregate(setting, keypair):
    model, holdouts = setting
    coarse = _other_model(model, [Fraction(round(float(c) * 2)) / 2 for c in model.coef_], Fraction(1, 4))
    assert evaluation_parameters(coarse, Encoding()) != evaluation_parameters(model, Encoding())
    (a, test_a), (b, test_b), (c, test_c) = list(holdouts.items())[:3]
    one = hefed.encrypt_evaluation(model, test_a, TARGET, keypair[0], a)
    two = hefed.encrypt_evaluation(coarse, test_b, TARGET, keypair[0], b)
    with pytest.raises(SchemaMismatchError, match="parameters"):
        hefed.aggregate([one, two])
    with pytest.raises(SchemaMismatchError, match="parameters"):
        hefed.aggregate([two, one])


def test_evaluation_bundles_of_different_models_with_equal_parameters_refuse_to_aggregate(setting, keypair):
    model, holdouts = setting
    shifted = _other_model(model, list(model.coef_exact_), Fraction(float(model.intercept_)) + 1)
    params, shifted_params = evaluation_parameters(model, Encoding()), evaluation_parameters(shifted, Encoding())
    assert {k: v for k, v in params.items() if k != "model_digest"} == {
        k: v for k, v in shifted_params.items() if k != "model_digest"
    }
    assert params["model_digest"] != shifted_params["model_digest"]
    (a, test_a), (b, test_b), (c, test_c) = list(holdouts.items())[:3]
    bundles = [hefed.encrypt_evaluation(model, test_a, TARGET, keypair[0], a),
               hefed.encrypt_evaluation(model, test_b, TARGET, keypair[0], b),
               hefed.encrypt_evaluation(shifted, test_c, TARGET, keypair[0], c)]
    with pytest.raises(SchemaMismatchError):
        hefed.aggregate(bundles)


def test_evaluation_threshold_applies(evaluation_bundles, keypair):
    two = hefed.aggregate(evaluation_bundles[:2])
    with pytest.raises(TooFewContributorsError):
        hefed.decrypt_evaluation(two, keypair[1], allow_unsigned=True)
    with pytest.raises(TooFewContributorsError):
        hefed.decrypt_bundle(two, keypair[1], allow_unsigned=True)
    with pytest.raises(TooFewContributorsError):
        hefed.decrypt_evaluation(hefed.aggregate(evaluation_bundles), keypair[1], min_contributors=5,
                allow_unsigned=True)
    with pytest.raises(TooFewContributorsError):
        hefed.decrypt_evaluation(evaluation_bundles[0], keypair[1], allow_unsigned=True)
    assert hefed.decrypt_evaluation(two, keypair[1], min_contributors=2, allow_unsigned=True).n == sum(
        hefed.decrypt_evaluation(b, keypair[1], min_contributors=1,
                allow_unsigned=True).n for b in evaluation_bundles[:2])


def test_evaluation_bundle_reveals_no_local_sum(setting, evaluation_bundles, keypair):
    model, holdouts = setting
    name, test = next(iter(holdouts.items()))
    bundle = evaluation_bundles[0]
    obj = bundle.to_dict()
    text = json.dumps(obj)
    assert set(obj) == {"format", "version", "kind", "public_key", "key_fingerprint", "schema", "encoding",
                        "parameters", "layout_digest", "contributors", "ciphertexts"}
    # The only numbers besides the encoding are the public parameters, which depend on the model alone.
    encoding = Encoding()
    assert obj["parameters"] == evaluation_parameters(model, encoding)
    assert obj["encoding"] == encoding.to_dict()
    # The integer sums and the metrics appear nowhere, in any notation.
    sums = hefed.evaluate_local(model, test, TARGET)
    s, f = obj["parameters"]["scale_bits"], encoding.frac_bits
    integers = [sums.sse * 2 ** (2 * s), sums.sae * 2**s, sums.sum_y * 2**f, sums.sum_y2 * 2 ** (2 * f)]
    for value in integers:
        assert value.denominator == 1
        assert str(value.numerator) not in text
    for value in (sums.mse, sums.rmse, sums.mae, sums.r2, float(sums.sum_y), float(sums.sum_y2)):
        assert repr(value) not in text
        assert f"{value:.6g}" not in text
    # The metadata do not depend on the data: another holdout gives the same file but the ciphertexts.
    other = hefed.encrypt_evaluation(model, test.iloc[: len(test) // 2], TARGET, keypair[0], name)
    a, b = bundle.to_dict(), other.to_dict()
    assert len(a.pop("ciphertexts")) == len(b.pop("ciphertexts"))
    assert a == b
    # Encryption is randomised: the same holdout twice gives unrelated ciphertexts.
    again = hefed.encrypt_evaluation(model, test, TARGET, keypair[0], name)
    assert set(again.ciphertexts).isdisjoint(bundle.ciphertexts)


def test_evaluation_sums_save_load_round_trip(tmp_path, setting, evaluation_bundles, keypair):
    result = hefed.decrypt_evaluation(hefed.aggregate(evaluation_bundles), keypair[1], allow_unsigned=True)
    path = tmp_path / "evaluation.json"
    result.save(path)
    loaded = EvaluationSums.load(path)
    assert loaded == result
    for name in SUM_FIELDS:
        assert isinstance(getattr(loaded, name), Fraction)
    assert loaded.metrics() == result.metrics()
    obj = json.loads(path.read_text())
    assert obj["metrics"] == result.metrics()
    assert Fraction(obj["exact"]["sse"]) == result.sse
    with pytest.raises(OutputExistsError):
        result.save(path)
    model, holdouts = setting
    local = hefed.evaluate_local(model, next(iter(holdouts.values())), TARGET)
    local.save(path, force=True)
    assert EvaluationSums.load(path) == local
