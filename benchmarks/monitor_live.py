"""Live drift gauges: serving latency and throughput with live monitoring on against off, at concurrency 8.

Two `luodi serve` processes of the same package (a binary classifier over 8 numeric columns and a 32-wide hidden
layer: a small model, so per-request overhead shows) take turns in rounds against the load generator
(benchmarks/loadgen.py, its own process): one with the defaults of live monitoring (a 1,000-row window tested every
10 s; `--interval 1` tests ten times as often, a stress case), one with `--drift-window 0` (off). Both write the
prediction log as usual. Reported: the median over rounds of the per-round ratios on / off of p50 latency, p99
latency and requests/s (goal: p50 and throughput within 5%); the serving process's own CPU time per request on
and off (its threads, from /proc: what a busy machine disturbs least); the CPU time of the live monitoring process
(`luodi_monitor_seconds_total`, and the whole process from /proc) as a share of the "on" rounds' wall time; and the
gauges the live server exposed at the end (so the passes ran).

    .venv/bin/python benchmarks/monitor_live.py              # about 2 minutes
    .venv/bin/python benchmarks/monitor_live.py --interval 1 # drift passes ten times as often
    .venv/bin/python benchmarks/monitor_live.py --quick      # smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from results_file import write_result  # benchmarks/ is on sys.path when a script runs
from serve_common import load, luodi_server, post, record, rounds, summary, train_package

FEATURES = 8
GOAL = 1.05  # live on / off, p50 latency (and off / on requests/s)


def metrics_page(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def monitor_seconds(port: int) -> float:
    """CPU seconds the live server's monitoring passes took so far."""
    found = re.search(r"^luodi_monitor_seconds_total\{[^}]*\} (\S+)$", metrics_page(port), re.M)
    return float(found.group(1)) if found else 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process's live child processes (the live monitoring process), found by their parent id."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    total += cpu_seconds(int(entry.name))
    return total


def measured(server: Any, request: bytes, concurrency: int, duration: float) -> dict[str, Any]:
    """One round of load, with the serving process's CPU microseconds per request (the load generator's warm-up
    included, at the rate it measured)."""
    pid, warmup = server.process.pid, 0.5
    before = cpu_seconds(pid)
    result = load(server.port, request, concurrency, duration, warmup=warmup)
    requests = result["rps"] * (duration + warmup)
    result["cpu_us_per_request"] = (cpu_seconds(pid) - before) / requests * 1e6 if requests else float("nan")
    return result


def gauges(port: int) -> dict[str, float]:
    """The live server's drift gauges at the end of the run."""
    text = metrics_page(port)
    found = {f"{name}{{{labels}}}": float(value) for name, labels, value in
             re.findall(r"^(luodi_drift_window_rows|luodi_drift_share|luodi_drift)\{([^}]*)\} (\S+)$", text, re.M)}
    return dict(sorted(found.items())[:12])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between drift passes (default 10)")
    parser.add_argument("--window", type=int, default=1000, help="live window rows (default 1000, the default)")
    args = parser.parse_args()
    count, duration = (2, 2.0) if args.quick else (12, 3.0)  # short rounds, many turns: a shared machine drifts
    concurrency = 8

    with tempfile.TemporaryDirectory() as tmp:
        home = train_package(Path(tmp), "live", FEATURES, [32], rows=2000)
        request = post("/v1/models/live/predict", orjson.dumps({"records": [record(FEATURES, seed=3)]}))
        common = ("--threads", "1", "--log-flush-s", "2")
        with luodi_server("live", home, "--drift-window", str(args.window), "--drift-interval-s",
                          str(args.interval), *common) as on, \
                luodi_server("live", home, "--drift-window", "0", *common) as off:
            for server in (on, off):  # fill the live window before measuring
                load(server.port, request, concurrency, 1.0, warmup=0.2)
            deadline = time.monotonic() + max(120.0, 3 * args.interval)  # the first pass ran: its one-time costs
            while "luodi_drift_window_rows{" not in metrics_page(on.port) and time.monotonic() < deadline:
                time.sleep(0.5)
            cpu, process_cpu, wall = monitor_seconds(on.port), children_cpu_seconds(on.process.pid), time.monotonic()
            results = rounds({"on": lambda: measured(on, request, concurrency, duration),
                              "off": lambda: measured(off, request, concurrency, duration)}, count)
            cpu, wall = monitor_seconds(on.port) - cpu, time.monotonic() - wall
            process_cpu = children_cpu_seconds(on.process.pid) - process_cpu
            exposed = gauges(on.port)

    def ratio(key: str) -> float:
        return round(statistics.median(a[key] / b[key] for a, b in zip(results["on"], results["off"], strict=True)),
                     3)

    report = {
        "benchmark": "monitor_live", "machine": platform.machine(), "concurrency": concurrency, "rounds": count,
        "seconds_per_round": duration, "interval_s": args.interval, "window_rows": args.window,
        "on": summary(results["on"]), "off": summary(results["off"]),
        "p50_on_over_off": ratio("p50_ms"), "p99_on_over_off": ratio("p99_ms"), "rps_on_over_off": ratio("rps"),
        "p50_ratio_per_round": [round(a["p50_ms"] / b["p50_ms"], 3) for a, b in zip(results["on"], results["off"],
                                                                                   strict=True)],
        # The serving process's CPU per request (all its threads): what live monitoring adds to the server itself.
        "cpu_us_per_request_on": round(statistics.median(r["cpu_us_per_request"] for r in results["on"]), 1),
        "cpu_us_per_request_off": round(statistics.median(r["cpu_us_per_request"] for r in results["off"]), 1),
        "cpu_per_request_on_over_off": ratio("cpu_us_per_request"),
        # The monitoring process's CPU time (the passes' own, and the whole process's) per second of the "on"
        # rounds: the share of one core live monitoring took while serving at full load.
        "monitor_cpu_s": round(cpu, 3), "monitor_cpu_share_of_on_rounds": round(cpu / (wall / 2), 4),
        "monitor_process_cpu_s": round(process_cpu, 3),
        "goal_p50_on_over_off_below": GOAL, "gauges": exposed,
    }
    report["goal_met"] = report["p50_on_over_off"] < GOAL and report["rps_on_over_off"] > 1 / GOAL
    print(json.dumps(report, indent=2))
    write_result("monitor_live" if args.interval == 10 else f"monitor_live.interval-{args.interval:g}", report,
                 args.quick)


if __name__ == "__main__":
    main()
