"""The hefed Flower app: ``server_app`` is the aggregator, ``client_app`` a factory.

Both are thin: the run's settings are in :mod:`hefed.flower._config`, what travels in
:mod:`hefed.flower._messages`, the factory's side in :mod:`hefed.flower._factory`, and the
aggregator's tally and report in :mod:`hefed.flower._tally`; this module wires them to
Flower's Message API and says what happens as it happens (Flower's log, and the run
config's ``progress`` file: :mod:`hefed.flower._progress`). The app's ``pyproject.toml``
(see :func:`hefed.flower.write_app`) names them as its components::

    [tool.flwr.app.components]
    serverapp = "hefed.flower.app:server_app"
    clientapp = "hefed.flower.app:client_app"

The **ServerApp** loads the consortium's public key (never a private key; below 2048 bits only with the
run config's ``insecure-test-key``), waits for the expected SuperNodes, sends one ``query.contribute``
request to every connected SuperNode, collects replies until all have answered or ``timeout`` seconds
have passed, sums the bundles of exactly the factories that answered with a valid bundle, and writes the
aggregate bundle (its ``contributors`` list names them) and, if asked, a JSON report naming the missing
factories and why. With fewer than ``min-contributors`` bundles it writes the report and fails with a
one-line reason. These plain runs are for trials: contributions are unsigned, so a factory id claimed by
two SuperNodes makes the run aggregate nothing (leaving the claimed factory out would let rogue nodes
isolate the others), and replies under ids outside ``expected-factories`` are left out.

With a ``roster`` in the run config the ServerApp runs one **masked, signed round that survives drop-outs**
instead (:func:`run_masked`; a version 2 round of :mod:`hefed.protocol`, after Bonawitz et al. 2017). Four
Flower steps, each a query to the nodes concerned that waits at most ``timeout`` seconds:

1. **ready** (``query.ready``, to every connected SuperNode): a fresh random nonce; each factory answers with
   a **signature** (Ed25519, its identity) over the nonce, its id, the key, the roster, the study and its node
   id, and the participants are the roster members whose signature verifies
   (:func:`hefed.flower._tally.tally_ready`). A SuperNode that claims a member's id without its identity
   (unsigned, wrongly signed, replayed from an earlier ready step or relayed from another node) cannot take
   its place or exclude it: its claim is ignored and reported (``masked.false_claims``).
2. **join** (``query.join``, to the ready members): the aggregator proposes the round over them
   (:func:`hefed.protocol.propose_round`: threshold ``t`` = more than half, raised to ``min-contributors``,
   itself at least the study's); each factory joins (:func:`hefed.protocol.join_round`: a fresh mask key and
   self-mask seed, Shamir-shared t-of-n and sealed for each peer; the round secret stays in its identity folder)
   and replies its signed join. The verified joins make the round keys (:func:`hefed.protocol.start_round`).
3. **contribute** (``query.contribute``, to the joined): the round keys without the sealed shares; each factory
   verifies them, encrypts, masks (pairwise masks and self-mask) and signs. The valid bundles that arrive in
   time are multiplied (:func:`hefed.roles.collect_round`); their senders are the survivors.
4. **reveal** (``query.reveal``, to the survivors): each gets the unmask request with only its own sealed shares
   and reveals, signed, per joined factory either its share of the seed (survivors) or of the mask key
   (drop-outs). With at least ``t`` reveals, :func:`hefed.protocol.unmask` removes the survivors' self-masks
   and their pairwise masks with the drop-outs: the aggregate is the survivors' exact sum, and carries the
   round keys and the reveals so that ``hefed decrypt --roster`` recomputes the correction and checks it.

A factory that stops after joining, after delivering (it stays a survivor: its contribution counts), or that
is not there at all, costs nothing but its own absence: **no round is re-run** and nobody re-encrypts, down to
``t`` survivors and ``t`` reveals; fewer fail the run with :class:`~hefed.errors.TooFewContributorsError`
naming who is missing and why (a fixed category or a Flower reason, never a value), and no aggregate is
written. The report's ``masked`` lists the round id, participants, threshold, joined set, survivors, who
revealed, each drop-out with the step it missed, and per step (``steps``) the messages sent and received,
their payload bytes and the seconds. ``max-rounds`` is deprecated and ignored.

With a ``study`` in the run config the ServerApp loads the study (the key is
the study's, ``min-contributors`` at least the study's, the roster the study's
when it names one), refuses run-config keys that would change what a factory
computes, sends the study's digest (never its contents) in every request, accepts
only bundles of that study, and the aggregate and the report carry its digest.

The **ClientApp** reads its data path (and optional factory id, target, features, key pin, identity folder,
roster pin, study file and study pin, log folder) from its SuperNode's node config and, without a study,
the rest from the run config; a factory with a study computes only what its own copy of the study says and
reads nothing from the run config (:mod:`hefed.flower._factory`). Its identity's private keys never leave it.

What the aggregator **can** do: choose the run config of a factory without a study (target, features,
encoding, holdout, within what that factory's pins allow), ask for any kind, run rounds of any subset of the
roster members it names (the key holder's ledger, not Flower, stops differencing them), leave factories out,
declare a factory that delivered a drop-out (its contribution is then left out and stays masked), and read
what every reply carries: factory ids, bundles (ciphertexts and public metadata), ready signatures, signed
joins (mask public keys, seed commitments, shares sealed for the peers) and reveals (shares of the survivors'
seeds and of the drop-outs' mask keys, which the key holder needs anyway), and a fixed error category.
What it **cannot** do:

* make a factory encrypt under a key of its own: a factory encrypts only under its study's key or the key
  its node config pins (``key-fingerprint``); with neither it refuses every request (no unpinned mode),
  and a weak key (even, small factors, perfect power, below 2048 bits without ``insecure-test-key``) is
  refused even when pinned;
* put a factory in a masked round with its sybils: a factory joins masked rounds only of the roster its
  study names or its node config pins (``roster-digest``); a study without a roster allows none;
* difference two sums through drop-outs: a factory takes only version 2 rounds (a version 1 ``round`` is
  refused), joins a round once, reveals for one survivor set per round, never both shares of one factory, and
  within a study only for the study's established set (:mod:`hefed.protocol._recovery`); a declared
  drop-out's late bundle stays masked by its self-mask;
* read a factory's data through its refusals: a reply carries only ``hefed.errors.reply_category``
  (``"refused: data out of range"`` …), never a value, row number, column statistic, column name or
  path; the full message goes to the factory's own log (``log-dir``, mode 0600) and Flower's logger on the
  factory's machine. A ClientApp failure reported by Flower is named by its code, not its text;
* with a study, steer what a factory computes, or get a bundle for another study, kind, key or roster.

Rogue SuperNodes (anyone who can connect to the SuperLink) can claim any factory id: in masked rounds they
cannot prove it, so they neither replace nor exclude a member; in plain runs a duplicate claim stops the
run (denial of service, not disclosure). Use Flower's SuperNode authentication against both.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Mapping
from logging import ERROR, INFO, WARNING
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from .._files import atomic_write_bytes, atomic_write_json
from .._keys import check_public_key
from ..errors import HefedError, RoundError, TooFewContributorsError
from ..protocol import Bundle, Study, default_threshold, propose_round, start_round, unmask
from ..roles import collect_round
from ._config import RUN_CONFIG_DEFAULTS, RunInputs, RunSettings
from ._factory import factory_join_reply, factory_ready_reply, factory_reply, factory_reveal_reply
from ._glm import GLM_ACTION, factory_glm_reply, run_glm
from ._messages import (
    ACTION,
    JOIN_ACTION,
    JOIN_MESSAGE_TYPE,
    MESSAGE_TYPE,
    READY_ACTION,
    READY_MESSAGE_TYPE,
    REPLY_RECORD,
    REQUEST_RECORD,
    REVEAL_ACTION,
    REVEAL_MESSAGE_TYPE,
    Reply,
    make_join_request,
    make_masked_request,
    make_ready_request,
    make_request,
    make_reveal_request,
    record_bytes,
)
from ._progress import ProgressEvent, ProgressLog, count
from ._tally import (
    MaskedProgress,
    StepCost,
    Tally,
    aggregate_tally,
    check_survivors,
    report,
    tally,
    tally_joins,
    tally_ready,
    tally_reveals,
)

#: Seconds between two pulls of replies from the SuperLink.
POLL_SECONDS = 0.2
#: Messages live this much longer than the reply timeout, then the SuperLink drops them.
TTL_MARGIN_SECONDS = 60.0

client_app = ClientApp()
server_app = ServerApp()


def _request_of(message: Message) -> dict[str, Any]:
    """The request record of a message (empty when it has none: the factory then refuses it)."""
    try:
        return dict(message.content[REQUEST_RECORD]) if REQUEST_RECORD in message.content else {}
    except Exception:  # a malformed message is refused like an empty request
        return {}


def _at_factory(detail: str) -> None:
    """The full text of a refusal, to Flower's logger of the factory's own SuperNode (it stays on that machine)."""
    log(WARNING, "hefed: %s", detail)


@client_app.query(ACTION)
def contribute(message: Message, context: Context) -> Message:
    """Factory: encrypt this node's bundle for the request and reply with it (or with the error's category)."""
    request = _request_of(message)
    reply = factory_reply(request, dict(context.node_config), dict(context.run_config), on_detail=_at_factory)
    if reply["status"] == "ok":
        log(INFO, "hefed: factory %s sent its encrypted %s bundle", reply["factory-id"], request.get("kind"))
    return Message(RecordDict({REPLY_RECORD: ConfigRecord(dict(reply))}), reply_to=message)


@client_app.query(GLM_ACTION)
def glm_round(message: Message, context: Context) -> Message:
    """Factory, GLM fits: check the round's signed coefficients, then encrypt this round's sums of its rows."""
    reply = factory_glm_reply(_request_of(message), dict(context.node_config), on_detail=_at_factory)
    return _answer(message, reply, "sent its encrypted GLM round")


@client_app.query(READY_ACTION)
def ready(message: Message, context: Context) -> Message:
    """Factory, masked rounds: say, signed, whether it can take part (pins, identity, data file), without reading
    data."""
    request = _request_of(message)
    reply = factory_ready_reply(request, dict(context.node_config), node_id=context.node_id, on_detail=_at_factory)
    return _answer(message, reply, "is ready for a masked round (signed)")


def _answer(message: Message, reply: Any, done: str) -> Message:
    """The reply record to a query (only its category on refusal), logged at the factory when it went well."""
    if reply["status"] == "ok":
        log(INFO, "hefed: factory %s " + done, reply["factory-id"])
    return Message(RecordDict({REPLY_RECORD: ConfigRecord(dict(reply))}), reply_to=message)


@client_app.query(JOIN_ACTION)
def join(message: Message, context: Context) -> Message:
    """Factory, masked rounds: join the proposed version 2 round (its secret stays in the identity folder)."""
    reply = factory_join_reply(_request_of(message), dict(context.node_config), on_detail=_at_factory)
    return _answer(message, reply, "joined the round (signed join, shares sealed for each peer)")


@client_app.query(REVEAL_ACTION)
def reveal_shares(message: Message, context: Context) -> Message:
    """Factory, masked rounds: reveal its shares for the survivor set of the unmask request (once per round)."""
    reply = factory_reveal_reply(_request_of(message), dict(context.node_config), on_detail=_at_factory)
    return _answer(message, reply, "revealed its shares (signed)")


# --- the ServerApp ------------------------------------------------------------------------------------------


class Narrator:
    """Says what the ServerApp does: each step to Flower's log and, if the run config asks, the progress file."""

    def __init__(self, progress: ProgressLog | None = None) -> None:
        self.progress = progress

    def __call__(self, step: str, message: str, *, level: int = INFO, factory: str | None = None,
                 ok: bool | None = None, round_number: int | None = None, phase: str | None = None) -> None:
        log(level, "hefed: %s", message)
        if self.progress is not None:
            self.progress(ProgressEvent(step, message, factory, ok, round_number, phase=phase))

    def reply(self, reply: Reply, what: str, round_number: int | None = None,
              names: Mapping[int, str] | None = None, phase: str | None = None) -> None:
        """One reply as it arrives: who answered (``names``: node id → the factory it announced), and how."""
        ok = reply.record is not None and reply.record.get("status") == "ok"
        name = (names or {}).get(reply.node_id)
        self("reply", reply.describe(what, name), level=INFO if ok else WARNING,
             factory=(name or reply.factory_id) if names else (reply.factory_id or name), ok=ok,
             round_number=round_number, phase=phase)

    def missing(self, missing: Mapping[str, str], round_number: int | None = None, phase: str | None = None) -> None:
        for name, why in missing.items():
            self("missing", f"missing {name}: {why}", level=WARNING, factory=name, ok=False,
                 round_number=round_number, phase=phase)


