"""Adaptive batching: luodi with batching on against the same server with batching off, and the model's ceiling.

The model is compute-bound (by default a luodi package: an MLP 64 -> 2048 -> 2048 -> 2048 -> 1, about 3 ms a
row alone and 0.6 ms a row in batches of 32, on one thread); pass `--home H --model NAME --record R.json` to
measure another package (the 4-layer Transformer classifier, MiniLM) with one of its records. Both servers
run `luodi serve` with one model thread, each in its own process; the load generator runs in a third.

- c=1: p50 latency, batching on / off (goal <= 1.2: never wait when the queue is empty).
- c=32: throughput, batching on / off (goal >= 1.5).
- ceiling: the model alone (backend.run on pre-encoded rows, no HTTP) at the mean batch size luodi formed at
  c=32 (from its /metrics), in rows/s; luodi at c=32 / ceiling (goal >= 0.7).

    .venv/bin/python benchmarks/serve_batching.py            # about 2 minutes
    .venv/bin/python benchmarks/serve_batching.py --quick    # smoke run, < 1 minute
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson
from results_file import write_result  # benchmarks/ is on sys.path when a script runs
from serve_common import load, luodi_server, median_ratio, post, record, rounds, summary, train_package

GOALS = {"c1_p50_on_over_off": 1.2, "c32_rps_on_over_off": 1.5, "c32_rps_over_ceiling": 0.7}


def mean_batch(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    total = float(re.search(r"luodi_batch_rows_sum\{[^}]*\} (\S+)", text).group(1))  # type: ignore[union-attr]
    count = float(re.search(r"luodi_batch_rows_count\{[^}]*\} (\S+)", text).group(1))  # type: ignore[union-attr]
    return total / count


def ceiling(home: Path, model: str, row: dict, batch: int, seconds: float) -> float:
    """Rows/s of the model alone on `batch` pre-encoded copies of the row (one thread, as the servers use)."""
    import torch

    from luodi.serve.backends import choose_backend
    from luodi.store import Store

    torch.set_num_threads(1)
    from luodi.package import load_package

    package = load_package(Store(home).resolve(model).path)
    backend = choose_backend(package, "auto", 1)
    _, encoded = package.encode([row] * batch, "benchmark")
    for _ in range(3):
        backend.run(encoded)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        backend.run(encoded)
        runs += 1
    return runs * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--home", type=Path, help="a store with the model to measure (default: train the MLP)")
    parser.add_argument("--model", default="wide")
    parser.add_argument("--record", type=Path, help="JSON file with one record for --model")
    args = parser.parse_args()
    duration, count = (1.5, 1) if args.quick else (4.0, 3)
    if args.home is None:
        home = train_package(Path(tempfile.mkdtemp(prefix="luodi-bench-batching-")), "wide", features=64,
                             hidden=[2048, 2048, 2048])
        row = record(64)
    else:
        home, row = args.home, json.loads(args.record.read_text())
    request = post(f"/v1/models/{args.model}/predict", orjson.dumps({"records": [row]}))
    report: dict = {"machine": platform.platform(), "model": args.model, "duration_s": duration, "rounds": count}
    common = ["--threads", "1", "--max-batch-size", "64", "--log-sample-rate", "0.1"]
    with luodi_server(args.model, home, *common) as on, luodi_server(args.model, home, *common, "--no-batching") as off:
        ports = {"on": on.port, "off": off.port}
        for concurrency in (1, 32):
            results = rounds({name: (lambda name=name, concurrency=concurrency:
                                     load(ports[name], request, concurrency, duration)) for name in ports}, count)
            entry = {name: summary(results[name]) for name in ports}
            if concurrency == 1:
                entry["p50_on_over_off"] = median_ratio(results, "on", "off", key="p50_ms")
            else:
                entry["rps_on_over_off"] = median_ratio(results, "on", "off")
                entry["mean_batch_rows"] = round(mean_batch(on.port), 1)
            report[f"c{concurrency}"] = entry
            print(f"c={concurrency:<3} batching on  {entry['on']}\n      batching off {entry['off']}")
    batch = max(1, round(report["c32"]["mean_batch_rows"]))
    rows_per_second = ceiling(home, args.model, row, batch, 2.0 if args.quick else 5.0)
    report["ceiling"] = {"batch": batch, "rows_per_second": round(rows_per_second, 1),
                         "c32_rps_over_ceiling": round(report["c32"]["on"]["rps"] / rows_per_second, 3)}
    report["goals"] = GOALS
    print(f"c=1   p50 on / off: {report['c1']['p50_on_over_off']:.3f} (goal <= {GOALS['c1_p50_on_over_off']})")
    print(f"c=32  throughput on / off: {report['c32']['rps_on_over_off']:.3f} "
          f"(goal >= {GOALS['c32_rps_on_over_off']}); mean batch {report['c32']['mean_batch_rows']} rows")
    print(f"ceiling: the model alone at batch {batch}: {rows_per_second:.0f} rows/s; luodi c=32 / ceiling "
          f"{report['ceiling']['c32_rps_over_ceiling']:.3f} (goal >= {GOALS['c32_rps_over_ceiling']})")
    write_result("serve_batching", report, args.quick)


if __name__ == "__main__":
    main()
