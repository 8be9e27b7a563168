"""The hefed Flower app: ``server_app`` is the aggregator, ``client_app`` a factory.

Both are thin: the protocol, its checks and the library calls are in
:mod:`hefed.flower.protocol`. The app's ``pyproject.toml`` (see
:func:`hefed.flower.write_app`) names them as its components::

    [tool.flwr.app.components]
    serverapp = "hefed.flower.app:server_app"
    clientapp = "hefed.flower.app:client_app"

The **ServerApp** loads the consortium's public key (never a private key),
waits for the expected SuperNodes, sends one ``query.contribute`` request to
every connected SuperNode, collects replies until all have answered or
``timeout`` seconds have passed, sums the bundles of exactly the factories
that answered with a valid bundle, and writes the aggregate bundle (its
``contributors`` list names them) and, if asked, a JSON report naming the
missing factories and why. With fewer than ``min-contributors`` bundles it
writes the report and fails with a one-line reason.

The **ClientApp** reads its data path (and optional factory id, target,
features, key pin) from its SuperNode's node config and the rest from the run
config, encrypts with the public key in the request and replies with the
bundle's JSON as bytes, or with an error naming the factory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from logging import ERROR, INFO, WARNING
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from ..errors import HefedError, UsageError
from ..fileio import atomic_write_json, check_writable
from ..model import LinearModel
from .protocol import (
    ACTION,
    MESSAGE_TYPE,
    REPLY_RECORD,
    REQUEST_RECORD,
    Reply,
    RunSettings,
    Tally,
    aggregate_tally,
    factory_reply,
    load_public_key_only,
    make_request,
    report,
    tally,
)

#: Seconds between two pulls of replies from the SuperLink.
POLL_SECONDS = 0.5
#: Messages live this much longer than the reply timeout, then the SuperLink drops them.
TTL_MARGIN_SECONDS = 60.0

client_app = ClientApp()
server_app = ServerApp()


@client_app.query(ACTION)
def contribute(message: Message, context: Context) -> Message:
    """Factory: encrypt this node's bundle for the request and reply with it (or with the error)."""
    request = dict(message.content[REQUEST_RECORD]) if REQUEST_RECORD in message.content else {}
    reply = factory_reply(request, dict(context.node_config), dict(context.run_config))
    if reply["status"] == "ok":
        log(INFO, "hefed: factory %s sent its encrypted %s bundle", reply["factory-id"], request.get("kind"))
    else:
        log(WARNING, "hefed: factory %s could not contribute: %s", reply["factory-id"], reply["error"])
    return Message(RecordDict({REPLY_RECORD: ConfigRecord(dict(reply))}), reply_to=message)


def wait_for_nodes(grid: Grid, need: int, seconds: float) -> list[int]:
    """The connected node ids, once ``need`` are connected or after ``seconds`` (whichever comes first)."""
    deadline = time.monotonic() + seconds
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= need or time.monotonic() >= deadline:
            return nodes
        time.sleep(POLL_SECONDS)


def collect(grid: Grid, request: Mapping[str, Any], node_ids: list[int], timeout: float) -> list[Reply]:
    """Send ``request`` to every node and gather replies until all answered or ``timeout`` seconds passed."""
    messages = [
        Message(RecordDict({REQUEST_RECORD: ConfigRecord(dict(request))}), dst_node_id=node_id,
                message_type=MESSAGE_TYPE, ttl=timeout + TTL_MARGIN_SECONDS)
        for node_id in node_ids
    ]
    ids = list(grid.push_messages(messages))
    node_of = {mid: node for mid, node in zip(ids, node_ids, strict=True) if mid}
    replies = [Reply(node, flower_error="the SuperLink refused the message")
               for mid, node in zip(ids, node_ids, strict=True) if not mid]
    pending = set(node_of)
    sent = time.monotonic()
    deadline = sent + timeout
    while pending:
        for answer in grid.pull_messages(list(pending)):
            mid = answer.metadata.reply_to_message_id
            if mid not in pending:
                continue
            pending.discard(mid)
            reply = _to_reply(node_of[mid], answer)
            reply.seconds = time.monotonic() - sent
            replies.append(reply)
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    return replies


