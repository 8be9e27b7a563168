"""What travels between the hefed ServerApp (aggregator) and its ClientApps (factories), and the checks on it.

This module holds the whole federated protocol without importing Flower, so
it can be read, reused and tested on its own; :mod:`hefed.flower.app` only
wires it to Flower's Message API.

One round, one message type (``query.contribute``):

* **request** (aggregator → every connected factory), a flat record of
  ``kind`` (``statistics``, ``coefficients`` or ``evaluation``), the consortium
  ``public-key`` (its modulus ``n`` in base64url, nothing else: Paillier
  public keys have no other part), the key's ``key-fingerprint`` and, for
  evaluation, the global ``model`` as JSON;
* **reply** (factory → aggregator), ``status`` ``ok`` with the ``factory-id``
  and the encrypted ``bundle`` as bytes (the UTF-8 JSON of
  :meth:`hefed.Bundle.to_dict`, never pickle), or ``status`` ``error`` with the
  ``factory-id`` and a one-line ``error``.

Where each setting comes from:

* the **run config** (``[tool.flwr.app.config]`` of the app, overridden by
  ``flwr run --run-config``), read by both sides: :data:`RUN_CONFIG_DEFAULTS`;
* the **node config** of a factory's SuperNode (``flower-supernode
  --node-config``), read only by that factory: ``data-path`` (required),
  ``factory-id`` (default: the data file's name without suffix), ``target``
  and ``features`` (override the run config's), and ``key-fingerprint``
  (optional pin: the factory refuses to encrypt for any other key, so an
  aggregator cannot substitute a key of its own).

No private key is ever read, sent or accepted here: the aggregator refuses a
private key file given as its public key (:func:`load_public_key_only`), and
the request carries ``n`` alone.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from phe import PaillierPublicKey
from phe.util import base64_to_int, int_to_base64

from ..aggregate import aggregate
from ..bundle import Bundle, check_factory_id
from ..data import read_table, split_holdout
from ..encoding import Encoding
from ..encrypt import encrypt_table
from ..errors import (
    HefedError,
    InsecureKeyError,
    InvalidFileError,
    KeyMismatchError,
    TooFewContributorsError,
    UsageError,
)
from ..evaluation import encrypt_evaluation
from ..fileio import MAX_JSON_BYTES, read_json_object
from ..keys import MAX_BITS, MIN_TEST_BITS, key_fingerprint, load_public_key
from ..model import LinearModel

#: The ClientApp action and the Flower message type it answers.
ACTION = "contribute"
MESSAGE_TYPE = f"query.{ACTION}"
#: Names of the records inside the request and reply messages.
REQUEST_RECORD = "hefed-request"
REPLY_RECORD = "hefed-reply"
#: Bundle kinds a federation can collect.
KINDS = ("statistics", "coefficients", "evaluation")
#: Format of the federation report the ServerApp writes.
REPORT_FORMAT = "hefed.federation"
REPORT_VERSION = 1
#: Longest error text a factory sends back (the full text stays in the factory's own log).
MAX_ERROR_CHARS = 500

_DEFAULT_ENCODING = Encoding()

#: Every run-config key of the app, with its default (the app's ``[tool.flwr.app.config]``).
#: Paths are read by the ServerApp on the SuperLink's machine; use absolute paths.
RUN_CONFIG_DEFAULTS: dict[str, str | int | float | bool] = {
    "kind": "statistics",  # statistics | coefficients | evaluation
    "public-key": "",  # path to the consortium's public key (pheutil JSON) on the aggregator's machine
    "out": "",  # path of the aggregate bundle the ServerApp writes
    "report": "",  # optional path of a JSON report: contributors, missing factories and why
    "force": False,  # replace an existing out / report
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
    "frac-bits": _DEFAULT_ENCODING.frac_bits,
    "int-bits": _DEFAULT_ENCODING.int_bits,
    "max-contributors": _DEFAULT_ENCODING.max_contributors,
}

#: Node-config keys a factory's SuperNode may set.
NODE_CONFIG_KEYS = ("data-path", "factory-id", "target", "features", "key-fingerprint")


def split_names(value: str) -> list[str]:
    """``"a, b,c"`` → ``["a", "b", "c"]`` (empty items dropped)."""
    return [item.strip() for item in value.split(",") if item.strip()]


def _get(config: Mapping[str, Any], key: str, kind: type | tuple[type, ...], source: str) -> Any:
    value = config.get(key, RUN_CONFIG_DEFAULTS.get(key))
    if isinstance(value, bool) and kind is not bool:
        raise UsageError(f"{source}: {key!r} must be {getattr(kind, '__name__', 'a number')}, got {value!r}")
    if not isinstance(value, kind):
        raise UsageError(f"{source}: {key!r} has the wrong type ({type(value).__name__}: {value!r})")
    return value


@dataclass(frozen=True)
class RunSettings:
    """The run config, checked: what the aggregator asks for and how every factory encodes it."""

    kind: str = "statistics"
    public_key: str = ""
    out: str = ""
    report: str = ""
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

    @classmethod
    def from_config(cls, config: Mapping[str, Any], source: str = "run config") -> RunSettings:
        """Read and check a Flower run config (missing keys take :data:`RUN_CONFIG_DEFAULTS`)."""
        number = (int, float)
        kind = _get(config, "kind", str, source)
        if kind not in KINDS:
            raise UsageError(f"{source}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
        min_contributors = _get(config, "min-contributors", int, source)
        if min_contributors < 1:
            raise UsageError(f"{source}: min-contributors must be at least 1, got {min_contributors}")
        timeout = float(_get(config, "timeout", number, source))
        wait = float(_get(config, "wait-for-nodes", number, source))
        for key, value in (("timeout", timeout), ("wait-for-nodes", wait)):
            if not math.isfinite(value) or value <= 0:
                raise UsageError(f"{source}: {key} must be a positive number of seconds, got {value!r}")
        test_fraction = float(_get(config, "test-fraction", number, source))
        if test_fraction and not 0 < test_fraction < 1:
            raise UsageError(f"{source}: test-fraction must be 0 or strictly between 0 and 1, got {test_fraction}")
        ridge = float(_get(config, "ridge", number, source))
        if not math.isfinite(ridge) or ridge < 0:
            raise UsageError(f"{source}: ridge must be a non-negative number, got {ridge!r}")
        missing = _get(config, "missing", str, source)
        if missing not in ("drop", "error"):
            raise UsageError(f"{source}: missing must be 'drop' or 'error', got {missing!r}")
        expected = tuple(split_names(_get(config, "expected-factories", str, source)))
        for name in expected:
            check_factory_id(name)
        if len(set(expected)) != len(expected):
            raise UsageError(f"{source}: expected-factories lists a factory twice")
        encoding = Encoding(
            frac_bits=_get(config, "frac-bits", int, source),
            int_bits=_get(config, "int-bits", int, source),
            max_contributors=_get(config, "max-contributors", int, source),
        )
        return cls(
            kind=kind,
            public_key=_get(config, "public-key", str, source),
            out=_get(config, "out", str, source),
            report=_get(config, "report", str, source),
            force=_get(config, "force", bool, source),
            target=_get(config, "target", str, source).strip(),
            features=tuple(split_names(_get(config, "features", str, source))),
            model=_get(config, "model", str, source),
            min_contributors=min_contributors,
            timeout=timeout,
            wait_for_nodes=wait,
            expected_factories=expected,
            test_fraction=test_fraction,
            seed=_get(config, "seed", int, source),
            ridge=ridge,
            missing=missing,
            encoding=encoding,
        )


@dataclass(frozen=True)
class FactoryConfig:
    """A factory's node config, checked: where its data is and what it calls itself."""

    data_path: str
    factory_id: str
    target: str = ""
    features: tuple[str, ...] = ()
    key_fingerprint: str = ""

    @classmethod
    def from_node_config(cls, config: Mapping[str, Any], source: str = "node config") -> FactoryConfig:
        values = {}
        for key in NODE_CONFIG_KEYS:
            value = config.get(key, "")
            if not isinstance(value, str):
                raise UsageError(f"{source}: {key!r} must be a string, got {value!r}")
            values[key] = value.strip()
        if not values["data-path"]:
            raise UsageError(f"{source}: 'data-path' is not set (flower-supernode --node-config 'data-path=\"...\"')")
        factory_id = values["factory-id"] or Path(values["data-path"]).stem
        check_factory_id(factory_id)
        return cls(values["data-path"], factory_id, values["target"], tuple(split_names(values["features"])),
                   values["key-fingerprint"].lower())


