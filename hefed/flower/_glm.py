"""GLM fits through Flower: the ServerApp loops the IRLS rounds, the key holder answers through a folder.

One Flower run does every round of a fit (run config ``glm-exchange``: a folder the aggregator and the key
holder share, and nothing else does). The **key holder** (not the aggregator: the ServerApp never holds a
private key) starts the fit by writing the signed coefficients of iteration 0 as ``beta-0.json``; then,
round after round:

1. the ServerApp reads ``beta-T.json`` (public: signed coefficients) and sends it to every factory
   (``query.glm``, with the study's digest and the iteration);
2. each factory (:func:`factory_glm_reply`) checks that the coefficients carry its study's key holder's
   signature, for its study and this iteration, continuing its own record of the fit (its ``log-dir``),
   computes its round's exact sums and replies with the encrypted bundle;
3. the ServerApp adds the bundles of **every** factory (a factory that does not deliver ends the fit: the
   set of contributors cannot change within a fit, the key holder's ledger would refuse it anyway) and writes
   ``round-T.bundle.json``;
4. the key holder (:func:`serve_key_holder`, here a thread of ``hefed federate``) decrypts only that sum,
   solves and signs ``beta-(T+1).json`` — or, once converged, writes the signed results there instead, and
   the run ends. A key-holder error is written to ``error.txt`` (one line) and ends the run.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._files import atomic_write_bytes, atomic_write_json, check_writable, parse_json_object, read_json_object
from .._keys import key_fingerprint
from ..errors import HefedError, RoundError, TooFewContributorsError, UsageError
from ..protocol import Bundle, Study
from ..roles import aggregate
from ..roles._glm import (
    GLMCoefficients,
    GLMFactoryLog,
    _study_glm,
    encrypt_glm_round,
    start_fit_files,
    step_files,
)
from ._config import FactoryConfig
from ._factory import _fallback_factory_id, _refusal, load_factory_study
from ._messages import Reply, bundle_from_bytes, ok_reply
from .launcher import LocalFederation, check_local_key, factory_ids_for, raise_from_report

GLM_ACTION = "glm"
GLM_MESSAGE_TYPE = f"query.{GLM_ACTION}"
RESULTS_FORMAT = "hefed.glm_results"
ERROR_FILE = "error.txt"


def coefficients_path(exchange: Path, iteration: int) -> Path:
    return exchange / f"beta-{iteration}.json"


def round_path(exchange: Path, iteration: int) -> Path:
    return exchange / f"round-{iteration}.bundle.json"


# --- factory ------------------------------------------------------------------------------------------------
def factory_glm_reply(request: Mapping[str, Any], node_config: Mapping[str, Any],
                      on_detail: Callable[[str], None] | None = None) -> dict[str, Any]:
    """A factory's answer to one GLM round: its encrypted bundle, or the category of its refusal."""
    factory_id = _fallback_factory_id(node_config)
    try:
        factory = FactoryConfig.from_node_config(node_config)
        factory_id = factory.factory_id
        study = load_factory_study(factory)
        if study is None:
            raise UsageError("GLM rounds need the factory's own copy of the study (node config 'study')")
        if request.get("study") != study.digest:
            raise RoundError(f"the round is of study {request.get('study')!r}, not of this factory's")
        text = str(request.get("coefficients", "")).encode("utf-8")
        coefficients = GLMCoefficients.from_dict(
            parse_json_object(text, "the round's coefficients", "GLM coefficients"), "the round's coefficients")
        if str(coefficients.iteration) != str(request.get("iteration")):
            raise RoundError("the round's iteration is not the one its coefficients were signed for")
        log_dir = Path(factory.log_dir) if factory.log_dir else Path(factory.data_path).absolute().parent
        log = GLMFactoryLog.open(log_dir / f"{factory_id}.glm-log.json")
        result = encrypt_glm_round(factory.data_path, study, coefficients, factory_id=factory_id, log=log)
        return dict(ok_reply(factory_id, result.bundle))
    except Exception as exc:  # the reply must name the factory whatever went wrong
        return dict(_refusal("GLM round", factory_id, node_config, exc, on_detail))


