"""The live monitoring process: each served model's sliding window of request rows, tested against its reference
profile in a process of its own, so a pass never holds the server's interpreter (docs/monitoring.md, "Live").

The server (serve/live.py) starts it (`main` in a fresh interpreter, with two pipe descriptors) and sends it
its settings, then a version's profile once and the prediction log's tables of new rows (Arrow IPC). Here each
table's data quality is counted at once and its rows join the model's window (the newest `limit` rows; a new version
starts a new window); every `interval_s` each window is tested as `luodi monitor` tests the log (monitor/check.py).
With several server workers the window is written to the Prometheus multiprocess folder and the newest `limit` rows
of all workers' windows are tested together, so every worker reports the same scores. What comes back is a `Report`
per model: quality counts, the tested features and outputs, the window's quality rates (for alerts) and the CPU
seconds spent here; the server sets its metrics and raises alerts from it. A failing pass is reported as an error;
the process ends when the server closes its end of the pipe (or dies).
"""

from __future__ import annotations

import functools
import signal
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pyarrow as pa

MIN_ROWS = 50  # a window of fewer rows is not tested (no gauges, no alerts) yet


@dataclass(frozen=True)
class TesterSettings:
    limit: int  # rows per window (`drift_window`)
    interval_s: float  # between passes (`drift_interval_s`)
    shared: str | None  # the Prometheus multiprocess folder, with several workers
    owner: int  # the server worker's pid: names its window file there
    alerts: bool  # whether the server alerts (then the window's quality rates are reported)


@dataclass
class Report:
    """What one model's rows or pass gave, for the server's metrics and alerts."""

    name: str
    version: int
    cpu_s: float = 0.0
    quality: dict[str, dict[str, int]] = field(default_factory=dict)  # counts of the new rows
    window_rows: int | None = None  # set by a pass
    features: list[Any] = field(default_factory=list)  # monitor.check.Checked, when the window was tested
    outputs: list[Any] = field(default_factory=list)
    rates: dict[str, dict[str, float]] | None = None  # the window's quality rates (when alerting)
    error: str | None = None  # a failure's traceback


@dataclass
class Window:
    """The newest rows of one served version: at least `limit` once that many arrived, in the tables they came in."""

    version: int
    profile: dict[str, Any]
    settings: Any  # config.MonitorConfig
    tables: deque[pa.Table] = field(default_factory=deque)
    rows: int = 0

    def add(self, table: pa.Table, limit: int) -> None:
        self.tables.append(table)
        self.rows += table.num_rows
        while self.rows - self.tables[0].num_rows >= limit:
            self.rows -= self.tables.popleft().num_rows

    def newest(self, limit: int) -> pa.Table:
        table = pa.concat_tables(self.tables)
        return table.slice(max(0, table.num_rows - limit)).combine_chunks()


def rows_table(data: bytes) -> pa.Table:
    import pyarrow.ipc as ipc

    with ipc.open_stream(pa.py_buffer(data)) as reader:
        return reader.read_all()


def rows_bytes(table: pa.Table) -> pa.Buffer:
    """A table as Arrow IPC stream bytes (what `rows_table` reads back)."""
    import pyarrow.ipc as ipc

    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


