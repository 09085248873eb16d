"""Live monitoring in the server: a bounded sliding window of each served model's requests, drift scores and data
quality against the package's reference profile as Prometheus metrics, and alerts (docs/monitoring.md, "Live").

On the request path a request only appends (its columns, its predictions, the time) to its model's window: O(1), no
copy. Every `drift_interval_s` a task takes the window and, on a worker thread (never the event loop), builds the
prediction log's table from it (serve/predlog.py's `Pending`), runs the same tests as `luodi monitor`
(monitor/check.py) and sets the gauges; the rows that arrived since the last pass are counted for data quality
(monitor/quality.py), sooner when a window's worth of them is waiting, so what the server holds stays bounded.
With several workers each one also writes its window to the Prometheus multiprocess folder and tests the newest
`drift_window` rows of all workers' windows together, so every worker reports the same scores (`livemostrecent`
gauges) and the quality counters add up. A failure there is logged and counted; serving goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from luodi.monitor.alerts import Alerter, drift_conditions, metric_conditions, quality_conditions
from luodi.monitor.check import Checked, check_entries
from luodi.monitor.quality import quality_counts, quality_rates
from luodi.serve.metrics import Metrics, multiprocess_dir
from luodi.serve.model import Loaded
from luodi.serve.predlog import Pending
from luodi.serve.settings import ServeConfig
from luodi.tasks import Predictions

log = logging.getLogger("luodi.serve")
MIN_ROWS = 50  # a window of fewer rows is not tested (no gauges, no alerts) yet


@dataclass
class Window:
    """The newest requests of one served version: at least `limit` rows once that many arrived, at most `limit` plus
    one request's rows; and the requests that arrived since the last pass (for the quality counters)."""

    loaded: Loaded
    limit: int
    chunks: deque[tuple[float, dict[str, Any], Predictions]] = field(default_factory=deque)
    rows: int = 0
    fresh: list[tuple[float, dict[str, Any], Predictions]] = field(default_factory=list)
    fresh_rows: int = 0

    def add(self, at: float, columns: dict[str, Any], result: Predictions) -> bool:
        """Append a request; True when the fresh requests reached `limit` rows (time to count them)."""
        chunk = (at, columns, result)
        rows = len(result)
        self.chunks.append(chunk)
        self.rows += rows
        while self.rows - len(self.chunks[0][2]) >= self.limit:
            self.rows -= len(self.chunks.popleft()[2])
        self.fresh.append(chunk)
        self.fresh_rows += rows
        return self.fresh_rows >= self.limit

    def take(self, window: bool) -> tuple[list[tuple[float, dict[str, Any], Predictions]], list[Any]]:
        """The window (when asked) and the fresh requests (which start again empty); on the event loop, where `add`
        runs."""
        fresh, self.fresh, self.fresh_rows = self.fresh, [], 0
        return list(self.chunks) if window else [], fresh


def log_table(loaded: Loaded, chunks: list[tuple[float, dict[str, Any], Predictions]]) -> pa.Table:
    """Requests as the prediction log stores them (its `inputs` struct and output columns)."""
    pending = Pending(loaded.name, loaded.version, loaded.schema)
    for at, columns, result in chunks:
        pending.add(at, "live", None, 0.0, columns, result)
    return pending.table()


def inputs_table(loaded: Loaded, chunks: list[tuple[float, dict[str, Any], Predictions]]) -> pa.Table:
    """Only the `inputs` struct of `log_table` (what the quality counts read), without building the outputs."""
    fields = loaded.schema.fields
    arrays = [field.kind.to_log(list(itertools.chain.from_iterable(columns[field.name] for _, columns, _ in chunks)))
              for field in fields]
    return pa.table({"inputs": pa.StructArray.from_arrays(arrays, [field.name for field in fields])})


