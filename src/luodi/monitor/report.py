"""monitor.html: one self-contained page (the evaluation report's building blocks and plot style) with the drift
table, reference vs current distributions per feature and output, and latency and throughput over the window."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from luodi.config import MonitorConfig
from luodi.evaluate import render
from luodi.evaluate.plots import STYLE, short, to_data_uri
from luodi.monitor.drift import Result, shown

if TYPE_CHECKING:  # check.py renders this page: the types only, no import cycle
    from luodi.monitor.check import Checked, MonitorResult

MAX_BARS = 25


def bin_labels(result: Result) -> list[str]:
    """Names of a distribution's bins: the kept values and 'other', or number ranges between the edges."""
    bins = result.reference.get("bins") or []
    if result.reference.get("kind") == "categories":
        return [short(value, 18) for value in bins] + ["other"]
    edges = [f"{edge:.4g}" for edge in bins]
    if not edges:
        return ["all"]
    return [f"< {edges[0]}"] + [f"{low}–{high}" for low, high in zip(edges, edges[1:], strict=False)] + \
        [f"≥ {edges[-1]}"]


def shares_plot(result: Result, title: str) -> str:
    """Reference and current shares side by side per bin."""
    import matplotlib
    from matplotlib.figure import Figure

    labels = bin_labels(result)[:MAX_BARS]
    reference = np.asarray(result.reference["shares"][:MAX_BARS])
    current = np.asarray(result.current["shares"][:MAX_BARS])
    with matplotlib.rc_context(STYLE):  # type: ignore[arg-type]  # valid rcParams; the stub lists Literals
        figure = Figure(figsize=(max(3.6, 0.32 * len(labels) + 1.2), 2.6))
        axes = figure.subplots()
        figure.subplots_adjust(left=0.14, right=0.98, bottom=0.32, top=0.86)
        x = np.arange(len(labels))
        axes.bar(x - 0.2, reference, 0.4, label="reference", color="#8a94a6")
        axes.bar(x + 0.2, current, 0.4, label="current", color="#b3261e" if result.drift else "#2f5fa7")
        axes.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
        axes.set_ylabel("share of rows")
        axes.set_title(short(title, 60))
        axes.legend()
        return to_data_uri(figure)


def traffic_plot(traffic: dict[str, Any]) -> str:
    """Latency p50 / p95 and logged rows per second over the window."""
    import matplotlib
    from matplotlib.figure import Figure

    points = traffic["points"]
    minutes = [(point["start"] - points[0]["start"]) / 60 for point in points]
    with matplotlib.rc_context(STYLE):  # type: ignore[arg-type]
        figure = Figure(figsize=(8, 2.6))
        left, right = figure.subplots(1, 2)
        figure.subplots_adjust(left=0.08, right=0.98, bottom=0.18, top=0.88, wspace=0.3)
        left.plot(minutes, [point["latency_p50_ms"] for point in points], marker=".", label="p50")
        left.plot(minutes, [point["latency_p95_ms"] for point in points], marker=".", label="p95")
        left.set_title("request latency (ms)")
        left.set_xlabel("minutes from the window's first row")
        left.legend()
        right.plot(minutes, [point["rows_per_s"] for point in points], marker=".", color="#1e7b34")
        right.set_title("logged rows per second")
        right.set_xlabel("minutes from the window's first row")
        return to_data_uri(figure)


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def drift_table(items: list[tuple[str, Checked]]) -> str:
    rows, classes = [], []
    for prefix, item in items:
        for result in shown(item.results):
            name = f"{prefix}{item.name}"
            rows.append([render.cell(name), render.cell(result.aspect), render.cell(result.test),
                         render.cell(result.score, name=f"{name}:{result.aspect}:score"),
                         render.cell(result.threshold, name=f"{name}:{result.aspect}:threshold"),
                         render.cell(result.rows), render.cell("yes" if result.drift else "no",
                                                               classes="bad" if result.drift else "")])
            classes.append("worst" if result.drift else "")
    return render.table(["feature", "aspect", "test", "score", "threshold", "rows", "drift"], rows,
                        numeric=(3, 4, 5), table_id="drift", row_classes=classes) + \
        '<p class="note">Missing and out-of-vocabulary rates are listed where they are not zero on both sides; every '\
        "test is in the JSON block.</p>"


