"""Attacks on the Flower deployment (issue 14): a malicious aggregator, and rogue SuperNodes.

The aggregator controls the run config and every request; a rogue SuperNode can claim any factory
id. Each attack is tried and must be refused:

* **key substitution** (issue 14 attack 1): an aggregator sending its own Paillier key gets only
  refusals, from pinned factories and from unpinned ones alike (there is no unpinned mode), and no
  bundle under its key is ever sent;
* **data in error replies** (attack 3): a hostile encoding (``int-bits = 3``) makes every factory
  refuse, and what reaches the aggregator (report, progress file, its log) is a fixed category, never
  a cell, a row number, a column statistic or a path; the full message stays in the factory's log;
* **rogue SuperNodes** (the Flower half of attack 4): a SuperNode claiming a roster member's id
  without its identity cannot exclude it (its claim is unsigned and reported), a forged, replayed or
  relayed signature does not verify, and a plain (unsigned) run with a duplicate claim aggregates
  nothing rather than leaving a victim alone;
* **roster substitution** (attack 5): a round of a roster the factory did not pin (the victim and the
  aggregator's sybils) is refused at the ready step; a factory pinning no roster joins no masked round.

The in-process tests (reply categories, the signed ready reply, the ServerApp with a rogue node) run in
the fast loop. The real-process tests share one SuperLink for the module: two gas-turbine years (enrolled,
pinned to the key and the roster), an impostor SuperNode claiming ``gt_2012`` with an identity the roster
does not hold, and a sybil SuperNode of the aggregator, pinned to its sybil roster.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gmpy2
import pandas as pd
import pytest
from phe import PaillierPublicKey

pytest.importorskip("flwr")

import test_flower  # noqa: E402
from test_flower import TARGET, YEARS, enroll_consortium, marked_processes, masked_config, run_in_process  # noqa: E402

import hefed  # noqa: E402
from hefed.errors import (  # noqa: E402
    INTERNAL_CATEGORY,
    REPLY_CATEGORIES,
    DataError,
    DuplicateContributorError,
    EncodingError,
    HefedError,
    IncompleteRoundError,
    InsecureKeyError,
    InvalidFileError,
    KeyMismatchError,
    OverflowRiskError,
    RoundError,
    SchemaMismatchError,
    TooFewContributorsError,
    UnpinnedError,
    UsageError,
    reply_category,
)
from hefed.flower import FactoryConfig, LocalFederation, RunSettings  # noqa: E402
from hefed.flower._factory import (  # noqa: E402
    check_ready,
    factory_join_reply,
    factory_log_path,
    factory_ready_reply,
    factory_reply,
    ready_reply_for,
)
from hefed.flower._messages import (  # noqa: E402
    Reply,
    bundle_to_bytes,
    error_reply,
    make_join_request,
    make_masked_request,
    make_ready_request,
    make_request,
    ready_statement,
)
from hefed.flower._tally import aggregate_tally, tally, tally_ready, verify_ready  # noqa: E402
from hefed.protocol import Roster, RoundKeys, enroll, load_identity, propose_round  # noqa: E402
from hefed.stats import Encoding  # noqa: E402

# real Flower processes: one worker at a time (pyproject addopts, --dist loadgroup)
pytestmark = pytest.mark.xdist_group("flower")

SYBILS = ("zz-sybil-1", "zz-sybil-2")


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Any]:
    """A 1024-bit test key pair (as test_flower's)."""
    return test_flower.keys.__wrapped__(tmp_path_factory)


@pytest.fixture(scope="module")
def gas_files() -> list[Path]:
    return test_flower.gas_files.__wrapped__()


@pytest.fixture
def task_identity() -> Iterator[None]:
    yield from test_flower.task_identity.__wrapped__()


# --- reply categories -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("exc", "category"), [
    (EncodingError("/data/plant.csv: column 'AH', row 1: |83.675| reaches 2^3; this column needs int_bits >= 7"),
     "refused: data out of range"),
    (OverflowRiskError("Σx² of column 'AT' is 1.2e9"), "refused: data out of range"),
    (DataError("/data/plant.csv: column 'NOX', row 7: 'n/a' is not a number"), "refused: data not usable"),
    (KeyMismatchError("pinned to key 0123"), "refused: key mismatch"),
    (InsecureKeyError("a 512-bit modulus"), "refused: insecure key"),
    (UnpinnedError("this factory pins no key"), "refused: no pin for key or roster"),
    (SchemaMismatchError("study abc"), "refused: study or schema mismatch"),
    (RoundError("roster 0123"), "refused: round or roster mismatch"),
    (IncompleteRoundError("missing a", ["a"], ["b"]), "refused: round or roster mismatch"),
    (InvalidFileError("/secret/path/identity.key.json: not JSON"), "refused: bad request or file"),
    (UsageError("no 'identity-dir'"), "refused: bad request or configuration"),
    (TooFewContributorsError("2 < 3"), "refused: too few contributors"),
    (HefedError("anything"), "refused: other"),
    (ValueError("could not convert string to float: '83.675'"), INTERNAL_CATEGORY),
    (KeyError("/data/plant.csv"), INTERNAL_CATEGORY),
])
def test_reply_category_is_fixed_per_exception_class(exc, category):
    """The category depends on the exception's class only (subclasses take their nearest listed class): whatever
    the message holds, the reply holds one of a few fixed strings, with no digit and no path."""
    assert reply_category(exc) == category and category in REPLY_CATEGORIES
    reply = error_reply("plant-1", exc)
    assert reply == {"status": "error", "factory-id": "plant-1", "error": category}
    for text in REPLY_CATEGORIES:
        assert re.fullmatch(r"(refused|failed): [a-z ]+", text), text
    assert len(set(REPLY_CATEGORIES)) == len(REPLY_CATEGORIES)


