"""Security tests of masked, signed rounds (hefed.rounds, hefed.identity and their CLI commands).

Each test is named after the threat it covers, so THREAT_MODEL.md can cite it:

* curious key holder decrypting single bundles or partial sums:
  test_single_masked_bundle_decrypts_to_uniform_noise, test_partial_sum_is_uniform,
  test_uniformity_test_rejects_unmasked_plaintexts (the statistical test can fail),
  test_single_masked_bundle_never_reveals_the_factory_statistics,
  test_library_refuses_to_decrypt_a_single_masked_bundle, test_round_below_threshold_is_refused,
  test_same_factory_two_bundles_in_one_round_do_not_reveal_their_difference (the factory's round ledger)
* forwarded single bundle: test_aggregator_cannot_forward_single_bundle_as_aggregate
* dropped factory: test_aggregator_cannot_drop_a_factory (version 1), test_dropout_cli_end_to_end (version 2:
  recovered without a re-run; more in tests/test_dropout.py)
* unknown factory: test_unknown_factory_is_refused, test_roster_member_outside_the_round_is_refused
* replay: test_replayed_bundle_from_other_round_is_refused, test_unmasked_bundles_are_refused_in_a_round
* duplicate: test_duplicate_bundle_is_refused
* scaled / uneven sum: test_scaled_or_repeated_bundle_fails_integrity,
  test_aggregator_cannot_shift_the_sum_by_an_encrypted_offset
* network observer: test_network_observer_sees_only_ciphertexts_and_signed_metadata,
  test_tampered_ciphertext_fails_signature
* exactness: test_masks_preserve_exactness, test_full_round_decrypts_to_exact_statistics
* identities and roster: test_identity_private_file_mode_0600, test_load_identity_refuses_group_readable_key,
  test_roster_add_is_atomic_and_refuses_other_keys_unless_replace, test_roster_digest_mismatch_refused,
  test_wrong_identity_for_factory_refused

The statistical tests are deterministic: a fixed 1024-bit key, identities derived from fixed seeds and fixed
round ids, so the masks (and the p-values) are the same on every run and cannot flake.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

import gmpy2
import pandas as pd
import pytest
from cli_helpers import run_cli_parallel
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phe import PaillierPrivateKey, PaillierPublicKey
from scipy import stats as sps
from support_helpers import filled

import hefed
from hefed.data import compute_statistics
from hefed.errors import (
    DuplicateContributorError,
    InsecureKeyError,
    RoundError,
    TooFewContributorsError,
    UsageError,
)
from hefed.kinds import CoefficientsRequest, StatisticsRequest
from hefed.primitives.packing import PackingError
from hefed.primitives.paillier import decrypt_raw, random_unit
from hefed.protocol import (
    Bundle,
    FactoryIdentity,
    Masking,
    Roster,
    Round,
    check_round_complete,
    enroll,
    factory_masks,
    load_identity,
    load_member,
    mask_and_sign,
    new_round,
    roster_add,
    verify_aggregate,
    verify_contribution,
)
from hefed.roles import decrypt_bundle, decrypt_statistics, encrypt_table
from hefed.stats import SufficientStatistics

TARGET = "co2_t"
P_MIN = 0.001  # uniformity is accepted when both p-values exceed this
P_REJECT = 1e-6  # ... and unmasked plaintexts must be rejected far below it


# --- deterministic keys, identities and data ---------------------------------------------------------------------
def _deterministic_keypair(seed: int) -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    """A fixed 1024-bit Paillier key (insecure, tests only) so the statistical tests are reproducible."""
    rng = random.Random(seed)

    def prime() -> int:
        while True:
            candidate = int(gmpy2.next_prime(rng.getrandbits(512) | (3 << 510)))
            if candidate.bit_length() == 512:
                return candidate

    p = prime()
    q = prime()
    while q == p:
        q = prime()
    public_key = PaillierPublicKey(p * q)
    assert public_key.n.bit_length() == 1024
    return public_key, PaillierPrivateKey(public_key, p, q)


def _identity(factory_id: str, seed: str = "hefed-test") -> FactoryIdentity:
    """A factory identity whose keys are derived from a fixed seed (same masks on every run)."""
    sign = hashlib.sha256(f"{seed}|sign|{factory_id}".encode()).digest()
    agree = hashlib.sha256(f"{seed}|agree|{factory_id}".encode()).digest()
    return FactoryIdentity(factory_id, Ed25519PrivateKey.from_private_bytes(sign),
                           X25519PrivateKey.from_private_bytes(agree))


def _roster(identities: Sequence[FactoryIdentity]) -> Roster:
    roster = Roster()
    for identity in identities:
        roster.add(identity.member)
    return roster


def _fixed_round(index: int, participants: Sequence[str], roster: Roster) -> Round:
    return Round(f"{index:032x}", tuple(sorted(participants)), roster.digest())


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    public_key, private_key = _deterministic_keypair(20240601)
    # loaded once with the explicit consent, the 1024-bit key counts as a test key of this process
    path = tmp_path_factory.mktemp("keys") / "public_key.json"
    hefed.save_public_key(public_key, path)
    hefed.load_public_key(path, insecure_test_key=True)
    return public_key, private_key


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return filled(hefed.datasets.make_factories(4, seed=11))  # no column singles out a plant


@pytest.fixture(scope="module")
def names(frames) -> list[str]:
    return sorted(frames)


@pytest.fixture(scope="module")
def identities(names) -> dict[str, FactoryIdentity]:
    return {name: _identity(name) for name in names}


@pytest.fixture(scope="module")
def roster(identities) -> Roster:
    return _roster(list(identities.values()))


@pytest.fixture(scope="module")
def plain(frames, keys) -> dict[str, Bundle]:
    """Each factory's unmasked, unsigned statistics bundle (do not mutate)."""
    return {name: hefed.encrypt_statistics(frame, TARGET, keys[0], factory_id=name) for name, frame in frames.items()}


