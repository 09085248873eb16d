"""The studies pages of the web UI: /studies (every study of `luodi tune`) and /studies/{name} (its trials, the
optimization history, each trial's validation curve and the parameter importances, drawn by the study page's own
figures in evaluate/study.py), read from Optuna's storage (jobs/tune.py: `LUODI_HOME/studies.db`, or the PostgreSQL
store's database) without writing to it.

    list_studies(store)              # [{"study", "model", "metric", "trials", "counts", "best_value", ...}]
    study_page_data(store, "tiny")   # the summary `luodi tune` writes its study page from, plus the best run's model

The pages keep an `ImportanceCache`: a repeat view of a study whose trials have not changed reuses its importances.

A GET never changes anything: the storage is opened without creating Optuna's tables, and a store with no studies
yet has none to list (no `studies.db` is created for it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from luodi.errors import InputError
from luodi.jobs.tune import importances, study_storage, study_summary, trial_lines
from luodi.store import Store, validate_name
from luodi.ui.state import UI, NotFound

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute


@contextmanager
def study_storage_of(store: Store) -> Iterator[Any | None]:
    """Optuna's storage of the store's studies, opened read-only in effect (no table is created); None when the
    store has none yet (no `studies.db`, or no Optuna tables in its PostgreSQL database)."""
    import sqlalchemy
    from optuna.storages import RDBStorage

    url = study_storage(store, None)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        yield None
        return
    connect_args = {"timeout": 60} if url.startswith("sqlite") else {"connect_timeout": 10}
    probe = sqlalchemy.create_engine(url, connect_args=connect_args)
    try:  # Optuna's storage would create its tables (or fail on a database without them): look first
        tables = sqlalchemy.inspect(probe)
        ready = tables.has_table("studies") and tables.has_table("version_info")
    finally:
        probe.dispose()
    if not ready:  # a PostgreSQL store where `luodi tune` never ran
        yield None
        return
    storage = RDBStorage(url, engine_kwargs={"connect_args": connect_args}, skip_table_creation=True)
    try:
        yield storage
    finally:
        storage.engine.dispose()


class ImportanceCache:
    """Each study's fANOVA parameter importances, computed again only when its trials changed: a repeat view of a
    study page reads the trials, not a fit of a forest. The key is the seed, the number of trials and of finished
    ones, and the latest time a trial started or ended (a trial that finishes changes the last two, not the first)."""

    def __init__(self, most: int = 64):
        self.most = most  # studies kept; the one viewed least recently goes first
        self.lock = threading.Lock()
        self.entries: dict[str, tuple[tuple[Any, ...], dict[str, float] | None]] = {}
        self.computed = 0  # how many times importances were computed, not read back

    def importances(self, study: Any, seed: int) -> dict[str, float] | None:
        """`jobs.tune.importances(study, seed)`, from the cache while the study's trials are as they were."""
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        moments = [moment for trial in trials for moment in (trial.datetime_start, trial.datetime_complete)
                   if moment is not None]
        key = (seed, len(trials), sum(trial.state == TrialState.COMPLETE for trial in trials),
               max(moments, default=None))
        with self.lock:
            found = self.entries.pop(study.study_name, None)
            if found is not None and found[0] == key:
                self.entries[study.study_name] = found
                return found[1]
        value = importances(study, seed)
        with self.lock:
            self.computed += 1
            self.entries.pop(study.study_name, None)
            self.entries[study.study_name] = (key, value)
            while len(self.entries) > self.most:
                del self.entries[next(iter(self.entries))]
        return value


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def list_studies(store: Store) -> list[dict[str, Any]]:
    """Every study of the store, the most recently active first: its name, model, metric, direction, number of
    trials, counts by state, best value and trial, and when it started and last changed (ISO times, UTC)."""
    from optuna.trial import TrialState

    rows = []
    with study_storage_of(store) as storage:
        if storage is None:
            return []
        for frozen in storage.get_all_studies():
            trials = storage.get_all_trials(frozen._study_id, deepcopy=False)
            counts: dict[str, int] = {}
            for trial in trials:
                counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
            finished = [trial for trial in trials if trial.state == TrialState.COMPLETE and trial.value is not None]
            sign = 1 if frozen.direction.name == "MINIMIZE" else -1
            best = min(finished, key=lambda trial: (sign * trial.value, trial.number), default=None)
            starts = [trial.datetime_start for trial in trials if trial.datetime_start is not None]
            ends = [moment for trial in trials for moment in (trial.datetime_start, trial.datetime_complete)
                    if moment is not None]
            rows.append({"study": frozen.study_name, "model": frozen.user_attrs.get("model"),
                         "metric": frozen.user_attrs.get("metric"), "direction": frozen.direction.name.lower(),
                         "trials": len(trials), "counts": counts,
                         "best_value": None if best is None else best.value,
                         "best_trial": None if best is None else best.number,
                         "started": _when(min(starts, default=None)), "updated": _when(max(ends, default=None))})
    rows.sort(key=lambda row: (row["updated"] or "", row["study"]), reverse=True)
    return rows


