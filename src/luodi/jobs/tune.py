"""The search job behind `luodi tune` and `api.tune`: Optuna's TPE over the config's `search:` ranges.

    config + search: -> study (Optuna, SQLite under LUODI_HOME) -> trials -> best trial's package registered

Each trial is a training run (jobs/train.py with `trial=`): recorded in the store, marked as a trial of its
study, its package kept in its run folder and no version registered. After each epoch the trial reports its
validation metric (the one early stopping watches) to the study; the median pruner ends a trial whose curve is
worse than the median of earlier trials at the same epoch with `StopTraining("pruned")`, so the run reads
`pruned`, not `failed`. A trial's value is its best validation value, as the best epoch's weights are what its
package holds. When the trials are done, the best trial of the whole study (any process, any invocation) is
registered from its own package, without training it again, with the study page (`evaluate/study.py`) beside
its report. Studies live in `LUODI_HOME/studies.db`, so several processes on one study share it; with a PostgreSQL
store (LUODI_STORE) in that database, or in the one `--storage postgresql://...` names, so processes on several
machines share it (docs/scale.md).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import sys
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from luodi.config import (
    LuodiConfig,
    SearchRange,
    apply_overrides,
    read_yaml,
    resolve_paths,
    set_key,
    split_override,
    take_frames,
    validate_config,
)
from luodi.data import budget
from luodi.database import POSTGRES_SCHEMES, PostgresDatabase, hide_password, postgres_lock
from luodi.errors import InputError
from luodi.store import Store, validate_name

STUDIES_DB = "studies.db"
STUDY_LOCK = 0x6C756F6474  # the advisory lock processes creating a study in PostgreSQL take ("luodt")
STUDY_PAGE = "study.html"
PRUNER_STARTUP_TRIALS = 3  # trials that finish before any is pruned: a median of fewer is mostly noise
PRUNER_WARMUP_EPOCHS = 2  # nor on its first two epochs, where a smaller learning rate still lags
SCALAR = (type(None), bool, int, float, str)


@dataclass
class TrialLine:
    """One trial's outcome, as the progress line and the study summary show it."""

    number: int
    state: str  # complete, pruned, failed
    value: float | None
    params: dict[str, Any]
    run_id: str | None
    seconds: float
    best_number: int | None
    best_value: float | None
    note: str = ""
    curve: list[float] = field(default_factory=list)  # the metric after each epoch

    def text(self, metric: str) -> str:
        params = " ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={json.dumps(value)}"
                          for key, value in self.params.items())
        value = "-" if self.value is None else f"{self.value:.4g}"
        best = "none yet" if self.best_value is None else f"{self.best_value:.4g} (trial {self.best_number})"
        note = f" ({self.note})" if self.note else ""
        return (f"trial {self.number}: {self.state}{note}, {metric} {value}, best {best}, {self.seconds:.1f} s, "
                f"{params}")


@dataclass
class TuneResult:
    study: str
    metric: str  # the validation metric searched, e.g. val_loss
    direction: str  # minimize or maximize
    model: dict[str, Any]  # {"name", "version"} of the registered best trial
    package: str
    run_id: str  # the best trial's run
    metrics: dict[str, float]  # the best trial's test metrics
    best: dict[str, Any]  # number, value, params
    trials: list[dict[str, Any]]  # this invocation's trials (TrialLine as dicts)
    counts: dict[str, int]  # the whole study's trials by state
    page: str  # the study page
    seconds: float
    importances: dict[str, float] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_duration(text: str | float | None) -> float | None:
    """'90s', '10m', '1.5h' or a number of seconds -> seconds; None stays None."""
    if text is None or isinstance(text, int | float):
        return None if text is None else float(text)
    return budget.parse_duration(text)


