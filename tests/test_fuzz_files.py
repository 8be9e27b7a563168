"""Hostile-input fuzzing of every file hefed reads: keys, bundles of every kind, decrypted results, models.

Valid files of every kind are produced with the library from small data and a 1024-bit key, then mutated
by hypothesis:

* JSON-level: fields deleted or added, values replaced by the wrong type, huge / negative / zero integers,
  wrong format and version strings, nested garbage, ciphertexts outside [1, n²) or sharing a factor with n
  (a multiple of p or q), truncated or unpadded base64, values swapped between fields, lists shuffled;
* byte-level: truncation, bit flips, inserted binary junk, an empty file, a byte-order mark, UTF-16, deep
  nesting, trailing garbage.

Each mutated file goes through the loader and the operations that consume it (``Bundle.load`` →
``aggregate`` → ``decrypt_bundle``; ``load_decrypted`` → ``solve``; ``LinearModel.load`` → ``predict`` /
``evaluate_local``; ``ColumnSummary.load`` → ``preprocess``; ...). Every case must end in either a
:class:`hefed.errors.HefedError` with a one-line message, or a valid result: an aggregate whose ciphertexts
were changed (other than permuted, or replaced by an encryption of zero, which anyone can forge) must not
decrypt; anything loaded must round-trip. A subset runs through
the real CLI, which must exit 1 or 2 with one ``hefed: error:`` line, no traceback, no output file and no
stray temporary file.

Open library bugs the fuzzer still hits are listed in :data:`KNOWN_BUGS`: a case failing with one of those
signatures (exception type, message, file kind) is counted (``known-bug:…``) rather than failed, and each
has a strict ``xfail`` reproducer at the end of this file, so a fix turns the reproducer into an XPASS
failure (then make it a regression test and drop the ``KNOWN_BUGS`` entry). Bugs already fixed have
``test_regression_*`` tests.

Number of cases: ``HEFED_FUZZ_EXAMPLES`` (hypothesis examples per target and test). The default is small
for CI, with the same cases on every run; ``HEFED_FUZZ_EXAMPLES=2000`` is a long local run (new cases each
time, about 5 minutes for the three fuzz files). The counts are printed at the end of the module and
appended as JSON lines to the file named by ``HEFED_FUZZ_REPORT``, when set.
"""

from __future__ import annotations

import base64
import collections
import concurrent.futures
import copy
import dataclasses
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hypothesis
import numpy as np
import pandas as pd
import pytest
from cli_helpers import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kind_helpers import encrypt_coefficients, encrypt_fold_statistics, encrypt_summary, load_decrypted
from phe.util import int_to_base64

import hefed
from hefed import protocol
from hefed.data import Cleaning, preprocess
from hefed.errors import HefedError, UsageError
from hefed.primitives.paillier import decrypt_raw
from hefed.roles import decrypt_bundle, solve_auto_ridge, standardized_coefficients
from hefed.stats import CoefficientAggregate, ColumnSummary, EvaluationSums, FoldStatistics

# --------------------------------------------------------------------------------------------------
# How many cases: HEFED_FUZZ_EXAMPLES (per target and test); small by default so CI stays fast.
# --------------------------------------------------------------------------------------------------
_ENV_EXAMPLES = int(os.environ.get("HEFED_FUZZ_EXAMPLES", "0") or 0)
LONG_MODE = _ENV_EXAMPLES > 0
JSON_EXAMPLES = _ENV_EXAMPLES or 14
BYTE_EXAMPLES = _ENV_EXAMPLES or 6
#: CLI cases per command (each is a subprocess of ~2 s): 1 in CI, more in the long mode.
CLI_CASES = max(1, _ENV_EXAMPLES // 200) if LONG_MODE else 1

FUZZ_SETTINGS = dict(
    deadline=None,
    database=None,
    derandomize=not LONG_MODE,  # CI runs the same cases every time; the long mode explores
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)

TARGET = "co2_t"
FEATURES = ["coal_t", "gas_t", "power_mwh"]

#: Outcome counts of this module: {(test, target, outcome): n}; printed when the module finishes.
CASES: collections.Counter[tuple[str, str, str]] = collections.Counter()


# --------------------------------------------------------------------------------------------------
# Known library bugs (signatures tolerated by the fuzz loops; each has a strict-xfail reproducer below)
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class KnownBug:
    name: str
    exc_types: tuple[type[BaseException], ...]
    message: str  # regex searched in str(exc)
    targets: tuple[str, ...]  # the file kinds it shows on

    def matches(self, target: str, exc: BaseException) -> bool:
        return (target in self.targets and isinstance(exc, self.exc_types)
                and re.search(self.message, str(exc)) is not None)


#: Library bugs the fuzz loops tolerate while a fix is pending (each with a reproducer below). All fixed: none.
KNOWN_BUGS: list[KnownBug] = []


def known_bug(target: str, exc: BaseException) -> KnownBug | None:
    return next((bug for bug in KNOWN_BUGS if bug.matches(target, exc)), None)


# --------------------------------------------------------------------------------------------------
# The corpus: one valid file of every kind
# --------------------------------------------------------------------------------------------------
def _frame(seed: int, rows: int = 14) -> pd.DataFrame:
    """Small exact data (multiples of 1/8) with a clear linear relation."""
    rng = np.random.default_rng(seed)
    X = rng.integers(-400, 400, size=(rows, len(FEATURES))) / 8
    frame = pd.DataFrame(X, columns=FEATURES)
    frame[TARGET] = X @ np.array([2.5, 1.75, 0.5]) + 3 + rng.integers(-16, 16, size=rows) / 8
    return frame


@dataclasses.dataclass(repr=False)
class Corpus:
    root: Path
    work: Path
    public_key: Any
    private_key: Any
    frames: dict[str, pd.DataFrame]
    files: dict[str, Path]  # target name -> valid file
    bundles: dict[str, list[Path]]  # kind -> the three factories' bundles
    originals: dict[str, Any] = dataclasses.field(default_factory=dict)  # target -> loaded original
    counter: int = 0

    def __repr__(self) -> str:
        return f"Corpus({self.root})"

    def scratch(self, name: str) -> Path:
        self.counter += 1
        return self.work / f"{self.counter:06d}-{name}"


BUNDLE_KINDS = ("statistics", "evaluation", "coefficients", "fold_statistics", "summary")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, keypair) -> Corpus:
    public_key, private_key = keypair
    root = tmp_path_factory.mktemp("fuzz-corpus")
    work = root / "work"
    work.mkdir()
    frames = {f"plant-{i}": _frame(i) for i in range(3)}
    files: dict[str, Path] = {}
    bundles: dict[str, list[Path]] = {}

    hefed.save_public_key(public_key, root / "public_key.json")
    hefed.save_private_key(private_key, root / "private_key.json")
    files["public_key"] = root / "public_key.json"
    files["private_key"] = root / "private_key.json"
    frames["plant-0"].to_csv(root / "plant-0.csv", index=False)

    stats = [hefed.compute_statistics(f, TARGET, FEATURES, factory_id=k) for k, f in frames.items()]
    pooled = stats[0] + stats[1] + stats[2]
    model = hefed.solve(pooled)
    makers: dict[str, Callable[[str, pd.DataFrame], hefed.Bundle]] = {
        "statistics": lambda k, f: hefed.encrypt_statistics(f, TARGET, public_key, FEATURES, factory_id=k),
        "evaluation": lambda k, f: hefed.encrypt_evaluation(model, f, TARGET, public_key, k),
        "coefficients": lambda k, f: encrypt_coefficients(f, TARGET, public_key, FEATURES, factory_id=k),
        "fold_statistics": lambda k, f: encrypt_fold_statistics(
            f, TARGET, public_key, FEATURES, factory_id=k, folds=3, seed=7),
        "summary": lambda k, f: encrypt_summary(f, TARGET, public_key, FEATURES, factory_id=k),
    }
    decrypted_names = {"statistics": "statistics_result", "evaluation": "evaluation_result",
                       "coefficients": "coefficients_result", "fold_statistics": "fold_statistics_result",
                       "summary": "summary_result"}
    for kind, make in makers.items():
        paths = []
        for name, frame in frames.items():
            path = root / f"{name}.{kind}.bundle.json"
            make(name, frame).save(path)
            paths.append(path)
        bundles[kind] = paths
        files[f"{kind}_bundle"] = paths[0]
        aggregate = hefed.aggregate(paths)
        files[f"{kind}_aggregate"] = root / f"{kind}.aggregate.json"
        aggregate.save(files[f"{kind}_aggregate"])
        result = decrypt_bundle(aggregate, private_key, allow_unsigned=True)
        files[decrypted_names[kind]] = root / f"{kind}.decrypted.json"
        result.save(files[decrypted_names[kind]])
        if kind == "coefficients":
            files["model_averaged"] = root / "model_averaged.json"
            hefed.solve(result).save(files["model_averaged"], exact=True)
    files["model"] = root / "model.json"
    model.save(files["model"], exact=True)  # with the exact rationals, so edits to them are fuzzed too
    _add_identity_files(root, files)
    corpus = Corpus(root, work, public_key, private_key, frames, files, bundles)
    for name in files:
        corpus.originals[name] = _load_plain(name, files[name], corpus)
    return corpus


