"""The study page of `luodi tune`: its trials, the optimization history, each trial's validation curve and the
parameter importances, as one self-contained HTML file built from render.py's blocks and plots.py's figures.

It reads the plain summary the search job makes (jobs/tune.py), not Optuna objects, so the page is a pure
function of numbers a test can compare with `luodi tune --json`.
"""

from __future__ import annotations

import json
from typing import Any

from luodi.evaluate.plots import CHAR_INCHES, _figure, _style, short, to_data_uri
from luodi.evaluate.render import card, cell, escape, image, number, page, table

STATE_MARKS = {"complete": ("o", "#4c72b0"), "pruned": ("x", "#c44e52"), "failed": ("s", "0.6")}


def shown(value: Any) -> str:
    """A trial's value of a search key as text: floats to 4 significant digits, lists and words as JSON."""
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value)


def history_plot(trials: list[dict[str, Any]], metric: str, direction: str) -> str:
    """Each trial's value by trial number (pruned ones at their last reported value) and the best so far."""
    with _style():
        figure, (axes,) = _figure(7.0, 3.2)
        for state, (marker, color) in STATE_MARKS.items():
            shown = [trial for trial in trials if trial["state"] == state and trial["value"] is not None]
            if shown:
                axes.scatter([trial["number"] for trial in shown], [trial["value"] for trial in shown], s=18,
                             marker=marker, color=color, label=state, linewidths=1 if marker == "x" else 0)
        best = [(trial["number"], trial["best_value"]) for trial in trials if trial["best_value"] is not None]
        if best:
            axes.step([number for number, _ in best], [value for _, value in best], where="post", color="#1e7b34",
                      label="best so far")
        axes.set(title=f"Optimization history ({direction})", xlabel="trial", ylabel=metric)
        axes.legend()
        return to_data_uri(figure)


def curves_plot(trials: list[dict[str, Any]], metric: str) -> str:
    """The metric per epoch of every trial; pruned trials dashed, where they stopped."""
    with _style():
        figure, (axes,) = _figure(7.0, 3.2)
        for trial in trials:
            values = trial["curve"]
            axes.plot(range(1, len(values) + 1), values, linewidth=1, alpha=0.8,
                      linestyle="--" if trial["state"] == "pruned" else "-",
                      color=STATE_MARKS.get(trial["state"], STATE_MARKS["failed"])[1])
        axes.set(title="Validation curve of each trial (pruned: dashed)", xlabel="epoch", ylabel=metric)
        return to_data_uri(figure)


def importance_plot(found: dict[str, float]) -> str:
    names = [short(name) for name in found][::-1]
    with _style():
        figure, (axes,) = _figure(7.0, 1.0 + 0.25 * len(names), left=0.25 + CHAR_INCHES * max(map(len, names)))
        axes.barh(names, list(found.values())[::-1], color="#4c72b0")
        axes.set(title="Parameter importance (fANOVA)", xlabel="share of the variance of the metric")
        axes.grid(axis="y", visible=False)
        return to_data_uri(figure)


def render_study(summary: dict[str, Any]) -> str:
    """The study page from the search job's summary: study, model, metric, direction, best, counts, importances,
    search and trials (number, state, value, params, run_id, seconds, best so far, note, curve)."""
    trials, metric, best = summary["trials"], summary["metric"], summary["best"]
    keys = list(summary["search"])
    counts = summary["counts"]
    cards = "".join([
        card("study", escape(summary["study"])),
        card(f"best {metric}", f"{number(best['value'])} <span>(trial {best['number']})</span>"),
        card("trials", escape(", ".join(f"{count} {state}" for state, count in counts.items()))),
        card("best trial's run", escape(best["run_id"])),
    ])
    test = table(["test metric", "value"], [[cell(name), cell(value, name=name)]
                                            for name, value in best["test_metrics"].items()],
                 numeric=(1,), table_id="test-metrics")
    chosen = table(["key", "value"], [[cell(key), cell(shown(best["values"].get(key)))] for key in keys],
                   table_id="best-values")
    overview = (f'<div class="cards">{cards}</div><p class="note">Each trial trains the config with the values '
                f"below; its value is its best {escape(metric)} ({escape(summary['direction'])}). The best trial's "
                "own package is the registered version.</p>" + chosen + test)
    rows = [[cell(trial["number"], name="number"), cell(trial["state"]), cell(trial["value"], name="value"),
             *[cell(shown(trial["params"].get(key))) for key in keys], cell(trial["run_id"] or "—"),
             cell(round(trial["seconds"], 1), digits=1), cell(trial["note"])] for trial in trials]
    marks = ["worst" if trial["state"] == "failed" else "" for trial in trials]
    trial_table = table(["trial", "state", metric, *keys, "run", "seconds", "note"], rows, numeric=(0, 2),
                        table_id="trials", row_classes=marks)
    history = image(history_plot(trials, metric, summary["direction"]), "optimization history")
    if any(trial["curve"] for trial in trials):
        history += image(curves_plot(trials, metric), "validation curves")
    found = summary.get("importances")
    if found:
        importance = image(importance_plot(found), "parameter importances") + table(
            ["key", "importance"], [[cell(key), cell(value, name=key)] for key, value in found.items()],
            numeric=(1,), table_id="importances")
    else:
        importance = '<p class="note">Importances need at least two finished trials with different values.</p>'
    search = f"<pre>{escape(json.dumps(summary['search'], indent=2))}</pre>"
    sections = [("overview", "Best trial", overview), ("trials", "Trials", trial_table),
                ("history", "Optimization history", history), ("importance", "Parameter importances", importance),
                ("search", "Search space", search)]
    subtitle = f"luodi tune: model {summary['model']}, {metric} ({summary['direction']}), {len(trials)} trials"
    return page(f"Study {summary['study']}", subtitle, sections, summary,
                "Written by luodi tune; trials are runs in the store (`luodi runs show RUN`).")