def wait_for_nodes(grid: Grid, need: int, seconds: float, say: Narrator | None = None) -> list[int]:
    """The connected node ids, once ``need`` are connected or after ``seconds`` (whichever comes first)."""
    deadline = time.monotonic() + seconds
    seen = 0
    while True:
        nodes = sorted(grid.get_node_ids())
        if say is not None and len(nodes) != seen:
            seen = len(nodes)
            say("nodes", f"{seen} of {count(need, 'expected SuperNode', 'expected SuperNodes')} connected")
        if len(nodes) >= need or time.monotonic() >= deadline:
            return nodes
        time.sleep(POLL_SECONDS)


def collect(grid: Grid, request: Mapping[str, Any] | Mapping[int, Mapping[str, Any]], node_ids: list[int],
            timeout: float, message_type: str = MESSAGE_TYPE, on_reply: Callable[[Reply], None] | None = None,
            ) -> list[Reply]:
    """Send ``request`` to every node (or, keyed by node id, each node its own) and gather replies until all
    answered or ``timeout`` seconds passed.

    ``on_reply`` is told of each reply as it arrives.
    """
    messages = [
        Message(RecordDict({REQUEST_RECORD: ConfigRecord(dict(_request_for(request, node_id)))}), dst_node_id=node_id,
                message_type=message_type, ttl=timeout + TTL_MARGIN_SECONDS)
        for node_id in node_ids
    ]
    ids = list(grid.push_messages(messages))
    node_of = {mid: node for mid, node in zip(ids, node_ids, strict=True) if mid}
    replies = [Reply(node, flower_error="the SuperLink refused the message")
               for mid, node in zip(ids, node_ids, strict=True) if not mid]
    if on_reply is not None:
        for reply in replies:
            on_reply(reply)
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
            if on_reply is not None:
                on_reply(reply)
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    return replies