# --- in-process: pins, the signed ready step, duplicates --------------------------------------------------------


@pytest.fixture(scope="module")
def club(tmp_path_factory, keys) -> dict[str, Any]:
    """Three plants (CSV files), their identities and roster; an impostor identity enrolled under the second plant's
    id (keys the roster does not hold); the aggregator's sybils and its roster of the first plant and the sybils."""
    root = tmp_path_factory.mktemp("flower-attacks-club")
    files = []
    for name, frame in hefed.datasets.make_factories(n_factories=3, seed=11).items():
        files.append(root / f"{name}.csv")
        frame.to_csv(files[-1], index=False)
    names = [p.stem for p in files]
    club = enroll_consortium(root, names)
    enroll(names[1], root / "impostor")
    for sybil in SYBILS:
        enroll(sybil, root / f"id-{sybil}")
    sybil_roster = Roster({names[0]: club["roster"].members[names[0]],
                           **{s: load_identity(root / f"id-{s}").member for s in SYBILS}})
    return {**club, "root": root, "files": files, "names": names, "impostor": root / "impostor",
            "sybil_roster": sybil_roster, "sybil_roster_path": sybil_roster.save(root / "sybil-roster.json")}


def pinned_node(club: dict[str, Any], keys: dict[str, Any], i: int, **extra: str) -> dict[str, Any]:
    """Plant ``i``'s node config: its data, identity, key and roster pins, its own log folder."""
    name = club["names"][i]
    (club["root"] / "logs").mkdir(exist_ok=True)
    return {"data-path": str(club["files"][i]), "factory-id": name, "identity-dir": str(club["dirs"][name]),
            "key-fingerprint": hefed.key_fingerprint(keys["public"]), "roster-digest": club["roster"].digest(),
            "log-dir": str(club["root"] / "logs"), **extra}


def home(node: dict[str, Any]) -> str:
    """The last line of the factory's own log: the full text of its last refusal (mode 0600)."""
    path = factory_log_path(node)
    assert path is not None and path.stat().st_mode & 0o777 == 0o600
    return path.read_text().splitlines()[-1]


