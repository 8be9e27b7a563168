"""Attacks on the study pinning by a malicious aggregator and a curious key holder.

The aggregator controls everything a factory receives (run config, requests, rounds, rosters,
models to evaluate) and every bundle in transit and aggregate file; the key holder decrypts what
it is handed. Each test performs one attack and asserts it is refused with a clear error.

Attacks that currently succeed are marked ``xfail(strict=True, raises=AttackSucceeded)``: the test
first shows the attack working (so a broken demonstration fails loudly instead of passing as an
expected failure), then raises :class:`AttackSucceeded`. Once the hole is closed the test passes,
``strict`` turns that into a failure, and the marker must go.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction
from typing import Any

import pandas as pd
import pytest
from cli_helpers import run_cli
from support_helpers import filled

import hefed
from hefed.data import Holdout
from hefed.errors import (
    REPLY_CATEGORIES,
    HefedError,
    LedgerError,
    ReleaseError,
    RoundError,
    SchemaMismatchError,
    TooFewContributorsError,
)
from hefed.flower import _factory
from hefed.flower._messages import make_masked_request, make_ready_request, make_request
from hefed.kinds import FoldStatisticsRequest
from hefed.primitives.encryption import encrypt_plaintexts
from hefed.protocol import (
    Bundle,
    ColumnSpec,
    KeyHolderSigner,
    Masking,
    Roster,
    Round,
    Study,
    enroll,
    join_round,
    load_identity,
    new_round,
    propose_round,
    start_round,
)
from hefed.roles import DecryptionLedger, sign_model

TARGET = "co2_t"
#: The study's features; electricity_mwh and clinker_t (and date, plant_kind) are in the files but not in the study.
FEATURES = ["coal_t", "natural_gas_t", "diesel_t"]
OUTSIDE = ["electricity_mwh", "clinker_t"]
#: What a hostile aggregator could put in a ClientApp's run config or stuff into a request.
HOSTILE = {"target": "clinker_t", "features": "electricity_mwh", "frac-bits": 2, "int-bits": 3, "ridge": 9.0,
           "missing": "error", "test-fraction": 0.9, "seed": 7, "kind": "statistics", "folds": 50}


class AttackSucceeded(Exception):
    """Raised by a test whose attack went through (the test is then an expected failure)."""


def attempt(action: Callable[[], Any]) -> HefedError | Any:
    """Run ``action``; return the library's refusal, or what the action returned when nothing refused it."""
    try:
        return action()
    except HefedError as exc:
        return exc


def _at_home(reply: dict[str, Any], details: list[str]) -> dict[str, Any]:
    """A refusal as the aggregator gets it carries a fixed category only (errors stay home); for these tests, which
    ask why the factory refused, its ``error`` becomes the full text the factory logged at home (``category`` keeps
    what travelled)."""
    if reply["status"] != "error":
        return reply
    assert reply["error"] in REPLY_CATEGORIES and len(details) == 1
    return {**reply, "category": reply["error"], "error": details[0].split("; the aggregator is told only that): ")[1]}


def factory_reply(request: Any, node_config: Any, run_config: Any) -> dict[str, Any]:
    details: list[str] = []
    return _at_home(_factory.factory_reply(request, node_config, run_config, on_detail=details.append), details)


def factory_ready_reply(request: Any, node_config: Any) -> dict[str, Any]:
    details: list[str] = []
    return _at_home(_factory.factory_ready_reply(request, node_config, on_detail=details.append), details)


def refusal(reply: dict[str, Any]) -> str | None:
    """The error a factory's reply carries, or ``None`` when it sent a bundle (what travelled is a fixed category)."""
    if reply["status"] == "ok":
        return None
    assert reply["status"] == "error" and "bundle" not in reply
    assert reply.get("category", reply["error"]) in REPLY_CATEGORIES
    return str(reply["error"])


def refused(reply: dict[str, Any]) -> str:
    """The error of a reply that must be a refusal."""
    error = refusal(reply)
    assert error is not None, "the factory sent a bundle"
    return error


def reply_bundle(reply: dict[str, Any]) -> Bundle:
    return Bundle.from_dict(json.loads(reply["bundle"]), "reply")