# ----------------------------------------------------------------------------------------- configs
@dataclass
class SearchSpace:
    """The config a search starts from (raw, before validation), where its paths are relative to, and its ranges."""

    raw: dict[str, Any]  # without `search:`
    frames: dict[str, Any]  # rows passed in memory by split
    base: Path
    source: str
    config: LuodiConfig  # validated, with `search`
    ranges: dict[str, SearchRange]

    def trial_config(self, values: dict[str, Any], source: str | None = None) -> dict[str, Any]:
        """The config of a trial: the starting config with `values` set at their dotted keys, validated (errors
        name `source`), paths absolute, as a dict `train` takes (with rows in memory put back)."""
        raw = copy.deepcopy(self.raw)
        for key, value in values.items():
            set_key(raw, key, split_override(f"{key}=")[1], copy.deepcopy(value))
        config = resolve_paths(validate_config(raw, source or self.source), self.base)
        trial = config.model_dump(mode="json")
        if self.frames:
            trial["data"] = {**trial["data"], **self.frames}
        return trial

    def check(self) -> None:
        """Every end of every range and every choice makes a valid config; the error names the search key."""
        for key, space in self.ranges.items():
            for value in space.choices if space.choices is not None else [space.low, space.high]:
                self.trial_config({key: value}, f"{self.source}: search.{key} = {json.dumps(value)}")


def search_space(config: Any, overrides: list[str] | tuple[str, ...] = ()) -> SearchSpace:
    """A YAML path, a dict or a `LuodiConfig` with a `search:` section, `--set` overrides applied."""
    if isinstance(config, str | Path):
        path = Path(config)
        frames: dict[str, Any] = {}
        raw, base, source = read_yaml(path), path.resolve().parent, str(path)
    elif isinstance(config, LuodiConfig | dict):
        raw, frames = take_frames(config) if isinstance(config, dict) else (config.model_dump(mode="json"), {})
        raw, base, source = copy.deepcopy(raw), Path.cwd(), "config"
    else:
        raise InputError("tune takes a config file, a dict or a LuodiConfig with a search: section")
    raw = apply_overrides(raw, overrides)
    validated = validate_config(raw, source)
    if not validated.search:
        raise InputError(f"{source}: no search: section: add the ranges to search (docs/tuning.md), or write one "
                         "with `luodi init --tune`")
    space = SearchSpace({key: value for key, value in raw.items() if key != "search"}, frames, base, source,
                        validated, dict(validated.search))
    space.check()
    return space


def suggest(trial: Any, ranges: dict[str, SearchRange]) -> dict[str, Any]:
    """The trial's value for every search key. Choices that are not scalars (lists, sections) are offered to
    Optuna as their JSON text (its categorical values must be scalars) and read back."""
    values = {}
    for key, space in ranges.items():
        if space.choices is not None:
            if all(isinstance(choice, SCALAR) for choice in space.choices):
                values[key] = trial.suggest_categorical(key, space.choices)
            else:
                values[key] = json.loads(trial.suggest_categorical(key, [json.dumps(c) for c in space.choices]))
        elif space.integer:
            values[key] = trial.suggest_int(key, int(space.low), int(space.high), step=int(space.step or 1),  # type: ignore[arg-type]
                                            log=space.log)
        else:
            values[key] = trial.suggest_float(key, float(space.low), float(space.high), step=space.step,  # type: ignore[arg-type]
                                              log=space.log)
    return values


# ------------------------------------------------------------------------------------------- study
def study_storage(store: Store, storage: str | None) -> str:
    """The SQLAlchemy URL of Optuna's storage: `storage` (postgresql:// or sqlite:///), else the store's own
    PostgreSQL database, else `LUODI_HOME/studies.db`. PostgreSQL goes through psycopg 3 (`postgresql+psycopg://`)."""
    if storage is None:
        if not isinstance(store.database, PostgresDatabase):
            return f"sqlite:///{store.home / STUDIES_DB}"
        storage = store.database.url
    if storage.startswith(POSTGRES_SCHEMES):
        return "postgresql+psycopg://" + storage.split("://", 1)[1]
    if storage.startswith("sqlite:///"):
        return storage
    raise InputError(f"--storage {hide_password(storage)!r}: give a postgresql://USER@HOST/DATABASE URL that every "
                     "machine reaches, or sqlite:///PATH")


