"""Statistics without extra copies (issue 15): the table and array paths copy the data once, into the canonical
block, and still give the exact integers, refusing (or, when asked, rounding and counting) every value that does
not fit the encoding.

The property test compares every path with a reference in Python integers and Fractions on small random tables
whose values are drawn at the edges of the encoding (the finest grid point, the largest value in range, zeros of
both signs, magnitudes far apart in one column), with per-column grids, and features in unsorted order.
"""

from __future__ import annotations

import math
import tracemalloc
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hefed.data import Table, compute_statistics, stream_statistics
from hefed.errors import DataError, EncodingError, RoundedValuesWarning
from hefed.primitives.exactgram import bit_range
from hefed.stats import ColumnEncoding, Encoding, Rounding, SupportAccumulator, statistics_from_arrays

FEATURES = ["b", "c", "a"]  # not sorted: the block's rows follow the canonical (sorted) order
TARGET = "y"


def reference_gram(X: np.ndarray, y: np.ndarray, features: list[str], target: str, encoding: Encoding,
                   rounding: bool = False) -> list[list[int]]:
    """ZᵀZ of [1, X·2^F, y·2^F] in canonical order, in Python integers from exact Fractions: a value off its grid
    raises ValueError (or, with ``rounding``, goes to the nearest grid point, ties to even)."""
    names = sorted(features)
    data = {f: X[:, j] for j, f in enumerate(features)}
    data[target] = y
    columns = [[1] * len(y)]
    for name in [*names, target]:
        scale = 1 << encoding.frac_bits_of(name)
        column = []
        for x in data[name].tolist():
            value = Fraction(x) * scale
            if value.denominator != 1 and not rounding:
                raise ValueError("off the grid")
            column.append(round(value))  # Fraction rounds half to even
        columns.append(column)
    return [[sum(u * v for u, v in zip(a, b, strict=True)) for b in columns] for a in columns]


@st.composite
def on_grid(draw: st.DrawFn, frac_bits: int, int_bits: int) -> float:
    """A float64 on the grid 2^-frac_bits with |x| < 2^int_bits, often at an edge of the encoding."""
    kind = draw(st.sampled_from(["zero", "finest", "largest", "mixed", "any", "small int"]))
    sign = draw(st.sampled_from([1.0, -1.0]))
    if kind == "zero":
        return sign * 0.0
    if kind == "finest":
        return sign * math.ldexp(draw(st.integers(1, 7)) % (1 << (frac_bits + int_bits)) or 1, -frac_bits)
    if kind == "largest":  # the largest grid point below 2^int_bits, or one just under it
        step = max(int_bits - 53, -frac_bits)
        return sign * (math.ldexp(1.0, int_bits) - math.ldexp(draw(st.integers(1, 3)), step))
    if kind == "small int":
        bound = (1 << min(int_bits, 10)) - 1
        return float(draw(st.integers(-bound, bound)))
    top = draw(st.integers(-frac_bits + 1, int_bits))  # |x| < 2^top
    if kind == "mixed":  # a big and a tiny digit in one value: many Ozaki slices
        low = max(-frac_bits, top - 53)
        return sign * (math.ldexp(1.0, top - 1) + (math.ldexp(1.0, low) if low < top - 1 else 0.0))
    lowest = max(-frac_bits, top - 53)
    mantissa = draw(st.integers(0, (1 << (top - lowest)) - 1))
    return sign * math.ldexp(mantissa, lowest)


@st.composite
def tables(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, Encoding]:
    default = (draw(st.sampled_from([0, 3, 30, 84])), draw(st.sampled_from([1, 8, 40, 64])))
    own = {}
    for name in draw(st.lists(st.sampled_from([*FEATURES, TARGET]), unique=True, max_size=2)):
        own[name] = ColumnEncoding(draw(st.sampled_from([0, 10, 120])), draw(st.sampled_from([2, 20, 70])))
    encoding = Encoding.with_columns(own, frac_bits=default[0], int_bits=default[1])
    n = draw(st.integers(1, 12))
    columns = []
    for name in [*FEATURES, TARGET]:
        grid = encoding.column(name)
        columns.append([draw(on_grid(grid.frac_bits, grid.int_bits)) for _ in range(n)])
    data = np.array(columns, dtype=np.float64).T
    return data[:, :-1].copy(), data[:, -1].copy(), encoding