def zero_bundle(like: Bundle, factory_id: str) -> Bundle:
    """What an aggregator can forge with the public key alone: an all-zero contribution (counter 1), labelled as
    coming from ``factory_id`` and carrying ``like``'s metadata (study, kind, schema, encoding)."""
    layout = like.layout()
    ciphertexts = encrypt_plaintexts(like.public_key, layout.pack([0] * (len(layout.slots) - 1) + [1]))
    return replace(like, contributors=[factory_id], ciphertexts=ciphertexts, round_id=None, manifests=[],
                   contributions={})


def forged_model(features: list[str], coef: list[float], intercept: float, study: str | None) -> hefed.LinearModel:
    """A model nobody solved, labelled as solved in ``study`` (the label is a plain field of the model JSON)."""
    model = hefed.LinearModel(features, TARGET, [Fraction(c) for c in coef], Fraction(intercept), n_samples=1,
                              sse=None, sst=None)
    model.study_ = study
    return model


def same_sums(a: Any, b: Any) -> bool:
    return {k: v for k, v in a.to_dict().items() if k != "contributors"} == \
        {k: v for k, v in b.to_dict().items() if k != "contributors"}


# --- the consortium -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory, keypair) -> dict[str, Any]:
    """Four factories (CSV files), their enrolled identities and roster, a sybil the aggregator enrolled, and:

    * ``study``: no roster, statistics / fold statistics (3 folds) / evaluation, a 25% holdout, threshold 3;
    * ``roster_study``: the same terms naming the roster (masked rounds only);
    * ``twin``: the roster study's terms again, another study (id).
    """
    public_key = keypair[0]
    root = tmp_path_factory.mktemp("study-attacks")
    frames = filled(hefed.datasets.make_factories(n_factories=4, seed=5))  # no column singles out a plant
    files = {}
    for name, frame in frames.items():
        files[name] = root / f"{name}.csv"
        frame.to_csv(files[name], index=False)
    names = sorted(files)
    dirs = {name: root / f"id-{name}" for name in names}
    for name in names:
        enroll(name, dirs[name])
    roster = Roster()
    for name in names:
        roster.add(load_identity(dirs[name]).member)
    enroll("zz-sybil", root / "id-sybil")
    sybil = load_identity(root / "id-sybil")
    terms: dict[str, Any] = {"kinds": {"statistics": {}, "fold_statistics": {"folds": 3}, "evaluation": {}},
                             "holdout": Holdout(0.25, 1), "min_contributors": 3}
    study = Study.new(public_key, ColumnSpec(TARGET, "t"), FEATURES, **terms)
    roster_study = Study.new(public_key, ColumnSpec(TARGET, "t"), FEATURES, roster_digest=roster.digest(), **terms)
    twin = Study.new(public_key, ColumnSpec(TARGET, "t"), FEATURES, roster_digest=roster.digest(), **terms)
    paths = {}
    for label, item in (("study", study), ("roster_study", roster_study), ("twin", twin)):
        (root / label).mkdir()
        paths[label] = item.save(root / label / "study.json")
    return {"root": root, "files": files, "names": names, "dirs": dirs, "roster": roster, "sybil": sybil,
            "study": study, "roster_study": roster_study, "twin": twin, "paths": paths}


def node(world: dict[str, Any], name: str, which: str = "study", identity: bool = False) -> dict[str, str]:
    """A factory's node config: its data, its own copy of the study pinned by digest, and its identity folder."""
    config = {"data-path": str(world["files"][name]), "study": str(world["paths"][which]),
              "study-digest": world[which].digest}
    if identity:
        config["identity-dir"] = str(world["dirs"][name])
    return config


def masking(world: dict[str, Any], name: str, round_: Round, roster: Roster | None = None) -> Masking:
    return Masking(round_, load_identity(world["dirs"][name]), roster or world["roster"])


@pytest.fixture(scope="module")
def masked_round(world) -> dict[str, Any]:
    """One honest masked round of the roster study with all four factories, aggregated."""
    study, roster, names = world["roster_study"], world["roster"], world["names"]
    round_ = new_round(roster, names)
    bundles = [hefed.encrypt_for_study(world["files"][n], study, factory_id=n,
                                       masking=masking(world, n, round_)).bundle for n in names]
    return {"round": round_, "bundles": bundles, "aggregate": hefed.aggregate(bundles, roster, round_, study=study)}


# --- (a) steering what a factory computes (Flower ClientApp) ------------------------------------------------


