"""The process set-up levers of `luodi.train.runtime`: allocator tuning and thread count, on training steps.

Workloads (training steps, AdamW, synthetic data sliced from pre-made tensors):
- cifar_cnn: conv32-pool-fc64-fc10 on 3x32x32, batch 64 (plain torch.nn, defined here: luodi has no CNN yet)
- mnist_cnn: conv32-pool-conv64-pool-fc128-fc10 on 1x28x28, batch 64 (likewise)
- tabular_mlp: luodi's MLP 10-64-64-1 (`luodi.models.mlp.MLP`), batch 256

Variants (each workload x variant runs in its own fresh subprocess: mallopt is process-global, and one workload's
heap history would change the next one's page faults):
- default: 1 thread, glibc malloc as it comes
- tuned: 1 thread, `luodi.train.runtime.tune_allocator()` (mallopt) called at start, as `apply_runtime` does
- env: 1 thread, MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ = 4000000000 in the environment (the reference
  PERFORMANCE.md measured x1.34-1.60 with on CNNs)
- threads2: 2 threads, default allocator
- threads2_tuned (opt-in, `--variants`): 2 threads, tune_allocator(): luodi's default set-up on a free machine

Variants take turns in every round (order rotates); reported: median samples/s and the median of per-round
ratios against `default` (threads2_tuned also against threads2), plus minor page faults per step.

    .venv/bin/python benchmarks/runtime_levers.py            # 3 rounds x 3 workloads x 4 variants, ~2.5 min
    .venv/bin/python benchmarks/runtime_levers.py --quick    # 1 round, cifar_cnn + tabular_mlp, 3 variants (< 30 s)
    .venv/bin/python benchmarks/runtime_levers.py --variants default tuned threads2 threads2_tuned
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

from results_file import write_result  # benchmarks/ is on sys.path when a script runs

ENV_TUNING = {"MALLOC_MMAP_THRESHOLD_": "4000000000", "MALLOC_TRIM_THRESHOLD_": "4000000000"}
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {"threads": 1, "mallopt": False, "env": False},
    "tuned": {"threads": 1, "mallopt": True, "env": False},
    "env": {"threads": 1, "mallopt": False, "env": True},
    "threads2": {"threads": 2, "mallopt": False, "env": False},
    "threads2_tuned": {"threads": 2, "mallopt": True, "env": False},
}
# (variant, reference) pairs reported as ratios
COMPARISONS = [("tuned", "default"), ("env", "default"), ("threads2", "default"), ("threads2_tuned", "threads2"),
               ("threads2_tuned", "default")]
WORKLOADS = ("cifar_cnn", "mnist_cnn", "tabular_mlp")


# ----------------------------------------------------------------------------------------- child side
def build(workload: str) -> tuple[Any, Any, Any, Any, int]:
    """(model, inputs, targets, loss function, batch size) for a workload; data is 4096 synthetic samples."""
    import torch
    from torch import nn

    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    if workload == "cifar_cnn":
        model = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(32 * 16 * 16, 64), nn.ReLU(), nn.Linear(64, 10),
        )
        x = torch.randn(4096, 3, 32, 32, generator=generator)
        return model, x, torch.randint(0, 10, (4096,), generator=generator), nn.CrossEntropyLoss(), 64
    if workload == "mnist_cnn":
        model = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
        )
        x = torch.randn(4096, 1, 28, 28, generator=generator)
        return model, x, torch.randint(0, 10, (4096,), generator=generator), nn.CrossEntropyLoss(), 64
    from luodi.config import ModelConfig
    from luodi.models.mlp import MLP
    from luodi.tasks.losses import RegressionLoss

    mlp = MLP(ModelConfig(hidden_sizes=[64, 64], dropout=0.0), dense_width=10, categories=[], output_size=1)
    x = torch.randn(4096, 10, generator=generator)
    y = torch.randn(4096, generator=generator)

    class Dense(nn.Module):  # the MLP reads {"dense": x}
        def __init__(self) -> None:
            super().__init__()
            self.mlp = mlp

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            return self.mlp({"dense": inputs})

    return Dense(), x, y, RegressionLoss(), 256


def measure(workload: str, window: float) -> dict[str, float]:
    import torch

    model, x, y, loss_fn, batch_size = build(workload)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    rows = len(x)

    def steps(count: int, start: int) -> int:
        order = torch.randperm(rows)
        for step in range(start, start + count):
            begin = (step * batch_size) % (rows - batch_size + 1)
            index = order[begin:begin + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x[index]), y[index])
            loss.backward()
            optimizer.step()
        return start + count

    done = steps(5, 0)  # warm-up
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    started = time.perf_counter()
    counted = 0
    while time.perf_counter() - started < window:
        done = steps(5, done)
        counted += 5
    seconds = time.perf_counter() - started
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return {"samples_per_s": counted * batch_size / seconds, "minor_faults_per_step": faults / counted,
            "steps": counted, "batch_size": batch_size}


def child(variant: str, window: float, workloads: list[str]) -> dict[str, Any]:
    import torch

    import luodi.models.mlp  # noqa: F401 - imported before measuring, like torch
    from luodi.train.runtime import tune_allocator

    setting = VARIANTS[variant]
    allocator = tune_allocator() if setting["mallopt"] else "default"
    torch.set_num_threads(setting["threads"])
    results = {workload: measure(workload, window) for workload in workloads}
    return {"variant": variant, "allocator": allocator, "threads": torch.get_num_threads(),
            "env": {key: os.environ.get(key) for key in ENV_TUNING}, "results": results}


def run_child(variant: str, window: float, workloads: list[str]) -> dict[str, Any]:
    env = {key: value for key, value in os.environ.items() if key not in ENV_TUNING}
    if VARIANTS[variant]["env"]:
        env.update(ENV_TUNING)
    command = [sys.executable, __file__, "--child", variant, "--window", str(window), "--workloads", *workloads]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} child failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------- parent side
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 round, cifar_cnn + tabular_mlp, default/tuned/threads2, 0.4 s windows")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--window", type=float, default=None, help="seconds timed per workload and variant")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--workloads", nargs="+", default=None, choices=WORKLOADS)
    parser.add_argument("--variants", nargs="+", default=None, choices=list(VARIANTS))
    args = parser.parse_args()
    if args.workloads is None:
        args.workloads = ["cifar_cnn", "tabular_mlp"] if args.quick else list(WORKLOADS)
    if args.child:
        print(json.dumps(child(args.child, args.window, args.workloads)))
        return 0

    rounds = args.rounds or (1 if args.quick else 3)
    window = args.window or (0.4 if args.quick else 1.2)
    names = args.variants or ["default", "tuned"] + ([] if args.quick else ["env"]) + ["threads2"]
    if "default" not in names:
        names.insert(0, "default")
    comparisons = [(a, b) for a, b in COMPARISONS if a in names and b in names]
    print(f"runtime_levers: {', '.join(args.workloads)} | variants {', '.join(names)}, each in a fresh subprocess, "
          f"{rounds} round(s), order rotating, {window:.1f} s timed per workload after 5 warm-up steps | "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} | python {platform.python_version()}")
    # runs[name][round] = {workload: measurement}
    runs: dict[str, list[dict[str, Any]]] = {name: [{} for _ in range(rounds)] for name in names}
    settings: dict[str, Any] = {}
    for round_index in range(rounds):
        shift = round_index % len(names)
        order = names[shift:] + names[:shift]
        for workload in args.workloads:
            line = []
            for name in order:
                result = run_child(name, window, [workload])
                runs[name][round_index][workload] = result["results"][workload]
                settings[name] = {key: result[key] for key in ("allocator", "threads", "env")}
                line.append(f"{name} {result['results'][workload]['samples_per_s']:,.0f}")
            print(f"  round {round_index + 1}/{rounds} {workload:>11}: {'  '.join(line)} samples/s", flush=True)

    summary: dict[str, Any] = {}
    print("median samples/s (minor page faults per step):")
    for workload in args.workloads:
        rates = {name: statistics.median(run[workload]["samples_per_s"] for run in runs[name]) for name in names}
        faults = {name: statistics.median(run[workload]["minor_faults_per_step"] for run in runs[name])
                  for name in names}
        ratios = {
            f"{variant}/{reference}": statistics.median(
                a[workload]["samples_per_s"] / b[workload]["samples_per_s"]
                for a, b in zip(runs[variant], runs[reference], strict=True)
            )
            for variant, reference in comparisons
        }
        summary[workload] = {"samples_per_s": rates, "minor_faults_per_step": faults, "ratios": ratios}
        print(f"  {workload:>11}: " + "  ".join(f"{name} {rates[name]:,.0f} ({faults[name]:.0f})" for name in names))
    print("ratios (median of per-round ratios):")
    for workload in args.workloads:
        ratios = summary[workload]["ratios"]
        print(f"  {workload:>11}: " + "  ".join(f"{key} x{value:.2f}" for key, value in ratios.items()))
    print(f"load average {os.getloadavg()[0]:.2f} at end (2-thread numbers suffer most when other work runs)")
    report = {"benchmark": "runtime_levers", "quick": args.quick, "rounds": rounds, "window_s": window,
              "python": platform.python_version(), "cores": os.cpu_count(), "variants": VARIANTS,
              "env_tuning": ENV_TUNING, "settings_seen": settings, "summary": summary, "runs": runs}
    write_result("runtime_levers", report, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
