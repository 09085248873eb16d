"""Live monitoring in the server: drift scores and data quality of each served model's recent requests against the
package's reference profile as Prometheus metrics, and alerts (docs/monitoring.md, "Live").

The request path does nothing for it: the prediction log (serve/predlog.py) already collects every request's columns
and predictions, and each time it flushes it hands the table of new rows to `LiveMonitor.offer`, which queues it.
A sender thread passes the version's profile (once) and the rows to the live monitoring process
(serve/livewindows.py), where the windows are kept and tested, so the passes never hold this interpreter while
requests wait. A reader thread sets the metrics and raises the alerts from what comes back. A failure there is
logged and counted; if the process dies, a new one starts with empty windows; serving goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pyarrow as pa

from luodi.monitor.alerts import Alerter, drift_conditions, metric_conditions, quality_conditions
from luodi.monitor.check import Checked
from luodi.serve.livewindows import Report, TesterSettings, rows_bytes
from luodi.serve.metrics import Metrics, multiprocess_dir
from luodi.serve.model import Loaded
from luodi.serve.settings import ServeConfig

log = logging.getLogger("luodi.serve")
INBOX_LIMIT = 64  # prediction-log tables waiting for the monitoring process; past it new ones are dropped (logged)
RESTART_S = 1.0  # at least this long between starts of the monitoring process
UNTESTED = ("model", "endpoint", "request_id", "latency_ms")  # log columns the windows do not need
ENTRY = "import sys; from luodi.serve.livewindows import main; main(sys.argv[1:])"  # the monitoring process


class LiveMonitor:
    """Hands served rows to the live monitoring process; turns its reports into metrics and alerts."""

    def __init__(self, config: ServeConfig, metrics: Metrics, home: Path, current: Callable[[str], Loaded]):
        self.config, self.metrics, self.current = config, metrics, current
        self.profiles: dict[tuple[str, int], tuple[dict[str, Any], Any] | None] = {}
        self.alerter = Alerter(config.alerts, home, "serve", on_outcome=metrics.alert_outcome)
        self.settings = TesterSettings(config.drift_window, config.drift_interval_s, multiprocess_dir(),
                                       os.getpid(), self.alerter.settings.enabled)
        self.inbox: queue.Queue[tuple[str, int, pa.Table] | None] = queue.Queue(INBOX_LIMIT)
        self.models: set[str] = set()  # that rows were sent for (what a lost process's error is counted on)
        self.process: subprocess.Popen[bytes] | None = None  # the monitoring process, started with the first rows
        self.outbox: Connection | None = None  # to it
        self.started = -RESTART_S
        self.sent: set[tuple[str, int]] = set()  # the profiles it has
        self.dropped = 0
        self.closing = False
        self.sender = threading.Thread(target=self._send_all, name="luodi-live-sender", daemon=True)
        self.sender.start()

    def offer(self, name: str, version: int, table: pa.Table) -> None:
        """New rows of a served version (the prediction log's listener, on its thread); never blocks."""
        try:
            self.inbox.put_nowait((name, version, table))
        except queue.Full:
            self.dropped += table.num_rows
            log.warning("live monitoring is behind: %d rows of %s not tested (%d so far)", table.num_rows, name,
                        self.dropped)

    def profile(self, name: str, version: int) -> tuple[dict[str, Any], Any] | None:
        """The version's profile and monitor settings, read once; None (logged once) for a package without one or
        a version no longer served."""
        key, loaded = (name, version), self.current(name)
        if loaded.version != version:  # rows of a version a reload replaced: they would reset the new one's window
            return None
        if key not in self.profiles:
            from luodi.errors import InputError
            from luodi.monitor.profile import read_profile

            try:
                self.profiles[key] = (read_profile(loaded.package.path, loaded.package.manifest),
                                      loaded.package.config.monitor)
            except InputError as error:
                log.warning("%s/%d: no live drift gauges: %s", name, version, error)
                self.profiles[key] = None
        return self.profiles[key]

    def _send_all(self) -> None:
        while (item := self.inbox.get()) is not None:
            name, version, table = item
            try:
                found = self.profile(name, version)
                if found is None or not self._running():
                    continue
                assert self.outbox is not None
                if (name, version) not in self.sent:
                    self.outbox.send(("profile", name, version, *found))
                    self.sent.add((name, version))
                self.models.add(name)
                self.outbox.send(("rows", name, version))
                self.outbox.send_bytes(rows_bytes(table.drop_columns([column for column in UNTESTED
                                                                      if column in table.column_names])))
            except Exception:  # noqa: BLE001 - the process is gone (a new one starts) or the rows were unusable
                log.exception("handing rows of %s to live monitoring failed", name)
                self.metrics.monitor_errors.labels(name).inc()
                self._stop()

    def _running(self) -> bool:
        """Whether the monitoring process runs, starting one if none does (at most once per RESTART_S)."""
        if self.process is not None and self.process.poll() is None:
            return True
        self._stop()
        if time.monotonic() - self.started < RESTART_S:
            return False
        self.started = time.monotonic()
        # A fresh interpreter (never a fork of a server that runs threads) that imports only what the tests need.
        inbox, outbox = os.pipe()  # server -> monitoring process
        reports, answers = os.pipe()  # and back
        try:
            self.process = subprocess.Popen([sys.executable, "-c", ENTRY, str(inbox), str(answers)],
                                            pass_fds=(inbox, answers), stdin=subprocess.DEVNULL)
        finally:
            os.close(inbox)  # only the child holds these ends now: each side sees the other's end close
            os.close(answers)
        self.outbox = Connection(outbox, readable=False)
        self.outbox.send(self.settings)
        self.sent = set()
        threading.Thread(target=self._read_all, args=(Connection(reports, writable=False), self.process),
                         name="luodi-live-reader", daemon=True).start()
        return True

    def _stop(self) -> None:
        if self.outbox is not None:
            self.outbox.close()
            self.outbox = None
        self.process = None

    def _read_all(self, reports: Connection, process: subprocess.Popen[bytes]) -> None:
        while True:
            try:
                report = reports.recv()
            except (EOFError, OSError):
                break
            try:
                self.apply(report)
            except Exception:  # noqa: BLE001 - a metric or alert failure never stops the reports
                log.exception("live monitoring of %s: applying its report failed", report.name)
        reports.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        if not self.closing:
            log.error("the live monitoring process exited (code %s); a new one starts with the next rows",
                      process.returncode)
            for name in list(self.models):  # the sender may add one meanwhile
                self.metrics.monitor_errors.labels(name).inc()

    def apply(self, report: Report) -> None:
        """Metrics and alerts from one report of the monitoring process."""
        name, metrics = report.name, self.metrics
        metrics.monitor_seconds.labels(name).inc(report.cpu_s)
        for feature, kinds in report.quality.items():
            for kind, count in kinds.items():
                if count:
                    metrics.quality.labels(name, feature, kind).inc(count)
        if report.error is not None:
            log.error("live monitoring of %s failed:\n%s", name, report.error)
            metrics.monitor_errors.labels(name).inc()
        if report.window_rows is not None:
            metrics.window_rows.labels(name).set(report.window_rows)
        if not report.features and not report.outputs:
            return
        share = self.set_gauges(name, report.features, report.outputs)
        if self.alerter.settings.enabled and report.rates is not None and report.window_rows:
            rows = report.window_rows
            conditions = drift_conditions(report.features + report.outputs) + \
                quality_conditions(report.rates, rows, self.alerter.settings) + \
                metric_conditions({"drift_share": share}, self.alerter.settings)
            self.alerter.evaluate(name, report.version, conditions, {"window_rows": rows})

    def set_gauges(self, name: str, features: list[Checked], outputs: list[Checked]) -> float:
        """Scores per test, drift per feature and output, and the share of them that drifted (returned)."""
        metrics = self.metrics
        for kind, items in (("input", features), ("output", outputs)):
            for item in items:
                metrics.drift.labels(name, item.name, kind).set(1.0 if item.drift else 0.0)
                for result in item.results:
                    metrics.drift_score.labels(name, item.name, result.aspect).set(result.score)
                    metrics.drift_threshold.labels(name, item.name, result.aspect).set(result.threshold)
        tested = features + outputs
        share = sum(item.drift for item in tested) / len(tested) if tested else 0.0
        metrics.drift_share.labels(name).set(share)
        return share

    def report_metric(self, model: str, version: int, values: dict[str, float],
                      details: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Alert on named metrics of a served model (live accuracy from delayed labels: `{"accuracy": 0.81}`) by the
        configured rules (`alert_rules`); returns the alerts fired. Safe from any thread."""
        return self.alerter.evaluate(model, version, metric_conditions(values, self.alerter.settings), details)

    def close(self) -> None:
        """Hand over what is queued, end the monitoring process, deliver the alerts still waiting."""
        timeout = min(10.0, self.config.drain_timeout_s)
        with contextlib.suppress(queue.Full):
            self.inbox.put(None, timeout=timeout)
        self.sender.join(timeout=timeout)
        self.closing = True
        process = self.process
        self._stop()
        if process is not None:
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.alerter.close(timeout_s=timeout)


def live_monitor(config: ServeConfig, metrics: Metrics, home: Path,
                 current: Callable[[str], Loaded]) -> LiveMonitor | None:
    """The live monitor, or None when `drift_window` is 0 (live drift and alerts off)."""
    return LiveMonitor(config, metrics, home, current) if config.drift_window > 0 else None