def test_steering_request_fields_and_run_config_are_ignored(world, keypair):
    """A request naming the study but stuffed with target, features, encoding, holdout, folds and ridge, under a
    hostile run config: the factory computes exactly what its own copy of the study says."""
    study, name = world["study"], world["names"][0]
    request = {**make_request("statistics", keypair[0], study=study.digest), **{k: str(v) for k, v in HOSTILE.items()}}
    reply = factory_reply(request, node(world, name), HOSTILE)
    assert refusal(reply) is None
    bundle = reply_bundle(reply)
    assert bundle.study == study.digest and bundle.encoding == study.encoding and bundle.target == TARGET
    assert sorted(bundle.features) == sorted(FEATURES) and bundle.parameters == {}
    local = hefed.encrypt_for_study(world["files"][name], study, factory_id=name).bundle
    assert same_sums(hefed.decrypt_bundle(bundle, keypair[1], min_contributors=1, allow_unsigned=True),
                     hefed.decrypt_bundle(local, keypair[1], min_contributors=1, allow_unsigned=True))


def test_unstudied_request_to_a_studied_factory_is_refused(world, keypair):
    """Downgrade: an aggregator that names no study (so that the run config would decide) gets a refusal, in a plain
    request and in the ready step of a masked round."""
    digest = world["study"].digest
    name = world["names"][0]
    expected = f"this factory computes only for its study {digest} (node config 'study')"
    assert expected in refused(factory_reply(make_request("statistics", keypair[0]), node(world, name), HOSTILE))
    ready = make_ready_request("statistics", keypair[0], world["roster"])
    assert expected in refused(factory_ready_reply(ready, node(world, name, identity=True)))
    blank = {**make_request("statistics", keypair[0]), "study": ""}  # an empty study field is no study
    assert expected in refused(factory_reply(blank, node(world, name), {}))


def test_request_naming_another_study_is_refused(world, keypair):
    name = world["names"][0]
    other = world["twin"].digest
    error = refusal(factory_reply(make_request("statistics", keypair[0], study=other), node(world, name), {}))
    assert error == (f"the aggregator asks for study {other}, but this factory's study is {world['study'].digest}; "
                     "refused")


def test_request_under_another_key_is_refused(world, keypair, other_keypair):
    """Key substitution while naming the right study: refused in the contribute request and in the ready step."""
    study, name = world["roster_study"], world["names"][0]
    expected = (f"the aggregator asked for encryption under key {hefed.key_fingerprint(other_keypair[0])}, but study "
                f"{study.digest} names key {study.key_fingerprint}; refused")
    request = make_request("statistics", other_keypair[0], study=study.digest)
    round_ = new_round(world["roster"], world["names"])
    masked = make_masked_request(request, round_, world["roster"])
    assert refusal(factory_reply(masked, node(world, name, "roster_study", identity=True), {})) == expected
    ready = make_ready_request("statistics", other_keypair[0], world["roster"], study.digest)
    assert refusal(factory_ready_reply(ready, node(world, name, "roster_study", identity=True))) == expected


def test_kind_outside_the_study_is_refused(world, keypair):
    study, name = world["study"], world["names"][0]
    error = refusal(factory_reply(make_request("coefficients", keypair[0], study=study.digest), node(world, name), {}))
    assert error == (f"the aggregator asked for coefficients bundles, which study {study.digest} does not allow (it "
                     "allows evaluation, fold_statistics, statistics); refused")


def test_unmasked_request_to_a_roster_study_factory_is_refused(world, keypair):
    """Downgrade to a plain bundle the key holder could decrypt alone: refused by a factory whose study names a
    roster, with or without an identity folder in its node config."""
    study, name = world["roster_study"], world["names"][0]
    request = make_request("statistics", keypair[0], study=study.digest)
    for identity in (False, True):
        error = refusal(factory_reply(request, node(world, name, "roster_study", identity=identity), {}))
        assert error is not None and "masked rounds only" in error


def test_roster_with_a_sybil_is_refused(world, keypair):
    """Roster substitution: the study's roster plus a sybil whose keys the aggregator holds. Refused at the ready step
    and in the contribute request, before anything is read or masked."""
    study, name, roster = world["roster_study"], world["names"][0], world["roster"]
    padded = Roster({**roster.members, "zz-sybil": world["sybil"].member})
    expected = (f"the aggregator sent roster {padded.digest()}, but study {study.digest} names roster "
                f"{roster.digest()}; refused")
    config = node(world, name, "roster_study", identity=True)
    ready = make_ready_request("statistics", keypair[0], padded, study.digest)
    assert refusal(factory_ready_reply(ready, config)) == expected
    round_ = new_round(padded, [name, "zz-sybil"])
    request = make_masked_request(make_request("statistics", keypair[0], study=study.digest), round_, padded)
    assert refusal(factory_reply(request, config, {})) == expected


