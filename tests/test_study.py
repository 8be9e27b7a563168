"""Studies: the one agreement every party pins, checked at every role.

A study names the key, the columns, the encoding, the allowed kinds and the policies, with a
digest over all of it. A factory computes only what its copy says; the aggregator, the key
holder and the analyst refuse anything of another study; an option contradicting the study is
refused; in a masked round the signature covers the study.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from cli_helpers import run_cli
from support_helpers import filled

import hefed
from hefed.data import Bounds, Cleaning, Holdout
from hefed.errors import DataError, InvalidFileError, RoundedValuesWarning, RoundError, SchemaMismatchError, UsageError
from hefed.kinds import FoldStatisticsRequest, StatisticsRequest
from hefed.protocol import ColumnSpec, Masking, Roster, Study, enroll, load_identity, new_round
from hefed.roles import study_holdout
from hefed.stats import ColumnEncoding, Encoding

TARGET = "co2_t"


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return filled(hefed.datasets.make_factories(n_factories=4, seed=3))  # no column singles out a plant


@pytest.fixture(scope="module")
def features(frames) -> list[str]:
    return [c for c in next(iter(frames.values())).columns if c not in ("date", "plant_kind", TARGET)]


@pytest.fixture(scope="module")
def study(keypair, features) -> Study:
    return Study.new(keypair[0], ColumnSpec(TARGET, "t"), features, kinds={"statistics": {}, "summary": {},
                                                                            "fold_statistics": {"folds": 3}})


def _bundles(frames, study, kind="statistics"):
    return [hefed.encrypt_for_study(frame, study, factory_id=name, kind=kind).bundle for name, frame in frames.items()]


# --- the file and its digest -------------------------------------------------------------------
def test_digest_covers_every_term_and_the_file_round_trips(study, tmp_path):
    path = study.save(tmp_path / "study.json")
    again = Study.load(path, expected_digest=study.digest)
    assert again.digest == study.digest and again.to_dict() == study.to_dict()
    # every term changes the digest
    changed = [
        replace(study, min_contributors=4), replace(study, title="x"),
        replace(study, encoding=Encoding(frac_bits=80)), replace(study, cleaning=Cleaning(missing="error")),
        replace(study, holdout=Holdout(0.2, 1)), replace(study, kinds={"statistics": {}}),
        replace(study, features=study.features[:-1]), replace(study, study_id="0" * 32),
    ]
    assert len({study.digest, *(s.digest for s in changed)}) == len(changed) + 1


def test_an_edited_study_file_is_refused(study, tmp_path):
    obj = study.to_dict()
    obj["min_contributors"] = 1  # lower the threshold behind everyone's back
    (tmp_path / "edited.json").write_text(json.dumps(obj))
    with pytest.raises(InvalidFileError, match="digest does not match"):
        Study.load(tmp_path / "edited.json")
    (tmp_path / "good.json").write_text(json.dumps(study.to_dict()))
    with pytest.raises(SchemaMismatchError, match="not the pinned study"):
        Study.load(tmp_path / "good.json", expected_digest="f" * 32)


def test_a_study_refuses_what_cannot_be_agreed(keypair, features):
    with pytest.raises(UsageError):
        Study.new(keypair[0], TARGET, [*features, TARGET])  # the target as a feature
    with pytest.raises(UsageError, match="takes no parameter"):
        Study.new(keypair[0], TARGET, features, kinds={"statistics": {"folds": 3}})
    with pytest.raises(InvalidFileError):
        Study.new(keypair[0], TARGET, features, kinds={"no_such_kind": {}})
    with pytest.raises(UsageError, match="summary is data"):
        Study.new(keypair[0], TARGET, features, cleaning=Cleaning(impute="mean", summary=_any_summary(features)))


def _any_summary(features):
    from hefed.stats import column_summary

    return column_summary({c: np.array([1.0, 2.0]) for c in [*features, TARGET]}, Encoding())


# --- the roles ------------------------------------------------------------------------------------
def test_the_study_flow_equals_the_flag_flow(frames, study, keypair, features):
    public_key, private_key = keypair
    via_study = hefed.decrypt_statistics(hefed.aggregate(_bundles(frames, study), study=study), private_key,
                                         study=study, allow_unsigned=True)
    via_flags = hefed.decrypt_statistics(hefed.aggregate(
        [hefed.encrypt_table(f, TARGET, public_key, features=features, factory_id=n, cleaning=Cleaning("drop")).bundle
         for n, f in frames.items()]), private_key, allow_unsigned=True)
    assert via_study.gram == via_flags.gram and via_study.study == study.digest
    model = hefed.solve(via_study, study=study)
    assert model.coef_exact_ == hefed.solve(via_flags).coef_exact_ and model.study_ == study.digest


def test_every_role_refuses_another_study(frames, study, keypair, features):
    other = Study.new(keypair[0], TARGET, features)
    bundles = _bundles(frames, study)
    with pytest.raises(SchemaMismatchError, match="not for this study"):
        hefed.aggregate(bundles, study=other)
    mixed = [*bundles[:2], *(hefed.encrypt_for_study(f, other, factory_id=n).bundle
                             for n, f in list(frames.items())[2:])]
    with pytest.raises(SchemaMismatchError, match="study"):
        hefed.aggregate(mixed)  # bundles of two studies never add up, even without --study
    aggregate = hefed.aggregate(bundles)
    with pytest.raises(SchemaMismatchError, match="not for this study"):
        hefed.decrypt_statistics(aggregate, keypair[1], study=other, allow_unsigned=True)
    stats = hefed.decrypt_statistics(aggregate, keypair[1], allow_unsigned=True)
    with pytest.raises(SchemaMismatchError, match="not for this study"):
        hefed.solve(stats, study=other)
    plain = hefed.aggregate([hefed.encrypt_statistics(f, TARGET, keypair[0], features, n) for n, f in frames.items()])
    with pytest.raises(SchemaMismatchError, match="made for no study"):
        hefed.decrypt_statistics(plain, keypair[1], study=study, allow_unsigned=True)


def test_the_key_holder_applies_the_studys_threshold(frames, keypair, features):
    strict = Study.new(keypair[0], TARGET, features, min_contributors=5)
    aggregate = hefed.aggregate(_bundles(frames, strict))
    with pytest.raises(hefed.errors.TooFewContributorsError):
        hefed.decrypt_statistics(aggregate, keypair[1], min_contributors=1, study=strict, allow_unsigned=True)


def test_kinds_the_study_does_not_allow_are_refused(frames, study):
    frame = next(iter(frames.values()))
    with pytest.raises(UsageError, match="does not allow coefficients"):
        hefed.encrypt_for_study(frame, study, factory_id="a", kind="coefficients")
    fold_bundle = hefed.encrypt_for_study(frame, study, factory_id="a", kind="fold_statistics").bundle
    assert fold_bundle.parameters == {"folds": 3, "fold_seed": 0}  # the study's parameters


@pytest.mark.parametrize("given, match", [
    ({"target": "nox"}, "target"),
    ({"features": ["coal_t"]}, "features"),
    ({"encoding": Encoding(frac_bits=72, int_bits=40)}, "encoding"),
    ({"cleaning": Cleaning(missing="error")}, "cleaning"),
    ({"holdout": Holdout(0.3, 1)}, "holdout"),
    ({"request": FoldStatisticsRequest(folds=5)}, "fold_statistics parameters"),
])
def test_options_that_contradict_the_study_are_refused(frames, study, given, match):
    with pytest.raises(UsageError, match=match):
        hefed.encrypt_table(next(iter(frames.values())), study=study, factory_id="a", **given)


def test_agreeing_options_are_accepted_and_the_key_must_be_the_studys(frames, study, keypair, other_keypair, features):
    frame = next(iter(frames.values()))
    bundle = hefed.encrypt_table(frame, TARGET, keypair[0], study=study, factory_id="a", features=features,
                                 request=StatisticsRequest(), cleaning=Cleaning("drop")).bundle
    assert bundle.study == study.digest
    with pytest.raises(UsageError, match="public_key"):
        hefed.encrypt_table(frame, TARGET, other_keypair[0], study=study, factory_id="a")
    with pytest.raises(SchemaMismatchError, match="key"):  # a bundle under another key claiming the study
        forged = hefed.encrypt_table(frame, TARGET, other_keypair[0], features=features, factory_id="a",
                                     cleaning=Cleaning("drop")).bundle
        forged.study = study.digest
        study.check_bundle(forged)


def test_per_column_encodings_of_the_study_are_what_every_factory_uses(frames, keypair, features):
    coarse = Study.new(keypair[0], TARGET, features, column_encodings={"coal_t": ColumnEncoding(8, 20)})
    results = [hefed.encrypt_for_study(f, coarse, factory_id=n) for n, f in frames.items()]
    bundles = [r.bundle for r in results]
    assert all(b.encoding.column("coal_t") == ColumnEncoding(8, 20) for b in bundles)
    # coal in t with two decimals is finer than a 2^-8 grid: rounded, and counted in each factory's report
    rounded = sum(r.report.rounding.counts.get("coal_t", 0) for r in results)
    assert rounded > 0 and all(set(r.report.rounding.counts) <= {"coal_t"} for r in results)
    stats = hefed.decrypt_statistics(hefed.aggregate(bundles, study=coarse), keypair[1], study=coarse,
            allow_unsigned=True)
    with pytest.warns(RoundedValuesWarning, match=f"{rounded} value\\(s\\) of 'coal_t' rounded"):
        exact = hefed.compute_statistics(pd.concat(frames.values(), ignore_index=True), TARGET, features,
                                         encoding=coarse.encoding)
    assert stats.gram == exact.gram and stats.scale_bits[1:] == [8 if c == "coal_t" else 84 for c in stats.columns[1:]]


def test_a_categorical_feature_is_one_hot_encoded_with_the_studys_levels(frames, keypair, features, tmp_path):
    """Every factory gets the same dummies from the study's levels (first level the reference), from a frame
    or from a file; the consortium fit equals the fit of the pooled rows one-hot encoded by hand, exactly."""
    levels = ("cement", "chemicals", "power", "steel")
    # every plant reports rows of every level: a level only one plant has would single it out (refused)
    frames = {n: f.assign(plant_kind=[levels[i % 4] for i in range(len(f))]) for n, f in frames.items()}
    study = Study.new(keypair[0], TARGET, [*features, ColumnSpec("plant_kind", categories=levels)])
    assert study.model_features[-3:] == ["plant_kind=chemicals", "plant_kind=power", "plant_kind=steel"]
    names = list(frames)
    paths = {n: tmp_path / f"{n}.csv" for n in names[:2]}
    for n, path in paths.items():
        frames[n].to_csv(path, index=False)
    data = {n: paths.get(n, frames[n]) for n in names}  # two factories give files, two give frames
    bundles = [hefed.encrypt_for_study(data[n], study, factory_id=n).bundle for n in names]
    stats = hefed.decrypt_statistics(hefed.aggregate(bundles, study=study), keypair[1], study=study,
            allow_unsigned=True)
    by_hand = pd.concat(frames.values(), ignore_index=True)
    for level in levels[1:]:
        by_hand[f"plant_kind={level}"] = (by_hand["plant_kind"] == level).astype(float)
    exact = hefed.compute_statistics(by_hand, TARGET, study.model_features, encoding=study.encoding)
    assert stats.columns == exact.columns and stats.gram == exact.gram
    assert hefed.solve(stats, study=study).coef_exact_ == hefed.solve(exact).coef_exact_
    # the model evaluates locally on a plant's own file (one-hot encoded the same way), as on the pooled rows
    model = hefed.solve(stats, study=study)
    local = hefed.evaluate_local(model, paths[names[0]], study=study)
    by_hand_one = by_hand.iloc[:len(frames[names[0]])]
    assert local == hefed.evaluate_local(model, by_hand_one.drop(columns="plant_kind"), TARGET, study.encoding)
    with pytest.raises(SchemaMismatchError, match="made for no study"):
        hefed.evaluate_local(_unlabelled(model), paths[names[0]], study=study)
    # the rows a study keeps back come one-hot encoded, and evaluate as they are (no second encoding)
    kept_back = study_holdout(paths[names[0]], study)
    assert "plant_kind" not in kept_back and hefed.evaluate_local(model, kept_back, study=study) == local
    # a level the study does not have is refused, naming the column and the row
    odd = frames[names[0]].copy()
    odd.loc[odd.index[4], "plant_kind"] = "glass"
    with pytest.raises(DataError, match=r"column 'plant_kind', row 5: value 'glass' is not one of its levels"):
        hefed.encrypt_for_study(odd, study, factory_id=names[0])


def _unlabelled(model):
    copy = hefed.LinearModel.from_dict(model.to_dict())
    copy.study_ = None
    return copy


def test_a_study_agrees_on_imputing_before_the_summary_exists(frames, keypair, features):
    """The policy (impute the consortium means, drop |z| > 6) is agreed in the study; the summary is data,
    decrypted from the study's own summary round, and given at encryption. Without it the factory refuses."""
    study = Study.new(keypair[0], TARGET, features, cleaning=Cleaning(missing="drop", impute="mean", max_z=6.0))
    gappy = {n: f.copy() for n, f in frames.items()}
    for f in gappy.values():
        f.loc[f.index[:3], "coal_t"] = np.nan
    name, frame = next(iter(gappy.items()))
    with pytest.raises(UsageError, match="summary") as refused:
        hefed.encrypt_for_study(frame, study, factory_id=name)
    assert refused.value.parameters == ("summary",)
    summary = hefed.decrypt_bundle(hefed.aggregate(
        [hefed.encrypt_for_study(f, study, factory_id=n, kind="summary").bundle for n, f in gappy.items()],
        study=study), keypair[1], study=study, allow_unsigned=True)
    result = hefed.encrypt_for_study(frame, study, factory_id=name, summary=summary)
    report = result.report
    assert report.imputed_cells == 3 and report.rows_out == len(frame) - len(report.dropped_outliers)


