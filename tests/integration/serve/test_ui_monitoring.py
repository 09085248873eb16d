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


def test_hostile_column_names_render_as_text_on_the_monitoring_page(tmp_path: Path) -> None:
    """Column names and values are the user's data: the page escapes them in its tables and its SVG charts."""
    import html

    import httpx
    import numpy as np

    from luodi.serve.model import Reference
    from luodi.serve.server import background
    from luodi.serve.settings import make_config
    from luodi.ui.server import background as ui_background

    hostile = "<script>alert(1)</script>"
    rng = np.random.default_rng(0)
    value = rng.normal(0, 1, 150)
    pd.DataFrame({hostile: value, "kind": rng.choice(["<img src=x onerror=alert(2)>", "b"], 150),
                  "label": np.where(value > 0, "yes", "no")}).to_csv(tmp_path / "hostile.csv", index=False)
    home = tmp_path / "home"
    api.train({"name": "hostile", "data": {"train": str(tmp_path / "hostile.csv")},
               "target": {"name": "label", "task": "binary"},
               "input_features": [{"name": hostile, "type": "numeric"}, {"name": "kind", "type": "category"}],
               "model": {"hidden_sizes": [4]}, "trainer": {"epochs": 1}, "runtime": {"threads": 1}},
              home=home, progress="silent")
    records = [{hostile: float(rng.normal()), "kind": "<img src=x onerror=alert(2)>"} for _ in range(60)]
    config = make_config(port=0, reload_interval_s=0, log_flush_s=0.2)
    with background([Reference("hostile", home)], config, home) as running, \
            httpx.Client(base_url=running.url, timeout=30) as client:
        assert client.post("/v1/models/hostile/predict", json={"records": records}).status_code == 200
    with ui_background(make_config(port=0), home) as ui, httpx.Client(base_url=ui.url, timeout=60) as client:
        page = client.get("/models/hostile/monitoring")
    assert page.status_code == 200, page.text[:500]
    assert hostile not in page.text and "<img src=x" not in page.text
    assert f'data-feature="{html.escape(hostile)}"' in page.text  # in the drift table and its chart, as text
