"""Library-level protocol checks: every refusal raises the precise hefed.errors type,
files round-trip, and nothing in a bundle reveals a plaintext statistic."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from phe.util import int_to_base64

import hefed
from hefed.errors import (
    DataError,
    DuplicateContributorError,
    EncodingError,
    HefedError,
    InsecureKeyError,
    IntegrityError,
    InvalidFileError,
    KeyMismatchError,
    OutputExistsError,
    RoundedValuesWarning,
    SchemaMismatchError,
    SingularSystemError,
    TooFewContributorsError,
)
from hefed.protocol import Bundle
from hefed.stats import ONES, SufficientStatistics, solve_exact_coefficients

TARGET = "co2_t"


def _encrypt(frame, public_key, name, target=TARGET, features=None, encoding=None):
    return hefed.encrypt_statistics(frame, target, public_key, features, factory_id=name, encoding=encoding)


# --------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------


def test_wrong_private_key_is_refused(consortium_bundles, other_keypair):
    aggregate = hefed.aggregate(consortium_bundles)
    with pytest.raises(KeyMismatchError) as info:
        hefed.decrypt_statistics(aggregate, other_keypair[1], allow_unsigned=True)
    assert aggregate.key_fingerprint in str(info.value)
    assert hefed.key_fingerprint(other_keypair[0]) in str(info.value)


def test_private_key_file_mode_is_0600_even_when_replacing(tmp_path, keypair):
    path = tmp_path / "private_key.json"
    hefed.save_private_key(keypair[1], path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    hefed.save_private_key(keypair[1], path, force=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = hefed.load_private_key(path)
    assert (loaded.p, loaded.q) == (keypair[1].p, keypair[1].q)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_private_key_readable_by_others_is_refused(tmp_path, keypair, mode):
    path = tmp_path / "private_key.json"
    hefed.save_private_key(keypair[1], path)
    path.chmod(mode)
    with pytest.raises(InsecureKeyError) as info:
        hefed.load_private_key(path)
    assert str(path) in str(info.value)
    loaded = hefed.load_private_key(path, allow_insecure_permissions=True)
    assert loaded.public_key.n == keypair[0].n


def test_key_round_trip_and_a_private_key_file_is_never_a_public_key(tmp_path, keypair):
    public_key, private_key = keypair
    hefed.save_public_key(public_key, tmp_path / "pub.json")
    hefed.save_private_key(private_key, tmp_path / "priv.json")
    assert hefed.load_public_key(tmp_path / "pub.json").n == public_key.n
    with pytest.raises(InsecureKeyError, match="private key"):  # whoever encrypts must never hold it
        hefed.load_public_key(tmp_path / "priv.json")
    assert stat.S_IMODE((tmp_path / "pub.json").stat().st_mode) == 0o644
    priv = hefed.load_private_key(tmp_path / "priv.json")
    assert (priv.p * priv.q) == public_key.n
    # the public key file never contains the primes
    text = (tmp_path / "pub.json").read_text()
    assert '"p"' not in text and '"q"' not in text


def test_private_key_whose_primes_do_not_match_n_is_refused(tmp_path, keypair, other_keypair):
    hefed.save_private_key(keypair[1], tmp_path / "priv.json")
    obj = json.loads((tmp_path / "priv.json").read_text())
    obj["pub"]["n"] = int_to_base64(other_keypair[0].n)
    (tmp_path / "bad.json").write_text(json.dumps(obj))
    (tmp_path / "bad.json").chmod(0o600)
    with pytest.raises(KeyMismatchError):
        hefed.load_private_key(tmp_path / "bad.json")


def test_keys_below_2048_bits_need_the_test_flag():
    with pytest.raises(InsecureKeyError):
        hefed.generate_keypair(1024)


# --------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------


def test_different_target_is_refused_naming_it(consortium, public_key):
    (a, fa), (b, fb), *_ = consortium.items()
    fb = fb.rename(columns={TARGET: "co2_tonnes"})
    with pytest.raises(SchemaMismatchError) as info:
        hefed.aggregate([_encrypt(fa, public_key, a), _encrypt(fb, public_key, b, target="co2_tonnes")])
    message = str(info.value)
    assert "target" in message and "'co2_t'" in message and "'co2_tonnes'" in message
    assert "features" not in message and "encoding" not in message


def test_different_feature_set_is_refused_naming_the_difference(consortium, consortium_features, public_key):
    (a, fa), (b, fb), *_ = consortium.items()
    fewer = [f for f in consortium_features if f != "clinker_t"]
    with pytest.raises(SchemaMismatchError) as info:
        hefed.aggregate([_encrypt(fa, public_key, a), _encrypt(fb, public_key, b, features=fewer)])
    message = str(info.value)
    assert "features" in message and "clinker_t" in message
    assert "target" not in message


@pytest.mark.parametrize(
    "encoding",
    [hefed.Encoding(frac_bits=64), hefed.Encoding(int_bits=48), hefed.Encoding(max_contributors=100)],
    ids=["frac_bits", "int_bits", "max_contributors"],
)
def test_different_encoding_is_refused_naming_it(consortium, public_key, encoding):
    (a, fa), (b, fb), *_ = consortium.items()
    with pytest.raises(SchemaMismatchError) as info:
        hefed.aggregate([_encrypt(fa, public_key, a), _encrypt(fb, public_key, b, encoding=encoding)])
    message = str(info.value)
    assert "encoding" in message
    changed = next(k for k, v in encoding.to_dict().items() if v != hefed.Encoding().to_dict()[k])
    assert changed in message
    assert "target" not in message and "features" not in message


def test_different_public_key_is_refused(consortium, public_key, other_keypair):
    (a, fa), (b, fb), *_ = consortium.items()
    with pytest.raises(SchemaMismatchError) as info:
        hefed.aggregate([_encrypt(fa, public_key, a), _encrypt(fb, other_keypair[0], b)])
    assert "public key" in str(info.value)


def test_columns_in_different_order_give_the_same_model(consortium, consortium_features, keypair):
    public_key, private_key = keypair
    rng = np.random.default_rng(0)
    bundles_shuffled = []
    for name, frame in consortium.items():
        order = list(rng.permutation(frame.columns))
        features = list(rng.permutation(consortium_features))
        bundles_shuffled.append(_encrypt(frame[order], public_key, name, features=features))
    bundles_plain = [_encrypt(frame, public_key, name) for name, frame in consortium.items()]
    shuffled = hefed.solve(hefed.decrypt_statistics(hefed.aggregate(bundles_shuffled), private_key,
            allow_unsigned=True))
    plain = hefed.solve(hefed.decrypt_statistics(hefed.aggregate(bundles_plain), private_key, allow_unsigned=True))
    by_name = dict(zip(plain.feature_names_in_, plain.coef_exact_, strict=True))
    assert dict(zip(shuffled.feature_names_in_, shuffled.coef_exact_, strict=True)) == by_name
    assert shuffled.intercept_exact_ == plain.intercept_exact_
    # predictions agree whatever order the frame's columns come in
    pooled = pd.concat(consortium.values(), ignore_index=True)
    np.testing.assert_allclose(shuffled.predict(pooled), plain.predict(pooled[plain.feature_names_in_]), rtol=1e-12)


# --------------------------------------------------------------------------------------
# Contributors
# --------------------------------------------------------------------------------------


def test_duplicate_factory_id_is_refused(consortium, public_key):
    frames = list(consortium.values())
    bundles = [_encrypt(frames[0], public_key, "plant-a"), _encrypt(frames[1], public_key, "plant-b"),
               _encrypt(frames[2], public_key, "plant-a")]
    with pytest.raises(DuplicateContributorError) as info:
        hefed.aggregate(bundles)
    assert "plant-a" in str(info.value)


def test_same_bundle_twice_is_refused(consortium_bundles):
    with pytest.raises(DuplicateContributorError):
        hefed.aggregate([consortium_bundles[0], consortium_bundles[1], consortium_bundles[0]])


def test_too_few_contributors_default_threshold_is_three(consortium_bundles, private_key):
    two = hefed.aggregate(consortium_bundles[:2])
    with pytest.raises(TooFewContributorsError) as info:
        hefed.decrypt_statistics(two, private_key, allow_unsigned=True)
    assert "3" in str(info.value)
    with pytest.raises(TooFewContributorsError):
        hefed.decrypt_statistics(consortium_bundles[0], private_key, allow_unsigned=True)
    # at the threshold, it decrypts; a lower explicit threshold is honoured
    assert len(hefed.decrypt_statistics(hefed.aggregate(consortium_bundles[:3]), private_key,
            allow_unsigned=True).contributors) == 3
    assert hefed.decrypt_statistics(two, private_key, min_contributors=2, allow_unsigned=True).n > 0
    with pytest.raises(TooFewContributorsError):
        hefed.decrypt_statistics(hefed.aggregate(consortium_bundles), private_key, min_contributors=5,
                allow_unsigned=True)


def test_single_bundle_relabelled_as_three_contributors_fails_integrity(tmp_path, consortium_bundles, private_key):
    path = tmp_path / "single.bundle.json"
    consortium_bundles[0].save(path)
    obj = json.loads(path.read_text())
    obj["contributors"] = ["plant-x", "plant-y", "plant-z"]
    forged = tmp_path / "forged.bundle.json"
    forged.write_text(json.dumps(obj))
    bundle = Bundle.load(forged)
    with pytest.raises(IntegrityError) as info:
        hefed.decrypt_statistics(bundle, private_key, allow_unsigned=True)
    assert "3 contributors" in str(info.value) and "1 contribution" in str(info.value)


def test_aggregate_relabelled_with_an_extra_contributor_fails_integrity(consortium_bundles, private_key):
    aggregate = hefed.aggregate(consortium_bundles[:3])
    forged = replace(aggregate, contributors=[*aggregate.contributors, "ghost"])
    with pytest.raises(IntegrityError):
        hefed.decrypt_statistics(forged, private_key, allow_unsigned=True)


def _flip_ciphertext_bit(obj, index, bit):
    raw = bytearray(base64.b64decode(obj["ciphertexts"][index]))
    raw[len(raw) - 1 - bit // 8] ^= 1 << (bit % 8)
    obj["ciphertexts"][index] = base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("bit", [0, 1, 100, 777, 1500, 2040])
def test_tampered_ciphertext_is_refused(tmp_path, consortium_bundles, private_key, bit):
    aggregate = hefed.aggregate(consortium_bundles)
    path = tmp_path / "aggregate.json"
    aggregate.save(path)
    for index in range(len(aggregate.ciphertexts)):
        obj = json.loads(path.read_text())
        _flip_ciphertext_bit(obj, index, bit)
        tampered = tmp_path / f"tampered-{index}.json"
        tampered.write_text(json.dumps(obj))
        with pytest.raises((IntegrityError, InvalidFileError)):
            hefed.decrypt_statistics(Bundle.load(tampered), private_key, allow_unsigned=True)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o["ciphertexts"].__setitem__(0, "not base64!"),
        lambda o: o["ciphertexts"].__setitem__(0, base64.b64encode(b"\x00").decode()),
        lambda o: o["ciphertexts"].pop(),
        lambda o: o.__setitem__("layout_digest", "0" * 32),
        lambda o: o.__setitem__("key_fingerprint", "0" * 32),
        lambda o: o.__setitem__("version", 2),
        lambda o: o.__setitem__("contributors", []),
        lambda o: o["schema"].__setitem__("features", ["a", "a"]),
    ],
    ids=["bad-base64", "zero-ciphertext", "missing-ciphertext", "layout", "fingerprint", "version",
         "no-contributors", "duplicate-features"],
)
def test_malformed_bundle_is_invalid_file(tmp_path, consortium_bundles, mutate):
    path = tmp_path / "b.json"
    consortium_bundles[0].save(path)
    obj = json.loads(path.read_text())
    mutate(obj)
    path.write_text(json.dumps(obj))
    with pytest.raises(InvalidFileError):
        Bundle.load(path)


def test_ciphertext_at_least_n_squared_is_invalid(tmp_path, consortium_bundles, public_key):
    path = tmp_path / "b.json"
    consortium_bundles[0].save(path)
    obj = json.loads(path.read_text())
    obj["ciphertexts"][0] = base64.b64encode(public_key.nsquare.to_bytes(260, "big")).decode()
    path.write_text(json.dumps(obj))
    with pytest.raises(InvalidFileError):
        Bundle.load(path)


# --------------------------------------------------------------------------------------
# Files: overwrite refusal, round trips, no plaintext in bundles
# --------------------------------------------------------------------------------------


def _savers(keypair, consortium_bundles, private_key):
    stats = hefed.decrypt_statistics(hefed.aggregate(consortium_bundles), private_key, allow_unsigned=True)
    model = hefed.solve(stats)
    return {
        "bundle": consortium_bundles[0].save,
        "aggregate": hefed.aggregate(consortium_bundles).save,
        "statistics": stats.save,
        "model": model.save,
        "public_key": lambda path, force=False: hefed.save_public_key(keypair[0], path, force=force),
        "private_key": lambda path, force=False: hefed.save_private_key(keypair[1], path, force=force),
    }


@pytest.mark.parametrize("what", ["bundle", "aggregate", "statistics", "model", "public_key", "private_key"])
def test_every_save_refuses_to_overwrite_without_force(tmp_path, keypair, consortium_bundles, private_key, what):
    save = _savers(keypair, consortium_bundles, private_key)[what]
    path = tmp_path / f"{what}.json"
    path.write_text("precious\n")
    path.chmod(0o600)
    with pytest.raises(OutputExistsError):
        save(path)
    with pytest.raises(OutputExistsError):
        save(path, force=False)
    assert path.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left behind
    save(path, force=True)
    assert path.read_text() != "precious\n"
    json.loads(path.read_text())
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def _json_leaves(obj, path=()):
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _json_leaves(value, (*path, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _json_leaves(value, (*path, i))
    else:
        yield path, obj


def test_bundle_contains_no_plaintext_statistic(tmp_path, consortium, public_key):
    name, frame = next(iter(consortium.items()))  # cement: every column non-zero
    stats = hefed.compute_statistics(frame, TARGET)
    bundle = hefed.encrypt_bundle(stats, public_key, name)
    path = tmp_path / "bundle.json"
    bundle.save(path)
    text = path.read_text()

    def token(s: str) -> re.Pattern:
        # a standalone number, not a run of digits inside base64 or inside a longer number
        return re.compile(rf"(?<![0-9A-Za-z+/._-]){re.escape(s)}(?![0-9A-Za-z+/=._-])")

    secret_ints = {stats.n, *(v for v in stats.to_vector() if v != 0)}
    secrets = {str(stats.n)}
    secrets |= {str(v) for v in secret_ints if abs(v) > 1000} | {str(-v) for v in secret_ints if abs(v) > 1000}
    for column in (*stats.features, stats.target):
        exact = stats.exact(ONES, column)
        secrets |= {repr(float(exact)), f"{float(exact):.6g}", f"{float(exact):.2f}", str(exact)}
        secrets.add(repr(float(frame[column].sum())))
        secrets.add(repr(float(frame[column].mean())))
    assert len(secrets) > 30
    leaked = sorted(s for s in secrets if token(s).search(text))
    assert leaked == []
    # no JSON number anywhere in the bundle equals a statistic (the row count included)
    numbers = [
        (p, v) for p, v in _json_leaves(json.loads(text)) if isinstance(v, int | float) and not isinstance(v, bool)
    ]
    assert [(p, v) for p, v in numbers if v in secret_ints] == []
    # and every ciphertext decrypts only with the key: none is a small or plaintext-looking number
    assert all(c.bit_length() > public_key.n.bit_length() for c in bundle.ciphertexts)


def test_encryption_is_randomised(consortium, public_key):
    name, frame = next(iter(consortium.items()))
    a, b = _encrypt(frame, public_key, name), _encrypt(frame, public_key, name)
    assert all(x != y for x, y in zip(a.ciphertexts, b.ciphertexts, strict=True))


def test_bundle_round_trip_preserves_everything(tmp_path, consortium_bundles, private_key):
    aggregate = hefed.aggregate(consortium_bundles)
    aggregate.save(tmp_path / "agg.json")
    loaded = Bundle.load(tmp_path / "agg.json")
    assert loaded == aggregate
    assert loaded.public_key.n == aggregate.public_key.n
    a = hefed.decrypt_statistics(loaded, private_key, allow_unsigned=True)
    b = hefed.decrypt_statistics(aggregate, private_key, allow_unsigned=True)
    assert a.gram == b.gram and a.contributors == b.contributors


def test_statistics_round_trip_preserves_everything(tmp_path, consortium_bundles, private_key):
    stats = hefed.decrypt_statistics(hefed.aggregate(consortium_bundles), private_key, allow_unsigned=True)
    stats.save(tmp_path / "s.json")
    loaded = SufficientStatistics.load(tmp_path / "s.json")
    assert loaded == stats
    assert (loaded.target, loaded.features, loaded.encoding, loaded.gram, loaded.contributors) == (
        stats.target, stats.features, stats.encoding, stats.gram, stats.contributors,
    )
    # integers travel as decimal strings, so no JSON tool can round them
    obj = json.loads((tmp_path / "s.json").read_text())
    assert all(isinstance(v, str) for v in obj["gram_upper"])


@pytest.mark.parametrize(
    "kwargs", [{}, {"ridge": 2.5}, {"fit_intercept": False}, {"ridge": 0.1, "fit_intercept": False}]
)
def test_model_round_trip_preserves_everything(tmp_path, consortium_bundles, private_key, kwargs):
    stats = hefed.decrypt_statistics(hefed.aggregate(consortium_bundles), private_key, allow_unsigned=True)
    model = hefed.solve(stats, **kwargs)
    model.save(tmp_path / "m.json", exact=True)
    loaded = hefed.LinearModel.load(tmp_path / "m.json")
    assert loaded.coef_.tolist() == model.coef_.tolist()
    assert loaded.coef_exact_ == model.coef_exact_
    assert loaded.intercept_ == model.intercept_ and loaded.intercept_exact_ == model.intercept_exact_
    assert list(loaded.feature_names_in_) == list(model.feature_names_in_)
    assert loaded.target_ == model.target_
    assert loaded.n_samples_ == model.n_samples_ == stats.n
    assert loaded.r2_ == model.r2_ and loaded.sse_ == model.sse_ and loaded.sse_exact_ == model.sse_exact_
    assert loaded.ridge == model.ridge and loaded.fit_intercept == model.fit_intercept
    assert loaded.contributors_ == model.contributors_ == stats.contributors
    obj = json.loads((tmp_path / "m.json").read_text())
    assert {"features", "coef", "intercept", "n", "r2"} <= set(obj)
    assert loaded.inference().to_dict() == model.inference().to_dict()  # the inference record travels with it


def test_model_file_with_edited_coefficient_is_refused(tmp_path, consortium_bundles, private_key):
    model = hefed.solve(hefed.decrypt_statistics(hefed.aggregate(consortium_bundles), private_key, allow_unsigned=True))
    model.save(tmp_path / "m.json")
    obj = json.loads((tmp_path / "m.json").read_text())
    obj["coef"][0] = obj["coef"][0] * (1 + 1e-12)
    (tmp_path / "m.json").write_text(json.dumps(obj))
    with pytest.raises(InvalidFileError):
        hefed.LinearModel.load(tmp_path / "m.json")


# --------------------------------------------------------------------------------------
# Data problems, named precisely
# --------------------------------------------------------------------------------------


def _frame(**columns):
    return pd.DataFrame(columns)


def test_constant_column_is_named_with_the_intercept():
    rng = np.random.default_rng(1)
    frame = _frame(a=np.round(rng.normal(size=20), 3), kiln=np.full(20, 4.5), y=np.round(rng.normal(size=20), 3))
    with pytest.raises(SingularSystemError) as info:
        hefed.solve(hefed.compute_statistics(frame, "y"))
    message = str(info.value)
    assert "'kiln'" in message and "intercept" in message
    assert "'a'" not in message
    assert info.value.columns == ["kiln"]
    # without an intercept the same data are fine
    hefed.solve(hefed.compute_statistics(frame, "y"), fit_intercept=False)


def test_duplicated_column_names_both():
    rng = np.random.default_rng(2)
    a = np.round(rng.normal(size=20), 3)
    frame = _frame(zeta=a, alpha=np.round(rng.normal(size=20), 3), beta=a * 2, y=np.round(rng.normal(size=20), 3))
    with pytest.raises(SingularSystemError) as info:
        hefed.solve(hefed.compute_statistics(frame, "y"))
    message = str(info.value)
    assert "'zeta'" in message and "'beta'" in message
    assert "'alpha'" not in message
    assert sorted(info.value.columns) == ["beta", "zeta"]
    # a ridge penalty makes the system solvable
    hefed.solve(hefed.compute_statistics(frame, "y"), ridge=1.0)


def test_too_few_rows_is_singular():
    frame = _frame(a=[1.0, 2.0], b=[3.0, 5.0], y=[1.0, 0.0])
    with pytest.raises(SingularSystemError) as info:
        hefed.solve(hefed.compute_statistics(frame, "y"))
    assert "rows" in str(info.value)


@pytest.mark.parametrize(
    "value, encoding, fragment",
    [
        (2.0**40, hefed.Encoding(int_bits=40), "2^40"),
        (-(2.0**45), hefed.Encoding(int_bits=40), "needs int_bits >= 46"),
        (2.0**64, hefed.Encoding(), "needs int_bits >= 65"),
        (float("inf"), hefed.Encoding(), "finite"),
    ],
)
def test_value_out_of_range_names_column_and_row(value, encoding, fragment):
    frame = _frame(load=[1.0, 2.0, value, 4.0], fuel=[1.0, 2.0, 3.0, 5.0], y=[1.0, 2.0, 3.0, 4.0])
    with pytest.raises((EncodingError, DataError)) as info:
        hefed.compute_statistics(frame, "y", encoding=encoding)
    message = str(info.value)
    assert "'load'" in message and "row 3" in message
    if np.isfinite(value):
        assert isinstance(info.value, EncodingError)
        assert fragment in message


@pytest.mark.parametrize("value, encoding", [(0.1, hefed.Encoding(frac_bits=8)), (1e-30, hefed.Encoding()),
                                             (3.0 * 2.0**-90, hefed.Encoding())])
def test_value_finer_than_the_grid_is_rounded_to_it_and_counted(value, encoding):
    frame = _frame(load=[1.0, 2.0, value, 4.0], fuel=[1.0, 2.0, 3.0, 5.0], y=[1.0, 2.0, 3.0, 4.0])
    with pytest.warns(RoundedValuesWarning, match=r"1 value\(s\) of 'load' rounded"):
        stats = hefed.compute_statistics(frame, "y", encoding=encoding)
    on_grid = frame.copy()
    on_grid.loc[2, "load"] = round(value * 2**encoding.frac_bits) / 2**encoding.frac_bits  # nearest grid point
    assert stats.gram == hefed.compute_statistics(on_grid, "y", encoding=encoding).gram
    (_, report) = hefed.data.table_statistics(frame, "y", encoding=encoding)
    assert report.rounding.counts == {"load": 1} and report.rounding.grid == {"load": encoding.frac_bits}
    # the stated bound holds: half a grid step
    assert report.rounding.largest_change["load"] <= 2.0 ** -(encoding.frac_bits + 1)
    # the strict arithmetic layer refuses instead of rounding
    with pytest.raises(EncodingError, match="row 3"):
        hefed.stats.statistics_from_arrays(frame[["load", "fuel"]].to_numpy(), frame["y"].to_numpy(),
                                           ["load", "fuel"], "y", encoding)


def test_nan_is_a_data_error_naming_the_row():
    frame = _frame(a=[1.0, 2.0, 3.0, np.nan, 5.0], y=[1.0, 2.0, 3.0, 4.0, 5.0])
    with pytest.raises(DataError) as info:
        hefed.compute_statistics(frame, "y")
    assert "'a'" in str(info.value) and "row 4" in str(info.value)


def test_non_numeric_cell_in_csv_is_a_data_error_naming_the_cell(tmp_path):
    path = tmp_path / "plant.csv"
    path.write_text("coal_t,gas_t,co2_t\n1.5,2,10\n2.5,n/a?,12\n3.5,4,13\n4.5,5,19\n")
    with pytest.raises(DataError) as info:
        hefed.compute_statistics(path, "co2_t")
    message = str(info.value)
    assert "'gas_t'" in message and "row 2" in message and "n/a?" in message
    assert str(path) in message


def test_missing_cell_in_csv_is_a_data_error(tmp_path):
    path = tmp_path / "plant.csv"
    path.write_text("coal_t,gas_t,co2_t\n1.5,2,10\n2.5,,12\n3.5,4,13\n")
    with pytest.raises(DataError) as info:
        hefed.compute_statistics(path, "co2_t")
    assert "'gas_t'" in str(info.value) and "row 2" in str(info.value)


@pytest.mark.parametrize("header", ["coal_t,coal_t,co2_t", "coal_t, coal_t,co2_t", "co2_t,coal_t,co2_t"])
def test_duplicate_column_names_in_csv_are_refused(tmp_path, header):
    path = tmp_path / "plant.csv"
    path.write_text(header + "\n1,2,3\n4,5,6\n7,8,10\n")
    with pytest.raises(DataError) as info:
        hefed.compute_statistics(path, "co2_t")
    assert "duplicate" in str(info.value)


def test_missing_target_is_a_data_error(consortium, public_key):
    frame = next(iter(consortium.values()))
    with pytest.raises(DataError) as info:
        hefed.encrypt_statistics(frame, "co2_kg", public_key, factory_id="x")
    assert "'co2_kg'" in str(info.value)


def test_missing_feature_is_a_data_error(consortium):
    frame = next(iter(consortium.values()))
    with pytest.raises(DataError) as info:
        hefed.compute_statistics(frame, TARGET, ["coal_t", "peat_t"])
    assert "'peat_t'" in str(info.value)


def test_default_features_skip_text_columns_only(consortium, consortium_features):
    frame = next(iter(consortium.values()))
    stats = hefed.compute_statistics(frame, TARGET)
    assert stats.features == consortium_features
    assert "date" not in stats.features and "plant_kind" not in stats.features


def test_csv_and_dataframe_give_identical_statistics(tmp_path, consortium):
    frame = next(iter(consortium.values()))
    frame.to_csv(tmp_path / "plant.csv", index=False)
    from_csv = hefed.compute_statistics(tmp_path / "plant.csv", TARGET)
    from_frame = hefed.compute_statistics(frame, TARGET)
    assert from_csv.gram == from_frame.gram


@pytest.mark.parametrize("bad_id", ["", "-plant", "plant a", "a" * 65, "plänt", "../x"])
def test_bad_factory_ids_are_refused(consortium, public_key, bad_id):
    frame = next(iter(consortium.values()))
    with pytest.raises(HefedError):
        hefed.encrypt_statistics(frame, TARGET, public_key, factory_id=bad_id)


def test_every_refusal_is_a_hefed_error_subclass():
    """The CLI only turns HefedError into a one-line message: the types used above must be ones."""
    for cls in (DataError, DuplicateContributorError, EncodingError, InsecureKeyError, IntegrityError,
                InvalidFileError, KeyMismatchError, OutputExistsError, SchemaMismatchError, SingularSystemError,
                TooFewContributorsError):
        assert issubclass(cls, HefedError)


# --------------------------------------------------------------------------------------
# Malformed files and extreme data give hefed errors (regressions of bugs found, since fixed)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ["--5", "²", "-", "5 ", "0x10", "1e3", "٣"])
def test_statistics_file_with_malformed_integer_is_invalid_file(tmp_path, consortium_bundles, private_key, entry):
    stats = hefed.decrypt_statistics(hefed.aggregate(consortium_bundles), private_key, allow_unsigned=True)
    obj = stats.to_dict()
    obj["gram_upper"][1] = entry
    (tmp_path / "s.json").write_text(json.dumps(obj))
    with pytest.raises(InvalidFileError):
        SufficientStatistics.load(tmp_path / "s.json")


@pytest.mark.parametrize("key_ops", [5, None, {"encrypt": 1}, ["decrypt"]])
def test_public_key_with_bad_key_ops_is_invalid_file(tmp_path, public_key, key_ops):
    hefed.save_public_key(public_key, tmp_path / "pub.json")
    obj = json.loads((tmp_path / "pub.json").read_text())
    obj["key_ops"] = key_ops
    (tmp_path / "pub.json").write_text(json.dumps(obj))
    with pytest.raises(InvalidFileError):
        hefed.load_public_key(tmp_path / "pub.json")


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000])
def test_deeply_nested_json_is_invalid_file(tmp_path, text):
    path = tmp_path / "file.json"
    path.write_text(text)
    for load in (Bundle.load, SufficientStatistics.load, hefed.LinearModel.load, hefed.load_public_key):
        with pytest.raises(InvalidFileError):
            load(path)


def test_coefficient_beyond_float64_range_is_a_hefed_error():
    d = 11
    X = np.zeros((d, d))
    for i in range(d):
        X[i, i] = 2.0**-72
        if i:
            X[i, i - 1] = 2.0**39
    frame = pd.DataFrame(X, columns=[f"x{i:02d}" for i in range(d)])
    frame["y"] = [2.0**39] + [0.0] * (d - 1)
    stats = hefed.compute_statistics(frame, "y")
    # the exact solution exists and is unique (triangular, non-zero diagonal) but x10's
    # coefficient is about 2^(111·11) > float64 max
    coef, _ = solve_exact_coefficients(stats, 0.0, False)
    assert abs(coef[-1]) > Fraction(2) ** 1024
    with pytest.raises(HefedError) as info:  # not an OverflowError from float(Fraction)
        hefed.solve(stats, fit_intercept=False)
    assert "'x09'" in str(info.value) or "'x10'" in str(info.value)


def test_gas_turbine_loader_refuses_a_missing_year(tmp_path, gas_turbine_dir):
    for year in (2011, 2012, 2013, 2014):
        os.symlink(gas_turbine_dir / f"gt_{year}.csv", tmp_path / f"gt_{year}.csv")
    with pytest.raises(DataError) as info:
        hefed.datasets.load_gas_turbine(tmp_path)
    assert "gt_2015.csv" in str(info.value)


def test_paths_are_accepted_everywhere(tmp_path, consortium, keypair):
    """File paths (str and Path) work where objects do: aggregate reads bundle files one at a time."""
    public_key, private_key = keypair
    paths = []
    for name, frame in list(consortium.items())[:3]:
        csv = tmp_path / f"{name}.csv"
        frame.to_csv(csv, index=False)
        bundle = hefed.encrypt_statistics(str(csv), TARGET, public_key, factory_id=name)
        paths.append(Path(bundle.save(tmp_path / f"{name}.bundle.json")))
    stats = hefed.decrypt_statistics(hefed.aggregate([str(paths[0]), *paths[1:]]), private_key, allow_unsigned=True)
    pooled = pd.concat(list(consortium.values())[:3], ignore_index=True)
    assert stats.gram == hefed.compute_statistics(pooled, TARGET).gram


@pytest.mark.parametrize("source", ["frame", "csv"])
def test_large_integers_are_never_silently_rounded(tmp_path, source):
    """Regression: int64 values above 2^53 (allowed with int_bits >= 54) used to be rounded to float64."""
    big = 2**53 + 1
    encoding = hefed.Encoding(int_bits=60, frac_bits=8)
    data = pd.DataFrame({"a": np.array([big, 1, 2], dtype=np.int64), "y": [1.0, 2.0, 4.0]})
    if source == "csv":
        data.to_csv(tmp_path / "big.csv", index=False)
        data = tmp_path / "big.csv"
    try:
        stats = hefed.compute_statistics(data, "y", encoding=encoding)
    except (EncodingError, DataError) as exc:  # refusing, naming the cell, is fine too
        assert "'a'" in str(exc) and "row 1" in str(exc)
    else:
        assert stats.exact(ONES, "a") == big + 3
        assert stats.exact("a", "a") == big * big + 5


def test_dataframe_with_integer_column_labels():
    """Regression: a DataFrame built from a numpy array (integer column labels) used to raise KeyError('0')."""
    frame = pd.DataFrame(np.array([[1.0, 2.0], [2.0, 3.5], [3.0, 1.25], [4.0, 8.0]]))
    frame["y"] = [1.0, 2.0, 2.5, 7.0]
    try:
        stats = hefed.compute_statistics(frame, "y")
    except DataError:
        return
    assert stats.features == ["0", "1"]
    assert stats.exact("0", "y") == Fraction(1 * 1 + 2 * 2 + 3 * 2.5 + 4 * 7)
