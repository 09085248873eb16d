"""luodi's training loop on a CUDA GPU against the default hand-written loop: the same model, data and batches.

Workloads (synthetic uint8 images, 10 classes, AdamW lr 1e-3, weight decay 0.01): vision.py's cifar_cnn and
mnist_cnn, and `model.type: resnet` (luodi's small residual network, its defaults) on 3x32x32.

Variants, each in a fresh subprocess, taking turns in every round; both train the module `build_model` makes for
the config (so the architecture is identical, uint8 images scaled and normalized in the model):
- default: the idiomatic loop on a GPU: the images in host memory, each shuffled batch sliced and copied with
  `.to(device)`, fp32, zero_grad / forward / cross-entropy / backward / step, torch's defaults otherwise
  (cuDNN autotuning off, NCHW).
- luodi: `luodi.train.loop.fit` with the set-up `runtime.device: cuda` gives: TF32 tensor-core math (the
  `mixed_precision: auto` choice on Ampere and later), the splits copied to the GPU once, cuDNN autotuning, the
  fused AdamW kernel, channels-last, and its defaults (gradient clipping, per-epoch validation on 1,024 rows and a
  checkpoint).
- luodi_nchw: the same with `channels_last: false`.
Throughput is samples/s over the epochs after the first (cuDNN autotuning, CUDA context and kernels warm up in
it), synchronized at the end of each epoch's training steps; luodi's whole epochs (validation pass and checkpoint
included) are printed beside.

    python benchmarks/gpu_training.py               # 3 rounds, 3 workloads, batch 64 and 256: about 7 minutes
    python benchmarks/gpu_training.py --quick       # 1 round

Needs a CUDA device; it says so and exits 2 without one.
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
import time
from pathlib import Path
from typing import Any

from results_file import write_result  # benchmarks/ is on sys.path when a script runs
from vision import image_inputs, luodi_cnn, luodi_config, make_images

SHAPES = {"cifar_cnn": (3, 32, 32), "mnist_cnn": (1, 28, 28), "resnet": (3, 32, 32)}
VALIDATION_ROWS = 1024


def config_for(workload: str, batch: int, epochs: int, channels_last: bool) -> Any:
    """vision.py's config of the workload (the CIFAR shape for resnet, with luodi's `resnet` defaults), at batch
    `batch`, on the GPU."""
    from luodi.config import validate_config

    config = luodi_config("cifar_cnn" if workload == "resnet" else workload, "unused.csv", epochs, channels_last)
    if workload == "resnet":
        config.update(name="resnet", model={"type": "resnet", "resnet": {"channels_last": channels_last}})
    config["trainer"]["batch_size"] = batch
    config["runtime"] = {"device": "cuda", "threads": "auto"}
    return validate_config(config)


def run_default(workload: str, rows: int, epochs: int, batch: int) -> float:
    import torch
    from torch import nn

    device = torch.device("cuda")
    images, labels = make_images(rows, SHAPES[workload])
    x, y = image_inputs(images), torch.from_numpy(labels)
    torch.manual_seed(0)
    model = luodi_cnn(config_for(workload, batch, epochs, channels_last=False), images).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    ends = []
    for _ in range(epochs):
        order = torch.randperm(rows)
        for start in range(0, rows, batch):
            index = order[start:start + batch]
            batch_inputs = {name: tensor[index].to(device) for name, tensor in x.items()}
            optimizer.zero_grad()
            loss_fn(model(batch_inputs), y[index].to(device)).backward()
            optimizer.step()
        torch.cuda.synchronize()
        ends.append(time.perf_counter())
    return rows * (epochs - 1) / (ends[-1] - ends[0])


class SyncedClock:
    """A luodi progress display that notes, after the GPU has finished its work, when each epoch's last training
    step ends (the baseline's work) and when the epoch ends (luodi's validation pass and checkpoint included)."""

    def __init__(self) -> None:
        self.ends: list[float] = []
        self.last_steps: list[float] = []
        self.steps_per_epoch, self.steps = 0, 0

    def start(self, epochs: int, steps_per_epoch: int, epoch: int, step: int) -> None:
        self.steps_per_epoch = steps_per_epoch

    def step(self, loss: float | None) -> None:
        self.steps += 1
        if self.steps % self.steps_per_epoch == 0:
            import torch

            torch.cuda.synchronize()
            self.last_steps.append(time.perf_counter())

    def epoch_end(self, epoch: int, metrics: dict[str, float], best: bool) -> None:
        import torch

        torch.cuda.synchronize()
        self.ends.append(time.perf_counter())

    def close(self) -> None: ...

    def rates(self, rows: int) -> dict[str, float]:
        steps = sum(last - previous for previous, last in zip(self.ends, self.last_steps[1:], strict=False))
        return {"samples_per_s": rows * (len(self.ends) - 1) / steps,
                "epoch_samples_per_s": rows * (len(self.ends) - 1) / (self.ends[-1] - self.ends[0])}


def run_luodi(workload: str, rows: int, epochs: int, batch: int, channels_last: bool = True) -> dict[str, Any]:
    import torch

    from luodi.tasks.classification import MULTICLASS, classification_metrics
    from luodi.train.loop import Tensors, fit
    from luodi.train.precision import PRECISIONS
    from luodi.train.runtime import apply_runtime

    config = config_for(workload, batch, epochs, channels_last)
    environment = apply_runtime(config.runtime, config.trainer.seed)
    images, labels = make_images(rows + VALIDATION_ROWS, SHAPES[workload])
    x, y = image_inputs(images), torch.from_numpy(labels)
    train = Tensors({k: v[:rows] for k, v in x.items()}, y[:rows])
    validation = Tensors({k: v[rows:] for k, v in x.items()}, y[rows:])
    clock = SyncedClock()
    with tempfile.TemporaryDirectory() as run_dir:
        result = fit(luodi_cnn(config, images), train, validation, config.trainer, task=MULTICLASS,
                     loss_fn=torch.nn.CrossEntropyLoss(), score=lambda o, t: classification_metrics(t, o),
                     monitor="loss", mode="min", run_dir=Path(run_dir), device=torch.device("cuda"),
                     progress=clock, precision=PRECISIONS[environment["mixed_precision"]],
                     pin_memory=environment["pin_memory"])
    return {**clock.rates(rows), **result.extra}


def run_child(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{args} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--rows", type=int, default=16384)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--workloads", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--workload", default="cifar_cnn", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=64, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu_training: no CUDA device here; run it on a machine with one", file=sys.stderr)
        return 2
    if args.child:
        if args.child == "default":
            result = {"samples_per_s": run_default(args.workload, args.rows, args.epochs, args.batch)}
        else:
            result = run_luodi(args.workload, args.rows, args.epochs, args.batch, args.child == "luodi")
        print(json.dumps(result))
        return 0

    rounds = args.rounds or (1 if args.quick else 3)
    device = torch.cuda.get_device_name()
    print(f"gpu_training: {device} | {rounds} round(s), {args.rows} rows, {args.epochs} epochs (the first untimed) "
          f"| torch {torch.__version__}, python {platform.python_version()}")
    variants = ["default", "luodi", "luodi_nchw"]
    runs: dict[str, dict[str, list[float]]] = {}
    epoch_runs: dict[str, list[float]] = {}
    extra: dict[str, Any] = {}
    for round_index in range(rounds):
        shift = round_index % len(variants)
        order = variants[shift:] + variants[:shift]
        for workload in args.workloads:
            for batch in args.batches:
                key = f"{workload}/b{batch}"
                runs.setdefault(key, {v: [] for v in variants})
                for variant in order:
                    result = run_child("--child", variant, "--workload", workload, "--batch", str(batch),
                                       "--rows", str(args.rows), "--epochs", str(args.epochs))
                    runs[key][variant].append(result["samples_per_s"])
                    if variant == "luodi":
                        epoch_runs.setdefault(key, []).append(result["epoch_samples_per_s"])
                        extra[key] = {k: result[k] for k in ("mixed_precision", "data_placement")}
                line = "  ".join(f"{v} {runs[key][v][-1]:,.0f}" for v in variants)
                print(f"  round {round_index + 1}/{rounds} {key}: {line} samples/s", flush=True)

    def ratio(a: list[float], b: list[float]) -> float:
        return statistics.median(x / y for x, y in zip(a, b, strict=True))

    summary = {key: {"samples_per_s": {v: statistics.median(measured[v]) for v in variants},
                     "luodi/default": ratio(measured["luodi"], measured["default"]),
                     "luodi_nchw/default": ratio(measured["luodi_nchw"], measured["default"]),
                     "whole_epoch_luodi/default": ratio(epoch_runs[key], measured["default"]),
                     **extra[key]} for key, measured in runs.items()}
    print("median samples/s and ratios to the default loop (median of per-round ratios; luodi's training steps, "
          "then its whole epochs with validation and checkpoint):")
    for key, result in summary.items():
        rates = result["samples_per_s"]
        print(f"  {key:>16}: default {rates['default']:,.0f}  luodi {rates['luodi']:,.0f} "
              f"x{result['luodi/default']:.2f}  nchw {rates['luodi_nchw']:,.0f} "
              f"x{result['luodi_nchw/default']:.2f}  whole epochs "
              f"x{result['whole_epoch_luodi/default']:.2f}  ({result['mixed_precision']}, data "
              f"{result['data_placement']})")
    write_result("gpu_training", {"benchmark": "gpu_training", "device": device, "torch": torch.__version__,
                                  "rounds": rounds, "rows": args.rows, "epochs": args.epochs, "cores": os.cpu_count(),
                                  "summary": summary, "runs": runs, "whole_epoch_runs": epoch_runs}, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
