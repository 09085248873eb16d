"""What the evaluation report costs a training run, on scikit-learn's breast-cancer data (quickstart's files).

- baseline: `luodi.api.train` with `report.enabled=false`: read, split, fit, test, package, register.
- luodi: the same run writing report.html (into the package and the run folder).

Both train the config `luodi init` writes, one thread, in the same process; the variants take turns each round
(the order rotates). Printed: median seconds per variant, the median of per-round ratios, and the median extra
seconds. The report is also built alone from the package, split into gathering its numbers (metrics tables,
slices, permutation importance) and drawing it (plots, HTML). The goal is under 2 s per report.

    .venv/bin/python benchmarks/report_cost.py            # about 2 minutes
    .venv/bin/python benchmarks/report_cost.py --quick    # smoke run, < 1 minute
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from results_file import write_result  # benchmarks/ is on sys.path when a script runs

import luodi.api as api
from luodi.evaluate.report import render_report, report_data
from luodi.evaluate.report_inputs import evaluation_input
from luodi.quickstart import write_breast_cancer

GOAL_SECONDS = 2.0


def train_seconds(config: Path, home: Path, report: bool) -> tuple[float, Any]:
    started = time.perf_counter()
    result = api.train(config, ["runtime.threads=1", f"report.enabled={str(report).lower()}"], home=home,
                       progress="silent")
    return time.perf_counter() - started, result


def build_seconds(package_path: str, data: Path) -> dict[str, float]:
    """Gathering the report's numbers, then drawing it, from a loaded package and a labelled file."""
    package = api.load_model(package_path)
    table, encoded = package.encode(str(data), data.name, with_target=True)
    outputs = package.outputs(encoded)
    metrics = api._test_metrics(package.pipeline, outputs, encoded.target)
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
    args = parser.parse_args()
    rounds = 2 if args.quick else 6
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="luodi-bench-report-") as folder:
        work = Path(folder)
        paths = write_breast_cancer(work)
        config = work / "luodi.yaml"
        api.init(paths["train"], "diagnosis", output=config, name="breast-cancer")
        train_seconds(config, work / "warm", True)  # imports and font cache, not counted
        times: dict[str, list[float]] = {"baseline": [], "luodi": []}
        ratios, extras = [], []
        package = ""
        for round_index in range(rounds):
            order = ["baseline", "luodi"] if round_index % 2 == 0 else ["luodi", "baseline"]
            measured = {}
            for variant in order:
                seconds, result = train_seconds(config, work / f"home-{variant}", variant == "luodi")
                measured[variant] = seconds
                times[variant].append(seconds)
                if variant == "luodi":
                    assert result.report is not None, result.warnings
                    package = result.package
            ratios.append(measured["luodi"] / measured["baseline"])
            extras.append(measured["luodi"] - measured["baseline"])
            print(f"round {round_index + 1}: baseline {measured['baseline']:.2f} s, with report "
                  f"{measured['luodi']:.2f} s")
        builds = [build_seconds(package, paths["holdout"]) for _ in range(rounds)]
    report = {
        "benchmark": "report_cost", "quick": args.quick, "rounds": rounds, "python": platform.python_version(),
        "torch": torch.__version__, "threads": 1,
        "train_seconds": {variant: statistics.median(values) for variant, values in times.items()},
        "ratio_with_report": statistics.median(ratios),
        "extra_seconds": statistics.median(extras),
        "build": {key: statistics.median(build[key] for build in builds) for key in builds[0]},
        "goal_seconds": GOAL_SECONDS,
    }
    seconds = report["train_seconds"]
    print(f"train without report {seconds['baseline']:.2f} s, with {seconds['luodi']:.2f} s: "
          f"ratio {report['ratio_with_report']:.2f}, extra {report['extra_seconds']:.2f} s per run")
    build = report["build"]
    print(f"report alone: {build['total']:.2f} s (numbers {build['gather']:.2f} s, drawing {build['draw']:.2f} s), "
          f"{build['bytes'] / 1024:.0f} KiB; goal < {GOAL_SECONDS:.0f} s")
    write_result("report_cost", report, args.quick)


if __name__ == "__main__":
    main()
