"""The default encoding (grid 2^-84, range 2^64) on real and realistic data (issue 13).

* The eleven NIST StRD linear-regression sets (tests/data/nist, see its README): the defaults,
  with no options, accept every set with nothing rounded, and the real protocol (three factories,
  encrypt → aggregate → decrypt → solve) gives exactly the rational least-squares solution of
  the float64 data, computed here independently with ``fractions.Fraction``.
* Realistic columns (decimal text read back from CSV, magnitudes 1e-9 … 1e15, zero-crossing
  measurements, integers up to 2^53): accepted exactly; anything finer than the grid is rounded
  and counted, and the coefficients still agree with the exact solve to 13 significant digits.

The acceptance fractions before/after (old 72/40 defaults against the new) are measured by
benchmarks/bench_encoding.py; here are the properties they rest on.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from exact_helpers import gauss_solve, normal_equations
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hefed
from hefed.errors import EncodingError, RoundedValuesWarning
from hefed.kinds import layout
from hefed.stats import ONES, ColumnEncoding, Rounding, column_bits_needed, statistics_from_arrays

NIST_DIR = Path(__file__).parent / "data" / "nist"
NIST_SETS = ["Norris", "Pontius", "NoInt1", "NoInt2", "Filip", "Longley",
             "Wampler1", "Wampler2", "Wampler3", "Wampler4", "Wampler5"]
OLD_DEFAULTS = hefed.Encoding(frac_bits=72, int_bits=40)  # before issue 13 (values off the grid were refused)
#: Every float64 from this magnitude up to 2^64 lies on the default 2^-84 grid (its last bit is 2^(e-52)).
EXACT_FROM = 2.0**-32


# --------------------------------------------------------------------------------------
# The NIST files and an independent exact least-squares solver
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NistSet:
    name: str
    degree: int  # polynomial in x of this degree, or 0 for the columns as given (Longley)
    intercept: bool
    observations: int
    certified: list[tuple[str, str, str]]  # (parameter, estimate, standard deviation) as NIST prints them
    columns: list[str]  # y, then the predictors
    rows: list[list[str]]  # the decimal text of every value

    @property
    def features(self) -> list[str]:
        if self.degree:
            return [f"x{k}" for k in range(1, self.degree + 1)]
        return self.columns[1:]


def load_nist(name: str) -> NistSet:
    header: dict[str, str] = {}
    certified: list[tuple[str, str, str]] = []
    lines = (NIST_DIR / f"{name}.dat").read_text(encoding="ascii").splitlines()
    for i, line in enumerate(lines):
        if line.startswith("#") or not line.strip():
            continue
        key, _, value = line.partition(":")
        if key == "certified":
            parameter, estimate, sd = value.split()
            certified.append((parameter, estimate, sd))
        elif key == "data":
            rows = [row.split() for row in lines[i + 1:] if row.strip()]
            columns = value.split()
            break
        else:
            header[key] = value.strip()
    model = header["model"].split()
    return NistSet(header["name"], int(model[1]) if model[0] == "polynomial" else 0, header["intercept"] == "yes",
                   int(header["observations"]), certified, columns, rows)


def nist_frame(data: NistSet) -> pd.DataFrame:
    """The set as a user's float64 table: the decimal text parsed, powers x**k computed in float64."""
    values = np.array([[float(v) for v in row] for row in data.rows])
    y = values[:, 0]
    if data.degree:
        x = values[:, 1]
        X = np.column_stack([x**k for k in range(1, data.degree + 1)])
    else:
        X = values[:, 1:]
    frame = pd.DataFrame(X, columns=data.features)
    frame["y"] = y
    return frame


def exact_least_squares(X: list[list[Fraction]], y: list[Fraction], intercept: bool) -> list[Fraction]:
    """The exact rational least-squares coefficients (intercept first, if any): the normal
    equations ZᵀZ b = Zᵀy formed and solved by Gaussian elimination in exact rationals."""
    Z = [[Fraction(1), *row] if intercept else list(row) for row in X]
    return gauss_solve(*normal_equations(Z, y))  # (not singular for these sets)


