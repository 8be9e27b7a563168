"""Resource bombs (issue 14, item 7): what loading a hostile bundle file costs, in memory and time.

Writes each bomb of the issue into a temporary folder (from one honest small bundle) and loads it with
``hefed.Bundle.load`` in a fresh subprocess, printing the growth of the peak RSS, the seconds and the outcome.
``--hefed PATH`` loads with another checkout's ``hefed`` (for example the commit before issue 14, in a
``git worktree``) to compare; ``--skip`` leaves out bombs that would take the machine's memory there.

    .venv/bin/python benchmarks/bench_bombs.py
    git worktree add /tmp/before eaaee74 && .venv/bin/python benchmarks/bench_bombs.py --hefed /tmp/before
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

MEASURE = """
import os, sys, time
if os.environ.get("HEFED_CHECKOUT"):  # another checkout's hefed, ahead of the editable install's finder
    sys.path.insert(0, os.environ["HEFED_CHECKOUT"])
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()]
import hefed.protocol
assert hefed.protocol.__file__.startswith(os.environ.get("HEFED_CHECKOUT", ""))
def hwm():  # peak resident memory of this process (MiB); unlike ru_maxrss, it starts afresh at exec
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
base = hwm(); start = time.perf_counter()
try:
    hefed.protocol.Bundle.load(sys.argv[1])
    outcome = "accepted"
except Exception as exc:
    outcome = f"{type(exc).__name__}: {str(exc).splitlines()[0][-110:]}"
print(f"+{hwm() - base:.0f} MiB | {time.perf_counter() - start:.2f} s | {outcome}")
"""


def write_bombs(folder: Path) -> dict[str, Path]:
    """The bombs, by name: each a bundle file whose header or JSON lies about, or inflates, its size."""
    import pandas as pd

    import hefed

    public_key, _ = hefed.generate_keypair(1024, insecure_test_key=True)
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [2.0, 4.1, 6.0, 8.2]})
    base = hefed.encrypt_statistics(frame, "y", public_key, ["x"], factory_id="plant-a").to_dict()
    wide = {"scheme": "hefed-fixed-binary-v1", "frac_bits": 500, "int_bits": 500, "max_rows_bits": 64,
            "max_contributors": 1 << 32}
    text = json.dumps(base)
    head, _, tail = text.partition('"ciphertexts": [')
    rest = tail[tail.index("]"):]
    bombs = {
        "1000 features, widest encoding": {**base, "encoding": wide,
                                           "schema": {"target": "y", "features": [f"f{i}" for i in range(1000)]}},
        "folds=100, 300 features": {**base, "kind": "fold_statistics", "parameters": {"folds": 100, "fold_seed": 0},
                                    "schema": {"target": "y", "features": [f"f{i}" for i in range(300)]},
                                    "encoding": wide},
        "300 features, 2 ciphertexts (lying count)": {**base, "schema": {"target": "y",
                                                                           "features": [f"f{i}" for i in range(300)]}},
    }
    paths = {}
    for i, (name, obj) in enumerate(bombs.items()):
        paths[name] = folder / f"bomb{i}.json"
        paths[name].write_text(json.dumps(obj))
    raw = {
        "64 MiB of {} values": head + '"ciphertexts": [' + "{}," * ((64 << 20) // 3) + "{}" + rest,
        "64 MiB of 0 values": head + '"ciphertexts": [' + "0," * ((64 << 20) // 2) + "0" + rest,
        "a 5000-digit integer": text.replace('"version": 1', '"version": 1' + "0" * 5000, 1),
        "16 MiB of nesting": '{"a": ' + "[" * (8 << 20) + "]" * (8 << 20) + "}",
    }
    for i, (name, content) in enumerate(raw.items()):
        paths[name] = folder / f"raw{i}.json"
        paths[name].write_text(content)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hefed", default=None, help="load with the hefed package of this checkout")
    parser.add_argument("--skip", nargs="*", default=[], help="bomb names (substrings) to leave out")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.hefed:
        env["HEFED_CHECKOUT"] = str(Path(args.hefed).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        print("| bomb | file | peak RSS growth | seconds | outcome |\n|---|---|---|---|---|")
        for name, path in write_bombs(Path(tmp)).items():
            if any(s in name for s in args.skip):
                continue
            done = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, env=env,
                                  timeout=900)
            line = done.stdout.strip() or f"crashed: {done.stderr.strip().splitlines()[-1][:100]}"
            print(f"| {name} | {path.stat().st_size / 1024:,.0f} KiB | {line} |")


if __name__ == "__main__":
    main()
