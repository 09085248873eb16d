"""Running a package's variant: an ONNX Runtime session over its graph, or a torch recipe applied to its model.

The manifest's `variant` entry (written by `luodi optimize`, see search.py) says which: `{"runtime": "onnxruntime",
"file": "model.onnx"}` or `{"runtime": "torch", "recipe": "int8-dynamic"}`. A torch recipe is a deterministic
transform of the fp32 weights the package holds (dynamic int8 linear layers, channels_last, torch.compile, bf16 /
fp16 autocast), applied when the package is served, so the package stores no pickled quantized modules. The server
(serve/backends.py) and the variant search share this module, so what was measured is what is served. Nothing here
imports the training code.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

Inputs = dict[str, np.ndarray]


def onnx_session(path: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session with every graph optimization on (constant folding, node fusions, layout)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def trim_tokens(inputs: Inputs) -> Inputs:
    """Token ids and masks (`name`, `name.mask`, right-padded) cut to the batch's longest text, as the eager model's
    dynamic padding does (models/steps.py `trim`); the graph has a dynamic sequence axis."""
    trimmed = dict(inputs)
    for name in inputs:
        mask = inputs.get(f"{name}.mask")
        if mask is not None and mask.ndim == 2:
            longest = max(1, int(mask.sum(axis=1).max())) if len(mask) else 1
            trimmed[name], trimmed[f"{name}.mask"] = inputs[name][:, :longest], mask[:, :longest]
    return trimmed


class OnnxRunner:
    """Encoded inputs in, activated outputs out, through an ONNX graph (inputs the graph does not read are dropped)."""

    def __init__(self, path: Path, threads: int):
        self.session = onnx_session(path, threads)
        self.inputs = [arg.name for arg in self.session.get_inputs()]
        # a named second axis ("tokens") is dynamic; a graph exported at a fixed length takes padded rows
        self.trim = any(len(arg.shape) == 2 and isinstance(arg.shape[1], str) and arg.name.endswith(".mask")
                        for arg in self.session.get_inputs())

    def __call__(self, inputs: Inputs) -> np.ndarray:
        if self.trim:
            inputs = trim_tokens(inputs)
        outputs: np.ndarray = self.session.run(None, {name: inputs[name] for name in self.inputs})[0]
        return outputs


class Autocast(nn.Module):
    """A model run under autocast on its device (bf16 on a CPU with bf16 instructions, fp16 / bf16 on a GPU): batches
    move to the device and the logits come back as fp32 on the CPU, so activation and decoding are unchanged."""

    def __init__(self, model: nn.Module, device: torch.device, dtype: torch.dtype):
        super().__init__()
        self.model, self.device, self.dtype = model.to(device), device, dtype

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        batch = {name: tensor.to(self.device) for name, tensor in inputs.items()}
        with torch.autocast(self.device.type, dtype=self.dtype):
            logits: torch.Tensor = self.model(batch)
        return logits.float().cpu()


def int8_dynamic(model: nn.Module) -> nn.Module:
    """Linear layers with int8 weights and dynamically quantized activations (torch.ao, CPU)."""
    import warnings

    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao, which we do not ship
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        torch.backends.mha.set_fastpath_enabled(False)  # the Transformer fast path reads linear.weight.device
        return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def channels_last(model: nn.Module) -> nn.Module:
    return model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def compiled(model: nn.Module) -> nn.Module:
    compiled_model: nn.Module = torch.compile(model, dynamic=True)  # type: ignore[assignment]
    return compiled_model


RECIPES: dict[str, Callable[[nn.Module], nn.Module]] = {
    "int8-dynamic": int8_dynamic,
    "channels-last": channels_last,
    "compile": compiled,
    "bf16-cpu": lambda model: Autocast(model, torch.device("cpu"), torch.bfloat16),
    "fp16-cuda": lambda model: Autocast(model, torch.device("cuda"), torch.float16),
    "bf16-cuda": lambda model: Autocast(model, torch.device("cuda"), torch.bfloat16),
}


def apply_recipe(model: nn.Module, recipe: str | None) -> nn.Module:
    """The model with a torch recipe applied (None: as it is), in eval mode."""
    if recipe is None:
        return model.eval()
    if recipe not in RECIPES:
        raise KeyError(f"unknown torch recipe {recipe!r} (known: {', '.join(RECIPES)})")
    return RECIPES[recipe](model.eval()).eval()
