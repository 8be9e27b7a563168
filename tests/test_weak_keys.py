"""Weak Paillier keys are refused at every role (issue 14, attack 8).

An even n, an n with a prime factor below 2^20, a prime n and a perfect power are factored (or have
no secret factorisation) by anyone holding the public key: refused always, by the factory, in key
files, in studies and in bundles. A key below 2048 bits is refused where data is encrypted unless
``insecure_test_key`` (``--insecure-test-key``) or this process made it as a test key; a study with a
roster refuses one even with the flag. Messages are one line and carry n's bit length only.
"""

from __future__ import annotations

import json
import math

import gmpy2
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phe import PaillierPublicKey, generate_paillier_keypair
from phe.util import int_to_base64

import hefed
from hefed._keys import SMALL_FACTOR_BOUND, check_public_key, save_public_key
from hefed.errors import InsecureKeyError, InvalidFileError
from hefed.protocol import Bundle, Study
from hefed.roles import encrypt_for_study, encrypt_table

TARGET = "y"
FRAME = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0], "y": [2.0, 4.5, 6.0, 8.5, 10.0]})


def _foreign(bits: int) -> PaillierPublicKey:
    """A key this process did not make through hefed (as if another process's keygen wrote it)."""
    return generate_paillier_keypair(n_length=bits)[0]


@pytest.fixture(scope="module")
def foreign_512() -> PaillierPublicKey:
    return _foreign(512)


@pytest.fixture(scope="module")
def foreign_1024() -> PaillierPublicKey:
    return _foreign(1024)


def _prime(bits: int) -> int:
    return int(gmpy2.next_prime(gmpy2.mpz(1) << (bits - 1) | 12345))


def _weak(kind: str) -> int:
    p, q = _prime(1024), _prime(1030)
    return {
        "even": 2 * p * q,
        "small_factor": 1_000_003 * _prime(2040),
        "perfect_square": _prime(1025) ** 2,
        "perfect_cube": _prime(700) ** 3,
        "prime": _prime(2048),
    }[kind]


def _assert_one_line_without_n(exc: BaseException, n: int) -> None:
    message = str(exc)
    assert "\n" not in message
    assert str(n) not in message and int_to_base64(n) not in message and hex(n)[2:] not in message
    assert f"{n.bit_length()}-bit" in message


@pytest.mark.parametrize("kind", ["even", "small_factor", "perfect_square", "perfect_cube", "prime"])
def test_a_weak_modulus_is_refused_even_as_a_test_key(kind):
    n = _weak(kind)
    assert n.bit_length() >= 2048  # big enough: only its structure gives it away
    for flag in (False, True):
        with pytest.raises(InsecureKeyError) as info:
            check_public_key(PaillierPublicKey(n), insecure_test_key=flag)
        _assert_one_line_without_n(info.value, n)


def test_a_small_factor_gives_the_factorisation_to_anyone():
    """Why the gcd check matters: the aggregator factors such an n with one gcd and decrypts everything."""
    n = _weak("small_factor")
    factor = math.gcd(n, int(gmpy2.primorial(SMALL_FACTOR_BOUND - 1)))
    assert 1 < factor < n and n % factor == 0


@pytest.mark.parametrize("bits", [128, 8200])
def test_sizes_outside_256_to_8192_bits_are_refused_always(bits):
    n = (1 << (bits - 1)) | 1  # refused for its size before anything else is looked at
    with pytest.raises(InsecureKeyError, match=f"{n.bit_length()}-bit"):
        check_public_key(PaillierPublicKey(n), insecure_test_key=True)


def test_a_512_bit_key_is_refused_without_the_flag_and_accepted_with_it(foreign_512):
    with pytest.raises(InsecureKeyError) as info:
        check_public_key(foreign_512)
    assert info.value.parameters == ("insecure_test_key",)
    _assert_one_line_without_n(info.value, foreign_512.n)
    check_public_key(foreign_512, insecure_test_key=True)


def test_a_test_key_made_in_this_process_needs_no_flag():
    public_key, _ = hefed.generate_keypair(512, insecure_test_key=True)  # the consent was given here
    check_public_key(public_key)
    with pytest.raises(InsecureKeyError):
        check_public_key(_foreign(512))


def test_encrypt_refuses_a_512_bit_key_without_the_flag(foreign_512):
    with pytest.raises(InsecureKeyError, match="512-bit key is insecure"):
        encrypt_table(FRAME, TARGET, foreign_512, factory_id="plant-a")
    bundle = encrypt_table(FRAME, TARGET, foreign_512, factory_id="plant-a", insecure_test_key=True).bundle
    assert bundle.public_key.n == foreign_512.n


def test_encrypt_refuses_a_weak_modulus_even_with_the_flag():
    weak = PaillierPublicKey(_weak("small_factor"))
    with pytest.raises(InsecureKeyError, match="prime factor below 2"):
        encrypt_table(FRAME, TARGET, weak, factory_id="plant-a", insecure_test_key=True)