@pytest.fixture(scope="module")
def stats(frames) -> dict[str, SufficientStatistics]:
    return {name: compute_statistics(frame, TARGET, factory_id=name) for name, frame in frames.items()}


@pytest.fixture(scope="module")
def packed(plain, stats) -> dict[str, list[int]]:
    """Each factory's unmasked packed plaintexts (what a bundle without masks decrypts to)."""
    return {name: plain[name].layout().pack([*stats[name].to_vector(), *stats[name].support, 1]) for name in plain}


def _mask_all(plain: dict[str, Bundle], identities, roster: Roster, round_: Round) -> dict[str, Bundle]:
    return {name: mask_and_sign(plain[name], identities[name], roster, round_) for name in round_.participants}


@pytest.fixture(scope="module")
def round_all(roster, names) -> Round:
    return new_round(roster, names)


@pytest.fixture(scope="module")
def masked(plain, identities, roster, round_all) -> dict[str, Bundle]:
    """Every factory's masked, signed contribution to ``round_all`` (do not mutate)."""
    return _mask_all(plain, identities, roster, round_all)


def _raw(bundle: Bundle, private_key: PaillierPrivateKey) -> list[int]:
    """What a curious key holder gets by decrypting with phe directly, bypassing every check."""
    return [decrypt_raw(private_key, c) for c in bundle.ciphertexts]


def _forge(template: Bundle, parts: Sequence[tuple[Bundle, int]], contributors: Sequence[str],
           manifests: Sequence[dict]) -> Bundle:
    """An 'aggregate' built by hand (bypassing aggregate()): Π c_i^k_i with chosen labels and manifests."""
    nsq = template.public_key.nsquare
    cts = [1] * len(template.ciphertexts)
    for bundle, power in parts:
        cts = [a * pow(c, power, nsq) % nsq for a, c in zip(cts, bundle.ciphertexts, strict=True)]
    # The forger carries the genuine signed contributions it has (the key holder checks the product against them).
    carried = {b.contributors[0]: list(b.ciphertexts) for b, _ in parts if len(b.contributors) == 1}
    return Bundle(template.kind, template.public_key, template.target, list(template.features), template.encoding,
                  list(contributors), cts, template.layout_digest, dict(template.parameters),
                  round_id=template.round_id, manifests=[dict(m) for m in manifests], contributions=carried)


def _assert_refused_and_noise(fake: Bundle, private_key: PaillierPrivateKey, roster) -> None:
    """A forged aggregate is refused before decryption, and would be noise even if the checks were skipped."""
    with pytest.raises(RoundError):
        decrypt_statistics(fake, private_key, roster=roster, allow_unsigned=True)
    try:
        values = fake.layout().unpack(_raw(fake, private_key), len(fake.contributors))
    except PackingError:
        return
    assert values[-1] != len(fake.contributors)


def _copy(bundle: Bundle, **changes) -> Bundle:
    fields = {"kind": bundle.kind, "public_key": bundle.public_key, "target": bundle.target,
              "features": list(bundle.features), "encoding": bundle.encoding,
              "contributors": list(bundle.contributors), "ciphertexts": list(bundle.ciphertexts),
              "layout_digest": bundle.layout_digest, "parameters": dict(bundle.parameters),
              "round_id": bundle.round_id, "manifests": [dict(m) for m in bundle.manifests],
              "contributions": {f: list(c) for f, c in bundle.contributions.items()}}
    fields.update(changes)
    return Bundle(**fields)


def _manifests(bundles: dict[str, Bundle], ids: Sequence[str]) -> list[dict]:
    return [bundles[i].manifests[0] for i in ids]


