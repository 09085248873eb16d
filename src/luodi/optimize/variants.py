"""The variants `luodi optimize` tries: one table, `VARIANTS`, of name -> how to build it and when it does not apply.

A builder gets the `Context` (the loaded package, encoded training rows for calibration and fine-tuning, a working
folder) and returns a `Built`: a runner (encoded inputs -> activated outputs, what `ModelPackage.outputs` gives), the
manifest `variant` entry that makes the server run the same thing (recipes.py), and the files the package must carry.
`tolerance` is the parity bound against eager fp32 on the validation rows (largest absolute difference of the
activated outputs): a variant that should compute the same function (ONNX fp32) must stay within it; quantized,
reduced-precision and pruned variants change the numbers on purpose and are judged by the accuracy budget alone
(`tolerance` None), with their measured difference reported. Another kind of model adds its variants with
`register_variant` (language models: optimize/weight_only.py).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from luodi.features.pipeline import Encoded
from luodi.optimize.recipes import Inputs, OnnxRunner, apply_recipe, trim_tokens
from luodi.package import WEIGHTS, ModelPackage, write_tensors

Runner = Callable[[Inputs], np.ndarray]
CALIBRATION_ROWS = 256  # training rows static int8 calibrates its activation ranges on
CALIBRATION_BATCH = 32


@dataclass
class Context:
    """What a builder may use: the package, encoded rows of its training split, a folder for files, settings."""

    package: ModelPackage
    train: Encoded
    folder: Path
    threads: int = 1
    exclude_nodes: list[str] = field(default_factory=list)  # static int8: nodes left in fp32 (sensitive layers)
    fine_tune_steps: int = 100  # pruning: steps of the short fine-tune that recovers accuracy
    cache: dict[str, Any] = field(default_factory=dict)  # shared between builders (the fp32 ONNX export)


@dataclass
class Built:
    run: Runner  # what is timed: encoded rows -> activated outputs (a language model: prompts -> greedy tokens)
    entry: dict[str, Any]  # the manifest's `variant` entry: name, runtime, file or recipe, details
    files: dict[str, Path]  # package-relative name -> the built file the registered version carries
    package: Path | None = None  # a whole package folder the version is made from instead of the parent's copy
    model: nn.Module | None = None  # a language model variant's model, scored by its likelihood of the validation rows


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    build: Callable[[Context], Built]
    skip: Callable[[Context], str | None] = lambda context: None  # a reason it does not apply here, or None
    tolerance: float | None = None  # parity bound against eager fp32, or None: judged by the budget alone
    language: bool = False  # for text_generation packages (optimize/language.py), not for row models


def torch_runner(package: ModelPackage, model: nn.Module) -> Runner:
    """Encoded inputs through `model` on the one inference path (the package's own batching and activation)."""
    from luodi.models.inference import predict_arrays

    def run(inputs: Inputs) -> np.ndarray:
        return predict_arrays(model, inputs, package.task, max(1, len(next(iter(inputs.values())))))

    return run


def _fp32_onnx(context: Context) -> Path:
    """The fp32 graph, exported once and shared by the ONNX variants."""
    from luodi.optimize.export import ONNX_FILE, write_onnx

    if "onnx" not in context.cache:
        path = context.folder / "fp32" / ONNX_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        write_onnx(context.package, {name: array[:8] for name, array in context.train.inputs.items()}, path)
        context.cache["onnx"] = path
    found: Path = context.cache["onnx"]
    return found


def _onnx_built(context: Context, name: str, path: Path, **details: Any) -> Built:
    from luodi.optimize.export import ONNX_FILE

    return Built(OnnxRunner(path, context.threads), {"name": name, "runtime": "onnxruntime", "file": ONNX_FILE,
                                                     **details}, {ONNX_FILE: path})


def build_onnx(context: Context) -> Built:
    return _onnx_built(context, "onnx", _fp32_onnx(context), graph_optimization="ORT_ENABLE_ALL")


def _preprocessed(context: Context) -> Path:
    """ONNX Runtime's recommended pre-processing before quantization (shape inference, graph optimization); the
    plain graph when it refuses (it fails on some Transformer graphs)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if "preprocessed" not in context.cache:
        path = context.folder / "preprocessed.onnx"
        try:
            with _quiet_root_logger():
                # symbolic shape inference is skipped: where it fails (MiniLM) it leaves a debug model in the
                # current folder; ONNX's own shape inference covers these graphs
                quant_pre_process(str(_fp32_onnx(context)), str(path), skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 - a graph it cannot pre-process is quantized as exported
            shutil.copyfile(_fp32_onnx(context), path)
        context.cache["preprocessed"] = path
    found: Path = context.cache["preprocessed"]
    return found


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantization tools log advice per tensor on the root logger (hundreds of lines for MiniLM)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def build_onnx_int8_dynamic(context: Context) -> Built:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = context.folder / "int8-dynamic.onnx"
    with _quiet_root_logger():
        quantize_dynamic(str(_preprocessed(context)), str(path), weight_type=QuantType.QInt8, per_channel=True)
    return _onnx_built(context, "onnx-int8-dynamic", path, weights="int8 per channel",
                       activations="quantized per batch")


class _Calibration:
    """Batches of training rows as ONNX Runtime's calibration reader (its `get_next` protocol)."""

    def __init__(self, inputs: Inputs, names: list[str]):
        rows = len(next(iter(inputs.values())))
        self.batches = [trim_tokens({n: inputs[n][start:start + CALIBRATION_BATCH] for n in inputs})
                        for start in range(0, min(rows, CALIBRATION_ROWS), CALIBRATION_BATCH)]
        self.names, self.position = names, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.batches):
            return None
        batch = self.batches[self.position]
        self.position += 1
        return {name: batch[name] for name in self.names}

    def rewind(self) -> None:
        self.position = 0


