"""Cross-validation folds of a factory's rows, and the exact statistics of each fold.

With ``folds = K`` a factory assigns each row to a fold by a seeded hash of its
row number (reproducible, independent of the other rows) and computes the exact
statistics of every fold. Summed over factories, fold ``k`` holds the statistics
of the pooled rows assigned to ``k``; their sum is the statistics of all rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .._files import atomic_write_json, check_format, read_json_object, split_study, study_field
from ..errors import InvalidFileError, UsageError
from ._gram import SufficientStatistics

FORMAT = "hefed.fold_statistics"
VERSION = 1


def check_seed(seed: object) -> int:
    """Seeds of holdouts and folds are integers in [0, 2^63)."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= int(seed) < 2**63:
        raise UsageError(f"seed must be an integer in [0, 2^63), got {seed!r}", parameters=("seed",))
    return int(seed)


def fold_assignment(n_rows: int, folds: int, seed: int = 0, start: int = 0) -> np.ndarray:
    """Fold of each row: a seeded SplitMix64 hash of the row number, modulo ``folds``.

    The fold of row ``i`` depends only on ``(seed, i)``, so it is reproducible and
    does not change when rows are appended. ``start`` numbers the first row (for a
    table read in blocks).
    """
    check_seed(seed)
    if not isinstance(folds, int) or folds < 2:
        raise UsageError(f"folds must be an integer of at least 2, got {folds!r}", parameters=("folds",))
    with np.errstate(over="ignore"):
        z = np.arange(start, start + n_rows, dtype=np.uint64) + np.uint64(seed % (1 << 64)) * np.uint64(
            0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(folds)).astype(np.int64)


@dataclass
class FoldStatistics:
    """Exact statistics of each fold; their sum is the statistics of all rows."""

    #: The ``format`` of its JSON files.
    FORMAT: ClassVar[str] = FORMAT

    folds: list[SufficientStatistics]
    seed: int = 0
    #: The digest of the study these statistics belong to, if any.
    study: str | None = None

    @property
    def k(self) -> int:
        return len(self.folds)

    @property
    def n(self) -> int:
        return sum(f.n for f in self.folds)

    @property
    def contributors(self) -> list[str]:
        return list(self.folds[0].contributors)

    def total(self) -> SufficientStatistics:
        """The statistics of all rows (every fold's contributors are the same factories)."""
        result = self.folds[0]
        for fold in self.folds[1:]:
            result = result + fold
        result.contributors = list(self.folds[0].contributors)
        return result

    def training(self, k: int) -> SufficientStatistics:
        """The statistics of every fold but ``k``: the training rows of fold ``k``'s split."""
        return self.total() - self.folds[k]

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "seed": self.seed, "folds": [f.to_dict() for f in self.folds],
                **study_field(self.study)}

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        return atomic_write_json(path, self.to_dict(), force=force)

    @classmethod
    def from_dict(cls, obj: dict[str, Any], source: str = "fold statistics") -> FoldStatistics:
        obj, study = split_study(obj, source)
        check_format(obj, source, FORMAT, VERSION, "fold-statistics")
        folds = obj.get("folds")
        if not isinstance(folds, list) or len(folds) < 2 or not all(isinstance(f, dict) for f in folds):
            raise InvalidFileError(f"{source}: 'folds' must list at least two statistics objects")
        stats = [SufficientStatistics.from_dict(f, f"{source} fold {i}") for i, f in enumerate(folds)]
        if len({s.schema_key() for s in stats}) != 1:
            raise InvalidFileError(f"{source}: folds differ in target, features or encoding")
        seed = obj.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise InvalidFileError(f"{source}: 'seed' must be an integer")
        return cls(stats, seed, study)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FoldStatistics:
        return cls.from_dict(read_json_object(path, "fold statistics"), str(path))
