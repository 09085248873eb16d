"""Reports, explanations and comparisons through the real CLI on scikit-learn's breast-cancer data, and the
explanation quality check: permutation importance agrees with a logistic regression's coefficients."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


class Cli:
    """The real `luodi` executable in one folder with its own store (module-scoped, unlike the `luodi` fixture)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.env = {**os.environ, "LUODI_HOME": str(folder / "home"), "PYTHONWARNINGS": "ignore"}
        self.env.pop("LUODI_DEBUG", None)

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "luodi.cli", *args], cwd=self.folder, env=self.env,
                              capture_output=True, text=True, timeout=300)

    def json(self, *args: str) -> Any:
        done = self(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """breast_cancer (quickstart's files) with the config `luodi init` writes; one thread, so the run is exact."""
    from luodi.quickstart import write_breast_cancer

    folder = tmp_path_factory.mktemp("breast-cancer")
    paths = write_breast_cancer(folder)
    cli = Cli(folder)
    assert cli("init", "--data", str(paths["train"]), "--target", "diagnosis", "--name", "cancer").returncode == 0
    result = cli.json("train", "luodi.yaml", "--set", "runtime.threads=1", "--progress", "silent")
    return {"cli": cli, "paths": paths, "train": result}


def report_data(path: str) -> dict[str, Any]:
    text = Path(path).read_text(encoding="utf-8")
    return json.loads(text.split('<script type="application/json" id="luodi-data">', 1)[1].split("</script>")[0])


def test_permutation_importance_agrees_with_logistic_regression(trained: dict[str, Any]) -> None:
    """At least 3 of the model's 5 most important columns (permutation importance on the test split) are among
    the 10 largest absolute coefficients of a logistic regression on standardized features (of 30; chance gives
    1.7). Not the 5 largest: the size columns (radius, perimeter, area) carry the same signal, and which of them a
    model leans on differs between models that are equally good."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    frame = pd.read_csv(trained["paths"]["train"])
    columns = [column for column in frame.columns if column != "diagnosis"]
    regression = LogisticRegression(max_iter=5000).fit(StandardScaler().fit_transform(frame[columns]),
                                                       frame["diagnosis"])
    linear_top = {columns[index] for index in np.argsort(-np.abs(regression.coef_[0]))[:10]}
    importance = report_data(trained["train"]["report"])["importance"]
    assert importance["rows"] == trained["train"]["rows"]["test"]
    model_top = [item["feature"] for item in importance["features"][:5]]
    assert len(linear_top & set(model_top)) >= 3, (model_top, sorted(linear_top))


def test_evaluate_prints_the_report_and_agrees_with_it(trained: dict[str, Any], read_report: Any) -> None:
    cli, holdout = trained["cli"], str(trained["paths"]["holdout"])
    printed = cli.json("evaluate", "cancer", "--data", holdout)
    page = read_report(Path(printed["report"]))
    assert page.data["metrics"] == printed["metrics"]
    assert {key: page.data[key] for key in printed["details"]} == printed["details"]
    shown = {cell["name"]: cell for cell in page.cells if cell["table"] == "metrics"}
    assert {name: cell["value"] for name, cell in shown.items()} == printed["metrics"]
    human = cli("evaluate", "cancer", "--data", holdout)
    assert human.returncode == 0 and "report: " in human.stdout and "accuracy" in human.stdout
    both = cli("evaluate", "cancer", "--data", holdout, "--no-report", "--report", "x.html")
    assert both.returncode == 2 and "exclude each other" in both.stderr


def test_explain_through_the_cli(trained: dict[str, Any]) -> None:
    cli, new = trained["cli"], str(trained["paths"]["new"])
    explained = cli.json("explain", "cancer", "--data", new, "--out", "why.csv")
    rows = explained["rows"]
    assert len(rows) == len(pd.read_csv(new)) and explained["method"] == "integrated gradients"
    assert explained["features"] == [column for column in pd.read_csv(new).columns]
    for row in rows:
        gap = sum(row["attributions"].values()) - (row["output"] - row["baseline_output"])
        assert abs(gap) <= explained["max_delta"] + 1e-6 and abs(gap) < 0.01  # delta is float32 in Captum
        assert row["explained_class"] == row["prediction"] and 0.5 <= row["output"] <= 1
    table = pd.read_csv(cli.folder / "why.csv")
    assert list(table.columns[:4]) == ["diagnosis_prediction", "explained_class", "explained_output",
                                       "baseline_output"]
    assert table["worst_radius_attribution"].tolist() == pytest.approx(
        [row["attributions"]["worst_radius"] for row in rows])
    benign = cli.json("explain", "cancer", "--data", new, "--class", "benign")
    assert {row["explained_class"] for row in benign["rows"]} == {"benign"}
    human = cli("explain", "cancer", "--data", new, "--show", "2")
    assert human.returncode == 0 and "row 2" in human.stdout and "row 3" not in human.stdout
    wrong = cli("explain", "cancer", "--data", new, "--class", "maybe")
    assert wrong.returncode == 2 and "'maybe' is not a class" in wrong.stderr


def test_compare_through_the_cli(trained: dict[str, Any], read_report: Any) -> None:
    cli = trained["cli"]
    second = cli.json("train", "luodi.yaml", "--set", "runtime.threads=1", "--set", "trainer.epochs=3",
                      "--progress", "silent")
    first_id, second_id = trained["train"]["run_id"], second["run_id"]
    compared = cli.json("compare", first_id, second_id, "--out", "compare.html")
    assert compared["differences"] == {"trainer.epochs": [300, 3]}
    assert read_report(cli.folder / "compare.html").data["best"] == compared["best"]
    human = cli("compare", first_id, second_id)
    assert human.returncode == 0, human.stderr
    assert "trainer.epochs" in human.stdout and "★" in human.stdout and "page: " in human.stdout
    assert cli("compare", first_id).returncode == 2
