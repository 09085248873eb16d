"""The report's plots: matplotlib figures rendered to SVG and inlined as data URIs (no file, no network).

Figures are made with `matplotlib.figure.Figure` (no pyplot, so no global figure state and no GUI backend).
Rendering is deterministic: a fixed `svg.hashsalt` and no date in the metadata. Text stays text (`svg.fonttype:
none`) in DejaVu Sans or the viewer's sans-serif: a third smaller and quicker to draw than glyph outlines, and no
font is fetched. It is never parsed as math, so a `$` in a column or class name is just a character. Each figure
is its own SVG document inside an <img>, so ids never collide and nothing in it can run.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

STYLE: dict[str, Any] = {
    "svg.hashsalt": "luodi-report", "svg.fonttype": "none", "text.parse_math": False, "font.size": 8.5,
    "axes.titlesize": 9.5, "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.alpha": 0.3, "legend.fontsize": 7.5, "legend.frameon": False, "figure.dpi": 100,
}
MAX_CURVES = 6  # classes drawn in ROC / PR plots (most frequent first); the per-class table lists all
MAX_ANNOTATED = 10  # confusion matrices up to this many classes print each cell's value
MAX_LABEL = 28  # characters of a user label shown on an axis


def short(label: Any, limit: int = MAX_LABEL) -> str:
    """A label cut in the middle to `limit` characters: labels often differ only at the end ('... 10', '... 11')."""
    text = str(label)
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "…" + text[len(text) - (limit - 1 - head):]


@contextmanager
def _style() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(STYLE):  # type: ignore[arg-type]  # keys are valid rcParams; the stub lists Literals
        yield


CHAR_INCHES = 0.065  # width of one tick-label character at STYLE's font size, for margins
LEGEND_ROW = 0.16  # inches per row of legend entries at STYLE's legend font size
XLABEL_SPACE = 0.42  # inches under the axes that the tick labels and the x label take
# Lines drawn over each other stay visible: each has its own dash pattern and marker, and the first drawn is the
# widest, so a later line on the same values runs inside it (accuracy and f1_macro are often equal).
LINE_STYLES = (("-", "o", 2.6), ("--", "s", 2.0), (":", "^", 1.6), ("-.", "D", 1.3), ((0, (1, 1)), "v", 1.1),
               ((0, (5, 1, 1, 1, 1, 1)), "x", 1.0))


def _figure(width: float, height: float, panels: int = 1, *, left: float = 0.6, bottom: float = 0.5,
            gap: float = 0.75, right: float = 0.15, top: float = 0.3, legend_rows: int = 0) -> tuple[Any, list[Any]]:
    """A figure of `panels` axes side by side; margins and the gap between panels in inches. `legend_rows` adds
    room under the axes for legends of that many rows (`_legend_below`), keeping the axes' own size.

    Margins are set, not computed by a layout engine: constrained layout doubled the time to draw a figure.
    """
    from matplotlib.figure import Figure

    extra = legend_rows * LEGEND_ROW + 0.1 if legend_rows else 0.0
    height, bottom = height + extra, bottom + extra
    figure = Figure(figsize=(width, height))
    axes = figure.subplots(1, panels, squeeze=False)[0]
    panel = (width - left - right - gap * (panels - 1)) / panels
    figure.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height,
                           top=1 - top / height, wspace=gap / panel)
    return figure, list(axes)


def _legend_below(axes: Any, columns: int = 1, handles: list[Any] | None = None) -> None:
    """The legend under the axes' x label, outside the plotting area, so that it never hides a line or a point
    (the figure made room with `_figure(legend_rows=...)`)."""
    figure, box = axes.figure, axes.get_position()
    anchor = (box.x0 + box.width / 2, box.y0 - XLABEL_SPACE / figure.get_figheight())
    extra = {} if handles is None else {"handles": handles}
    axes.legend(loc="upper center", bbox_to_anchor=anchor, bbox_transform=figure.transFigure, ncols=columns,
                borderaxespad=0, **extra)


def _rows(entries: int, columns: int) -> int:
    return -(-entries // columns)


def to_data_uri(figure: Any) -> str:
    """The figure as an SVG data URI (base64), without the metadata block and the line breaks matplotlib writes
    inside path data (12% smaller; the picture is the same)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = re.sub(r"<metadata>.*?</metadata>", "", buffer.getvalue().decode("utf-8"), flags=re.DOTALL)
    svg = re.sub(r">\s+<", "><", re.sub(r"\s*\n\s*", " ", svg))
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def _styled_lines(axes: Any, series: list[tuple[str, list[float], list[Any]]]) -> None:
    """(label, x, y) lines that stay visible where they coincide (LINE_STYLES); about a dozen markers per line."""
    for (label, x, values), (dashes, marker, width) in zip(series, LINE_STYLES * len(series), strict=False):
        axes.plot(x, values, label=label, linestyle=dashes, marker=marker, linewidth=width, markersize=3 + width,
                  markevery=max(1, len(x) // 12), markerfacecolor="none")


def training_figure(history: list[dict[str, float]], best_epoch: int, wanted: tuple[str, ...]) -> Any:
    """Train and validation loss per epoch | the `wanted` validation metrics per epoch (those every epoch has);
    the best epoch is marked; legends under the panels."""
    epochs = [item["epoch"] for item in history]
    metrics = [(name.removeprefix("val_"), epochs, [item.get(name) for item in history]) for name in wanted]
    metrics = [line for line in metrics if all(value is not None and np.isfinite(value) for value in line[2])]
    with _style():
        figure, (loss_axes, metric_axes) = _figure(9.6, 3.0, 2, legend_rows=_rows(len(metrics) + 1, 3))
        _styled_lines(loss_axes, [("train loss", epochs, [item["train_loss"] for item in history]),
                                  ("validation loss", epochs, [item["val_loss"] for item in history])])
        loss_axes.set(title="Loss per epoch", xlabel="epoch")
        _styled_lines(metric_axes, metrics)
        metric_axes.set(title="Validation metrics per epoch", xlabel="epoch")
        for axes in (loss_axes, metric_axes):
            axes.axvline(best_epoch, color="0.5", linestyle=":", linewidth=1.0, label=f"best epoch {best_epoch}")
            _legend_below(axes, columns=3)
        return figure


def training_curves(history: list[dict[str, float]], best_epoch: int, wanted: tuple[str, ...]) -> str:
    """`training_figure` as a data URI."""
    with _style():
        return to_data_uri(training_figure(history, best_epoch, wanted))


def confusion_matrices(matrix: list[list[int]], classes: list[str]) -> str:
    """Counts | normalized by true class (each row sums to 1)."""
    counts = np.asarray(matrix, np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    normalized = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    size = len(classes)
    annotate = size <= MAX_ANNOTATED
    labels = [short(name, 16) for name in classes] if size <= 40 else None
    longest = max((len(label) for label in labels), default=2) if labels else 2
    rotate = size > 3
    side = min(4.2, 1.8 + 0.25 * size)  # inches of matrix
    left = 0.45 + CHAR_INCHES * longest
    bottom = 0.45 + (CHAR_INCHES * 0.75 * longest if rotate else 0.1)
    colorbar = 0.75
    with _style():
        figure, panels = _figure(2 * (side + colorbar) + left * 2 + 0.1, side + bottom + 0.35, 2, left=left,
                                 bottom=bottom, gap=left + colorbar, right=colorbar)
        for axes, values, title, text in ((panels[0], counts, "Confusion matrix (counts)", "{:.0f}"),
                                          (panels[1], normalized, "Normalized by true class", "{:.2f}")):
            axes.grid(False)
            image = axes.imshow(values, cmap="Blues", vmin=0, vmax=max(values.max(), 1e-12))
            axes.set(title=title, xlabel="predicted", ylabel="true")
            ticks = np.arange(size)
            if labels is not None:
                axes.set_xticks(ticks, labels, rotation=45 if rotate else 0, ha="right" if rotate else "center",
                                rotation_mode="anchor")
                axes.set_yticks(ticks, labels)
            if annotate:
                threshold = values.max() / 2
                for row in range(size):
                    for column in range(size):
                        axes.text(column, row, text.format(values[row, column]), ha="center", va="center",
                                  color="white" if values[row, column] > threshold else "black", fontsize=7.5)
            figure.colorbar(image, ax=axes, fraction=0.06, pad=0.04)
        return to_data_uri(figure)


def classifier_figure(details: dict[str, Any]) -> Any:
    """ROC | precision-recall (one-vs-rest per class for multiclass) | calibration (reliability diagram over bars
    of the rows in each bin, on a right-hand axis). Legends are under the panels.

    Multiclass plots draw the MAX_CURVES most frequent classes, so that each line can still be told apart.
    """
    support = {row["class"]: row["support"] for row in details["per_class"]}
    roc = sorted(details["roc"], key=lambda item: -support[item["class"]])[:MAX_CURVES]
    pr = sorted(details["pr"], key=lambda item: -support[item["class"]])[:MAX_CURVES]
    calibration = details["calibration"]
    with _style():
        figure, (roc_axes, pr_axes, calibration_axes) = _figure(12, 3.6, 3, gap=1.0, right=0.65,
                                                                legend_rows=max(len(roc), len(pr), 3))
        for item in roc:
            roc_axes.plot(item["plot"]["fpr"], item["plot"]["tpr"],
                          label=f"{short(item['class'], 18)} (AUC {item['auc']:.3f})")
        roc_axes.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=0.8)
        roc_axes.set(title="ROC", xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1),
                     ylim=(0, 1.02))
        for item in pr:
            pr_axes.plot(item["plot"]["recall"], item["plot"]["precision"],
                         label=f"{short(item['class'], 18)} (AP {item['average_precision']:.3f})")
        pr_axes.set(title="Precision-recall", xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        for axes in (roc_axes, pr_axes):
            if axes.get_legend_handles_labels()[0]:
                _legend_below(axes)
        bins = calibration["bins"]
        counts_axes = calibration_axes.twinx()  # rows per bin, behind the reliability line
        counts_axes.bar([sum(b["bin"]) / 2 for b in bins], [b["rows"] for b in bins],
                        width=[0.9 * (b["bin"][1] - b["bin"][0]) for b in bins], color="#4c72b0", alpha=0.18,
                        linewidth=0, label="rows per bin")
        counts_axes.set_ylabel("rows per bin")
        counts_axes.spines["right"].set_visible(True)
        counts_axes.grid(False)
        calibration_axes.set_zorder(counts_axes.get_zorder() + 1)
        calibration_axes.patch.set_visible(False)
        calibration_axes.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=0.8, label="perfect")
        calibration_axes.plot([b["confidence"] for b in bins], [b["observed"] for b in bins], marker="o",
                              label=f"model (ECE {calibration['ece']:.3f})")
        calibration_axes.set(title="Calibration", xlabel=f"predicted {short(calibration['of'], 40)}",
                             ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1.02))
        handles = calibration_axes.get_legend_handles_labels()[0] + counts_axes.get_legend_handles_labels()[0]
        _legend_below(calibration_axes, handles=handles)
        return figure


