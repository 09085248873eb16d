"""`--workers 2` against one worker: the same `luodi serve` on a trivial model, one process or two sharing the port.

Each server is its own process tree; the load generator (benchmarks/loadgen.py) runs in another process and
opens its connections afresh each round, so the kernel spreads them over the workers. On a 2-core machine the
load generator needs CPU too, so two workers cannot double throughput; the ratio says what a second process
buys here. Concurrency 32, one model thread per worker.

    .venv/bin/python benchmarks/serve_workers.py            # about 1.5 minutes
    .venv/bin/python benchmarks/serve_workers.py --quick    # smoke run, < 1 minute
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import orjson
from results_file import write_result  # benchmarks/ is on sys.path when a script runs
from serve_common import load, luodi_server, median_ratio, post, record, rounds, summary, train_package


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    duration, count = (1.5, 1) if args.quick else (4.0, 5)
    home = train_package(Path(tempfile.mkdtemp(prefix="luodi-bench-workers-")), "trivial", features=2, hidden=[4])
    request = post("/v1/models/trivial/predict", orjson.dumps({"records": [record(2)]}))
    report: dict = {"machine": platform.platform(), "cores": os.cpu_count(), "duration_s": duration, "rounds": count}
    flags = ["--threads", "1", "--log-sample-rate", "0.1"]
    with luodi_server("trivial", home, *flags) as one, luodi_server("trivial", home, *flags, "--workers", "2") as two:
        ports = {"1 worker": one.port, "2 workers": two.port}
        for concurrency in (1, 32):
            results = rounds({name: (lambda port=port, concurrency=concurrency: load(port, request, concurrency,
                                                                                       duration))
                              for name, port in ports.items()}, count)
            entry = {name: summary(results[name]) for name in ports}
            entry["ratio_rps"] = median_ratio(results, "2 workers", "1 worker")
            report[f"c{concurrency}"] = entry
            print(f"c={concurrency:<3} 1 worker  {entry['1 worker']}\n      2 workers {entry['2 workers']}\n"
                  f"      2 workers / 1 worker throughput: {entry['ratio_rps']:.3f}")
    write_result("serve_workers", report, args.quick)


if __name__ == "__main__":
    main()
