"""Drift per feature over time (the web UI's monitoring curves) on a generated log-shaped window: the shifted
feature drifts from the bucket where the shift begins and not before, the other feature never does, every bucket
runs the same test, and buckets with too few rows are left out."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from luodi.config import MonitorConfig
from luodi.monitor.profile import PROFILERS
from luodi.ui.monitoring import MIN_BUCKET_ROWS, drift_over_time

SETTINGS = MonitorConfig()
START = datetime(2026, 12, 6, 1, 0, tzinfo=UTC).timestamp()


def window(minutes: int, rows_per_minute: int, shift_from: int, seed: int = 0) -> pa.Table:
    """A prediction-log-shaped table, one block of rows per minute; `size` moves by 2 from minute `shift_from`."""
    rng = np.random.default_rng(seed)
    minute = np.repeat(np.arange(minutes), rows_per_minute)
    offsets = rng.uniform(0, 59, len(minute))
    offsets[0], offsets[-1] = 0.0, 59.999  # the buckets then fall on the minutes
    stamps = (START + minute * 60 + offsets) * 1000
    size = rng.normal(0, 1, len(minute)) + 2.0 * (minute >= shift_from)
    color = rng.choice(["red", "green", "blue"], len(minute))
    prediction = np.where(size > 0, "yes", "no")
    order = np.argsort(stamps)
    return pa.table({
        "timestamp": pa.array(stamps[order].astype(np.int64), pa.int64()).cast(pa.timestamp("ms", "UTC")),
        "inputs": pa.StructArray.from_arrays([pa.array(size[order]), pa.array(color[order])], ["size", "color"]),
        "prediction": pa.array(prediction[order]),
    })


def profile() -> dict[str, dict[str, dict]]:
    rng = np.random.default_rng(1)
    size = pa.chunked_array([pa.array(rng.normal(0, 1, 3000))])
    color = pa.chunked_array([pa.array(rng.choice(["red", "green", "blue"], 3000))])
    labels = pa.chunked_array([pa.array(np.where(size.to_numpy() > 0, "yes", "no"))])
    return {"features": {"size": PROFILERS["numeric"].profile(size, SETTINGS),
                         "color": PROFILERS["category"].profile(color, SETTINGS)},
            "outputs": {"prediction": PROFILERS["category"].profile(labels, SETTINGS)}}


def test_the_shifted_feature_drifts_from_the_shift_on() -> None:
    found = drift_over_time(window(12, 60, shift_from=6), profile(), SETTINGS, buckets=12)
    series = found["series"]
    assert set(series) == {"size", "color", "prediction"}
    assert series["prediction"]["output"] and not series["size"]["output"]
    size = series["size"]
    assert len(size["points"]) == 12 and {point["test"] for point in size["points"]} == {size["test"]} == {"ks"}
    drifted = [point["drift"] for point in size["points"]]
    assert drifted == [False] * 6 + [True] * 6
    assert all(point["score"] < size["threshold"] for point in size["points"][6:])  # p-values below 0.01
    assert not any(point["drift"] for point in series["color"]["points"])
    assert [point["start"] for point in size["points"]] == sorted(point["start"] for point in size["points"])
    assert sum(point["rows"] for point in size["points"]) == 12 * 60


def test_every_bucket_runs_the_test_a_typical_bucket_gets() -> None:
    """Buckets of 1,500 rows: `auto` would pick ks up to 1,000 rows and wasserstein beyond; all use wasserstein."""
    found = drift_over_time(window(4, 1500, shift_from=2), profile(), SETTINGS, buckets=4)
    size = found["series"]["size"]
    assert {point["test"] for point in size["points"]} == {"wasserstein"}
    assert size["threshold"] == SETTINGS.wasserstein
    assert [point["drift"] for point in size["points"]] == [False, False, True, True]
    assert found["series"]["color"]["test"] == "jensen_shannon"


def test_buckets_with_too_few_rows_are_left_out() -> None:
    table = window(6, 100, shift_from=99)
    position = np.arange(table.num_rows)
    sparse = table.filter(pa.array((position % 100 < MIN_BUCKET_ROWS - 1) | (position >= 300)))  # minutes 0-2: few
    found = drift_over_time(sparse, profile(), SETTINGS, buckets=6)
    assert len(found["series"]["size"]["points"]) == 3  # minutes 3, 4 and 5
    assert found["min_rows"] == MIN_BUCKET_ROWS


def test_a_small_window_gets_fewer_buckets_with_enough_rows_each() -> None:
    found = drift_over_time(window(12, 10, shift_from=99), profile(), SETTINGS, buckets=12)  # 120 rows
    points = found["series"]["size"]["points"]
    assert len(points) == 120 // (2 * MIN_BUCKET_ROWS) and sum(point["rows"] for point in points) == 120