def _request_for(request: Mapping[Any, Any], node_id: int) -> Mapping[str, Any]:
    """The request for ``node_id``: ``request`` itself, or its entry for that node when it is keyed by node id."""
    if request and all(isinstance(key, int) for key in request):
        return request[node_id]
    return request


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


#: Flower error codes raised at the factory (its ClientApp failed): their reason is the factory's own text (an
#: exception message may quote its data), so the report names the code only; the factory's log has the rest.
FACTORY_SIDE_ERRORS = frozenset({1, 2, 7, 8})


def _to_reply(node_id: int, answer: Message) -> Reply:
    if answer.has_error():
        code = int(answer.error.code)
        words = FLOWER_ERRORS.get(code, "Flower error")
        if code in FACTORY_SIDE_ERRORS or code not in FLOWER_ERRORS:
            return Reply(node_id, flower_error=f"{words} (Flower error {code}; details in the factory's own log)")
        return Reply(node_id, flower_error=f"{words} (Flower error {code}: {answer.error.reason})")
    if REPLY_RECORD not in answer.content:
        return Reply(node_id, flower_error="reply without a hefed record")
    return Reply(node_id, record=dict(answer.content[REPLY_RECORD]))


def run_round(grid: Grid, settings: RunSettings, inputs: RunInputs, say: Narrator) -> Tally:
    """Ask every connected factory once, and tally the replies."""
    request = make_request(settings.kind, inputs.public_key, inputs.model, inputs.study_digest)
    need = len(settings.expected_factories) or settings.min_contributors
    node_ids = wait_for_nodes(grid, need, settings.wait_for_nodes, say)
    say("asked", f"asking {count(len(node_ids), 'connected SuperNode', 'connected SuperNodes')} for "
        f"{settings.kind} bundles{_of_study(inputs)} "
        f"(timeout {settings.timeout:g} s)")
    replies = collect(grid, request, node_ids, settings.timeout,
                      on_reply=lambda reply: say.reply(reply, f"{settings.kind} bundle received"))
    result = tally(replies, node_ids, request, settings, inputs.model, study=inputs.study)
    say.missing(result.missing)
    return result


