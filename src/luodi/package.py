"""The model package: save, verify and load the one artifact everything after training consumes.

    package.json         format version, task, config, input/output schema, fitted feature state, metrics,
                         data fingerprint, lineage, library versions, sha256 of every other file
    weights.safetensors  the model's tensors
    adapter/             instead of weights.safetensors for a LoRA fine-tune: PEFT's adapter files
                         (adapter_model.safetensors, adapter_config.json) and base.json, the base checkpoint's path
                         and sha256 (also the manifest's `base`); loading reads the base's weights from that folder
    tokenizer/<n>-<feature>/  a text feature's tokenizer (and an hf checkpoint's config.json), when it has one

Loading verifies every hash, checks the safetensors header against the architecture before reading any
tensor, and never unpickles. `predict` applies the saved feature state to raw records, runs the model through the
one inference path (models/inference.py) and decodes the outputs with the task: the code path shared by `luodi
predict`, the Python API, evaluation and the server. This module is the only writer of `package.json`: files
added later (an ONNX graph) are listed through `add_file`.
"""

from __future__ import annotations

import json
import os
import platform
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from luodi.checkpoints import checkpoint_digest
from luodi.config import LuodiConfig, TargetConfig, validate_config
from luodi.data.sources import TableLike, to_table
from luodi.errors import InputError
from luodi.features.pipeline import Encoded, FeaturePipeline, coerce_table
from luodi.io import atomic_write_json, current_umask, sha256_file
from luodi.models import build_model
from luodi.models.inference import predict_arrays
from luodi.tasks import OutputSpec, Predictions, Task, get_task

FORMAT_VERSION = 1
MANIFEST = "package.json"
WEIGHTS = "weights.safetensors"
ADAPTER_WEIGHTS = "adapter/adapter_model.safetensors"  # PEFT's adapter format: PeftModel.from_pretrained reads it
ADAPTER_CONFIG = "adapter/adapter_config.json"
BASE_REFERENCE = "adapter/base.json"  # the base checkpoint's path and sha256, hashed like every file
BASE_VARIABLE = "LUODI_BASE"  # where a moved base checkpoint is, when no `base` is given
MAX_HEADER_BYTES = 100 << 20
PREDICT_BLOCK = 4096  # rows per call of an inference backend in `predict` (bounded memory on a large file)
DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
          torch.int64: "I64", torch.int32: "I32", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}


def library_versions() -> dict[str, str]:
    import pyarrow
    import safetensors

    import luodi

    return {"luodi": luodi.__version__, "torch": torch.__version__, "pyarrow": pyarrow.__version__,
            "safetensors": safetensors.__version__, "python": platform.python_version()}