def _uniformity_pvalues(values: Sequence[int], n: int) -> tuple[float, float]:
    """Chi-square p-value of value·16 // n in 16 equal bins, and KS p-value of value/n against U(0, 1)."""
    counts = [0] * 16
    for v in values:
        counts[v * 16 // n] += 1
    chi2 = sps.chisquare(counts).pvalue
    ks = sps.kstest([v / n for v in values], "uniform").pvalue
    return float(chi2), float(ks)


# --- 1. the curious key holder: single bundles and partial sums are uniform noise ---------------------------------
N_STAT_ROUNDS = 15


@pytest.fixture(scope="module")
def stat_rounds(plain, identities, roster, names) -> list[dict[str, Bundle]]:
    """Masked bundles of every factory in N_STAT_ROUNDS fixed rounds (deterministic masks)."""
    return [_mask_all(plain, identities, roster, _fixed_round(i + 1, names, roster)) for i in range(N_STAT_ROUNDS)]


def _single_bundle_plaintexts(stat_rounds, names, private_key) -> list[int]:
    # The masks of any 3 of 4 factories are independent and uniform (the 4th is minus their sum), so take 3.
    return [v for bundles in stat_rounds for name in names[:3] for v in _raw(bundles[name], private_key)]


def _partial_sum_plaintexts(stat_rounds, names, private_key) -> list[int]:
    # Per round, the partial sums of {a, b} and {a, b, c} are jointly uniform (the first holds r_ac, the second not).
    values = []
    for bundles in stat_rounds:
        for subset in (names[:2], names[:3]):
            partial = _forge(bundles[names[0]], [(bundles[i], 1) for i in subset], subset, [])
            values += _raw(partial, private_key)
    return values


def test_single_masked_bundle_decrypts_to_uniform_noise(keys, stat_rounds, names):
    public_key, private_key = keys
    values = _single_bundle_plaintexts(stat_rounds, names, private_key)
    assert len(values) >= 200
    chi2, ks = _uniformity_pvalues(values, public_key.n)
    assert chi2 > P_MIN and ks > P_MIN, (chi2, ks)


def test_partial_sum_is_uniform(keys, stat_rounds, names):
    public_key, private_key = keys
    values = _partial_sum_plaintexts(stat_rounds, names, private_key)
    assert len(values) >= 200
    chi2, ks = _uniformity_pvalues(values, public_key.n)
    assert chi2 > P_MIN and ks > P_MIN, (chi2, ks)


def test_uniformity_test_rejects_unmasked_plaintexts(keys, plain, stat_rounds, names):
    """The same statistical test fails on what unmasked bundles and the full round sum decrypt to."""
    public_key, private_key = keys
    unmasked = [v for _ in range(N_STAT_ROUNDS) for name in names[:3] for v in _raw(plain[name], private_key)]
    chi2, ks = _uniformity_pvalues(unmasked, public_key.n)
    assert chi2 < P_REJECT and ks < P_REJECT, (chi2, ks)
    full_sums = [v for bundles in stat_rounds
                 for v in _raw(_forge(bundles[names[0]], [(b, 1) for b in bundles.values()], names, []),
                               private_key)]
    chi2, ks = _uniformity_pvalues(full_sums, public_key.n)
    assert chi2 < P_REJECT and ks < P_REJECT, (chi2, ks)


def test_single_masked_bundle_never_reveals_the_factory_statistics(keys, stat_rounds, packed, names, plain):
    public_key, private_key = keys
    layout = plain[names[0]].layout()
    n_participants = len(names)
    for bundles in stat_rounds:
        for name, bundle in bundles.items():
            values = _raw(bundle, private_key)
            assert not set(values) & set(packed[name]), name
            for count in (1, n_participants):
                try:
                    unpacked = layout.unpack(values, count)
                except PackingError:
                    continue
                assert unpacked[-1] != count, f"{name}: a single masked bundle unpacked with a valid counter"
        # partial sums are not the partial sums of the statistics either
        for size in (2, 3):
            subset = names[:size]
            partial = _raw(_forge(bundles[subset[0]], [(bundles[i], 1) for i in subset], subset, []), private_key)
            clear = [sum(packed[i][p] for i in subset) for p in range(len(partial))]
            assert not set(partial) & set(clear)
            with pytest.raises(PackingError):
                layout.unpack(partial, size)
        # ... while the full sum is exactly the sum of the factories' packed plaintexts
        full = _raw(_forge(bundles[names[0]], [(b, 1) for b in bundles.values()], names, []), private_key)
        assert full == [sum(packed[i][p] for i in names) for p in range(len(full))]


def test_library_refuses_to_decrypt_a_single_masked_bundle(keys, masked, roster, names):
    _, private_key = keys
    single = masked[names[0]]
    with pytest.raises(RoundError):
        decrypt_statistics(single, private_key, min_contributors=1, roster=roster, allow_unsigned=True)
    with pytest.raises(UsageError):
        decrypt_statistics(single, private_key, min_contributors=1, allow_unsigned=True)


def test_same_factory_two_bundles_in_one_round_do_not_reveal_their_difference(tmp_path, keys, frames, roster,
                                                                               round_all, names):
    """A factory that would encrypt twice in one round (a retry on updated data, a holdout variant) would reuse its
    masks, and the difference of the two bundles would be the difference of the statistics: its ledger refuses."""
    public_key, _ = keys
    name = names[0]
    hefed.protocol.enroll(name, tmp_path / "id")
    identity = hefed.protocol.load_identity(tmp_path / "id")
    own_roster = hefed.protocol.Roster(dict(roster.members))
    own_roster.members[name] = identity.member
    round_ = new_round(own_roster, round_all.participants)
    whole, part = frames[name], frames[name].iloc[:-30]
    mask_and_sign(hefed.encrypt_statistics(whole, TARGET, public_key, factory_id=name), identity, own_roster, round_)
    with pytest.raises(RoundError, match="already contributed"):
        mask_and_sign(hefed.encrypt_statistics(part, TARGET, public_key, factory_id=name), identity, own_roster,
                      round_)
    # a new round is fine
    again = new_round(own_roster, round_all.participants)
    mask_and_sign(hefed.encrypt_statistics(part, TARGET, public_key, factory_id=name), identity, own_roster, again)


# --- 2. the malicious aggregator ------------------------------------------------------------------------------------
def test_full_round_decrypts_to_exact_statistics(keys, masked, roster, round_all, stats, names):
    _, private_key = keys
    agg = hefed.aggregate([masked[n] for n in names], roster, round_all)
    result = decrypt_statistics(agg, private_key, min_contributors=3, roster=roster, allow_unsigned=True)
    expected = stats[names[0]]
    for n in names[1:]:
        expected = expected + stats[n]
    assert result.gram == expected.gram
    assert sorted(result.contributors) == names


def test_aggregator_cannot_forward_single_bundle_as_aggregate(keys, masked, roster, round_all, names):
    _, private_key = keys
    a = names[0]
    single = masked[a]
    # through aggregate(): the round is incomplete
    with pytest.raises(RoundError, match="incomplete"):
        hefed.aggregate([single], roster, round_all)
    # forwarded as is: signed for four participants, labelled with one
    with pytest.raises(RoundError):
        verify_aggregate(single, roster, 1)
    with pytest.raises(RoundError):
        decrypt_statistics(single, private_key, min_contributors=1, roster=roster, allow_unsigned=True)
    # relabelled as everyone's, but carrying one manifest
    relabelled = _copy(single, contributors=list(names))
    with pytest.raises(RoundError, match="one signed manifest per contributor"):
        decrypt_statistics(relabelled, private_key, roster=roster, allow_unsigned=True)
    # relabelled, with manifests forged by the aggregator (its own key, or a factory id swapped)
    mallory = _identity("mallory", seed="attacker")
    forged = []
    for name in names:
        manifest = dict(single.manifests[0], factory_id=name)
        manifest["signature"] = mallory.sign(json.dumps(
            {k: v for k, v in manifest.items() if k != "signature"}, sort_keys=True, separators=(",", ":"),
        ).encode()).hex()
        forged.append(manifest)
    with pytest.raises(RoundError, match="invalid signature"):
        decrypt_statistics(_copy(single, contributors=list(names), manifests=forged), private_key, roster=roster,
                allow_unsigned=True)
    # relabelled, with the genuine manifests copied from the other factories' real bundles: every metadata check
    # passes (manifests do not bind the aggregate's ciphertexts), but the plaintext is one bundle's noise.
    fake = _copy(single, contributors=list(names), manifests=_manifests(masked, names))
    _assert_refused_and_noise(fake, private_key, roster)
    # the same with an unmasked single bundle relabelled: refused when the key holder uses the roster
    with pytest.raises(RoundError, match="not a masked"):
        verify_aggregate(_copy(single, round_id=None, manifests=[], contributors=list(names)), roster, 3)


def test_aggregator_cannot_drop_a_factory(keys, masked, roster, round_all, names):
    _, private_key = keys
    survivors, dropped = names[:3], names[3]
    with pytest.raises(RoundError) as info:
        hefed.aggregate([masked[n] for n in survivors], roster, round_all)
    message = str(info.value)
    assert dropped in message and ", ".join(survivors) in message
    # the error names whom to re-run with (the CLI turns it into `hefed round new --participants ...`)
    assert info.value.missing == [dropped] and info.value.survivors == survivors
    # a hand-made sum of the survivors, labelled as what it is: the manifests name four participants
    honest_label = _forge(masked[survivors[0]], [(masked[n], 1) for n in survivors], survivors,
                          _manifests(masked, survivors))
    with pytest.raises(RoundError, match="signed for participants"):
        decrypt_statistics(honest_label, private_key, roster=roster, allow_unsigned=True)
    # labelled as complete with the dropped factory's genuine manifest: the masks do not cancel
    fake = _forge(masked[survivors[0]], [(masked[n], 1) for n in survivors], names, _manifests(masked, names))
    _assert_refused_and_noise(fake, private_key, roster)


def test_unknown_factory_is_refused(keys, frames, masked, plain, roster, round_all, names):
    public_key, private_key = keys
    intruder = _identity("intruder-99", seed="intruder")
    assert "intruder-99" not in roster.members
    with pytest.raises(UsageError, match="not in the roster"):
        new_round(roster, [*names, "intruder-99"])
    bundle = hefed.encrypt_statistics(frames[names[0]], TARGET, public_key, factory_id="intruder-99")
    # the real round and roster: the intruder cannot even sign
    with pytest.raises(RoundError):
        mask_and_sign(bundle, intruder, roster, round_all)
    # its own view: a roster with itself added and a copy of the round listing it
    own_roster = _roster([*(_identity(n) for n in names), intruder])
    own_round = Round(round_all.round_id, tuple(sorted([*names, "intruder-99"])), own_roster.digest())
    injected = mask_and_sign(bundle, intruder, own_roster, own_round)
    with pytest.raises(RoundError, match="not in the roster"):
        verify_contribution(injected, roster, round_all)
    with pytest.raises(RoundError, match="not in the roster"):
        hefed.aggregate([*(masked[n] for n in names), injected], roster, round_all)
    # posing as a roster member, signed with the intruder's key
    posing = _copy(injected, contributors=[names[0]],
                   manifests=[dict(injected.manifests[0], factory_id=names[0],
                                   participants=list(round_all.participants))])
    with pytest.raises(RoundError, match="invalid signature"):
        hefed.aggregate([posing, *(masked[n] for n in names[1:])], roster, round_all)
    # smuggled into a hand-made aggregate: the key holder checks the manifests against the roster
    smuggled = _forge(masked[names[0]], [*((masked[n], 1) for n in names), (injected, 1)], ["intruder-99", *names],
                      [injected.manifests[0], *_manifests(masked, names)])
    with pytest.raises(RoundError, match="not in the roster"):
        decrypt_statistics(smuggled, private_key, roster=roster, allow_unsigned=True)


def test_roster_member_outside_the_round_is_refused(keys, plain, identities, roster, names):
    """A roster member signs for a round it is not part of, or for the wrong round."""
    _, private_key = keys
    inside, outsider = names[:3], names[3]
    round_ = new_round(roster, inside)
    with pytest.raises(RoundError, match="not a participant"):
        mask_and_sign(plain[outsider], identities[outsider], roster, round_)
    # it signs a doctored copy of the round listing itself
    doctored = Round(round_.round_id, tuple(names), round_.roster_digest)
    sneaked = mask_and_sign(plain[outsider], identities[outsider], roster, doctored)
    honest = _mask_all(plain, identities, roster, round_)
    with pytest.raises(RoundError, match="other participants"):
        hefed.aggregate([*honest.values(), sneaked], roster, round_)
    # or for another round altogether
    other = mask_and_sign(plain[outsider], identities[outsider], roster, new_round(roster, names))
    with pytest.raises(RoundError, match="belongs to round"):
        hefed.aggregate([*honest.values(), other], roster, round_)
    # a hand-made aggregate adding it: its manifest names other participants than the contributor list
    fake = _forge(honest[inside[0]], [*((honest[n], 1) for n in inside), (sneaked, 1)], names,
                  [*_manifests(honest, inside), sneaked.manifests[0]])
    with pytest.raises(RoundError):
        decrypt_statistics(fake, private_key, roster=roster, allow_unsigned=True)


def test_replayed_bundle_from_other_round_is_refused(keys, plain, identities, roster, names):
    _, private_key = keys
    old_round, new = new_round(roster, names), new_round(roster, names)
    old = _mask_all(plain, identities, roster, old_round)
    current = _mask_all(plain, identities, roster, new)
    a = names[0]
    with pytest.raises(RoundError, match="belongs to round"):
        hefed.aggregate([old[a], *(current[n] for n in names[1:])], roster, new)
    # the aggregator relabels the old bundle's round id: its signature names the old round
    relabelled = _copy(old[a], round_id=new.round_id)
    with pytest.raises(RoundError, match="signed round_id"):
        hefed.aggregate([relabelled, *(current[n] for n in names[1:])], roster, new)
    # ... and with the manifest's round id changed too, the signature fails
    resigned = _copy(relabelled, manifests=[dict(relabelled.manifests[0], round_id=new.round_id)])
    with pytest.raises(RoundError, match="invalid signature"):
        hefed.aggregate([resigned, *(current[n] for n in names[1:])], roster, new)
    # a hand-made aggregate with the old ciphertexts under the new manifests decrypts to noise
    fake = _forge(current[a], [(old[a], 1), *((current[n], 1) for n in names[1:])], names,
                  _manifests(current, names))
    _assert_refused_and_noise(fake, private_key, roster)
    # a whole old aggregate keeps its own round id: it decrypts to the old round's (same) statistics only
    old_agg = hefed.aggregate([old[n] for n in names], roster, old_round)
    assert old_agg.round_id == old_round.round_id != new.round_id


def test_duplicate_bundle_is_refused(keys, masked, roster, round_all, names):
    _, private_key = keys
    a, b = names[0], names[1]
    with pytest.raises(DuplicateContributorError):
        hefed.aggregate([masked[a], *(masked[n] for n in names)], roster, round_all)
    with pytest.raises(DuplicateContributorError):
        check_round_complete([a, *names], round_all)
    # the copy relabelled as another factory: signed by a, labelled b
    with pytest.raises(RoundError, match="signed by"):
        hefed.aggregate([_copy(masked[a], contributors=[b]), *(masked[n] for n in names if n != b)], roster,
                        round_all)
    # hand-made: a twice, listed twice with its manifest twice
    twice = _forge(masked[a], [(masked[a], 2), *((masked[n], 1) for n in names[1:])], [a, *names],
                   _manifests(masked, [a, *names]))
    with pytest.raises(RoundError):
        decrypt_statistics(twice, private_key, roster=roster, allow_unsigned=True)
    # hand-made: a's manifest in place of b's
    swapped = _forge(masked[a], [(masked[n], 1) for n in names], names, _manifests(masked, [a, a, *names[2:]]))
    with pytest.raises(RoundError, match="one to one"):
        decrypt_statistics(swapped, private_key, roster=roster, allow_unsigned=True)


@pytest.mark.parametrize("powers", [
    pytest.param({0: 3, 1: 1, 2: 1, 3: 1}, id="one-bundle-cubed"),
    pytest.param({0: 2, 1: 1, 2: 1, 3: 1}, id="one-bundle-twice"),
    pytest.param({0: 2, 1: 0, 2: 1, 3: 1}, id="one-twice-one-dropped-counter-matches"),
    pytest.param({0: 2, 1: 3, 2: 1, 3: 1}, id="two-bundles-unevenly"),
    pytest.param({0: 3, 1: 3, 2: 3, 3: 3}, id="whole-aggregate-cubed"),
    pytest.param({0: 1, 1: -1, 2: 1, 3: 1}, id="one-bundle-subtracted"),
])
def test_scaled_or_repeated_bundle_fails_integrity(keys, masked, roster, round_all, names, powers):
    public_key, private_key = keys
    nsq = public_key.nsquare
    parts = []
    for i, power in powers.items():
        bundle = masked[names[i]]
        if power < 0:
            bundle = _copy(bundle, ciphertexts=[pow(c, -1, nsq) for c in bundle.ciphertexts])
        parts.append((bundle, abs(power)))
    fake = _forge(masked[names[0]], parts, names, _manifests(masked, names))
    _assert_refused_and_noise(fake, private_key, roster)
    # submitted through aggregate(), a scaled bundle no longer matches its signature
    scaled = _copy(masked[names[0]], ciphertexts=[pow(c, 3, nsq) for c in masked[names[0]].ciphertexts])
    with pytest.raises(RoundError, match="do not match their signature"):
        hefed.aggregate([scaled, *(masked[n] for n in names[1:])], roster, round_all)


def test_aggregator_cannot_shift_the_sum_by_an_encrypted_offset(keys, masked, roster, round_all, names):
    public_key, private_key = keys
    agg = hefed.aggregate([masked[n] for n in names], roster, round_all)
    layout = agg.layout()
    offset = [0] * len(layout.slots)
    offset[0] = 1000  # a thousand more rows; the counter slot (last) stays 0
    shift = layout.pack([s.lo + v for s, v in zip(layout.slots, offset, strict=True)])
    nsq = public_key.nsquare
    shifted = _copy(agg, ciphertexts=[c * ((1 + m * public_key.n) * pow(random_unit(public_key.n), public_key.n, nsq))
                                      % nsq for c, m in zip(agg.ciphertexts, shift, strict=True)])
    # the key holder checks that the aggregate is exactly the product of the signed contributions it carries
    with pytest.raises(RoundError, match="not the product"):
        decrypt_statistics(shifted, private_key, roster=roster, allow_unsigned=True)


def test_unmasked_bundles_are_refused_in_a_round(keys, plain, masked, roster, round_all, names):
    _, private_key = keys
    with pytest.raises(RoundError, match="a plain bundle, not a masked, signed contribution"):
        hefed.aggregate([plain[names[0]], *(masked[n] for n in names[1:])], roster, round_all)
    with pytest.raises(UsageError, match="give the roster and the round"):
        hefed.aggregate([masked[n] for n in names])
    with pytest.raises(RoundError, match="not a masked"):
        decrypt_statistics(hefed.aggregate(plain.values()), private_key, roster=roster, allow_unsigned=True)
    with pytest.raises(UsageError, match="give the roster"):
        decrypt_statistics(hefed.aggregate([masked[n] for n in names], roster, round_all), private_key,
                allow_unsigned=True)


def test_round_below_threshold_is_refused(keys, plain, identities, roster, names):
    _, private_key = keys
    pair = new_round(roster, names[:2])
    agg = hefed.aggregate(_mask_all(plain, identities, roster, pair).values(), roster, pair)
    with pytest.raises(TooFewContributorsError):
        decrypt_statistics(agg, private_key, roster=roster, allow_unsigned=True)
    assert decrypt_statistics(agg, private_key, min_contributors=2, roster=roster, allow_unsigned=True).n > 0


# --- network observer and tampering -----------------------------------------------------------------------------------
def test_network_observer_sees_only_ciphertexts_and_signed_metadata(keys, frames, plain, masked, identities, roster,
                                                                    round_all, stats, names, tmp_path):
    public_key, private_key = keys
    a = names[0]
    path = masked[a].save(tmp_path / "a.bundle.json")
    text = path.read_text()
    obj = json.loads(text)
    assert set(obj) == {"format", "version", "kind", "public_key", "key_fingerprint", "schema", "encoding",
                        "parameters", "layout_digest", "contributors", "ciphertexts", "round_id", "manifests"}
    assert set(obj["public_key"]) == {"n"}
    assert set(obj["manifests"][0]) == {"factory_id", "round_id", "participants", "key_fingerprint", "kind",
                                        "schema_digest", "layout_digest", "ciphertext_digest", "signature"}
    # no statistic in the clear (the big Gram entries would be unmistakable) and no private key material
    for value in stats[a].to_vector():
        if abs(value) > 10**9:
            assert str(value) not in text
    identity = identities[a]
    private_bytes = [identity.signing_key.private_bytes_raw(), identity.agreement_key.private_bytes_raw()]
    for secret in private_bytes:
        assert secret.hex() not in text
    for peer in names[1:]:
        assert identity.shared_secret(roster.get(peer)).hex() not in text
    # the masks themselves are not in the file either
    masks = factory_masks(identity, roster, round_all, plain[a])
    assert not any(str(m) in text for m in masks)
    # encryption is randomised: the same data masked again gives unrelated ciphertexts, the same plaintexts
    fresh = mask_and_sign(hefed.encrypt_statistics(frames[a], TARGET, public_key, factory_id=a), identity, roster,
                          round_all)
    assert not set(fresh.ciphertexts) & set(masked[a].ciphertexts)
    assert _raw(fresh, private_key) == _raw(masked[a], private_key)
    assert Bundle.load(path).to_dict() == masked[a].to_dict()


def test_tampered_ciphertext_fails_signature(keys, masked, roster, round_all, names, tmp_path):
    public_key, private_key = keys
    a = names[0]
    rest = [masked[n] for n in names[1:]]
    nsq = public_key.nsquare
    cts = list(masked[a].ciphertexts)
    # re-randomised (same plaintext!) or additively shifted: the ciphertext digest no longer matches the signature
    rerandomised = cts[:1] + [cts[1] * pow(random_unit(public_key.n), public_key.n, nsq) % nsq] + cts[2:]
    shifted = [cts[0] * (1 + public_key.n) % nsq, *cts[1:]]
    for tampered in (rerandomised, shifted):
        with pytest.raises(RoundError, match="do not match their signature"):
            hefed.aggregate([_copy(masked[a], ciphertexts=tampered), *rest], roster, round_all)
    # a byte flipped in the file on the way
    path = masked[a].save(tmp_path / "a.bundle.json")
    obj = json.loads(path.read_text())
    raw = bytearray(base64.b64decode(obj["ciphertexts"][0]))
    raw[-1] ^= 0x01
    obj["ciphertexts"][0] = base64.b64encode(bytes(raw)).decode()
    path.write_text(json.dumps(obj))
    with pytest.raises(RoundError, match="do not match their signature"):
        hefed.aggregate([path, *rest], roster, round_all)
    # any signed field changed, or the signature itself
    manifest = masked[a].manifests[0]
    for change in ({"participants": list(names[:3])}, {"kind": "summary"}, {"schema_digest": "0" * 32},
                   {"signature": ("00" if manifest["signature"][:2] != "00" else "11") + manifest["signature"][2:]},
                   {"signature": "not hex"}):
        with pytest.raises(RoundError):
            verify_contribution(_copy(masked[a], manifests=[dict(manifest, **change)]), roster, round_all)
    # and inside an aggregate, at the key holder
    agg = hefed.aggregate([masked[n] for n in names], roster, round_all)
    bad = [dict(m) for m in agg.manifests]
    bad[0]["ciphertext_digest"] = "0" * 64
    with pytest.raises(RoundError, match="invalid signature"):
        decrypt_statistics(_copy(agg, manifests=bad), private_key, roster=roster, allow_unsigned=True)


# --- 3. exactness with masks ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exact_setup(keys):
    frames5 = filled(hefed.datasets.make_factories(5, seed=5))
    names5 = sorted(frames5)
    ids5 = {n: _identity(n, seed="exact") for n in names5}
    model = hefed.solve(compute_statistics(pd.concat(list(frames5.values()), ignore_index=True), TARGET))
    return frames5, names5, ids5, _roster(list(ids5.values())), model


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["statistics", "evaluation", "coefficients"]), rows=st.integers(25, 90),
       data=st.data())