class Step:
    """Times one step of a masked run and records its cost (messages, bytes, seconds) in the progress."""

    def __init__(self, progress: MaskedProgress, name: str) -> None:
        self.cost = StepCost(name, 0.0)
        self.started = time.monotonic()
        progress.steps.append(self.cost)

    def exchange(self, grid: Grid, requests: Mapping[int, Mapping[str, Any]], timeout: float, message_type: str,
                 on_reply: Callable[[Reply], None]) -> list[Reply]:
        """Send each node its request and gather the replies (:func:`collect`), counting both ways."""
        self.cost.sent += len(requests)
        self.cost.bytes_sent += sum(record_bytes(r) for r in requests.values())
        replies = collect(grid, dict(requests), sorted(requests), timeout, message_type, on_reply)
        self.cost.received += sum(1 for r in replies if r.record is not None)
        self.cost.ok += sum(1 for r in replies if r.record is not None and r.record.get("status") == "ok")
        self.cost.bytes_received += sum(r.size for r in replies)
        self.done()
        return replies

    def done(self) -> None:
        self.cost.seconds = time.monotonic() - self.started


def run_masked(grid: Grid, settings: RunSettings, inputs: RunInputs, progress: MaskedProgress,
               say: Narrator) -> tuple[Tally, Bundle]:
    """One masked, signed version 2 round that survives drop-outs; returns its tally and the aggregate.

    1. Wait for the expected SuperNodes (``expected-factories``, or else every roster member).
    2. **Ready** (``query.ready``): the roster members that prove, signed over a fresh nonce, that they
       can take part, each on its node (:func:`hefed.flower._tally.tally_ready`).
    3. **Propose**: :func:`hefed.protocol.propose_round` over the ready set, threshold ``t`` the library's
       default (more than half) raised to ``min-contributors`` (at least the study's).
    4. **Join** (``query.join``): each participant joins (:func:`hefed.protocol.join_round`, its secret in
       its identity folder) and replies its signed join; **start**: :func:`hefed.protocol.start_round` of
       the verified joins (at least ``t``).
    5. **Contribute** (``query.contribute``, the joined factories): the round keys without the sealed
       shares; each replies its masked, signed bundle. **Collect**: :func:`hefed.roles.collect_round` of
       the valid bundles delivered within ``timeout`` (their senders are the survivors, at least
       ``max(t, min-contributors)``) and the unmask request.
    6. **Reveal** (``query.reveal``, the survivors): each gets the unmask request with its own shares and
       replies its signed reveal. **Unmask**: :func:`hefed.protocol.unmask` with at least ``t`` reveals.

    Drop-outs at join, contribute or reveal are tolerated down to ``t``; fewer fail the run with
    :class:`~hefed.errors.TooFewContributorsError` naming who is missing and why (categories, never a
    value). No round is ever re-run. ``progress`` is filled as it goes (ready list, the round, the
    drop-outs, every step's cost), so a failure reports it too.
    """
    roster = inputs.roster
    if roster is None:  # pragma: no cover - RunSettings.load_inputs loads it for every masked run
        raise RoundError("a masked run needs the roster (run config 'roster')")
    request = make_request(settings.kind, inputs.public_key, inputs.model, inputs.study_digest)
    progress.roster_digest = roster.digest()
    if settings.max_rounds != RUN_CONFIG_DEFAULTS["max-rounds"]:
        say("note", f"max-rounds = {settings.max_rounds} is ignored (deprecated): a masked run is one version 2 "
            "round that survives drop-outs; no round is re-run", level=WARNING)
    need = len(settings.expected_factories) or len(roster.members)
    node_ids = wait_for_nodes(grid, need, settings.wait_for_nodes, say)
    progress.nodes = len(node_ids)

    say("asked", f"masked round: asking {count(len(node_ids), 'connected SuperNode', 'connected SuperNodes')} "
        f"who is ready (roster "
        f"{roster.digest()}{_of_study(inputs, ', ')}, timeout {settings.timeout:g} s)")
    ready_request = make_ready_request(settings.kind, inputs.public_key, roster, inputs.study_digest)
    replies = Step(progress, "ready").exchange(grid, {node: ready_request for node in node_ids}, settings.timeout,
                                               READY_MESSAGE_TYPE,
                                               functools.partial(say.reply, what="ready", phase="ready"))
    ready = tally_ready(replies, node_ids, roster, settings, ready_request)
    progress.ready, progress.not_ready = ready.ready, dict(ready.not_ready)
    progress.false_claims = dict(ready.false_claims)
    for node, why in ready.false_claims.items():
        say("impostor", f"{node}: {why}", level=WARNING, ok=False)
    for name, why in ready.not_ready.items():
        say("missing", f"{name} is not in the round: {why}", level=WARNING, factory=name, ok=False, phase="ready")
    check_survivors(ready.ready, settings.min_contributors, progress, "after the ready step")

    step = Step(progress, "propose")
    participants = ready.ready
    threshold = max(default_threshold(len(participants)), settings.min_contributors)
    round_ = propose_round(roster, participants, threshold=threshold, study=inputs.study)
    progress.proposed, progress.participants, progress.threshold = round_.round_id, list(participants), threshold
    step.done()
    say("round", f"round {round_.round_id} (version 2, threshold {threshold} of {len(participants)}): asking "
        f"{', '.join(participants)} to join", round_number=1)

    names = {ready.nodes[name]: name for name in round_.participants}
    join_request = make_join_request(request, round_, roster)
    replies = Step(progress, "join").exchange(
        grid, {node: join_request for node in names}, settings.timeout, JOIN_MESSAGE_TYPE,
        functools.partial(say.reply, what="joined the round", round_number=1, names=names, phase="join"))
    joins, missing = tally_joins(replies, names, round_, roster, settings)
    progress.drop("join", missing)
    say.missing(missing, 1, "join")
    check_survivors(sorted(joins), threshold, progress, f"after the join step of round {round_.round_id}",
                    "the round's threshold")
    step = Step(progress, "start")
    keys = start_round(round_, roster, joins.values())
    progress.joined = list(keys.joined)
    step.done()

    names = {node: name for node, name in names.items() if name in keys.joined}
    masked_request = make_masked_request(request, keys, roster)
    delivered = f"masked {settings.kind} bundle received"
    replies = Step(progress, "contribute").exchange(
        grid, {node: masked_request for node in names}, settings.timeout, MESSAGE_TYPE,
        functools.partial(say.reply, what=delivered, round_number=1, names=names, phase="contribute"))
    result = tally(replies, sorted(names), masked_request, settings, inputs.model, round_=keys, roster=roster,
                   node_names=names, study=inputs.study)
    progress.drop("contribute", result.missing)
    say.missing(result.missing, 1, "contribute")
    progress.survivors = list(result.contributors)
    check_survivors(result.contributors, threshold, progress, f"after the contribute step of round {round_.round_id}",
                    "the round's threshold")
    step = Step(progress, "collect")
    collected, unmask_request = collect_round(result.bundles, roster, keys, inputs.study)
    step.done()
    if unmask_request.dropouts:
        say("round", f"round {round_.round_id}: {', '.join(unmask_request.survivors)} delivered; recovering without "
            f"{', '.join(unmask_request.dropouts)} (no re-run)", level=WARNING, round_number=1)

    names = {node: name for node, name in names.items() if name in unmask_request.survivors}
    reveal_requests = {node: make_reveal_request(request, unmask_request.for_factory(name), roster)
                       for node, name in names.items()}
    replies = Step(progress, "reveal").exchange(
        grid, reveal_requests, settings.timeout, REVEAL_MESSAGE_TYPE,
        functools.partial(say.reply, what="revealed its shares", round_number=1, names=names, phase="reveal"))
    reveals, missing = tally_reveals(replies, names, keys, roster, unmask_request.survivors, settings)
    progress.drop("reveal", missing)
    say.missing(missing, 1, "reveal")
    progress.revealed = sorted(reveals)
    if len(reveals) < threshold:
        raise TooFewContributorsError(
            f"round {round_.round_id}: {len(reveals)} of the {len(unmask_request.survivors)} survivors revealed their "
            f"shares ({', '.join(sorted(reveals)) or 'none'}); unmasking needs {threshold}; missing: "
            + "; ".join(f"{name} ({why})" for name, why in progress.missing().items()))
    step = Step(progress, "unmask")
    aggregate = unmask(collected, keys, reveals.values(), roster)
    step.done()
    progress.complete = True
    say("round", f"round {round_.round_id} unmasked: the aggregate of {', '.join(aggregate.contributors)}", ok=True,
        round_number=1)
    return result, aggregate


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    """Aggregator: encrypted contributions, summed into the aggregate bundle.

    Unmasked (no ``roster``): one round (:func:`run_round`). Masked: the ready step and
    one version 2 round that survives drop-outs (:func:`run_masked`); the aggregate then
    carries the round id, the signed manifests and contributions, the round keys and the
    signed reveals, so ``hefed decrypt --roster`` can check it.

    The settings and every file they name are checked before anything is sent
    (:meth:`RunSettings.load_inputs`). Whatever goes wrong after the run config names a
    ``report`` path, the report is written (status ``failed``, the one-line error and its
    type, and for a masked run every round tried) before the ServerApp fails, unless that
    path holds an earlier report and ``force`` is not set.
    """
    started = time.monotonic()
    run_config = dict(context.run_config)
    settings: RunSettings | None = None
    inputs: RunInputs | None = None
    result: Tally | None = None
    progress: MaskedProgress | None = None
    say = Narrator()
    try:
        settings = RunSettings.from_config(run_config)
        # a GLM fit reads only its study (the coefficients come from the key holder, round after round)
        inputs = glm_inputs(settings) if settings.glm_exchange else settings.load_inputs()
        settings = settings.under_study(inputs)  # min-contributors at least the study's
        say = Narrator(ProgressLog(settings.progress, on_error=lambda text: log(WARNING, "hefed: %s", text)))
        if settings.glm_exchange:  # every IRLS round of a GLM fit (hefed.flower._glm)
            glm = glm_rounds(grid, settings, inputs, say)
            if settings.out:  # the key holder's signed results, published
                atomic_write_bytes(settings.out, Path(glm["results"]).read_bytes(), force=settings.force)
            _write_report(run_config, {"status": "ok", "run_id": context.run_id, **glm,
                                       "seconds": time.monotonic() - started, "study": inputs.study_digest})
            return
        if settings.masked:
            progress = MaskedProgress(roster_digest="")
            result, bundle = run_masked(grid, settings, inputs, progress, say)
            result = progress.summary(result)
        else:
            result = run_round(grid, settings, inputs, say)
            bundle = aggregate_tally(result, settings, inputs.study)
        bundle.save(settings.out, force=settings.force)
    except Exception as exc:
        message = str(exc) if isinstance(exc, HefedError) else f"{type(exc).__name__}: {exc}"
        say("failed", f"federation failed: {message}", level=ERROR, ok=False)
        if progress is not None:
            result = progress.summary()
        _write_report(run_config, report(result, settings, status="failed", error=message,
                                         error_type=type(exc).__name__, run_id=context.run_id,
                                         seconds=time.monotonic() - started, masked=progress,
                                         study=inputs.study_digest if inputs is not None else None))
        raise
    log(INFO, "hefed: wrote %s", settings.out)
    say("done", f"aggregate of {count(len(result.contributors), 'factory', 'factories')} "
        f"({', '.join(result.contributors)})" + (f", round {progress.round_id}" if progress is not None else "")
        + _of_study(inputs, ", "), ok=True)
    _write_report(run_config, report(result, settings, status="ok", run_id=context.run_id,
                                     out=str(Path(settings.out).absolute()), seconds=time.monotonic() - started,
                                     masked=progress, study=inputs.study_digest))