# --- aggregator (the ServerApp) ------------------------------------------------------------------------------
def wait_for_file(paths: Sequence[Path], seconds: float, what: str) -> Path:
    """The first of ``paths`` to exist within ``seconds`` (the key holder's error file ends the wait with its
    line)."""
    deadline = time.monotonic() + seconds
    while True:
        for path in paths:
            if path.exists():
                if path.name == ERROR_FILE:
                    raise RoundError("the key holder stopped the fit: " + path.read_text(encoding="utf-8").strip())
                return path
        if time.monotonic() >= deadline:
            raise RoundError(f"no {what} within {seconds:g} s")
        time.sleep(0.1)


Collect = Callable[[Mapping[str, Any], list[int], float, str], list[Reply]]


def run_glm(collect: Collect, node_ids: list[int], study: Study, exchange: Path, timeout: float, step_timeout: float,
            say: Callable[[str, str], None], max_rounds: int = 1100) -> dict[str, Any]:
    """The ServerApp's loop over a fit's rounds (module docstring); returns a summary for the report."""
    expected: list[str] = []
    for iteration in range(max_rounds):
        path = wait_for_file([coefficients_path(exchange, iteration), exchange / ERROR_FILE], step_timeout,
                             f"signed coefficients of iteration {iteration} from the key holder")
        text = path.read_text(encoding="utf-8")
        obj = json.loads(text)
        if obj.get("format") == RESULTS_FORMAT:
            say("done", f"the key holder released the results after {iteration} rounds")
            return {"rounds": iteration, "contributors": expected, "results": str(path)}
        digest = GLMCoefficients.from_dict(obj, str(path)).digest()
        request = {"study": study.digest, "iteration": str(iteration), "coefficients": text}
        replies = collect(request, node_ids, timeout, GLM_MESSAGE_TYPE)
        bundles: dict[str, Bundle] = {}
        missing: dict[str, str] = {}
        for reply in replies:
            record = reply.record or {}
            name = str(record.get("factory-id") or f"node {reply.node_id}")
            if record.get("status") != "ok" or not isinstance(record.get("bundle"), bytes):
                missing[name] = str(record.get("error") or reply.flower_error or "no bundle")
                continue
            try:
                bundle = bundle_from_bytes(record["bundle"], f"the bundle of {name}")
            except HefedError as exc:
                missing[name] = type(exc).__name__
                continue
            if bundle.parameters.get("coef_digest") != digest or bundle.contributors != [name] or name in bundles:
                missing[name] = "a bundle of other coefficients or under another id"
                continue
            bundles[name] = bundle
        answered = len(replies)
        if missing or answered < len(node_ids):
            why = "; ".join(f"{k}: {v}" for k, v in sorted(missing.items())) or \
                f"{len(node_ids) - answered} factory(ies) did not answer"
            raise TooFewContributorsError(f"round {iteration}: not every factory delivered ({why}); a drop-out ends "
                                          "the fit (the contributors cannot change within a fit)")
        names = sorted(bundles)
        if expected and names != expected:
            raise RoundError(f"round {iteration}: other factories than in the fit's earlier rounds")
        expected = names
        total = aggregate(list(bundles.values()), study=study)
        atomic_write_bytes(round_path(exchange, iteration), json.dumps(total.to_dict()).encode("utf-8"), force=True)
        say("round", f"round {iteration}: the sum of {len(names)} factories handed to the key holder")
    raise RoundError(f"no result after {max_rounds} rounds")


