"""Drop-outs through Flower without re-runs (issue 14): real SuperLink and SuperNodes, the gas-turbine years.

One SuperLink and five SuperNodes (one a year, 2011-2015) serve the module. Each test runs one masked
study run (a fresh study naming the roster, ``min_contributors`` 3, so the round's threshold is 3 of 5)
and makes factories drop out the way a plant does: its SuperNode is stopped (SIGTERM: it leaves the
federation, its ClientApp with it) as soon as the ServerApp's progress file says its join arrived
(:meth:`hefed.flower.LocalFederation.wait_report` with ``drop_outs``, what ``hefed federate --drop-out``
uses). The round then goes on without it: no re-run, no second round, no re-encryption.

* one and two drop-outs after the join step: the aggregate decrypts (roster and study checked, the
  reveals' correction recomputed by the key holder) to exactly the statistics the survivors' files give
  through the plain path; the report names the drop-outs, the step they missed and the cost of every
  step; nothing secret (the Paillier private key, the identities' keys, the round secret a drop-out
  left behind) appears in a command line, a file the federation wrote, the report or the run's log;
* three drop-outs leave two survivors, fewer than the threshold: the run fails with one line naming
  who is missing and why (no value), writes no aggregate, and asks no one to reveal.

The in-process tests (no processes; the fast loop) cover a drop-out at the reveal step, refusals of the
factory (a version 1 round, a second survivor set, round keys it did not join) and the report's costs.

Real-process tests are ``slow``; with Flower's one ClientApp process per message, each step costs about
13 s with five SuperNodes on two cores, so the module takes about 2.5 minutes.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flwr")

from test_flower import (  # noqa: E402
    GAS_TURBINE_DIR,
    TARGET,
    assert_no_secret,
    identity_secrets,
    marked_processes,
    masked_config,
    private_secrets,
    run_in_process,
)

import hefed  # noqa: E402
from hefed.errors import TooFewContributorsError  # noqa: E402
from hefed.flower import LocalFederation  # noqa: E402
from hefed.flower._factory import factory_join_reply, factory_reply, factory_reveal_reply  # noqa: E402
from hefed.flower._messages import (  # noqa: E402
    MESSAGE_TYPE,
    make_join_request,
    make_masked_request,
    make_request,
    make_reveal_request,
    round_to_text,
)
from hefed.flower.launcher import command_line, raise_from_report  # noqa: E402
from hefed.protocol import (  # noqa: E402
    ColumnSpec,
    Join,
    Study,
    enroll,
    make_unmask_request,
    new_round,
    propose_round,
    roster_add,
    start_round,
    verify_aggregate,
)

# real Flower processes: one worker at a time (pyproject addopts, --dist loadgroup)
pytestmark = pytest.mark.xdist_group("flower")

FIVE = ("gt_2011", "gt_2012", "gt_2013", "gt_2014", "gt_2015")
GAS_FEATURES = ["AT", "AP", "AH", "AFDP", "GTEP", "TIT", "TAT", "TEY", "CDP", "CO"]


# --- in-process: the factory's refusals and a drop-out at the reveal step ----------------------------------


@pytest.fixture
def task_identity() -> Iterator[None]:
    import test_flower

    yield from test_flower.task_identity.__wrapped__()


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> dict[str, Any]:
    """Four synthetic plants sharing every column (a 1024-bit test key, identities, a roster, node configs)."""
    root = tmp_path_factory.mktemp("flower-dropout-small")
    public_key, private_key = hefed.generate_keypair(1024, insecure_test_key=True)
    files = []
    for name, frame in hefed.datasets.make_factories(n_factories=4, seed=5).items():
        files.append(root / f"{name}.csv")
        frame[["natural_gas_t", "diesel_t", "electricity_mwh", TARGET]].to_csv(files[-1], index=False)
    dirs = {p.stem: root / f"id-{p.stem}" for p in files}
    for name, directory in dirs.items():
        enroll(name, directory)
    roster_path = root / "roster.json"
    roster = roster_add(roster_path, [d / "identity.pub.json" for d in dirs.values()])
    keys = {"public": public_key, "private": private_key,
            "public_path": hefed.save_public_key(public_key, root / "public_key.json")}
    return {"root": root, "files": files, "dirs": dirs, "roster": roster, "roster_path": roster_path, "keys": keys}


def test_in_process_dropout_at_the_reveal_step_still_unmasks(tmp_path, small, task_identity):
    """Four plants, threshold 3 (min-contributors 3): one joins and delivers but never reveals. It is a survivor
    (its contribution is in the sum), the three other reveals unmask it, and the aggregate is the four plants'
    exact statistics; the report lists per step what was sent and received, in messages and bytes."""
    files, keys = small["files"], small["keys"]
    names = [p.stem for p in files]
    nodes, config = masked_config(small, files)
    grid, report = run_in_process(tmp_path, files, keys, node_extra=nodes, drop_after={4: "contribute"}, **config)
    assert report["status"] == "ok", report["error"]
    masked = report["masked"]
    assert masked["threshold"] == 3 and masked["survivors"] == sorted(names)
    assert masked["revealed"] == sorted(names[:3]) and masked["dropouts"][names[3]]["step"] == "reveal"
    assert report["missing"] == {} and report["contributors"] == sorted(names)  # a survivor, only silent at reveal
    steps = {s["step"]: s for s in masked["steps"]}
    assert [s["step"] for s in masked["steps"]] == ["ready", "propose", "join", "start", "contribute", "collect",
                                                    "reveal", "unmask"]
    assert {k: (steps[k]["sent"], steps[k]["ok"]) for k in ("ready", "join", "contribute", "reveal")} == {
        "ready": (4, 4), "join": (4, 4), "contribute": (4, 4), "reveal": (4, 3)}
    sent = {k: sum(m.metadata.message_type == f"query.{k}" for m in grid.sent) for k in ("join", "reveal")}
    assert sent == {"join": 4, "reveal": 4} and sum(m.metadata.message_type == MESSAGE_TYPE for m in grid.sent) == 4
    assert all(steps[k]["bytes_sent"] > 0 and steps[k]["bytes_received"] > 0 for k in ("ready", "join", "reveal"))
    aggregate = hefed.Bundle.load(tmp_path / "aggregate.json")
    assert verify_aggregate(aggregate, small["roster"], 3) == tuple(sorted(names))
    stats = hefed.decrypt_statistics(aggregate, keys["private"], roster=small["roster"])
    plain = hefed.aggregate([hefed.encrypt_statistics(p, TARGET, keys["public"], factory_id=p.stem) for p in files])
    assert stats.gram == hefed.decrypt_statistics(plain, keys["private"], allow_unsigned=True).gram
    # the silent survivor still holds its round secret (it never revealed); the others deleted theirs
    left = {name: sorted(small["dirs"][name].glob("round-*.secret.json")) for name in names}
    assert [name for name, found in left.items() if found] == [names[3]]
    for path in left[names[3]]:
        path.unlink()


def test_factory_refuses_what_the_library_refuses(tmp_path, small):
    """Through the ClientApp's replies (a fixed category; the full text in the factory's own log): a version 1
    round, round keys of a round it did not join, a second join of the same round, and a second survivor set
    for a round it revealed in."""
    files, keys, roster = small["files"], small["keys"], small["roster"]
    names = [p.stem for p in files]
    (tmp_path / "logs").mkdir()
    node = {p.stem: {"data-path": str(p), "factory-id": p.stem, "identity-dir": str(small["dirs"][p.stem]),
                     "key-fingerprint": hefed.key_fingerprint(keys["public"]), "roster-digest": roster.digest(),
                     "log-dir": str(tmp_path / "logs"), "insecure-test-key": True} for p in files}
    base = make_request("statistics", keys["public"])

    def log_of(name: str) -> str:
        return (tmp_path / "logs" / f"hefed-{name}.log").read_text().splitlines()[-1]

    # a version 1 round: refused before any data is read (a drop-out there means a re-run, hence differencing)
    v1 = {**base, "round": round_to_text(new_round(roster, names)), "roster": json.dumps(roster.to_dict())}
    assert factory_reply(v1, node[names[0]], {"target": TARGET})["error"] == "refused: round or roster mismatch"
    assert "version 2 rounds only" in log_of(names[0])
    # a round of three; the fourth plant is not a participant, so it cannot join
    round_ = propose_round(roster, names[:3])
    join_request = make_join_request(base, round_, roster)
    assert factory_join_reply(join_request, node[names[3]])["error"] == "refused: round or roster mismatch"
    joins = {}
    for name in names[:3]:
        reply = factory_join_reply(join_request, node[name])
        assert reply["status"] == "ok" and set(reply) == {"status", "factory-id", "join"}
        joins[name] = Join.from_dict(json.loads(str(reply["join"])))
    again = factory_join_reply(join_request, node[names[0]])
    assert again["error"] == "refused: round or roster mismatch" and "already joined" in log_of(names[0])
    keys_ = start_round(round_, roster, joins.values())
    contribute = make_masked_request(base, keys_, roster)
    assert all("shares" not in join for join in json.loads(contribute["round-keys"])["joins"])
    assert factory_reply(contribute, node[names[3]], {"target": TARGET})["error"] == \
        "refused: round or roster mismatch"  # round keys it never joined
    bundles = {}
    for name in names[:3]:
        reply = factory_reply(contribute, node[name], {"target": TARGET})
        assert reply["status"] == "ok", log_of(name)
        bundles[name] = reply
    request = make_unmask_request(keys_, names[:3])
    first = factory_reveal_reply(make_reveal_request(base, request.for_factory(names[0]), roster), node[names[0]])
    assert first["status"] == "ok" and set(first) == {"status", "factory-id", "reveal"}
    # the same plant asked again with another survivor set (two of three, still the threshold 2): refused
    other = make_unmask_request(keys_, names[:2])
    second = factory_reveal_reply(make_reveal_request(base, other.for_factory(names[0]), roster), node[names[0]])
    assert second["error"] == "refused: round or roster mismatch" and "already revealed" in log_of(names[0])
    # a plant declared a drop-out reveals nothing
    assert factory_reveal_reply(make_reveal_request(base, other.for_factory(names[2]), roster),
                                node[names[2]])["status"] == "error"
    for directory in small["dirs"].values():
        for path in directory.glob("round-*.secret.json"):
            path.unlink()


# --- real processes: one SuperLink, five SuperNodes, drop-outs after the join ---------------------------------


@pytest.fixture(scope="module")
def gas5() -> list[Path]:
    paths = [GAS_TURBINE_DIR / f"{name}.csv" for name in FIVE]
    if not all(p.is_file() for p in paths):
        pytest.skip(f"gas-turbine data (five years) not found in {GAS_TURBINE_DIR}")
    return paths


@pytest.fixture(scope="module")
def world(tmp_path_factory, gas5) -> Iterator[dict[str, Any]]:
    """A 2048-bit key (a study naming a roster refuses test keys in other processes), five enrolled years, their
    roster, and one SuperLink with five SuperNodes pinned to the key and the roster. Each SuperNode's node config
    names one study file, which each test replaces with a fresh study (a study's first reveal records its
    established set in every survivor's ledger, so each scenario needs a study of its own); the pin of its
    digest is therefore left out here."""
    root = tmp_path_factory.mktemp("flower-dropout")
    public_key, private_key = hefed.generate_keypair(2048)
    dirs = [root / f"id-{name}" for name in FIVE]
    for name, directory in zip(FIVE, dirs, strict=True):
        enroll(name, directory)
    roster_path = root / "roster.json"
    roster = roster_add(roster_path, [d / "identity.pub.json" for d in dirs])
    study_path = root / "study.json"
    new_study(public_key, roster.digest()).save(study_path)
    with marked_processes(), LocalFederation(
            gas5, workdir=root / "federation", identity_dirs=dirs, key_fingerprint=hefed.key_fingerprint(public_key),
            roster_digest=roster.digest(), study=study_path) as federation:
        yield {"root": root, "files": gas5, "dirs": dirs, "roster": roster, "roster_path": roster_path,
               "study_path": study_path, "public": public_key, "private": private_key, "federation": federation,
               "runs": 0}
        deadline = time.monotonic() + 30
        while federation.serverapp_running() and time.monotonic() < deadline:
            time.sleep(0.2)


def new_study(public_key: Any, roster_digest: str) -> Study:
    return Study.new(public_key, ColumnSpec("NOX", "mg/m3"), GAS_FEATURES, kinds={"statistics": {}},
                     roster_digest=roster_digest, min_contributors=3, title="gas turbines, drop-outs")


def run_with_dropouts(world: dict[str, Any], drop_outs: dict[str, str]) -> tuple[dict[str, Any], Path, int, Study]:
    """A fresh study, every SuperNode back and connected, then one masked study run whose ``drop_outs`` are stopped
    after the step named; returns the report, the run's folder, its run id and the study."""
    federation: LocalFederation = world["federation"]
    for index in list(federation.killed):
        federation.restart_supernode(index)
    assert federation.wait_connected(90), "a SuperNode did not come back"
    study = new_study(world["public"], world["roster"].digest())
    study.save(world["study_path"], force=True)
    world["runs"] += 1
    out = world["root"] / f"run-{world['runs']}"
    out.mkdir()
    run_id = federation.submit({
        "study": str(world["study_path"]), "roster": str(world["roster_path"]), "out": str(out / "aggregate.json"),
        "report": str(out / "report.json"), "progress": str(out / "progress.jsonl"), "timeout": 60.0,
        "wait-for-nodes": 60.0, "expected-factories": ",".join(FIVE)})
    report = federation.wait_report(run_id, out / "report.json", 300, progress_path=out / "progress.jsonl",
                                    drop_outs=drop_outs)
    return report, out, run_id, study


def survivors_statistics(world: dict[str, Any], study: Study, survivors: list[str]) -> dict[str, Any]:
    """The survivors' pooled statistics through the plain path (their files, the same terms without the roster)."""
    plain = replace(study, roster_digest=None)
    bundles = [hefed.encrypt_for_study(world["files"][FIVE.index(name)], plain, factory_id=name).bundle
               for name in survivors]
    stats = hefed.decrypt_statistics(hefed.aggregate(bundles, study=plain), world["private"], study=plain,
                                     allow_unsigned=True)
    return {**stats.to_dict(), "study": None}


def check_recovered(world: dict[str, Any], drop_outs: dict[str, str]) -> None:
    report, out, run_id, study = run_with_dropouts(world, drop_outs)
    dropped = sorted(drop_outs)
    survivors = [name for name in FIVE if name not in drop_outs]
    assert report["status"] == "ok", report
    masked = report["masked"]
    assert masked["participants"] == masked["joined"] == list(FIVE) and masked["threshold"] == 3
    assert masked["survivors"] == masked["revealed"] == survivors == report["contributors"]
    assert {name: d["step"] for name, d in masked["dropouts"].items()} == dict.fromkeys(dropped, "contribute")
    assert set(report["missing"]) == set(dropped) and report["round_id"] == masked["round_id"]
    assert all(f"dropped out at the contribute step of round {masked['round_id']}" in report["missing"][name]
               for name in dropped)
    steps = {s["step"]: s for s in masked["steps"]}  # one round: each step once, no re-run
    assert [s["step"] for s in masked["steps"]] == ["ready", "propose", "join", "start", "contribute", "collect",
                                                    "reveal", "unmask"]
    assert (steps["contribute"]["sent"], steps["contribute"]["ok"]) == (5, len(survivors))
    assert (steps["reveal"]["sent"], steps["reveal"]["ok"]) == (len(survivors), len(survivors))
    events = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    assert not [e for e in events if e["step"] == "round" and "asking" in e["message"] and e["round"] != 1]
    # the key holder: signed joins, manifests and reveals, the correction recomputed; exactly the survivors' sums
    aggregate = hefed.Bundle.load(out / "aggregate.json")
    assert aggregate.round_id == masked["round_id"] and aggregate.study == study.digest
    assert verify_aggregate(aggregate, world["roster"], study.min_contributors) == tuple(survivors)
    stats = hefed.decrypt_statistics(aggregate, world["private"], roster=world["roster"], study=study)
    assert {**stats.to_dict(), "study": None} == survivors_statistics(world, study, survivors)
    assert stats.contributors == survivors
    # nothing secret left the machines it belongs to: the Paillier key, the identities, a drop-out's round secret
    federation: LocalFederation = world["federation"]
    leftover = [p for name in dropped for p in world["dirs"][FIVE.index(name)].glob("round-*.secret.json")]
    assert len(leftover) == len(dropped)  # the drop-outs never revealed, so they keep their round secrets
    round_secrets = [json.loads(p.read_text())[k].encode() for p in leftover for k in ("mask_private", "seed")]
    assert not [p for name in survivors for p in world["dirs"][FIVE.index(name)].glob("round-*.secret.json")]
    secrets = private_secrets(world["private"]) + identity_secrets(world["dirs"]) + round_secrets
    assert_no_secret("\0".join(" ".join(command_line(pid)) for pid in federation.all_pids()).encode(), secrets,
                     "a command line")
    assert_no_secret(federation.log(run_id).encode(), secrets, "the run's log (flwr log)")
    for path in [*federation.workdir.rglob("*"), *out.rglob("*")]:
        if path.is_file():
            assert_no_secret(path.read_bytes(), secrets, str(path))
    for path in leftover:
        path.unlink()


@pytest.mark.slow
def test_one_dropout_after_joining_gives_the_survivors_exact_statistics(world):
    """gt_2015 joins, then its SuperNode stops: the four others' round completes without a re-run."""
    check_recovered(world, {"gt_2015": "join"})


@pytest.mark.slow
def test_two_dropouts_after_joining_give_the_survivors_exact_statistics(world):
    """gt_2012 and gt_2014 join, then stop: three survivors, exactly the threshold, unmask their sum."""
    check_recovered(world, {"gt_2012": "join", "gt_2014": "join"})


@pytest.mark.slow
def test_fewer_survivors_than_the_threshold_fail_cleanly(world):
    """Three of five stop after joining: two survivors cannot unmask (threshold 3). The run fails with one line
    naming who is missing and why, writes no aggregate, and no survivor is asked to reveal."""
    drop_outs = dict.fromkeys(("gt_2013", "gt_2014", "gt_2015"), "join")
    report, out, _, _ = run_with_dropouts(world, drop_outs)
    assert report["status"] == "failed" and report["error_type"] == "TooFewContributorsError", report
    masked = report["masked"]
    assert masked["survivors"] == ["gt_2011", "gt_2012"] and masked["revealed"] == [] and masked["round_id"] is None
    assert [s["step"] for s in masked["steps"]] == ["ready", "propose", "join", "start", "contribute"]
    round_id = masked["rounds"][0]["round_id"]
    assert report["error"].startswith(f"only 2 factories left after the contribute step of round {round_id} "
                                      "(gt_2011, gt_2012), fewer than the 3 needed (the round's threshold); "
                                      f"missing: gt_2013 (dropped out at the contribute step of round {round_id}: ")
    for name in drop_outs:
        assert f"{name} (dropped out at the contribute step" in report["error"]
    assert not re.search(r"\d+\.\d+", report["error"].replace(round_id, "")), report["error"]  # names and reasons
    assert not (out / "aggregate.json").exists()
    with pytest.raises(TooFewContributorsError, match=r"fewer than the 3 needed \(the round's threshold\)"):
        raise_from_report(report)
    for directory in world["dirs"]:
        for path in directory.glob("round-*.secret.json"):
            path.unlink()


def test_federate_drop_out_option_and_deprecated_max_rounds(tmp_path, monkeypatch):
    """``hefed federate --drop-out FACTORY=STEP`` reaches the launcher as a mapping; a malformed one is a usage error
    (exit 2) before anything starts; ``--max-rounds`` is accepted but says it is ignored; a masked run prints its
    round and each step's cost. The launcher refuses a drop-out of an unknown factory or step."""
    from click.testing import CliRunner
    from hefed_cli.federate import federate
    from hefed_cli.main import HefedGroup

    from hefed.errors import UsageError
    from hefed.flower import FederationResult
    from hefed.flower.launcher import check_drop_outs

    seen: dict[str, Any] = {}
    steps = [{"step": "ready", "seconds": 13.4, "sent": 5, "received": 5, "ok": 5, "bytes_sent": 12000,
              "bytes_received": 2500}, {"step": "propose", "seconds": 0.0, "sent": 0, "received": 0, "ok": 0,
                                        "bytes_sent": 0, "bytes_received": 0}]
    attempt = {"round": 1, "round_id": "ab" * 16, "participants": ["a", "b", "c"], "threshold": 2,
               "joined": ["a", "b", "c"], "contributors": ["a", "b"], "missing": {"c": "contribute: no answer"},
               "complete": True}

    def fake(data_paths, target, public_key_path, out, *args, drop_outs=None, **kwargs):
        seen["drop_outs"] = drop_outs
        return FederationResult(Path(out), "statistics", ["a", "b"], {"c": "dropped out"}, 7, 1.5,
                                {"masked": {"steps": steps}}, "ab" * 16, [attempt])

    monkeypatch.setattr(hefed.flower, "run_local_federation", fake)
    group = HefedGroup(commands={"federate": federate})
    base = ["federate", "--data", "a.csv", "b.csv", "c.csv", "--target", "y", "--public-key", "pub.json",
            "--out", str(tmp_path / "agg.json"), "--roster", "r.json", "--identity", "a", "--identity", "b",
            "--identity", "c"]
    result = CliRunner().invoke(group, [*base, "--drop-out", "c=join", "--max-rounds", "2"])
    assert result.exit_code == 0, result.output
    assert seen["drop_outs"] == {"c": "join"}
    assert "--max-rounds is deprecated and ignored" in result.stderr
    assert "round 1 (" + "ab" * 16 + ") with a, b, c, threshold 2: complete; dropped out: c (contribute: no " \
           "answer)" in result.stdout
    assert "steps: ready 13.4 s (5 sent, 5 ok; 12.0 KB out, 2.5 KB in); propose 0.0 s" in result.stdout
    bad = CliRunner().invoke(group, [*base, "--drop-out", "c"])
    assert bad.exit_code == 2 and "give FACTORY=STEP" in bad.output
    with pytest.raises(UsageError, match="not a factory of this federation"):
        check_drop_outs({"zz": "join"}, ["a", "b"])
    with pytest.raises(UsageError, match="the step must be one of ready, join, contribute"):
        check_drop_outs({"a": "reveal"}, ["a", "b"])
