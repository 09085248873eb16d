"""Task metrics from targets and model outputs: the numbers every report, CLI and store record agree on."""

from __future__ import annotations

import warnings

import numpy as np


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MSE, RMSE, MAE and R² on the original scale of the target."""
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    error = y_pred - y_true
    mse = float(np.mean(error**2))
    variance = float(np.mean((y_true - y_true.mean()) ** 2))
    return {
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(np.mean(np.abs(error))),
        "r2": 1.0 - mse / variance if variance > 0 else float("nan"),
    }


def row_log_loss(y_true: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """-log P(true class) per row, with probabilities clipped to [1e-15, 1] and renormalized."""
    clipped = np.clip(np.asarray(probabilities, np.float64), 1e-15, 1.0)
    clipped /= clipped.sum(axis=1, keepdims=True)
    losses: np.ndarray = -np.log(clipped[np.arange(len(y_true)), np.asarray(y_true).astype(np.int64)])
    return losses


def log_loss(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean log loss: the reported `log_loss`, and what permutation importance and slices measure."""
    return float(np.mean(row_log_loss(y_true, probabilities)))


def class_probabilities(task: str, outputs: np.ndarray) -> np.ndarray:
    """(rows, classes) probabilities from activated classifier outputs (P(positive) for binary)."""
    outputs = np.asarray(outputs, np.float64)
    if task == "binary":
        positive = outputs.reshape(-1)
        return np.stack([1 - positive, positive], axis=1)
    return outputs


def classification_metrics(y_true: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Accuracy, precision / recall / F1 (macro, weighted; plain for binary), ROC-AUC and log loss.

    `y_true` holds class indices; `probabilities` is (rows, classes). For two classes ROC-AUC is the usual
    binary one; for more it is one-vs-rest, macro-averaged, and omitted when a class is absent from `y_true`.
    """
    from sklearn import metrics

    y_true = np.asarray(y_true).astype(np.int64)
    probabilities = np.asarray(probabilities, np.float64)
    n_classes = probabilities.shape[1]
    labels = list(range(n_classes))
    y_pred = probabilities.argmax(axis=1)
    out: dict[str, float] = {"accuracy": float(np.mean(y_pred == y_true))}
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = metrics.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0
        )
        out[f"precision_{average}"], out[f"recall_{average}"], out[f"f1_{average}"] = (
            float(precision), float(recall), float(f1)
        )
    out["log_loss"] = log_loss(y_true, probabilities)
    present = np.unique(y_true)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if n_classes == 2:
            precision, recall, f1, _ = metrics.precision_recall_fscore_support(
                y_true, y_pred, labels=[1], average="binary", zero_division=0
            )
            out.update(precision=float(precision), recall=float(recall), f1=float(f1))
            if len(present) == 2:
                out["roc_auc"] = float(metrics.roc_auc_score(y_true, probabilities[:, 1]))
        elif len(present) == n_classes:
            out["roc_auc_ovr"] = float(metrics.roc_auc_score(y_true, probabilities, multi_class="ovr",
                                                             labels=labels))
    return out


def compute_metrics(task: str, y_true: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
    """Metrics for a task from encoded targets and activated outputs (values, P(positive) or class probs)."""
    if task == "regression":
        return regression_metrics(y_true, outputs)
    return classification_metrics(y_true, class_probabilities(task, outputs))
