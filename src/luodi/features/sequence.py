"""The numeric-sequence feature: a vector of numbers per row (a signal, a spectrum, mnist1d's 40 values) read
as a sequence of `length` steps with `channels` values each, normalized with statistics of the training split.

Cells are a list column (Parquet, JSONL: `[0.1, 0.5, ...]`, or a list of lists for several channels) or text of
numbers separated by spaces or commas (CSV: `"0.1 0.5 ..."`). `coerce_sequence` turns either into a list column
of float64 on the whole file first, so errors name the file's row, not a row of a split; the encoder then gives
the model input `{name: float32 (rows, length, channels)}`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from luodi.config import SequenceFeature
from luodi.errors import InputError

SEPARATORS = r"[\s,;]+"  # between numbers in a text cell
BRACKETS = " \t\r\n,;[]()"  # stripped from both ends of a text cell ("[1, 2, 3]" reads as 1 2 3)


def _is_list(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _parse_text(column: pa.ChunkedArray, name: str, source: str) -> pa.ChunkedArray:
    """Text cells of separated numbers -> list<float64>, naming the first row that holds something else."""
    strings = pc.utf8_trim(pc.cast(column, pa.string()), BRACKETS)
    tokens = pc.split_pattern_regex(strings, SEPARATORS)
    # An empty cell splits into [""]: make it an empty list rather than a bad number.
    tokens = pc.if_else(pc.equal(strings, ""), pa.scalar([], pa.list_(pa.string())), tokens)
    flat = pc.list_flatten(tokens)
    try:
        numbers = pc.cast(flat, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        import pandas as pd

        parsed = pd.to_numeric(flat.to_pandas(), errors="coerce").to_numpy()
        spelled_nan = np.char.lower(np.asarray(flat.to_pylist(), dtype=str)) == "nan"
        bad = _first(np.isnan(parsed) & ~spelled_nan)
        lengths = pc.fill_null(pc.list_value_length(tokens), 0).to_numpy(zero_copy_only=False)
        row = int(np.searchsorted(np.cumsum(lengths), bad, side="right"))
        raise InputError(f"{source}: column {name!r} row {row + 1} holds {flat[bad].as_py()!r}, not a number "
                         "(a sequence cell is numbers separated by spaces or commas)") from None
    lengths = pc.fill_null(pc.list_value_length(tokens), 0).to_numpy(zero_copy_only=False)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
    missing = pc.is_null(strings).combine_chunks()
    return pa.chunked_array([pa.LargeListArray.from_arrays(offsets, numbers.combine_chunks(), mask=missing)])


def coerce_sequence(column: pa.ChunkedArray, feature: SequenceFeature, source: str) -> pa.ChunkedArray:
    """A sequence column as list<float64> (or list<list<float64>> for channels), checked on the whole table:
    missing cells, non-numbers, NaN / infinite values and (when the config fixes it) lengths name their row."""
    name = feature.name
    if not _is_list(column.type):
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            raise InputError(f"{source}: column {name!r} is a sequence but holds {column.type} values; give a list "
                             "of numbers per row, or text of numbers separated by spaces or commas")
        column = _parse_text(column, name, source)
    missing = pc.is_null(column).to_numpy(zero_copy_only=False)
    if missing.any():
        raise InputError(f"{source}: column {name!r} row {_first(missing) + 1} is missing; every row needs a sequence")
    inner = column.type.value_type
    target = pa.list_(pa.list_(pa.float64())) if _is_list(inner) else pa.list_(pa.float64())
    try:
        column = pc.cast(column, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        raise InputError(f"{source}: column {name!r} holds {column.type}; a sequence is a list of numbers "
                         "(or of equal-length lists of numbers, one per channel)") from None
    values, rows = _flat_values(column)
    bad = ~np.isfinite(values)
    if bad.any():
        raise InputError(f"{source}: column {name!r} row {int(rows[_first(bad)]) + 1} holds "
                         f"{float(values[_first(bad)])}; sequences must be finite numbers")
    if feature.on_length_mismatch == "error" and len(column):
        # A fixed length, or else the first row's: every row of a training file has the same length.
        check_lengths(column, feature.length or int(pc.list_value_length(column)[0].as_py()), name, source)
    return column


def _flat_values(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Every number of the column, flattened, with the (0-based) row each comes from."""
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(column)
    if _is_list(flat.type):
        inner = pc.list_value_length(flat).to_numpy(zero_copy_only=False)
        rows = np.repeat(np.repeat(np.arange(len(lengths)), lengths), inner)
        flat = pc.list_flatten(flat)
    else:
        rows = np.repeat(np.arange(len(lengths)), lengths)
    return flat.to_numpy(zero_copy_only=False).astype(np.float64), rows