def _frame(X: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({**{f: X[:, j] for j, f in enumerate(FEATURES)}, TARGET: y})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_every_path_gives_the_exact_integers(table: tuple[np.ndarray, np.ndarray, Encoding]) -> None:
    X, y, encoding = table
    before = X.copy(), y.copy()
    expected = reference_gram(X, y, FEATURES, TARGET, encoding)
    frame = _frame(X, y)
    assert statistics_from_arrays(X, y, FEATURES, TARGET, encoding).gram == expected
    assert compute_statistics(frame, TARGET, FEATURES, encoding).gram == expected
    (stats,), _, _ = Table(frame, TARGET, FEATURES).statistics(encoding)  # what encrypt_table computes
    assert stats.gram == expected
    # the caller's arrays are read, never changed (they are no longer copied before use)
    assert np.array_equal(X, before[0]) and np.array_equal(y, before[1])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(tables())
def test_a_streamed_file_gives_the_exact_integers(tmp_path: Path, table: tuple[np.ndarray, np.ndarray, Encoding]
                                                  ) -> None:
    X, y, encoding = table
    path = tmp_path / "t.parquet"
    _frame(X, y).to_parquet(path, index=False)
    stats, _ = stream_statistics(path, TARGET, FEATURES, encoding)
    assert stats.gram == reference_gram(X, y, FEATURES, TARGET, encoding)


@settings(max_examples=100, deadline=None)
@given(tables(), st.data())
def test_values_off_the_grid_are_refused_or_rounded_and_counted(table: tuple[np.ndarray, np.ndarray, Encoding],
                                                                data: st.DataObject) -> None:
    X, y, encoding = table
    j = data.draw(st.integers(0, len(FEATURES) - 1))
    i = data.draw(st.integers(0, len(y) - 1))
    grid = encoding.column(FEATURES[j])
    X = X.copy()
    below = data.draw(st.integers(1, 3))  # binary digits below the grid (1: a tie, rounded to even)
    odd = data.draw(st.sampled_from([1, -1] if below == 1 else [1, -1, 3, -3]))
    X[i, j] = math.ldexp(odd, -grid.frac_bits - below)  # |x| < 2^-frac_bits: in range
    before = X.copy()
    with pytest.raises(EncodingError, match=rf"column '{FEATURES[j]}', row {i + 1}: .* below 2\^-{grid.frac_bits}"):
        statistics_from_arrays(X, y, FEATURES, TARGET, encoding)
    expected = reference_gram(X, y, FEATURES, TARGET, encoding, rounding=True)
    rounding = Rounding()
    assert statistics_from_arrays(X, y, FEATURES, TARGET, encoding, rounding=rounding).gram == expected
    assert rounding.counts[FEATURES[j]] >= 1
    # a factory's table is rounded to the grid and the values counted, never silently
    with pytest.warns(RoundedValuesWarning, match=rf"'{FEATURES[j]}' rounded to the 2\^-{grid.frac_bits} grid"):
        assert compute_statistics(_frame(X, y), TARGET, FEATURES, encoding).gram == expected
    (stats,), report, _ = Table(_frame(X, y), TARGET, FEATURES).statistics(encoding)
    assert stats.gram == expected and report is not None and report.rounding.counts[FEATURES[j]] >= 1
    assert np.array_equal(X, before)  # rounded in the block, never in the caller's arrays


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["feature", "target"])
def test_values_not_finite_are_refused_naming_the_cell(bad: float, where: str) -> None:
    rng = np.random.default_rng(1)
    X, y = np.round(rng.normal(size=(50, 3)), 2), np.round(rng.normal(size=50), 2)
    (X[:, 1] if where == "feature" else y)[17] = bad
    name = FEATURES[1] if where == "feature" else TARGET
    with pytest.raises(DataError, match=rf"column '{name}', row 18: value is"):
        compute_statistics(_frame(X, y), TARGET, FEATURES)
    with pytest.raises(EncodingError, match=rf"column '{name}', row 18: value {bad!r} is not finite"):
        statistics_from_arrays(X, y, FEATURES, TARGET)


def test_values_out_of_range_are_refused() -> None:
    X, y = np.ones((5, 3)), np.ones(5)
    X[3, 2] = 2.0**20
    encoding = Encoding(frac_bits=4, int_bits=20)
    with pytest.raises(EncodingError, match=r"column 'a', row 4: .* reaches 2\^20"):
        compute_statistics(_frame(X, y), TARGET, FEATURES, encoding)
    X[3, 2] = 2.0**20 - 2.0**-4  # the largest value on the grid
    assert compute_statistics(_frame(X, y), TARGET, FEATURES, encoding).gram == \
        reference_gram(X, y, FEATURES, TARGET, encoding)


