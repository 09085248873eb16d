"""The training job behind `luodi train` and `api.train`: the compute of jobs/fit.py, recorded.

    config -> run recorded -> prepare (splits, features) -> fit -> report -> package -> registered version

Every write to the store and the run folder goes through one `RunRecord`: the run's row, its config and feature
state (what a resume reads back), per-epoch metrics (a callback of the loop), the report, the package and its
registration, and the run's end (finished, failed, interrupted, or what a callback's `StopTraining` says, e.g.
pruned). That is the one place a distributed run limits to its first process. `register=False` (a search trial)
records the run and its report but registers no version.
"""

from __future__ import annotations

import copy
import json
import os
import socket
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from luodi.config import LuodiConfig, apply_overrides, load_config, resolve_paths, take_frames, validate_config
from luodi.errors import InputError, TrainingInterrupted
from luodi.jobs.distributed import RESULT_ENV
from luodi.store import ModelVersion, Run, Store

# Heavy modules (torch, pyarrow, pandas, sklearn) are imported inside the functions so that `import luodi.api` and
# `luodi --help` stay fast.


@dataclass
class TrainResult:
    run_id: str
    model: dict[str, Any] | None  # {"name", "version"} of the registered version; None with register=False
    package: str | None
    metrics: dict[str, float]
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    seconds: float
    rows: dict[str, int]
    still_improving: bool = False  # stopped by trainer.epochs with the best epoch the last: raise it
    notes: list[str] = field(default_factory=list)  # advice on the run (not a problem with it, as warnings are)
    environment: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    report: str | None = None
    rank: int = 0  # under torchrun: the rank that returned it (only rank 0's is recorded and printed)
    # trainer.refit: the model was trained again on train + validation rows (rows, epochs, phase one's validation
    # and test metrics; `metrics` are the refit model's); None without it or when it was skipped (see warnings)
    refit: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_config(config: Any, overrides: list[str] | tuple[str, ...], target: str | None = None,
                   ) -> tuple[LuodiConfig, dict[str, Any]]:
    """A YAML path, a `LuodiConfig`, a dict, or rows in memory (a DataFrame, an Arrow table: with `target`, the
    config `luodi init` would write), with `key=value` overrides, validated; paths made absolute. Returns the
    config and the rows passed in memory by split (a dict whose `data.train` is a DataFrame gives them too)."""
    if target is not None or not isinstance(config, str | Path | LuodiConfig | dict | None):
        from luodi.data.starter import config_from_rows

        if target is None:
            raise InputError("training from rows in memory needs the column to predict: train(frame, target=...)")
        config = config_from_rows(config, target)
    if isinstance(config, LuodiConfig | dict):  # overrides apply to a copy: the caller's object is left as it was
        raw, frames = take_frames(config) if isinstance(config, dict) else (config.model_dump(mode="json"), {})
        raw = copy.deepcopy(raw)
        return resolve_paths(validate_config(apply_overrides(raw, overrides)), Path.cwd()), frames
    if config is not None:
        return load_config(config, overrides), {}
    raise InputError("give a config file, or --resume RUN")