# --- keys ---------------------------------------------------------------------------------------------------


def load_public_key_only(path: str | os.PathLike[str]) -> PaillierPublicKey:
    """Load the consortium's public key for the aggregator, refusing a private key file.

    :func:`hefed.load_public_key` accepts a private key file and keeps its public
    half; here the aggregator must never be handed one, so such a file is an error.
    """
    if not str(path):
        raise UsageError("no public key given (run config 'public-key', or --public-key)")
    obj = read_json_object(path, "public key")
    if {"p", "q", "pub", "lambda", "mu"} & set(obj) or "decrypt" in (obj.get("key_ops") or []):
        raise InsecureKeyError(
            f"{path}: this is a private key; the aggregator and every Flower process get only the "
            "public key (public_key.json). Keep the private key with the key holder."
        )
    return load_public_key(path)


def public_key_to_request(public_key: PaillierPublicKey) -> dict[str, str]:
    """The key's part of a request: ``n`` in base64url and its fingerprint."""
    return {"public-key": int_to_base64(public_key.n), "key-fingerprint": key_fingerprint(public_key)}


def public_key_from_request(request: Mapping[str, Any]) -> PaillierPublicKey:
    """The public key a request carries, checked against the fingerprint sent with it."""
    text = request.get("public-key")
    if not isinstance(text, str) or not text or len(text) > MAX_BITS:
        raise InvalidFileError("request: 'public-key' missing or not a base64url string")
    try:
        n = base64_to_int(text)
    except Exception:
        raise InvalidFileError("request: 'public-key' is not valid base64url") from None
    if n.bit_length() < MIN_TEST_BITS or n % 2 == 0:
        raise InvalidFileError("request: 'public-key' is not a valid Paillier modulus")
    public_key = PaillierPublicKey(n)
    if request.get("key-fingerprint") != key_fingerprint(public_key):
        raise KeyMismatchError("request: 'key-fingerprint' does not match the public key sent")
    return public_key


