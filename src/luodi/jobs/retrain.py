"""`luodi retrain`: the closed loop. A challenger trained with the champion's config on its training data plus
labelled production rows, both scored on the same fresh holdout (the newest labelled rows, never trained on), and
the champion's alias moved only when the challenger wins by `margin` and passes the gates. Every decision, with
both models' metrics, is a `retrain` event in the store's event log (`luodi models history`); a server that serves
`NAME@alias` picks up a promoted challenger by hot reload.

One retrain per model at a time: a second process finds the lock taken and skips (exit 0). Running it again with
nothing new (the same champion, no label since the last decision) skips too, so a cron job can call
`luodi monitor --retrain-if-drift` as often as it likes.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from luodi.config import RetrainConfig, validate_config
from luodi.errors import InputError
from luodi.store import ModelVersion, Store, parse_reference, path_inside
from luodi.tasks import direction


@dataclass
class RetrainResult:
    """What `retrain` decided: `promoted`, or `skipped` with the reason; both models' holdout metrics."""

    model: str
    alias: str
    champion: dict[str, Any]  # {"version", "metrics"}
    challenger: dict[str, Any] | None = None
    promoted: bool = False
    skipped: str | None = None
    reason: str = ""
    metric: str = ""
    margin: float = 0.0
    labelled_rows: int = 0
    holdout_rows: int = 0
    production_rows: int = 0  # rows of production added to the challenger's training data (after the mix)
    gates: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def retrain_lock(home: Path, name: str) -> Iterator[bool]:
    """An exclusive, non-blocking file lock per model (released when the process dies); yields whether it is ours."""
    folder = path_inside(home, "locks")
    folder.mkdir(exist_ok=True)
    with open(path_inside(folder, f"retrain-{name}.lock"), "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def champion_of(store: Store, model: str, alias: str) -> tuple[ModelVersion, str]:
    """The version `model` names (`name@alias`, `name/N`), or for a bare name the one its retrain alias points at
    (the latest when the alias is not set yet); and the alias a winner takes."""
    reference = parse_reference(model)
    if reference.alias is not None:
        return store.resolve(reference), reference.alias
    if reference.version is not None:
        return store.resolve(reference), alias
    try:
        return store.resolve(f"{reference.name}@{alias}"), alias
    except InputError:
        return store.resolve(reference.name), alias


def labelled_rows(store: Store, champion: ModelVersion, window: str) -> pa.Table:
    """The champion's logged predictions within the window that have a label, oldest first."""
    from luodi.monitor.feedback import join_labels, read_feedback
    from luodi.monitor.log import parse_time, read_window

    log = read_window(store.home, champion.name, champion.version, parse_time(window, "retrain.window"), None)
    joined = join_labels(log.table, read_feedback(store.home, champion.name))
    return joined.take(pc.sort_indices(joined, [("timestamp", "ascending")]))


def as_training_rows(joined: pa.Table, schema: pa.Schema, target: str) -> pa.Table:
    """Labelled log rows in the training table's columns and types (the log keeps inputs as numbers or text)."""
    inputs = joined.column("inputs")
    logged = {item.name for item in inputs.type}
    columns = []
    for column in schema:
        if column.name == target:
            values = joined.column("target")
        elif column.name in logged:
            values = pc.struct_field(inputs, column.name)
        else:
            values = pa.nulls(joined.num_rows, column.type)
        try:
            columns.append(pc.cast(values, column.type, safe=False))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise InputError(f"labelled production column {column.name!r} does not convert to the training data's "
                             f"{column.type}: {error}") from None
    return pa.table(columns, schema=schema)


def mixed(train: pa.Table, production: pa.Table, mix: float, seed: int) -> pa.Table:
    """The training rows plus production rows making up `mix` of the result (drawn with replacement when fewer)."""
    if mix <= 0 or not production.num_rows:
        return train
    wanted = int(round(mix / (1 - mix) * train.num_rows))
    rng = np.random.default_rng(seed)
    if wanted <= production.num_rows:
        picked = rng.choice(production.num_rows, wanted, replace=False)
    else:
        picked = np.concatenate([np.arange(production.num_rows),
                                 rng.choice(production.num_rows, wanted - production.num_rows, replace=True)])
    return pa.concat_tables([train, production.take(pa.array(np.sort(picked)))])


def last_decision(store: Store, name: str) -> dict[str, Any] | None:
    events = [event for event in store.model_events(name, limit=200) if event["kind"] == "retrain"]
    return events[0]["detail"] if events else None


def judge(champion: dict[str, float], challenger: dict[str, float], metric: str, settings: RetrainConfig
          ) -> tuple[bool, str, list[dict[str, Any]]]:
    """Whether the challenger wins on `metric` by more than the margin and passes the gates (no gate metric worse
    by more than max_drop), and why."""
    if metric not in champion or metric not in challenger:
        raise InputError(f"retrain.metric {metric!r} is not a holdout metric of this task (metrics: "
                         f"{', '.join(sorted(champion))})")
    sign = 1.0 if direction(metric) == "max" else -1.0
    gain = sign * (challenger[metric] - champion[metric])
    gates = []
    for name in settings.gates:
        if name == metric:
            continue
        if name not in champion or name not in challenger:
            raise InputError(f"retrain.gates: {name!r} is not a holdout metric of this task (metrics: "
                             f"{', '.join(sorted(champion))})")
        drop = (1.0 if direction(name) == "max" else -1.0) * (champion[name] - challenger[name])
        gates.append({"metric": name, "champion": champion[name], "challenger": challenger[name],
                      "worse_by": drop, "passed": bool(drop <= settings.max_drop)})
    failed = [str(gate["metric"]) for gate in gates if not gate["passed"]]
    if gain <= settings.margin:
        return False, (f"the challenger's {metric} {challenger[metric]:.4f} does not beat the champion's "
                       f"{champion[metric]:.4f} by more than {settings.margin:g}"), gates
    if failed:
        return False, f"the challenger is worse by more than {settings.max_drop:g} on {', '.join(failed)}", gates
    return True, (f"the challenger's {metric} {challenger[metric]:.4f} beats the champion's "
                  f"{champion[metric]:.4f} by {gain:.4f} (> {settings.margin:g}) and passes the gates"), gates


def holdout_metrics(package_path: Path, table: pa.Table) -> dict[str, float]:
    """The task's metrics of a package on labelled rows, through the one inference path (as `luodi evaluate`)."""
    from luodi.evaluate.scoring import split_metrics
    from luodi.package import load_package

    package = load_package(package_path)
    _, encoded = package.encode(table, "the fresh holdout", with_target=True)
    outputs = package.outputs(encoded, batch_size=package.config.trainer.eval_batch_size)
    assert encoded.target is not None
    return split_metrics(package.task, package.pipeline.target, outputs, encoded.target)


def retrain(model: str, *, home: str | Path | None = None, settings: RetrainConfig | None = None,
            overrides: dict[str, Any] | None = None, progress: str = "silent", reason: str = "") -> RetrainResult:
    """Train a challenger for `model` and promote it only if it beats the champion (see the module docstring).

    Args:
        model: `name` (the champion is `name@<retrain.alias>`, or the latest version), `name@alias` or `name/N`.
        settings: replaces the champion config's `monitor.retrain` section.
        overrides: keys of that section to change (`{"margin": 0.05, "window": "7d"}`), checked like the config.
        reason: why the retrain ran (kept in the event, e.g. the drifted features).
    """
    from luodi.data.sources import read_table
    from luodi.jobs.train import train
    from luodi.package import verify_package

    store = Store(home)
    manifest_of = verify_package(store.resolve(model).path)
    config = validate_config(manifest_of["config"], f"{model} config")
    settings = settings or config.monitor.retrain
    if overrides:
        from pydantic import ValidationError

        try:
            settings = RetrainConfig.model_validate({**settings.model_dump(), **overrides})
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, item['loc']))}: {item['msg']}" for item in error.errors())
            raise InputError(f"retrain settings: {problems}") from None
    champion, alias = champion_of(store, model, settings.alias)
    manifest = verify_package(champion.path)
    config = validate_config(manifest["config"], f"{champion.ref} config")
    metric = settings.metric or config.trainer.early_stopping.metric
    result = RetrainResult(champion.name, alias, {"version": champion.version, "metrics": {}}, metric=metric,
                           margin=settings.margin)
    with retrain_lock(store.home, champion.name) as mine:
        if not mine:
            result.skipped = f"another retrain of {champion.name} is running"
            return result
        try:
            rows = labelled_rows(store, champion, settings.window)
        except InputError as error:  # no log yet (a champion just promoted has answered nothing): nothing to do
            result.skipped = str(error)
            return result
        result.labelled_rows = rows.num_rows
        if rows.num_rows < settings.min_labelled_rows:
            result.skipped = (f"{rows.num_rows} labelled production rows of {champion.ref} in the last "
                              f"{settings.window}; retrain.min_labelled_rows is {settings.min_labelled_rows}")
            return result
        newest = pc.max(rows.column("labelled_at")).as_py().isoformat()
        previous = last_decision(store, champion.name)
        if previous and previous.get("champion", {}).get("version") == champion.version and \
                previous.get("labelled_rows") == rows.num_rows and previous.get("newest_label") == newest and \
                previous.get("settings") == settings.model_dump():
            result.skipped = f"nothing new since the last retrain of {champion.ref} (no new label, same settings)"
            return result

        training = read_table(config.data.train)
        target = config.target.name
        production = as_training_rows(rows, training.schema, target)
        cut = rows.num_rows - max(1, int(round(rows.num_rows * settings.holdout)))
        holdout, learn = production.slice(cut), production.slice(0, cut)
        combined = mixed(training, learn, settings.mix, config.trainer.seed)
        result.holdout_rows, result.production_rows = holdout.num_rows, combined.num_rows - training.num_rows

        import pyarrow.parquet as pq

        folder = path_inside(store.home, "retrain", champion.name, time.strftime("%Y%m%dT%H%M%S") +
                             f"-{time.time_ns() % 1_000_000:06d}")
        folder.mkdir(parents=True)
        pq.write_table(combined, folder / "train.parquet")
        pq.write_table(holdout, folder / "holdout.parquet")
        raw = config.model_dump(mode="json")
        raw["data"]["train"] = str(folder / "train.parquet")
        raw["description"] = (f"challenger of {champion.ref}: training data + {result.production_rows} labelled "
                              "production rows")
        trained = train(raw, home=store.home, progress=progress)
        assert trained.model is not None
        challenger = store.get_version(trained.model["name"], trained.model["version"])
        scored = {version.version: holdout_metrics(version.path, holdout) for version in (champion, challenger)}
        result.champion["metrics"] = scored[champion.version]
        result.challenger = {"version": challenger.version, "metrics": scored[challenger.version],
                             "run_id": trained.run_id}
        result.promoted, result.reason, result.gates = judge(scored[champion.version], scored[challenger.version],
                                                             metric, settings)
        if result.promoted:
            store.set_alias(champion.name, alias, challenger.version,
                            f"retrain: {result.reason}" + (f" ({reason})" if reason else ""))
        detail = {**{key: value for key, value in result.to_dict().items() if key != "skipped"},
                  "newest_label": newest, "settings": settings.model_dump(), "trigger": reason,
                  "data": str(folder)}
        store.record_event("retrain", f"{champion.name}@{alias}", detail)
    return result
