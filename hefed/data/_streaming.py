"""Statistics of a CSV or Parquet file read in chunks, so memory does not grow with the file.

The file is read by pyarrow in blocks (CSV: ``pyarrow.csv.open_csv``, parsed on
every core; Parquet: ``ParquetFile.iter_batches``), only the target and
feature columns are converted (to float64), and each block is preprocessed
(missing values, outliers, bounds) and added to an exact
:class:`~hefed.primitives.exactgram.GramAccumulator`, then dropped. The result
equals :func:`hefed.data.compute_statistics` on the whole table, integer
for integer: the Gram of a sum of row blocks is the sum of their Grams.

Anything pyarrow will not read as plain numbers (a non-numeric cell, a row with
too many fields, an integer beyond 2^53 that float64 would round) sends the
file to the whole-table reader (:func:`hefed.data.read_table`), which names
the offending cell; so errors are the same, only their memory bound differs.

Without ``features``, the default features (every numeric column but the target)
are chosen from the first block, and the columns it leaves out (empty or text
there) are watched to the end: if one turns out numeric, the whole-table reader
decides, so the choice never depends on where a file's first values happen to be.
Errors name the row of the file. With ``missing="error"`` every incomplete row is
listed, as on the whole table; for a file with several other problems, the one
reported is the first block's, which may not be the one the whole-table reader
(which checks column by column) would report first.

A progress bar (rich) is drawn on stderr when it is a terminal, never otherwise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import re
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from ..errors import DataError, HefedError, SchemaMismatchError
from ..primitives.exactgram import GramAccumulator
from ..stats import (
    ONES,
    Encoding,
    FoldStatistics,
    SufficientStatistics,
    SupportAccumulator,
    accumulate_block,
    block_statistics,
    column_scales,
    fold_assignment,
    new_support,
    statistics_of,
)
from ._cleaning import Cleaning, PreprocessReport, preprocess, row_list, warn_rounding
from ._columns import columns_left_out, left_out_columns
from ._formats import FileFormat, ResolvedFormat, detect_format, to_numbers
from ._tables import (
    check_data_file,
    check_unique_columns,
    default_features,
    read_csv_header,
    read_table,
    select_block,
)

#: CSV bytes pyarrow parses at a time (its default): larger blocks only cost memory,
#: as pyarrow keeps several in flight.
BLOCK_BYTES = 1 << 20
#: Rows summed at once: parsed blocks are gathered to this many rows (CSV), or read in
#: batches of this many rows (Parquet), so per-block overheads stay small.
BATCH_ROWS = 1 << 15


class _FallBack(Exception):
    """pyarrow read something the whole-table reader must judge (and name the cell of)."""


def stream_statistics(
    path: str | os.PathLike[str],
    target: str,
    features: Sequence[str] | None = None,
    encoding: Encoding | None = None,
    factory_id: str | None = None,
    *,
    cleaning: Cleaning | None = None,
    progress: bool | None = None,
    file_format: FileFormat | None = None,
) -> tuple[SufficientStatistics, PreprocessReport]:
    """Exact statistics of a CSV/Parquet file, read block by block.

    ``cleaning`` is applied row by row (:func:`~hefed.data.preprocess`), so per block is the
    same as on the whole table; without it nothing is cleaned and any missing value is refused.
    ``progress`` draws a progress bar (default: when stderr is a terminal); ``file_format`` names
    the CSV dialect, text encoding or sheet where detection should not decide.
    Returns the statistics and what preprocessing did, rows numbered as in the file.
    """
    parts, report = _read(Path(path), target, features, encoding or Encoding(), factory_id, cleaning,
                          progress, 0, 0, file_format)
    return parts[0], report


def stream_fold_statistics(
    path: str | os.PathLike[str],
    target: str,
    features: Sequence[str] | None = None,
    encoding: Encoding | None = None,
    factory_id: str | None = None,
    folds: int = 5,
    seed: int = 0,
    *,
    cleaning: Cleaning | None = None,
    progress: bool | None = None,
    file_format: FileFormat | None = None,
) -> tuple[FoldStatistics, PreprocessReport]:
    """Exact per-fold statistics of a CSV/Parquet file, read block by block.

    Folds are assigned as :func:`hefed.stats.fold_assignment` assigns them on the whole
    (preprocessed) table: by a seeded hash of the row's number among the rows kept, so the
    result equals :func:`hefed.data.compute_fold_statistics` on that table exactly.
    Other arguments as :func:`stream_statistics`.
    """
    fold_assignment(0, folds, seed)  # validates folds and seed before reading anything
    parts, report = _read(Path(path), target, features, encoding or Encoding(), factory_id, cleaning,
                          progress, folds, seed, file_format)
    return FoldStatistics(parts, seed), report


def table_statistics(
    frame: pd.DataFrame, target: str, features: Sequence[str] | None = None, encoding: Encoding | None = None,
    factory_id: str | None = None, *, cleaning: Cleaning | None = None, folds: int = 0, seed: int = 0,
    source: str | None = None,
) -> tuple[list[SufficientStatistics], PreprocessReport]:
    """The whole-table path of :func:`stream_statistics` (one statistics per fold with ``folds``)."""
    return _process(frame, source or factory_id or "data", target, features, encoding or Encoding(), factory_id,
                    cleaning, folds, seed)


def compute_statistics(
    data: pd.DataFrame | str | os.PathLike[str],
    target: str,
    features: Sequence[str] | None = None,
    encoding: Encoding | None = None,
    factory_id: str | None = None,
    file_format: FileFormat | None = None,
) -> SufficientStatistics:
    """A factory's exact sufficient statistics, computed locally in plaintext.

    ``data`` is a DataFrame or the path of a CSV/Parquet file (read block by block). Nothing
    is cleaned: any missing value is refused. Raises :class:`~hefed.errors.DataError` or
    :class:`~hefed.errors.EncodingError` naming the column and row of any value that cannot
    be used exactly.
    """
    (stats,), report, source = _computed(data, target, features, encoding, factory_id, 0, 0, file_format)
    warn_rounding(report, source)
    return stats


def compute_fold_statistics(
    data: pd.DataFrame | str | os.PathLike[str],
    target: str,
    features: Sequence[str] | None = None,
    encoding: Encoding | None = None,
    factory_id: str | None = None,
    folds: int = 5,
    seed: int = 0,
    file_format: FileFormat | None = None,
) -> FoldStatistics:
    """A factory's exact statistics per fold (rows assigned by :func:`hefed.stats.fold_assignment`)."""
    fold_assignment(0, folds, seed)  # validates folds and seed before reading anything
    parts, report, source = _computed(data, target, features, encoding, factory_id, folds, seed, file_format)
    warn_rounding(report, source)
    return FoldStatistics(parts, seed)


