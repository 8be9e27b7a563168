"""Issue 15: the per-key DJN table, exponents from os.urandom, the warm helper process and
two-thread CRT decryption. Every ciphertext is checked against phe's own private key."""

from __future__ import annotations

import ast
import itertools
import os
import secrets
from pathlib import Path

import gmpy2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phe import paillier

import hefed
from hefed.primitives import djn, encryption
from hefed.primitives.paillier import decrypt_raw_many

PRIMITIVES = Path(hefed.__file__).parent / "primitives"


@pytest.fixture(scope="module")
def keypair() -> tuple[paillier.PaillierPublicKey, paillier.PaillierPrivateKey]:
    return hefed.generate_keypair(1024, insecure_test_key=True)


@pytest.fixture(scope="module")
def wide(keypair) -> djn.FixedBaseTable:
    """The warm table (the widest window) for the module's key."""
    return djn.FixedBaseTable(keypair[0].n, max(djn.WINDOWS))


@pytest.fixture
def helper(monkeypatch):
    """A fresh helper process (two workers forced), stopped afterwards."""
    monkeypatch.setenv("HEFED_WORKERS", "2")
    encryption.stop_helper()
    yield encryption._HELPER
    encryption.stop_helper()


def test_the_warm_window_is_ten_and_fits_at_2048_and_3072_bits():
    for bits in (2048, 3072):
        e = (bits + 1) // 2
        assert djn.best_window(e, djn.WARM) == 10
        assert djn.table_bytes(10, e, bits // 4) <= djn.MAX_TABLE_BYTES


@settings(max_examples=60, deadline=None)
@given(st.one_of(
    st.integers(min_value=-(2**200), max_value=2**200),
    st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63), 2**127, -(2**127)]),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300),
))
def test_wide_table_ciphertexts_decrypt_with_phe_private_key(keypair, wide, value):
    """phe encodes negatives mod n (the top of [0, n)), as hefed's packing does; the table's
    ciphertexts of those encodings decrypt, through phe's EncryptedNumber, to the value."""
    pub, priv = keypair
    encoded = paillier.EncodedNumber.encode(pub, value)
    c, = wide.encrypt_many([encoded.encoding])
    assert priv.decrypt(paillier.EncryptedNumber(pub, c, encoded.exponent)) == value


