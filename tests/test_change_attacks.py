"""Attacks on what issues 12 and 13 added: per-column encodings, rounding reports, one-hot categories, kind
parameters in studies, ``Study.check_roster``, evaluation on a study's holdout, ``hefed check``, study keys.

The attackers are a MALICIOUS AGGREGATOR (it controls the run config, every request, every bundle in transit,
aggregate files, rounds and the models sent for evaluation; it may also have written the study file everybody
pins) and a CURIOUS KEY HOLDER (it decrypts what it is handed, and may use phe directly). The question each test
asks: can either learn ONE factory's numbers, or a sum over fewer factories than the threshold?

Conventions as in ``tests/test_study_attacks.py``: an attack that is refused is an ordinary test asserting the
refusal; an attack that currently succeeds is ``xfail(strict=True, raises=AttackSucceeded)`` and first
demonstrates the leak (a broken demonstration fails loudly instead of passing as an expected failure). A test
that finds a defect which is not a disclosure raises :class:`DefectFound` instead.
"""

from __future__ import annotations

import json
import math
import secrets
import warnings
from dataclasses import replace
from fractions import Fraction
from typing import Any

import gmpy2
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phe import PaillierPrivateKey, PaillierPublicKey
from test_study_attacks import AttackSucceeded, attempt, refusal, refused, reply_bundle

import hefed
from hefed.analysis import check_table
from hefed.data import Bounds, Cleaning, Holdout
from hefed.errors import (
    HefedError,
    InvalidFileError,
    OverflowRiskError,
    RoundedValuesWarning,
    RoundError,
    SchemaMismatchError,
    SingledOutColumnError,
)
from hefed.flower._factory import factory_reply
from hefed.flower._messages import make_masked_request, make_request
from hefed.kinds import FoldStatisticsRequest
from hefed.protocol import (
    ColumnSpec,
    KeyHolderSigner,
    Masking,
    Roster,
    Study,
    enroll,
    load_identity,
    mask_and_sign,
    new_round,
)
from hefed.roles import sign_model
from hefed.stats import ONES, ColumnEncoding, Encoding, Rounding

TARGET = "co2_t"
FEATURES = ["coal_t", "natural_gas_t", "diesel_t"]
LEVELS = ("cement", "chemicals", "power", "steel")


class DefectFound(Exception):
    """Raised by a test that found a defect which discloses nothing (the test is then an expected failure)."""


def exact_sum(values: Any) -> Fraction:
    return sum((Fraction(float(v)) for v in values), Fraction(0))


def exact_dot(a: Any, b: Any) -> Fraction:
    return sum((Fraction(float(x)) * Fraction(float(y)) for x, y in zip(a, b, strict=True)), Fraction(0))


def study_model(study: Study, coef: list[float], intercept: float) -> hefed.LinearModel:
    """A model of the study's columns carrying its digest, as the consortium's released model does (a factory
    cannot tell one from the other: the label is all it checks)."""
    model = hefed.LinearModel(study.model_features, TARGET, [Fraction(c) for c in coef], Fraction(intercept),
                              n_samples=1, sse=None, sst=None)
    model.study_ = study.digest
    return model


def study_node(path: Any, study: Study, data: Any, factory_id: str, **extra: str) -> dict[str, str]:
    return {"data-path": str(data), "study": str(path), "study-digest": study.digest, "factory-id": factory_id,
            **extra}


@pytest.fixture(scope="module")
def plants(tmp_path_factory) -> dict[str, Any]:
    """Four plants (one plant_kind each: cement, steel, chemicals, power), their CSV files, enrolled identities,
    the roster, and two sybils the aggregator enrolled (not in the roster)."""
    root = tmp_path_factory.mktemp("change-attacks")
    frames = hefed.datasets.make_factories(n_factories=4, seed=5)
    files = {}
    for name, frame in frames.items():
        files[name] = root / f"{name}.csv"
        frame.to_csv(files[name], index=False)
    names = sorted(frames)
    dirs = {name: root / f"id-{name}" for name in names}
    roster = Roster()
    for name in names:
        enroll(name, dirs[name])
        roster.add(load_identity(dirs[name]).member)
    sybils = {}
    for sybil in ("zz-sybil-1", "zz-sybil-2"):
        enroll(sybil, root / f"id-{sybil}")
        sybils[sybil] = load_identity(root / f"id-{sybil}")
    by_kind = {str(frame["plant_kind"].iloc[0]): name for name, frame in frames.items()}
    return {"root": root, "frames": frames, "files": files, "names": names, "dirs": dirs, "roster": roster,
            "sybils": sybils, "by_kind": by_kind}


