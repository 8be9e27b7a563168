"""The exact weighted Gram primitive (WLS, robust meats, IRLS rounds) against plain Python sums."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hefed.primitives.exactgram import integer_columns, weighted_gram

_big = st.integers(min_value=-(1 << 120), max_value=1 << 120)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5).flatmap(lambda m: st.lists(st.tuples(st.lists(_big, min_size=m, max_size=m), _big),
                                                   min_size=1, max_size=40)))
def test_weighted_gram_is_the_exact_sum(rows):
    z = [r for r, _ in rows]
    w = [v for _, v in rows]
    m = len(z[0])
    expected = [[sum(wi * zi[a] * zi[b] for zi, wi in zip(z, w, strict=True)) for b in range(m)] for a in range(m)]
    assert weighted_gram(z, w) == expected


def test_weighted_gram_spans_blocks():
    rng = np.random.default_rng(1)
    z = rng.integers(-1000, 1000, size=(9000, 3))
    w = rng.integers(0, 1 << 40, size=9000)
    expected = [[sum(int(wi) * int(zi[a]) * int(zi[b]) for zi, wi in zip(z, w, strict=True)) for b in range(3)]
                for a in range(3)]
    assert weighted_gram(z, w) == expected


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-(1 << 52), 1 << 52), min_size=1, max_size=20), st.integers(0, 30))
def test_integer_columns_are_exact(ints, bits):
    values = np.array([[np.ldexp(float(v), -bits)] for v in ints])
    assert [int(v) for v in integer_columns(values, [bits])[:, 0]] == ints


def test_integer_columns_refuse_values_off_their_grid():
    with pytest.raises(ValueError):
        integer_columns(np.array([[0.3]]), [4])
    with pytest.raises(ValueError, match="shape|weight"):
        weighted_gram([[1, 2]], [1, 2])
