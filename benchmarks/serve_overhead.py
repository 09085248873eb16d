"""Overhead floor: luodi's server on a trivial model against a bare FastAPI endpoint that returns a constant.

Both run under uvicorn with the same settings (httptools, uvloop, one process, no access log), each in its
own process, and the load generator (benchmarks/loadgen.py, raw keep-alive sockets) in a third. luodi does
everything it does in production: key-less auth check, body limit, JSON validation against the model's
schema, queueing and adaptive batching, the model (a luodi package: 2 numeric inputs, one 4-wide hidden
layer), metrics and the prediction log (every request sampled). Goal: at concurrency 32, luodi >= 0.8x bare.

    .venv/bin/python benchmarks/serve_overhead.py            # about 1.5 minutes
    .venv/bin/python benchmarks/serve_overhead.py --quick    # smoke run, < 30 s
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import orjson
from results_file import write_result  # benchmarks/ is on sys.path when a script runs
from serve_common import baseline_server, load, luodi_server, median_ratio, post, record, rounds, summary, train_package

GOAL = 0.8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    duration, count = (1.0, 1) if args.quick else (4.0, 5)
    folder = Path(tempfile.mkdtemp(prefix="luodi-bench-overhead-"))
    home = train_package(folder, "trivial", features=2, hidden=[4])
    body = orjson.dumps({"records": [record(2)]})
    report: dict = {"machine": platform.platform(), "duration_s": duration, "rounds": count, "concurrency": {}}
    with baseline_server("bare") as bare, luodi_server("trivial", home) as luodi:
        requests = {"bare": post("/predict", body), "luodi": post("/v1/models/trivial/predict", body)}
        ports = {"bare": bare.port, "luodi": luodi.port}
        for concurrency in (1, 32):
            results = rounds({name: (lambda name=name, concurrency=concurrency:
                                     load(ports[name], requests[name], concurrency, duration)) for name in ports},
                             count)
            ratio = median_ratio(results, "luodi", "bare")
            report["concurrency"][str(concurrency)] = {
                "bare": summary(results["bare"]), "luodi": summary(results["luodi"]), "ratio_rps": ratio}
            print(f"c={concurrency:<3} bare {summary(results['bare'])}\n      luodi {summary(results['luodi'])}\n"
                  f"      luodi / bare throughput: {ratio:.3f}" + (f" (goal >= {GOAL})" if concurrency == 32 else ""))
    write_result("serve_overhead", report, args.quick)


if __name__ == "__main__":
    main()