def test_round_with_a_participant_outside_the_roster_is_refused(world, keypair):
    """A forged round (made from the study's roster digest) listing a sybil next to the victim: refused."""
    study, name, roster = world["roster_study"], world["names"][0], world["roster"]
    round_ = Round(secrets.token_hex(16), tuple(sorted([name, world["names"][1], "zz-sybil"])), roster.digest())
    request = make_masked_request(make_request("statistics", keypair[0], study=study.digest), round_, roster)
    error = refusal(factory_reply(request, node(world, name, "roster_study", identity=True), {}))
    assert error == "factory 'zz-sybil' is not in the roster"


@pytest.mark.parametrize("path", ["flower", "library"])
def test_round_smaller_than_the_study_threshold_is_refused(world, keypair, path):
    """The aggregator makes a round of two roster members although the study says three at least: whoever decrypts
    it (a curious key holder uses phe directly, not hefed's threshold) learns a two-factory sum, and with the
    other factory's help the victim's statistics."""
    study, roster = world["roster_study"], world["roster"]
    victim, partner = world["names"][:2]
    round_ = new_round(roster, [victim, partner])
    if path == "flower":
        request = make_masked_request(make_request("statistics", keypair[0], study=study.digest), round_, roster)
        error = refusal(factory_reply(request, node(world, victim, "roster_study", identity=True), {}))
        if error is None:
            raise AttackSucceeded("the factory contributed to a 2-participant round of a study with threshold 3")
    else:
        result = attempt(lambda: hefed.encrypt_for_study(world["files"][victim], study, factory_id=victim,
                                                         masking=masking(world, victim, round_)))
        if not isinstance(result, HefedError):
            assert result.bundle.round_id == round_.round_id
            raise AttackSucceeded("encrypt_for_study masked a contribution to a 2-participant round")
        error = str(result)
    assert "min_contributors" in error or "at least 3" in error


# --- (a)/(e) the evaluation model: the only thing a request may carry -----------------------------------------


def test_evaluation_model_of_another_study_or_none_is_refused(world, keypair):
    study, name = world["study"], world["names"][0]
    for label, made in ((world["twin"].digest, f"study {world['twin'].digest}"), (None, "no study")):
        model = forged_model(FEATURES, [1.0, 1.0, 1.0], 0.0, label)
        error = refusal(factory_reply(make_request("evaluation", keypair[0], model, study.digest), node(world, name),
                                      {}))
        assert error == (f"the model to evaluate was solved in {made}, not in this factory's study {study.digest}; "
                         "refused")


@pytest.mark.parametrize("which", ["study", "roster_study"])
def test_forged_evaluation_model_labelled_with_the_study_is_refused(world, keypair, which):
    """A model nobody released (y − c, for many c) read through evaluation sums would reveal the pooled holdout.
    A multi-party (roster) study evaluates only models its key holder signed, and one that names no key holder
    none at all; a study without a roster is a trial, where the label is the aggregator's word."""
    study, name = world[which], world["names"][0]
    c = 3000.0
    model = forged_model(FEATURES, [0.0, 0.0, 0.0], c, study.digest)  # nobody solved this: y - c
    if which == "roster_study":  # every factory path checks the model with the study before reading a row
        with pytest.raises(ReleaseError, match="no key holder"):
            study.check_model(model)
        signer = KeyHolderSigner.generate()
        signed_study = Study(**{**study.__dict__, "keyholder": signer.public})
        model = forged_model(FEATURES, [0.0, 0.0, 0.0], c, signed_study.digest)
        with pytest.raises(ReleaseError, match="no release signature"):
            signed_study.check_model(model)
        with pytest.raises(ReleaseError, match="another key"):  # signed, but by the aggregator's own key
            signed_study.check_model(sign_model(model, KeyHolderSigner.generate()))
        signed_study.check_model(sign_model(model, signer))  # what the key holder released is evaluated
        return
    reply = factory_reply(make_request("evaluation", keypair[0], model, study.digest), node(world, name, which), {})
    error = refusal(reply)
    assert error is None  # the trial path (no roster): the factory evaluates, the label is the aggregator's word
    with pytest.raises(RoundError, match="unsigned"):  # and the key holder decrypts the sums only as a trial
        hefed.decrypt_bundle(reply_bundle(reply), keypair[1], min_contributors=1, study=study)