def test_a_masked_round_signs_the_study(frames, study, keypair, tmp_path):
    names = list(frames)
    for name in names:
        enroll(name, tmp_path / name)
    identities = {name: load_identity(tmp_path / name) for name in names}
    roster = Roster()
    for identity in identities.values():
        roster.add(identity.member)
    pinned = replace(study, roster_digest=roster.digest())
    round_ = new_round(roster, names)
    masked = [hefed.encrypt_for_study(frames[n], pinned, factory_id=n, masking=Masking(round_, identities[n], roster))
              .bundle for n in names]
    total = hefed.aggregate(masked, roster, round_, study=pinned)
    assert hefed.decrypt_statistics(total, keypair[1], roster=roster, study=pinned,
            allow_unsigned=True).study == pinned.digest
    # relabelled to another study after signing: the manifests no longer match
    relabelled = [replace(b, study=study.digest) for b in masked]
    with pytest.raises(RoundError):
        hefed.aggregate(relabelled, roster, round_)
    # a roster other than the study's is refused before anything is masked
    other_roster = Roster({n: roster.members[n] for n in names[:3]})
    with pytest.raises(RoundError, match="not the study's"):
        hefed.encrypt_for_study(frames[names[0]], pinned, factory_id=names[0],
                                masking=Masking(new_round(other_roster, names[:3]), identities[names[0]],
                                                other_roster))


