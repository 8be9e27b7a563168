"""Coefficient mode (encrypted, n-weighted averaging of each factory's own model).

The averaged model must equal, rational for rational, Σ nᵢ·θᵢ / Σ nᵢ where θᵢ is the
float64 model each factory would publish on its own; it is not the pooled model.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import run_cli, run_cli_parallel
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from kind_helpers import coefficient_bundle, decrypt_coefficients, encrypt_coefficients, load_decrypted

import hefed
from hefed.data import compute_statistics, read_table
from hefed.errors import EncodingError, SchemaMismatchError, SingularSystemError
from hefed.kinds import DEFAULT_COEF_FRAC_BITS, DEFAULT_COEF_INT_BITS
from hefed.models import LinearModel
from hefed.roles import average_model, decrypt_bundle
from hefed.stats import CoefficientAggregate

TARGET = "y"
FEATURES = ["x1", "x2"]


# --------------------------------------------------------------------------------------
# Fixtures and helpers (local to this file)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coef_keys():
    """A small insecure key pair for this module (public, private)."""
    return hefed.generate_keypair(1024, insecure_test_key=True)


def _factories(seed: int = 7) -> dict[str, pd.DataFrame]:
    """Three factories with different slopes and feature ranges (so local fits differ), dyadic values."""
    rng = np.random.default_rng(seed)
    frames = {}
    for i, (name, n) in enumerate([("plant-a", 40), ("plant-b", 25), ("plant-c", 61)]):
        x1 = rng.integers(0, 400, n) / 8 + 30 * i
        x2 = rng.integers(-200, 200, n) / 16
        noise = rng.integers(-64, 64, n) / 32
        y = 5 + (1.5 + i) * x1 - (0.5 * i + 0.25) * x2 + noise
        frames[name] = pd.DataFrame({"x1": x1, "x2": x2, TARGET: y})
    return frames


@pytest.fixture
def factories() -> dict[str, pd.DataFrame]:
    return _factories()


def _local_model(frame: pd.DataFrame, ridge: float) -> LinearModel:
    """The float64 model the factory publishes on its own (exactly what it encrypts)."""
    return hefed.solve(compute_statistics(frame, TARGET, FEATURES), ridge)


def _expected_average(frames: dict[str, pd.DataFrame], ridge: float) -> tuple[dict[str, Fraction], Fraction]:
    """Σ nᵢ·Fraction(θᵢ) / Σ nᵢ computed independently from each factory's float64 coefficients."""
    total_n = 0
    sums = {f: Fraction(0) for f in FEATURES}
    intercept = Fraction(0)
    for frame in frames.values():
        model = _local_model(frame, ridge)
        n = len(frame)
        total_n += n
        for name, value in zip(model.feature_names_in_, model.coef_, strict=True):
            sums[str(name)] += n * Fraction(float(value))
        intercept += n * Fraction(float(model.intercept_))
    return {f: v / total_n for f, v in sums.items()}, intercept / total_n


def _encodable(value: float) -> bool:
    exact = Fraction(float(value))
    return (exact * 2**DEFAULT_COEF_FRAC_BITS).denominator == 1 and abs(exact) < 2**DEFAULT_COEF_INT_BITS


def _coefficient_aggregate(frames, public_key, private_key, ridge: float) -> CoefficientAggregate:
    bundles = [encrypt_coefficients(frame, TARGET, public_key, FEATURES, factory_id=name, ridge=ridge)
               for name, frame in frames.items()]
    return decrypt_coefficients(hefed.aggregate(bundles), private_key, min_contributors=len(frames))


def _by_name(model: LinearModel) -> dict[str, Fraction]:
    return {str(f): c for f, c in zip(model.feature_names_in_, model.coef_exact_, strict=True)}


# --------------------------------------------------------------------------------------
# Exactness of the n-weighted average
# --------------------------------------------------------------------------------------