# --- (1) refusals that carry one factory's numbers to the aggregator ------------------------------------------


def test_evaluation_refusals_carry_no_holdout_cell(plants, keypair, tmp_path):
    """An honest-looking study: declared bounds (as a DP release needs) and a tight per-column range for coal_t that
    `hefed check` approves at the factory. One cement reading lies beyond the bound (it is clipped in the
    statistics). The aggregator asks for an evaluation of the consortium's released model: the refusal it gets back
    holds that reading, exactly."""
    public_key, private_key = keypair
    cement = plants["by_kind"]["cement"]
    frame = plants["frames"][cement].copy()
    holdout = Holdout(0.5, 3)
    row = int(holdout.split(frame.assign(_row=range(len(frame))))[1]["_row"].iloc[0])  # a row the study holds out
    secret = 2718.281828
    frame.loc[row, "coal_t"] = secret
    path = tmp_path / f"{cement}.csv"
    frame.to_csv(path, index=False)
    bounds = Bounds({"coal_t": (0.0, 1500.0), "natural_gas_t": (0.0, 3000.0), "diesel_t": (0.0, 100.0),
                     TARGET: (0.0, 8000.0)})
    study = Study.new(public_key, ColumnSpec(TARGET, "t"), FEATURES, bounds=bounds, holdout=holdout,
                      column_encodings={"coal_t": ColumnEncoding(84, 11)}, kinds={"statistics": {}, "evaluation": {}})
    study_path = study.save(tmp_path / "study.json")

    report = check_table(path, study, factory_id=cement)
    assert report.fits, report.lines()  # the factory's dry run says its table fits the study

    others = [n for n in plants["names"] if n != cement][:2]
    bundles = [hefed.encrypt_for_study(path, study, factory_id=cement).bundle,
               *(hefed.encrypt_for_study(plants["files"][n], study, factory_id=n).bundle for n in others)]
    with pytest.raises(SingledOutColumnError, match="'coal_t'"):  # coal: the cement plant's alone of these three
        hefed.decrypt_statistics(hefed.aggregate(bundles, study=study), private_key, study=study, allow_unsigned=True)
    model = study_model(study, [2.4, 2.7, 3.2], 0.0)  # a released model of the study's columns, as the consortium's
    request = make_request("evaluation", public_key, model, study.digest)
    reply = factory_reply(request, study_node(study_path, study, path, cement), {})
    error = refusal(reply)
    if error is not None and repr(secret) in error:
        raise AttackSucceeded(f"the aggregator read a holdout cell in an evaluation refusal: {error}")
    assert error is None or str(secret)[:6] not in error


@pytest.mark.parametrize("term", ["column-int-bits", "coef-frac-bits"])
def test_hostile_study_grids_do_not_turn_refusals_into_disclosures(plants, keypair, tmp_path, term):
    public_key = keypair[0]
    name = plants["by_kind"]["steel"]
    frame = plants["frames"][name]
    if term == "column-int-bits":
        study = Study.new(public_key, TARGET, FEATURES, column_encodings={"coal_t": ColumnEncoding(84, 1)},
                          kinds={"statistics": {}})
        kind, secret = "statistics", repr(float(frame["coal_t"].iloc[0]))  # the first coal reading, ≥ 2
    else:
        study = Study.new(public_key, TARGET, FEATURES, kinds={"coefficients": {"coef_frac_bits": 0}})
        own = hefed.solve(hefed.compute_statistics(frame, TARGET, FEATURES))  # the plant's own model, its secret
        kind, secret = "coefficients", repr(float(own.coef_[0]))
    path = study.save(tmp_path / "study.json")
    error = refused(factory_reply(make_request(kind, public_key, study=study.digest),
                                  study_node(path, study, plants["files"][name], name), {}))
    if secret in error:
        raise AttackSucceeded(f"a refusal sent to the aggregator holds {secret}: {error}")
    assert "coal_t" not in error or secret not in error


