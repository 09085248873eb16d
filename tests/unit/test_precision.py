"""The GPU decisions (mixed precision, data placement) checked on CPU, and the loop's autocast and loss-scaling
path run for real with CPU autocast."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch

from luodi.config import TrainerConfig
from luodi.errors import InputError
from luodi.train.checkpoint import load_checkpoint
from luodi.train.precision import FP32, PRECISIONS, choose_placement, choose_precision, place

from .test_loop import run

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(("requested", "ampere", "expected"), [
    ("auto", True, "tf32"), ("auto", False, "fp16"), ("tf32", True, "tf32"), ("bf16", True, "bf16"),
    ("fp16", True, "fp16"), ("fp16", False, "fp16"), ("off", True, "fp32"),
])
def test_cuda_precision_prefers_tf32_then_fp16_with_scaling(requested: str, ampere: bool, expected: str) -> None:
    precision = choose_precision(requested, CUDA, bf16_supported=ampere, tf32_supported=ampere)
    assert precision.name == expected
    assert precision.scaled == (expected == "fp16")  # only fp16 needs a GradScaler
    assert precision.tf32 == (expected == "tf32") and (precision.dtype is None) == (expected in ("tf32", "fp32"))


@pytest.mark.parametrize(("requested", "architecture", "native", "expected"), [
    ("auto", "cnn", True, "bf16"), ("auto", "transformer", True, "bf16"), ("auto", "hf", True, "bf16"),
    ("auto", "mlp", True, "fp32"), ("auto", "cnn", False, "fp32"), ("bf16", "mlp", False, "bf16"),
    ("off", "cnn", True, "fp32"), ("fp16", "cnn", True, "fp32"), ("tf32", "cnn", True, "fp32"),
])
def test_cpu_trains_in_bf16_only_where_it_is_native_and_measured_faster(requested: str, architecture: str,
                                                                        native: bool, expected: str) -> None:
    precision = choose_precision(requested, CPU, architecture, bf16_supported=native)
    assert precision.name == expected and not precision.scaled
    if expected == "fp32":
        assert precision is FP32 and isinstance(FP32.autocast(CPU), nullcontext) and FP32.scaler(CPU) is None


@pytest.mark.parametrize("requested", ["bf16", "tf32"])
def test_ampere_precision_asked_of_an_older_gpu_is_an_input_error(requested: str) -> None:
    with pytest.raises(InputError, match=f"does not support {requested}"):
        choose_precision(requested, CUDA, bf16_supported=False, tf32_supported=False)


@pytest.mark.parametrize(("name", "expected"), [("tf32", "tf32"), ("bf16", "tf32"), ("fp32", "ieee")])
def test_precision_sets_the_fp32_math_either_way(name: str, expected: str) -> None:
    """The flags are process-wide: 'off' after a TF32 run must get strict fp32 back."""
    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    try:
        PRECISIONS["tf32"].apply()
        PRECISIONS[name].apply()
        assert matmul.fp32_precision == torch.backends.cudnn.conv.fp32_precision == expected  # type: ignore[attr-defined]
    finally:
        matmul.fp32_precision = before
        torch.backends.cudnn.conv.fp32_precision = "tf32"  # type: ignore[attr-defined]
        torch.backends.cudnn.rnn.fp32_precision = "tf32"  # type: ignore[attr-defined]


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


def test_cpu_evaluation_is_fp32_whatever_the_training_precision() -> None:
    """A bf16 run's validation and test metrics are those of the fp32 package that will serve it."""
    from luodi.config import ModelConfig
    from luodi.models.inference import predict_tensors
    from luodi.models.mlp import MLP
    from luodi.tasks import get_task

    torch.manual_seed(0)
    model = MLP(ModelConfig(hidden_sizes=[16]), dense_width=5, categories=[], output_size=3)
    inputs = {"dense": torch.randn(40, 5), "categorical": torch.zeros(40, 0, dtype=torch.int64)}
    task = get_task("multiclass")
    fp32, _ = predict_tensors(model, inputs, task, 16, autocast=FP32.autocast, device=CPU, training=True)
    bf16, _ = predict_tensors(model, inputs, task, 16, autocast=PRECISIONS["bf16"].autocast, device=CPU,
                              training=True)
    np.testing.assert_array_equal(fp32, bf16)
    with PRECISIONS["bf16"].autocast(CPU):  # what autocast would have given: not the same numbers
        assert model(inputs).dtype == torch.bfloat16