def test_a_factory_encrypts_only_under_its_pinned_key(club, keys):
    """Key substitution at one factory: the aggregator's own key is refused by a pinned factory, and a factory that
    pins nothing refuses every key (there is no unpinned mode), in the ready step and in a contribution; nothing is
    encrypted either way."""
    rogue = hefed.generate_keypair(1024, insecure_test_key=True)[0]
    roster = club["roster"]
    pinned = pinned_node(club, keys, 0)
    unpinned = {k: v for k, v in pinned.items() if k not in ("key-fingerprint", "roster-digest", "identity-dir")}
    plain_rogue = make_request("statistics", rogue)
    assert factory_reply(plain_rogue, unpinned, {"target": TARGET}) == {
        "status": "error", "factory-id": club["names"][0], "error": "refused: no pin for key or roster"}
    assert "pins no key" in home(unpinned)
    assert factory_reply(make_request("statistics", keys["public"]), unpinned, {"target": TARGET})["error"] == \
        "refused: no pin for key or roster"  # not even the right key: nothing is pinned
    round_ = propose_round(roster, club["names"])
    assert factory_join_reply(make_join_request(plain_rogue, round_, roster), pinned)["error"] == \
        "refused: key mismatch"  # no join, so no round secret, under a key it did not pin
    masked_rogue = make_masked_request(plain_rogue, RoundKeys(round_, ()), roster)
    assert factory_reply(masked_rogue, pinned, {"target": TARGET})["error"] == "refused: key mismatch"
    assert f"this factory is pinned to key {hefed.key_fingerprint(keys['public'])}" in home(pinned)
    ready = factory_ready_reply(make_ready_request("statistics", rogue, roster), pinned, node_id=1)
    assert ready == {"status": "error", "factory-id": club["names"][0], "error": "refused: key mismatch"}
    # a weak key is refused even when the node config pins it: here a modulus with the factor 3
    weak = PaillierPublicKey(3 * int(gmpy2.next_prime(2**1020 + 12345)))
    node = {**unpinned, "key-fingerprint": hefed.key_fingerprint(weak), "insecure-test-key": True}
    assert FactoryConfig.from_node_config(node).insecure_test_key
    assert factory_reply(make_request("statistics", weak), node, {"target": TARGET})["error"] == \
        "refused: insecure key"
    assert "prime factor below 2^20" in home(node)


def test_a_factory_joins_only_masked_rounds_of_its_pinned_roster(club, keys):
    """Roster substitution at one factory: a round of the victim and two sybils (a roster it did not pin) is refused
    at the ready step and in the contribution; a factory pinning no roster joins no masked round at all."""
    victim = pinned_node(club, keys, 0)
    sybil_roster = club["sybil_roster"]
    ready = make_ready_request("statistics", keys["public"], sybil_roster)
    assert factory_ready_reply(ready, victim, node_id=1)["error"] == "refused: round or roster mismatch"
    assert f"but this factory is pinned to roster {club['roster'].digest()}" in home(victim)
    round_ = propose_round(sybil_roster, [club["names"][0], *SYBILS])
    join = make_join_request(make_request("statistics", keys["public"]), round_, sybil_roster)
    assert factory_join_reply(join, victim)["error"] == "refused: round or roster mismatch"
    request = make_masked_request(make_request("statistics", keys["public"]), RoundKeys(round_, ()), sybil_roster)
    assert factory_reply(request, victim, {"target": TARGET})["error"] == "refused: round or roster mismatch"
    unpinned = {k: v for k, v in victim.items() if k != "roster-digest"}
    assert factory_ready_reply(ready, unpinned, node_id=1)["error"] == "refused: no pin for key or roster"
    assert "pins no roster" in home(unpinned)
    assert factory_reply(request, unpinned, {"target": TARGET})["error"] == "refused: no pin for key or roster"
    assert factory_join_reply(join, unpinned)["error"] == "refused: no pin for key or roster"


def signed_replies(club: dict[str, Any], keys: dict[str, Any], request: dict[str, str]) -> list[Reply]:
    """The three plants' ready replies to ``request``, from nodes 1, 2 and 3."""
    return [Reply(i + 1, factory_ready_reply(request, pinned_node(club, keys, i), node_id=i + 1)) for i in range(3)]


