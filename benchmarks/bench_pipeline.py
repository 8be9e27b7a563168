"""End-to-end cost of the encrypted protocol against the centralised plaintext fit it replaces.

Side by side in one run, on the same in-memory data:
  * hefed: compute_statistics + encrypt per factory, aggregate, decrypt, exact solve
    (key generation excluded: a consortium makes its key once);
  * naive: one phe ciphertext per statistic (phe.PublicKey.encrypt of each float);
  * baseline: sklearn.linear_model.LinearRegression().fit on the pooled data.

Usage:  python benchmarks/bench_pipeline.py [--factories 10] [--rows 1000000] [--features 20] [--bits 2048]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from phe import paillier
from sklearn.linear_model import LinearRegression

import hefed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--factories", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in all, split evenly")
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--bits", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

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

    start = time.perf_counter()
    bundles = [hefed.encrypt_statistics(f, "y", public_key, names, factory_id=k) for k, f in frames.items()]
    model = hefed.solve(hefed.decrypt_statistics(hefed.aggregate(bundles), private_key))
    t_hefed = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:  # the size of the file a factory actually sends
        bundle_bytes = bundles[0].save(Path(tmp) / "bundle.json").stat().st_size

    pooled = pd.concat(frames.values(), ignore_index=True)
    start = time.perf_counter()
    central = LinearRegression().fit(pooled[names].to_numpy(), pooled["y"].to_numpy())
    t_sklearn = time.perf_counter() - start

    # Naive path: one phe ciphertext per statistic, timed on one factory and scaled.
    n_stats = (d + 2) * (d + 3) // 2
    phe_pub = paillier.PaillierPublicKey(public_key.n)
    sample = rng.normal(size=20).tolist()
    start = time.perf_counter()
    for value in sample:
        phe_pub.encrypt(value)
    t_naive = (time.perf_counter() - start) / len(sample) * n_stats * args.factories

    rel = np.max(np.abs(model.coef_ - central.coef_) / np.abs(central.coef_))
    rows = [
        ("hefed (stats + packed encryption + aggregate + decrypt + exact solve)", t_hefed),
        ("naive phe: encryption alone, one ciphertext per statistic", t_naive),
        ("scikit-learn LinearRegression().fit on pooled plaintext", t_sklearn),
    ]
    print(f"{args.factories} factories, {per * args.factories} rows, {d} features, {args.bits}-bit key")
    print(f"{'path':<72} {'seconds':>9}")
    for label, seconds in rows:
        print(f"{label:<72} {seconds:9.3f}")
    print(f"ratio hefed / scikit-learn: {t_hefed / t_sklearn:.2f}")
    print(f"ratio naive / hefed:        {t_naive / t_hefed:.1f}")
    print(f"ciphertexts per factory: hefed {len(bundles[0].ciphertexts)}, naive {n_stats}")
    print(f"bundle file size per factory: {bundle_bytes} bytes (JSON)")
    print(f"largest relative coefficient difference to scikit-learn: {rel:.2e}")


if __name__ == "__main__":
    main()
