"""What recovering from drop-outs costs: one version 2 round of statistics with 0, 1 and 2 drop-outs.

Five factories, one per yearly file of the UCI gas-turbine data (/work/shared/data/gas-turbine/gt_2011.csv …
gt_2015.csv; skipped cleanly when absent), target NOX, the ten other columns as features. Each factory is
enrolled in its own folder (its round secret and ledger are real files), the key is ``--bits`` (default 2048).

For each number of drop-outs, ``--repeat`` fresh rounds (default 3) of the whole sequence:
  aggregator  propose_round → factories join_round → aggregator start_round → factories mask_contribution
  (on top of their plain encryption, timed apart: a re-run would repeat it) → aggregator collect_round →
  survivors reveal → aggregator unmask_round → key holder verify_aggregate + decrypt_statistics.
Drop-outs join and then deliver nothing. Reported: time per step (best and median; per-factory steps summed
over the factories that take them, and the mean per factory), messages sent per role (count and bytes, as
the JSON files the CLI writes), and a check that the decrypted sums equal the survivors' exact pooled sums.

Usage:  python benchmarks/bench_dropout.py [--data /work/shared/data/gas-turbine] [--bits 2048] [--repeat 3]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

import hefed
from hefed.data import compute_statistics
from hefed.protocol import (
    Roster,
    enroll,
    join_round,
    load_identity,
    mask_and_sign,
    mask_contribution,
    new_round,
    propose_round,
    reveal,
    start_round,
    verify_aggregate,
)
from hefed.roles import collect_round, decrypt_statistics, unmask_round

TARGET = "NOX"
YEARS = (2011, 2012, 2013, 2014, 2015)


def _size(obj: object) -> int:
    """Bytes of a message as the CLI writes it (indented JSON, newline)."""
    return len(json.dumps(obj, indent=2).encode()) + 1


def _timed(steps: dict[str, float], step: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``, its wall time added to ``steps[step]``."""
    mark = time.perf_counter()
    result = call(*args, **kwargs)
    steps[step] += time.perf_counter() - mark
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/gas-turbine"))
    parser.add_argument("--bits", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    files = [args.data / f"gt_{year}.csv" for year in YEARS]
    if not all(f.exists() for f in files):
        print(f"skipped: the gas-turbine files are not in {args.data}")
        return
    frames = {f"gt-{year}": pd.read_csv(path) for year, path in zip(YEARS, files, strict=True)}
    names = sorted(frames)
    features = [c for c in frames[names[0]].columns if c != TARGET]
    public_key, private_key = hefed.generate_keypair(args.bits, insecure_test_key=args.bits < 2048)
    exact = {n: compute_statistics(f, TARGET, features, factory_id=n) for n, f in frames.items()}

    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            enroll(name, Path(tmp) / name)
        identities = {n: load_identity(Path(tmp) / n) for n in names}
        roster = Roster()
        for identity in identities.values():
            roster.add(identity.member)

        start = time.perf_counter()
        plain = {n: hefed.encrypt_statistics(frames[n], TARGET, public_key, features=features, factory_id=n)
                 for n in names}
        encrypt_each = (time.perf_counter() - start) / len(names)
        plain_bundle_bytes = _size(plain[names[0]].to_dict())
        print(f"{len(names)} factories ({', '.join(f'{n}: {len(frames[n])} rows' for n in names)}), "
              f"{len(features)} features, {args.bits}-bit key, {len(plain[names[0]].ciphertexts)} ciphertexts per "
              f"bundle ({plain_bundle_bytes} bytes); plain statistics + encryption per factory: {encrypt_each:.3f} s")

        # the reference: a version 1 round (pairwise masks only, every participant must deliver) — what a
        # re-run after a drop-out would repeat, on top of every survivor's plain encryption
        v1_runs = []
        for _ in range(args.repeat):
            mark = time.perf_counter()
            v1_round = new_round(roster, names)
            v1 = [mask_and_sign(plain[n], identities[n], roster, v1_round) for n in names]
            v1_total = hefed.aggregate(v1, roster, v1_round)
            decrypt_statistics(v1_total, private_key, roster=roster)
            v1_runs.append(time.perf_counter() - mark)
        print(f"version 1 round without drop-outs (new_round, mask_and_sign x {len(names)}, aggregate, verify + "
              f"decrypt): best {min(v1_runs):.4f} s, median {statistics.median(v1_runs):.4f} s; aggregate "
              f"{_size(v1_total.to_dict())} bytes; a re-run after a drop-out adds the survivors' plain encryption "
              f"({encrypt_each:.3f} s each)")

        for dropped in (0, 1, 2):
            dropouts = names[len(names) - dropped:]
            survivors = [n for n in names if n not in dropouts]
            runs: list[dict[str, float]] = []
            messages: dict[str, list[tuple[str, int, int]]] = {}
            for _ in range(args.repeat):
                steps: dict[str, float] = defaultdict(float)
                sent: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
                timed = functools.partial(_timed, steps)

                round_ = timed("propose (aggregator)", propose_round, roster, names)
                sent["aggregator"].append(("round (to each participant)", len(names), _size(round_.to_dict())))
                joins = {n: timed("join (factories)", join_round, identities[n], roster, round_)[0] for n in names}
                sent["factory"].append(("join (each factory)", len(names), _size(joins[names[0]].to_dict())))
                keys = timed("start (aggregator)", start_round, round_, roster, joins.values())
                sent["aggregator"].append(("round keys (to each joined)", len(names), _size(keys.to_dict())))
                bundles = [timed("mask + sign (factories)", mask_contribution, plain[n], identities[n], roster, keys)
                           for n in survivors]
                sent["factory"].append(("masked bundle (each survivor)", len(survivors), _size(bundles[0].to_dict())))
                collected, request = timed("collect (aggregator)", collect_round, bundles, roster, keys)
                per_factory = max(_size(request.for_factory(n).to_dict()) for n in survivors)
                sent["aggregator"].append(("unmask request (to each survivor; its own shares)", len(survivors),
                                           per_factory))
                reveals = [timed("reveal (survivors)", reveal, request.for_factory(n), identities[n], roster)
                           for n in survivors]
                sent["factory"].append(("reveal (each survivor)", len(survivors),
                                        max(_size(r.to_dict()) for r in reveals)))
                aggregate = timed("unmask (aggregator)", unmask_round, collected, keys, reveals, roster)
                sent["aggregator"].append(("aggregate (to the key holder)", 1, _size(aggregate.to_dict())))
                assert timed("verify (key holder)", verify_aggregate, aggregate, roster, 3) == tuple(survivors)
                result = timed("verify + decrypt (key holder)", decrypt_statistics, aggregate, private_key,
                               roster=roster)
                expected = exact[survivors[0]]
                for name in survivors[1:]:
                    expected = expected + exact[name]
                assert result.gram == expected.gram and result.n == expected.n, "not the survivors' exact sums"
                steps["round (all steps but plain encryption)"] = sum(
                    v for k, v in steps.items() if k != "verify (key holder)")
                runs.append(dict(steps))
                messages = dict(sent)
            print(f"\n{dropped} drop-out(s) ({', '.join(dropouts) or 'none'}); survivors: {', '.join(survivors)}; "
                  f"exact pooled sums: yes; {args.repeat} runs")
            print(f"  {'step':<44} {'best s':>8} {'median s':>9} {'per factory':>12}")
            takers = {"join (factories)": len(names), "mask + sign (factories)": len(survivors),
                      "reveal (survivors)": len(survivors)}
            for step in runs[0]:
                values = [r[step] for r in runs]
                each = f"{statistics.median(values) / takers[step]:12.4f}" if step in takers else ""
                print(f"  {step:<44} {min(values):8.4f} {statistics.median(values):9.4f} {each}")
            for role, items in messages.items():
                count = sum(c for _, c, _ in items)
                total = sum(c * b for _, c, b in items)
                print(f"  {role} sends {count} messages, {total} bytes:")
                for label, c, b in items:
                    print(f"    {c} x {label}: {b} bytes")
    print(f"\ncommand: {' '.join([Path(sys.executable).name, *sys.argv])}")


if __name__ == "__main__":
    main()
