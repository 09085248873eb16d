"""Live monitoring in a real server: drift gauges and data-quality counters on /metrics, webhook alerts to a real
local HTTP receiver (once per episode), a dead webhook that is logged while serving goes on, and several workers
reporting one shared window."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_monitor import luodi, rows, send

LIVE = {"drift_window": 300, "drift_interval_s": 0.2}


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of metric `name` on a /metrics page, by their sorted labels."""
    return {tuple(sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples if sample.name == name}


def drift(text: str) -> dict[str, float]:
    return {dict(labels)["feature"]: value for labels, value in samples(text, "luodi_drift").items()
            if dict(labels)["kind"] == "input"}


def wait_for(client: httpx.Client, check: Callable[[str], bool], timeout: float = 60) -> str:
    """/metrics once `check` holds on it (the live pass runs every 0.2 s on a worker thread)."""
    deadline = time.monotonic() + timeout
    while True:
        text = client.get("/metrics").text
        if check(text) or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def window_rows(text: str) -> float:
    return next(iter(samples(text, "luodi_drift_window_rows").values()), 0.0)


def test_drifted_traffic_moves_the_gauge_of_the_shifted_feature_only(serve: Callable[..., Any], tmp_path: Path,
                                                                     table_csv: Callable[..., Path]) -> None:
    with serve("tiny", **LIVE) as server:
        send(server.client, rows(table_csv, tmp_path, 300, seed=11))
        normal = wait_for(server.client, lambda text: window_rows(text) >= 300 and len(drift(text)) == 4)
        assert drift(normal) == {"size": 0.0, "age": 0.0, "income": 0.0, "color": 0.0}, drift(normal)
        scores = samples(normal, "luodi_drift_score")
        assert scores[(("check", "value"), ("feature", "size"), ("model", "tiny"))] > 0.01  # a ks p-value

        send(server.client, rows(table_csv, tmp_path, 300, seed=12, shift=2.5))
        shifted = wait_for(server.client, lambda text: drift(text).get("size") == 1.0)
        assert drift(shifted) == {"size": 1.0, "age": 0.0, "income": 0.0, "color": 0.0}, drift(shifted)
        score = samples(shifted, "luodi_drift_score")[(("check", "value"), ("feature", "size"), ("model", "tiny"))]
        threshold = samples(shifted, "luodi_drift_threshold")[
            (("check", "value"), ("feature", "size"), ("model", "tiny"))]
        assert score < threshold == 0.01
        assert 0 < samples(shifted, "luodi_drift_share")[(("model", "tiny"),)] < 1
        assert window_rows(shifted) == 300
        assert samples(shifted, "luodi_monitor_seconds_total")[(("model", "tiny"),)] > 0


def test_data_quality_counters_count_missing_unseen_and_out_of_range(serve: Callable[..., Any]) -> None:
    records = [{"size": 0.1, "age": 40, "income": None, "color": "red"},
               {"size": 0.2, "age": 500, "income": 50.0, "color": "teal"},
               {"size": 0.3, "age": 41, "income": 51.0, "color": "teal"},
               {"size": None, "age": 42, "income": 52.0, "color": None}]
    with serve("tiny", **LIVE) as server:
        for _ in range(3):
            assert server.client.post("/v1/models/tiny/predict", json={"records": records}).status_code == 200
        expected = {("color", "unseen"): 6.0, ("color", "missing"): 3.0, ("income", "missing"): 3.0,
                    ("size", "missing"): 3.0, ("age", "out_of_range"): 3.0}

        def counts(text: str) -> dict[tuple[str, str], float]:
            return {(dict(labels)["feature"], dict(labels)["issue"]): value
                    for labels, value in samples(text, "luodi_quality_issues_total").items()}

        text = wait_for(server.client, lambda text: counts(text) == expected, timeout=30)
        assert counts(text) == expected


def test_the_window_sees_every_request_while_the_log_keeps_its_sample(serve: Callable[..., Any], store_home: Path,
                                                                      tmp_path: Path,
                                                                      table_csv: Callable[..., Path]) -> None:
    """Live monitoring takes its rows from the prediction log's buffer, which then holds every request; only the
    sampled ones (`log_sample_rate`) are written."""
    import pyarrow.parquet as pq

    records = rows(table_csv, tmp_path, 300, seed=11)
    with serve("tiny", log_sample_rate=0.5, **LIVE) as server:
        for record in records:  # a request per row: each one sampled or not
            assert server.client.post("/v1/models/tiny/predict", json={"records": [record]}).status_code == 200
        text = wait_for(server.client, lambda text: window_rows(text) == 300 and len(drift(text)) == 4)
        assert window_rows(text) == 300
        missing = samples(text, "luodi_quality_issues_total")[
            (("feature", "income"), ("issue", "missing"), ("model", "tiny"))]
        assert missing == sum(record["income"] is None for record in records)
    logged = sum(pq.read_metadata(path).num_rows for path in (store_home / "predictions" / "tiny").glob("*.parquet"))
    assert 0 < logged < 300  # P(all 300 or none sampled) = 2 ** -299


def test_a_hot_reload_starts_a_new_window(serve: Callable[..., Any], store_home: Path, tmp_path: Path,
                                          table_csv: Callable[..., Path]) -> None:
    from serving_helpers import register_copy

    from luodi.store import Store

    store = Store(store_home)
    store.set_alias("tiny", "production", 1)
    version = register_copy(store_home)
    with serve("tiny@production", reload_interval_s=0.1, **LIVE) as server:
        send(server.client, rows(table_csv, tmp_path, 300, seed=12, shift=2.5))
        wait_for(server.client, lambda text: drift(text).get("size") == 1.0 and window_rows(text) == 300)
        store.set_alias("tiny", "production", version, reason="test: the new version")
        deadline = time.monotonic() + 30
        while server.client.get("/v1/models/tiny").json()["version"] != version:
            assert time.monotonic() < deadline, "the server did not reload"
            time.sleep(0.1)
        send(server.client, rows(table_csv, tmp_path, 100, seed=11))
        text = wait_for(server.client, lambda text: window_rows(text) == 100)
        assert window_rows(text) == 100 and drift(text)["size"] == 0.0  # the drifted rows were the old version's


class Receiver:
    """A real HTTP server on 127.0.0.1 that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server protocol
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def of(self, key: str) -> list[str]:
        return [alert["status"] for alert in self.received if alert["key"] == key]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def test_the_webhook_gets_one_alert_per_episode(serve: Callable[..., Any], store_home: Path, tmp_path: Path,
                                                receiver: Receiver, table_csv: Callable[..., Path]) -> None:
    with serve("tiny", alert_webhook=receiver.url, **LIVE) as server:
        send(server.client, rows(table_csv, tmp_path, 300, seed=12, shift=2.5))
        wait_for(server.client, lambda text: bool(receiver.of("drift:size")))
        time.sleep(1.5)  # several more passes over the same drifted window: no repeat within the cooldown
        assert receiver.of("drift:size") == ["firing"]
        alert = next(alert for alert in receiver.received if alert["key"] == "drift:size")
        assert alert["model"] == "tiny" and alert["version"] == 1 and alert["kind"] == "drift"
        assert alert["subject"] == "size" and alert["value"] < alert["threshold"] == 0.01
        assert {"status", "origin", "message", "since", "at", "details"} <= set(alert)
        assert alert["origin"] == "serve" and alert["details"]["window_rows"] == 300
        assert not any(key.startswith("drift:") for key in
                       {alert["key"] for alert in receiver.received} - {"drift:size", "drift:prediction",
                                                                         "drift:probabilities.no",
                                                                         "drift:probabilities.yes"})

        send(server.client, rows(table_csv, tmp_path, 300, seed=11))  # back to normal: the episode ends
        wait_for(server.client, lambda text: receiver.of("drift:size") == ["firing", "resolved"])
        time.sleep(1.0)
        assert receiver.of("drift:size") == ["firing", "resolved"]
        assert samples(server.client.get("/metrics").text, "luodi_alerts_total")[
            (("model", "tiny"), ("outcome", "sent"))] >= 2
    state = json.loads((store_home / "alerts" / "tiny.serve.json").read_text())
    assert "drift:size" not in state


def test_a_reported_metric_fires_and_resolves_its_rule(serve: Callable[..., Any], receiver: Receiver) -> None:
    """The hook live accuracy (delayed labels) reports through: rules over named metrics."""
    with serve("tiny", alert_webhook=receiver.url, alert_rules="accuracy<0.8", **LIVE) as server:
        live = server.state.live
        assert [alert["status"] for alert in live.report_metric("tiny", 1, {"accuracy": 0.7})] == ["firing"]
        assert live.report_metric("tiny", 1, {"accuracy": 0.75}) == []  # the same episode
        assert live.report_metric("tiny", 1, {"mae": 3.0}) == []  # no rule for it
        assert [alert["status"] for alert in live.report_metric("tiny", 1, {"accuracy": 0.9})] == ["resolved"]
        wait_for(server.client, lambda text: len(receiver.of("metric:accuracy")) == 2, timeout=30)
    assert receiver.of("metric:accuracy") == ["firing", "resolved"]
    firing = receiver.received[0]
    assert firing["kind"] == "metric" and firing["value"] == 0.7 and firing["threshold"] == 0.8


def test_luodi_monitor_alerts_once_per_episode(serve: Callable[..., Any], store_home: Path, tmp_path: Path,
                                               receiver: Receiver, table_csv: Callable[..., Path]) -> None:
    """The CLI run (cron-friendly): a second run over the same drifted log fires nothing new."""
    with serve("tiny", drift_window=0) as server:  # live monitoring off: only the CLI alerts
        send(server.client, rows(table_csv, tmp_path, 300, seed=12, shift=2.5))
    runs = [luodi(store_home, "tiny", "--json", "--no-report", "--alert-webhook", receiver.url,
                  "--alert-rules", "drift_share>0.99", cwd=tmp_path) for _ in range(2)]
    assert all(run.returncode == 0 for run in runs), runs[0].stderr
    first, second = (json.loads(run.stdout) for run in runs)
    assert "drift:size" in {alert["key"] for alert in first["alerts"]} and second["alerts"] == []
    assert receiver.of("drift:size") == ["firing"] and receiver.of("metric:drift_share") == []
    alert = next(alert for alert in receiver.received if alert["key"] == "drift:size")
    assert alert["origin"] == "monitor"
    assert alert == next(item for item in first["alerts"] if item["key"] == "drift:size")
    assert first["quality"]["income"]["missing"] == sum(record["income"] is None for record in
                                                        rows(table_csv, tmp_path, 300, seed=12))
    bad = luodi(store_home, "tiny", "--alert-webhook", "ftp://example.org/x", cwd=tmp_path)
    assert bad.returncode == 2 and "--alert-webhook: " in bad.stderr and "Traceback" not in bad.stderr


def test_a_dead_webhook_is_logged_and_serving_goes_on(serve: Callable[..., Any], tmp_path: Path,
                                                      table_csv: Callable[..., Path],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    dead = Receiver()
    url = dead.url
    dead.close()  # nothing listens there any more
    with serve("tiny", alert_webhook=url, **LIVE) as server:
        drifted = rows(table_csv, tmp_path, 300, seed=12, shift=2.5)
        send(server.client, drifted)
        text = wait_for(server.client, lambda text: bool(samples(text, "luodi_alerts_total")), timeout=30)
        send(server.client, drifted[:100])  # still answering
        assert server.client.get("/readyz").status_code == 200
        text = wait_for(server.client, lambda text: (("model", "tiny"), ("outcome", "failed")) in
                        samples(text, "luodi_alerts_total"), timeout=30)
        assert samples(text, "luodi_alerts_total")[(("model", "tiny"), ("outcome", "failed"))] >= 1
    origin = url.removesuffix("/hook")  # logged without its path (a webhook's path often holds its secret)
    messages = [record.getMessage() for record in caplog.records if "alert drift:" in record.getMessage()]
    assert messages and all(f"webhook {origin} failed" in message and "/hook" not in message for message in messages)


def test_a_failing_drift_computation_is_logged_and_counted(serve: Callable[..., Any], tmp_path: Path,
                                                           table_csv: Callable[..., Path],
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """Fault injection: a profile the tests cannot read makes every pass fail in the monitoring process; requests
    keep getting answers and the server logs the failure's traceback."""
    from luodi.serve.live import LiveMonitor

    original = LiveMonitor.profile

    def broken(self: LiveMonitor, name: str, version: int) -> Any:
        found = original(self, name, version)
        return None if found is None else ({"features": {"size": {"type": "numeric", "aspects": None}},
                                            "outputs": {}}, found[1])

    monkeypatch.setattr(LiveMonitor, "profile", broken)
    with serve("tiny", **LIVE) as server:
        send(server.client, rows(table_csv, tmp_path, 100, seed=11))
        text = wait_for(server.client, lambda text: bool(samples(text, "luodi_monitor_errors_total")))
        assert samples(text, "luodi_monitor_errors_total")[(("model", "tiny"),)] >= 1
        send(server.client, rows(table_csv, tmp_path, 100, seed=13))
    messages = [record.getMessage() for record in caplog.records if "live monitoring of tiny failed" in
                record.getMessage()]
    assert messages and "AttributeError" in messages[0]


def test_a_killed_monitoring_process_is_replaced(serve: Callable[..., Any], tmp_path: Path,
                                                 table_csv: Callable[..., Path]) -> None:
    """The drift passes run in a process of their own: killed, it is counted as an error, serving goes on, and a new
    one takes the next rows (with an empty window)."""
    import signal

    with serve("tiny", **LIVE) as server:
        send(server.client, rows(table_csv, tmp_path, 100, seed=11))
        wait_for(server.client, lambda text: window_rows(text) == 100)
        first = server.state.live.process
        os.kill(first.pid, signal.SIGKILL)
        text = wait_for(server.client, lambda text: bool(samples(text, "luodi_monitor_errors_total")))
        assert samples(text, "luodi_monitor_errors_total")[(("model", "tiny"),)] >= 1
        send(server.client, rows(table_csv, tmp_path, 300, seed=12, shift=2.5))  # still answering
        shifted = wait_for(server.client, lambda text: drift(text).get("size") == 1.0 and window_rows(text) == 300)
        assert drift(shifted)["size"] == 1.0 and window_rows(shifted) == 300
        assert server.state.live.process.pid != first.pid


@pytest.mark.slow  # starts `luodi serve --workers 2` (two processes loading torch)
def test_several_workers_report_one_shared_window(store_home: Path, tmp_path: Path,
                                                  table_csv: Callable[..., Path]) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "tmp").mkdir()  # the supervisor's Prometheus multiprocess folder goes there
    env = {**os.environ, "LUODI_HOME": str(store_home), "PYTHONWARNINGS": "ignore", "TMPDIR": str(tmp_path / "tmp")}
    command = [sys.executable, "-m", "luodi.cli", "serve", "tiny", "--workers", "2", "--port", str(port),
               "--drift-window", "300", "--drift-interval-s", "0.3", "--reload-interval-s", "0"]
    with open(tmp_path / "serve.log", "wb") as server_log:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=server_log)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and process.poll() is None, "the server did not start"
            time.sleep(0.3)
        drifted = rows(table_csv, tmp_path, 300, seed=12, shift=2.5)
        missing = sum(record["income"] is None for record in drifted)
        for start in range(0, 300, 12):  # a new connection per request: the kernel spreads them over the workers
            with httpx.Client(base_url=url, headers={"Connection": "close"}) as client:
                send(client, drifted[start:start + 12])
        with httpx.Client(base_url=url) as client:
            text = wait_for(client, lambda text: drift(text).get("size") == 1.0 and window_rows(text) == 300 and
                            samples(text, "luodi_quality_issues_total").get(
                                (("feature", "income"), ("issue", "missing"), ("model", "tiny"))) == missing)
        assert drift(text) == {"size": 1.0, "age": 0.0, "income": 0.0, "color": 0.0}, drift(text)
        assert window_rows(text) == 300  # both workers' windows tested together, not each worker's share
        assert len(list((tmp_path / "tmp").glob("luodi-metrics-*/luodi-window-tiny-*.arrow"))) == 2  # both served
        assert len(samples(text, "luodi_drift_window_rows")) == 1  # one series, not one per worker
        assert samples(text, "luodi_quality_issues_total")[
            (("feature", "income"), ("issue", "missing"), ("model", "tiny"))] == missing
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_labels_sent_to_the_server_alert_on_live_accuracy(serve: Callable[..., Any], receiver: Receiver,
                                                          tmp_path: Path, table_csv: Callable[..., Path]) -> None:
    """Feedback posted to the server scores the logged predictions and runs the rules over live accuracy."""
    with serve("tiny", alert_webhook=receiver.url, alert_rules="accuracy<0.5", log_flush_s=0.1, **LIVE) as server:
        answer = server.client.post("/v1/models/tiny/predict", json={"records": rows(table_csv, tmp_path, 8, seed=3)})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        time.sleep(0.5)  # the prediction log is written every 0.1 s
        flip = {"yes": "no", "no": "yes"}
        wrong = [{"request_id": body["request_id"], "row": row, "target": flip[item["prediction"]]}
                 for row, item in enumerate(body["predictions"])]
        assert server.client.post("/v1/models/tiny/feedback", json={"feedback": wrong}).status_code == 200
        wait_for(server.client, lambda text: bool(receiver.of("metric:accuracy")), timeout=30)
    assert receiver.of("metric:accuracy") == ["firing"]
    firing = next(alert for alert in receiver.received if alert["key"] == "metric:accuracy")
    assert firing["value"] == 0.0 and firing["details"]["labelled_rows"] == 8