# --- the key holder ----------------------------------------------------------------------------------------
class KeyHolderService:
    """The key holder's side of a Flower fit: starts the fit, then answers each round written to the exchange."""

    def __init__(self, exchange: Path, study: str | Path, private_key: str | Path, release_key: str | Path, *,
                 max_iter: int = 100, tol: float = 1e-12, step_timeout: float = 300.0,
                 allow_unsigned: bool = True) -> None:
        self.exchange = exchange
        self.study, self.private_key, self.release_key = Path(study), Path(private_key), Path(release_key)
        self.max_iter, self.tol, self.step_timeout = max_iter, tol, step_timeout
        self.allow_unsigned = allow_unsigned
        self.state = exchange.parent / "keyholder" / "fit-state.json"
        self.ledger = exchange.parent / "keyholder" / "decryption-ledger.json"
        self.error: str | None = None
        self.rounds = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.state.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.exchange.mkdir(parents=True, exist_ok=True)
        start_fit_files(self.study, self.release_key, coefficients_path(self.exchange, 0), self.state,
                        max_iter=self.max_iter, tol=self.tol, force=True)
        self._thread = threading.Thread(target=self._serve, name="hefed-glm-keyholder", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        iteration = 0
        try:
            while not self._stop.is_set():
                path = round_path(self.exchange, iteration)
                if not path.exists():
                    time.sleep(0.05)
                    continue
                fit = step_files(path, self.private_key, self.study, self.state,
                                 coefficients_path(self.exchange, iteration + 1), release_key=self.release_key,
                                 ledger=self.ledger, allow_unsigned=self.allow_unsigned, force=True)
                iteration += 1
                self.rounds = iteration
                if fit.done:
                    return
        except Exception as exc:  # one line to the aggregator; the details stay here
            self.error = str(exc) if isinstance(exc, HefedError) else f"{type(exc).__name__}: {exc}"
            atomic_write_bytes(self.exchange / ERROR_FILE, (self.error.splitlines() or [""])[0].encode("utf-8"),
                               force=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)


def run_local_glm(
    data_paths: Sequence[str | Path],
    study_path: str | Path,
    private_key_path: str | Path,
    out: str | Path,
    *,
    family: str | None = None,
    release_key_path: str | Path | None = None,
    max_iter: int = 100,
    tol: float = 1e-12,
    timeout: float = 60.0,
    wait_for_nodes: float = 60.0,
    workdir: str | Path | None = None,
    insecure_test_key: bool = False,
    force: bool = False,
    progress: Any = None,
) -> dict[str, Any]:
    """What ``hefed federate --family F --private-key K --study S DATA...`` does: one Flower run of every IRLS round
    of the study's GLM on this machine (a SuperLink, one SuperNode per data file, the ServerApp looping the rounds)
    with the key holder answering each round from this process; the signed results are written to ``out``."""
    check_writable(out, force)
    study = Study.load(study_path)
    family_agreed, _ = _study_glm(study).family_link
    if family is not None and family.lower() != family_agreed:
        raise UsageError(f"the study's GLM is {family_agreed}, not {family}")
    paths = [Path(p) for p in data_paths]
    if len(paths) < study.min_contributors:
        raise UsageError(f"study {study.digest} needs at least {study.min_contributors} factories, got {len(paths)}")
    release_key = Path(release_key_path) if release_key_path else Path(private_key_path).parent / "keyholder.key.json"
    test_key = check_local_key(study.public_key, insecure_test_key)
    with tempfile.TemporaryDirectory(prefix="hefed-glm-") as tmp:
        base = Path(workdir) if workdir is not None else Path(tmp)
        exchange = base / "exchange"
        service = KeyHolderService(exchange, study_path, private_key_path, release_key, max_iter=max_iter, tol=tol,
                                   step_timeout=timeout * 5)
        service.start()
        report_file = base / "report.json"
        ids = factory_ids_for(paths)
        try:
            with LocalFederation(paths, factory_ids=ids, key_fingerprint=key_fingerprint(study.public_key),
                                 workdir=base / "federation", progress=progress, study=study_path,
                                 study_digest=study.digest, insecure_test_key=test_key) as federation:
                run_id = federation.submit({
                    "study": str(Path(study_path).absolute()), "glm-exchange": str(exchange.absolute()),
                    "report": str(report_file), "progress": str(base / "progress.jsonl"), "force": True,
                    "timeout": timeout, "wait-for-nodes": wait_for_nodes, "expected-factories": ",".join(ids),
                    "insecure-test-key": test_key, "min-contributors": study.min_contributors,
                    "glm-step-timeout": timeout * 5})
                report = federation.wait_report(run_id, report_file, wait_for_nodes + (max_iter + 3) * timeout)
        finally:
            service.stop()
        if report.get("status") != "ok":
            raise_from_report(report)
        results = read_json_object(report["results"], "GLM results")
        atomic_write_json(out, results, force=force)
    return {**report, "results": str(out), "key_holder_rounds": service.rounds}