_grid = st.integers(-400, 400).map(lambda k: k / 16)


@st.composite
def consortia(draw) -> dict[str, pd.DataFrame]:
    frames = {}
    for i in range(3):
        n = draw(st.integers(6, 18))
        rows = draw(st.lists(st.tuples(_grid, _grid, _grid), min_size=n, max_size=n))
        frame = pd.DataFrame(rows, columns=["x1", "x2", "noise"])
        slope = draw(st.integers(-4, 4))
        frame[TARGET] = 1.5 + slope * frame["x1"] - 0.25 * frame["x2"] + frame["noise"]
        frames[f"f{i}"] = frame.drop(columns="noise")
    return frames


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=consortia(), ridge=st.sampled_from([0.0, 0.5, 3.0]))
def test_average_is_exact_n_weighted_mean_of_local_float_models(coef_keys, frames, ridge):
    public_key, private_key = coef_keys
    try:
        locals_ = [_local_model(frame, ridge) for frame in frames.values()]
    except SingularSystemError:
        assume(False)
    assume(all(_encodable(v) for m in locals_ for v in [*m.coef_, m.intercept_]))
    expected_coef, expected_intercept = _expected_average(frames, ridge)

    agg = _coefficient_aggregate(frames, public_key, private_key, ridge)
    assert agg.n == sum(len(f) for f in frames.values())
    assert agg.contributors == list(frames)
    for model in (average_model(agg), hefed.solve(agg)):
        assert _by_name(model) == expected_coef
        assert model.intercept_exact_ == expected_intercept
        assert model.intercept_ == float(expected_intercept)
        assert [float(c) for c in model.coef_] == [float(expected_coef[str(f)]) for f in model.feature_names_in_]
        assert model.n_samples_ == agg.n


def test_average_weights_by_rows_not_by_factory(coef_keys, factories):
    """Guard against an unweighted mean: the factories have different n and different models."""
    public_key, private_key = coef_keys
    agg = _coefficient_aggregate(factories, public_key, private_key, 0.0)
    locals_ = [_local_model(f, 0.0) for f in factories.values()]
    unweighted = sum(Fraction(float(m.intercept_)) for m in locals_) / len(locals_)
    assert average_model(agg).intercept_exact_ != unweighted
    assert agg.weighted_intercept == sum(len(f) * Fraction(float(m.intercept_))
                                         for f, m in zip(factories.values(), locals_, strict=True))


def test_averaged_model_differs_from_pooled_statistics_model(coef_keys, factories):
    public_key, private_key = coef_keys
    averaged = hefed.solve(_coefficient_aggregate(factories, public_key, private_key, 0.0))
    stats_bundles = [hefed.encrypt_statistics(f, TARGET, public_key, FEATURES, factory_id=name)
                     for name, f in factories.items()]
    pooled = hefed.solve(hefed.decrypt_statistics(hefed.aggregate(stats_bundles), private_key, allow_unsigned=True))
    pooled_frame = pd.concat(factories.values(), ignore_index=True)
    assert pooled.coef_exact_ == hefed.solve(compute_statistics(pooled_frame, TARGET, FEATURES)).coef_exact_
    # same features, same target, very different coefficients: the modes really differ
    assert list(averaged.feature_names_in_) == list(pooled.feature_names_in_)
    diff = np.abs(np.asarray(averaged.coef_) - np.asarray(pooled.coef_))
    assert diff.max() > 0.05, (averaged.coef_, pooled.coef_)
    assert averaged.n_samples_ == pooled.n_samples_ == len(pooled_frame)
    assert not averaged.has_inference and pooled.has_inference


