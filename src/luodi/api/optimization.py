"""Variants of a model: `export` (ONNX, parity-checked) and `optimize` (the search within an accuracy budget)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from luodi.api.prediction import _write_page
from luodi.api.registry import _is_package_folder, load_model
from luodi.errors import InputError
from luodi.store import ModelVersion, Store, parse_reference

if TYPE_CHECKING:
    from luodi.package import ModelPackage


def _split_rows(package: ModelPackage, limit_train: int = 4096) -> tuple[Any, Any]:
    """The package's training rows (at most `limit_train`, for calibration and fine-tuning) and validation rows,
    split from its config's data as training split them, encoded with the package's feature state."""
    from luodi.jobs.fit import read_splits

    splits, _ = read_splits(package.config)
    source = str(package.config.data.train)
    train = package.pipeline.transform(splits.train.slice(0, limit_train), f"{source} (train split)", True)
    validation = package.pipeline.transform(splits.validation, f"{source} (validation split)", True)
    return train, validation


def _registered(model: str | Path, home: str | Path | None) -> ModelVersion:
    """The registered version a reference points at (optimize registers the next version of its model)."""
    if _is_package_folder(Path(model)):
        raise InputError(f"{model}: give a registered model (name, name@alias, name/3); optimize registers the "
                         "chosen variant as the next version of that model")
    return Store(home).resolve(parse_reference(str(model)))


def export(model: str | Path, out: str | Path, *, format: str = "onnx", home: str | Path | None = None,
           tolerance: float = 1e-4) -> dict[str, Any]:
    """Export a model as ONNX: a copy of its package in `out` (a new folder) holding `model.onnx`, parity-checked
    against eager torch on the validation split (largest output difference and metric differences, in the copy's
    package.json under `onnx`). The folder is a package: `luodi serve OUT` runs it with ONNX Runtime.

    Returns the `onnx` entry with `package` (the folder) and `file` (the ONNX file's path).
    """
    import shutil

    from luodi.optimize.export import export_onnx
    from luodi.train.runtime import set_inference_threads

    if format != "onnx":
        raise InputError(f"--format {format!r}: luodi exports onnx")
    package = load_model(model, home=home)
    if hasattr(package.pipeline.target, "prompt_ids"):
        raise InputError(f"{model}: a {package.task.name} model is not exported to ONNX (tables, images and text "
                         "classification are)")
    destination = Path(out)
    if destination.exists():
        raise InputError(f"{destination} already exists; give a new folder with --out")
    _, validation = _split_rows(package, limit_train=1)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = destination.with_name(f".{destination.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(package.path, staging)
    try:
        entry = export_onnx(staging, rows=validation, tolerance=tolerance,
                            threads=set_inference_threads(package.config.runtime))
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {**entry, "package": str(destination), "file": str(destination / entry["file"])}


def optimize(model: str, *, max_drop: float = 0.01, metric: str | None = None,
             batch_sizes: Sequence[int] = (1, 32), variants: Sequence[str] | None = None,
             exclude_nodes: Sequence[str] = (), fine_tune_steps: int = 100, register: bool = True,
             home: str | Path | None = None) -> dict[str, Any]:
    """Try every variant of a registered model (ONNX Runtime fp32, int8 dynamic and static, torch int8, channels_last,
    torch.compile, bf16, pruning; a language model: int8 weight-only, LoRA merged, merged + int8; see
    docs/optimize.md), score each on the validation split with the task's metric, time it at `batch_sizes` (a
    language model: greedy decoding tokens/s), and register the fastest one within `max_drop` of eager fp32 as the
    model's next version.

    Args:
        model: `name`, `name@alias` or `name/version`.
        max_drop: how much worse than eager fp32 a variant may score, in the metric's units (0.01: one point); for a
            language model relative (0.02: perplexity at most 2% higher).
        metric: the metric the budget is on (default: the task's, e.g. accuracy).
        batch_sizes: the batch sizes latency is measured at; a variant is as fast as the geometric mean of its ratios.
        variants: the variant names to try (default: all; `luodi.optimize.variants.VARIANTS`).
        exclude_nodes: ONNX node names static int8 leaves in fp32 (sensitive layers).
        fine_tune_steps: steps of the fine-tune after pruning.
        register: False measures and reports only.

    Returns `{"variants": [...], "registered": "name/version" or None, "chosen", "verdict", "metric", "report"}`.
    """
    import tempfile

    from luodi.optimize import publish
    from luodi.optimize.search import clean, search
    from luodi.package import load_package
    from luodi.train.runtime import set_inference_threads

    version = _registered(model, home)
    package = load_package(version.path)
    threads = set_inference_threads(package.config.runtime)
    # a language model's variants use no training rows (no calibration, no fine-tune): encode one, not thousands
    train_rows, validation = _split_rows(package, 1 if hasattr(package.pipeline.target, "prompt_ids") else 4096)
    workdir = Path(tempfile.mkdtemp(prefix="luodi-optimize-"))
    try:
        outcome = search(package, train_rows, validation, workdir=workdir, max_drop=max_drop, metric=metric,
                         batch_sizes=list(batch_sizes), variants=None if variants is None else list(variants),
                         threads=threads, exclude_nodes=list(exclude_nodes), fine_tune_steps=fine_tune_steps)
        registered = None
        if register and outcome.chosen is not None:
            registered = publish.register_variant(Store(home), version, outcome)
    finally:
        clean(workdir)
    if registered is not None:
        report = registered.path / publish.REPORT
    else:
        report = _write_page(publish.standalone_page(outcome, f"{version.ref}: optimization"), None, home,
                             f"optimize-{version.name}")
    return {**outcome.to_dict(), "model": version.ref,
            "registered": registered.ref if registered is not None else None, "report": str(report)}
