"""A study: the one agreement every party of a consortium pins, and checks everything against.

Everything a consortium agrees on before anyone encrypts — the key, who may contribute, the
target and features (with units), how each column is encoded, which bundle kinds may be asked
for and with which parameters, how rows are cleaned and held out, the bounds of a
differentially private release, the disclosure threshold — is written once, in a study file
with a digest over all of it. Every party compares the digest out of band (``hefed study
show``), and then:

* a factory computes only what its own copy of the study says (``hefed encrypt --study``);
  its bundle carries the study's digest, and in a masked round its signature covers it;
* the aggregator, the key holder and the analyst refuse bundles and sums of another study;
* in Flower, a factory's node config pins the study digest: an aggregator cannot steer what
  it computes through the run config.

File format (JSON)::

    {"format": "hefed.study", "version": 1, "study_id": "<32 hex>", "title": "...",
     "public_key": {"n": "<base64url>"}, "key_fingerprint": "<32 hex>",
     "roster_digest": "<32 hex>" | null, "min_contributors": 3,
     "target": {"name": "co2_t", "unit": "t"},
     "features": [{"name": "coal_t", "unit": "t"}, {"name": "kiln", "categories": ["dry", "wet"]}, ...],
     "encoding": {...},                      # hefed.stats.Encoding, with per-column grids
     "kinds": {"statistics": {}, "fold_statistics": {"folds": 5, "seed": 0}, "coefficients": {"ridge": 1.0}},
     "cleaning": {"missing": "drop", "impute": null, "max_z": null},
     "holdout": {"test_fraction": 0.2, "seed": 1} | null,
     "bounds": {"coal_t": [0, 400], ...} | null,
     "keyholder": "<base64url Ed25519 public key>",   # optional: the key holder's release key
     "digest": "<32 hex>"}

When a study names its key holder's release key, decrypted sums and models are accepted only
when that key signed them for this study (:mod:`hefed.protocol._signed`).

A categorical feature with ``categories`` is one-hot encoded at every factory with exactly
those levels (the first is the reference, left out), so every factory has the same columns.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from phe import PaillierPublicKey
from phe.util import base64_to_int, int_to_base64

from .._files import atomic_write_json, check_format, check_names, is_digest, read_json_object
from .._keys import MAX_BITS, MIN_TEST_BITS, check_public_key, key_fingerprint
from ..data import Bounds, Cleaning, Holdout
from ..errors import InvalidFileError, ReleaseError, RoundError, SchemaMismatchError, UsageError
from ..kinds import EVALUATION, STATISTICS, SUMMARY, PublishedModel, get_kind
from ..stats import ColumnEncoding, ColumnSummary, Encoding
from ._bundle import Bundle
from ._rounds import Roster, Round
from ._signed import ReleaseSignature, check_release_public, check_signer

FORMAT = "hefed.study"
VERSION = 1


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a study: its name, optional unit, and the levels of a categorical column."""

    name: str
    unit: str | None = None
    categories: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise UsageError("a study column needs a name")
        if self.categories is not None and (len(self.categories) < 2 or len(set(self.categories)) != len(
                self.categories)):
            raise UsageError(f"column {self.name!r}: categories must be at least two distinct levels")

    @property
    def dummies(self) -> list[str]:
        """The one-hot columns of a categorical feature (the first level is the reference, left out)."""
        return [f"{self.name}={level}" for level in (self.categories or ())[1:]]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.unit:
            out["unit"] = self.unit
        if self.categories is not None:
            out["categories"] = list(self.categories)
        return out

    @classmethod
    def from_dict(cls, obj: Any, source: str) -> ColumnSpec:
        if isinstance(obj, str):
            return cls(obj)
        if not isinstance(obj, dict) or not set(obj) <= {"name", "unit", "categories"} or "name" not in obj:
            raise InvalidFileError(f"{source}: a column is a name or {{'name', 'unit', 'categories'}}")
        categories = obj.get("categories")
        if categories is not None and (not isinstance(categories, list) or not all(isinstance(c, str)
                                                                                    for c in categories)):
            raise InvalidFileError(f"{source}: 'categories' of {obj['name']!r} must be a list of strings")
        unit = obj.get("unit")
        if unit is not None and not isinstance(unit, str):
            raise InvalidFileError(f"{source}: 'unit' of {obj['name']!r} must be a string")
        try:
            return cls(str(obj["name"]), unit, tuple(categories) if categories is not None else None)
        except UsageError as exc:
            raise InvalidFileError(f"{source}: {exc}") from None


