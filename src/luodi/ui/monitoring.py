"""The monitoring page of the web UI (/models/{name}/monitoring): drift per feature over time, live accuracy over time,
latency and throughput of a served model, read from its prediction log and delayed labels with the tests and numbers
of `luodi monitor` (monitor/check.py) and nothing of its own but the time buckets of the drift curves.

    monitoring_data(store, "churn")             # the version the log heard from last, its whole log
    monitoring_data(store, "churn", 3, since="24h")

A model that was never served, a version with no logged rows or a package without a profile is not an error here:
the page says what is missing (`problem`) and what to do, as `luodi monitor` would.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from luodi.config import MonitorConfig, validate_config
from luodi.errors import InputError
from luodi.monitor.check import check_entries, check_window
from luodi.monitor.drift import choose_test
from luodi.monitor.log import log_files, log_tables, parse_time, read_window, time_buckets
from luodi.monitor.profile import read_profile
from luodi.package import MANIFEST, verify_package
from luodi.store import ModelVersion, Store, validate_name
from luodi.ui import charts
from luodi.ui.state import UI, NotFound, query_text

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

DRIFT_BUCKETS = 12  # points of each feature's drift curve
CHART_WIDTH = 395  # pixels: three charts side by side on a 1280-pixel screen
MIN_BUCKET_ROWS = 20  # a bucket with fewer logged rows is left out of the drift curves: a test on so few says little
VERIFIED_KEPT = 64  # packages whose verified manifest is remembered


class VerifiedManifests:
    """`verify_package` once per package state: a view re-hashes a package (hundreds of MB for a language model) only
    when a file under it was added, removed, resized or touched since the last view; otherwise the manifest that
    passed verification is reused. The key is every file's (path, size, mtime_ns): a stat per file, no reading."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kept: dict[Path, tuple[tuple[tuple[str, int, int], ...], dict[str, Any]]] = {}

    def __call__(self, folder: Path) -> dict[str, Any]:
        stamp = tuple(sorted((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns)
                             for path in folder.rglob("*") if path.is_file() for stat in (path.stat(),)))
        with self.lock:
            kept = self.kept.get(folder)
        if kept is not None and kept[0] == stamp:
            return copy.deepcopy(kept[1])
        manifest = verify_package(folder)
        with self.lock:
            if len(self.kept) >= VERIFIED_KEPT:
                self.kept.pop(next(iter(self.kept)))
            self.kept[folder] = (stamp, copy.deepcopy(manifest))
        return manifest


verified_manifest = VerifiedManifests()


def logged_versions(store: Store, name: str) -> list[dict[str, Any]]:
    """The versions of model `name` its prediction log holds rows of: version, rows, last (ISO time of its newest
    row), newest first. Only the version and timestamp columns are read."""
    tables = list(log_tables(log_files(store.home, name), columns=["version", "timestamp"]))
    if not tables:
        return []
    table = pa.concat_tables(tables, promote_options="permissive")
    grouped = table.group_by("version").aggregate([("timestamp", "max"), ("timestamp", "count")]).to_pylist()
    found = [{"version": int(row["version"]), "rows": int(row["timestamp_count"]),
              "last": row["timestamp_max"].isoformat()} for row in grouped]
    return sorted(found, key=lambda row: (row["last"], row["version"]), reverse=True)


def chosen_version(store: Store, name: str, version: int | None, logged: list[dict[str, Any]]) -> ModelVersion:
    """The version asked for; else the one the log heard from last (the one being served); else the newest."""
    validate_name(name, "model name")
    if version is not None:
        return store.get_version(name, version)
    if logged:
        return store.get_version(name, logged[0]["version"])
    return store.resolve(name)