class RunRecord:
    """Everything the job writes: the store's run row and events, the run folder, the package and its version."""

    def __init__(self, store: Store, run: Run):
        self.store, self.run = store, run
        self.dir = store.run_dir(run.id)
        self.trial: dict[str, Any] | None = run.summary.get("trial")  # a search trial keeps its package unregistered

    @classmethod
    def start(cls, store: Store, config: LuodiConfig, environment: dict[str, Any], prepared: Any,
              trial: dict[str, Any] | None = None) -> RunRecord:
        """A new run: its row, config and fitted feature state (written last: a resume reads it, then the assets);
        a search trial's mark (`trial`) stays in its summary."""
        from luodi.io import atomic_write_json, atomic_write_text

        run = store.create_run(config.name, config.model_dump(mode="json"), environment)
        store.update_run(run.id, summary={"data": prepared.fingerprint, "rows": prepared.sizes(),
                                          **({"trial": trial} if trial else {})})
        record = cls(store, run)
        record.trial = trial
        atomic_write_text(record.dir / "config.yaml", yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        prepared.pipeline.save_assets(record.dir)
        atomic_write_json(record.dir / "features.json", prepared.pipeline.state())
        return record

    @classmethod
    def resume(cls, store: Store, run_id: str) -> RunRecord:
        """A stopped run to continue: its data must not have changed since it started."""
        from luodi.data.sources import fingerprint_file

        run = store.get_run(run_id)
        if run.model_version is not None:  # registered, then stopped before it was marked finished
            store.update_run(run.id, status="finished")
            raise InputError(f"run {run.id} already finished: it registered {run.model_name}/{run.model_version}")
        for split, saved in run.summary.get("data", {}).items():
            if saved.get("path") is None:
                raise InputError(f"run {run.id} trained on rows passed in memory ({saved.get('source')}): there is "
                                 "no file to read them again from, so it cannot resume; train it again")
            if fingerprint_file(saved["path"])["sha256"] != saved["sha256"]:
                raise InputError(f"{saved['path']}: the {split} data changed since run {run.id} started; "
                                 "an exact resume needs the same data")
        return cls(store, run)

    def features(self) -> dict[str, Any]:
        """The fitted feature state the run saved when it started."""
        state: dict[str, Any] = json.loads((self.dir / "features.json").read_text())
        return state

    def continued(self, environment: dict[str, Any]) -> None:
        self.store.update_run(self.run.id, status="running", environment={
            **self.run.environment, "pid": environment["pid"], "host": environment["host"]})

    def epoch_callback(self) -> Any:
        """The loop callback that stores each epoch's metrics."""
        from luodi.train.loop import Callback

        return Callback(on_epoch_end=lambda epoch, metrics: self.store.log_epoch(self.run.id, epoch, metrics))

    def register(self, fitted: Any, report: str | None, environment: dict[str, Any],
                 profile: dict[str, Any] | None = None) -> ModelVersion:
        """Write the package into a staging folder (the report first: the manifest hashes every file; the reference
        profile listed after it) and make it the model's next version in one transaction."""
        config = fitted.prepared.config
        staging = self.store.staging_dir()
        parent_version = self.store.latest_version(config.name)  # the version this one follows, in package and store
        try:
            self.write_package(staging, fitted, report, environment, parent_version, profile)
            return self.store.register_model(
                config.name, staging, run_id=self.run.id, task=config.target.task, metrics=fitted.metrics,
                data_sha256=fitted.prepared.fingerprint["train"]["sha256"], description=config.description,
                parent_version=parent_version)
        except BaseException:
            self.store.remove_staging(staging)
            raise

    def keep_package(self, fitted: Any, report: str | None, environment: dict[str, Any],
                     profile: dict[str, Any] | None = None) -> Path:
        """A search trial's package, written into a staging folder and renamed to the run folder's `package/`: the
        search registers its best trial from there (`register_kept`) without training it again."""
        staging = self.store.staging_dir()
        try:
            self.write_package(staging, fitted, report, environment, None, profile)
            os.replace(staging, self.dir / PACKAGE)
        except BaseException:
            self.store.remove_staging(staging)
            raise
        return self.dir / PACKAGE

    def write_package(self, folder: Path, fitted: Any, report: str | None, environment: dict[str, Any],
                      parent_version: int | None, profile: dict[str, Any] | None) -> None:
        from luodi.io import atomic_write_text
        from luodi.monitor.profile import PROFILE_FILE, write_profile
        from luodi.package import add_file, save_package

        prepared = fitted.prepared
        if report is not None:
            atomic_write_text(folder / "report.html", report)
        save_package(folder, config=prepared.config, pipeline=prepared.pipeline, model=fitted.model.cpu(),
                     metrics=fitted.metrics, extra={
                         "history": fitted.result.history,
                         "training": {**summary_of(fitted), **fitted.result.extra},
                         "data": {"fingerprint": prepared.fingerprint, "rows": prepared.sizes()},
                         "lineage": {"run_id": self.run.id, "parent_version": parent_version},
                         "environment": environment,
                     })
        if profile is not None:
            write_profile(folder, profile)
            add_file(folder, PROFILE_FILE)

    def finish(self, fitted: Any, report: str | None) -> str | None:
        """The report in the run folder, and the run finished with its metrics and summary; the report's path."""
        from luodi.io import atomic_write_text

        prepared = fitted.prepared
        summary = {"data": prepared.fingerprint, "rows": prepared.sizes(), **summary_of(fitted),
                   **fitted.result.extra}
        if self.trial is not None:
            summary["trial"] = self.trial
        path = None
        if report is not None:
            path = self.dir / "report.html"
            atomic_write_text(path, report)
            summary["report"] = str(path)
        self.store.update_run(self.run.id, status="finished", metrics=fitted.metrics, summary=summary)
        return str(path) if path else None

    def end(self, status: str, error: str) -> None:
        self.store.update_run(self.run.id, status=status, error=error)


PACKAGE = "package"  # a search trial's package in its run folder, until its search registers it


def register_kept(store: Store, run_id: str, extra_files: dict[str, str] | None = None) -> ModelVersion:
    """Register the package a search trial kept (`train(trial=...)`) as its model's next version, with
    `extra_files` (name -> text, e.g. the study page) added; a run registers once: a second call returns its version.
    """
    import shutil

    from luodi.io import atomic_write_text
    from luodi.package import add_file, verify_package

    run = store.get_run(run_id)
    if run.model_version is not None and run.model_name is not None:
        return store.get_version(run.model_name, run.model_version)
    kept = store.run_dir(run.id) / PACKAGE
    if not kept.is_dir():
        raise InputError(f"run {run.id} kept no package to register (only a finished search trial does)")
    staging = store.staging_dir()
    try:
        shutil.copytree(kept, staging, dirs_exist_ok=True)
        manifest = verify_package(staging)
        parent_version = store.latest_version(run.name)
        add_file(staging, None, ("lineage", {**manifest["lineage"], "parent_version": parent_version}))
        for name, text in (extra_files or {}).items():
            atomic_write_text(staging / name, text)
            add_file(staging, name)
        version = store.register_model(
            run.name, staging, run_id=run.id, task=manifest["task"], metrics=manifest["metrics"],
            data_sha256=manifest["data"]["fingerprint"]["train"]["sha256"],
            description=manifest["config"].get("description", ""), parent_version=parent_version)
    finally:
        store.remove_staging(staging)  # gone when the rename took it; left when the run had registered already
    shutil.rmtree(kept, ignore_errors=True)  # the version holds it now
    return version


def reference_profile(fitted: Any, warnings: list[str]) -> dict[str, Any] | None:
    """The package's reference profile for monitoring; a failure is a warning, never a lost model."""
    from luodi.jobs.fit import profile_of

    try:
        return profile_of(fitted)
    except Exception as error:  # noqa: BLE001 - the model is still good without a profile
        warnings.append(f"the reference profile for monitoring was not written ({type(error).__name__}: {error}); "
                        "luodi monitor needs one: train again once this is fixed")
        return None


def summary_of(fitted: Any) -> dict[str, Any]:
    """How training went: the numbers the run summary and the package's `training` share."""
    result = fitted.result
    return {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run, "stopped_early": result.stopped_early,
            "still_improving": result.still_improving, "steps": result.steps, "seconds": result.seconds,
            "metrics_split": fitted.prepared.scored_split,
            **({"refit": refit_summary(fitted.refit)} if refit_summary(fitted.refit) else {})}


def refit_summary(refit: dict[str, Any] | None) -> dict[str, Any] | None:
    """A refit's rows, epochs and phase one's metrics, as the run, the package and `train --json` say them."""
    if not refit or "skipped" in refit:
        return None
    return {key: value for key, value in refit.items() if key != "history"}


def train(config: Any = None, overrides: list[str] | tuple[str, ...] = (), *, target: str | None = None,
          resume: str | None = None, home: str | Path | None = None, progress: str = "auto",
          register: bool = True, callbacks: Sequence[Any] = (), trial: dict[str, Any] | None = None) -> TrainResult:
    """Train a model from a config, evaluate it on the test split and register it as a new version.

    Args:
        config: a YAML path, a validated `LuodiConfig`, or a dict (paths relative to the working folder; its
            `data.train`, `data.validation` and `data.test` may be DataFrames); or a DataFrame (or Arrow table)
            with `target`: the config `luodi init` would infer from it.
        overrides: `key.path=value` strings applied before validation.
        target: the column to predict, when `config` is a DataFrame.
        resume: a run id to continue from its last checkpoint (config and data come from the run).
        home: the store folder (default `$LUODI_HOME` or `./.luodi`).
        progress: 'auto' (a bar on a terminal), 'bar', 'lines' or 'silent'.
        register: False records the run and its report but registers no model version (search trials).
        callbacks: `luodi.train.loop.Callback` hooks (per step, per epoch); one may raise `StopTraining`.
        trial: marks the run as a search trial (`{"study": ..., "number": ...}`, kept in its summary): it registers
            no version and keeps its package in the run folder, for `register_kept` if it turns out best.
    """
    from luodi.jobs.fit import prepare
    from luodi.train.distributed import World
    from luodi.train.progress import make_progress
    from luodi.train.runtime import apply_runtime

    world = World.from_environment()  # under torchrun: this rank; only rank 0 opens the store and records
    if world.distributed and resume is not None:
        raise InputError("--resume continues a single-process run; under torchrun a restarted group resumes by "
                         "itself (--max-restarts)")
    store = Store(home) if world.main else None
    record = None
    display = make_progress(progress if world.main else "silent")
    if resume is not None:
        assert store is not None
        if overrides:
            raise InputError("--set does not apply to --resume: a resumed run keeps the config it started with")
        record = RunRecord.resume(store, resume)
        config = validate_config(record.run.config, f"run {record.run.id} config")
        with display.phase("reading and encoding the data"):
            prepared = prepare(config, record.features(), assets=record.dir)
    else:
        config, frames = resolve_config(config, overrides, target)
        with display.phase("reading and encoding the data"):
            prepared = prepare(config, frames=frames)
    warnings = prepared.warnings
    environment = apply_runtime(config.runtime, config.trainer.seed, architecture=config.model.type,
                                threads=record.run.environment.get("threads") if record else None, world=world)
    environment.update(pid=os.getpid(), host=socket.gethostname())  # lets `runs ls` tell a dead run from a live one
    resumed = record is not None
    checkpoint_dir = None
    if world.distributed:
        record, checkpoint_dir, resumed = join_job(store, config, environment, prepared, trial, home, world)
    elif record is None:
        assert store is not None
        record = RunRecord.start(store, config, environment, prepared, trial)
    else:
        record.continued(environment)
    if record is not None:
        display.run(record.run.id, config.name, resumed)
    try:
        return record_training(record, prepared, environment, display, callbacks, register, warnings,
                               checkpoint_dir, world)
    finally:
        from luodi.train.distributed import stop

        stop(world)


def join_job(store: Store | None, config: LuodiConfig, environment: dict[str, Any], prepared: Any,
             trial: dict[str, Any] | None, home: str | Path | None, world: Any,
             ) -> tuple[RunRecord | None, Path, bool]:
    """A torchrun rank's place in its job: rank 0 starts the job's run, or continues it when torchrun restarted the
    group; every rank learns the job's checkpoint folder. Returns (the record on rank 0, else None; the checkpoint
    folder; whether the run continues)."""
    from luodi.jobs.distributed import claim, claimed_run, job_folder
    from luodi.train.distributed import job_id, restart_count

    if config.trainer.batch_size < world.size:
        raise InputError(f"trainer.batch_size {config.trainer.batch_size} is the global batch: it must be at least "
                         f"the number of ranks ({world.size})")
    folder = job_folder(config, home, job_id())
    record = None
    if world.main:
        assert store is not None
        run_id = claimed_run(folder, restart_count())
        if run_id is None:
            record = RunRecord.start(store, config, environment, prepared, trial)
            claim(folder, record.run.id)
        else:
            record = RunRecord(store, store.get_run(run_id))
            record.continued(environment)
    return record, folder, restart_count() > 0


def job_run(folder: Path | None) -> str:
    """The run a torchrun job records, as its folder names it (read by ranks other than 0, which open no store)."""
    from luodi.jobs.distributed import RUN_FILE

    path = (folder or Path()) / RUN_FILE
    return str(json.loads(path.read_text())["run_id"]) if folder is not None and path.is_file() else ""


def record_training(record: RunRecord | None, prepared: Any, environment: dict[str, Any], display: Any,
                    callbacks: Sequence[Any], register: bool, warnings: list[str], checkpoint_dir: Path | None,
                    world: Any) -> TrainResult:
    """Fit, then (with a record: not on torchrun's other ranks) the report, the reference profile, the package and
    its registration, and the run's end."""
    from luodi.evaluate.report import build_report_or_warn
    from luodi.evaluate.report_inputs import training_input
    from luodi.jobs.fit import fit
    from luodi.jobs.refit import refit
    from luodi.train.loop import StopTraining, still_improving_message

    config = prepared.config
    run_dir = checkpoint_dir if checkpoint_dir is not None else record.dir if record else None
    assert run_dir is not None
    try:
        fitted = fit(prepared, run_dir=run_dir, environment=environment, progress=display,
                     callbacks=[*([record.epoch_callback()] if record else []), *callbacks], world=world)
        if config.trainer.refit:  # a fresh model on training + validation rows, the one packaged
            fitted = refit(fitted, run_dir=run_dir, environment=environment, progress=display, world=world)
        if fitted.refit and "skipped" in fitted.refit:
            warnings.append(fitted.refit["skipped"])
        if record is None:  # another rank of a torchrun job: rank 0 records
            result = fitted.result
            return TrainResult(run_id=job_run(checkpoint_dir), model=None, package=None, metrics=fitted.metrics,
                               best_epoch=result.best_epoch, epochs_run=result.epochs_run,
                               stopped_early=result.stopped_early, seconds=result.seconds,
                               rows=prepared.sizes(), environment=environment, rank=world.rank)
        report = None
        if config.report.enabled:
            page = build_report_or_warn(lambda: training_input(fitted, record.run.id), config.report, warnings)
            report = page[0] if page is not None else None
        profile = reference_profile(fitted, warnings) if (register or record.trial) and config.monitor.profile \
            else None
        version = record.register(fitted, report, environment, profile) if register and record.trial is None \
            else None
        if record.trial is not None:
            record.keep_package(fitted, report, environment, profile)
    except KeyboardInterrupt:
        if record is None:
            raise
        record.end("interrupted", "interrupted by the user")
        raise TrainingInterrupted(record.run.id) from None
    except StopTraining as stop:
        if record is not None:
            record.end(stop.status, str(stop))
            stop.run_id = record.run.id
        raise
    except BaseException as error:
        if record is not None:
            record.end("failed", f"{type(error).__name__}: {error}")
        raise
    report_path = record.finish(fitted, report)
    result = fitted.result
    notes = [still_improving_message(result.epochs_run)] if result.still_improving else []
    done = TrainResult(
        run_id=record.run.id, model={"name": version.name, "version": version.version} if version else None,
        package=str(version.path) if version else None, metrics=fitted.metrics, best_epoch=result.best_epoch,
        epochs_run=result.epochs_run, stopped_early=result.stopped_early, seconds=result.seconds,
        rows=prepared.sizes(), environment=environment, warnings=warnings, report=report_path,
        still_improving=result.still_improving, notes=notes, refit=refit_summary(fitted.refit),
    )
    if world.distributed and (result_file := os.environ.get(RESULT_ENV)):  # for `luodi train --nproc`'s launcher
        from luodi.io import atomic_write_json

        atomic_write_json(Path(result_file), done.to_dict())
    return done
