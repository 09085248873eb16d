"""What a report is made from, gathered for the two callers: a training run (splits in memory, the fit result)
and `luodi evaluate` (a loaded package and a labelled table)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from torch import nn

from luodi.config import LuodiConfig
from luodi.evaluate.report import ReportInput, Scored, describe_split
from luodi.features.pipeline import Encoded


def model_info(config: LuodiConfig, model: nn.Module, *, version: int | None, run_id: str | None) -> dict[str, Any]:
    layers = "-".join(str(size) for size in config.model.hidden_sizes) or "linear"
    return {"name": config.name, "version": version, "run_id": run_id,
            "architecture": f"{config.model.type} {layers}",
            "parameters": f"{sum(p.numel() for p in model.parameters()):,}"}


def training_input(fitted: Any, run_id: str) -> ReportInput:
    """A training run's report (`fitted`: jobs/fit.py's result): the split the metrics come from, all three splits
    described, the fit's history."""
    prepared = fitted.prepared
    config, pipeline, splits, scored_split = prepared.config, prepared.pipeline, prepared.splits, prepared.scored_split
    data = config.data
    source = (f"{scored_split} file {Path(data.test).name}" if data.test and scored_split == "test"
              else f"{scored_split} split of {Path(data.train).name}")
    if prepared.streams is not None:  # data.streaming: the splits here are samples, the metrics of the whole split
        source += (f" (streamed: metrics of all {prepared.sizes()[scored_split]:,} rows; tables and charts of its "
                   f"first {getattr(splits, scored_split).num_rows:,})")
    described = [describe_split(name, getattr(splits, name), config, pipeline)
                 for name in ("train", "validation", "test") if getattr(splits, name).num_rows]
    result = fitted.result
    training = {"history": result.history, "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                "stopped_early": result.stopped_early, "still_improving": result.still_improving,
                "seconds": result.seconds, **({"refit": fitted.refit} if fitted.refit else {})}
    return ReportInput(
        kind="training run", config=config, pipeline=pipeline,
        scored=Scored(getattr(splits, scored_split), prepared.encoded[scored_split], fitted.outputs, fitted.metrics,
                      source),
        outputs_of=fitted.outputs_of, network=fitted.model,
        model=model_info(config, fitted.model, version=None, run_id=run_id),
        training=training, splits=described)


def package_version(path: Path) -> int | None:
    """The version of a package in the store (its folder is `models/<name>/v<version>`); None elsewhere."""
    found = re.fullmatch(r"v(\d+)", Path(path).name)
    return int(found.group(1)) if found else None


def evaluation_input(package: Any, table: pa.Table, encoded: Encoded, outputs: np.ndarray,
                     metrics: dict[str, float], source: str) -> ReportInput:
    """`luodi evaluate`'s report: the labelled table, described beside the training split the package recorded."""
    manifest = package.manifest
    config, pipeline = package.config, package.pipeline
    training = dict(manifest.get("training", {}))
    training["history"] = manifest.get("history", [])
    train_rows = manifest.get("data", {}).get("rows", {}).get("train")
    name = Path(source).name if source != "records" else "records"
    described = [describe_split("train (at training)", None, config, pipeline, rows=train_rows),
                 describe_split(name, table, config, pipeline)]
    return ReportInput(
        kind="evaluation", config=config, pipeline=pipeline,
        scored=Scored(table, encoded, outputs, metrics, name), outputs_of=package.outputs, network=package.model,
        model=model_info(config, package.model, version=package_version(package.path),
                         run_id=manifest.get("lineage", {}).get("run_id")),
        training=training, splits=described)