def test_masks_preserve_exactness(keys, exact_setup, kind, rows, data):
    public_key, private_key = keys
    frames5, names5, ids5, roster5, model = exact_setup
    chosen = sorted(data.draw(st.sets(st.sampled_from(names5), min_size=2, max_size=5), label="participants"))
    round_ = new_round(roster5, chosen)
    plain_bundles, masked_bundles = [], []
    for name in chosen:
        frame = frames5[name].iloc[:rows]
        if kind == "evaluation":
            bundle = hefed.encrypt_evaluation(model, frame, TARGET, public_key, name)
            masked_bundle = mask_and_sign(bundle, ids5[name], roster5, round_)
        else:
            options = {"request": CoefficientsRequest(ridge=1.0) if kind == "coefficients" else StatisticsRequest()}
            bundle = encrypt_table(frame, TARGET, public_key, factory_id=name, **options).bundle
            masked_bundle = encrypt_table(frame, TARGET, public_key, factory_id=name,
                                          masking=Masking(round_, ids5[name], roster5), **options).bundle
        plain_bundles.append(bundle)
        masked_bundles.append(masked_bundle)
    agg_plain = hefed.aggregate(plain_bundles)
    agg_masked = hefed.aggregate(masked_bundles, roster5, round_)
    # integer for integer: the masked aggregate decrypts to the very plaintexts of the unmasked one
    assert _raw(agg_masked, private_key) == _raw(agg_plain, private_key)
    result = decrypt_bundle(agg_masked, private_key, min_contributors=len(chosen), roster=roster5, allow_unsigned=True)
    assert result == decrypt_bundle(agg_plain, private_key, min_contributors=len(chosen), allow_unsigned=True)
    if kind == "statistics":
        expected = compute_statistics(frames5[chosen[0]].iloc[:rows], TARGET)
        for name in chosen[1:]:
            expected = expected + compute_statistics(frames5[name].iloc[:rows], TARGET)
        assert result.gram == expected.gram
    # and every single masked contribution is unreadable on its own
    for bundle in masked_bundles:
        with pytest.raises(PackingError):
            bundle.layout().unpack(_raw(bundle, private_key), 1)