def exact_decimal_solution(data: NistSet) -> list[Fraction]:
    """Exact least squares of the decimal data as NIST states it (no float64 anywhere)."""
    values = [[Fraction(v) for v in row] for row in data.rows]
    if data.degree:
        X = [[row[1] ** k for k in range(1, data.degree + 1)] for row in values]
    else:
        X = [row[1:] for row in values]
    return exact_least_squares(X, [row[0] for row in values], data.intercept)


def exact_from_frame(frame: pd.DataFrame, features: list[str], intercept: bool = True) -> list[Fraction]:
    """Exact least squares of the float64 values themselves (every float64 is a rational)."""
    X = [[Fraction(float(v)) for v in row] for row in frame[features].to_numpy()]
    y = [Fraction(float(v)) for v in frame["y"].to_numpy()]
    return exact_least_squares(X, y, intercept)


def agreement_digits(value: Fraction | float, reference: Fraction | float) -> float:
    """Significant digits of agreement (NIST's log relative error), 16 when equal; an absolute
    error when the reference is 0."""
    value, reference = Fraction(value), Fraction(reference)
    if value == reference:
        return 16.0
    error = abs(value - reference) / (abs(reference) if reference else 1)
    return min(16.0, -math.log10(error))


def split_rows(frame: pd.DataFrame, parts: int) -> list[pd.DataFrame]:
    """Consecutive blocks of rows, one per factory (as even as possible)."""
    return [frame.iloc[block] for block in np.array_split(np.arange(len(frame)), parts)]


def federate(frame: pd.DataFrame, features: list[str], keypair, intercept: bool = True, parts: int = 3,
             encoding: hefed.Encoding | None = None):
    """The real protocol in-process: ``parts`` factories encrypt their rows, the aggregate is
    decrypted and solved (default encoding unless given). Any rounding warning is an error here."""
    public_key, private_key = keypair
    with warnings.catch_warnings():
        warnings.simplefilter("error", RoundedValuesWarning)
        bundles = [hefed.encrypt_statistics(part, "y", public_key, features=features, factory_id=f"factory{i}",
                                            encoding=encoding)
                   for i, part in enumerate(split_rows(frame, parts))]
    stats = hefed.decrypt_statistics(hefed.aggregate(bundles), private_key, allow_unsigned=True)
    return stats, hefed.solve(stats, fit_intercept=intercept)


# --------------------------------------------------------------------------------------
# 1. NIST StRD: the files are the certified sets
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NIST_SETS)
def test_nist_file_is_the_certified_set(name: str) -> None:
    data = load_nist(name)
    assert data.name == name
    assert len(data.rows) == data.observations
    assert all(len(row) == len(data.columns) for row in data.rows)
    assert len(data.certified) == len(data.features) + data.intercept
    # A mis-transcribed value cannot slip in: solving the decimal data exactly (as NIST's
    # 500-digit computation did) reproduces every certified estimate to the 15 digits printed.
    solution = exact_decimal_solution(data)
    for (parameter, estimate, _), value in zip(data.certified, solution, strict=True):
        assert agreement_digits(value, Fraction(estimate)) >= 14, (name, parameter, float(value), estimate)


@pytest.mark.parametrize(("name", "coefficients"), [("Wampler1", ["1"] * 6),
                                                     ("Wampler2", ["1", "0.1", "0.01", "0.001", "0.0001", "0.00001"])])
def test_wampler1_and_2_follow_their_formulas(name: str, coefficients: list[str]) -> None:
    data = load_nist(name)
    assert [row[1] for row in data.rows] == [str(x) for x in range(21)]
    for y, x in data.rows:
        assert Fraction(y) == sum(Fraction(c) * Fraction(x) ** k for k, c in enumerate(coefficients))


def test_norris_and_longley_match_the_copies_scipy_and_statsmodels_ship() -> None:
    scipy = pytest.importorskip("scipy")
    norris = Path(scipy.__file__).parent / "stats" / "tests" / "data" / "nist_linregress" / "Norris.dat"
    if not norris.exists():
        pytest.skip("scipy ships no Norris.dat here")
    shipped = [line.split() for line in norris.read_text().splitlines()[60:96]]
    ours = load_nist("Norris").rows
    assert [[float(v) for v in row] for row in shipped] == [[float(v) for v in row] for row in ours]
    longley = pytest.importorskip("statsmodels.datasets.longley").load_pandas().data
    assert longley.to_numpy().tolist() == [[float(v) for v in row] for row in load_nist("Longley").rows]


