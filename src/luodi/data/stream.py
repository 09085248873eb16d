"""Tables larger than memory: Parquet and CSV read as Arrow record batches, column statistics fitted in one pass, and
a shuffle with a bounded buffer whose order is a pure function of (seed, epoch), so a resumed pass is exact.

    for batch in shuffled(path, seed=7, epoch=0, buffer_rows=100_000):   # pa.Table blocks, at most buffer_rows
        ...
    stats = fit_statistics(path, numeric=["age"], categories=["color"])

Memory stays bounded by the reader's batch plus the shuffle buffer: the file is never held whole.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from luodi.columns import signed_log
from luodi.errors import InputError

BATCH_ROWS = 65_536  # rows per record batch the readers hand out
CSV_BLOCK_BYTES = 16 << 20  # bytes of CSV text pyarrow parses at a time


def record_batches(path: str | Path, batch_rows: int = BATCH_ROWS,
                   columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The file's rows as Arrow record batches, read as they are consumed (Parquet by row groups, CSV by blocks)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise InputError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            reader = pq.ParquetFile(path)
            missing = [name for name in columns or () if name not in reader.schema_arrow.names]
            if missing:
                raise InputError(f"{path}: no column {missing[0]!r} (columns: {', '.join(reader.schema_arrow.names)})")
            # One row group at a time, decoded on this thread: iter_batches reads ahead and its thread pool's
            # allocator arenas kept about as much memory as the file held (measured: 143 MiB for a 244 MiB file).
            for group in range(reader.num_row_groups):
                table = reader.read_row_group(group, columns=list(columns) if columns else None, use_threads=False)
                yield from table.to_batches(max_chunksize=batch_rows)
        elif suffix in (".csv", ".tsv"):
            stream = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                                    parse_options=pacsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ","),
                                    convert_options=pacsv.ConvertOptions(include_columns=list(columns or [])))
            for batch in stream:
                for start in range(0, batch.num_rows, batch_rows):
                    yield batch.slice(start, batch_rows)
        else:
            raise InputError(f"{path}: streaming reads .parquet and .csv/.tsv files, not {suffix or 'no suffix'}")
    except (pa.ArrowInvalid, pa.ArrowKeyError, OSError) as error:
        raise InputError(f"{path}: {(str(error).splitlines() or [type(error).__name__])[0]}") from None


Keep = Callable[[int, int], np.ndarray]  # (first row, rows) of a block -> bool mask of the rows to keep


def shuffled(path: str | Path, *, seed: int, epoch: int, buffer_rows: int, skip_rows: int = 0,
             columns: Sequence[str] | None = None, keep: Keep | None = None) -> Iterator[pa.Table]:
    """The file's rows in a seeded order, one block of at most `buffer_rows` at a time.

    The file is cut into consecutive blocks of `buffer_rows` rows; a Parquet file's blocks come in a permuted order
    (each read from its own row groups), a CSV's in file order (one pass: a CSV cannot seek to a row). Each block is
    permuted with a generator seeded by (seed, epoch, block). Only one block is held (memory bounded by
    `buffer_rows`), every row comes exactly once per epoch, and the order depends on nothing but (seed, epoch,
    buffer_rows, the file), so `skip_rows` (rows already trained on, from a checkpoint) resumes it exactly.
    `keep` selects rows of each block by their row number in the file (a split, `split_keep`) before the block is
    permuted; `skip_rows` then counts kept rows.
    """
    if buffer_rows < 1:
        raise InputError(f"the shuffle buffer must hold at least 1 row, got {buffer_rows}")
    emitted = 0
    for block, table in blocks(path, buffer_rows, np.random.default_rng([seed, epoch]), columns):
        if keep is not None:
            table = table.filter(pa.array(keep(block * buffer_rows, table.num_rows)))
        if emitted + table.num_rows <= skip_rows:
            emitted += table.num_rows
            continue
        table = table.take(pa.array(np.random.default_rng([seed, epoch, block]).permutation(table.num_rows)))
        if skip_rows > emitted:
            table = table.slice(skip_rows - emitted)
        emitted = max(emitted, skip_rows) + table.num_rows
        yield table


def blocks(path: str | Path, rows: int, generator: np.random.Generator | None,
           columns: Sequence[str] | None) -> Iterator[tuple[int, pa.Table]]:
    """(block number, rows) of consecutive `rows`-row blocks: Parquet in an order the generator permutes (file
    order without one), CSV in file order."""
    if Path(path).suffix.lower() in (".parquet", ".pq"):
        total = count_rows(path)
        count = -(-total // rows)
        for block in generator.permutation(count) if generator is not None else range(count):
            yield int(block), read_rows(path, int(block) * rows, min(total, (int(block) + 1) * rows), columns)
        return
    parts: list[pa.RecordBatch] = []
    held, number = 0, 0
    for batch in record_batches(path, columns=columns):
        while batch.num_rows:
            take = min(rows - held, batch.num_rows)
            parts.append(batch.slice(0, take))
            held, batch = held + take, batch.slice(take)
            if held == rows:
                yield number, pa.Table.from_batches(parts)
                parts, held, number = [], 0, number + 1
    if held:
        yield number, pa.Table.from_batches(parts)


def count_rows(path: str | Path) -> int:
    """Rows in the file: Parquet's footer says; a CSV is read through once (in batches)."""
    import pyarrow.parquet as pq

    if Path(path).suffix.lower() in (".parquet", ".pq") and Path(path).is_file():
        return int(pq.ParquetFile(path).metadata.num_rows)
    return sum(batch.num_rows for batch in record_batches(path))