def test_evaluation_of_columns_outside_the_study_is_refused(world, keypair):
    study, name = world["study"], world["names"][0]
    model = forged_model(["clinker_t"], [1.0], 0.0, study.digest)
    reply = factory_reply(make_request("evaluation", keypair[0], model, study.digest), node(world, name), {})
    error = refusal(reply)
    if error is None:
        assert reply_bundle(reply).features == ["clinker_t"]
        raise AttackSucceeded("the factory computed and sent residual sums of clinker_t, a column outside the study")
    assert "clinker_t" in error


def test_forged_model_cannot_read_cells_or_columns_through_error_replies(world, keypair):
    study, name = world["study"], world["names"][0]
    frame = hefed.read_table(world["files"][name])
    leaked = []
    for column in ("date", "no_such_column"):
        model = forged_model([column], [1.0], 0.0, study.digest)
        error = refusal(_factory.factory_reply(make_request("evaluation", keypair[0], model, study.digest),
                                               node(world, name), {}))  # what the aggregator gets
        assert error is not None
        leaked += [cell for cell in frame["date"].astype(str) if cell in error]
        leaked += [col for col in [*OUTSIDE, "date", "plant_kind"] if col != column and col in error]
    if leaked:
        raise AttackSucceeded(f"error replies carried {sorted(set(leaked))[:5]}")


# --- (d) downgrades at the library (files) --------------------------------------------------------------------


@pytest.mark.parametrize("path", ["library", "cli"])
def test_unmasked_encryption_under_a_roster_study_is_refused(world, path, tmp_path):
    study, name = world["roster_study"], world["names"][0]
    if path == "library":
        result = attempt(lambda: hefed.encrypt_for_study(world["files"][name], study, factory_id=name))
        if not isinstance(result, HefedError):
            assert result.bundle.round_id is None and result.bundle.study == study.digest
            raise AttackSucceeded("an unmasked bundle of a study that names a roster")
        assert "roster" in str(result) or "round" in str(result)
    else:
        out = tmp_path / "plain.json"
        done = run_cli("encrypt", world["files"][name], "--study", world["paths"]["roster_study"], "--factory-id",
                       name, "--out", out)
        if done.returncode == 0:
            assert Bundle.load(out).round_id is None
            raise AttackSucceeded("hefed encrypt --study wrote an unmasked bundle of a study that names a roster")
        assert not out.exists() and ("--round" in done.stderr or "roster" in done.stderr)


def flag_bundle(world: dict[str, Any], name: str, public_key: Any, study: Study, **options: Any) -> Bundle:
    """A plain bundle of the study's columns and encoding made without the study (a trial run), then labelled with
    the study's digest by the aggregator."""
    bundle = hefed.encrypt_table(world["files"][name], TARGET, public_key, features=FEATURES, factory_id=name,
                                 encoding=study.encoding, cleaning=study.cleaning, **options).bundle
    bundle.study = study.digest
    return bundle


def test_plain_bundles_in_a_roster_study_are_refused_by_the_aggregator(world, keypair):
    study = world["roster_study"]
    bundles = [flag_bundle(world, n, keypair[0], study) for n in world["names"][:3]]
    result = attempt(lambda: hefed.aggregate(bundles, study=study))
    if not isinstance(result, HefedError):
        raise AttackSucceeded("plain bundles aggregated under a study that names a roster")
    assert "roster" in str(result) or "round" in str(result)


def test_padded_unsigned_aggregate_of_a_roster_study_is_refused_by_the_key_holder(world, keypair):
    study = world["roster_study"]
    victim, b, c = world["names"][:3]
    real = flag_bundle(world, victim, keypair[0], study)
    padded = hefed.aggregate([real, zero_bundle(real, b), zero_bundle(real, c)])
    result = attempt(lambda: hefed.decrypt_statistics(padded, keypair[1], study=study, allow_unsigned=True))
    if not isinstance(result, HefedError):
        alone = hefed.decrypt_statistics(hefed.aggregate([real]), keypair[1], min_contributors=1, allow_unsigned=True)
        assert result.gram == alone.gram and result.contributors == [victim, b, c]
        raise AttackSucceeded("the key holder released one factory's exact statistics under a roster study")
    assert "roster" in str(result) or "signed" in str(result)


