"""How values in Arrow columns are spelled and ordered, for every layer: a column's text view, which of two
values is the positive one, and rows listed in messages."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TRUE_WORDS = {"1", "1.0", "true", "t", "yes", "y", "positive", "pos"}


def as_strings(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Text view of a column: booleans become 'true'/'false', numbers their shortest repr."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_string(column.type):
        return column
    return pc.cast(column, pa.string())


def binary_order(distinct: list[str]) -> list[str]:
    """[negative, positive] for two values: a true-like word is positive, otherwise the later in sort order."""
    ordered = sorted(distinct)
    if len(ordered) == 2 and ordered[0].strip().lower() in TRUE_WORDS and ordered[1].strip().lower() not in TRUE_WORDS:
        ordered.reverse()
    return ordered


def row_list(mask: np.ndarray, limit: int = 5) -> str:
    """The first `limit` rows (1-based) where `mask` holds, for a message: '3, 7, 12 ...'."""
    rows = (np.flatnonzero(mask)[:limit] + 1).tolist()
    more = " ..." if mask.sum() > limit else ""
    return ", ".join(str(row) for row in rows) + more


def signed_log(values: np.ndarray) -> np.ndarray:
    """sign(x) * log(1 + |x|): a skewed column (amounts, counts) on a scale where its rows spread out evenly."""
    return np.sign(values) * np.log1p(np.abs(values))
