"""A federation's settings, checked in one place: the run (:class:`RunSettings`) and a node (:class:`FactoryConfig`).

Where each setting comes from:

* the **run config** (``[tool.flwr.app.config]`` of the app, overridden by
  ``flwr run --run-config``), read by the ServerApp and every ClientApp:
  :data:`RUN_CONFIG_DEFAULTS`, read by :meth:`RunSettings.from_config`. ``hefed federate``
  and :func:`hefed.flower.run_local_federation` build the same object from Python values
  (:meth:`RunSettings.from_options`) and hand it to the ServerApp as a run config
  (:meth:`RunSettings.to_run_config`); both paths end in the one validation of
  :class:`RunSettings`, and :meth:`RunSettings.load_inputs` checks the files a run reads and
  writes, before any message is sent or any process started;
* the **node config** of a factory's SuperNode (``flower-supernode --node-config``), read
  only by that factory: ``data-path`` (required), ``factory-id`` (default: the data file's
  name without suffix), ``target`` and ``features`` (override the run config's),
  ``key-fingerprint`` (the key pin: without a study the factory encrypts under no other key, and
  without either it encrypts nothing, so an aggregator cannot substitute a key of its own), and for
  masked rounds ``identity-dir`` (the factory's enrollment folder from ``hefed enroll``) and
  ``roster-digest`` (the roster pin: without a study naming a roster the factory joins masked
  rounds of that roster only, and without either it joins none); ``study`` (the path of the
  factory's own copy of the study file: then the factory computes only what that study says,
  under the study's key and for the study's roster, and ignores the run config) and
  ``study-digest`` (the pin, 32 hex digits, recommended: the factory takes part in nothing
  unless its study file has exactly that digest); ``log-dir`` (where the factory's own log
  ``hefed-FACTORY.log`` goes, mode 0600, holding the full text of every refusal; default: beside
  its data file) and ``insecure-test-key`` (true: keys below 2048 bits are accepted, for tests).

With a ``study`` in the run config (a path on the aggregator's machine) the study decides what
every factory computes: the key is the study's, ``min-contributors`` is at least the study's, the
roster is the study's when it names one, the requests carry the study's digest (never its
contents), and a run-config key that would change what a factory computes (:data:`STUDY_FIXED`:
target, features, the encoding, the holdout, the cleaning, the kinds' parameters) must keep
its default.

The bundle kinds a federation may collect are those the kind registry marks as travelling by
Flower (:func:`hefed.kinds.kind_names` with ``flower=True``). A kind whose request carries
the global model (its request type has a ``model`` field: evaluation) needs the run's
``model``, takes its target and features from that model, and is computed on each factory's
held-out rows as they are; the run's ``ridge`` goes to a request that has a ``ridge`` field.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phe import PaillierPublicKey

from .._files import check_writable
from .._keys import key_fingerprint, load_public_key
from ..errors import InsecureKeyError, KeyMismatchError, RoundError, SchemaMismatchError, UsageError
from ..kinds import STATISTICS, Kind, KindRequest, get_kind, kind_names
from ..models import LinearModel
from ..protocol import Roster, Study, check_factory_id
from ..stats import Encoding

#: Bundle kinds a federation can collect (those the kind registry marks as travelling by Flower).
KINDS = kind_names(flower=True)
#: How a factory treats rows with missing values: drop them (as ``hefed encrypt`` does) or refuse the table.
MISSING_CHOICES = ("drop", "error")
#: Largest ``max-rounds`` accepted (deprecated and ignored: a masked run is one version 2 round, never re-run).
MAX_ROUNDS_LIMIT = 10

_DEFAULT_ENCODING = Encoding()

#: Every run-config key of the app, with its default (the app's ``[tool.flwr.app.config]``).
#: Paths are read by the ServerApp on the SuperLink's machine; use absolute paths.
RUN_CONFIG_DEFAULTS: dict[str, str | int | float | bool] = {
    "kind": STATISTICS.name,  # one of KINDS (evaluation needs model)
    "public-key": "",  # path to the consortium's public key (pheutil JSON) on the aggregator's machine
    "out": "",  # path of the aggregate bundle the ServerApp writes
    "report": "",  # optional path of a JSON report: contributors, missing factories and why
    "progress": "",  # optional path of a JSON-lines log of the run as it goes (one event a line)
    "force": False,  # replace an existing out / report / progress
    "target": "",  # response column (a factory's node config may override it)
    "features": "",  # comma-separated feature columns; "" = every numeric column but the target
    "model": "",  # evaluation: path of the global model JSON on the aggregator's machine
    "min-contributors": 3,  # fewer answers than this and the run fails
    "timeout": 60.0,  # seconds to wait for the factories' replies
    "wait-for-nodes": 30.0,  # seconds to wait for the expected SuperNodes to connect
    "expected-factories": "",  # comma-separated factory ids, so absent ones are named in the report
    "test-fraction": 0.0,  # holdout fraction each factory keeps out (evaluation then uses that holdout)
    "seed": 0,  # seed of the reproducible holdout draw
    "ridge": 0.0,  # ridge penalty of the local fits (coefficients kind)
    "missing": "drop",  # rows with missing values: drop them (as hefed encrypt does) or refuse the table (error)
    "roster": "",  # path of the consortium roster on the aggregator's machine; set = masked, signed rounds
    "study": "",  # path of the consortium's study on the aggregator's machine; set = the study decides what
    #               factories compute (then the keys of STUDY_FIXED keep their defaults)
    "max-rounds": 3,  # deprecated, ignored: a masked run is one version 2 round that survives drop-outs (no re-runs)
    "insecure-test-key": False,  # accept a public key below 2048 bits (tests; each factory decides for itself too)
    "frac-bits": _DEFAULT_ENCODING.frac_bits,
    "int-bits": _DEFAULT_ENCODING.int_bits,
    "max-contributors": _DEFAULT_ENCODING.max_contributors,
    "glm-exchange": "",  # a GLM fit (with a study): the folder the aggregator and the key holder share; "" = none
    "glm-step-timeout": 300.0,  # seconds the ServerApp waits for the key holder's next coefficients
}

#: Run-config keys that change what a factory computes, by :class:`RunSettings` field: with a ``study`` they must
#: keep their defaults (the study decides them; each factory takes them from its own copy of the study).
STUDY_FIXED: dict[str, str] = {
    "target": "target", "features": "features", "frac-bits": "encoding", "int-bits": "encoding",
    "max-contributors": "encoding", "test-fraction": "test_fraction", "seed": "seed", "ridge": "ridge",
    "missing": "missing",
}

#: Node-config keys a factory's SuperNode may set (strings; ``insecure-test-key`` is true or false).
NODE_CONFIG_KEYS = ("data-path", "factory-id", "target", "features", "key-fingerprint", "identity-dir",
                    "roster-digest", "study", "study-digest", "log-dir", "insecure-test-key")

_DIGEST = re.compile(r"[0-9a-f]{32}")


def split_names(value: str) -> list[str]:
    """``"a, b,c"`` → ``["a", "b", "c"]`` (empty items dropped)."""
    return [item.strip() for item in value.split(",") if item.strip()]


# --- kinds, as the registry describes them ------------------------------------------------------------------


def flower_kind(name: object, source: str = "") -> Kind[Any, Any]:
    """The registered kind called ``name``, if it travels by Flower; otherwise a usage error listing those that do."""
    if not isinstance(name, str) or name not in KINDS:
        where = f"{source}: " if source else ""
        raise UsageError(f"{where}kind must be one of {', '.join(KINDS)}, got {name!r}", parameters=("kind",))
    return get_kind(name, source or "kind")


def _request_fields(kind: Kind[Any, Any]) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(kind.request_type)}


def takes_model(kind: Kind[Any, Any]) -> bool:
    """Whether the kind's request carries a published model (then the run needs ``model``)."""
    return "model" in _request_fields(kind)


