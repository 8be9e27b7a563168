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

With a ``roster`` in the run config the ServerApp runs **masked, signed
rounds** instead (:func:`run_masked`): a cheap ``query.ready`` to every
connected SuperNode fixes the participants (the roster members that answered),
``new_round`` gives them a fresh round, ``query.contribute`` carries the round
and the roster, and the signed, masked bundles are summed with
``aggregate(bundles, roster, round_)``. A participant that fails to deliver
leaves masks that cannot cancel, so the round is re-run with a new id for the
factories that did deliver, up to ``max-rounds`` rounds; the report records
every round (id, participants, who was missing and why).

The **ClientApp** reads its data path (and optional factory id, target,
features, key pin, identity folder, roster pin) from its SuperNode's node
config and the rest from the run config. To a ready query it answers with its
factory id once its pins and identity check out; to a contribute request it
encrypts with the public key in the request (masked and signed with its
identity in a masked round) and replies with the bundle's JSON as bytes, or
with an error naming the factory. Its identity's private keys never leave it.
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

from .._files import atomic_write_json, check_writable
from ..errors import HefedError, RoundError, UsageError
from ..models import LinearModel
from ..protocol import Bundle, Roster, new_round
from ..roles import aggregate
from .protocol import (
    ACTION,
    MESSAGE_TYPE,
    READY_ACTION,
    READY_MESSAGE_TYPE,
    REPLY_RECORD,
    REQUEST_RECORD,
    MaskedProgress,
    Reply,
    RoundAttempt,
    RunSettings,
    Tally,
    aggregate_tally,
    check_survivors,
    factory_ready_reply,
    factory_reply,
    load_public_key_only,
    make_masked_request,
    make_ready_request,
    make_request,
    report,
    tally,
    tally_ready,
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


@client_app.query(READY_ACTION)
def ready(message: Message, context: Context) -> Message:
    """Factory, masked rounds: say whether it can take part (pins, identity, data file), without reading data."""
    request = dict(message.content[REQUEST_RECORD]) if REQUEST_RECORD in message.content else {}
    reply = factory_ready_reply(request, dict(context.node_config))
    if reply["status"] == "ok":
        log(INFO, "hefed: factory %s is ready for a masked round", reply["factory-id"])
    else:
        log(WARNING, "hefed: factory %s is not ready: %s", reply["factory-id"], reply["error"])
    return Message(RecordDict({REPLY_RECORD: ConfigRecord(dict(reply))}), reply_to=message)


def wait_for_nodes(grid: Grid, need: int, seconds: float) -> list[int]:
    """The connected node ids, once ``need`` are connected or after ``seconds`` (whichever comes first)."""
    deadline = time.monotonic() + seconds
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= need or time.monotonic() >= deadline:
            return nodes
        time.sleep(POLL_SECONDS)


def collect(grid: Grid, request: Mapping[str, Any], node_ids: list[int], timeout: float,
            message_type: str = MESSAGE_TYPE) -> list[Reply]:
    """Send ``request`` to every node and gather replies until all answered or ``timeout`` seconds passed."""
    messages = [
        Message(RecordDict({REQUEST_RECORD: ConfigRecord(dict(request))}), dst_node_id=node_id,
                message_type=message_type, ttl=timeout + TTL_MARGIN_SECONDS)
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


def run_masked(grid: Grid, settings: RunSettings, progress: MaskedProgress) -> tuple[Tally, Bundle]:
    """Masked, signed rounds until one completes; returns the final round's tally and the aggregate.

    1. Load the public key (never a private key), the model (evaluation) and the roster;
       wait for the expected SuperNodes (``expected-factories``, or else every roster member).
    2. **Ready**: send the cheap ``query.ready`` (key, roster) to every connected node and
       keep the roster members that answered ``ok`` in ``timeout`` seconds, each with its node.
    3. **Round**: ``new_round(roster, participants)``, a fresh id and participant list
       (fails clearly below ``min-contributors``, or below two: masks are pairwise).
    4. **Contribute**: send the request with the round and the roster to the participants'
       nodes only; each answers with its masked bundle signed for this round.
    5. **Aggregate** when every participant delivered a valid contribution:
       ``aggregate(bundles, roster, round_)``. Otherwise the survivors (who did deliver)
       get a new round: back to 3, at most ``max-rounds`` rounds in all.

    ``progress`` is filled as it goes (ready list, each round), so a failure reports it too.
    """
    public_key = load_public_key_only(settings.public_key)
    model = LinearModel.load(settings.model) if settings.kind == "evaluation" and settings.model else None
    request = make_request(settings.kind, public_key, model)
    roster = Roster.load(settings.roster)
    progress.roster_digest = roster.digest()
    need = len(settings.expected_factories) or len(roster.members)
    node_ids = wait_for_nodes(grid, need, settings.wait_for_nodes)
    progress.nodes = len(node_ids)

    log(INFO, "hefed: masked round: asking %d connected SuperNode(s) who is ready (roster %s, timeout %g s)",
        len(node_ids), roster.digest(), settings.timeout)
    replies = collect(grid, make_ready_request(settings.kind, public_key, roster), node_ids, settings.timeout,
                      READY_MESSAGE_TYPE)
    ready = tally_ready(replies, node_ids, roster, settings)
    progress.ready, progress.not_ready = ready.ready, dict(ready.not_ready)
    for name, why in ready.not_ready.items():
        log(WARNING, "hefed: %s is not in the round: %s", name, why)

    participants = ready.ready
    for number in range(1, settings.max_rounds + 1):
        check_survivors(participants, settings, progress)
        round_ = new_round(roster, participants)
        attempt = RoundAttempt(number, round_.round_id, list(round_.participants))
        progress.attempts.append(attempt)
        log(INFO, "hefed: round %d of at most %d (id %s): asking %s for masked, signed %s bundles", number,
            settings.max_rounds, round_.round_id, ", ".join(round_.participants), settings.kind)
        names = {ready.nodes[name]: name for name in round_.participants}
        masked_request = make_masked_request(request, round_, roster)
        replies = collect(grid, masked_request, sorted(names), settings.timeout)
        result = tally(replies, sorted(names), masked_request, settings, model, round_=round_, roster=roster,
                       node_names=names)
        attempt.contributors, attempt.missing = list(result.contributors), dict(result.missing)
        if attempt.complete:
            log(INFO, "hefed: round %s complete: every participant delivered", round_.round_id)
            return result, aggregate(result.bundles, roster, round_)
        for name, why in result.missing.items():
            log(WARNING, "hefed: round %s: %s failed to deliver: %s", round_.round_id, name, why)
        participants = list(result.contributors)
        if number < settings.max_rounds and len(participants) >= max(settings.min_contributors, 2):
            log(WARNING, "hefed: round %s is incomplete (its masks would not cancel); re-running a new round for "
                "the survivors %s", round_.round_id, ", ".join(participants))
    check_survivors(participants, settings, progress)
    raise RoundError(
        f"no masked round completed in max-rounds = {settings.max_rounds} rounds; the last, "
        f"{progress.attempts[-1].round_id}, missed: "
        + "; ".join(f"{name} ({why})" for name, why in progress.attempts[-1].missing.items())
    )


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    """Aggregator: encrypted contributions, summed into the aggregate bundle.

    Unmasked (no ``roster``): one round (:func:`run_round`). Masked: the ready step and
    as many signed, masked rounds as drop-outs require (:func:`run_masked`); the
    aggregate then carries the round id, the signed manifests and the contributions,
    so ``hefed decrypt --roster`` can check it.

    Whatever goes wrong after the run config names a ``report`` path, the report is
    written (status ``failed``, the one-line error and its type, and for a masked
    run every round tried) before the ServerApp fails, unless that path holds an
    earlier report and ``force`` is not set.
    """
    started = time.monotonic()
    run_config = dict(context.run_config)
    settings: RunSettings | None = None
    result: Tally | None = None
    progress: MaskedProgress | None = None
    try:
        settings = RunSettings.from_config(run_config)
        _check_outputs(settings)
        if settings.masked:
            progress = MaskedProgress(roster_digest="", max_rounds=settings.max_rounds)
            result, bundle = run_masked(grid, settings, progress)
            result = progress.summary(result)
        else:
            result = run_round(grid, settings)
            bundle = aggregate_tally(result, settings)
        bundle.save(settings.out, force=settings.force)
    except Exception as exc:
        message = str(exc) if isinstance(exc, HefedError) else f"{type(exc).__name__}: {exc}"
        log(ERROR, "hefed: federation failed: %s", message)
        if progress is not None:
            result = progress.summary()
        _write_report(run_config, report(result, settings, status="failed", error=message,
                                         error_type=type(exc).__name__, run_id=context.run_id,
                                         seconds=time.monotonic() - started, masked=progress))
        raise
    log(INFO, "hefed: wrote %s, the aggregate of %d factories (%s)%s", settings.out, len(result.contributors),
        ", ".join(result.contributors), f", round {progress.round_id}" if progress is not None else "")
    _write_report(run_config, report(result, settings, status="ok", run_id=context.run_id,
                                     out=str(Path(settings.out).absolute()), seconds=time.monotonic() - started,
                                     masked=progress))


def _check_outputs(settings: RunSettings) -> None:
    """Refuse, before anything is sent, a missing ``out``, an output that exists unasked, or a missing roster."""
    if settings.roster and not Path(settings.roster).is_file():
        raise UsageError(f"{settings.roster}: roster file not found (run config 'roster')")
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