def check_lengths(column: pa.ChunkedArray, length: int, name: str, source: str) -> None:
    """Every row holds exactly `length` steps, or the error names the first row that does not."""
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    wrong = lengths != length
    if wrong.any():
        row = _first(wrong)
        raise InputError(f"{source}: column {name!r} row {row + 1} has {int(lengths[row])} values where the others "
                         f"have {length}; fix the row, or set on_length_mismatch: pad to pad or truncate it")


def _channels(column: pa.ChunkedArray) -> int:
    """1 for a flat list per row; the inner list's length for a list of lists (all must agree)."""
    flat = pc.list_flatten(column)
    if not _is_list(flat.type):
        return 1
    inner = pc.list_value_length(flat).to_numpy(zero_copy_only=False)
    if len(inner) == 0:
        return 1
    if (inner != inner[0]).any():
        raise InputError(f"every step of a multi-channel sequence needs the same number of channels; found "
                         f"{int(inner[0])} and {int(inner[inner != inner[0]][0])}")
    return int(inner[0])


class SequenceEncoder:
    """Fitted state: the length and channels the model reads, and per-channel mean and std of the training values."""

    kind = "tensor"
    modality = "sequence"

    def __init__(self, config: SequenceFeature, length: int = 0, channels: int = 1,
                 mean: list[float] | None = None, std: list[float] | None = None):
        self.name, self.config = config.name, config
        self.length, self.channels = length, channels
        self.mean: list[float] = mean or [0.0] * channels
        self.std: list[float] = std or [1.0] * channels

    def fit(self, column: pa.ChunkedArray) -> None:
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        if len(lengths) == 0 or lengths.max() == 0:
            raise InputError(f"column {self.name!r} has no values in the training split")
        if self.config.length is not None:
            self.length = self.config.length
        elif self.config.on_length_mismatch == "pad":
            self.length = int(lengths.max())
        else:
            self.length = int(lengths[0])  # coerce_sequence checked that every row has this length
        self.channels = _channels(column)
        values = self._steps(column)  # (rows, length, channels), zero-padded
        real = np.arange(self.length)[None, :] < np.minimum(lengths, self.length)[:, None]  # (rows, length)
        observed = values[real]  # (values, channels)
        if self.config.normalization == "zscore":
            self.mean = observed.mean(axis=0).tolist()
            std = observed.std(axis=0)
            self.std = np.where(std > 1e-12, std, 1.0).tolist()
        else:
            self.mean, self.std = [0.0] * self.channels, [1.0] * self.channels

    def _steps(self, column: pa.ChunkedArray) -> np.ndarray:
        """(rows, length, channels) float64: each row padded with 0 or truncated to `length`."""
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False).astype(np.int64)
        flat = pc.list_flatten(column)
        if _is_list(flat.type):
            if _channels(column) != self.channels:
                raise InputError(f"column {self.name!r}: sequences have {_channels(column)} channels per step, the "
                                 f"model reads {self.channels}")
            flat = pc.list_flatten(flat)
        elif self.channels != 1:
            raise InputError(f"column {self.name!r}: sequences have 1 channel per step, the model reads "
                             f"{self.channels}")
        values = flat.to_numpy(zero_copy_only=False).astype(np.float64).reshape(-1, self.channels)
        rows = len(lengths)
        if (lengths == self.length).all():
            return values.reshape(rows, self.length, self.channels)
        out = np.zeros((rows, self.length, self.channels))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        row = np.repeat(np.arange(rows), lengths)
        position = np.arange(len(values)) - np.repeat(starts, lengths)
        keep = position < self.length
        out[row[keep], position[keep]] = values[keep]
        return out

    def transform(self, column: pa.ChunkedArray, unseen: Any) -> dict[str, np.ndarray]:
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        if self.config.on_length_mismatch == "error" and (lengths != self.length).any():
            row = _first(lengths != self.length)
            raise InputError(f"column {self.name!r} row {row + 1} has {int(lengths[row])} values; the model was "
                             f"trained on sequences of {self.length}")
        steps = self._steps(column)
        normalized = (steps - np.asarray(self.mean)) / np.asarray(self.std)
        return {self.name: normalized.astype(np.float32)}  # (rows, length, channels)

    def width(self) -> int:
        return 0

    def state(self) -> dict[str, Any]:
        return {"length": self.length, "channels": self.channels, "mean": self.mean, "std": self.std}

    def schema(self) -> dict[str, Any]:
        return {"dtype": "list[number]|string", "length": self.length, "channels": self.channels}
