"""The GPU decisions (mixed precision, data placement) checked on CPU, and the loop's autocast and loss-scaling
path run for real with CPU autocast."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import pytest
import torch

from luodi.config import TrainerConfig
from luodi.errors import InputError
from luodi.train.checkpoint import load_checkpoint
from luodi.train.precision import FP32, PRECISIONS, choose_placement, choose_precision, place

from .test_loop import run

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(("requested", "bf16", "expected"), [
    ("auto", True, "bf16"), ("auto", False, "fp16"), ("bf16", True, "bf16"), ("fp16", True, "fp16"),
    ("fp16", False, "fp16"), ("off", True, "fp32"),
])
def test_cuda_precision_prefers_bf16_then_fp16_with_scaling(requested: str, bf16: bool, expected: str) -> None:
    precision = choose_precision(requested, CUDA, bf16_supported=bf16)
    assert precision.name == expected
    assert precision.scaled == (expected == "fp16")  # only fp16 needs a GradScaler


@pytest.mark.parametrize("requested", ["auto", "bf16", "fp16", "off"])
def test_cpu_always_trains_in_fp32(requested: str) -> None:
    assert choose_precision(requested, CPU) is FP32
    assert isinstance(FP32.autocast(CPU), nullcontext) and FP32.scaler(CPU) is None


def test_bf16_asked_of_a_gpu_without_it_is_an_input_error() -> None:
    with pytest.raises(InputError, match="does not support bf16"):
        choose_precision("bf16", CUDA, bf16_supported=False)


def test_placement_copies_to_the_gpu_once_when_it_fits() -> None:
    gib = 1 << 30
    assert choose_placement(CPU, True, 100 * gib, 0) == "host"
    assert choose_placement(CUDA, True, 3 * gib, 8 * gib) == "device"  # fits in half the free memory
    assert choose_placement(CUDA, True, 5 * gib, 8 * gib) == "pinned"  # per-batch asynchronous copies
    assert choose_placement(CUDA, False, 5 * gib, 8 * gib) == "host"


def test_host_placement_leaves_tensors_untouched() -> None:
    tensors = {"x": torch.ones(3)}
    assert place(tensors, CPU, "host", pin_memory=True)["x"] is tensors["x"]


def test_cpu_fit_records_fp32_and_host_data(tmp_path: Path) -> None:
    _, result = run(tmp_path, TrainerConfig(epochs=1, batch_size=32))
    assert result.extra == {"data_placement": "host", "mixed_precision": "fp32"}


@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_autocast_and_loss_scaling_train_and_checkpoint(tmp_path: Path, name: str) -> None:
    """The loop's mixed-precision path, run on CPU autocast: the loss falls, fp32 weights stay fp32, and fp16's
    GradScaler state is in the checkpoint for an exact resume."""
    model, result = run(tmp_path, TrainerConfig(epochs=3, batch_size=32, early_stopping={"enabled": False}),
                        precision=PRECISIONS[name])  # type: ignore[arg-type]
    assert result.extra["mixed_precision"] == name
    losses = [epoch["train_loss"] for epoch in result.history]
    assert losses[-1] < losses[0]
    assert all(parameter.dtype == torch.float32 for parameter in model.parameters())
    saved = load_checkpoint(tmp_path)
    assert saved is not None and ("scaler" in saved) == (name == "fp16")
