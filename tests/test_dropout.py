"""Drop-outs without re-runs: version 2 rounds (SecAgg on Paillier, hefed.protocol._recovery).

Each test is named after what it shows or the attack it refuses, so THREAT_MODEL.md can cite it:

* Shamir sharing: test_shamir_any_t_of_n_shares_reconstruct, test_shamir_fewer_than_t_shares_say_nothing
  (exact uniformity over a small field), test_shamir_refuses_bad_input
* masks and recovery: test_masks_cancel_for_any_survivor_set (hypothesis), test_recovery_gives_exactly_the_survivors_
  pooled_statistics (one and two drop-outs), test_no_dropout_round_decrypts_exactly
* a malicious aggregator: test_two_survivor_sets_for_one_round_are_refused (asking a survivor for both shares of one
  member), test_equivocation_leaves_fewer_than_t_seed_shares, test_factory_named_a_dropout_reveals_nothing,
  test_fewer_than_t_survivors_fail_cleanly, test_threshold_of_half_or_less_is_refused_at_join,
  test_forged_join_signature_is_refused, test_substituted_join_is_refused_at_encrypt,
  test_substituted_share_does_not_open, test_unmask_request_for_other_round_keys_is_refused
* the key holder's check: test_forged_reveal_is_refused_by_the_key_holder, test_wrong_share_signed_by_a_survivor_is_
  refused, test_tampered_correction_is_refused, test_aggregate_without_reveals_is_refused,
  test_key_holder_returns_the_survivors
* a drop-out's late bundle: test_late_bundle_of_a_dropout_stays_masked,
  test_statistics_plus_a_self_mask_are_uniform_noise
* no differencing at the factory: test_established_set_rule_at_the_factory, test_secret_is_deleted_after_reveal
* end to end with files and real processes: test_dropout_cli_end_to_end_real_processes (slow)
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import stat
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import gmpy2
import pandas as pd
import pytest
from cli_helpers import run_cli_subprocess
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phe import PaillierPublicKey
from scipy import stats as sps
from support_helpers import filled

import hefed
from hefed.data import compute_statistics
from hefed.errors import IncompleteRoundError, RoundError, TooFewContributorsError, UsageError
from hefed.primitives import shamir
from hefed.primitives.packing import PackingError
from hefed.primitives.paillier import decrypt_raw
from hefed.protocol import (
    ColumnSpec,
    FactoryIdentity,
    Join,
    Masking,
    Reveal,
    Roster,
    Round,
    RoundKeys,
    Study,
    collect_contributions,
    enroll,
    join_round,
    load_identity,
    make_unmask_request,
    mask_contribution,
    propose_round,
    reveal,
    run_round,
    start_round,
    unmask,
    verify_aggregate,
)
from hefed.protocol._recovery import pair_mask, self_mask
from hefed.roles import collect_round, decrypt_statistics, unmask_round
from hefed.stats import SufficientStatistics

# real Flower processes: one worker at a time (pyproject addopts, --dist loadgroup)
pytestmark = pytest.mark.xdist_group("flower")

TARGET = "co2_t"


# --- fixtures -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keys():
    return hefed.generate_keypair(1024, insecure_test_key=True)


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return filled(hefed.datasets.make_factories(5, seed=7))  # no column singles out a plant


@pytest.fixture(scope="module")
def names(frames) -> list[str]:
    return sorted(frames)


@pytest.fixture(scope="module")
def identities(names) -> dict[str, FactoryIdentity]:
    """In-memory identities (no folder: the caller keeps each round's secret)."""
    return {n: FactoryIdentity(n, Ed25519PrivateKey.generate(), X25519PrivateKey.generate()) for n in names}


@pytest.fixture(scope="module")
def roster(identities) -> Roster:
    result = Roster()
    for identity in identities.values():
        result.add(identity.member)
    return result


@pytest.fixture(scope="module")
def plain(frames, keys) -> dict[str, hefed.Bundle]:
    return {n: hefed.encrypt_statistics(f, TARGET, keys[0], factory_id=n) for n, f in frames.items()}


@pytest.fixture(scope="module")
def exact(frames) -> dict[str, SufficientStatistics]:
    return {n: compute_statistics(f, TARGET, factory_id=n) for n, f in frames.items()}


def _pooled(exact, members):
    total = None
    for name in members:
        total = exact[name] if total is None else total + exact[name]
    return total


def _decrypt(bundle, keys, roster, min_contributors=2):
    return decrypt_statistics(bundle, keys[1], min_contributors=min_contributors, roster=roster)


def _folder_identities(tmp_path: Path, names) -> dict[str, FactoryIdentity]:
    for name in names:
        enroll(name, tmp_path / name)
    return {name: load_identity(tmp_path / name) for name in names}


def _roster_of(identities) -> Roster:
    result = Roster()
    for identity in identities.values():
        result.add(identity.member)
    return result


# --- Shamir ---------------------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(secret=st.integers(0, shamir.PRIME - 1), count=st.integers(1, 9), data=st.data())
def test_shamir_any_t_of_n_shares_reconstruct(secret, count, data):
    threshold = data.draw(st.integers(1, count))
    shares = shamir.split(secret, threshold, count)
    assert sorted(shares) == list(range(1, count + 1))
    subset = data.draw(st.lists(st.sampled_from(sorted(shares)), min_size=threshold, max_size=count, unique=True))
    assert shamir.combine({i: shares[i] for i in subset}) == secret
    raw = secret.to_bytes(33, "big")[1:] if secret < 2**256 else None
    if raw is not None:
        assert shamir.combine_bytes(shamir.split_bytes(raw, threshold, count)) == raw


@pytest.mark.parametrize(("prime", "threshold", "count"), [(7, 3, 5), (11, 2, 4), (5, 4, 4)])
def test_shamir_fewer_than_t_shares_say_nothing(monkeypatch, prime, threshold, count):
    """Over every polynomial (all prime^(t−1) coefficient choices), any t−1 shares take every value exactly
    equally often, whatever the secret: they carry no information about it (exact, not statistical)."""
    for indexes in itertools.combinations(range(1, count + 1), threshold - 1):
        tallies = []
        for secret in range(prime):
            tally: Counter[tuple[int, ...]] = Counter()
            for coefficients in itertools.product(range(prime), repeat=threshold - 1):
                draws = iter(coefficients)
                monkeypatch.setattr(shamir.secrets, "randbelow", lambda _bound, d=draws: next(d))
                shares = shamir.split(secret, threshold, count, prime)
                tally[tuple(shares[i] for i in indexes)] += 1
            assert len(tally) == prime ** (threshold - 1) and set(tally.values()) == {1}
            tallies.append(tally)
        assert all(t == tallies[0] for t in tallies)
        # while t shares always give the secret back
    monkeypatch.undo()
    shares = shamir.split(3, threshold, count, prime)
    assert shamir.combine({i: shares[i] for i in range(1, threshold + 1)}, prime) == 3


def test_shamir_refuses_bad_input():
    assert gmpy2.is_prime(shamir.PRIME) and shamir.PRIME > 2**256
    with pytest.raises(ValueError):
        shamir.split(1, 0, 3)
    with pytest.raises(ValueError):
        shamir.split(1, 4, 3)
    with pytest.raises(ValueError):
        shamir.split(shamir.PRIME, 2, 3)
    with pytest.raises(ValueError):
        shamir.combine({1: 5, 1 + shamir.PRIME: 6})  # the same point twice
    with pytest.raises(ValueError):
        shamir.combine({})
    with pytest.raises(ValueError):
        shamir.split_bytes(bytes(33), 2, 3)


# --- masks cancel, recovery is exact ---------------------------------------------------------------------------------
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_masks_cancel_for_any_survivor_set(keys, names, identities, roster, plain, exact, data):
    """Any invited set, any threshold above half, any drop-outs leaving at least t: the aggregate decrypts to
    exactly the survivors' pooled statistics, and its counter to the number of survivors."""
    invited = data.draw(st.lists(st.sampled_from(names), min_size=3, max_size=len(names), unique=True))
    threshold = data.draw(st.integers(len(invited) // 2 + 1, len(invited)))
    dropouts = data.draw(st.lists(st.sampled_from(sorted(invited)), max_size=len(invited) - threshold, unique=True))
    run = run_round({n: plain[n] for n in invited}, identities, roster, dropouts=dropouts, threshold=threshold)
    survivors = sorted(set(invited) - set(dropouts))
    assert run.aggregate.contributors == survivors
    assert verify_aggregate(run.aggregate, roster, 1) == tuple(survivors)
    result = _decrypt(run.aggregate, keys, roster, min_contributors=1)
    expected = _pooled(exact, survivors)
    assert result.gram == expected.gram and result.n == expected.n


@pytest.mark.parametrize("dropped", [1, 2])
def test_recovery_gives_exactly_the_survivors_pooled_statistics(keys, names, identities, roster, plain, exact,
                                                                 dropped):
    dropouts = names[1:1 + dropped]
    run = run_round(plain, identities, roster, dropouts=dropouts)
    survivors = [n for n in names if n not in dropouts]
    assert run.round.threshold == 3 and list(run.request.dropouts) == dropouts
    result = _decrypt(run.aggregate, keys, roster, min_contributors=3)
    expected = _pooled(exact, survivors)
    assert result.gram == expected.gram and result.n == expected.n and sorted(result.contributors) == survivors
    model = hefed.solve(result)
    reference = hefed.solve(expected)
    assert list(model.coef_) == list(reference.coef_)


def test_no_dropout_round_decrypts_exactly(keys, names, identities, roster, plain, exact):
    run = run_round(plain, identities, roster)
    assert run.request.dropouts == ()
    assert all(not r.key_shares for r in run.reveals.values())
    assert _decrypt(run.aggregate, keys, roster).gram == _pooled(exact, names).gram


def test_key_holder_returns_the_survivors(names, identities, roster, plain):
    run = run_round(plain, identities, roster, dropouts=[names[0]])
    assert verify_aggregate(run.aggregate, roster, 3) == tuple(names[1:])
    with pytest.raises(TooFewContributorsError):
        verify_aggregate(run.aggregate, roster, 5)
    # the aggregate survives a round trip through its file
    again = hefed.Bundle.from_dict(json.loads(json.dumps(run.aggregate.to_dict())))
    assert verify_aggregate(again, roster, 3) == tuple(names[1:])


# --- a malicious aggregator -----------------------------------------------------------------------------------------
def _joined_round(plain, identities, roster, members, *, threshold=None, study=None):
    """Everyone in ``members`` joins and contributes; returns (round keys, secrets, contributions)."""
    round_ = propose_round(roster, members, threshold=threshold, study=study)
    joins, held = {}, {}
    for name in round_.participants:
        joins[name], held[name] = join_round(identities[name], roster, round_, study=study)
    keys = start_round(round_, roster, joins.values())
    bundles = {n: mask_contribution(plain[n], identities[n], roster, keys, held[n]) for n in keys.joined}
    return keys, held, bundles


def test_two_survivor_sets_for_one_round_are_refused(tmp_path, plain, names):
    """The aggregator declares E a drop-out to get E's mask-key share, then asks again with E a survivor to get
    E's seed share: the same factory never reveals for a second, different survivor set."""
    identities = _folder_identities(tmp_path, names)
    roster = _roster_of(identities)
    keys, _, bundles = _joined_round(plain, identities, roster, names)
    victim, asked = names[-1], names[0]
    first = make_unmask_request(keys, names[:-1])
    answer = reveal(first.for_factory(asked), identities[asked], roster)
    assert victim in answer.key_shares and victim not in answer.seed_shares
    second = make_unmask_request(keys, names)
    with pytest.raises(RoundError, match="another survivor set"):
        reveal(second.for_factory(asked), identities[asked], roster)
    # the same request again gets the same reveal (a lost message can be re-sent), nothing more
    assert reveal(first.for_factory(asked), identities[asked], roster) == answer


def test_equivocation_leaves_fewer_than_t_seed_shares(plain, names, identities, roster):
    """With t > n/2 and every honest factory revealing once, two survivor sets cannot both collect t reveals:
    the seed shares of the victim the aggregator gathers do not reconstruct its seed."""
    keys, held, _ = _joined_round(plain, identities, roster, names)  # t = 3 of 5
    victim = names[-1]
    first = make_unmask_request(keys, names[:-1])  # victim "dropped": its mask-key shares
    for name in names[:3]:
        reveal(first.for_factory(name), identities[name], roster, held[name])
    second = make_unmask_request(keys, names)  # victim "survived": its seed shares
    seed_shares = {}
    for name in names:
        try:
            answer = reveal(second.for_factory(name), identities[name], roster, held[name])
        except RoundError:
            continue
        seed_shares[keys.round.participants.index(name) + 1] = answer.seed_shares[victim]
    assert len(seed_shares) == keys.threshold - 1  # only the two that had not revealed yet
    assert shamir.combine(seed_shares) != int.from_bytes(held[victim].seed, "big")


def test_factory_named_a_dropout_reveals_nothing(plain, names, identities, roster):
    keys, held, _ = _joined_round(plain, identities, roster, names)
    request = make_unmask_request(keys, names[1:])
    with pytest.raises(RoundError, match="drop-out"):
        reveal(request, identities[names[0]], roster, held[names[0]])
    forged = replace(request, survivors=tuple(names[1:3]), dropouts=tuple([names[0], *names[3:]]))
    with pytest.raises(TooFewContributorsError):
        reveal(forged.for_factory(names[1]), identities[names[1]], roster, held[names[1]])
    odd = replace(request, dropouts=())  # the joined set not split
    with pytest.raises(RoundError, match="do not split"):
        reveal(odd.for_factory(names[1]), identities[names[1]], roster, held[names[1]])


def test_fewer_than_t_survivors_fail_cleanly(plain, names, identities, roster):
    keys, _, bundles = _joined_round(plain, identities, roster, names)
    with pytest.raises(IncompleteRoundError) as refused:
        collect_contributions([bundles[n] for n in names[:2]], roster, keys)
    assert refused.value.missing == names[2:] and "at least 3" in str(refused.value)
    with pytest.raises(IncompleteRoundError):
        collect_round([bundles[n] for n in names[:2]], roster, keys)
    # a study's threshold above the round's is enforced too
    with pytest.raises(IncompleteRoundError, match="at least 4"):
        make_unmask_request(keys, names[:3], min_contributors=4)


def test_threshold_of_half_or_less_is_refused_at_join(names, identities, roster):
    with pytest.raises(UsageError, match="at least 3"):
        propose_round(roster, names, threshold=2)
    weak = Round("ab" * 16, tuple(names), roster.digest(), 2, None)  # made by hand by the aggregator
    with pytest.raises(RoundError, match="not more than half"):
        join_round(identities[names[0]], roster, weak)


def test_forged_join_signature_is_refused(plain, names, identities, roster):
    round_ = propose_round(roster, names)
    joins = {n: join_round(identities[n], roster, round_)[0] for n in names}
    mallory = X25519PrivateKey.generate().public_key().public_bytes_raw()
    forged = replace(joins[names[1]], mask_public=mallory)
    with pytest.raises(RoundError, match="invalid signature"):
        start_round(round_, roster, [*(joins[n] for n in names if n != names[1]), forged])
    other = propose_round(roster, names)
    with pytest.raises(RoundError, match="a join for round"):
        start_round(other, roster, joins.values())


def test_substituted_join_is_refused_at_encrypt(plain, names, identities, roster):
    round_ = propose_round(roster, names)
    joins, held = {}, {}
    for name in names:
        joins[name], held[name] = join_round(identities[name], roster, round_)
    keys = start_round(round_, roster, joins.values())
    victim = names[0]
    # the aggregator swaps a mask key in the round keys: every signature check fails
    tampered = RoundKeys(round_, tuple(replace(j, mask_public=X25519PrivateKey.generate().public_key()
                                               .public_bytes_raw()) if j.factory_id == names[1] else j
                                       for j in keys.joins))
    with pytest.raises(RoundError, match="invalid signature"):
        mask_contribution(plain[victim], identities[victim], roster, tampered, held[victim])
    # ... or hands the victim round keys with another (validly signed) join of its own: refused
    second, _ = join_round(identities[victim], roster, round_)  # in memory, nothing stops a second join
    swapped = RoundKeys(round_, tuple(second if j.factory_id == victim else j for j in keys.joins))
    with pytest.raises(RoundError, match="another join"):
        mask_contribution(plain[victim], identities[victim], roster, swapped, held[victim])
    # ... or leaves the victim's join out
    without = RoundKeys(round_, tuple(j for j in keys.joins if j.factory_id != victim))
    with pytest.raises(RoundError, match="leave out"):
        mask_contribution(plain[victim], identities[victim], roster, without, held[victim])
    # the genuine keys work, and a second set of keys for the same round is then refused
    mask_contribution(plain[victim], identities[victim], roster, keys, held[victim])
    smaller = start_round(round_, roster, [joins[n] for n in names[:4]])
    with pytest.raises(RoundError, match="other round keys"):
        mask_contribution(plain[victim], identities[victim], roster, smaller, held[victim])


def test_substituted_share_does_not_open(plain, names, identities, roster):
    keys, held, _ = _joined_round(plain, identities, roster, names)
    request = make_unmask_request(keys, names)
    me, sender, other = names[0], names[1], names[2]
    swapped = {**request.shares[me], sender: request.shares[other][sender]}  # a share meant for another
    with pytest.raises(RoundError, match="does not open"):
        reveal(replace(request, shares={me: swapped}), identities[me], roster, held[me])


def test_unmask_request_for_other_round_keys_is_refused(plain, names, identities, roster):
    keys, held, _ = _joined_round(plain, identities, roster, names)
    request = make_unmask_request(keys, names)
    with pytest.raises(RoundError, match="other round keys"):
        reveal(replace(request, round_keys_digest="0" * 32), identities[names[0]], roster, held[names[0]])


# --- the key holder's check ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dropped_run(names, identities, roster, plain):
    return run_round(plain, identities, roster, dropouts=[names[-1]])


def _with_recovery(bundle, **changes):
    recovery = json.loads(json.dumps(bundle.recovery))
    recovery.update(changes)
    return replace(bundle, recovery=recovery)


def test_forged_reveal_is_refused_by_the_key_holder(keys, names, roster, dropped_run):
    aggregate = dropped_run.aggregate
    reveals = json.loads(json.dumps(aggregate.recovery["reveals"]))
    member = next(iter(reveals[0]["seed_shares"]))
    reveals[0]["seed_shares"][member] = f"{(int(reveals[0]['seed_shares'][member], 16) + 1):066x}"
    with pytest.raises(RoundError, match="invalid signature"):
        _decrypt(_with_recovery(aggregate, reveals=reveals), keys, roster)
    # too few reveals
    with pytest.raises(TooFewContributorsError, match="reveal"):
        verify_aggregate(_with_recovery(aggregate, reveals=aggregate.recovery["reveals"][:2]), roster, 2)
    # a reveal for another survivor set is refused even when signed
    other = dict(aggregate.recovery["reveals"][0], survivors=names)
    with pytest.raises(RoundError):
        verify_aggregate(_with_recovery(aggregate, reveals=[other, *aggregate.recovery["reveals"][1:]]), roster, 2)


def test_wrong_share_signed_by_a_survivor_is_refused(keys, names, identities, roster, plain):
    """A survivor signs a wrong share (a malicious factory): the seed no longer matches its commitment."""
    run = run_round(plain, identities, roster, dropouts=[names[-1]])
    liar = names[0]
    honest = run.reveals[liar]
    member = names[1]
    lie = replace(honest, seed_shares={**honest.seed_shares, member: (honest.seed_shares[member] + 1) % shamir.PRIME})
    lie = replace(lie, signature=identities[liar].sign(lie.signed_bytes()))
    collected, _ = collect_contributions(run.contributions.values(), roster, run.keys)
    others = [r for n, r in run.reveals.items() if n != liar]
    # with a reveal to spare (4 survivors, t = 3), the aggregator leaves the liar out
    recovered = unmask(collected, run.keys, [lie, *others], roster)
    assert liar not in [r["factory_id"] for r in recovered.recovery["reveals"]]
    assert verify_aggregate(recovered, roster, 3) == tuple(names[:-1])
    # with exactly t, the round fails: the lie is found, never decrypted
    with pytest.raises(RoundError, match="commitment"):
        unmask(collected, run.keys, [lie, *others[:2]], roster)
    forged = _with_recovery(run.aggregate, reveals=[lie.to_dict(), *(r.to_dict() for n, r in run.reveals.items()
                                                                         if n != liar)])
    with pytest.raises(RoundError, match="commitment"):
        _decrypt(forged, keys, roster)


def test_tampered_correction_is_refused(keys, names, roster, dropped_run):
    aggregate = dropped_run.aggregate
    n, nsq = aggregate.public_key.n, aggregate.public_key.nsquare
    shifted = [aggregate.ciphertexts[0] * (1 + 5 * n) % nsq, *aggregate.ciphertexts[1:]]
    with pytest.raises(RoundError, match="correction"):
        _decrypt(replace(aggregate, ciphertexts=shifted), keys, roster)
    # the dropped factory relabelled as a contributor, with its manifest missing
    with pytest.raises(RoundError):
        _decrypt(replace(aggregate, contributors=[*aggregate.contributors, names[-1]]), keys, roster)


def test_aggregate_without_reveals_is_refused(keys, roster, dropped_run):
    collected, _ = collect_contributions(dropped_run.contributions.values(), roster, dropped_run.keys)
    with pytest.raises(RoundError, match="version 1"):
        _decrypt(collected, keys, roster)
    with pytest.raises(RoundError):
        _decrypt(replace(dropped_run.aggregate, recovery={"reveals": []}), keys, roster)


def test_late_bundle_of_a_dropout_stays_masked(keys, names, identities, roster, plain, exact):
    """The drop-out encrypted, but its bundle arrived after the survivors were named. The aggregator knows its
    mask key (revealed) and the key holder decrypts it: what remains is its statistics plus its self-mask —
    uniform noise, not its statistics. Only with the seed (which no one revealed) does it open."""
    late = names[2]
    round_ = propose_round(roster, names)
    joins, held = {}, {}
    for name in names:
        joins[name], held[name] = join_round(identities[name], roster, round_)
    round_keys = start_round(round_, roster, joins.values())
    bundles = {n: mask_contribution(plain[n], identities[n], roster, round_keys, held[n]) for n in names}
    collected, request = collect_contributions([bundles[n] for n in names if n != late], roster, round_keys)
    reveals = [reveal(request.for_factory(n), identities[n], roster, held[n]) for n in request.survivors]
    unmask(collected, round_keys, reveals, roster)
    # the attacker's view: the late bundle, its mask key (from the reveals), and the key holder's decryption
    shares = {round_.participants.index(r.factory_id) + 1: r.key_shares[late] for r in reveals}
    mask_private = shamir.combine_bytes(shares)
    bundle = bundles[late]
    values = [decrypt_raw(keys[1], c) for c in bundle.ciphertexts]
    n = bundle.public_key.n
    for peer in names:
        if peer != late:
            shared = _shared(mask_private, round_keys.join_of(peer).mask_public)
            values = [(v - m) % n for v, m in zip(values, pair_mask(round_.round_id, late, peer, shared, bundle),
                                                  strict=True)]
    truth = bundle.layout().pack([*exact[late].to_vector(), *exact[late].support, 1])
    assert values != truth
    with pytest.raises(PackingError):
        bundle.layout().unpack(values, 1)
    # the self-mask is the only thing left: with the (never revealed) seed, the statistics come out
    seed_mask = self_mask(round_.round_id, late, held[late].seed, bundle)
    assert [(v - m) % n for v, m in zip(values, seed_mask, strict=True)] == truth


def test_statistics_plus_a_self_mask_are_uniform_noise(tmp_path, frames, exact, names):
    """What a drop-out's late bundle decrypts to, once its revealed pairwise masks are removed, is its statistics
    plus its self-mask (previous test): uniform modulo n. Deterministic: a fixed key, round id and 40 fixed seeds,
    so the p-values are the same on every run; the unmasked statistics fail the same tests by far."""
    public_key = _fixed_public_key(tmp_path)
    late = names[2]
    bundle = hefed.encrypt_statistics(frames[late], TARGET, public_key, factory_id=late)
    truth, n = bundle.layout().pack([*exact[late].to_vector(), *exact[late].support, 1]), public_key.n
    noise = [(t + m) % n for i in range(40)
             for t, m in zip(truth, self_mask("ab" * 16, late, hashlib.sha256(b"seed %d" % i).digest(), bundle),
                             strict=True)]
    assert min(_uniformity_pvalues(noise, n)) > 0.001
    assert max(_uniformity_pvalues(truth * 40, n)) < 1e-6


def _fixed_public_key(tmp_path: Path) -> PaillierPublicKey:
    """A fixed 1024-bit Paillier public key (tests only), loaded once with the consent to its size."""
    rng = random.Random(20261202)

    def prime() -> int:
        while True:
            candidate = int(gmpy2.next_prime(rng.getrandbits(512) | (3 << 510)))
            if candidate.bit_length() == 512:
                return candidate

    p, q = prime(), prime()
    assert p != q
    hefed.save_public_key(PaillierPublicKey(p * q), tmp_path / "fixed.json")
    return hefed.load_public_key(tmp_path / "fixed.json", insecure_test_key=True)


def _uniformity_pvalues(values, n):
    """Chi-square p-value of value·16 // n in 16 equal bins, and KS p-value of value/n against U(0, 1)."""
    counts = [0] * 16
    for v in values:
        counts[v * 16 // n] += 1
    return float(sps.chisquare(counts).pvalue), float(sps.kstest([v / n for v in values], "uniform").pvalue)


def _shared(private: bytes, public: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(public))


# --- the factory's ledger: no differencing, secrets deleted ---------------------------------------------------------
def test_established_set_rule_at_the_factory(tmp_path, keys, frames, names):
    identities = _folder_identities(tmp_path, names)
    roster = _roster_of(identities)
    features = [c for c in frames[names[0]].columns if c not in ("date", "plant_kind", TARGET)]
    study = Study.new(keys[0], ColumnSpec(TARGET, "t"), features, min_contributors=3, roster_digest=roster.digest(),
                      kinds={"statistics": {}, "summary": {}})

    def contribute(members, dropouts=()):
        round_ = propose_round(roster, members, study=study)
        joins = {n: join_round(identities[n], roster, round_, study=study)[0] for n in members}
        round_keys = start_round(round_, roster, joins.values())
        bundles = [hefed.encrypt_for_study(frames[n], study, factory_id=n,
                                           masking=Masking(round_keys, identities[n], roster)).bundle
                   for n in round_keys.joined if n not in dropouts]
        return round_, round_keys, collect_round(bundles, roster, round_keys, study)

    # round 1: one drop-out; the first reveal records the survivors as the study's established set
    _, round_keys, (collected, request) = contribute(names, dropouts=[names[-1]])
    reveals = [reveal(request.for_factory(n), identities[n], roster) for n in request.survivors]
    aggregate = unmask_round(collected, round_keys, reveals, roster)
    assert decrypt_statistics(aggregate, keys[1], roster=roster, study=study).n == sum(
        len(frames[n]) for n in names[:-1])
    ledger = json.loads((tmp_path / names[0] / "rounds-used.json").read_text())
    assert ledger["established"] == {study.digest: names[:-1]}
    # a later round with the full set (which would difference out the drop-out): refused at join
    with pytest.raises(RoundError, match="established set"):
        join_round(identities[names[0]], roster, propose_round(roster, names, study=study), study=study)
    # a round of the established set where one more drops out: the survivors would differ, so no reveal
    _, _, (collected, request) = contribute(names[:-1], dropouts=[names[0]])
    with pytest.raises(RoundError, match="established set"):
        reveal(request.for_factory(names[1]), identities[names[1]], roster)
    # a round of the established set in full goes through
    _, round_keys, (collected, request) = contribute(names[:-1])
    reveals = [reveal(request.for_factory(n), identities[n], roster) for n in request.survivors]
    assert verify_aggregate(unmask_round(collected, round_keys, reveals, roster), roster, 3) == tuple(names[:-1])
    # a round made for no study is refused for the study's bundles
    plain_round = propose_round(roster, names[:-1])
    join_round(identities[names[0]], roster, plain_round)
    with pytest.raises(UsageError):
        join_round(identities[names[1]], roster, propose_round(roster, names[:-1], study=study))


def test_secret_is_deleted_after_reveal(tmp_path, plain, names):
    identities = _folder_identities(tmp_path, names[:3])
    roster = _roster_of(identities)
    round_ = propose_round(roster, names[:3])
    joins = {n: join_round(identities[n], roster, round_)[0] for n in names[:3]}
    secret_file = tmp_path / names[0] / f"round-{round_.round_id}.secret.json"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    with pytest.raises(RoundError, match="already joined"):
        join_round(identities[names[0]], roster, round_)
    round_keys = start_round(round_, roster, joins.values())
    bundles = [Masking(round_keys, identities[n], roster).apply(plain[n]) for n in names[:3]]
    collected, request = collect_contributions(bundles, roster, round_keys)
    reveal(request.for_factory(names[0]), identities[names[0]], roster)
    assert not secret_file.exists()
    with pytest.raises(RoundError, match="no secret"):  # nothing more can be masked for this round
        Masking(round_keys, identities[names[0]], roster).apply(replace(plain[names[0]]))


def test_messages_round_trip_through_files(tmp_path, names, identities, roster, plain):
    run = run_round(plain, identities, roster, dropouts=[names[0]])
    join = run.joins[names[1]]
    assert Join.load(join.save(tmp_path / "join.json")) == join
    assert RoundKeys.load(run.keys.save(tmp_path / "keys.json")) == run.keys
    assert Round.load(run.round.save(tmp_path / "round.json")) == run.round
    request = run.request
    again = type(request).load(request.save(tmp_path / "request.json"))
    assert again.to_dict() == request.to_dict()
    answer = run.reveals[names[1]]
    assert Reveal.load(answer.save(tmp_path / "reveal.json")) == answer
    assert json.loads((tmp_path / "round.json").read_text())["version"] == 2


def test_factories_can_take_round_keys_without_the_sealed_shares(names, identities, roster, plain, exact, keys):
    """A server may send factories only the signed join headers (n entries, not n² sealed shares): the digest,
    the checks and the masks are the same; only the aggregator needs the shares, for the unmask request."""
    round_ = propose_round(roster, names)
    joins, held = {}, {}
    for name in names:
        joins[name], held[name] = join_round(identities[name], roster, round_)
    full = start_round(round_, roster, joins.values())
    light = RoundKeys.from_dict(json.loads(json.dumps(full.to_dict(with_shares=False))))
    assert light.digest() == full.digest() and all(j.shares is None for j in light.joins)
    bundles = [Masking(light, identities[n], roster, held[n]).apply(plain[n]) for n in names[:4]]
    collected, request = collect_contributions(bundles, roster, full)
    with pytest.raises(UsageError, match="no encrypted shares"):
        make_unmask_request(light, names[:4])
    reveals = [reveal(request.for_factory(n), identities[n], roster, held[n]) for n in request.survivors]
    aggregate = unmask(collected, full, reveals, roster)
    assert _decrypt(aggregate, keys, roster).gram == _pooled(exact, names[:4]).gram


# --- end to end with files and real processes ------------------------------------------------------------------------
def _ok(result):
    assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    return result


@pytest.mark.slow
def test_dropout_cli_end_to_end_real_processes(tmp_path, frames, names, exact):
    """Four factories, one drops out after joining: no one re-encrypts; the key holder decrypts exactly the three
    survivors' pooled statistics. A round below its threshold is refused with one line, and the key holder without
    the roster or above the survivors' count refuses to decrypt. (A replay from another round: tests/test_rounds.py.)"""
    public_key, private_key = hefed.generate_keypair(1024, insecure_test_key=True)
    pub, priv = tmp_path / "public_key.json", tmp_path / "private_key.json"
    hefed.save_public_key(public_key, pub)
    hefed.save_private_key(private_key, priv)
    four = names[:4]
    for name in four:
        frames[name].to_csv(tmp_path / f"{name}.csv", index=False)

    def hefed_(*args):
        return run_cli_subprocess(*args, cwd=tmp_path)

    def each(*commands):
        """Independent commands (each factory on its own machine) as concurrent processes."""
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(lambda args: run_cli_subprocess(*args, cwd=tmp_path), commands))

    for result in each(*(("enroll", "--factory-id", n, "--out-dir", n) for n in four)):
        _ok(result)
    _ok(hefed_("roster", "add", "roster.json", *(f"{n}/identity.pub.json" for n in four)))
    _ok(hefed_("round", "new", "--roster", "roster.json", "--participants", ",".join(four), "--out", "round.json"))
    for result in each(*(("round", "join", "--round", "round.json", "--identity", n, "--roster", "roster.json",
                          "--out", f"join-{n}.json") for n in four)):
        _ok(result)
    _ok(hefed_("round", "start", *(f"join-{n}.json" for n in four), "--round", "round.json", "--roster",
               "roster.json", "--out", "round-keys.json"))
    survivors, dropped = four[:3], four[3]
    for result in each(*(("encrypt", f"{n}.csv", "--target", TARGET, "--public-key", pub, "--factory-id", n,
                          "--out", f"bundle-{n}.json", "--round", "round-keys.json", "--identity", n,
                          "--roster", "roster.json", "--insecure-test-key") for n in survivors)):
        _ok(result)
    too_few, good = each(
        ("round", "collect", *(f"bundle-{n}.json" for n in survivors[:2]), "--round-keys", "round-keys.json",
         "--roster", "roster.json", "--out", "c.json", "--request", "r.json"),
        ("round", "collect", *(f"bundle-{n}.json" for n in survivors), "--round-keys", "round-keys.json",
         "--roster", "roster.json", "--out", "collected.json", "--request", "unmask-request.json"))
    assert too_few.returncode == 1 and "Traceback" not in too_few.stderr
    assert survivors[2] in too_few.stderr and dropped in too_few.stderr and len(too_few.stderr.splitlines()) == 1
    assert not (tmp_path / "c.json").exists() and not (tmp_path / "r.json").exists()
    _ok(good)
    for result in each(*(("round", "reveal", "--request", "unmask-request.json", "--identity", n, "--roster",
                          "roster.json", "--out", f"reveal-{n}.json") for n in survivors)):
        _ok(result)
    _ok(hefed_("round", "unmask", *(f"reveal-{n}.json" for n in survivors), "--collected", "collected.json",
               "--round-keys", "round-keys.json", "--roster", "roster.json", "--out", "aggregate.json"))
    decrypted, no_roster, strict = each(
        ("decrypt", "aggregate.json", "--private-key", priv, "--roster", "roster.json", "--out", "stats.json"),
        ("decrypt", "aggregate.json", "--private-key", priv, "--out", "stats-no-roster.json"),
        ("decrypt", "aggregate.json", "--private-key", priv, "--roster", "roster.json", "--min-contributors", "4",
         "--out", "stats-4.json"))
    _ok(decrypted)
    assert no_roster.returncode == 2 and "roster" in no_roster.stderr, no_roster.stderr
    assert strict.returncode == 1 and "at least 4" in strict.stderr, strict.stderr
    assert not (tmp_path / "stats-no-roster.json").exists() and not (tmp_path / "stats-4.json").exists()
    result = SufficientStatistics.load(tmp_path / "stats.json")
    expected = _pooled(exact, survivors)
    assert result.gram == expected.gram and sorted(result.contributors) == survivors
    # each survivor's round secret is gone; the drop-out's stays with it (it never revealed)
    round_id = json.loads((tmp_path / "round.json").read_text())["round_id"]
    assert not (tmp_path / survivors[0] / f"round-{round_id}.secret.json").exists()
    assert (tmp_path / dropped / f"round-{round_id}.secret.json").exists()