def test_ready_replies_are_signed_over_the_nonce_key_roster_study_and_node(club, keys):
    """The ready reply's signature is the member's over the request's fresh nonce, its id, the key, the roster, the
    study and the node; the aggregator rebuilds that statement from what it sent and where the reply came from."""
    settings = RunSettings.from_config({"roster": "r.json"})
    request = make_ready_request("statistics", keys["public"], club["roster"])
    assert re.fullmatch(r"[0-9a-f]{32}", request["nonce"])
    assert make_ready_request("statistics", keys["public"], club["roster"])["nonce"] != request["nonce"]
    replies = signed_replies(club, keys, request)
    name = club["names"][0]
    record = replies[0].record
    assert record is not None and set(record) == {"status", "factory-id", "signature"}
    statement = ready_statement(request["nonce"], name, hefed.key_fingerprint(keys["public"]), club["roster"].digest(),
                                None, 1)
    club["roster"].members[name].verifier().verify(bytes.fromhex(record["signature"]), statement)
    result = tally_ready(replies, [1, 2, 3], club["roster"], settings, request)
    assert result.nodes == {n: i + 1 for i, n in enumerate(club["names"])} and result.false_claims == {}
    # the same signature checked against any other term of the statement fails
    for changed in ({"nonce": "0" * 32}, {"key-fingerprint": "0" * 32}, {"study": "1" * 32}):
        assert verify_ready(record, name, 1, club["roster"], {**request, **changed}) is not None
    assert verify_ready(record, name, 2, club["roster"], request) is not None  # another node
    # fields a ready reply adds (a drop-out recovery's mask keys and shares) are signed too: changed or added, refused
    check = check_ready(request, FactoryConfig.from_node_config(pinned_node(club, keys, 0)))
    extended = ready_reply_for(check, 1, {"mask-key": "q1w2e3", "shares": "[]"})
    assert extended["mask-key"] == "q1w2e3" and verify_ready(extended, name, 1, club["roster"], request) is None
    for tampered in ({**extended, "mask-key": "q1w2e4"}, {**extended, "more": "x"}):
        assert verify_ready(tampered, name, 1, club["roster"], request) is not None
    # a ready request without a nonce is refused: there would be nothing fresh to sign
    unsigned = {k: v for k, v in request.items() if k != "nonce"}
    node = pinned_node(club, keys, 0)
    assert factory_ready_reply(unsigned, node, node_id=1)["error"] == "refused: bad request or file"
    assert "'nonce' missing" in home(node)


def test_forged_replayed_and_relayed_ready_claims_cannot_exclude_a_member(club, keys):
    """Rogue SuperNodes claim roster members: unsigned, signed with an impostor identity enrolled under the member's
    id, replayed from an earlier ready step, relayed from the member's own node, or answering with an error. Every
    member stays in the round on its own node, and each false claim is reported and ignored."""
    settings = RunSettings.from_config({"roster": "r.json"})
    roster, (a, b, c) = club["roster"], club["names"]
    request = make_ready_request("statistics", keys["public"], roster)
    earlier = make_ready_request("statistics", keys["public"], roster)
    honest = signed_replies(club, keys, request)
    impostor = load_identity(club["impostor"])  # enrolled as b, but not b's keys
    forged_statement = ready_statement(request["nonce"], b, hefed.key_fingerprint(keys["public"]), roster.digest(),
                                       None, 5)
    replayed = factory_ready_reply(earlier, pinned_node(club, keys, 2), node_id=6)  # c's genuine earlier reply
    assert honest[0].record is not None
    rogues = [
        Reply(4, {"status": "ok", "factory-id": a}),  # unsigned
        Reply(5, {"status": "ok", "factory-id": b, "signature": impostor.sign(forged_statement).hex()}),
        Reply(6, {**replayed}),  # a signature over an earlier nonce
        Reply(7, dict(honest[0].record)),  # a's reply, relayed from another node
        Reply(8, {"status": "error", "factory-id": b, "error": "refused: key mismatch"}),
        Reply(9, {"status": "ok", "factory-id": c, "signature": "zz"}),
    ]
    result = tally_ready([*rogues, *honest], list(range(1, 10)), roster, settings, request)
    assert result.nodes == {a: 1, b: 2, c: 3} and result.ready == sorted([a, b, c])
    assert set(result.false_claims) == {f"node {i}" for i in range(4, 10)}
    assert "unsigned ready reply" in result.false_claims["node 4"]
    assert "not the roster member's over this ready step" in result.false_claims["node 5"]
    assert "not the roster member's over this ready step" in result.false_claims["node 6"]
    assert "not the roster member's over this ready step" in result.false_claims["node 7"]
    assert "not ready: refused: key mismatch" in result.false_claims["node 8"]
    assert "malformed signature" in result.false_claims["node 9"]
    assert all("ignored" in why for why in result.false_claims.values())
    # without the member's own answer a false claim does not make it ready, and says why
    alone = tally_ready([rogues[0], *honest[1:]], [1, 2, 3, 4], roster, settings, request)
    assert a not in alone.nodes and alone.not_ready[a] == "unsigned ready reply"
    # the member's identity on two SuperNodes: both proved, neither kept
    twice = tally_ready([*honest, Reply(4, factory_ready_reply(request, pinned_node(club, keys, 0), node_id=4))],
                        [1, 2, 3, 4], roster, settings, request)
    assert a not in twice.nodes and "proved its identity on 2 SuperNodes" in twice.not_ready[a]


