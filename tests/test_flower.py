"""The Flower integration (``hefed[flower]``): the app in-process, then real SuperLink/SuperNode processes on loopback.

In-process tests drive the real ServerApp and ClientApp through a grid that
delivers messages directly, recording every config and message, so they can
check that no private-key material is ever sent. The process tests start a
SuperLink and three SuperNodes on 127.0.0.1 (gas-turbine data, one factory a
year) and stop every process they started, on failure too.

Masked, signed rounds (run config ``roster``: one version 2 round, ready → join → contribute → reveal) are
tested both ways: in-process (the ready step, drop-outs without re-runs, pins, nothing secret sent or
logged) and with real processes (three factories give exactly the statistics of the same round made
with files: ``hefed round new`` / ``join`` / ``start`` / ``encrypt --round`` / ``collect`` / ``reveal`` /
``unmask``). Drop-outs with real SuperNodes stopped between steps are in test_flower_dropout.py.

Studies (run config ``study``; node config ``study`` and ``study-digest``) are tested in-process:
each factory computes from its own copy of the study whatever its ClientApp's run config says,
a factory whose study differs (another study, a file that is not its pin, no study, a node config
contradicting it) is left out with the reason, a factory with a study refuses an unstudied request
and forged ones (another key, a kind not allowed, another roster, unmasked when the study names a
roster), the ServerApp refuses a run config that steers what factories compute, and the aggregate
and the report carry the study's digest; ``hefed federate --study`` runs with real processes.

The run settings (one validated object for the CLI, the launcher and the ServerApp),
the progress file and its rendering by ``hefed federate`` are tested in-process.

Every test that starts real processes is marked ``slow`` (``pytest -m "not slow"`` runs
the rest in seconds). The two unmasked kill tests share one SuperLink and its three
SuperNodes (a module-scoped federation; a SuperNode that left is started again).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import signal
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

pytest.importorskip("flwr")

from flwr.app import Context, Message, RecordDict  # noqa: E402
from flwr.serverapp import Grid  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402
from hefed_cli.federate import federate, progress_printer  # noqa: E402
from hefed_cli.main import HefedGroup  # noqa: E402
from hefed_cli.main import main as hefed_main  # noqa: E402
from phe.util import int_to_base64  # noqa: E402
from support_helpers import filled  # noqa: E402

import hefed  # noqa: E402
from hefed.data import Holdout  # noqa: E402
from hefed.errors import (  # noqa: E402
    REPLY_CATEGORIES,
    InsecureKeyError,
    KeyMismatchError,
    OutputExistsError,
    SchemaMismatchError,
    TooFewContributorsError,
    UsageError,
)
from hefed.flower import (  # noqa: E402
    KINDS,
    RUN_CONFIG_DEFAULTS,
    FactoryConfig,
    FederationResult,
    LocalFederation,
    ProgressEvent,
    RunSettings,
    run_local_federation,
    write_app,
)
from hefed.flower._factory import factory_log_path, factory_ready_reply, factory_reply  # noqa: E402
from hefed.flower._messages import (  # noqa: E402
    MESSAGE_TYPE,
    READY_MESSAGE_TYPE,
    REQUEST_RECORD,
    Reply,
    bundle_to_bytes,
    make_ready_request,
    make_request,
    ready_statement,
)
from hefed.flower._progress import ProgressFollower, ProgressLog  # noqa: E402
from hefed.flower._tally import tally  # noqa: E402
from hefed.flower.app import client_app, server_app  # noqa: E402
from hefed.flower.launcher import command_line, error_from_log, raise_from_report  # noqa: E402
from hefed.kinds import kind_names  # noqa: E402
from hefed.protocol import ColumnSpec, Roster, Study, enroll, roster_add  # noqa: E402
from hefed.stats import ColumnEncoding  # noqa: E402

# real Flower processes: one worker at a time (pyproject addopts, --dist loadgroup)
pytestmark = pytest.mark.xdist_group("flower")

GAS_TURBINE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "gas-turbine"
YEARS = ("gt_2011", "gt_2012", "gt_2013")
TARGET = "co2_t"


# --- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Any]:
    """A 1024-bit test key pair; the public and private key files live in different folders."""
    public_key, private_key = hefed.generate_keypair(1024, insecure_test_key=True)
    root = tmp_path_factory.mktemp("flower-keys")
    (root / "public").mkdir()
    (root / "keyholder").mkdir()
    public_path = hefed.save_public_key(public_key, root / "public" / "public_key.json")
    private_path = hefed.save_private_key(private_key, root / "keyholder" / "private_key.json")
    return {"public": public_key, "private": private_key, "public_path": public_path, "private_path": private_path}


def private_secrets(private_key) -> list[bytes]:
    """Every way p and q could be written: decimal, hex, base64url (pheutil) and big-endian bytes."""
    out = []
    for prime in (private_key.p, private_key.q):
        prime = int(prime)
        raw = prime.to_bytes((prime.bit_length() + 7) // 8, "big")
        out += [str(prime).encode(), format(prime, "x").encode(), int_to_base64(prime).encode(), raw]
    return out


def assert_no_secret(blob: bytes, secrets: list[bytes], where: str) -> None:
    for secret in secrets:
        assert secret not in blob, f"private-key material found in {where}"


@pytest.fixture(scope="module")
def gas_files() -> list[Path]:
    paths = [GAS_TURBINE_DIR / f"{name}.csv" for name in YEARS]
    if not all(p.is_file() for p in paths):
        pytest.skip(f"gas-turbine data not found in {GAS_TURBINE_DIR}")
    return paths


@pytest.fixture(scope="module")
def consortium_files(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("flower-consortium")
    paths = []
    for name, frame in filled(hefed.datasets.make_factories(n_factories=3, seed=2)).items():  # no column singles
        paths.append(root / f"{name}.csv")  # out a plant: the key holder would refuse the round
        frame.to_csv(paths[-1], index=False)
    return paths


def enroll_consortium(root: Path, names: Iterable[str]) -> dict[str, Any]:
    """Enroll each factory (``hefed enroll``) in its own folder and put them all in one roster file."""
    dirs = {}
    for name in names:
        dirs[name] = root / f"id-{name}"
        enroll(name, dirs[name])
    roster_path = root / "roster.json"
    roster = roster_add(roster_path, [d / "identity.pub.json" for d in dirs.values()])
    return {"roster_path": roster_path, "roster": roster, "dirs": dirs}


@pytest.fixture(scope="module")
def consortium_identities(tmp_path_factory, consortium_files) -> dict[str, Any]:
    return enroll_consortium(tmp_path_factory.mktemp("flower-identities"), [p.stem for p in consortium_files])


@pytest.fixture(scope="module")
def gas_identities(tmp_path_factory) -> dict[str, Any]:
    return enroll_consortium(tmp_path_factory.mktemp("flower-gas-identities"), YEARS)


def identity_secrets(dirs: Iterable[Path]) -> list[bytes]:
    """Every way an identity's private keys could be written: as stored (base64url), padded base64, raw and hex."""
    out = []
    for directory in dirs:
        obj = json.loads((directory / "identity.key.json").read_text())
        for key in ("signing_private", "agreement_private"):
            text = obj[key]
            raw = base64.urlsafe_b64decode(text + "=")
            out += [text.encode(), base64.b64encode(raw), raw.hex().encode(), raw]
    return out


@contextlib.contextmanager
def marked_processes() -> Iterator[str]:
    """An environment marker every process started inside inherits; on leaving, none may be left running."""
    marker = f"HEFED_FLOWER_TEST={uuid.uuid4().hex}"
    key, value = marker.split("=")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(key, value)
        yield marker
    left = living_with_marker(marker)
    assert not left, f"processes left running: {[' '.join(command_line(p)) for p in left]}"


@pytest.fixture
def process_marker() -> Iterator[str]:
    """A marker every process a test starts inherits; after the test none may be left running."""
    with marked_processes() as marker:
        yield marker


