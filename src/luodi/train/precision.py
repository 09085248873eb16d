"""What the trainer does on a GPU: mixed precision and where the data lives. Pure decisions, tested on CPU.

On CUDA, bf16 autocast (where the GPU has it: Ampere and later) trains with fp32 weights and no loss scaling;
older GPUs get fp16 autocast with a GradScaler, whose state goes into the checkpoint. A split that fits in half
of the free GPU memory is copied there once (through page-locked memory, asynchronously), so batches are slices
on the device with no copy per step; a larger one stays in page-locked host memory and each batch is copied
asynchronously. On CPU nothing changes: fp32, tensors where they are.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from luodi.errors import InputError


@dataclass(frozen=True)
class Precision:
    """The autocast dtype (None: fp32) and whether the loss needs scaling (fp16)."""

    name: str  # recorded in the run: "bf16", "fp16", "fp32"
    dtype: torch.dtype | None
    scaled: bool

    def autocast(self, device: torch.device) -> AbstractContextManager[Any]:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=self.dtype)

    def scaler(self, device: torch.device) -> Any:
        """A GradScaler for fp16, else None."""
        return torch.amp.GradScaler(device.type) if self.scaled else None


FP32 = Precision("fp32", None, False)
PRECISIONS = {"fp32": FP32, "bf16": Precision("bf16", torch.bfloat16, False),
              "fp16": Precision("fp16", torch.float16, True)}


def choose_precision(requested: str, device: torch.device, bf16_supported: bool | None = None) -> Precision:
    """fp32 on CPU or when turned off; on CUDA bf16 where supported, else fp16 with loss scaling.

    `bf16_supported` is asked of the GPU when not given (tests pass it to check the decision on CPU).
    """
    if device.type != "cuda" or requested == "off":
        return FP32
    if bf16_supported is None:
        bf16_supported = bool(torch.cuda.is_bf16_supported())
    if requested == "bf16" and not bf16_supported:
        raise InputError("runtime.mixed_precision is 'bf16' but this GPU does not support bf16; use auto or fp16")
    if requested in ("auto", "bf16") and bf16_supported:
        return PRECISIONS["bf16"]
    return PRECISIONS["fp16"]


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