def test_plain_runs_refuse_duplicate_claims_and_ignore_unexpected_ids(club, keys):
    """Unsigned contributions (a plain run): a second SuperNode claiming a plant's id would, if the claimed plant were
    just left out, let rogue nodes isolate one victim; instead nothing is aggregated and the run says why. A reply
    under an id the run does not expect is left out."""
    settings = RunSettings.from_config({"target": TARGET, "min-contributors": 1,
                                        "expected-factories": ",".join(club["names"])})
    request = make_request("statistics", keys["public"])
    bundles = [hefed.encrypt_statistics(p, TARGET, keys["public"], factory_id=p.stem) for p in club["files"]]
    replies = [Reply(i + 1, {"status": "ok", "factory-id": b.contributors[0], "bundle": bundle_to_bytes(b)})
               for i, b in enumerate(bundles)]
    zero = hefed.encrypt_statistics(pd.read_csv(club["files"][0]).head(2), TARGET, keys["public"], factory_id="x")
    rogue = Reply(4, {"status": "ok", "factory-id": club["names"][1], "bundle": bundle_to_bytes(zero)})
    stranger = Reply(5, {"status": "ok", "factory-id": "padding-1", "bundle": bundle_to_bytes(zero)})
    result = tally([*replies, rogue, stranger], [1, 2, 3, 4, 5], request, settings)
    assert result.duplicates == [club["names"][1]] and "padding-1" not in result.contributors
    assert "not an expected factory" in result.unanswered_nodes["node 5 (padding-1)"]
    with pytest.raises(DuplicateContributorError, match=f"{club['names'][1]} claimed by more than one SuperNode"):
        aggregate_tally(result, settings)
    assert len(aggregate_tally(tally(replies, [1, 2, 3], request, settings), settings).contributors) == 3


def test_in_process_rogue_supernode_cannot_exclude_a_member(tmp_path, keys, club, task_identity):
    """The ServerApp with a fourth SuperNode claiming the second plant's id (an identity the roster does not hold):
    the round is the three plants', the aggregate theirs, and the report names the false claim."""
    files, names = club["files"], club["names"]
    nodes, config = masked_config(club, files)
    nodes[4] = {"factory-id": names[1], "identity-dir": str(club["impostor"]), "roster-digest": club["roster"].digest()}
    _, report = run_in_process(tmp_path, [*files, files[1]], keys, node_extra=nodes, **config,
                               **{"expected-factories": ",".join(names)})
    assert report["status"] == "ok" and report["contributors"] == sorted(names), report
    claims = report["masked"]["false_claims"]
    assert list(claims) == ["node 4"] and f"claimed {names[1]!r} without its identity's signature" in claims["node 4"]
    assert "refused: round or roster mismatch" in claims["node 4"]


def test_in_process_plain_run_with_a_duplicate_claim_aggregates_nothing(tmp_path, keys, club, task_identity):
    files, names = club["files"], club["names"]
    nodes = {4: {"factory-id": names[1]}}
    with pytest.raises(DuplicateContributorError, match="nothing is aggregated"):
        run_in_process(tmp_path, [*files, files[0]], keys, node_extra=nodes, **{"min-contributors": 2})
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["status"] == "failed" and not (tmp_path / "aggregate.json").exists()


def test_in_process_hostile_encoding_sends_categories_only(tmp_path, keys, club, task_identity, caplog):
    """Attack 3 in-process: the run config's int-bits = 3 makes every factory refuse; the report, the progress file
    and the ServerApp's log lines hold the category only, while each factory's own log holds the cell."""
    caplog.set_level(logging.DEBUG, logger="flwr")
    files = club["files"]
    with pytest.raises(TooFewContributorsError):
        run_in_process(tmp_path, files, keys, progress=str(tmp_path / "progress.jsonl"), **{"int-bits": 3})
    report_text = (tmp_path / "report.json").read_text()
    report = json.loads(report_text)
    assert set(report["missing"].values()) == {"error: refused: data out of range"}
    server_log = "\n".join(r.getMessage() for r in caplog.records if r.funcName != "_at_factory")
    for path in files:
        message = local_refusal(path, keys, Encoding(int_bits=3))
        secrets = disclosures(message, path)
        logged = (tmp_path / "factory-logs" / f"hefed-{path.stem}.log").read_text()
        assert all(secret in logged for secret in secrets), (secrets, logged)  # the factory's log has it all
        for where, text in (("report", report_text), ("progress", (tmp_path / "progress.jsonl").read_text()),
                            ("ServerApp log", server_log)):
            assert [s for s in secrets if s in text] == [], f"{where} holds {secrets}"


