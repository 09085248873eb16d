"""The target column: labels to training targets and model outputs back to predictions, per task."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from luodi.config import TargetConfig
from luodi.errors import InputError
from luodi.features.encoders import as_strings, binary_order


def _row_list(mask: np.ndarray, limit: int = 5) -> str:
    rows = (np.flatnonzero(mask)[:limit] + 1).tolist()
    more = " ..." if mask.sum() > limit else ""
    return ", ".join(str(row) for row in rows) + more


class TargetEncoder:
    """Fitted state: for classifiers the class labels in index order; for regression the mean and std."""

    def __init__(self, config: TargetConfig, classes: list[Any] | None = None, mean: float = 0.0,
                 std: float = 1.0, counts: list[int] | None = None):
        self.config = config
        self.task = config.task
        self.classes: list[Any] = classes or []
        self.mean, self.std = mean, std
        self.counts: list[int] = counts or []

    @property
    def class_names(self) -> list[str]:
        """Labels spelled as `as_strings` spells a column (True -> 'true', 1.0 -> '1'), so `transform` finds them."""
        if not self.classes:
            return []
        return [str(name) for name in as_strings(pa.chunked_array([pa.array(self.classes)])).to_pylist()]

    def output_size(self) -> int:
        return len(self.classes) if self.task == "multiclass" else 1

    def check(self, column: pa.ChunkedArray, source: str) -> None:
        """Refuse missing target values, naming the rows (1-based data rows)."""
        missing = column.is_null().to_numpy(zero_copy_only=False)
        if pa.types.is_floating(column.type):
            missing = missing | np.isnan(column.to_numpy(zero_copy_only=False).astype(np.float64))
        if missing.any():
            raise InputError(
                f"{source}: target column {self.config.name!r} is missing in {int(missing.sum())} row(s) "
                f"(rows {_row_list(missing)}); fill or drop those rows"
            )

    def fit(self, column: pa.ChunkedArray) -> None:
        if self.task == "regression":
            if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
                raise InputError(f"target {self.config.name!r} must be numeric for regression, got {column.type}")
            values = column.to_numpy(zero_copy_only=False).astype(np.float64)
            self.mean, self.std = float(values.mean()), float(values.std()) or 1.0
            return
        counts = pc.value_counts(column)
        labels = counts.field("values").to_pylist()
        frequencies = dict(zip(labels, counts.field("counts").to_pylist(), strict=True))
        if len(labels) < 2:
            raise InputError(
                f"target {self.config.name!r} has a single class ({labels[0]!r}) in the training data: "
                "a classifier needs at least two"
            )
        if self.task == "binary":
            if len(labels) != 2:
                raise InputError(f"target {self.config.name!r} has {len(labels)} classes; use task: multiclass")
            by_name = {str(label): label for label in labels}
            self.classes = [by_name[name] for name in binary_order(list(by_name))]
        else:
            self.classes = sorted(labels, key=lambda label: (str(type(label)), label))
        self.counts = [int(frequencies[label]) for label in self.classes]

    def transform(self, column: pa.ChunkedArray, source: str) -> np.ndarray:
        """Training targets: standardized float32 (regression), 0/1 float32 (binary), int64 index (multiclass)."""
        self.check(column, source)
        if self.task == "regression":
            values = column.to_numpy(zero_copy_only=False).astype(np.float64)
            return ((values - self.mean) / self.std).astype(np.float32)
        strings = as_strings(column)
        positions = pc.index_in(strings, value_set=pa.array(self.class_names, pa.string()))
        unknown = pc.is_null(positions).to_numpy(zero_copy_only=False)
        if unknown.any():
            examples = sorted({str(v) for v in pc.filter(strings, pa.array(unknown)).to_pylist()})[:3]
            raise InputError(
                f"{source}: target {self.config.name!r} has label(s) {examples} that training never saw "
                f"(rows {_row_list(unknown)}); known labels: {self.class_names}"
            )
        indices = positions.to_numpy(zero_copy_only=False)
        return indices.astype(np.float32) if self.task == "binary" else indices.astype(np.int64)

    def class_weights(self) -> np.ndarray | None:
        weights = self.config.class_weights
        if self.task == "regression" or weights == "none":
            return None
        counts = np.asarray(self.counts, dtype=np.float64)
        if weights == "balanced":
            return counts.sum() / (len(counts) * np.maximum(counts, 1))
        assert isinstance(weights, dict)
        unknown = sorted(set(weights) - set(self.class_names))
        if unknown:
            raise InputError(f"target.class_weights names unknown class(es) {unknown}; classes: {self.class_names}")
        return np.asarray([weights.get(name, 1.0) for name in self.class_names])

    def decode(self, outputs: np.ndarray) -> tuple[list[Any], np.ndarray | None]:
        """Model outputs (probabilities, or standardized values) to (predictions, probabilities)."""
        if self.task == "regression":
            return (outputs.reshape(-1) * self.std + self.mean).tolist(), None
        probabilities = outputs if self.task == "multiclass" else np.stack([1 - outputs.reshape(-1),
                                                                            outputs.reshape(-1)], axis=1)
        picks = probabilities.argmax(axis=1)
        return [self.classes[index] for index in picks], probabilities

    def state(self) -> dict[str, Any]:
        return {"classes": self.classes, "mean": self.mean, "std": self.std, "counts": self.counts}