def test_flower_evaluation_reads_the_rows_the_study_held_out(plants, keypair, tmp_path):
    public_key, private_key = keypair
    name = plants["by_kind"]["cement"]
    frame = plants["frames"][name].copy()
    frame.loc[0, "diesel_t"] = np.nan  # one gap: the study's cleaning (missing="drop") drops this row
    path = tmp_path / "gap.csv"
    frame.to_csv(path, index=False)
    study = Study.new(public_key, TARGET, FEATURES, holdout=Holdout(0.25, 1), cleaning=Cleaning(missing="drop"),
                      kinds={"statistics": {}, "evaluation": {}})
    study_path = study.save(tmp_path / "study.json")
    held_out = hefed.encrypt_for_study(path, study, factory_id=name).holdout  # what the statistics left out
    assert held_out is not None
    model = study_model(study, [1.0, 1.0, 1.0], 0.0)
    reply = factory_reply(make_request("evaluation", public_key, model, study.digest),
                          study_node(study_path, study, path, name), {})
    error = refusal(reply)
    if error is not None:
        raise DefectFound(f"the factory refused its own study's evaluation: {error}")
    flower = hefed.decrypt_bundle(reply_bundle(reply), private_key, min_contributors=1, allow_unsigned=True)
    expected = hefed.evaluate_local(model, held_out, study=study)
    if (flower.n, flower.sum_y, flower.sse) != (expected.n, expected.sum_y, expected.sse):
        raise DefectFound(f"Flower evaluated rows with Σy = {float(flower.sum_y)}, the study's holdout has "
                          f"Σy = {float(expected.sum_y)}")


# --- (2) the pooled statistics themselves: columns that single out a factory (study design) ----------------


def test_pooled_statistics_do_not_single_out_a_factory_through_a_column(plants, keypair):
    """A study with the roster (masked, signed rounds only), threshold 3, all four plants in the round, whose
    columns single plants out (a level per plant, clinker at the cement plant, coal at two plants): without the
    per-column support counts the key holder would read single plants' sums in the full sum; it refuses."""
    public_key, private_key = keypair
    roster, names, frames, kinds = plants["roster"], plants["names"], plants["frames"], plants["by_kind"]
    study = Study.new(public_key, ColumnSpec(TARGET, "t"),
                      [ColumnSpec("plant_kind", categories=LEVELS), "clinker_t", "coal_t"],
                      roster_digest=roster.digest(), min_contributors=3, kinds={"statistics": {}})
    round_ = new_round(roster, names)
    bundles = [hefed.encrypt_for_study(plants["files"][n], study, factory_id=n,
                                       masking=Masking(round_, load_identity(plants["dirs"][n]), roster)).bundle
               for n in names]
    result = attempt(lambda: hefed.decrypt_statistics(hefed.aggregate(bundles, roster, round_, study=study),
                                                      private_key, roster=roster, study=study, allow_unsigned=True))
    if isinstance(result, HefedError):
        # every bundle carries per pair of columns a 0/1 "non-zero here"; the key holder counts the factories
        # behind each column and refuses: clinker_t (cement only), each plant_kind level (one plant each, the
        # reference level cement too) and coal_t (cement and steel: 2 < 3)
        assert isinstance(result, SingledOutColumnError), result
        message = str(result)
        for column in ("clinker_t", "plant_kind=steel", "coal_t"):
            assert f"'{column}'" in message, message
        assert "fewer factories than the disclosure threshold 3" in message
        assert not any(name in message for name in names)  # names columns, never a factory
        return
    stats = result
    assert len(stats.contributors) == 4
    steel, cement = frames[kinds["steel"]], frames[kinds["cement"]]
    coal_plants = [f for f in frames.values() if (f["coal_t"] != 0).any()]
    assert len(coal_plants) == 2 and (frames[kinds["steel"]]["clinker_t"] == 0).all()
    leaks = {
        "steel's row count": (stats.exact(ONES, "plant_kind=steel"), Fraction(len(steel))),
        "steel's Σ coal": (stats.exact("plant_kind=steel", "coal_t"), exact_sum(steel["coal_t"])),
        "steel's Σ co2": (stats.exact("plant_kind=steel", TARGET), exact_sum(steel[TARGET])),
        "cement's Σ clinker²": (stats.exact("clinker_t", "clinker_t"), exact_dot(cement["clinker_t"],
                                                                                 cement["clinker_t"])),
        "cement's Σ clinker·co2": (stats.exact("clinker_t", TARGET), exact_dot(cement["clinker_t"], cement[TARGET])),
        "cement + steel's Σ coal·co2 (2 < 3 factories)": (
            stats.exact("coal_t", TARGET), sum((exact_dot(f["coal_t"], f[TARGET]) for f in coal_plants),
                                               Fraction(0))),
    }
    read = [what for what, (pooled, own) in leaks.items() if pooled == own]
    assert read == list(leaks)
    raise AttackSucceeded(f"the key holder read from a 4-factory round: {', '.join(read)}")


