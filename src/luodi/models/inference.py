"""The one inference path: a model's activated outputs for encoded inputs, in batches, in eval mode.

`luodi predict` and the Python API (`ModelPackage.outputs`), evaluation and the training loop's validation, the
server's torch backend and the ONNX export (`Activated` is the graph it traces) all run a model through this
module, so they agree on every row. Nothing here imports the training code: a server loads only what inference
needs.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn

from luodi.tasks import Task

Autocast = Callable[[torch.device], AbstractContextManager[Any]]


class Activated(nn.Module):
    """The model followed by its task's output activation: logits in, what evaluation and prediction read out."""

    def __init__(self, model: nn.Module, task: Task):
        super().__init__()
        self.model, self.task = model, task

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.task.activate(self.model(inputs))


def predict_tensors(model: nn.Module, inputs: dict[str, torch.Tensor], task: Task, batch_size: int,
                    loss_fn: nn.Module | None = None, target: torch.Tensor | None = None, *,
                    autocast: Autocast | None = None, device: torch.device | None = None,
                    training: bool = False) -> tuple[np.ndarray, float]:
    """Activated outputs for all rows (and the mean loss when a target is given), in eval mode.

    With `device`, batches of host tensors are copied there as they are used (inputs already there stay). Only a
    GPU evaluates under `autocast` (the training run's precision): on the CPU inference is fp32, as a package serves.
    `training`: the model goes on training afterwards (validation), so it runs under no_grad rather than
    inference_mode, whose tensors autograd refuses later. With a `target`, a task that has `reduce_outputs` (a
    language model, whose per-token distributions are too large to keep) gives its per-row reduction instead.
    """
    with torch.no_grad() if training else torch.inference_mode():
        return _predict(model, inputs, task, batch_size, loss_fn, target, autocast, device)


def _predict(model: nn.Module, inputs: dict[str, torch.Tensor], task: Task, batch_size: int,
             loss_fn: nn.Module | None, target: torch.Tensor | None, autocast: Autocast | None,
             device: torch.device | None) -> tuple[np.ndarray, float]:
    if model.training:  # a served model is in eval mode already; walking its modules costs each batch ~25 us
        model.eval()
    rows = len(next(iter(inputs.values())))
    reduce = getattr(task, "reduce_outputs", None) if target is not None else None
    outputs, loss_sum = [], 0.0
    for start in range(0, rows, batch_size):
        batch = {name: tensor[start:start + batch_size] for name, tensor in inputs.items()}
        if device is not None:
            batch = {name: tensor.to(device, non_blocking=True) for name, tensor in batch.items()}
        with autocast(device) if autocast is not None and device is not None and device.type == "cuda" \
                else nullcontext():
            logits = model(batch)
        part = target[start:start + batch_size].to(logits.device) if target is not None else None
        if loss_fn is not None and part is not None:
            loss_sum += float(loss_fn(logits.float(), part)) * len(logits)
        outputs.append((reduce(logits, part) if reduce is not None else task.activate(logits.float())).cpu())
    return torch.cat(outputs).numpy(), loss_sum / max(rows, 1)


def predict_arrays(model: nn.Module, inputs: dict[str, np.ndarray], task: Task, batch_size: int = 4096,
                   target: np.ndarray | None = None) -> np.ndarray:
    """Activated outputs of encoded NumPy inputs (a package's `Encoded.inputs`) on the CPU (with the encoded
    `target`, what `predict_tensors` gives with one)."""
    tensors = {name: torch.from_numpy(array) for name, array in inputs.items()}
    labels = torch.from_numpy(target) if target is not None else None
    return predict_tensors(model, tensors, task, batch_size, target=labels)[0]
