"""The Python API: one function per lifecycle verb. The CLI is a thin layer over these functions.

    import luodi.api as luodi
    result = luodi.train("luodi.yaml")
    frame = luodi.predict("churn@latest", [{"tenure": 3, "contract": "monthly"}])
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from luodi.config import LuodiConfig, load_config, resolve_paths, validate_config
from luodi.errors import InputError
from luodi.store import ModelVersion, Run, Store

if TYPE_CHECKING:
    from luodi.package import ModelPackage

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


@dataclass
class InitResult:
    config_path: str
    name: str
    task: str
    task_reason: str
    features: dict[str, str]
    dropped: dict[str, str]
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------------ init
def init(data: str | Path, target: str | None = None, *, task: str | None = None, output: str | Path = "luodi.yaml",
         name: str | None = None, force: bool = False) -> InitResult:
    """Write a commented starter config inferred from a data file.

    Args:
        data: the training table (CSV, Parquet or JSONL), or a folder with one subfolder of images per class.
        target: the column to predict (for an image folder: `label`, the default).
        task: regression, binary or multiclass; inferred from the target when omitted.
        output: where to write the config.
        name: the model name in the registry (default: from the file name).
        force: overwrite an existing config file.
    """
    from luodi.data import starter
    from luodi.data.sources import read_table
    from luodi.io import atomic_write_text

    data, output = Path(data), Path(output)
    if target is None:
        if not data.is_dir():
            raise InputError("give --target COLUMN: the column to predict")
        from luodi.data.images import LABEL_COLUMN

        target = LABEL_COLUMN
    if output.exists() and not force:
        raise InputError(f"{output} already exists; pass --force to overwrite it or --output to write elsewhere")
    table = read_table(data)
    plan = starter.plan(table, data, target, task, name)
    text = starter.render(plan, starter.relative_data_path(data, output), data)
    validate_config(yaml.safe_load(text), str(output))  # what init writes must load; a failure here is a bug
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output, text)
    return InitResult(str(output), plan.name, plan.task.task, plan.task.reason,
                      {c.name: f"{c.type}: {c.reason}" for c in plan.features},
                      {c.name: c.reason for c in plan.dropped}, plan.rows)


# ----------------------------------------------------------------------------------------------- train
def _read_splits(config: LuodiConfig) -> tuple[Any, dict[str, Any]]:
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


def _tensors(encoded: Any) -> Any:
    import torch

    from luodi.train.loop import Tensors

    return Tensors({k: torch.from_numpy(v) for k, v in encoded.inputs.items()}, torch.from_numpy(encoded.target))


def _scorer(pipeline: Any) -> Any:
    """(outputs, encoded targets) -> metrics, on the original scale of a regression target."""
    from luodi.evaluate.metrics import compute_metrics, regression_metrics

    target = pipeline.target
    if target.task == "regression":
        return lambda outputs, y: regression_metrics(y * target.std + target.mean,
                                                     outputs * target.std + target.mean)
    return lambda outputs, y: compute_metrics(target.task, y, outputs)


def _test_metrics(pipeline: Any, outputs: Any, target: Any) -> dict[str, float]:
    """The reported metrics of a split; `loss` is log loss, or MSE of the standardized target (regression).

    `luodi train` (test split) and `luodi evaluate` both report through this function, so they agree.
    """
    metrics = _scorer(pipeline)(outputs, target)
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
    elif isinstance(config, LuodiConfig):
        config = resolve_paths(config, Path.cwd())
    elif isinstance(config, dict):
        config = resolve_paths(validate_config(config), Path.cwd())
    elif config is not None:
        config = load_config(config, overrides)
    else:
        raise InputError("give a config file, or --resume RUN")
    assert isinstance(config, LuodiConfig)

    splits, fingerprint = _read_splits(config)
    if run is not None:
        pipeline = FeaturePipeline.from_state(config, json.loads((run_dir / "features.json").read_text()),
                                              assets=run_dir)
    else:
        pipeline = FeaturePipeline.fit(config, splits.train)
    encoded = {name: pipeline.transform(getattr(splits, name), f"{config.data.train} ({name} split)", True)
               for name in ("train", "validation", "test")}
    warnings = encoded["test"].unseen.messages()

    environment = apply_runtime(config.runtime, config.trainer.seed,
                                threads=run.environment.get("threads") if run else None)
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
    score = _scorer(pipeline)
    try:
        result = fit(
            model, _tensors(encoded["train"]), _tensors(encoded["validation"]), config.trainer,
            task=config.target.task, loss_fn=loss_fn, score=score, monitor=config.trainer.early_stopping.metric,
            mode=config.monitor_mode(), run_dir=run_dir, device=device, progress=make_progress(progress),
            callbacks=[lambda epoch, metrics: store.log_epoch(run.id, epoch, metrics)],
            precision=precision, pin_memory=environment.get("pin_memory", False),
        )
        test_name = "test" if splits.test.num_rows else "validation"
        test = _tensors(encoded[test_name])
        outputs, _ = predict_tensors(model, test.inputs, config.target.task, config.trainer.eval_batch_size,
                                     precision=precision, device=device)
        metrics = _test_metrics(pipeline, outputs, test.target.numpy())
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


# ------------------------------------------------------------------------------- using a model
def load_model(model: str | Path | ModelPackage, *, home: str | Path | None = None) -> Any:
    """A verified, loaded package from a reference (`name`, `name@alias`, `name/version`) or a folder path (or the
    package itself, already loaded)."""
    from luodi.package import ModelPackage, load_package

    if isinstance(model, ModelPackage):
        return model
    path = Path(model)
    if path.is_dir() and (path / "package.json").exists():
        return load_package(path)
    if isinstance(model, Path) or "/" in str(model) and not str(model).split("/", 1)[1].lstrip("v").isdigit():
        raise InputError(f"{model}: not a model package folder nor a model reference (name, name@alias, name/3)")
    return load_package(Store(home).resolve(str(model)).path)


def _source(data: Any) -> str:
    return str(data) if isinstance(data, str | Path) else "records"


def evaluate(model: str | Path, data: Any, *, home: str | Path | None = None, strict: bool = False,
             report: str | Path | bool = True) -> dict[str, Any]:
    """Metrics of a model on labelled data (a file, DataFrame or records holding the target column), and the
    evaluation report.

    Args:
        report: True writes report.html under `LUODI_HOME/reports/`; a path writes it there; False writes none.

    Returns `{"metrics": {...}, "rows": n, "model": ..., "package": ..., "warnings": [...], "report": path or
    None, "details": {...}}`; `details` holds the report's other numbers (per-class or residual tables, slices,
    importance, data summary), the very values in the report's JSON block.
    """
    from luodi.train.runtime import set_inference_threads

    package = load_model(model, home=home)
    set_inference_threads(package.config.runtime)
    source = _source(data)
    table, encoded = package.encode(data, source, with_target=True, strict=strict)
    outputs = package.outputs(encoded)
    metrics = _test_metrics(package.pipeline, outputs, encoded.target)
    warnings = encoded.unseen.messages()
    result: dict[str, Any] = {"metrics": metrics, "rows": len(encoded), "model": package.manifest["name"],
                              "package": str(package.path), "warnings": warnings, "report": None, "details": {}}
    if report is False:
        return result
    from luodi.evaluate.report import DETAILS, build_report_or_warn
    from luodi.evaluate.report_inputs import evaluation_input

    page = build_report_or_warn(lambda: evaluation_input(package, table, encoded, outputs, metrics, source),
                                package.config.report, warnings)
    if page is not None:
        destination = None if isinstance(report, bool) else report
        result["report"] = str(_write_page(page[0], destination, home, f"evaluate-{package.config.name}"))
        result["details"] = {key: page[1][key] for key in DETAILS if key in page[1]}
    return result


def _write_page(html: str, path: str | Path | None, home: str | Path | None, stem: str) -> Path:
    """Write a page to `path`, or by default to a new file under LUODI_HOME/reports/."""
    import secrets

    from luodi.io import atomic_write_text

    if path is None:
        path = Store(home).home / "reports" / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}.html"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, html)
    return path


def explain(model: str | Path, data: Any, *, out: str | Path | None = None, home: str | Path | None = None,
            target_class: str | None = None, steps: int = 50, strict: bool = False) -> Any:
    """Per-row attributions of a model's predictions to each input column (integrated gradients, Captum).

    Args:
        model: a reference (`name`, `name@alias`, `name/version`) or a package folder.
        data: a file path, DataFrame, dict or list of dicts (no target needed).
        out: also write the table (CSV, Parquet or JSONL by suffix).
        target_class: explain this class's probability instead of the predicted class's.
        steps: integration steps; more is closer to exact (see the `delta` in the result).

    Returns a `luodi.evaluate.explain.Explanation`: `.to_frame()` (one `<column>_attribution` per input column,
    one `<column>_tokens` JSON list per text column) and `.to_dict()`; a text read as tokens (rnn, transformer,
    hf) also gets one attribution per token in `.tokens[column][row]`.
    """
    from luodi.evaluate.explain import explain as explain_rows
    from luodi.train.runtime import set_inference_threads

    package = load_model(model, home=home)
    set_inference_threads(package.config.runtime)
    explanation = explain_rows(package, data, source=_source(data), target_class=target_class, steps=steps,
                               strict=strict)
    if out is not None:
        write_table(explanation.to_frame(), Path(out))
    return explanation


def compare(runs: list[str] | tuple[str, ...], *, out: str | Path | None = None,
            home: str | Path | None = None) -> dict[str, Any]:
    """Compare training runs: config differences, metrics with the best marked.

    A run is given by id (or unique prefix), or by a model version (`churn/2`, `churn@production`): the run that
    trained it. Writes one HTML page to `out` (default: a new file under `LUODI_HOME/reports/`); returns the
    comparison (`runs`, `metrics`, `best`, `differences`, `same`) with `report`, the page's path.
    """
    from luodi.evaluate.compare import compare_runs, render_comparison

    if len(runs) < 2:
        raise InputError("compare needs at least two runs (see `luodi runs ls`)")
    store = Store(home)

    def run_of(reference: str) -> Run:
        if "/" not in reference and "@" not in reference:
            return store.get_run(reference)
        version = store.resolve(reference)
        if version.run_id is None:
            raise InputError(f"{reference}: this model version was registered without a run")
        return store.get_run(version.run_id)

    found = [observed(run_of(reference)) for reference in runs]
    duplicates = sorted({run.id for run in found if [r.id for r in found].count(run.id) > 1})
    if duplicates:
        raise InputError(f"run {duplicates[0]} is listed more than once")
    comparison = compare_runs([run.to_dict() for run in found])
    page = render_comparison(comparison, [store.epoch_history(run.id) for run in found])
    return {**comparison, "report": str(_write_page(page, out, home, "compare"))}


def predict(model: str | Path | ModelPackage, data: Any, *, out: str | Path | None = None,
            home: str | Path | None = None, strict: bool = False, keep_input: bool | None = None) -> Any:
    """Predict raw records (file path, DataFrame, dict or list of dicts) and return a pandas DataFrame.

    Classifiers add `<target>_probability_<class>` columns. With `out`, the result is also written (CSV,
    Parquet or JSONL by suffix); `keep_input` (default: True when reading a file) puts the input columns first.
    """
    import pandas as pd

    from luodi.data.sources import to_table

    package = load_model(model, home=home)
    source = _source(data)
    table = to_table(data, source)
    frame = package.predict_frame(table, source, strict)
    if keep_input is None:
        keep_input = isinstance(data, str | Path)
    if keep_input:
        warnings = frame.attrs["warnings"]
        frame = pd.concat([table.to_pandas(), frame], axis=1)
        frame.attrs["warnings"] = warnings
    if out is not None:
        write_table(frame, Path(out))
    return frame


def predict_text(model: str | Path | ModelPackage, texts: str | list[str], *, out: str | Path | None = None,
                 home: str | Path | None = None, strict: bool = False) -> Any:
    """Predict raw texts with a model whose one input is a text column (`luodi predict --text`).

    Returns the DataFrame `predict` gives, the texts first.
    """
    package = load_model(model, home=home)
    features = package.config.input_features
    if len(features) != 1 or features[0].type != "text":
        raise InputError(f"{package.path}: the model reads {[f.name for f in features]}, not one text column; "
                         "give a table with --data")
    rows = [{features[0].name: text} for text in ([texts] if isinstance(texts, str) else texts)]
    return predict(package, rows, out=out, strict=strict, keep_input=True)


def write_table(frame: Any, path: Path) -> None:
    """Write a DataFrame atomically as CSV, Parquet or JSONL (by suffix)."""
    from luodi.data.sources import table_format
    from luodi.io import atomic_write

    fmt = table_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        sep = "\t" if path.suffix.lower() == ".tsv" else ","
        atomic_write(path, lambda handle: frame.to_csv(handle, index=False, sep=sep), mode="w")
    elif fmt == "parquet":
        atomic_write(path, lambda handle: frame.to_parquet(handle, index=False))
    else:
        atomic_write(path, lambda handle: frame.to_json(handle, orient="records", lines=True), mode="w")


# ------------------------------------------------------------------------------------------- serving
def serve(models: str | list[str], *, home: str | Path | None = None, api_keys_file: str | Path | None = None,
          admin_keys_file: str | Path | None = None, **settings: Any) -> int:
    """Serve registered models over HTTP until SIGTERM or Ctrl-C (which drain); returns the exit code.

    Args:
        models: references (`name@alias`, `name`, `name/3`) or package folders.
        home: the store folder (default `$LUODI_HOME` or `./.luodi`).
        api_keys_file, admin_keys_file: files with one key per line (also `LUODI_API_KEYS` / `LUODI_ADMIN_KEYS`).
        settings: any `luodi.serve.settings.ServeConfig` field: host, port, workers, max_batch_size, ...
    """
    from luodi.serve.server import run
    from luodi.serve.settings import make_config, read_keys

    config = make_config(api_keys=read_keys("LUODI_API_KEYS", Path(api_keys_file) if api_keys_file else None),
                         admin_keys=read_keys("LUODI_ADMIN_KEYS", Path(admin_keys_file) if admin_keys_file else None),
                         **settings)
    return run([models] if isinstance(models, str) else list(models), config, Path(home) if home else None)


# ---------------------------------------------------------------------------------- runs and models
def observed(run: Run) -> Run:
    """The run with status 'stopped' when it reads 'running' but its process on this host is gone.

    A run killed with -9, or whose machine rebooted, never got to mark itself; `luodi train --resume` continues it.
    """
    pid, host = run.environment.get("pid"), run.environment.get("host")
    if run.status != "running" or not isinstance(pid, int) or host != socket.gethostname():
        return run
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return dataclasses.replace(run, status="stopped")
    except PermissionError:  # alive, owned by someone else
        pass
    return run


def list_runs(*, name: str | None = None, limit: int = 50, home: str | Path | None = None) -> list[Run]:
    """Runs, newest first; a 'running' run whose process is gone reads 'stopped'."""
    return [observed(run) for run in Store(home).list_runs(name, limit)]


def show_run(run_id: str, *, home: str | Path | None = None) -> dict[str, Any]:
    store = Store(home)
    run = observed(store.get_run(run_id))
    return {**run.to_dict(), "history": store.epoch_history(run.id), "dir": str(store.run_dir(run.id))}


def list_models(*, home: str | Path | None = None) -> list[dict[str, Any]]:
    return Store(home).list_models()


def show_model(model: str, *, home: str | Path | None = None) -> list[ModelVersion]:
    """All versions of a model name, or the one version a reference points at."""
    store = Store(home)
    if "@" in model or "/" in model:
        return [store.resolve(model)]
    return store.list_versions(model)


def promote(name: str, version: int, alias: str, *, reason: str = "", home: str | Path | None = None) -> dict[str, Any]:
    """Point `name@alias` at `version` (recorded in the event log)."""
    return Store(home).set_alias(name, alias, version, reason)


def history(model: str, *, home: str | Path | None = None) -> list[dict[str, Any]]:
    """The event log for a model: registrations and alias moves, newest first."""
    return Store(home).events(model)


def elapsed(start: float) -> float:
    return round(time.perf_counter() - start, 3)
