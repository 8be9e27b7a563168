"""The default encoding before and after issue 13: what it accepts, and what it costs in bundle size.

Old defaults: grid 2^-72, range 2^40, values off the grid REFUSED (emulated here: a value that
would be rounded counts as refused). New defaults: grid 2^-84, range 2^64, values off the grid
rounded and counted. "Accepted" below means accepted with nothing rounded.

1. NIST StRD, the eleven linear-regression sets (tests/data/nist): accepted? exact? digits of the
   float64 data's exact solution against NIST's certified values (informational).
2. Acceptance fractions of seeded random draws, each value written to CSV as decimal text and read
   back by hefed's reader (``hefed.read_table`` / ``hefed.compute_statistics`` on the file):
   * realistic columns: a column's centre c ~ U(-9, 15) (log10 of its magnitude); each of its
     ``--rows`` values has log10|v| = c + U(-0.5, 0.5), clipped to [-9, 15), four significant
     digits, positive, written as "%.3e"; models of 6 and 21 such columns (the last the target);
   * zero-crossing measurements: sigma = 10^U(-3, 6), mu = sigma * U(-0.5, 0.5), N(mu, sigma),
     4, 5 or 6 significant digits (drawn per column), ``--zero-rows`` rows; models of 21 columns
     are groups of 21 such columns;
   * integer columns: log2 of a column's largest magnitude ~ U(1, 53), values uniform integers of
     either sign below it (at most 2^53);
   * N(0,1) float64 at full precision, ``--normal-rows`` rows x 5 columns (not through CSV): values
     rounded, and digits of agreement of the coefficients with the exact solve of the float64 data.
3. Bundle sizes at ``--features`` features and a ``--bits``-bit key: ciphertexts (``hefed.kinds.layout``
   and a real ``encrypt_statistics`` bundle) and bundle file bytes, for the old (72/40) and new
   (84/64) defaults and tight per-column encodings from ``column_bits_needed``.

Usage:  python benchmarks/bench_encoding.py [--seed 13] [--columns 2000] [--rows 200] [--models 500]
            [--zero-columns 420] [--zero-rows 100000] [--normal-rows 1000000] [--bits 2048] [--features 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

import hefed
from hefed.errors import EncodingError, RoundedValuesWarning
from hefed.kinds import layout
from hefed.stats import ColumnEncoding, Rounding, column_bits_needed, statistics_from_arrays

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_encoding_defaults as nist  # noqa: E402  (the NIST loader and exact solver the tests verify)

OLD = hefed.Encoding(frac_bits=72, int_bits=40)
NEW = hefed.Encoding()
GAS_TURBINE = Path(__file__).resolve().parents[2] / "shared" / "data" / "gas-turbine"


# --- outcomes ----------------------------------------------------------------------------------
def column_outcome(values: np.ndarray, encoding: hefed.Encoding) -> str:
    """'exact', 'rounded' (new defaults: counted) or 'refused' for one column of values."""
    try:
        rounding = Rounding()
        encoding.to_grid(values, "c", rounding)
    except EncodingError:
        return "refused"
    return "rounded" if rounding.total else "exact"


def file_outcome(path: Path, encoding: hefed.Encoding) -> str:
    """The same for a whole file through compute_statistics (a factory's real path)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            hefed.compute_statistics(path, "y", encoding=encoding)
        except EncodingError:
            return "refused"
    return "rounded" if any(issubclass(w.category, RoundedValuesWarning) for w in caught) else "exact"


def fractions(outcomes: list[str], old: bool) -> str:
    """Old defaults: a value off the grid was refused. New: it is rounded and counted."""
    counts = Counter(outcomes)
    n = len(outcomes)
    if not n:
        return "no draws (too few columns for a model)"
    if old:
        return (f"accepted {counts['exact'] / n:7.2%}   refused {(counts['rounded'] + counts['refused']) / n:7.2%} "
                f"(first refusal: off the 2^-72 grid {counts['rounded'] / n:6.2%}, "
                f"beyond 2^40 {counts['refused'] / n:6.2%})   n={n}")
    return (f"accepted {counts['exact'] / n:7.2%}   accepted with values rounded and counted "
            f"{counts['rounded'] / n:6.2%}   refused {counts['refused'] / n:6.2%}   n={n}")


def write_csv(path: Path, texts: list[list[str]], names: list[str]) -> None:
    """Columns of decimal text into one CSV file."""
    with path.open("w", encoding="utf-8") as out:
        out.write(",".join(names) + "\n")
        for row in zip(*texts, strict=True):
            out.write(",".join(row) + "\n")


# --- 1. NIST ------------------------------------------------------------------------------------
def nist_section(keypair) -> None:
    print("1. NIST StRD linear regression (default encoding, no options; 3 factories, real protocol)")
    print(f"{'set':<9} {'rows':>4} {'params':>6} {'new 84/64':>9} {'rounded':>7} {'exact':>6}  "
          f"{'old 72/40':<22} {'digits: float64':>15} {'decimal':>7}")
    for name in nist.NIST_SETS:
        data = nist.load_nist(name)
        frame = nist.nist_frame(data)
        features = data.features
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hefed.compute_statistics(frame, "y", features)
        rounded = sum(issubclass(w.category, RoundedValuesWarning) for w in caught)
        reference = nist.exact_from_frame(frame, features, data.intercept)
        _, model = nist.federate(frame, features, keypair, data.intercept)
        found = [model.intercept_exact_, *model.coef_exact_] if data.intercept else list(model.coef_exact_)
        try:
            statistics_from_arrays(frame[features].to_numpy(), frame["y"].to_numpy(), features, "y", OLD)
            old = "accepted"
        except EncodingError as exc:
            old = "refused: " + ("beyond 2^40" if "reaches 2^40" in str(exc) else "off 2^-72 grid")
        digits = min(nist.agreement_digits(value, Fraction(certified))
                     for value, (_, certified, _) in zip(reference, data.certified, strict=True))
        decimal = nist.exact_decimal_solution(data)
        decimal_digits = min(nist.agreement_digits(value, Fraction(certified))
                             for value, (_, certified, _) in zip(decimal, data.certified, strict=True))
        print(f"{name:<9} {len(frame):>4} {len(found):>6} {'accepted':>9} {rounded:>7} {str(found == reference):>6}  "
              f"{old:<22} {digits:15.2f} {decimal_digits:7.2f}")
    print("   exact: the federated model's coef_exact_ (and intercept) equal the exact rational least-squares\n"
          "   solution of the float64 data. digits: least over the coefficients of\n"
          "   -log10 |b - certified| / |certified| (16 = equal), for that float64 solution (x**k computed in\n"
          "   float64, as a user would) and, checking the files, for the exact solution of the decimal data\n"
          "   (NIST prints 15 digits).")


# --- 2. acceptance fractions ----------------------------------------------------------------------
def realistic_texts(rng: np.random.Generator, n_columns: int, rows: int) -> list[list[str]]:
    centres = rng.uniform(-9, 15, n_columns)
    logs = np.clip(centres[:, None] + rng.uniform(-0.5, 0.5, (n_columns, rows)), -9, np.nextafter(15, 0))
    return [[f"{v:.3e}" for v in 10.0**column] for column in logs]


def zero_crossing_texts(rng: np.random.Generator, n_columns: int, rows: int) -> list[list[str]]:
    out = []
    for _ in range(n_columns):
        sigma = 10.0 ** rng.uniform(-3, 6)
        mu = sigma * rng.uniform(-0.5, 0.5)
        digits = int(rng.integers(4, 7))
        out.append(np.char.mod(f"%.{digits - 1}e", rng.normal(mu, sigma, rows)).tolist())
    return out


def integer_texts(rng: np.random.Generator, n_columns: int, rows: int) -> list[list[str]]:
    out = []
    for _ in range(n_columns):
        top = int(2.0 ** rng.uniform(1, 53))
        values = rng.integers(-top, top, rows, endpoint=True)
        out.append([str(int(v)) for v in values])
    return out


def column_fractions(texts: list[list[str]], tmp: Path, label: str) -> dict[str, list[str]]:
    """Per-column outcomes: the columns go through CSV files of 100 columns, read by hefed."""
    outcomes: dict[str, list[str]] = {"old": [], "new": []}
    for start in range(0, len(texts), 100):
        block = texts[start:start + 100]
        path = tmp / f"{label}_{start}.csv"
        write_csv(path, block, [f"c{j}" for j in range(len(block))])
        table = hefed.read_table(path)
        for column in table.columns:
            values = table[column].to_numpy(dtype=np.float64)
            outcomes["old"].append(column_outcome(values, OLD))
            outcomes["new"].append(column_outcome(values, NEW))
    return outcomes


def model_fractions(texts: list[list[str]], width: int, tmp: Path, label: str) -> dict[str, list[str]]:
    """Per-model outcomes through compute_statistics on each model's CSV (the last column the target)."""
    outcomes: dict[str, list[str]] = {"old": [], "new": []}
    for m in range(len(texts) // width):
        block = texts[m * width:(m + 1) * width]
        path = tmp / f"{label}_model{m}.csv"
        write_csv(path, block, [*(f"x{j}" for j in range(width - 1)), "y"])
        outcomes["old"].append(file_outcome(path, OLD))
        outcomes["new"].append(file_outcome(path, NEW))
        path.unlink()
    return outcomes


def print_fractions(label: str, outcomes: dict[str, list[str]]) -> None:
    print(f"  {label}")
    print(f"    old 72/40 : {fractions(outcomes['old'], old=True)}")
    print(f"    new 84/64 : {fractions(outcomes['new'], old=False)}")


def acceptance_section(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    print(f"\n2. Acceptance, with nothing rounded, of seeded random draws read back from CSV (seed {args.seed})")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        start = time.perf_counter()
        print_fractions(f"realistic columns, 1e-9..1e15, 4 significant digits, {args.rows} rows: per column",
                        column_fractions(realistic_texts(rng, args.columns, args.rows), tmp, "real"))
        for width in (6, 21):
            texts = realistic_texts(rng, args.models * width, args.rows)
            print_fractions(f"realistic models of {width} columns ({width - 1} features + target), {args.rows} rows",
                            model_fractions(texts, width, tmp, f"real{width}"))
        print_fractions(f"integer columns up to 2^53, {args.rows} rows: per column",
                        column_fractions(integer_texts(rng, args.columns, args.rows), tmp, "int"))
        texts = zero_crossing_texts(rng, args.zero_columns, args.zero_rows)
        per_column = column_fractions(texts, tmp, "zero")
        print_fractions(f"zero-crossing N(mu, sigma), 4-6 significant digits, {args.zero_rows} rows: per column",
                        per_column)
        groups = {k: [("refused" if "refused" in g else "rounded" if "rounded" in g else "exact")
                      for g in (v[i:i + 21] for i in range(0, len(v) - 20, 21))] for k, v in per_column.items()}
        print_fractions(f"zero-crossing models of 21 of those columns ({args.zero_rows} rows x 21)", groups)
        print(f"  ({time.perf_counter() - start:.0f} s)")
    normal_section(rng, args.normal_rows)


def normal_section(rng: np.random.Generator, rows: int) -> None:
    if not rows:
        return
    features = ["a", "b", "c", "d"]
    frame = pd.DataFrame(rng.standard_normal((rows, 4)), columns=features)
    frame["y"] = frame.to_numpy() @ np.array([0.5, -1.0, 2.0, 0.0]) + rng.standard_normal(rows)
    columns = [*features, "y"]
    old_off = sum(nist.count_off_grid(frame, columns, 72).values())
    too_big = int((frame.abs() >= 2.0**40).to_numpy().sum())
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        (stats,), report = hefed.data.table_statistics(frame, "y", features)
    model = hefed.solve(stats)
    reference = nist.exact_solution_of_floats(frame, features, "y")
    found = [model.intercept_exact_, *model.coef_exact_]
    digits = min(nist.agreement_digits(v, e) for v, e in zip(found, reference, strict=True))
    print(f"  N(0,1) float64, {rows} rows x 5 columns (full precision, not through CSV):")
    print(f"    old 72/40 : {old_off} value(s) off the 2^-72 grid, {too_big} beyond 2^40 -> "
          f"{'refused' if old_off or too_big else 'accepted'}")
    print(f"    new 84/64 : {report.rounding.total} value(s) rounded to the 2^-84 grid; coefficients equal to the "
          f"exact solve of the float64 data: {found == reference}; least digits of agreement {digits:.2f}")
    for line in report.rounding.lines():
        print(f"      {line}")


# --- 3. bundle sizes ------------------------------------------------------------------------------
def synthetic_frame(rng: np.random.Generator, d: int, rows: int) -> pd.DataFrame:
    """bench_pipeline.py's data: features ~ N(mu, 1)·100 with three decimals, y with four."""
    names = [f"x{j:02d}" for j in range(d)]
    X = np.round(rng.normal(loc=rng.uniform(-1, 1, d), size=(rows, d)) * 100, 3)
    y = np.round(X @ rng.normal(size=d) + 5 + rng.normal(size=rows), 4)
    return pd.DataFrame(np.column_stack([X, y]), columns=[*names, "y"])


def gas_turbine_frame(d: int) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Gas-turbine-like data at ``d`` features: the ten measurements of gt_2011.csv and their values
    one hour earlier (lag 1), target NOX; and all five years the same way (for the widths)."""
    if not (GAS_TURBINE / "gt_2011.csv").exists():
        return None
    frames = []
    for path in sorted(GAS_TURBINE.glob("gt_20*.csv")):
        raw = pd.read_csv(path)
        measures = [c for c in raw.columns if c != "NOX"]
        lagged = raw[measures].shift(1).add_suffix("_lag1")
        frame = pd.concat([raw[measures], lagged], axis=1).iloc[1:, :d].copy()
        frame["y"] = raw["NOX"].iloc[1:]
        frames.append((path.name, frame.reset_index(drop=True)))
    first = dict(frames)["gt_2011.csv"]
    return first, pd.concat([f for _, f in frames], ignore_index=True)


def tight_encoding(frame: pd.DataFrame) -> hefed.Encoding:
    """Each column's own grid and range: the smallest that hold all its values (column_bits_needed)."""
    columns = {}
    for column in frame.columns:
        frac_bits, int_bits = column_bits_needed(frame[column].to_numpy())
        columns[column] = ColumnEncoding(frac_bits, int_bits)
    return hefed.Encoding.with_columns(columns)


def bundle_row(label: str, frame: pd.DataFrame, encoding: hefed.Encoding, public_key, tmp: Path) -> tuple[int, int]:
    features = [c for c in frame.columns if c != "y"]
    planned = layout("statistics", features, "y", encoding, public_key.n)
    bundle = hefed.encrypt_statistics(frame, "y", public_key, features=features, factory_id="plant", encoding=encoding)
    size = bundle.save(tmp / "bundle.json", force=True).stat().st_size
    widths = [s.width for s in planned.slots]
    bits = sorted({encoding.value_bits_of(c) for c in [*features, "y"]})
    print(f"  {label:<50} {f'{bits[0]}-{bits[-1]}':>10} {max(widths):>9} {planned.total_bits:>9} "
          f"{planned.n_plaintexts:>6} {len(bundle.ciphertexts):>11} {size:>12}")
    assert planned.n_plaintexts == len(bundle.ciphertexts)
    return len(bundle.ciphertexts), size


def bundle_section(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    print(f"\n3. Bundle size: statistics bundle, {args.features} features, {args.bits}-bit key")
    public_key, _ = hefed.generate_keypair(args.bits, insecure_test_key=args.bits < 2048)
    d = args.features
    print(f"  {'encoding':<50} {'value bits':>10} {'max slot':>9} {'all slots':>9} {'layout':>6} "
          f"{'ciphertexts':>11} {'bundle bytes':>12}")
    synthetic = synthetic_frame(rng, d, 10_000)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        old_ct, old_size = bundle_row("old defaults 72/40 (synthetic ±400, 3 decimals)", synthetic, OLD, public_key,
                                      tmp)
        new_ct, new_size = bundle_row("new defaults 84/64 (same data)", synthetic, NEW, public_key, tmp)
        bundle_row("tight per column (column_bits_needed, same data)", synthetic, tight_encoding(synthetic),
                   public_key, tmp)
        turbine = gas_turbine_frame(d)
        if turbine is None:
            print("  (gas-turbine data absent: /work/shared/data/gas-turbine)")
        else:
            first, every_year = turbine
            bundle_row("old defaults 72/40 (gas turbine 2011 + lag 1)", first, OLD, public_key, tmp)
            bundle_row("new defaults 84/64 (gas turbine 2011 + lag 1)", first, NEW, public_key, tmp)
            bundle_row("tight per column, widths from 2011-2015", first, tight_encoding(every_year), public_key, tmp)
            tight = tight_encoding(every_year)
            print("  tight widths (frac_bits, int_bits): " + ", ".join(
                f"{c} ({tight.column(c).frac_bits}, {tight.column(c).int_bits})" for c in first.columns[:10])
                + f", y ({tight.column('y').frac_bits}, {tight.column('y').int_bits}); lagged columns alike")
    print(f"  new / old: {new_ct / old_ct:.2f}x ciphertexts ({new_ct} vs {old_ct}; the issue's limit is 1.40x), "
          f"{new_size / old_size:.2f}x bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--columns", type=int, default=2000, help="random columns per per-column draw")
    parser.add_argument("--rows", type=int, default=200, help="rows of the realistic and integer draws")
    parser.add_argument("--models", type=int, default=500, help="models of 6 and of 21 realistic columns")
    parser.add_argument("--zero-columns", type=int, default=420)
    parser.add_argument("--zero-rows", type=int, default=100_000)
    parser.add_argument("--normal-rows", type=int, default=1_000_000, help="0 to skip")
    parser.add_argument("--bits", type=int, default=2048)
    parser.add_argument("--features", type=int, default=20)
    args = parser.parse_args()

    started = time.perf_counter()
    nist_section(hefed.generate_keypair(1024, insecure_test_key=True))
    acceptance_section(args)
    bundle_section(args)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
