"""luodi's trainer (`luodi.train.loop.fit`) against a hand-written PyTorch loop: same model, same data.

All variants train luodi's tabular MLP (10 -> 64 -> 64 -> 1, no dropout) on the same 100k synthetic regression
rows with AdamW (lr 1e-3, weight decay 0.01), one epoch per timed run:

- baseline: the idiomatic hand-written loop: shuffled index slicing of pre-made tensors, zero_grad, forward,
  MSE, backward, step; `AdamW(model.parameters())`.
- baseline, luodi's param groups (reference): the same loop with luodi's optimizer (`build_optimizer`: no weight
  decay on biases, so two param groups). It separates the cost of that design choice from the loop's.
- luodi: `fit` with early stopping off, no gradient clipping, no lr decay, silent progress, a fresh temp run
  folder. Its per-epoch costs stay in the timing: 1000-row validation pass, checkpoint, best-weights copy,
  optimizer/scheduler set-up. The validation pass is also timed on its own and printed.

Variants take turns in each round (the order rotates every round); the report is the median samples/s per
variant and the median of the per-round ratios luodi / baseline, on wall-clock time, with the same ratio on CPU
time (process_time) as a cross-check. One intra-op thread for every variant (torch.set_num_threads(1)).

    .venv/bin/python benchmarks/trainer_overhead.py            # about 1 minute
    .venv/bin/python benchmarks/trainer_overhead.py --quick    # smoke run, < 30 s
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from results_file import write_result  # benchmarks/ is on sys.path when a script runs
from torch.nn import functional as F

from luodi.config import ModelConfig, OptimizerConfig, TrainerConfig
from luodi.models.inference import predict_tensors
from luodi.models.mlp import MLP
from luodi.tasks.losses import RegressionLoss
from luodi.tasks.regression import REGRESSION, regression_metrics
from luodi.train.loop import Tensors, build_optimizer, fit

FEATURES = 10
ROWS = 100_000
VALIDATION_ROWS = 1000
GOALS = {32: 0.85, 256: 0.95}
OPTIMIZER = {"type": "adamw", "lr": 1e-3, "weight_decay": 0.01}


def make_data(rows: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, FEATURES, generator=generator)
    weights = torch.randn(FEATURES, generator=generator)
    y = torch.tanh(x @ weights) + 0.1 * torch.randn(rows, generator=generator)
    return x.contiguous(), y.contiguous()


def make_model(seed: int) -> MLP:
    torch.manual_seed(seed)
    return MLP(ModelConfig(hidden_sizes=[64, 64], dropout=0.0), dense_width=FEATURES, categories=[], output_size=1)


def score(outputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    return regression_metrics(targets, outputs)


def run_baseline(train: Tensors, batch_size: int, seed: int, luodi_groups: bool = False) -> tuple[float, float]:
    """One epoch of the hand-written loop; (wall, cpu) seconds, optimizer creation included, model creation not."""
    model = make_model(seed)
    x, y = train.inputs["dense"], train.target
    wall, cpu = time.perf_counter(), time.process_time()
    if luodi_groups:
        optimizer = build_optimizer(model, OptimizerConfig(**OPTIMIZER))
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=OPTIMIZER["lr"], weight_decay=OPTIMIZER["weight_decay"])
    model.train()
    rows = len(x)
    order = torch.randperm(rows)
    for start in range(0, rows, batch_size):
        index = order[start:start + batch_size]
        optimizer.zero_grad()
        loss = F.mse_loss(model({"dense": x[index]}).squeeze(-1), y[index])
        loss.backward()
        optimizer.step()
    return time.perf_counter() - wall, time.process_time() - cpu


def run_luodi(train: Tensors, validation: Tensors, batch_size: int, seed: int) -> tuple[float, float]:
    """One epoch of luodi's `fit` in a fresh temp run folder (a used one would resume); (wall, cpu) seconds."""
    model = make_model(seed)
    config = TrainerConfig(
        epochs=1, batch_size=batch_size, gradient_clip=None, scheduler={"type": "none", "warmup_steps": 0},
        optimizer=OPTIMIZER, early_stopping={"enabled": False}, checkpoint_every_steps=0, seed=seed,
    )
    run_dir = Path(tempfile.mkdtemp(prefix="luodi-bench-run-"))
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        fit(model, train, validation, config, task=REGRESSION, loss_fn=RegressionLoss(), score=score,
            monitor="loss", mode="min", run_dir=run_dir, device=torch.device("cpu"), progress=None)
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def time_validation(validation: Tensors, repeats: int = 20) -> float:
    """Median seconds of the validation work fit does once per epoch (forward over 1000 rows + metrics)."""
    model = make_model(0)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        outputs, _ = predict_tensors(model, validation.inputs, REGRESSION, 1024, RegressionLoss(), validation.target,
                                     training=True)
        score(outputs, validation.target.numpy())
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds at batch 32, 3 at 256 (< 30 s)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per batch size (default 7 at 32, 15 at 256)")
    args = parser.parse_args()

    torch.set_num_threads(1)
    # An epoch at batch 256 lasts ~0.3 s, so that batch size gets more (short) rounds.
    rounds_for = {32: args.rounds or (2 if args.quick else 7), 256: args.rounds or (3 if args.quick else 15)}
    x, y = make_data(ROWS + VALIDATION_ROWS)
    train = Tensors({"dense": x[:ROWS]}, y[:ROWS])
    validation = Tensors({"dense": x[ROWS:]}, y[ROWS:])
    warm = Tensors({"dense": x[:5000]}, y[:5000])

    print(f"trainer_overhead: luodi fit vs a hand-written loop | {ROWS:,} train rows x {FEATURES} float features, "
          f"regression, MLP 10-64-64-1, AdamW lr 1e-3 wd 0.01, 1 epoch per timed run | torch {torch.__version__}, "
          f"torch.set_num_threads(1) for every variant | load average {os.getloadavg()[0]:.2f} at start")
    validation_seconds = time_validation(validation)
    print(f"fit's validation pass ({VALIDATION_ROWS} rows forward + metrics, once per epoch) takes "
          f"{validation_seconds * 1e3:.2f} ms and is INCLUDED in luodi's time, as are its per-epoch checkpoint "
          "(to a temp run folder) and optimizer/scheduler set-up")
    print("ratio = luodi / baseline samples/s: median of per-round ratios on wall-clock time; 'cpu' is the same "
          "on process_time, less affected by other processes on the machine")

    report: dict[str, Any] = {
        "benchmark": "trainer_overhead", "quick": args.quick, "rows": ROWS, "features": FEATURES,
        "validation_rows": VALIDATION_ROWS, "threads": 1, "torch": torch.__version__,
        "python": platform.python_version(), "validation_ms": validation_seconds * 1e3,
        "validation_time": "included in luodi's time", "load_average_start": os.getloadavg()[0], "batches": {},
    }
    passed = True
    for batch_size in (32, 256):
        variants: dict[str, Callable[[int], tuple[float, float]]] = {
            "baseline": lambda seed, b=batch_size: run_baseline(train, b, seed),
            "baseline_luodi_groups": lambda seed, b=batch_size: run_baseline(train, b, seed, luodi_groups=True),
            "luodi": lambda seed, b=batch_size: run_luodi(train, validation, b, seed),
        }
        run_baseline(warm, batch_size, 0)  # warm-up, not counted
        run_luodi(warm, validation, batch_size, 0)
        names = list(variants)
        wall: dict[str, list[float]] = {name: [] for name in names}
        cpu: dict[str, list[float]] = {name: [] for name in names}
        rounds = rounds_for[batch_size]
        for round_index in range(rounds):
            for name in names[round_index % 3:] + names[:round_index % 3]:  # rotate who goes first
                seconds, cpu_seconds = variants[name](round_index)
                wall[name].append(seconds)
                cpu[name].append(cpu_seconds)
            line = "  ".join(f"{name} {ROWS / wall[name][-1]:>9,.0f}" for name in names)
            print(f"  batch {batch_size:>3} round {round_index + 1:>2}/{rounds}: {line} samples/s  "
                  f"ratio {wall['baseline'][-1] / wall['luodi'][-1]:.3f}", flush=True)

        def ratio(times: dict[str, list[float]], reference: str) -> float:
            return statistics.median(r / luodi for r, luodi in zip(times[reference], times["luodi"], strict=True))

        rates = {name: statistics.median(ROWS / seconds for seconds in wall[name]) for name in names}
        main_ratio, cpu_ratio = ratio(wall, "baseline"), ratio(cpu, "baseline")
        groups_ratio, groups_cpu_ratio = ratio(wall, "baseline_luodi_groups"), ratio(cpu, "baseline_luodi_groups")
        step_us = batch_size / rates["baseline"] * 1e6
        goal = GOALS[batch_size]
        ok = main_ratio >= goal
        passed &= ok
        print(f"batch {batch_size:>3}: baseline {rates['baseline']:,.0f} samples/s ({step_us:.0f} us/step), "
              f"luodi {rates['luodi']:,.0f} | luodi/baseline {main_ratio:.3f} (cpu {cpu_ratio:.3f}; "
              f"per-round {min(wall['baseline'][i] / wall['luodi'][i] for i in range(rounds)):.3f}-"
              f"{max(wall['baseline'][i] / wall['luodi'][i] for i in range(rounds)):.3f}), about "
              f"{step_us * (1 / main_ratio - 1):+.0f} us/step | goal >= {goal:.2f}: {'MET' if ok else 'MISSED'}")
        print(f"           vs the baseline with luodi's 2 param groups ({rates['baseline_luodi_groups']:,.0f} "
              f"samples/s): {groups_ratio:.3f} (cpu {groups_cpu_ratio:.3f}) = the loop machinery alone")
        report["batches"][str(batch_size)] = {
            "rounds": rounds, "samples_per_s": rates, "ratio_median": main_ratio, "cpu_ratio_median": cpu_ratio,
            "ratio_vs_luodi_groups_baseline": groups_ratio, "cpu_ratio_vs_luodi_groups_baseline": groups_cpu_ratio,
            "wall_seconds": wall, "cpu_seconds": cpu, "goal": goal, "met": ok,
        }
    report["load_average_end"] = os.getloadavg()[0]
    report["all_goals_met"] = passed
    print(f"goals {'MET' if passed else 'NOT met'} | load average {os.getloadavg()[0]:.2f} at end")
    write_result("trainer_overhead", report, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