def local_refusal(path: Path, keys: dict[str, Any], encoding: Encoding, target: str = TARGET) -> str:
    """The message the library gives the factory for its own table under a hostile encoding."""
    with pytest.raises(EncodingError) as refused:
        hefed.encrypt_table(path, target, keys["public"], encoding=encoding, insecure_test_key=True)
    return str(refused.value)


def disclosures(message: str, path: Path) -> list[str]:
    """What in ``message`` would disclose the factory's data or machine: the cell, the row, the column statistic
    (the bits it needs), the path."""
    cell = re.search(r"\|([^|]+)\|", message)
    row = re.search(r"row \d+", message)
    needs = re.search(r"needs int_bits >= \d+", message)
    assert cell and row and needs and str(path) in message, message
    assert cell.group(1) in path.read_text()
    return [f"|{cell.group(1)}|", cell.group(1), f"{row.group(0)}:", needs.group(0), str(path), path.name]


# --- real processes: one SuperLink, two years, an impostor and a sybil -----------------------------------------

#: The consortium of the real-process tests (two years keep the module's four SuperNodes quick).
PLANTS = YEARS[:2]
SYBIL = SYBILS[0]


@pytest.fixture(scope="module")
def arena(tmp_path_factory, keys, gas_files) -> Iterator[dict[str, Any]]:
    """One SuperLink for the module and four SuperNodes: gt_2011 and gt_2012 (enrolled, pinned to the key and the
    roster), an impostor claiming gt_2012 with an identity the roster does not hold, and the aggregator's sybil
    (pinned to its sybil roster of gt_2011 and the sybil)."""
    root = tmp_path_factory.mktemp("flower-arena")
    files = gas_files[:len(PLANTS)]
    club = enroll_consortium(root, PLANTS)
    enroll("gt_2012", root / "impostor")
    enroll(SYBIL, root / "id-sybil")
    sybil_roster = Roster({"gt_2011": club["roster"].members["gt_2011"],
                           SYBIL: load_identity(root / "id-sybil").member})
    sybil_data = root / "sybil.csv"
    pd.read_csv(files[0]).head(30).to_csv(sybil_data, index=False)  # the aggregator's own rows
    fingerprint = hefed.key_fingerprint(keys["public"])
    with marked_processes(), LocalFederation(
            files, workdir=root / "federation", identity_dirs=[club["dirs"][y] for y in PLANTS],
            key_fingerprint=fingerprint, roster_digest=club["roster"].digest(), insecure_test_key=True) as federation:
        pins: dict[str, str | bool] = {"key-fingerprint": fingerprint, "insecure-test-key": True}
        federation.add_supernode(files[1], "gt_2012", {**pins, "identity-dir": str(root / "impostor"),
                                                       "roster-digest": club["roster"].digest()})
        federation.add_supernode(sybil_data, SYBIL, {**pins, "identity-dir": str(root / "id-sybil"),
                                                     "roster-digest": sybil_roster.digest()})
        assert federation.wait_connected(90), "a SuperNode did not connect"
        yield {**club, "root": root, "files": files, "federation": federation,
               "sybil_roster_path": sybil_roster.save(root / "sybil-roster.json"), "runs": 0}
        deadline = time.monotonic() + 30
        while federation.serverapp_running() and time.monotonic() < deadline:  # the last run's ServerApp exits
            time.sleep(0.2)


