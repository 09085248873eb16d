"""Per-task loss and output activation: what the logits mean for regression, binary and multiclass."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

LossFn = nn.Module  # called as loss_fn(logits, target) -> scalar


class RegressionLoss(nn.Module):
    """MSE between logits (batch, 1) and the standardized target (batch,)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(logits.squeeze(-1), target)


class BinaryLoss(nn.Module):
    """BCE with logits (batch, 1) against 0/1 targets (batch,); `pos_weight` weighs positives."""

    def __init__(self, pos_weight: torch.Tensor | None = None):
        super().__init__()
        self.pos_weight: torch.Tensor | None
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits.squeeze(-1), target, pos_weight=self.pos_weight)


def build_loss(task: str, class_weights: np.ndarray | None = None) -> LossFn:
    """The training loss on (logits, targets); targets are standardized floats, 0/1 floats or class indices."""
    if task == "regression":
        return RegressionLoss()
    if task == "binary":
        pos_weight = None
        if class_weights is not None:  # weight positives relative to negatives
            pos_weight = torch.tensor(class_weights[1] / class_weights[0], dtype=torch.float32)
        return BinaryLoss(pos_weight)
    weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
    return nn.CrossEntropyLoss(weight=weight)


def activate(task: str, logits: torch.Tensor) -> torch.Tensor:
    """Logits to what evaluation and prediction read: values, P(positive), or class probabilities."""
    if task == "regression":
        return logits.squeeze(-1)
    if task == "binary":
        return torch.sigmoid(logits.squeeze(-1))
    return torch.softmax(logits, dim=-1)