def test_padded_plain_aggregate_of_a_study_is_refused_by_the_key_holder(world, keypair):
    study = world["study"]
    victim, b, c = world["names"][:3]
    real = hefed.encrypt_for_study(world["files"][victim], study, factory_id=victim).bundle
    padded = hefed.aggregate([real, zero_bundle(real, b), zero_bundle(real, c)], study=study)
    result = attempt(lambda: hefed.decrypt_statistics(padded, keypair[1], study=study))  # no trial flag
    if not isinstance(result, HefedError):
        alone = hefed.decrypt_statistics(hefed.aggregate([real]), keypair[1], min_contributors=1, allow_unsigned=True)
        assert result.gram == alone.gram
        raise AttackSucceeded("the key holder released one factory's exact statistics as a 3-factory aggregate")
    assert "unsigned" in str(result)


def test_padded_masked_aggregate_is_refused_by_the_key_holder(world, keypair, masked_round):
    """The same padding on a masked round: one real signed contribution times two forged zero bundles, listed as
    three contributors. The key holder with the roster refuses it (one signed manifest for three contributors)."""
    study, roster = world["roster_study"], world["roster"]
    real = masked_round["bundles"][0]
    nsq = real.public_key.nsquare
    ciphertexts = list(real.ciphertexts)
    for name in world["names"][1:3]:
        ciphertexts = [a * z % nsq for a, z in zip(ciphertexts, zero_bundle(real, name).ciphertexts, strict=True)]
    padded = replace(real, contributors=world["names"][:3], ciphertexts=ciphertexts,
                     contributions={real.contributors[0]: list(real.ciphertexts)})
    with pytest.raises(RoundError, match="one signed manifest per contributor"):
        hefed.decrypt_statistics(padded, keypair[1], roster=roster, study=study, allow_unsigned=True)


# --- (b) the key holder: threshold and other studies --------------------------------------------------------


def test_key_holder_applies_the_study_threshold_whatever_it_is_told(world, keypair):
    study = world["study"]
    bundles = [hefed.encrypt_for_study(world["files"][n], study, factory_id=n).bundle for n in world["names"][:2]]
    aggregate = hefed.aggregate(bundles, study=study)
    with pytest.raises(TooFewContributorsError, match="at least 3 are required"):
        hefed.decrypt_statistics(aggregate, keypair[1], min_contributors=1, study=study, allow_unsigned=True)


def test_key_holder_refuses_an_aggregate_of_another_study_or_of_none(world, keypair):
    study = world["study"]
    bundles = [hefed.encrypt_for_study(world["files"][n], study, factory_id=n).bundle for n in world["names"][:3]]
    aggregate = hefed.aggregate(bundles, study=study)
    other = world["twin"]
    with pytest.raises(SchemaMismatchError, match=f"made for study {study.digest}, not for this study"):
        hefed.decrypt_statistics(aggregate, keypair[1], study=other, allow_unsigned=True)
    stripped = replace(aggregate, study=None)  # downgrade: the study field dropped in transit
    with pytest.raises(SchemaMismatchError, match="made for no study, not for this study"):
        hefed.decrypt_statistics(stripped, keypair[1], study=study, allow_unsigned=True)
    with pytest.raises(SchemaMismatchError, match="made for no study"):
        hefed.aggregate([replace(b, study=None) for b in bundles], study=study)
    # and the analyst refuses the decrypted sums of another study
    stats = hefed.decrypt_statistics(aggregate, keypair[1], study=study, allow_unsigned=True)
    with pytest.raises(SchemaMismatchError, match="not for this study"):
        hefed.solve(stats, study=other)


def test_bundle_with_other_parameters_than_the_study_is_refused(world, keypair):
    study = world["study"]
    bundles = [flag_bundle(world, n, keypair[0], study, request=FoldStatisticsRequest(folds=20), holdout=study.holdout)
               for n in world["names"][:3]]
    result = attempt(lambda: hefed.decrypt_bundle(hefed.aggregate(bundles, study=study), keypair[1], study=study,
            allow_unsigned=True))
    if not isinstance(result, HefedError):
        assert len(result.folds) == 20
        raise AttackSucceeded("20-fold statistics decrypted under a study that agreed on 3 folds")
    assert "parameters" in str(result) or "folds" in str(result)