def test_encrypt_table_coefficient_mode_matches_encrypt_coefficients(coef_keys, factories):
    public_key, private_key = coef_keys
    bundles = [hefed.encrypt_table(f, TARGET, public_key, features=FEATURES, factory_id=name,
                                   request=hefed.CoefficientsRequest(ridge=2.0)).bundle
               for name, f in factories.items()]
    assert {b.kind for b in bundles} == {"coefficients"}
    model = average_model(decrypt_bundle(hefed.aggregate(bundles), private_key, allow_unsigned=True))
    expected_coef, expected_intercept = _expected_average(factories, 2.0)
    assert _by_name(model) == expected_coef and model.intercept_exact_ == expected_intercept


def test_feature_order_at_each_factory_does_not_matter(coef_keys, factories):
    public_key, private_key = coef_keys
    orders = [["x2", "x1"], ["x1", "x2"], ["x2", "x1"]]
    bundles = [encrypt_coefficients(f[[*order, TARGET]], TARGET, public_key, order, factory_id=name)
               for (name, f), order in zip(factories.items(), orders, strict=True)]
    model = average_model(decrypt_coefficients(hefed.aggregate(bundles), private_key))
    assert list(model.feature_names_in_) == ["x2", "x1"]  # the first bundle's display order
    expected_coef, expected_intercept = _expected_average(factories, 0.0)
    assert _by_name(model) == expected_coef and model.intercept_exact_ == expected_intercept
    assert list(model.coef_) == [float(expected_coef["x2"]), float(expected_coef["x1"])]


def test_models_through_the_origin(coef_keys, factories):
    public_key, private_key = coef_keys
    bundles = [encrypt_coefficients(f, TARGET, public_key, FEATURES, factory_id=name, fit_intercept=False)
               for name, f in factories.items()]
    model = average_model(decrypt_coefficients(hefed.aggregate(bundles), private_key))
    assert not model.fit_intercept and model.intercept_exact_ == 0
    total = sum(len(f) for f in factories.values())
    for name in FEATURES:
        expected = sum(len(f) * Fraction(float(
            dict(zip(FEATURES, hefed.solve(compute_statistics(f, TARGET, FEATURES), 0.0, False).coef_,
                     strict=True))[name])) for f in factories.values()) / total
        assert _by_name(model)[name] == expected
    # a factory with an intercept and one without never mix
    with_intercept = encrypt_coefficients(factories["plant-a"], TARGET, public_key, FEATURES, factory_id="other")
    with pytest.raises(SchemaMismatchError):
        hefed.aggregate([bundles[0], with_intercept])


# --------------------------------------------------------------------------------------
# Encoding refusals, singular local fits
# --------------------------------------------------------------------------------------


def _hand_model(coef: float, intercept: float = 1.0) -> LinearModel:
    return LinearModel(["x1"], TARGET, [Fraction(coef)], Fraction(intercept), n_samples=10, sse=None, sst=None)


@pytest.mark.parametrize("coef", [2.0**-96, 3 * 2.0**-96, -(2.0**40 - 2.0**-12), 2.0**39 + 0.5, 0.0])
def test_encodable_coefficients_are_accepted(coef_keys, coef):
    public_key, private_key = coef_keys
    bundles = [coefficient_bundle(_hand_model(coef), public_key, f"f{i}") for i in range(3)]
    agg = decrypt_coefficients(hefed.aggregate(bundles), private_key)
    assert agg.weighted_coef["x1"] == 30 * Fraction(coef)
    assert average_model(agg).coef_exact_ == [Fraction(coef)]


@pytest.mark.parametrize("coef", [2.0**-97, 2.0**-50 + 2.0**-100, 2.0**40, -(2.0**40), 2.0**60])
def test_unencodable_coefficients_are_refused(coef_keys, coef):
    with pytest.raises(EncodingError) as info:
        coefficient_bundle(_hand_model(coef), coef_keys[0], "plant-z")
    assert "plant-z" in str(info.value) and "x1" in str(info.value)


def test_unencodable_intercept_is_refused(coef_keys):
    with pytest.raises(EncodingError, match="intercept"):
        coefficient_bundle(_hand_model(1.0, intercept=2.0**-100), coef_keys[0], "plant-z")