def classifier_curves(details: dict[str, Any]) -> str:
    """`classifier_figure` as a data URI."""
    with _style():
        return to_data_uri(classifier_figure(details))


def regression_plots(details: dict[str, Any]) -> str:
    """Predicted vs actual | residual vs predicted | residual histogram."""
    plot = details["plot"]
    actual, predicted = np.asarray(plot["actual"]), np.asarray(plot["predicted"])
    residual = predicted - actual
    with _style():
        figure, (fit_axes, residual_axes, histogram_axes) = _figure(12, 3.6, 3)
        fit_axes.scatter(actual, predicted, s=6, alpha=0.5, linewidths=0)
        low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
        fit_axes.plot([low, high], [low, high], color="0.5", linestyle="--", linewidth=0.8)
        fit_axes.set(title="Predicted vs actual", xlabel="actual", ylabel="predicted")
        residual_axes.scatter(predicted, residual, s=6, alpha=0.5, linewidths=0)
        residual_axes.axhline(0, color="0.5", linestyle="--", linewidth=0.8)
        residual_axes.set(title="Residuals vs predicted", xlabel="predicted", ylabel="predicted - actual")
        histogram = plot["histogram"]
        edges = np.asarray(histogram["edges"])
        histogram_axes.bar(edges[:-1], histogram["counts"], width=np.diff(edges), align="edge", linewidth=0)
        histogram_axes.set(title="Residual histogram", xlabel="predicted - actual", ylabel="rows")
        return to_data_uri(figure)


