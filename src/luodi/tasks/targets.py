"""What every task's target encoder does, and the check they share: a target column may not have gaps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa

from luodi.columns import row_list
from luodi.errors import InputError

if TYPE_CHECKING:
    from luodi.config import TargetConfig


class TargetEncoder(Protocol):
    """The target column of one task, fitted on the training split: labels or values to training targets.

    Its `state()` is JSON in the package (`features.target`); the task rebuilds it with `task.target(config,
    state)`. `schema()` is the package's `output_schema`.
    """

    config: TargetConfig

    def check(self, column: pa.ChunkedArray, source: str) -> None: ...
    def fit(self, column: pa.ChunkedArray) -> None: ...
    def transform(self, column: pa.ChunkedArray, source: str) -> np.ndarray: ...
    def state(self) -> dict[str, Any]: ...
    def schema(self) -> dict[str, Any]: ...


def check_present(column: pa.ChunkedArray, name: str, source: str) -> None:
    """Refuse missing target values (null, or NaN in a float column), naming the rows (1-based data rows)."""
    missing = column.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_floating(column.type):
        missing = missing | np.isnan(column.to_numpy(zero_copy_only=False).astype(np.float64))
    if missing.any():
        raise InputError(
            f"{source}: target column {name!r} is missing in {int(missing.sum())} row(s) "
            f"(rows {row_list(missing)}); fill or drop those rows"
        )
