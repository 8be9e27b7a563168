"""DJN fixed-base encryption, the classic option, and the process pool for big batches."""

from __future__ import annotations

import secrets

import gmpy2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phe import paillier

import hefed
from hefed import _pool as parallel
from hefed.errors import UsageError
from hefed.primitives import djn, encryption


@pytest.fixture(scope="module")
def keypair() -> tuple[paillier.PaillierPublicKey, paillier.PaillierPrivateKey]:
    return hefed.generate_keypair(1024, insecure_test_key=True)


@pytest.mark.parametrize("window", [2, 3, 5, 8])
def test_fixed_base_table_equals_plain_exponentiation(keypair, window):
    pub, _ = keypair
    table = djn.FixedBaseTable(pub.n, window)
    nsq = pub.nsquare
    for exponent in [0, 1, 2, (1 << window) - 1, 1 << window, (1 << table.bits) - 1,
                     *(secrets.randbits(table.bits) for _ in range(5))]:
        assert table.power(exponent) == gmpy2.powmod(table.hs, exponent, nsq)
    with pytest.raises(ValueError):
        table.power(1 << table.bits)


def test_hs_is_an_nth_power_of_minus_a_square(keypair):
    """hs = (−x²)^n: its Paillier decryption is 0, so multiplying by any power of it keeps m."""
    pub, priv = keypair
    table = djn.FixedBaseTable(pub.n, 4)
    assert priv.raw_decrypt(int(table.hs)) == 0
    assert table.bits == 512  # |n|/2 bits of exponent for a 1024-bit key


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0))
def test_phe_private_key_decrypts_djn_ciphertexts(keypair, value):
    pub, priv = keypair
    m = value % pub.n
    c = djn.table_for(pub.n).encrypt(m)
    assert priv.raw_decrypt(c) == m
    # and phe's own EncryptedNumber arithmetic works on it
    total = paillier.EncryptedNumber(pub, c, 0) + paillier.EncryptedNumber(pub, djn.table_for(pub.n).encrypt(5), 0)
    assert priv.raw_decrypt(total.ciphertext(be_secure=False)) == (m + 5) % pub.n


def test_djn_ciphertexts_are_randomised(keypair):
    pub, _ = keypair
    table = djn.table_for(pub.n)
    assert len({table.encrypt(7) for _ in range(20)}) == 20
    # a fresh table draws a fresh base
    assert djn.FixedBaseTable(pub.n, 3).hs != djn.FixedBaseTable(pub.n, 3).hs


def test_table_is_cached_per_key_and_widened_for_big_batches(keypair):
    pub, _ = keypair
    djn.clear_tables()
    small = djn.table_for(pub.n, 10)
    assert djn.table_for(pub.n, 10) is small
    big = djn.table_for(pub.n, 100_000)
    assert big.window > small.window
    assert djn.table_for(pub.n, 10) is big
    other, _ = paillier.generate_paillier_keypair(n_length=512)
    assert djn.table_for(other.n, 10).n == other.n
    assert djn.table_for(pub.n, 10) is big
    djn.clear_tables()


def test_best_window_grows_with_the_batch():
    windows = [djn.best_window(1024, count) for count in (1, 33, 330, 5000, 10**6)]
    assert windows == sorted(windows)
    assert windows[0] < windows[-1] == max(djn.WINDOWS)


@pytest.mark.parametrize("method", ["djn", "classic"])
def test_encrypt_plaintexts_both_methods_decrypt(keypair, method):
    pub, priv = keypair
    plaintexts = [0, 1, pub.n - 1, *(secrets.randbelow(pub.n) for _ in range(5))]
    cts = encryption.encrypt_plaintexts(pub, plaintexts, method)
    assert [priv.raw_decrypt(c) for c in cts] == plaintexts
    assert encryption.decrypt_ciphertexts(priv, cts) == plaintexts
    with pytest.raises(ValueError):
        encryption.encrypt_plaintexts(pub, [pub.n], method)


def test_unknown_method_is_refused(keypair):
    pub, _ = keypair
    with pytest.raises(UsageError, match="encryption method"):
        encryption.encrypt_plaintexts(pub, [1], "rsa")
    with pytest.raises(UsageError):
        hefed.encrypt_table(__import__("pandas").DataFrame({"x": [1.0], "y": [2.0]}), "y", pub, encryption="fast")


def test_encryption_method_option_reaches_bundle_seal(keypair, monkeypatch):
    pub, priv = keypair
    used: list[str] = []
    real = encryption._encrypt_piece

    def spy(plaintexts, n, method):
        used.append(method)
        return real(plaintexts, n, method)

    monkeypatch.setattr(encryption, "_encrypt_piece", spy)
    frame = __import__("pandas").DataFrame({"x": [1.0, 2.0, 3.5], "y": [2.0, 4.5, 7.0]})
    hefed.encrypt_table(frame, "y", pub, features=["x"], factory_id="a", encryption="classic")
    hefed.encrypt_statistics(frame, "y", pub, ["x"], factory_id="a")
    bundle = hefed.encrypt_statistics(frame, "y", pub, ["x"], factory_id="a", encryption="classic")
    assert used == ["classic", "djn", "classic"]
    assert hefed.decrypt_statistics(bundle, priv, min_contributors=1, allow_unsigned=True).n == 3


