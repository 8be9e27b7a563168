"""Per-value encryption throughput: hefed's packed DJN path against phe, side by side in one run.

For each key size:
  * phe: ``phe.PaillierPublicKey.encrypt`` of one float per value (what a naive user does);
  * hefed classic: packed plaintexts, classic r^n encryption, one core;
  * hefed DJN, one core: packed plaintexts, fixed-base DJN, table building included;
  * hefed DJN, every core: the same through ``hefed.primitives.encryption.encrypt_plaintexts``,
    cold (pool start-up and each worker's table building included) and warm (the
    same pool again: steady-state throughput, tables built).

"Values" are the statistics a factory really sends: the packed layout of the
statistics of ``--features`` features at the encoding ``--frac-bits``/``--int-bits``
(default: the library's, 84/64; guard bits for 10,000 factories), so values per
ciphertext come from that layout, not from a made-up slot width.

Usage:  python benchmarks/bench_encrypt.py [--bits 2048 3072] [--ciphertexts 8192] [--features 20]
                                           [--frac-bits 84] [--int-bits 64]
"""

from __future__ import annotations

import argparse
import secrets
import time

from phe import paillier

from hefed import _pool as parallel
from hefed.kinds import layout as kind_layout
from hefed.primitives import djn, encryption
from hefed.primitives.paillier import encrypt_raw
from hefed.stats import Encoding


def per_value(seconds: float, ciphertexts: int, values_per_ciphertext: float) -> float:
    return seconds / (ciphertexts * values_per_ciphertext)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bits", type=int, nargs="+", default=[2048, 3072])
    parser.add_argument("--ciphertexts", type=int, default=8192, help="batch size for the DJN paths")
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--phe-values", type=int, default=40, help="values encrypted by phe (it is slow)")
    parser.add_argument("--frac-bits", type=int, default=Encoding.frac_bits, help="the encoding's grid 2^-FRAC_BITS")
    parser.add_argument("--int-bits", type=int, default=Encoding.int_bits, help="the encoding's range 2^INT_BITS")
    args = parser.parse_args()
    encoding = Encoding(frac_bits=args.frac_bits, int_bits=args.int_bits)

    print(f"workers available: {parallel.available_workers()}")
    header = f"{'key':>5} {'path':<42} {'values':>8} {'µs/value':>10} {'vs phe':>8}"
    print(header)
    print("-" * len(header))
    for bits in args.bits:
        public_key, _ = paillier.generate_paillier_keypair(n_length=bits)
        layout = kind_layout("statistics", [f"x{j}" for j in range(args.features)], "y", encoding, public_key.n, {})
        per_ct = len(layout.slots) / layout.n_plaintexts
        plaintexts = [secrets.randbelow(1 << layout.capacity_bits) for _ in range(args.ciphertexts)]

        start = time.perf_counter()
        for i in range(args.phe_values):
            public_key.encrypt(float(i) + 0.5)
        t_phe = (time.perf_counter() - start) / args.phe_values

        classic_count = max(10, args.ciphertexts // 40)
        start = time.perf_counter()
        for p in plaintexts[:classic_count]:
            encrypt_raw(public_key, p)
        t_classic = per_value(time.perf_counter() - start, classic_count, per_ct)

        djn.clear_tables()
        start = time.perf_counter()
        djn.encrypt_many(public_key.n, plaintexts)
        t_djn_one = per_value(time.perf_counter() - start, len(plaintexts), per_ct)

        parallel.shutdown()  # a cold pool: worker start-up and their tables are counted
        start = time.perf_counter()
        encryption.encrypt_plaintexts(public_key, plaintexts, "djn")
        t_djn_cold = per_value(time.perf_counter() - start, len(plaintexts), per_ct)
        start = time.perf_counter()  # the same pool again: each worker's table is built
        encryption.encrypt_plaintexts(public_key, plaintexts, "djn")
        t_djn_warm = per_value(time.perf_counter() - start, len(plaintexts), per_ct)
        table = djn.table_for(public_key.n, 0)
        print(f"{bits:>5} DJN table: {table.window}-bit window, "
              f"{djn.table_bytes(table.window, table.bits, bits // 4) / 2**20:.0f} MiB per process")

        print(f"{bits:>5} layout: {layout.n_plaintexts} ciphertexts hold {len(layout.slots)} slots "
              f"({per_ct:.2f} values per ciphertext)")
        rows = [
            ("phe PublicKey.encrypt, one per value", args.phe_values, t_phe),
            ("hefed packed, classic r^n, 1 core", int(classic_count * per_ct), t_classic),
            ("hefed packed DJN, 1 core", int(len(plaintexts) * per_ct), t_djn_one),
            ("hefed packed DJN, all cores, cold pool", int(len(plaintexts) * per_ct), t_djn_cold),
            ("hefed packed DJN, all cores, warm pool", int(len(plaintexts) * per_ct), t_djn_warm),
        ]
        for label, count, seconds in rows:
            print(f"{bits:>5} {label:<42} {count:>8} {seconds * 1e6:>10.1f} {t_phe / seconds:>7.1f}x")
    parallel.shutdown()


if __name__ == "__main__":
    main()
