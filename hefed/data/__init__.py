"""Reading a factory's tables, cleaning its rows, and their exact statistics (whole or streamed).

Layer 3 of hefed (above :mod:`hefed.stats`): files and data frames in, exact statistics out.

* :func:`read_table`, :func:`select_xy`, :func:`default_features` — CSV/text (dialect and
  encoding detected or named by :class:`FileFormat`), Excel and Parquet tables, columns matched
  by name, every bad cell named by file, column and row;
* :func:`left_out_columns` — every column the default features leave out, with the reason;
  :func:`one_hot` — a categorical column as dummies for levels fixed in advance;
* :class:`Cleaning` (with :class:`Bounds`) and :func:`preprocess` — gaps, outliers and bounds,
  every change counted in a :class:`PreprocessReport`;
* :class:`Holdout` and :func:`split_holdout` — reproducible held-out rows;
* :class:`Table` — a factory's table as the bundle kinds read it (data, columns, cleaning, holdout);
* :func:`compute_statistics`, :func:`compute_fold_statistics`, :func:`stream_statistics` — the
  exact statistics of a data frame or of a file read block by block, in bounded memory.
"""

from __future__ import annotations

from ._cleaning import Bounds, Cleaning, PreprocessReport, preprocess, row_list, used_columns, warn_rounding
from ._columns import left_out_columns, one_hot
from ._formats import PARQUET_SUFFIXES, FileFormat, ResolvedFormat, detect_format
from ._source import Table
from ._streaming import (
    compute_fold_statistics,
    compute_statistics,
    stream_fold_statistics,
    stream_statistics,
    table_statistics,
)
from ._tables import (
    Holdout,
    check_test_fraction,
    default_features,
    missing_columns_error,
    numeric_column,
    read_table,
    read_table_and_format,
    select_xy,
    split_holdout,
    write_table,
)

__all__ = [
    "PARQUET_SUFFIXES",
    "Bounds",
    "Cleaning",
    "FileFormat",
    "Holdout",
    "ResolvedFormat",
    "PreprocessReport",
    "Table",
    "check_test_fraction",
    "compute_fold_statistics",
    "compute_statistics",
    "default_features",
    "detect_format",
    "left_out_columns",
    "missing_columns_error",
    "numeric_column",
    "one_hot",
    "preprocess",
    "read_table",
    "read_table_and_format",
    "row_list",
    "select_xy",
    "split_holdout",
    "stream_fold_statistics",
    "stream_statistics",
    "table_statistics",
    "used_columns",
    "warn_rounding",
    "write_table",
]