def test_real_fit_with_too_fine_coefficient_is_refused(coef_keys):
    # exact slope 2^-72 / 2^39 = 2^-111: below 2^-96
    frame = pd.DataFrame({"x1": [0.0, 0.0, 2.0**39, 2.0**39], TARGET: [0.0, 0.0, 2.0**-72, 2.0**-72]})
    with pytest.raises(EncodingError, match="binary digits below 2\\^-96"):
        encrypt_coefficients(frame, TARGET, coef_keys[0], ["x1"], factory_id="tiny")


def test_real_fit_with_huge_coefficient_is_refused(coef_keys):
    # exact slope 2^30 / 2^-20 = 2^50: reaches 2^40
    frame = pd.DataFrame({"x1": [0.0, 0.0, 2.0**-20, 2.0**-20], TARGET: [0.0, 0.0, 2.0**30, 2.0**30]})
    with pytest.raises(EncodingError, match="2\\^40"):
        encrypt_coefficients(frame, TARGET, coef_keys[0], ["x1"], factory_id="huge")


def test_singular_factory_names_its_id(coef_keys, factories):
    frame = factories["plant-b"].assign(x2=3.0)  # constant: collinear with the intercept
    with pytest.raises(SingularSystemError) as info:
        encrypt_coefficients(frame, TARGET, coef_keys[0], FEATURES, factory_id="plant-b")
    message = str(info.value)
    assert message.startswith("plant-b:") and "coefficient mode" in message
    assert "x2" in message and info.value.columns == ["x2"]


def test_singular_factory_names_its_file(coef_keys, factories, tmp_path):
    path = tmp_path / "plant-b.csv"
    factories["plant-b"].assign(x1=0.0).to_csv(path, index=False)
    with pytest.raises(SingularSystemError) as info:
        encrypt_coefficients(path, TARGET, coef_keys[0], FEATURES, factory_id="plant-b")
    assert str(path) in str(info.value)
    assert "x1" in info.value.columns


def test_singular_local_fit_is_fine_with_ridge(coef_keys, factories):
    frame = factories["plant-b"].assign(x2=3.0)
    bundle = encrypt_coefficients(frame, TARGET, coef_keys[0], FEATURES, factory_id="plant-b", ridge=1.0)
    assert bundle.kind == "coefficients"


# --------------------------------------------------------------------------------------
# Kinds never mix; files
# --------------------------------------------------------------------------------------


def test_coefficient_and_statistics_bundles_never_mix(coef_keys, factories):
    public_key, private_key = coef_keys
    names = list(factories)
    coef = [encrypt_coefficients(factories[n], TARGET, public_key, FEATURES, factory_id=n) for n in names]
    stats = [hefed.encrypt_statistics(factories[n], TARGET, public_key, FEATURES, factory_id=n) for n in names]
    with pytest.raises(SchemaMismatchError, match="kind"):
        hefed.aggregate([coef[0], stats[1], coef[2]])
    with pytest.raises(SchemaMismatchError, match="kind"):
        hefed.aggregate([stats[0], coef[1]])
    with pytest.raises(SchemaMismatchError):
        decrypt_coefficients(hefed.aggregate(stats), private_key)
    with pytest.raises(SchemaMismatchError):
        hefed.decrypt_statistics(hefed.aggregate(coef), private_key, allow_unsigned=True)
    assert isinstance(decrypt_bundle(hefed.aggregate(coef), private_key, allow_unsigned=True), CoefficientAggregate)


def test_coefficient_aggregate_file_round_trip(coef_keys, factories, tmp_path):
    public_key, private_key = coef_keys
    agg = _coefficient_aggregate(factories, public_key, private_key, 0.5)
    agg.save(tmp_path / "coefficients.json")
    loaded = load_decrypted(tmp_path / "coefficients.json")
    assert isinstance(loaded, CoefficientAggregate)
    assert (loaded.n, loaded.weighted_intercept, loaded.weighted_coef) == (agg.n, agg.weighted_intercept,
                                                                           agg.weighted_coef)
    assert hefed.solve(loaded).coef_exact_ == average_model(agg).coef_exact_


