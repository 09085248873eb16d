"""An exponential moving average of the weights (`trainer.ema_decay`), what validation, checkpoints and the package use.

After every optimizer step each floating-point tensor of the model's state (parameters and batch-norm statistics)
moves toward the live one: average = d x average + (1 - d) x live, with d = min(decay, (1 + n) / (10 + n)) after n
updates, so the first steps are not dominated by the random initial weights (TensorFlow's ExponentialMovingAverage;
timm's ModelEmaV2 without the warmup). Integer buffers (batch norm's step count) are copied. The average is part of
the checkpoint, so a resumed run averages exactly as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


def average_decay(decay: float, updates: int) -> float:
    """The decay of update number `updates` (0-based): `decay`, lower for the first few updates."""
    return min(decay, (1 + updates) / (10 + updates))


class WeightAverage:
    """The moving average of `model`'s state (same keys, shapes, devices and memory layouts)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        live = model.state_dict()
        self.state = {name: tensor.detach().clone() for name, tensor in live.items()}
        self._bind(model)

    def _bind(self, model: nn.Module) -> None:
        """The live tensors (state_dict shares their storage; load_state_dict copies into it, so they stay valid)."""
        live = model.state_dict()
        floating = [name for name, tensor in live.items() if tensor.is_floating_point()]
        self._live = [live[name] for name in floating]
        self._averaged = [self.state[name] for name in floating]
        self._copied = [(self.state[name], tensor) for name, tensor in live.items() if not tensor.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        """One step of the average toward the live weights (call after each optimizer step)."""
        weight = 1.0 - average_decay(self.decay, self.updates)
        torch._foreach_lerp_(self._averaged, self._live, weight)
        for averaged, live in self._copied:
            averaged.copy_(live)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"state": self.state, "updates": self.updates}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        for name, tensor in saved["state"].items():
            self.state[name].copy_(tensor)
        self.updates = int(saved["updates"])

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """The averaged weights in `model` for the duration (validation), the live ones back afterwards."""
        live = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
        model.load_state_dict(self.state)
        try:
            yield
        finally:
            model.load_state_dict(live)
