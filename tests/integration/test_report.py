"""Reports from real training runs and evaluations: where they are written, that the package's hashes cover them,
that their numbers are the API's numbers, their plots per task, escaping of user strings, determinism, compare."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

import luodi.api as api
from luodi.errors import InputError
from luodi.package import load_package, verify_package

HOSTILE_COLUMN = '<script>alert("column")</script>'
HOSTILE_CLASS = "<img src=x onerror=alert(1)>"


def regression_table(path: Path, rows: int = 300) -> Path:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"size": rng.normal(0, 1, rows), "age": rng.integers(18, 80, rows),
                          "income": rng.normal(50, 15, rows), "color": rng.choice(["red", "green", "blue"], rows)})
    frame["label"] = 3 * frame["size"] + 0.05 * frame["age"] + 2 * (frame["color"] == "red") + rng.normal(0, 1, rows)
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, table_csv: Callable, tiny_config: Callable) -> dict[str, Any]:
    """One tiny run per task in one store, plus a second binary run with another learning rate."""
    write_table, write_config = table_csv, tiny_config
    folder = tmp_path_factory.mktemp("reports")
    home = folder / "home"
    data = {"binary": write_table(folder / "binary.csv", rows=300),
            "multiclass": write_table(folder / "multiclass.csv", rows=300, task="multiclass"),
            "regression": regression_table(folder / "regression.csv")}
    out: dict[str, Any] = {"home": home, "data": data}
    for task, table in data.items():
        config = write_config(folder / f"{task}.yaml", table, task=task, name=task, epochs=3)
        out[task] = api.train(config, home=home, progress="silent")
    second = write_config(folder / "binary2.yaml", data["binary"], name="binary", epochs=3)
    out["binary2"] = api.train(second, ["trainer.optimizer.lr=0.01"], home=home, progress="silent")
    return out


def test_training_writes_the_report_into_the_run_and_the_package(runs: dict[str, Any], read_report: Callable,
                                                                 tmp_path: Path) -> None:
    result = runs["binary"]
    run_copy = Path(result.report)
    assert run_copy.parent == Path(api.show_run(result.run_id, home=runs["home"])["dir"])
    assert api.show_run(result.run_id, home=runs["home"])["summary"]["report"] == str(run_copy)
    package = Path(result.package)
    manifest = verify_package(package)
    assert "report.html" in manifest["files"]  # hashed like the weights
    assert (package / "report.html").read_bytes() == run_copy.read_bytes()
    page = read_report(run_copy)
    assert page.data["metrics"] == result.metrics
    assert page.data["model"]["run_id"] == result.run_id
    assert page.data["metrics_source"] == "test split of binary.csv"
    assert [split["name"] for split in page.data["data"]["splits"]] == ["train", "validation", "test"]
    assert [split["rows"] for split in page.data["data"]["splits"]] == list(result.rows.values())
    tampered = tmp_path / "package"
    shutil.copytree(package, tampered)
    (tampered / "report.html").write_text((tampered / "report.html").read_text().replace("accuracy", "acuracy"))
    with pytest.raises(InputError, match="report.html does not match its sha256"):
        load_package(tampered)


def test_visible_numbers_are_the_metrics(runs: dict[str, Any], read_report: Callable) -> None:
    for task in ("binary", "multiclass", "regression"):
        result = runs[task]
        page = read_report(Path(result.report))
        shown = {cell["name"]: cell for cell in page.cells if cell["table"] == "metrics"}
        assert set(shown) == set(result.metrics)
        for name, value in result.metrics.items():
            assert shown[name]["value"] == value  # exact: data-value holds the float's repr
            assert shown[name]["text"] == f"{value:.4f}"


EXPECTED_PLOTS = {
    "binary": {"loss and metrics per epoch", "confusion matrix, counts and normalized",
               "ROC, precision-recall and calibration curves", "permutation importance"},
    "multiclass": {"loss and metrics per epoch", "confusion matrix, counts and normalized",
                   "ROC, precision-recall and calibration curves", "permutation importance"},
    "regression": {"loss and metrics per epoch", "predicted vs actual, residuals, residual histogram",
                   "permutation importance"},
}


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_each_task_has_its_plots_and_sections(runs: dict[str, Any], task: str, read_report: Callable) -> None:
    import base64

    page = read_report(Path(runs[task].report))
    images = page.images()
    assert set(images) == EXPECTED_PLOTS[task]
    for src in images.values():
        assert src.startswith("data:image/svg+xml;base64,")
        svg = base64.b64decode(src.split(",", 1)[1]).decode("utf-8")
        assert "<svg" in svg and "<path" in svg and "href=\"http" not in svg.replace("http://www.w3.org", "")
    sections = {attrs["id"] for tag, attrs in page.tags if tag == "section"}
    assert sections == {"summary", "training", "performance", "slices", "importance", "config"}
    data = page.data
    assert ("classification" in data) == (task != "regression") and ("regression" in data) == (task == "regression")
    assert {item["feature"] for item in data["importance"]["features"]} == {"size", "age", "income", "color"}
    assert data["slices"]["slices"] and data["slices"]["overall"]
    assert yaml.safe_load(yaml.safe_dump(data["config"]))["target"]["task"] == task


def test_classifier_tables_match_the_json(runs: dict[str, Any], read_report: Callable) -> None:
    page = read_report(Path(runs["multiclass"].report))
    details = page.data["classification"]
    assert page.values("per-class", "recall") == [row["recall"] for row in details["per_class"]]
    assert page.values("per-class", "support") == [row["support"] for row in details["per_class"]]
    assert sum(map(sum, details["confusion"])) == page.data["rows"]
    balance = {cell["text"] for cell in page.cells if cell["table"] == "class-balance"}
    assert len(balance) > 1
    assert page.values("importance", "output_change") == [
        item["output_change"] for item in page.data["importance"]["features"]]


def test_evaluate_returns_the_numbers_in_its_report(runs: dict[str, Any], read_report: Callable,
                                                   tmp_path: Path) -> None:
    model = f"{runs['multiclass'].model['name']}/1"
    result = api.evaluate(model, runs["data"]["multiclass"], home=runs["home"], report=tmp_path / "eval.html")
    assert result["report"] == str(tmp_path / "eval.html")
    page = read_report(tmp_path / "eval.html")
    assert page.data["metrics"] == result["metrics"]
    for key, value in result["details"].items():
        assert page.data[key] == value
    assert page.data["rows"] == result["rows"] == 300
    assert page.data["model"]["version"] == 1 and page.data["kind"] == "evaluation"
    assert page.data["data"]["splits"][1]["name"] == "multiclass.csv"
    default = api.evaluate(model, runs["data"]["multiclass"], home=runs["home"])
    assert Path(default["report"]).parent == Path(runs["home"]).resolve() / "reports"
    assert default["metrics"] == result["metrics"]
    none = api.evaluate(model, runs["data"]["multiclass"], home=runs["home"], report=False)
    assert none["report"] is None and none["details"] == {} and none["metrics"] == result["metrics"]


def test_the_report_is_deterministic(runs: dict[str, Any]) -> None:
    from luodi.evaluate.report import build_report
    from luodi.evaluate.report_inputs import evaluation_input

    package = api.load_model(runs["binary"].package)
    table, encoded = package.encode(str(runs["data"]["binary"]), "binary.csv", with_target=True)
    outputs = package.outputs(encoded)
    pages = []
    for _ in range(2):
        source = evaluation_input(package, table, encoded, outputs, {"accuracy": 0.5}, "binary.csv")
        source.created_at = "2026-01-01 00:00:00 +0000"
        pages.append(build_report(source, package.config.report)[0])
    assert pages[0] == pages[1]


def test_user_strings_are_escaped(tmp_path: Path, read_report: Callable) -> None:
    rng = np.random.default_rng(0)
    rows = 200
    value = rng.normal(0, 1, rows)
    frame = pd.DataFrame({HOSTILE_COLUMN: value, "$cost$": rng.normal(0, 1, rows),
                          "kind": rng.choice(["<b>bold</b>", "a&b", "plain"], rows),
                          "label": np.where(value > 0, HOSTILE_CLASS, "fine")})
    frame.to_csv(tmp_path / "hostile.csv", index=False)
    config = {"name": "hostile", "description": "</pre><script>alert('description')</script>",
              "data": {"train": str(tmp_path / "hostile.csv")}, "target": {"name": "label", "task": "binary"},
              "input_features": [{"name": HOSTILE_COLUMN, "type": "numeric"}, {"name": "$cost$", "type": "numeric"},
                                 {"name": "kind", "type": "category"}],
              "model": {"hidden_sizes": [8]}, "trainer": {"epochs": 2}, "runtime": {"threads": 1}}
    result = api.train(config, home=tmp_path / "home", progress="silent")
    assert result.warnings == []  # the report was written; matplotlib drew the '$' literally
    source = Path(result.report).read_text(encoding="utf-8")
    page = read_report(Path(result.report))  # asserts the JSON block is the only script element
    assert not [attrs for _, attrs in page.tags if any(name.startswith("on") for name in attrs)]
    assert {tag for tag, _ in page.tags} <= {"html", "head", "meta", "title", "style", "body", "header", "h1", "p",
                                             "nav", "a", "main", "section", "h2", "h3", "div", "table", "thead",
                                             "tbody", "tr", "th", "td", "img", "details", "summary", "pre", "span",
                                             "b", "code", "footer", "script"}
    assert all(src.startswith("data:image/svg+xml;base64,") for src in page.images().values())
    assert HOSTILE_COLUMN in page.text and HOSTILE_CLASS in page.text and "<b>bold</b>" in page.text
    assert HOSTILE_COLUMN not in source and HOSTILE_CLASS not in source  # only in escaped form
    assert page.data["data"]["features"][0]["name"] == HOSTILE_COLUMN


def test_the_positive_class_drives_the_binary_metrics_and_is_named(tmp_path: Path, table_csv: Callable,
                                                                    tiny_config: Callable,
                                                                    read_report: Callable) -> None:
    config = tiny_config(tmp_path / "c.yaml", table_csv(tmp_path / "t.csv", rows=200), epochs=2)
    result = api.train(config, ["target.positive_class=no"], home=tmp_path / "home", progress="silent")
    assert load_package(Path(result.package)).pipeline.target.classes == ["yes", "no"]  # [negative, positive]
    page = read_report(Path(result.report))
    details = page.data["classification"]
    assert details["positive_class"] == "no" and [curve["class"] for curve in details["roc"]] == ["no"]
    assert details["calibration"]["of"] == "P(no)"
    row = next(row for row in details["per_class"] if row["class"] == "no")
    assert [row["precision"], row["recall"], row["f1"]] == pytest.approx(
        [result.metrics["precision"], result.metrics["recall"], result.metrics["f1"]])
    assert details["roc"][0]["auc"] == pytest.approx(result.metrics["roc_auc"])
    assert re.search(r"Positive class:\s+no\s*\.\s+precision, recall, f1 and roc_auc", page.text)
    assert re.search(r"positive class\s+no", page.text)  # the summary card
    assert page.data["config"]["target"]["positive_class"] == "no"
    with pytest.raises(InputError, match=r"target.positive_class 'maybe' is not a label of target 'label'"):
        api.train(config, ["target.positive_class=maybe"], home=tmp_path / "home", progress="silent")


def test_the_config_section_shows_what_the_run_read(runs: dict[str, Any], read_report: Callable) -> None:
    page = read_report(Path(runs["binary"].report))
    model = page.data["config"]["model"]
    assert set(model) == {"type", "hidden_sizes", "activation", "dropout", "normalization", "mlp"}  # an MLP
    for section in ("cnn:", "resnet:", "rnn:", "transformer:", "hf:", "gpt:", "lora:", "context_length"):
        assert section not in page.text
    assert "hidden_sizes:" in page.text and "class_weights:" in page.text


def test_an_image_only_report_leaves_out_slices_and_importance_and_says_why(tmp_path: Path,
                                                                            read_report: Callable) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    records = []
    for index in range(60):
        bright = index % 2 == 0
        Image.fromarray((rng.integers(0, 90, (8, 8)) + (120 if bright else 0)).astype(np.uint8)).save(
            tmp_path / f"{index}.png")
        records.append({"photo": f"{index}.png", "label": "bright" if bright else "dark"})
    pd.DataFrame(records).to_csv(tmp_path / "photos.csv", index=False)
    config = {"name": "photos", "data": {"train": str(tmp_path / "photos.csv")},
              "target": {"name": "label", "task": "binary"}, "input_features": [{"name": "photo", "type": "image"}],
              "model": {"type": "cnn", "cnn": {"channels": [4]}, "hidden_sizes": [4]},
              "trainer": {"epochs": 2, "batch_size": 16}, "runtime": {"threads": 1}}
    result = api.train(config, home=tmp_path / "home", progress="silent")
    page = read_report(Path(result.report))
    sections = {attrs["id"] for tag, attrs in page.tags if tag == "section"}
    assert sections == {"summary", "training", "performance", "config"}
    assert "slices" not in page.data and "importance" not in page.data
    assert set(page.data["left_out"]) == {"slices", "importance"}
    assert "No slices section: " in page.text and "reads only image columns" in page.text
    assert "No feature importance section: the model reads one column (photo)" in page.text
    assert "permutation importance" not in page.images()
    assert set(page.data["config"]["model"]) & {"cnn", "resnet", "rnn", "transformer", "hf"} == {"cnn"}


def test_report_can_be_turned_off(tmp_path: Path, table_csv: Callable, tiny_config: Callable) -> None:
    config = tiny_config(tmp_path / "c.yaml", table_csv(tmp_path / "t.csv", rows=120), epochs=1)
    result = api.train(config, ["report.enabled=false"], home=tmp_path / "home", progress="silent")
    assert result.report is None and not (Path(result.package) / "report.html").exists()
    assert "report.html" not in json.loads((Path(result.package) / "package.json").read_text())["files"]


def test_compare_marks_the_best_and_lists_differences(runs: dict[str, Any], read_report: Callable,
                                                      tmp_path: Path) -> None:
    first, second = runs["binary"], runs["binary2"]
    result = api.compare([first.run_id, second.run_id], out=tmp_path / "compare.html", home=runs["home"])
    assert [run["id"] for run in result["runs"]] == [first.run_id, second.run_id]
    assert result["differences"] == {"trainer.optimizer.lr": [0.001, 0.01]}
    assert result["metrics"]["accuracy"] == [first.metrics["accuracy"], second.metrics["accuracy"]]
    lower = min(first.metrics["log_loss"], second.metrics["log_loss"])
    assert result["best"]["log_loss"] == [run.run_id for run in (first, second) if run.metrics["log_loss"] == lower]
    page = read_report(tmp_path / "compare.html")
    assert page.data == {key: value for key, value in result.items() if key != "report"}
    best = [cell for cell in page.cells if cell["table"] == "metrics" and cell["text"].endswith("★")]
    assert {cell["name"] for cell in best} == set(result["best"])
    assert set(page.images()) == {"validation loss per run"}
    assert result["same"] > 20
    with pytest.raises(InputError, match="at least two runs"):
        api.compare([first.run_id], home=runs["home"])
    with pytest.raises(InputError, match="more than once"):
        api.compare([first.run_id, first.run_id], home=runs["home"])
    with pytest.raises(InputError, match="not found"):
        api.compare([first.run_id, "20990101-000000-ffffff"], home=runs["home"])


def test_runs_of_different_tasks_compare_by_every_metric(runs: dict[str, Any], tmp_path: Path) -> None:
    result = api.compare([runs["binary"].run_id, runs["regression"].run_id], out=tmp_path / "c.html",
                         home=runs["home"])
    assert result["metrics"]["r2"][0] is None and result["metrics"]["accuracy"][1] is None
    assert result["best"]["r2"] == [runs["regression"].run_id]
    assert "target.task" in result["differences"] and "input_features.color.type" not in result["differences"]


def test_compare_takes_model_versions(runs: dict[str, Any], tmp_path: Path) -> None:
    result = api.compare(["binary/1", "binary@latest"], out=tmp_path / "c.html", home=runs["home"])
    assert [run["id"] for run in result["runs"]] == [runs["binary"].run_id, runs["binary2"].run_id]
    with pytest.raises(InputError, match="no version 9"):
        api.compare(["binary/1", "binary/9"], home=runs["home"])


def test_image_and_sequence_columns_in_the_report_and_explanations(tmp_path: Path, read_report: Callable) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    records = []
    for index in range(90):
        bright = index % 2 == 0
        pixels = rng.integers(0, 90, (8, 8)) + (120 if bright else 0)
        Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / f"{index}.png")
        signal = rng.normal(0.5 if bright else -0.5, 1, 6)
        records.append({"photo": f"{index}.png", "signal": " ".join(f"{v:.3f}" for v in signal),
                        "size": rng.normal(), "shop": rng.choice(["a", "b"]), "label": "bright" if bright else "dark"})
    pd.DataFrame(records).to_csv(tmp_path / "mixed.csv", index=False)
    config = {"name": "mixed", "data": {"train": str(tmp_path / "mixed.csv")},
              "target": {"name": "label", "task": "binary"},
              "input_features": [{"name": "photo", "type": "image"}, {"name": "signal", "type": "sequence"},
                                 {"name": "size", "type": "numeric"}, {"name": "shop", "type": "category"}],
              "model": {"type": "cnn", "cnn": {"channels": [4]}, "hidden_sizes": [4]},
              "trainer": {"epochs": 3, "batch_size": 16, "optimizer": {"lr": 0.01}}, "runtime": {"threads": 1}}
    result = api.train(config, home=tmp_path / "home", progress="silent")
    assert result.warnings == []
    page = read_report(Path(result.report))
    assert {item["feature"] for item in page.data["importance"]["features"]} == {"photo", "signal", "size", "shop"}
    assert {item["feature"] for item in page.data["slices"]["slices"]} <= {"size", "shop"}  # no image slices
    assert page.data["data"]["splits"][0]["missing"]["photo"] == 0
    explanation = api.explain(result.package, tmp_path / "mixed.csv")
    assert explanation.features == ["photo", "signal", "size", "shop"]
    gap = explanation.attributions.sum(axis=1) - (explanation.outputs - explanation.baseline_outputs)
    assert np.abs(gap).max() < 0.02 and np.abs(explanation.attributions[:, 0]).max() > 0