# --- the command line ---------------------------------------------------------------------------
def test_cli_study_flow_and_refusals(tmp_path, frames, features):
    keys = tmp_path / "keys"
    assert run_cli("keygen", "--out-dir", keys, "--bits", 1024, "--insecure-test-key").returncode == 0
    study_path = tmp_path / "study.json"
    made = run_cli("study", "new", "--public-key", keys / "public_key.json", "--target", TARGET, "--features",
                   ",".join(features), "--units", "co2_t=t,coal_t=t", "--out", study_path, "--json")
    assert made.returncode == 0, made.stderr
    digest = json.loads(made.stdout)["digest"]
    shown = run_cli("study", "show", study_path)
    assert digest in shown.stdout and "coal_t (t)" in shown.stdout
    for name, frame in frames.items():
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        result = run_cli("encrypt", tmp_path / f"{name}.csv", "--study", study_path, "--factory-id", name,
                         "--out", tmp_path / f"{name}.json")
        assert result.returncode == 0, result.stderr
    bundles = [tmp_path / f"{name}.json" for name in frames]
    assert run_cli("aggregate", *bundles, "--study", study_path, "--out", tmp_path / "agg.json").returncode == 0
    assert run_cli("decrypt", "--allow-unsigned",
            tmp_path / "agg.json", "--private-key", keys / "private_key.json", "--study",
                   study_path, "--out", tmp_path / "stats.json").returncode == 0
    solved = run_cli("solve", tmp_path / "stats.json", "--study", study_path, "--out", tmp_path / "m.json")
    assert solved.returncode == 0 and json.loads((tmp_path / "m.json").read_text())["study"] == digest
    # a contradicting option: one line, exit 2, nothing written
    refused = run_cli("encrypt", tmp_path / f"{name}.csv", "--study", study_path, "--factory-id", name,
                      "--target", "nox", "--out", tmp_path / "x.json")
    assert refused.returncode == 2 and "contradicts the study" in refused.stderr and "--target" in refused.stderr
    assert not (tmp_path / "x.json").exists()
    # another study's key holder refuses the aggregate
    other = tmp_path / "other.json"
    run_cli("study", "new", "--public-key", keys / "public_key.json", "--target", TARGET, "--features",
            ",".join(features), "--out", other)
    wrong = run_cli("decrypt", "--allow-unsigned",
            tmp_path / "agg.json", "--private-key", keys / "private_key.json", "--study", other,
                    "--out", tmp_path / "s2.json")
    assert wrong.returncode == 1 and "not for this study" in wrong.stderr and not (tmp_path / "s2.json").exists()


