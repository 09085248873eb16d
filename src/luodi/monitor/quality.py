"""Data quality of new rows against the reference profile: missing values, categories training never had, numbers
outside the training range.

    counts = quality_counts(profile["features"], table)   # {"age": {"missing": 3, "out_of_range": 1}, ...}

`table` is in the prediction log's shape (an `inputs` struct, as serve/predlog.py writes it), so the live server
(serve/live.py) and `luodi monitor` count the same way. A category's unseen values are counted only when its profile
lists every training value (`other` is 0, so at most `monitor.top_categories` values); numbers are out of range
below the training minimum or above its maximum (the profile's 0 and 100% quantiles).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from luodi.columns import as_strings

QUALITY_KINDS = ("missing", "unseen", "out_of_range")
SLACK = 1e-6  # the profile keeps seven significant digits: the training extremes themselves are in range


def _numeric(entry: dict[str, Any], column: pa.ChunkedArray) -> dict[str, int]:
    values = np.asarray(pc.fill_null(pc.cast(column, pa.float64()), np.nan).to_numpy(zero_copy_only=False),
                        np.float64)
    finite = values[np.isfinite(values)]
    counts = {"missing": int(len(values) - len(finite))}
    quantiles = entry["aspects"].get("value", {}).get("quantiles")
    if quantiles:
        low, high = quantiles[0], quantiles[-1]
        slack = SLACK * max(abs(low), abs(high), 1.0)
        counts["out_of_range"] = int(((finite < low - slack) | (finite > high + slack)).sum())
    return counts


def _category(entry: dict[str, Any], column: pa.ChunkedArray) -> dict[str, int]:
    strings = as_strings(column)
    counts = {"missing": int(strings.null_count)}
    reference = entry["aspects"].get("value", {})
    if reference.get("count") and not reference.get("other"):  # the profile lists every training value
        present = strings.drop_null()
        known = pc.is_in(present, value_set=pa.array(reference["values"], pa.string()))
        counts["unseen"] = int(len(present) - pc.sum(known).as_py()) if len(present) else 0
    return counts


def _text(entry: dict[str, Any], column: pa.ChunkedArray) -> dict[str, int]:
    strings = as_strings(column)
    empty = pc.sum(pc.equal(pc.utf8_length(strings), 0)).as_py() or 0
    return {"missing": int(strings.null_count + empty)}


def _other(entry: dict[str, Any], column: pa.ChunkedArray) -> dict[str, int]:
    return {"missing": int(column.null_count)}


COUNTERS = {"numeric": _numeric, "category": _category, "binary": _category, "text": _text}


def quality_counts(features: dict[str, Any], table: pa.Table) -> dict[str, dict[str, int]]:
    """Per profiled input feature present in the log-shaped `table`: its counts of QUALITY_KINDS (a kind the
    feature's type or profile cannot tell is left out)."""
    inputs = table.column("inputs")
    present = {field.name for field in inputs.type}
    counts = {}
    for name, entry in features.items():
        if name in present:
            column = pc.struct_field(inputs, name)
            counts[name] = COUNTERS.get(entry["type"], _other)(entry, column)
    return counts


def quality_rates(counts: dict[str, dict[str, int]], rows: int) -> dict[str, dict[str, float]]:
    """The counts as shares of the rows."""
    return {name: {kind: count / rows if rows else 0.0 for kind, count in kinds.items()}
            for name, kinds in counts.items()}
