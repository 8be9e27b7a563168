"""Exact integer Gram matrices ZᵀZ at BLAS speed (error-free splitting, the Ozaki scheme).

Column ``j`` of a block holds float64 values ``x`` with ``x · 2^scale_j`` an
integer (the fixed-point encoding). For each block and column the accumulator
finds the bits actually in use: every value is a multiple of ``2^lo_j``
(``lo_j`` from the smallest exponent in the column: a float64's 53-bit
significand ends 52 bits below its leading bit) and below ``2^hi_j``. The
column becomes the integers ``u = x · 2^-lo_j``, ``|u| < 2^(hi_j − lo_j)``,
which are cut into signed slices of at most ``SLICE_BITS`` bits by rounding to
nearest::

    u = Σ_k S_k · 2^(SLICE_BITS·k),    |S_k| <= 2^(SLICE_BITS−1)

A product of two slices is at most ``2^(2·SLICE_BITS−2)`` and a sum of
``CHUNK_ROWS`` of them at most ``2^53``, so every partial sum float64 GEMM forms
is an integer float64 holds exactly, whatever order BLAS adds in. Then::

    (ZᵀZ)[a, b] = 2^(lo_a + lo_b + scale_a + scale_b) · Σ_k Σ_l 2^(SLICE_BITS·(k+l)) · (S_aᵀ S_b)[k, l]

Fitting the slices to the bits in use (instead of the encoding's full range)
means real data needs 3 or 4 slices a column rather than 6; chunk products are
summed in int64 and turned into Python integers once per block.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

SLICE_BITS = 20
CHUNK_ROWS = 1 << 12  # small enough to stay in cache; at most 2^15 · (2^19)^2 = 2^53
# int64 holds 2^13 chunk results of at most 2^(38+12) each; flush to Python ints after 2^12.
_FLUSH_EVERY = 1 << 12
#: Values :func:`bit_range` reads at a time (a 2 MB scratch buffer: in cache, few Python steps).
_RANGE_CELLS = 1 << 18


class GramAccumulator:
    """Accumulates the exact ``ZᵀZ`` of fixed-point column blocks, as Python integers.

    ``scale_bits[j]`` is column ``j``'s encoding: ``x · 2^scale_bits[j]`` must be an integer
    for every value ``x`` fed to it. Feed blocks with :meth:`update` (rows × columns) or
    :meth:`update_columns` (columns × rows, the faster layout) in any number of pieces,
    e.g. streamed from a file, and read the exact result with :meth:`result`.
    """

    def __init__(self, scale_bits: Sequence[int]) -> None:
        self.scale_bits = np.array([int(b) for b in scale_bits], dtype=np.int64)
        m = len(self.scale_bits)
        self._total = np.zeros((m, m), dtype=object)
        self.rows = 0

    def update(self, block: np.ndarray) -> None:
        """Add ``blockᵀ·block`` (exactly) for a (rows × columns) float64 block."""
        block = np.asarray(block, dtype=np.float64)
        if block.ndim != 2:
            raise ValueError("block must be two-dimensional")
        self.update_columns(block.T)

    def update_columns(self, columns: np.ndarray, bits: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Add ``columns·columnsᵀ`` (exactly) for a (columns × rows) float64 block.

        ``bits`` is :func:`bit_range` of ``columns`` when the caller has it already.
        """
        columns = np.asarray(columns, dtype=np.float64)
        m = len(self.scale_bits)
        if columns.ndim != 2 or columns.shape[0] != m:
            raise ValueError("block has the wrong number of columns")
        rows = columns.shape[1]
        if rows == 0:
            return
        lo, hi = bit_range(columns) if bits is None else bits
        scale = self.scale_bits
        # Values are integers once scaled: the bits in use never go below 2^-scale.
        exact_lo = np.maximum(lo, -scale)
        if (hi - exact_lo).max(initial=0) > 1000 or (hi + scale).max(initial=0) > 1023:
            # u = x·2^-lo, or x·2^scale in the check above, would leave float64's range
            raise ValueError("a column's values span more bits than float64 can hold exactly")
        for j in np.flatnonzero(lo < -scale):  # digits may lie below 2^-scale: check exactly (rare)
            scaled = np.ldexp(columns[j], int(scale[j]))
            if not np.isfinite(scaled).all() or (scaled != np.floor(scaled)).any():
                raise ValueError(f"column {j} has values that are not multiples of 2^-{scale[j]}")
        levels = -(-(hi - exact_lo + 1) // SLICE_BITS)
        levels[hi <= exact_lo] = 0  # all-zero column
        order = [np.flatnonzero(levels > k) for k in range(int(levels.max(initial=0)))]
        width = sum(len(cols) for cols in order)
        self.rows += rows
        if width == 0:
            return
        unscale = (-exact_lo).astype(np.int32)[:, None]
        starts = list(range(0, rows, CHUNK_ROWS))
        threads = min(len(starts) // 4, _threads())  # a thread is worth it from a few chunks each

        def products(part: list[int]) -> np.ndarray:
            slicer = _Slicer(m, width, order)
            acc = np.zeros((width, width), dtype=np.int64)
            for start in part:
                acc += slicer.product(columns[:, start : start + CHUNK_ROWS], unscale)
            return acc

        # These GEMMs are small (about 85 × 4096): BLAS threads cost more than they give,
        # so BLAS runs on one thread and the chunks are shared among our own threads (numpy's
        # vector loops release the GIL).
        with _blas_single_thread():
            for first in range(0, len(starts), _FLUSH_EVERY):
                batch = starts[first : first + _FLUSH_EVERY]
                if threads > 1:
                    parts = [batch[i::threads] for i in range(threads)]
                    with ThreadPoolExecutor(threads) as pool:
                        total = np.sum(list(pool.map(products, parts)), axis=0)
                else:
                    total = products(batch)
                self._add(total, order, exact_lo + scale)

    def _add(self, acc64: np.ndarray, order: list[np.ndarray], shifts: np.ndarray) -> None:
        """Recombine slice products into the exact Gram of this block and add it to the total."""
        products = acc64.astype(object)
        m = len(self.scale_bits)
        gram = np.zeros((m, m), dtype=object)
        starts = np.cumsum([0] + [len(cols) for cols in order])
        for k, rows_k in enumerate(order):
            for ll, cols_l in enumerate(order):
                part = products[starts[k] : starts[k + 1], starts[ll] : starts[ll + 1]]
                gram[np.ix_(rows_k, cols_l)] += part * (1 << (SLICE_BITS * (k + ll)))
        # lo_j >= -scale_j, so every shift is >= 0; Python ints (object) so nothing wraps
        shift = (shifts[:, None] + shifts[None, :]).astype(object)
        self._total += gram << shift

    def result(self) -> list[list[int]]:
        """The exact Gram matrix of the scaled integers, as nested lists of Python ints."""
        return [[int(v) for v in row] for row in self._total]


def bit_range(columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a (columns × rows) block: ``lo`` with every value a multiple of ``2^lo``,
    and ``hi`` with every ``|x| < 2^hi`` (both 0 for an all-zero column).

    A float64 ``x`` with ``2^(e−1) <= |x| < 2^e`` is a multiple of ``2^(e−53)``, so the
    smallest non-zero magnitude bounds ``lo`` for the whole column. Raises ``ValueError``
    on a value that is not finite.

    The block is read in pieces of :data:`_RANGE_CELLS` values through one small scratch buffer
    (no full-size copy). Magnitudes are compared as the integers of their bit patterns: for
    non-negative float64 (NaN and inf included) the order is the same, and subtracting 1 sends
    zero to the largest integer, so one ``min`` finds the smallest non-zero magnitude.
    """
    m, n = columns.shape
    if n == 0:
        return np.zeros(m, dtype=np.int64), np.zeros(m, dtype=np.int64)
    step = max(1, _RANGE_CELLS // max(1, m))
    scratch = np.empty((m, min(step, n)))
    bits = scratch.view(np.uint64)
    largest = np.zeros(m, dtype=np.uint64)  # bit patterns of max |x|: NaN's and inf's beat any finite value's
    below = np.full(m, np.iinfo(np.uint64).max, dtype=np.uint64)  # bit patterns of min non-zero |x|, minus 1
    one = np.uint64(1)
    for start in range(0, n, step):
        part = columns[:, start : start + step]
        magnitude, pattern = scratch[:, : part.shape[1]], bits[:, : part.shape[1]]
        np.abs(part, out=magnitude)
        np.maximum(largest, pattern.max(axis=1), out=largest)
        np.subtract(pattern, one, out=pattern)  # 0 (a zero) wraps to the largest pattern
        np.minimum(below, pattern.min(axis=1), out=below)
    top = largest.view(np.float64)
    if not np.isfinite(top).all():
        raise ValueError("block has values that are not finite")
    empty = top == 0
    smallest = (below + one).view(np.float64)  # an all-zero column wraps back to 0.0
    smallest[empty] = 1.0
    hi = np.frexp(top)[1].astype(np.int64)
    lo = np.frexp(smallest)[1].astype(np.int64) - 53
    lo[empty], hi[empty] = 0, 0
    return lo, hi


def _threads() -> int:
    """Threads for the chunk loop: the cores this process may use (``HEFED_WORKERS`` caps it)."""
    raw = os.environ.get("HEFED_WORKERS", "").strip()
    if raw.isdigit() and int(raw) >= 1:
        return int(raw)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@functools.lru_cache(maxsize=1)
def _blas_controller() -> object:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()  # finding the BLAS libraries once, not per block


@contextlib.contextmanager
def _blas_single_thread() -> Iterator[None]:
    with _blas_controller().limit(limits=1, user_api="blas"):  # type: ignore[attr-defined]
        yield


class _Slicer:
    """Slices chunks into reused buffers (fresh 20 MB arrays per chunk cost more in page
    faults than the arithmetic) and returns their exact slice products."""

    def __init__(self, m: int, width: int, order: list[np.ndarray]) -> None:
        self.order = order
        self.keep = [np.searchsorted(order[k], order[k + 1]) for k in range(len(order) - 1)]
        self.u = np.empty((m, CHUNK_ROWS))
        self.out = np.empty((width, CHUNK_ROWS))
        self.scratch = (np.empty((m, CHUNK_ROWS)), np.empty((m, CHUNK_ROWS)))

    def product(self, piece: np.ndarray, unscale: np.ndarray) -> np.ndarray:
        n = piece.shape[1]
        u = self.u[:, :n]
        np.ldexp(piece, unscale, out=u)  # exact: the integers u of the module docstring
        out = self.out[:, :n]
        _slices(u, self.order, self.keep, out, (self.scratch[0][:, :n], self.scratch[1][:, :n]))
        return (out @ out.T).astype(np.int64)


def _slices(
    u: np.ndarray, order: list[np.ndarray], keep: list[np.ndarray], out: np.ndarray,
    scratch: tuple[np.ndarray, np.ndarray],
) -> None:
    """Signed round-to-nearest slices of the integer rows ``u`` into ``out``, level by level:
    level k holds the rows in ``order[k]`` (the columns that still have bits at that level)."""
    base, inverse = float(1 << SLICE_BITS), 1.0 / (1 << SLICE_BITS)
    rest = u[order[0]] if len(order[0]) < len(u) else u
    at = 0
    for k in range(len(order)):
        part = out[at : at + len(order[k])]
        at += len(order[k])
        if k + 1 == len(order):
            part[...] = rest
            break
        high = scratch[k % 2][: len(rest)]
        np.multiply(rest, inverse, out=high)
        np.rint(high, out=high)
        np.multiply(high, -base, out=part)
        part += rest  # rest − high·2^s, exact: a small integer
        rest = high if len(keep[k]) == len(high) else high[keep[k]]


def exact_gram(matrix: np.ndarray, scale_bits: Sequence[int] | None = None) -> list[list[int]]:
    """Exact ``ZᵀZ`` of one matrix; ``scale_bits`` default to 0 (integer-valued columns)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    acc = GramAccumulator(scale_bits if scale_bits is not None else [0] * matrix.shape[1])
    acc.update(matrix)
    return acc.result()


#: Rows :func:`weighted_gram` multiplies at a time (bounds the Python-integer scratch arrays).
_WEIGHTED_ROWS = 1 << 12


def weighted_gram(columns: np.ndarray | Sequence[Sequence[int]],
                  weights: np.ndarray | Sequence[int]) -> list[list[int]]:
    """Exact ``Σ_i w_i · z_i z_iᵀ`` of integer rows ``z_i`` and integer weights ``w_i``, as Python integers.

    The weighted Gram matrix of WLS (``w`` a precision weight on its grid), of robust covariances
    (``w = e²``, a squared exact residual) and of IRLS rounds (``w`` the working weight rounded once to a
    public grid). The products ``w·z_a·z_b`` exceed any float width, so the sums are taken in Python
    integers, ``_WEIGHTED_ROWS`` rows at a time (numpy object arrays: exact whatever the sizes).
    """
    z = np.asarray(columns, dtype=object)
    w = np.asarray(weights, dtype=object)
    if z.ndim != 2 or w.ndim != 1 or len(w) != len(z):
        raise ValueError(f"weighted_gram needs rows × columns and one weight a row; got {z.shape} and {w.shape}")
    m = z.shape[1]
    total = np.zeros((m, m), dtype=object)
    for start in range(0, len(z), _WEIGHTED_ROWS):
        block = z[start:start + _WEIGHTED_ROWS]
        total += (block * w[start:start + _WEIGHTED_ROWS, None]).T @ block
    return [[int(v) for v in row] for row in total]


def integer_columns(values: np.ndarray, scale_bits: Sequence[int]) -> np.ndarray:
    """Columns of float64 values on their fixed-point grids as exact Python integers ``x · 2^scale``.

    ``x · 2^scale`` is a power-of-two scaling (exact in float64) and an integer by the encoding, so the
    conversion is exact; a value off its grid raises ``ValueError`` rather than being rounded.
    """
    values = np.asarray(values, dtype=np.float64)
    scaled = np.ldexp(values, np.asarray([int(b) for b in scale_bits], dtype=np.int64)[None, :])
    if not np.all(np.isfinite(scaled)) or np.any(scaled != np.rint(scaled)):
        raise ValueError("a value is not on its column's grid")
    out = np.empty(values.shape, dtype=object)
    flat = out.reshape(-1)
    flat[:] = [int(v) for v in scaled.reshape(-1)]
    return out