def _add_identity_files(root: Path, files: dict[str, Path]) -> None:
    """Rosters and factory identities (hefed.protocol)."""
    pub_paths = []
    for name in ("plant-0", "plant-1"):
        out = root / f"identity-{name}"
        out.mkdir()
        protocol.enroll(name, out)
        pub_paths += sorted(out.glob("*.pub.json"))
        if name == "plant-0":
            files["identity_private"] = out / "identity.key.json"
    files["identity_public"] = pub_paths[0]
    protocol.roster_add(root / "roster.json", pub_paths)
    files["roster"] = root / "roster.json"


def _report_counts() -> None:
    total = sum(CASES.values())
    by_outcome = collections.Counter()
    for (_test, _target, outcome), n in CASES.items():
        by_outcome[outcome] += n
    line = f"hefed fuzz (test_fuzz_files): {total} cases — " + ", ".join(
        f"{k}: {v}" for k, v in sorted(by_outcome.items()))
    sys.stderr.write("\n" + line + "\n")
    report = os.environ.get("HEFED_FUZZ_REPORT")
    if report:
        with open(report, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"module": "test_fuzz_files", "total": total, "by_outcome": dict(by_outcome),
                                     "cases": {"/".join(k): v for k, v in sorted(CASES.items())}}) + "\n")


@pytest.fixture(scope="module", autouse=True)
def _case_report(request):
    """Print (and record) the case counts when pytest finishes, after output capture has ended."""
    request.config.add_cleanup(_report_counts)


# --------------------------------------------------------------------------------------------------
# Loading and using each kind of file (the oracle)
# --------------------------------------------------------------------------------------------------
def _load_plain(name: str, path: Path, corpus: Corpus) -> Any:
    """The loaded original (no checks): what a mutated file is compared with."""
    if name == "public_key":
        return hefed.load_public_key(path)
    if name == "private_key":
        return hefed.load_private_key(path)
    if name.endswith(("_bundle", "_aggregate")):
        return hefed.Bundle.load(path)
    return None


def _roundtrip(obj: Any, loader: Callable[[Path], Any], corpus: Corpus) -> Any:
    """Save what was loaded and load it again: a loaded object must be writable and re-readable."""
    path = corpus.scratch("roundtrip.json")
    try:
        obj.save(path)
        return loader(path)
    finally:
        path.unlink(missing_ok=True)


def _check_decrypt(mutated: hefed.Bundle, original: hefed.Bundle, aggregate: hefed.Bundle,
                   corpus: Corpus) -> Any:
    """Decrypt an aggregate made from a mutated bundle. Changed ciphertexts must not decrypt, unless they
    were only permuted or are encryptions of zero (1, n²-1, any r^n: forgeable without the key, and a zero
    plaintext decodes to every slot's lower bound; a malicious aggregator is outside the threat model)."""
    changed = collections.Counter(mutated.ciphertexts) - collections.Counter(original.ciphertexts)
    result = decrypt_bundle(aggregate, corpus.private_key, 3, allow_unsigned=True)
    forged = [c for c in changed if decrypt_raw(corpus.private_key, c) != 0]
    if forged:
        raise AssertionError(f"an aggregate with changed ciphertexts decrypted: {type(result).__name__}")
    saved = {
        hefed.SufficientStatistics: lambda p: load_decrypted(p),
        CoefficientAggregate: lambda p: load_decrypted(p),
        FoldStatistics: lambda p: load_decrypted(p),
        EvaluationSums: EvaluationSums.load,
        ColumnSummary: ColumnSummary.load,
    }[type(result)]
    _roundtrip(result, saved, corpus)
    return result