@contextmanager
def study_lock(store: Store, url: str) -> Iterator[None]:
    """Processes creating Optuna's tables (or one study) at once collide ("table already exists"): they take turns,
    on PostgreSQL with an advisory lock in that database (machines need not share a store for it), on SQLite with
    the store's write lock. Afterwards Optuna's own rows suffice."""
    if url.startswith("postgresql+psycopg://"):
        with postgres_lock(url, STUDY_LOCK):
            yield
    else:
        with store.transaction():
            yield


def open_study(store: Store, name: str, config: LuodiConfig, metric: str, storage: str | None = None) -> Any:
    """The study `name` in the study storage (`study_storage`), created or continued; a continued study must search
    the same metric in the same direction. The sampler's seed is the config's seed plus the trials already run, so
    an invocation that continues a study does not repeat the first one's random start."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is ours to print
    direction: Literal["minimize", "maximize"] = "minimize" if config.monitor_mode() == "min" else "maximize"
    pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_EPOCHS)
    url = study_storage(store, storage)
    connect_args = {"timeout": 60} if url.startswith("sqlite") else {"connect_timeout": 10}
    with study_lock(store, url):
        try:
            rdb = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": connect_args})
        except Exception as error:  # SQLAlchemy's OperationalError and the like: an unreachable or refused server
            reason = " ".join(str(error).split())[:400]
            raise InputError(f"study storage {hide_password(url)}: {reason}") from None
        study = optuna.create_study(study_name=name, storage=rdb, direction=direction, load_if_exists=True,
                                    pruner=pruner)
    weakref.finalize(study, rdb.engine.dispose)  # closes the engine's pooled connections when the study goes
    attributes = {"metric": metric, "model": config.name}
    for key, value in attributes.items():
        known = study.user_attrs.get(key)
        if known is None:
            study.set_user_attr(key, value)
        elif known != value:
            raise InputError(f"study {name!r} searches {key} {known!r}, this config {value!r}: continue it with the "
                             "same config, or start another with --study NAME")
    if study.direction.name.lower() != direction:
        raise InputError(f"study {name!r} is set to {study.direction.name.lower()}; this config's {metric} asks to "
                         f"{direction}: start another with --study NAME")
    study.sampler = optuna.samplers.TPESampler(seed=config.trainer.seed + len(study.trials))
    return study


def trial_lines(study: Any) -> list[TrialLine]:
    """Every trial of the study as a `TrialLine`, best so far counted in trial order."""
    from optuna.trial import TrialState

    sign = 1 if study.direction.name == "MINIMIZE" else -1
    lines, best_number, best_value = [], None, None
    for trial in study.get_trials(deepcopy=False):
        state = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
                 TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}[trial.state]
        if state == "complete" and (best_value is None or sign * trial.value < sign * best_value):
            best_number, best_value = trial.number, trial.value
        seconds = trial.duration.total_seconds() if trial.duration is not None else 0.0
        lines.append(TrialLine(trial.number, state, trial.value, trial.user_attrs.get("values", trial.params),
                               trial.user_attrs.get("run_id"), seconds, best_number, best_value,
                               trial.user_attrs.get("note", ""),
                               [value for _, value in sorted(trial.intermediate_values.items())]))
    return lines


def importances(study: Any, seed: int) -> dict[str, float] | None:
    """fANOVA parameter importances over the finished trials (None with fewer than two, or when they cannot be
    told apart: every finished trial with the same value)."""
    import optuna
    from optuna.trial import TrialState

    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(finished) < 2 or len({trial.value for trial in finished}) < 2:
        return None
    try:
        found = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed))
    except (RuntimeError, ValueError):  # e.g. a parameter with one value in every finished trial
        return None
    return {str(key): float(value) for key, value in found.items()}


def searched(study: Any) -> dict[str, Any]:
    """The ranges a study searches: as its latest `luodi tune` kept them, else (a study from an older luodi) as
    Optuna's distributions of its trials describe them."""
    kept = study.user_attrs.get("search")
    if isinstance(kept, dict):
        return kept
    found: dict[str, Any] = {}
    for trial in study.get_trials(deepcopy=False):
        for key, distribution in trial.distributions.items():
            found.setdefault(key, {name: value for name, value in distribution._asdict().items()
                                   if value not in (None, False)})
    return found