def test_evaluation_parameters_rewritten_in_transit_are_refused(plants, keypair):
    public_key, private_key = keypair
    study = Study.new(public_key, TARGET, FEATURES, kinds={"statistics": {}, "evaluation": {}})
    model = study_model(study, [1.0, 1.0, 1.0], 0.0)
    total = hefed.aggregate([hefed.encrypt_for_study(plants["files"][n], study, factory_id=n, kind="evaluation",
                                                     model=model).bundle for n in plants["names"]], study=study)
    honest = hefed.decrypt_bundle(total, private_key, study=study, allow_unsigned=True)
    rescaled = replace(total, parameters={**total.parameters, "scale_bits": total.parameters["scale_bits"] + 3})
    # The key holder decrypts signed round aggregates only; a plain one only when told it is a trial
    # (allow_unsigned), which gives up exactly this: the aggregator's word on what it carries.
    result = attempt(lambda: hefed.decrypt_bundle(rescaled, private_key, study=study))
    if isinstance(result, HefedError):
        assert "unsigned" in str(result) or "parameters" in str(result) or "model" in str(result)
        return
    assert result.sse == honest.sse / 64 and result.r2 != honest.r2
    raise DefectFound(f"the key holder decrypted R² {result.r2:.3f} for a model whose R² is {honest.r2:.3f}")


def test_evaluation_parameters_rewritten_in_a_masked_round_are_refused(plants, keypair):
    public_key, private_key = keypair
    roster, names = plants["roster"], plants["names"]
    signer = KeyHolderSigner.generate()  # a roster study evaluates only models its key holder signed
    study = Study.new(public_key, TARGET, FEATURES, roster_digest=roster.digest(),
                      kinds={"statistics": {}, "evaluation": {}}, keyholder=signer.public)
    model = sign_model(study_model(study, [1.0, 1.0, 1.0], 0.0), signer)
    round_ = new_round(roster, names)
    total = hefed.aggregate([hefed.encrypt_for_study(
        plants["files"][n], study, factory_id=n, kind="evaluation", model=model,
        masking=Masking(round_, load_identity(plants["dirs"][n]), roster)).bundle for n in names],
        roster, round_, study=study)
    rescaled = replace(total, parameters={**total.parameters, "scale_bits": total.parameters["scale_bits"] + 3})
    with pytest.raises(RoundError, match="signed schema_digest"):
        hefed.decrypt_bundle(rescaled, private_key, roster=roster, study=study, allow_unsigned=True)
    assert hefed.decrypt_bundle(total, private_key, roster=roster, study=study, allow_unsigned=True).n == sum(
        len(f) for f in plants["frames"].values())


# --- (3) the study's key and roster -----------------------------------------------------------------------------


