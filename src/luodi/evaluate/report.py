"""The evaluation report: one self-contained HTML file from a training run or a `luodi evaluate`.

`build_report` computes everything from the scored rows (metrics as given by the caller, which are the very
numbers `luodi train` / `luodi evaluate --json` print), then renders a page with a summary, training curves,
performance plots and tables, slices, permutation importance and the config. `report_data` is the machine-readable
half: it goes into the page's JSON block and into `luodi evaluate --json`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml
from pydantic import BaseModel

from luodi.config import LuodiConfig, ReportConfig
from luodi.evaluate import plots, render
from luodi.evaluate.families import FAMILIES, family_of, positive_class_note
from luodi.evaluate.importance import permutation_importance
from luodi.evaluate.slices import slice_metrics, sliceable
from luodi.features.pipeline import Encoded, FeaturePipeline

REPORT = "report.html"
# What `luodi evaluate --json` adds: the data summary, each family's details, slices and importance, and why a
# section was left out.
DETAILS = ("data", *(family.key for family in FAMILIES.values()), "slices", "importance", "left_out")
TITLES = {"slices": "Slices: where the model fails", "importance": "Feature importance"}
NAMES = {"slices": "slices", "importance": "feature importance"}  # in "No ... section: <why>"


@dataclass
class Scored:
    """The rows a report is about, and what the model made of them."""

    table: pa.Table  # coerced raw rows, target included
    encoded: Encoded  # `table` through the pipeline, with targets
    outputs: np.ndarray  # activated model outputs for `encoded`
    metrics: dict[str, float]  # exactly the metrics the caller reports
    source: str  # where the rows come from, for people: "test split of train.csv", "holdout.csv"


@dataclass
class ReportInput:
    """Everything a report is made from."""

    kind: str  # "training run" or "evaluation"
    config: LuodiConfig
    pipeline: FeaturePipeline
    scored: Scored
    outputs_of: Callable[[Encoded], np.ndarray]  # encoded rows -> activated outputs (permutation importance)
    network: Any  # the model itself (nn.Module): a family may show what it makes (sample generations)
    model: dict[str, Any]  # name, version (when known), run_id, parameters
    training: dict[str, Any]  # history, best_epoch, epochs_run, stopped_early, seconds (empty when unknown)
    splits: list[dict[str, Any]]  # `describe_split` of each data split shown in the summary
    created_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S %z"))


def describe_split(name: str, table: pa.Table | None, config: LuodiConfig, pipeline: FeaturePipeline,
                   rows: int | None = None) -> dict[str, Any]:
    """Rows, missing cells per feature and the class balance (or target summary) of one split.

    Without a table (the training split, seen from a package) only the rows and the class counts the target
    encoder kept are known.
    """
    family = family_of(config.task())
    if table is None:
        return {"name": name, "rows": rows, "missing": None, **family.describe(pipeline.target, None)}
    missing = {}
    for feature in config.input_features:
        column = table.column(feature.name)
        count = column.null_count
        if pa.types.is_floating(column.type):
            count += int(pc.sum(pc.is_nan(pc.fill_null(column, 0.0))).as_py() or 0)
        missing[feature.name] = count
    return {"name": name, "rows": table.num_rows, "missing": missing,
            **family.describe(pipeline.target, table.column(config.target.name))}


def report_data(source: ReportInput, settings: ReportConfig) -> dict[str, Any]:
    """The report's numbers: summary, metrics, per-class or residual details, slices, importance, config."""
    config, pipeline, scored = source.config, source.pipeline, source.scored
    task = config.task()
    family = family_of(task)
    assert scored.encoded.target is not None
    y_true, outputs = family.natural(task, pipeline.target, scored.encoded.target, scored.outputs)
    data: dict[str, Any] = {
        "format": 1, "kind": source.kind, "created_at": source.created_at, "task": task.name,
        "target": config.target.name, "model": source.model, "metrics": scored.metrics,
        "metrics_source": scored.source, "rows": len(scored.encoded),
        "training": {k: v for k, v in source.training.items() if k != "history"},
        "data": {"splits": source.splits,
                 "features": [{"name": f.name, "type": f.type} for f in config.input_features]},
    }
    data[family.key] = family.details(task, pipeline.target, y_true, outputs)
    data[family.key].update(family.samples(source.network, pipeline.target, scored.table))
    features = list(config.input_features)
    left_out = {}
    if settings.slices and features:  # a language model has no input column
        if any(sliceable(feature) for feature in features):
            data["slices"] = slice_metrics(scored.table, features, task, y_true, outputs,
                                           bins=settings.slice_bins, min_rows=settings.min_slice_rows)
        else:
            kinds = " and ".join(sorted({feature.type for feature in features}))
            left_out["slices"] = (f"slices group rows by the values of numeric, category and binary columns; "
                                  f"this model reads only {kinds} columns")
    if settings.importance_repeats and features:
        if len(features) > 1:
            data["importance"] = permutation_importance(
                scored.table, pipeline, source.outputs_of, repeats=settings.importance_repeats,
                rows=settings.importance_rows, seed=config.trainer.seed, source=scored.source)
        else:
            left_out["importance"] = (f"the model reads one column ({features[0].name}), so every output depends "
                                      "on it and there is nothing to rank; per-row explanations: luodi explain")
    if left_out:
        data["left_out"] = left_out
    data["config"] = used_config(config)
    return data


