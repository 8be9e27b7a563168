"""A one-machine federation on loopback: what ``hefed federate`` runs.

:class:`LocalFederation` starts a Flower SuperLink and one SuperNode per data
file on 127.0.0.1 (free ports, a temporary ``FLWR_HOME`` per process,
telemetry off, runtime dependency installation off), submits the hefed app
with ``flwr run``, waits for the ServerApp's report, and stops every process
it started — including the SuperExec and app processes Flower spawns below
them — when it leaves its ``with`` block, whatever happened.

:func:`run_local_federation` is the library function behind the command: one
federation, and the aggregate bundle written to ``out``. It takes the public key
only; a private key file is refused before any process starts. With a roster
and one enrolled identity folder per data file it runs masked, signed rounds:
each SuperNode's node config names its factory's ``identity-dir`` (read only by
that SuperNode's ClientApp) and pins the roster's digest. With a study every
SuperNode's node config names the study file (``study``) and pins its digest
(``study-digest``), and the run config names the study and nothing it decides.

As it goes it tells a ``progress`` callback (``hefed federate`` prints it) what happens:
the SuperLink listening, each SuperNode started and connected, the run submitted, and
then, from the progress file the ServerApp writes beside its report
(:mod:`hefed.flower._progress`), each factory's ready answer, join, bundle and reveal or the
reason it is missing, and the masked round. For demonstrations and tests it can make factories
drop out for real (``drop_outs``, ``hefed federate --drop-out FACTORY=STEP``): as soon as the
progress file says a factory's reply to that step arrived, its SuperNode is stopped (SIGTERM).

Flower's own executables (``flower-superlink``, ``flower-supernode``,
``flwr``) are looked up beside the running Python first, then on ``PATH``;
``pip install 'hefed[flower]'`` provides them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from .. import errors
from .._files import atomic_write_bytes, atomic_write_json, read_json_object
from .._keys import MIN_SECURE_BITS, check_public_key, key_fingerprint
from ..errors import HefedError, InvalidFileError, KeyMismatchError, RoundError, UsageError
from ..kinds import STATISTICS
from ..protocol import Bundle, Member, Study, load_member
from ._config import RUN_CONFIG_DEFAULTS, RunSettings, load_public_key_only
from ._progress import ProgressCallback, ProgressEvent, ProgressFollower
from .project import toml_table, write_app

CONNECTION = "hefed-local"
HOST = "127.0.0.1"
#: Seconds between two ``flwr list`` looks at the run's status while waiting for a report.
STATUS_POLL_SECONDS = 15.0
#: Seconds between two looks at the progress while a ``flwr`` command runs.
FLWR_POLL_SECONDS = 0.2
#: Seconds given to processes to stop after SIGTERM before they are killed.
STOP_GRACE_SECONDS = 5.0
LOG_TAIL_CHARS = 2000
#: What a Flower 1.42 SuperNode logs once the SuperLink has registered it (used for progress only).
SUPERNODE_CONNECTED = re.compile(rb"SuperNode ID: (\d+)")


class FederationError(HefedError):
    """The Flower federation could not be started or its run ended without a result."""


@dataclass
class FederationResult:
    """The outcome of one federation round."""

    out: Path
    kind: str
    contributors: list[str]
    missing: dict[str, str]
    run_id: int | None
    seconds: float
    report: dict[str, Any] = field(default_factory=dict)
    #: Masked runs: the id of the round the aggregate belongs to (``None`` when unmasked).
    round_id: str | None = None
    #: Masked runs: every round tried (round id, participants, contributors, missing), in order.
    rounds: list[dict[str, Any]] = field(default_factory=list)
    #: The digest of the run's study (``None`` without one); the aggregate carries it too.
    study: str | None = None


def factory_ids_for(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """One factory id per file: its name without suffix, made valid and unique (``gt_2011``, ``gt_2011-2``)."""
    ids: list[str] = []
    for path in paths:
        name = re.sub(r"[^A-Za-z0-9._-]", "-", Path(path).stem)[:60].lstrip("._-") or "factory"
        unique, i = name, 2
        while unique in ids:
            unique, i = f"{name}-{i}", i + 1
        ids.append(unique)
    return ids


def identity_member(identity_dir: str | os.PathLike[str]) -> Member:
    """An enrolled identity's public part, read from its public file only (``identity.pub.json``).

    ``identity_dir`` is the enrollment folder (``hefed enroll --out-dir``) or a file in it.
    """
    path = Path(identity_dir)
    return load_member(path / "identity.pub.json" if path.is_dir() else path.with_name("identity.pub.json"))


def flower_executable(name: str) -> str:
    """Path of a Flower command-line tool (beside this Python first), or a clear error."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise UsageError(f"Flower's {name} was not found: install the extra with pip install 'hefed[flower]'")
    return found


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now (held together while chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def _proc_children() -> dict[int, list[int]]:
    """Parent pid → child pids, from /proc (empty where there is no /proc)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return children
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def descendants(pids: Sequence[int]) -> list[int]:
    """Every process below ``pids`` (children, grandchildren, ...), found through /proc."""
    children = _proc_children()
    found: list[int] = []
    todo = list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.append(child)
                todo.append(child)
    return found


def command_line(pid: int) -> list[str]:
    """A process's argument vector (empty if it is gone or unreadable)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [part.decode("utf-8", "replace") for part in handle.read().split(b"\0") if part]
    except OSError:
        return []


def _tail(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return text[-LOG_TAIL_CHARS:]


def _parse_json_output(text: str, what: str) -> dict[str, Any]:
    start = text.find("{")
    try:
        obj = json.loads(text[start:]) if start >= 0 else None
    except json.JSONDecodeError:
        obj = None
    if not isinstance(obj, dict):
        raise FederationError(f"{what}: unexpected output from flwr: {text.strip()[-LOG_TAIL_CHARS:]!r}")
    return obj


@dataclass
class _Started:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_handle: IO[bytes]


class LocalFederation:
    """A SuperLink and one SuperNode per data file on 127.0.0.1; a context manager that stops them all.

    ``workdir`` holds every file the federation uses (Flower homes, node configs,
    the app, run configs, logs); a temporary folder, removed afterwards, when not given.
    ``identity_dirs`` (one per data file, for masked rounds) go into each SuperNode's
    node config as ``identity-dir``, ``roster_digest`` as its ``roster-digest`` pin, and
    ``study`` (a study file) with ``study_digest`` as its ``study`` and ``study-digest`` pin,
    ``insecure_test_key`` as ``insecure-test-key`` (keys below 2048 bits, for tests). Each factory's
    own log (``log-dir``) is ``workdir/factory-logs/node-I``. :meth:`add_supernode` starts one more
    SuperNode with a node config of its own (tests: an impostor, the aggregator's sybils).
    ``progress`` is told of each step (SuperLink listening, each SuperNode started and
    connected, and while :meth:`wait_report` waits, every event of the ServerApp's progress file).
    """

    def __init__(
        self,
        data_paths: Sequence[str | os.PathLike[str]],
        *,
        factory_ids: Sequence[str] | None = None,
        key_fingerprint: str = "",
        workdir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 60.0,
        identity_dirs: Sequence[str | os.PathLike[str]] | None = None,
        roster_digest: str = "",
        progress: ProgressCallback | None = None,
        study: str | os.PathLike[str] | None = None,
        study_digest: str = "",
        insecure_test_key: bool = False,
    ) -> None:
        if not data_paths:
            raise UsageError("a federation needs at least one data file")
        self.data_paths = [Path(p).absolute() for p in data_paths]
        self.factory_ids = list(factory_ids) if factory_ids is not None else factory_ids_for(self.data_paths)
        if len(self.factory_ids) != len(self.data_paths) or len(set(self.factory_ids)) != len(self.factory_ids):
            raise UsageError("give one distinct factory id per data file")
        self.bin = {name: flower_executable(name) for name in ("flower-superlink", "flower-supernode", "flwr")}
        self.key_fingerprint = key_fingerprint
        self.identity_dirs = [Path(p).absolute() for p in identity_dirs] if identity_dirs is not None else None
        if self.identity_dirs is not None and len(self.identity_dirs) != len(self.data_paths):
            raise UsageError("give one identity folder per data file")
        self.roster_digest = roster_digest
        self.study = Path(study).absolute() if study is not None else None
        self.study_digest = study_digest
        self.insecure_test_key = insecure_test_key
        #: Node configs of the SuperNodes added by :meth:`add_supernode` (index → config).
        self._own_configs: dict[int, dict[str, str | bool]] = {}
        if study_digest and self.study is None:
            raise UsageError("a study digest pin needs the study file it pins")
        self.startup_timeout = startup_timeout
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="hefed-federation-"))
        self.superlink: _Started | None = None
        self.supernodes: list[_Started] = []
        self.port = 0
        self.app_dir = self.workdir / "app"
        self.progress = progress
        self._runs = 0
        self._node_ports: list[int] = []
        self._node_starts: list[int] = []
        self._connected: list[bool] = []
        #: SuperNodes stopped by :meth:`kill_supernode` (index → signal) and not restarted since.
        self.killed: dict[int, int] = {}

    # --- life cycle -----------------------------------------------------------------------------------------
    def __enter__(self) -> LocalFederation:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self, home: str) -> dict[str, str]:
        """Environment of a Flower process: its own FLWR_HOME, telemetry off, this Python's tools first on PATH."""
        env = dict(os.environ)
        env.pop("PYTHONWARNINGS", None)
        flwr_home = self.workdir / "flwr-home" / home
        flwr_home.mkdir(parents=True, exist_ok=True)
        env.update({
            "FLWR_HOME": str(flwr_home),
            "FLWR_TELEMETRY_ENABLED": "0",
            "PYTHONUNBUFFERED": "1",
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        })
        return env

    def _spawn(self, name: str, args: list[str]) -> _Started:
        log_path = self.workdir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        try:
            process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, cwd=self.workdir,
                env=self.env(name), start_new_session=True,
            )
        except OSError as exc:
            handle.close()
            raise FederationError(f"cannot start {args[0]}: {exc}") from None
        return _Started(name, process, log_path, handle)

    def start(self) -> None:
        """Start the SuperLink, wait until it listens, then start the SuperNodes and write the app."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_app(self.app_dir, force=True)
        for attempt in range(3):
            self.port = free_ports(1)[0]
            self.superlink = self._spawn(f"superlink-{attempt}", [
                self.bin["flower-superlink"], "--insecure", "--disable-runtime-dependency-installation",
                "--host", HOST, "--port", str(self.port),
            ])
            if self._wait_listening(self.superlink, self.port):
                break
            self._stop_one(self.superlink)
        else:
            tail = _tail(self.superlink.log_path) if self.superlink is not None else ""
            raise FederationError(f"the SuperLink did not start: {tail}")
        self.emit("superlink", f"Flower SuperLink listening on {HOST}:{self.port}", ok=True)
        self._node_ports = free_ports(len(self.data_paths))
        self._node_starts = [0] * len(self.data_paths)
        self._connected = [False] * len(self.data_paths)
        for i in range(len(self.data_paths)):
            self.supernodes.append(self._start_supernode(i))
        cli_home = self.workdir / "flwr-home" / "cli"
        cli_home.mkdir(parents=True, exist_ok=True)
        (cli_home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "{HOST}:{self.port}"\ninsecure = true\n', encoding="utf-8")

    def _start_supernode(self, i: int) -> _Started:
        """Start SuperNode ``i`` (its node config: the data file, factory id, pins, identity folder)."""
        factory_id = self.factory_ids[i]
        config: dict[str, str | bool] = {"data-path": str(self.data_paths[i]), "factory-id": factory_id,
                                         "log-dir": str(self.factory_log_dir(i))}
        self.factory_log_dir(i).mkdir(parents=True, exist_ok=True, mode=0o700)
        if i in self._own_configs:
            config.update(self._own_configs[i])
            return self._spawn_supernode(i, factory_id, config)
        if self.insecure_test_key:
            config["insecure-test-key"] = True
        if self.key_fingerprint:
            config["key-fingerprint"] = self.key_fingerprint
        if self.identity_dirs is not None:
            config["identity-dir"] = str(self.identity_dirs[i])
        if self.roster_digest:
            config["roster-digest"] = self.roster_digest
        if self.study is not None:
            config["study"] = str(self.study)
        if self.study_digest:
            config["study-digest"] = self.study_digest
        return self._spawn_supernode(i, factory_id, config)

    def factory_log_dir(self, i: int) -> Path:
        """The folder of SuperNode ``i``'s own factory log (its node config's ``log-dir``)."""
        return self.workdir / "factory-logs" / f"node-{i}"

    def add_supernode(self, data_path: str | os.PathLike[str], factory_id: str,
                      node_config: Mapping[str, str | bool] | None = None) -> int:
        """Start one more SuperNode after :meth:`start`, with ``node_config`` as its whole node config beyond its
        data path, factory id and log folder (no pins are added); returns its index. Its factory id may repeat
        another's (an impostor)."""
        i = len(self.supernodes)
        self.data_paths.append(Path(data_path).absolute())
        self.factory_ids.append(factory_id)
        self._own_configs[i] = dict(node_config or {})
        self._node_ports.append(free_ports(1)[0])
        self._node_starts.append(0)
        self._connected.append(False)
        self.supernodes.append(self._start_supernode(i))
        return i

    def _spawn_supernode(self, i: int, factory_id: str, config: Mapping[str, str | bool]) -> _Started:
        config_path = self.workdir / f"node-{i}.toml"
        config_path.write_text(toml_table(config), encoding="utf-8")
        self._node_starts[i] += 1
        self._connected[i] = False
        again = f"-{self._node_starts[i]}" if self._node_starts[i] > 1 else ""
        started = self._spawn(f"supernode-{i}-{factory_id}{again}", [
            self.bin["flower-supernode"], "--insecure", "--superlink", f"{HOST}:{self.port}",
            "--port", str(self._node_ports[i]), "--node-config", str(config_path),
        ])
        self.emit("supernode", f"started the SuperNode of {factory_id}", factory=factory_id)
        return started

    def restart_supernode(self, index: int) -> None:
        """Stop SuperNode ``index`` if it still runs, and start it again with the same node config (a new port)."""
        self._stop_one(self.supernodes[index])
        self.killed.pop(index, None)
        self._node_ports[index] = free_ports(1)[0]
        self.supernodes[index] = self._start_supernode(index)

    def emit(self, step: str, message: str, *, factory: str | None = None, ok: bool | None = None) -> None:
        """Tell ``progress`` (if any) of one step."""
        if self.progress is not None:
            self.progress(ProgressEvent(step, message, factory, ok))

    def _newly_connected(self) -> list[int]:
        """SuperNodes whose log now says the SuperLink registered them (Flower 1.42's ``SuperNode ID:`` line)."""
        found = []
        for i, started in enumerate(self.supernodes):
            if self._connected[i]:
                continue
            try:
                text = started.log_path.read_bytes()
            except OSError:
                continue
            if SUPERNODE_CONNECTED.search(text):
                self._connected[i] = True
                found.append(i)
        return found

    def poll_progress(self, follower: ProgressFollower | None = None) -> None:
        """Tell ``progress`` of SuperNodes newly connected (from their logs) and of new events in ``follower``."""
        if self.progress is None:
            return
        for i in self._newly_connected():
            self.emit("connected", f"the SuperNode of {self.factory_ids[i]} connected to the SuperLink",
                      factory=self.factory_ids[i], ok=True)
        for event in follower.read() if follower is not None else []:
            self.progress(event)

    def wait_connected(self, seconds: float) -> bool:
        """Wait until every SuperNode has connected to the SuperLink (as its log says); ``False`` after ``seconds``.

        Not needed before a run (the ServerApp waits for the nodes it expects); useful after
        :meth:`restart_supernode`, so the next run finds the new node.
        """
        deadline = time.monotonic() + seconds
        while True:
            self.poll_progress()
            self._newly_connected()
            if all(self._connected):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def _wait_listening(self, started: _Started, port: int) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if started.process.poll() is not None:
                return False
            if _port_open(port):
                return True
            time.sleep(0.2)
        return False

    def processes(self) -> list[subprocess.Popen[bytes]]:
        """The processes this federation started directly (SuperLink first)."""
        started = ([self.superlink] if self.superlink else []) + self.supernodes
        return [s.process for s in started]

    def all_pids(self) -> list[int]:
        """Every live pid of this federation: the started processes and everything Flower spawned below them."""
        roots = [p.pid for p in self.processes() if p.poll() is None]
        return roots + descendants([p.pid for p in self.processes()])

    def _stop_one(self, started: _Started) -> None:
        self._terminate([started])
        started.log_handle.close()

    def _terminate(self, started: Sequence[_Started]) -> None:
        roots = [s.process for s in started]
        below = descendants([p.pid for p in roots])
        for process in roots:
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGTERM)
        for pid in below:
            _signal_pid(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in roots:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for process in roots:
            _signal_group(process.pid, signal.SIGKILL)
            if process.poll() is None:
                process.kill()
        below += [pid for pid in descendants([p.pid for p in roots]) if pid not in below]
        for pid in below:
            _signal_pid(pid, signal.SIGKILL)
        for process in roots:
            try:
                process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:  # pragma: no cover - a process that ignores SIGKILL
                pass
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while any(_alive(pid) for pid in below) and time.monotonic() < deadline:  # gone, not just signalled
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop every process this federation started (SIGTERM, then SIGKILL), and remove a temporary workdir."""
        started = ([self.superlink] if self.superlink else []) + self.supernodes
        try:
            self._terminate(started)
        finally:
            for s in started:
                s.log_handle.close()
            self.superlink, self.supernodes = None, []
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def _follow(self, follower: ProgressFollower | None, drops: dict[str, str]) -> None:
        """:meth:`poll_progress`, and the simulated drop-outs ``drops`` (factory → step) whose reply just arrived."""
        if not drops:
            self.poll_progress(follower)
            return
        self.poll_progress(None)
        for event in follower.read() if follower is not None else []:
            if self.progress is not None:
                self.progress(event)
            if event.step == "reply" and event.ok and event.factory in drops and drops[event.factory] == event.phase:
                self.drop_out(event.factory, drops.pop(event.factory))

    def drop_out(self, factory_id: str, after: str) -> None:
        """Stop ``factory_id``'s SuperNode with SIGTERM (it leaves the federation; its ClientApp is stopped too),
        and say so: a simulated drop-out after its reply to the step ``after``."""
        index = self.factory_ids.index(factory_id)
        self.kill_supernode(index, signal.SIGTERM)
        self.emit("dropout", f"stopped the SuperNode of {factory_id} after its {after} reply (simulated drop-out)",
                  factory=factory_id, ok=False)

    def kill_supernode(self, index: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to a SuperNode and everything below it (to simulate a factory dropping out)."""
        process = self.supernodes[index].process
        self.killed[index] = sig
        below = descendants([process.pid])
        _signal_group(process.pid, sig)
        for pid in below:
            _signal_pid(pid, sig)

    def clientapp_running(self, index: int) -> bool:
        """Whether SuperNode ``index`` has started a ClientApp process (it received a message)."""
        return any(
            any(part.endswith("flwr-clientapp") for part in command_line(pid)[:2])
            for pid in descendants([self.supernodes[index].process.pid])
        )

    # --- runs -------------------------------------------------------------------------------------------------
    def _flwr(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run the ``flwr`` CLI; while it runs (a second or more), keep telling ``progress`` what happens."""
        try:
            process = subprocess.Popen(
                [self.bin["flwr"], *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                cwd=self.workdir, env=self.env("cli"), stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            raise FederationError(f"cannot start flwr: {exc}") from None
        deadline = time.monotonic() + timeout
        with process:
            while True:
                try:
                    stdout, stderr = process.communicate(timeout=FLWR_POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() >= deadline:
                        process.kill()
                        process.communicate()
                        raise FederationError(f"flwr {args[0]} did not finish within {timeout:g} s") from None
                    self.poll_progress()
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def submit(self, run_config: Mapping[str, str | int | float | bool]) -> int:
        """``flwr run`` the hefed app with these run-config overrides; returns the run id."""
        unknown = sorted(set(run_config) - set(RUN_CONFIG_DEFAULTS))
        if unknown:
            raise UsageError(f"unknown run config keys: {', '.join(unknown)}")
        self._runs += 1
        overrides = self.workdir / f"run-{self._runs}.toml"
        overrides.write_text(toml_table(run_config), encoding="utf-8")
        result = self._flwr("run", str(self.app_dir), CONNECTION, "--run-config", str(overrides), "--format", "json")
        obj = _parse_json_output(result.stdout + result.stderr, "flwr run")
        if not obj.get("success") or "run-id" not in obj:
            raise FederationError(f"flwr run failed: {obj.get('error-message') or obj}")
        return int(obj["run-id"])

    def status(self, run_id: int) -> str:
        """The run's status as the SuperLink reports it (``running``, ``finished:completed``, ...)."""
        result = self._flwr("list", CONNECTION, "--run-id", str(run_id), "--format", "json")
        obj = _parse_json_output(result.stdout + result.stderr, "flwr list")
        runs = obj.get("runs") or []
        return str(runs[0].get("status", "unknown")) if runs else "unknown"

    def log(self, run_id: int) -> str:
        """The run's log as ``flwr log --show`` prints it."""
        result = self._flwr("log", str(run_id), CONNECTION, "--show")
        return result.stdout + result.stderr

    def serverapp_running(self) -> bool:
        """Whether a ServerApp process is running below the SuperLink."""
        if self.superlink is None:
            return False
        return any(
            any(part.endswith("flwr-serverapp") for part in command_line(pid)[:2])
            for pid in descendants([self.superlink.process.pid])
        )

    def wait_report(self, run_id: int, report_path: Path, seconds: float,
                    progress_path: str | os.PathLike[str] | None = None,
                    drop_outs: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Wait for the ServerApp's report file; a run that ends without one is an error with its log.

        The ServerApp process is watched through /proc (cheap); ``flwr list`` is asked only
        when it has gone without a report, and every :data:`STATUS_POLL_SECONDS` otherwise.
        Meanwhile ``progress`` hears of each event the ServerApp appends to ``progress_path``
        (the run config's ``progress``) and of each SuperNode that connects.

        ``drop_outs`` (factory id → a step of a masked round: ``ready``, ``join`` or ``contribute``)
        simulates drop-outs: as soon as the progress file says the factory's reply to that step
        arrived, its SuperNode (and the ClientApp below it) is stopped with SIGTERM, so it
        answers nothing after (:meth:`drop_out`). Needs ``progress_path``.
        """
        drops = check_drop_outs(drop_outs or {}, self.factory_ids)
        if drops and not progress_path:
            raise UsageError("simulated drop-outs follow the run's progress file: give progress_path")
        follower = ProgressFollower(progress_path) if progress_path else None
        deadline = time.monotonic() + seconds
        next_status = time.monotonic() + STATUS_POLL_SECONDS
        seen_serverapp = False
        while time.monotonic() < deadline:
            self._follow(follower, drops)
            if report_path.exists():
                self._follow(follower, drops)  # the last events were written before the report
                return read_json_object(report_path, "federation report")
            if self.superlink is None or self.superlink.process.poll() is not None:
                tail = _tail(self.superlink.log_path) if self.superlink else ""
                raise FederationError(f"the SuperLink stopped: {tail}")
            running = self.serverapp_running()
            seen_serverapp = seen_serverapp or running
            if (seen_serverapp and not running) or time.monotonic() >= next_status:
                time.sleep(1.0)  # a report written just as the ServerApp exits
                if report_path.exists():
                    continue
                status = self.status(run_id)
                if status.startswith("finished") and not report_path.exists():  # written while flwr list ran
                    raise error_from_log(run_id, status, self.log(run_id))
                next_status = time.monotonic() + STATUS_POLL_SECONDS
                seen_serverapp = False
            time.sleep(0.2)
        raise FederationError(f"Flower run {run_id} gave no result within {seconds:g} s")


#: The steps of a masked round after whose reply a simulated drop-out can stop a factory's SuperNode.
DROP_AFTER_STEPS = ("ready", "join", "contribute")


def check_drop_outs(drop_outs: Mapping[str, str], factory_ids: Sequence[str]) -> dict[str, str]:
    """``drop_outs`` checked: each a factory of this federation, each step one of :data:`DROP_AFTER_STEPS`."""
    for factory_id, step in drop_outs.items():
        if factory_id not in factory_ids:
            raise UsageError(f"drop-out {factory_id!r} is not a factory of this federation ({', '.join(factory_ids)})",
                             parameters=("drop_outs",))
        if step not in DROP_AFTER_STEPS:
            raise UsageError(f"drop-out {factory_id}={step}: the step must be one of {', '.join(DROP_AFTER_STEPS)}",
                             parameters=("drop_outs",))
    return dict(drop_outs)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, dead but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_pid(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def error_from_log(run_id: int, status: str, log: str) -> HefedError:
    """The error of a run that ended without a report, in one line: the ServerApp's hefed error if it logged one."""
    found = re.findall(r"hefed\.errors\.(\w+): ([^\n]*)", log)
    if found:
        name, message = found[-1]
        cls = getattr(errors, name, None)
        if isinstance(cls, type) and issubclass(cls, HefedError):
            return cls(message.strip())
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return FederationError(f"Flower run {run_id} ended ({status}) without a hefed report; "
                           f"last log line: {lines[-1][-300:] if lines else 'none'}")


def raise_from_report(report: Mapping[str, Any]) -> None:
    """Re-raise a failed run's error as the hefed error class the ServerApp raised (one line)."""
    message = str(report.get("error") or "the federation failed")
    name = str(report.get("error_type") or "")
    cls = RoundError if name == RoundError.__name__ else getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, HefedError):
        raise cls(message)
    raise FederationError(message)


def run_local_federation(
    data_paths: Sequence[str | os.PathLike[str]],
    target: str | None,
    public_key_path: str | os.PathLike[str] | None,
    out: str | os.PathLike[str],
    features: Sequence[str] | None = None,
    min_contributors: int | None = None,
    timeout: float = 60.0,
    kind: str = STATISTICS.name,
    model_path: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
    report_path: str | os.PathLike[str] | None = None,
    wait_for_nodes: float = 60.0,
    test_fraction: float = 0.0,
    seed: int = 0,
    ridge: float = 0.0,
    workdir: str | os.PathLike[str] | None = None,
    roster_path: str | os.PathLike[str] | None = None,
    identity_dirs: Sequence[str | os.PathLike[str]] | None = None,
    max_rounds: int = 3,
    progress: ProgressCallback | None = None,
    study_path: str | os.PathLike[str] | None = None,
    insecure_test_key: bool = False,
    drop_outs: Mapping[str, str] | None = None,
) -> FederationResult:
    """Run one hefed federation on this machine: one SuperNode per file, the aggregate written to ``out``.

    The options become one :class:`~hefed.flower.RunSettings` (:meth:`~RunSettings.from_options`),
    checked as the ServerApp checks its run config; then :func:`run_settings_locally` runs it.
    Each factory's SuperNode is pinned to the public key's fingerprint. Raises
    :class:`~hefed.errors.TooFewContributorsError` when fewer than
    ``min_contributors`` (default 3) factories answered in ``timeout`` seconds, and
    :class:`FederationError` when Flower itself fails. ``workdir`` keeps the
    federation's files (configs, logs) there instead of a temporary folder.

    With ``roster_path`` and ``identity_dirs`` (one enrolled identity folder per
    data file, in the same order) the run uses masked, signed rounds: factory ids
    are the identities' ids (which must be roster members with the same keys),
    every SuperNode is pinned to the roster's digest, and the app runs one version 2
    round (ready, join, contribute, reveal) that survives drop-outs down to its
    threshold; the result lists the round, its survivors and drop-outs. ``max_rounds``
    is deprecated and ignored (no round is re-run). Only the public halves of the
    identities are read here. ``drop_outs`` (factory id → ``ready``, ``join`` or
    ``contribute``) simulates drop-outs for demonstrations: that factory's SuperNode is
    stopped (SIGTERM) as soon as its reply to that step arrived.

    With ``study_path`` (``hefed federate --study``) the study decides what the factories
    compute: every SuperNode's node config names the study file and pins its digest, the run
    config names the study, the key is the study's and ``min_contributors`` defaults to (and
    is at least) the study's. ``target``, ``features`` and ``public_key_path`` may be left out;
    one given must agree with the study (a contradicting one is refused), and ``test_fraction``,
    ``seed`` and ``ridge`` must keep their defaults.

    ``progress`` is told of each step as it happens (:class:`~hefed.flower.ProgressEvent`).
    ``insecure_test_key`` accepts a key below 2048 bits (tests; a test key generated in this process is
    accepted anyway), and the SuperNodes started here are told so (node config ``insecure-test-key``).
    """
    if study_path is not None:
        study = Study.load(study_path)
        _agree_with_study(study, target, features, public_key_path)
        target, features, public_key_path = None, None, None
        if min_contributors is None:
            min_contributors = study.min_contributors
    settings = RunSettings.from_options(
        kind=kind, public_key=public_key_path, out=out, report=report_path, force=force, target=target,
        features=features, model=model_path, min_contributors=3 if min_contributors is None else min_contributors,
        timeout=timeout, wait_for_nodes=wait_for_nodes, test_fraction=test_fraction, seed=seed, ridge=ridge,
        roster=roster_path, max_rounds=max_rounds, study=study_path, insecure_test_key=insecure_test_key,
    )
    return run_settings_locally(data_paths, settings, identity_dirs=identity_dirs, workdir=workdir,
                                progress=progress, insecure_test_key=insecure_test_key, drop_outs=drop_outs)


def check_local_key(public_key: Any, insecure_test_key: bool = False) -> bool:
    """Check the run's key here (``hefed._keys.check_public_key``), before any process starts; returns whether the
    SuperNodes started here must accept it as a test key (node config ``insecure-test-key``): a key below 2048
    bits that this process accepted (``insecure_test_key``, or a test key generated in this process)."""
    check_public_key(public_key, insecure_test_key=insecure_test_key, source="the federation's public key")
    return bool(public_key.n.bit_length() < MIN_SECURE_BITS)


def _agree_with_study(study: Study, target: str | None, features: Sequence[str] | None,
                      public_key_path: str | os.PathLike[str] | None) -> None:
    """Refuse a target, features or public key given next to a study that say something else than the study."""
    if target and target.strip() != study.target.name:
        raise UsageError(f"target {target.strip()!r} contradicts study {study.digest}, whose target is "
                         f"{study.target.name!r}; leave it out", parameters=("target",))
    if features is not None and set(features) not in (set(study.feature_names), set(study.model_features)):
        raise UsageError(f"features {', '.join(features)} contradict study {study.digest}, whose features are "
                         f"{', '.join(study.feature_names)}; leave them out", parameters=("features",))
    if public_key_path is not None and str(public_key_path):
        key = load_public_key_only(public_key_path)
        if key.n != study.public_key.n:
            raise KeyMismatchError(f"{public_key_path}: key {key_fingerprint(key)} contradicts study "
                                   f"{study.digest}, whose key is {study.key_fingerprint}; leave it out",
                                   parameters=("public_key",))


def run_settings_locally(
    data_paths: Sequence[str | os.PathLike[str]],
    settings: RunSettings,
    *,
    identity_dirs: Sequence[str | os.PathLike[str]] | None = None,
    workdir: str | os.PathLike[str] | None = None,
    progress: ProgressCallback | None = None,
    insecure_test_key: bool = False,
    drop_outs: Mapping[str, str] | None = None,
) -> FederationResult:
    """Run ``settings`` on this machine, one SuperNode per data file (see :func:`run_local_federation`).

    Before any process starts: the data files exist, there are at least
    ``min_contributors`` of them (at least the study's, with a study), a target is set (these
    SuperNodes' node configs set none) unless the kind takes it from the model or a study
    decides it, a masked run has one identity folder per data
    file whose public half is the roster's entry for it, and :meth:`RunSettings.load_inputs`
    accepts the files the run reads and writes. The ServerApp then gets the same settings, with
    its outputs in the work folder and every factory expected by name; the aggregate (and the
    report) reach ``settings.out`` (and ``settings.report``) only once the run succeeded.
    """
    started = time.monotonic()
    paths = [Path(p) for p in data_paths]
    identities = [Path(p) for p in identity_dirs] if identity_dirs else None
    if not paths:
        raise UsageError("give at least one data file", parameters=("data_paths",))
    if settings.min_contributors > len(paths):
        raise UsageError(f"min-contributors is {settings.min_contributors}, but only {len(paths)} data files "
                         "were given", parameters=("min_contributors",))
    if not settings.target and not settings.takes_model and not settings.study:
        raise UsageError("give the target column", parameters=("target",))
    if settings.masked != (identities is not None):
        raise UsageError("masked rounds need both the roster and one enrolled identity folder per data file",
                         parameters=("roster", "identity"))
    if identities is not None and len(identities) != len(paths):
        raise UsageError(f"give one identity folder per data file, in the same order ({len(paths)} data files, "
                         f"{len(identities)} identities)", parameters=("identity",))
    for path in paths:
        if not path.is_file():
            raise InvalidFileError(f"{path}: data file not found")
    inputs = settings.load_inputs()
    test_key = check_local_key(inputs.public_key, insecure_test_key or settings.insecure_test_key)
    settings = settings.under_study(inputs)
    if settings.min_contributors > len(paths):
        raise UsageError(f"study {inputs.study_digest} needs at least {settings.min_contributors} contributors, but "
                         f"only {len(paths)} data files were given", parameters=("min_contributors",))
    ids = factory_ids_for(paths)
    if inputs.roster is not None and identities is not None:
        members = [identity_member(d) for d in identities]
        ids = [m.factory_id for m in members]
        if len(set(ids)) != len(ids):
            raise UsageError(f"two identity folders belong to the same factory ({', '.join(ids)})",
                             parameters=("identity",))
        for directory, member in zip(identities, members, strict=True):
            if inputs.roster.members.get(member.factory_id) is None:
                raise UsageError(f"{directory}: factory {member.factory_id!r} is not in the roster {settings.roster}",
                                 parameters=("identity",))
            if inputs.roster.members[member.factory_id] != member:
                raise UsageError(f"{directory}: the roster holds other keys for {member.factory_id!r}",
                                 parameters=("identity",))

    if drop_outs and not settings.masked:
        raise UsageError("simulated drop-outs are for masked rounds (--roster and --identity)",
                         parameters=("drop_outs",))
    check_drop_outs(drop_outs or {}, ids)

    with tempfile.TemporaryDirectory(prefix="hefed-federate-") as tmp:
        base = Path(workdir) if workdir is not None else Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        aggregate_path, report_file, progress_file = (base / "aggregate.bundle.json", base / "report.json",
                                                      base / "progress.jsonl")
        run_settings = replace(settings, out=str(aggregate_path), report=str(report_file),
                               progress=str(progress_file), force=True, expected_factories=tuple(ids),
                               insecure_test_key=settings.insecure_test_key or test_key)
        # A masked run has four steps (ready, join, contribute, reveal), each within the timeout.
        rounds = 4 if settings.masked else 1
        with LocalFederation(paths, factory_ids=ids, key_fingerprint=key_fingerprint(inputs.public_key),
                             workdir=base / "federation", identity_dirs=identities,
                             roster_digest=inputs.roster.digest() if inputs.roster is not None else "",
                             progress=progress, study=settings.study or None,
                             study_digest=inputs.study_digest or "", insecure_test_key=test_key) as federation:
            federation.emit("submit", "submitting the hefed app to the SuperLink (flwr run)")
            run_id = federation.submit(run_settings.to_run_config())
            federation.emit("submitted", f"submitted Flower run {run_id}")
            report = federation.wait_report(run_id, report_file,
                                            settings.wait_for_nodes + rounds * settings.timeout + 60.0,
                                            progress_path=progress_file, drop_outs=drop_outs)
        if report.get("status") != "ok":
            raise_from_report(report)
        aggregate = Bundle.load(aggregate_path)
        atomic_write_bytes(settings.out, aggregate_path.read_bytes(), force=settings.force)
    report = {**report, "aggregate": settings.out}
    if settings.report:
        atomic_write_json(settings.report, report, force=settings.force)
    masked = report.get("masked") or {}
    return FederationResult(Path(settings.out), settings.kind, list(aggregate.contributors),
                            dict(report.get("missing") or {}), run_id, time.monotonic() - started, report,
                            aggregate.round_id, list(masked.get("rounds") or []) if isinstance(masked, dict) else [],
                            aggregate.study)
