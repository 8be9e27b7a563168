"""A factory's table as the bundle kinds read it: where the rows are, which columns, how they are cleaned.

:class:`Table` bundles what every kind needs to compute its plain sums from a factory's
own rows: the data (a DataFrame, or the path of a CSV/TSV/.xlsx/Parquet file), the target and feature
columns, the factory's id (which names the data in errors when it is not a file), how rows
are cleaned (:class:`~hefed.data.Cleaning`) and which rows are held out
(:class:`~hefed.data.Holdout`). Files are streamed block by block whenever the whole table
is not needed (no holdout: an exact-size random draw needs every row).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from ..stats import Encoding, SufficientStatistics
from ._cleaning import Cleaning, PreprocessReport, preprocess
from ._columns import one_hot
from ._formats import FileFormat
from ._streaming import stream_fold_statistics, stream_statistics, table_statistics
from ._tables import Holdout, read_table


@dataclass(frozen=True)
class Table:
    """A factory's table: ``data`` (DataFrame or the path of a table file), columns, cleaning and holdout.

    ``features=None`` means every numeric column but the target. ``cleaning=None`` cleans
    nothing (any missing value is then refused, naming its cell).
    """

    data: pd.DataFrame | str | os.PathLike[str]
    target: str
    features: Sequence[str] | None = None
    factory_id: str = "factory"
    cleaning: Cleaning | None = field(default_factory=Cleaning)
    holdout: Holdout | None = None
    file_format: FileFormat | None = None
    #: categorical columns and their levels: one-hot encoded (the first level is the reference) before use
    categories: Mapping[str, Sequence[str]] = field(default_factory=dict)

    @property
    def is_file(self) -> bool:
        return not isinstance(self.data, pd.DataFrame)

    @property
    def source(self) -> str:
        """How errors name this table: the file's path, or the factory id for a data frame."""
        return str(self.data) if self.is_file else self.factory_id

    @property
    def feature_list(self) -> list[str] | None:
        return None if self.features is None else [str(f) for f in self.features]

    def frame(self) -> pd.DataFrame:
        """The whole table, as read (no cleaning, no holdout), its categorical columns one-hot encoded."""
        frame = self.data if isinstance(self.data, pd.DataFrame) else read_table(Path(self.data), self.file_format)
        for column, levels in self.categories.items():
            already = column not in frame.columns and all(f"{column}={level}" in frame.columns for level in levels[1:])
            if not already:  # rows this table kept back before (a holdout) are one-hot encoded already
                frame = one_hot(frame, column, levels, self.source)
        return frame

    def prepared(self) -> tuple[pd.DataFrame, PreprocessReport | None, pd.DataFrame | None]:
        """(rows used, what cleaning did, the holdout kept back): the whole table read, cleaned
        as ``cleaning`` says, then split by ``holdout``."""
        frame, report = self.frame(), None
        if self.cleaning is not None:
            frame, report = preprocess(frame, self.target, self.feature_list, self.cleaning, self.source)
        holdout = None
        if self.holdout is not None:
            frame, holdout = self.holdout.split(frame)
        return frame, report, holdout

    def statistics(
        self, encoding: Encoding, folds: int = 0, seed: int = 0,
    ) -> tuple[list[SufficientStatistics], PreprocessReport | None, pd.DataFrame | None]:
        """The exact statistics of the rows used (one per fold with ``folds``), what cleaning did,
        and the holdout. A file without a holdout is streamed: memory does not grow with it."""
        if self.is_file and self.holdout is None and not self.categories:
            path = Path(self.data)  # type: ignore[arg-type]
            if folds:
                fold_stats, report = stream_fold_statistics(path, self.target, self.feature_list, encoding,
                                                            self.factory_id, folds, seed, cleaning=self.cleaning,
                                                            file_format=self.file_format)
                return fold_stats.folds, report, None
            stats, report = stream_statistics(path, self.target, self.feature_list, encoding, self.factory_id,
                                              cleaning=self.cleaning, file_format=self.file_format)
            return [stats], report, None
        if self.holdout is None:  # cleaned in the same pass, so errors name rows of the table as given
            parts, report = table_statistics(self.frame(), self.target, self.feature_list, encoding, self.factory_id,
                                             cleaning=self.cleaning, folds=folds, seed=seed, source=self.source)
            return parts, report, None
        frame, cleaned, holdout = self.prepared()
        parts, encoded = table_statistics(frame, self.target, self.feature_list, encoding, self.factory_id,
                                          folds=folds, seed=seed, source=self.source)
        if cleaned is None:
            return parts, encoded, holdout
        return parts, replace(cleaned, rounding=encoded.rounding, left_out=encoded.left_out), holdout