class LiveMonitor:
    """The windows of every served model, the pass that tests them, and the alerts they raise."""

    def __init__(self, config: ServeConfig, metrics: Metrics, home: Path):
        self.config, self.metrics = config, metrics
        self.windows: dict[str, Window] = {}
        self.profiles: dict[tuple[str, int], tuple[dict[str, Any], Any] | None] = {}
        self.alerter = Alerter(config.alerts, home, "serve", on_outcome=metrics.alert_outcome)
        self.shared = multiprocess_dir()
        self.wake = asyncio.Event()  # set on the event loop when fresh requests wait to be counted

    def record(self, loaded: Loaded, columns: dict[str, Any], result: Predictions) -> None:
        """Add one answered request to its model's window (on the event loop; O(1))."""
        window = self.windows.get(loaded.name)
        if window is None or window.loaded is not loaded:  # first request, or a reload swapped the version
            window = self.windows[loaded.name] = Window(loaded, self.config.drift_window)
        if window.add(time.time(), columns, result):
            self.wake.set()

    async def run(self) -> None:
        """Every `drift_interval_s`: test each window on a worker thread; in between, count the fresh requests'
        quality whenever a window's worth arrived (so what waits to be counted stays bounded)."""
        loop = asyncio.get_running_loop()
        due = loop.time() + self.config.drift_interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), max(0.0, due - loop.time()))
            self.wake.clear()
            testing = loop.time() >= due
            if testing:
                due = loop.time() + self.config.drift_interval_s
            await self.assess_all(testing)

    async def assess_all(self, testing: bool = True) -> None:
        for name, window in list(self.windows.items()):
            chunks, fresh = window.take(testing)
            try:
                await asyncio.to_thread(self.timed, window.loaded, chunks, fresh)
            except Exception:  # noqa: BLE001 - a drift computation error never takes serving down
                log.exception("live monitoring of %s failed", name)
                self.metrics.monitor_errors.labels(name).inc()

    def profile(self, loaded: Loaded) -> tuple[dict[str, Any], Any] | None:
        """The version's profile and monitor settings, read once; None (logged once) for a package without one."""
        key = (loaded.name, loaded.version)
        if key not in self.profiles:
            from luodi.errors import InputError
            from luodi.monitor.profile import read_profile

            try:
                self.profiles[key] = (read_profile(loaded.package.path, loaded.package.manifest),
                                      loaded.package.config.monitor)
            except InputError as error:
                log.warning("%s/%d: no live drift gauges: %s", loaded.name, loaded.version, error)
                self.profiles[key] = None
        return self.profiles[key]

    def timed(self, loaded: Loaded, chunks: list[Any], fresh: list[Any]) -> None:
        """`assess`, its CPU time counted (`luodi_monitor_seconds_total`)."""
        started = time.thread_time()
        try:
            self.assess(loaded, chunks, fresh)
        finally:
            self.metrics.monitor_seconds.labels(loaded.name).inc(time.thread_time() - started)

    def assess(self, loaded: Loaded, chunks: list[Any], fresh: list[Any]) -> None:
        """Count the fresh rows' data quality; test the window (all workers' windows, when `chunks` is given) and set
        the gauges; alert."""
        found = self.profile(loaded)
        if found is None:
            return
        profile, settings = found
        name = loaded.name
        if fresh:
            for feature, kinds in quality_counts(profile["features"], inputs_table(loaded, fresh)).items():
                for kind, count in kinds.items():
                    if count:
                        self.metrics.quality.labels(name, feature, kind).inc(count)
        if not chunks:
            return
        table = log_table(loaded, chunks)
        if self.shared is not None:
            table = self.shared_window(loaded, table)
        rows = table.num_rows
        self.metrics.window_rows.labels(name).set(rows)
        if rows < MIN_ROWS:
            return
        notes: list[str] = []
        features = check_entries(profile["features"], table, settings, False, notes)
        outputs = check_entries(profile["outputs"], table, settings, True, notes)
        share = self.set_gauges(name, features, outputs)
        if self.alerter.settings.enabled:
            rates = quality_rates(quality_counts(profile["features"], table), rows)
            conditions = drift_conditions(features + outputs) + \
                quality_conditions(rates, rows, self.alerter.settings) + \
                metric_conditions({"drift_share": share}, self.alerter.settings)
            self.alerter.evaluate(name, loaded.version, conditions, {"window_rows": rows})

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

    def shared_window(self, loaded: Loaded, table: pa.Table) -> pa.Table:
        """Write this worker's window beside the others' and return the newest `drift_window` rows of all of them
        (files of workers that stopped writing for three intervals are left out and removed)."""
        import pyarrow.compute as pc
        import pyarrow.ipc as ipc

        from luodi.io import atomic_write

        folder = Path(str(self.shared))
        prefix = f"luodi-window-{loaded.name}-"

        def write(handle: Any) -> None:
            with ipc.new_file(handle, table.schema) as writer:
                writer.write_table(table)

        atomic_write(folder / f"{prefix}{os.getpid()}.arrow", write)
        tables, stale = [], time.time() - 3 * self.config.drift_interval_s - 5
        for path in folder.glob(f"{prefix}*.arrow"):
            try:
                if path.stat().st_mtime < stale:
                    path.unlink(missing_ok=True)
                    continue
                with ipc.open_file(path) as reader:
                    found = reader.read_all()
            except (OSError, pa.ArrowInvalid):  # removed or replaced while we read: the next pass sees it
                continue
            if found.schema.equals(table.schema):
                tables.append(found.filter(pc.equal(found.column("version"), loaded.version)))
        merged = pa.concat_tables(tables) if tables else table
        if merged.num_rows > self.config.drift_window:
            newest = pc.sort_indices(merged, sort_keys=[("timestamp", "descending")])
            merged = merged.take(newest[:self.config.drift_window])
        return merged

    def report_metric(self, model: str, version: int, values: dict[str, float],
                      details: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Alert on named metrics of a served model (live accuracy from delayed labels: `{"accuracy": 0.81}`) by the
        configured rules (`alert_rules`); returns the alerts fired. Safe from any thread."""
        return self.alerter.evaluate(model, version, metric_conditions(values, self.alerter.settings), details)

    def close(self) -> None:
        self.alerter.close(timeout_s=min(10.0, self.config.drain_timeout_s))


def live_monitor(config: ServeConfig, metrics: Metrics, home: Path) -> LiveMonitor | None:
    """The live monitor, or None when `drift_window` is 0 (live drift and alerts off)."""
    return LiveMonitor(config, metrics, home) if config.drift_window > 0 else None
