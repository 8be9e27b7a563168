"""Time and peak memory at scale: aggregating many bundles, and statistics of big CSV files.

Side by side in one run, each measurement in a fresh Python process (so peak RSS is its own):

  aggregate N bundles (20 features, 2048-bit key) for N in --bundles:
    * hefed.aggregate(paths): files streamed one at a time, shares on a process pool;
    * hefed.aggregate with HEFED_WORKERS=1: the same on one core;
    * baseline: load every bundle into memory first, then multiply.
  statistics of a CSV file of S MB for S in --csv-mb (20 features + target):
    * hefed.compute_statistics(path): pyarrow blocks, exact Gram per block;
    * baseline: pandas.read_csv of the whole file (reading alone, no statistics).

Peak RSS is the process's own maximum resident set, plus (for the pool) the largest
worker's. The bundle files are copies of one real bundle under distinct factory ids
(aggregation cost does not depend on the plaintexts); the CSV repeats one block of
random rows (reading cost does not depend on repetition). The bundles are encrypted at the
encoding ``--frac-bits``/``--int-bits`` (default: the library's, 84/64), which sets their size.

Usage:  python benchmarks/bench_scale.py [--bundles 100 1000 10000] [--csv-mb 100 1000] [--workdir DIR]
                                         [--frac-bits 84] [--int-bits 64]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_mb() -> tuple[float, float]:
    """(this process, largest waited-for child) peak RSS in MB (Linux reports KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def measure(kind: str, target: str) -> dict[str, float]:
    """Runs inside the fresh process: one measurement, printed as JSON."""
    import numpy as np

    start = time.perf_counter()
    if kind in ("aggregate", "aggregate-1"):
        import hefed

        paths = sorted(Path(target).glob("*.json"))
        total = hefed.aggregate(paths)
        assert len(total.contributors) == len(paths)
    elif kind == "load-all":
        import gmpy2

        from hefed.protocol import Bundle

        paths = sorted(Path(target).glob("*.json"))
        bundles = [Bundle.load(p) for p in paths]
        nsq = gmpy2.mpz(bundles[0].public_key.nsquare)
        acc = [gmpy2.mpz(c) for c in bundles[0].ciphertexts]
        for b in bundles[1:]:
            acc = [a * c % nsq for a, c in zip(acc, b.ciphertexts, strict=True)]
    elif kind == "stream":
        import hefed

        stats = hefed.compute_statistics(target, "y")
        assert stats.n > 0
    elif kind == "pandas":
        import pandas as pd

        frame = pd.read_csv(target)
        assert len(frame) > 0
        np.asarray(frame.shape)
    else:
        raise SystemExit(f"unknown measurement {kind}")
    seconds = time.perf_counter() - start
    own, child = peak_mb()
    if kind == "aggregate":
        from hefed import _pool as parallel

        if parallel._POOL is not None:  # ask each worker for its own peak (they are not our children)
            usage = parallel.map_pieces(resource.getrusage, [resource.RUSAGE_SELF] * parallel.available_workers())
            child = max(u.ru_maxrss for u in usage) / 1024
        parallel.shutdown()
    return {"seconds": seconds, "rss_mb": own, "worker_rss_mb": child}


def run(kind: str, target: Path, env: dict[str, str] | None = None) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--measure", kind, str(target)], capture_output=True,
                         text=True, check=True, env={**os.environ, **(env or {})})
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_bundles(workdir: Path, count: int, bits: int, features: int, frac_bits: int, int_bits: int) -> Path:
    import numpy as np
    import pandas as pd

    import hefed
    from hefed.stats import Encoding

    folder = workdir / f"bundles-{count}-{frac_bits}-{int_bits}"
    if folder.is_dir() and len(list(folder.glob("*.json"))) == count:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    public_key, _ = hefed.generate_keypair(bits)
    rng = np.random.default_rng(0)
    names = [f"x{j:02d}" for j in range(features)]
    frame = pd.DataFrame(np.round(rng.normal(size=(1000, features + 1)) * 100, 3), columns=[*names, "y"])
    base = hefed.encrypt_statistics(frame, "y", public_key, names, factory_id="f00000",
                                    encoding=Encoding(frac_bits=frac_bits, int_bits=int_bits)).to_dict()
    for i in range(count):
        base["contributors"] = [f"f{i:05d}"]
        (folder / f"f{i:05d}.json").write_text(json.dumps(base))
    return folder


