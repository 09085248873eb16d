"""Quality on real data with the config `luodi init` writes, no hand tuning (scikit-learn's bundled datasets)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def train_with_init_config(luodi, csv: str, target: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    assert luodi("init", "--data", csv, "--target", target).code == 0
    result = luodi("train", "luodi.yaml", "--json")
    assert result.code == 0, result.stderr
    return result.json()["metrics"]  # type: ignore[no-any-return]


def test_breast_cancer_accuracy(luodi, tmp_path: Path) -> None:
    from sklearn.datasets import load_breast_cancer

    load_breast_cancer(as_frame=True).frame.to_csv(tmp_path / "breast_cancer.csv", index=False)
    metrics = train_with_init_config(luodi, "breast_cancer.csv", "target")
    assert metrics["accuracy"] >= 0.96


def test_diabetes_r2(luodi, tmp_path: Path) -> None:
    from sklearn.datasets import load_diabetes

    load_diabetes(as_frame=True).frame.to_csv(tmp_path / "diabetes.csv", index=False)
    metrics = train_with_init_config(luodi, "diabetes.csv", "target")
    assert metrics["r2"] >= 0.40


def test_quickstart_runs_the_lifecycle(luodi, tmp_path: Path) -> None:
    started = time.perf_counter()
    result = luodi("quickstart", "--workdir", "work", "--json")
    assert result.code == 0, result.stderr
    summary = result.json()
    assert time.perf_counter() - started < 120
    assert summary["test_metrics"]["accuracy"] >= 0.9
    assert summary["holdout_metrics"]["accuracy"] >= 0.9
    assert Path(summary["scored"]).is_file()
    assert Path(summary["report"]).is_file() and Path(summary["holdout_report"]).is_file()
    assert luodi("models", "ls", "--json").json()[0]["name"] == "breast-cancer"
    human = luodi("quickstart", "--workdir", "work2")
    assert human.code == 0
    assert "4/7 predict" in human.stderr and "5/7 optimize" in human.stderr and "done in" in human.stderr
    assert summary["served"] and all(call["status"] == 200 for call in summary["served"])
    assert "6/7 serve" in human.stderr and human.stderr.count(" 200 ") == 3
    # the closed loop: the scanner drift is flagged, labels come back, the challenger wins and is served
    loop = summary["loop"]
    assert "mean_radius" in loop["drifted"] and loop["live"]["accuracy"] < 0.9
    decision = loop["retrain"]
    assert decision["promoted"] is True and loop["served_version"] == decision["challenger"]["version"]
    assert decision["challenger"]["metrics"]["accuracy"] > decision["champion"]["metrics"]["accuracy"]
    assert "7/7 loop" in human.stderr and "promoted" in human.stderr
