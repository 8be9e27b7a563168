"""End-to-end cost of the encrypted protocol against the centralised plaintext fit it replaces.

Side by side in one run, on the same in-memory data:
  * hefed: compute_statistics + encrypt per factory, aggregate, decrypt, exact solve
    (key generation excluded: a consortium makes its key once; DJN table building
    included: the table cache is cleared before every run);
  * naive: one phe ciphertext per statistic (phe.PublicKey.encrypt of each float);
  * baseline: sklearn.linear_model.LinearRegression().fit on the pooled data.

The public encoding is ``--frac-bits``/``--int-bits`` (default: the library's, 84/64).

Usage:  python benchmarks/bench_pipeline.py [--factories 10] [--rows 1000000] [--features 20] [--bits 2048] [--repeat 3]
                                            [--frac-bits 84] [--int-bits 64]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from phe import paillier
from sklearn.linear_model import LinearRegression

import hefed
from hefed.data import compute_statistics
from hefed.primitives import djn
from hefed.roles import encrypt_bundle
from hefed.stats import Encoding


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--factories", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in all, split evenly")
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--bits", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each path; the median is reported")
    parser.add_argument("--frac-bits", type=int, default=Encoding.frac_bits, help="the encoding's grid 2^-FRAC_BITS")
    parser.add_argument("--int-bits", type=int, default=Encoding.int_bits, help="the encoding's range 2^INT_BITS")
    args = parser.parse_args()
    encoding = Encoding(frac_bits=args.frac_bits, int_bits=args.int_bits)

    rng = np.random.default_rng(args.seed)
    d, per = args.features, args.rows // args.factories
    names = [f"x{j:02d}" for j in range(d)]
    beta = rng.normal(size=d)
    frames = {}
    for i in range(args.factories):
        X = np.round(rng.normal(loc=rng.uniform(-1, 1, d), size=(per, d)) * 100, 3)
        y = np.round(X @ beta + 5 + rng.normal(size=per), 4)
        frames[f"f{i:02d}"] = pd.DataFrame(np.column_stack([X, y]), columns=[*names, "y"])
    public_key, private_key = hefed.generate_keypair(args.bits)
    pooled = pd.concat(frames.values(), ignore_index=True)
    X_pool, y_pool = pooled[names].to_numpy(), pooled["y"].to_numpy()

    def run_hefed() -> tuple[dict[str, float], list[hefed.Bundle], hefed.LinearModel]:
        djn.clear_tables()  # table building is part of the cost, every repetition
        steps: dict[str, float] = {}
        start = time.perf_counter()
        stats = [compute_statistics(f, "y", names, encoding, factory_id=k) for k, f in frames.items()]
        steps["statistics"] = time.perf_counter() - start
        mark = time.perf_counter()
        bundles = [encrypt_bundle(st, public_key, k) for k, st in zip(frames, stats, strict=True)]
        steps["encrypt"] = time.perf_counter() - mark
        mark = time.perf_counter()
        total = hefed.aggregate(bundles)
        steps["aggregate"] = time.perf_counter() - mark
        mark = time.perf_counter()
        decrypted = hefed.decrypt_statistics(total, private_key, allow_unsigned=True)
        steps["decrypt"] = time.perf_counter() - mark
        mark = time.perf_counter()
        model = hefed.solve(decrypted)
        steps["solve"] = time.perf_counter() - mark
        steps["total"] = time.perf_counter() - start
        return steps, bundles, model

    def run_sklearn() -> tuple[float, LinearRegression]:
        start = time.perf_counter()
        fitted = LinearRegression().fit(X_pool, y_pool)
        return time.perf_counter() - start, fitted

    hefed_runs, sklearn_runs = [], []
    for _ in range(args.repeat):  # interleaved, so both see the same machine load
        steps, bundles, model = run_hefed()
        hefed_runs.append(steps)
        seconds, central = run_sklearn()
        sklearn_runs.append(seconds)
    median_run = sorted(hefed_runs, key=lambda r: r["total"])[len(hefed_runs) // 2]
    t_hefed, t_sklearn = median_run["total"], statistics.median(sklearn_runs)

    # Naive path: one phe ciphertext per statistic, timed on a sample and scaled.
    n_stats = (d + 2) * (d + 3) // 2
    phe_pub = paillier.PaillierPublicKey(public_key.n)
    sample = rng.normal(size=20).tolist()
    start = time.perf_counter()
    for value in sample:
        phe_pub.encrypt(value)
    t_naive = (time.perf_counter() - start) / len(sample) * n_stats * args.factories

    with tempfile.TemporaryDirectory() as tmp:  # the size of the file a factory actually sends
        bundle_bytes = bundles[0].save(Path(tmp) / "bundle.json").stat().st_size
    layout = bundles[0].layout()
    slot_bits = sum(slot.width for slot in layout.slots)
    ct_bytes = (2 * args.bits + 7) // 8
    floor = -(-slot_bits // layout.capacity_bits)

    rel = np.max(np.abs(model.coef_ - central.coef_) / np.abs(central.coef_))
    print(f"{args.factories} factories, {per * args.factories} rows, {d} features, {args.bits}-bit key, "
          f"median of {args.repeat} runs")
    print(f"{'path':<72} {'seconds':>9}")
    rows = [
        ("hefed (stats + packed DJN encryption + aggregate + decrypt + exact solve)", t_hefed),
        *((f"  of which {step}", median_run[step]) for step in
          ("statistics", "encrypt", "aggregate", "decrypt", "--allow-unsigned", "solve")),
        ("naive phe: encryption alone, one ciphertext per statistic", t_naive),
        ("scikit-learn LinearRegression().fit on pooled plaintext", t_sklearn),
    ]
    for label, seconds in rows:
        print(f"{label:<72} {seconds:9.3f}")
    all_hefed = ", ".join(f"{r['total']:.3f}" for r in hefed_runs)
    all_sklearn = ", ".join(f"{t:.3f}" for t in sklearn_runs)
    print(f"ratio hefed / scikit-learn: {t_hefed / t_sklearn:.2f}   "
          f"(all runs: hefed {all_hefed}; scikit-learn {all_sklearn})")
    print(f"ratio naive / hefed:        {t_naive / t_hefed:.1f}")
    print(f"ciphertexts per factory: hefed {len(bundles[0].ciphertexts)}, naive {n_stats}")
    print(f"bundle file size per factory: {bundle_bytes} bytes (JSON, base64 ciphertexts); "
          f"the ciphertexts alone are {len(bundles[0].ciphertexts) * ct_bytes} bytes")
    print(f"slots need {slot_bits} bits with their guard bits: at least {floor} plaintexts of "
          f"{layout.capacity_bits} bits, {floor * ct_bytes} bytes of ciphertext whatever the file format")
    print(f"largest relative coefficient difference to scikit-learn: {rel:.2e}")

if __name__ == "__main__":
    main()
