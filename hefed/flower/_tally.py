"""The aggregator's tally: which replies count, who is missing and why, each masked round, and the report.

:func:`tally` sorts one round's replies into accepted bundles (in factory-id order, so the
aggregate is the same whichever node answers first) and missing factories with their
reasons; :func:`tally_ready`, :func:`tally_joins` and :func:`tally_reveals` do the same for the
other steps of a masked (version 2) round. :class:`MaskedProgress` keeps the round as it goes (who
joined, delivered, revealed, who dropped out at which step, and what each step cost), so a failed
run still reports it, and :func:`report` is the JSON report the ServerApp writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cryptography.exceptions import InvalidSignature

from ..errors import REPLY_CATEGORIES, DuplicateContributorError, HefedError, TooFewContributorsError, UsageError
from ..models import LinearModel
from ..protocol import (
    Bundle,
    Join,
    Reveal,
    Roster,
    Round,
    RoundKeys,
    Study,
    check_factory_id,
    verify_round_contribution,
)
from ..roles import aggregate
from ._config import RunSettings
from ._messages import (
    Reply,
    bundle_from_bytes,
    join_from_reply,
    one_line,
    ready_extra,
    ready_statement,
    reveal_from_reply,
)

#: Format of the federation report the ServerApp writes.
REPORT_FORMAT = "hefed.federation"
REPORT_VERSION = 1


#: A signed message of one masked-round step (its ``factory_id`` is who signed it).
M = TypeVar("M", Join, Reveal)


def _valid_id(value: object) -> str | None:
    """``value`` if it is a valid factory id, else ``None``."""
    try:
        return check_factory_id(value)
    except UsageError:
        return None


def error_category(record: Mapping[str, Any]) -> str:
    """The error category an ``error`` reply carries, if it is one of the fixed categories
    (:data:`hefed.errors.REPLY_CATEGORIES`); any other text is not repeated (it is not what a hefed factory sends)."""
    value = record.get("error")
    return value if isinstance(value, str) and value in REPLY_CATEGORIES else "error reply without a known category"


@dataclass
class Tally:
    """The outcome of one round: the bundles accepted, who they came from, and who is missing and why."""

    contributors: list[str]
    bundles: list[Bundle]
    missing: dict[str, str]
    unanswered_nodes: dict[str, str]
    nodes: int
    reply_seconds: dict[str, float] = field(default_factory=dict)
    #: Factory ids more than one SuperNode claimed (an unmasked run then aggregates nothing).
    duplicates: list[str] = field(default_factory=list)

    def describe_missing(self) -> str:
        items = [f"{name} ({why})" for name, why in self.missing.items()]
        return "; ".join(items) if items else "none"


def _check_bundle(bundle: Bundle, factory_id: str, request: Mapping[str, Any], settings: RunSettings,
                  model: LinearModel | None, round_: RoundKeys | None = None, roster: Roster | None = None,
                  study: Study | None = None) -> str | None:
    """Why ``bundle`` cannot be summed for this request (and round, and study), or ``None`` if it can."""
    if bundle.contributors != [factory_id]:
        return f"bundle lists contributors {bundle.contributors}, not just {factory_id!r}"
    if bundle.kind != request["kind"]:
        return f"bundle of kind {bundle.kind!r}, {request['kind']!r} was asked"
    if bundle.key_fingerprint != request["key-fingerprint"]:
        return f"encrypted for key {bundle.key_fingerprint}, not the consortium key {request['key-fingerprint']}"
    if study is not None:  # the study's digest, key, kinds, columns and encoding; the run config sets none of them
        try:
            study.check_bundle(bundle, f"bundle from {factory_id}")
        except HefedError as exc:
            return one_line(str(exc))
    else:
        if bundle.study is not None:
            return f"made for study {bundle.study}, but this run has no study"
        if bundle.encoding != settings.encoding:
            return "encoding differs from the run's"
        if settings.target and bundle.target != settings.target:
            return f"target {bundle.target!r}, the run asks for {settings.target!r}"
        if settings.features and set(bundle.features) != set(settings.features):
            return f"features {sorted(bundle.features)} differ from the run's {sorted(settings.features)}"
    if model is not None and bundle.parameters.get("model_digest") != model.digest():
        return "evaluated a different model"
    if round_ is not None and roster is not None:
        try:
            verify_round_contribution(bundle, roster, round_, f"bundle from {factory_id}")
        except HefedError as exc:
            return f"not a valid signed contribution to round {round_.round_id}: {one_line(str(exc))}"
    elif bundle.round_id:
        return "a masked round contribution, but this run is unmasked"
    return None


def tally(replies: Iterable[Reply], sent_to: Sequence[int], request: Mapping[str, Any], settings: RunSettings,
          model: LinearModel | None = None, *, round_: RoundKeys | None = None, roster: Roster | None = None,
          node_names: Mapping[int, str] | None = None, study: Study | None = None) -> Tally:
    """Sort replies into accepted bundles and missing factories (with reasons).

    A factory is left out, and named with the reason, when its SuperNode did not
    answer in time, answered with an error, sent an invalid bundle or one that
    does not match the request, claimed a factory id another node also claimed,
    or sent a bundle whose schema differs from the others' (the reference is the
    first valid bundle in factory-id order). The accepted bundles are in
    factory-id order, so the aggregate is the same whichever node answers first.

    In a masked round (``round_``: the round keys of a version 2 round, and ``roster`` given) every
    bundle must also be its factory's valid signed contribution for those keys; ``node_names`` (node id →
    the factory id it announced in the ready step) then names silent nodes by their
    factory and refuses a reply claiming another id, and the joined factories are the ones expected.
    In a run of a ``study`` every bundle must be that study's
    (:meth:`~hefed.protocol.Study.check_bundle`: digest, key, allowed kind, columns, encoding).
    """
    names = dict(node_names or {})
    by_node: dict[int, Reply] = {}
    for reply in replies:
        by_node.setdefault(reply.node_id, reply)
    missing: dict[str, str] = {}
    unanswered: dict[str, str] = {}
    latency: dict[str, float] = {}
    candidates: dict[str, list[bytes]] = {}
    for node_id in sent_to:
        answer = by_node.get(node_id)
        label = f"node {node_id}"
        known = names.get(node_id)
        if answer is None or answer.record is None:
            why = (f"no answer within {settings.timeout:g} s" if answer is None
                   else one_line(answer.flower_error or "error without a reason"))
            if known:
                missing[known] = why
            else:
                unanswered[label] = why
            continue
        record = answer.record
        factory_id = _valid_id(record.get("factory-id"))
        if factory_id is None:
            if known:
                missing[known] = "reply without a valid factory id"
            else:
                unanswered[label] = "reply without a valid factory id"
            continue
        if known and factory_id != known:
            missing[known] = f"its node answered as {factory_id!r} after announcing {known!r}; refused"
            continue
        if answer.seconds is not None:
            latency[factory_id] = round(answer.seconds, 3)
        if record.get("status") == "error":
            missing[factory_id] = f"error: {error_category(record)}"
            continue
        if round_ is None and settings.expected_factories and factory_id not in settings.expected_factories:
            unexpected = f"{label} ({factory_id})"
            unanswered[unexpected] = f"answered as {factory_id!r}, not an expected factory; left out"
            continue
        data = record.get("bundle")
        if record.get("status") != "ok" or not isinstance(data, bytes):
            missing[factory_id] = "malformed reply"
            continue
        candidates.setdefault(factory_id, []).append(data)

    accepted: list[tuple[str, Bundle]] = []
    duplicates: list[str] = []
    for factory_id in sorted(candidates):
        if len(candidates[factory_id]) > 1 or factory_id in missing:
            missing[factory_id] = "factory id claimed by more than one SuperNode; all its replies left out"
            duplicates.append(factory_id)
            continue
        try:
            bundle = bundle_from_bytes(candidates[factory_id][0], f"bundle from {factory_id}")
        except HefedError as exc:
            missing[factory_id] = f"invalid bundle: {one_line(str(exc))}"
            continue
        problem = _check_bundle(bundle, factory_id, request, settings, model, round_, roster, study)
        if problem is None and accepted:
            diffs = accepted[0][1].schema_differences(bundle)
            problem = f"differs from {accepted[0][0]}: {'; '.join(diffs)}" if diffs else None
        if problem is not None:
            missing[factory_id] = problem
            continue
        accepted.append((factory_id, bundle))

    heard = {name for name, _ in accepted} | set(missing)
    expected = round_.joined if round_ is not None else settings.expected_factories
    absent = [name for name in expected if name not in heard]
    for name in absent:
        if len(unanswered) == 1 and len(absent) == 1:
            missing[name] = next(iter(unanswered.values()))
        elif unanswered:
            missing[name] = f"no reply (its SuperNode did not answer within {settings.timeout:g} s or left)"
        else:
            missing[name] = "its SuperNode was not connected to the SuperLink"
    if not expected:
        missing.update(unanswered)
    return Tally([name for name, _ in accepted], [bundle for _, bundle in accepted], dict(sorted(missing.items())),
                 unanswered, len(sent_to), dict(sorted(latency.items())), duplicates)


@dataclass
class ReadyTally:
    """The outcome of the ready step: which roster members proved they are ready (on which node), who is not and
    why, and the claims that were not proved (node → why)."""

    nodes: dict[str, int]
    not_ready: dict[str, str]
    unanswered_nodes: dict[str, str]
    node_count: int
    false_claims: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> list[str]:
        """The ready roster members, sorted: the participants of the first round."""
        return sorted(self.nodes)


def verify_ready(record: Mapping[str, Any], factory_id: str, node_id: int, roster: Roster,
                 request: Mapping[str, Any]) -> str | None:
    """Why an ``ok`` ready reply claiming ``factory_id`` from ``node_id`` is not proved, or ``None`` when it is.

    The signature must be the roster member's (Ed25519) over the statement the aggregator rebuilds from what
    it sent (the nonce of this ready step, the key fingerprint, the roster digest, the study), the node the
    reply came from and the reply's extra fields (:func:`hefed.flower._messages.ready_statement`): a signature
    of an earlier ready step, of another node, key, roster or study, by another key, or of a reply whose extra
    fields were changed or added does not verify.
    """
    member = roster.members.get(factory_id)
    if member is None:
        return "not in the roster"
    text = record.get("signature")
    if not isinstance(text, str) or not text:
        return "unsigned ready reply"
    try:
        signature = bytes.fromhex(text)
    except ValueError:
        return "ready reply with a malformed signature"
    statement = ready_statement(str(request.get("nonce", "")), factory_id, str(request.get("key-fingerprint", "")),
                                roster.digest(), request.get("study") or None, node_id, ready_extra(record))
    try:
        member.verifier().verify(signature, statement)
    except (InvalidSignature, ValueError):
        return "ready reply whose signature is not the roster member's over this ready step"
    return None


def tally_ready(replies: Iterable[Reply], sent_to: Sequence[int], roster: Roster,
                settings: RunSettings, request: Mapping[str, Any]) -> ReadyTally:
    """Sort the ready replies: roster members that proved, each on exactly one node, that they are ready.

    A claim counts only with a valid signature of the roster member (:func:`verify_ready`) over this
    ready step's fresh nonce (``request``) and the node it came from. Claims that are not proved (unsigned,
    wrongly signed, replayed, or error replies) cannot exclude the member: when the member proved itself on
    another node they are reported in ``false_claims`` and ignored; otherwise the member is not ready, with
    the reason (its error category when one node answered for it).

    Left out, with the reason: a factory that answered with an error (a pin or identity check failed),
    one not in the roster, a member proved on more than one node (its identity is on two SuperNodes), and
    every expected factory (``expected-factories``, or else every roster member) that did not answer.
    """
    by_node: dict[int, Reply] = {}
    for reply in replies:
        by_node.setdefault(reply.node_id, reply)
    proved: dict[str, list[int]] = {}
    unproved: dict[str, list[tuple[int, str]]] = {}
    not_ready: dict[str, str] = {}
    unanswered: dict[str, str] = {}
    for node_id in sent_to:
        answer = by_node.get(node_id)
        label = f"node {node_id}"
        if answer is None:
            unanswered[label] = f"no answer to the ready query within {settings.timeout:g} s"
            continue
        if answer.record is None:
            unanswered[label] = one_line(answer.flower_error or "error without a reason")
            continue
        factory_id = _valid_id(answer.record.get("factory-id"))
        if factory_id is None:
            unanswered[label] = "ready reply without a valid factory id"
            continue
        if factory_id not in roster.members:
            why = ("not in the roster" if answer.record.get("status") == "ok"
                   else f"not ready: {error_category(answer.record)} (not in the roster)")
            not_ready.setdefault(factory_id, why)
            continue
        if answer.record.get("status") == "ok":
            problem = verify_ready(answer.record, factory_id, node_id, roster, request)
            if problem is None:
                proved.setdefault(factory_id, []).append(node_id)
                continue
        elif answer.record.get("status") == "error":
            problem = f"not ready: {error_category(answer.record)}"
        else:
            problem = "malformed ready reply"
        unproved.setdefault(factory_id, []).append((node_id, problem))
    nodes: dict[str, int] = {}
    false_claims: dict[str, str] = {}
    for factory_id in sorted(set(proved) | set(unproved)):
        proofs, others = proved.get(factory_id, []), unproved.get(factory_id, [])
        if len(proofs) > 1:
            not_ready[factory_id] = (f"proved its identity on {len(proofs)} SuperNodes (nodes "
                                     f"{', '.join(map(str, proofs))}); left out")
        elif proofs:
            nodes[factory_id] = proofs[0]
        for node_id, problem in others:
            if proofs:
                false_claims[f"node {node_id}"] = (f"claimed {factory_id!r} without its identity's signature "
                                                   f"({problem}); ignored, {factory_id} answered signed from "
                                                   f"node {proofs[0]}")
            elif len(others) > 1:
                false_claims[f"node {node_id}"] = f"claimed {factory_id!r} without its identity's signature ({problem})"
        if not proofs and others:
            not_ready[factory_id] = (others[0][1] if len(others) == 1 else
                                     f"{len(others)} SuperNodes claimed it, none with its identity's signature: "
                                     + "; ".join(sorted({problem for _, problem in others})))
    expected = settings.expected_factories or tuple(sorted(roster.members))
    for name in expected:
        if name not in nodes and name not in not_ready:
            not_ready[name] = (f"did not answer the ready query within {settings.timeout:g} s" if unanswered
                               else "its SuperNode was not connected to the SuperLink")
    if not settings.expected_factories:
        not_ready.update(unanswered)
    return ReadyTally(nodes, dict(sorted(not_ready.items())), unanswered, len(sent_to),
                      dict(sorted(false_claims.items())))


def _named_replies(replies: Iterable[Reply], node_names: Mapping[int, str], settings: RunSettings,
                   what: str) -> tuple[dict[str, Mapping[str, Any]], dict[str, str]]:
    """The ``ok`` records of a masked step by factory (each node answers for the factory it proved in the ready
    step, or is refused), and every factory asked that did not give one, with the reason."""
    by_node: dict[int, Reply] = {}
    for reply in replies:
        by_node.setdefault(reply.node_id, reply)
    records: dict[str, Mapping[str, Any]] = {}
    missing: dict[str, str] = {}
    for node_id, name in sorted(node_names.items()):
        answer = by_node.get(node_id)
        if answer is None:
            missing[name] = f"no {what} within {settings.timeout:g} s"
        elif answer.record is None:
            missing[name] = one_line(answer.flower_error or "error without a reason")
        elif answer.record.get("factory-id") != name:
            missing[name] = f"its node answered as {answer.factory_id!r} after proving {name!r}; refused"
        elif answer.record.get("status") == "error":
            missing[name] = f"error: {error_category(answer.record)}"
        elif answer.record.get("status") != "ok":
            missing[name] = f"malformed {what}"
        else:
            records[name] = answer.record
    return records, missing


def tally_joins(replies: Iterable[Reply], node_names: Mapping[int, str], round_: Round, roster: Roster,
                settings: RunSettings) -> tuple[dict[str, Join], dict[str, str]]:
    """The verified joins of a version 2 round (signed by the participant its node proved to be, for this round,
    with sealed shares for every other participant), and who did not join and why."""
    def check(join: Join, name: str) -> None:
        if join.shares is None:
            raise UsageError("a join without its sealed shares")
        join.verify(roster, round_, f"join of {name}")

    return _verified(replies, node_names, settings, "join", join_from_reply, check)


def tally_reveals(replies: Iterable[Reply], node_names: Mapping[int, str], keys: RoundKeys, roster: Roster,
                  survivors: Sequence[str], settings: RunSettings) -> tuple[dict[str, Reveal], dict[str, str]]:
    """The verified reveals of the survivors (each signed by its survivor for these round keys and exactly this
    survivor set: :meth:`hefed.protocol.Reveal.verify`), and who did not reveal and why."""
    return _verified(replies, node_names, settings, "reveal", reveal_from_reply,
                     lambda answer, name: answer.verify(roster, keys, survivors, f"reveal of {name}"))


def _verified(replies: Iterable[Reply], node_names: Mapping[int, str], settings: RunSettings, what: str,
              parse: Callable[[Any, str], M], check: Callable[[M, str], None]) -> tuple[dict[str, M], dict[str, str]]:
    """The replies of one step that parse, are signed as the factory whose node sent them and pass ``check``; and
    who did not answer so, and why."""
    records, missing = _named_replies(replies, node_names, settings, what)
    verified: dict[str, M] = {}
    for name, record in records.items():
        try:
            message = parse(record, f"{what} of {name}")
            if message.factory_id != name:
                raise UsageError(f"a {what} signed as {message.factory_id!r}")
            check(message, name)
        except HefedError as exc:
            missing[name] = f"invalid {what}: {one_line(str(exc))}"
            continue
        verified[name] = message
    return verified, dict(sorted(missing.items()))


@dataclass
class StepCost:
    """What one step of a masked run cost: the Flower messages sent and the replies received (``ok``: the replies
    that were ``ok``), their payloads in bytes (:func:`hefed.flower._messages.record_bytes`), and its wall time.
    The aggregator's own steps (propose, start, collect, unmask) send nothing."""

    step: str
    seconds: float
    sent: int = 0
    received: int = 0
    ok: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "seconds": round(self.seconds, 3), "sent": self.sent, "received": self.received,
                "ok": self.ok, "bytes_sent": self.bytes_sent, "bytes_received": self.bytes_received}


