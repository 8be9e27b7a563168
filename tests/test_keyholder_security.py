"""The key holder against a malicious aggregator (issue 14): unsigned aggregates, differencing, signed releases.

Each test makes the attack and shows it refused:

* padding / scaling a plain bundle (attack 4): one factory's bundle multiplied by encryptions of zero
  under invented ids, or raised to a power, is refused unless the key holder explicitly allows unsigned
  aggregates;
* re-run differencing (attack 2): two decrypted sums over overlapping, different contributor sets give
  one factory's exact statistics by subtraction; the ledger refuses the second, across bundle kinds too;
* released sums and models are signed by the key holder; a reader holding the study refuses what the
  study's key holder did not sign, and anything changed after signing.
"""

from __future__ import annotations

import json
import stat

import gmpy2
import pandas as pd
import pytest

import hefed
from hefed.datasets import make_factories
from hefed.errors import LedgerError, ReleaseError, RoundError, SchemaMismatchError, TooFewContributorsError
from hefed.protocol import Bundle, KeyHolderSigner, Study, load_release_key, make_release_key
from hefed.roles import DecryptionLedger, decrypt_bundle, decrypt_to_file, load_sums, release_model
from hefed.sim import simulation_keypair

TARGET = "co2_t"
FEATURES = ["natural_gas_t", "diesel_t", "electricity_mwh"]  # non-zero at every plant
NAMES = ["cement-01", "steel-02", "chemicals-03", "power-04", "glass-05"]  # make_factories(5)


@pytest.fixture(scope="module")
def keypair():
    return simulation_keypair(1024)


@pytest.fixture(scope="module")
def frames():
    return make_factories(n_factories=5, seed=7)


@pytest.fixture(scope="module")
def bundles(frames, keypair):
    """Each factory's plain statistics bundle, by id."""
    return {name: hefed.encrypt_table(frame, TARGET, keypair[0], features=FEATURES, factory_id=name).bundle
            for name, frame in frames.items()}


@pytest.fixture(scope="module")
def fold_bundles(frames, keypair):
    return {name: hefed.encrypt_table(frame, TARGET, keypair[0], features=FEATURES, factory_id=name,
                                      request=hefed.FoldStatisticsRequest(folds=3, seed=1)).bundle
            for name, frame in frames.items()}


def _relabel(bundle: Bundle, contributors: list[str], ciphertexts: list[int]) -> Bundle:
    return Bundle(bundle.kind, bundle.public_key, bundle.target, list(bundle.features), bundle.encoding,
                  contributors, ciphertexts, bundle.layout_digest, dict(bundle.parameters), study=bundle.study)


def _padded(victim: Bundle, public_key) -> Bundle:
    """The victim's bundle times two encryptions of its own counter-only packing (counter 1 each), relabelled with
    two invented factories: the sum decrypts to the victim's statistics with a counter of 3."""
    layout = victim.layout()
    counter_only = layout.pack([0] * (len(layout.slots) - 1) + [1])
    nsq = public_key.nsquare
    padded = list(victim.ciphertexts)
    for _ in range(2):
        padded = [int(gmpy2.f_mod(c * public_key.raw_encrypt(p), nsq)) for c, p in zip(padded, counter_only,
                                                                                      strict=True)]
    return _relabel(victim, [*victim.contributors, "ghost-1", "ghost-2"], padded)


def test_a_padded_plain_bundle_is_refused_unless_unsigned_aggregates_are_allowed(bundles, keypair):
    public_key, private_key = keypair
    victim = bundles[NAMES[0]]
    forged = _padded(victim, public_key)
    with pytest.raises(RoundError, match="unsigned aggregate"):
        decrypt_bundle(forged, private_key)
    # What the flag gives up, shown: with it, the victim's own statistics come out.
    leaked = decrypt_bundle(forged, private_key, allow_unsigned=True)
    own = decrypt_bundle(victim, private_key, min_contributors=1, allow_unsigned=True)
    assert leaked.n == own.n


