"""The training job behind `luodi train` and `api.train`: config -> data splits -> fitted features -> model ->
fit -> test metrics -> report -> a registered package, with the run recorded in the store from start to end.

Resume reads the run's own config, data fingerprints, fitted features and checkpoint back. The metric helpers
here are shared with `api.evaluate`, so training and evaluation report the same numbers.
"""

from __future__ import annotations

import copy
import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from luodi.config import LuodiConfig, apply_overrides, load_config, resolve_paths, validate_config
from luodi.errors import InputError
from luodi.store import Run, Store

# Heavy modules (torch, pyarrow, pandas, sklearn) are imported inside the functions so that
# `import luodi.api` and `luodi --help` stay fast.


@dataclass
class TrainResult:
    run_id: str
    model: dict[str, Any]
    package: str
    metrics: dict[str, float]
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    seconds: float
    rows: dict[str, int]
    environment: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    report: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_splits(config: LuodiConfig) -> tuple[Any, dict[str, Any]]:
    """Read, check and split the data; the target and numeric columns are checked on whole files."""
    from luodi.data.sources import fingerprint_file, read_table
    from luodi.data.split import Splits, split_rows, take_splits
    from luodi.features.pipeline import coerce_table
    from luodi.features.target import TargetEncoder

    data = config.data

    def load(path: str) -> Any:
        table = coerce_table(read_table(path), config, path, with_target=True)
        TargetEncoder(config.target).check(table.column(config.target.name), path)
        return table

    table = load(data.train)
    rows = table.num_rows
    fingerprint = {"train": fingerprint_file(data.train)}
    if data.validation and data.test:
        splits = Splits(table, load(data.validation), load(data.test))
        fingerprint.update(validation=fingerprint_file(data.validation), test=fingerprint_file(data.test))
    else:
        indices = split_rows(table, data.split, config.target.name, config.target.task)
        schema, columns = table.schema, table.columns
        del table  # take_splits frees each column once it is split: the rows are held once, not twice
        splits = take_splits(columns, schema, indices)
    if splits.train.num_rows < 2 or splits.validation.num_rows < 1:
        raise InputError(f"{data.train}: {rows} rows are too few to split into train and validation")
    return splits, fingerprint


def as_tensors(encoded: Any) -> Any:
    import torch

    from luodi.train.loop import Tensors

    return Tensors({k: torch.from_numpy(v) for k, v in encoded.inputs.items()}, torch.from_numpy(encoded.target))


def scorer(pipeline: Any) -> Any:
    """(outputs, encoded targets) -> metrics, on the original scale of a regression target."""
    from luodi.evaluate.metrics import compute_metrics, regression_metrics

    target = pipeline.target
    if target.task == "regression":
        return lambda outputs, y: regression_metrics(y * target.std + target.mean,
                                                     outputs * target.std + target.mean)
    return lambda outputs, y: compute_metrics(target.task, y, outputs)


def split_metrics(pipeline: Any, outputs: Any, target: Any) -> dict[str, float]:
    """The reported metrics of a split; `loss` is log loss, or MSE of the standardized target (regression).

    `luodi train` (test split) and `luodi evaluate` both report through this function, so they agree.
    """
    metrics = scorer(pipeline)(outputs, target)
    loss = float(((outputs - target) ** 2).mean()) if pipeline.target.task == "regression" else metrics["log_loss"]
    return {"loss": loss, **metrics}


