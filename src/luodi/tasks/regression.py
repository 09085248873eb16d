"""Regression: one number per row. The target is standardized with the training split's mean and std (the model
learns z-scores); `ValueTarget.restore` is the one place that undoes it, for predictions, metrics, reports and
explanations alike."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from luodi.errors import InputError
from luodi.tasks.outputs import Output, OutputSpec, Predictions
from luodi.tasks.targets import check_present

if TYPE_CHECKING:
    import torch
    from torch import nn

    from luodi.config import TargetConfig

Direction = Literal["min", "max"]
Values = Any  # an ndarray or a tensor: restore works on both


class ValueTarget:
    """Fitted state: the training split's mean and std of the target."""

    def __init__(self, config: TargetConfig, mean: float = 0.0, std: float = 1.0, **legacy: Any):
        # Packages written before the task table also kept `classes` and `counts` (empty) for regression: ignored.
        self.config = config
        self.mean, self.std = mean, std

    def check(self, column: pa.ChunkedArray, source: str) -> None:
        check_present(column, self.config.name, source)

    def fit(self, column: pa.ChunkedArray) -> None:
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            raise InputError(f"target {self.config.name!r} must be numeric for regression, got {column.type}")
        values = column.to_numpy(zero_copy_only=False).astype(np.float64)
        self.mean, self.std = float(values.mean()), float(values.std()) or 1.0

    def transform(self, column: pa.ChunkedArray, source: str) -> np.ndarray:
        """Training targets: the standardized values, float32."""
        self.check(column, source)
        values = column.to_numpy(zero_copy_only=False).astype(np.float64)
        return ((values - self.mean) / self.std).astype(np.float32)

    def restore(self, values: Values) -> Values:
        """Standardized values (model outputs or training targets, arrays or tensors) back in the target's units."""
        return values * self.std + self.mean

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def schema(self) -> dict[str, Any]:
        return {"name": self.config.name, "task": self.config.task}


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MSE, RMSE, MAE and R² on the original scale of the target."""
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    error = y_pred - y_true
    mse = float(np.mean(error**2))
    variance = float(np.mean((y_true - y_true.mean()) ** 2))
    return {
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(np.mean(np.abs(error))),
        "r2": 1.0 - mse / variance if variance > 0 else float("nan"),
    }


class Regression:
    """One number per row; the model has one output, trained with MSE on the standardized target."""

    name = "regression"
    stratify: Literal["class", "quantile", "none"] = "quantile"
    model = "combiner"
    family = "values"
    classes = False
    directions: Mapping[str, Direction] = {"loss": "min", "mse": "min", "rmse": "min", "mae": "min", "r2": "max"}

    def target(self, config: TargetConfig, state: dict[str, Any] | None = None) -> ValueTarget:
        return ValueTarget(config, **(state or {}))

    def output_size(self, target: ValueTarget) -> int:
        return 1

    def loss(self, target: ValueTarget) -> nn.Module:
        from luodi.tasks.losses import RegressionLoss

        return RegressionLoss()

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """(batch, 1) logits are the standardized prediction: (batch,)."""
        return logits.squeeze(-1)

    def point(self, outputs: Values) -> Values:
        """Each row's point prediction (standardized) from activated outputs: the value itself."""
        return outputs.reshape(-1)

    def score(self, target: ValueTarget, outputs: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Metrics in the target's units, from standardized outputs and targets."""
        return regression_metrics(target.restore(y), target.restore(outputs))

    def loss_value(self, target: ValueTarget, outputs: np.ndarray, y: np.ndarray) -> float:
        """The reported `loss`: MSE of the standardized target (what training minimizes)."""
        return float(((outputs - y) ** 2).mean())

    def output_specs(self, target: ValueTarget) -> tuple[OutputSpec, ...]:
        return (OutputSpec("prediction", "prediction", "number"),)

    def decode(self, target: ValueTarget, outputs: np.ndarray) -> Predictions:
        (value,) = self.output_specs(target)
        return Predictions((Output(value, target.restore(outputs.reshape(-1))),))


REGRESSION = Regression()