def test_a_bundle_raised_to_a_power_is_refused_unless_unsigned_aggregates_are_allowed(bundles, keypair):
    public_key, private_key = keypair
    victim = bundles[NAMES[1]]
    cubed = _relabel(victim, [NAMES[1], "x", "y"],
                     [int(gmpy2.powmod(c, 3, public_key.nsquare)) for c in victim.ciphertexts])
    with pytest.raises(RoundError, match="unsigned aggregate"):
        decrypt_bundle(cubed, private_key)
    assert decrypt_bundle(cubed, private_key, allow_unsigned=True).n == 3 * decrypt_bundle(
        victim, private_key, min_contributors=1, allow_unsigned=True).n


def test_the_cli_refuses_an_unsigned_aggregate_without_the_flag(bundles, keypair, tmp_path, cli):
    public_key, private_key = keypair
    hefed.save_private_key(private_key, tmp_path / "priv.json")
    hefed.aggregate(list(bundles.values())).save(tmp_path / "agg.json")
    refused = cli("decrypt", tmp_path / "agg.json", "--private-key", tmp_path / "priv.json", "--out",
                  tmp_path / "s.json")
    assert refused.returncode == 1 and "--allow-unsigned" in refused.stdout + refused.stderr
    assert not (tmp_path / "s.json").exists()
    allowed = cli("decrypt", "--allow-unsigned", tmp_path / "agg.json", "--private-key", tmp_path / "priv.json",
                  "--out", tmp_path / "s.json")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr


# --- the ledger ----------------------------------------------------------------------------------------
def test_rerun_differencing_is_refused_by_the_ledger(bundles, keypair, tmp_path):
    """Round 1 with five factories, round 2 with four after a 'drop-out': the second would give the fifth's
    exact statistics by subtraction. The ledger refuses it, and the file keeps the first decryption."""
    public_key, private_key = keypair
    ledger = DecryptionLedger.open(tmp_path / "ledger.json", hefed.key_fingerprint(public_key))
    everyone = hefed.aggregate(list(bundles.values()))
    first = decrypt_bundle(everyone, private_key, allow_unsigned=True, ledger=ledger)
    four = hefed.aggregate([b for name, b in bundles.items() if name != NAMES[4]])
    with pytest.raises(LedgerError, match="share 4") as refused:
        decrypt_bundle(four, private_key, allow_unsigned=True, ledger=ledger)
    assert NAMES[4] not in str(refused.value)  # it names counts, not factories
    # The same ledger, read back from its file, still refuses (the key holder's memory survives restarts).
    again = DecryptionLedger.open(tmp_path / "ledger.json", hefed.key_fingerprint(public_key))
    assert again.sets == [frozenset(bundles)]
    with pytest.raises(LedgerError):
        decrypt_bundle(four, private_key, allow_unsigned=True, ledger=again)
    # Without the ledger the attack works: the difference is factory_5's own statistics.
    unguarded = decrypt_bundle(four, private_key, allow_unsigned=True)
    alone = decrypt_bundle(bundles[NAMES[4]], private_key, min_contributors=1, allow_unsigned=True)
    assert first.n - unguarded.n == alone.n
    assert stat.S_IMODE((tmp_path / "ledger.json").stat().st_mode) == 0o600


def test_differencing_across_kinds_is_refused_and_the_same_set_is_allowed(bundles, fold_bundles, keypair):
    """Statistics of five and fold statistics of four sum to the same moments: refused. Fold statistics of the
    same five are allowed (identical set), so are sums of a disjoint set."""
    public_key, private_key = keypair
    ledger = DecryptionLedger(hefed.key_fingerprint(public_key))
    decrypt_bundle(hefed.aggregate(list(bundles.values())), private_key, allow_unsigned=True, ledger=ledger)
    four_folds = hefed.aggregate([b for name, b in fold_bundles.items() if name != NAMES[0]])
    with pytest.raises(LedgerError):
        decrypt_bundle(four_folds, private_key, allow_unsigned=True, ledger=ledger)
    same_five = decrypt_bundle(hefed.aggregate(list(fold_bundles.values())), private_key, allow_unsigned=True,
                               ledger=ledger)
    assert sorted(same_five.contributors) == sorted(bundles)
    assert len(ledger.entries) == 2 and len(set(ledger.sets)) == 1