def test_plain_bundles_of_another_study_relabelled_are_refused(world, keypair):
    study = world["study"]
    loose = Study.new(keypair[0], ColumnSpec(TARGET, "t"), FEATURES, kinds=dict(study.kinds), min_contributors=3)
    bundles = [replace(hefed.encrypt_for_study(world["files"][n], loose, factory_id=n).bundle, study=study.digest)
               for n in world["names"][:3]]
    result = attempt(lambda: hefed.decrypt_statistics(hefed.aggregate(bundles, study=study), keypair[1], study=study))
    if not isinstance(result, HefedError):
        assert result.n == sum(len(hefed.read_table(world["files"][n])) for n in world["names"][:3])
        raise AttackSucceeded("statistics over the held-out rows decrypted as the study's")
    assert "unsigned" in str(result)  # only signed rounds, whose signatures cover the study, are decrypted


# --- (c) relabelling and replaying masked contributions -----------------------------------------------------


def test_masked_aggregate_relabelled_to_another_study_is_refused(world, keypair, masked_round):
    """The twin study has the same key, roster and terms; the signatures cover the study digest, so the round's
    aggregate relabelled to the twin, or with its study dropped, is refused by the key holder."""
    roster, aggregate = world["roster"], masked_round["aggregate"]
    twin = world["twin"]
    with pytest.raises(RoundError, match="signed schema_digest"):
        hefed.decrypt_statistics(replace(aggregate, study=twin.digest), keypair[1], roster=roster, study=twin,
                allow_unsigned=True)
    with pytest.raises(RoundError, match="signed schema_digest"):
        hefed.decrypt_statistics(replace(aggregate, study=None), keypair[1], roster=roster, allow_unsigned=True)
    with pytest.raises(RoundError, match="signed schema_digest"):
        hefed.aggregate([replace(b, study=twin.digest) for b in masked_round["bundles"]], roster,
                        masked_round["round"], study=twin)
    # the honest aggregate decrypts
    stats = hefed.decrypt_statistics(aggregate, keypair[1], roster=roster, study=world["roster_study"],
            allow_unsigned=True)
    assert stats.study == world["roster_study"].digest and len(stats.contributors) == 4


def test_masked_contribution_replayed_into_another_round_is_refused(world, masked_round):
    roster = world["roster"]
    again = new_round(roster, world["names"])
    with pytest.raises(RoundError, match=f"belongs to round {masked_round['round'].round_id}, not the current round"):
        hefed.aggregate(masked_round["bundles"], roster, again, study=world["roster_study"])


def test_masked_round_request_cannot_be_answered_twice(world, keypair):
    """Replaying one contribute request (same round) to a factory: the second answer is refused, since two bundles
    masked alike would reveal their difference."""
    study, name, roster = world["roster_study"], world["names"][0], world["roster"]
    round_ = propose_round(roster, world["names"], study=study)  # version 2: Flower factories take no other
    joins = [join_round(load_identity(world["dirs"][n]), roster, round_, study=study)[0] for n in world["names"]]
    request = make_masked_request(make_request("statistics", keypair[0], study=study.digest),
                                  start_round(round_, roster, joins), roster)
    config = node(world, name, "roster_study", identity=True)
    assert refusal(factory_reply(request, config, {})) is None
    error = refusal(factory_reply(request, config, {}))
    assert error is not None and f"already contributed to round {round_.round_id}" in error


