"""Comparing training runs: which config keys differ, their metrics side by side with the best marked, and their
validation curves; as data (`--json`), a terminal table (in the CLI) and one self-contained HTML page."""

from __future__ import annotations

from typing import Any

from luodi.evaluate import render
from luodi.tasks import direction

ABSENT = "(absent)"


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a config; input features are keyed by column name (`input_features.age.type`), as `--set`
    addresses them, so a feature added or removed shows as its own keys rather than shifting list positions."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
        return out
    if isinstance(value, list) and value and all(isinstance(item, dict) and "name" in item for item in value):
        out = {}
        for item in value:
            out.update(flatten({k: v for k, v in item.items() if k != "name"}, f"{prefix}{item['name']}."))
        return out
    return {prefix.rstrip("."): value}


def compare_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs (as `luodi runs show --json` gives them) to {runs, metrics, best, differences, same}.

    `metrics[name]` lists each run's value (None where a run lacks it); `best[name]` the ids of the runs with the
    best value (in the direction the task table gives: lowest for losses and errors, highest otherwise);
    `differences` the config keys whose values differ, each with one value per run.
    """
    ids = [run["id"] for run in runs]
    summaries = [{"id": run["id"], "name": run["name"], "status": run["status"], "created_at": run["created_at"],
                  "model": f"{run['model_name']}/{run['model_version']}" if run.get("model_version") else None,
                  "seconds": run["summary"].get("seconds"), "best_epoch": run["summary"].get("best_epoch"),
                  "epochs_run": run["summary"].get("epochs_run"), "report": run["summary"].get("report")}
                 for run in runs]
    names: list[str] = []
    for run in runs:
        names += [name for name in run["metrics"] if name not in names]
    metrics = {name: [run["metrics"].get(name) for run in runs] for name in names}
    best = {}
    for name, values in metrics.items():
        present = [value for value in values if isinstance(value, int | float) and value == value]
        if present:
            target = min(present) if direction(name) == "min" else max(present)
            best[name] = [ids[index] for index, value in enumerate(values) if value == target]
    configs = [flatten(run["config"]) for run in runs]
    keys: list[str] = []
    for config in configs:
        keys += [key for key in config if key not in keys]
    differences = {key: [config.get(key, ABSENT) for config in configs] for key in keys
                   if len({repr(config.get(key, ABSENT)) for config in configs}) > 1}
    return {"runs": summaries, "metrics": metrics, "best": best, "differences": differences,
            "same": len(keys) - len(differences)}


def render_comparison(comparison: dict[str, Any], histories: list[list[dict[str, float]]]) -> str:
    """The comparison as one HTML page: runs, metrics (best marked), config differences, validation loss curves."""
    import luodi
    from luodi.evaluate import plots

    runs = comparison["runs"]
    ids = [run["id"] for run in runs]
    run_rows = [[render.cell(run["id"]), render.cell(run["name"]), render.cell(run["status"]),
                 render.cell(run["created_at"]), render.cell(run["model"] or ""),
                 render.cell(run["seconds"], digits=1, name="seconds"),
                 render.cell(run["best_epoch"], name="best_epoch"), render.cell(run["epochs_run"], name="epochs_run")]
                for run in runs]
    metric_rows = []
    for name, values in comparison["metrics"].items():
        winners = comparison["best"].get(name, [])
        row = [render.cell(f"{name} ({'lower' if direction(name) == 'min' else 'higher'} is better)")]
        for run_id, value in zip(ids, values, strict=True):
            marked = run_id in winners and len(ids) > 1
            row.append(render.cell(value, name=name, classes="best" if marked else "", suffix=" ★" if marked else ""))
        metric_rows.append(row)
    difference_rows = [[render.cell(key)] + [render.cell(_text(value), classes="diff") for value in values]
                       for key, values in comparison["differences"].items()]
    sections = [
        ("runs", "Runs", render.table(["run", "name", "status", "created", "model", "seconds", "best epoch",
                                       "epochs"], run_rows, numeric=[5, 6, 7], table_id="runs")),
        ("metrics", "Test metrics", '<p class="note">★ marks the best value of each metric.</p>'
         + render.table(["metric", *ids], metric_rows, numeric=list(range(1, len(ids) + 1)), table_id="metrics")),
        ("config", "Config differences",
         f'<p class="note">{len(difference_rows)} key{" differs" if len(difference_rows) == 1 else "s differ"}; '
         f'{comparison["same"]} are the same in every run.</p>'
         + (render.table(["key", *ids], difference_rows, table_id="differences") if difference_rows else "")),
    ]
    if any(histories):
        curves = plots.run_curves(histories, ids)
        sections.append(("curves", "Validation loss per epoch", render.image(curves, "validation loss per run")))
    return render.page(f"Comparing {len(runs)} runs", ", ".join(ids), sections, comparison,
                       f"luodi {luodi.__version__} · self-contained: no network, no scripts")


def _text(value: Any) -> str:
    return "(absent)" if value == ABSENT else value if isinstance(value, str) else repr(value)