def importance_bars(features: list[dict[str, Any]], output: str, limit: int = 20) -> str:
    """Horizontal bars of the mean output change per column (error bars: one standard deviation)."""
    shown = features[:limit][::-1]
    longest = max((len(short(item["feature"])) for item in shown), default=4)
    with _style():
        figure, (axes,) = _figure(7.0, 1.0 + 0.22 * len(shown), left=0.25 + CHAR_INCHES * longest, bottom=0.5)
        axes.barh([short(item["feature"]) for item in shown], [item["output_change"] for item in shown],
                  xerr=[item["output_change_std"] for item in shown], color="#4c72b0", error_kw={"linewidth": 0.8})
        axes.set(title="Permutation importance", xlabel=f"mean change in the {output} when the column is shuffled")
        axes.grid(axis="y", visible=False)
        return to_data_uri(figure)


def run_curves(histories: list[list[dict[str, float]]], labels: list[str]) -> str:
    """Validation loss per epoch, one line per run (for `luodi compare`); the legend under the axes."""
    drawn = [(short(label, 40), history) for history, label in zip(histories, labels, strict=True) if history]
    with _style():
        figure, (axes,) = _figure(7.0, 3.2, legend_rows=_rows(len(drawn), 2))
        _styled_lines(axes, [(label, [item["epoch"] for item in history], [item["val_loss"] for item in history])
                             for label, history in drawn])
        axes.set(title="Validation loss per epoch", xlabel="epoch", ylabel="validation loss")
        if drawn:
            _legend_below(axes, columns=2)
        return to_data_uri(figure)