def _computed(
    data: pd.DataFrame | str | os.PathLike[str], target: str, features: Sequence[str] | None,
    encoding: Encoding | None, factory_id: str | None, folds: int, seed: int, file_format: FileFormat | None,
) -> tuple[list[SufficientStatistics], PreprocessReport, str]:
    """What :func:`compute_statistics` and :func:`compute_fold_statistics` compute, nothing cleaned, and the
    name of the data for the rounding warning: a file is streamed; a frame is one block, whose left-out
    columns are not explained (these functions return no report)."""
    if isinstance(data, pd.DataFrame):
        source = factory_id or "data"
        parts, report = _process(data, source, target, features, encoding or Encoding(), factory_id, None, folds,
                                 seed, explain=False)
        return parts, report, source
    parts, report = _read(Path(data), target, features, encoding or Encoding(), factory_id, None, None, folds, seed,
                          file_format)
    return parts, report, str(data)


def _read(
    path: Path, target: str, features: Sequence[str] | None, encoding: Encoding, factory_id: str | None,
    cleaning: Cleaning | None, progress: bool | None, folds: int, seed: int, file_format: FileFormat | None,
) -> tuple[list[SufficientStatistics], PreprocessReport]:
    source = str(path)
    if progress is None:
        progress = sys.stderr.isatty()
    check_data_file(path)
    resolved = detect_format(path, file_format)
    try:
        if resolved.kind == "excel":
            raise _FallBack  # a workbook is read whole
        return _stream(path, source, target, features, encoding, factory_id, cleaning, progress, folds, seed,
                       resolved)
    except _FallBack:
        return _process(read_table(path, file_format), source, target, features, encoding, factory_id, cleaning,
                        folds, seed)