def used_config(config: LuodiConfig) -> dict[str, Any]:
    """The validated config as the run read it: the section of the chosen `model.type` only (not every
    architecture's defaults), the MLP's keys only for a model shape that has the MLP, and only the `target` keys its
    task reads. The whole config is in the package's package.json and the run's config.yaml."""
    from luodi.models import MLP_SETTINGS, SHAPE_SETTINGS

    dumped = config.model_dump(mode="json")
    model, task = dumped["model"], config.task()
    for name, info in type(config.model).model_fields.items():  # the sections: cnn, resnet, rnn, ...
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel) and name != model["type"] \
                and name not in MLP_SETTINGS:
            del model[name]
    if model.get("path") is None:
        del model["path"]
    mlp = model.get("mlp", {})
    if mlp.get("numeric_embedding") == "none":  # the periodic embedding's settings, only where it is used
        for name in [name for name in mlp if name.startswith("periodic_")]:
            del mlp[name]
    read = SHAPE_SETTINGS.get(task.model, MLP_SETTINGS)  # a shape registered by user code: shown as it is
    for name in MLP_SETTINGS:
        if name not in read:
            del model[name]
    target = dumped["target"]
    for name in [name for name in target if name not in ("name", "task")]:
        if name not in family_of(task).target_settings:
            del target[name]
    return dumped


def without_plots(data: Any) -> Any:
    """The data minus the arrays that only draw plots: what the JSON block and `--json` carry."""
    if isinstance(data, dict):
        return {k: without_plots(v) for k, v in data.items() if k != "plot"}
    if isinstance(data, list):
        return [without_plots(v) for v in data]
    return data


# ------------------------------------------------------------------------------------------ rendering
def _metrics_table(metrics: dict[str, float]) -> str:
    rows = [[render.cell(name), render.cell(value, name=name)] for name, value in metrics.items()]
    return render.table(["metric", "value"], rows, numeric=[1], table_id="metrics")


def refit_sentence(refit: dict[str, Any]) -> str:
    """What a `trainer.refit` run did, in one sentence (the report's summary, `luodi train`'s output)."""
    first = refit["phase_one"]
    scores = ", ".join(f"{name} {value:.4g}" for name, value in [
        *((f"validation {key[4:]}", value) for key, value in first["validation"].items() if key != "val_loss"),
        *((f"{first['metrics_split']} {key}", value) for key, value in first["metrics"].items())][:4])
    return (f"Refit: after early stopping chose epoch {refit['epochs']}, a fresh model was trained on the "
            f"{refit['rows']:,} training + validation rows for {refit['epochs']} epochs; the metrics here are that "
            f"model's. The first model scored {scores}.")


