"""The binary tensor path: one 784-float row as Open Inference Protocol JSON, as binary tensor data, and as /v1 JSON.

The model is a luodi package with 784 numeric inputs (an MNIST-shaped row) and one 128-wide hidden layer.
The same `luodi serve` process answers three request forms of the same row, taking turns in rounds:

- v1 JSON: `{"records": [{"px0": ..., ..., "px783": ...}]}`, validated field by field;
- v2 JSON: `{"inputs": [{"name": "numeric", "shape": [1, 784], "datatype": "FP32", "data": [...]}]}`;
- v2 binary: the same JSON header without `data`, followed by the 3,136 raw bytes
  (`Inference-Header-Content-Length`, as tritonclient sends with binary_data=True), outputs in binary too.

Reports requests/s, p50 and p99 at concurrency 1 and 8, and binary / JSON throughput ratios; then the
server-side parse cost of each form alone (the same functions the endpoints call, timed in this process), since
end to end the feature pipeline's per-column work on 784 columns (same for all three) dominates a request.

    .venv/bin/python benchmarks/serve_binary.py            # about 2 minutes
    .venv/bin/python benchmarks/serve_binary.py --quick    # smoke run, < 1 minute
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import numpy as np
import orjson
from results_file import write_result  # benchmarks/ is on sys.path when a script runs
from serve_common import load, luodi_server, median_ratio, post, rounds, summary, train_package

FEATURES = 784


def requests() -> dict[str, bytes]:
    pixels = np.random.default_rng(0).random(FEATURES, dtype=np.float32)
    v1 = orjson.dumps({"records": [{f"x{i}": float(value) for i, value in enumerate(pixels)}]})
    tensor = {"name": "numeric", "shape": [1, FEATURES], "datatype": "FP32"}
    v2_json = orjson.dumps({"inputs": [{**tensor, "data": pixels.tolist()}]})
    outputs = [{"name": name, "parameters": {"binary_data": True}} for name in ("prediction", "probabilities")]
    header = orjson.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": pixels.nbytes}}],
                           "outputs": outputs})
    return {
        "v1_json": post("/v1/models/pixels/predict", v1),
        "v2_json": post("/v2/models/pixels/infer", v2_json),
        "v2_binary": post("/v2/models/pixels/infer", header + pixels.tobytes(), "application/octet-stream",
                          {"Inference-Header-Content-Length": str(len(header))}),
    }


def parse_costs(home: Path, bodies: dict[str, bytes], seconds: float) -> dict[str, float]:
    """Microseconds per request to validate and decode each body into request columns."""
    import time

    from luodi.package import verify_package
    from luodi.serve import v2
    from luodi.serve.schema import Limits, ServingSchema
    from luodi.store import Store

    schema = ServingSchema(verify_package(Store(home).resolve("pixels").path), Limits())

    def body_of(request: bytes) -> bytes:
        return request.split(b"\r\n\r\n", 1)[1]

    v1, v2_json, v2_binary = (body_of(bodies[name]) for name in ("v1_json", "v2_json", "v2_binary"))
    header_length = len(v2_binary) - FEATURES * 4
    forms = {"v1_json": lambda: schema.columns(schema.parse_records(v1)),
             "v2_json": lambda: v2.parse_infer(v2_json, None, schema),
             "v2_binary": lambda: v2.parse_infer(v2_binary, header_length, schema)}
    costs = {}
    for name, parse in forms.items():
        runs, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            parse()
            runs += 1
        costs[name] = round((time.perf_counter() - started) / runs * 1e6, 1)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    duration, count = (1.5, 1) if args.quick else (4.0, 3)
    home = train_package(Path(tempfile.mkdtemp(prefix="luodi-bench-binary-")), "pixels", features=FEATURES,
                         hidden=[128])
    bodies = requests()
    report: dict = {"machine": platform.platform(), "duration_s": duration, "rounds": count,
                    "request_bytes": {name: len(body) for name, body in bodies.items()}}
    with luodi_server("pixels", home, "--threads", "1", "--log-sample-rate", "0.1") as server:
        for concurrency in (1, 8):
            results = rounds({name: (lambda body=body, concurrency=concurrency:
                                     load(server.port, body, concurrency, duration)) for name, body in bodies.items()},
                             count)
            entry = {name: summary(results[name]) for name in bodies}
            entry["binary_over_v2_json"] = median_ratio(results, "v2_binary", "v2_json")
            entry["binary_over_v1_json"] = median_ratio(results, "v2_binary", "v1_json")
            report[f"c{concurrency}"] = entry
            for name in bodies:
                print(f"c={concurrency:<2} {name:<10} {entry[name]}")
            print(f"      binary / v2 JSON {entry['binary_over_v2_json']:.3f}, binary / v1 JSON "
                  f"{entry['binary_over_v1_json']:.3f}")
    report["parse_us"] = parse_costs(home, bodies, 0.5 if args.quick else 2.0)
    print(f"server-side parse per request (us): {report['parse_us']}")
    write_result("serve_binary", report, args.quick)


if __name__ == "__main__":
    main()
