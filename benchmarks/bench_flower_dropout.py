"""What drop-outs cost through Flower: one masked version 2 round with 0, 1 and 2 drop-outs, real processes.

Five factories, one per yearly file of the UCI gas-turbine data (/work/shared/data/gas-turbine/gt_2011.csv …
gt_2015.csv; skipped cleanly when absent), target NOX, the ten other columns as features, a ``--bits`` key
(default 2048). One Flower SuperLink and five SuperNodes on 127.0.0.1 (:class:`hefed.flower.LocalFederation`),
each pinned to the key and the roster, its identity in its own enrollment folder; ``min-contributors`` 3, so the
round's threshold is 3 of 5.

For each number of drop-outs, ``--repeat`` runs (default 1): every SuperNode running and connected, then one
masked run (ready → join → contribute → reveal); the drop-outs (the last years) are stopped with SIGTERM as soon as
their join arrived (``LocalFederation.wait_report(drop_outs=...)``, as ``hefed federate --drop-out gt_2015=join``),
so they miss the contribute step. Reported from the ServerApp's report (``masked.steps``): per step the Flower
messages sent and the replies received (``ok`` of them), their payload bytes (record keys and values, without
Flower's framing) and the seconds; and the whole run, from ``flwr run`` to the report. Each run checks that the
key holder's decryption (roster checked) equals the survivors' pooled statistics through the plain path.

Usage:  python benchmarks/bench_flower_dropout.py [--data /work/shared/data/gas-turbine] [--bits 2048] [--repeat 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import hefed
from hefed.flower import LocalFederation
from hefed.protocol import enroll, roster_add

TARGET = "NOX"
YEARS = ("gt_2011", "gt_2012", "gt_2013", "gt_2014", "gt_2015")
DROPS = {0: {}, 1: {"gt_2015": "join"}, 2: {"gt_2014": "join", "gt_2015": "join"}}
STEPS = ("ready", "propose", "join", "start", "contribute", "collect", "reveal", "unmask")


def one_run(federation: LocalFederation, root: Path, number: int, drops: dict[str, str], setup: dict[str, Any],
            ) -> dict[str, Any]:
    for index in list(federation.killed):
        federation.restart_supernode(index)
    if not federation.wait_connected(120):
        raise SystemExit("a SuperNode did not connect")
    out = root / f"run-{number}"
    out.mkdir()
    started = time.monotonic()
    run_id = federation.submit({
        "public-key": str(setup["public_path"]), "target": TARGET, "roster": str(setup["roster_path"]),
        "out": str(out / "aggregate.json"), "report": str(out / "report.json"), "progress": str(out / "progress.jsonl"),
        "min-contributors": 3, "timeout": 120.0, "wait-for-nodes": 120.0, "expected-factories": ",".join(YEARS)})
    report = federation.wait_report(run_id, out / "report.json", 900, progress_path=out / "progress.jsonl",
                                    drop_outs=drops)
    seconds = time.monotonic() - started
    if report["status"] != "ok":
        raise SystemExit(f"run failed: {report['error']}")
    survivors = [y for y in YEARS if y not in drops]
    aggregate = hefed.Bundle.load(out / "aggregate.json")
    stats = hefed.decrypt_statistics(aggregate, setup["private"], roster=setup["roster"])
    plain = hefed.aggregate([hefed.encrypt_statistics(setup["files"][YEARS.index(y)], TARGET, setup["public"],
                                                      factory_id=y) for y in survivors])
    expected = hefed.decrypt_statistics(plain, setup["private"], allow_unsigned=True)
    if stats.to_dict() != expected.to_dict() or list(stats.contributors) != survivors:
        raise SystemExit("the decrypted aggregate is not the survivors' exact statistics")
    for directory in setup["dirs"]:  # a drop-out keeps its round secret; the next run needs none of it
        for path in directory.glob("round-*.secret.json"):
            path.unlink()
    return {"steps": {s["step"]: s for s in report["masked"]["steps"]}, "seconds": seconds,
            "serverapp": report["seconds"], "round_id": report["round_id"], "dropouts": report["masked"]["dropouts"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/gas-turbine"))
    parser.add_argument("--bits", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    files = [args.data / f"{y}.csv" for y in YEARS]
    if not all(p.is_file() for p in files):
        print(f"gas-turbine data not found in {args.data}; skipped")
        return
    with tempfile.TemporaryDirectory(prefix="bench-flower-dropout-") as tmp:
        root = Path(tmp)
        public, private = hefed.generate_keypair(args.bits, insecure_test_key=args.bits < 2048)
        dirs = [root / f"id-{y}" for y in YEARS]
        for y, d in zip(YEARS, dirs, strict=True):
            enroll(y, d)
        roster_path = root / "roster.json"
        setup = {"public": public, "private": private, "files": files, "dirs": dirs, "roster_path": roster_path,
                 "roster": roster_add(roster_path, [d / "identity.pub.json" for d in dirs]),
                 "public_path": hefed.save_public_key(public, root / "public_key.json")}
        results: dict[int, list[dict[str, Any]]] = {n: [] for n in DROPS}
        with LocalFederation(files, workdir=root / "federation", identity_dirs=dirs,
                             key_fingerprint=hefed.key_fingerprint(public), roster_digest=setup["roster"].digest(),
                             insecure_test_key=args.bits < 2048) as federation:
            number = 0
            for _ in range(args.repeat):
                for n, drops in DROPS.items():
                    number += 1
                    results[n].append(one_run(federation, root, number, drops, setup))
                    print(f"run {number}: {n} drop-out(s), {results[n][-1]['seconds']:.1f} s", file=sys.stderr)
    print_tables(results, args)


def print_tables(results: dict[int, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    def median(n: int, step: str, key: str) -> float:
        return statistics.median(r["steps"][step][key] for r in results[n])

    print(f"five gas-turbine years, {args.bits}-bit key, threshold 3 of 5, {args.repeat} run(s) each (median)\n")
    print("| step | " + " | ".join(f"{n} drop-out{'s' if n != 1 else ''}" for n in DROPS) + " |")
    print("|---|" + "---|" * len(DROPS))
    for step in STEPS:
        cells = []
        for n in DROPS:
            s = results[n][0]["steps"][step]
            cost = f"{median(n, step, 'seconds'):.{2 if s['sent'] else 3}f} s"
            if s["sent"]:
                cost += (f"; {s['sent']} sent, {s['received']} received ({s['ok']} ok); "
                         f"{s['bytes_sent']:,} B out, {s['bytes_received']:,} B in")
            cells.append(cost)
        print(f"| {step} | " + " | ".join(cells) + " |")
    whole = [f"{statistics.median(r['seconds'] for r in results[n]):.1f} s "
             f"(ServerApp {statistics.median(r['serverapp'] for r in results[n]):.1f} s)" for n in DROPS]
    print("| whole run (flwr run → report) | " + " | ".join(whole) + " |")
    totals = []
    for n in DROPS:
        steps = list(results[n][0]["steps"].values())
        out, back = sum(s["bytes_sent"] for s in steps), sum(s["bytes_received"] for s in steps)
        totals.append(f"{sum(s['sent'] for s in steps)} sent / {sum(s['received'] for s in steps)} received; "
                      f"{out:,} B out, {back:,} B in")
    print("| messages in all | " + " | ".join(totals) + " |")


if __name__ == "__main__":
    main()