def test_disjoint_sets_are_allowed_and_small_ones_refused(bundles, keypair):
    public_key, private_key = keypair
    ledger = DecryptionLedger(hefed.key_fingerprint(public_key))
    names = sorted(bundles)
    decrypt_bundle(hefed.aggregate([bundles[n] for n in names[:3]]), private_key, allow_unsigned=True,
                   ledger=ledger)
    with pytest.raises(TooFewContributorsError):  # the other two alone are below the threshold
        ledger.check(names[3:], 3)
    ledger.check(["p", "q", "r"], 3)  # disjoint: allowed
    with pytest.raises(LedgerError):
        ledger.check([names[0], "p", "q"], 3)


def test_a_new_key_does_not_reset_the_ledger(bundles, frames, keypair, tmp_path):
    """Five factories under one key, then four of them in a new study under a new key: the second sums minus the
    first are the fifth factory's statistics. The key holder's one ledger spans its keys and refuses the second."""
    ledger = DecryptionLedger.open(tmp_path / "ledger.json", hefed.key_fingerprint(keypair[0]))
    decrypt_bundle(hefed.aggregate(list(bundles.values())), keypair[1], allow_unsigned=True, ledger=ledger)
    other_public, other_private = simulation_keypair(768)  # the "new key" of a changed membership
    four = [hefed.encrypt_table(frames[n], TARGET, other_public, features=FEATURES, factory_id=n).bundle
            for n in NAMES[:4]]
    reopened = DecryptionLedger.open(tmp_path / "ledger.json", hefed.key_fingerprint(other_public))
    with pytest.raises(LedgerError, match="share 4"):
        decrypt_bundle(hefed.aggregate(four), other_private, allow_unsigned=True, ledger=reopened)
    assert [e["key_fingerprint"] for e in reopened.entries] == [hefed.key_fingerprint(keypair[0])]


def test_cli_decrypt_with_a_study_keeps_a_ledger_beside_the_private_key(bundles, keypair, tmp_path, cli):
    """`hefed decrypt --study` records each decryption beside the private key without being asked, and refuses
    the overlapping re-run."""
    public_key, private_key = keypair
    keys = tmp_path / "keys"
    keys.mkdir()
    hefed.save_private_key(private_key, keys / "private_key.json")
    study = Study.new(public_key, TARGET, FEATURES, min_contributors=3)
    study.save(tmp_path / "study.json")
    frames = make_factories(n_factories=5, seed=7)
    made = [hefed.encrypt_for_study(frame, study, factory_id=name).bundle for name, frame in frames.items()]
    hefed.aggregate(made, study=study).save(tmp_path / "five.json")
    hefed.aggregate(made[:4], study=study).save(tmp_path / "four.json")
    common = ["--private-key", keys / "private_key.json", "--study", tmp_path / "study.json", "--allow-unsigned"]
    first = cli("decrypt", tmp_path / "five.json", *common, "--out", tmp_path / "s5.json")
    assert first.returncode == 0, first.stdout + first.stderr
    assert (keys / "decryption-ledger.json").exists()
    second = cli("decrypt", tmp_path / "four.json", *common, "--out", tmp_path / "s4.json")
    assert second.returncode == 1 and "ledger refuses" in second.stdout + second.stderr
    assert not (tmp_path / "s4.json").exists()