#: Default parameters of each kind a study allows, by kind name.
DEFAULT_KINDS: dict[str, dict[str, Any]] = {kind.name: {} for kind in (SUMMARY, STATISTICS, EVALUATION)}


@dataclass(frozen=True)
class Study:
    """What every party of a consortium agreed to (see the module docstring).

    Build one with :meth:`new`; the :attr:`digest` covers every field.
    """

    study_id: str
    public_key: PaillierPublicKey
    target: ColumnSpec
    features: tuple[ColumnSpec, ...]
    encoding: Encoding = field(default_factory=Encoding)
    min_contributors: int = 3
    roster_digest: str | None = None
    kinds: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: dict(DEFAULT_KINDS))
    cleaning: Cleaning = field(default_factory=lambda: Cleaning(missing="drop"))
    holdout: Holdout | None = None
    bounds: Bounds | None = None
    title: str = ""
    #: The key holder's public release key (base64url Ed25519): readers accept only sums and models it signed.
    keyholder: str | None = None

    def __post_init__(self) -> None:
        if not is_digest(self.study_id):
            raise UsageError("study: study_id must be 32 hex digits")
        if not isinstance(self.public_key, PaillierPublicKey):
            raise UsageError("study: public_key must be a Paillier public key")
        # a weak n never; a test-sized key only without a roster (with one, only a key this process made)
        check_public_key(self.public_key, insecure_test_key=self.roster_digest is None, source="study")
        if self.roster_digest is not None and not is_digest(self.roster_digest):
            raise UsageError("study: roster_digest must be 32 hex digits")
        if self.keyholder is not None:
            try:
                check_release_public(self.keyholder, "study")
            except InvalidFileError:
                raise UsageError("study: keyholder must be an Ed25519 public key in base64url") from None
        if isinstance(self.min_contributors, bool) or not isinstance(self.min_contributors, int) or \
                self.min_contributors < 1:
            raise UsageError("study: min_contributors must be a positive integer", parameters=("min_contributors",))
        names = [self.target.name, *(f.name for f in self.features)]
        if not self.features or len(set(names)) != len(names):
            raise UsageError("study: the features must be distinct, at least one, and not the target")
        check_names(names, "study", "target or features")
        if self.target.categories is not None:
            raise UsageError("study: the target cannot be categorical")
        for kind, parameters in self.kinds.items():
            get_kind(kind, "study").check_agreed_parameters(parameters)
            get_kind(kind, "study").check_study(parameters, self.min_contributors)
        if self.cleaning.summary is not None:
            raise UsageError("study: the consortium summary is data, not part of the agreement; give it when "
                             "encrypting")
        if self.bounds is not None:
            absent = [c for c in self.model_columns if c not in self.bounds.columns]
            if absent:
                raise UsageError(f"study: the bounds declare no bounds for {', '.join(map(repr, absent))}")

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def new(
        cls,
        public_key: PaillierPublicKey,
        target: str | ColumnSpec,
        features: Sequence[str | ColumnSpec],
        *,
        encoding: Encoding | None = None,
        column_encodings: Mapping[str, ColumnEncoding] | None = None,
        min_contributors: int = 3,
        roster_digest: str | None = None,
        kinds: Mapping[str, Mapping[str, Any]] | None = None,
        cleaning: Cleaning | None = None,
        holdout: Holdout | None = None,
        bounds: Bounds | None = None,
        title: str = "",
        keyholder: str | None = None,
    ) -> Study:
        """A new study with a fresh random id (:mod:`secrets`); ``column_encodings`` add per-column grids."""
        encoding = encoding or Encoding()
        if column_encodings:
            merged = dict(encoding.columns)
            merged.update(column_encodings)
            encoding = Encoding.with_columns(merged, frac_bits=encoding.frac_bits, int_bits=encoding.int_bits,
                                             max_rows_bits=encoding.max_rows_bits,
                                             max_contributors=encoding.max_contributors)
        return cls(
            secrets.token_hex(16), public_key,
            target if isinstance(target, ColumnSpec) else ColumnSpec(target),
            tuple(f if isinstance(f, ColumnSpec) else ColumnSpec(f) for f in features),
            encoding, min_contributors, roster_digest,
            {k: dict(v) for k, v in (kinds if kinds is not None else DEFAULT_KINDS).items()},
            cleaning or Cleaning(missing="drop"), holdout, bounds, title, keyholder,
        )

    # --- what it says ----------------------------------------------------------------------------
    @property
    def key_fingerprint(self) -> str:
        return key_fingerprint(self.public_key)

    @property
    def feature_names(self) -> list[str]:
        """The features as the factories' tables name them (categorical ones before one-hot encoding)."""
        return [f.name for f in self.features]

    @property
    def model_columns(self) -> list[str]:
        """The model's features: numeric features as they are, categorical ones as their dummies; then the target."""
        columns: list[str] = []
        for spec in self.features:
            columns += spec.dummies if spec.categories is not None else [spec.name]
        return [*columns, self.target.name]

    @property
    def model_features(self) -> list[str]:
        return self.model_columns[:-1]

    @property
    def categories(self) -> dict[str, tuple[str, ...]]:
        """The categorical features and their levels (one-hot encoded at every factory)."""
        return {spec.name: spec.categories for spec in self.features if spec.categories is not None}

    def cleaning_with(self, summary: ColumnSummary | None) -> Cleaning:
        """The study's cleaning with the consortium summary a factory was given (data, not agreement) and
        the study's bounds."""
        return replace(self.cleaning, summary=summary, bounds=self.bounds)

    def allows(self, kind: str) -> bool:
        return kind in self.kinds

    def request(self, kind: str, **runtime: Any) -> Any:
        """The typed request of ``kind`` with the study's parameters, plus what only the run knows (the
        model of an evaluation); refused if the study does not allow the kind."""
        if kind not in self.kinds:
            raise UsageError(f"study {self.digest} does not allow {kind} bundles (it allows "
                             f"{', '.join(sorted(self.kinds))})")
        return get_kind(kind, "study").request_for(self.kinds[kind], **runtime)

    @property
    def digest(self) -> str:
        """SHA-256 (first 32 hex digits) of the canonical JSON of every field but the digest itself."""
        body = json.dumps(self._body(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(body.encode("utf-8")).hexdigest()[:32]

    def check_digest(self, study_digest: str | None, where: str) -> None:
        """Refuse a bundle or decrypted result that was not made for this study."""
        if study_digest != self.digest:
            what = "no study" if study_digest is None else f"study {study_digest}"
            raise SchemaMismatchError(f"{where}: made for {what}, not for this study ({self.digest})")

    def check_bundle(self, bundle: Bundle, where: str = "bundle") -> None:
        """Refuse a bundle that is not one this study allows: another study, key, kind, kind parameters,
        schema or encoding."""
        self.check_digest(bundle.study, where)
        problems = []
        if bundle.key_fingerprint != self.key_fingerprint:
            problems.append(f"key {bundle.key_fingerprint}, the study's is {self.key_fingerprint}")
        if bundle.kind not in self.kinds:
            problems.append(f"a {bundle.kind} bundle, which the study does not allow")
        else:
            kind = get_kind(bundle.kind)
            if not kind.parameters_agree(bundle.parameters, self.kinds[bundle.kind]):
                problems.append(f"its {bundle.kind} parameters {dict(bundle.parameters)} are not the study's")
        if bundle.target != self.target.name or sorted(bundle.features) != sorted(self.model_features):
            problems.append("target or features differ from the study's")
        if bundle.encoding != self.encoding:
            problems.append("the encoding differs from the study's")
        if problems:
            raise SchemaMismatchError(f"{where}: claims study {self.digest} but is " + "; ".join(problems))

    def check_release(self, release: ReleaseSignature | None, source: str, what: str) -> None:
        """Refuse sums or a model this study's key holder did not release for this study (when it names one)."""
        check_signer(release, self.keyholder, source, what)
        if release is not None and self.keyholder is not None and release.study != self.digest:
            raise SchemaMismatchError(f"{source}: released for {release.study or 'no study'}, not for this study")

    def check_model(self, model: PublishedModel) -> None:
        """Refuse a model to evaluate that is not of the study's target and features (before any row is read:
        the model comes from whoever asks, and would otherwise choose which columns are read), or, when the
        study names its key holder, that the key holder did not sign for this study."""
        release = getattr(model, "release_", None)
        if self.keyholder is None and self.roster_digest is not None:
            # Multi-party: a model nobody released (y − c for many c, chosen coefficients) read through
            # evaluation sums reveals the pooled holdout; only the key holder's signed models are evaluated,
            # and a signature means something only against the key the study names.
            raise ReleaseError("this study names a roster but no key holder's release key, so no model to evaluate "
                               "can be checked (hefed study new --key-holder); nothing was read")
        self.check_release(release, "the model to evaluate", "model")
        columns = [str(model.target_), *(str(f) for f in model.feature_names_in_)]
        if columns[0] != self.target.name or sorted(columns[1:]) != sorted(self.model_features):
            outside = [c for c in columns if c not in (self.target.name, *self.model_features)]
            raise SchemaMismatchError(f"the model to evaluate is not of the study's target and features "
                                      f"(outside the study: {outside or 'none, but columns are missing'}); "
                                      "nothing was read")

    def check_roster(self, roster: Roster | None, round_: Round | None = None) -> None:
        """Refuse a round this study does not allow: a study naming a roster has masked, signed rounds of
        that roster only (no plain bundles), and no round has fewer participants than the threshold."""
        if self.roster_digest is not None:
            if roster is None:
                raise RoundError(f"study {self.digest} names a roster: its bundles are masked and signed for a "
                                 "round of that roster (give the roster and the round)", parameters=("roster",))
            if roster.digest() != self.roster_digest:
                raise RoundError(f"the roster ({roster.digest()}) is not the study's ({self.roster_digest})")
        if round_ is not None and len(round_.participants) < self.min_contributors:
            raise RoundError(f"round {round_.round_id} has {len(round_.participants)} participant(s); the study "
                             f"needs at least {self.min_contributors} (min_contributors)")

    # --- files -------------------------------------------------------------------------------------
    def _body(self) -> dict[str, Any]:
        cleaning = {"missing": self.cleaning.missing, "impute": self.cleaning.impute, "max_z": self.cleaning.max_z}
        return {
            "format": FORMAT, "version": VERSION, "study_id": self.study_id, "title": self.title,
            "public_key": {"n": int_to_base64(self.public_key.n)}, "key_fingerprint": self.key_fingerprint,
            "roster_digest": self.roster_digest,
            "min_contributors": self.min_contributors, "target": self.target.to_dict(),
            "features": [f.to_dict() for f in self.features], "encoding": self.encoding.to_dict(),
            "kinds": {k: dict(v) for k, v in sorted(self.kinds.items())}, "cleaning": cleaning,
            "holdout": None if self.holdout is None else {"test_fraction": self.holdout.test_fraction,
                                                          "seed": self.holdout.seed},
            "bounds": None if self.bounds is None else {k: list(v) for k, v in sorted(self.bounds.columns.items())},
            # Only present when named, so studies made before release keys keep their digests.
            **({"keyholder": self.keyholder} if self.keyholder is not None else {}),
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self._body(), "digest": self.digest}

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        return atomic_write_json(path, self.to_dict(), force=force)

    @classmethod
    def load(cls, path: str | os.PathLike[str], expected_digest: str | None = None) -> Study:
        """Read a study file, checking its digest (and that it is ``expected_digest``, when given)."""
        return cls.from_dict(read_json_object(path, "study"), str(path), expected_digest)

    @classmethod
    def from_dict(cls, obj: dict[str, Any], source: str = "study", expected_digest: str | None = None) -> Study:
        check_format(obj, source, FORMAT, VERSION, "study")
        fields = {"format", "version", "study_id", "title", "public_key", "key_fingerprint", "roster_digest",
                  "min_contributors",
                  "target", "features", "encoding", "kinds", "cleaning", "holdout", "bounds", "digest"}
        if set(obj) - {"keyholder"} != fields:
            raise InvalidFileError(f"{source}: fields wrong (missing {sorted(fields - set(obj))}, extra "
                                   f"{sorted(set(obj) - fields)})")
        try:
            cleaning = obj["cleaning"]
            if not isinstance(cleaning, dict) or set(cleaning) != {"missing", "impute", "max_z"}:
                raise InvalidFileError(f"{source}: 'cleaning' must have missing, impute and max_z")
            holdout, bounds, kinds = obj["holdout"], obj["bounds"], obj["kinds"]
            if not isinstance(kinds, dict) or not all(isinstance(v, dict) for v in kinds.values()):
                raise InvalidFileError(f"{source}: 'kinds' must map kind names to parameter objects")
            features = obj["features"]
            if not isinstance(features, list):
                raise InvalidFileError(f"{source}: 'features' must be a list")
            study = cls(
                study_id=str(obj["study_id"]), public_key=_public_key(obj["public_key"], source),
                target=ColumnSpec.from_dict(obj["target"], source),
                features=tuple(ColumnSpec.from_dict(f, source) for f in features),
                encoding=Encoding.from_dict(obj["encoding"], source),
                min_contributors=obj["min_contributors"],
                roster_digest=obj["roster_digest"], kinds=kinds,
                cleaning=Cleaning(missing=cleaning["missing"], impute=cleaning["impute"], max_z=cleaning["max_z"]),
                holdout=None if holdout is None else Holdout(holdout["test_fraction"], holdout["seed"]),
                bounds=None if bounds is None else _bounds(bounds, source),
                title=str(obj["title"]),
                keyholder=obj.get("keyholder"),
            )
        except (UsageError, KeyError, TypeError) as exc:
            raise InvalidFileError(f"{source}: {exc}") from None
        if obj["key_fingerprint"] != study.key_fingerprint:
            raise InvalidFileError(f"{source}: 'key_fingerprint' does not match 'public_key'")
        if obj["digest"] != study.digest:
            raise InvalidFileError(f"{source}: the digest does not match the study's contents (edited?)")
        if expected_digest is not None and study.digest != expected_digest:
            raise SchemaMismatchError(f"{source}: study {study.digest}, not the pinned study {expected_digest}")
        return study


def _public_key(obj: Any, source: str) -> PaillierPublicKey:
    if not isinstance(obj, dict) or set(obj) != {"n"} or not isinstance(obj["n"], str) or len(obj["n"]) > MAX_BITS:
        raise InvalidFileError(f"{source}: 'public_key' must be {{\"n\": <base64url>}}")
    try:
        n = base64_to_int(obj["n"])
    except Exception:
        raise InvalidFileError(f"{source}: 'public_key.n' is not valid base64url") from None
    if int_to_base64(n) != obj["n"]:  # one text per key: the file says exactly what its digest covers
        raise InvalidFileError(f"{source}: 'public_key.n' is not in canonical base64url")
    if n.bit_length() < MIN_TEST_BITS or n % 2 == 0:
        raise InvalidFileError(f"{source}: 'public_key.n' is not a valid Paillier modulus")
    return PaillierPublicKey(n)


def _bounds(obj: Any, source: str) -> Bounds:
    if not isinstance(obj, dict) or not obj:
        raise InvalidFileError(f"{source}: 'bounds' must map column names to [lo, hi]")
    parsed = {}
    for name, pair in obj.items():
        if (not isinstance(pair, list) or len(pair) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in pair)
                or pair[0] > pair[1]):
            raise InvalidFileError(f"{source}: bounds of {name!r} must be [lo, hi] with finite lo <= hi")
        parsed[str(name)] = (float(pair[0]), float(pair[1]))
    return Bounds(parsed)