#: Flower's error codes (``flwr.common.constant.ErrorCode``) in words, for the report.
FLOWER_ERRORS = {
    1: "its ClientApp could not be loaded",
    2: "its ClientApp raised an exception",
    3: "the message expired or was dropped",
    4: "the reply expired",
    5: "its SuperNode left the federation or stopped answering",
    7: "its SuperNode refused the app",
    8: "its ClientApp crashed",
}


def _to_reply(node_id: int, answer: Message) -> Reply:
    if answer.has_error():
        code = int(answer.error.code)
        words = FLOWER_ERRORS.get(code, "Flower error")
        return Reply(node_id, flower_error=f"{words} (Flower error {code}: {answer.error.reason})")
    if REPLY_RECORD not in answer.content:
        return Reply(node_id, flower_error="reply without a hefed record")
    return Reply(node_id, record=dict(answer.content[REPLY_RECORD]))


def run_round(grid: Grid, settings: RunSettings) -> Tally:
    """Load the key (and model), ask every connected factory, and tally the replies."""
    public_key = load_public_key_only(settings.public_key)
    model = LinearModel.load(settings.model) if settings.kind == "evaluation" and settings.model else None
    request = make_request(settings.kind, public_key, model)
    need = len(settings.expected_factories) or settings.min_contributors
    node_ids = wait_for_nodes(grid, need, settings.wait_for_nodes)
    log(INFO, "hefed: asking %d connected SuperNode(s) for %s bundles (timeout %g s)",
        len(node_ids), settings.kind, settings.timeout)
    replies = collect(grid, request, node_ids, settings.timeout)
    result = tally(replies, node_ids, request, settings, model)
    for name, why in result.missing.items():
        log(WARNING, "hefed: missing %s: %s", name, why)
    return result


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    """Aggregator: one round of encrypted contributions, summed into the aggregate bundle.

    Whatever goes wrong after the run config names a ``report`` path, the report is
    written (status ``failed``, the one-line error and its type) before the ServerApp
    fails, unless that path holds an earlier report and ``force`` is not set.
    """
    started = time.monotonic()
    run_config = dict(context.run_config)
    settings: RunSettings | None = None
    result: Tally | None = None
    try:
        settings = RunSettings.from_config(run_config)
        _check_outputs(settings)
        result = run_round(grid, settings)
        aggregate_tally(result, settings).save(settings.out, force=settings.force)
    except Exception as exc:
        message = str(exc) if isinstance(exc, HefedError) else f"{type(exc).__name__}: {exc}"
        log(ERROR, "hefed: federation failed: %s", message)
        _write_report(run_config, report(result, settings, status="failed", error=message,
                                         error_type=type(exc).__name__, run_id=context.run_id,
                                         seconds=time.monotonic() - started))
        raise
    log(INFO, "hefed: wrote %s, the aggregate of %d factories (%s)", settings.out, len(result.contributors),
        ", ".join(result.contributors))
    _write_report(run_config, report(result, settings, status="ok", run_id=context.run_id,
                                     out=str(Path(settings.out).absolute()), seconds=time.monotonic() - started))


def _check_outputs(settings: RunSettings) -> None:
    if not settings.out:
        raise UsageError("run config 'out' (path of the aggregate bundle to write) is not set")
    for path in (settings.out, settings.report):
        if path:
            check_writable(path, settings.force)
            if not Path(path).absolute().parent.is_dir():
                raise UsageError(f"{path}: directory {Path(path).absolute().parent} does not exist")


def _write_report(run_config: Mapping[str, Any], obj: dict[str, Any]) -> None:
    """Log the report, and write it to the run config's ``report`` path unless that would replace a file unasked."""
    log(INFO, "hefed: report %s", json.dumps(obj, sort_keys=True))
    path, force = run_config.get("report"), run_config.get("force") is True
    if not isinstance(path, str) or not path or (Path(path).exists() and not force and obj["status"] != "ok"):
        return
    try:
        atomic_write_json(path, obj, force=True)
    except (HefedError, OSError) as exc:
        log(ERROR, "hefed: could not write the report %s: %s", path, exc)
