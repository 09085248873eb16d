"""Drift tests on a large window: luodi's profile-based tests against scipy on the raw reference data, same run.

A 100k-row reference and a 100k-row window of 30 columns (20 numbers, 10 categories of 12 values); luodi profiles
the reference once (what training does), then tests the window per column (`measure` + `compare`, with the
configured test forced to `ks` / `chi2` so both sides compute the same statistics); the baseline runs
`scipy.stats.ks_2samp` and `chi2_contingency` on the raw reference and window. Rounds take turns; the report is the
median time of each and their ratio.

    .venv/bin/python benchmarks/monitor_drift.py            # about a minute on 2 cores
    .venv/bin/python benchmarks/monitor_drift.py --quick    # 10k rows
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from results_file import write_result  # benchmarks/ is on sys.path when a script runs

from luodi.config import MonitorConfig
from luodi.monitor.drift import compare
from luodi.monitor.profile import PROFILERS

NUMBERS, CATEGORIES = 20, 10


def columns(rows: int, seed: int) -> dict[str, tuple[str, pa.ChunkedArray]]:
    rng = np.random.default_rng(seed)
    found: dict[str, tuple[str, pa.ChunkedArray]] = {}
    for index in range(NUMBERS):
        found[f"n{index}"] = ("numeric", pa.chunked_array([rng.normal(index, 1 + index % 3, rows)]))
    values = np.array([f"v{k}" for k in range(12)])
    for index in range(CATEGORIES):
        found[f"c{index}"] = ("category", pa.chunked_array([pa.array(values[rng.integers(0, 12, rows)])]))
    return found


def luodi_tests(profile: dict[str, Any], window: dict[str, tuple[str, pa.ChunkedArray]],
                settings: MonitorConfig) -> int:
    drifted = 0
    for name, (kind, column) in window.items():
        entry = profile[name]
        drifted += any(result.drift for result in compare(name, entry, PROFILERS[kind].measure(column, entry),
                                                          settings))
    return drifted


def scipy_tests(reference: dict[str, tuple[str, pa.ChunkedArray]], window: dict[str, tuple[str, pa.ChunkedArray]],
                ) -> int:
    from scipy.stats import chi2_contingency, ks_2samp

    drifted = 0
    for name, (kind, column) in window.items():
        before = reference[name][1]
        if kind == "numeric":
            drifted += ks_2samp(before.to_numpy(), column.to_numpy()).pvalue < 0.01
        else:
            counts = [pc.value_counts(side.combine_chunks()) for side in (before, column)]
            keys = sorted(set(counts[0].field("values").to_pylist()) | set(counts[1].field("values").to_pylist()))
            table = [[dict(zip(c.field("values").to_pylist(), c.field("counts").to_pylist(), strict=True)).get(k, 0)
                      for k in keys] for c in counts]
            drifted += chi2_contingency(table).pvalue < 0.01
    return drifted


def main() -> None:
    quick = "--quick" in sys.argv
    rows = 10_000 if quick else 100_000
    settings = MonitorConfig(numeric_test="ks", category_test="chi2", profile_rows=rows)
    reference, window = columns(rows, 0), columns(rows, 1)
    start = time.perf_counter()
    profile = {name: PROFILERS[kind].profile(column, settings) for name, (kind, column) in reference.items()}
    profile_s = time.perf_counter() - start
    times: dict[str, list[float]] = {"luodi": [], "scipy": []}
    flagged = {}
    for _ in range(3):
        for name, run in (("luodi", lambda: luodi_tests(profile, window, settings)),
                          ("scipy", lambda: scipy_tests(reference, window))):
            start = time.perf_counter()
            flagged[name] = int(run())
            times[name].append(time.perf_counter() - start)
    report = {"rows": rows, "columns": NUMBERS + CATEGORIES, "profile_s": profile_s,
              "luodi_s": statistics.median(times["luodi"]), "scipy_raw_s": statistics.median(times["scipy"]),
              "flagged": flagged}
    report["ratio_luodi_to_scipy"] = report["luodi_s"] / report["scipy_raw_s"]
    print(f"{rows} rows x {NUMBERS + CATEGORIES} columns: profile {profile_s:.2f} s (once, at training); tests "
          f"{report['luodi_s']:.2f} s vs scipy on raw data {report['scipy_raw_s']:.2f} s "
          f"(ratio {report['ratio_luodi_to_scipy']:.2f}); columns flagged {flagged}")
    write_result("monitor_drift", report, quick)


if __name__ == "__main__":
    main()