def _summary(data: dict[str, Any]) -> str:
    model, training = data["model"], data["training"]
    version = f"/{model['version']}" if model.get("version") else ""
    cards = [
        render.card("task", render.escape(f"{data['task']} · target {data['target']}")),
        render.card("model", render.escape(f"{model['name']}{version} · {model.get('architecture', '')}")),
        render.card("scored rows", render.escape(f"{data['rows']:,} · {data['metrics_source']}")),
    ]
    if training.get("seconds") is not None:
        epochs = f"best epoch {training['best_epoch']} of {training['epochs_run']}"
        cards.append(render.card("training", render.escape(f"{training['seconds']:.1f} s · {epochs}"
                                                           + (" (early stop)" if training["stopped_early"] else ""))))
    for name in ("accuracy", "roc_auc", "roc_auc_ovr", "r2", "rmse"):
        if name in data["metrics"]:
            cards.append(render.card(name, render.number(data["metrics"][name])))
    positive = data.get("classification", {}).get("positive_class")
    if positive is not None:
        cards.append(render.card("positive class", render.escape(positive)))
    parts = [f'<div class="cards">{"".join(cards)}</div>']
    for name, reason in data.get("left_out", {}).items():
        parts.append(f'<p class="note" id="no-{render.escape(name)}">No {NAMES[name]} section: '
                     f"{render.escape(reason)}.</p>")
    if training.get("still_improving"):
        from luodi.train.loop import still_improving_message

        message = still_improving_message(training["epochs_run"])
        parts.append(f'<p class="note" id="still-improving">{render.escape(message[0].upper() + message[1:])}</p>')
    if training.get("refit"):
        parts.append(f'<p class="note" id="refit">{render.escape(refit_sentence(training["refit"]))}</p>')
    if model.get("run_id"):
        parts.append(f'<p class="note">run {render.escape(model["run_id"])} · '
                     f'{render.escape(model.get("parameters", ""))} parameters</p>')
    note = f'<p class="note">{positive_class_note(data["classification"])}</p>' if positive is not None else ""
    parts.append(f'<div class="grid"><div><h3>Metrics on {render.escape(data["metrics_source"])}</h3>'
                 f"{_metrics_table(data['metrics'])}{note}</div><div>{_data_tables(data)}</div></div>")
    return "".join(parts)


def _data_tables(data: dict[str, Any]) -> str:
    """Rows per split, the class balance (or target summary) per split, and missing cells per column."""
    family = family_of(data["task"])
    splits = data["data"]["splits"]
    extra, cells = family.split_columns(splits)
    headers = ["split", "rows", *extra]
    rows = [[render.cell(split["name"]), render.cell(split["rows"], name="rows"), *more]
            for split, more in zip(splits, cells, strict=True)]
    parts = ['<div class="grid"><div><h3>Data</h3>',
             render.table(headers, rows, numeric=list(range(1, len(headers))), table_id="splits"), "</div>",
             family.beside_splits(data), "</div>"]
    with_missing = [split for split in splits if split.get("missing") is not None]
    feature_rows = []
    for feature in data["data"]["features"]:
        row = [render.cell(feature["name"]), render.cell(feature["type"])]
        for split in with_missing:
            count = split["missing"][feature["name"]]
            share = count / split["rows"] if split["rows"] else 0.0
            row.append(f'<td class="num{" bad" if share > 0.2 else ""}" data-value="{count}">'
                       f"{count:,} ({share:.1%})</td>")
        feature_rows.append(row)
    headers = ["column", "type"] + [f"missing in {split['name']}" for split in with_missing]
    kinds: dict[str, int] = {}
    for feature in data["data"]["features"]:
        kinds[feature["type"]] = kinds.get(feature["type"], 0) + 1
    summary = ", ".join(f"{count} {kind}" for kind, count in kinds.items())
    parts.append(f"<h3>Input columns ({render.escape(summary)})</h3>")
    table_html = render.table(headers, feature_rows, numeric=list(range(2, len(headers))), table_id="features")
    parts.append(table_html if len(feature_rows) <= 25 else
                 f"<details><summary>show all {len(feature_rows)} columns</summary>{table_html}</details>")
    return "".join(parts)


def _slices(data: dict[str, Any], shown: int = 25, listed: int = 200) -> str:
    """The `shown` worst slices, then up to `listed` in a collapsed table (all of them are in the JSON block)."""
    slices = data["slices"]
    family = family_of(data["task"])
    columns = list(family.slice_columns)
    overall = slices["overall"]
    reference = ", ".join(f"{name} {render.number(overall.get(name))}" for name in columns)
    rows, classes = [], []
    for item in slices["slices"]:
        worse = family.worse(item, overall)
        rows.append([render.cell(item["feature"]), render.cell(item["slice"]), render.cell(item["rows"], name="rows"),
                     render.cell(item["share"] * 100, digits=1, name="share")]
                    + [render.cell(item[name], name=name) for name in columns])
        classes.append("worst" if worse else "")
    headers = ["column", "slice", "rows", "% of rows", *columns]
    numeric = list(range(2, len(headers)))
    note = (f'<p class="note">All rows: {render.escape(reference)}. Numbers are cut into {slices["bins"]} quantile '
            f"bins, categories by value; worst slices first, shaded where worse than all rows. "
            f"{slices['left_out']} slices with fewer than {slices['min_rows']} rows are left out.</p>")
    if not rows:
        return note + '<p class="note">No slice has enough rows.</p>'
    first = render.table(headers, rows[:shown], numeric=numeric, table_id="slices", row_classes=classes[:shown])
    rest = ""
    if len(rows) > shown:
        more = min(len(rows), listed) - shown
        rest = (f"<details><summary>{more} more slices{' of ' + str(len(rows) - shown) if len(rows) > listed else ''}"
                "</summary>" + render.table(headers, rows[shown:listed], numeric=numeric,
                                            row_classes=classes[shown:listed]) + "</details>")
    return note + first + rest