def _use_statistics(stats: Any, corpus: Corpus) -> None:
    model = hefed.solve(stats)
    model.predict(corpus.frames["plant-0"][FEATURES])
    if model.has_inference:
        model.summary()
        standardized_coefficients(model, stats)
    hefed.LinearModel.from_dict(json.loads(json.dumps(model.to_dict())))


def run_target(name: str, path: Path, corpus: Corpus) -> str:
    """Run the loader and consumers of a file of kind ``name``; return 'ok' or raise."""
    frame = corpus.frames["plant-0"]
    if name == "public_key":
        key = hefed.load_public_key(path)
        assert key.n.bit_length() >= 256
        hefed.encrypt_statistics(frame, TARGET, key, FEATURES, factory_id="plant-0")
    elif name == "private_key":
        path.chmod(0o600)
        key = hefed.load_private_key(path)
        assert key.p * key.q == key.public_key.n
        with pytest.raises(hefed.errors.InsecureKeyError):
            hefed.load_public_key(path)  # a private key file never serves as a public key
        decrypt_bundle(hefed.Bundle.load(corpus.files["statistics_aggregate"]), key, 3, allow_unsigned=True)
    elif name.endswith("_bundle"):
        kind = name[: -len("_bundle")]
        bundle = hefed.Bundle.load(path)
        _roundtrip(bundle, hefed.Bundle.load, corpus)
        aggregate = hefed.aggregate([path, *corpus.bundles[kind][1:]])
        _check_decrypt(bundle, corpus.originals[name], aggregate, corpus)
    elif name.endswith("_aggregate"):
        bundle = hefed.Bundle.load(path)
        _roundtrip(bundle, hefed.Bundle.load, corpus)
        hefed.aggregate([bundle])
        _check_decrypt(bundle, corpus.originals[name], bundle, corpus)
    elif name == "statistics_result":
        stats = load_decrypted(path)
        assert isinstance(stats, hefed.SufficientStatistics)
        _roundtrip(stats, load_decrypted, corpus)
        _use_statistics(stats, corpus)
    elif name == "fold_statistics_result":
        folds = load_decrypted(path)
        _roundtrip(folds, load_decrypted, corpus)
        if isinstance(folds, FoldStatistics):
            solve_auto_ridge(folds, [0.5, 50.0])
        else:
            _use_statistics(folds, corpus)
    elif name == "coefficients_result":
        agg = load_decrypted(path)
        _roundtrip(agg, load_decrypted, corpus)
        model = hefed.solve(agg)
        model.predict(frame[FEATURES])
        hefed.LinearModel.from_dict(json.loads(json.dumps(model.to_dict())))
    elif name == "evaluation_result":
        sums = EvaluationSums.load(path)
        metrics = sums.metrics()
        json.dumps(metrics, allow_nan=True)
        _roundtrip(sums, EvaluationSums.load, corpus)
    elif name == "summary_result":
        summary = ColumnSummary.load(path)
        summary.table()
        _roundtrip(summary, ColumnSummary.load, corpus)
        preprocess(frame, TARGET, FEATURES, Cleaning(summary=summary, impute="mean", max_z=3.0))
    elif name in ("model", "model_averaged"):
        model = hefed.LinearModel.load(path)
        _roundtrip(model, hefed.LinearModel.load, corpus)
        if list(model.feature_names_in_) and all(f in frame.columns for f in model.feature_names_in_):
            model.predict(frame)
            hefed.evaluate_local(model, frame, TARGET)
        if model.has_inference:
            model.summary()
    elif name == "roster":
        from hefed.protocol import Roster

        roster = Roster.load(path)
        roster.digest()
        _roundtrip(roster, Roster.load, corpus)
    elif name == "identity_public":
        from hefed.protocol import load_member

        load_member(path)
    elif name == "identity_private":
        from hefed.protocol import load_identity

        path.chmod(0o600)
        load_identity(path)
    else:  # pragma: no cover - a target without an oracle is a bug in this file
        raise AssertionError(f"no oracle for {name}")
    return "ok"


