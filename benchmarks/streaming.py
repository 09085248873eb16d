"""One epoch of a large Parquet file through the data path, streamed (luodi.data.stream) against in memory.

Each variant runs in its own process (peak RSS is that process's ru_maxrss): it fits the numeric columns'
statistics, then walks one shuffled epoch in 1024-row batches of z-scored float32 torch tensors.
- in memory (luodi's path today): `pq.read_table`, the whole split z-scored into one tensor, a permuted index
  sliced per batch;
- streamed: `fit_statistics` (one pass) and `shuffled` with a 100k-row buffer, each block z-scored, then sliced.
Targets (issue 17): streamed peak RSS <= 1.5 GB, throughput >= 0.7x in memory. This measures the data path only;
it is not yet wired into `luodi train`.

    .venv/bin/python benchmarks/streaming.py              # 5M rows
    .venv/bin/python benchmarks/streaming.py --rows 500000
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


def write_file(path: Path, rows: int, group: int = 500_000) -> None:
    generator = np.random.default_rng(0)
    schema = pa.schema([(name, pa.float64()) for name in COLUMNS])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, group):
            size = min(group, rows - start)
            writer.write_table(pa.table({name: generator.normal(size=size) for name in COLUMNS}, schema=schema))


def run(path: Path, variant: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", VARIANT, str(path), variant, ",".join(COLUMNS)],
                          capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rows.parquet"
        write_file(path, args.rows)
        memory, streamed = run(path, "memory"), run(path, "stream")
    report = {"rows": args.rows, "memory": memory, "streamed": streamed,
              "throughput_ratio": memory["seconds"] / streamed["seconds"]}
    print(f"in memory: {args.rows / memory['seconds']:,.0f} rows/s, peak RSS {memory['peak_rss_mib']:.0f} MiB")
    print(f"streamed:  {args.rows / streamed['seconds']:,.0f} rows/s, peak RSS {streamed['peak_rss_mib']:.0f} MiB")
    print(f"streamed / in memory throughput: {report['throughput_ratio']:.2f}x")
    write_result("streaming", report, quick=args.rows < 5_000_000)


if __name__ == "__main__":
    main()
