"""The UI's server-drawn SVG charts: one polyline per series, labels escaped, non-finite values left out."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

from luodi.ui import charts

SVG = "{http://www.w3.org/2000/svg}"


def test_a_chart_draws_each_series_and_escapes_labels() -> None:
    chart = charts.line_chart([("<b>run</b>", [(1, 0.5), (2, 0.25), (3, float("nan"))]), ("other", [(1, 1.0)])],
                              "val_loss & more")
    root = ElementTree.fromstring(str(chart))  # well-formed XML: every label escaped
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 2
    assert len(lines[0].get("points", "").split()) == 2  # the NaN epoch is left out
    texts = [node.text for node in root.iter(f"{SVG}text")]
    assert "val_loss & more" in texts and "<b>run</b>" in texts
    assert root.find(f"{SVG}circle") is not None  # a one-point series still shows


def test_no_data_and_sparklines() -> None:
    empty = ElementTree.fromstring(str(charts.line_chart([("a", [])], "loss")))
    assert "no data yet" in [node.text for node in empty.iter(f"{SVG}text")]
    assert str(charts.sparkline([])) == ""
    spark = ElementTree.fromstring(str(charts.sparkline([3.0, 2.0, 2.0, 1.0])))
    assert len(spark.find(f"{SVG}polyline").get("points", "").split()) == 4


def test_curves_group_histories_by_metric_losses_first() -> None:
    grouped = charts.curves([("a", [{"epoch": 1, "val_accuracy": 0.5, "train_loss": 1.0}]),
                             ("b", [{"epoch": 1, "train_loss": 0.9}, {"epoch": 2, "train_loss": 0.8}])])
    assert [name for name, _ in grouped] == ["train_loss", "val_accuracy"]
    assert grouped[0][1] == [("a", [(1.0, 1.0)]), ("b", [(1.0, 0.9), (2.0, 0.8)])]
    assert charts.number(0.123456) == "0.1235" and charts.number(None) == "" and charts.number(3) == "3"
