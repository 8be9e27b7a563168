"""Attacks on issue 15/16 (within_statistics, model.json v2 covariance rule, subset solving) by a malicious
aggregator and a curious key holder. Passing tests: the defence holds. ``xfail(strict=True)``: the attack works."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

import hefed
from hefed.errors import (
    HefedError,
    LedgerError,
    SingledOutColumnError,
    SingledOutColumnWarning,
    TooFewContributorsError,
)
from hefed.kinds import StatisticsRequest, WithinStatisticsRequest, get_kind
from hefed.protocol import ColumnSpec, Study
from hefed.roles import release_model
from hefed.roles._ledger import DecryptionLedger
from hefed.stats import WithinStatistics

FEATURES = ["coal_t", "gas_t"]


def _frame(n: int, seed: int, gas: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"coal_t": np.round(rng.uniform(0, 50, n), 3),
                          "gas_t": np.round(rng.uniform(0, 30, n), 2) if gas else np.zeros(n)})
    frame["co2_t"] = np.round(10 * seed + 2.4 * frame.coal_t + 2.75 * frame.gas_t + rng.normal(0, 2, n), 2)
    return frame


def _plants(counts: dict[str, int]) -> dict[str, pd.DataFrame]:
    return {name: _frame(n, seed) for seed, (name, n) in enumerate(counts.items())}


def _bundle(frame: pd.DataFrame, name: str, public_key, request=None):
    return hefed.encrypt_table(frame, "co2_t", public_key, features=FEATURES, factory_id=name,
                               request=request or WithinStatisticsRequest()).bundle


def _pooled(plants: dict[str, pd.DataFrame], grid_bits: int) -> WithinStatistics:
    parts = [WithinStatistics.of_plant(hefed.compute_statistics(f, "co2_t", FEATURES, factory_id=name), grid_bits)
             for name, f in plants.items()]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def _hidden_denominator(pooled: WithinStatistics) -> int:
    """The key holder's attack: each plant rounded 2^R(G_ab - s_a s_b / n_g) once, so the low R bits of the
    pooled entry are 2^R * frac(-sum_g s_a s_b / n_g) up to G/2 grid units: a rational whose denominator
    divides lcm(n_g). Continued fractions give it back whenever lcm(n_g)^2 is well below 2^R / G."""
    r, gram = pooled.grid_bits, pooled.within.gram
    bound = 1 << max(1, (r - 8) // 2)
    d = 1
    for a in range(1, len(gram)):
        for b in range(a, len(gram)):
            d = math.lcm(d, Fraction(gram[a][b] % (1 << r), 1 << r).limit_denominator(bound).denominator)
    return d


def _odd(k: int) -> int:
    return k >> ((k & -k).bit_length() - 1)


def _counts_from_denominator(d: int, n: int, plants: int) -> set[tuple[int, ...]]:
    """Every multiset of ``plants`` row counts summing to n whose odd parts have lcm odd(d) (the attacker knows n
    and G; powers of two may cancel against the 2^F of the encoded sums, so only odd parts are compared)."""
    odd = _odd(d)
    options = sorted({k << j for k in range(1, min(odd, n) + 1) if odd % k == 0
                      for j in range(n.bit_length()) if k << j <= n})
    out: set[tuple[int, ...]] = set()

    def walk(chosen: tuple[int, ...], start: int) -> None:
        if len(chosen) == plants - 1:
            last = n - sum(chosen)
            if last >= chosen[-1] and odd % _odd(last) == 0 and math.lcm(*map(_odd, (*chosen, last))) == odd:
                out.add((*chosen, last))
            return
        for i in range(start, len(options)):
            if sum(chosen) + options[i] * (plants - len(chosen)) > n:
                break
            walk((*chosen, options[i]), i)

    walk((), 0)
    return out


# --- the key holder's ledger and threshold treat within_statistics like statistics ---------------------------

def test_ledger_refuses_within_of_a_subset_after_statistics(keypair) -> None:
    public_key, private_key = keypair
    plants = _plants({"A": 20, "B": 21, "C": 22, "D": 23})
    ledger = DecryptionLedger(hefed.key_fingerprint(public_key))
    stats = [_bundle(plants[k], k, public_key, StatisticsRequest()) for k in "ABC"]
    hefed.decrypt_bundle(hefed.aggregate(stats), private_key, allow_unsigned=True, ledger=ledger)
    within = {k: _bundle(f, k, public_key) for k, f in plants.items()}
    for members in ("ABD", "ABCD"):  # statistics of {A,B,C} minus within of {A,B,D} / of {A,B,C,D}
        with pytest.raises(LedgerError):
            hefed.decrypt_bundle(hefed.aggregate([within[k] for k in members]), private_key,
                                 allow_unsigned=True, ledger=ledger)
    # the same set as within statistics: refused too, since within minus pooled of one set is Σ_g s_g s_gᵀ/n_g
    with pytest.raises(LedgerError, match="one family"):
        hefed.decrypt_bundle(hefed.aggregate([within[k] for k in "ABC"]), private_key, allow_unsigned=True,
                             ledger=ledger)
    assert len(ledger.entries) == 1


def test_the_ledger_keeps_within_and_pooled_sums_of_one_set_apart(keypair) -> None:
    """Within statistics first, then the pooled statistics (or a summary) of the same set: refused, so the
    between-plant matrix Σ_g s_g s_gᵀ/n_g is never the difference of two decrypted sums; more within rounds of
    the set stay allowed."""
    public_key, private_key = keypair
    plants = _plants({"A": 20, "B": 21, "C": 22})
    ledger = DecryptionLedger(hefed.key_fingerprint(public_key))
    within = [_bundle(f, k, public_key) for k, f in plants.items()]
    hefed.decrypt_bundle(hefed.aggregate(within), private_key, allow_unsigned=True, ledger=ledger)
    stats = [_bundle(f, k, public_key, StatisticsRequest()) for k, f in plants.items()]
    with pytest.raises(LedgerError, match="one family"):
        hefed.decrypt_bundle(hefed.aggregate(stats), private_key, allow_unsigned=True, ledger=ledger)
    again = hefed.decrypt_bundle(hefed.aggregate(within), private_key, allow_unsigned=True, ledger=ledger)
    assert isinstance(again, WithinStatistics) and len(ledger.entries) == 2


def test_within_below_the_threshold_is_refused(keypair) -> None:
    public_key, private_key = keypair
    plants = _plants({"A": 20, "B": 21})
    agg = hefed.aggregate([_bundle(f, k, public_key) for k, f in plants.items()])
    with pytest.raises(TooFewContributorsError):
        hefed.decrypt_bundle(agg, private_key, allow_unsigned=True)


def test_a_column_of_one_plant_is_flagged_in_within(keypair) -> None:
    """Column-support check: gas_t non-zero in one plant only would single that plant's gas_t out. As for
    statistics, an unsigned trial aggregate (no study, no roster) warns; a study or signed round refuses."""
    public_key, private_key = keypair
    frames = {"A": _frame(20, 0), "B": _frame(21, 1, gas=False), "C": _frame(22, 2, gas=False)}
    agg = hefed.aggregate([_bundle(f, k, public_key) for k, f in frames.items()])
    with pytest.warns(SingledOutColumnWarning, match="gas_t"):
        pooled = hefed.decrypt_bundle(agg, private_key, allow_unsigned=True)
    with pytest.raises(SingledOutColumnError, match="gas_t"):  # what a study or signed round runs
        get_kind("within_statistics").check_result(pooled, 3, refuse=True)


def test_aggregator_cannot_mix_grids_or_kinds(keypair) -> None:
    public_key, _ = keypair
    plants = _plants({"A": 20, "B": 21, "C": 22})
    fine = [_bundle(plants[k], k, public_key) for k in "AB"]
    with pytest.raises(HefedError):  # no grid but the unit: nothing to mix
        WithinStatisticsRequest(grid_bits=8)
    plain = _bundle(plants["C"], "C", public_key, StatisticsRequest())
    for odd in (plain,):
        with pytest.raises(HefedError):
            hefed.aggregate([*fine, odd])


def test_subset_of_a_three_plant_aggregate_still_withholds_the_covariance() -> None:
    """Subset solving / select_features work on the decrypted aggregate only, and keep its contributors, so
    a sub-model of a 3-plant pool is still below min_contributors + 1 and its file withholds the covariance."""
    plants = _plants({"A": 20, "B": 21, "C": 22})
    stats = hefed.compute_statistics(plants["A"], "co2_t", FEATURES, factory_id="A")
    for k in "BC":
        stats = stats + hefed.compute_statistics(plants[k], "co2_t", FEATURES, factory_id=k)
    sub = stats.subset(["coal_t"])
    assert sorted(sub.contributors) == ["A", "B", "C"]
    for model in (hefed.solve(sub), hefed.solve(_pooled(plants, 0))):
        obj = model.to_dict()
        assert obj["inference"]["cov_params"] is None and obj["inference"]["cov_params_withheld"]
    four = stats + hefed.compute_statistics(_frame(23, 3), "co2_t", FEATURES, factory_id="D")
    assert hefed.solve(four.subset(["coal_t"])).to_dict()["inference"]["cov_params"] is not None


# --- the per-plant rounding leaks each plant's row count (and residues of its sums) ----------------------------

def test_the_pooled_within_statistics_hide_each_plant_count(keypair) -> None:
    public_key, private_key = keypair
    counts = {"A": 37, "B": 41, "C": 43}
    plants = _plants(counts)
    agg = hefed.aggregate([_bundle(f, k, public_key) for k, f in plants.items()])
    pooled = hefed.decrypt_bundle(agg, private_key, allow_unsigned=True)  # an honest, 3-plant decryption
    d = _hidden_denominator(pooled)
    candidates = _counts_from_denominator(d, pooled.n, 3)
    assert candidates != {tuple(sorted(counts.values()))}, "the key holder recovered every plant's row count"


def test_the_pooled_within_statistics_hide_each_plant_sums_mod_its_count() -> None:
    """The CRT attack on the hidden numerator (s_a^2 mod n_g for each plant), run on what the default request makes."""
    counts = {"A": 37, "B": 41, "C": 43}
    plants = _plants(counts)
    pooled = _pooled(plants, WithinStatisticsRequest().grid_bits)
    r, gram, d = pooled.grid_bits, pooled.within.gram, _hidden_denominator(pooled)
    leaked = d % math.prod(counts.values()) == 0  # the attack needs lcm(n_g) first
    for name, frame in plants.items():
        if not leaked:
            break
        s = hefed.compute_statistics(frame, "co2_t", FEATURES).gram[0]
        n_g = counts[name]
        for a in range(1, len(gram)):
            frac = Fraction(gram[a][a] % (1 << r), 1 << r).limit_denominator(d)
            numerator = (frac * d).numerator % d  # = -sum_g s_a^2 * (d / n_g)  (mod d)
            residue = (-numerator * pow(d // n_g, -1, n_g)) % n_g
            leaked &= residue == s[a] * s[a] % n_g
    assert not leaked, "the key holder recovered s_a^2 mod n_g for every plant and column"


def test_a_requested_fine_grid_does_not_reveal_large_counts() -> None:
    counts = {"A": 8759, "B": 8760, "C": 8761}
    with pytest.raises(HefedError, match="row count"):  # a fine grid is refused at the request...
        WithinStatisticsRequest(grid_bits=256)
    with pytest.raises(HefedError, match="row count"):  # ...and by the factory computing it
        _pooled(_plants(counts), 256)
    pooled = _pooled(_plants(counts), 0)
    candidates = _counts_from_denominator(_hidden_denominator(pooled), pooled.n, 3)
    assert candidates != {tuple(sorted(counts.values()))}, "the key holder recovered every plant's row count"


def test_between_plant_matrix_from_statistics_and_within_of_one_set() -> None:
    """Why the ledger keeps statistics and within statistics of one set apart (KIND_FAMILIES): their difference
    would be sum_g s_g s_g^T / n_g. With G = 3 plants this alone does NOT pin down any one plant's means
    (an O(2) rotation is left): two different 3-plant consortia with the same pooled statistics and the same
    between matrix but different plant means exist. Shown exactly on the means."""
    rng = np.random.default_rng(5)
    n = np.array([30.0, 40.0, 50.0])
    means = rng.normal(size=(3, 3))  # plants x columns
    v = means * np.sqrt(n)[:, None]
    w = np.sqrt(n) / np.linalg.norm(np.sqrt(n))
    basis = np.linalg.svd(w[None, :])[2][1:]  # the plane orthogonal to w
    c, s = np.cos(0.7), np.sin(0.7)
    rot = np.eye(3) + basis.T @ (np.array([[c - 1, -s], [s, c - 1]])) @ basis  # rotation fixing w
    v2 = rot @ v
    assert np.allclose(v.T @ v, v2.T @ v2) and np.allclose(v.T @ np.sqrt(n), v2.T @ np.sqrt(n))
    assert not np.allclose(v2 / np.sqrt(n)[:, None], means)  # other per-plant means, same released sums


def test_release_model_applies_the_study_threshold(keypair) -> None:
    """``hefed solve`` (release_model) withholds the covariance of a 4-factory model in a study of threshold 4."""
    study = Study.new(keypair[0], ColumnSpec("co2_t"), FEATURES, min_contributors=4)
    stats = _study_stats(study)
    assert release_model(stats, study=study).model.to_dict()["inference"]["cov_params"] is None


def test_library_solve_applies_the_study_threshold(keypair) -> None:
    study = Study.new(keypair[0], ColumnSpec("co2_t"), FEATURES, min_contributors=4)
    model = hefed.solve(_study_stats(study), study=study)
    assert model.to_dict()["inference"]["cov_params"] is None


def _study_stats(study: Study):
    plants = _plants({k: 20 + i for i, k in enumerate("ABCD")})
    stats = None
    for k, f in plants.items():
        one = hefed.compute_statistics(f, "co2_t", FEATURES, factory_id=k)
        stats = one if stats is None else stats + one
    stats.study = study.digest
    return stats


def test_the_helper_process_is_sent_only_n_and_plaintexts(keypair, monkeypatch) -> None:
    """THREAT_MODEL (DJN row): the factory's helper receives only n and plaintexts (no key material, no table
    secrets from the parent): every message sent down its pipe is checked."""
    from hefed import _pool

    public_key, private_key = keypair
    sent: list[object] = []
    original = _pool.PipeWorker.send
    monkeypatch.setattr(_pool.PipeWorker, "send", lambda self, message: (sent.append(message), original(self, message)))
    from hefed.primitives import encryption

    encryption.stop_helper()
    try:
        if not encryption.warm_up(public_key):
            pytest.skip("no helper process on this machine (one core)")
        plaintexts = list(range(1, 201))
        ciphertexts = encryption.encrypt_plaintexts(public_key, plaintexts)
    finally:
        encryption.stop_helper()
    assert [private_key.raw_decrypt(c) for c in ciphertexts] == plaintexts
    assert any(m is not None and m[0] == "encrypt" for m in sent), "the helper was not exercised"
    for message in sent:
        if message is None:
            continue
        assert message[0] in ("prepare", "encrypt")
        if message[0] == "prepare":
            assert message[1] == public_key.n and len(message) == 2
        else:
            assert len(message) == 4 and type(message[1]) is int and message[2] == public_key.n
            assert all(type(p) is int and p in plaintexts for p in message[3])