def test_a_study_naming_a_key_with_a_small_factor_is_refused(plants, tmp_path):
    p = 1_000_003
    q = int(gmpy2.next_prime(secrets.randbits(1020) | (1 << 1019)))
    while q % p == 1:
        q = int(gmpy2.next_prime(q))
    weak = PaillierPublicKey(p * q)
    name = plants["names"][0]

    def encrypt() -> Any:
        study = Study.load(Study.new(weak, TARGET, FEATURES).save(tmp_path / "weak.json"))
        return hefed.encrypt_for_study(plants["files"][name], study, factory_id=name).bundle

    result = attempt(encrypt)
    if isinstance(result, HefedError):
        assert "key" in str(result) or "modulus" in str(result)
        return
    factor = math.gcd(weak.n, int(gmpy2.primorial(1 << 20)))  # the aggregator, with the public key alone
    assert 1 < factor < weak.n
    private = PaillierPrivateKey(weak, factor, weak.n // factor)
    alone = hefed.decrypt_statistics(result, private, min_contributors=1, allow_unsigned=True)
    expected = hefed.compute_statistics(plants["frames"][name], TARGET, FEATURES)
    assert alone.gram == expected.gram
    raise AttackSucceeded(f"the aggregator factored the study's key and decrypted {name}'s bundle")


def test_a_masked_round_of_a_roster_less_study_cannot_be_padded_with_sybils(plants, keypair):
    public_key, private_key = keypair
    victim = plants["names"][0]
    sybils = plants["sybils"]
    study = Study.new(public_key, TARGET, FEATURES, min_contributors=3, kinds={"statistics": {}})
    padded = Roster({victim: plants["roster"].members[victim], **{s: i.member for s, i in sybils.items()}})
    round_ = new_round(padded, [victim, *sybils])
    path = study.save(plants["root"] / f"roster-less-{study.digest}.json")
    request = make_masked_request(make_request("statistics", public_key, study=study.digest), round_, padded)
    node = study_node(path, study, plants["files"][victim], victim, **{"identity-dir": str(plants["dirs"][victim])})

    def sybil_rounds() -> Any:
        reply = factory_reply(request, node, {})
        error = refusal(reply)
        if error is not None:
            raise RoundError(error)
        zero = pd.DataFrame({c: [0.0] for c in [*FEATURES, TARGET]})
        bundles = [reply_bundle(reply), *(hefed.encrypt_for_study(zero, study, factory_id=s, masking=Masking(
            round_, identity, padded)).bundle for s, identity in sybils.items())]
        total = hefed.aggregate(bundles, padded, round_, study=study)
        return hefed.decrypt_statistics(total, private_key, roster=padded, study=study, allow_unsigned=True)

    result = attempt(sybil_rounds)
    if isinstance(result, HefedError):
        assert "roster" in str(result)
        return
    own = hefed.compute_statistics(plants["frames"][victim], TARGET, FEATURES)
    assert result.n == own.n + 2 and all(result.exact(a, b) == own.exact(a, b)
                                         for a in own.columns[1:] for b in own.columns[1:])
    raise AttackSucceeded(f"the key holder decrypted {victim}'s statistics in a 'round of 3'")


def test_the_key_holder_and_the_aggregator_refuse_a_genuine_round_of_another_roster(plants, keypair):
    """Study.check_roster: in a study naming a roster, a round the aggregator ran with a roster of its own (here:
    sybils only, whose signatures are genuine) is refused by the aggregator step and by the key holder, although
    every signature, the key, kind, schema and encoding check out."""
    public_key, private_key = keypair
    roster = plants["roster"]
    study = Study.new(public_key, TARGET, FEATURES, roster_digest=roster.digest(), min_contributors=2,
                      kinds={"statistics": {}})
    sybils = plants["sybils"]
    own = Roster({s: i.member for s, i in sybils.items()})
    round_ = new_round(own, list(sybils))
    bundles = []
    for sybil, identity in sybils.items():
        frame = plants["frames"][plants["names"][0]]  # any data the aggregator likes
        bundle = hefed.encrypt_table(frame, TARGET, public_key, features=FEATURES, factory_id=sybil,
                                     encoding=study.encoding, cleaning=study.cleaning).bundle
        bundle.study = study.digest  # labelled before signing: the signatures cover it
        bundles.append(mask_and_sign(bundle, identity, own, round_))
    with pytest.raises(RoundError, match="not the study's"):
        hefed.aggregate(bundles, own, round_, study=study)
    total = hefed.aggregate(bundles, own, round_)
    study.check_bundle(total)  # nothing but the roster gives it away
    with pytest.raises(RoundError, match="not the study's"):
        hefed.decrypt_statistics(total, private_key, roster=own, study=study, allow_unsigned=True)
    with pytest.raises(RoundError, match="names a roster"):
        hefed.decrypt_statistics(total, private_key, study=study, allow_unsigned=True)


def test_sums_of_no_study_and_bundles_of_another_fold_seed_are_refused(plants, keypair):
    """Backs the threat model's 'every role refuses what is labelled for another study or for none' where the
    other tests stop short: the analyst refuses sums of no study; a fold_statistics bundle with the study's folds
    but another fold seed, labelled with the study, is refused by the aggregator and the key holder."""
    public_key, private_key = keypair
    names = plants["names"][:3]
    study = Study.new(public_key, TARGET, FEATURES, kinds={"fold_statistics": {"folds": 3, "seed": 5}})
    plain = hefed.aggregate([hefed.encrypt_table(plants["files"][n], TARGET, public_key, features=FEATURES,
                                                 factory_id=n).bundle for n in names])
    with pytest.raises(SchemaMismatchError, match="made for no study"):
        hefed.solve(hefed.decrypt_statistics(plain, private_key, allow_unsigned=True), study=study)
    forged = []
    for n in names:
        bundle = hefed.encrypt_table(plants["files"][n], TARGET, public_key, features=FEATURES, factory_id=n,
                                     request=FoldStatisticsRequest(folds=3, seed=6), encoding=study.encoding,
                                     cleaning=study.cleaning).bundle
        bundle.study = study.digest
        forged.append(bundle)
    with pytest.raises(SchemaMismatchError, match="parameters"):
        hefed.aggregate(forged, study=study)
    with pytest.raises(SchemaMismatchError, match="parameters"):
        hefed.decrypt_bundle(hefed.aggregate(forged), private_key, study=study, allow_unsigned=True)


# --- (4) the encoding: slots at their declared maxima, rounding reports ---------------------------------------


_COEFS = [0.0, 1.0, -3.5, 0.1, 2.0**40, -(2.0**-30)]


@settings(max_examples=25, deadline=None)
@given(bits=st.lists(st.tuples(st.integers(0, 90), st.integers(1, 70)), min_size=3, max_size=3),
       signs=st.lists(st.sampled_from([-1.0, 1.0]), min_size=63, max_size=63),
       coef=st.lists(st.sampled_from(_COEFS), min_size=3, max_size=3))
def test_values_at_every_columns_declared_maximum_never_overflow(keypair, bits, signs, coef):
    """A hostile study picks each column's grid and range (frac_bits 0–90, int_bits 1–70), the fewest rows
    (max_rows_bits 3: 7 rows) and contributors (3) the guard bits are sized for. Three factories put every value
    at the largest magnitude the range lets through (2^int_bits·(1 − 2^-53), which a coarse grid rounds UP to
    2^int_bits itself): statistics, summaries and evaluations of the sum still decrypt to the exact sums, nothing
    wraps; a fourth contribution and an eighth row are refused."""
    public_key, private_key = keypair
    columns = ["a", "b", "y"]
    encoding = Encoding.with_columns({c: ColumnEncoding(f, i) for c, (f, i) in zip(columns, bits, strict=True)},
                                     max_rows_bits=3, max_contributors=3)
    study = Study.new(public_key, "y", ["a", "b"], encoding=encoding, min_contributors=3,
                      kinds={"statistics": {}, "summary": {}, "evaluation": {}})
    frames = []
    for k in range(3):
        frames.append(pd.DataFrame({c: [signs[21 * k + 7 * j + r] * float(np.nextafter(2.0 ** bits[j][1], 0))
                                        for r in range(7)] for j, c in enumerate(columns)}))
    on_grid = [{c: [Fraction(float(v)) for v in encoding.to_grid(f[c].to_numpy(), c, Rounding())] for c in columns}
               for f in frames]
    pooled = {c: [v for f in on_grid for v in f[c]] for c in columns}
    model = hefed.LinearModel(["a", "b"], "y", [Fraction(coef[0]), Fraction(coef[1])], Fraction(coef[2]),
                              n_samples=1, sse=None, sst=None)
    model.study_ = study.digest

    def total(kind: str, **runtime: Any) -> Any:
        bundles = [hefed.encrypt_for_study(f, study, factory_id=f"f{k}", kind=kind, **runtime).bundle
                   for k, f in enumerate(frames)]
        return hefed.decrypt_bundle(hefed.aggregate(bundles, study=study), private_key, study=study,
                allow_unsigned=True), bundles

    stats, bundles = total("statistics")
    for a in [ONES, *columns]:
        for b in [ONES, *columns]:
            xa = [Fraction(1)] * 21 if a == ONES else pooled[a]
            xb = [Fraction(1)] * 21 if b == ONES else pooled[b]
            assert stats.exact(a, b) == sum((x * y for x, y in zip(xa, xb, strict=True)), Fraction(0)), (a, b)
    summary, _ = total("summary")
    for c in columns:
        assert (summary.count[c], summary.total[c], summary.total_sq[c]) == (
            21, sum(pooled[c], Fraction(0)), sum((v * v for v in pooled[c]), Fraction(0)))
    evaluation, _ = total("evaluation", model=model)
    residuals = [y - Fraction(coef[2]) - Fraction(coef[0]) * a - Fraction(coef[1]) * b
                 for a, b, y in zip(pooled["a"], pooled["b"], pooled["y"], strict=True)]
    assert evaluation.sse == sum((r * r for r in residuals), Fraction(0))
    assert evaluation.sae == sum((abs(r) for r in residuals), Fraction(0))
    assert (evaluation.sum_y, evaluation.sum_y2) == (sum(pooled["y"], Fraction(0)),
                                                     sum((v * v for v in pooled["y"]), Fraction(0)))
    fourth = hefed.encrypt_for_study(frames[0], study, factory_id="f3").bundle
    with pytest.raises(OverflowRiskError, match="more than 3 contributions"):
        hefed.aggregate([*bundles, fourth], study=study)
    with pytest.raises(SchemaMismatchError, match="more rows than the encoding allows"):
        hefed.encrypt_for_study(pd.concat([frames[0], frames[0].iloc[:1]]), study, factory_id="f0")


def test_rounding_reports_stay_at_the_factory(plants, keypair, tmp_path):
    """Coarse grids (a study's per-column encodings; a hostile run config's frac-bits 0 without a study) round
    values, and the factory's rounding report names the smallest value rounded: a cell. Neither the report nor a
    RoundedValuesWarning (even one the factory's Python turns into an error) reaches the aggregator: the Flower
    reply carries the factory id and the bundle, nothing else."""
    public_key = keypair[0]
    name = plants["by_kind"]["steel"]
    study = Study.new(public_key, TARGET, FEATURES, kinds={"statistics": {}},
                      column_encodings={"coal_t": ColumnEncoding(0, 12), TARGET: ColumnEncoding(1, 14)})
    report = hefed.encrypt_for_study(plants["files"][name], study, factory_id=name).report
    assert report is not None
    local = report.rounding
    assert local.counts["coal_t"] > 0 and local.counts[TARGET] > 0
    cells = {format(local.smallest_rounded[c], ".3g") for c in local.counts} | \
        {repr(local.smallest_rounded[c]) for c in local.counts}
    assert any(cell in "; ".join(local.lines()) for cell in cells)  # the local report does name them
    path = study.save(tmp_path / "coarse.json")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RoundedValuesWarning)
        replies = [
            factory_reply(make_request("statistics", public_key, study=study.digest),
                          study_node(path, study, plants["files"][name], name), {}),
            factory_reply(make_request("statistics", public_key), {"data-path": str(plants["files"][name]),
                                                               "key-fingerprint": hefed.key_fingerprint(public_key)},
                          {"target": TARGET, "features": ",".join(FEATURES), "frac-bits": 0}),
        ]
    for reply in replies:
        assert refusal(reply) is None and set(reply) == {"status", "factory-id", "bundle"}
        # Base64 fields (random ciphertexts, the key's n) hold no text: a digit string like "276" turns up in
        # them by chance (a few % of runs), so they are searched as what they are, bytes of fixed width
        bundle = reply_bundle(reply).to_dict()
        random_fields = {"ciphertexts", "public_key", "contributions"}
        assert all(len(c) == len(bundle["ciphertexts"][0]) for c in bundle["ciphertexts"])
        text = json.dumps({**{k: v for k, v in reply.items() if k != "bundle"},
                           "bundle": {k: v for k, v in bundle.items() if k not in random_fields}})
        assert not [cell for cell in cells if cell in text]
        assert "round" not in json.dumps(reply_bundle(reply).to_dict()["encoding"])