def test_an_error_in_an_earlier_column_is_reported_first() -> None:
    """select_block checks the columns in the order select_xy does: a missing value in the first feature is
    reported before a text cell in a later one."""
    frame = _frame(np.ones((4, 3)), np.ones(4)).astype({"a": object})
    frame.loc[2, "b"] = np.nan
    frame.loc[1, "a"] = "x"
    with pytest.raises(DataError, match=r"column 'b', row 3: value is missing"):
        compute_statistics(frame, TARGET, FEATURES)


def test_bit_range_reads_in_pieces_as_a_whole() -> None:
    """bit_range reads the block through a small buffer; lo and hi are those of the whole columns."""
    rng = np.random.default_rng(3)
    block = np.round(rng.normal(size=(5, 300_001)) * 1000, 2)
    block[1] = 0.0
    block[2, :-1] = 0.0
    block[2, -1] = -0.0
    block[3, 123_456] = 2.0**-30  # the smallest magnitude, far from the first piece
    block[4, 299_999] = -(2.0**50)  # the largest
    lo, hi = bit_range(block)
    magnitude = np.abs(block)
    for j in range(5):
        nonzero = magnitude[j][magnitude[j] != 0]
        if not len(nonzero):
            assert (lo[j], hi[j]) == (0, 0)
            continue
        assert hi[j] == np.frexp(nonzero.max())[1] and lo[j] == np.frexp(nonzero.min())[1] - 53
    block[0, 250_000] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        bit_range(block)


def _peak(function: object, *args: object) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        function(*args)  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def test_statistics_copy_the_data_once() -> None:
    """Peak memory (numpy reports its buffers to tracemalloc) while computing statistics of n × 8 values grows
    by about one copy of the data per row: the canonical block (10/9 of the data: the ones and the target ride
    along) plus the table path's row numbers (one int64 a row). Comparing two sizes cancels the fixed-size
    scratch (bit_range's buffer, the Gram's chunk buffers, the support's pieces). Before issue 15 the growth
    was 4.4 copies from a frame (select_xy's X, a float64 copy of it, the block, bit_range's |block| and its
    mask) and 3.4 from arrays; 5.4 through a Table, whose cleaning copied the frame once more."""
    rng = np.random.default_rng(0)
    features = [f"x{j}" for j in range(7, -1, -1)]  # unsorted: rows move into canonical order
    peaks: dict[str, list[int]] = {"DataFrame": [], "arrays": [], "Table": []}
    sizes = []
    for n in (1_000_000, 2_000_000):  # both past the support's piece size (4M values)
        # no zeros: the support's product (fixed-size pieces, but only where a column has zeros) stays out
        X = np.round(rng.uniform(0.5, 100, size=(n, 8)), 3)
        y = np.round(X.sum(axis=1), 3)
        frame = pd.DataFrame({**{f: X[:, j] for j, f in enumerate(features)}, TARGET: y})
        peaks["DataFrame"].append(_peak(compute_statistics, frame, TARGET, features))
        peaks["arrays"].append(_peak(statistics_from_arrays, X, y, features, TARGET))
        # encrypt_table's path, with the default cleaning (which changes nothing here, so copies nothing)
        peaks["Table"].append(_peak(Table(frame, TARGET, features).statistics, Encoding()))
        sizes.append(X.nbytes + y.nbytes)
    for label, (small, large) in peaks.items():
        copies = (large - small) / (sizes[1] - sizes[0])
        assert copies < 1.3, f"{label}: {copies:.2f} copies of the data"


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 6), st.integers(1, 30), st.data())
def test_support_skips_the_product_only_where_it_is_implied(columns: int, rows: int, data: st.DataObject) -> None:
    """The support accumulator multiplies only the columns with zeros in some rows; its indicators equal the
    brute-force "some row has both non-zero", reference levels (1 − Σ dummies) included, over several blocks."""
    groups = data.draw(st.sampled_from([[], [[1]], [[1, 2]], [[0, 1], [2]]]))
    groups = [g for g in groups if max(g) < columns]
    cells = st.sampled_from([0.0, 0.0, 1.0, -2.5, 0.5])
    blocks = [np.array(data.draw(st.lists(st.lists(cells, min_size=n, max_size=n), min_size=columns,
                                          max_size=columns)), dtype=np.float64).reshape(columns, n)
              for n in data.draw(st.lists(st.integers(0, rows), min_size=1, max_size=3))]
    support = SupportAccumulator(columns, groups)
    for block in blocks:
        support.update(block)
    whole = np.concatenate(blocks, axis=1)
    indicators = [whole[c] != 0 for c in range(columns)]
    indicators += [(1.0 - whole[g].sum(axis=0)) != 0 for g in groups]
    expected = [int(bool((indicators[a] & indicators[b]).any()))
                for a in range(len(indicators)) for b in range(a, len(indicators))]
    assert support.result() == expected
