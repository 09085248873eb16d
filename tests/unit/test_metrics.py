"""Metrics agree with scikit-learn on random data, and every early-stopping metric is produced for its task."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics

from luodi.config import TargetConfig
from luodi.tasks import get_task
from luodi.tasks.classification import classification_metrics
from luodi.tasks.regression import regression_metrics


def compute_metrics(task: str, y_true: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
    """The task's metrics of activated outputs (regression: a target of mean 0, std 1, so values are as given)."""
    config = TargetConfig(name="y", task=task)
    return get_task(task).score(get_task(task).target(config), outputs, y_true)


def probabilities(rows: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, classes, rows)
    y_true[:classes] = np.arange(classes)  # every class present
    return y_true, rng.dirichlet(np.ones(classes), rows)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_matches_sklearn(seed: int) -> None:
    y_true, probs = probabilities(200, 2, seed)
    out = compute_metrics("binary", y_true, probs[:, 1])
    y_pred = probs.argmax(axis=1)
    assert out["accuracy"] == pytest.approx(metrics.accuracy_score(y_true, y_pred))
    assert out["f1_macro"] == pytest.approx(metrics.f1_score(y_true, y_pred, average="macro"))
    assert out["f1"] == pytest.approx(metrics.f1_score(y_true, y_pred))
    assert out["precision"] == pytest.approx(metrics.precision_score(y_true, y_pred))
    assert out["recall"] == pytest.approx(metrics.recall_score(y_true, y_pred))
    assert out["roc_auc"] == pytest.approx(metrics.roc_auc_score(y_true, probs[:, 1]))
    assert out["log_loss"] == pytest.approx(metrics.log_loss(y_true, probs))


@pytest.mark.parametrize("seed", [0, 1])
def test_multiclass_matches_sklearn(seed: int) -> None:
    y_true, probs = probabilities(300, 4, seed)
    out = compute_metrics("multiclass", y_true, probs)
    y_pred = probs.argmax(axis=1)
    assert out["accuracy"] == pytest.approx(metrics.accuracy_score(y_true, y_pred))
    assert out["f1_macro"] == pytest.approx(metrics.f1_score(y_true, y_pred, average="macro"))
    assert out["f1_weighted"] == pytest.approx(metrics.f1_score(y_true, y_pred, average="weighted"))
    assert out["roc_auc_ovr"] == pytest.approx(metrics.roc_auc_score(y_true, probs, multi_class="ovr"))
    assert out["log_loss"] == pytest.approx(metrics.log_loss(y_true, probs, labels=[0, 1, 2, 3]))


@pytest.mark.parametrize("seed", [0, 1])
def test_regression_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.normal(10, 3, 150)
    y_pred = y_true + rng.normal(0, 1, 150)
    out = regression_metrics(y_true, y_pred)
    assert out["r2"] == pytest.approx(metrics.r2_score(y_true, y_pred))
    assert out["rmse"] == pytest.approx(metrics.root_mean_squared_error(y_true, y_pred))
    assert out["mse"] == pytest.approx(metrics.mean_squared_error(y_true, y_pred))
    assert out["mae"] == pytest.approx(metrics.mean_absolute_error(y_true, y_pred))


def test_constant_regression_target_has_nan_r2() -> None:
    assert np.isnan(regression_metrics(np.ones(5), np.arange(5.0))["r2"])


def test_log_loss_survives_zero_probabilities() -> None:
    out = classification_metrics(np.array([0, 1]), np.array([[0.0, 1.0], [1.0, 0.0]]))
    assert np.isfinite(out["log_loss"]) and out["log_loss"] > 30


def test_roc_auc_is_omitted_when_a_class_is_absent() -> None:
    assert "roc_auc" not in compute_metrics("binary", np.zeros(4, np.int64), np.full(4, 0.3))
    y_true, probs = probabilities(30, 3, 0)
    assert "roc_auc_ovr" not in compute_metrics("multiclass", np.where(y_true == 2, 1, y_true), probs)


@pytest.mark.parametrize("task", ["regression", "binary", "multiclass"])
def test_every_early_stopping_metric_is_computed(task: str) -> None:
    if task == "regression":
        y_true, outputs = np.arange(10.0), np.arange(10.0)[::-1]
    else:
        y_true, outputs = probabilities(60, 2 if task == "binary" else 3, 0)
        outputs = outputs[:, 1] if task == "binary" else outputs
    computed = compute_metrics(task, y_true, outputs)
    assert set(get_task(task).directions) - {"loss"} <= set(computed)