# --------------------------------------------------------------------------------------
# 1. NIST StRD: accepted by the defaults with nothing rounded, and federated exactly
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NIST_SETS)
def test_nist_set_federates_exactly_with_the_defaults(name: str, keypair) -> None:
    data = load_nist(name)
    frame = nist_frame(data)
    features = data.features
    with warnings.catch_warnings():
        warnings.simplefilter("error", RoundedValuesWarning)
        pooled = hefed.compute_statistics(frame, "y", features)  # the defaults, no options
    # nothing rounded: the same arrays pass where any value off the grid is refused
    assert statistics_from_arrays(frame[features].to_numpy(), frame["y"].to_numpy(), features, "y").gram == pooled.gram
    reference = exact_from_frame(frame, features, data.intercept)

    stats, model = federate(frame, features, keypair, data.intercept)
    assert stats.gram == pooled.gram
    assert stats.n == data.observations
    expected_coef = reference[1:] if data.intercept else reference
    assert model.coef_exact_ == expected_coef
    if data.intercept:
        assert model.intercept_exact_ == reference[0]
    else:
        assert model.intercept_exact_ == 0


# --------------------------------------------------------------------------------------
# 2. Realistic columns: decimal text read back from CSV
# --------------------------------------------------------------------------------------


@st.composite
def decimal_texts(draw, min_exp: int = -9, max_exp: int = 14, digits: tuple[int, ...] = (4,),
                  signed: bool = False) -> str:
    """A value as a plant file writes it: ``digits`` significant digits, magnitude in
    [10^min_exp, 10^(max_exp+1)), in positional or exponent notation."""
    d = draw(st.sampled_from(digits))
    mantissa = draw(st.integers(10 ** (d - 1), 10**d - 1))
    exponent = draw(st.integers(min_exp, max_exp)) - (d - 1)
    sign = "-" if signed and draw(st.booleans()) else ""
    if draw(st.booleans()):
        return f"{sign}{mantissa}e{exponent}"
    return sign + format(Decimal(mantissa).scaleb(exponent), "f")  # positional: 0.0003142, 31420000


def exact_gram_check(stats: hefed.SufficientStatistics, frame: pd.DataFrame) -> None:
    """Every statistic equals the exact sum over the float64 values read (nothing rounded)."""
    columns = [*stats.features, stats.target]
    values = {c: [Fraction(float(v)) for v in frame[c]] for c in columns}
    assert stats.n == len(frame)
    for i, a in enumerate(columns):
        assert stats.exact(ONES, a) == sum(values[a], Fraction(0))
        for b in columns[i:]:
            assert stats.exact(a, b) == sum((u * v for u, v in zip(values[a], values[b], strict=True)), Fraction(0))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=st.lists(st.tuples(decimal_texts(), decimal_texts(), decimal_texts(signed=True)), min_size=1,
                      max_size=8))
def test_realistic_csv_columns_are_accepted_exactly(table, tmp_path_factory) -> None:
    """Magnitudes 1e-9 … 1e15 with four significant digits, written as decimal text and read
    back by the factory's reader: accepted with nothing rounded, every statistic exact."""
    path = tmp_path_factory.mktemp("csv") / "plant.csv"
    path.write_text("energy_wh,tiny,y\n" + "".join(",".join(row) + "\n" for row in table), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RoundedValuesWarning)
        stats = hefed.compute_statistics(path, "y")
    assert stats.features == ["energy_wh", "tiny"]
    exact_gram_check(stats, pd.read_csv(path, dtype=np.float64))


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(decimal_texts(digits=(4, 5, 6), signed=True),
                      decimal_texts(min_exp=-9, max_exp=6, digits=(4, 5, 6), signed=True)))
