"""Column support: at how many factories each pair of columns is non-zero together.

The disclosure threshold (``min_contributors``) counts the bundles of an aggregate, not the factories
behind each column: a column non-zero at one plant only, or a categorical level only one plant has, puts
that plant's own row count, sums and cross-products into the pooled sums. So the kinds that pool column
sums (``statistics``, ``fold_statistics``, ``summary``) carry, packed after their sums, one 0/1 value per
pair of *indicator columns* and contribution: 1 when some row of the factory's own has ``x_i·x_j ≠ 0``.
Summed over an aggregate each slot counts the factories behind that entry, and the key holder refuses an
aggregate where a count is neither 0 nor at least the threshold (:func:`support_problems`), before it
releases anything. The counts are not part of the released sums.

Indicator columns are the sums' own columns plus, for each categorical feature, its **reference level**
(``1 − Σ its dummies``; without it, a reference level only one plant has would leak through
``ones − Σ dummies``). Dummies are recognised by name, as :func:`hefed.data.one_hot` and studies name them:
``f"{feature}={level}"``; every feature whose name holds ``=`` is a dummy of the feature named by the text
before the first ``=``. The layout follows from the bundle's header alone, so every party derives the same
slots (a numeric feature whose name holds ``=`` gets a meaningless extra column, which can only refuse more).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: How a reference level's (virtual) indicator column is named: after its categorical feature.
REFERENCE_SUFFIX = "=(reference level)"

#: Cells of the temporary 0/1 matrix of one matrix product (rows per product: this over the columns), 16 MB.
_CHUNK_CELLS = 1 << 22


def reference_groups(features: Sequence[str], first: int = 0) -> list[tuple[str, list[int]]]:
    """The categorical features among ``features`` (by their dummies' names) and the positions of their
    dummies (offset by ``first``), in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(features):
        if "=" in name:
            groups.setdefault(name.split("=", 1)[0], []).append(first + i)
    return list(groups.items())


def reference_name(feature: str) -> str:
    """The name of a categorical feature's reference-level indicator column."""
    return feature + REFERENCE_SUFFIX


def pair_count(columns: int) -> int:
    """How many pairs ``(i, j)``, ``i <= j``, ``columns`` indicator columns have."""
    return columns * (columns + 1) // 2


def pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    """The pairs of indicator columns in travel order (upper triangle, row by row)."""
    return [(names[a], names[b]) for a in range(len(names)) for b in range(a, len(names))]


class SupportAccumulator:
    """OR, over blocks of rows, of "some row has ``x_i·x_j ≠ 0``" for every pair of indicator columns.

    ``columns`` is the number of real columns a block has (rows of the ``(columns, rows)`` arrays
    :meth:`update` takes), ``groups`` the positions of each categorical feature's dummies among them:
    each adds the reference level's column ``1 − Σ dummies``.
    """

    def __init__(self, columns: int, groups: Sequence[Sequence[int]] = ()) -> None:
        self.groups = [list(g) for g in groups]
        size = columns + len(self.groups)
        self.seen = np.zeros((size, size), dtype=bool)

    def update(self, values: np.ndarray) -> None:
        """Add a block of rows: ``values`` is ``(columns, rows)``."""
        step = max(256, _CHUNK_CELLS // max(1, self.seen.shape[0]))
        for start in range(0, values.shape[1], step):
            block = values[:, start:start + step]
            rows = [block != 0]
            for group in self.groups:
                rows.append(((1.0 - block[group].sum(axis=0)) != 0)[None, :])
            nonzero: np.ndarray = np.vstack(rows) if len(rows) > 1 else rows[0]
            # A column non-zero in every row of the block is non-zero together with each column non-zero in
            # some row: only the columns with zeros in some but not all rows need the product (issue 15: a
            # table without zeros costs no 0/1 copy and no product).
            every: np.ndarray = np.asarray(nonzero.all(axis=1))
            some: np.ndarray = np.asarray(nonzero.any(axis=1))
            self.seen |= (every[:, None] & some[None, :]) | (some[:, None] & every[None, :])
            partial = np.flatnonzero(some & ~every)
            if len(partial):
                indicator = nonzero[partial].astype(np.float32)
                # a product of 0/1 values summed: every term is non-negative, so the float sum is > 0 exactly
                # when some row has both non-zero (no rounding makes a positive sum zero)
                self.seen[np.ix_(partial, partial)] |= (indicator @ indicator.T) > 0

    def merge(self, other: SupportAccumulator) -> None:
        """OR another accumulator of the same columns into this one."""
        self.seen |= other.seen

    def diagonal(self) -> list[int]:
        """Per indicator column, 1 when it is non-zero in some row."""
        return [int(v) for v in np.diag(self.seen)]

    def result(self) -> list[int]:
        """The 0/1 indicators of every pair, in travel order (upper triangle, row by row)."""
        rows, cols = np.triu_indices(self.seen.shape[0])
        return [int(v) for v in self.seen[rows, cols]]


def support_problems(names: Sequence[str], counts: Sequence[int], threshold: int,
                     ones: str | None = None) -> list[str]:
    """The entries whose count of factories is neither 0 nor at least ``threshold``, named for a message:
    a column alone (its pair with ``ones``, or with itself) as its name, a pair as ``"a × b"``; a pair is
    left out when one of its columns is named alone already. ``counts`` are in :func:`pairs` order."""
    if threshold < 2:
        return []
    low = [(a, b) for (a, b), c in zip(pairs(names), counts, strict=True) if 0 < c < threshold]
    alone = list(dict.fromkeys(b if a == ones else a for a, b in low if a == b or a == ones))
    named = set(alone)
    both = [f"{a} × {b}" for a, b in low if a != b and a != ones and a not in named and b not in named]
    return [*alone, *both]


def describe_problems(problems: Sequence[str], threshold: int, what: str) -> str:
    """One line naming the columns whose sums would single out fewer than ``threshold`` factories."""
    shown = ", ".join(repr(p) for p in problems[:6]) + (f" and {len(problems) - 6} more" if len(problems) > 6 else "")
    return (f"{what}: {shown} {'is' if len(problems) == 1 else 'are'} non-zero at fewer factories than the "
            f"disclosure threshold {threshold}, so the pooled sums would single out a factory; leave such "
            "columns and levels out of the study")
