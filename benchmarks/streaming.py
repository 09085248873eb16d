"""One epoch of a large Parquet file through the data path, streamed (luodi.data.stream) against in memory.

Each variant runs in its own process (peak RSS is that process's ru_maxrss): it fits the numeric columns'
statistics, then walks one shuffled epoch in 1024-row batches of z-scored float32 torch tensors.
- in memory (luodi's path today): `pq.read_table`, the whole split z-scored into one tensor, a permuted index
  sliced per batch;
- streamed: `fit_statistics` (one pass) and `shuffled` with a 100k-row buffer, each block z-scored, then sliced.
Targets (issue 17): streamed peak RSS <= 1.5 GB, throughput >= 0.7x in memory.

Then one epoch of a whole `luodi train` (`api.train`: read, split, fit the features, train, validate, score, report,
package, register) on a labelled file of `--train-rows` rows (8 numbers, a binary label), with `data.streaming`
true and false, each in its own process: seconds and peak RSS.

    .venv/bin/python benchmarks/streaming.py              # 5M rows; training: 1M rows
    .venv/bin/python benchmarks/streaming.py --rows 500000 --train-rows 200000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from results_file import write_result  # benchmarks/ is on sys.path when a script runs

COLUMNS = [f"x{i}" for i in range(8)]

VARIANT = """
import json, resource, sys, time
import numpy as np, pyarrow as pa, pyarrow.parquet as pq, torch
from luodi.data.stream import fit_statistics, shuffled
path, variant, columns = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
start, rows = time.perf_counter(), 0

def tensors(table, means, stds):
    values = np.stack([table.column(name).to_numpy() for name in columns], axis=1)
    return torch.from_numpy(((values - means) / stds).astype(np.float32))

if variant == "memory":  # luodi's in-memory path: encode the split once, slice tensors with a permuted index
    table = pq.read_table(path, columns=columns)
    matrix = np.stack([table.column(name).to_numpy() for name in columns], axis=1)
    del table
    features = torch.from_numpy(((matrix - matrix.mean(axis=0)) / matrix.std(axis=0)).astype(np.float32))
    del matrix
    order = torch.from_numpy(np.random.default_rng([1, 0]).permutation(len(features)))
    for begin in range(0, len(features), 1024):
        rows += len(features[order[begin:begin + 1024]])
else:  # streamed: one block of the shuffle at a time, encoded, then sliced
    stats = fit_statistics(path, numeric=columns)
    means = np.array([stats[name].mean for name in columns])
    stds = np.array([stats[name].std for name in columns])
    for block in shuffled(path, seed=1, epoch=0, buffer_rows=100_000, columns=columns):
        features = tensors(block, means, stds)
        for begin in range(0, len(features), 1024):
            rows += len(features[begin:begin + 1024])
seconds = time.perf_counter() - start
print(json.dumps({"rows": rows, "seconds": seconds,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_file(path: Path, rows: int, group: int = 500_000, label: bool = False) -> None:
    generator = np.random.default_rng(0)
    schema = pa.schema([(name, pa.float64()) for name in COLUMNS] + ([("label", pa.string())] if label else []))
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, group):
            size = min(group, rows - start)
            columns = {name: generator.normal(size=size) for name in COLUMNS}
            if label:
                columns["label"] = np.where(columns["x0"] + columns["x1"] > 0, "yes", "no")
            writer.write_table(pa.table(columns, schema=schema))


TRAIN = """
import json, resource, sys, time
import luodi.api as api
start = time.perf_counter()
result = api.train(sys.argv[1], home=sys.argv[2], progress="silent")
print(json.dumps({"seconds": time.perf_counter() - start, "accuracy": result.metrics["accuracy"],
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def train_epoch(folder: Path, rows: int) -> dict[str, dict[str, float]]:
    """One epoch of `luodi train`, streamed and in memory, on the same labelled file."""
    import yaml

    data = folder / "labelled.parquet"
    write_file(data, rows, group=100_000, label=True)
    measured = {}
    for streaming in (False, True):
        config = {"name": "bench", "data": {"train": str(data), "streaming": streaming},
                  "target": {"name": "label", "task": "binary"},
                  "input_features": [{"name": name, "type": "numeric"} for name in COLUMNS],
                  "model": {"hidden_sizes": [32]}, "trainer": {"epochs": 1, "batch_size": 1024},
                  "runtime": {"device": "cpu"}, "report": {"importance_repeats": 0}}
        path = folder / f"bench-{streaming}.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        done = subprocess.run([sys.executable, "-c", TRAIN, str(path), str(folder / f"home-{streaming}")],
                              capture_output=True, text=True, check=True)
        measured["streamed" if streaming else "memory"] = json.loads(done.stdout.strip().splitlines()[-1])
    return measured


def run(path: Path, variant: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", VARIANT, str(path), variant, ",".join(COLUMNS)],
                          capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--train-rows", type=int, default=1_000_000, help="0: skip the training epoch")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rows.parquet"
        write_file(path, args.rows)
        memory, streamed = run(path, "memory"), run(path, "stream")
        path.unlink()
        training = train_epoch(Path(folder), args.train_rows) if args.train_rows else {}
    report = {"rows": args.rows, "memory": memory, "streamed": streamed,
              "throughput_ratio": memory["seconds"] / streamed["seconds"],
              **({"train_rows": args.train_rows, "train_epoch": training} if training else {})}
    print(f"in memory: {args.rows / memory['seconds']:,.0f} rows/s, peak RSS {memory['peak_rss_mib']:.0f} MiB")
    print(f"streamed:  {args.rows / streamed['seconds']:,.0f} rows/s, peak RSS {streamed['peak_rss_mib']:.0f} MiB")
    print(f"streamed / in memory throughput: {report['throughput_ratio']:.2f}x")
    for name, row in training.items():
        print(f"luodi train, 1 epoch of {args.train_rows:,} rows, {name}: {row['seconds']:.1f} s, "
              f"peak RSS {row['peak_rss_mib']:.0f} MiB, accuracy {row['accuracy']:.3f}")
    write_result("streaming", report, quick=args.rows < 5_000_000)


if __name__ == "__main__":
    main()
