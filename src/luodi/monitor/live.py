"""Live accuracy: logged predictions joined with their delayed labels (feedback.py), scored overall, over time and
by slice. A label's prediction output says how: a label is right or wrong (`accuracy`), a number is off by some
amount (`mae`, `rmse`).

    live_metrics(store, "churn@production", since="1h")   # {"labelled_rows": 120, "accuracy": 0.91, ...}

is the current value for alerts and gauges; `score_window` is what `luodi monitor` reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from luodi.monitor.feedback import Labels, join_labels, labels_of, read_feedback, unmatched_count
from luodi.monitor.log import time_buckets
from luodi.store import Store

TIME_BUCKETS = 20
SLICE_BINS = 4
MIN_SLICE_ROWS = 5
# What each metric means for a kind of prediction output, and which way is better (alerts read `direction`).
DIRECTIONS = {"accuracy": "max", "mae": "min", "rmse": "min"}


def scores(labels: Labels, predicted: pa.ChunkedArray, target: pa.ChunkedArray) -> dict[str, np.ndarray]:
    """Per row: `correct` (0/1) for a label, `error` (prediction - target) for a number."""
    if labels.numeric:
        error = predicted.to_numpy().astype(np.float64) - target.to_numpy().astype(np.float64)
        return {"error": error}
    same = pc.fill_null(pc.equal(predicted, target), False)
    return {"correct": same.to_numpy(zero_copy_only=False).astype(np.float64)}


def summarize(row_scores: dict[str, np.ndarray], mask: np.ndarray | slice) -> dict[str, float]:
    if "error" in row_scores:
        error = row_scores["error"][mask]
        return {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error ** 2)))}
    return {"accuracy": float(np.mean(row_scores["correct"][mask]))}


def over_time(stamps: pa.ChunkedArray, row_scores: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """The metrics per time bucket of the predictions (when they were made, not when labelled)."""
    buckets = time_buckets(stamps, TIME_BUCKETS)
    points = []
    for bucket in range(buckets.count):
        inside = buckets.index == bucket
        if inside.any():
            points.append({"start": buckets.start + bucket * buckets.width, "rows": int(inside.sum()),
                           **summarize(row_scores, inside)})
    return points


def by_slice(joined: pa.Table, features: dict[str, str], row_scores: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """The metrics per value of each category and binary input and per quantile bin of each number, worst first."""
    from luodi.evaluate.slices import numeric_groups, value_groups

    inputs = joined.column("inputs")
    logged = {field.name for field in inputs.type}
    out: list[dict[str, Any]] = []
    for name, kind in features.items():
        if name not in logged or kind not in ("numeric", "category", "binary"):
            continue
        column = pc.struct_field(inputs, name)
        groups, names = numeric_groups(column, SLICE_BINS) if kind == "numeric" else value_groups(column)
        for index, label in enumerate(names):
            mask = groups == index
            if int(mask.sum()) >= MIN_SLICE_ROWS:
                out.append({"feature": name, "slice": label, "rows": int(mask.sum()), **summarize(row_scores, mask)})
    metric = "mae" if "error" in row_scores else "accuracy"
    sign = -1.0 if metric == "mae" else 1.0  # worst first: the largest error, the lowest accuracy
    out.sort(key=lambda item: (sign * float(item[metric]), str(item["feature"]), str(item["slice"])))
    return out


def score_window(log: pa.Table, feedback: pa.Table | None, labels: Labels,
                 features: dict[str, str]) -> dict[str, Any]:
    """Live accuracy of a window of the log: labelled rows, metrics overall, per time bucket and per slice."""
    joined = join_labels(log, feedback)
    result: dict[str, Any] = {"labelled_rows": joined.num_rows, "logged_rows": log.num_rows,
                              "unmatched_labels": unmatched_count(feedback, joined),
                              "metrics": {}, "directions": {}, "points": [], "slices": []}
    if not joined.num_rows:
        return result
    row_scores = scores(labels, joined.column(labels.spec.name), joined.column("target"))
    metrics = summarize(row_scores, slice(None))
    result.update(metrics=metrics, directions={name: DIRECTIONS[name] for name in metrics},
                  points=over_time(joined.column("timestamp"), row_scores),
                  slices=by_slice(joined, features, row_scores))
    return result


def live_metrics(store: Store | str | Path | None, model: str, *, since: str | None = "1h",
                 until: str | None = None) -> dict[str, Any]:
    """The current live metrics of a model version (`name`, `name@alias`, `name/N`) over [since, until):
    `{"model", "version", "labelled_rows", "accuracy"}` for a classifier, `mae` and `rmse` for a regression, and
    `directions` (`max` or `min` per metric). Metrics are absent while no logged prediction has a label."""
    from luodi.monitor.log import parse_time, read_window
    from luodi.package import verify_package

    store = store if isinstance(store, Store) else Store(store)
    version = store.resolve(model)
    manifest = verify_package(version.path)
    window = read_window(store.home, version.name, version.version, parse_time(since, "since"),
                         parse_time(until, "until"))
    scored = score_window(window.table, read_feedback(store.home, version.name), labels_of(manifest),
                          input_types(manifest))
    return {"model": version.name, "version": version.version, "labelled_rows": scored["labelled_rows"],
            **scored["metrics"], "directions": scored["directions"]}


def input_types(manifest: dict[str, Any]) -> dict[str, str]:
    """Input feature name -> type, from the package's config."""
    return {feature["name"]: feature["type"] for feature in manifest["config"].get("input_features", [])}
