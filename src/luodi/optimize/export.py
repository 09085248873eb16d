"""ONNX export of a model package: the one inference path (models/inference.py `Activated`: the model and its
task's activation) traced on encoded inputs, with a parity check against torch.

The graph takes the pipeline's encoded tensors (`dense` float32 (rows, width), `categorical` int64
(rows, n), ... whatever the architecture reads; inputs the graph does not use are dropped) with a dynamic
batch axis, and returns the activated outputs `outputs` (values, P(positive), or class probabilities): the
same array `ModelPackage.outputs` returns, so preprocessing and decoding stay luodi's. The file goes into a
package folder and is listed in package.json through `package.add_file`, so `verify_package` covers it like the
weights.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from luodi.errors import InputError
from luodi.models.inference import Activated
from luodi.package import ModelPackage, add_file, load_package

ONNX_FILE = "model.onnx"
OPSET = 17


class _Graph(nn.Module):
    """`Activated` with positional tensor inputs: ONNX has no dict inputs."""

    def __init__(self, activated: Activated, names: list[str], empty: dict[str, torch.Tensor]):
        super().__init__()
        self.activated, self.names, self.empty = activated, names, empty

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        inputs = dict(zip(self.names, tensors, strict=True))
        rows = tensors[0].shape[0]
        for name, like in self.empty.items():  # zero-width inputs (no category features): (rows, 0)
            inputs[name] = like.new_zeros((rows, 0))
        return self.activated(inputs)


def _sample_inputs(package: ModelPackage, sample: Any) -> dict[str, np.ndarray]:
    if sample is not None:
        return package.encode(sample, "export sample")[1].inputs
    record = {}
    for item in package.manifest["input_schema"]:
        record[item["name"]] = 0.0 if item["type"] == "numeric" else None
    return package.encode([record] * 4, "export sample")[1].inputs


def export_onnx(folder: str | Path, *, sample: Any = None, tolerance: float = 1e-4) -> dict[str, Any]:
    """Write `model.onnx` into a package folder and list it in package.json; returns the manifest's `onnx` entry.

    Args:
        folder: an unregistered package folder (a registered version is immutable: export into a copy).
        sample: records, a DataFrame or a file to check parity on (default: a few rows of missing values).
        tolerance: largest allowed absolute difference between ONNX Runtime's and torch's outputs.
    """
    import onnxruntime as ort

    folder = Path(folder)
    package = load_package(folder)
    inputs = _sample_inputs(package, sample)
    names = [name for name, array in inputs.items() if array.shape[1:] != (0,)]
    empty = {name: torch.from_numpy(array) for name, array in inputs.items() if name not in names}
    graph = _Graph(Activated(package.model, package.task), names, empty).eval()
    tensors = tuple(torch.from_numpy(inputs[name]) for name in names)
    target = folder / ONNX_FILE
    if target.is_symlink():
        raise InputError(f"{target}: refusing to write through a symlink")
    tmp = folder / f".{ONNX_FILE}.tmp"
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of torch.export (which needs onnxscript); for
        # these feed-forward graphs it is fast (< 1 s) and exact, and the parity check below guards it.
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, tensors, str(tmp), dynamo=False, input_names=names, output_names=["outputs"],
                          dynamic_axes={**{name: {0: "rows"} for name in names}, "outputs": {0: "rows"}},
                          opset_version=OPSET)
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    feeds = {arg.name: inputs[arg.name] for arg in session.get_inputs()}
    onnx_out = session.run(None, feeds)[0]
    with torch.inference_mode():
        torch_out = graph(*tensors).numpy()
    difference = float(np.max(np.abs(onnx_out - torch_out))) if torch_out.size else 0.0
    if not difference <= tolerance:
        tmp.unlink()
        raise InputError(f"{folder}: the ONNX graph differs from torch by {difference:.2e} (> {tolerance:.0e})")
    tmp.replace(target)
    entry = {"file": ONNX_FILE, "inputs": [arg.name for arg in session.get_inputs()], "output": "outputs",
             "opset": OPSET, "exporter": "torch.onnx (TorchScript)", "parity_max_abs_diff": difference,
             "parity_rows": int(len(torch_out))}
    add_file(folder, ONNX_FILE, ("onnx", entry))
    return entry
