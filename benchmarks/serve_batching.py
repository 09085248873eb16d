"""Adaptive batching: luodi with batching on against the same server with batching off, and the model's ceiling.

The model is compute-bound. By default (`--model-kind transformer`) it is a luodi text classifier with the
4-layer Transformer encoder of ../shared/PERFORMANCE.md (width 256, 4 heads, feed-forward 1024, learned positions,
mean pooling) over a BPE tokenizer, trained for one epoch on generated texts (speed is measured, not accuracy);
the request is one text of 200 words, so it is truncated to 128 tokens and every batch, in the server and in the
ceiling alike, is 128 tokens wide with no padding. `--model-kind mlp` trains the earlier model instead: an MLP
16 -> 2048 -> 2048 -> 2048 -> 1 (about 3 ms a row alone and 0.6 ms a row in batches of 32, on one thread; few
inputs, so the feature pipeline's per-column work stays small beside the model). `--home H --model NAME
--record R.json` measures another package (MiniLM, say) with one of its records. Both servers run `luodi serve`
with one model thread (`--threads N` for more; the ceiling uses as many), each in its own process; the load
generator runs in a third.

- c=1: p50 latency, batching on / off (goal <= 1.2: never wait when the queue is empty).
- c=32: throughput, batching on / off (goal >= 1.5).
- ceiling: the model alone (backend.run on pre-encoded copies of the request's row, no HTTP, no feature pipeline)
  at the mean batch size luodi formed in the same round (from its /metrics), in rows/s; luodi at c=32 / ceiling
  (goal >= 0.7). Copies of one row have one length, as the server's batches of that same request do, so dynamic
  padding trims both alike; the report gives the row's tokens per text feature.

    .venv/bin/python benchmarks/serve_batching.py                    # the Transformer, about 2 minutes
    .venv/bin/python benchmarks/serve_batching.py --model-kind mlp   # the MLP, about 1.5 minutes
    .venv/bin/python benchmarks/serve_batching.py --quick            # smoke run, about 40 s
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
from serve_common import (
    load,
    luodi_server,
    median_ratio,
    post,
    record,
    rounds,
    summary,
    text_record,
    train_package,
    train_text_package,
)

GOALS = {"c1_p50_on_over_off": 1.2, "c32_rps_on_over_off": 1.5, "c32_rps_over_ceiling": 0.7}


def batch_totals(port: int) -> tuple[float, float]:
    """(rows, batches) the server has run so far, from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    total = float(re.search(r"luodi_batch_rows_sum\{[^}]*\} (\S+)", text).group(1))  # type: ignore[union-attr]
    count = float(re.search(r"luodi_batch_rows_count\{[^}]*\} (\S+)", text).group(1))  # type: ignore[union-attr]
    return total, count


class Ceiling:
    """Rows/s of the model alone (backend.run on pre-encoded copies of one row; the servers' thread count)."""

    def __init__(self, home: Path, model: str, row: dict, threads: int):
        import torch

        from luodi.package import load_package
        from luodi.serve.backends import choose_backend
        from luodi.store import Store

        torch.set_num_threads(threads)
        self.package = load_package(Store(home).resolve(model).path)
        self.backend = choose_backend(self.package, "auto", threads)
        self.row = row

    def tokens(self) -> dict[str, int]:
        """Real tokens in the row, per text feature (after truncation)."""
        _, encoded = self.package.encode([self.row], "benchmark")
        return {name.removesuffix(".mask"): int(mask.sum()) for name, mask in encoded.inputs.items()
                if name.endswith(".mask")}

    def measure(self, batch: int, seconds: float) -> float:
        _, encoded = self.package.encode([self.row] * batch, "benchmark")
        for _ in range(3):
            self.backend.run(encoded)
        runs, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            self.backend.run(encoded)
            runs += 1
        return runs * batch / (time.perf_counter() - started)