def read_rows(path: str | Path, start: int, stop: int, columns: Sequence[str] | None = None) -> pa.Table:
    """Rows [start, stop) of a Parquet file, reading only the row groups that hold them."""
    import pyarrow.parquet as pq

    if Path(path).suffix.lower() in (".parquet", ".pq"):
        reader = pq.ParquetFile(path)
        groups, first, offset = [], None, 0
        for index in range(reader.num_row_groups):
            size = reader.metadata.row_group(index).num_rows
            if offset < stop and offset + size > start:
                groups.append(index)
                first = offset if first is None else first
            offset += size
        table = reader.read_row_groups(groups, columns=list(columns) if columns else None, use_threads=False)
        return table.slice(start - (first or 0), stop - start)
    raise InputError(f"{path}: only Parquet files can be read from a row on")


@dataclass
class ColumnStatistics:
    """One column's statistics, merged batch by batch (Chan et al.'s parallel variance: exact, no second pass)."""

    count: int = 0  # non-missing numbers
    missing: int = 0
    mean: float = 0.0
    m2: float = 0.0  # sum of squared deviations from the mean
    minimum: float = float("inf")
    maximum: float = float("-inf")
    values: Counter[str] = field(default_factory=Counter)  # category columns: value counts
    log_mean: float = 0.0  # the same moments of sign(x) * log(1 + |x|), for `normalization: log`
    log_m2: float = 0.0

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / self.count)) if self.count else 0.0

    @property
    def log_std(self) -> float:
        return float(np.sqrt(self.log_m2 / self.count)) if self.count else 0.0

    def add_numbers(self, column: pa.Array) -> None:
        values = np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
        present = values[~np.isnan(values)]
        self.missing += len(values) - len(present)
        if not len(present):
            return
        self.mean, self.m2 = merged_moments(self.count, self.mean, self.m2, present)
        self.log_mean, self.log_m2 = merged_moments(self.count, self.log_mean, self.log_m2, signed_log(present))
        self.count += len(present)
        self.minimum, self.maximum = min(self.minimum, float(present.min())), max(self.maximum, float(present.max()))

    def add_values(self, column: pa.Array) -> None:
        import pyarrow.compute as pc

        self.missing += column.null_count
        counts = pc.value_counts(column.drop_null().cast(pa.string()))
        self.values.update(dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(),
                                    strict=True)))


def merged_moments(count: int, mean: float, m2: float, values: np.ndarray) -> tuple[float, float]:
    """The mean and sum of squared deviations of `count` numbers (`mean`, `m2`) and `values` together."""
    added, added_mean = len(values), float(values.mean())
    total = count + added
    delta = added_mean - mean
    return (mean + delta * added / total,
            m2 + float(((values - added_mean) ** 2).sum()) + delta * delta * count * added / total)


def fit_statistics(path: str | Path, numeric: Sequence[str] = (), categories: Sequence[str] = (),
                   batch_rows: int = BATCH_ROWS) -> dict[str, ColumnStatistics]:
    """Mean, standard deviation, range and missing count of the numeric columns and value counts of the category
    columns, in one streaming pass over the file."""
    stats = {name: ColumnStatistics() for name in (*numeric, *categories)}
    for batch in record_batches(path, batch_rows, columns=[*numeric, *categories]):
        for name in numeric:
            try:
                stats[name].add_numbers(batch.column(name))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise InputError(f"{path}: column {name!r} is not numeric") from None
        for name in categories:
            stats[name].add_values(batch.column(name))
    return stats


SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}


def split_codes(start: int, rows: int, seed: int, validation: float, test: float) -> np.ndarray:
    """The split of rows [start, start + rows) of a file: 0 train, 1 validation, 2 test, a pure function of the
    row number and the seed (a splitmix64 hash of both, read as a uniform number in [0, 1)), so any block of the
    file is split alike in any pass without holding the rest. Fractions hold in expectation, not to the row."""
    with np.errstate(over="ignore"):
        z = np.arange(start, start + rows, dtype=np.uint64) + np.uint64(seed % (1 << 63)) * np.uint64(
            0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    uniform = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return np.where(uniform < test, 2, np.where(uniform < test + validation, 1, 0)).astype(np.int8)


def split_keep(split: str, seed: int, validation: float, test: float) -> Keep:
    """`keep` for `shuffled` / `in_order`: the rows of one split (`split_codes`)."""
    code = SPLIT_CODES[split]
    return lambda start, rows: split_codes(start, rows, seed, validation, test) == code


def in_order(path: str | Path, *, buffer_rows: int, keep: Keep | None = None,
             columns: Sequence[str] | None = None) -> Iterator[pa.Table]:
    """The file's (kept) rows in file order, one block of at most `buffer_rows` file rows at a time."""
    for block, table in blocks(path, buffer_rows, None, columns):
        yield table.filter(pa.array(keep(block * buffer_rows, table.num_rows))) if keep is not None else table