def test_overlapping_rounds_of_a_study_cannot_be_differenced(world, keypair, masked_round):
    """Rounds {a,b,c,d} and {a,b,c} (a claimed drop-out): the key holder's ledger decrypts the first and refuses
    the second, whose difference with the first would be d's exact statistics."""
    study, roster, names = world["roster_study"], world["roster"], world["names"]
    ledger = DecryptionLedger(hefed.key_fingerprint(keypair[0]))

    def second_round() -> Any:
        first = hefed.decrypt_statistics(masked_round["aggregate"], keypair[1], roster=roster, study=study,
                                         ledger=ledger)
        round_ = new_round(roster, names[:3])
        bundles = [hefed.encrypt_for_study(world["files"][n], study, factory_id=n,
                                           masking=masking(world, n, round_)).bundle for n in names[:3]]
        second = hefed.decrypt_statistics(hefed.aggregate(bundles, roster, round_, study=study), keypair[1],
                                          roster=roster, study=study, ledger=ledger)
        return first, second

    result = attempt(second_round)
    if not isinstance(result, HefedError):
        first, second = result
        victim = names[3]
        alone = hefed.encrypt_for_study(world["files"][victim], world["study"], factory_id=victim).bundle
        expected = hefed.decrypt_statistics(hefed.aggregate([alone]), keypair[1], min_contributors=1,
                allow_unsigned=True)
        difference = [[x - y for x, y in zip(r1, r2, strict=True)] for r1, r2 in zip(first.gram, second.gram,
                                                                                       strict=True)]
        assert difference == expected.gram
        raise AttackSucceeded(f"two rounds of one study differenced into {victim}'s exact statistics")
    assert isinstance(result, LedgerError) and len(ledger.entries) == 1


def test_study_file_of_a_factory_cannot_be_swapped_by_an_edited_copy(world, tmp_path, keypair):
    """An aggregator that hands a factory an 'updated' study file (threshold lowered, roster dropped) is refused by
    the factory's pin, and an edited file fails its own digest."""
    study, name = world["roster_study"], world["names"][0]
    obj = study.to_dict()
    obj["min_contributors"], obj["roster_digest"] = 1, None
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(obj))
    config = {**node(world, name, "roster_study", identity=True), "study": str(edited)}
    request = make_request("statistics", keypair[0], study=study.digest)
    assert "the digest does not match the study's contents" in refused(factory_reply(request, config, {}))
    rebuilt = replace(study, min_contributors=1, roster_digest=None)  # a consistent file of another study
    config["study"] = str(rebuilt.save(tmp_path / "rebuilt.json"))
    assert f"not the pinned study {study.digest}" in refused(factory_reply(request, config, {}))


def test_node_config_without_a_pin_still_ignores_the_run_config(world, keypair):
    """Without 'study-digest' the factory still computes from its own file only; the run config cannot name
    another study file for it."""
    study, name = world["study"], world["names"][0]
    config = {k: v for k, v in node(world, name).items() if k != "study-digest"}
    hostile = {**HOSTILE, "study": str(world["paths"]["twin"])}
    reply = factory_reply(make_request("statistics", keypair[0], study=study.digest), config, hostile)
    assert refusal(reply) is None and reply_bundle(reply).study == study.digest
    twin_request = make_request("statistics", keypair[0], study=world["twin"].digest)
    assert "but this factory's study is" in refused(factory_reply(twin_request, config, hostile))


def test_read_table_is_not_needed_to_refuse(world, keypair, monkeypatch):
    """Refusals of forged requests happen before the factory reads its data (nothing to leak in timing or errors):
    another study, a kind outside it, an unmasked request to a roster study, a round with a Sybil or below the
    threshold, a model of other columns."""
    reads: list[str] = []

    def no_reading(*args: Any, **kwargs: Any) -> pd.DataFrame:
        reads.append("read")
        raise AssertionError("data read before the request was checked")

    monkeypatch.setattr("hefed.flower._factory.read_table", no_reading)
    monkeypatch.setattr("hefed.roles._factory._encrypt", no_reading)  # after every check, before any row is read
    study, name = world["roster_study"], world["names"][0]
    roster, others = world["roster"], world["names"][1:]
    config = node(world, name, "roster_study", identity=True)
    sybil_round = Round(secrets.token_hex(16), tuple(sorted([name, others[0], "zz-sybil"])), roster.digest())
    small_round = new_round(roster, [name, others[0]])
    requests = [make_request("statistics", keypair[0]),
                make_request("statistics", keypair[0], study=world["twin"].digest),
                make_request("coefficients", keypair[0], study=study.digest),
                make_request("statistics", keypair[0], study=study.digest),  # unmasked
                *(make_masked_request(make_request("statistics", keypair[0], study=study.digest), r, roster)
                  for r in (sybil_round, small_round))]
    for request in requests:
        assert refusal(factory_reply(request, config, {})) is not None
    model = forged_model(["clinker_t"], [1.0], 0.0, world["study"].digest)
    assert refusal(factory_reply(make_request("evaluation", keypair[0], model, world["study"].digest),
                                 node(world, name), {})) is not None
    assert reads == []