# --- factory side -------------------------------------------------------------------------------------------


def make_request(kind: str, public_key: PaillierPublicKey, model: LinearModel | None = None) -> dict[str, str]:
    """The request record the aggregator sends to every factory."""
    if kind not in KINDS:
        raise UsageError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "evaluation" and model is None:
        raise UsageError("an evaluation federation needs the global model (run config 'model')")
    return {
        "kind": kind,
        **public_key_to_request(public_key),
        "model": json.dumps(model.to_dict(), allow_nan=False) if kind == "evaluation" and model else "",
    }


def make_bundle(request: Mapping[str, Any], factory: FactoryConfig, settings: RunSettings) -> Bundle:
    """Compute and encrypt this factory's bundle with the library, as ``hefed encrypt`` / ``hefed evaluate`` do."""
    kind = request.get("kind")
    if kind not in KINDS:
        raise UsageError(f"request: unknown kind {kind!r}")
    public_key = public_key_from_request(request)
    if factory.key_fingerprint and factory.key_fingerprint != key_fingerprint(public_key):
        raise KeyMismatchError(
            f"the aggregator asked for encryption under key {key_fingerprint(public_key)}, but this factory "
            f"is pinned to key {factory.key_fingerprint} (node config 'key-fingerprint'); refused"
        )
    target = factory.target or settings.target
    features = list(factory.features or settings.features) or None
    if kind == "evaluation":
        text = request.get("model")
        if not isinstance(text, str) or not text:
            raise InvalidFileError("request: evaluation without a model")
        model = LinearModel.from_dict(json.loads(text), "model from the aggregator")
        data: pd.DataFrame | str = factory.data_path
        if settings.test_fraction:
            data = split_holdout(read_table(factory.data_path), settings.test_fraction, settings.seed)[1]
        return encrypt_evaluation(model, data, target or None, public_key, factory.factory_id, settings.encoding)
    if not target:
        raise UsageError("no target column: set 'target' in the run config or the factory's node config")
    return encrypt_table(
        factory.data_path, target, public_key, features, factory.factory_id, settings.encoding,
        mode=kind, ridge=settings.ridge, test_fraction=settings.test_fraction, seed=settings.seed,
        missing=settings.missing,
    ).bundle


def bundle_to_bytes(bundle: Bundle) -> bytes:
    """A bundle as it travels: the UTF-8 JSON of :meth:`Bundle.to_dict`."""
    return json.dumps(bundle.to_dict(), allow_nan=False, separators=(",", ":")).encode("utf-8")