def _stream(
    path: Path, source: str, target: str, features: Sequence[str] | None, encoding: Encoding,
    factory_id: str | None, cleaning: Cleaning | None, progress: bool, folds: int, seed: int,
    resolved: ResolvedFormat,
) -> tuple[list[SufficientStatistics], PreprocessReport]:
    total_bytes = path.stat().st_size
    first, watchable, raw = _first_block(path, resolved)
    first.attrs["decimal"] = resolved.decimal  # as read_table marks a frame: features and reasons read cells alike
    if any(not str(c) for c in first.columns) or ONES in first.columns:
        raise _FallBack  # pandas renames empty names; the reserved name gets its own error
    names = [str(f) for f in features] if features is not None else default_features(first, target)
    used = list(dict.fromkeys([*names, target]))
    if target not in first.columns or any(c not in first.columns for c in used) or not names:
        # column errors come from the header: raise them as the whole-table path does, on no rows
        _process(first.iloc[:0], source, target, features, encoding, factory_id, cleaning, folds, seed)
        raise _FallBack  # (not reached: the call above raises)
    # Without --features, the whole-table reader decides on every row which columns are numeric;
    # columns left out here because their first block is empty or text are watched to the end.
    watch = [c for c in watchable if c not in used] if features is None else []
    accs = [GramAccumulator(column_scales(names, target, encoding)) for _ in range(max(1, folds))]
    support = new_support(names, target)  # which columns are non-zero together, ORed over the blocks
    report = PreprocessReport(0, 0)
    if features is None:  # why the first block left each column out (a column numeric later falls back, below)
        report.left_out = {c: reason for c, reason in left_out_columns(first, target).items() if c not in used}
    counts = {c: [0, 0] for c in watch}  # present, numeric
    # With missing="error" the whole table is checked for gaps before anything else: collect
    # every incomplete row (and hold back any other error) to the end, then report the same.
    strict = cleaning is not None and cleaning.missing == "error"
    lenient = dataclasses.replace(cleaning, missing="drop") if strict and cleaning is not None else cleaning
    missing_rows: list[int] = []
    deferred: HefedError | None = None
    offset = 0
    with _progress_bar(progress, total_bytes, source) as advance:
        for frame, done_bytes in _prefetch(_blocks(path, resolved, raw, used, watch)):
            for c in watch:
                present = frame[c].dropna()
                present = present[present.str.strip() != ""]  # arrow reads an empty text cell as "", pandas as NaN
                counts[c][0] += len(present)
                counts[c][1] += int(to_numbers(present, resolved.decimal).notna().sum())  # as the whole table
            block = frame[used] if watch else frame
            try:
                if missing_rows or deferred is not None:  # only looking for more gaps now
                    _, part = preprocess(block, target, names, lenient, source, allow_empty=True)
                    missing_rows += [r + offset for r in part.dropped_missing]
                else:
                    _add_block(accs, block, source, target, names, encoding, lenient, report, offset, seed,
                               support)
            except HefedError as exc:
                error = exc.reworded(_renumber(str(exc), offset))
                if not strict:
                    raise error from None
                deferred = deferred or error
            if strict and report.dropped_missing:  # gaps found by this block, even if it then failed
                missing_rows += report.dropped_missing
                report.dropped_missing = []
            offset += len(frame)
            advance(done_bytes)
    if any(present == 0 or 2 * numeric >= present for present, numeric in counts.values()):
        raise _FallBack  # a column the first block left out is numeric after all: decide on the whole table
    if missing_rows:
        raise DataError(f"{source}: missing values in row(s) {row_list(missing_rows)} (drop those rows, or "
                        "impute the consortium means)", parameters=("missing", "impute"))
    if deferred is not None:
        raise deferred
    if report.rows_in == 0:
        raise DataError(f"{source}: no data rows")
    if report.rows_out == 0:
        raise DataError(f"{source}: no rows left after preprocessing")
    if report.rows_out >= 1 << encoding.max_rows_bits:
        raise SchemaMismatchError(f"{source}: more rows than the encoding allows (2^{encoding.max_rows_bits})")
    return statistics_of(accs, support, names, target, encoding, factory_id), report


def _add_block(
    accs: list[GramAccumulator], frame: pd.DataFrame, source: str, target: str, names: list[str],
    encoding: Encoding, cleaning: Cleaning | None, report: PreprocessReport, offset: int, seed: int,
    support: SupportAccumulator,
) -> None:
    """Preprocess one block and add it to the accumulator (of each row's fold, with folds).
    Errors name rows of the block as read (the caller adds the block's offset)."""
    n = len(frame)
    report.rows_in += n
    dropped: list[int] = []
    if cleaning is not None:
        frame, part = preprocess(frame, target, names, cleaning, source, allow_empty=True)
        dropped = part.dropped_missing + part.dropped_outliers
        report.dropped_missing += [r + offset for r in part.dropped_missing]
        report.dropped_outliers += [r + offset for r in part.dropped_outliers]
        report.imputed_cells += part.imputed_cells
        report.clipped_cells += part.clipped_cells
    kept_before = report.rows_out
    report.rows_out += len(frame)
    if not len(frame):
        return
    with _rows_named_by(_kept_rows(n, dropped)):
        columns, _ = select_block(frame, target, names, source)  # the one copy of the block's values
        # the fold of a row is a hash of its number among the kept rows, as on the whole table
        folds = fold_assignment(len(frame), len(accs), seed, start=kept_before) if len(accs) > 1 else None
        accumulate_block(accs, columns, names, target, encoding, source, folds, report.rounding, support)


