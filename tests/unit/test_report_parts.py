"""The report's numbers: per-class scores, curves, calibration, residuals, slices and permutation importance
against direct computations; HTML helpers escape user text and keep the JSON block closed."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sklearn import metrics

from luodi.config import validate_config
from luodi.evaluate import analysis, render
from luodi.evaluate.importance import permutation_importance
from luodi.evaluate.report import without_plots
from luodi.evaluate.slices import MAX_VALUES, MISSING, OTHER, numeric_groups, slice_metrics, value_groups
from luodi.features.pipeline import Encoded, FeaturePipeline
from luodi.tasks import get_task


def scored(rows: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, classes, rows)
    logits = rng.normal(0, 1, (rows, classes))
    logits[np.arange(rows), y_true] += 1.0  # better than chance
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y_true, probabilities


def test_per_class_table_matches_sklearn() -> None:
    y_true, probabilities = scored(300, 4)
    details = analysis.classification_details(get_task("multiclass"), y_true, probabilities, ["a", "b", "c", "d"])
    predicted = probabilities.argmax(axis=1)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(y_true, predicted, zero_division=0)
    assert [row["precision"] for row in details["per_class"]] == pytest.approx(precision)
    assert [row["recall"] for row in details["per_class"]] == pytest.approx(recall)
    assert [row["f1"] for row in details["per_class"]] == pytest.approx(f1)
    assert [row["support"] for row in details["per_class"]] == support.tolist()
    assert details["confusion"] == metrics.confusion_matrix(y_true, predicted).tolist()
    for index, curve in enumerate(details["roc"]):  # one-vs-rest per class
        assert curve["auc"] == pytest.approx(metrics.roc_auc_score(y_true == index, probabilities[:, index]))
    for index, curve in enumerate(details["pr"]):
        expected = metrics.average_precision_score(y_true == index, probabilities[:, index])
        assert curve["average_precision"] == pytest.approx(expected)


def test_binary_curves_are_of_the_positive_class_and_downsampled() -> None:
    y_true, probabilities = scored(5000, 2, seed=1)
    details = analysis.classification_details(get_task("binary"), y_true, probabilities[:, 1], ["no", "yes"])
    assert [curve["class"] for curve in details["roc"]] == ["yes"]
    assert details["roc"][0]["auc"] == pytest.approx(metrics.roc_auc_score(y_true, probabilities[:, 1]))
    points = details["pr"][0]["plot"]
    assert len(points["recall"]) <= analysis.CURVE_POINTS < 5000
    precision, recall, _ = metrics.precision_recall_curve(y_true, probabilities[:, 1])
    assert (points["recall"][0], points["recall"][-1]) == (recall[0], recall[-1])  # the ends are kept
    assert details["calibration"]["of"] == "P(yes)"


def test_a_class_absent_from_the_rows_has_no_curve() -> None:
    y_true, probabilities = scored(100, 3)
    y_true[y_true == 2] = 0
    details = analysis.classification_details(get_task("multiclass"), y_true, probabilities, ["a", "b", "c"])
    assert [curve["class"] for curve in details["roc"]] == ["a", "b"]
    assert details["per_class"][2]["support"] == 0 and details["per_class"][2]["recall"] == 0.0


def test_calibration_bins_and_expected_calibration_error() -> None:
    confidence = np.array([0.05, 0.15, 0.15, 0.95, 0.95, 0.95, 0.95])
    correct = np.array([0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    result = analysis.calibration(correct, confidence, bins=10)
    assert [b["rows"] for b in result["bins"]] == [1, 2, 4]
    assert [b["observed"] for b in result["bins"]] == [0.0, 0.5, 0.75]
    expected = (1 * 0.05 + 2 * abs(0.5 - 0.15) + 4 * abs(0.75 - 0.95)) / 7
    assert result["ece"] == pytest.approx(expected)


def test_regression_residuals() -> None:
    rng = np.random.default_rng(0)
    y_true = rng.normal(0, 1, 5000)
    y_pred = y_true + 0.5 + rng.normal(0, 0.1, 5000)
    details = analysis.regression_details(y_true, y_pred)
    assert details["residuals"]["mean"] == pytest.approx(0.5, abs=0.01)
    assert details["residuals"]["p50"] == pytest.approx(np.median(y_pred - y_true))
    assert sum(details["plot"]["histogram"]["counts"]) == 5000
    assert len(details["plot"]["actual"]) == analysis.SCATTER_POINTS
    assert "plot" not in json.dumps(without_plots(details))


# ---------------------------------------------------------------------------------------------- slices
def test_numeric_groups_are_quantile_bins_with_missing_apart() -> None:
    column = pa.chunked_array([pa.array([1.0, 2.0, 3.0, 4.0, None, 5.0, 6.0, 7.0, 8.0], pa.float64())])
    groups, labels = numeric_groups(column, bins=4)
    assert labels[-1] == MISSING and len(labels) == 5
    assert labels[0].startswith("[1, ") and labels[3].endswith("8]")  # the last bin is closed
    assert groups[4] == 4  # the missing row
    assert np.bincount(groups[groups < 4]).tolist() == [2, 2, 2, 2]


def test_constant_numeric_column_is_one_slice() -> None:
    groups, labels = numeric_groups(pa.chunked_array([pa.array([3.0] * 6)]), bins=4)
    assert labels == ["= 3"] and set(groups.tolist()) == {0}


def test_value_groups_keep_the_most_frequent_values() -> None:
    values = [f"v{i}" for i in range(MAX_VALUES + 5) for _ in range(2)] + ["top"] * 9 + [None]
    groups, labels = value_groups(pa.chunked_array([pa.array(values, pa.string())]))
    assert labels[0] == "top" and labels[-2:] == [OTHER, MISSING] and len(labels) == MAX_VALUES + 2
    assert int((groups == labels.index(OTHER)).sum()) == 2 * 6  # 35 values of 2 rows: 29 kept beside 'top'
    assert groups[-1] == labels.index(MISSING)


def slice_config() -> Any:
    return validate_config({
        "name": "t", "data": {"train": "x.csv"}, "target": {"name": "y", "task": "binary"},
        "input_features": [{"name": "city", "type": "category"}, {"name": "age", "type": "numeric"},
                           {"name": "note", "type": "text"}],
    })


def test_slices_rank_the_worst_first_and_leave_out_small_ones() -> None:
    rows = 200
    city = ["oslo"] * 100 + ["bergen"] * 96 + ["tiny"] * 4
    age = np.random.default_rng(0).permutation(np.linspace(20, 60, rows))  # unrelated to the errors
    table = pa.table({"city": city, "age": age, "note": ["x"] * rows, "y": ["a"] * rows})
    y_true = np.ones(rows)
    outputs = np.full(rows, 0.9)
    outputs[100:196] = 0.2  # the model is wrong on every bergen row
    result = slice_metrics(table, list(slice_config().input_features), get_task("binary"), y_true, outputs, bins=4,
                           min_rows=5)
    worst = result["slices"][0]
    assert (worst["feature"], worst["slice"], worst["accuracy"]) == ("city", "bergen", 0.0)
    assert result["left_out"] == 1  # 'tiny' has 4 rows
    assert {item["feature"] for item in result["slices"]} == {"city", "age"}  # text is not sliced
    accuracies = [item["accuracy"] for item in result["slices"]]
    assert accuracies == sorted(accuracies)
    assert result["overall"]["accuracy"] == pytest.approx(104 / 200)


def test_regression_slices_are_ranked_by_rmse() -> None:
    age = np.random.default_rng(0).permutation(100).astype(float)
    table = pa.table({"city": ["a"] * 50 + ["b"] * 50, "age": age, "note": ["x"] * 100,
                      "y": np.zeros(100)})
    errors = np.r_[np.full(50, 0.1), np.full(50, 2.0)]
    result = slice_metrics(table, list(slice_config().input_features), get_task("regression"), np.zeros(100), errors)
    assert (result["slices"][0]["slice"], result["slices"][0]["rmse"]) == ("b", pytest.approx(2.0))
    assert result["overall"]["bias"] == pytest.approx(1.05)


# ------------------------------------------------------------------------------------------ importance
def importance_pipeline() -> tuple[FeaturePipeline, pa.Table]:
    config = validate_config({
        "name": "t", "data": {"train": "x.csv"}, "target": {"name": "y", "task": "binary"},
        "input_features": [{"name": "signal", "type": "numeric"}, {"name": "noise", "type": "numeric"},
                           {"name": "color", "type": "category"}],
    })
    rng = np.random.default_rng(0)
    rows = 300
    signal = rng.normal(0, 1, rows)
    table = pa.table({"signal": signal, "noise": rng.normal(0, 1, rows),
                      "color": rng.choice(["red", "blue"], rows).tolist(),
                      "y": np.where(signal > 0, "yes", "no").tolist()})
    return FeaturePipeline.fit(config, table), table


def test_permutation_importance_finds_the_column_the_model_reads() -> None:
    pipeline, table = importance_pipeline()

    def outputs(encoded: Encoded) -> np.ndarray:  # a model that reads only `signal` (dense column 0)
        return 1 / (1 + np.exp(-4 * encoded.inputs["dense"][:, 0]))

    result = permutation_importance(table, pipeline, outputs, repeats=4, seed=0)
    by_name = {item["feature"]: item for item in result["features"]}
    assert result["features"][0]["feature"] == "signal"
    assert by_name["signal"]["output_change"] > 1.0 and by_name["signal"]["loss_increase"] > 0.3
    for name in ("noise", "color"):
        assert by_name[name]["output_change"] == 0.0 and by_name[name]["loss_increase"] == 0.0
    assert result["rows"] == 300 and result["repeats"] == 4


def test_permutation_importance_batches_give_the_same_numbers() -> None:
    pipeline, table = importance_pipeline()
    calls: list[int] = []

    def outputs(encoded: Encoded) -> np.ndarray:
        calls.append(len(encoded))
        return 1 / (1 + np.exp(-encoded.inputs["dense"][:, 0] - encoded.inputs["dense"][:, 1]))

    import luodi.evaluate.importance as importance

    stacked = permutation_importance(table, pipeline, outputs, repeats=6, seed=3)
    assert max(calls) == 6 * 300  # all shuffles of a column in one call
    calls.clear()
    original = importance.BATCH_ROWS
    importance.BATCH_ROWS = 300  # one shuffle per call
    try:
        one_by_one = permutation_importance(table, pipeline, outputs, repeats=6, seed=3)
    finally:
        importance.BATCH_ROWS = original
    assert max(calls) == 300
    assert stacked == one_by_one


def test_permutation_importance_samples_rows() -> None:
    pipeline, table = importance_pipeline()
    result = permutation_importance(table, pipeline, lambda e: np.full(len(e), 0.5), repeats=1, rows=50)
    assert result["rows"] == 50


def test_wide_tables_use_fewer_rows_for_importance() -> None:
    import luodi.evaluate.importance as importance

    columns, rows = 100, 1000
    config = validate_config({
        "name": "t", "data": {"train": "x.csv"}, "target": {"name": "y", "task": "regression"},
        "input_features": [{"name": f"c{i}", "type": "numeric"} for i in range(columns)],
    })
    rng = np.random.default_rng(0)
    table = pa.table({**{f"c{i}": rng.normal(0, 1, rows) for i in range(columns)}, "y": rng.normal(0, 1, rows)})
    pipeline = FeaturePipeline.fit(config, table)
    result = permutation_importance(table, pipeline, lambda encoded: encoded.inputs["dense"][:, 0], repeats=5)
    assert result["rows"] == importance.CELL_BUDGET // (5 * columns * columns) == 400
    assert result["features"][0]["feature"] == "c0" and result["features"][1]["output_change"] == 0.0


# -------------------------------------------------------------------------------------------- render
def test_cells_escape_text_and_carry_exact_numbers() -> None:
    assert render.cell("<script>alert(1)</script>") == "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>"
    value = 0.1 + 0.2
    html = render.cell(value, name='a"b')
    assert f'data-value="{value!r}"' in html and ">0.3000<" in html and 'data-name="a&quot;b"' in html
    assert 'data-value="null"' in render.cell(float("nan")) and "—" in render.cell(float("nan"))
    assert render.cell(1234) == '<td class="num " data-value="1234">1,234</td>'


def test_json_block_cannot_be_closed_by_data() -> None:
    data = {"name": "</script><script>alert(1)</script>", "nan": float("nan"), "amp": "a & b <!--"}
    block = render.json_block(data)
    assert block.count("</script>") == 1 and "<!--" not in block
    payload = re.search(r">(.*)</script>", block, re.DOTALL)
    assert payload is not None
    assert json.loads(payload.group(1)) == {**data, "nan": None}


def test_page_escapes_titles_and_headings() -> None:
    page = render.page("<b>x</b>", "<i>y</i>", [("a", "<h>", "<p>body</p>")], {}, "<f>")
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page and "<p>body</p>" in page
    assert "default-src 'none'" in page  # nothing may be fetched or run even if something slipped through


# ----------------------------------------------------------------------------------------- config shown
def used(model: dict[str, Any], target: dict[str, Any] | None = None,
         features: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    from luodi.evaluate.report import used_config

    return used_config(validate_config({
        "name": "t", "data": {"train": "x.csv"}, "target": target or {"name": "y", "task": "binary"},
        "input_features": [{"name": "a", "type": "numeric"}] if features is None else features, "model": model}))


ARCHITECTURES = {"cnn", "resnet", "rnn", "transformer", "hf", "gpt"}


def test_the_config_section_shows_only_the_chosen_architecture() -> None:
    mlp = used({"type": "mlp"})
    assert set(mlp["model"]) == {"type", "hidden_sizes", "activation", "dropout", "normalization", "mlp"}
    assert set(mlp["target"]) == {"name", "task", "class_weights", "positive_class"}  # no text generation keys
    cnn = used({"type": "cnn", "cnn": {"channels": [4]}}, features=[{"name": "photo", "type": "image"}])
    assert set(cnn["model"]) & ARCHITECTURES == {"cnn"} and cnn["model"]["cnn"]["channels"] == [4]
    assert cnn["model"]["mlp"] == {"ensemble": 1, "adapters": "layers", "numeric_embedding": "none",
                                   "linear": False}  # the combiner
    # MLP over the CNN; the periodic embedding's settings only when it is on
    regression = used({"type": "rnn"}, {"name": "y", "task": "regression"}, [{"name": "s", "type": "sequence"}])
    assert set(regression["model"]) & ARCHITECTURES == {"rnn"} and set(regression["target"]) == {"name", "task"}
    language = used({"type": "gpt", "gpt": {"layers": 1}}, {"name": "text", "task": "text_generation"}, [])
    assert set(language["model"]) == {"type", "gpt"}  # a language model has no combiner MLP
    assert set(language["target"]) == {"name", "task", "text"}


# ------------------------------------------------------------------------------------------------ plots
def drawn(figure: Any) -> Any:
    figure.draw_without_rendering()
    return figure


def test_metric_lines_that_coincide_stay_visible() -> None:
    from luodi.evaluate import plots

    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1 / e, "val_accuracy": 0.5 + e / 40,
                "val_f1_macro": 0.5 + e / 40, "val_roc_auc": 0.9} for e in range(1, 21)]
    figure = plots.training_figure(history, 20, ("val_accuracy", "val_roc_auc", "val_f1_macro"))
    for axes in figure.axes:
        lines = [line for line in axes.get_lines() if not line.get_label().startswith("best epoch")]
        styles = [(str(line.get_linestyle()), line.get_marker()) for line in lines]
        assert len(set(styles)) == len(lines) >= 2, styles  # solid under dashed under dotted, each with a marker
        widths = [line.get_linewidth() for line in lines]
        assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]  # a later line runs inside
    accuracy, f1 = (next(line for line in figure.axes[1].get_lines() if line.get_label() == name)
                    for name in ("accuracy", "f1_macro"))
    assert list(accuracy.get_ydata()) == list(f1.get_ydata())  # the case the styles are for


def classifier_details(classes: int) -> dict[str, Any]:
    y_true, probabilities = scored(400, classes, seed=2)
    task = get_task("binary" if classes == 2 else "multiclass")
    outputs = probabilities[:, 1] if classes == 2 else probabilities
    names = [f"a rather long class name {index}" for index in range(classes)]
    return analysis.classification_details(task, y_true, outputs, names)


@pytest.mark.parametrize("figure_of", ["training", "binary", "multiclass"])
def test_legends_sit_outside_every_plotting_area(figure_of: str) -> None:
    from luodi.evaluate import plots

    if figure_of == "training":
        history = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "val_accuracy": 0.9, "val_f1_macro": 0.8,
                    "val_roc_auc": 0.95} for e in range(1, 31)]
        figure = drawn(plots.training_figure(history, 12, ("val_accuracy", "val_roc_auc", "val_f1_macro")))
    else:
        figure = drawn(plots.classifier_figure(classifier_details(2 if figure_of == "binary" else 6)))
    legends = [axes.get_legend() for axes in figure.axes if axes.get_legend() is not None]
    assert len(legends) == (2 if figure_of == "training" else 3)
    page = figure.bbox
    for legend in legends:
        box = legend.get_window_extent()
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1  # not cut off
        for axes in figure.axes:
            assert not box.overlaps(axes.get_window_extent()), (legend.get_texts()[0].get_text(), axes.get_title())
            assert not box.overlaps(axes.xaxis.label.get_window_extent())


def test_the_calibration_plot_shows_the_rows_of_each_bin() -> None:
    from luodi.evaluate import plots

    details = classifier_details(2)
    figure = plots.classifier_figure(details)
    bars = [patch.get_height() for axes in figure.axes for patch in axes.patches]
    bins = details["calibration"]["bins"]
    assert bars == [item["rows"] for item in bins] and sum(bars) == 400
    assert any(axes.get_ylabel() == "rows per bin" for axes in figure.axes)
    assert details["positive_class"] == "a rather long class name 1"
