"""The web UI's monitoring data over a real prediction log: the session's tiny model served by a real server, rows
and delayed labels sent over HTTP, then `luodi.ui.monitoring.monitoring_data` read from the store. Its whole-window
result is exactly `luodi monitor`'s, its live accuracy is the share of right labels the test sent, and a model
that was never served says so instead of failing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from serving_helpers import register_copy

import luodi.api as api
from luodi.errors import InputError
from luodi.store import Store
from luodi.ui.monitoring import logged_versions, monitoring_data


def records(write_table: Callable[..., Path], folder: Path, count: int) -> list[dict[str, Any]]:
    frame = pd.read_csv(write_table(folder / "rows.csv", rows=count, seed=3)).drop(columns="label")
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")  # type: ignore[no-any-return]


def test_monitoring_data_of_a_served_model(serve: Callable[..., Any], store_home: Path, tmp_path: Path,
                                           table_csv: Callable[..., Path]) -> None:
    store = Store(store_home)
    never = monitoring_data(store, "tiny")
    assert never["version"] == 1 and never["versions"] == [] and never["current"] is None
    assert "luodi serve tiny/1" in never["problem"]
    assert not (store_home / "predictions").exists()  # reading changed nothing

    rows = records(table_csv, tmp_path, 120)
    answers: list[tuple[str, int, str]] = []
    with serve("tiny") as server:
        for start in range(0, len(rows), 20):
            response = server.client.post("/v1/models/tiny/predict", json={"records": rows[start:start + 20]})
            assert response.status_code == 200, response.text
            body = response.json()
            answers += [(body["request_id"], row, item["prediction"]) for row, item in enumerate(body["predictions"])]
        # labels for the first 50 rows: every fifth one contradicts the prediction
        labels = [{"request_id": rid, "row": row, "target": label if index % 5 else ("no" if label == "yes" else "yes")}
                  for index, (rid, row, label) in enumerate(answers[:50])]
        accepted = server.client.post("/v1/models/tiny/feedback", json={"feedback": labels})
        assert accepted.status_code == 200, accepted.text

    data = monitoring_data(store, "tiny")
    assert data["problem"] is None and data["version"] == 1
    assert [(row["version"], row["rows"]) for row in data["versions"]] == [(1, 120)]
    expected = api.monitor("tiny", home=store_home, out=None).to_dict()
    assert data["current"] == {**expected, "report": None}
    live = data["current"]["live"]
    assert live["labelled_rows"] == 50 and live["metrics"]["accuracy"] == pytest.approx(40 / 50)
    assert sum(point["rows"] for point in live["points"]) == 50
    traffic = data["current"]["traffic"]
    assert traffic["points"] and all(point["latency_p95_ms"] >= point["latency_p50_ms"] > 0
                                     for point in traffic["points"])
    series = data["drift_over_time"]["series"]
    assert {"size", "age", "income", "color", "prediction"} <= set(series)
    for line in series.values():  # every point of a curve ran its test on enough rows
        assert all(point["rows"] >= data["drift_over_time"]["min_rows"] for point in line["points"])
        assert {point["test"] for point in line["points"]} <= {line["test"]}

    register_copy(store_home)  # version 2, never served: its page says so, version 1's data stays reachable
    assert monitoring_data(store, "tiny")["version"] == 1  # the version the log heard from last
    second = monitoring_data(store, "tiny", 2)
    assert second["current"] is None and "No prediction of tiny/2" in second["problem"]
    assert logged_versions(store, "tiny")[0]["version"] == 1
    window = monitoring_data(store, "tiny", 1, since="2000-01-01", until="2000-01-02")
    assert window["current"] is None and "no rows of tiny/1 between" in window["problem"]
    with pytest.raises(InputError, match="since 'yesterday'"):
        monitoring_data(store, "tiny", since="yesterday")
    with pytest.raises(InputError, match="not found"):
        monitoring_data(store, "nothing")