def test_left_out_column_reasons_stay_at_the_factory(plants, keypair):
    """Without a feature list the factory's report lists every column left out with examples of its cells (dates,
    categories); through Flower none of that travels."""
    public_key = keypair[0]
    name = plants["by_kind"]["power"]
    frame = plants["frames"][name]
    report = hefed.encrypt_table(plants["files"][name], TARGET, public_key, factory_id=name).report
    assert report is not None
    reasons = report.left_out
    assert "date" in reasons and str(frame["date"].iloc[0]) in reasons["date"]  # the local report holds cells
    reply = factory_reply(make_request("statistics", public_key), {"data-path": str(plants["files"][name]),
                                                               "key-fingerprint": hefed.key_fingerprint(public_key)},
                          {"target": TARGET})
    assert refusal(reply) is None
    text = reply["bundle"].decode() if isinstance(reply["bundle"], bytes) else str(reply["bundle"])
    leaked = [cell for cell in frame["date"].astype(str) if cell in text]
    assert leaked == [] and "date" not in reply_bundle(reply).features


# --- (5) hefed check: what a factory may share with whoever writes the study --------------------------------


def test_check_suggestions_carry_bits_not_cells(plants, keypair):
    """Encodings chosen from each factory's `hefed check` report: the machine-readable suggestions (``change``) a
    factory sends to the study's author hold bits only. The full report (min, max, the largest value out of range,
    level counts) holds exact cells and must stay at the factory; the threat model says so."""
    public_key = keypair[0]
    name = plants["by_kind"]["cement"]
    frame = plants["frames"][name].copy()
    frame.loc[3, "coal_t"] = 2718.281828
    study = Study.new(public_key, TARGET, [*FEATURES, ColumnSpec("plant_kind", categories=LEVELS)],
                      column_encodings={"coal_t": ColumnEncoding(84, 11), TARGET: ColumnEncoding(2, 14)})
    report = check_table(frame, study, factory_id=name)
    assert not report.fits and report.suggestions
    cells = set()
    for column in [*FEATURES, TARGET]:
        for value in frame[column]:
            shown = {repr(float(value)), format(float(value), ".6g"), format(float(value), ".3g")}
            cells |= {cell for cell in shown if "." in cell and len(cell) >= 4}
    shared = json.dumps([{"change": s.to_dict()["change"], "column": s.column} for s in report.suggestions])
    assert [cell for cell in cells if cell in shared] == []
    texts = " ".join(s.text for s in report.suggestions)
    assert [cell for cell in cells if cell in texts] == []
    # ... while the whole report is the factory's data in a nutshell
    columns = {c["name"]: c for c in report.to_dict()["columns"]}
    assert columns["coal_t"]["max"] == 2718.281828 and columns[TARGET]["min"] == float(frame[TARGET].min())
    assert columns["plant_kind"]["levels"]["cement"] == len(frame)
    assert any("2718.28" in problem for problem in [*report.problems, *sum((c["problems"] for c in columns.values()),
                                                                           [])])