def test_edge_plaintexts_and_out_of_range(keypair, wide):
    pub, priv = keypair
    edges = [0, 1, 2, pub.n // 2, pub.n - 2, pub.n - 1]
    assert [priv.raw_decrypt(c) for c in wide.encrypt_many(edges)] == edges
    for bad in (-1, pub.n):
        with pytest.raises(ValueError):
            wide.encrypt_many([bad])


def test_exponent_digits_cover_exactly_the_exponent_bits(keypair, wide, monkeypatch):
    """All-ones random words give the largest exponent 2^bits − 1 (the top window masked to
    its remaining bits), all-zero words the exponent 0: the digits spell a uniform a < 2^bits."""
    pub, _ = keypair
    one = gmpy2.mpz(1)
    monkeypatch.setattr(os, "urandom", lambda k: b"\xff" * k)
    digits, = wide.random_digits(1)
    assert len(digits) == len(wide.rows) and digits[-1] < (1 << wide.window)
    assert sum(d << (wide.window * i) for i, d in enumerate(digits)) == (1 << wide.bits) - 1
    assert wide._power_digits(one, digits) == gmpy2.powmod(wide.hs, (1 << wide.bits) - 1, pub.nsquare)
    monkeypatch.setattr(os, "urandom", lambda k: bytes(k))
    assert wide.random_digits(2) == [[0] * len(wide.rows)] * 2


def test_exponents_come_from_os_urandom(keypair, wide, monkeypatch):
    """The same os.urandom bytes give the same ciphertexts; other bytes give others."""
    def source(seed: int):
        stream = itertools.count(seed)
        return lambda k: bytes(next(stream) % 256 for _ in range(k))

    plaintexts = [5, 6, 7]
    monkeypatch.setattr(os, "urandom", source(1))
    first = wide.encrypt_many(plaintexts)
    monkeypatch.setattr(os, "urandom", source(1))
    assert wide.encrypt_many(plaintexts) == first
    monkeypatch.setattr(os, "urandom", source(2))
    assert wide.encrypt_many(plaintexts) != first
    monkeypatch.undo()
    assert len(set(wide.encrypt_many([5] * 8))) == 8


@pytest.mark.parametrize("module", ["djn.py", "encryption.py", "paillier.py"])
def test_no_module_of_the_encryption_path_imports_random(module):
    tree = ast.parse((PRIMITIVES / module).read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "random" not in imported
    assert "np.random" not in (PRIMITIVES / module).read_text(encoding="utf-8")


def test_tables_are_kept_per_key_never_shared(keypair):
    pub_a, priv_a = keypair
    pub_b, priv_b = paillier.generate_paillier_keypair(n_length=512)
    djn.clear_tables()
    try:
        table_a, table_b = djn.table_for(pub_a.n), djn.table_for(pub_b.n)
        assert table_a is not table_b and (table_a.n, table_b.n) == (pub_a.n, pub_b.n)
        assert table_a.nsquare == pub_a.nsquare and table_b.nsquare == pub_b.nsquare
        assert djn.table_for(pub_a.n) is table_a and djn.table_for(pub_b.n) is table_b
        assert priv_a.raw_decrypt(int(table_a.hs)) == 0 and priv_b.raw_decrypt(int(table_b.hs)) == 0
        m = [3, 4]
        assert [priv_a.raw_decrypt(c) for c in djn.encrypt_many(pub_a.n, m)] == m
        assert [priv_b.raw_decrypt(c) for c in djn.encrypt_many(pub_b.n, m)] == m
        # a third key evicts the least recently used table: at most MAX_TABLES per process
        pub_c, _ = paillier.generate_paillier_keypair(n_length=512)
        djn.table_for(pub_c.n)
        assert len(djn._CACHE._tables) == djn.MAX_TABLES and pub_a.n not in djn._CACHE._tables
        assert djn.table_for(pub_a.n) is not table_a and djn.table_for(pub_a.n).n == pub_a.n
    finally:
        djn.clear_tables()


def test_crt_decryption_in_two_threads_equals_phe(keypair):
    pub, priv = keypair
    cts = [pub.raw_encrypt(secrets.randbelow(pub.n)) for _ in range(6)]
    cts += [secrets.randbelow(pub.nsquare - 2) + 2 for _ in range(10)]  # any residue, valid or not
    expected = [priv.raw_decrypt(c) for c in cts]
    assert decrypt_raw_many(priv, cts) == expected
    assert decrypt_raw_many(priv, cts, threads=False) == expected
    assert decrypt_raw_many(priv, cts[:1]) == expected[:1] and decrypt_raw_many(priv, []) == []
    assert encryption.decrypt_ciphertexts(priv, cts) == expected


def _spy_sends(monkeypatch, helper) -> list:
    sent: list = []
    real = helper.worker.send
    monkeypatch.setattr(helper.worker, "send", lambda message: sent.append(message) or real(message))
    return sent


def test_helper_and_single_process_ciphertexts_decrypt_identically(keypair, helper, monkeypatch):
    pub, priv = keypair
    plaintexts = [0, 1, pub.n - 1, *(secrets.randbelow(pub.n) for _ in range(30))]
    alone = encryption.encrypt_plaintexts(pub, plaintexts)
    assert helper.worker is None  # one bundle never starts the helper
    assert encryption.warm_up(pub)
    sent = _spy_sends(monkeypatch, helper)
    shared = encryption.encrypt_plaintexts(pub, plaintexts)
    encrypts = [m for m in sent if m[0] == "encrypt"]
    # ("encrypt", sequence number, n, plaintexts)
    assert len(encrypts) == 1 and 0 < len(encrypts[0][3]) < len(plaintexts)  # the helper did a part
    assert encrypts[0][3] == plaintexts[:len(encrypts[0][3])] and encrypts[0][2] == pub.n
    assert [priv.raw_decrypt(c) for c in shared] == [priv.raw_decrypt(c) for c in alone] == plaintexts
    assert set(shared).isdisjoint(alone)


def test_helper_starts_lazily_after_enough_bundles_and_serves_two_keys(keypair, helper, monkeypatch):
    pub, priv = keypair
    other, other_priv = paillier.generate_paillier_keypair(n_length=512)
    monkeypatch.setattr(encryption, "_HELPER_AFTER", 40)
    bundle = [secrets.randbelow(other.n) for _ in range(20)]
    encryption.encrypt_plaintexts(other, bundle)
    assert helper.worker is None
    encryption.encrypt_plaintexts(other, bundle)  # 40 ciphertexts: the helper starts, builds in the background
    assert helper.worker is not None
    assert helper.prepare(other.n, wait=True) and helper.prepare(pub.n, wait=True)
    assert set(helper.ready) == {other.n, pub.n}
    sent = _spy_sends(monkeypatch, helper)
    for key, private, batch in ((other, other_priv, bundle), (pub, priv, bundle[:10])):
        cts = encryption.encrypt_plaintexts(key, batch)
        assert [private.raw_decrypt(c) for c in cts] == batch
    assert [m[2] for m in sent if m[0] == "encrypt"] == [other.n, pub.n]  # each key's part under its key


def test_a_dead_helper_is_dropped_and_the_bundle_done_here(keypair, helper):
    pub, priv = keypair
    assert encryption.warm_up(pub)
    helper.worker.process.kill()
    helper.worker.process.join(5)
    plaintexts = [secrets.randbelow(pub.n) for _ in range(12)]
    cts = encryption.encrypt_plaintexts(pub, plaintexts)
    assert [priv.raw_decrypt(c) for c in cts] == plaintexts
    assert helper.worker is None and helper.failed  # not restarted in this process
    assert encryption.encrypt_plaintexts(pub, plaintexts[:5]) and helper.worker is None


def test_one_worker_means_no_helper(keypair, helper, monkeypatch):
    pub, priv = keypair
    monkeypatch.setenv("HEFED_WORKERS", "1")
    assert encryption.warm_up(pub) is False
    assert helper.worker is None
    cts = encryption.encrypt_plaintexts(pub, [1, 2, 3, 4, 5])
    assert encryption.decrypt_ciphertexts(priv, cts) == [1, 2, 3, 4, 5]
