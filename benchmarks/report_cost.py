"""What the evaluation report costs a training run, on scikit-learn's breast-cancer data (quickstart's files).

- baseline: `luodi.api.train` with `report.enabled=false`: read, split, fit, test, package, register.
- luodi: the same run writing report.html (into the package and the run folder).

Both train the config `luodi init` writes, one thread; the variants take turns each round (the order rotates).

- warm: both variants in this process, after one run that is not counted (imports, font cache).
- cold: each run in a fresh process, as `luodi train` runs: the report also pays for importing matplotlib and
  its first figure. Only `api.train` is timed (not starting Python and importing torch).

Printed: median seconds per variant, the median of per-round ratios, and the median extra seconds, warm and
cold. The report is also built alone from the package, split into gathering its numbers (metrics tables,
slices, permutation importance) and drawing it (plots, HTML). The goal is under 2 s per report.

    .venv/bin/python benchmarks/report_cost.py            # about 4 minutes
    .venv/bin/python benchmarks/report_cost.py --quick    # smoke run, about 1 minute
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from results_file import write_result  # benchmarks/ is on sys.path when a script runs

import luodi.api as api
from luodi.evaluate.report import render_report, report_data
from luodi.evaluate.report_inputs import evaluation_input
from luodi.evaluate.scoring import split_metrics
from luodi.quickstart import write_breast_cancer

GOAL_SECONDS = 2.0


def train_seconds(config: Path, home: Path, report: bool) -> tuple[float, Any]:
    started = time.perf_counter()
    result = api.train(config, ["runtime.threads=1", f"report.enabled={str(report).lower()}"], home=home,
                       progress="silent")
    return time.perf_counter() - started, result


def alternate(rounds: int, run: Any) -> dict[str, Any]:
    """`run(variant)` -> seconds for both variants each round, order rotating; medians, ratio and extra."""
    times: dict[str, list[float]] = {"baseline": [], "luodi": []}
    ratios, extras = [], []
    for round_index in range(rounds):
        order = ["baseline", "luodi"] if round_index % 2 == 0 else ["luodi", "baseline"]
        measured = {variant: run(variant) for variant in order}
        for variant, seconds in measured.items():
            times[variant].append(seconds)
        ratios.append(measured["luodi"] / measured["baseline"])
        extras.append(measured["luodi"] - measured["baseline"])
        print(f"  round {round_index + 1}: baseline {measured['baseline']:.2f} s, with report "
              f"{measured['luodi']:.2f} s")
    return {"train_seconds": {variant: statistics.median(values) for variant, values in times.items()},
            "ratio_with_report": statistics.median(ratios), "extra_seconds": statistics.median(extras)}


def cold_seconds(config: Path, home: Path, report: bool) -> float:
    """One training run in a fresh Python process (this script with --child)."""
    done = subprocess.run([sys.executable, __file__, "--child", str(config), str(home), str(report).lower()],
                          check=True, capture_output=True, text=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def build_seconds(package_path: str, data: Path) -> dict[str, float]:
    """Gathering the report's numbers, then drawing it, from a loaded package and a labelled file."""
    package = api.load_model(package_path)
    table, encoded = package.encode(str(data), data.name, with_target=True)
    outputs = package.outputs(encoded)
    metrics = split_metrics(package.task, package.pipeline.target, outputs, encoded.target)
    source = evaluation_input(package, table, encoded, outputs, metrics, data.name)
    started = time.perf_counter()
    numbers = report_data(source, package.config.report)
    gathered = time.perf_counter()
    page = render_report(numbers, source.training)
    drawn = time.perf_counter()
    return {"gather": gathered - started, "draw": drawn - gathered, "total": drawn - started, "bytes": len(page)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 rounds instead of 6")
    parser.add_argument("--child", nargs=3, metavar=("CONFIG", "HOME", "REPORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.child:  # one cold run, for cold_seconds
        config, home, report = args.child
        print(json.dumps({"seconds": train_seconds(Path(config), Path(home), report == "true")[0]}))
        return
    rounds = 2 if args.quick else 6
    with tempfile.TemporaryDirectory(prefix="luodi-bench-report-") as folder:
        work = Path(folder)
        paths = write_breast_cancer(work)
        config = work / "luodi.yaml"
        api.init(paths["train"], "diagnosis", output=config, name="breast-cancer")
        _, warm_up = train_seconds(config, work / "warm", True)  # imports and font cache, not counted
        assert warm_up.report is not None, warm_up.warnings
        print("warm (one process):")
        warm = alternate(rounds, lambda variant: train_seconds(config, work / f"home-{variant}",
                                                               variant == "luodi")[0])
        print("cold (a fresh process per run):")
        cold = alternate(rounds, lambda variant: cold_seconds(config, work / f"cold-{variant}", variant == "luodi"))
        builds = [build_seconds(warm_up.package, paths["holdout"]) for _ in range(rounds)]
    report = {
        "benchmark": "report_cost", "quick": args.quick, "rounds": rounds, "python": platform.python_version(),
        "torch": torch.__version__, "threads": 1, "warm": warm, "cold": cold,
        "build": {key: statistics.median(build[key] for build in builds) for key in builds[0]},
        "goal_seconds": GOAL_SECONDS,
    }
    for name, result in (("warm", warm), ("cold", cold)):
        seconds = result["train_seconds"]
        print(f"{name}: train without report {seconds['baseline']:.2f} s, with {seconds['luodi']:.2f} s: "
              f"ratio {result['ratio_with_report']:.2f}, extra {result['extra_seconds']:.2f} s per run")
    build = report["build"]
    print(f"report alone: {build['total']:.2f} s (numbers {build['gather']:.2f} s, drawing {build['draw']:.2f} s), "
          f"{build['bytes'] / 1024:.0f} KiB; goal < {GOAL_SECONDS:.0f} s")
    write_result("report_cost", report, args.quick)


if __name__ == "__main__":
    main()