def kind_request(kind: Kind[Any, Any], *, ridge: float = 0.0, model: LinearModel | None = None) -> KindRequest:
    """The kind's typed request, its fields filled from the run by name (``ridge``, ``model``) where it has them."""
    request: KindRequest = kind.request_from({"ridge": ridge, "model": model})
    return request


# --- keys ---------------------------------------------------------------------------------------------------


def load_public_key_only(path: str | os.PathLike[str], insecure_test_key: bool = False) -> PaillierPublicKey:
    """Load the consortium's public key for a Flower process, refusing a private key file
    (:func:`hefed.load_public_key` refuses it; here the message says who keeps it) and a weak key (below 2048
    bits only with ``insecure_test_key``)."""
    if not str(path):
        raise UsageError("no public key given (run config 'public-key')", parameters=("public_key",))
    try:
        return load_public_key(path, insecure_test_key=insecure_test_key)
    except InsecureKeyError as exc:
        if "private key" not in str(exc):
            raise
        raise exc.reworded(f"{path}: this is a private key; the aggregator and every Flower process get only the "
                           "public key (public_key.json). Keep the private key with the key holder.") from None


# --- the run ------------------------------------------------------------------------------------------------


def _get(config: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """A run-config value of the expected type (missing keys take :data:`RUN_CONFIG_DEFAULTS`)."""
    value = config.get(key, RUN_CONFIG_DEFAULTS.get(key))
    if isinstance(value, bool) and kind is not bool:
        raise UsageError(f"{key!r} must be {getattr(kind, '__name__', 'a number')}, got {value!r}")
    if not isinstance(value, kind):
        raise UsageError(f"{key!r} has the wrong type ({type(value).__name__}: {value!r})")
    return value


def _path_text(path: str | os.PathLike[str] | None) -> str:
    """A path as the run config carries it: absolute (the ServerApp runs elsewhere), or ``""`` for none."""
    return str(Path(path).absolute()) if path is not None and str(path) else ""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class RunInputs:
    """What a run reads before it asks anyone: the public key, the model (evaluation), the roster (masked) and the
    study (when the run config names one)."""

    public_key: PaillierPublicKey
    model: LinearModel | None = None
    roster: Roster | None = None
    study: Study | None = None

    @property
    def study_digest(self) -> str | None:
        """The digest of the run's study (what the requests, the bundles and the report carry), or ``None``."""
        return self.study.digest if self.study is not None else None


@dataclass(frozen=True)
class RunSettings:
    """A federation's run, checked: what the aggregator asks for and how every factory encodes it.

    Every instance is valid (the checks run in ``__post_init__``), however it was built:
    :meth:`from_config` (the ServerApp and ClientApps, from Flower's run config),
    :meth:`from_options` (``hefed federate`` and the launcher, from Python values) or
    :func:`dataclasses.replace`. Messages name the run-config key and set
    :attr:`~hefed.errors.HefedError.parameters` to the field, so a front end can name its option.
    Paths are strings, ``""`` when unset.
    """

    kind: str = STATISTICS.name
    public_key: str = ""
    out: str = ""
    report: str = ""
    progress: str = ""
    force: bool = False
    target: str = ""
    features: tuple[str, ...] = ()
    model: str = ""
    min_contributors: int = 3
    timeout: float = 60.0
    wait_for_nodes: float = 30.0
    expected_factories: tuple[str, ...] = ()
    test_fraction: float = 0.0
    seed: int = 0
    ridge: float = 0.0
    missing: str = "drop"
    encoding: Encoding = field(default_factory=Encoding)
    roster: str = ""
    max_rounds: int = 3
    study: str = ""
    insecure_test_key: bool = False
    #: A GLM fit (``hefed federate --family``): the folder the aggregator and the key holder share.
    glm_exchange: str = ""
    #: Seconds the ServerApp waits for the key holder's next coefficients in a GLM fit.
    glm_step_timeout: float = 300.0

    def __post_init__(self) -> None:
        flower_kind(self.kind)
        for name in ("public_key", "out", "report", "progress", "target", "model", "roster", "missing", "study"):
            if not isinstance(getattr(self, name), str):
                raise UsageError(f"{name} must be a string, got {getattr(self, name)!r}", parameters=(name,))
        if not isinstance(self.insecure_test_key, bool):
            raise UsageError(f"insecure-test-key must be true or false, got {self.insecure_test_key!r}",
                             parameters=("insecure_test_key",))
        if not isinstance(self.force, bool):
            raise UsageError(f"force must be true or false, got {self.force!r}", parameters=("force",))
        if not _is_int(self.min_contributors) or self.min_contributors < 1:
            raise UsageError(f"min-contributors must be a positive integer, got {self.min_contributors!r}",
                             parameters=("min_contributors",))
        if self.masked and self.min_contributors < 2:
            raise UsageError("a masked round needs at least two participants (masks are pairwise): "
                             f"min-contributors must be 2 or more, got {self.min_contributors}",
                             parameters=("min_contributors",))
        if not isinstance(self.glm_exchange, str):
            raise UsageError(f"glm-exchange must be a string, got {self.glm_exchange!r}")
        for key, value in (("timeout", self.timeout), ("wait-for-nodes", self.wait_for_nodes),
                           ("glm-step-timeout", self.glm_step_timeout)):
            if not _is_number(value) or not math.isfinite(value) or value <= 0:
                raise UsageError(f"{key} must be a positive number of seconds, got {value!r}",
                                 parameters=(key.replace("-", "_"),))
        if not _is_number(self.test_fraction) or (self.test_fraction and not 0 < self.test_fraction < 1):
            raise UsageError(f"test-fraction must be 0 or strictly between 0 and 1, got {self.test_fraction!r}",
                             parameters=("test_fraction",))
        if not _is_int(self.seed):
            raise UsageError(f"seed must be an integer, got {self.seed!r}", parameters=("seed",))
        if not _is_number(self.ridge) or not math.isfinite(self.ridge) or self.ridge < 0:
            raise UsageError(f"ridge must be a non-negative number, got {self.ridge!r}", parameters=("ridge",))
        if self.missing not in MISSING_CHOICES:
            raise UsageError(f"missing must be {' or '.join(map(repr, MISSING_CHOICES))}, got {self.missing!r}",
                             parameters=("missing",))
        for name in (*self.features, *self.expected_factories):
            if not isinstance(name, str) or not name:
                raise UsageError(f"feature and factory names must be non-empty strings, got {name!r}")
        for name in self.expected_factories:
            check_factory_id(name)
        if len(set(self.expected_factories)) != len(self.expected_factories):
            raise UsageError("expected-factories lists a factory twice", parameters=("expected_factories",))
        if not _is_int(self.max_rounds) or not 1 <= self.max_rounds <= MAX_ROUNDS_LIMIT:
            raise UsageError(f"max-rounds must be between 1 and {MAX_ROUNDS_LIMIT}, got {self.max_rounds!r}",
                             parameters=("max_rounds",))
        if not isinstance(self.encoding, Encoding):
            raise UsageError(f"encoding must be an Encoding, got {self.encoding!r}")
        if self.takes_model and not self.model:
            raise UsageError(f"kind {self.kind!r} needs the global model it evaluates ('model')",
                             parameters=("model",))
        if self.study:
            changed = self.study_overrides()
            if changed:
                raise UsageError(
                    "with a study, the study decides what factories compute: leave "
                    f"{', '.join(changed)} at the default{'s' if len(changed) > 1 else ''} "
                    f"(set to {', '.join(repr(v) for v in changed.values())})",
                    parameters=tuple(dict.fromkeys(STUDY_FIXED[key] for key in changed)))

    def study_overrides(self) -> dict[str, Any]:
        """The run-config keys of :data:`STUDY_FIXED` set to something other than their defaults (key → value)."""
        config = self.to_run_config()
        changed = {key: config[key] for key in STUDY_FIXED if config[key] != RUN_CONFIG_DEFAULTS[key]}
        if self.encoding != Encoding() and not {"frac-bits", "int-bits", "max-contributors"} & set(changed):
            changed["frac-bits"] = config["frac-bits"]  # per-column grids (from Python): an encoding of its own
        return changed

    # --- what the settings say ------------------------------------------------------------------------------
    @property
    def masked(self) -> bool:
        """Whether the run uses masked, signed rounds (a roster is set)."""
        return bool(self.roster)

    @property
    def bundle_kind(self) -> Kind[Any, Any]:
        """The registered kind the run collects."""
        return flower_kind(self.kind)

    @property
    def takes_model(self) -> bool:
        """Whether the kind evaluates the run's global model (then ``model`` is required)."""
        return takes_model(self.bundle_kind)

    def request(self, model: LinearModel | None = None) -> KindRequest:
        """The typed request a factory computes for this run (``model``: the global model, if the kind takes one)."""
        return kind_request(self.bundle_kind, ridge=self.ridge, model=model)

    # --- building it ----------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: Mapping[str, Any], source: str = "run config") -> RunSettings:
        """Read and check a Flower run config (missing keys take :data:`RUN_CONFIG_DEFAULTS`)."""
        number = (int, float)
        try:
            return cls(
                kind=_get(config, "kind", str),
                public_key=_get(config, "public-key", str),
                out=_get(config, "out", str),
                report=_get(config, "report", str),
                progress=_get(config, "progress", str),
                force=_get(config, "force", bool),
                target=_get(config, "target", str).strip(),
                features=tuple(split_names(_get(config, "features", str))),
                model=_get(config, "model", str),
                min_contributors=_get(config, "min-contributors", int),
                timeout=float(_get(config, "timeout", number)),
                wait_for_nodes=float(_get(config, "wait-for-nodes", number)),
                expected_factories=tuple(split_names(_get(config, "expected-factories", str))),
                test_fraction=float(_get(config, "test-fraction", number)),
                seed=_get(config, "seed", int),
                ridge=float(_get(config, "ridge", number)),
                missing=_get(config, "missing", str),
                encoding=Encoding(
                    frac_bits=_get(config, "frac-bits", int),
                    int_bits=_get(config, "int-bits", int),
                    max_contributors=_get(config, "max-contributors", int),
                ),
                roster=_get(config, "roster", str).strip(),
                max_rounds=_get(config, "max-rounds", int),
                study=_get(config, "study", str).strip(),
                insecure_test_key=_get(config, "insecure-test-key", bool),
                glm_exchange=_get(config, "glm-exchange", str).strip(),
                glm_step_timeout=float(_get(config, "glm-step-timeout", number)),
            )
        except UsageError as exc:
            raise exc.reworded(f"{source}: {exc}") from None

    @classmethod
    def from_options(
        cls,
        *,
        kind: str = STATISTICS.name,
        public_key: str | os.PathLike[str] | None = None,
        out: str | os.PathLike[str] | None = None,
        report: str | os.PathLike[str] | None = None,
        progress: str | os.PathLike[str] | None = None,
        force: bool = False,
        target: str | None = None,
        features: Sequence[str] | None = None,
        model: str | os.PathLike[str] | None = None,
        min_contributors: int = 3,
        timeout: float = 60.0,
        wait_for_nodes: float = 30.0,
        expected_factories: Sequence[str] = (),
        test_fraction: float = 0.0,
        seed: int = 0,
        ridge: float = 0.0,
        missing: str = "drop",
        encoding: Encoding | None = None,
        roster: str | os.PathLike[str] | None = None,
        max_rounds: int = 3,
        study: str | os.PathLike[str] | None = None,
        insecure_test_key: bool = False,
    ) -> RunSettings:
        """The settings from Python values (what ``hefed federate`` parsed); paths become absolute."""
        if isinstance(features, str) or isinstance(expected_factories, str):
            raise UsageError("features and expected_factories are lists of names, not one string",
                             parameters=("features",))
        return cls(
            kind=kind, public_key=_path_text(public_key), out=_path_text(out), report=_path_text(report),
            progress=_path_text(progress), force=force, target=(target or "").strip(),
            features=tuple(features or ()), model=_path_text(model), min_contributors=min_contributors,
            timeout=timeout, wait_for_nodes=wait_for_nodes,
            expected_factories=tuple(expected_factories), test_fraction=test_fraction, seed=seed, ridge=ridge,
            missing=missing, encoding=encoding if encoding is not None else Encoding(), roster=_path_text(roster),
            max_rounds=max_rounds, study=_path_text(study), insecure_test_key=insecure_test_key,
        )

    def to_run_config(self) -> dict[str, str | int | float | bool]:
        """The settings as a Flower run config (every key of :data:`RUN_CONFIG_DEFAULTS`); :meth:`from_config`
        reads it back."""
        return {
            "kind": self.kind,
            "public-key": self.public_key,
            "out": self.out,
            "report": self.report,
            "progress": self.progress,
            "force": self.force,
            "target": self.target,
            "features": ",".join(self.features),
            "model": self.model,
            "min-contributors": self.min_contributors,
            "timeout": float(self.timeout),
            "wait-for-nodes": float(self.wait_for_nodes),
            "expected-factories": ",".join(self.expected_factories),
            "test-fraction": float(self.test_fraction),
            "seed": self.seed,
            "ridge": float(self.ridge),
            "missing": self.missing,
            "roster": self.roster,
            "max-rounds": self.max_rounds,
            "frac-bits": self.encoding.frac_bits,
            "int-bits": self.encoding.int_bits,
            "max-contributors": self.encoding.max_contributors,
            "study": self.study,
            "insecure-test-key": self.insecure_test_key,
            "glm-exchange": self.glm_exchange,
            "glm-step-timeout": float(self.glm_step_timeout),
        }

    def load_inputs(self) -> RunInputs:
        """Check every file the run writes and reads, before anything is sent or started; return what it reads.

        ``out`` must be set; ``out``, ``report`` and ``progress`` must be new files in existing
        folders (or ``force``); the public key must be a public key (a private key file is
        refused); the model (a kind that takes one) and the roster (masked runs) must load.

        With a ``study``: the study must load (its digest checked), the kind must be one it
        allows, ``public-key`` may be left out (the study's key is used) and must otherwise be
        the study's key, the roster must be the study's when it names one (and must then be
        set), and a model to evaluate must have been solved in this study.
        """
        if not self.out:
            raise UsageError("'out' (path of the aggregate bundle to write) is not set", parameters=("out",))
        for path in (self.out, self.report, self.progress):
            if path:
                check_writable(path, self.force)
        study = Study.load(self.study) if self.study else None
        if study is None:
            public_key = load_public_key_only(self.public_key, self.insecure_test_key)
        else:
            if not study.allows(self.kind):
                raise UsageError(f"study {study.digest} does not allow {self.kind} bundles (it allows "
                                 f"{', '.join(sorted(study.kinds))})", parameters=("kind",))
            public_key = study.public_key
            if self.public_key:
                given = load_public_key_only(self.public_key, self.insecure_test_key)
                if given.n != study.public_key.n:
                    raise KeyMismatchError(
                        f"{self.public_key}: key {key_fingerprint(given)}, but study {study.digest} names key "
                        f"{study.key_fingerprint}; leave 'public-key' out (the study carries the key)",
                        parameters=("public_key",))
            if study.roster_digest and not self.roster:
                raise UsageError(f"study {study.digest} names roster {study.roster_digest}: set 'roster' to that "
                                 "roster's file (masked, signed rounds)", parameters=("roster",))
        model = LinearModel.load(self.model) if self.takes_model else None
        roster = Roster.load(self.roster) if self.roster else None
        if study is not None:
            if roster is not None and study.roster_digest not in (None, roster.digest()):
                raise RoundError(f"{self.roster}: roster {roster.digest()}, but study {study.digest} names roster "
                                 f"{study.roster_digest}")
            if model is not None and model.study_ != study.digest:
                made = f"study {model.study_}" if model.study_ else "no study"
                raise SchemaMismatchError(f"{self.model}: a model solved in {made}, not in study {study.digest}; "
                                          "the factories evaluate only their study's models", parameters=("model",))
        return RunInputs(public_key, model, roster, study)

    def under_study(self, inputs: RunInputs) -> RunSettings:
        """These settings as the run's study asks: ``min-contributors`` at least the study's (no study: unchanged)."""
        if inputs.study is None or self.min_contributors >= inputs.study.min_contributors:
            return self
        return dataclasses.replace(self, min_contributors=inputs.study.min_contributors)


@dataclass(frozen=True)
class FactoryConfig:
    """A factory's node config, checked: where its data (and its copy of the study) is, what it calls itself, its
    pins."""

    data_path: str
    factory_id: str
    target: str = ""
    features: tuple[str, ...] = ()
    key_fingerprint: str = ""
    identity_dir: str = ""
    roster_digest: str = ""
    study: str = ""
    study_digest: str = ""
    log_dir: str = ""
    insecure_test_key: bool = False

    @classmethod
    def from_node_config(cls, config: Mapping[str, Any], source: str = "node config") -> FactoryConfig:
        """Read and check a SuperNode's node config (every key a string but ``insecure-test-key``, true or false;
        ``data-path`` required; ``study-digest`` 32 hex digits and only with a ``study``)."""
        insecure = config.get("insecure-test-key", False)
        if isinstance(insecure, str) and insecure.strip().lower() in ("true", "false", ""):
            insecure = insecure.strip().lower() == "true"
        if not isinstance(insecure, bool):
            raise UsageError(f"{source}: 'insecure-test-key' must be true or false, got {insecure!r}")
        values = {}
        for key in NODE_CONFIG_KEYS:
            if key == "insecure-test-key":
                continue
            value = config.get(key, "")
            if not isinstance(value, str):
                raise UsageError(f"{source}: {key!r} must be a string, got {value!r}")
            values[key] = value.strip()
        if not values["data-path"]:
            raise UsageError(f"{source}: 'data-path' is not set (flower-supernode --node-config 'data-path=\"...\"')")
        factory_id = values["factory-id"] or Path(values["data-path"]).stem
        check_factory_id(factory_id)
        study_digest = values["study-digest"].lower()
        if study_digest and not _DIGEST.fullmatch(study_digest):
            raise UsageError(f"{source}: 'study-digest' must be a study digest of 32 hex digits (hefed study show), "
                             f"got {values['study-digest']!r}")
        if study_digest and not values["study"]:
            raise UsageError(f"{source}: 'study-digest' is set but 'study' (the path of this factory's own copy of "
                             "the study file) is not")
        return cls(values["data-path"], factory_id, values["target"], tuple(split_names(values["features"])),
                   values["key-fingerprint"].lower(), values["identity-dir"], values["roster-digest"].lower(),
                   values["study"], study_digest, values["log-dir"], insecure)
