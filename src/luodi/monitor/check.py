"""`luodi monitor`: a model version's reference profile against a window of its prediction log.

    result = check(store, "churn@prod", since="24h", out="monitor.html")
    result.to_dict()["features"]["tenure"]   # {"test": "ks", "score": 0.003, "threshold": 0.01, "drift": true, ...}

Per input feature and per output, every test of drift.py runs on the window's rows (a distribution test per
aspect, the missing rate, a text's out-of-vocabulary rate); a feature drifted when any of its tests did. Thresholds
come from the `monitor:` section of the package's config unless `settings` are given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from luodi.config import MonitorConfig, validate_config
from luodi.monitor.drift import Result, compare, shown
from luodi.monitor.feedback import labels_of, read_feedback
from luodi.monitor.live import input_types, score_window
from luodi.monitor.log import Window, parse_time, read_window, time_buckets
from luodi.monitor.profile import PROFILERS, ImageProfiler, Profiler, read_profile
from luodi.monitor.quality import quality_counts
from luodi.store import ModelVersion, Store

TIME_BUCKETS = 40  # points of the latency and throughput curves


@dataclass
class Checked:
    """The tests of one input feature or output."""

    name: str
    type: str
    results: list[Result]

    @property
    def drift(self) -> bool:
        return any(result.drift for result in self.results)

    def to_dict(self) -> dict[str, Any]:
        """The first test (the distribution's) up front: test, score, threshold; `drift` if any test drifted."""
        main = self.results[0]
        return {"type": self.type, "test": main.test, "aspect": main.aspect, "score": main.score,
                "threshold": main.threshold, "drift": self.drift, "rows": main.rows,
                "checks": [result.to_dict() for result in self.results]}


@dataclass
class MonitorResult:
    model: str
    version: int
    package: str
    rows: int
    since: str | None
    until: str | None
    first: str
    last: str
    features: list[Checked]
    outputs: list[Checked]
    traffic: dict[str, Any]  # per time bucket: start, rows per second, latency p50 / p95 (ms)
    notes: list[str] = field(default_factory=list)
    report: str | None = None
    live: dict[str, Any] = field(default_factory=dict)  # live accuracy from delayed labels (live.score_window)
    quality: dict[str, dict[str, int]] = field(default_factory=dict)  # per feature: missing, unseen, out_of_range
    alerts: list[dict[str, Any]] = field(default_factory=list)  # what this run fired (monitor/alerts.py)

    @property
    def drift(self) -> bool:
        return any(item.drift for item in self.features + self.outputs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "version": self.version, "package": self.package, "rows": self.rows,
            "window": {"since": self.since, "until": self.until, "first": self.first, "last": self.last},
            "drift": self.drift, "drifted": [item.name for item in self.features + self.outputs if item.drift],
            "features": {item.name: item.to_dict() for item in self.features},
            "outputs": {item.name: item.to_dict() for item in self.outputs},
            "traffic": self.traffic, "live": self.live, "quality": self.quality, "alerts": self.alerts,
            "notes": self.notes, "report": self.report,
        }

    def rows_table(self) -> list[tuple[str, str, float, float, bool]]:
        """(feature, test, score, threshold, drift) per test, for the printed table: rate tests only where the
        rate is not zero on both sides."""
        table = []
        for item, prefix in [(item, "") for item in self.features] + [(item, "output ") for item in self.outputs]:
            for result in shown(item.results):
                label = prefix + item.name + ("" if result.aspect == "value" else f" ({result.aspect})")
                table.append((label, result.test, result.score, result.threshold, result.drift))
        return table


def logged_column(table: pa.Table, name: str, output: bool) -> pa.ChunkedArray | None:
    """A feature's column from the log's `inputs` struct, or an output's (`<output>.<part>` from a struct)."""
    if not output:
        inputs = table.column("inputs")
        if name not in {field.name for field in inputs.type}:
            return None
        return pc.struct_field(inputs, name)
    if name in table.column_names:
        return table.column(name)
    base, _, part = name.partition(".")
    if part and base in table.column_names and part in {field.name for field in table.column(base).type}:
        return pc.struct_field(table.column(base), part)
    return None


def check_entries(entries: dict[str, Any], table: pa.Table, settings: MonitorConfig, output: bool,
                  notes: list[str]) -> list[Checked]:
    checked = []
    for name, entry in entries.items():
        column = logged_column(table, name, output)
        if column is None:
            notes.append(f"{'output' if output else 'feature'} {name!r} ({entry['type']}) is not in the prediction "
                         "log: not tested")
            continue
        profiler: Profiler = ImageProfiler() if entry["type"] == "image" else PROFILERS[entry["type"]]
        results = compare(name, entry, profiler.measure(column, entry), settings)
        if results:
            checked.append(Checked(name, entry["type"], results))
    return checked


def traffic(window: Window) -> dict[str, Any]:
    """Logged rows per second and request latency (p50, p95) per time bucket; rows are sampled by the server's
    log_sample_rate, so throughput is that of the logged rows."""
    latency = window.table.column("latency_ms").to_numpy(zero_copy_only=False).astype(np.float64)
    buckets = time_buckets(window.table.column("timestamp"), TIME_BUCKETS)
    start, width, index = buckets.start, buckets.width, buckets.index
    points = []
    for bucket in range(buckets.count):
        inside = index == bucket
        if not inside.any():
            continue
        points.append({"start": start + bucket * width, "rows_per_s": float(inside.sum() / width),
                       "latency_p50_ms": float(np.percentile(latency[inside], 50)),
                       "latency_p95_ms": float(np.percentile(latency[inside], 95))})
    return {"bucket_s": width, "points": points, "latency_p50_ms": float(np.percentile(latency, 50)),
            "latency_p95_ms": float(np.percentile(latency, 95)), "rows_per_s": float(len(index) / buckets.span)}


def check(store: Store, model: str, *, since: str | None = None, until: str | None = None,
          out: str | Path | None = None, settings: MonitorConfig | None = None) -> MonitorResult:
    """Run the drift tests of a model version (`name`, `name@alias`, `name/3`) on its logged rows in
    [since, until) and, with `out`, write the monitoring page there."""
    from luodi.package import MANIFEST, verify_package  # here: the server's live monitoring process needs no torch

    begin, end = parse_time(since, "--since"), parse_time(until, "--until")
    version = store.resolve(model)
    manifest = verify_package(version.path)
    profile = read_profile(version.path, manifest)
    if settings is None:
        settings = validate_config(manifest["config"], f"{version.path / MANIFEST} config").monitor
    window = read_window(store.home, version.name, version.version, begin, end)
    result = check_window(store, version, manifest, profile, settings, window)
    if out is not None:
        from luodi.io import atomic_write_text
        from luodi.monitor.report import render_monitor

        atomic_write_text(Path(out), render_monitor(result, profile, settings))
        result.report = str(Path(out).resolve())
    return result


def check_window(store: Store, version: ModelVersion, manifest: dict[str, Any], profile: dict[str, Any],
                 settings: MonitorConfig, window: Window) -> MonitorResult:
    """The tests of `check` on a window already read, against the verified package's manifest and profile."""
    notes: list[str] = []
    features = check_entries(profile["features"], window.table, settings, False, notes)
    outputs = check_entries(profile["outputs"], window.table, settings, True, notes)
    stamps = window.table.column("timestamp")
    return MonitorResult(
        version.name, version.version, str(version.path), window.table.num_rows,
        window.since.isoformat() if window.since else None, window.until.isoformat() if window.until else None,
        pc.min(stamps).as_py().isoformat(), pc.max(stamps).as_py().isoformat(), features, outputs, traffic(window),
        notes, live=score_window(window.table, read_feedback(store.home, version.name), labels_of(manifest),
                                 input_types(manifest)),
        quality=quality_counts(profile["features"], window.table))