def test_averaged_model_json_round_trip_has_null_r2(coef_keys, factories, tmp_path):
    public_key, private_key = coef_keys
    model = average_model(_coefficient_aggregate(factories, public_key, private_key, 0.0))
    path = tmp_path / "model.json"
    model.save(path, exact=True)
    obj = json.loads(path.read_text())
    assert obj["r2"] is None and obj["sse"] is None
    assert obj["exact"]["sse"] is None and obj["exact"]["sst"] is None
    assert "inference" not in obj
    assert obj["n"] == sum(len(f) for f in factories.values())
    assert obj["contributors"] == list(factories)
    loaded = LinearModel.load(path)
    assert loaded.coef_exact_ == model.coef_exact_ and loaded.intercept_exact_ == model.intercept_exact_
    assert np.isnan(loaded.r2_) and not loaded.has_inference
    assert list(loaded.coef_) == list(model.coef_)


# --------------------------------------------------------------------------------------
# CLI, as real subprocesses
# --------------------------------------------------------------------------------------


def test_cli_coefficient_mode_flow(tmp_path):
    frames = _factories(seed=11)
    keys = tmp_path / "keys"
    result = run_cli("keygen", "--out-dir", keys, "--bits", 1024, "--insecure-test-key")
    assert result.returncode == 0, result.stderr
    csvs: dict[str, Path] = {}
    commands = []
    for name, frame in frames.items():
        csvs[name] = tmp_path / f"{name}.csv"
        frame.to_csv(csvs[name], index=False)
        commands.append(["encrypt", csvs[name], "--target", TARGET, "--public-key", keys / "public_key.json",
                         "--factory-id", name, "--out", tmp_path / f"{name}.bundle.json",
                         "--mode", "coefficients", "--ridge", "1"])
    for res in run_cli_parallel(commands):
        assert res.returncode == 0, res.stderr
        assert "coefficients bundle" in res.stdout
    steps = [
        ("aggregate", *[tmp_path / f"{n}.bundle.json" for n in frames], "--out", tmp_path / "agg.json"),
        ("decrypt", "--allow-unsigned", tmp_path / "agg.json", "--private-key", keys / "private_key.json", "--out",
         tmp_path / "coefficients.json"),
        ("solve", tmp_path / "coefficients.json", "--out", tmp_path / "model.json", "--exact"),
    ]
    for step in steps:
        res = run_cli(*step)
        assert res.returncode == 0, (step[0], res.stderr)
    assert "n-weighted average" in res.stdout

    read_back = {name: read_table(path) for name, path in csvs.items()}
    expected_coef, expected_intercept = _expected_average(read_back, 1.0)
    obj = json.loads((tmp_path / "model.json").read_text())
    assert obj["features"] == FEATURES
    assert obj["coef"] == [float(expected_coef[f]) for f in FEATURES]
    assert obj["intercept"] == float(expected_intercept)
    assert [Fraction(c) for c in obj["exact"]["coef"]] == [expected_coef[f] for f in FEATURES]
    assert Fraction(obj["exact"]["intercept"]) == expected_intercept
    assert obj["r2"] is None
    assert obj["n"] == sum(len(f) for f in frames.values())
    # the library's own encrypted path, with the keys keygen wrote, gives the same model
    public_key = hefed.load_public_key(keys / "public_key.json")
    private_key = hefed.load_private_key(keys / "private_key.json")
    library = hefed.solve(_coefficient_aggregate(read_back, public_key, private_key, 1.0))
    saved = LinearModel.load(tmp_path / "model.json")
    assert saved.coef_exact_ == library.coef_exact_ and saved.intercept_exact_ == library.intercept_exact_
