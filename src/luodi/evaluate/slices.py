"""Slice metrics: how well the model does on each value of a category column and each quantile bin of a numeric
column, worst slices first, so a user sees where the model fails rather than only how it does on average.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from luodi.columns import as_strings
from luodi.evaluate.families import family_of
from luodi.tasks import Task

MISSING = "(missing)"
OTHER = "(other values)"
MAX_VALUES = 30  # most frequent values of a category column shown as slices of their own; the rest form OTHER
SLICED = ("numeric", "category", "binary")  # feature types whose values group rows (free text, images: none)


def sliceable(feature: Any) -> bool:
    """Whether a feature's values group rows into slices."""
    return feature.type in SLICED


def _number(value: float) -> str:
    return f"{value:.4g}"


def numeric_groups(column: pa.ChunkedArray, bins: int) -> tuple[np.ndarray, list[str]]:
    """Row -> group index over quantile bins of the column's values ([low, high), the last one closed); missing
    values form a group of their own."""
    values = column.to_numpy(zero_copy_only=False).astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(len(values), np.int64), [MISSING]
    edges = np.unique(np.quantile(values[finite], np.linspace(0, 1, bins + 1)))
    if len(edges) == 1:
        labels = [f"= {_number(edges[0])}"]
        groups = np.zeros(len(values), np.int64)
    else:
        labels = [f"[{_number(low)}, {_number(high)}{']' if index == len(edges) - 2 else ')'}"
                  for index, (low, high) in enumerate(zip(edges[:-1], edges[1:], strict=True))]
        groups = np.clip(np.searchsorted(edges[1:-1], values, side="right"), 0, len(labels) - 1)
    if not finite.all():
        groups = np.where(finite, groups, len(labels))
        labels.append(MISSING)
    return groups.astype(np.int64), labels


def value_groups(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """Row -> group index per distinct value (the MAX_VALUES most frequent; the rest together); missing apart."""
    strings = as_strings(column)
    counts = pc.value_counts(strings.drop_null())
    pairs = sorted(zip(counts.field("counts").to_pylist(), counts.field("values").to_pylist(), strict=True),
                   key=lambda pair: (-pair[0], pair[1]))
    labels = [value for _, value in pairs[:MAX_VALUES]]
    positions = pc.index_in(strings, value_set=pa.array(labels, pa.string()))
    groups = pc.fill_null(positions, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    missing = strings.is_null().to_numpy(zero_copy_only=False)
    if len(pairs) > MAX_VALUES:
        groups = np.where((groups < 0) & ~missing, len(labels), groups)
        labels.append(OTHER)
    if missing.any():
        groups = np.where(missing, len(labels), groups)
        labels.append(MISSING)
    return groups, labels


def slice_metrics(table: pa.Table, features: list[Any], task: Task, y_true: np.ndarray, outputs: np.ndarray, *,
                  bins: int = 4, min_rows: int = 5) -> dict[str, Any]:
    """Metrics per slice of every numeric, category and binary feature, worst first.

    `y_true` and `outputs` are on the scale the metrics use (the task's family says: class indices and activated
    outputs, or values in the target's units). Slices with fewer than `min_rows` rows are counted in `left_out`,
    not ranked: a slice of two rows is all or nothing. Worst means lowest accuracy (then highest log loss), or
    highest RMSE (the family's `worst_first`).
    """
    family = family_of(task)
    scores = family.row_scores(task, y_true, outputs)
    rows = table.num_rows
    out: list[dict[str, Any]] = []
    left_out = 0
    for feature in features:
        if not sliceable(feature):
            continue
        column = table.column(feature.name)
        groups, labels = numeric_groups(column, bins) if feature.type == "numeric" else value_groups(column)
        for index, label in enumerate(labels):
            mask = groups == index
            count = int(mask.sum())
            if count < min_rows:
                left_out += count > 0
                continue
            out.append({"feature": feature.name, "type": feature.type, "slice": label, "rows": count,
                        "share": count / rows, **family.summarize(scores, mask)})
    out.sort(key=lambda item: (*family.worst_first(item), item["feature"], item["slice"]))
    overall = family.summarize(scores, slice(None)) if rows else {}
    return {"overall": overall, "slices": out, "left_out": left_out, "bins": bins, "min_rows": min_rows}