def _output_nodes(path: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(path)).graph
    outputs = {output.name for output in graph.output}
    return [node.name for node in graph.node if outputs & set(node.output)]


def build_onnx_int8_static(context: Context) -> Built:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    source = _preprocessed(context)
    path = context.folder / "int8-static.onnx"
    names = OnnxRunner(source, context.threads).inputs
    # the node that makes the outputs (the task's activation: softmax, sigmoid) stays fp32, so probabilities still
    # sum to one; the user's sensitive nodes join it
    excluded = [*_output_nodes(source), *context.exclude_nodes]
    with _quiet_root_logger():
        quantize_static(str(source), str(path), _Calibration(context.train.inputs, names),
                        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=excluded)
    rows = min(CALIBRATION_ROWS, _rows(context.train))
    return _onnx_built(context, "onnx-int8-static", path, format="QDQ", weights="int8 per channel",
                       activations=f"uint8, ranges from {rows} training rows",
                       excluded_nodes=list(context.exclude_nodes))


def _rows(encoded: Encoded) -> int:
    return len(next(iter(encoded.inputs.values())))


def _recipe(name: str, recipe: str) -> Callable[[Context], Built]:
    def build(context: Context) -> Built:
        model = apply_recipe(copy.deepcopy(context.package.model), recipe)
        return Built(torch_runner(context.package, model), {"name": name, "runtime": "torch", "recipe": recipe}, {})

    return build


def _has(module_type: type[nn.Module], reason: str) -> Callable[[Context], str | None]:
    def skip(context: Context) -> str | None:
        return None if any(isinstance(m, module_type) for m in context.package.model.modules()) else reason

    return skip


def _cpu_bf16(context: Context) -> str | None:
    from luodi.train.precision import cpu_has_native_bf16

    return None if cpu_has_native_bf16() else "this CPU has no bf16 instructions (avx512_bf16 / amx_bf16)"


def _cuda(context: Context) -> str | None:
    return None if torch.cuda.is_available() else "no CUDA GPU"


def _compiler(context: Context) -> str | None:
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        return "torch.compile needs a C compiler (cc) for its CPU kernels"
    return _has(nn.Conv2d, "measured no gain without convolutions (docs/performance.md)")(context)


def _pruned(name: str, structured: bool) -> Callable[[Context], Built]:
    def build(context: Context) -> Built:
        from luodi.optimize.prune import prune

        model, sparsity = prune(context.package, context.train, structured=structured,
                                steps=context.fine_tune_steps)
        path = context.folder / f"{name}.safetensors"
        write_tensors(path, model.state_dict())
        return Built(torch_runner(context.package, model),
                     {"name": name, "runtime": "torch", "recipe": None, "pruned": sparsity,
                      "fine_tune_steps": context.fine_tune_steps}, {WEIGHTS: path})

    return build


VARIANTS: dict[str, Variant] = {
    "onnx": Variant("onnx", "ONNX Runtime fp32, all graph optimizations", build_onnx, tolerance=1e-4),
    "onnx-int8-dynamic": Variant("onnx-int8-dynamic", "ONNX Runtime, int8 weights, activations quantized per batch",
                                 build_onnx_int8_dynamic),
    "onnx-int8-static": Variant("onnx-int8-static", "ONNX Runtime, int8 QDQ per channel, calibrated on training rows",
                                build_onnx_int8_static),
    "torch-int8-dynamic": Variant("torch-int8-dynamic", "torch eager, int8 linear layers (torch.ao dynamic)",
                                  _recipe("torch-int8-dynamic", "int8-dynamic"),
                                  _has(nn.Linear, "no linear layers")),
    "channels-last": Variant("channels-last", "torch eager, convolutions in channels_last memory format",
                             _recipe("channels-last", "channels-last"), _has(nn.Conv2d, "no 2-D convolutions"),
                             tolerance=1e-4),
    "compile": Variant("compile", "torch.compile (inductor)", _recipe("compile", "compile"), _compiler,
                       tolerance=1e-4),
    "bf16-cpu": Variant("bf16-cpu", "torch eager under bf16 autocast on the CPU", _recipe("bf16-cpu", "bf16-cpu"),
                        _cpu_bf16),
    "fp16-cuda": Variant("fp16-cuda", "torch on the GPU under fp16 autocast", _recipe("fp16-cuda", "fp16-cuda"),
                         _cuda),
    "bf16-cuda": Variant("bf16-cuda", "torch on the GPU under bf16 autocast", _recipe("bf16-cuda", "bf16-cuda"),
                         _cuda),
    "prune-magnitude": Variant("prune-magnitude", "50% of weights (smallest magnitude) zeroed, then fine-tuned",
                               _pruned("prune-magnitude", structured=False)),
    "prune-structured": Variant("prune-structured", "25% of hidden units / channels (smallest L2 norm) removed, "
                                "then fine-tuned", _pruned("prune-structured", structured=True)),
}


def register_variant(variant: Variant) -> None:
    """Add a variant to the table (a new name; language-model variants live beside their models' code)."""
    if variant.name in VARIANTS or variant.name == "eager":
        raise ValueError(f"variant {variant.name!r} exists already")
    VARIANTS[variant.name] = variant
