"""luodi on images: CNN training against a hand-written PyTorch loop and Keras 3 `model.fit` (torch backend), and
the image-folder input path against pre-made tensors.

Workloads (synthetic data of the seeds' shapes, 10 classes, batch 64, AdamW lr 1e-3, weight decay 0.01):
- cifar_cnn: conv32-pool-fc64-fc10 on 3x32x32 (seed-003)
- mnist_cnn: conv32-pool-conv64-pool-fc128-fc10 on 1x28x28 (seed-004)

Variants, each in a fresh subprocess (the allocator setting is process-wide), taking turns in every round:
- default: the idiomatic hand-written loop: NCHW float tensors made up front, shuffled index slicing, zero_grad,
  forward, cross-entropy, backward, step; torch's default thread count and allocator.
- keras: Keras 3 `Sequential` of the same layers (its default NHWC layout) and `model.fit(x, y, batch_size=64)`,
  KERAS_BACKEND=torch, same threads.
- luodi: the model `model.type: cnn` builds (conv blocks without batch norm, `output: flatten`, one hidden layer)
  trained by `luodi.train.loop.fit` from the uint8 image array the image feature keeps (scaled and normalized on
  the batch in the model), with luodi's runtime set-up (`allocator: tuned`, `threads: auto`, channels_last,
  `mixed_precision: auto`) and
  its defaults (gradient clipping, per-epoch validation on 256 rows and a checkpoint).
- luodi_nchw: the same with `cnn.channels_last: false`, to measure what the channels-last layout brings.
- luodi_fp32: the same as luodi with `mixed_precision: off`: luodi trains CNNs under bf16 autocast on a CPU with
  bf16 instructions (AVX512-BF16, AMX), and this variant shows what that brings.
- default_1t (opt-in, `--variants`): the hand-written loop on one thread, to separate the thread-count lever
  (on a busy 2-core machine luodi's `threads: auto` picks 1) from the allocator and layout levers.
Throughput is samples/s over the epochs after the first (warm-up, Keras tracing); reported: median per variant
and the median of per-round ratios. luodi's figure counts its training steps, the work the baselines do: each
epoch from the end of the previous one to its last step. The validation pass and checkpoint it adds per epoch
(on these 2048-row epochs about a tenth of the time) are in the whole-epoch ratio printed beside.

Image folder input: `luodi.api.train` on a folder of 32x32 PNG files (decoded once, in threads, then cached on
disk) against `fit` on the same images as a pre-made uint8 tensor; the ratio is samples/s after the first epoch.
The folder run's whole time (decode included) is printed for a first run and a second, cached one.

    .venv/bin/python benchmarks/vision.py            # 3 rounds, about 6 minutes (more on a busy machine)
    .venv/bin/python benchmarks/vision.py --quick    # 1 round, smaller data, about 1.5 minutes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from results_file import write_result  # benchmarks/ is on sys.path when a script runs

from luodi.train.progress import Silent

WORKLOADS: dict[str, dict[str, Any]] = {
    "cifar_cnn": {"shape": (3, 32, 32), "channels": [32], "hidden": [64]},
    "mnist_cnn": {"shape": (1, 28, 28), "channels": [32, 64], "hidden": [128]},
}
VARIANTS = ("default", "keras", "luodi", "luodi_nchw", "luodi_fp32", "default_1t")
DEFAULT_VARIANTS = VARIANTS[:5]
GOALS = {"luodi/default": 1.3, "luodi/keras": 2.5, "folder/tensors": 0.9}
BATCH, CLASSES, VALIDATION_ROWS = 64, 10, 256


# ----------------------------------------------------------------------------------------- child side
def make_images(rows: int, shape: tuple[int, int, int], seed: int = 0) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (rows, *shape), dtype=np.uint8), rng.integers(0, CLASSES, rows)


def throughput(epoch_ends: list[float], rows: int) -> float:
    """samples/s over the epochs after the first."""
    return rows * (len(epoch_ends) - 1) / (epoch_ends[-1] - epoch_ends[0])


def run_default(workload: str, rows: int, epochs: int, threads: int | None = None) -> float:
    import torch
    from torch import nn

    if threads is not None:
        torch.set_num_threads(threads)
    spec = WORKLOADS[workload]
    images, labels = make_images(rows, spec["shape"])
    x = torch.from_numpy(images).float().div(255)  # pre-made float tensors
    y = torch.from_numpy(labels)
    torch.manual_seed(0)
    channels, height, _ = spec["shape"]
    layers: list[nn.Module] = []
    for width in spec["channels"]:
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        channels, height = width, height // 2
    layers += [nn.Flatten(), nn.Linear(channels * height * height, spec["hidden"][0]), nn.ReLU(),
               nn.Linear(spec["hidden"][0], CLASSES)]
    model = nn.Sequential(*layers)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    loss_fn = nn.CrossEntropyLoss()
    ends = []
    for _ in range(epochs):
        order = torch.randperm(rows)
        for start in range(0, rows, BATCH):
            index = order[start:start + BATCH]
            optimizer.zero_grad()
            loss_fn(model(x[index]), y[index]).backward()
            optimizer.step()
        ends.append(time.perf_counter())
    return throughput(ends, rows)


def run_keras(workload: str, rows: int, epochs: int) -> float:
    os.environ["KERAS_BACKEND"] = "torch"
    import keras

    spec = WORKLOADS[workload]
    images, labels = make_images(rows, spec["shape"])
    x = (images.transpose(0, 2, 3, 1) / 255).astype("float32")  # Keras' default channels-last layout
    keras.utils.set_random_seed(0)
    layers: list[Any] = [keras.Input(x.shape[1:])]
    for width in spec["channels"]:
        layers += [keras.layers.Conv2D(width, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D()]
    layers += [keras.layers.Flatten(), keras.layers.Dense(spec["hidden"][0], activation="relu"),
               keras.layers.Dense(CLASSES)]
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ends: list[float] = []
    stamp = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: ends.append(time.perf_counter()))
    model.fit(x, labels, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=[stamp])
    return throughput(ends, rows)


class EpochClock(Silent):
    """A luodi progress display that notes when each epoch's last training step and the epoch itself end: an
    epoch is its training steps (the baselines' work), then luodi's validation pass and checkpoint. The rest of
    the display (run id, data preparation) stays silent."""

    def __init__(self) -> None:
        self.ends: list[float] = []
        self.last_steps: list[float] = []
        self.last_step = 0.0

    def start(self, epochs: int, steps_per_epoch: int, epoch: int, step: int) -> None: ...

    def step(self, loss: float | None) -> None:
        self.last_step = time.perf_counter()

    def epoch_end(self, epoch: int, metrics: dict[str, float], best: bool) -> None:
        self.last_steps.append(self.last_step)
        self.ends.append(time.perf_counter())

    def close(self) -> None: ...

    def rates(self, rows: int) -> dict[str, float]:
        """samples/s of the training steps (each epoch from the previous one's end to its last step) and of whole
        epochs, over the epochs after the first."""
        steps = sum(last - previous for previous, last in zip(self.ends, self.last_steps[1:], strict=False))
        return {"samples_per_s": rows * (len(self.ends) - 1) / steps,
                "epoch_samples_per_s": throughput(self.ends, rows)}


def luodi_config(workload: str, data: str, epochs: int, channels_last: bool = True,
                 precision: str = "auto") -> dict[str, Any]:
    spec = WORKLOADS[workload]
    channels, height, width = spec["shape"]
    return {
        "name": workload, "data": {"train": data, "split": {"validation": 0.1, "test": 0.05}},
        "target": {"name": "label", "task": "multiclass"},
        "input_features": [{"name": "image", "type": "image", "height": height, "width": width,
                            "channels": channels}],
        "model": {"type": "cnn", "hidden_sizes": spec["hidden"], "dropout": 0.0,
                  "cnn": {"channels": spec["channels"], "batch_norm": False, "pool": "max", "output": "flatten",
                          "channels_last": channels_last}},
        "trainer": {"epochs": epochs, "batch_size": BATCH, "early_stopping": {"enabled": False},
                    "optimizer": {"type": "adamw", "lr": 1e-3, "weight_decay": 0.01}},
        "runtime": {"device": "cpu", "threads": "auto", "allocator": "tuned", "mixed_precision": precision},
    }


def luodi_cnn(config: Any, images: Any) -> Any:
    """The module `build_model` makes for `config` (one image feature) on images of this shape."""
    from luodi.features.image import ImageEncoder
    from luodi.features.pipeline import FeaturePipeline
    from luodi.models import build_model

    channels, height, width = images.shape[1:]
    encoder = ImageEncoder(config.input_features[0], height=height, width=width, channels=channels,  # type: ignore[arg-type]
                           mean=[0.5] * channels, std=[0.29] * channels)  # uniform noise: mean 0.5, std 0.29
    return build_model(config, FeaturePipeline(config, [encoder],
                                               config.task().target(config.target, {"classes": list(range(CLASSES))})))


def image_inputs(images: Any) -> dict[str, Any]:
    """A uint8 image array as the model's input dict (no dense or categorical columns)."""
    import numpy as np
    import torch

    count = len(images)
    return {"dense": torch.zeros(count, 0), "categorical": torch.zeros(count, 0, dtype=torch.int64),
            "image": torch.from_numpy(np.ascontiguousarray(images))}


def fit_tensors(workload: str, rows: int, epochs: int, channels_last: bool = True,
                precision: str = "auto") -> dict[str, Any]:
    """luodi's model and loop on a pre-made uint8 image tensor, as the image feature hands it to `fit`."""
    import torch

    from luodi.config import validate_config
    from luodi.tasks.classification import MULTICLASS, classification_metrics
    from luodi.train.loop import Tensors, fit
    from luodi.train.precision import PRECISIONS
    from luodi.train.runtime import apply_runtime

    config = validate_config(luodi_config(workload, "unused.csv", epochs, channels_last, precision))
    environment = apply_runtime(config.runtime, config.trainer.seed, architecture=config.model.type)
    images, labels = make_images(rows + VALIDATION_ROWS, WORKLOADS[workload]["shape"])

    def split(part: slice) -> Tensors:
        return Tensors(image_inputs(images[part]), torch.from_numpy(labels[part]))

    clock = EpochClock()
    with tempfile.TemporaryDirectory() as run_dir:
        fit(luodi_cnn(config, images), split(slice(0, rows)), split(slice(rows, None)), config.trainer,
            task=MULTICLASS, loss_fn=torch.nn.CrossEntropyLoss(), score=lambda o, y: classification_metrics(y, o),
            monitor="loss", mode="min", run_dir=Path(run_dir), device=torch.device("cpu"), progress=clock,
            precision=PRECISIONS[environment["mixed_precision"]])
    return {**clock.rates(rows), "mixed_precision": environment["mixed_precision"]}


def train_folder(folder: str, epochs: int) -> dict[str, float]:
    """`luodi.api.train` on an image folder; samples/s after the first epoch and the whole run's seconds."""
    import luodi.api as api
    import luodi.train.progress as progress

    clock = EpochClock()
    progress.make_progress = lambda mode="auto": clock  # api.train looks it up when it runs
    config = luodi_config("cifar_cnn", folder, epochs)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as home:
        result = api.train(config, home=home, progress="silent")
    return {**clock.rates(result.rows["train"]), "rows": result.rows["train"], "seconds": time.perf_counter() - started}


def child(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    if args.child in ("default", "default_1t"):
        threads = 1 if args.child == "default_1t" else None
        result = {"samples_per_s": run_default(args.workload, args.rows, args.epochs, threads)}
    elif args.child == "keras":
        result = {"samples_per_s": run_keras(args.workload, args.rows, args.epochs)}
    elif args.child in ("luodi", "luodi_nchw", "luodi_fp32"):
        result = fit_tensors(args.workload, args.rows, args.epochs, args.child != "luodi_nchw",
                             "off" if args.child == "luodi_fp32" else "auto")
    else:
        result = train_folder(args.folder, args.epochs)
    return {**result, "threads": torch.get_num_threads()}


def run_child(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    command = [sys.executable, __file__, *args]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{args} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------- parent side
def write_folder(folder: Path, rows: int) -> None:
    """rows 32x32 RGB PNG files in 10 class folders."""
    from PIL import Image

    images, labels = make_images(rows, (3, 32, 32), seed=1)
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        target = folder / f"class{label}"
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.transpose(1, 2, 0)).save(target / f"{index:05d}.png")


def compare_folder(folder_rows: int, rounds: int, epochs: int) -> dict[str, Any]:
    """`api.train` on a folder of PNG files against `fit` on the same images as a pre-made tensor."""
    folder_runs, tensor_runs, seconds = [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "photos"
        write_folder(folder, folder_rows)
        cache = {"LUODI_CACHE": str(Path(scratch) / "cache")}
        for round_index in range(rounds):
            shutil.rmtree(cache["LUODI_CACHE"], ignore_errors=True)
            first = run_child("--child", "folder", "--folder", str(folder), "--epochs", str(epochs), env=cache)
            cached = run_child("--child", "folder", "--folder", str(folder), "--epochs", str(epochs), env=cache)
            tensors = run_child("--child", "luodi", "--workload", "cifar_cnn", "--rows", str(first["rows"]),
                                "--epochs", str(epochs))
            folder_runs.append(first["samples_per_s"])
            tensor_runs.append(tensors["samples_per_s"])
            seconds.append((first["seconds"], cached["seconds"]))
            print(f"  round {round_index + 1}/{rounds} image folder ({first['rows']} training PNGs): "
                  f"{first['samples_per_s']:,.0f} vs pre-made tensors {tensors['samples_per_s']:,.0f} samples/s; "
                  f"whole run {first['seconds']:.1f} s, again with the decode cache {cached['seconds']:.1f} s",
                  flush=True)
    return {
        "samples_per_s": {"folder": statistics.median(folder_runs), "tensors": statistics.median(tensor_runs)},
        "ratios": {"folder/tensors": statistics.median(a / b for a, b in zip(folder_runs, tensor_runs, strict=True))},
        "run_seconds": {"first": statistics.median(s[0] for s in seconds),
                        "cached": statistics.median(s[1] for s in seconds)},
        "rows": folder_rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round, 1024 rows, 3 epochs")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--no-folder", action="store_true", help="skip the image-folder comparison")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--workload", default="cifar_cnn", help=argparse.SUPPRESS)
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    args.rows = args.rows or (1024 if args.quick else 2048)
    args.epochs = args.epochs or 3
    if args.child:
        print(json.dumps(child(args)))
        return 0

    print(f"vision: {', '.join(args.workloads)} | {rounds} round(s), {args.rows} rows, {args.epochs} epochs "
          f"(the first untimed), batch {BATCH} | {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} | "
          f"python {platform.python_version()}")
    variants = args.variants
    runs: dict[str, dict[str, list[float]]] = {w: {v: [] for v in variants} for w in args.workloads}
    epochs: dict[str, dict[str, list[float]]] = {w: {v: [] for v in variants} for w in args.workloads}
    threads: dict[str, list[int]] = {v: [] for v in variants}
    for round_index in range(rounds):
        shift = round_index % len(variants)
        order = variants[shift:] + variants[:shift]
        for workload in args.workloads:
            for variant in order:
                result = run_child("--child", variant, "--workload", workload, "--rows", str(args.rows),
                                   "--epochs", str(args.epochs))
                runs[workload][variant].append(result["samples_per_s"])
                epochs[workload][variant].append(result.get("epoch_samples_per_s", result["samples_per_s"]))
                threads[variant].append(result["threads"])
            line = "  ".join(f"{v} {runs[workload][v][-1]:,.0f} ({threads[v][-1]}t)" for v in variants)
            print(f"  round {round_index + 1}/{rounds} {workload}: {line} samples/s (threads)", flush=True)

    summary: dict[str, Any] = {}
    pairs = [("luodi", "default"), ("luodi", "keras"), ("keras", "default"), ("luodi", "luodi_nchw"),
             ("luodi", "luodi_fp32"), ("luodi_fp32", "default"), ("luodi", "default_1t"), ("default_1t", "default")]
    for workload, measured in runs.items():
        ratios = {f"{a}/{b}": statistics.median(x / y for x, y in zip(measured[a], measured[b], strict=True))
                  for a, b in pairs if a in measured and b in measured}
        summary[workload] = {"samples_per_s": {v: statistics.median(measured[v]) for v in variants},
                             "ratios": ratios}
        if "luodi" in variants and "default" in variants:  # whole epochs: luodi's validation and checkpoint too
            whole = epochs[workload]
            summary[workload]["whole_epoch"] = {
                "luodi_samples_per_s": statistics.median(whole["luodi"]),
                "luodi/default": statistics.median(x / y for x, y in zip(whole["luodi"], whole["default"],
                                                                         strict=True))}

    if not args.no_folder:
        summary["image_folder"] = compare_folder(1200 if args.quick else 4000, rounds, args.epochs)

    print("median samples/s and ratios (median of per-round ratios; goals in brackets):")
    for name, result in summary.items():
        rates = "  ".join(f"{k} {v:,.0f}" for k, v in result["samples_per_s"].items())
        ratios = "  ".join(f"{k} x{v:.2f}" + (f" [>= {GOALS[k]}]" if k in GOALS else "")
                           for k, v in result["ratios"].items())
        print(f"  {name:>12}: {rates} | {ratios}")
        if "whole_epoch" in result:
            print(f"  {'':>12}  whole epochs (luodi's validation pass and checkpoint included): luodi "
                  f"{result['whole_epoch']['luodi_samples_per_s']:,.0f}, luodi/default "
                  f"x{result['whole_epoch']['luodi/default']:.2f}")
    print(f"load average {os.getloadavg()[0]:.2f} at end")
    report = {"benchmark": "vision", "quick": args.quick, "rounds": rounds, "rows": args.rows, "epochs": args.epochs,
              "python": platform.python_version(), "cores": os.cpu_count(), "goals": GOALS, "summary": summary,
              "runs": runs, "threads": threads}
    partial = args.variants != list(DEFAULT_VARIANTS) or args.no_folder  # its own file: never replaces the full run
    write_result("vision" + ("-" + "-".join(args.variants) if partial else ""), report, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