def distributions(items: list[Checked], prefix: str) -> str:
    parts = []
    for item in items:
        for result in item.results:
            if "shares" not in result.reference:
                continue
            title = f"{prefix}{item.name} ({result.aspect}): {result.test} {result.score:.3g}"
            parts.append(render.image(shares_plot(result, title), f"{prefix}{item.name} {result.aspect}"))
    return f'<div class="grid">{"".join(parts)}</div>' if parts else '<p class="note">Nothing to draw.</p>'


def live_section(live: dict[str, Any]) -> str:
    """Live accuracy from delayed labels: overall, per time bucket and per slice (worst first)."""
    metrics = live.get("metrics") or {}
    if not metrics:
        return ('<p class="note">No logged prediction of this window has a label yet: send ground truth with '
                "<code>POST /v1/models/NAME/feedback</code> or <code>luodi feedback</code>.</p>")
    names = list(metrics)
    cards = "".join(render.card(name, render.number(value, 4)) for name, value in metrics.items())
    cards += render.card("labelled rows", render.number(live["labelled_rows"]))
    over_time = render.table(["from (UTC)", "rows", *names], [
        [render.cell(_when(point["start"])), render.cell(point["rows"]),
         *(render.cell(point[name], name=f"live:{name}", digits=4) for name in names)]
        for point in live["points"]], numeric=tuple(range(1, len(names) + 2)), table_id="live-time")
    slices = render.table(["feature", "slice", "rows", *names], [
        [render.cell(item["feature"]), render.cell(item["slice"]), render.cell(item["rows"]),
         *(render.cell(item[name], digits=4) for name in names)]
        for item in live["slices"]], numeric=tuple(range(2, len(names) + 3)), table_id="live-slices")
    return (f'<div class="cards">{cards}</div><h3>Over time</h3>{over_time}'
            f"<h3>By slice, worst first</h3>{slices}"
            f'<p class="note">{render.number(live["unmatched_labels"])} label(s) matched no logged prediction of '
            "this window.</p>")


def render_monitor(result: MonitorResult, profile: dict[str, Any], settings: MonitorConfig) -> str:
    """The whole page; its JSON block holds `result.to_dict()` (what `luodi monitor --json` prints)."""
    drifted = [item.name for item in result.features + result.outputs if item.drift]
    cards = "".join([
        render.card("rows in window", render.number(result.rows)),
        render.card("drifted", f'<span class="{"bad" if drifted else ""}">{len(drifted)} of '
                               f"{len(result.features) + len(result.outputs)}</span>"),
        render.card("latency p50", f"{render.number(result.traffic['latency_p50_ms'], 2)} ms"),
        render.card("latency p95", f"{render.number(result.traffic['latency_p95_ms'], 2)} ms"),
        render.card("reference rows", render.number(profile.get("rows", 0))),
    ])
    notes = "".join(f'<p class="note">{render.escape(note)}</p>' for note in result.notes)
    summary = (f'<div class="cards">{cards}</div>'
               f'<p class="note">Rows logged from {render.escape(result.first)} to {render.escape(result.last)}; '
               f"drifted: {render.escape(', '.join(drifted) or 'none')}. p-value tests (ks, chi2, rates) drift below "
               f"their threshold, distances (psi, wasserstein, jensen_shannon) at or above it; the auto choice uses "
               f"p-value tests up to {settings.small_sample_rows} rows.</p>{notes}")
    points = result.traffic["points"]
    traffic = (render.image(traffic_plot(result.traffic), "latency and throughput") if len(points) > 1 else
               '<p class="note">The window is too short for a curve.</p>')
    traffic += render.table(["from (UTC)", "rows/s", "p50 ms", "p95 ms"], [
        [render.cell(_when(point["start"])), render.cell(point["rows_per_s"], digits=2),
         render.cell(point["latency_p50_ms"], digits=2), render.cell(point["latency_p95_ms"], digits=2)]
        for point in points], numeric=(1, 2, 3), table_id="traffic")
    sections = [
        ("summary", "Summary", summary),
        ("drift", "Drift tests", drift_table([("", item) for item in result.features] +
                                             [("output ", item) for item in result.outputs])),
        ("features", "Features: reference vs current", distributions(result.features, "")),
        ("outputs", "Output drift", distributions(result.outputs, "output ")
         if result.outputs else '<p class="note">The profile holds no outputs.</p>'),
        ("traffic", "Latency and throughput", traffic),
        ("live", "Live accuracy (delayed labels)", live_section(result.live)),
    ]
    return render.page(f"Monitoring: {result.model}/{result.version}",
                       f"{result.rows} logged rows against the training profile", sections, result.to_dict(),
                       f"luodi monitor · package {result.package}")