# --- (6) the digest and the study file ------------------------------------------------------------------------


def test_the_digest_covers_every_term_and_any_single_edit_is_refused(plants, keypair, other_keypair):
    """Every field of a study changes its digest (key, roster, target and units, categories, per-column grids,
    encoding bounds, kind parameters, cleaning, holdout, DP bounds, threshold, title, id), and a study file with
    any single value edited (and the digest left) is refused."""
    public_key = keypair[0]
    bounds = Bounds({c: (0.0, 5000.0) for c in ["coal_t", "natural_gas_t", "plant_kind=steel",
                                                     "plant_kind=cement", TARGET]})
    base = Study.new(public_key, ColumnSpec(TARGET, "t"), [ColumnSpec("coal_t", "t"), "natural_gas_t",
                                                          ColumnSpec("plant_kind", categories=("cement", "steel"))],
                     column_encodings={"coal_t": ColumnEncoding(60, 20)}, min_contributors=3,
                     roster_digest=plants["roster"].digest(), kinds={"statistics": {}, "fold_statistics": {
                         "folds": 3, "seed": 1}, "coefficients": {"ridge": 1.0}},
                     cleaning=Cleaning(missing="drop", max_z=4.0), holdout=Holdout(0.2, 1), bounds=bounds,
                     title="t")
    enc = base.encoding
    changed = [
        replace(base, public_key=other_keypair[0]), replace(base, roster_digest=None),
        replace(base, roster_digest="0" * 32), replace(base, target=ColumnSpec(TARGET, "kg")),
        replace(base, features=(ColumnSpec("coal_t", "kt"), *base.features[1:])),
        replace(base, features=(*base.features[:2], ColumnSpec("plant_kind", categories=("steel", "cement")))),
        replace(base, encoding=Encoding.with_columns({"coal_t": ColumnEncoding(60, 21)})),
        replace(base, encoding=Encoding.with_columns(dict(enc.columns), max_rows_bits=31)),
        replace(base, encoding=Encoding.with_columns(dict(enc.columns), max_contributors=9)),
        replace(base, kinds={**base.kinds, "fold_statistics": {"folds": 3, "seed": 2}}),
        replace(base, kinds={**base.kinds, "coefficients": {"ridge": 2.0}}),
        replace(base, cleaning=Cleaning(missing="drop", max_z=5.0)),
        replace(base, cleaning=Cleaning(missing="drop", max_z=4.0, impute="mean")),
        replace(base, holdout=Holdout(0.2, 2)), replace(base, holdout=None),
        replace(base, bounds=Bounds({**bounds.columns, "coal_t": (0.0, 5001.0)})), replace(base, bounds=None),
        replace(base, min_contributors=2), replace(base, title="u"), replace(base, study_id="1" * 32),
    ]
    digests = [base.digest, *(s.digest for s in changed)]
    assert len(set(digests)) == len(digests)

    obj = base.to_dict()
    edits = 0

    def leaves(node: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(node, dict):
            for key, value in node.items():
                yield from leaves(value, (*path, key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from leaves(value, (*path, i))
        else:
            yield path, node

    def edited(value: Any) -> Any:
        if isinstance(value, bool):
            return not value
        if isinstance(value, int | float):
            return value + 1
        if isinstance(value, str):
            return value[:-1] + ("0" if value[-1:] != "0" else "1")
        return "mean"  # None: the impute field

    for path, value in leaves(obj, ()):
        if path[0] in ("digest", "format", "version"):
            continue
        copy = json.loads(json.dumps(obj))
        node = copy
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = edited(value)
        with pytest.raises((InvalidFileError, SchemaMismatchError)):
            Study.from_dict(copy, "edited", expected_digest=base.digest)
        edits += 1
    assert edits > 30
