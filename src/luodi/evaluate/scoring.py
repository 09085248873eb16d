"""The reported metrics of a split: the task's metrics and its loss, from activated outputs and encoded targets.

`luodi train` (the test split), `luodi evaluate` and a search trial all report through `split_metrics`, so the
numbers agree wherever they are printed, stored or compared.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from luodi.tasks import Task


def split_metrics(task: Task, target: Any, outputs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """`loss` first (the task's reported loss: log loss, or MSE of the standardized target), then its metrics."""
    return {"loss": task.loss_value(target, outputs, y), **task.score(target, outputs, y)}