def test_pool_path_gives_the_same_plaintexts(keypair, monkeypatch):
    """Force the pool on (2 workers, tiny thresholds) and check order and values survive it."""
    pub, priv = keypair
    monkeypatch.setenv("HEFED_WORKERS", "2")
    monkeypatch.setattr(encryption, "_MIN_ENCRYPTIONS_PER_WORKER", 1)
    monkeypatch.setattr(encryption, "_MIN_DECRYPTIONS_PER_WORKER", 1)
    plaintexts = [secrets.randbelow(pub.n) for _ in range(9)]
    try:
        for method in ("djn", "classic"):
            cts = encryption.encrypt_plaintexts(pub, plaintexts, method)
            assert [priv.raw_decrypt(c) for c in cts] == plaintexts
            assert encryption.decrypt_ciphertexts(priv, cts) == plaintexts
    finally:
        parallel.shutdown()


def test_small_batches_stay_in_process(monkeypatch):
    monkeypatch.setenv("HEFED_WORKERS", "8")
    parallel.shutdown()
    assert parallel.workers_for(100, 512) == 1
    # a cold pool must be given COLD_START_FACTOR times more work per worker
    assert parallel.workers_for(4096, 512) == 4096 // (512 * parallel.COLD_START_FACTOR)
    assert parallel.workers_for(8 * 512 * parallel.COLD_START_FACTOR, 512) == 8
    monkeypatch.setenv("HEFED_WORKERS", "1")
    assert parallel.workers_for(10**6, 1) == 1
    monkeypatch.setenv("HEFED_WORKERS", "zero")
    with pytest.raises(UsageError, match="HEFED_WORKERS"):
        parallel.workers_for(10, 1)


@given(st.lists(st.integers(), max_size=50), st.integers(min_value=1, max_value=9))
def test_split_keeps_order_and_balance(items, parts):
    pieces = parallel.split(items, parts)
    assert [x for piece in pieces for x in piece] == items
    if items:
        sizes = [len(p) for p in pieces]
        assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1 and len(pieces) == min(parts, len(items))


def test_scripts_without_a_main_guard_never_start_workers(tmp_path):
    guarded = tmp_path / "guarded.py"
    guarded.write_text("import hefed\n\ndef main():\n    pass\n\nif __name__ == '__main__':\n    main()\n")
    bare = tmp_path / "bare.py"
    bare.write_text("import hefed\nprint('this would run again in every worker')\n")
    assert parallel._has_main_guard(str(guarded))
    assert not parallel._has_main_guard(str(bare))
    assert not parallel._has_main_guard(str(tmp_path / "missing.py"))


def test_an_unguarded_script_encrypts_on_one_process(tmp_path, keypair):
    """Forkserver/spawn workers would re-run an unguarded script's top level: hefed stays in process."""
    import subprocess
    import sys

    pub, _ = keypair
    script = tmp_path / "bare.py"
    marker = tmp_path / "runs.txt"
    script.write_text(
        "import secrets\nfrom phe import PaillierPublicKey\nfrom hefed import _pool as parallel\n"
        "from hefed.primitives import encryption\n"
        f"open({str(marker)!r}, 'a').write('run\\n')\n"
        "parallel.COLD_START_FACTOR = 1\nencryption._MIN_ENCRYPTIONS_PER_WORKER = 1\n"
        f"key = PaillierPublicKey({pub.n})\n"
        "print(len(encryption.encrypt_plaintexts(key, [secrets.randbelow(key.n) for _ in range(8)])))\n"
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, "HEFED_WORKERS": "2"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "8"
    assert marker.read_text() == "run\n"  # the script body ran once


def test_a_broken_pool_is_dropped_and_the_work_done_here(keypair, monkeypatch):
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    class Broken:
        def submit(self, *args, **kwargs):
            future = Future()
            future.set_exception(BrokenProcessPool("a worker died"))
            return future

        def shutdown(self, *args, **kwargs):
            pass

    pub, priv = keypair
    monkeypatch.setattr(parallel, "_POOL", Broken())
    monkeypatch.setenv("HEFED_WORKERS", "2")
    monkeypatch.setattr(encryption, "_MIN_ENCRYPTIONS_PER_WORKER", 1)
    plaintexts = [secrets.randbelow(pub.n) for _ in range(6)]
    cts = encryption.encrypt_plaintexts(pub, plaintexts, "djn")
    assert [priv.raw_decrypt(c) for c in cts] == plaintexts
    assert parallel._POOL is None  # dropped: the next big batch starts a fresh pool