def test_cli_requests_are_built_by_the_registry_and_options_that_do_not_apply_are_refused(tmp_path, frames,
                                                                                          features):
    keys = tmp_path / "keys"
    assert run_cli("keygen", "--out-dir", keys, "--bits", 1024, "--insecure-test-key").returncode == 0
    public = keys / "public_key.json"
    common = ["--public-key", public, "--target", TARGET, "--features", ",".join(features)]
    # study new: each kind takes the options its request has; an unknown kind is a usage error
    study_path = tmp_path / "study.json"
    made = run_cli("study", "new", *common, "--kinds", "statistics,fold_statistics,coefficients", "--folds", 4,
                   "--fold-seed", 7, "--ridge", 0.5, "--out", study_path)
    assert made.returncode == 0, made.stderr
    assert Study.load(study_path).kinds == {"statistics": {}, "fold_statistics": {"folds": 4, "seed": 7},
                                            "coefficients": {"ridge": 0.5}}
    bogus = run_cli("study", "new", *common, "--kinds", "statistics,bogus", "--out", tmp_path / "b.json")
    assert bogus.returncode == 2 and "'bogus' is not a bundle kind" in bogus.stderr
    assert not (tmp_path / "b.json").exists()
    # encrypt: an option the kind's request does not take points at the option; a kind it cannot make says so
    name, frame = next(iter(frames.items()))
    frame.to_csv(tmp_path / "f.csv", index=False)
    encrypt = ["encrypt", tmp_path / "f.csv", "--factory-id", name, *common]
    folds = run_cli(*encrypt, "--summary", "--folds", 3, "--out", tmp_path / "s.json")
    assert folds.returncode == 2 and "folds does not apply to summary requests [--folds]" in folds.stderr
    evaluation = run_cli(*encrypt, "--mode", "evaluation", "--out", tmp_path / "e.json")
    assert evaluation.returncode == 2 and "evaluation requests need model [--model]" in evaluation.stderr
    made = run_cli(*encrypt, "--folds", 3, "--out", tmp_path / "f.json")
    assert made.returncode == 0 and json.loads((tmp_path / "f.json").read_text())["kind"] == "fold_statistics"
    assert not (tmp_path / "s.json").exists() and not (tmp_path / "e.json").exists()


