"""Pruning with a short fine-tune to recover: magnitude (the smallest weights of every layer, globally) or structured
(whole hidden units and convolution channels with the smallest L2 norm), on a copy of the package's model.

The masks stay on during the fine-tune (torch.nn.utils.prune's re-parametrization), so the recovered weights keep
their zeros; then the masks are folded in and the model has the architecture's names and shapes again, ready for
weights.safetensors. The fine-tune is the task's own loss on the training rows, a fixed number of steps at a tenth
of the run's learning rate, seeded: a recovery, not a second training run.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from luodi.features.pipeline import Encoded
from luodi.models.mlp import BatchEnsembleLinear, EnsembleLinear, training_loss
from luodi.package import ModelPackage

MAGNITUDE_AMOUNT = 0.5  # fraction of all prunable weights zeroed
STRUCTURED_AMOUNT = 0.25  # fraction of each hidden layer's units / channels removed
PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, BatchEnsembleLinear, EnsembleLinear)  # an ensemble's shared and heads


def prunable_layers(model: nn.Module) -> list[Any]:
    """Linear and convolution layers whose weights train (frozen pretrained layers stay as they are)."""
    return [module for module in model.modules() if isinstance(module, PRUNABLE) and module.weight.requires_grad]


def prune(package: ModelPackage, train: Encoded, *, structured: bool, steps: int = 100,
          seed: int = 0) -> tuple[nn.Module, dict[str, Any]]:
    """A pruned, fine-tuned copy of the package's model and what was pruned (amount, zeroed fraction)."""
    model = copy.deepcopy(package.model).float()
    layers = prunable_layers(model)
    if not layers:
        raise ValueError("the model has no trainable linear or convolution layers to prune")
    for layer in layers:  # channels_last convolution weights: global pruning flattens them with view()
        layer.weight.data = layer.weight.data.contiguous()
    if structured:
        for layer in layers[:-1]:  # the last layer's outputs are the task's: every one is kept
            torch_prune.ln_structured(layer, "weight", amount=STRUCTURED_AMOUNT, n=2, dim=0)
    else:
        torch_prune.global_unstructured([(layer, "weight") for layer in layers],
                                        pruning_method=torch_prune.L1Unstructured, amount=MAGNITUDE_AMOUNT)
    fine_tune(package, model, train, steps, seed)
    for layer in layers[:-1] if structured else layers:
        torch_prune.remove(layer, "weight")
    model.eval()
    weights = [layer.weight for layer in layers]  # (out, in, ...) each
    total = sum(int(weight.numel()) for weight in weights)
    zeros = sum(int((weight == 0).sum()) for weight in weights)
    method = "structured (L2 norm of units / channels)" if structured else "global magnitude (L1)"
    return model, {"method": method, "amount": STRUCTURED_AMOUNT if structured else MAGNITUDE_AMOUNT,
                   "zero_fraction": zeros / max(total, 1)}


def fine_tune(package: ModelPackage, model: nn.Module, train: Encoded, steps: int, seed: int) -> None:
    """`steps` AdamW steps of the task's loss on shuffled training batches, at a tenth of the run's learning rate."""
    if steps <= 0 or train.target is None:
        return
    trainer = package.config.trainer
    generator = torch.Generator().manual_seed(seed)
    inputs = {name: torch.from_numpy(np.ascontiguousarray(array)) for name, array in train.inputs.items()}
    target = torch.from_numpy(train.target)
    rows = len(target)
    loss_fn = training_loss(model, package.task.loss(package.pipeline.target))  # an ensemble: every member's
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=trainer.optimizer.lr * 0.1)
    model.train()
    order, position = torch.randperm(rows, generator=generator), 0
    for _ in range(steps):
        if position >= rows:
            order, position = torch.randperm(rows, generator=generator), 0
        index = order[position:position + trainer.batch_size]
        position += trainer.batch_size
        batch = {name: tensor[index] for name, tensor in inputs.items()}
        loss = loss_fn(model(batch), target[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
