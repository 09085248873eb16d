"""Inference backends: encoded inputs in, activated outputs out (what `ModelPackage.outputs` returns).

torch eager is `ModelPackage.outputs` itself (the one inference path, models/inference.py); ONNX Runtime runs
when the package lists a `model.onnx` (written by `luodi.optimize.export.export_onnx`, the same path traced), whose
hash `load_package` has verified with the rest of the package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from luodi.errors import InputError
from luodi.features.pipeline import Encoded
from luodi.package import ModelPackage


class Backend(Protocol):
    name: str

    def run(self, encoded: Encoded) -> np.ndarray: ...


class TorchBackend:
    name = "torch"

    def __init__(self, package: ModelPackage):
        self.package = package

    def run(self, encoded: Encoded) -> np.ndarray:
        return self.package.outputs(encoded, batch_size=max(1, len(encoded)))  # the server's batch is one run


class OnnxBackend:
    name = "onnxruntime"

    def __init__(self, package: ModelPackage, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        path = package.path / package.manifest["onnx"]["file"]
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [arg.name for arg in self.session.get_inputs()]

    def run(self, encoded: Encoded) -> np.ndarray:
        outputs: np.ndarray = self.session.run(None, {name: encoded.inputs[name] for name in self.inputs})[0]
        return outputs


def has_onnx(manifest: dict[str, Any]) -> bool:
    """A `model.onnx` listed in the manifest (so its sha256 is verified whenever the package loads)."""
    entry = manifest.get("onnx")
    return isinstance(entry, dict) and entry.get("file") in manifest.get("files", {})


def check_backend(manifest: dict[str, Any], requested: str, path: Path) -> None:
    if requested == "onnx" and not has_onnx(manifest):
        raise InputError(f"{path}: --backend onnx needs a model.onnx in the package (see luodi.optimize.export)")


def choose_backend(package: ModelPackage, requested: str, threads: int) -> Backend:
    """`auto`: ONNX Runtime when the package has a verified model.onnx, else torch eager."""
    check_backend(package.manifest, requested, package.path)
    if requested == "onnx" or requested == "auto" and has_onnx(package.manifest):
        return OnnxBackend(package, threads)
    return TorchBackend(package)