def test_cli_options_next_to_a_study_agree_or_are_refused_naming_the_option(tmp_path, frames, features):
    """Features may be given as the table names them (before one-hot encoding) or as the model's columns, in any
    order; a holdout seed or fraction other than the study's is refused, and so is a seed for a study with no
    holdout; messages show values, not reprs, and name the option."""
    keys = tmp_path / "keys"
    assert run_cli("keygen", "--out-dir", keys, "--bits", 1024, "--insecure-test-key").returncode == 0
    study_path, held_path = tmp_path / "study.json", tmp_path / "held.json"
    common = ["study", "new", "--public-key", keys / "public_key.json", "--target", TARGET, "--features",
              ",".join([*features, "plant_kind"]), "--categories", "plant_kind=cement|chemicals|power|steel"]
    assert run_cli(*common, "--out", study_path).returncode == 0
    assert run_cli(*common, "--test-fraction", 0.25, "--seed", 4, "--out", held_path).returncode == 0
    name, frame = next(iter(frames.items()))
    frame.to_csv(tmp_path / "f.csv", index=False)

    def encrypt(study: Path, *options: object) -> Any:
        out = tmp_path / f"b{secrets.token_hex(4)}.json"
        return run_cli("encrypt", tmp_path / "f.csv", "--study", study, "--factory-id", name, "--out", out, *options)

    table_order = ",".join(["plant_kind", *reversed(features)])
    model_order = ",".join(["plant_kind=steel", "plant_kind=power", "plant_kind=chemicals", *features])
    for given in (table_order, model_order):
        assert encrypt(study_path, "--features", given).returncode == 0
    wrong = encrypt(study_path, "--features", ",".join(features))
    assert wrong.returncode == 2 and "contradict the study's" in wrong.stderr and "[--features]" in wrong.stderr
    seed = encrypt(study_path, "--seed", 5)
    assert seed.returncode == 2 and "--seed 5 contradicts the study, which keeps no holdout" in seed.stderr
    assert encrypt(held_path, "--seed", 4, "--test-fraction", 0.25).returncode == 0
    other = encrypt(held_path, "--seed", 5)
    assert other.returncode == 2
    assert "holdout (test_fraction=0.25, seed=5) contradicts the study's (test_fraction=0.25, seed=4)" in other.stderr
    assert "[--test-fraction, --seed]" in other.stderr
    bits = encrypt(study_path, "--frac-bits", 60)
    assert bits.returncode == 2 and "frac_bits=60" in bits.stderr and "Encoding(" not in bits.stderr
    assert "--frac-bits" in bits.stderr
    assert len(list(tmp_path.glob("b*.json"))) == 3  # nothing written by a refusal