def glm_inputs(settings: RunSettings) -> RunInputs:
    """What a GLM fit reads before it asks anyone: its study (required; the key is the study's)."""
    if not settings.study or settings.masked:
        raise RoundError("a GLM fit through Flower needs a study (run config 'study') and runs unmasked rounds")
    study = Study.load(settings.study)
    check_public_key(study.public_key, insecure_test_key=settings.insecure_test_key, source="the study's key")
    return RunInputs(study.public_key, study=study)


def glm_rounds(grid: Grid, settings: RunSettings, inputs: RunInputs, say: Narrator) -> dict[str, Any]:
    """Every round of a GLM fit (:func:`hefed.flower._glm.run_glm`), over the factories connected at its start."""
    assert inputs.study is not None
    node_ids = wait_for_nodes(grid, len(settings.expected_factories) or settings.min_contributors,
                              settings.wait_for_nodes, say)
    if len(node_ids) < settings.min_contributors:
        raise TooFewContributorsError(f"{len(node_ids)} SuperNodes connected; the fit needs "
                                      f"{settings.min_contributors}")

    def ask(request: Mapping[str, Any], nodes: list[int], timeout: float, message_type: str) -> list[Reply]:
        return collect(grid, request, nodes, timeout, message_type,
                       on_reply=lambda reply: say.reply(reply, "GLM round received"))

    return run_glm(ask, node_ids, inputs.study, Path(settings.glm_exchange), settings.timeout,
                   settings.glm_step_timeout, lambda step, text: say(step, text))


def _of_study(inputs: RunInputs, before: str = " of ") -> str:
    """``" of study D"`` (``before`` it) in a run of a study, else ``""``: for the log and the progress file."""
    return f"{before}study {inputs.study_digest}" if inputs.study is not None else ""


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