def make_csv(workdir: Path, megabytes: int, features: int) -> Path:
    import numpy as np
    import pandas as pd

    path = workdir / f"plant-{megabytes}MB.csv"
    size = megabytes * 1_000_000
    if path.is_file() and path.stat().st_size >= size:
        return path
    rng = np.random.default_rng(1)
    names = [f"x{j:02d}" for j in range(features)]
    X = np.round(rng.normal(loc=50, scale=30, size=(50_000, features)), 3)
    y = np.round(X @ rng.normal(size=features) + rng.normal(size=len(X)), 4)
    block = pd.DataFrame(np.column_stack([X, y]), columns=[*names, "y"]).to_csv(index=False)
    header, body = block.split("\n", 1)
    with path.open("w") as handle:
        handle.write(header + "\n")
        written = len(header) + 1
        while written < size:
            handle.write(body)
            written += len(body)
    return path


def _encoding_bits(args: argparse.Namespace) -> tuple[int, int]:
    """(frac_bits, int_bits) of the bundles: as given, else the library's defaults."""
    from hefed.stats import Encoding

    return (Encoding.frac_bits if args.frac_bits is None else args.frac_bits,
            Encoding.int_bits if args.int_bits is None else args.int_bits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", type=int, nargs="*", default=[100, 1000, 10000])
    parser.add_argument("--csv-mb", type=int, nargs="*", default=[100, 1000])
    parser.add_argument("--bits", type=int, default=2048)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the generated files here (default: temp)")
    parser.add_argument("--frac-bits", type=int, default=None, help="the bundles' grid 2^-FRAC_BITS (default 84)")
    parser.add_argument("--int-bits", type=int, default=None, help="the bundles' range 2^INT_BITS (default 64)")
    parser.add_argument("--measure", nargs=2, metavar=("KIND", "TARGET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        print(f"{'measurement':<52} {'seconds':>9} {'peak RSS MB':>12} {'worker MB':>10}")
        for count in args.bundles:
            folder = make_bundles(workdir, count, args.bits, args.features, *_encoding_bits(args))
            mb = sum(p.stat().st_size for p in folder.glob("*.json")) / 1e6
            results = [
                (f"aggregate {count} bundles ({mb:.0f} MB): hefed, pool", run("aggregate", folder)),
                (f"aggregate {count} bundles: hefed, one core", run("aggregate-1", folder, {"HEFED_WORKERS": "1"})),
                (f"aggregate {count} bundles: load all, then multiply", run("load-all", folder)),
            ]
            for label, r in results:
                print(f"{label:<52} {r['seconds']:9.2f} {r['rss_mb']:12.0f} {r['worker_rss_mb']:10.0f}")
            print(f"  ratio hefed pool / load-all: time {results[0][1]['seconds'] / results[2][1]['seconds']:.2f}, "
                  f"memory {results[0][1]['rss_mb'] / results[2][1]['rss_mb']:.2f}")
        for megabytes in args.csv_mb:
            path = make_csv(workdir, megabytes, args.features)
            stream, whole = run("stream", path), run("pandas", path)
            print(f"{f'statistics of a {megabytes} MB CSV: hefed streaming':<52} {stream['seconds']:9.2f} "
                  f"{stream['rss_mb']:12.0f} {'':>10}")
            print(f"{f'{megabytes} MB CSV: pandas.read_csv of the whole file':<52} {whole['seconds']:9.2f} "
                  f"{whole['rss_mb']:12.0f} {'':>10}")
            print(f"  ratio hefed / pandas: time {stream['seconds'] / whole['seconds']:.2f}, "
                  f"memory {stream['rss_mb'] / whole['rss_mb']:.2f}")


if __name__ == "__main__":
    main()
