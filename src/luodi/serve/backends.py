"""Inference backends: encoded inputs in, activated outputs out (what `ModelPackage.outputs` returns).

torch eager is `ModelPackage.outputs` itself (the one inference path, models/inference.py); ONNX Runtime runs
when the package lists a `model.onnx` (written by `luodi.optimize.export.export_onnx`, the same path traced), whose
hash `load_package` has verified with the rest of the package. A version registered by `luodi optimize` names its
variant in the manifest: its ONNX graph (fp32 or int8) or a torch recipe (int8 linear layers, torch.compile,
channels_last, bf16), run as the search measured it (luodi.optimize.recipes); the backend's name says which.
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
    def __init__(self, package: ModelPackage, recipe: str | None = None):
        from luodi.optimize.recipes import apply_recipe

        self.package = package
        self.name = "torch" if recipe is None else f"torch+{recipe}"
        package.model = apply_recipe(package.model, recipe)  # the server's own loaded copy

    def run(self, encoded: Encoded) -> np.ndarray:
        return self.package.outputs(encoded, batch_size=max(1, len(encoded)))  # the server's batch is one run


class OnnxBackend:
    name = "onnxruntime"

    def __init__(self, package: ModelPackage, threads: int, file: str | None = None):
        from luodi.optimize.recipes import OnnxRunner

        self.runner = OnnxRunner(package.path / (file or package.manifest["onnx"]["file"]), threads)
        self.inputs = self.runner.inputs

    def run(self, encoded: Encoded) -> np.ndarray:
        return self.runner(encoded.inputs)


def has_onnx(manifest: dict[str, Any]) -> bool:
    """A `model.onnx` listed in the manifest (so its sha256 is verified whenever the package loads)."""
    entry = manifest.get("onnx")
    variant = manifest.get("variant")
    if isinstance(variant, dict) and variant.get("runtime") == "onnxruntime":
        entry = variant
    return isinstance(entry, dict) and entry.get("file") in manifest.get("files", {})


def check_backend(manifest: dict[str, Any], requested: str, path: Path) -> None:
    if requested == "onnx" and not has_onnx(manifest):
        raise InputError(f"{path}: --backend onnx needs a model.onnx in the package (see luodi.optimize.export)")


def choose_backend(package: ModelPackage, requested: str, threads: int) -> Backend:
    """`auto`: the variant an optimized version carries; else ONNX Runtime when the package has a verified
    model.onnx; else torch eager. `torch` and `onnx` force one (a torch recipe still applies under `torch`)."""
    check_backend(package.manifest, requested, package.path)
    variant = package.manifest.get("variant")
    variant = variant if isinstance(variant, dict) else {}
    if requested == "onnx" or requested == "auto" and has_onnx(package.manifest):
        return OnnxBackend(package, threads, variant.get("file") if variant.get("runtime") == "onnxruntime" else None)
    return TorchBackend(package, variant.get("recipe") if variant.get("runtime") == "torch" else None)
