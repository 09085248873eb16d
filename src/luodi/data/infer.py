"""Type inference: the task from the target column and a feature type (or a reason to drop) per column."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from luodi.errors import InputError, did_you_mean

SAMPLE_ROWS = 200_000
IMAGE_PATH = r"(?i)\.(png|jpe?g|bmp|gif|webp|tiff?|ppm|pgm)$"
# 8 or more numbers separated by spaces or commas, optionally in brackets: a vector per row, not free text.
NUMBER = r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?"
NUMBER_SEQUENCE = rf"^\s*\[?\s*{NUMBER}(\s*[,;\s]\s*{NUMBER}){{7,}}\s*\]?\s*$"
ID_NAME = re.compile(r"(^|[_\s-])(id|uuid|guid|key|index)$|^id[_\s-]|^(row|record)(_?(num|number))?$", re.IGNORECASE)


@dataclass(frozen=True)
class ColumnGuess:
    """What `luodi init` decided for one column, and why (the why becomes a config comment)."""

    name: str
    type: str | None  # numeric, category, binary, text, image, sequence, or None when dropped
    reason: str
    options: dict[str, Any] = field(default_factory=dict)  # more keys for the feature (an image's size)


@dataclass(frozen=True)
class TaskGuess:
    task: str
    reason: str


def column_values(table: pa.Table, name: str) -> pa.ChunkedArray:
    """A column by name; an unknown name is an error that lists the columns."""
    if name not in table.column_names:
        shown = ", ".join(table.column_names[:20]) + (" ..." if table.num_columns > 20 else "")
        raise InputError(f"column {name!r} not found{did_you_mean(name, table.column_names)}; columns: {shown}")
    return table.column(name)


def infer_task(column: pa.ChunkedArray, name: str) -> TaskGuess:
    """regression, binary or multiclass from the target's values."""
    values = column.drop_null()
    if len(values) == 0:
        raise InputError(f"target column {name!r} has no values")
    distinct = pc.count_distinct(values).as_py()
    kind = column.type
    if distinct < 2:
        raise InputError(f"target column {name!r} has a single value ({values[0].as_py()!r}): nothing to predict")
    if distinct == 2:
        return TaskGuess("binary", "2 distinct values")
    if pa.types.is_floating(kind) and not _all_integral(values):
        return TaskGuess("regression", f"{distinct} distinct non-integer numbers")
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        if distinct <= 20 and distinct <= max(3, len(values) // 20):
            return TaskGuess("multiclass", f"{distinct} distinct integer values")
        return TaskGuess("regression", f"{distinct} distinct numbers")
    if distinct > 1000:
        raise InputError(
            f"target column {name!r} has {distinct} distinct text values; pass --task to say what to predict"
        )
    return TaskGuess("multiclass", f"{distinct} classes")


def _mean_count(values: pa.ChunkedArray) -> int:
    words = pc.list_value_length(pc.split_pattern_regex(pc.utf8_trim(values, " []"), r"[\s,;]+"))
    return round(pc.mean(words).as_py() or 0)


def _all_integral(values: pa.ChunkedArray) -> bool:
    floats = pc.cast(values, pa.float64())
    return bool(pc.all(pc.equal(pc.floor(floats), floats)).as_py())


def infer_column(column: pa.ChunkedArray, name: str) -> ColumnGuess:
    """A feature type for one column, or None with a reason to drop it."""
    total = len(column)
    if total > SAMPLE_ROWS:
        column = column.slice(0, SAMPLE_ROWS)
        total = SAMPLE_ROWS
    values = column.drop_null()
    present = len(values)
    missing = total - present
    missing_note = f", {missing} missing" if missing else ""
    if present == 0:
        return ColumnGuess(name, None, "dropped: every value is missing")
    kind = column.type
    if _is_list(kind):
        if _is_number_list(kind):
            return ColumnGuess(name, "sequence", f"a list of numbers per row{missing_note}")
        return ColumnGuess(name, None, f"dropped: unsupported type {kind}")
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return ColumnGuess(name, "image", f"encoded image bytes{missing_note}")
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        if _share(values, IMAGE_PATH) >= 0.9:
            return ColumnGuess(name, "image", f"paths to image files{missing_note}")
        if _share(values, NUMBER_SEQUENCE) >= 0.9:
            return ColumnGuess(name, "sequence", f"{_mean_count(values)} numbers per row{missing_note}")
    distinct = pc.count_distinct(values).as_py()
    if distinct == 1:
        return ColumnGuess(name, None, f"dropped: constant ({values[0].as_py()!r})")
    if pa.types.is_boolean(kind) or distinct == 2:
        return ColumnGuess(name, "binary", f"2 distinct values{missing_note}")
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return _infer_number(values, name, distinct, present, missing_note)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
        return _infer_string(values, name, distinct, present, missing_note)
    if pa.types.is_temporal(kind):
        return ColumnGuess(name, None, f"dropped: {kind} values (dates are not a feature type yet)")
    return ColumnGuess(name, None, f"dropped: unsupported type {kind}")


def _infer_number(values: pa.ChunkedArray, name: str, distinct: int, present: int, note: str) -> ColumnGuess:
    integral = pa.types.is_integer(values.type) or _all_integral(values)
    if integral and distinct == present and present >= 20:
        minimum, maximum = pc.min_max(values).values()
        consecutive = maximum.as_py() - minimum.as_py() + 1 == distinct
        if ID_NAME.search(name) or consecutive:
            return ColumnGuess(name, None, f"dropped: id-like ({distinct} distinct integers in {present} rows)")
    if integral and distinct <= 10 and distinct * 20 <= present and pa.types.is_integer(values.type):
        return ColumnGuess(name, "category", f"{distinct} distinct integer codes{note}")
    return ColumnGuess(name, "numeric", f"{distinct} distinct values{note}")


def _is_list(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)


def _is_number_list(kind: pa.DataType) -> bool:
    inner = kind.value_type
    if _is_list(inner):
        inner = inner.value_type
    return bool(pa.types.is_integer(inner) or pa.types.is_floating(inner))


def _share(values: pa.ChunkedArray, pattern: str) -> float:
    return float(pc.mean(pc.cast(pc.match_substring_regex(values, pattern), pa.float64())).as_py() or 0.0)


def _infer_string(values: pa.ChunkedArray, name: str, distinct: int, present: int, note: str) -> ColumnGuess:
    if pa.types.is_dictionary(values.type):
        values = values.cast(pa.string())
    lengths = pc.utf8_length(values)
    mean_length = pc.mean(lengths).as_py() or 0.0
    words = pc.list_value_length(pc.utf8_split_whitespace(values))
    mean_words = pc.mean(words).as_py() or 0.0
    if mean_words >= 4 and mean_length >= 20:
        return ColumnGuess(name, "text", f"free text, {mean_words:.0f} words on average{note}")
    if present >= 20 and distinct >= 0.9 * present:
        return ColumnGuess(name, None, f"dropped: id-like ({distinct} distinct values in {present} rows)")
    if ID_NAME.search(name) and distinct >= 0.5 * present:
        return ColumnGuess(name, None, f"dropped: id-like name, {distinct} distinct values")
    return ColumnGuess(name, "category", f"{distinct} distinct values{note}")
