"""The numbers behind the report's tables and plots: per-class scores, confusion matrix, ROC / PR and calibration
curves for classifiers; residuals for regression.

Every function takes encoded targets and activated outputs (as the task's `score` does) and returns plain
JSON-ready dicts, so the same values go into the report's visible tables, its JSON block and `--json`. Arrays that
only draw a plot (curve points, scatter samples) sit under a `plot` key, which the JSON outputs leave out.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from luodi.tasks import ClassifierTask

CURVE_POINTS = 200  # points kept per ROC / PR curve: enough to draw it, few enough to keep the report small
SCATTER_POINTS = 2000  # points drawn in regression scatter plots (a seeded sample beyond that)
CALIBRATION_BINS = 10


def downsample(*arrays: np.ndarray, points: int = CURVE_POINTS) -> list[list[float]]:
    """At most `points` evenly spaced entries of aligned arrays, always keeping the first and last."""
    size = len(arrays[0])
    keep = np.unique(np.linspace(0, size - 1, points).round().astype(int)) if size > points else np.arange(size)
    return [np.asarray(array, np.float64)[keep].tolist() for array in arrays]


def confusion(y_true: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """(classes, classes) counts: row = true class, column = predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, predicted), 1)
    return matrix


def per_class(matrix: np.ndarray, class_names: list[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support of every class, from the confusion matrix (0 where undefined)."""
    rows = []
    for index, name in enumerate(class_names):
        hits = float(matrix[index, index])
        predicted, actual = float(matrix[:, index].sum()), float(matrix[index].sum())
        precision = hits / predicted if predicted else 0.0
        recall = hits / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"class": name, "precision": precision, "recall": recall, "f1": f1, "support": int(actual)})
    return rows


def calibration(correct: np.ndarray, confidence: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Reliability diagram over equal-width confidence bins, and the expected calibration error (ECE)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    points = []
    ece = 0.0
    for index in range(bins):
        mask = which == index
        count = int(mask.sum())
        if not count:
            continue
        mean_confidence, observed = float(confidence[mask].mean()), float(correct[mask].mean())
        ece += count / len(correct) * abs(observed - mean_confidence)
        points.append({"bin": [float(edges[index]), float(edges[index + 1])], "confidence": mean_confidence,
                       "observed": observed, "rows": count})
    return {"bins": points, "ece": ece}


def classification_details(task: ClassifierTask, y_true: np.ndarray, outputs: np.ndarray,
                           class_names: list[str]) -> dict[str, Any]:
    """Confusion matrix, per-class table, ROC and PR curves (one-vs-rest for multiclass), calibration.

    Binary tasks get one ROC / PR curve, for the positive class (the second class, named under `positive_class`);
    multiclass tasks one per class present in `y_true`.
    Calibration is of P(positive) for binary, of the top class's probability otherwise.
    """
    from sklearn import metrics

    probabilities = task.probabilities(outputs)
    binary = task.binary
    y_true = np.asarray(y_true).astype(np.int64)
    predicted = probabilities.argmax(axis=1)
    matrix = confusion(y_true, predicted, len(class_names))
    curves: dict[str, list[dict[str, Any]]] = {"roc": [], "pr": []}
    targets = [1] if binary else range(len(class_names))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a class with no positives has no curve: skipped below
        for index in targets:
            positive = y_true == index
            if positive.all() or not positive.any():
                continue
            scores = probabilities[:, index]
            fpr, tpr, _ = metrics.roc_curve(positive, scores)
            precision, recall, _ = metrics.precision_recall_curve(positive, scores)
            fpr_points, tpr_points = downsample(fpr, tpr)
            recall_points, precision_points = downsample(recall, precision)
            curves["roc"].append({"class": class_names[index], "auc": float(metrics.auc(fpr, tpr)),
                                  "plot": {"fpr": fpr_points, "tpr": tpr_points}})
            curves["pr"].append({"class": class_names[index],
                                 "average_precision": float(metrics.average_precision_score(positive, scores)),
                                 "prevalence": float(positive.mean()),
                                 "plot": {"recall": recall_points, "precision": precision_points}})
    if binary:
        reliability = calibration((y_true == 1).astype(np.float64), probabilities[:, 1])
        reliability["of"] = f"P({class_names[1]})"
    else:
        reliability = calibration((predicted == y_true).astype(np.float64), probabilities.max(axis=1))
        reliability["of"] = "probability of the predicted class"
    named = {"positive_class": class_names[1]} if binary else {}
    return {"classes": class_names, **named, "confusion": matrix.tolist(),
            "per_class": per_class(matrix, class_names), **curves, "calibration": reliability}


def regression_details(y_true: np.ndarray, y_pred: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Residual (predicted - actual) summary, its histogram, and a sample of (actual, predicted) pairs to plot."""
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    residual = y_pred - y_true
    sample = np.arange(len(y_true))
    if len(sample) > SCATTER_POINTS:
        sample = np.sort(np.random.default_rng(seed).choice(len(sample), SCATTER_POINTS, replace=False))
    quantiles = np.quantile(residual, [0.05, 0.25, 0.5, 0.75, 0.95])
    counts, edges = np.histogram(residual, bins=min(40, max(5, len(residual) // 5)))
    return {
        "residuals": {"mean": float(residual.mean()), "std": float(residual.std()),
                      **dict(zip(["p05", "p25", "p50", "p75", "p95"], map(float, quantiles), strict=True))},
        "plot": {"actual": y_true[sample].tolist(), "predicted": y_pred[sample].tolist(),
                 "histogram": {"counts": counts.tolist(), "edges": edges.tolist()}},
    }
