"""One factory's statistics bundle: hefed's encryption (and decryption) against phe, interleaved.

"Values" are what a factory really sends: the packed layout of the statistics of
``--features`` features at the library's encoding (``--frac-bits``/``--int-bits``), so the
values per ciphertext come from that layout, not from a made-up slot width. Each repeat runs,
in this order and on the same key:

  * phe: ``PaillierPublicKey.encrypt`` of ``--phe-values`` floats, one per value (a naive user);
  * hefed cold: a process that has never encrypted under this key: no table, no helper
    (tables dropped, helper stopped), one bundle through ``encrypt_plaintexts``; table building
    included (the library picks a small window for a single bundle);
  * hefed warm, one process: the window-10 table already built (``djn.prepare``), no helper;
  * hefed warm: ``encryption.warm_up`` done (window-10 table here and in the helper process,
    untimed), one bundle through ``encrypt_plaintexts``: part here, part in the helper;
  * decryption of the bundle's ciphertexts: phe's ``raw_decrypt`` one by one, and hefed's
    ``decrypt_ciphertexts`` (p and q halves of the CRT in two threads).

The warm paths and the decryptions alternate ``--inner`` times per repeat. Reported per path:
best and median over all its samples (µs per value; ms per bundle), and the
ratios phe/hefed of best to best and median to median. ``--batch N`` adds big-batch rows
(N ciphertexts over every core through the process pool), as before issue 15.

Usage:  python benchmarks/bench_encrypt.py [--bits 2048 3072] [--repeats 7] [--inner 3] [--features 20]
                                           [--phe-values 40] [--batch 0]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time
from collections.abc import Callable

from phe import paillier

from hefed import _pool as parallel
from hefed.kinds import layout as kind_layout
from hefed.primitives import djn, encryption
from hefed.stats import Encoding


def timed(function: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def phe_encrypt(public_key: paillier.PaillierPublicKey, count: int) -> None:
    for i in range(count):
        public_key.encrypt(float(i) + 0.5)


def phe_decrypt(private_key: paillier.PaillierPrivateKey, ciphertexts: list[int]) -> None:
    for c in ciphertexts:
        private_key.raw_decrypt(c)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bits", type=int, nargs="+", default=[2048, 3072])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--phe-values", type=int, default=40, help="values phe encrypts per repeat (it is slow)")
    parser.add_argument("--frac-bits", type=int, default=Encoding.frac_bits, help="the encoding's grid 2^-FRAC_BITS")
    parser.add_argument("--int-bits", type=int, default=Encoding.int_bits, help="the encoding's range 2^INT_BITS")
    parser.add_argument("--inner", type=int, default=3, help="warm bundles and decryptions per repeat")
    parser.add_argument("--batch", type=int, default=0, help="also time a batch this big on every core (0: skip)")
    args = parser.parse_args()
    encoding = Encoding(frac_bits=args.frac_bits, int_bits=args.int_bits)

    print(f"workers available: {parallel.available_workers()}; {args.repeats} interleaved repeats; "
          f"µs per value (ms per bundle)")
    header = (f"{'key':>5} {'path':<44} {'best µs':>9} {'median µs':>10} {'best ms':>8} {'med ms':>7}"
              f" {'vs phe best':>11} {'vs phe med':>10}")
    print(header)
    print("-" * len(header))
    for bits in args.bits:
        public_key, private_key = paillier.generate_paillier_keypair(n_length=bits)
        layout = kind_layout("statistics", [f"x{j}" for j in range(args.features)], "y", encoding, public_key.n, {})
        values = len(layout.slots)
        plaintexts = [secrets.randbelow(1 << layout.capacity_bits) for _ in range(layout.n_plaintexts)]
        samples: dict[str, list[float]] = {k: [] for k in ("phe", "cold", "warm1", "warm", "phe_dec", "dec")}
        warm_table = 0
        for _ in range(args.repeats):
            samples["phe"].append(timed(phe_encrypt, public_key, args.phe_values) / args.phe_values * values)
            djn.clear_tables()
            encryption.stop_helper()
            samples["cold"].append(timed(encryption.encrypt_plaintexts, public_key, plaintexts))
            table = djn.prepare(public_key.n)  # untimed: a warm process has built its table
            warm_table = table.window
            encryption.warm_up(public_key)  # untimed: the helper holds its table too
            encryption.encrypt_plaintexts(public_key, plaintexts)  # the helper's first bundle
            ciphertexts = encryption.encrypt_plaintexts(public_key, plaintexts)
            for _ in range(args.inner):  # the short paths alternate, several bundles per repeat
                samples["warm1"].append(timed(table.encrypt_many, plaintexts))
                samples["warm"].append(timed(encryption.encrypt_plaintexts, public_key, plaintexts))
                samples["phe_dec"].append(timed(phe_decrypt, private_key, ciphertexts))
                samples["dec"].append(timed(encryption.decrypt_ciphertexts, private_key, ciphertexts))
        encryption.stop_helper()

        print(f"{bits:>5} layout: {layout.n_plaintexts} ciphertexts hold {values} values "
              f"({values / layout.n_plaintexts:.2f} per ciphertext); warm table window {warm_table} "
              f"({djn.table_bytes(warm_table, djn.exponent_bits(public_key.n), bits // 4) / 2**20:.0f} MiB "
              "per process)")
        rows = [
            ("phe", "phe PublicKey.encrypt, one per value", "phe"),
            ("cold", "hefed cold (table built in the run)", "phe"),
            ("warm1", "hefed warm, one process (window-10 table)", "phe"),
            ("warm", "hefed warm, + helper process (2 cores)", "phe"),
            ("phe_dec", "decrypt: phe raw_decrypt, one by one", "phe_dec"),
            ("dec", "decrypt: hefed, CRT halves in two threads", "phe_dec"),
        ]
        for key, label, anchor in rows:
            best, median = min(samples[key]), statistics.median(samples[key])
            base_best, base_median = min(samples[anchor]), statistics.median(samples[anchor])
            print(f"{bits:>5} {label:<44} {best / values * 1e6:>9.2f} {median / values * 1e6:>10.2f}"
                  f" {best * 1e3:>8.1f} {median * 1e3:>7.1f} {base_best / best:>10.1f}x {base_median / median:>9.1f}x")

        if args.batch:
            batch = [secrets.randbelow(1 << layout.capacity_bits) for _ in range(args.batch)]
            per_ct = values / layout.n_plaintexts
            parallel.shutdown()  # a cold pool: worker start-up and their tables are counted
            cold = timed(encryption.encrypt_plaintexts, public_key, batch)
            warm = timed(encryption.encrypt_plaintexts, public_key, batch)
            phe_value = min(samples["phe"]) / values
            for label, seconds in (("batch, all cores, cold pool", cold), ("batch, all cores, warm pool", warm)):
                per_value = seconds / (len(batch) * per_ct)
                print(f"{bits:>5} {label + f' ({len(batch)} ct)':<44} {per_value * 1e6:>9.2f} {'':>10}"
                      f" {seconds * 1e3:>8.1f} {'':>7} {phe_value / per_value:>10.1f}x")
            parallel.shutdown()


if __name__ == "__main__":
    main()
