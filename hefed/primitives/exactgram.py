"""Exact integer Gram matrices ZᵀZ at BLAS speed (error-free splitting, the Ozaki scheme).

Input: a float64 matrix whose entries are integers with ``|v| < 2^bits``.
Each column is cut into signed ``SLICE_BITS``-bit slices,
``v = Σ_k S_k · 2^(SLICE_BITS·k)`` with ``|S_k| < 2^SLICE_BITS``. A product of
two slices is below ``2^(2·SLICE_BITS)``, and a sum of ``CHUNK_ROWS`` of them
below ``2^53``, so every partial sum float64 GEMM forms is an integer that
float64 holds exactly, whatever order BLAS adds in. Then::

    ZᵀZ[a, b] = Σ_k Σ_l 2^(SLICE_BITS·(k+l)) · (S_aᵀ S_b)[k, l]

accumulated across chunks as Python integers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SLICE_BITS = 20
CHUNK_ROWS = 1 << 13  # 2^13 · (2^20)^2 = 2^53
# int64 holds 2^10 chunk results of < 2^53 each; flush to Python ints before that.
_FLUSH_EVERY = 1 << 9


class GramAccumulator:
    """Accumulates the exact ``ZᵀZ`` of integer-valued float64 row blocks.

    ``bits[j]`` bounds column ``j``: every entry satisfies ``|v| < 2^bits[j]``.
    Feed blocks with :meth:`update` (in any number of chunks, e.g. streamed from
    a file) and read the exact result with :meth:`result`.
    """

    def __init__(self, bits: Sequence[int]) -> None:
        self.bits = [max(1, int(b)) for b in bits]
        if max(self.bits, default=0) > 1023:
            raise ValueError("column bound above float64 range")
        self.n_slices = [-(-b // SLICE_BITS) for b in self.bits]
        # Sliced columns are laid out slice level by slice level: all columns' slice 0,
        # then slice 1 of the columns that have one, ... ; position[(j, k)] finds them.
        self._levels = [
            np.array([j for j, count in enumerate(self.n_slices) if count > k], dtype=np.intp)
            for k in range(max(self.n_slices, default=0))
        ]
        self._position: dict[tuple[int, int], int] = {}
        for k, columns in enumerate(self._levels):
            for j in columns:
                self._position[(int(j), k)] = len(self._position)
        width = len(self._position)
        self._acc64 = np.zeros((width, width), dtype=np.int64)
        self._acc_obj = np.zeros((width, width), dtype=object)
        self._pending = 0

    def _slices(self, block: np.ndarray) -> np.ndarray:
        sign = np.sign(block)
        rest = np.abs(block)
        base = float(1 << SLICE_BITS)
        parts = []
        for columns in self._levels:
            # floor, multiplication and division by powers of two are exact here
            high = np.floor(rest / base)
            parts.append((rest - high * base) * sign)
            rest = high
            if len(parts) < len(self._levels):
                keep = np.searchsorted(columns, self._levels[len(parts)])
                rest, sign = rest[:, keep], sign[:, keep]
        return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]

    def update(self, block: np.ndarray) -> None:
        """Add ``blockᵀ·block`` for a (rows × columns) float64 block of bounded integers."""
        block = np.asarray(block, dtype=np.float64)
        if block.ndim != 2 or block.shape[1] != len(self.bits):
            raise ValueError("block has the wrong number of columns")
        for start in range(0, block.shape[0], CHUNK_ROWS):
            sliced = self._slices(block[start : start + CHUNK_ROWS])
            product = sliced.T @ sliced
            self._acc64 += product.astype(np.int64)
            self._pending += 1
            if self._pending >= _FLUSH_EVERY:
                self._flush()

    def _flush(self) -> None:
        self._acc_obj = self._acc_obj + self._acc64.astype(object)
        self._acc64[:] = 0
        self._pending = 0

    def result(self) -> list[list[int]]:
        """The exact Gram matrix as nested lists of Python ints."""
        self._flush()
        m = len(self.bits)
        gram = [[0] * m for _ in range(m)]
        pos = self._position
        for a in range(m):
            for b in range(a, m):
                total = 0
                for k in range(self.n_slices[a]):
                    for ll in range(self.n_slices[b]):
                        term = int(self._acc_obj[pos[(a, k)], pos[(b, ll)]])
                        if term:
                            total += term << (SLICE_BITS * (k + ll))
                gram[a][b] = gram[b][a] = total
        return gram


def exact_gram(matrix: np.ndarray, bits: Sequence[int]) -> list[list[int]]:
    """Exact ``ZᵀZ`` of one integer-valued float64 matrix (see :class:`GramAccumulator`)."""
    acc = GramAccumulator(bits)
    acc.update(matrix)
    return acc.result()