# --- 4. drop-out without a re-run, through the CLI -------------------------------------------------------------------
def _run(*commands: Sequence[object]) -> list[subprocess.CompletedProcess]:
    """Run independent CLI commands (in-process, see cli_helpers); their results in order."""
    return run_cli_parallel([list(cmd) for cmd in commands])


def _ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    return result


def test_dropout_cli_end_to_end(tmp_path, frames, names):
    """A version 2 round through the CLI (in process): one factory drops out after joining; no one re-encrypts,
    and the survivors' exact sum is decrypted. (With real processes: tests/test_dropout.py.)"""
    public_key, private_key = hefed.generate_keypair(1024, insecure_test_key=True)
    pub, priv = tmp_path / "public_key.json", tmp_path / "private_key.json"
    hefed.save_public_key(public_key, pub)
    hefed.save_private_key(private_key, priv)
    trio = names[:3]
    csv = {}
    for name in trio:
        csv[name] = tmp_path / f"{name}.csv"
        frames[name].to_csv(csv[name], index=False)
    roster_path = tmp_path / "roster.json"
    for result in _run(*(["enroll", "--factory-id", n, "--out-dir", tmp_path / n] for n in trio)):
        _ok(result)
    assert stat.S_IMODE((tmp_path / trio[0] / "identity.key.json").stat().st_mode) == 0o600
    _ok(_run(["roster", "add", roster_path, *(tmp_path / n / "identity.pub.json" for n in trio)])[0])

    def start(tag: str) -> Path:
        """round new, every factory joins, round start: the round keys."""
        round1, listing = _run(["round", "new", "--roster", roster_path, "--participants", ",".join(trio),
                                "--out", tmp_path / f"round{tag}.json"], ["roster", "list", roster_path])
        _ok(round1)
        assert all(n in _ok(listing).stdout for n in trio)
        for result in _run(*(["round", "join", "--round", tmp_path / f"round{tag}.json", "--identity", tmp_path / n,
                              "--roster", roster_path, "--out", tmp_path / f"join{tag}-{n}.json"] for n in trio)):
            _ok(result)
        _ok(_run(["round", "start", *(tmp_path / f"join{tag}-{n}.json" for n in trio), "--round",
                  tmp_path / f"round{tag}.json", "--roster", roster_path, "--out", tmp_path / f"keys{tag}.json"])[0])
        return tmp_path / f"keys{tag}.json"

    def encrypt(name: str, keys_file: Path, out: Path) -> list[object]:
        return ["encrypt", csv[name], "--target", TARGET, "--public-key", pub, "--factory-id", name, "--out", out,
                "--round", keys_file, "--identity", tmp_path / name, "--roster", roster_path, "--insecure-test-key"]

    keys1 = start("1")
    survivors, missing = trio[:2], trio[2]
    for result in _run(*(encrypt(n, keys1, tmp_path / f"{n}.r1.json") for n in survivors)):
        _ok(result)
    # with t = 2 of 3 the two survivors suffice; one alone fails the round, naming who is missing
    failed = _run(["round", "collect", tmp_path / f"{survivors[0]}.r1.json", "--round-keys", keys1, "--roster",
                   roster_path, "--out", tmp_path / "c1.json", "--request", tmp_path / "q1.json"])[0]
    assert failed.returncode == 1, (failed.stdout, failed.stderr)
    assert "Traceback" not in failed.stderr
    assert missing in failed.stderr and survivors[1] in failed.stderr and "at least 2" in failed.stderr
    assert not (tmp_path / "c1.json").exists() and not (tmp_path / "q1.json").exists()
    # the version 1 aggregate command points to the round commands
    plain_agg = _run(["aggregate", *(tmp_path / f"{n}.r1.json" for n in survivors), "--roster", roster_path,
                      "--round", keys1, "--out", tmp_path / "agg1.json"])[0]
    assert plain_agg.returncode == 2 and "round collect" in plain_agg.stderr, plain_agg.stderr
    keys2 = start("2")
    replay = _run(["round", "collect", *(tmp_path / f"{n}.r1.json" for n in survivors), "--round-keys", keys2,
                   "--roster", roster_path, "--out", tmp_path / "replay.json", "--request", tmp_path / "rq.json"])[0]
    assert replay.returncode == 1 and "belongs to round" in replay.stderr, replay.stderr
    _ok(_run(["round", "collect", *(tmp_path / f"{n}.r1.json" for n in survivors), "--round-keys", keys1, "--roster",
              roster_path, "--out", tmp_path / "collected.json", "--request", tmp_path / "request.json"])[0])
    for result in _run(*(["round", "reveal", "--request", tmp_path / "request.json", "--identity", tmp_path / n,
                          "--roster", roster_path, "--out", tmp_path / f"reveal-{n}.json"] for n in survivors)):
        _ok(result)
    late = _run(["round", "reveal", "--request", tmp_path / "request.json", "--identity", tmp_path / missing,
                 "--roster", roster_path, "--out", tmp_path / f"reveal-{missing}.json"])[0]
    assert late.returncode == 1 and "did not contribute" in late.stderr, late.stderr
    _ok(_run(["round", "unmask", *(tmp_path / f"reveal-{n}.json" for n in survivors), "--collected",
              tmp_path / "collected.json", "--round-keys", keys1, "--roster", roster_path, "--out",
              tmp_path / "agg.json"])[0])
    decrypted, no_roster, default_threshold = _run(
        ["decrypt", tmp_path / "agg.json", "--private-key", priv, "--roster", roster_path,
         "--min-contributors", 2, "--out", tmp_path / "stats.json"],
        ["decrypt", tmp_path / "agg.json", "--private-key", priv, "--min-contributors", 2,
         "--out", tmp_path / "stats-no-roster.json"],
        ["decrypt", tmp_path / "agg.json", "--private-key", priv, "--roster", roster_path,
         "--out", tmp_path / "stats-3.json"])
    _ok(decrypted)
    assert no_roster.returncode == 2 and "roster" in no_roster.stderr, no_roster.stderr
    assert default_threshold.returncode == 1 and "at least 3" in default_threshold.stderr, default_threshold.stderr
    assert not (tmp_path / "stats-no-roster.json").exists() and not (tmp_path / "stats-3.json").exists()
    result = SufficientStatistics.load(tmp_path / "stats.json")
    expected = compute_statistics(csv[survivors[0]], TARGET) + compute_statistics(csv[survivors[1]], TARGET)
    assert result.gram == expected.gram
    assert sorted(result.contributors) == survivors


