"""The training losses that torch lacks in the shape luodi's models give: (batch, 1) logits against (batch,) targets.

Imported when a task builds its loss, so that reading a config (which asks the task table) never imports torch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class RegressionLoss(nn.Module):
    """MSE between logits (batch, 1) and the standardized target (batch,)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(logits.squeeze(-1), target)


class BinaryLoss(nn.Module):
    """BCE with logits (batch, 1) against 0/1 targets (batch,); `pos_weight` weighs positives; `smoothing` moves
    each target that share towards 0.5 (as cross entropy's label smoothing does over two classes)."""

    def __init__(self, pos_weight: torch.Tensor | None = None, smoothing: float = 0.0):
        super().__init__()
        self.pos_weight: torch.Tensor | None
        self.register_buffer("pos_weight", pos_weight)
        self.smoothing = smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.smoothing:
            target = target * (1 - self.smoothing) + 0.5 * self.smoothing
        return F.binary_cross_entropy_with_logits(logits.squeeze(-1), target, pos_weight=self.pos_weight)


class TokenLoss(nn.Module):
    """Next-token cross-entropy of logits (batch, seq, vocab) against labels (batch, seq); -100 labels are left
    out (prompts, user turns, padding)."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)
