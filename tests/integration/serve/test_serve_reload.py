"""Hot reload under load (RELIABILITY 21), admin alias moves, the prediction log, metrics and the OpenAPI page."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
from serving_helpers import RECORD, hammer, register_copy

from luodi.serve.routes import AliasMove
from luodi.store import Store

PREDICT = "/v1/models/tiny/predict"
ADMIN = "admin-key-0123456789abc"


def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_reload_under_load_has_zero_errors_and_refuses_a_broken_version(serve, store_home: Path) -> None:
    store = Store(store_home)
    store.set_alias("tiny", "production", 1)
    good = register_copy(store_home)
    broken = register_copy(store_home, corrupt=True)
    body = json.dumps({"records": [RECORD]}).encode()
    with serve("tiny@production", reload_interval_s=0.1) as server:
        stop = threading.Event()
        outcome: dict[int, int] = {}
        load = threading.Thread(target=lambda: outcome.update(hammer(server.url, PREDICT, body, 100_000, 4, stop)))
        load.start()
        try:
            time.sleep(0.5)
            store.set_alias("tiny", "production", good, reason="test: the new version")
            wait_for(lambda: server.client.get("/v1/models/tiny").json()["version"] == good)
            time.sleep(0.3)
            store.set_alias("tiny", "production", broken, reason="test: a corrupt version")
            wait_for(lambda: 'luodi_reloads_total{model="tiny",outcome="refused"} 1.0'
                     in server.client.get("/metrics").text)
            time.sleep(0.5)
        finally:
            stop.set()
            load.join(timeout=60)
        assert server.client.get("/v1/models/tiny").json()["version"] == good  # the old one keeps serving
        assert server.client.post(PREDICT, json={"records": [RECORD]}).json()["version"] == good
        metrics = server.client.get("/metrics").text
    assert set(outcome) == {200} and outcome[200] > 100, outcome
    assert f'luodi_model_info{{backend="torch",model="tiny",version="{good}"}} 1.0' in metrics
    assert 'luodi_model_info{backend="torch",model="tiny",version="1"} 0.0' in metrics


def test_admin_moves_an_alias_and_the_server_follows(serve, store_home: Path) -> None:
    Store(store_home).set_alias("tiny", "production", 1)
    version = register_copy(store_home)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with serve("tiny@production", admin_keys=(ADMIN,), headers=admin) as server:
        bad = server.client.post("/admin/models/tiny/alias", json={"alias": "production", "version": 99,
                                                                   "reason": "typo"})
        assert bad.status_code == 422 and "no version 99" in bad.json()["detail"]
        moved = server.client.post("/admin/models/tiny/alias", json={"alias": "production", "version": version,
                                                                     "reason": "canary passed"})
        assert moved.status_code == 200, moved.text
        assert moved.json()["reloaded"] is True and moved.json()["version"] == version
        assert server.client.post(PREDICT, json={"records": [RECORD]}).json()["version"] == version
        document = server.client.get("/openapi.json").json()
    # The admin routes are on the OpenAPI page when an admin key exists, documenting what they just did.
    alias = document["paths"]["/admin/models/tiny/alias"]["post"]
    body = alias["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["required"]) == set(AliasMove.__annotations__) == {"alias", "version", "reason"}
    documented = alias["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(documented["required"]) <= set(moved.json()) <= set(documented["properties"])
    assert {"200", "409", "401", "404"} <= set(document["paths"]["/admin/models/tiny/reload"]["post"]["responses"])
    event = Store(store_home).events("tiny@production")[0]
    assert event["detail"] == {"alias": "production", "from": 1, "to": version, "reason": "canary passed"}


def test_prediction_log_is_written_bounded_and_rotated(serve, store_home: Path) -> None:
    records = [RECORD, {**RECORD, "color": "blue", "income": None}]
    with serve(log_max_bytes=20_000) as server:
        for _ in range(3):
            assert server.client.post(PREDICT, json={"records": records}).status_code == 200
        inputs = {"inputs": [{"name": "numeric", "shape": [1, 3], "datatype": "FP64", "data": [0.3, 41, 52.5]},
                              {"name": "color", "shape": [1], "datatype": "BYTES", "data": ["red"]}], "id": "abc"}
        assert server.client.post("/v2/models/tiny/infer", json=inputs).status_code == 200
        folder = store_home / "predictions" / "tiny"
        wait_for(lambda: sum(pq.read_table(path).num_rows for path in folder.glob("part-*.parquet")) == 7)
        rows = [pq.read_table(path).to_pylist() for path in sorted(folder.glob("part-*.parquet"))]
        flat = [row for part in rows for row in part]
        assert {row["endpoint"] for row in flat} == {"v1_predict", "v2_infer"}
        first = next(row for row in flat if row["endpoint"] == "v1_predict")
        assert first["inputs"] == {"size": 0.3, "age": 41.0, "income": 52.5, "color": "red"}
        assert first["version"] == 1 and first["model"] == "tiny" and first["latency_ms"] > 0
        assert first["prediction"] in ("yes", "no")
        assert abs(sum(first["probabilities"].values()) - 1) < 1e-6
        assert next(row for row in flat if row["endpoint"] == "v2_infer")["request_id"] == "abc"
        # bounded: keep writing until the folder would pass the limit, then the oldest files go
        for _ in range(40):
            server.client.post(PREDICT, json={"records": records * 50})
            time.sleep(0.05)
        time.sleep(0.5)
        sizes = [path.stat().st_size for path in folder.glob("part-*.parquet")]
        assert sum(sizes) <= 20_000 + max(sizes)


def test_metrics_and_openapi(serve) -> None:
    with serve() as server:
        assert server.client.post(PREDICT, json={"records": [RECORD] * 3}).status_code == 200
        assert server.client.post(PREDICT, json={"records": [{"size": "x"}]}).status_code == 422
        metrics = server.client.get("/metrics").text
        document = server.client.get("/openapi.json").json()
        docs = server.client.get("/docs")
    for name in ("luodi_request_duration_seconds_bucket", "luodi_queue_wait_seconds_bucket",
                 "luodi_batch_rows_bucket", "luodi_queue_rows", "luodi_batch_duration_seconds_bucket"):
        assert name in metrics
    assert 'luodi_rows_total{model="tiny"} 3.0' in metrics
    assert 'luodi_requests_total{code="422",endpoint="v1_predict",model="tiny"} 1.0' in metrics
    request = document["paths"]["/v1/models/tiny/predict"]["post"]["requestBody"]["content"]["application/json"]
    record = document["components"]["schemas"]["tiny.Record"]
    assert set(record["properties"]) == {"size", "age", "income", "color"}
    assert request["schema"]["properties"]["records"]["maxItems"] == 1024
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert not any(path.startswith("/admin/") for path in document["paths"])  # no admin key: no admin routes
