"""Ingest of a 1M-row CSV: luodi (read, coerce, check, split, fit features, transform to tensors) vs pandas.

The CSV (10 float columns, 5 string category columns with 5-50 values, a yes/no target; about 1% empty cells
in some columns) is generated into a temp folder; generation is not timed. Each variant then runs in a FRESH
Python subprocess, so its memory figures are its own:

- luodi: `luodi.jobs.fit.read_splits` (read_table -> coerce_table -> target check -> file fingerprint ->
  stratified split), `FeaturePipeline.fit` on the train split, `transform` of all three splits and
  `torch.from_numpy` tensors, exactly as `luodi.api.train` does before training.
- pandas (baseline): `pd.read_csv` (default engine) + `pd.get_dummies` of the category columns + `astype`
  to one float32 numpy matrix and a target vector: the usual hand-rolled path (no split, no scaling).

Reported per variant: seconds, peak RSS (getrusage ru_maxrss) and the peak increase over the RSS measured right
before the ingest (after imports), both also as a multiple of the file size. Variants alternate over rounds.

    .venv/bin/python benchmarks/ingest.py            # 1M rows, 3 rounds (about 20-30 s)
    .venv/bin/python benchmarks/ingest.py --quick    # 200k rows, 1 round (< 30 s)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from results_file import write_result  # benchmarks/ is on sys.path when a script runs

NUMERIC = [f"num_{i}" for i in range(10)]
CATEGORIES = {"cat_a": 5, "cat_b": 12, "cat_c": 20, "cat_d": 35, "cat_e": 50}
TARGET = "target"
GOAL_SECONDS = 15.0
GOAL_PEAK_OVER_FILE = 3.0


def current_rss() -> int:
    """Resident set size now, in bytes (Linux /proc)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    """Peak resident set size of this process so far, in bytes (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ------------------------------------------------------------------------------------------- the data
def generate(path: Path, rows: int, seed: int = 0) -> None:
    import numpy as np
    import pyarrow as pa
    from pyarrow import csv

    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    signal = np.zeros(rows)
    for index, name in enumerate(NUMERIC):
        values = rng.normal(index, 1 + index / 3, rows).round(5)
        signal += (values - index) / (1 + index / 3) * (1 if index % 2 else -0.5)
        mask = rng.random(rows) < 0.01 if index < 3 else None  # ~1% missing in three columns
        columns[name] = pa.array(values, mask=mask)
    for name, cardinality in CATEGORIES.items():
        codes = np.minimum(rng.zipf(1.6, rows) - 1, cardinality - 1)  # skewed, like real categories
        signal += (codes % 3 - 1) * 0.3
        labels = np.array([f"{name}_{value:02d}" for value in range(cardinality)], dtype=object)
        mask = rng.random(rows) < 0.01 if name == "cat_e" else None
        columns[name] = pa.array(labels[codes], pa.string(), mask=mask)
    probability = 1 / (1 + np.exp(-(signal / signal.std() - 1.0)))
    columns[TARGET] = pa.array(np.where(rng.random(rows) < probability, "yes", "no"), pa.string())
    csv.write_csv(pa.table(columns), path)


def luodi_config(path: Path) -> dict[str, Any]:
    return {
        "name": "ingest-bench",
        "data": {"train": str(path)},
        "target": {"name": TARGET, "task": "binary"},
        "input_features": [{"name": name, "type": "numeric"} for name in NUMERIC]
        + [{"name": name, "type": "category"} for name in CATEGORIES],
    }


# ----------------------------------------------------------------------------------- child processes
def child_luodi(path: Path) -> dict[str, Any]:
    import torch  # noqa: F401 - imported before the baseline RSS, like everything else the ingest uses

    import luodi.data.sources as sources
    import luodi.data.split as split
    import luodi.features.pipeline as pipeline_module
    from luodi.config import validate_config
    from luodi.features.pipeline import FeaturePipeline
    from luodi.jobs.fit import as_tensors, read_splits

    phases: dict[str, float] = {}

    def timed(module: Any, name: str, label: str) -> None:  # time the functions read_splits looks up
        original = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                phases[label] = phases.get(label, 0.0) + time.perf_counter() - started

        setattr(module, name, wrapper)

    timed(sources, "read_table", "read_table")
    timed(pipeline_module, "coerce_table", "coerce_table")
    timed(sources, "fingerprint_file", "fingerprint_file")
    timed(split, "split_table", "split_table")
    config = validate_config(luodi_config(path))

    rss_before, peak_before = current_rss(), peak_rss()
    started = time.perf_counter()
    splits, _ = read_splits(config)
    read_done = time.perf_counter()
    phases["target_check"] = read_done - started - sum(phases.values())
    pipeline = FeaturePipeline.fit(config, splits.train)
    fit_done = time.perf_counter()
    encoded = {name: pipeline.transform(getattr(splits, name), f"{path} ({name} split)", True)
               for name in ("train", "validation", "test")}
    transform_done = time.perf_counter()
    tensors = {name: as_tensors(value) for name, value in encoded.items()}
    seconds = time.perf_counter() - started
    phases.update(pipeline_fit=fit_done - read_done, transform=transform_done - fit_done,
                  to_tensors=time.perf_counter() - transform_done)
    train = tensors["train"]
    return {
        "seconds": seconds, "rss_before": rss_before, "peak_before": peak_before, "peak": peak_rss(),
        "rss_after": current_rss(), "phases": phases, "rows": {k: len(v) for k, v in tensors.items()},
        "shapes": {k: list(v.shape) for k, v in train.inputs.items()},
    }


def child_pandas(path: Path) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    rss_before, peak_before = current_rss(), peak_rss()
    started = time.perf_counter()
    frame = pd.read_csv(path)
    read_done = time.perf_counter()
    target = (frame.pop(TARGET) == "yes").to_numpy(np.float32)
    features = pd.get_dummies(frame, columns=list(CATEGORIES), dtype=np.float32)
    matrix = features.astype(np.float32).to_numpy()
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds, "rss_before": rss_before, "peak_before": peak_before, "peak": peak_rss(),
        "rss_after": current_rss(), "phases": {"read_csv": read_done - started,
                                               "get_dummies_astype": time.perf_counter() - read_done},
        "rows": {"all": len(target)}, "shapes": {"matrix": list(matrix.shape)},
    }


def run_child(variant: str, path: Path) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", variant, str(path)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} child failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------------------------------------- report
def mib(value: float) -> str:
    return f"{value / 2**20:,.0f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 200k rows, 1 round (< 30 s)")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="write the CSV here and keep it (default: temp)")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, path = args.child
        result = (child_luodi if variant == "luodi" else child_pandas)(Path(path))
        print(json.dumps(result))
        return 0

    rows = args.rows or (200_000 if args.quick else 1_000_000)
    rounds = args.rounds or (1 if args.quick else 3)
    folder = Path(tempfile.mkdtemp(prefix="luodi-ingest-"))
    try:
        path = (args.keep or folder) / f"ingest_{rows}.csv"
        started = time.perf_counter()
        if not path.exists():
            generate(path, rows)
        size = path.stat().st_size
        print(f"ingest: {rows:,} rows x ({len(NUMERIC)} float + {len(CATEGORIES)} category columns + yes/no target), "
              f"CSV {mib(size)} ({size:,} bytes), generated in {time.perf_counter() - started:.1f} s (not timed) | "
              f"python {platform.python_version()} | load average {os.getloadavg()[0]:.2f}")
        print("each variant runs in a fresh subprocess; 'before' = RSS after imports, right before the ingest; "
              "'peak' = ru_maxrss; 'increase' = peak - before")
        results: dict[str, list[dict[str, Any]]] = {"luodi": [], "pandas": []}
        for round_index in range(rounds):
            for variant in ("luodi", "pandas") if round_index % 2 == 0 else ("pandas", "luodi"):
                result = run_child(variant, path)
                results[variant].append(result)
                phases = ", ".join(f"{k} {v:.2f}" for k, v in result["phases"].items())
                print(f"  round {round_index + 1}/{rounds} {variant:>6}: {result['seconds']:6.2f} s | before "
                      f"{mib(result['rss_before'])}, peak {mib(result['peak'])}, increase "
                      f"{mib(result['peak'] - result['rss_before'])} | {phases}", flush=True)

        summary: dict[str, dict[str, float]] = {}
        for variant, runs in results.items():
            best = min(runs, key=lambda run: run["seconds"])
            summary[variant] = {
                "seconds": statistics.median(run["seconds"] for run in runs),
                "peak_rss": statistics.median(run["peak"] for run in runs),
                "peak_increase": statistics.median(run["peak"] - run["rss_before"] for run in runs),
                "rss_before": statistics.median(run["rss_before"] for run in runs),
                "phases_of_fastest_run": best["phases"],
            }
        for variant, item in summary.items():
            print(f"{variant:>6}: {item['seconds']:6.2f} s ({item['seconds'] / (size / 2**20) * 1e3:.1f} ms per MiB) | "
                  f"peak RSS {mib(item['peak_rss'])} = {item['peak_rss'] / size:.2f}x the file | increase "
                  f"{mib(item['peak_increase'])} = {item['peak_increase'] / size:.2f}x the file (median of {rounds})")
        luodi, pandas = summary["luodi"], summary["pandas"]
        print(f"luodi / pandas: time {luodi['seconds'] / pandas['seconds']:.2f}x, peak RSS "
              f"{luodi['peak_rss'] / pandas['peak_rss']:.2f}x, peak increase "
              f"{luodi['peak_increase'] / pandas['peak_increase']:.2f}x (luodi also splits, checks, scales and "
              "fingerprints)")
        scale = 1_000_000 / rows
        time_ok = luodi["seconds"] * scale <= GOAL_SECONDS
        peak_ok = luodi["peak_rss"] <= GOAL_PEAK_OVER_FILE * size
        increase_ok = luodi["peak_increase"] <= GOAL_PEAK_OVER_FILE * size
        print(f"goals{' (time scaled to 1M rows)' if scale != 1 else ''}: luodi <= {GOAL_SECONDS:.0f} s: "
              f"{'MET' if time_ok else 'MISSED'} ({luodi['seconds'] * scale:.1f} s) | peak RSS <= "
              f"{GOAL_PEAK_OVER_FILE:.0f}x file: absolute {'MET' if peak_ok else 'MISSED'} "
              f"({luodi['peak_rss'] / size:.2f}x), increase {'MET' if increase_ok else 'MISSED'} "
              f"({luodi['peak_increase'] / size:.2f}x)")
        report = {
            "benchmark": "ingest", "quick": args.quick, "rows": rows, "rounds": rounds, "file_bytes": size,
            "python": platform.python_version(), "summary": summary, "runs": results,
            "goals": {"seconds": GOAL_SECONDS, "peak_over_file": GOAL_PEAK_OVER_FILE, "time_met": time_ok,
                      "peak_met": peak_ok, "peak_increase_met": increase_ok},
        }
        write_result("ingest", report, args.quick)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
