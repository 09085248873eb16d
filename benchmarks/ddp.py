"""DDP with 2 processes (torchrun, gloo, 1 thread each) against one process with 2 threads: the same config, data and
global batch, through the real `luodi train` (CLI), one after the other per round.

The figure is the training loop's throughput ratio (rows x epochs / the run's loop seconds, `TrainResult.seconds`):
data reading, torch import and the report are left out, so start-up costs do not decide it. The median of the
per-round ratios is printed and written to benchmarks/results/ddp.json. On a 2-core CPU correctness is the point
(PERFORMANCE.md measured 0.59x for raw DDP); throughput gains need many cores per rank, several machines or GPUs.

    .venv/bin/python benchmarks/ddp.py                 # 3 rounds of 40k rows x 3 epochs, a few minutes
    .venv/bin/python benchmarks/ddp.py --quick         # 1 round of 8k rows
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from results_file import write_result  # benchmarks/ is on sys.path when a script runs


def write_data(folder: Path, rows: int) -> Path:
    generator = np.random.default_rng(0)
    values = generator.normal(size=(rows, 8))
    frame = pd.DataFrame(values, columns=[f"x{i}" for i in range(8)])
    frame["color"] = generator.choice(["red", "green", "blue"], size=rows)
    frame["label"] = (values[:, 0] + values[:, 1] * values[:, 2] > 0).astype(int)
    path = folder / "table.parquet"
    frame.to_parquet(path)
    return path


def write_config(folder: Path, data: Path, threads: int, epochs: int) -> Path:
    config = {
        "name": "ddp-bench", "data": {"train": str(data)}, "target": {"name": "label", "task": "binary"},
        "input_features": [*({"name": f"x{i}", "type": "numeric"} for i in range(8)),
                           {"name": "color", "type": "category"}],
        "model": {"hidden_sizes": [128, 128], "dropout": 0.0},
        "trainer": {"epochs": epochs, "batch_size": 256, "seed": 1, "early_stopping": {"enabled": False}},
        "runtime": {"device": "cpu", "threads": threads},
        "report": {"enabled": False}, "monitor": {"profile": False},
    }
    path = folder / f"config-{threads}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def train(config: Path, home: Path, nproc: int | None) -> dict[str, Any]:
    command = [sys.executable, "-m", "luodi", "train", str(config), "--home", str(home), "--json"]
    if nproc:
        command += ["--nproc", str(nproc)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    rows = args.rows or (8_000 if args.quick else 40_000)
    rounds = args.rounds or (1 if args.quick else 3)
    epochs = 3
    ratios, single_speeds, ddp_speeds, metrics = [], [], [], {}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        data = write_data(folder, rows)
        one = write_config(folder, data, threads=2, epochs=epochs)  # one process, 2 threads
        two = write_config(folder, data, threads=1, epochs=epochs)  # 2 ranks, 1 thread each
        for round_number in range(rounds):
            single = train(one, folder / f"single-{round_number}", None)
            ddp = train(two, folder / f"ddp-{round_number}", 2)
            trained = single["rows"]["train"] * epochs
            single_speeds.append(trained / single["seconds"])
            ddp_speeds.append(trained / ddp["seconds"])
            ratios.append(ddp_speeds[-1] / single_speeds[-1])
            metrics = {"single_accuracy": single["metrics"]["accuracy"], "ddp_accuracy": ddp["metrics"]["accuracy"]}
            print(f"round {round_number + 1}: 1 process x 2 threads {single_speeds[-1]:,.0f} rows/s, 2 ranks x 1 "
                  f"thread {ddp_speeds[-1]:,.0f} rows/s, ratio {ratios[-1]:.2f}")
    report = {
        "rows": rows, "epochs": epochs, "rounds": rounds, "cpus": os.cpu_count(), "platform": platform.platform(),
        "single_rows_per_s": statistics.median(single_speeds), "ddp_rows_per_s": statistics.median(ddp_speeds),
        "ddp_over_single": statistics.median(ratios), **metrics,
    }
    print(f"DDP 2 ranks / 1 process with 2 threads: {report['ddp_over_single']:.2f}x (median of {rounds} rounds)")
    write_result("ddp", report, args.quick)


if __name__ == "__main__":
    main()