def study_summary(study: Any, lines: list[TrialLine], found: dict[str, float] | None,
                  test_metrics: dict[str, Any]) -> dict[str, Any]:
    """The plain summary of a study that its page (evaluate/study.py), `luodi tune` and the web UI read: study,
    model, metric, direction, best (number, value, values, run_id, test_metrics; None until a trial finished), trial
    counts by state, importances, search (the ranges) and every trial (`TrialLine` as a dict)."""
    counts = dict.fromkeys(("complete", "pruned", "failed"), 0)  # these three always, in this order
    for line in lines:  # then running or waiting trials of a study still going, in the order they first appear
        counts[line.state] = counts.get(line.state, 0) + 1
    try:
        top = study.best_trial
    except ValueError:  # no finished trial yet
        top = None
    best = None if top is None else {
        "number": top.number, "value": top.value, "values": top.user_attrs.get("values", top.params),
        "run_id": top.user_attrs.get("run_id"), "test_metrics": test_metrics}
    return {"study": study.study_name, "model": study.user_attrs.get("model"),
            "metric": study.user_attrs.get("metric"), "direction": study.direction.name.lower(), "best": best,
            "counts": counts, "importances": found, "search": searched(study),
            "trials": [asdict(line) for line in lines]}


# --------------------------------------------------------------------------------------------- job
def tune(config: Any, trials: int, *, time_budget: str | float | None = None, study: str | None = None,
         overrides: list[str] | tuple[str, ...] = (), home: str | Path | None = None, progress: str = "auto",
         on_trial: Callable[[TrialLine], None] | None = None, storage: str | None = None) -> TuneResult:
    """Search the config's `search:` ranges with Optuna (TPE, median pruning), then register the best trial.

    Args:
        config: a YAML path, a dict or a `LuodiConfig` with a `search:` section (docs/tuning.md).
        trials: how many trials this call runs (a continued study adds them to the ones it has).
        time_budget: start no trial after this long ('10m', '90s', seconds; the first one always starts); a trial
            still running then is pruned at its next epoch once the study has a finished trial.
        study: the study's name (default: the config's model name); the same name continues a study, from this
            process or another one at the same time.
        overrides: `key.path=value` strings applied before validation.
        home: the store folder (default `$LUODI_HOME` or `./.luodi`).
        progress: 'auto' or 'lines' print one line per trial on stderr; 'silent' prints nothing.
        on_trial: called with each trial's `TrialLine` as it ends.
        storage: where the study lives: a `postgresql://` URL that processes on several machines share (default:
            the store's database when `LUODI_STORE` is PostgreSQL, else `LUODI_HOME/studies.db`).

    Returns the registered best trial: its model reference, test metrics, and the study's summary and page.
    """
    from optuna.trial import TrialState

    from luodi.evaluate.study import render_study
    from luodi.io import atomic_write_text
    from luodi.jobs.train import PACKAGE, register_kept, train
    from luodi.train.loop import Callback, StopTraining

    if trials < 1:
        raise InputError(f"--trials {trials}: run at least one trial")
    budget = parse_duration(time_budget)
    space = search_space(config, overrides)
    base = space.config
    name = validate_name(study or base.name, "study name")
    stopping = base.trainer.early_stopping.metric
    metric = "val_loss" if stopping == "loss" else f"val_{stopping}"
    store = Store(home)
    search = open_study(store, name, base, metric, storage)
    search.set_user_attr("search", {key: value.model_dump(exclude_defaults=True)
                                    for key, value in space.ranges.items()})
    search.set_user_attr("seed", base.trainer.seed)  # the web UI's importances use the same seed as the study page
    sign = 1 if search.direction.name == "MINIMIZE" else -1
    started = time.monotonic()
    deadline = started + budget if budget is not None else None
    finished = any(trial.state == TrialState.COMPLETE for trial in search.get_trials(deepcopy=False))
    lines: list[TrialLine] = []

    for _ in range(trials):
        if deadline is not None and lines and time.monotonic() >= deadline:  # a call runs at least one trial
            break
        trial = search.ask()
        values = suggest(trial, space.ranges)
        trial.set_user_attr("values", values)
        curve: list[float] = []

        def report(epoch: int, metrics: dict[str, float], trial: Any = trial, curve: list[float] = curve,
                   finished: bool = finished) -> None:
            value = metrics[metric]
            if not math.isfinite(value):
                raise StopTraining("pruned", f"{metric} is {value} at epoch {epoch + 1}")
            curve.append(value)
            trial.report(value, epoch)
            if trial.should_prune():
                raise StopTraining("pruned", f"{metric} {value:.4g} at epoch {epoch + 1} is worse than the median "
                                             "of earlier trials")
            if deadline is not None and finished and time.monotonic() >= deadline:
                raise StopTraining("pruned", "the time budget ran out")

        begun = time.monotonic()
        state, value, note, run_id = TrialState.COMPLETE, None, "", None
        try:
            result = train(space.trial_config(values), home=store.home, progress="silent",
                           callbacks=[Callback(on_epoch_end=report)], trial={"study": name, "number": trial.number})
            run_id = result.run_id
            value = (min if sign > 0 else max)(curve)
        except StopTraining as stop:
            state, note, run_id = TrialState.PRUNED, str(stop), stop.run_id
        except (InputError, KeyboardInterrupt):
            search.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as error:  # one trial's failure (a diverging run, a size that does not fit) ends it only
            state, note = TrialState.FAIL, f"{type(error).__name__}: {error}"
        trial.set_user_attr("run_id", run_id)
        trial.set_user_attr("note", note)
        if state == TrialState.COMPLETE:
            search.tell(trial, value)
            finished = True
        else:
            search.tell(trial, state=state)
        line = next(line for line in trial_lines(search) if line.number == trial.number)
        line.seconds = time.monotonic() - begun
        lines.append(line)
        if on_trial is not None:
            on_trial(line)
        if progress != "silent":
            print(line.text(metric), file=sys.stderr, flush=True)

    everything = trial_lines(search)
    try:
        best = search.best_trial
    except ValueError:
        raise InputError(f"study {name!r} has no finished trial yet ({len(everything)} pruned or failed): run more "
                         "trials, or give a longer --time-budget") from None
    found = importances(search, base.trainer.seed)
    try:
        run = store.get_run(best.user_attrs["run_id"])
    except InputError:
        raise InputError(f"study {name!r}: its best trial {best.number} ran in another store (run "
                         f"{best.user_attrs['run_id']}); processes sharing a study register its best from one store: "
                         "give them the same LUODI_STORE and LUODI_HOME (docs/scale.md)") from None
    notes = [f"trial {best.number} is still the best: registered before as {run.model_name}/{run.model_version}"
             ] if run.model_version is not None else []
    summary = study_summary(search, everything, found, run.metrics)
    counts = summary["counts"]
    page = render_study(summary)
    page_path = store.home / "studies" / f"{name}.html"
    page_path.parent.mkdir(exist_ok=True)
    atomic_write_text(page_path, page)
    version = register_kept(store, run.id, {STUDY_PAGE: page})
    for line in everything:  # a finished trial worse than the best never will be: its package goes
        if line.state == "complete" and line.run_id is not None and line.run_id != run.id:
            shutil.rmtree(store.run_dir(line.run_id) / PACKAGE, ignore_errors=True)
    return TuneResult(
        study=name, metric=metric, direction=summary["direction"], model={"name": version.name,
                                                                           "version": version.version},
        package=str(version.path), run_id=run.id, metrics=version.metrics,
        best={"number": best.number, "value": best.value, "params": best.user_attrs.get("values", {})},
        trials=[asdict(line) for line in lines], counts=counts, page=str(page_path),
        seconds=time.monotonic() - started, importances=found, notes=notes)
