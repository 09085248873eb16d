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
from luodi.features.pipeline import Encoded
from luodi.features.unseen import Unseen
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


def write_onnx(package: ModelPackage, inputs: dict[str, np.ndarray], path: Path) -> list[str]:
    """Trace the package's model and activation on `inputs` into an ONNX file at `path`, checked by
    `onnx.checker`; returns the graph's input names. Axes: rows dynamic everywhere; token ids and their masks
    (`name`, `name.mask`) also get a dynamic sequence axis when the traced graph runs at another length (the runner
    then trims a batch to its longest text); a graph that bakes the length in (nn.MultiheadAttention's reshapes under
    the TorchScript tracer) is exported again at the fixed max_length, and the runner feeds it padded rows."""
    names = [name for name, array in inputs.items() if array.shape[1:] != (0,)]
    tokens = [name for name in names if f"{name}.mask" in inputs]
    token_axes = [*tokens, *(f"{name}.mask" for name in tokens)]
    _trace(package, inputs, names, token_axes, path)
    if token_axes and not _runs_shorter(path, inputs, tokens):
        _trace(package, inputs, names, [], path)
    return names


def _trace(package: ModelPackage, inputs: dict[str, np.ndarray], names: list[str], token_axes: list[str],
           path: Path) -> None:
    import onnx

    empty = {name: torch.from_numpy(array) for name, array in inputs.items() if name not in names}
    graph = _Graph(Activated(package.model, package.task), names, empty).eval()
    tensors = tuple(torch.from_numpy(inputs[name]) for name in names)
    axes = {name: ({0: "rows", 1: "tokens"} if name in token_axes else {0: "rows"}) for name in names}
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of torch.export (which needs onnxscript); for
        # these graphs it is fast (< 1 s for an MLP) and exact, and the parity check guards it.
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, tensors, str(path), dynamo=False, input_names=names, output_names=["outputs"],
                          dynamic_axes={**axes, "outputs": {0: "rows"}}, opset_version=OPSET)
    onnx.checker.check_model(str(path), full_check=True)


def _runs_shorter(path: Path, inputs: dict[str, np.ndarray], tokens: list[str]) -> bool:
    """Whether the graph runs on token inputs cut to 2 steps (its sequence axis is really dynamic)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    short = dict(inputs)
    for name in tokens:
        short[name] = np.ascontiguousarray(inputs[name][:, :2])
        short[f"{name}.mask"] = np.ones_like(inputs[f"{name}.mask"][:, :2])
    try:
        session.run(None, {arg.name: short[arg.name] for arg in session.get_inputs()})
    except Exception:  # noqa: BLE001 - ONNX Runtime's shape errors have no common type
        return False
    return True


def parity(package: ModelPackage, run: Any, encoded: Encoded, metric: str | None = None) -> dict[str, Any]:
    """A runner's outputs against eager torch on encoded rows: the largest absolute difference of the activated
    outputs and, with targets, each metric's difference (runner minus eager)."""
    eager = package.outputs(encoded)
    outputs = run(encoded.inputs)
    found: dict[str, Any] = {"rows": int(len(eager)),
                             "max_abs_diff": float(np.max(np.abs(outputs - eager))) if eager.size else 0.0}
    if encoded.target is not None and len(eager):
        target = package.pipeline.target
        before, after = package.task.score(target, eager, encoded.target), package.task.score(target, outputs,
                                                                                              encoded.target)
        found["metric_difference"] = {name: after[name] - before[name] for name in before if name in after}
    return found


def export_onnx(folder: str | Path, *, sample: Any = None, rows: Encoded | None = None,
                tolerance: float = 1e-4, threads: int = 1) -> dict[str, Any]:
    """Write `model.onnx` into a package folder and list it in package.json; returns the manifest's `onnx` entry.

    Args:
        folder: an unregistered package folder (a registered version is immutable: export into a copy).
        sample: records, a DataFrame or a file to check parity on (default: a few rows of missing values).
        rows: encoded rows with targets (the validation split) to check parity on: then the entry also holds each
            metric's difference between ONNX Runtime and torch.
        tolerance: largest allowed absolute difference between ONNX Runtime's and torch's outputs.
    """
    from luodi.optimize.recipes import OnnxRunner

    folder = Path(folder)
    package = load_package(folder)
    checked = rows if rows is not None else Encoded(_sample_inputs(package, sample), None, Unseen())
    trace = {name: array[:8] for name, array in checked.inputs.items()}
    target = folder / ONNX_FILE
    if target.is_symlink():
        raise InputError(f"{target}: refusing to write through a symlink")
    tmp = folder / f".{ONNX_FILE}.tmp"
    try:
        write_onnx(package, trace, tmp)
        runner = OnnxRunner(tmp, threads)
        found = parity(package, runner, checked)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if not found["max_abs_diff"] <= tolerance:
        tmp.unlink()
        raise InputError(f"{folder}: the ONNX graph differs from torch by {found['max_abs_diff']:.2e} "
                         f"(> {tolerance:.0e})")
    tmp.replace(target)
    entry = {"file": ONNX_FILE, "inputs": runner.inputs, "output": "outputs", "opset": OPSET,
             "exporter": "torch.onnx (TorchScript)", "checker": "onnx.checker (full)",
             "parity_max_abs_diff": found["max_abs_diff"], "parity_rows": found["rows"],
             "parity_split": "validation" if rows is not None else "sample",
             **({"metric_difference": found["metric_difference"]} if "metric_difference" in found else {}),
             "preprocessing": "not in the graph: the package's feature state encodes raw records (see inputs)"}
    add_file(folder, ONNX_FILE, ("onnx", entry))
    return entry