def prepare(args: argparse.Namespace) -> tuple[Path, str, dict]:
    """(store, model name, record): the package to measure, trained here unless --home is given."""
    if args.home is not None:
        if args.model is None or args.record is None:
            raise SystemExit("--home needs --model and --record")
        return args.home, args.model, json.loads(args.record.read_text())
    folder = Path(tempfile.mkdtemp(prefix="luodi-bench-batching-"))
    if args.model_kind == "mlp":
        return train_package(folder, "wide", features=16, hidden=[2048, 2048, 2048]), "wide", record(16)
    return train_text_package(folder, "encoder"), "encoder", text_record()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model-kind", choices=["transformer", "mlp"], default="transformer",
                        help="the package to train and serve (without --home)")
    parser.add_argument("--home", type=Path, help="a store with the model to measure (default: train one)")
    parser.add_argument("--model", help="the model's name in --home")
    parser.add_argument("--record", type=Path, help="JSON file with one record for --model")
    parser.add_argument("--threads", type=int, default=1, help="model threads of each server and of the ceiling")
    args = parser.parse_args()
    duration, count = (1.5, 1) if args.quick else (4.0, 3)
    started = time.perf_counter()
    home, model, row = prepare(args)
    trained_s = time.perf_counter() - started
    request = post(f"/v1/models/{model}/predict", orjson.dumps({"records": [row]}))
    report: dict = {"machine": platform.platform(), "model": model, "kind": "package" if args.home else args.model_kind,
                    "threads": args.threads, "duration_s": duration, "rounds": count, "train_s": round(trained_s, 1)}
    common = ["--threads", str(args.threads), "--max-batch-size", "64"]
    with luodi_server(model, home, *common) as on, luodi_server(model, home, *common, "--no-batching") as off:
        ports = {"on": on.port, "off": off.port}
        results = rounds({name: (lambda name=name: load(ports[name], request, 1, duration)) for name in ports}, count)
        report["c1"] = {**{name: summary(results[name]) for name in ports},
                        "p50_on_over_off": median_ratio(results, "on", "off", key="p50_ms")}
        # c=32: each round runs on, off, and the model alone at the mean batch size `on` formed in that round
        ceiling = Ceiling(home, model, row, args.threads)
        report["tokens_per_row"] = ceiling.tokens()
        per_round: dict[str, list[dict]] = {"on": [], "off": [], "ceiling": []}
        for _ in range(count):
            before = batch_totals(on.port)
            per_round["on"].append(load(on.port, request, 32, duration))
            after = batch_totals(on.port)
            batch = max(1, round((after[0] - before[0]) / (after[1] - before[1])))
            per_round["off"].append(load(off.port, request, 32, duration))
            per_round["ceiling"].append({"rps": ceiling.measure(batch, duration), "batch": batch})
        report["c32"] = {"on": summary(per_round["on"]), "off": summary(per_round["off"]),
                         "rps_on_over_off": median_ratio(per_round, "on", "off"),
                         "mean_batch_rows": [entry["batch"] for entry in per_round["ceiling"]]}
        report["ceiling"] = {"rows_per_second": [round(entry["rps"], 1) for entry in per_round["ceiling"]],
                             "c32_rps_over_ceiling": median_ratio(per_round, "on", "ceiling")}
    for concurrency in (1, 32):
        entry = report[f"c{concurrency}"]
        print(f"c={concurrency:<3} batching on  {entry['on']}\n      batching off {entry['off']}")
    report["goals"] = GOALS
    print(f"c=1   p50 on / off: {report['c1']['p50_on_over_off']:.3f} (goal <= {GOALS['c1_p50_on_over_off']})")
    print(f"c=32  throughput on / off: {report['c32']['rps_on_over_off']:.3f} "
          f"(goal >= {GOALS['c32_rps_on_over_off']}); mean batch per round {report['c32']['mean_batch_rows']} rows")
    print(f"ceiling: the model alone at those batch sizes: {report['ceiling']['rows_per_second']} rows/s; luodi c=32 / "
          f"ceiling {report['ceiling']['c32_rps_over_ceiling']:.3f} (goal >= {GOALS['c32_rps_over_ceiling']})")
    report["total_s"] = round(time.perf_counter() - started, 1)
    print(f"model {model} ({report['kind']}), tokens per row {report['tokens_per_row']}; trained in "
          f"{report['train_s']} s, whole run {report['total_s']} s")
    variant = ("" if args.home else f"-{args.model_kind}") + (f"-{args.threads}t" if args.threads != 1 else "")
    write_result(f"serve_batching{variant}", report, args.quick)  # each model and thread count keeps its own file


if __name__ == "__main__":
    main()