def test_a_dp_release_in_a_study_uses_the_bounds_factories_clipped_to(frames, keypair, features, tmp_path):
    """Noise calibrated to bounds no factory clipped to is no guarantee: in a study the DP bounds are the study's,
    and a study without bounds has none to release under."""
    study = Study.new(keypair[0], TARGET, features)
    stats = hefed.decrypt_statistics(hefed.aggregate(_bundles(frames, study), study=study), keypair[1], study=study,
            allow_unsigned=True)
    bounds = Bounds({c: (0.0, 1e6) for c in [*features, TARGET]})
    with pytest.raises(UsageError, match="declares none") as refused:
        hefed.release_model(stats, privacy=hefed.DifferentialPrivacy(1.0, 1e-6, bounds), study=study)
    assert refused.value.parameters == ("bounds",)
    path = bounds.save(tmp_path / "bounds.json")
    stats.save(tmp_path / "stats.json")
    study_path = study.save(tmp_path / "study.json")
    solved = run_cli("solve", tmp_path / "stats.json", "--study", study_path, "--dp-epsilon", 1, "--dp-delta", 1e-6,
                     "--bounds", path, "--out", tmp_path / "m.json")
    assert solved.returncode == 2 and "this study declares none" in solved.stderr
    assert not (tmp_path / "m.json").exists()


def test_a_summary_reports_the_rows_it_read_from_a_file_or_a_frame(frames, study, tmp_path):
    name, frame = next(iter(frames.items()))
    path = tmp_path / "plant.csv"
    frame.to_csv(path, index=False)
    for data in (frame, path):
        result = hefed.encrypt_for_study(data, study, factory_id=name, kind="summary")
        assert result.report.rows_in == result.report.rows_out == len(frame)


def test_a_key_written_in_a_non_canonical_encoding_is_refused(study):
    """Base64url of n has spare low bits in its last character; setting them leaves n unchanged, so such a file
    would carry other text than its digest covers. One text per key."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    obj = study.to_dict()
    text = obj["public_key"]["n"]
    spare = (6 - (study.public_key.n.bit_length() + 7) // 8 * 8 % 6) % 6  # padding bits in the last character
    assert spare > 0
    obj["public_key"]["n"] = text[:-1] + alphabet[alphabet.index(text[-1]) ^ 1]
    with pytest.raises(InvalidFileError, match="canonical"):
        Study.from_dict(obj, "edited", expected_digest=study.digest)