def classify(test: str, name: str, path: Path, corpus: Corpus) -> str:
    """Run one case: 'ok', 'refused' (a HefedError with a one-line message) or 'known-bug:NAME'.

    Anything else (another exception, a multi-line message, a changed aggregate that decrypts) fails.
    """
    try:
        outcome = run_target(name, path, corpus)
    except HefedError as exc:
        message = str(exc)
        assert message and "\n" not in message and "\r" not in message, f"{name}: message not one line: {exc!r}"
        outcome = "refused"
    except (AssertionError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - the point of the fuzzer
        bug = known_bug(name, exc)
        if bug is None:
            raise AssertionError(
                f"{name}: {type(exc).__name__} instead of a HefedError:\n{traceback.format_exc()}"
            ) from exc
        outcome = f"known-bug:{bug.name}"
    CASES[(test, name, outcome)] += 1
    return outcome


# --------------------------------------------------------------------------------------------------
# Mutations
# --------------------------------------------------------------------------------------------------
def _all_paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    paths = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            paths += _all_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            paths += _all_paths(value, (*prefix, i))
    return paths


def _get(node: Any, path: tuple) -> Any:
    for step in path:
        node = node[step]
    return node


def _set(root: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    _get(root, path[:-1])[path[-1]] = value
    return root


def _b64_ct(value: int, width: int) -> str:
    return base64.b64encode(value.to_bytes(max(width, (value.bit_length() + 7) // 8, 1), "big")).decode("ascii")


SPECIAL_STRINGS = [
    "", " ", "0", "-1", "1", "1.5", "-0", "1e400", "-1e400", "1e-400", "1/0", "0/0", "3/-4", "nan", "inf", "-inf",
    "NaN", "1" + "0" * 400, "-" + "9" * 4000, "1" * 5000, "--5", "0x10", "1_000", " 1/2 ", "AA==", "====", "A",
    "\x00", "\ud800", "é", "\u202e", "a\nb", "hefed.bundle", "hefed.statistics", "hefed.model", "DAJ",
    "statistics", "evaluation", "coefficients", "fold_statistics", "summary", "(intercept)", TARGET, *FEATURES,
    "0" * 32, "f" * 32, "g" * 32, "hefed-fixed-binary-v1", "hefed-fixed-binary-v2",
]
SPECIAL_INTS = [0, 1, -1, 2, 3, 7, 72, 100, 101, 4096, 4097, 2**31, 2**32, 2**53 + 1, 2**63, -(2**63), 2**64,
                10**100, -(10**300), 2**4096, 10**3999]
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.sampled_from(SPECIAL_INTS), st.integers(),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([1e308, -1e308, 5e-324, 0.5, 1.0, -0.0]),
    st.sampled_from(SPECIAL_STRINGS), st.text(max_size=12),
)
JSON_GARBAGE = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


def _crypto_values(corpus: Corpus) -> list[str]:
    """Ciphertexts and moduli that are wrong in interesting ways."""
    n, p, q = corpus.public_key.n, corpus.private_key.p, corpus.private_key.q
    nsq = n * n
    width = (nsq.bit_length() + 7) // 8
    values = [0, 1, 2, n, 2 * n, p, q, 5 * p, 3 * q, p * p, nsq - 1, nsq, nsq + 1, 2**2048, 2**2500]
    cts = [_b64_ct(v, width) for v in values]
    cts.append(base64.b64encode(b"\x00" * width).decode())
    cts.append(base64.b64encode(b"\xff" * (width + 1)).decode())
    moduli = [int_to_base64(v) for v in (n + 2, n - 2, p, p * p, 2**1023 + 1, 3 * n, n * n, 2**300 - 1,
                                         2**9000 + 1, 15)]
    return cts + moduli


def _near_values(value: Any, corpus: Corpus) -> list[Any]:
    """Values close to the original: off by one, sign flipped, truncated, re-typed."""
    if isinstance(value, bool):
        return [not value, int(value), str(value).lower(), None]
    if isinstance(value, int):
        return [value + 1, value - 1, -value, value * 2**64, float(value) if abs(value) < 2**1000 else 1e308,
                str(value), 0, -1, None, True]
    if isinstance(value, float):
        return [-value, value * 1e300, value + 0.5, int(value) if math.isfinite(value) else 0, str(value)]
    if isinstance(value, str):
        out = [value[:-1], value[: len(value) // 2], value + value, value.upper(), value + "=", value + "A",
               value.replace("=", ""), value.replace("/", "_").replace("+", "-"), " " + value, value + "\n",
               [value], {"value": value}, len(value)]
        if value[:1].isdigit() or value[:1] == "-":
            out += ["-" + value.lstrip("-"), value + "0" * 300, value + "e400", value + "/0", value + ".5"]
        return out
    if isinstance(value, list):
        return [[], value[:-1], value + value[-1:], list(reversed(value)), value * 3, {"0": value}, [value],
                len(value)] if value else [[None], {}, 0]
    if isinstance(value, dict):
        return [{}, list(value.values()), list(value), {**value, "extra": 1}]
    return [0, "", [], {}]


@st.composite
def json_mutation(draw, obj: Any, corpus: Corpus) -> tuple[Any, list[str]]:
    """1-3 structural mutations of a JSON document; returns (mutated document, description)."""
    obj = copy.deepcopy(obj)
    log = []
    crypto = _crypto_values(corpus)
    for _ in range(draw(st.integers(1, 3))):
        paths = _all_paths(obj)
        inner = [p for p in paths if p]
        op = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add", "swap", "shuffle"]))
        if op == "replace" and inner:
            path = draw(st.sampled_from(inner))
            old = _get(obj, path)
            new = draw(st.one_of(st.sampled_from(_near_values(old, corpus)), JSON_GARBAGE, st.sampled_from(crypto)))
            obj = _set(obj, path, new)
            log.append(f"replace {path!r}: {str(old)[:40]!r} -> {str(new)[:60]!r}")
        elif op == "delete" and inner:
            path = draw(st.sampled_from(inner))
            del _get(obj, path[:-1])[path[-1]]
            log.append(f"delete {path!r}")
        elif op == "add":
            containers = [p for p in paths if isinstance(_get(obj, p), (dict, list))]
            if not containers:
                continue
            path = draw(st.sampled_from(containers))
            node = _get(obj, path)
            value = draw(JSON_GARBAGE)
            if isinstance(node, dict):
                key = draw(st.one_of(st.sampled_from([k.upper() for k in node] + [k + " " for k in node] or ["x"]),
                                     st.text(max_size=8)))
                node[key] = value
            else:
                node.insert(draw(st.integers(0, len(node))), value)
            log.append(f"add at {path!r}: {str(value)[:60]!r}")
        elif op == "swap" and len(inner) >= 2:
            a, b = draw(st.sampled_from(inner)), draw(st.sampled_from(inner))
            if a[: len(b)] == b or b[: len(a)] == a:
                continue
            va, vb = copy.deepcopy(_get(obj, a)), copy.deepcopy(_get(obj, b))
            obj = _set(obj, a, vb)
            obj = _set(obj, b, va)
            log.append(f"swap {a!r} <-> {b!r}")
        elif op == "shuffle":
            lists = [p for p in paths if isinstance(_get(obj, p), list) and len(_get(obj, p)) > 1]
            if lists:
                path = draw(st.sampled_from(lists))
                items = _get(obj, path)
                order = draw(st.permutations(range(len(items))))
                obj = _set(obj, path, [items[i] for i in order])
                log.append(f"shuffle {path!r}")
    return obj, log


BOM = b"\xef\xbb\xbf"


@st.composite
def byte_mutation(draw, raw: bytes) -> tuple[bytes, str]:
    """A byte-level corruption of a serialised file."""
    op = draw(st.sampled_from(["truncate", "bitflip", "insert", "overwrite", "empty", "bom", "double-bom",
                               "utf16", "deep-list", "deep-object", "trailing", "binary", "whitespace",
                               "nul", "latin1"]))
    if op == "truncate":
        k = draw(st.integers(0, len(raw) - 1))
        return raw[:k], f"truncate to {k} bytes"
    if op == "bitflip":
        data = bytearray(raw)
        flips = draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 7)), min_size=1, max_size=8))
        for pos, bit in flips:
            data[pos] ^= 1 << bit
        return bytes(data), f"flip bits {flips}"
    if op in ("insert", "overwrite"):
        junk = draw(st.binary(min_size=1, max_size=40))
        pos = draw(st.integers(0, len(raw)))
        end = pos if op == "insert" else min(len(raw), pos + len(junk))
        return raw[:pos] + junk + raw[end:], f"{op} {junk!r} at {pos}"
    if op == "empty":
        return b"", "empty file"
    if op == "bom":
        return BOM + raw, "byte-order mark"  # valid: UTF-8 with BOM is accepted
    if op == "double-bom":
        return BOM + BOM + raw, "two byte-order marks"
    if op == "utf16":
        return raw.decode("utf-8").encode("utf-16"), "UTF-16"
    if op == "deep-list":
        depth = draw(st.sampled_from([1000, 100_000]))
        return b"[" * depth + b"]" * depth, f"list nested {depth} deep"
    if op == "deep-object":
        depth = draw(st.sampled_from([1000, 50_000]))
        return b'{"a":' * depth + b"1" + b"}" * depth, f"object nested {depth} deep"
    if op == "trailing":
        return raw + draw(st.sampled_from([b"{}", b"x", b"\x00", b",", b"]"])), "trailing garbage"
    if op == "binary":
        return draw(st.binary(min_size=1, max_size=200)), "binary junk"
    if op == "whitespace":
        return b" \n\t" + raw + b"\n\n", "surrounding whitespace"  # valid
    if op == "nul":
        return raw.replace(b'"', b'"\x00', 1), "NUL inside a string"
    return raw.decode("utf-8").encode("latin-1", "replace") + "é".encode("latin-1"), "latin-1 bytes"


TARGETS = [
    "public_key", "private_key",
    *[f"{kind}_bundle" for kind in BUNDLE_KINDS], *[f"{kind}_aggregate" for kind in BUNDLE_KINDS],
    "statistics_result", "fold_statistics_result", "coefficients_result", "evaluation_result", "summary_result",
    "model", "model_averaged", "roster", "identity_public", "identity_private",
]


def _target_file(corpus: Corpus, name: str) -> Path:
    if name not in corpus.files:
        pytest.skip(f"{name}: not available in this version of hefed")
    return corpus.files[name]


def _write_case(corpus: Corpus, name: str, data: bytes) -> Path:
    suffix = {"private_key": "private_key.json", "identity_private": "identity.key.json"}.get(name, f"{name}.json")
    path = corpus.scratch(suffix)
    path.write_bytes(data)
    if name in ("private_key", "identity_private"):
        path.chmod(0o600)
    return path


# --------------------------------------------------------------------------------------------------
# The fuzz tests
# --------------------------------------------------------------------------------------------------
def test_every_valid_file_passes_its_oracle(corpus):
    """The unmutated corpus itself: every file kind is there (none is fuzzed by skipping it), every file loads
    and every consumer succeeds."""
    assert sorted(set(TARGETS) - set(corpus.files)) == []
    for name in TARGETS:
        assert classify("valid", name, corpus.files[name], corpus) == "ok", name


@pytest.mark.parametrize("name", TARGETS)
@settings(max_examples=JSON_EXAMPLES, **FUZZ_SETTINGS)
@given(data=st.data())
def test_json_mutations(corpus, name, data):
    source = _target_file(corpus, name)
    original = json.loads(source.read_text(encoding="utf-8"))
    mutated, log = data.draw(json_mutation(original, corpus), label="mutation")
    hypothesis.note(f"mutations of {name}: {log}")
    try:
        text = json.dumps(mutated)
    except ValueError:  # an integer beyond Python's str limit: cannot even be written
        return
    path = _write_case(corpus, name, text.encode("utf-8"))
    try:
        classify("json", name, path, corpus)
    finally:
        path.unlink(missing_ok=True)


@pytest.mark.parametrize("name", TARGETS)
@settings(max_examples=BYTE_EXAMPLES, **FUZZ_SETTINGS)
@given(data=st.data())
def test_byte_mutations(corpus, name, data):
    source = _target_file(corpus, name)
    raw, what = data.draw(byte_mutation(source.read_bytes()), label="corruption")
    hypothesis.note(f"corruption of {name}: {what}")
    path = _write_case(corpus, name, raw)
    try:
        outcome = classify("bytes", name, path, corpus)
    finally:
        path.unlink(missing_ok=True)
    if what in ("byte-order mark", "surrounding whitespace"):
        assert outcome == "ok", f"{name}: a valid file with {what} was refused"


def test_huge_and_special_files_are_refused_without_reading(corpus):
    """Sparse files beyond the size limit, FIFOs, directories, /dev/zero: refused, never read, never hung."""
    big = corpus.scratch("huge.json")
    with open(big, "wb") as handle:
        handle.truncate(257 * 1024 * 1024)  # sparse: costs no disk
    fifo = corpus.scratch("fifo.json")
    os.mkfifo(fifo)
    directory = corpus.scratch("dir.json")
    directory.mkdir()
    missing = corpus.scratch("missing.json")
    loaders = [hefed.load_public_key, hefed.Bundle.load, load_decrypted, hefed.LinearModel.load,
               EvaluationSums.load, ColumnSummary.load, hefed.SufficientStatistics.load]
    for path in (big, fifo, directory, missing, Path("/dev/zero"), Path("/dev/null")):
        for loader in loaders:
            with pytest.raises(HefedError):
                loader(path)
            CASES[("special", loader.__qualname__, "refused")] += 1
    for path in (big, fifo, missing):
        with pytest.raises(HefedError):
            hefed.load_private_key(path, allow_insecure_permissions=True)
    big.unlink()
    fifo.unlink()


@pytest.mark.parametrize("name", TARGETS)
def test_every_kind_refuses_empty_binary_utf16_and_deeply_nested_files(corpus, name):
    source = _target_file(corpus, name)
    for raw in (b"", b"\x00" * 64, bytes(range(256)), b"\x89PNG\r\n\x1a\n" + os.urandom(64),
                source.read_text(encoding="utf-8").encode("utf-16"), b"[" * 200_000 + b"]" * 200_000,
                b'{"a":' * 100_000 + b"1" + b"}" * 100_000, b"null", b"[]", b'"text"', b"12", b"{}"):
        path = _write_case(corpus, name, raw)
        assert classify("explicit", name, path, corpus) == "refused", raw[:20]
        path.unlink()


def _n_p_q(corpus: Corpus) -> tuple[int, int, int]:
    return corpus.public_key.n, corpus.private_key.p, corpus.private_key.q


@pytest.mark.parametrize("value", ["zero", "n", "n_squared", "beyond_n_squared", "multiple_of_p", "multiple_of_q",
                                   "p_times_q_squared"])
def test_ciphertexts_outside_the_group_are_refused(corpus, value):
    n, p, q = _n_p_q(corpus)
    c = {"zero": 0, "n": n, "n_squared": n * n, "beyond_n_squared": n * n + 7, "multiple_of_p": 12345 * p,
         "multiple_of_q": q * (p + 2), "p_times_q_squared": p * q * q}[value]
    width = ((n * n).bit_length() + 7) // 8
    for name in ("statistics_bundle", "evaluation_aggregate", "summary_aggregate"):
        path = _mutated_copy(corpus, name, lambda o: o["ciphertexts"].__setitem__(-1, _b64_ct(c, width)))
        with pytest.raises(hefed.errors.InvalidFileError, match="ciphertext"):
            hefed.Bundle.load(path)
        CASES[("explicit", name, "refused")] += 1


@pytest.mark.parametrize("modulus", ["prime", "square", "even", "small", "huge", "multiple_of_3", "one"])
def test_public_keys_whose_n_is_not_a_paillier_modulus_are_refused(corpus, modulus):
    n, p, _q = _n_p_q(corpus)
    value = {"prime": p, "square": p * p, "even": n * 2, "small": 15 * 2**100 + 1, "huge": 2**8200 + 1,
             "multiple_of_3": 3 * p, "one": 1}[modulus]
    for name in ("public_key", "private_key"):
        def edit(o: dict) -> None:
            (o["pub"] if "pub" in o else o)["n"] = int_to_base64(value)
        path = _mutated_copy(corpus, name, edit)
        with pytest.raises(hefed.errors.InvalidFileError):
            (hefed.load_private_key if name == "private_key" else hefed.load_public_key)(path)
        CASES[("explicit", name, "refused")] += 1


def test_private_and_public_halves_that_do_not_match_are_refused(corpus, other_keypair):
    n, p, q = _n_p_q(corpus)
    other = other_keypair[1]
    cases = {
        "p from another key": (lambda o: o.__setitem__("p", int_to_base64(other.p)), hefed.errors.KeyMismatchError),
        "pub of another key": (lambda o: o["pub"].__setitem__("n", int_to_base64(other.public_key.n)),
                               hefed.errors.KeyMismatchError),
        "p = q": (lambda o: o.__setitem__("q", o["p"]), hefed.errors.HefedError),
        "p = 1, q = n": (lambda o: (o.__setitem__("p", int_to_base64(1)), o.__setitem__("q", int_to_base64(n))),
                         hefed.errors.HefedError),
        "p and q swapped": (lambda o: (o.__setitem__("p", int_to_base64(q)), o.__setitem__("q", int_to_base64(p))),
                            None),
    }
    for label, (edit, error) in cases.items():
        path = _mutated_copy(corpus, "private_key", edit)
        if error is None:
            key = hefed.load_private_key(path)
            assert key.p * key.q == n, label
        else:
            with pytest.raises(error):
                hefed.load_private_key(path)
        CASES[("explicit", "private_key", "ok" if error is None else "refused")] += 1


@pytest.mark.parametrize("name", [t for t in TARGETS if t not in ("public_key", "private_key")])
@pytest.mark.parametrize("version", [0, 99, "1", 1.5, None, -1, 2**64])
def test_unknown_format_versions_are_refused(corpus, name, version):
    source = _target_file(corpus, name)
    if "version" not in json.loads(source.read_text(encoding="utf-8")):
        pytest.skip(f"{name} has no version field")
    path = _mutated_copy(corpus, name, lambda o: o.__setitem__("version", version))
    assert classify("explicit", name, path, corpus) == "refused"


# --------------------------------------------------------------------------------------------------
# The real CLI on a subset: one line on stderr, exit 1 or 2, no output file, no stray temporary file
# --------------------------------------------------------------------------------------------------
def _cli_command(name: str, mutated: Path, corpus: Corpus, out: Path) -> list[str]:
    root, files = corpus.root, corpus.files
    csv = root / "plant-0.csv"
    if name == "public_key":
        return ["encrypt", csv, "--target", TARGET, "--public-key", mutated, "--factory-id", "plant-0", "--out", out]
    if name == "private_key":
        return ["decrypt", "--allow-unsigned", files["statistics_aggregate"], "--private-key", mutated, "--out", out]
    if name.endswith("_bundle"):
        kind = name[: -len("_bundle")]
        return ["aggregate", mutated, *corpus.bundles[kind][1:], "--out", out]
    if name.endswith("_aggregate"):
        return ["decrypt", "--allow-unsigned", mutated, "--private-key", files["private_key"], "--out", out]
    if name in ("statistics_result", "coefficients_result"):
        return ["solve", mutated, "--out", out]
    if name == "fold_statistics_result":
        return ["solve", mutated, "--ridge", "auto", "--alphas", "0.5,50", "--out", out]
    if name in ("model", "model_averaged"):
        return ["evaluate", csv, "--model", mutated, "--target", TARGET, "--public-key", files["public_key"],
                "--factory-id", "plant-0", "--out", out]
    if name == "summary_result":
        return ["encrypt", csv, "--target", TARGET, "--public-key", files["public_key"], "--factory-id", "plant-0",
                "--summary-file", mutated, "--impute", "mean", "--out", out]
    raise KeyError(name)


#: Each command the CLI reads a fuzzed file with; CI runs the first six (a subprocess costs ~2 s).
CLI_TARGETS_ALL = ["public_key", "private_key", "statistics_bundle", "evaluation_aggregate", "statistics_result",
                   "model", "summary_result", "coefficients_result", "fold_statistics_aggregate", "summary_bundle"]
CLI_TARGETS = CLI_TARGETS_ALL if LONG_MODE else CLI_TARGETS_ALL[:6]


def run_cli_quiet(args: list[Any], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=cwd, timeout=timeout)  # in-process (serialised), see cli_helpers


def assert_one_line_error(result: subprocess.CompletedProcess, codes: tuple[int, ...] = (1, 2)) -> str:
    context = f"exit {result.returncode}\nstdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-3000:]}"
    assert result.returncode in codes, context
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, context
    lines = result.stderr.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("hefed: error:"), context
    return lines[0]


def _refused_case(name: str, corpus: Corpus, rng: random.Random) -> tuple[Path, HefedError, str]:
    """A mutation of ``name`` that the library refuses (found by the same mutation engine)."""
    source = _target_file(corpus, name)
    original = json.loads(source.read_text(encoding="utf-8"))
    for attempt in range(200):
        seed = rng.getrandbits(32)
        if attempt % 3 == 2:
            raw, what = _byte_case(source, seed)
        else:
            mutated, log = _json_case(original, corpus, seed)
            raw, what = json.dumps(mutated).encode(), "; ".join(log)
        path = _write_case(corpus, name, raw)
        try:
            run_target(name, path, corpus)
        except HefedError as exc:
            return path, exc, what
        except Exception:  # noqa: BLE001 - known bugs: not this test's business
            pass
        path.unlink(missing_ok=True)
    pytest.fail(f"no refused mutation of {name} found")


def _json_case(original: Any, corpus: Corpus, seed: int) -> tuple[Any, list[str]]:
    return _draw_with_seed(json_mutation(original, corpus), seed)


def _byte_case(source: Path, seed: int) -> tuple[bytes, str]:
    return _draw_with_seed(byte_mutation(source.read_bytes()), seed)


def _draw_with_seed(strategy: st.SearchStrategy, seed: int) -> Any:
    """One draw of a strategy, reproducibly from ``seed`` (outside @given)."""
    box: list[Any] = []

    @hypothesis.seed(seed)
    @settings(max_examples=1, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def draw(value):
        box.append(value)

    draw()
    return box[0]


def test_cli_refuses_mutated_files_in_one_line(corpus):
    rng = random.Random(0 if not LONG_MODE else time.time_ns())
    cases = []
    for name in CLI_TARGETS:
        for i in range(CLI_CASES):
            mutated, exc, what = _refused_case(name, corpus, rng)
            folder = corpus.scratch(f"cli-{name}-{i}")
            folder.mkdir()
            out = folder / "out.json"
            cases.append((name, mutated, exc, what, folder, out, _cli_command(name, mutated, corpus, out)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda case: run_cli_quiet(case[6], case[4]), cases))
    failures = []
    for (name, mutated, exc, what, folder, out, _args), result in zip(cases, results, strict=True):
        try:
            line = assert_one_line_error(result)
            assert result.returncode == (2 if isinstance(exc, UsageError) else 1), (result.returncode, exc)
            assert not out.exists(), "output file written"
            assert not list(folder.glob(".*.tmp")) and not list(mutated.parent.glob(".*.tmp")), "stray temp file"
            CASES[("cli", name, "refused")] += 1
            assert line
        except AssertionError as error:
            failures.append(f"{name} ({what}; library: {type(exc).__name__}: {exc}): {error}")
        mutated.unlink(missing_ok=True)
    assert not failures, "\n\n".join(failures)


# --------------------------------------------------------------------------------------------------
# Bugs the fuzzer found. Fixed ones are regression tests; open ones would be strict xfails (a fix makes them
# XPASS, which fails: then turn them into regression tests and drop their KNOWN_BUGS entry).
# --------------------------------------------------------------------------------------------------
def _mutated_copy(corpus: Corpus, name: str, edit: Callable[[dict], None]) -> Path:
    obj = json.loads(corpus.files[name].read_text(encoding="utf-8"))
    edit(obj)
    return _write_case(corpus, name, json.dumps(obj).encode())


def _only_hefed_errors(fn: Callable[[], Any]) -> None:
    """The call either succeeds or raises a HefedError (anything else fails the test)."""
    try:
        fn()
    except HefedError:
        pass


@pytest.mark.parametrize("name, edit, use", [
    ("model", lambda o: o["exact"]["coef"].__setitem__(0, "1e400"), lambda p: hefed.LinearModel.load(p)),
    ("model", lambda o: o["exact"].__setitem__("sse", "1" + "0" * 400), lambda p: hefed.LinearModel.load(p)),
    ("coefficients_result", lambda o: o.__setitem__("weighted_intercept", "1e400"),
     lambda p: hefed.solve(load_decrypted(p))),
    ("evaluation_result", lambda o: o["exact"].__setitem__("sse", "1e400"),
     lambda p: EvaluationSums.load(p).metrics()),
    ("summary_result", lambda o: o["columns"][FEATURES[0]].__setitem__("sum", "1e400"),
     lambda p: ColumnSummary.load(p).table()),
], ids=["model-coef", "model-sse", "coefficients_result", "evaluation_result", "summary_result"])
def test_regression_rational_beyond_float_range(corpus, name, edit, use):
    """Found by the fuzzer: rationals beyond float range were accepted, then float() overflowed."""
    path = _mutated_copy(corpus, name, edit)
    _only_hefed_errors(lambda: use(path))


@pytest.mark.parametrize("name, field, use", [
    ("model", "contributors", hefed.LinearModel.load),
    ("coefficients_result", "contributors", load_decrypted),
    ("evaluation_result", "features", EvaluationSums.load),
    ("evaluation_result", "contributors", EvaluationSums.load),
    ("summary_result", "contributors", ColumnSummary.load),
], ids=["model", "coefficients_result", "evaluation_result-features", "evaluation_result", "summary_result"])
def test_regression_number_where_a_list_is_expected(corpus, name, field, use):
    """Found by the fuzzer: 'contributors'/'features' given as a number were iterated (TypeError)."""
    path = _mutated_copy(corpus, name, lambda o: o.__setitem__(field, 5))
    _only_hefed_errors(lambda: use(path))


@pytest.mark.parametrize("name, edit, use", [
    ("evaluation_result", lambda o: o["exact"].__setitem__("sse", "-5"), lambda p: EvaluationSums.load(p).metrics()),
    ("summary_result", lambda o: o["columns"][FEATURES[0]].__setitem__("sum_sq", "-1"),
     lambda p: ColumnSummary.load(p).table()),
], ids=["evaluation_result", "summary_result"])
def test_regression_negative_sum_of_squares(corpus, name, edit, use):
    """Found by the fuzzer: negative sums of squares were accepted, then sqrt() failed (math domain error)."""
    path = _mutated_copy(corpus, name, edit)
    _only_hefed_errors(lambda: use(path))


def _finishes_within(calls: list[Callable[[], Any]], seconds: float) -> list[bool]:
    """Run each call in a forked child; which ones finished (success or HefedError) within ``seconds``."""
    pids = []
    for call in calls:
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                call()
            except HefedError:
                pass
            except BaseException:  # noqa: BLE001
                code = 3
            os._exit(code)
        pids.append(pid)
    deadline = time.monotonic() + seconds
    finished = {}
    while len(finished) < len(pids) and time.monotonic() < deadline:
        for pid in pids:
            if pid not in finished and os.waitpid(pid, os.WNOHANG)[0]:
                finished[pid] = True
        time.sleep(0.02)
    for pid in pids:
        if pid not in finished:
            os.kill(pid, signal.SIGKILL)  # our own forked child, by its pid
            os.waitpid(pid, 0)
    return [pid in finished for pid in pids]


def test_regression_rational_with_huge_exponent_does_not_hang(corpus):
    """Found by the fuzzer: an 11-character rational '1e999999999' made every rational loader compute
    10**999999999 (a hang)."""
    huge = "1e999999999"
    paths = [
        _mutated_copy(corpus, "model", lambda o: o["exact"].__setitem__("sse", huge)),
        _mutated_copy(corpus, "model", lambda o: o["inference"]["exact"].__setitem__("ssr", huge)),
        _mutated_copy(corpus, "coefficients_result", lambda o: o.__setitem__("weighted_intercept", huge)),
        _mutated_copy(corpus, "evaluation_result", lambda o: o["exact"].__setitem__("sae", huge)),
        _mutated_copy(corpus, "summary_result", lambda o: o["columns"][FEATURES[0]].__setitem__("sum", huge)),
    ]
    loaders = [hefed.LinearModel.load, hefed.LinearModel.load, load_decrypted, EvaluationSums.load,
               ColumnSummary.load]
    done = _finishes_within([lambda p=p, f=f: f(p) for p, f in zip(paths, loaders, strict=True)], 2.0)
    assert all(done), f"still computing after 2 s: {[p.name for p, d in zip(paths, done, strict=True) if not d]}"


def test_regression_bundle_with_thousands_of_features_is_refused_quickly(corpus):
    """Found by the fuzzer: a 28 kB bundle listing 3000 features made Bundle.load build a 4.5-million-slot
    layout (about 45 s) before refusing it."""
    features = [f"f{i}" for i in range(3000)]
    path = _mutated_copy(corpus, "statistics_aggregate", lambda o: o["schema"].__setitem__("features", features))
    assert path.stat().st_size < 64 * 1024
    assert _finishes_within([lambda: hefed.Bundle.load(path)], 2.0) == [True]
    with pytest.raises(HefedError):
        hefed.Bundle.load(path)


def test_regression_contributor_id_with_lone_surrogate_is_refused(corpus):
    """Found by the fuzzer: a bundle whose contributor id was '\\ud800' loaded, and 'hefed aggregate' died
    printing it (UnicodeEncodeError traceback)."""
    path = _mutated_copy(corpus, "statistics_bundle", lambda o: o.__setitem__("contributors", ["\ud800"]))
    with pytest.raises(HefedError):
        hefed.Bundle.load(path)


def test_bug_statistics_with_a_huge_row_count(corpus):
    path = _mutated_copy(corpus, "statistics_result", lambda o: o["gram_upper"].__setitem__(0, str(2**70)))
    _only_hefed_errors(lambda: hefed.solve(load_decrypted(path)).summary())


@pytest.mark.parametrize("coef", [lambda c: [[]] + c[1:], lambda c: [[None, []]] + c[1:], lambda c: 5,
                                  lambda c: 2.5], ids=["empty-list", "nested-list", "int", "float"])
def test_bug_model_coef_not_numbers(corpus, coef):
    path = _mutated_copy(corpus, "model", lambda o: o.__setitem__("coef", coef(o["coef"])))
    _only_hefed_errors(lambda: hefed.LinearModel.load(path))


def test_bug_standardize_on_inconsistent_statistics(corpus):
    path = _mutated_copy(corpus, "statistics_result",
                         lambda o: o["gram_upper"].__setitem__(1, o["gram_upper"][1] + "0" * 36))
    _only_hefed_errors(lambda: standardized_coefficients(hefed.solve(load_decrypted(path)), load_decrypted(path)))


def test_bug_summary_with_inconsistent_sums(corpus):
    path = _mutated_copy(corpus, "summary_result",
                         lambda o: o["columns"][FEATURES[0]].__setitem__("sum_sq", "1/1000000"))
    _only_hefed_errors(lambda: ColumnSummary.load(path).table())


def test_bug_cli_lone_surrogate_in_a_feature_name(corpus):
    def rename(obj: dict) -> None:
        obj["features"] = ["\ud800" if f == FEATURES[0] else f for f in obj["features"]]
        obj["columns"] = hefed.stats.canonical_columns(obj["features"], obj["target"])

    path = _mutated_copy(corpus, "statistics_result", rename)
    folder = corpus.scratch("surrogate")
    folder.mkdir()
    result = run_cli_quiet(_cli_command("statistics_result", path, corpus, folder / "o.json"), folder)
    assert "Traceback" not in result.stderr, result.stderr[-600:]
    assert result.returncode == 0 or not (folder / "o.json").exists()


def test_bug_cli_tracebacks_on_accepted_malformed_files(corpus):
    stats = _mutated_copy(corpus, "statistics_result", lambda o: o["gram_upper"].__setitem__(0, str(2**70)))
    model = _mutated_copy(corpus, "model", lambda o: o.__setitem__("coef", [[]] + o["coef"][1:]))
    folder = corpus.scratch("cli-bugs")
    folder.mkdir()
    jobs = [_cli_command("statistics_result", stats, corpus, folder / "o1.json"),
            _cli_command("model", model, corpus, folder / "o2.json")]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda args: run_cli_quiet(args, folder), jobs))
    failures = []
    for args, result in zip(jobs, results, strict=True):
        try:
            assert_one_line_error(result)
        except AssertionError as exc:
            failures.append(f"{args[0]}: {exc}")
    assert not failures, "\n".join(failures)