def _importance(data: dict[str, Any]) -> str:
    importance = data["importance"]
    rows = [[render.cell(item["feature"]), render.cell(item["type"]),
             render.cell(item["output_change"], name="output_change"),
             render.cell(item["output_change_std"], name="output_change_std"),
             render.cell(item["loss_increase"], name="loss_increase"),
             render.cell(item["loss_increase_std"], name="loss_increase_std")]
            for item in importance["features"]]
    return "".join([
        f'<p class="note">Each column is shuffled {importance["repeats"]} times over {importance["rows"]:,} rows. '
        f"<b>Output change</b>: the mean absolute change of the {render.escape(importance['output'])} per row: how "
        f"much the model relies on the column. <b>Loss increase</b>: how much worse the "
        f"{render.escape(importance['loss'])} gets (all rows: {render.number(importance['baseline_loss'])}): what the "
        "model needs the column for to be right on these rows. A column with a large output change and no loss "
        "increase is one the model leans on without profit here. Correlated columns share their importance. "
        "Per-row explanations: <code>luodi explain MODEL --data FILE</code>.</p>",
        render.image(plots.importance_bars(importance["features"], importance["output"]), "permutation importance"),
        render.table(["column", "type", "output change", "± std", "loss increase", "± std"], rows,
                     numeric=[2, 3, 4, 5], table_id="importance"),
    ])


def render_report(data: dict[str, Any], training: dict[str, Any]) -> str:
    """The HTML page for `report_data` (`training` supplies the per-epoch history for the curves)."""
    import luodi

    model = data["model"]
    title = f"{model['name']}{'/' + str(model['version']) if model.get('version') else ''}: {data['kind']} report"
    sections = [("summary", "Summary", _summary(data))]
    history = training.get("history") or []
    if history:
        sections.append(("training", "Training curves", render.image(
            plots.training_curves(history, training["best_epoch"], family_of(data["task"]).curve_metrics),
            "loss and metrics per epoch")))
    sections.append(("performance", "Performance", family_of(data["task"]).performance(data)))
    if "slices" in data:
        sections.append(("slices", TITLES["slices"], _slices(data)))
    if "importance" in data:
        sections.append(("importance", TITLES["importance"], _importance(data)))
    config_yaml = yaml.safe_dump(data["config"], sort_keys=False, allow_unicode=True)
    sections.append(("config", "Config", '<p class="note">The settings this run read (the section of its model.type, '
                     "the target keys of its task); the whole validated config is in the package's package.json."
                     f"</p><pre>{render.escape(config_yaml)}</pre>"))
    subtitle = f"{data['kind']} · {data['metrics_source']} · {data['created_at']}"
    return render.page(title, subtitle, sections, without_plots(data),
                       f"luodi {luodi.__version__} · self-contained: no network, no scripts")


def build_report(source: ReportInput, settings: ReportConfig) -> tuple[str, dict[str, Any]]:
    """The report page and its data (without plot arrays)."""
    data = report_data(source, settings)
    return render_report(data, source.training), without_plots(data)


def build_report_or_warn(gather: Callable[[], ReportInput], settings: ReportConfig,
                         warnings: list[str]) -> tuple[str, dict[str, Any]] | None:
    """`build_report`, or None with a warning appended: a failed plot must not throw away a trained model."""
    try:
        return build_report(gather(), settings)
    except Exception as error:  # noqa: BLE001 - the run's model and metrics stand without the report
        warnings.append(f"{REPORT} was not written: {type(error).__name__}: {error}")
        return None