# --- signed releases ------------------------------------------------------------------------------------
@pytest.fixture()
def signed_study(bundles, keypair, tmp_path):
    """A study naming the key holder's release key, the key files, and its decrypted statistics aggregate."""
    public_key, private_key = keypair
    keys = tmp_path / "keys"
    keys.mkdir()
    hefed.save_private_key(private_key, keys / "private_key.json")
    release_private, release_public = make_release_key(keys)
    signer = load_release_key(release_private)
    study = Study.new(public_key, TARGET, FEATURES, keyholder=signer.public)
    frames = make_factories(n_factories=3, seed=3)
    made = [hefed.encrypt_for_study(frame, study, factory_id=name).bundle for name, frame in frames.items()]
    hefed.aggregate(made, study=study).save(tmp_path / "agg.json")
    return study, signer, keys, tmp_path


def test_release_keys_are_private_and_the_study_names_the_public_half(signed_study):
    study, signer, keys, _ = signed_study
    assert stat.S_IMODE((keys / "keyholder.key.json").stat().st_mode) == 0o600
    public = json.loads((keys / "keyholder.pub.json").read_text())
    assert "signing_private" not in public and public["signing_public"] == study.keyholder == signer.public
    # The study's digest covers the key holder: naming another key makes another study.
    other = KeyHolderSigner.generate()
    assert Study(**{**study.__dict__, "keyholder": other.public}).digest != study.digest


def test_signed_sums_are_accepted_and_unsigned_or_foreign_ones_refused(signed_study):
    study, signer, keys, root = signed_study
    decrypt_to_file(root / "agg.json", keys / "private_key.json", root / "stats.json", study=study,
                    allow_unsigned=True)  # the release key beside the private key is used by default
    sums = load_sums(root / "stats.json")
    assert sums.release is not None and sums.release.signer == signer.public
    assert sums.release.study == study.digest and sums.release.contributors == tuple(sorted(sums.contributors))
    assert release_model(sums, study=study).model.n_samples_ == sums.n
    # Unsigned sums of the same study: refused.
    unsigned = decrypt_bundle(Bundle.load(root / "agg.json"), hefed.load_private_key(keys / "private_key.json"),
                              study=study, allow_unsigned=True)
    with pytest.raises(ReleaseError, match="carries no release signature"):
        release_model(unsigned, study=study)
    # Signed by another key: refused.
    forged_signer = KeyHolderSigner.generate()
    obj = forged_signer.sign(unsigned.to_dict(), "statistics", study.digest, unsigned.contributors)
    (root / "forged.json").write_text(json.dumps(obj))
    with pytest.raises(ReleaseError, match="another key"):
        release_model(load_sums(root / "forged.json"), study=study)


def test_sums_changed_after_signing_are_refused(signed_study):
    study, _, keys, root = signed_study
    decrypt_to_file(root / "agg.json", keys / "private_key.json", root / "stats.json", study=study,
                    allow_unsigned=True)
    obj = json.loads((root / "stats.json").read_text())
    obj["gram_upper"][0] = str(int(obj["gram_upper"][0]) - 1)  # one row fewer
    (root / "edited.json").write_text(json.dumps(obj))
    with pytest.raises(ReleaseError, match="changed after"):
        load_sums(root / "edited.json")
    obj = json.loads((root / "stats.json").read_text())
    obj["release"]["contributors"] = ["a", "b", "c", "d"]
    (root / "relabelled.json").write_text(json.dumps(obj))
    with pytest.raises(ReleaseError, match="not valid"):
        load_sums(root / "relabelled.json")


def test_a_study_naming_its_key_holder_needs_the_release_key_to_decrypt(signed_study, keypair):
    study, _, keys, root = signed_study
    (keys / "keyholder.key.json").rename(root / "elsewhere.key.json")
    with pytest.raises(hefed.errors.UsageError, match="release key"):
        decrypt_to_file(root / "agg.json", keys / "private_key.json", root / "stats.json", study=study,
                        allow_unsigned=True)
    with pytest.raises(hefed.errors.KeyMismatchError):
        decrypt_to_file(root / "agg.json", keys / "private_key.json", root / "stats.json", study=study,
                        allow_unsigned=True, release_key=KeyHolderSigner.generate())
    assert not (root / "stats.json").exists()