def _process(
    frame: pd.DataFrame, source: str, target: str, features: Sequence[str] | None, encoding: Encoding,
    factory_id: str | None, cleaning: Cleaning | None, folds: int = 0, seed: int = 0, *, explain: bool = True,
) -> tuple[list[SufficientStatistics], PreprocessReport]:
    """The whole-table path: same steps, one block. Without ``features`` they are chosen once, from the
    table as read (as the streaming path chooses them before cleaning), and with ``explain`` the report
    says why each other column was left out."""
    n = len(frame)
    names = [str(f) for f in features] if features is not None else default_features(frame, target)
    left_out = columns_left_out(frame, target, names) if features is None and explain else {}
    if cleaning is not None:
        frame, report = preprocess(frame, target, names, cleaning, source)
    else:
        report = PreprocessReport(n, n)
    report.left_out = left_out
    kept = _kept_rows(n, report.dropped_missing + report.dropped_outliers)
    with _rows_named_by(kept):
        columns, names = select_block(frame, target, names, source)  # the one copy of the table's values
        groups = fold_assignment(len(frame), folds, seed) if folds else None
        return block_statistics(columns, names, target, encoding, factory_id, source, groups, max(1, folds),
                                report.rounding), report


def _kept_rows(n: int, dropped: list[int]) -> np.ndarray:
    """Positions (in the table as read) of the rows preprocessing kept, in order."""
    return np.delete(np.arange(n), np.asarray(sorted(set(dropped)), dtype=np.intp))


_ROW_NUMBERS = re.compile(r"(?:(?<=, )|(?<=in ))(rows?(?:\(s\))? )(\d+(?:, \d+)*)")


@contextlib.contextmanager
def _rows_named_by(positions: np.ndarray) -> Iterator[None]:
    """Errors raised inside name rows by their place in a subset of the table: rename them
    ``positions[row − 1] + 1``, the row of the table as read."""
    try:
        yield
    except HefedError as exc:
        def rename(match: re.Match[str]) -> str:
            numbers = [int(v) for v in match.group(2).split(", ")]
            mapped = [str(int(positions[v - 1]) + 1) if 0 < v <= len(positions) else str(v) for v in numbers]
            return match.group(1) + ", ".join(mapped)

        raise exc.reworded(_ROW_NUMBERS.sub(rename, str(exc))) from None


def _renumber(message: str, offset: int) -> str:
    """Rows in a block's error message, renumbered as rows of the file."""
    if not offset:
        return message

    def shift(match: re.Match[str]) -> str:
        return match.group(1) + re.sub(r"\d+", lambda n: str(int(n.group()) + offset), match.group(2))

    return _ROW_NUMBERS.sub(shift, message)


# --- reading ------------------------------------------------------------------------------------


def _csv_options(resolved: ResolvedFormat, block_size: int) -> dict[str, Any]:
    """pyarrow's read and parse options for a text file's dialect and encoding."""
    import codecs

    import pyarrow.csv as pacsv

    encoding = "utf8" if codecs.lookup(resolved.encoding).name == "utf-8" else resolved.encoding
    return {"read_options": pacsv.ReadOptions(block_size=block_size, encoding=encoding),
            "parse_options": pacsv.ParseOptions(delimiter=resolved.delimiter)}


def _first_block(path: Path, resolved: ResolvedFormat) -> tuple[pd.DataFrame, list[str], dict[str, str]]:
    """The first block with inferred types, to choose the columns as the whole-table reader
    would; the columns that later rows could still make numeric (text or empty here; in
    Parquet only text or null columns, as the schema fixes every other type); and each
    column's name as written in the file, by its stripped name."""
    import pyarrow as pa

    try:
        if resolved.kind == "parquet":
            import pyarrow.parquet as pq

            handle = pq.ParquetFile(path)
            check_unique_columns([str(c) for c in handle.schema_arrow.names], path)
            batch = next(handle.iter_batches(batch_size=4096), None)
            if batch is None:
                raise _FallBack
            frame = batch.to_pandas()
            frame.columns = [str(c) for c in frame.columns]
            watchable = [str(f.name) for f in handle.schema_arrow
                         if pa.types.is_string(f.type) or pa.types.is_large_string(f.type) or pa.types.is_null(f.type)]
            return frame, watchable, {str(c): c for c in handle.schema_arrow.names}
        import pyarrow.csv as pacsv

        raw = {h.strip(): h for h in read_csv_header(path, resolved)}
        reader = pacsv.open_csv(path, **_csv_options(resolved, 1 << 20),
                                convert_options=pacsv.ConvertOptions(decimal_point=resolved.decimal))
        batch = reader.read_next_batch()
        frame = batch.to_pandas()
    except (pa.ArrowException, StopIteration, OSError):
        raise _FallBack from None
    frame.columns = [str(c).strip() for c in frame.columns]
    numeric = {str(f.name).strip() for f in batch.schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)}
    return frame, [c for c in frame.columns if c not in numeric], raw