def test_decimal_values_from_1e_9_to_1e15_lie_on_the_default_grid(text: str) -> None:
    x = np.array([float(text)])
    assert hefed.Encoding().to_grid(x, "c", rounding=None).tolist() == x.tolist()  # refused if off the grid


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=EXACT_FROM, max_value=2.0**64, exclude_max=True), st.booleans())
def test_every_float64_from_2_pow_minus_32_to_2_pow_64_is_exact(value: float, negative: bool) -> None:
    x = np.array([-value if negative else value, 0.0])
    assert hefed.Encoding().to_grid(x, "c", rounding=None).tolist() == x.tolist()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-(2**53), 2**53), st.integers(-(2**53), 2**53), st.integers(-1000, 1000)),
                min_size=1, max_size=8))
def test_integer_columns_up_to_2_pow_53_are_exact(rows) -> None:
    frame = pd.DataFrame(rows, columns=["count", "unix_ms", "y"], dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RoundedValuesWarning)
        stats = hefed.compute_statistics(frame, "y")
    exact_gram_check(stats, frame)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-(2.0**-32), max_value=2.0**-32, exclude_min=True, exclude_max=True),
                min_size=1, max_size=20))
def test_values_finer_than_the_grid_are_rounded_counted_and_bounded(values: list[float]) -> None:
    x = np.array(values)
    rounding = Rounding()
    on_grid = hefed.Encoding().to_grid(x, "c", rounding)
    off = np.ldexp(x, 84) != np.rint(np.ldexp(x, 84))  # independent: a binary digit below 2^-84
    assert rounding.counts.get("c", 0) == int(off.sum())
    assert np.all(np.abs(on_grid - x) <= 2.0**-85)  # the stated bound: half a grid step
    assert np.array_equal(on_grid[~off], x[~off])
    assert np.all(np.ldexp(on_grid, 84) == np.rint(np.ldexp(on_grid, 84)))
    if off.any():
        assert "2^-85" in rounding.bound("c")


# Named values the issue lists as refused by the old defaults.
@pytest.mark.parametrize("text", ["3.5e12", "3500000000000", "1735689600000", "9000000000000", "0.0000005",
                                  "3e-7", "9007199254740992", "9.999e14", "1.000e-9", "-4.2e-8"])
def test_values_the_old_defaults_refused_are_accepted_exactly(text: str, tmp_path) -> None:
    path = tmp_path / "plant.csv"
    path.write_text(f"value,y\n{text},1\n2,3\n0,1\n", encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RoundedValuesWarning)
        stats = hefed.compute_statistics(path, "y")
        assert stats.exact("value", "value") == Fraction(float(text)) ** 2 + 4
        with pytest.raises((EncodingError, RoundedValuesWarning)):  # before issue 13: refused
            hefed.compute_statistics(path, "y", encoding=OLD_DEFAULTS)


def test_zero_crossing_measurements_are_accepted_exactly(keypair, tmp_path) -> None:
    """N(μ, σ) with μ/σ = 0.1, written with 4 to 6 significant digits, 3 factories: exact."""
    rng = np.random.default_rng(13)
    n = 600
    raw = rng.normal(0.1, 1.0, size=(n, 3)) * np.array([1e-3, 1.0, 250.0])
    digits = rng.integers(4, 7, size=raw.shape)
    text = [[f"{v:.{d - 1}e}" for v, d in zip(row, ds, strict=True)] for row, ds in zip(raw, digits, strict=True)]
    path = tmp_path / "zero_crossing.csv"
    path.write_text("dp_kpa,temp_c,flow\n" + "".join(",".join(r) + "\n" for r in text), encoding="utf-8")
    frame = pd.read_csv(path, dtype=np.float64)
    frame["y"] = frame["dp_kpa"] * 3 - frame["temp_c"] + np.round(rng.normal(size=n), 4)
    assert (frame[["dp_kpa", "temp_c", "flow"]].abs().min() < 1e-5).any()  # values near zero are there
    features = ["dp_kpa", "temp_c", "flow"]
    _, model = federate(frame, features, keypair)
    reference = exact_from_frame(frame, features)
    assert [model.intercept_exact_, *model.coef_exact_] == reference


# --------------------------------------------------------------------------------------
# 2. Full-precision N(0,1) data: a few values near zero may be rounded; counted, 13 digits
# --------------------------------------------------------------------------------------