def train(config: str | Path | LuodiConfig | dict[str, Any] | None = None, overrides: list[str] | tuple[str, ...] = (),
          *, resume: str | None = None, home: str | Path | None = None, progress: str = "auto") -> TrainResult:
    """Train a model from a config, evaluate it on the test split and register it as a new version.

    Args:
        config: a YAML path, a validated `LuodiConfig`, or a dict (paths relative to the working folder).
        overrides: `key.path=value` strings applied before validation.
        resume: a run id to continue from its last checkpoint (config and data come from the run).
        home: the store folder (default `$LUODI_HOME` or `./.luodi`).
        progress: 'auto' (a bar on a terminal), 'bar', 'lines' or 'silent'.
    """
    import torch

    from luodi.data.sources import fingerprint_file
    from luodi.features.pipeline import FeaturePipeline
    from luodi.io import atomic_write_json, atomic_write_text
    from luodi.models import build_model, load_pretrained
    from luodi.models.heads import build_loss
    from luodi.train.loop import fit, predict_tensors
    from luodi.train.precision import PRECISIONS
    from luodi.train.progress import make_progress
    from luodi.train.runtime import apply_runtime

    store = Store(home)
    run: Run | None = None
    if resume is not None:
        if overrides:
            raise InputError("--set does not apply to --resume: a resumed run keeps the config it started with")
        run = store.get_run(resume)
        if run.model_version is not None:  # registered, then stopped before it was marked finished
            store.update_run(run.id, status="finished")
            raise InputError(f"run {run.id} already finished: it registered {run.model_name}/{run.model_version}")
        config = validate_config(run.config, f"run {run.id} config")
        run_dir = store.run_dir(run.id)
        for split, saved in run.summary.get("data", {}).items():
            if fingerprint_file(saved["path"])["sha256"] != saved["sha256"]:
                raise InputError(f"{saved['path']}: the {split} data changed since run {run.id} started; "
                                 "an exact resume needs the same data")
    elif isinstance(config, LuodiConfig | dict):  # overrides apply to a copy: the caller's object is left as it was
        raw = config.model_dump(mode="json") if isinstance(config, LuodiConfig) else copy.deepcopy(config)
        config = resolve_paths(validate_config(apply_overrides(raw, overrides)), Path.cwd())
    elif config is not None:
        config = load_config(config, overrides)
    else:
        raise InputError("give a config file, or --resume RUN")
    assert isinstance(config, LuodiConfig)

    splits, fingerprint = read_splits(config)
    if run is not None:
        pipeline = FeaturePipeline.from_state(config, json.loads((run_dir / "features.json").read_text()),
                                              assets=run_dir)
    else:
        pipeline = FeaturePipeline.fit(config, splits.train)
    encoded = {name: pipeline.transform(getattr(splits, name), f"{config.data.train} ({name} split)", True)
               for name in ("train", "validation", "test")}
    warnings = encoded["test"].unseen.messages()

    environment = apply_runtime(config.runtime, config.trainer.seed,
                                threads=run.environment.get("threads") if run else None, architecture=config.model.type)
    environment.update(pid=os.getpid(), host=socket.gethostname())  # lets `runs ls` tell a dead run from a live one
    if run is None:
        summary = {"data": fingerprint, "rows": splits.sizes()}
        run = store.create_run(config.name, config.model_dump(mode="json"), environment)
        store.update_run(run.id, summary=summary)
        run_dir = store.run_dir(run.id)
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        pipeline.save_assets(run_dir)
        atomic_write_json(run_dir / "features.json", pipeline.state())  # last: resume reads it, then assets
    else:
        store.update_run(run.id, status="running", environment={**run.environment, "pid": environment["pid"],
                                                                 "host": environment["host"]})

    device = torch.device(environment["device"])
    precision = PRECISIONS[environment.get("mixed_precision", "fp32")]
    model = build_model(config, pipeline)
    load_pretrained(model)  # a checkpoint's weights (hf); a resumed run's own checkpoint loads over them in fit
    loss_fn = build_loss(config.target.task, pipeline.target.class_weights())
    score = scorer(pipeline)
    try:
        result = fit(
            model, as_tensors(encoded["train"]), as_tensors(encoded["validation"]), config.trainer,
            task=config.target.task, loss_fn=loss_fn, score=score, monitor=config.trainer.early_stopping.metric,
            mode=config.monitor_mode(), run_dir=run_dir, device=device, progress=make_progress(progress),
            callbacks=[lambda epoch, metrics: store.log_epoch(run.id, epoch, metrics)],
            precision=precision, pin_memory=environment.get("pin_memory", False),
        )
        test_name = "test" if splits.test.num_rows else "validation"
        test = as_tensors(encoded[test_name])
        outputs, _ = predict_tensors(model, test.inputs, config.target.task, config.trainer.eval_batch_size,
                                     precision=precision, device=device)
        metrics = split_metrics(pipeline, outputs, test.target.numpy())
        report = None
        if config.report.enabled:
            from luodi.evaluate.report import build_report_or_warn
            from luodi.evaluate.report_inputs import training_input

            def outputs_of(rows: Any) -> Any:
                inputs = {k: torch.from_numpy(v) for k, v in rows.inputs.items()}
                return predict_tensors(model, inputs, config.target.task, config.trainer.eval_batch_size,
                                       precision=precision, device=device)[0]

            report = build_report_or_warn(lambda: training_input(
                config, pipeline, model, splits, test_name, encoded[test_name], outputs, metrics, outputs_of,
                result, run.id), config.report, warnings)
        model.cpu()
        staging = store.staging_dir()
        parent_version = store.latest_version(config.name)  # the version this one follows, in package and store
        try:
            from luodi.package import save_package

            if report is not None:  # before save_package, which hashes every file in the package
                atomic_write_text(staging / "report.html", report[0])
            save_package(staging, config=config, pipeline=pipeline, model=model, metrics=metrics, extra={
                "history": result.history,
                "training": {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                             "stopped_early": result.stopped_early, "steps": result.steps,
                             "seconds": result.seconds, "metrics_split": test_name, **result.extra},
                "data": {"fingerprint": fingerprint, "rows": splits.sizes()},
                "lineage": {"run_id": run.id, "parent_version": parent_version},
                "environment": environment,
            })
            version = store.register_model(
                config.name, staging, run_id=run.id, task=config.target.task, metrics=metrics,
                data_sha256=fingerprint["train"]["sha256"], description=config.description,
                parent_version=parent_version,
            )
        except BaseException:
            store.remove_staging(staging)
            raise
    except KeyboardInterrupt:
        store.update_run(run.id, status="interrupted", error="interrupted by the user")
        raise
    except BaseException as error:
        store.update_run(run.id, status="failed", error=f"{type(error).__name__}: {error}")
        raise
    summary = {"data": fingerprint, "rows": splits.sizes(), "best_epoch": result.best_epoch,
               "epochs_run": result.epochs_run, "stopped_early": result.stopped_early,
               "seconds": result.seconds, "metrics_split": test_name, **result.extra}
    report_path = None
    if report is not None:
        report_path = run_dir / "report.html"
        atomic_write_text(report_path, report[0])
        summary["report"] = str(report_path)
    store.update_run(run.id, status="finished", metrics=metrics, summary=summary)
    return TrainResult(
        run_id=run.id, model={"name": version.name, "version": version.version}, package=str(version.path),
        metrics=metrics, best_epoch=result.best_epoch, epochs_run=result.epochs_run,
        stopped_early=result.stopped_early, seconds=result.seconds, rows=splits.sizes(),
        environment=environment, warnings=warnings, report=str(report_path) if report_path else None,
    )
