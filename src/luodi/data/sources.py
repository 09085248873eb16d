"""Reading tables (CSV, Parquet, JSONL, DataFrames, records, plain text) into Arrow, with errors that name the
file."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import pyarrow as pa

from luodi.errors import InputError

SUFFIXES = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
            ".ndjson": "jsonl", ".json": "jsonl", ".txt": "text", ".text": "text", ".md": "text"}

# Cells that mean "missing" in CSV files: pandas' defaults, so files read the same in both. A lowercase
# "none" stays a value (an internet plan of "none" is a category, not a missing cell).
NULL_VALUES = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
               "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]

TableLike: TypeAlias = Any  # a file path, an Arrow table, a pandas DataFrame, a dict or a list of dicts


def table_format(path: Path) -> str:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unsupported file type {path.suffix!r}; use .csv, .tsv, .parquet, .jsonl or .txt")
    return fmt


def read_table(path: str | Path) -> pa.Table:
    """Read a CSV / TSV / Parquet / JSONL file into an Arrow table (columnar, compact, nulls kept); a folder of
    class subfolders reads as a table of image paths and labels (data/images.py); a .txt file or a folder of .txt
    files as a `text` column (data/texts.py)."""
    path = Path(path)
    try:
        exists = path.exists()
    except (OSError, ValueError) as error:  # a name the OS refuses: too long (ENAMETOOLONG), a NUL byte
        raise InputError(f"data file {_shorten(str(path))}: {getattr(error, 'strerror', None) or error}") from None
    if not exists:
        raise InputError(f"data file not found: {path}")
    if path.is_dir() and path.suffix.lower() not in SUFFIXES:  # a folder named like a table is a mistake
        from luodi.data.images import read_image_folder
        from luodi.data.texts import is_text_folder, read_text_folder

        if is_text_folder(path):
            return read_text_folder(path)

        return read_image_folder(path)
    if not path.is_file():
        raise InputError(f"{path}: is not a file")
    fmt = table_format(path)
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty")
    if fmt == "text":
        from luodi.data.texts import read_text_file

        return read_text_file(path)
    try:
        table = _read(path, fmt)
    except InputError:
        raise
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError, OSError) as error:
        raise InputError(f"{path}: cannot read as {fmt.upper()}: {_first_line(error)}") from None
    if table.num_columns == 0:
        raise InputError(f"{path}: no columns found")
    if table.num_rows == 0:
        raise InputError(f"{path}: has a header but no rows")
    if fmt == "csv":
        check_utf8(table, path)
    return table


def check_utf8(table: pa.Table, path: Path) -> None:
    """Arrow reads a CSV column holding bytes that are not UTF-8 as binary: name its first such row."""
    for name in table.column_names:
        column = table.column(name)
        if not pa.types.is_binary(column.type) and not pa.types.is_large_binary(column.type):
            continue
        for row, value in enumerate(column.to_pylist(), start=1):
            try:
                if value is not None:
                    value.decode("utf-8")
            except UnicodeDecodeError as error:
                raise InputError(f"{path}: column {name!r} row {row} is not UTF-8 text (byte "
                                 f"{value[error.start]:#04x} at position {error.start}); save the file as UTF-8"
                                 ) from None


def _read(path: Path, fmt: str) -> pa.Table:
    if fmt == "csv":
        from pyarrow import csv

        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        options: dict[str, Any] = {
            "parse_options": csv.ParseOptions(delimiter=delimiter, newlines_in_values=False),
            "convert_options": csv.ConvertOptions(null_values=NULL_VALUES, strings_can_be_null=True),
            "read_options": csv.ReadOptions(block_size=16 << 20),
        }
        # The streaming reader frees each block once converted: peak memory is about the table itself. The
        # whole-file reader keeps every parsed block until the end (to re-convert them should a later block need
        # a wider type), about 1.5x the file size on top. Streaming takes each column's type from the first block;
        # when a later block does not fit that type (or the file is malformed) it fails, and the whole-file reader
        # runs instead: the same table, or the same error, as before.
        try:
            return csv.open_csv(path, **options).read_all()
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return csv.read_csv(path, **options)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path)
    from pyarrow import json

    return json.read_json(path)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def to_table(data: TableLike, source: str = "records") -> pa.Table:
    """Any supported input as an Arrow table: a file path, Arrow table, pandas DataFrame or list of dicts."""
    if isinstance(data, str | Path):
        return read_table(data)
    if isinstance(data, pa.Table):
        table = data
    elif hasattr(data, "to_dict") and hasattr(data, "columns"):  # pandas DataFrame
        try:
            table = pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise InputError(f"{source}: cannot convert the DataFrame: {_first_line(error)}") from None
    elif isinstance(data, Mapping):
        table = _from_records([data], source)
    elif isinstance(data, Sequence):
        table = _from_records(list(data), source)
    else:
        raise InputError(f"{source}: expected a file path, a DataFrame or a list of dicts, got {type(data).__name__}")
    if table.num_rows == 0:
        raise InputError(f"{source}: no rows")
    return table


def _from_records(records: list[Any], source: str) -> pa.Table:
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise InputError(f"{source}: row {index + 1} is a {type(record).__name__}, expected a mapping of columns")
    columns: dict[str, list[Any]] = {}
    for record in records:
        for key in record:
            columns.setdefault(str(key), [])
    for name in columns:
        columns[name] = [record.get(name) for record in records]
    arrays = {}
    for name, values in columns.items():
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # Mixed Python types (e.g. 3 and "abc" in one column): keep them as text; encoders report the row.
            arrays[name] = pa.array([None if value is None else str(value) for value in values], pa.string())
    return pa.table(arrays) if arrays else pa.table({})


def fingerprint_file(path: str | Path) -> dict[str, Any]:
    """Identity of a data file (size and SHA-256) recorded with runs and packages; of an image folder, its images."""
    path = Path(path)
    if path.is_dir():
        from luodi.data.images import fingerprint_folder
        from luodi.data.texts import fingerprint_text_folder, is_text_folder

        return fingerprint_text_folder(path) if is_text_folder(path) else fingerprint_folder(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def fingerprint_table(table: pa.Table, source: str) -> dict[str, Any]:
    """Identity of rows passed in memory: their count and the SHA-256 of their Arrow IPC stream (no path)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    buffer = sink.getvalue()
    return {"path": None, "source": source, "rows": table.num_rows, "bytes": buffer.size,
            "sha256": hashlib.sha256(memoryview(buffer)).hexdigest()}


def _shorten(text: str, limit: int = 200) -> str:
    """A name as long as the OS refuses, shown by its start and length rather than 5,000 characters."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