#: The steps of a masked run, in order, where a factory can drop out (the others are the aggregator's alone).
DROPOUT_STEPS = ("join", "contribute", "reveal")


@dataclass
class MaskedProgress:
    """What a masked federation did so far (kept up to date, so a failed run still reports it): the ready step, the
    one version 2 round (participants, threshold, joined, survivors, who revealed, who dropped out at which step
    and why) and the cost of every step."""

    roster_digest: str
    ready: list[str] = field(default_factory=list)
    not_ready: dict[str, str] = field(default_factory=dict)
    nodes: int = 0
    #: Ready claims that were not proved with the claimed member's signature (node → why), ignored.
    false_claims: dict[str, str] = field(default_factory=dict)
    proposed: str | None = None
    participants: list[str] = field(default_factory=list)
    threshold: int | None = None
    joined: list[str] = field(default_factory=list)
    survivors: list[str] = field(default_factory=list)
    revealed: list[str] = field(default_factory=list)
    #: Participants that dropped out: factory → (the step it missed, why).
    dropouts: dict[str, tuple[str, str]] = field(default_factory=dict)
    steps: list[StepCost] = field(default_factory=list)
    complete: bool = False

    @property
    def round_id(self) -> str | None:
        """The id of the round whose aggregate was made, or ``None``."""
        return self.proposed if self.complete else None

    def drop(self, step: str, missing: Mapping[str, str]) -> None:
        """Record the participants that missed ``step`` (factory → why)."""
        for name, why in missing.items():
            self.dropouts.setdefault(name, (step, why))

    def missing(self) -> dict[str, str]:
        """Every factory left out of the aggregate and why: not ready, or dropped out at a step of the round."""
        out = dict(self.not_ready)
        for name, (step, why) in self.dropouts.items():
            label = "did not reveal" if step == "reveal" else f"dropped out at the {step} step"
            out.setdefault(name, f"{label} of round {self.proposed}: {why}")
        return dict(sorted(out.items()))

    def summary(self, final: Tally | None = None) -> Tally:
        """The federation as one :class:`Tally`: the survivors (the aggregate's contributors), and everyone missing."""
        contributors = list(final.contributors) if final else list(self.survivors if self.complete else [])
        bundles = list(final.bundles) if final else []
        latency = dict(final.reply_seconds) if final else {}
        unanswered = dict(final.unanswered_nodes) if final else {}
        missing = {k: v for k, v in self.missing().items() if k not in contributors}
        return Tally(contributors, bundles, missing, unanswered, self.nodes, latency)

    def round_dict(self) -> dict[str, Any]:
        """The round as the report lists it (``rounds``: one entry, or none before a round was proposed)."""
        return {"round": 1, "round_id": self.proposed, "version": 2, "participants": list(self.participants),
                "threshold": self.threshold, "joined": list(self.joined), "contributors": list(self.survivors),
                "revealed": list(self.revealed),
                "missing": {name: f"{step}: {why}" for name, (step, why) in sorted(self.dropouts.items())},
                "complete": self.complete}

    def to_dict(self) -> dict[str, Any]:
        return {"version": 2, "roster_digest": self.roster_digest, "ready": list(self.ready),
                "not_ready": dict(self.not_ready), "false_claims": dict(self.false_claims), "round_id": self.round_id,
                "participants": list(self.participants), "threshold": self.threshold, "joined": list(self.joined),
                "survivors": list(self.survivors), "revealed": list(self.revealed),
                "dropouts": {name: {"step": step, "why": why} for name, (step, why) in sorted(self.dropouts.items())},
                "steps": [cost.to_dict() for cost in self.steps],
                "rounds": [self.round_dict()] if self.proposed else []}