def study_page_data(store: Store, name: str, cache: ImportanceCache | None = None) -> dict[str, Any]:
    """One study's summary (jobs/tune.study_summary: trials, best, counts, importances, search), with the best
    trial's run and the model version it was registered as (`best["model"]`, None until `luodi tune` registered
    it). An unknown study is an InputError that lists the known ones. With a `cache`, the importances are computed
    only when the study's trials changed since it last computed them."""
    import optuna

    validate_name(name, "study name")
    with study_storage_of(store) as storage:
        known = [] if storage is None else sorted(study.study_name for study in storage.get_all_studies())
        if storage is None or name not in known:
            listed = ", ".join(known) if known else "none yet: run `luodi tune CONFIG`"
            raise InputError(f"study {name!r} not found; studies: {listed}")
        study = optuna.load_study(study_name=name, storage=storage)
        lines = trial_lines(study)
        seed = int(study.user_attrs.get("seed", 0))  # the seed `luodi tune` used
        found = importances(study, seed) if cache is None else cache.importances(study, seed)
        summary = study_summary(study, lines, found, {})
    best = summary["best"]
    if best is not None and best["run_id"]:
        try:
            run = store.get_run(best["run_id"])
        except InputError:  # the trial ran in another store sharing the study (docs/scale.md)
            run = None
        if run is not None:
            best["test_metrics"] = run.metrics or {}
            best["model"] = (None if run.model_version is None else
                             {"name": run.model_name, "version": run.model_version})
    return summary


def study_names(store: Store) -> list[str]:
    """The names of the store's studies, sorted."""
    with study_storage_of(store) as storage:
        return [] if storage is None else sorted(study.study_name for study in storage.get_all_studies())


def study_figures(summary: dict[str, Any]) -> dict[str, str]:
    """The study page's figures as data URIs: history, curves (when a trial reported one) and importances (when
    there are any)."""
    from luodi.evaluate.study import curves_plot, history_plot, importance_plot

    trials, metric = summary["trials"], summary["metric"] or "value"
    figures = {"history": history_plot(trials, metric, summary["direction"])}
    if any(trial["curve"] for trial in trials):
        figures["curves"] = curves_plot(trials, metric)
    if summary["importances"]:
        figures["importances"] = importance_plot(summary["importances"])
    return figures


def routes(ui: UI) -> list[BaseRoute]:
    from starlette.concurrency import run_in_threadpool
    from starlette.routing import Route

    from luodi.evaluate.study import shown

    drawing = threading.Lock()  # matplotlib's style context sets process-wide rcParams: one figure set at a time
    cache = ImportanceCache()  # else fANOVA fits a forest per view: 0.42 s of CPU for 100 trials (performance.md)

    def study_view(name: str) -> dict[str, Any]:
        known = study_names(ui.store)
        if name not in known:
            raise NotFound(f"no study {name!r} in this store" + (f" (studies: {', '.join(known)})" if known else
                                                                 ": run `luodi tune CONFIG` to make one"))
        summary = study_page_data(ui.store, name, cache)
        with drawing:
            figures = study_figures(summary)
        return {"summary": summary, "figures": figures, "keys": list(summary["search"]), "shown": shown}

    async def studies(request: Request) -> Response:
        rows = await run_in_threadpool(list_studies, ui.store)
        return ui.page(request, "studies.html", studies=rows, title="Studies")

    async def study(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            validate_name(name, "study name")
        except InputError:
            raise NotFound(f"no study {name[:130]!r} in this store") from None
        context = await run_in_threadpool(study_view, name)
        return ui.page(request, "study.html", title=f"Study {name}", **context)

    return [Route("/studies", studies), Route("/studies/{name}", study)]