class Tester:
    """The windows of this process and what is done with them."""

    def __init__(self, settings: TesterSettings):
        self.settings = settings
        self.profiles: dict[tuple[str, int], tuple[dict[str, Any], Any]] = {}
        self.windows: dict[str, Window] = {}

    def add(self, name: str, version: int, data: bytes) -> Report:
        """Count the new rows' (`rows_bytes` of a log table) quality and add them to their model's window."""
        from luodi.monitor.quality import quality_counts

        report, table = Report(name, version), rows_table(data)
        profile, settings = self.profiles[(name, version)]
        window = self.windows.get(name)
        if window is None or window.version != version:  # first rows, or a hot reload swapped the version
            window = self.windows[name] = Window(version, profile, settings)
        window.add(table, self.settings.limit)
        report.quality = quality_counts(profile["features"], table)
        return report

    def test(self, name: str) -> Report:
        """Test the model's window (all workers' windows, when shared)."""
        from luodi.monitor.check import check_entries
        from luodi.monitor.quality import quality_counts, quality_rates

        window = self.windows[name]
        report = Report(name, window.version)
        table = window.newest(self.settings.limit)
        if self.settings.shared is not None:
            table = self.shared_window(name, window.version, table)
        report.window_rows = rows = table.num_rows
        if rows < MIN_ROWS:
            return report
        notes: list[str] = []
        report.features = check_entries(window.profile["features"], table, window.settings, False, notes)
        report.outputs = check_entries(window.profile["outputs"], table, window.settings, True, notes)
        if self.settings.alerts:
            report.rates = quality_rates(quality_counts(window.profile["features"], table), rows)
        return report

    def shared_window(self, name: str, version: int, table: pa.Table) -> pa.Table:
        """Write this worker's window beside the others' and return the newest `limit` rows of all of them (files of
        workers that stopped writing for three intervals are left out and removed)."""
        import pyarrow.compute as pc
        import pyarrow.ipc as ipc

        from luodi.io import atomic_write

        folder = Path(str(self.settings.shared))
        prefix = f"luodi-window-{name}-"

        def write(handle: Any) -> None:
            with ipc.new_file(handle, table.schema) as writer:
                writer.write_table(table)

        atomic_write(folder / f"{prefix}{self.settings.owner}.arrow", write)
        tables, stale = [], time.time() - 3 * self.settings.interval_s - 5
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
                tables.append(found.filter(pc.equal(found.column("version"), version)))
        merged = pa.concat_tables(tables) if tables else table
        if merged.num_rows > self.settings.limit:
            newest = pc.sort_indices(merged, sort_keys=[("timestamp", "descending")])
            merged = merged.take(newest[:self.settings.limit])
        return merged


def timed(name: str, version: int, work: Any) -> Report:
    """`work()`'s report with this process's CPU seconds; a failure becomes a report of the error."""
    started = time.process_time()
    try:
        report: Report = work()
    except Exception:  # noqa: BLE001 - reported to the server, which logs and counts it; the process goes on
        report = Report(name, version, error=traceback.format_exc())
    report.cpu_s = time.process_time() - started
    return report


def run(inbox: Connection, outbox: Connection) -> None:
    """The process's loop: take the settings, then profiles and rows as they come, test every window each
    `interval_s`, until the server closes `inbox`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which then closes the pipe: the end
    # Warm up: the tests' modules (scipy's are imported where used) load now, not in the first pass.
    import scipy.spatial.distance  # noqa: F401
    import scipy.stats  # noqa: F401

    import luodi.monitor.check  # noqa: F401
    try:
        settings: TesterSettings = inbox.recv()
    except (EOFError, OSError):
        return
    tester = Tester(settings)
    due = time.monotonic() + settings.interval_s
    while True:
        if inbox.poll(max(0.0, due - time.monotonic())):
            try:
                message = inbox.recv()
                if message[0] == "profile":
                    _, name, version, profile, monitor_settings = message
                    tester.profiles[(name, version)] = (profile, monitor_settings)
                    continue
                _, name, version = message
                data = inbox.recv_bytes()
            except (EOFError, OSError):  # the server closed its end or died
                return
            outbox.send(timed(name, version, functools.partial(tester.add, name, version, data)))
        if time.monotonic() >= due:
            for name, window in list(tester.windows.items()):
                outbox.send(timed(name, window.version, functools.partial(tester.test, name)))
            due = time.monotonic() + settings.interval_s


def main(descriptors: list[str]) -> None:
    """The process's entry: `python -c "...; main(sys.argv[1:])" IN OUT` (the server's pipe descriptors)."""
    run(Connection(int(descriptors[0]), writable=False), Connection(int(descriptors[1]), readable=False))