def test_models_are_signed_and_readers_refuse_unsigned_or_edited_ones(signed_study, tmp_path):
    study, signer, keys, root = signed_study
    decrypt_to_file(root / "agg.json", keys / "private_key.json", root / "stats.json", study=study,
                    allow_unsigned=True)
    sums = load_sums(root / "stats.json")
    signed = release_model(sums, study=study, signer=signer, exact=True).model
    signed.save(root / "model.json")
    loaded = hefed.LinearModel.load(root / "model.json")
    assert loaded.release_ is not None and loaded.release_.what == "model"
    assert loaded.release_.contributors == tuple(sorted(sums.contributors))
    study.check_model(loaded)  # a factory asked to evaluate it accepts it
    unsigned = release_model(sums, study=study).model
    with pytest.raises(ReleaseError):
        study.check_model(unsigned)
    obj = json.loads((root / "model.json").read_text())
    obj["coef"][0] += 1.0
    obj["exact"]["coef"][0] = str(obj["coef"][0])
    with pytest.raises((ReleaseError, hefed.errors.InvalidFileError)):
        hefed.LinearModel.from_dict(obj, "edited model")
    # Signed by the right key but for another study: refused by this study's readers.
    other = Study.new(study.public_key, study.target, list(study.features), keyholder=signer.public)
    with pytest.raises(SchemaMismatchError, match="released for"):
        other.check_model(loaded)


def test_cli_signs_sums_and_models_end_to_end(signed_study, cli):
    study, signer, keys, root = signed_study
    study.save(root / "study.json")
    decrypted = cli("decrypt", root / "agg.json", "--private-key", keys / "private_key.json", "--study",
                    root / "study.json", "--allow-unsigned", "--out", root / "stats.json")
    assert decrypted.returncode == 0, decrypted.stdout + decrypted.stderr
    assert "signed with the key holder's release key" in decrypted.stdout + decrypted.stderr
    solved = cli("solve", root / "stats.json", "--study", root / "study.json", "--release-key",
                 keys / "keyholder.key.json", "--out", root / "model.json")
    assert solved.returncode == 0, solved.stdout + solved.stderr
    assert hefed.LinearModel.load(root / "model.json").release_.signer == signer.public


def test_the_key_holder_signs_no_model_of_sums_it_did_not_release(signed_study, tmp_path):
    """The aggregator fabricates 'sums' (y = c on every row, so the model is y − c) labelled with the study and
    hands them to the key holder's solve --release-key without --study. Signing them would make every factory of
    the study evaluate y − c. The key holder signs models only of sums it signed itself."""
    study, signer, keys, root = signed_study
    rows = pd.DataFrame({f: [1.0 + i, 2.0 * i + 3, 5.0 - i / 2] for i, f in enumerate(FEATURES)})
    rows[TARGET] = 1234.5
    fake = hefed.compute_statistics(rows, TARGET, factory_id="a")
    fake.contributors, fake.study = ["a", "b", "c"], study.digest
    (tmp_path / "fake.json").write_text(json.dumps(fake.to_dict()))
    with pytest.raises(ReleaseError, match="carries no release signature"):
        release_model(load_sums(tmp_path / "fake.json"), signer=signer)
    forged = KeyHolderSigner.generate().sign(fake.to_dict(), "statistics", study.digest, fake.contributors)
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    with pytest.raises(ReleaseError, match="another key"):
        release_model(load_sums(tmp_path / "forged.json"), signer=signer)
    # The sums it released itself are signed into a model, labelled with the study the release names.
    decrypt_to_file(root / "agg.json", keys / "private_key.json", root / "stats.json", study=study,
                    allow_unsigned=True)
    model = release_model(load_sums(root / "stats.json"), signer=signer).model
    assert model.study_ == study.digest and model.release_ is not None
    study.check_model(model)