def test_key_files_of_512_bits_need_the_flag(tmp_path):
    key = _foreign(512)  # its own: loading with the flag records the consent for this process
    path = save_public_key(key, tmp_path / "public_key.json")
    with pytest.raises(InsecureKeyError) as info:
        hefed.load_public_key(path)
    assert str(info.value).startswith(f"{path}: a 512-bit key is insecure")
    assert hefed.load_public_key(path, insecure_test_key=True).n == key.n
    check_public_key(key)  # consent given in this process, as for a key it generated


def test_a_key_file_with_a_small_factor_is_an_invalid_file(tmp_path):
    n = _weak("small_factor")
    path = tmp_path / "public_key.json"
    path.write_text(json.dumps({"kty": "DAJ", "alg": "PAI-GN1", "key_ops": ["encrypt"], "n": int_to_base64(n)}))
    for flag in (False, True):
        with pytest.raises(InvalidFileError, match="prime factor below 2"):
            hefed.load_public_key(path, insecure_test_key=flag)


def test_the_cli_encrypt_refuses_a_512_bit_key_unless_told(tmp_path, cli):
    foreign_512 = _foreign(512)  # its own: the accepted run records the consent for this process
    key = save_public_key(foreign_512, tmp_path / "public_key.json")
    data = tmp_path / "plant.csv"
    FRAME.to_csv(data, index=False)
    args = ["encrypt", data, "--target", TARGET, "--public-key", key, "--factory-id", "plant-a"]
    refused = cli(*args, "--out", tmp_path / "a.json")
    assert refused.returncode == 2 and not (tmp_path / "a.json").exists()
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "512-bit key is insecure" in lines[0] and "--insecure-test-key" in lines[0]
    assert str(foreign_512.n) not in refused.stderr
    accepted = cli(*args, "--insecure-test-key", "--out", tmp_path / "b.json")
    assert accepted.returncode == 0, accepted.stderr
    assert Bundle.load(tmp_path / "b.json").public_key.n == foreign_512.n


def test_a_study_with_a_roster_refuses_a_test_key_even_with_the_flag(foreign_1024):
    with pytest.raises(InsecureKeyError, match="1024-bit key is insecure"):
        Study.new(foreign_1024, TARGET, ["x"], roster_digest="0" * 32)
    plain = Study.new(foreign_1024, TARGET, ["x"])  # a trial without a roster may name one …
    with pytest.raises(InsecureKeyError, match="1024-bit key is insecure"):  # … but encrypting needs the flag
        encrypt_for_study(FRAME, plain, factory_id="plant-a")
    bundle = encrypt_for_study(FRAME, plain, factory_id="plant-a", insecure_test_key=True).bundle
    assert bundle.study == plain.digest


def test_a_study_file_naming_a_roster_and_a_test_key_is_refused(tmp_path, foreign_1024):
    study = Study.new(foreign_1024, TARGET, ["x"])
    obj = study.to_dict()
    obj["roster_digest"] = "1" * 32  # a roster study written elsewhere (its digest no longer matters: refused first)
    with pytest.raises(InvalidFileError, match="1024-bit key is insecure"):
        Study.from_dict(obj, "study.json")


def test_a_study_naming_a_weak_modulus_is_refused():
    with pytest.raises(InsecureKeyError, match="perfect power"):
        Study.new(PaillierPublicKey(_weak("perfect_square")), TARGET, ["x"])


def test_a_bundle_carrying_a_weak_key_is_refused(keypair):
    bundle = encrypt_table(FRAME, TARGET, keypair[0], factory_id="plant-a").bundle
    obj = bundle.to_dict()
    n = _weak("small_factor")
    obj["public_key"] = {"n": int_to_base64(n)}
    obj["key_fingerprint"] = hefed.key_fingerprint(PaillierPublicKey(n))
    with pytest.raises(InvalidFileError) as info:
        Bundle.from_dict(obj, "a.bundle.json")
    assert str(info.value).startswith("a.bundle.json: 'public_key'") and "prime factor below 2" in str(info.value)


# --- property: genuine keys pass, any multiple of one by a small number does not ---------------------------------


@pytest.fixture(scope="module")
def genuine() -> list[PaillierPublicKey]:
    return [_foreign(bits) for bits in (256, 512, 768)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(index=st.integers(0, 2), k=st.integers(2, SMALL_FACTOR_BOUND))
def test_genuine_keys_pass_and_their_small_multiples_do_not(genuine, index, k):
    key = genuine[index]
    check_public_key(key, insecure_test_key=True)
    n = key.n * k
    if n.bit_length() > 8192:
        return
    with pytest.raises(InsecureKeyError):
        check_public_key(PaillierPublicKey(n), insecure_test_key=True)