def living_with_marker(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = handle.read().split(b"\0")
        except (OSError, IndexError):
            continue
        if state != "Z" and marker.encode() in environ:
            found.append(int(entry))
    return found


# --- the app in-process -------------------------------------------------------------------------------------


#: The steps of a masked round, in order (the ClientApp's query actions).
STEPS = ("ready", "join", "contribute", "reveal")


class DirectGrid(Grid):
    """A grid that hands each message straight to the ClientApp, as a SuperNode would, and records everything."""

    def __init__(self, node_configs: dict[int, dict[str, Any]], run_config: dict[str, Any],
                 silent: Iterable[int] = (), drop_after_ready: Iterable[int] = (),
                 client_run_config: dict[str, Any] | None = None, drop_after: dict[int, str] | None = None) -> None:
        self.node_configs = node_configs
        self.run_config = run_config
        self.client_run_config = client_run_config if client_run_config is not None else run_config
        self.silent = set(silent)
        # node → the last step it answers (ready, join, contribute), then never again
        self.drop_after = {**{node: "ready" for node in drop_after_ready}, **(drop_after or {})}
        self.sent: list[Message] = []
        self.replies: dict[str, Message] = {}

    def set_run(self, run: Any) -> None:  # pragma: no cover - not used by the hefed app
        self._run = run

    @property
    def run(self) -> Any:  # pragma: no cover - not used by the hefed app
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:  # pragma: no cover - not used by the hefed app
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> list[int]:
        return list(self.node_configs)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = message.object_id
            self.sent.append(message)
            node = message.metadata.dst_node_id
            step = message.metadata.message_type.removeprefix("query.")
            dropped = node in self.drop_after and STEPS.index(step) > STEPS.index(self.drop_after[node])
            if node not in self.silent and not dropped:
                context = Context(run_id=1, node_id=node, node_config=dict(self.node_configs[node]),
                                  state=RecordDict(), run_config=dict(self.client_run_config))
                self.replies[message.metadata.message_id] = client_app(message, context)
            ids.append(message.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        return [self.replies[i] for i in message_ids if i in self.replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        return self.pull_messages(self.push_messages(list(messages)))  # pragma: no cover


@pytest.fixture
def task_identity() -> Iterator[None]:
    """Flower sets the process's task identity when it starts an app; the in-process tests set it themselves."""
    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


def factory_node(path: Path, keys: dict[str, Any], log_dir: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """A factory's node config: its data, its own log folder and, without a study, the key pin (a factory pins its
    key, always); ``extra`` adds to it or replaces it."""
    pin = {} if "study" in extra else {"key-fingerprint": hefed.key_fingerprint(keys["public"])}
    return {"data-path": str(path), "log-dir": str(log_dir), **pin, **extra}


def factory_log(tmp_path: Path, name: str) -> str:
    """The factory's own log in an in-process run (where refusals are told in full; the aggregator gets a category)."""
    path = tmp_path / "factory-logs" / f"hefed-{name}.log"
    return path.read_text() if path.exists() else ""


def last_logged(node_config: dict[str, Any]) -> str:
    """The last line of a factory's own log (the full text of its last refusal)."""
    path = factory_log_path(node_config)
    assert path is not None and path.exists()
    assert path.stat().st_mode & 0o777 == 0o600
    return path.read_text().splitlines()[-1]


def run_in_process(tmp_path: Path, files: list[Path], keys: dict[str, Any], *, silent: Iterable[int] = (),
                   node_extra: dict[int, dict[str, Any]] | None = None, drop_after_ready: Iterable[int] = (),
                   client_config: dict[str, Any] | None = None, drop_after: dict[int, str] | None = None,
                   **config: Any) -> tuple[DirectGrid, dict]:
    """Run the ServerApp over ``files`` in-process; ``config`` overrides run-config keys (``"min-contributors"``);
    ``client_config``, if given, overrides them for the ClientApps only (what a hostile aggregator could send).
    Each factory pins the key of ``keys`` (unless it has a study) and logs to ``tmp_path/factory-logs``."""
    (tmp_path / "factory-logs").mkdir(exist_ok=True)
    node_configs = {i + 1: factory_node(p, keys, tmp_path / "factory-logs", (node_extra or {}).get(i + 1, {}))
                    for i, p in enumerate(files)}
    run_config = {**RUN_CONFIG_DEFAULTS, "public-key": str(keys["public_path"]), "target": TARGET,
                  "out": str(tmp_path / "aggregate.json"), "report": str(tmp_path / "report.json"),
                  "timeout": 0.2, "wait-for-nodes": 0.2, **config}
    grid = DirectGrid(node_configs, run_config, silent, drop_after_ready,
                      {**run_config, **client_config} if client_config is not None else None, drop_after)
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=dict(run_config))
    try:
        server_app(grid, context)
    finally:
        report = json.loads((tmp_path / "report.json").read_text()) if (tmp_path / "report.json").exists() else {}
    return grid, report


def masked_config(identities: dict[str, Any], files: list[Path]) -> tuple[dict[int, dict[str, Any]], dict[str, Any]]:
    """Node configs naming each factory's identity folder and pinning the roster, and the run config's roster, for an
    in-process run."""
    nodes = {i + 1: {"identity-dir": str(identities["dirs"][p.stem]), "roster-digest": identities["roster"].digest()}
             for i, p in enumerate(files)}
    return nodes, {"roster": str(identities["roster_path"])}


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_round_in_process_sends_only_the_public_key(tmp_path, keys, consortium_files, consortium_identities,
                                                    task_identity, caplog, masked):
    """Every config, message and log line of a run is free of p and q and of the identities' private keys.

    The ClientApp is given only n (and, in a masked run, the public roster and round);
    each factory reads its identity from its own node config's folder.
    """
    caplog.set_level(logging.DEBUG, logger="flwr")
    nodes, config = masked_config(consortium_identities, consortium_files) if masked else ({}, {})
    grid, report = run_in_process(tmp_path, consortium_files, keys, node_extra=nodes, **config)
    assert report["status"] == "ok" and len(report["contributors"]) == 3 and report["missing"] == {}
    secrets = private_secrets(keys["private"]) + identity_secrets(consortium_identities["dirs"].values())
    assert_no_secret(json.dumps(grid.run_config).encode(), secrets, "the run config")
    assert_no_secret(json.dumps(grid.node_configs).encode(), secrets, "the node configs")
    assert len(grid.sent) == (12 if masked else 3) and len(grid.replies) == len(grid.sent)  # ready, join, contribute,
    # reveal
    for message in [*grid.sent, *grid.replies.values()]:
        for name, record in message.content.items():
            for key, value in record.items():
                blob = value if isinstance(value, bytes) else repr(value).encode()
                assert_no_secret(blob, secrets, f"message record {name}.{key}")
    assert "hefed: factory" in caplog.text
    assert_no_secret(caplog.text.encode(), secrets, "the Flower log")
    base = {"kind", "public-key", "key-fingerprint"}
    masked_fields = {"query.join": "round", MESSAGE_TYPE: "round-keys", "query.reveal": "unmask-request"}
    for message in grid.sent:
        request = dict(message.content[REQUEST_RECORD])
        assert request["public-key"] == int_to_base64(keys["public"].n)
        if message.metadata.message_type == READY_MESSAGE_TYPE:
            assert set(request) == base | {"roster", "roster-digest", "nonce"}
        elif masked:
            assert set(request) == base | {"model", "roster", "roster-digest",
                                           masked_fields[message.metadata.message_type]}
        else:
            assert set(request) == base | {"model"}
    if masked:  # the factories get the round keys without the sealed shares; each survivor only its own shares
        contribute = dict(next(m for m in grid.sent if m.metadata.message_type == MESSAGE_TYPE).content[REQUEST_RECORD])
        assert all("shares" not in join for join in json.loads(contribute["round-keys"])["joins"])
        for message in (m for m in grid.sent if m.metadata.message_type == "query.reveal"):
            shares = json.loads(dict(message.content[REQUEST_RECORD])["unmask-request"])["shares"]
            assert len(shares) == 1
        assert not [p for d in consortium_identities["dirs"].values() for p in d.glob("round-*.secret.json")]
    assert_no_secret((tmp_path / "aggregate.json").read_bytes(), secrets, "the aggregate")
    # The aggregate is the library's aggregate of the same factories: it decrypts to the same statistics.
    aggregate = hefed.Bundle.load(tmp_path / "aggregate.json")
    roster = consortium_identities["roster"] if masked else None
    stats = hefed.decrypt_statistics(aggregate, keys["private"], roster=roster, allow_unsigned=True)
    expected = hefed.decrypt_statistics(hefed.aggregate(
        [hefed.encrypt_statistics(p, TARGET, keys["public"], factory_id=p.stem) for p in consortium_files]),
        keys["private"], allow_unsigned=True)
    assert stats.gram == expected.gram and sorted(stats.contributors) == sorted(expected.contributors)
    if masked:
        assert report["round_id"] == aggregate.round_id and len(aggregate.manifests) == 3
        assert report["masked"]["ready"] == sorted(p.stem for p in consortium_files)
        assert [r["complete"] for r in report["masked"]["rounds"]] == [True]
    else:
        assert report["masked"] is False and report["round_id"] is None and aggregate.round_id is None


def test_in_process_dropout_after_ready_leaves_it_out_of_the_round(tmp_path, keys, consortium_files,
                                                                  consortium_identities, task_identity):
    """A factory that answers ready but never joins: the round (threshold 2 of 3) goes on with the two others,
    without a re-run; the factory is named as dropped out at the join step."""
    names = [p.stem for p in consortium_files]
    nodes, config = masked_config(consortium_identities, consortium_files)
    grid, report = run_in_process(tmp_path, consortium_files, keys, node_extra=nodes, drop_after_ready=[3],
                                  **config, **{"min-contributors": 2})
    assert report["status"] == "ok" and report["contributors"] == sorted(names[:2])
    (only,) = report["masked"]["rounds"]
    assert only["participants"] == sorted(names) and only["threshold"] == 2 and only["complete"]
    assert only["joined"] == sorted(names[:2]) and only["missing"] == {names[2]: "join: no join within 0.2 s"}
    assert report["missing"] == {names[2]: f"dropped out at the join step of round {only['round_id']}: no join "
                                            "within 0.2 s"}
    contribute = [m for m in grid.sent if m.metadata.message_type == MESSAGE_TYPE]
    assert [m.metadata.dst_node_id for m in contribute] == [1, 2]  # only the joined factories are asked
    aggregate = hefed.Bundle.load(tmp_path / "aggregate.json")
    assert aggregate.round_id == only["round_id"] and sorted(aggregate.contributions) == sorted(names[:2])
    stats = hefed.decrypt_statistics(aggregate, keys["private"], min_contributors=2,
                                     roster=consortium_identities["roster"], allow_unsigned=True)
    expected = hefed.decrypt_statistics(hefed.aggregate(
        [hefed.encrypt_statistics(p, TARGET, keys["public"], factory_id=p.stem) for p in consortium_files[:2]]),
        keys["private"], min_contributors=2, allow_unsigned=True)
    assert stats.to_dict() == expected.to_dict()


def test_in_process_dropout_below_the_threshold_fails_and_reports_the_round(
        tmp_path, keys, consortium_files, consortium_identities, task_identity):
    """With min-contributors = 3 the threshold is 3 of 3: a factory that does not join fails the run, which says
    who is missing and why (no values), and writes no aggregate."""
    names = [p.stem for p in consortium_files]
    nodes, config = masked_config(consortium_identities, consortium_files)
    with pytest.raises(TooFewContributorsError, match=r"only 2 factories left after the join step of round \w+ "
                                                      r"\(.*\), fewer than the 3 needed \(the round's threshold\); "
                                                      r"missing: "):
        run_in_process(tmp_path, consortium_files, keys, node_extra=nodes, drop_after_ready=[3], **config)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["status"] == "failed" and report["error_type"] == "TooFewContributorsError"
    assert [r["missing"] for r in report["masked"]["rounds"]] == [{names[2]: "join: no join within 0.2 s"}]
    assert names[2] in report["error"] and not (tmp_path / "aggregate.json").exists()


def test_in_process_ready_step_leaves_out_factories_that_cannot_take_part(
        tmp_path, keys, consortium_files, consortium_identities, task_identity):
    """A factory pinned to another roster, or without an identity, is named as not ready; no re-run is needed."""
    names = [p.stem for p in consortium_files]
    nodes, config = masked_config(consortium_identities, consortium_files)
    nodes[2] = {**nodes[2], "roster-digest": "0" * 32}
    nodes[3] = {"roster-digest": consortium_identities["roster"].digest()}  # no identity folder
    other = consortium_identities["roster"].digest()
    with pytest.raises(TooFewContributorsError, match="after the ready step"):
        run_in_process(tmp_path, consortium_files, keys, node_extra=nodes, **config)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["masked"]["ready"] == [names[0]] and report["masked"]["rounds"] == []
    assert report["missing"][names[1]] == "not ready: refused: round or roster mismatch"
    assert report["missing"][names[2]] == "not ready: refused: bad request or configuration"
    assert f"sent roster {other}, but this factory is pinned to roster {'0' * 32}" in factory_log(tmp_path, names[1])
    assert "no 'identity-dir'" in factory_log(tmp_path, names[2])
    # With min-contributors = 2 the two factories that can take part make a complete round at once.
    nodes[2] = masked_config(consortium_identities, consortium_files)[0][2]
    _, report = run_in_process(tmp_path, consortium_files, keys, node_extra=nodes, **config, force=True,
                               **{"min-contributors": 2})
    assert report["status"] == "ok" and report["contributors"] == sorted(names[:2])
    assert [r["complete"] for r in report["masked"]["rounds"]] == [True]
    assert report["missing"][names[2]] == "not ready: refused: bad request or configuration"


def test_in_process_coefficients_and_evaluation_ask_each_kind_its_own_request(tmp_path, keys, consortium_files,
                                                                            task_identity):
    """The other kinds that travel by Flower: the run's ridge reaches a coefficients request, the global model an
    evaluation request (on each factory's holdout); both aggregates decrypt to the library's own."""
    def library(request, data):
        return hefed.aggregate([hefed.encrypt_table(data(p), TARGET, keys["public"], factory_id=p.stem,
                                                    request=request).bundle
                               for p in sorted(consortium_files, key=lambda p: p.stem)])  # as the tally orders them

    def plain(bundle):
        return hefed.decrypt_bundle(bundle, keys["private"], allow_unsigned=True).to_dict()

    _, report = run_in_process(tmp_path, consortium_files, keys, kind="coefficients", ridge=0.5)
    assert report["status"] == "ok" and report["kind"] == "coefficients"
    coefficients = hefed.Bundle.load(tmp_path / "aggregate.json")
    assert plain(coefficients) == plain(library(hefed.CoefficientsRequest(0.5), lambda p: p))

    model = hefed.solve(hefed.decrypt_statistics(library(hefed.StatisticsRequest(), lambda p: p), keys["private"],
            allow_unsigned=True))
    model_path = model.save(tmp_path / "model.json")
    _, report = run_in_process(tmp_path, consortium_files, keys, kind="evaluation", model=str(model_path), force=True,
                               **{"test-fraction": 0.25, "seed": 1})
    assert report["status"] == "ok" and report["kind"] == "evaluation"
    holdout = library(hefed.EvaluationRequest(model),
                      lambda p: hefed.split_holdout(hefed.read_table(p), 0.25, 1)[1])
    assert plain(hefed.Bundle.load(tmp_path / "aggregate.json")) == plain(holdout)


def test_error_and_silence_leave_exactly_the_named_contributors(tmp_path, keys, consortium_files, task_identity):
    """One factory answers with an error, one never answers: the aggregate is that of the one named contributor."""
    names = [p.stem for p in consortium_files]
    grid, report = run_in_process(
        tmp_path, consortium_files, keys, silent=[3], node_extra={2: {"target": "no_such_column"}},
        **{"min-contributors": 1, "expected-factories": ",".join(names)},
    )
    assert report["status"] == "ok" and report["contributors"] == [names[0]]
    assert report["missing"][names[1]] == "error: refused: data not usable"  # errors stay home:
    assert "no_such_column" in factory_log(tmp_path, names[1])  # the factory's own log says which column
    assert report["missing"][names[2]] == "no answer within 0.2 s"
    aggregate = hefed.Bundle.load(tmp_path / "aggregate.json")
    assert aggregate.contributors == [names[0]]
    stats = hefed.decrypt_statistics(aggregate, keys["private"], min_contributors=1, allow_unsigned=True)
    alone = hefed.compute_statistics(consortium_files[0], TARGET, factory_id=names[0])
    assert stats.gram == alone.gram


def test_too_few_contributors_fail_with_a_clear_message(tmp_path, keys, consortium_files, task_identity):
    with pytest.raises(TooFewContributorsError, match=r"only 2 of 3 factories contributed .*min-contributors = 3"):
        run_in_process(tmp_path, consortium_files, keys, silent=[2])
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["status"] == "failed" and "fewer than min-contributors = 3" in report["error"]
    assert not (tmp_path / "aggregate.json").exists()


def test_aggregator_refuses_a_private_key(tmp_path, keys, consortium_files, task_identity):
    """A private key given as the aggregator's key is refused before anything is sent."""
    grid = DirectGrid({1: {"data-path": str(consortium_files[0])}}, {})
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={
        **RUN_CONFIG_DEFAULTS, "public-key": str(keys["private_path"]), "out": str(tmp_path / "a.json")})
    with pytest.raises(InsecureKeyError, match="private key"):
        server_app(grid, context)
    assert grid.sent == []
    with pytest.raises(InsecureKeyError):
        run_local_federation(consortium_files, TARGET, keys["private_path"], tmp_path / "b.json")


def test_factory_pinned_to_its_key_refuses_another(tmp_path, keys, consortium_files, task_identity):
    """An aggregator that swaps in a key of its own gets an error, not a bundle it could decrypt."""
    other_public, _ = hefed.generate_keypair(1024, insecure_test_key=True)
    other_path = hefed.save_public_key(other_public, tmp_path / "other_public.json")
    pin = {i: {"key-fingerprint": hefed.key_fingerprint(keys["public"])} for i in (1, 2, 3)}
    with pytest.raises(TooFewContributorsError):
        run_in_process(tmp_path, consortium_files, {**keys, "public_path": other_path}, node_extra=pin)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["contributors"] == []
    assert all(why == "error: refused: key mismatch" for why in report["missing"].values())
    assert all("pinned to key" in factory_log(tmp_path, p.stem) for p in consortium_files)


def test_factory_with_an_identity_refuses_an_unmasked_request(tmp_path, keys, consortium_files,
                                                              consortium_identities, task_identity):
    """An aggregator cannot downgrade an enrolled factory: without a round it sends no bundle, only an error."""
    nodes, _ = masked_config(consortium_identities, consortium_files)
    nodes[3] = {"roster-digest": consortium_identities["roster"].digest()}
    with pytest.raises(TooFewContributorsError):
        run_in_process(tmp_path, consortium_files, keys, node_extra=nodes)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["contributors"] == [] and len(report["missing"]) == 3
    assert all(why == "error: refused: round or roster mismatch" for why in report["missing"].values())
    assert all("masked rounds only" in factory_log(tmp_path, p.stem) for p in consortium_files)


def test_tally_refuses_duplicates_and_foreign_bundles(keys, consortium_files):
    settings = RunSettings.from_config({"target": TARGET, "min-contributors": 1})
    request = make_request("statistics", keys["public"])
    good = [hefed.encrypt_statistics(p, TARGET, keys["public"], factory_id=p.stem) for p in consortium_files]
    other = hefed.encrypt_statistics(consortium_files[2], TARGET, hefed.generate_keypair(1024, True)[0],
                                     factory_id="intruder")
    replies = [
        Reply(1, {"status": "ok", "factory-id": good[0].contributors[0], "bundle": bundle_to_bytes(good[0])}),
        Reply(2, {"status": "ok", "factory-id": good[0].contributors[0], "bundle": bundle_to_bytes(good[1])}),
        Reply(3, {"status": "ok", "factory-id": good[2].contributors[0], "bundle": b"\x80\x04pickle?"}),
        Reply(4, {"status": "ok", "factory-id": "intruder", "bundle": bundle_to_bytes(other)}),
        Reply(5, flower_error="its ClientApp crashed"),
    ]
    result = tally(replies, [1, 2, 3, 4, 5, 6], request, settings)
    assert result.contributors == []
    assert "more than one SuperNode" in result.missing[good[0].contributors[0]]
    assert "not UTF-8 text" in result.missing[good[2].contributors[0]]  # a pickle is refused before parsing
    assert "not the consortium key" in result.missing["intruder"]
    assert result.missing["node 5"] == "its ClientApp crashed"
    assert result.missing["node 6"] == "no answer within 60 s"


def test_app_project_is_a_valid_flower_app(tmp_path):
    import tomllib

    from flwr.common.config import validate_config

    directory = write_app(tmp_path / "app")
    config = tomllib.loads((directory / "pyproject.toml").read_text())
    valid, errors, _ = validate_config(config, check_module=True, project_dir=directory)
    assert valid, errors
    assert config["tool"]["flwr"]["app"]["config"] == RUN_CONFIG_DEFAULTS
    with pytest.raises(OutputExistsError):
        write_app(directory)


def test_federate_refuses_before_starting_anything(tmp_path, keys, consortium_files):
    group = HefedGroup(commands={"federate": federate})
    (tmp_path / "agg.json").write_text("{}")
    base = ["federate", "--data", *map(str, consortium_files), "--target", TARGET,
            "--public-key", str(keys["public_path"])]
    result = CliRunner().invoke(group, [*base, "--out", str(tmp_path / "agg.json")])
    assert result.exit_code == 2 and "file exists" in result.output
    result = CliRunner().invoke(group, [*base, "--out", str(tmp_path / "new.json"), "--min-contributors", "4"])
    assert result.exit_code == 2 and "only 3 data files" in result.output
    result = CliRunner().invoke(group, [*base, "--out", str(tmp_path / "new.json"), "--roster", "roster.json"])
    assert result.exit_code == 2 and "one --identity per data file" in result.output
    result = CliRunner().invoke(group, [*base, "--out", str(tmp_path / "new.json"), "--roster", "roster.json",
                                        "--identity", "id-a", "--identity", "id-b"])
    assert result.exit_code == 2 and "3 data files, 2 identities" in result.output
    with pytest.raises(UsageError):
        raise_from_report({"status": "failed", "error": "bad", "error_type": "UsageError"})
    log = "Traceback ...\nhefed.errors.UsageError: run config 'out' is not set\nExit Code: 201\n"
    error = error_from_log(7, "finished:failed", log)
    assert isinstance(error, UsageError) and str(error) == "run config 'out' is not set"
    assert "last log line: boom" in str(error_from_log(7, "finished:failed", "x\nboom\n"))


# --- one run-settings object, and the progress of a run ---------------------------------------------------


def test_run_settings_are_one_object_for_the_cli_the_launcher_and_the_serverapp(tmp_path):
    """``from_options`` (``hefed federate``, the launcher) and ``from_config`` (the apps) give the same object."""
    settings = RunSettings.from_options(
        kind="coefficients", public_key=tmp_path / "pub.json", out=tmp_path / "agg.json", target="NOX",
        features=["AT", "AP"], min_contributors=2, timeout=5, ridge=0.5, roster=tmp_path / "roster.json",
        max_rounds=4, expected_factories=["a", "b"], test_fraction=0.25, seed=3,
    )
    config = settings.to_run_config()
    assert set(config) == set(RUN_CONFIG_DEFAULTS)
    assert RunSettings.from_config(config) == settings and settings.masked
    assert config["public-key"] == str((tmp_path / "pub.json").absolute())  # the ServerApp runs elsewhere
    assert RunSettings.from_config({}) == RunSettings()
    assert KINDS == kind_names(flower=True)  # the kinds a federation collects come from the registry
    with pytest.raises(UsageError, match="kind must be one of " + ", ".join(KINDS)):
        RunSettings.from_options(kind="summary")  # a registered kind that does not travel by Flower


@pytest.mark.parametrize(("options", "config", "message", "parameter"), [
    ({"min_contributors": 0}, {"min-contributors": 0}, "min-contributors must be a positive integer",
     "min_contributors"),
    ({"timeout": 0.0}, {"timeout": 0.0}, "timeout must be a positive number of seconds", "timeout"),
    ({"test_fraction": 1.0}, {"test-fraction": 1.0}, "test-fraction must be 0 or strictly between", "test_fraction"),
    ({"ridge": -1.0}, {"ridge": -1.0}, "ridge must be a non-negative number", "ridge"),
    ({"missing": "keep"}, {"missing": "keep"}, "missing must be 'drop' or 'error'", "missing"),
    ({"max_rounds": 11}, {"max-rounds": 11}, "max-rounds must be between 1 and 10", "max_rounds"),
    ({"expected_factories": ["a", "a"]}, {"expected-factories": "a,a"}, "lists a factory twice",
     "expected_factories"),
    ({"kind": "evaluation"}, {"kind": "evaluation"}, "needs the global model it evaluates", "model"),
    ({"roster": "r.json", "min_contributors": 1}, {"roster": "r.json", "min-contributors": 1}, "masks are pairwise",
     "min_contributors"),
])
def test_each_run_setting_is_checked_in_one_place(options, config, message, parameter):
    """The same check, message and parameter, whether the setting comes from the CLI or from a run config."""
    with pytest.raises(UsageError, match=message) as from_options:
        RunSettings.from_options(**options)
    with pytest.raises(UsageError, match=message) as from_config:
        RunSettings.from_config(config)
    assert str(from_config.value) == f"run config: {from_options.value}"
    assert from_options.value.parameters == from_config.value.parameters == (parameter,)


def test_progress_file_is_read_as_it_grows(tmp_path):
    """Whole JSON lines only, junk skipped, a missing file is no event yet, and writing never fails a run."""
    path = tmp_path / "progress.jsonl"
    write, follower = ProgressLog(path), ProgressFollower(path)
    write(ProgressEvent("nodes", "3 of 3 expected SuperNodes connected"))
    write(ProgressEvent("reply", "a: statistics bundle received (1.0 s)", factory="a", ok=True))
    first = follower.read()
    assert [(e.step, e.factory, e.ok) for e in first] == [("nodes", None, None), ("reply", "a", True)]
    assert all(e.seconds is not None for e in first)
    with open(path, "ab") as handle:  # a line that is no event, and one still being written
        handle.write(b'not json\n[1]\n{"step": "done", "mess')
    assert follower.read() == []
    with open(path, "ab") as handle:
        handle.write(b'age": "aggregate of 1 factory", "ok": true, "round": 2}\n')
    (done,) = follower.read()
    assert (done.step, done.message, done.ok, done.round) == ("done", "aggregate of 1 factory", True, 2)
    assert follower.read() == [] and ProgressFollower(tmp_path / "missing.jsonl").read() == []
    problems: list[str] = []
    blocked = ProgressLog(tmp_path / "no-such-folder" / "progress.jsonl", on_error=problems.append)
    blocked(ProgressEvent("done", "aggregate of 1 factory"))
    assert len(problems) == 1 and "cannot write the progress file" in problems[0]
    ProgressLog("")(ProgressEvent("done", "no file, nothing written"))


def test_in_process_run_writes_its_progress_as_it_goes(tmp_path, keys, consortium_files, consortium_identities,
                                                       task_identity):
    """The ServerApp's progress file: connections, each ready answer, join, bundle and reveal (with its step), the
    drop-out, the round, the end."""
    names = [p.stem for p in consortium_files]
    nodes, config = masked_config(consortium_identities, consortium_files)
    _, report = run_in_process(tmp_path, consortium_files, keys, node_extra=nodes, drop_after={3: "join"}, **config,
                               **{"min-contributors": 2, "progress": str(tmp_path / "progress.jsonl")})
    assert report["status"] == "ok"
    events = ProgressFollower(tmp_path / "progress.jsonl").read()
    assert [e.step for e in events[:2]] == ["nodes", "asked"] and events[-1].step == "done"
    replies = {phase: sorted(str(e.factory) for e in events if e.step == "reply" and e.phase == phase)
               for phase in ("ready", "join", "contribute", "reveal")}
    assert replies == {"ready": sorted(names), "join": sorted(names), "contribute": sorted(names[:2]),
                       "reveal": sorted(names[:2])}
    assert [e.round for e in events if e.step == "round" and "asking" in e.message] == [1]
    assert any(e.step == "missing" and e.factory == names[2] and e.phase == "contribute" and not e.ok for e in events)
    assert any(e.step == "round" and "recovering without " + names[2] in e.message for e in events)
    assert events[-1].ok and events[-1].message.startswith("aggregate of 2 factories")


def test_federate_shows_progress_on_stderr_and_nothing_with_json_or_quiet(tmp_path, monkeypatch):
    """``hefed federate`` prints each event on stderr as it comes (plain lines off a terminal), none with --json
    or --quiet; the kinds it accepts are the registry's."""
    events = [ProgressEvent("superlink", "Flower SuperLink listening on 127.0.0.1:1"),
              ProgressEvent("reply", "a: statistics bundle received (1.0 s)", factory="a", ok=True),
              ProgressEvent("missing", "missing b: no answer within 60 s", factory="b", ok=False)]

    def fake(data_paths, target, public_key_path, out, *args, progress=None, **kwargs):
        for event in events:
            if progress is not None:
                progress(event)
        return FederationResult(Path(out), "statistics", ["a"], {"b": "no answer within 60 s"}, 7, 1.5)

    monkeypatch.setattr(hefed.flower, "run_local_federation", fake)
    group = HefedGroup(commands={"federate": federate})
    base = ["federate", "--data", "a.csv", "b.csv", "--target", "y", "--public-key", "pub.json",
            "--out", str(tmp_path / "agg.json"), "--min-contributors", "1"]
    plain = CliRunner().invoke(group, base)
    assert plain.exit_code == 0, plain.output
    assert [line.split("] ", 1)[1] for line in plain.stderr.splitlines()] == [e.message for e in events]
    assert "aggregate of 1 factory (a)" in plain.stdout and "missing b: no answer within 60 s" in plain.stdout
    as_json = CliRunner().invoke(group, [*base, "--json"])
    assert as_json.exit_code == 0 and as_json.stderr == ""
    obj = json.loads(as_json.stdout)
    assert obj["ok"] and obj["contributors"] == ["a"] and obj["missing"] == {"b": "no answer within 60 s"}
    quiet = CliRunner().invoke(group, [*base, "--quiet"])
    assert quiet.exit_code == 0 and quiet.output == ""
    wrong = CliRunner().invoke(group, [*base, "--kind", "nope"])
    assert wrong.exit_code == 2 and all(kind in wrong.output for kind in KINDS)


def test_progress_on_a_terminal_is_drawn_with_rich(capsys):
    show = progress_printer(terminal=True)
    show(ProgressEvent("reply", "a: statistics bundle received [bold]", factory="a", ok=True))
    show(ProgressEvent("missing", "missing b: no answer within 60 s", factory="b", ok=False))
    err = capsys.readouterr().err
    assert "✓ a: statistics bundle received [bold]" in err and "✗ missing b: no answer within 60 s" in err


# --- studies: each factory computes from its own copy of the study --------------------------------------------

STUDY_FEATURES = ["coal_t", "natural_gas_t", "diesel_t", "electricity_mwh", "clinker_t"]


def make_study(public_key: Any, **terms: Any) -> Study:
    """The consortium's study of the synthetic factories: statistics, coefficients (ridge 0.5) and evaluation, a
    25% holdout, two contributors at least, and a per-column grid for electricity (not the run config's default)."""
    defaults: dict[str, Any] = {
        "kinds": {"statistics": {}, "coefficients": {"ridge": 0.5}, "evaluation": {}},
        "holdout": Holdout(0.25, 1), "min_contributors": 2,
        "column_encodings": {"electricity_mwh": ColumnEncoding(60, 20)},
    }
    return Study.new(public_key, ColumnSpec(TARGET, "t"), STUDY_FEATURES, **{**defaults, **terms})


@pytest.fixture(scope="module")
def study_setup(tmp_path_factory, keys, consortium_files) -> dict[str, Any]:
    """The study at the aggregator, and each factory's own copy of it (another file, the same digest)."""
    root = tmp_path_factory.mktemp("flower-study")
    for name in ("aggregator", "other", *(p.stem for p in consortium_files)):
        (root / name).mkdir()
    study = make_study(keys["public"])
    aggregator = study.save(root / "aggregator" / "study.json")
    copies = {}
    for path in consortium_files:
        copies[path.stem] = study.save(root / path.stem / "study.json")
    other = make_study(keys["public"])  # the same terms, another study (id): another digest
    return {"study": study, "path": aggregator, "copies": copies, "other": other,
            "other_path": other.save(root / "other" / "study.json")}


def study_nodes(setup: dict[str, Any], files: list[Path]) -> dict[int, dict[str, Any]]:
    """Each factory's node config: its own copy of the study, pinned by its digest."""
    return {i + 1: {"study": str(setup["copies"][p.stem]), "study-digest": setup["study"].digest}
            for i, p in enumerate(files)}


def run_study(tmp_path: Path, files: list[Path], keys: dict[str, Any], study_path: Path, **kwargs: Any
              ) -> tuple[DirectGrid, dict]:
    """Run the ServerApp with ``study`` in its run config and nothing the study decides (no key, no target)."""
    config = {"public-key": "", "target": "", "study": str(study_path)}
    return run_in_process(tmp_path, files, keys, **{**config, **kwargs})


def study_aggregate(files: list[Path], study: Study, kind: str = "statistics", data: Any = None,
                    **kwargs: Any) -> hefed.Bundle:
    """The library's aggregate of the same factories, each encrypting with ``encrypt_for_study`` (as ``hefed
    encrypt --study`` does), in factory-id order as the tally orders them."""
    ordered = sorted(files, key=lambda p: p.stem)
    return hefed.aggregate([hefed.encrypt_for_study(data(p) if data else p, study, factory_id=p.stem, kind=kind,
                                                    **kwargs).bundle for p in ordered], study=study)


#: What a hostile aggregator could put in the ClientApps' run config: a study factory reads none of it.
HOSTILE_RUN_CONFIG = {"target": "coal_t", "features": "diesel_t", "int-bits": 3, "frac-bits": 2, "ridge": 9.0,
                      "missing": "error", "test-fraction": 0.5, "seed": 7, "kind": "coefficients"}


@pytest.mark.parametrize("kind", ["statistics", "coefficients"])
def test_study_factories_compute_from_their_own_copy_not_the_run_config(
        tmp_path, keys, consortium_files, study_setup, task_identity, kind):
    """Each factory computes what its own copy of the study says (columns, per-column grid, holdout, ridge), even
    with a hostile run config in its ClientApp; the requests carry the study's digest and not its contents; the
    aggregate and the report name the study; min-contributors is raised to the study's."""
    study = study_setup["study"]
    grid, report = run_study(tmp_path, consortium_files, keys, study_setup["path"], kind=kind,
                             node_extra=study_nodes(study_setup, consortium_files),
                             client_config=HOSTILE_RUN_CONFIG, **{"min-contributors": 1})
    assert report["status"] == "ok" and len(report["contributors"]) == 3 and report["missing"] == {}
    assert report["study"] == study.digest and report["min_contributors"] == study.min_contributors
    for message in grid.sent:
        request = dict(message.content[REQUEST_RECORD])
        assert set(request) == {"kind", "public-key", "key-fingerprint", "model", "study"}
        assert request["study"] == study.digest and request["public-key"] == int_to_base64(study.public_key.n)
    aggregate = hefed.Bundle.load(tmp_path / "aggregate.json")
    assert aggregate.study == study.digest and aggregate.encoding == study.encoding
    assert aggregate.target == TARGET and sorted(aggregate.features) == sorted(STUDY_FEATURES)
    plain = hefed.decrypt_bundle(aggregate, keys["private"], study=study, allow_unsigned=True)
    expected = hefed.decrypt_bundle(study_aggregate(consortium_files, study, kind), keys["private"], study=study,
            allow_unsigned=True)
    assert plain.to_dict() == expected.to_dict()
    if kind == "statistics":  # the holdout was kept out: fewer rows than the files hold
        assert plain.n == sum(round(0.75 * len(hefed.read_table(p))) for p in consortium_files)


def test_study_evaluation_reads_each_factory_holdout_as_the_study_says(
        tmp_path, keys, consortium_files, study_setup, task_identity):
    """An evaluation in a study: the model (solved in the study) travels in the request; each factory measures it on
    the study's holdout of its rows. A model solved outside the study is refused, at the aggregator and at the
    factories."""
    study = study_setup["study"]
    statistics = hefed.decrypt_statistics(study_aggregate(consortium_files, study), keys["private"], study=study,
            allow_unsigned=True)
    model_path = hefed.solve(statistics).save(tmp_path / "model.json")
    nodes = study_nodes(study_setup, consortium_files)
    _, report = run_study(tmp_path, consortium_files, keys, study_setup["path"], kind="evaluation",
                          model=str(model_path), node_extra=nodes, client_config=HOSTILE_RUN_CONFIG)
    assert report["status"] == "ok" and report["kind"] == "evaluation" and report["study"] == study.digest
    aggregate = hefed.Bundle.load(tmp_path / "aggregate.json")
    holdout = study_aggregate(consortium_files, study, "evaluation",
                              data=lambda p: Holdout(0.25, 1).split(hefed.read_table(p))[1],
                              model=hefed.LinearModel.load(model_path))
    assert (hefed.decrypt_bundle(aggregate, keys["private"], study=study, allow_unsigned=True).to_dict()
            == hefed.decrypt_bundle(holdout, keys["private"], study=study, allow_unsigned=True).to_dict())

    outside = hefed.solve(hefed.decrypt_statistics(hefed.aggregate(
        [hefed.encrypt_table(p, TARGET, keys["public"], features=STUDY_FEATURES, factory_id=p.stem).bundle
         for p in consortium_files]), keys["private"], allow_unsigned=True)).save(tmp_path / "outside.json")
    with pytest.raises(SchemaMismatchError, match=f"a model solved in no study, not in study {study.digest}"):
        run_study(tmp_path, consortium_files, keys, study_setup["path"], kind="evaluation", model=str(outside),
                  node_extra=nodes, force=True)
    request = make_request("evaluation", keys["public"], hefed.LinearModel.load(outside), study.digest)
    node = {"data-path": str(consortium_files[0]), "log-dir": str(tmp_path), **nodes[1]}
    reply = factory_reply(request, node, {})
    assert reply["status"] == "error" and reply["error"] == "refused: study or schema mismatch"
    assert last_logged(node).endswith(f"the model to evaluate was solved in no study, not in this factory's study "
                                      f"{study.digest}; refused")


@pytest.mark.parametrize("case", ["other study", "pin mismatch", "no study", "node target"])
def test_a_factory_whose_study_differs_is_left_out_with_the_reason(
        tmp_path, keys, consortium_files, study_setup, task_identity, case):
    """Two factories hold the run's study; the third holds another study, a study file that is not its pin, no
    study at all, or a node config contradicting its study: it is refused with the reason and left out."""
    study, other = study_setup["study"], study_setup["other"]
    nodes = study_nodes(study_setup, consortium_files)
    nodes[3] = {
        "other study": {"study": str(study_setup["other_path"]), "study-digest": other.digest},
        "pin mismatch": {"study": str(study_setup["copies"][consortium_files[2].stem]), "study-digest": other.digest},
        "no study": {"key-fingerprint": hefed.key_fingerprint(keys["public"])},
        "node target": {**nodes[3], "target": "clinker_t"},
    }[case]
    category = {"other study": "refused: study or schema mismatch", "pin mismatch": "refused: study or schema mismatch",
                "no study": "refused: study or schema mismatch", "node target": "refused: bad request or configuration",
                }[case]
    expected = {
        "other study": f"the aggregator asks for study {study.digest}, but this factory's study is {other.digest}; "
                       "refused",
        "pin mismatch": f"this factory's study file holds study {study.digest}, not the pinned study {other.digest} "
                        "(node config 'study-digest'); refused until they agree",
        "no study": f"the aggregator asks for study {study.digest}, but this factory has no study (node config "
                    "'study' and 'study-digest' name its own copy of the study file); refused",
        "node target": f"the node config contradicts this factory's study {study.digest}: 'target' is 'clinker_t', "
                       f"the study's is '{TARGET}' (with a study, leave them out)",
    }[case]
    _, report = run_study(tmp_path, consortium_files, keys, study_setup["path"], node_extra=nodes,
                          **{"min-contributors": 2})
    third = consortium_files[2].stem
    assert report["status"] == "ok" and report["contributors"] == sorted(p.stem for p in consortium_files[:2])
    assert report["missing"] == {third: f"error: {category}"}  # errors stay home: the category only
    assert expected in factory_log(tmp_path, third)
    aggregate = hefed.Bundle.load(tmp_path / "aggregate.json")
    assert aggregate.study == study.digest and third not in aggregate.contributors


def test_a_factory_with_a_study_refuses_an_unstudied_request(tmp_path, keys, consortium_files, consortium_identities,
                                                             study_setup, task_identity):
    """No downgrade: an aggregator whose run config names no study (and sets target, key, encoding itself) gets only
    errors from factories that hold a study, in a plain round and in the ready step of a masked one."""
    digest = study_setup["study"].digest
    refusal = (f"this factory computes only for its study {digest} (node config 'study'), and the request names no "
               "study; refused")
    nodes = study_nodes(study_setup, consortium_files)
    with pytest.raises(TooFewContributorsError):
        run_in_process(tmp_path, consortium_files, keys, node_extra=nodes, **{"int-bits": 3})
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["contributors"] == [] and report["study"] is None
    assert report["missing"] == {p.stem: "error: refused: study or schema mismatch" for p in consortium_files}
    assert all(refusal in factory_log(tmp_path, p.stem) for p in consortium_files)
    masked_nodes, config = masked_config(consortium_identities, consortium_files)
    for i in masked_nodes:
        masked_nodes[i].update(nodes[i])
    with pytest.raises(TooFewContributorsError, match="after the ready step"):
        run_in_process(tmp_path, consortium_files, keys, node_extra=masked_nodes, force=True, **config)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["masked"]["ready"] == []
    assert report["missing"] == {p.stem: "not ready: refused: study or schema mismatch" for p in consortium_files}
    assert all(factory_log(tmp_path, p.stem).count(refusal) == 2 for p in consortium_files)


def test_forged_requests_are_refused_by_a_study_factory(tmp_path, keys, consortium_files, consortium_identities,
                                                        task_identity):
    """Requests an aggregator could forge while naming the right study: another key, a kind the study does not
    allow, and for a study naming a roster an unmasked request or another roster. Nothing is encrypted."""
    roster = consortium_identities["roster"]
    study = make_study(keys["public"], kinds={"statistics": {}}, roster_digest=roster.digest())
    path = study.save(tmp_path / "study.json")
    name = consortium_files[0].stem
    node = {"data-path": str(consortium_files[0]), "study": str(path), "study-digest": study.digest,
            "identity-dir": str(consortium_identities["dirs"][name]), "log-dir": str(tmp_path)}
    other_key = hefed.generate_keypair(1024, insecure_test_key=True)[0]
    other_roster = Roster({name: roster.members[name]})

    def refusal(request: dict[str, str], ready: bool = False) -> str:
        """The full text of the refusal, from the factory's own log; the reply itself carries a category only."""
        reply = factory_ready_reply(request, node) if ready else factory_reply(request, node, HOSTILE_RUN_CONFIG)
        assert reply["status"] == "error" and "bundle" not in reply and reply["error"] in REPLY_CATEGORIES
        return last_logged(node).split("; the aggregator is told only that): ", 1)[1]

    assert refusal(make_request("statistics", other_key, study=study.digest)) == (
        f"the aggregator asked for encryption under key {hefed.key_fingerprint(other_key)}, but study "
        f"{study.digest} names key {study.key_fingerprint}; refused")
    assert refusal(make_request("coefficients", keys["public"], study=study.digest)) == (
        f"the aggregator asked for coefficients bundles, which study {study.digest} does not allow (it allows "
        "statistics); refused")
    node_without_identity = {k: v for k, v in node.items() if k != "identity-dir"}
    reply = factory_reply(make_request("statistics", keys["public"], study=study.digest), node_without_identity, {})
    assert reply["error"] == "refused: round or roster mismatch"
    assert last_logged(node).endswith(
        f"study {study.digest} names a roster, so this factory contributes to its masked rounds only; an unmasked "
        "request, whose bundle the key holder could decrypt alone, is refused")
    assert refusal(make_ready_request("statistics", keys["public"], other_roster, study.digest), ready=True) == (
        f"the aggregator sent roster {other_roster.digest()}, but study {study.digest} names roster "
        f"{roster.digest()}; refused")
    assert refusal(make_ready_request("coefficients", keys["public"], roster, study.digest), ready=True).startswith(
        "the aggregator asked for coefficients bundles")
    ready = make_ready_request("statistics", keys["public"], roster, study.digest)
    reply = factory_ready_reply(ready, node, node_id=7)
    assert set(reply) == {"status", "factory-id", "signature"}
    assert (reply["status"], reply["factory-id"]) == ("ok", name)
    statement = ready_statement(ready["nonce"], name, study.key_fingerprint, roster.digest(), study.digest, 7)
    roster.members[name].verifier().verify(bytes.fromhex(str(reply["signature"])), statement)


def test_a_masked_study_run_signs_the_study(tmp_path, keys, consortium_files, consortium_identities, task_identity):
    """A study naming the roster: the ready step and the masked round carry its digest, the aggregate is the study's
    (its signatures cover the digest), and the key holder decrypts it with the study and the roster."""
    roster = consortium_identities["roster"]
    study = make_study(keys["public"], roster_digest=roster.digest())
    path = study.save(tmp_path / "study.json")
    nodes, config = masked_config(consortium_identities, consortium_files)
    for node in nodes.values():
        node.update({"study": str(path), "study-digest": study.digest})
    with pytest.raises(UsageError, match=f"study {study.digest} names roster {roster.digest()}: set 'roster'"):
        run_study(tmp_path, consortium_files, keys, path, node_extra=nodes)
    grid, report = run_study(tmp_path, consortium_files, keys, path, node_extra=nodes, force=True, **config)
    assert report["status"] == "ok" and report["study"] == study.digest and len(report["contributors"]) == 3
    assert all(dict(m.content[REQUEST_RECORD])["study"] == study.digest for m in grid.sent)
    aggregate = hefed.Bundle.load(tmp_path / "aggregate.json")
    assert aggregate.study == study.digest and aggregate.round_id == report["round_id"]
    stats = hefed.decrypt_statistics(aggregate, keys["private"], roster=roster, study=study, allow_unsigned=True)
    # the same terms without the roster (a roster study refuses plain bundles): the same exact sums
    plain = replace(study, roster_digest=None)
    expected = hefed.decrypt_statistics(study_aggregate(consortium_files, plain), keys["private"], study=plain,
            allow_unsigned=True)
    assert {**stats.to_dict(), "study": None} == {**expected.to_dict(), "study": None}


@pytest.mark.parametrize(("config", "error", "message"), [
    ({"target": "NOX"}, UsageError,
     "run config: with a study, the study decides what factories compute: leave target at the default (set to "
     "'NOX')"),
    ({"target": "NOX", "ridge": 0.5, "int-bits": 3, "test-fraction": 0.2}, UsageError,
     "run config: with a study, the study decides what factories compute: leave target, int-bits, test-fraction, "
     "ridge at the defaults (set to 'NOX', 3, 0.2, 0.5)"),
    ({"kind": "coefficients", "study": "narrow"}, UsageError,
     "does not allow coefficients bundles (it allows statistics)"),
    ({"public-key": "other"}, KeyMismatchError, "leave 'public-key' out (the study carries the key)"),
])
def test_the_serverapp_refuses_a_run_config_that_steers_a_study(tmp_path, keys, consortium_files, study_setup,
                                                                task_identity, config, error, message):
    """A run config naming a study may set nothing the study decides, a kind the study does not allow or another
    key: refused in one line before any message is sent, and the report says why."""
    if config.get("study") == "narrow":
        config = {**config, "study": str(make_study(keys["public"], kinds={"statistics": {}}).save(
            tmp_path / "narrow.json"))}
    if config.get("public-key") == "other":
        other = hefed.generate_keypair(1024, insecure_test_key=True)[0]
        config = {"public-key": str(hefed.save_public_key(other, tmp_path / "other.json"))}
    config = {"public-key": "", "target": "", "study": str(study_setup["path"]), **config}
    grid = DirectGrid({1: {"data-path": str(consortium_files[0])}}, {})
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={
        **RUN_CONFIG_DEFAULTS, "out": str(tmp_path / "a.json"), "report": str(tmp_path / "report.json"), **config})
    with pytest.raises(error) as refused:
        server_app(grid, context)
    assert grid.sent == [] and "\n" not in str(refused.value)
    assert message in str(refused.value)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["status"] == "failed" and report["error"] == str(refused.value)


def test_run_settings_and_node_configs_with_a_study(tmp_path, study_setup):
    """The run config's ``study`` round-trips; the node config's ``study-digest`` is a digest and needs a study."""
    settings = RunSettings.from_options(study=study_setup["path"], out=tmp_path / "agg.json", min_contributors=1)
    assert settings.to_run_config()["study"] == str(study_setup["path"].absolute())
    assert RunSettings.from_config(settings.to_run_config()) == settings
    inputs = settings.load_inputs()
    assert inputs.study_digest == study_setup["study"].digest
    assert inputs.public_key.n == study_setup["study"].public_key.n
    assert settings.under_study(inputs).min_contributors == study_setup["study"].min_contributors
    with pytest.raises(UsageError, match="leave ridge, missing at the defaults") as refused:
        RunSettings.from_options(study="s.json", ridge=0.5, missing="error")
    assert refused.value.parameters == ("ridge", "missing")
    config = FactoryConfig.from_node_config({"data-path": "a.csv", "study": "s.json", "study-digest": "AB" * 16})
    assert (config.study, config.study_digest) == ("s.json", "ab" * 16)
    with pytest.raises(UsageError, match="'study-digest' is set but 'study'"):
        FactoryConfig.from_node_config({"data-path": "a.csv", "study-digest": "ab" * 16})
    with pytest.raises(UsageError, match="32 hex digits"):
        FactoryConfig.from_node_config({"data-path": "a.csv", "study": "s.json", "study-digest": "abc"})


def test_federate_with_a_study_refuses_contradicting_options_before_starting(tmp_path, keys, consortium_files,
                                                                            study_setup):
    """``hefed federate --study``: --target, --features or --public-key that contradict the study are refused in one
    line before any process starts; without --study, --public-key is needed."""
    group = HefedGroup(commands={"federate": federate})
    digest = study_setup["study"].digest
    base = ["federate", "--data", *map(str, consortium_files), "--study", str(study_setup["path"]),
            "--out", str(tmp_path / "agg.json")]
    other = hefed.save_public_key(hefed.generate_keypair(1024, insecure_test_key=True)[0], tmp_path / "other.json")
    for extra, code, text in [
        (["--target", "coal_t"], 2, f"target 'coal_t' contradicts study {digest}, whose target is '{TARGET}'"),
        (["--features", "coal_t"], 2, f"features coal_t contradict study {digest}, whose features are "
                                      f"{', '.join(STUDY_FEATURES)}"),
        (["--public-key", str(other)], 1, f"contradicts study {digest}, whose key is"),
        (["--min-contributors", "4"], 2, "only 3 data files"),
    ]:
        result = CliRunner().invoke(group, [*base, *extra])
        assert result.exit_code == code and text in result.output, result.output
        assert len(result.stderr.strip().splitlines()) == 1
    result = CliRunner().invoke(group, ["federate", "--data", str(consortium_files[0]), "--out", "x.json"])
    assert result.exit_code == 2 and "give --public-key, or a --study" in result.output


# --- real processes on loopback -----------------------------------------------------------------------------


def cli(*args: object) -> click.testing.Result:
    result = CliRunner().invoke(hefed_main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def model_from_aggregate(aggregate: Path, keys: dict[str, Any], root: Path) -> dict[str, Any]:
    cli("decrypt", "--allow-unsigned",
            aggregate, "--private-key", keys["private_path"], "--out", root / "statistics.json")
    cli("solve", root / "statistics.json", "--out", root / "model.json", "--exact")
    return json.loads((root / "model.json").read_text())


@pytest.mark.slow
def test_three_supernodes_give_the_cli_model(tmp_path, keys, gas_files, process_marker):
    """``hefed federate`` with three SuperNodes: exactly the model of encrypt → aggregate → decrypt → solve.

    While it runs, each step is printed on stderr (plain lines: the test's stderr is no terminal).
    """
    started = time.monotonic()
    group = HefedGroup(commands={"federate": federate})
    result = CliRunner().invoke(group, [
        "federate", "--data", *map(str, gas_files), "--target", "NOX", "--public-key", str(keys["public_path"]),
        "--out", str(tmp_path / "flower.aggregate.json"), "--timeout", "60",
    ])
    assert result.exit_code == 0, result.output
    assert "aggregate of 3 factories (gt_2011, gt_2012, gt_2013)" in result.output
    assert time.monotonic() - started < 120
    progress = result.stderr.splitlines()
    assert "SuperLink listening" in progress[0] and "aggregate of 3 factories" in progress[-1]
    for name in YEARS:
        assert any(f"the SuperNode of {name} connected" in line for line in progress), progress
        assert any(f"{name}: statistics bundle received" in line for line in progress), progress
    assert "aggregate of 3 factories" not in result.stdout.replace("statistics aggregate of 3 factories", "")
    (tmp_path / "flower").mkdir()
    flower_model = model_from_aggregate(tmp_path / "flower.aggregate.json", keys, tmp_path / "flower")

    files = tmp_path / "files"
    files.mkdir()
    for path in gas_files:
        cli("encrypt", path, "--target", "NOX", "--public-key", keys["public_path"], "--factory-id", path.stem,
            "--out", files / f"{path.stem}.bundle.json")
    cli("aggregate", *(files / f"{p.stem}.bundle.json" for p in gas_files), "--out", files / "aggregate.json")
    file_model = model_from_aggregate(files / "aggregate.json", keys, files)
    assert flower_model["exact"] == file_model["exact"]
    assert flower_model["coef"] == file_model["coef"] and flower_model["contributors"] == list(YEARS)
    assert_no_secret((tmp_path / "flower.aggregate.json").read_bytes(), private_secrets(keys["private"]),
                     "the aggregate")


def start_round(federation: LocalFederation, root: Path, keys: dict[str, Any], **config: Any) -> int:
    return federation.submit({
        "public-key": str(keys["public_path"]), "out": str(root / "aggregate.json"),
        "report": str(root / "report.json"), "progress": str(root / "progress.jsonl"), "target": "NOX",
        "expected-factories": ",".join(YEARS), "wait-for-nodes": 60.0, "insecure-test-key": True, **config,
    })


class SharedFederation:
    """One SuperLink and three SuperNodes (a year each, pinned to the test key) for several tests of a module.

    :meth:`get` returns it running with every SuperNode connected: a SuperNode a test
    stopped with SIGTERM (it left the federation) is started again; after a SIGKILL (the
    SuperLink would count the dead node until its heartbeat expires) or an explicit
    ``stop()``, the whole federation starts afresh.
    """

    def __init__(self, root: Path, files: list[Path], keys: dict[str, Any]) -> None:
        self.root, self.files, self.keys = root, files, keys
        self.federation: LocalFederation | None = None
        self.starts = 0

    def get(self) -> LocalFederation:
        federation = self.federation
        if federation is None or federation.superlink is None or signal.SIGKILL in federation.killed.values():
            if federation is not None:
                federation.stop()
            self.starts += 1
            federation = LocalFederation(self.files, workdir=self.root / f"federation-{self.starts}",
                                         key_fingerprint=hefed.key_fingerprint(self.keys["public"]),
                                         insecure_test_key=True)
            self.federation = federation
            federation.start()
        for index in list(federation.killed):
            federation.restart_supernode(index)
        assert federation.wait_connected(60), "a SuperNode did not connect to the SuperLink"
        return federation

    def close(self) -> None:
        if self.federation is not None:
            self.federation.stop()


@pytest.fixture(scope="module")
def gas_federation(tmp_path_factory, keys, gas_files) -> Iterator[SharedFederation]:
    """The module's shared federation; every process it started is gone after the module."""
    with marked_processes():
        shared = SharedFederation(tmp_path_factory.mktemp("flower-shared"), gas_files, keys)
        try:
            yield shared
        finally:
            shared.close()


def kill_third_factory_mid_run(federation: LocalFederation, sig: int) -> list[list[str]]:
    """Wait until gt_2013's SuperNode has received the request (its ClientApp started), then kill it.

    Returns the command lines of every federation process seen just before.
    """
    deadline = time.monotonic() + 90
    while not federation.clientapp_running(2):
        assert time.monotonic() < deadline, "gt_2013's SuperNode never received the request"
        time.sleep(0.05)
    seen = [command_line(pid) for pid in federation.all_pids()]
    federation.kill_supernode(2, sig)
    return seen


@pytest.mark.slow
def test_min_contributors_above_survivors_fails_clearly(tmp_path, keys, gas_federation):
    """One SuperNode stops mid-run and min-contributors is 3: the run fails and says who answered and who did not."""
    federation = gas_federation.get()
    run_id = start_round(federation, tmp_path, keys, **{"min-contributors": 3, "timeout": 30.0})
    kill_third_factory_mid_run(federation, signal.SIGTERM)
    report = federation.wait_report(run_id, tmp_path / "report.json", 120)
    assert report["status"] == "failed" and report["error_type"] == "TooFewContributorsError"
    assert report["contributors"] == ["gt_2011", "gt_2012"] and set(report["missing"]) == {"gt_2013"}
    assert report["error"].startswith(
        "only 2 of 3 factories contributed (gt_2011, gt_2012), fewer than min-contributors = 3; missing: gt_2013 (")
    assert not (tmp_path / "aggregate.json").exists()
    with pytest.raises(TooFewContributorsError, match="fewer than min-contributors = 3"):
        raise_from_report(report)
    # The progress file told the story as it happened, ending with the failure.
    events = ProgressFollower(tmp_path / "progress.jsonl").read()
    assert {e.factory for e in events if e.step == "reply" and e.ok} == {"gt_2011", "gt_2012"}
    assert events[-1].step == "failed" and "fewer than min-contributors = 3" in events[-1].message


@pytest.mark.slow
def test_killed_supernode_leaves_two_contributors(tmp_path, keys, gas_files, gas_federation):
    """SIGKILL one SuperNode after it got the request: the round completes with the other two, the third named.

    The last user of the shared federation: it stops it and checks every process is gone.
    """
    federation = gas_federation.get()
    # 25 s: the surviving SuperNodes each start a ClientApp and encrypt a year of rows, while the other xdist
    # worker loads the second core (12 s was missed once in five full runs)
    run_id = start_round(federation, tmp_path, keys, **{"min-contributors": 2, "timeout": 25.0})
    command_lines = kill_third_factory_mid_run(federation, signal.SIGKILL)
    report = federation.wait_report(run_id, tmp_path / "report.json", 120)
    pid_lists = federation.all_pids()
    federation.stop()
    assert report["status"] == "ok", report  # report["reply_seconds"] shows how long the others took
    assert report["contributors"] == ["gt_2011", "gt_2012"]
    assert report["missing"] == {"gt_2013": "no answer within 25 s"}
    aggregate = hefed.Bundle.load(tmp_path / "aggregate.json")
    assert aggregate.contributors == ["gt_2011", "gt_2012"]
    stats = hefed.decrypt_statistics(aggregate, keys["private"], min_contributors=2, allow_unsigned=True)
    expected = hefed.decrypt_statistics(hefed.aggregate(
        [hefed.encrypt_statistics(p, "NOX", keys["public"], factory_id=p.stem) for p in gas_files[:2]]),
        keys["private"], min_contributors=2, allow_unsigned=True)
    assert stats.to_dict() == expected.to_dict()
    # No private key in any process's arguments, nor in any file the federation wrote (configs, apps, logs).
    secrets = private_secrets(keys["private"])
    assert len(command_lines) >= 8  # SuperLink, SuperExecs, SuperNodes, ServerApp, ClientApp
    assert_no_secret("\0".join(map(" ".join, command_lines)).encode(), secrets, "a command line")
    assert not any(str(keys["private_path"]) in " ".join(c) for c in command_lines)
    for path in [*federation.workdir.rglob("*"), *tmp_path.rglob("*")]:
        if path.is_file():
            assert_no_secret(path.read_bytes(), secrets, str(path))
    assert pid_lists and all(not Path(f"/proc/{pid}").exists() or _zombie(pid) for pid in pid_lists)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


# --- masked, signed rounds with real processes --------------------------------------------------------------


@pytest.mark.slow
def test_masked_federation_of_three_gives_the_file_based_statistics(tmp_path, keys, gas_files, gas_identities,
                                                                    process_marker):
    """``hefed federate --roster --identity ...``: exactly the statistics of the same version 2 round made with
    files (``hefed round new`` → ``join`` → ``start`` → ``encrypt --round round-keys.json`` → ``round collect`` →
    ``round reveal`` → ``round unmask``).

    The aggregate carries the round id, the three signed manifests and contributions, the round keys and
    the signed reveals, and ``hefed decrypt --roster`` checks and decrypts it.
    """
    dirs = [gas_identities["dirs"][name] for name in YEARS]
    group = HefedGroup(commands={"federate": federate})
    result = CliRunner().invoke(group, [
        "federate", "--data", *map(str, gas_files), "--target", "NOX", "--public-key", str(keys["public_path"]),
        "--out", str(tmp_path / "flower.aggregate.json"), "--report", str(tmp_path / "report.json"),
        "--roster", str(gas_identities["roster_path"]), *(a for d in dirs for a in ("--identity", str(d))),
        "--timeout", "60",
    ])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    (only,) = report["masked"]["rounds"]
    assert only["complete"] and only["participants"] == only["joined"] == only["contributors"] == list(YEARS)
    assert report["round_id"] == only["round_id"] and only["threshold"] == 3 and only["missing"] == {}
    assert f"round 1 ({only['round_id']}) with gt_2011, gt_2012, gt_2013, threshold 3: complete" in result.output
    for name in YEARS:  # the progress on stderr: each factory's ready answer, join, masked bundle and reveal
        for what in ("ready (", "joined the round", "masked statistics bundle received", "revealed its shares"):
            assert f"{name}: {what}" in result.stderr, (name, what)
    assert f"round {only['round_id']} unmasked: the aggregate of gt_2011, gt_2012, gt_2013" in result.stderr
    assert [s["step"] for s in report["masked"]["steps"]] == ["ready", "propose", "join", "start", "contribute",
                                                              "collect", "reveal", "unmask"]
    aggregate = hefed.Bundle.load(tmp_path / "flower.aggregate.json")
    assert aggregate.round_id == only["round_id"] and len(aggregate.manifests) == 3
    assert sorted(aggregate.contributions) == list(YEARS) and aggregate.recovery is not None
    roster = gas_identities["roster_path"]
    cli("decrypt", "--allow-unsigned",
            tmp_path / "flower.aggregate.json", "--private-key", keys["private_path"], "--roster", roster,
        "--out", tmp_path / "flower.statistics.json")

    # the same version 2 round with files: round new → join → start → encrypt → collect → reveal → unmask
    files = tmp_path / "files"
    files.mkdir()
    cli("round", "new", "--roster", roster, "--participants", ",".join(YEARS), "--out", files / "round.json")
    for name, directory in zip(YEARS, dirs, strict=True):
        cli("round", "join", "--round", files / "round.json", "--identity", directory, "--roster", roster,
            "--out", files / f"join-{name}.json")
    cli("round", "start", *(files / f"join-{name}.json" for name in YEARS), "--round", files / "round.json",
        "--roster", roster, "--out", files / "round-keys.json")
    for path, directory in zip(gas_files, dirs, strict=True):
        cli("encrypt", path, "--target", "NOX", "--public-key", keys["public_path"], "--factory-id", path.stem,
            "--round", files / "round-keys.json", "--identity", directory, "--roster", roster,
            "--out", files / f"{path.stem}.bundle.json")
    cli("round", "collect", *(files / f"{p.stem}.bundle.json" for p in gas_files), "--round-keys",
        files / "round-keys.json", "--roster", roster, "--out", files / "collected.json",
        "--request", files / "unmask-request.json")
    for name, directory in zip(YEARS, dirs, strict=True):
        cli("round", "reveal", "--request", files / "unmask-request.json", "--identity", directory,
            "--roster", roster, "--out", files / f"reveal-{name}.json")
    cli("round", "unmask", *(files / f"reveal-{name}.json" for name in YEARS), "--collected",
        files / "collected.json", "--round-keys", files / "round-keys.json", "--roster", roster,
        "--out", files / "aggregate.json")
    cli("decrypt", "--allow-unsigned",
            files / "aggregate.json", "--private-key", keys["private_path"], "--roster", roster,
        "--out", files / "statistics.json")
    flower_stats = json.loads((tmp_path / "flower.statistics.json").read_text())
    assert flower_stats == json.loads((files / "statistics.json").read_text())
    stats = hefed.decrypt_statistics(aggregate, keys["private"], roster=gas_identities["roster"], allow_unsigned=True)
    assert stats.to_dict() == flower_stats


# --- a study with real processes ----------------------------------------------------------------------------

GAS_FEATURES = ["AT", "AP", "AH", "AFDP", "GTEP", "TIT", "TAT", "TEY", "CDP", "CO"]


@pytest.mark.slow
def test_federate_with_a_study_gives_the_file_based_statistics_of_the_study(tmp_path, keys, gas_files,
                                                                             process_marker):
    """``hefed federate --study``: each SuperNode pinned to the study's digest computes from the study (no target,
    features or key on the command line); the aggregate is the study's and decrypts (``--study``) to exactly what
    ``hefed encrypt --study`` → ``aggregate --study`` → ``decrypt --study`` give from files."""
    study = Study.new(keys["public"], ColumnSpec("NOX", "mg/m3"), GAS_FEATURES, kinds={"statistics": {}},
                      holdout=Holdout(0.2, 5), title="gas turbines")
    study_path = study.save(tmp_path / "study.json")
    group = HefedGroup(commands={"federate": federate})
    result = CliRunner().invoke(group, [
        "federate", "--data", *map(str, gas_files), "--study", str(study_path),
        "--out", str(tmp_path / "flower.aggregate.json"), "--report", str(tmp_path / "report.json"),
        "--timeout", "60",
    ])
    assert result.exit_code == 0, result.output
    assert f"study {study.digest}" in result.stdout
    assert f"for statistics bundles of study {study.digest}" in result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["study"] == study.digest and report["contributors"] == list(YEARS)
    aggregate = hefed.Bundle.load(tmp_path / "flower.aggregate.json")
    assert aggregate.study == study.digest and aggregate.encoding == study.encoding
    cli("decrypt", "--allow-unsigned",
            tmp_path / "flower.aggregate.json", "--private-key", keys["private_path"], "--study", study_path,
        "--out", tmp_path / "flower.statistics.json")

    files = tmp_path / "files"
    files.mkdir()
    for path in gas_files:
        cli("encrypt", path, "--study", study_path, "--factory-id", path.stem,
            "--out", files / f"{path.stem}.bundle.json")
    cli("aggregate", *(files / f"{p.stem}.bundle.json" for p in gas_files), "--study", study_path,
        "--out", files / "aggregate.json")
    cli("decrypt", "--allow-unsigned",
            files / "aggregate.json", "--private-key", keys["private_path"], "--study", study_path,
        "--out", files / "statistics.json")
    flower_stats = json.loads((tmp_path / "flower.statistics.json").read_text())
    assert flower_stats == json.loads((files / "statistics.json").read_text())
    assert flower_stats["study"] == study.digest