def run_arena(arena: dict[str, Any], keys: dict[str, Any], **config: Any) -> tuple[dict[str, Any], Path, int]:
    """Submit one masked run (two contributors suffice) to the arena's SuperLink; returns its report, its folder and
    its run id."""
    arena["runs"] += 1
    out = arena["root"] / f"run-{arena['runs']}"
    out.mkdir()
    federation: LocalFederation = arena["federation"]
    run_id = federation.submit({
        "public-key": str(keys["public_path"]), "out": str(out / "aggregate.json"),
        "report": str(out / "report.json"), "progress": str(out / "progress.jsonl"), "target": "NOX",
        "roster": str(arena["roster_path"]), "min-contributors": 2, "timeout": 60.0, "wait-for-nodes": 60.0,
        "insecure-test-key": True, **config})
    report = federation.wait_report(run_id, out / "report.json", 240, progress_path=out / "progress.jsonl")
    return report, out, run_id


@pytest.mark.slow
def test_real_rogue_supernode_and_hostile_encoding(arena, keys):
    """(c) and (b), in one run. The impostor answers the ready query as gt_2012: the real gt_2012 proves itself
    with its identity and is in the round; the report names the impostor's node. The aggregator's run config sets
    int-bits = 3, so each factory then refuses to encrypt: the report, the progress file, the run's log (flwr log)
    and the SuperLink's output hold the category only, never the cell, the row, the column's needed bits or the
    path; each factory's own log holds them."""
    report, out, run_id = run_arena(arena, keys, **{"int-bits": 3, "max-rounds": 1,
                                                    "expected-factories": ",".join(PLANTS)})
    assert report["masked"]["ready"] == list(PLANTS), report
    claims = report["masked"]["false_claims"]
    assert len(claims) == 1, claims
    (why,) = claims.values()
    assert "claimed 'gt_2012' without its identity's signature" in why and "ignored" in why
    assert report["status"] == "failed" and report["error_type"] == "TooFewContributorsError"
    (attempt,) = report["masked"]["rounds"]
    assert attempt["participants"] == attempt["joined"] == list(PLANTS)
    assert attempt["missing"] == {y: "contribute: error: refused: data out of range" for y in PLANTS}
    federation: LocalFederation = arena["federation"]
    seen = {"report": (out / "report.json").read_text(), "progress": (out / "progress.jsonl").read_text(),
            "flwr log": federation.log(run_id),
            **{p.name: p.read_text(errors="replace") for p in (federation.workdir / "logs").glob("superlink-*.log")}}
    assert "refused: data out of range" in seen["flwr log"]
    for i, path in enumerate(arena["files"]):
        secrets = disclosures(local_refusal(path, keys, Encoding(int_bits=3), "NOX"), path)
        home_log = (federation.factory_log_dir(i) / f"hefed-{path.stem}.log").read_text()
        assert all(secret in home_log for secret in secrets), secrets
        for where, text in seen.items():
            assert [s for s in secrets if s in text] == [], f"{where} holds {secrets}"


@pytest.mark.slow
def test_real_key_substitution_gets_only_refusals(arena, keys, tmp_path):
    """(a) The aggregator sends its own key (masked rounds of two would let it solve for each factory): every
    factory refuses at the ready step, no round starts, and no bundle is ever sent."""
    rogue = hefed.generate_keypair(1024, insecure_test_key=True)[0]
    rogue_path = hefed.save_public_key(rogue, tmp_path / "rogue.json")
    report, out, _ = run_arena(arena, {**keys, "public_path": rogue_path},
                               **{"expected-factories": ",".join(PLANTS)})
    assert report["status"] == "failed" and report["error_type"] == "TooFewContributorsError", report
    assert report["masked"]["ready"] == [] and report["masked"]["rounds"] == []
    assert all("refused: key mismatch" in report["missing"][y] for y in PLANTS), report["missing"]
    assert not (out / "aggregate.json").exists()
    events = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    assert not [e for e in events if "bundle received" in e["message"]]
    assert not [e for e in events if e["step"] == "round"]  # no contribute request was ever sent


@pytest.mark.slow
def test_real_roster_substitution_with_a_sybil_is_refused_by_the_victim(arena, keys):
    """(d) The aggregator's roster holds gt_2011 and a sybil it enrolled (whose masks it knows): gt_2011, pinned to the
    consortium's roster, refuses at the ready step, so no round with it is ever started."""
    report, out, _ = run_arena(arena, keys, roster=str(arena["sybil_roster_path"]))
    assert report["missing"]["gt_2011"] == "not ready: refused: round or roster mismatch", report
    assert report["masked"]["ready"] == [SYBIL] and report["masked"]["rounds"] == []
    assert report["status"] == "failed" and not (out / "aggregate.json").exists()