def save_package(directory: Path, *, config: LuodiConfig, pipeline: FeaturePipeline, model: nn.Module,
                 metrics: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write weights (or a LoRA model's adapters) and manifest into `directory` (a staging folder; the store
    renames it into place)."""
    directory = Path(directory)
    adapted = getattr(model, "adapter", None)
    adapter = adapted() if callable(adapted) else None  # LoRA: the adapters and their base, not every weight
    base = None
    if adapter is None:
        write_tensors(directory / WEIGHTS, model.state_dict())
    else:
        base = write_adapter(directory, adapter)
    pipeline.save_assets(directory)  # tokenizers and other encoder files: hashed below like the weights
    files = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            files[str(path.relative_to(directory))] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    manifest = {
        "format_version": FORMAT_VERSION,
        "name": config.name,
        "task": config.target.task,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config.model_dump(mode="json"),
        "input_schema": pipeline.input_schema(),
        "output_schema": pipeline.output_schema(),
        "features": pipeline.state(),
        "metrics": metrics,
        "versions": library_versions(),
        **({"base": base} if base is not None else {}),
        **(extra or {}),
        "files": files,
    }
    atomic_write_json(directory / MANIFEST, manifest)
    return manifest


def write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """A safetensors file of `tensors` (readable as any new file is: safetensors creates it 0600)."""
    from safetensors.torch import save_file

    state, seen = {}, set()
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu().contiguous()
        # safetensors refuses tensors that share memory (tied input and output embeddings): each name gets its own
        # copy, so the file still lists exactly the architecture's names and loads with load_state_dict.
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        state[name] = tensor.clone() if key in seen else tensor
        seen.add(key)
    save_file(state, str(path), metadata={"format": "pt"})
    os.chmod(path, 0o666 & ~current_umask())


def write_adapter(directory: Path, adapter: Any) -> dict[str, Any]:
    """PEFT's adapter files and the base reference (`models.language.Adapter`); returns the reference: the base
    folder, the sha256 of its weights, config and tokenizer (`checkpoints.checkpoint_digest`) and each file's."""
    from luodi.checkpoints import checkpoint_folder

    folder = checkpoint_folder(adapter.base, "the LoRA base checkpoint (model.path)")
    (directory / ADAPTER_WEIGHTS).parent.mkdir()
    write_tensors(directory / ADAPTER_WEIGHTS, adapter.tensors)
    adapter.config.save_pretrained(str((directory / ADAPTER_CONFIG).parent))
    digest, files = checkpoint_digest(folder)
    base = {"path": str(folder), "sha256": digest, "files": files}
    atomic_write_json(directory / BASE_REFERENCE, base)
    return base


def base_checkpoint(package: Path, reference: dict[str, Any], base: str | Path | None = None) -> Path:
    """The base checkpoint folder of an adapter package: `base` (a moved copy), else $LUODI_BASE, else the path it
    was trained from; its sha256 must be the one the package recorded."""
    given = base if base is not None else os.environ.get(BASE_VARIABLE) or None
    folder = Path(given if given is not None else reference["path"])
    if not folder.is_dir():
        if given is not None:
            raise InputError(f"{package}: the base checkpoint given ({folder}) is not a folder")
        raise InputError(f"{package}: this package holds LoRA adapters of the base checkpoint {reference['path']}, "
                         "which is not there; point --base PATH (or the LUODI_BASE variable) at a copy of that "
                         "checkpoint, or put it back (`luodi models merge` then makes a package that needs no base)")
    digest, files = checkpoint_digest(folder)
    if digest != reference["sha256"]:
        recorded = reference.get("files", {})
        differ = sorted(name for name in set(files) | set(recorded) if files.get(name) != recorded.get(name))
        raise InputError(f"{package}: base checkpoint {folder} has sha256 {digest}, but the adapters were trained "
                         f"on {reference['sha256']} (files that differ: {', '.join(differ)}); refusing to apply them "
                         "to another model: point --base PATH (or LUODI_BASE) at the checkpoint they were trained on")
    return folder


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file, bounded before it is read (an absurd length is refused)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise InputError(f"{path}: not a safetensors file (too short)")
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_HEADER_BYTES or length > size - 8:
            raise InputError(f"{path}: safetensors header claims {length} bytes; the file has {size}")
        try:
            header: dict[str, Any] = json.loads(handle.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly nested
            raise InputError(f"{path}: safetensors header is not valid JSON (or nested too deeply)") from None
    if not isinstance(header, dict):
        raise InputError(f"{path}: safetensors header is not a JSON object")
    return header


def check_weights(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Names, shapes and dtypes in the file must be exactly the architecture's (`tensors`: its state dict, or its
    adapters), before any tensor is read."""
    header = read_safetensors_header(path)
    header.pop("__metadata__", None)
    expected = {name: (list(t.shape), DTYPES.get(t.dtype, str(t.dtype))) for name, t in tensors.items()}
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    if missing or unexpected:
        raise InputError(f"{path}: weights do not match the architecture (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    for name, (shape, dtype) in expected.items():
        entry = header[name]
        if not isinstance(entry, dict) or entry.get("shape") != shape or entry.get("dtype") != dtype:
            raise InputError(f"{path}: tensor {name!r} is {entry.get('dtype')} {entry.get('shape')}, "
                             f"the architecture needs {dtype} {shape}")


def output_specs(manifest: dict[str, Any]) -> tuple[OutputSpec, ...]:
    """The package's outputs, from its task and the target state it saved (no model is loaded for this)."""
    task = get_task(manifest["task"])
    target = task.target(TargetConfig.model_validate(manifest["config"]["target"]), manifest["features"]["target"])
    return task.output_specs(target)


def verify_package(path: Path) -> dict[str, Any]:
    """Read the manifest and check every listed file's SHA-256; refuse symlinks and unlisted weights."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise InputError(f"{path}: not a model package (no {MANIFEST})")
    try:
        manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly nested
        raise InputError(f"{manifest_path}: not valid JSON (or nested too deeply)") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files", {}), dict):
        raise InputError(f"{manifest_path}: not a package manifest (a JSON object with a 'files' object)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{path}: package format {manifest.get('format_version')!r} is not supported "
                         f"(this luodi reads {FORMAT_VERSION})")
    for name, entry in manifest.get("files", {}).items():
        file = path / name
        if file.is_symlink() or not file.resolve().is_relative_to(path.resolve()):
            raise InputError(f"{path}: refusing {name!r} (symlink or outside the package)")
        if not file.is_file():
            raise InputError(f"{path}: {name} is missing")
        if sha256_file(file) != entry["sha256"]:
            raise InputError(f"{path}: {name} does not match its sha256 in {MANIFEST}: the file is corrupt or "
                             "was modified")
    listed = manifest.get("files", {})
    if "base" in manifest or ADAPTER_WEIGHTS in listed:
        missing = [name for name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG, BASE_REFERENCE) if name not in listed]
        if missing:
            raise InputError(f"{path}: {MANIFEST} of an adapter package does not list {', '.join(missing)}")
        if json.loads((path / BASE_REFERENCE).read_text(encoding="utf-8")) != manifest.get("base"):
            raise InputError(f"{path}: the base checkpoint in {MANIFEST} is not the one in {BASE_REFERENCE}")
    elif WEIGHTS not in listed:
        raise InputError(f"{path}: {MANIFEST} does not list {WEIGHTS}")
    return manifest


def add_file(folder: Path, name: str | None, entry: tuple[str, Any] | None = None) -> dict[str, Any]:
    """List a file written into an unregistered package folder in its manifest (with its sha256, so loading
    verifies it), and optionally a manifest entry that describes it (`("onnx", {...})`); returns the manifest.
    With `name` None only the entry is written (a search trial's lineage, set when it is registered)."""
    folder = Path(folder)
    manifest: dict[str, Any] = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    if entry is not None:
        manifest[entry[0]] = entry[1]
    if name is not None:
        manifest["files"][name] = {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size}
    atomic_write_json(folder / MANIFEST, manifest)
    return manifest


@dataclass
class Prediction:
    """Predictions for a block of rows, in input order: the task's typed outputs and the encoding's warnings."""

    outputs: Predictions
    warnings: list[str]

    @property
    def predictions(self) -> list[Any]:
        """Each row's prediction: a label or a number."""
        return self.outputs.values

    @property
    def probabilities(self) -> np.ndarray | None:
        """(rows, classes) for classifiers, else None."""
        output = self.outputs.get("probabilities")
        return None if output is None else output.data


class ModelPackage:
    """A loaded, verified package ready to predict on raw records."""

    def __init__(self, path: Path, manifest: dict[str, Any], config: LuodiConfig, pipeline: FeaturePipeline,
                 model: nn.Module):
        self.path, self.manifest, self.config = path, manifest, config
        self.pipeline, self.model = pipeline, model
        self.task: Task = config.task()

    @property
    def target(self) -> str:
        return self.config.target.name

    @property
    def classes(self) -> list[Any]:
        """A classifier's labels, in output order (a task without classes has no such attribute)."""
        return self.pipeline.target.classes

    def encode(self, data: TableLike, source: str = "records", with_target: bool = False,
               strict: bool = False) -> tuple[pa.Table, Encoded]:
        """Raw records to model inputs with the saved feature state (and encoded targets when asked)."""
        table = coerce_table(to_table(data, source), self.config, source, with_target)
        return table, self.pipeline.transform(table, source, with_target, strict)

    def outputs(self, encoded: Encoded, batch_size: int = 4096) -> np.ndarray:
        """Activated model outputs (the task's: standardized values, P(positive), class probabilities), or with
        encoded targets what the task reduces them to (a language model's per-row likelihood)."""
        return predict_arrays(self.model, encoded.inputs, self.task, batch_size, encoded.target)

    def decode(self, outputs: np.ndarray) -> Predictions:
        """Activated outputs to the task's typed predictions (labels and probabilities, values in target units)."""
        return self.task.decode(self.pipeline.target, outputs)

    def predict(self, data: TableLike, source: str = "records", strict: bool = False,
                run: Callable[[Encoded], np.ndarray] | None = None) -> Prediction:
        """Predict raw records: a file path, a DataFrame, an Arrow table, a dict or a list of dicts.

        `run` is the inference backend (`serve.backends.choose_backend(...).run`: an optimized version's ONNX graph
        or torch recipe), fed blocks of `PREDICT_BLOCK` rows; default eager torch (`outputs`)."""
        _, encoded = self.encode(data, source, strict=strict)
        if run is None or not len(encoded):
            outputs = self.outputs(encoded)
        else:
            outputs = np.concatenate([run(encoded.rows(start, start + PREDICT_BLOCK))
                                      for start in range(0, len(encoded), PREDICT_BLOCK)])
        return Prediction(self.decode(outputs), encoded.unseen.messages())

    def generate(self, prompt: str | list[dict[str, str]], sampling: Any = None) -> Iterator[str]:
        """Pieces of text continuing `prompt` (a text_generation package), as they are generated
        (`models.generation.Sampling`; default greedy, 64 tokens). A chat model also takes a list of messages."""
        from luodi.models.generation import Sampling, stream_text

        target = self.pipeline.target
        if not hasattr(target, "prompt_ids"):
            raise InputError(f"{self.path}: a {self.task.name} model predicts rows; it does not generate text")
        return stream_text(self.model, target, prompt, sampling or Sampling())

    def predict_frame(self, data: TableLike, source: str = "records", strict: bool = False,
                      run: Callable[[Encoded], np.ndarray] | None = None) -> Any:
        """Predictions as a pandas DataFrame: `<target>_prediction`, and `<target>_probability_<class>` for
        classifiers (one column per output of the task, see tasks/outputs.py); `run` as for `predict`."""
        import pandas as pd

        result = self.predict(data, source, strict, run)
        frame = pd.DataFrame(result.outputs.columns(self.target))
        frame.attrs["warnings"] = result.warnings
        return frame


def load_package(path: str | Path, base: str | Path | None = None) -> ModelPackage:
    """Verify and load a package folder; weights are checked against the architecture before use.

    An adapter package (LoRA) loads its base checkpoint's weights first: from `base` when given (a moved copy),
    else from $LUODI_BASE, else from the folder it was trained on; the base's sha256 must match the recorded one.
    """
    from safetensors.torch import load_file

    path = Path(path)
    manifest = verify_package(path)
    config = validate_config(manifest["config"], f"{path / MANIFEST} config")
    pipeline = FeaturePipeline.from_state(config, manifest["features"], assets=path)
    model = build_model(config, pipeline)
    if "base" in manifest:
        adapter = getattr(model, "adapter", lambda: None)()
        if adapter is None:
            raise InputError(f"{path}: {MANIFEST} names a base checkpoint, but its model ({config.model.type}) has "
                             "no LoRA adapters")
        model.load_pretrained(base_checkpoint(path, manifest["base"], base))  # type: ignore[operator]
        check_weights(path / ADAPTER_WEIGHTS, adapter.tensors)
        model.load_adapter(load_file(str(path / ADAPTER_WEIGHTS)))  # type: ignore[operator]
    else:
        weights = path / WEIGHTS
        if "weight_only" in manifest:  # int8 linear layers (optimize/weight_only.py): swapped in before loading
            from luodi.models.int8 import apply_layout

            apply_layout(model, manifest["weight_only"], f"{path / MANIFEST} weight_only")
        check_weights(weights, model.state_dict())
        model.load_state_dict(load_file(str(weights)))
    model.eval()
    return ModelPackage(path, manifest, config, pipeline, model)


def merge_adapters(package: ModelPackage, directory: Path, name: str) -> dict[str, Any]:
    """Write into `directory` a standalone package of an adapter package: its adapters folded into the base
    weights (PEFT's `merge_and_unload`), the config's LoRA off, every weight in weights.safetensors; the same
    tokenizer, metrics and report. Returns the new manifest. `package`'s model is merged in place."""
    import shutil

    merge = getattr(package.model, "merge", None)
    if "base" not in package.manifest or not callable(merge):
        raise InputError(f"{package.path}: not an adapter (LoRA) package; it already holds every weight")
    merge()
    config = package.config.model_copy(deep=True)
    config.name = name
    config.model.hf.lora.enabled = False
    if (package.path / "report.html").is_file():
        shutil.copyfile(package.path / "report.html", directory / "report.html")
    source = package.manifest
    lineage = {**source.get("lineage", {}), "merged_from": str(package.path), "base": source["base"]}
    kept: dict[str, Any] = {key: source[key] for key in ("history", "training", "data", "environment")
                            if key in source}
    return save_package(directory, config=config, pipeline=package.pipeline, model=package.model,
                        metrics=source.get("metrics", {}), extra={**kept, "lineage": lineage})