def check_survivors(participants: Sequence[str], needed: int, progress: MaskedProgress, where: str,
                    why: str = "min-contributors") -> None:
    """Fail clearly when fewer than ``needed`` factories are left ``where`` (e.g. "after the ready step"; ``why``
    names the rule: ``min-contributors``, the round's threshold), naming who is missing and why (categories and
    reasons only, never a value)."""
    if len(participants) >= needed:
        return
    raise TooFewContributorsError(
        f"only {len(participants)} factories left {where} ({', '.join(participants) or 'none'}), fewer than the "
        f"{needed} needed ({why}); missing: "
        + ("; ".join(f"{name} ({reason})" for name, reason in progress.missing().items()) or "none")
    )


def aggregate_tally(result: Tally, settings: RunSettings, study: Study | None = None) -> Bundle:
    """The aggregate of exactly the accepted bundles (of ``study``, if the run has one), or a clear error if too few
    factories answered."""
    if result.duplicates:
        raise DuplicateContributorError(
            f"factory id{'s' if len(result.duplicates) > 1 else ''} {', '.join(result.duplicates)} claimed by more "
            "than one SuperNode: an unmasked run cannot tell a factory from an impostor (its replies are unsigned), "
            "and leaving the claimed factories out could isolate the others, so nothing is aggregated; use masked "
            "rounds with a roster (each claim is then proved with the factory's identity)"
        )
    total = len(set(result.contributors) | set(result.missing)) or result.nodes
    if len(result.contributors) < settings.min_contributors:
        raise TooFewContributorsError(
            f"only {len(result.contributors)} of {total} factories contributed "
            f"({', '.join(result.contributors) or 'none'}), fewer than min-contributors = "
            f"{settings.min_contributors}; missing: {result.describe_missing()}"
        )
    return aggregate(result.bundles, study=study)


def report(result: Tally | None, settings: RunSettings | None, *, status: str, error: str | None = None,
           error_type: str | None = None, run_id: int | None = None, out: str | None = None,
           seconds: float | None = None, masked: MaskedProgress | None = None,
           study: str | None = None) -> dict[str, Any]:
    """The JSON report of a federation (what the ServerApp writes to the run config's ``report``).

    ``study`` is the digest of the run's study (``null`` without one); ``min_contributors`` is
    the threshold applied (at least the study's).

    ``masked`` is ``false`` for an unmasked run; for a masked run (:meth:`MaskedProgress.to_dict`) it holds the
    roster digest, who was ready, the version 2 round (id, participants, threshold, joined, survivors, who
    revealed, the drop-outs with the step each missed), ``steps`` (per step: messages sent and received, their
    bytes, seconds) and ``rounds`` (the round as one entry), and ``round_id`` is the round of the aggregate.
    """
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
        "masked": masked.to_dict() if masked is not None else False,
        "round_id": masked.round_id if masked is not None else None,
        "study": study,
    }