# --- 5. identities and the roster -------------------------------------------------------------------------------------
def test_identity_private_file_mode_0600(tmp_path):
    private_path, public_path = enroll("plant-a", tmp_path / "a")
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    public = json.loads(public_path.read_text())
    assert "signing_private" not in public and "agreement_private" not in public
    private = json.loads(private_path.read_text())
    assert {"signing_private", "agreement_private"} <= set(private)
    identity = load_identity(tmp_path / "a")
    assert identity.member == load_member(public_path)
    with pytest.raises(UsageError):  # exists, no force
        enroll("plant-a", tmp_path / "a")
    with pytest.raises(UsageError):
        enroll("../evil", tmp_path / "b")


def test_load_identity_refuses_group_readable_key(tmp_path):
    private_path, _ = enroll("plant-a", tmp_path)
    for mode in (0o644, 0o640, 0o604):
        private_path.chmod(mode)
        with pytest.raises(InsecureKeyError):
            load_identity(private_path)
    assert load_identity(private_path, allow_insecure_permissions=True).factory_id == "plant-a"
    private_path.chmod(0o600)
    assert load_identity(tmp_path).factory_id == "plant-a"


def test_roster_add_is_atomic_and_refuses_other_keys_unless_replace(tmp_path):
    for name in ("plant-a", "plant-b", "plant-c"):
        enroll(name, tmp_path / name)
    enroll("plant-a", tmp_path / "plant-a-new")  # the same id with new keys
    roster_path = tmp_path / "roster.json"
    roster_add(roster_path, [tmp_path / "plant-a" / "identity.pub.json", tmp_path / "plant-b" / "identity.pub.json"])
    before = roster_path.read_bytes()
    # adding the same identity again is a no-op
    roster_add(roster_path, [tmp_path / "plant-a" / "identity.pub.json"])
    assert roster_path.read_bytes() == before
    # a batch with a conflicting entry changes nothing, not even the valid new member before it
    with pytest.raises(UsageError, match="other keys"):
        roster_add(roster_path, [tmp_path / "plant-c" / "identity.pub.json",
                                 tmp_path / "plant-a-new" / "identity.pub.json"])
    assert roster_path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["roster.json"]  # no temporary left over
    # with replace, the new keys win
    roster = roster_add(roster_path, [tmp_path / "plant-a-new" / "identity.pub.json"], replace=True)
    assert roster.get("plant-a") == load_member(tmp_path / "plant-a-new" / "identity.pub.json")
    assert Roster.load(roster_path).get("plant-a") == roster.get("plant-a")


