"""Exactness properties, checked against exact rational arithmetic (``fractions.Fraction``).

Nothing here compares against another floating-point solver: the reference
for every statistic and every coefficient is computed independently of hefed
with Python's exact rationals (in this file and ``tests/exact_helpers.py``),
and hefed must match it exactly (``==``).
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from exact_helpers import solve_or_none
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import hefed
from hefed.errors import SingularSystemError
from hefed.primitives import exactgram
from hefed.primitives.exactgram import CHUNK_ROWS, GramAccumulator
from hefed.primitives.packing import Layout, PackingError
from hefed.stats import ONES

FRAC_BITS = hefed.Encoding().frac_bits  # 72
INT_BITS = hefed.Encoding().int_bits  # 40

# --------------------------------------------------------------------------------------
# Strategies: float64 values exactly encodable with the default encoding
# (|x| < 2^40 and no binary digit below 2^-72).
# --------------------------------------------------------------------------------------


@st.composite
def dyadic_floats(draw) -> float:
    """m · 2^e with a k-bit mantissa m (1 <= k <= 53): few-bit and full-mantissa values,
    exponents spread over the whole range (2^-72 … 2^40, i.e. ~34 decades)."""
    k = draw(st.integers(1, 53))
    m = draw(st.integers(1 << (k - 1), (1 << k) - 1))
    e = draw(st.integers(-FRAC_BITS, INT_BITS - k))
    x = math.ldexp(m, e)
    return -x if draw(st.booleans()) else x


def snap(x: float) -> float:
    """Round x to the 2^-72 grid (a no-op for every float64 of magnitude >= 2^-20)."""
    return math.ldexp(round(math.ldexp(x, FRAC_BITS)), -FRAC_BITS)


encodable = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 2.0**-72, -(2.0**-72), 2.0**40 - 2.0**-12, -(2.0**40) + 2.0**-12]),
    dyadic_floats(),
    st.floats(
        min_value=-(2.0**INT_BITS), max_value=2.0**INT_BITS, exclude_min=True, exclude_max=True,
        allow_nan=False, allow_infinity=False,
    ).map(snap),
)

FEATURE_POOL = ["delta", "alpha", "charlie", "bravo"]


@st.composite
def tables(draw, min_rows: int = 1, max_rows: int = 25, max_features: int = 4, elements=encodable):
    """(frame, features in the user's order, target): the user's order differs from sorted order."""
    names = draw(st.permutations(FEATURE_POOL))
    d = draw(st.integers(1, max_features))
    features = list(names[:d])
    n = draw(st.integers(min_rows, max_rows))
    rows = draw(st.lists(st.lists(elements, min_size=d + 1, max_size=d + 1), min_size=n, max_size=n))
    frame = pd.DataFrame(rows, columns=[*features, "y"], dtype=np.float64)
    return frame, features, "y"


# --------------------------------------------------------------------------------------
# Independent exact references
# --------------------------------------------------------------------------------------


def fractions_of(values) -> list[Fraction]:
    return [Fraction(float(v)) for v in values]


def exact_cross(frame: pd.DataFrame, a: str, b: str) -> Fraction:
    col = {c: fractions_of(frame[c]) for c in (a, b) if c != ONES}
    ones = [Fraction(1)] * len(frame)
    xa, xb = col.get(a, ones), col.get(b, ones)
    return sum((u * v for u, v in zip(xa, xb, strict=True)), Fraction(0))


def exact_least_squares(
    frame: pd.DataFrame, features: list[str], target: str, ridge: Fraction = Fraction(0), fit_intercept: bool = True
) -> tuple[list[Fraction], Fraction] | None:
    """Exact (coefficients in ``features`` order, intercept) of OLS/ridge; intercept unpenalised."""
    cols = [fractions_of(frame[f]) for f in features]
    y = fractions_of(frame[target])
    n = len(frame)
    design = ([[Fraction(1)] * n] if fit_intercept else []) + cols
    p = len(design)
    normal = [
        [sum((u * v for u, v in zip(design[i], design[j], strict=True)), Fraction(0)) for j in range(p)]
        for i in range(p)
    ]
    rhs = [sum((u * v for u, v in zip(design[i], y, strict=True)), Fraction(0)) for i in range(p)]
    for i in range(1 if fit_intercept else 0, p):
        normal[i][i] += ridge
    solution = solve_or_none(normal, rhs)
    if solution is None:
        return None
    if fit_intercept:
        return solution[1:], solution[0]
    return solution, Fraction(0)


def fits_float(values) -> bool:
    return all(abs(v) < Fraction(2) ** 1023 for v in values)


def assert_model_matches_exact(model: hefed.LinearModel, expected, features: list[str]) -> None:
    coef, intercept = expected
    assert list(model.feature_names_in_) == features
    assert model.coef_exact_ == coef
    assert model.intercept_exact_ == intercept
    # The reported float64 values are the exact solution rounded once (to nearest).
    assert model.coef_.tolist() == [float(c) for c in coef]
    assert model.intercept_ == float(intercept)


# --------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------


@settings(max_examples=120, deadline=None)
@given(tables())
def test_statistics_equal_exact_rational_sums(table):
    frame, features, target = table
    stats = hefed.compute_statistics(frame, target, features)
    assert stats.n == len(frame)
    assert stats.features == features
    columns = [ONES, *features, target]
    for a in columns:
        for b in columns:
            assert stats.exact(a, b) == exact_cross(frame, a, b), (a, b)
    for i, row in enumerate(stats.gram):
        for j, value in enumerate(row):
            assert isinstance(value, int)
            assert value == stats.gram[j][i]


def test_statistics_exact_across_many_chunks_and_decades():
    """More rows than one exact GEMM chunk, values spanning 18 decades, full mantissas."""
    rng = np.random.default_rng(7)
    n = 2 * CHUNK_ROWS + 123
    cols = {}
    for name in ("b", "a", "c"):
        mantissa = rng.uniform(1.0, 2.0, n)  # 53-bit mantissas
        exponent = rng.integers(-20, 39, n)  # ulp >= 2^-72, |x| < 2^40
        sign = rng.choice([-1.0, 1.0], n)
        cols[name] = np.ldexp(mantissa, exponent) * sign
    frame = pd.DataFrame(cols)
    stats = hefed.compute_statistics(frame, "c", ["b", "a"])
    scaled = {}
    for name in cols:
        ints = []
        for v in frame[name]:
            f = Fraction(float(v)) * 2**FRAC_BITS
            assert f.denominator == 1
            ints.append(f.numerator)
        scaled[name] = ints
    scaled[ONES] = [1] * n
    scale = {ONES: 0, "a": FRAC_BITS, "b": FRAC_BITS, "c": FRAC_BITS}
    for a in (ONES, "a", "b", "c"):
        for b in (ONES, "a", "b", "c"):
            total = sum(u * v for u, v in zip(scaled[a], scaled[b], strict=True))
            assert stats.exact(a, b) == Fraction(total, 2 ** (scale[a] + scale[b])), (a, b)


def test_gram_accumulator_exact_at_worst_case_magnitudes_past_int64_flush(monkeypatch):
    """Largest encodable magnitudes, mixed signs, more chunks than the int64 accumulator may
    sum before it is flushed to Python ints (the flush interval shrunk to 2 to get there)."""
    monkeypatch.setattr(exactgram, "_FLUSH_EVERY", 2)
    v = 2.0**112 - 2.0**59  # largest integer-valued float64 below 2^112 (|x| < 2^40 encoded)
    chunks = 5
    block = np.empty((chunks * CHUNK_ROWS + 3, 3))
    block[:, 0] = 1.0
    block[:, 1] = v
    block[:, 2] = -v
    acc = GramAccumulator([0, 0, 0])
    acc.update(block)
    acc.update(block[:7])
    gram = acc.result()
    rows, iv = len(block) + 7, int(v)
    assert gram[0] == [rows, rows * iv, -rows * iv]
    assert gram[1] == [rows * iv, rows * iv * iv, -rows * iv * iv]
    assert gram[2] == [-rows * iv, -rows * iv * iv, rows * iv * iv]


def _float_strategy():
    """Floats of every magnitude hefed may see, from 2^-72 (the default encoding's last bit)
    to 2^40, including exact powers of two, zeros and negatives."""
    mantissa = st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    exponent = st.integers(min_value=-72, max_value=-13)
    return st.one_of(
        st.builds(lambda m, e: float(m) * 2.0**e, mantissa, exponent),
        st.sampled_from([0.0, 1.0, -1.0, 2.0**-72, -(2.0**39), 2.0**40 - 2.0**-12]),
        st.floats(min_value=-1e6, max_value=1e6).filter(lambda x: x == 0 or abs(x) >= 2**-19),
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_float_strategy(), min_size=3, max_size=3), min_size=1, max_size=40),
       st.integers(min_value=1, max_value=4))
def test_gram_accumulator_matches_python_integers_whatever_the_bit_ranges(rows, pieces):
    """Mixed magnitudes per column (adaptive slicing), fed in several pieces: integer for integer."""
    block = np.array(rows, dtype=np.float64)
    scale = [0, 72, 72]
    block[:, 0] = 1.0
    acc = GramAccumulator(scale)
    for part in np.array_split(block, pieces):
        acc.update(part)
    ints = [[int(Fraction(x) * 2**s) for x, s in zip(row, scale, strict=True)] for row in block.tolist()]
    expected = [[sum(r[a] * r[b] for r in ints) for b in range(3)] for a in range(3)]
    assert acc.result() == expected


def test_gram_accumulator_refuses_digits_below_the_scale():
    acc = GramAccumulator([0, 4])
    with pytest.raises(ValueError, match="multiples"):
        acc.update(np.array([[1.0, 0.5], [1.0, 2.0**-5]]))


# --------------------------------------------------------------------------------------
# Encrypted end to end: integer for integer
# --------------------------------------------------------------------------------------


@st.composite
def consortia(draw):
    n_parties = draw(st.integers(3, 4))
    d = draw(st.integers(1, 3))
    features = list(draw(st.permutations(FEATURE_POOL))[:d])
    parties = []
    for _ in range(n_parties):
        order = list(draw(st.permutations([*features, "y"])))  # each party orders its columns its own way
        n = draw(st.integers(1, 8))
        rows = draw(st.lists(st.lists(encodable, min_size=d + 1, max_size=d + 1), min_size=n, max_size=n))
        frame = pd.DataFrame(rows, columns=[*features, "y"], dtype=np.float64)[order]
        party_features = [c for c in order if c != "y"]
        parties.append((frame, party_features))
    return features, parties


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(consortium_=consortia())
def test_encrypted_aggregate_equals_sum_of_parties_and_pooled(keypair, consortium_):
    public_key, private_key = keypair
    features, parties = consortium_
    bundles, plain = [], []
    for i, (frame, party_features) in enumerate(parties):
        plain.append(hefed.compute_statistics(frame, "y", party_features))
        bundles.append(hefed.encrypt_statistics(frame, "y", public_key, party_features, factory_id=f"plant-{i}"))
    stats = hefed.decrypt_statistics(hefed.aggregate(bundles), private_key, allow_unsigned=True)
    m = len(features) + 2
    expected = [[sum(p.gram[a][b] for p in plain) for b in range(m)] for a in range(m)]
    assert stats.gram == expected
    pooled = pd.concat([frame[[*features, "y"]] for frame, _ in parties], ignore_index=True)
    assert stats.gram == hefed.compute_statistics(pooled, "y", features).gram
    assert stats.contributors == [f"plant-{i}" for i in range(len(parties))]
    assert stats.n == len(pooled)


# --------------------------------------------------------------------------------------
# Solve: the exact rational solution, rounded once
# --------------------------------------------------------------------------------------

ridges = st.one_of(
    st.sampled_from([0.5, 1e-8, 3.0, 1e3, 2.0**-60]),
    st.floats(min_value=0.0, max_value=1e9, allow_nan=False, allow_infinity=False, allow_subnormal=True),
)


def _check_solve(frame, features, target, ridge, fit_intercept):
    stats = hefed.compute_statistics(frame, target, features)
    expected = exact_least_squares(frame, features, target, Fraction(ridge), fit_intercept)
    if expected is None:
        with pytest.raises(SingularSystemError):
            hefed.solve(stats, ridge=ridge, fit_intercept=fit_intercept)
        return
    assume(fits_float([*expected[0], expected[1]]))
    model = hefed.solve(stats, ridge=ridge, fit_intercept=fit_intercept)
    assert_model_matches_exact(model, expected, features)
    assert model.n_samples_ == len(frame)


@settings(max_examples=120, deadline=None)
@given(tables())
def test_ols_equals_rounded_exact_solution(table):
    frame, features, target = table
    _check_solve(frame, features, target, 0.0, True)


@settings(max_examples=80, deadline=None)
@given(tables(), ridges)
def test_ridge_equals_rounded_exact_solution_with_unpenalised_intercept(table, ridge):
    frame, features, target = table
    _check_solve(frame, features, target, ridge, True)


@settings(max_examples=80, deadline=None)
@given(tables(), st.one_of(st.just(0.0), ridges))
def test_no_intercept_equals_rounded_exact_solution(table, ridge):
    frame, features, target = table
    _check_solve(frame, features, target, ridge, False)


@settings(max_examples=40, deadline=None)
@given(tables(min_rows=2), st.integers(1, 5))
def test_solve_of_split_statistics_equals_solve_of_pooled(table, cut_seed):
    """Statistics of two parts added together solve to the pooled exact solution."""
    frame, features, target = table
    cut = cut_seed % len(frame) or 1
    parts = [frame.iloc[:cut], frame.iloc[cut:]]
    summed = hefed.compute_statistics(parts[0], target, features) + hefed.compute_statistics(
        parts[1], target, features
    )
    pooled = hefed.compute_statistics(frame, target, features)
    assert summed.gram == pooled.gram
    expected = exact_least_squares(frame, features, target)
    if expected is None or not fits_float([*expected[0], expected[1]]):
        return
    assert_model_matches_exact(hefed.solve(summed), expected, features)


# ----- ill-conditioned designs (NIST StRD style) --------------------------------------


def _filip_like() -> tuple[pd.DataFrame, list[str], str]:
    """Degree-10 polynomial in x ∈ [-9, -3] (like NIST Filip): condition number ~1e15+."""
    rng = np.random.default_rng(11)
    x = np.round(-3.0 - 6.0 * rng.random(82), 7)
    beta = [-1467.49, -2772.18, -2316.37, -1127.97, -354.48, -75.12, -10.88, -1.06, -0.067, -0.0025, -0.0000403]
    y = np.round(sum(b * x**k for k, b in enumerate(beta)) + 0.003 * rng.standard_normal(82), 4)
    frame = pd.DataFrame({f"x{k:02d}": x**k for k in range(1, 11)})
    frame["y"] = y
    return frame, [f"x{k:02d}" for k in range(1, 11)], "y"


def _longley() -> tuple[pd.DataFrame, list[str], str]:
    sm_datasets = pytest.importorskip("statsmodels.datasets")
    frame = sm_datasets.longley.load_pandas().data.astype(np.float64)
    return frame, ["GNPDEFL", "GNP", "UNEMP", "ARMED", "POP", "YEAR"], "TOTEMP"


def _nearly_collinear() -> tuple[pd.DataFrame, list[str], str]:
    rng = np.random.default_rng(3)
    a = np.round(rng.normal(50.0, 10.0, 60), 3)
    b = a + np.ldexp(np.round(rng.normal(0, 1, 60) * 2**8), -30)  # a + noise of ~1e-9
    c = np.round(rng.normal(0.0, 1.0, 60), 6)
    y = np.round(2.0 * a - 1.5 * b + 0.25 * c + rng.normal(0, 0.01, 60), 5)
    return pd.DataFrame({"b": b, "a": a, "c": c, "y": y}), ["b", "a", "c"], "y"


def _big_offset() -> tuple[pd.DataFrame, list[str], str]:
    """Columns 1e6 + small noise, with x and x² (Wampler/Pontius-like offsets)."""
    rng = np.random.default_rng(5)
    u = 1e6 + np.round(rng.normal(0, 1e-3, 50), 9)
    v = 1e6 + np.round(rng.normal(0, 1e-3, 50), 9)
    frame = pd.DataFrame({"u": u, "v": v, "u2": u * u / 1e3})
    y = np.round(3.0 * (u - 1e6) - 2.0 * (v - 1e6) + rng.normal(0, 1e-6, 50), 12)
    frame["y"] = [snap(t) for t in y]
    return frame, ["u", "v", "u2"], "y"


ILL_CONDITIONED = {
    "filip_like": _filip_like,
    "longley": _longley,
    "nearly_collinear": _nearly_collinear,
    "big_offset": _big_offset,
}


@pytest.mark.parametrize("name", sorted(ILL_CONDITIONED))
@pytest.mark.parametrize("ridge", [0.0, 1e-6])
def test_ill_conditioned_designs_match_exact_solution(name, ridge):
    frame, features, target = ILL_CONDITIONED[name]()
    design = np.column_stack([np.ones(len(frame)), frame[features].to_numpy()])
    cond = np.linalg.cond(design)
    assert cond > 1e8, f"{name} is not ill-conditioned (cond {cond:.3g}); the test would prove little"
    expected = exact_least_squares(frame, features, target, Fraction(ridge))
    assert expected is not None
    model = hefed.solve(hefed.compute_statistics(frame, target, features), ridge=ridge)
    assert_model_matches_exact(model, expected, features)
    if ridge == 0.0:
        # The float64 solver is demonstrably worse here: its error is reported, not trusted.
        lstsq = np.linalg.lstsq(design, frame[target].to_numpy(), rcond=None)[0]
        exact = np.array([float(expected[1]), *map(float, expected[0])])
        np_err = np.max(np.abs(lstsq - exact) / np.maximum(np.abs(exact), 1e-300))
        hefed_err = np.max(
            np.abs(np.array([model.intercept_, *model.coef_]) - exact) / np.maximum(np.abs(exact), 1e-300)
        )
        assert hefed_err <= 2**-53
        # ...while numpy's SVD least squares loses at least two digits on these designs.
        assert np_err > 100 * 2**-53, f"{name}: lstsq error {np_err:.3g}"


@st.composite
def polynomial_tables(draw):
    """x, x², …, x^deg of random x (snapped to the encoding grid): badly conditioned."""
    deg = draw(st.integers(2, 6))
    n = draw(st.integers(deg + 2, 30))
    centre = draw(st.floats(min_value=-60.0, max_value=60.0, allow_nan=False))
    width = draw(st.floats(min_value=1e-3, max_value=10.0, allow_nan=False))
    xs = draw(st.lists(st.floats(min_value=0.0, max_value=1.0, allow_nan=False), min_size=n, max_size=n))
    x = np.array([snap(centre + width * t) for t in xs])
    frame = pd.DataFrame({f"p{k}": [snap(v**k) for v in x] for k in range(1, deg + 1)})
    ys = draw(st.lists(encodable, min_size=n, max_size=n))
    frame["y"] = np.array(ys, dtype=np.float64)
    return frame, [f"p{k}" for k in range(1, deg + 1)], "y"


@settings(max_examples=40, deadline=None)
@given(polynomial_tables(), st.sampled_from([0.0, 0.0, 1e-9, 0.25]), st.booleans())
def test_polynomial_designs_match_exact_solution(table, ridge, fit_intercept):
    frame, features, target = table
    _check_solve(frame, features, target, ridge, fit_intercept)


# --------------------------------------------------------------------------------------
# Packing
# --------------------------------------------------------------------------------------


@st.composite
def layouts(draw):
    n_slots = draw(st.integers(1, 10))
    bounds = []
    for _ in range(n_slots):
        lo = draw(st.one_of(st.just(0), st.integers(-(2**200), 2**200)))
        span_bits = draw(st.integers(0, 200))
        span = draw(st.one_of(st.just(0), st.just((1 << span_bits) - 1), st.integers(0, 1 << span_bits)))
        bounds.append((lo, lo + span))
    max_count = draw(st.integers(1, 40))
    # slots may be wider than a plaintext's chunk: they straddle as many plaintexts as they need
    capacity = max_count.bit_length() + draw(st.integers(1, 400))
    return Layout.build(bounds, capacity, max_count), bounds


def _contribution(draw, bounds):
    return [draw(st.one_of(st.just(lo), st.just(hi), st.integers(lo, hi))) for lo, hi in bounds]


def _add(plaintexts):
    return [sum(column) for column in zip(*plaintexts, strict=True)]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_packed_sums_unpack_to_exact_slot_sums(data):
    layout, bounds = data.draw(layouts())
    count = data.draw(st.integers(1, layout.max_count))
    contributions = [_contribution(data.draw, bounds) for _ in range(count)]
    packed = [layout.pack(c) for c in contributions]
    for p in packed:
        assert all(0 <= v < 1 << layout.capacity_bits for v in p)
    total = _add(packed)
    assert all(0 <= v < 1 << layout.capacity_bits for v in total)  # fits below the key's n: never wraps
    assert layout.unpack(total, count) == [sum(col) for col in zip(*contributions, strict=True)]


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_pack_refuses_values_outside_bounds(data):
    layout, bounds = data.draw(layouts())
    values = _contribution(data.draw, bounds)
    i = data.draw(st.integers(0, len(bounds) - 1))
    excess = data.draw(st.integers(1, 2**256))
    lo, hi = bounds[i]
    values[i] = hi + excess if data.draw(st.booleans()) else lo - excess
    with pytest.raises(PackingError) as info:
        layout.pack(values)
    assert info.value.slot == i


def _slot_at(layout: Layout, bit: int):
    """The slot holding bit ``bit`` of the concatenated integer B."""
    for index, slot in enumerate(layout.slots):
        if slot.offset <= bit < slot.offset + slot.width:
            return index, slot
    return None, None


def _join(layout: Layout, plaintexts) -> int:
    return sum(p << (j * layout.chunk_bits) for j, p in enumerate(plaintexts))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_bit_flip_anywhere_is_detected_or_changes_the_result(data):
    """Flipping any bit of any plaintext sum never decodes silently to the true sums."""
    layout, bounds = data.draw(layouts())
    count = data.draw(st.integers(1, layout.max_count))
    contributions = [_contribution(data.draw, bounds) for _ in range(count)]
    total = _add([layout.pack(c) for c in contributions])
    truth = [sum(col) for col in zip(*contributions, strict=True)]
    p = data.draw(st.integers(0, layout.n_plaintexts - 1))
    bit = data.draw(st.integers(0, layout.capacity_bits + 64))
    corrupted = list(total)
    corrupted[p] ^= 1 << bit
    try:
        values = layout.unpack(corrupted, count)
    except PackingError:
        return
    assert values != truth


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_bit_set_in_a_guard_region_or_above_the_last_slot_is_detected(data):
    """A sum whose concatenated integer gets a bit in some slot's guard bits (always 0 in a
    valid sum), or above the last slot, is refused; a bit in a slot's value bits changes
    that slot only."""
    layout, bounds = data.draw(layouts())
    count = data.draw(st.integers(1, layout.max_count))
    contributions = [_contribution(data.draw, bounds) for _ in range(count)]
    total = _add([layout.pack(c) for c in contributions])
    truth = [sum(col) for col in zip(*contributions, strict=True)]
    joined = _join(layout, total)
    bit = data.draw(st.integers(0, layout.total_bits + 64))
    if joined >> bit & 1:
        return  # only setting a clear bit adds exactly 2^bit, with no carry
    changed = joined | (1 << bit)
    chunk = layout.chunk_bits
    # re-cut the changed integer the way a (corrupted) valid-looking set of plaintexts would carry it
    corrupted = [(changed >> (j * chunk)) & ((1 << chunk) - 1) for j in range(layout.n_plaintexts)]
    corrupted[-1] += changed >> (layout.n_plaintexts * chunk) << chunk
    index, slot = _slot_at(layout, bit)
    stored = (joined >> slot.offset) & ((1 << slot.width) - 1) if slot else 0
    if slot is None or stored + (1 << (bit - slot.offset)) > count * slot.span:
        with pytest.raises(PackingError):
            layout.unpack(corrupted, count)
    else:
        values = layout.unpack(corrupted, count)
        assert [i for i, (u, v) in enumerate(zip(values, truth, strict=True)) if u != v] == [index]


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_adding_a_big_integer_to_a_plaintext_is_detected(data):
    layout, bounds = data.draw(layouts())
    count = data.draw(st.integers(1, layout.max_count))
    total = _add([layout.pack(_contribution(data.draw, bounds)) for _ in range(count)])
    p = data.draw(st.integers(0, layout.n_plaintexts - 1))
    noise = data.draw(st.integers(count << layout.chunk_bits, 1 << (layout.capacity_bits + 256)))
    corrupted = list(total)
    corrupted[p] += noise
    with pytest.raises(PackingError):
        layout.unpack(corrupted, count)
    corrupted[p] = total[p] - noise  # negative plaintexts are refused too
    with pytest.raises(PackingError):
        layout.unpack(corrupted, count)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_slots_straddle_plaintexts_without_waste(data):
    """Plaintexts are filled to their chunk size: only the last one is partly empty."""
    layout, _ = data.draw(layouts())
    assume(layout.slots)
    assert layout.n_plaintexts == -(-layout.total_bits // layout.chunk_bits)
    assert [s.offset for s in layout.slots] == [sum(t.width for t in layout.slots[:i])
                                                for i in range(len(layout.slots))]


def test_random_corruption_of_real_bundle_layout_is_detected(public_key):
    """A corrupted ciphertext decrypts to a (pseudo)random plaintext in [0, n): with the
    layout a real bundle uses, unpack must refuse every one of many such plaintexts."""
    frame = pd.DataFrame({f"x{j}": [1.0, 2.0, 3.0] for j in range(5)} | {"y": [1.0, 2.0, 4.0]})
    layout = hefed.encrypt_statistics(frame, "y", public_key, factory_id="f").layout()
    assert len(layout.slots) == 7 * 8 // 2 * 2 + 1  # the Gram's upper triangle, its support (0/1 a pair), the counter
    rnd = random.Random(1234)
    count = 4
    values = [rnd.randint(lo, hi) if hi - lo < 2**64 else lo + (hi - lo) // 3 for lo, hi in
              ((s.lo, s.hi) for s in layout.slots)]
    total = _add([layout.pack(values)] * count)
    assert layout.unpack(total, count) == [count * v for v in values]
    detected = 0
    trials = 400
    for _ in range(trials):
        corrupted = list(total)
        p = rnd.randrange(layout.n_plaintexts)
        corrupted[p] = rnd.randrange(public_key.n)
        try:
            layout.unpack(corrupted, count)
        except PackingError:
            detected += 1
    assert detected == trials


@pytest.mark.parametrize("count", [0, -1])
def test_unpack_refuses_count_outside_range(count):
    layout = Layout.build([(0, 10), (-5, 5)], 64, 3)
    total = layout.pack([1, 2])
    with pytest.raises(PackingError):
        layout.unpack(total, count)
    with pytest.raises(PackingError):
        layout.unpack(total, 4)  # above max_count


def test_unpack_with_wrong_count_is_detected_or_differs():
    layout = Layout.build([(0, 10), (-5, 5)], 64, 3)
    total = _add([layout.pack([10, 5]), layout.pack([10, 5])])
    assert layout.unpack(total, 2) == [20, 10]
    with pytest.raises(PackingError):
        layout.unpack(total, 1)  # guard check: 2 contributions claimed as 1


@pytest.mark.parametrize("workers", ["1", "2"])
def test_gram_accumulator_threads_and_flushes_stay_exact(monkeypatch, workers):
    """Many chunks split over threads, flushed every 3 chunks: integer for integer."""
    monkeypatch.setenv("HEFED_WORKERS", workers)
    monkeypatch.setattr(exactgram, "_FLUSH_EVERY", 3)
    rng = np.random.default_rng(7)
    rows = 9 * CHUNK_ROWS + 11
    block = np.empty((rows, 3))
    block[:, 0] = 1.0
    block[:, 1] = np.round(rng.normal(0, 300, rows), 3)
    block[:, 2] = rng.normal(0, 1, rows) * 2.0 ** rng.integers(-30, 30, rows)
    block[::97, 2] = 0.0
    acc = GramAccumulator([0, 72, 200])
    acc.update(block)
    ints = [[int(Fraction(x) * 2**s) for x, s in zip(row, (0, 72, 200), strict=True)] for row in block.tolist()]
    expected = [[sum(r[a] * r[b] for r in ints) for b in range(3)] for a in range(3)]
    assert acc.result() == expected


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(encodable, min_size=3, max_size=3), min_size=1, max_size=12),
       st.lists(st.fractions(max_denominator=10**30), min_size=3, max_size=3))
def test_residual_sum_of_squares_is_the_exact_sum_over_rows(rows, theta):
    """Σ (y − θ₀ − θ·x)² from the statistics equals the same sum taken row by row in rationals."""
    frame = pd.DataFrame(rows, columns=["a", "b", "y"], dtype=np.float64)
    stats = hefed.compute_statistics(frame, "y", ["a", "b"])
    coef = {"a": theta[1], "b": theta[2]}
    expected = sum((Fraction(y) - theta[0] - coef["a"] * Fraction(a) - coef["b"] * Fraction(b)) ** 2
                   for a, b, y in frame.itertuples(index=False))
    assert stats.residual_sum_of_squares(coef, theta[0]) == expected


def test_gram_accumulator_refuses_bit_spans_beyond_float64():
    """2^200 and 2^-900 in one column span 1100 bits: float64 cannot hold the scaled integers."""
    acc = GramAccumulator([0, 900])
    with pytest.raises(ValueError, match="span"):
        acc.update(np.array([[1.0, 2.0**200], [1.0, 2.0**-900]]))
