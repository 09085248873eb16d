"""The trainer's arithmetic (on a GPU, and on CPUs that multiply bf16 natively) and where the data lives. Pure
decisions, tested on CPU.

On CUDA, `auto` trains in TF32 on Ampere and later GPUs: fp32 weights, activations and optimizer, with matrix
products and convolutions on the tensor cores at TF32 precision (10-bit mantissa, the precision PyTorch already
uses for convolutions by default). On an H100 it beat bf16 autocast on every model measured, 0.5M to 110M
parameters: the casts autocast adds cost more than bf16 saves until models and batches are far larger
(docs/performance.md, GPU). bf16 autocast (fp32 weights, no loss scaling) is there when asked for; GPUs before
Ampere get fp16 autocast with a GradScaler, whose state goes into the checkpoint.

On a CPU with bf16 instructions (AVX512-BF16 or AMX), `auto` trains the convolutional, recurrent and attention
models under bf16 autocast: x1.2-1.7 training steps/s here, against x1.01 on an MLP, which keeps fp32
(benchmarks/cpu_precision.py). Weights, optimizer state and the loss stay fp32, and evaluation runs in fp32 on
the CPU, as the saved package does when it serves, so the metrics a run reports are the served model's. Other
CPUs train in fp32: PyTorch emulates bf16 there, slower than fp32.

A split that fits in half of the free GPU memory is copied there once (through page-locked memory,
asynchronously), so batches are slices on the device with no copy per step; a larger one stays in page-locked
host memory and each batch is copied asynchronously. On CPU the tensors stay where they are.
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from luodi.errors import InputError

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs that multiply bf16 in hardware
CPU_BF16_ARCHITECTURES = frozenset({"cnn", "resnet", "rnn", "transformer", "hf"})  # measured faster under bf16


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 dot-product instructions (Linux: /proc/cpuinfo). PyTorch's own check
    (`torch.ops.mkldnn._is_mkldnn_bf16_supported`) also accepts AVX-512 CPUs that only emulate bf16."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return any(flag in line.split() for flag in NATIVE_BF16_FLAGS)
    except OSError:
        pass
    return False


@dataclass(frozen=True)
class Precision:
    """The autocast dtype (None: none), whether the loss needs scaling (fp16), and whether the run is TF32: fp32
    tensors throughout, their matrix products and convolutions on TF32 tensor cores (`apply` also lets the fp32
    operations that autocast leaves alone use TF32 under bf16 and fp16)."""

    name: str  # recorded in the run: "tf32", "bf16", "fp16", "fp32"
    dtype: torch.dtype | None
    scaled: bool

    @property
    def tf32(self) -> bool:
        return self.name == "tf32"

    def autocast(self, device: torch.device) -> AbstractContextManager[Any]:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=self.dtype)

    def scaler(self, device: torch.device) -> Any:
        """A GradScaler for fp16, else None."""
        return torch.amp.GradScaler(device.type) if self.scaled else None

    def apply(self) -> None:
        """Set the process's fp32 math on CUDA for this precision (strict IEEE fp32 for 'fp32', else TF32). Set
        either way: the flags are process-wide and must not carry over from an earlier run in the process."""
        value = "tf32" if self.name != "fp32" else "ieee"
        matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
        if hasattr(matmul, "fp32_precision"):  # torch >= 2.9; the legacy allow_tf32 flags must not be mixed in
            matmul.fp32_precision = value
            cudnn.conv.fp32_precision = value  # type: ignore[attr-defined]
            cudnn.rnn.fp32_precision = value  # type: ignore[attr-defined]
        else:
            matmul.allow_tf32 = cudnn.allow_tf32 = value == "tf32"


FP32 = Precision("fp32", None, False)
PRECISIONS = {"fp32": FP32, "tf32": Precision("tf32", None, False),
              "bf16": Precision("bf16", torch.bfloat16, False), "fp16": Precision("fp16", torch.float16, True)}


def choose_precision(requested: str, device: torch.device, architecture: str = "mlp",
                     bf16_supported: bool | None = None, tf32_supported: bool | None = None) -> Precision:
    """The precision a run trains in; 'off' is always fp32.

    CUDA: auto is TF32 on Ampere and later (compute capability 8), else fp16 with loss scaling; bf16, fp16 and
    tf32 when asked for, if the GPU has them. CPU: bf16 when asked for, and for auto where the CPU has bf16
    instructions and `architecture` (model.type) is one measured faster under it; else fp32 (fp16 and tf32 are GPU
    modes). `bf16_supported` and `tf32_supported` are asked of the hardware when not given (tests pass them).
    """
    if requested == "off":
        return FP32
    if device.type != "cuda":
        native = cpu_has_native_bf16() if bf16_supported is None else bf16_supported
        if requested == "bf16" or (requested == "auto" and native and architecture in CPU_BF16_ARCHITECTURES):
            return PRECISIONS["bf16"]
        return FP32
    if tf32_supported is None:
        tf32_supported = torch.cuda.get_device_capability(device)[0] >= 8
    if bf16_supported is None:
        bf16_supported = bool(torch.cuda.is_bf16_supported())
    for name, supported in (("bf16", bf16_supported), ("tf32", tf32_supported)):
        if requested == name and not supported:
            raise InputError(f"runtime.mixed_precision is '{name}' but this GPU does not support {name} "
                             "(Ampere or later needed); use auto or fp16")
    if requested == "auto":
        return PRECISIONS["tf32" if tf32_supported else "fp16"]
    return PRECISIONS[requested]


def choose_placement(device: torch.device, pin_memory: bool, data_bytes: int, free_bytes: int | None = None) -> str:
    """'host' (CPU training, or CUDA without pinning and too big for the GPU), 'device' (copied to the GPU once)
    or 'pinned' (page-locked host memory, each batch copied asynchronously)."""
    if device.type != "cuda":
        return "host"
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(device)
    if data_bytes <= free_bytes // 2:
        return "device"
    return "pinned" if pin_memory else "host"


def place(tensors: dict[str, torch.Tensor], device: torch.device, placement: str,
          pin_memory: bool) -> dict[str, torch.Tensor]:
    """Tensors where `placement` keeps them: on the device (copied once, asynchronously from page-locked memory
    when `pin_memory`), or on the host (page-locked for 'pinned')."""
    if placement == "device":
        if pin_memory and device.type == "cuda":
            return {name: tensor.pin_memory().to(device, non_blocking=True) for name, tensor in tensors.items()}
        return {name: tensor.to(device) for name, tensor in tensors.items()}
    if placement == "pinned":
        return {name: tensor.pin_memory() for name, tensor in tensors.items()}
    return tensors


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """A batch gathered on the host, copied to the device asynchronously (page-locked first, so the copy can
    overlap the previous step's kernels; PyTorch's host allocator keeps the block until the copy is done)."""
    return {name: tensor.pin_memory().to(device, non_blocking=True) for name, tensor in batch.items()}


def nbytes(tensors: dict[str, torch.Tensor]) -> int:
    return sum(tensor.element_size() * tensor.nelement() for tensor in tensors.values())