def _blocks(
    path: Path, resolved: ResolvedFormat, raw: dict[str, str], used: list[str], watch: Sequence[str] = ()
) -> Iterator[tuple[pd.DataFrame, int]]:
    """Blocks of the used columns as float64 DataFrames (and of the watched ones as text),
    with the bytes consumed so far."""
    import pyarrow as pa

    limit = float(2**53)
    try:
        if resolved.kind == "parquet":
            import pyarrow.parquet as pq

            handle = pq.ParquetFile(path)
            total_rows, done = max(1, handle.metadata.num_rows), 0
            size = path.stat().st_size
            wanted = [*used, *watch]
            for batch in handle.iter_batches(batch_size=BATCH_ROWS, columns=[raw[c] for c in wanted]):
                done += batch.num_rows
                yield _to_frame(batch, used, limit, watch), size * done // total_rows
            return
        import pyarrow.csv as pacsv

        counter = _CountingFile(path.open("rb"))
        try:
            reader = pacsv.open_csv(
                counter,
                **_csv_options(resolved, BLOCK_BYTES),
                convert_options=pacsv.ConvertOptions(
                    column_types={**{raw[c]: pa.float64() for c in used}, **{raw[c]: pa.string() for c in watch}},
                    include_columns=[raw[c] for c in [*used, *watch]],
                    decimal_point=resolved.decimal,
                ),
            )
            pending: list[Any] = []
            rows = 0
            for batch in reader:
                pending.append(batch)
                rows += batch.num_rows
                if rows >= BATCH_ROWS:
                    yield _to_frame(pa.Table.from_batches(pending), used, limit, watch), counter.position
                    pending, rows = [], 0
            if pending:
                yield _to_frame(pa.Table.from_batches(pending), used, limit, watch), counter.position
        finally:
            counter.close()
    except (pa.ArrowException, OSError):
        raise _FallBack from None


def _to_frame(batch: Any, used: list[str], limit: float, watch: Sequence[str] = ()) -> pd.DataFrame:
    """A record batch or table of the used columns as a float64 DataFrame (watched ones as text)."""
    import pyarrow as pa

    index = {str(n).strip(): i for i, n in enumerate(batch.schema.names)}  # by name, whatever the order
    columns: dict[str, Any] = {}
    for name in watch:
        columns[name] = pd.Series(batch.column(index[name]).cast(pa.string()).to_pandas(), dtype=object)
    for name in used:
        column = batch.column(index[name])
        kind = column.type
        if not (pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_null(kind)):
            raise _FallBack  # booleans, decimals, text: the whole-table reader decides
        values = column.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        with np.errstate(invalid="ignore"):
            if (np.abs(values) >= limit).any():  # integers past 2^53 may have been rounded: check exactly
                raise _FallBack
        columns[name] = values
    return pd.DataFrame(columns, copy=False)


def _prefetch(blocks: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Read the next blocks in a thread while this one is summed (pyarrow parses without the
    GIL), holding at most ``depth`` blocks, so memory stays bounded."""
    buffer: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for block in blocks:
                while not stop.is_set():
                    try:
                        buffer.put(("block", block), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there
            buffer.put(("error", exc))

    thread = threading.Thread(target=produce, name="hefed-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = buffer.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue, then let it finish
            with contextlib.suppress(queue.Empty):
                buffer.get_nowait()
            thread.join(timeout=0.05)
        with contextlib.suppress(Exception):
            blocks.close()  # type: ignore[attr-defined]


class _CountingFile:
    """A binary file that remembers how far it has been read (for the progress bar)."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self.position = 0
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self.position += len(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self._handle.close()
        self.closed = True


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int, label: str) -> Iterator[Any]:
    if not enabled:
        yield lambda done: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    # stderr, so piped stdout (--json) stays clean; the bar is wiped when done.
    console = Console(stderr=True, force_terminal=True)
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(f"reading {Path(label).name}", total=total)
        yield lambda done: bar.update(task, completed=done)

