"""Per-column encodings (issue 13): each column its own grid 2^-frac_bits and range |x| < 2^int_bits.

Property tests against exact rational arithmetic: the statistics are the exact sums of the values as
placed on each column's grid (a round trip with nothing lost but the counted rounding), every value
moved to its grid is counted with a true bound on the change, and the packed slots of the widest
contribution a column's range allows do not overflow when the declared maximum number of factories
add theirs.
"""

from __future__ import annotations

import warnings
from fractions import Fraction

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from hefed.data import table_statistics
from hefed.errors import RoundedValuesWarning
from hefed.kinds import STATISTICS, layout
from hefed.stats import ONES, ColumnEncoding, Encoding

#: an odd modulus of a 2048-bit key's size: layouts depend only on its bit length
N_2048 = (1 << 2047) + 1


@st.composite
def encoded_tables(draw: st.DrawFn) -> tuple[pd.DataFrame, Encoding, list[str]]:
    k = draw(st.integers(1, 4))
    names = [f"x{i}" for i in range(k)] + ["y"]
    columns = {name: ColumnEncoding(draw(st.integers(0, 40)), draw(st.integers(1, 30))) for name in names}
    encoding = Encoding.with_columns({n: c for n, c in columns.items() if draw(st.booleans())},
                                     frac_bits=draw(st.integers(0, 40)), int_bits=draw(st.integers(1, 30)))
    rows = draw(st.integers(2, 10))
    frame = {}
    for name in names:
        top = 2.0 ** (encoding.column(name).int_bits - 1)  # room for rounding up to stay in range
        frame[name] = draw(st.lists(st.floats(-top, top, allow_nan=False, allow_subnormal=False),
                                    min_size=rows, max_size=rows))
    return pd.DataFrame(frame), encoding, names[:-1]


def _on_grid(x: float, frac_bits: int) -> Fraction:
    """The grid point a value is encoded as: the nearest multiple of 2^-frac_bits, ties to even."""
    return Fraction(round(Fraction(x) * 2**frac_bits), 2**frac_bits)


@settings(max_examples=120, deadline=None)
@given(encoded_tables())
def test_statistics_are_the_exact_sums_of_the_values_on_each_columns_grid(table) -> None:
    frame, encoding, features = table
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RoundedValuesWarning)
        (stats,), report = table_statistics(frame, "y", features, encoding)
    grid = {c: [_on_grid(x, encoding.column(c).frac_bits) for x in frame[c]] for c in frame.columns}
    grid[ONES] = [Fraction(1)] * len(frame)
    for a in [ONES, *features, "y"]:
        for b in [ONES, *features, "y"]:
            assert stats.exact(a, b) == sum(p * q for p, q in zip(grid[a], grid[b], strict=True)), (a, b)
    assert stats.scale_bits == [0, *(encoding.column(c).frac_bits for c in stats.columns[1:])]
    # every value moved is counted, per column, and moved by at most half a grid step
    for c in frame.columns:
        moved = [Fraction(x) != g for x, g in zip(frame[c], grid[c], strict=True)]
        assert report.rounding.counts.get(c, 0) == sum(moved)
        if any(moved):
            step = Fraction(1, 2 ** encoding.column(c).frac_bits)
            largest = max(abs(Fraction(x) - g) for x, g in zip(frame[c], grid[c], strict=True))
            assert largest <= step / 2 and Fraction(report.rounding.largest_change[c]) <= step / 2


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_the_widest_contributions_of_the_declared_maximum_of_factories_do_not_overflow(data) -> None:
    """Every factory at the edge of each column's range with the most rows the encoding allows: the packed
    sum of max_contributors of them unpacks to the exact sum (packing is linear below the slot widths)."""
    k = data.draw(st.integers(1, 20))
    names = [f"x{i}" for i in range(k)] + ["y"]
    columns = {n: ColumnEncoding(data.draw(st.integers(0, 84)), data.draw(st.integers(1, 64)))
               for n in names if data.draw(st.booleans())}
    encoding = Encoding.with_columns(columns, max_contributors=data.draw(st.sampled_from([1, 3, 100, 10_000])))
    packing = layout(STATISTICS, names[:-1], "y", encoding, N_2048)
    bounds = STATISTICS.bounds(names[:-1], "y", encoding, {})
    worst = [hi if data.draw(st.booleans()) else lo for lo, hi in bounds] + [1]  # and the counter
    packed = packing.pack(worst)
    total = [encoding.max_contributors * v for v in packed]
    assert all(0 <= v < N_2048 for v in total)
    assert packing.unpack(total, encoding.max_contributors) == [encoding.max_contributors * v for v in worst]