def bundle_from_bytes(data: bytes, source: str) -> Bundle:
    """Parse and fully validate a bundle received as bytes (JSON only; nothing is unpickled)."""
    if len(data) > MAX_JSON_BYTES:
        raise InvalidFileError(f"{source}: {len(data)} bytes, larger than any bundle")
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise InvalidFileError(f"{source}: not a JSON bundle") from None
    if not isinstance(obj, dict):
        raise InvalidFileError(f"{source}: not a JSON bundle object")
    return Bundle.from_dict(obj, source)


def one_line(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """Collapse an error text to one line of at most ``limit`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def factory_reply(
    request: Mapping[str, Any], node_config: Mapping[str, Any], run_config: Mapping[str, Any]
) -> dict[str, str | bytes]:
    """Everything the ClientApp does: read its configs, compute and encrypt, and build the reply record.

    Any failure becomes an ``error`` reply naming the factory, so the aggregator
    can carry on with the others and record why this one is missing.
    """
    factory_id = str(node_config.get("factory-id") or Path(str(node_config.get("data-path", "factory"))).stem)
    try:
        factory = FactoryConfig.from_node_config(node_config)
        factory_id = factory.factory_id
        settings = RunSettings.from_config(run_config)
        bundle = make_bundle(request, factory, settings)
        return {"status": "ok", "factory-id": factory_id, "bundle": bundle_to_bytes(bundle)}
    except HefedError as exc:
        return {"status": "error", "factory-id": factory_id, "error": one_line(str(exc))}
    except Exception as exc:  # the reply must name the factory whatever went wrong
        return {"status": "error", "factory-id": factory_id, "error": one_line(f"{type(exc).__name__}: {exc}")}


# --- aggregator side ----------------------------------------------------------------------------------------


@dataclass
class Reply:
    """What came back from one SuperNode: a hefed reply record, or a Flower-level error."""

    node_id: int
    record: Mapping[str, Any] | None = None
    flower_error: str | None = None
    seconds: float | None = None  # from sending the request to receiving this reply


@dataclass
class Tally:
    """The outcome of one round: the bundles accepted, who they came from, and who is missing and why."""

    contributors: list[str]
    bundles: list[Bundle]
    missing: dict[str, str]
    unanswered_nodes: dict[str, str]
    nodes: int
    reply_seconds: dict[str, float] = field(default_factory=dict)

    def describe_missing(self) -> str:
        items = [f"{name} ({why})" for name, why in self.missing.items()]
        return "; ".join(items) if items else "none"


def _check_bundle(bundle: Bundle, factory_id: str, request: Mapping[str, Any], settings: RunSettings,
                  model: LinearModel | None) -> str | None:
    """Why ``bundle`` cannot be summed for this request, or ``None`` if it can."""
    if bundle.contributors != [factory_id]:
        return f"bundle lists contributors {bundle.contributors}, not just {factory_id!r}"
    if bundle.kind != request["kind"]:
        return f"bundle of kind {bundle.kind!r}, {request['kind']!r} was asked"
    if bundle.key_fingerprint != request["key-fingerprint"]:
        return f"encrypted for key {bundle.key_fingerprint}, not the consortium key {request['key-fingerprint']}"
    if bundle.encoding != settings.encoding:
        return "encoding differs from the run's"
    if settings.target and bundle.target != settings.target:
        return f"target {bundle.target!r}, the run asks for {settings.target!r}"
    if settings.features and set(bundle.features) != set(settings.features):
        return f"features {sorted(bundle.features)} differ from the run's {sorted(settings.features)}"
    if model is not None and bundle.parameters.get("model_digest") != model.digest():
        return "evaluated a different model"
    return None


def tally(replies: Iterable[Reply], sent_to: Sequence[int], request: Mapping[str, Any], settings: RunSettings,
          model: LinearModel | None = None) -> Tally:
    """Sort replies into accepted bundles and missing factories (with reasons).

    A factory is left out, and named with the reason, when its SuperNode did not
    answer in time, answered with an error, sent an invalid bundle or one that
    does not match the request, claimed a factory id another node also claimed,
    or sent a bundle whose schema differs from the others' (the reference is the
    first valid bundle in factory-id order). The accepted bundles are in
    factory-id order, so the aggregate is the same whichever node answers first.
    """
    by_node: dict[int, Reply] = {}
    for reply in replies:
        by_node.setdefault(reply.node_id, reply)
    missing: dict[str, str] = {}
    unanswered: dict[str, str] = {}
    latency: dict[str, float] = {}
    candidates: dict[str, list[bytes]] = {}
    for node_id in sent_to:
        reply = by_node.get(node_id)
        label = f"node {node_id}"
        if reply is None:
            unanswered[label] = f"no answer within {settings.timeout:g} s"
            continue
        record = reply.record
        if record is None:
            unanswered[label] = one_line(reply.flower_error or "error without a reason")
            continue
        factory_id = record.get("factory-id")
        try:
            check_factory_id(factory_id)
        except UsageError:
            unanswered[label] = "reply without a valid factory id"
            continue
        if reply.seconds is not None:
            latency[factory_id] = round(reply.seconds, 3)
        if record.get("status") == "error":
            missing[factory_id] = f"error: {one_line(str(record.get('error', '')))}"
            continue
        data = record.get("bundle")
        if record.get("status") != "ok" or not isinstance(data, bytes):
            missing[factory_id] = "malformed reply"
            continue
        candidates.setdefault(factory_id, []).append(data)

    accepted: list[tuple[str, Bundle]] = []
    for factory_id in sorted(candidates):
        if len(candidates[factory_id]) > 1 or factory_id in missing:
            missing[factory_id] = "factory id claimed by more than one SuperNode; all its replies left out"
            continue
        try:
            bundle = bundle_from_bytes(candidates[factory_id][0], f"bundle from {factory_id}")
        except HefedError as exc:
            missing[factory_id] = f"invalid bundle: {one_line(str(exc))}"
            continue
        problem = _check_bundle(bundle, factory_id, request, settings, model)
        if problem is None and accepted:
            diffs = accepted[0][1].schema_differences(bundle)
            problem = f"differs from {accepted[0][0]}: {'; '.join(diffs)}" if diffs else None
        if problem is not None:
            missing[factory_id] = problem
            continue
        accepted.append((factory_id, bundle))

    heard = {name for name, _ in accepted} | set(missing)
    absent = [name for name in settings.expected_factories if name not in heard]
    for name in absent:
        if len(unanswered) == 1 and len(absent) == 1:
            missing[name] = next(iter(unanswered.values()))
        elif unanswered:
            missing[name] = f"no reply (its SuperNode did not answer within {settings.timeout:g} s or left)"
        else:
            missing[name] = "its SuperNode was not connected to the SuperLink"
    if not settings.expected_factories:
        missing.update(unanswered)
    return Tally([name for name, _ in accepted], [bundle for _, bundle in accepted], dict(sorted(missing.items())),
                 unanswered, len(sent_to), dict(sorted(latency.items())))


def aggregate_tally(result: Tally, settings: RunSettings) -> Bundle:
    """The aggregate of exactly the accepted bundles, or a clear error if too few factories answered."""
    total = len(set(result.contributors) | set(result.missing)) or result.nodes
    if len(result.contributors) < settings.min_contributors:
        raise TooFewContributorsError(
            f"only {len(result.contributors)} of {total} factories contributed "
            f"({', '.join(result.contributors) or 'none'}), fewer than min-contributors = "
            f"{settings.min_contributors}; missing: {result.describe_missing()}"
        )
    return aggregate(result.bundles)


def report(result: Tally | None, settings: RunSettings | None, *, status: str, error: str | None = None,
           error_type: str | None = None, run_id: int | None = None, out: str | None = None,
           seconds: float | None = None) -> dict[str, Any]:
    """The JSON report of a federation round (what the ServerApp writes to the run config's ``report``)."""
    return {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "status": status,
        "error": error,
        "error_type": error_type,
        "run_id": run_id,
        "kind": settings.kind if settings else None,
        "min_contributors": settings.min_contributors if settings else None,
        "nodes": result.nodes if result else 0,
        "contributors": list(result.contributors) if result else [],
        "missing": dict(result.missing) if result else {},
        "unanswered_nodes": dict(result.unanswered_nodes) if result else {},
        "reply_seconds": dict(result.reply_seconds) if result else {},
        "aggregate": out,
        "seconds": seconds,
    }