def count_off_grid(frame: pd.DataFrame, columns: list[str], frac_bits: int = 84) -> dict[str, int]:
    counts = {}
    for c in columns:
        scaled = np.ldexp(frame[c].to_numpy(), frac_bits)
        off = int((scaled != np.rint(scaled)).sum())
        if off:
            counts[c] = off
    return counts


def test_rounded_values_are_counted_and_coefficients_keep_13_digits(keypair) -> None:
    rng = np.random.default_rng(7)
    n = 1500
    features = ["a", "b", "c"]
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=features)
    # values near zero as full-precision float64 (a difference of two readings, a residual)
    frame.loc[[3, 500, 1200], "a"] = [1.234567890123e-12, -7.7e-15, 3.3e-11]
    frame.loc[[42], "b"] = [-2.0e-13 / 3]
    frame["y"] = frame @ np.array([1.5, -2.0, 0.25]) + rng.normal(size=n)
    expected_counts = count_off_grid(frame, [*features, "y"])
    assert expected_counts  # this test is about rounding

    result = hefed.encrypt_table(frame, "y", keypair[0], features=features, factory_id="plant")
    report = result.report
    assert report is not None
    assert report.rounding.counts == expected_counts
    for column, count in expected_counts.items():
        assert report.rounding.largest_change[column] <= 2.0**-85
        assert f"{count} value(s) of {column!r}" in report.rounding.bound(column)
    with pytest.warns(RoundedValuesWarning, match="rounded to the 2\\^-84 grid"):
        hefed.compute_statistics(frame, "y", features)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RoundedValuesWarning)
        stats = hefed.compute_statistics(frame, "y", features)
    model = hefed.solve(stats)
    reference = exact_from_frame(frame, features)
    for value, exact in zip([model.intercept_exact_, *model.coef_exact_], reference, strict=True):
        assert agreement_digits(value, exact) >= 13


def exact_solution_of_floats(frame: pd.DataFrame, features: list[str], target: str) -> list[Fraction]:
    """The exact least-squares solution (intercept first) of the float64 columns: the exact Gram of
    (1, features, target), then Gauss-Jordan elimination on the normal equations in rationals."""
    gram = _exact_gram_of_floats([frame[c].to_numpy() for c in [*features, target]])
    p = len(features) + 1
    A = [[*gram[i][:p], gram[i][p]] for i in range(p)]
    for c in range(p):
        for r in range(p):
            if r != c and A[r][c]:
                f = A[r][c] / A[c][c]
                A[r] = [a - f * b for a, b in zip(A[r], A[c], strict=True)]
    return [A[i][p] / A[i][i] for i in range(p)]


def _exact_gram_of_floats(columns: list[np.ndarray]) -> list[list[Fraction]]:
    """Σ a·b over the rows, exactly, for the columns [1, *columns] (each value an integer times a
    common power of two, found from the values themselves: independent of hefed's encoding)."""
    mantissas, shifts = [], []
    for x in columns:
        m, e = np.frexp(x)
        ints = np.ldexp(m, 53).astype(np.int64)  # exact: 53-bit mantissas
        exps = e.astype(np.int64) - 53
        low = int(exps[ints != 0].min())
        mantissas.append([int(i) << int(k - low) for i, k in zip(ints.tolist(), exps.tolist(), strict=True)])
        shifts.append(low)
    n = len(columns[0])
    ones = [1] * n
    cols = [ones, *mantissas]
    scale = [0, *shifts]
    m = len(cols)
    gram = [[Fraction(0)] * m for _ in range(m)]
    for i in range(m):
        for j in range(i, m):
            total = sum(a * b for a, b in zip(cols[i], cols[j], strict=True)) if i else sum(cols[j])
            gram[i][j] = gram[j][i] = Fraction(total) * Fraction(2) ** (scale[i] + scale[j])
    return gram