def drift_over_time(table: pa.Table, profile: dict[str, Any], settings: MonitorConfig,
                    buckets: int = DRIFT_BUCKETS) -> dict[str, Any]:
    """Each feature's and output's drift per time bucket of the window: its distribution test's score, the
    threshold, and whether any of its tests drifted. At most `buckets` buckets, fewer on a small window (about
    2 * MIN_BUCKET_ROWS rows a bucket at least); every bucket runs the same test (the one `auto` picks for a typical
    bucket's size), so a curve's points compare with each other and with one threshold."""
    stamps = table.column("timestamp")
    split = time_buckets(stamps, max(1, min(buckets, table.num_rows // (2 * MIN_BUCKET_ROWS))))
    sizes = np.bincount(split.index, minlength=split.count)
    kept = [bucket for bucket in range(split.count) if sizes[bucket] >= MIN_BUCKET_ROWS]
    typical = int(np.median(sizes[kept])) if kept else 0
    fixed = settings.model_copy(update={"numeric_test": choose_test("numbers", typical, settings),
                                        "category_test": choose_test("categories", typical, settings)})
    series: dict[str, dict[str, Any]] = {}
    for bucket in kept:
        part = table.filter(pa.array(split.index == bucket))
        start = split.start + bucket * split.width
        for output, entries in ((False, profile["features"]), (True, profile["outputs"])):
            for item in check_entries(entries, part, fixed, output, []):
                main = item.results[0]
                line = series.setdefault(item.name, {"type": item.type, "output": output, "test": main.test,
                                                     "aspect": main.aspect, "threshold": main.threshold,
                                                     "points": []})
                line["points"].append({"start": start, "rows": int(sizes[bucket]), "test": main.test,
                                       "score": main.score, "drift": item.drift})
    return {"bucket_s": split.width, "min_rows": MIN_BUCKET_ROWS, "series": series}


def monitoring_data(store: Store, name: str, version: int | None = None, *, since: str | None = None,
                    until: str | None = None) -> dict[str, Any]:
    """What the monitoring page of model `name` shows: the versions its log holds, the chosen version's whole-window
    result (`luodi monitor --json`: drift per feature, traffic, live accuracy, data quality) as `current`, and
    `drift_over_time`. `problem` says why there is nothing to show (never served, no rows in the window, no
    profile); `since` / `until` as `luodi monitor` reads them (a bad one is an InputError)."""
    begin, end = parse_time(since, "since"), parse_time(until, "until")
    logged = logged_versions(store, name)
    chosen = chosen_version(store, name, version, logged)
    data: dict[str, Any] = {"model": chosen.name, "version": chosen.version, "versions": logged,
                            "since": since or None, "until": until or None, "problem": None, "current": None,
                            "drift_over_time": None}
    if not any(row["version"] == chosen.version for row in logged):
        data["problem"] = (f"No prediction of {chosen.ref} is in the log yet: serve it (`luodi serve "
                           f"{chosen.ref}`, log_sample_rate above 0) and send it requests.")
        return data
    try:
        manifest = verified_manifest(chosen.path)
        profile = read_profile(chosen.path, manifest)
        window = read_window(store.home, chosen.name, chosen.version, begin, end)
    except InputError as error:  # no rows in the window, no profile, a corrupt package: said on the page
        data["problem"] = str(error)
        return data
    settings = validate_config(manifest["config"], f"{chosen.path / MANIFEST} config").monitor
    data["current"] = check_window(store, chosen, manifest, profile, settings, window).to_dict()
    data["drift_over_time"] = drift_over_time(window.table, profile, settings)
    return data


def minutes(points: list[dict[str, Any]], first: float, value: str) -> list[tuple[float, float]]:
    """(minutes since `first`, point[value]) for a chart."""
    return [((point["start"] - first) / 60, point[value]) for point in points]


TESTS = {"ks": "KS p-value", "chi2": "chi-squared p-value", "wasserstein": "Wasserstein distance", "psi": "PSI",
         "jensen_shannon": "Jensen-Shannon distance", "missing_rate": "missing-rate change",
         "oov_rate": "out-of-vocabulary change"}
P_VALUES = ("ks", "chi2")  # drift below the threshold; every other test drifts at or above it


def monitoring_charts(data: dict[str, Any]) -> dict[str, Any]:
    """The page's SVG line charts (charts.line_chart): one per feature and output (its test's score per bucket and
    the threshold), live metrics, latency p50 / p95 and logged rows per second; x in minutes since the first row."""
    current, over_time = data["current"], data["drift_over_time"]
    starts = [point["start"] for point in current["traffic"]["points"]]
    first = min(starts) if starts else 0.0
    x_label = f"minutes since {current['window']['first'][:19].replace('T', ' ')} UTC"
    drift = []
    for name, line in over_time["series"].items():
        points = line["points"]
        threshold = [(x, line["threshold"]) for x, _ in minutes(points, first, "score")]
        drifted = sum(point["drift"] for point in points)
        title = f"{'output ' if line['output'] else ''}{name}: drifted in {drifted} of {len(points)}"
        side = "below" if line["test"] in P_VALUES else "at or above"
        drift.append((name, drifted, charts.line_chart(
            [(TESTS.get(line["test"], line["test"]), minutes(points, first, "score")),
             (f"drift {side} {charts.number(line['threshold'])}", threshold)], title, x_label, width=CHART_WIDTH)))
    live = current["live"]
    live_chart = charts.line_chart([(metric, minutes(live["points"], first, metric))
                                    for metric in live.get("metrics") or {}], "live metrics (delayed labels)",
                                   x_label, width=CHART_WIDTH) if live.get("points") else None
    traffic = current["traffic"]["points"]
    return {
        "drift": drift, "live": live_chart,
        "latency": charts.line_chart([("p50", minutes(traffic, first, "latency_p50_ms")),
                                      ("p95", minutes(traffic, first, "latency_p95_ms"))],
                                     "request latency (ms)", x_label, width=CHART_WIDTH),
        "throughput": charts.line_chart([("rows/s", minutes(traffic, first, "rows_per_s"))],
                                        "logged rows per second", x_label, width=CHART_WIDTH),
    }


def routes(ui: UI) -> list[BaseRoute]:
    from starlette.concurrency import run_in_threadpool
    from starlette.routing import Route

    def view(name: str, query: dict[str, str]) -> dict[str, Any]:
        try:
            versions = ui.store.list_versions(name)
        except InputError:
            versions = []
        if not versions:
            raise NotFound(f"no model {name[:130]!r} in this store")
        number = query_text(query, "version")
        if number and not number.lstrip("v").isdigit():
            raise InputError(f"version {number[:40]!r}: give a version number")
        version = int(number.lstrip("v")) if number else None
        if version is not None and version not in {item.version for item in versions}:
            raise NotFound(f"no version {version} of model {name!r} in this store")
        data = monitoring_data(ui.store, name, version, since=query_text(query, "since") or None,
                               until=query_text(query, "until") or None)
        return {"data": data, "charts": monitoring_charts(data) if data["current"] else None}

    async def monitoring(request: Request) -> Response:
        name = request.path_params["name"]
        context = await run_in_threadpool(view, name, dict(request.query_params))
        return ui.page(request, "monitoring.html", name=name, title=f"Monitoring {name}", **context)

    return [Route("/models/{name}/monitoring", monitoring)]
