"""Prometheus metrics of one server: latency, queue wait, batch sizes, queue depth, rows, errors, model versions.

Each app owns its registry (no module-level state). With several worker processes the supervisor sets
PROMETHEUS_MULTIPROC_DIR before the workers start: every process then writes its values to files there,
and /metrics in any worker reads them all (prometheus_client's multiprocess mode), so counts are whole.
Label values are bounded: `model` is a served model's name and `endpoint` one of a fixed set.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from luodi.serve.batcher import BatchStats

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """The server's metrics; children for known labels are bound once, so a request pays a dict lookup."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter("luodi_requests", "HTTP requests by model, endpoint and status code.",
                                ["model", "endpoint", "code"], registry=registry)
        self.latency = Histogram("luodi_request_duration_seconds", "Time from request to response.",
                                 ["model", "endpoint"], buckets=LATENCY_BUCKETS, registry=registry)
        self.queue_wait = Histogram("luodi_queue_wait_seconds", "Time a request waited in its model's queue.",
                                    ["model"], buckets=LATENCY_BUCKETS, registry=registry)
        self.inference = Histogram("luodi_batch_duration_seconds", "Model time per batch (encode, run, decode).",
                                   ["model"], buckets=LATENCY_BUCKETS, registry=registry)
        self.batch_rows = Histogram("luodi_batch_rows", "Rows per batch the model ran.", ["model"],
                                    buckets=BATCH_BUCKETS, registry=registry)
        self.rows = Counter("luodi_rows", "Rows predicted.", ["model"], registry=registry)
        self.queue_depth = Gauge("luodi_queue_rows", "Rows waiting in the model's queue.", ["model"],
                                 multiprocess_mode="livesum", registry=registry)
        self.model_info = Gauge("luodi_model_info", "1 for the version being served, 0 for one it replaced.",
                                ["model", "version", "backend"], multiprocess_mode="livemax", registry=registry)
        self.reloads = Counter("luodi_reloads", "Hot reloads by outcome (loaded, refused).", ["model", "outcome"],
                               registry=registry)
        self.unseen = Counter("luodi_unseen_values", "Request values never seen in training (answered as unknown, "
                              "or refused when strict), by model and column.", ["model", "column"], registry=registry)
        # Live monitoring (serve/live.py): every worker tests the same shared window, so the latest value is the value.
        self.drift = Gauge("luodi_drift", "1 when a feature (kind=input) or output drifted in the live window.",
                           ["model", "feature", "kind"], multiprocess_mode="livemostrecent", registry=registry)
        self.drift_score = Gauge("luodi_drift_score", "Score of the live window's drift test of a feature or output "
                                 "per check (value, missing, oov, length): a p-value (ks, chi2, rates: drift below "
                                 "the threshold) or a distance (wasserstein, psi, jensen_shannon: drift at or above).",
                                 ["model", "feature", "check"], multiprocess_mode="livemostrecent", registry=registry)
        self.drift_threshold = Gauge("luodi_drift_threshold", "The threshold of luodi_drift_score's test.",
                                     ["model", "feature", "check"], multiprocess_mode="livemostrecent",
                                     registry=registry)
        self.drift_share = Gauge("luodi_drift_share", "Share of the tested features and outputs that drifted in the "
                                 "live window (the overall drift score).", ["model"],
                                 multiprocess_mode="livemostrecent", registry=registry)
        self.window_rows = Gauge("luodi_drift_window_rows", "Rows in the live drift window.", ["model"],
                                 multiprocess_mode="livemostrecent", registry=registry)
        self.quality = Counter("luodi_quality_issues", "Request values that are missing, unseen (a category the "
                               "reference profile lacks) or out_of_range (a number outside the training range), by "
                               "model, feature and issue.", ["model", "feature", "issue"], registry=registry)
        self.monitor_errors = Counter("luodi_monitor_errors", "Failed live monitoring passes (logged).", ["model"],
                                      registry=registry)
        self.monitor_seconds = Counter("luodi_monitor_seconds", "CPU seconds the live monitoring passes took (in "
                                       "the live monitoring process).", ["model"], registry=registry)
        self.alerts = Counter("luodi_alerts", "Alert deliveries by outcome (sent, failed, dropped).",
                              ["model", "outcome"], registry=registry)
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._latency: dict[tuple[str, str], Any] = {}

    def observe_request(self, model: str, endpoint: str, code: int, seconds: float) -> None:
        key = (model, endpoint, code)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = self.requests.labels(model, endpoint, str(code))
        counter.inc()
        histogram = self._latency.get(key[:2])
        if histogram is None:
            histogram = self._latency[key[:2]] = self.latency.labels(model, endpoint)
        histogram.observe(seconds)

    def batch_observer(self, model: str) -> Any:
        """A callback for the model's batcher."""
        wait, inference = self.queue_wait.labels(model), self.inference.labels(model)
        rows, total = self.batch_rows.labels(model), self.rows.labels(model)

        def observe(stats: BatchStats) -> None:
            for seconds in stats.waits:
                wait.observe(seconds)
            inference.observe(stats.seconds)
            rows.observe(stats.rows)
            total.inc(stats.rows)

        return observe

    def alert_outcome(self, model: str, outcome: str) -> None:
        self.alerts.labels(model, outcome).inc()

    def depth_observer(self, model: str) -> Any:
        return self.queue_depth.labels(model).set

    def serving(self, model: str, version: int, backend: str, previous: tuple[int, str] | None = None) -> None:
        if previous is not None:
            self.model_info.labels(model, str(previous[0]), previous[1]).set(0)
        self.model_info.labels(model, str(version), backend).set(1)

    def render(self) -> tuple[bytes, str]:
        """The exposition text: this registry, or every worker's files in multiprocess mode."""
        if multiprocess_dir() is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