@pytest.mark.slow
def test_one_million_rows_of_standard_normal_data(keypair) -> None:
    """N(0,1) float64, 1M rows × 4 features, 3 factories: rounding (if any) counted; coefficients
    agree with the exact solve of the float64 data to at least 13 significant digits."""
    rng = np.random.default_rng(2026)
    n, features = 1_000_000, ["a", "b", "c", "d"]
    frame = pd.DataFrame(rng.standard_normal(size=(n, 4)), columns=features)
    frame["y"] = frame.to_numpy() @ np.array([0.5, -1.0, 2.0, 0.0]) + rng.standard_normal(n)
    expected_counts = count_off_grid(frame, [*features, "y"])

    public_key, private_key = keypair
    bundles, counted = [], Rounding()
    for i, part in enumerate(split_rows(frame, 3)):
        result = hefed.encrypt_table(part, "y", public_key, features=features, factory_id=f"factory{i}")
        assert result.report is not None
        counted.merge(result.report.rounding)
        bundles.append(result.bundle)
    assert counted.counts == expected_counts
    model = hefed.solve(hefed.decrypt_statistics(hefed.aggregate(bundles), private_key, allow_unsigned=True))

    reference = exact_solution_of_floats(frame, features, "y")
    found = [model.intercept_exact_, *model.coef_exact_]
    if not expected_counts:
        assert found == reference
    for value, exact in zip(found, reference, strict=True):
        assert agreement_digits(value, exact) >= 13


# --------------------------------------------------------------------------------------
# 3. Bundle size: the limit at 20 features and a 2048-bit key
# --------------------------------------------------------------------------------------


def test_bundle_at_20_features_and_2048_bits_stays_within_40_percent_of_the_old_33_ciphertexts() -> None:
    features = [f"x{j:02d}" for j in range(20)]
    n = (1 << 2047) + 1  # the layout depends on the modulus's size only
    old = layout("statistics", features, "y", OLD_DEFAULTS, n).n_plaintexts
    new = layout("statistics", features, "y", hefed.Encoding(), n).n_plaintexts
    # 33 and 42 before issue 14 (benchmarks/RESULTS.md); each now packs 253 support values more (a 0/1 per pair of
    # columns, a few bits each: hefed.stats._support), two ciphertexts at the old widths and one at the new
    assert old == 33 + 2  # benchmarks/RESULTS.md, before issue 13
    assert new <= 1.4 * old
    assert new == 42 + 1
    # tight per-column widths win bits back: 3-decimal values below 2^9 need about 46 + 9 bits
    tight = hefed.Encoding.with_columns({c: ColumnEncoding(46, 9) for c in [*features, "y"]})
    assert layout("statistics", features, "y", tight, n).n_plaintexts < old


def test_tight_per_column_encodings_from_column_bits_needed_solve_exactly(keypair) -> None:
    frame = pd.DataFrame({"tonnes": [1000.0, 2000.0, 5000.0, 7000.0, 3000.0, 4000.0],
                          "ratio": [1.5, 2.25, 3.0, 0.5, 1.0, 0.75],
                          "y": [1.0, 2.0, 3.5, 4.0, 8.0, 5.5]})
    tight = hefed.Encoding.with_columns({c: ColumnEncoding(*column_bits_needed(frame[c])) for c in frame.columns})
    # round thousands need no fraction bits (grids coarser than 1 are not offered: exact rationals need 2^k, k >= 0)
    assert tight.column("tonnes") == ColumnEncoding(0, 13) and tight.column("ratio") == ColumnEncoding(2, 2)
    _, model = federate(frame, ["tonnes", "ratio"], keypair, encoding=tight)
    assert [model.intercept_exact_, *model.coef_exact_] == exact_from_frame(frame, ["tonnes", "ratio"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300), min_size=1,
                max_size=20))
def test_column_bits_needed_is_the_tightest_grid_and_range_that_hold_every_value(values) -> None:
    """Against exact rationals: every value is a multiple of 2^-frac_bits and below 2^int_bits; one bit less of
    either would lose a value (frac_bits and int_bits never below 0 and 1)."""
    frac_bits, int_bits = column_bits_needed(values)
    exact = [Fraction(v) for v in values if v != 0]
    assert frac_bits >= 0 and int_bits >= 1
    assert all((x * 2**frac_bits).denominator == 1 and abs(x) < 2**int_bits for x in exact)
    if frac_bits > 0:
        assert any((x * 2 ** (frac_bits - 1)).denominator != 1 for x in exact)
    if int_bits > 1:
        assert any(abs(x) >= 2 ** (int_bits - 1) for x in exact)