def test_roster_digest_mismatch_refused(keys, frames, plain, identities, roster, round_all, names):
    a = names[0]
    changed = _roster(list(identities.values()))
    changed.add(_identity("late-joiner").member)
    assert changed.digest() != round_all.roster_digest
    with pytest.raises(RoundError, match="roster differs"):
        mask_and_sign(plain[a], identities[a], changed, round_all)
    # a roster in which another member's keys were swapped is refused the same way
    swapped = _roster(list(identities.values()))
    swapped.add(_identity(names[1], seed="swapped").member, replace=True)
    with pytest.raises(RoundError, match="roster differs"):
        mask_and_sign(plain[a], identities[a], swapped, round_all)
    with pytest.raises(RoundError, match="roster differs"):
        encrypt_table(frames[a], TARGET, keys[0], factory_id=a, masking=Masking(round_all, identities[a], changed))


def test_wrong_identity_for_factory_refused(keys, plain, identities, roster, round_all, names, frames):
    a, b = names[0], names[1]
    # same factory id, other keys than the roster's
    impostor = _identity(a, seed="re-enrolled")
    with pytest.raises(RoundError, match="other keys"):
        mask_and_sign(plain[a], impostor, roster, round_all)
    # another factory's identity for this factory's bundle
    with pytest.raises(UsageError):
        mask_and_sign(plain[a], identities[b], roster, round_all)
    with pytest.raises(UsageError, match="belongs to"):
        encrypt_table(frames[a], TARGET, keys[0], factory_id=a, masking=Masking(round_all, identities[b], roster))
    with pytest.raises(UsageError):
        encrypt_table(frames[a], TARGET, keys[0], factory_id=a, masking=Masking(round_all, None, roster))
