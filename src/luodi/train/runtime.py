"""Process set-up that beats a default loop: allocator, thread count, seeds, device. What it chose is recorded."""

from __future__ import annotations

import ctypes
import os
import platform
import random
import sys
import time
from typing import Any

import numpy as np
import torch

from luodi.config import RuntimeConfig
from luodi.train.distributed import SINGLE, World

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
LARGEST_INT = 2**31 - 1
_allocator_state = {"applied": False}


def tune_allocator() -> str:
    """Keep freed memory in the process so large activation buffers are reused, not page-faulted anew each step.

    glibc returns big blocks to the OS (mmap/munmap, heap trimming) after every step; raising both thresholds
    measured x1.34-1.60 on CNN and GRU training here (see benchmarks/runtime_levers.py). Idempotent.
    """
    if _allocator_state["applied"]:
        return "tuned"
    if not sys.platform.startswith("linux"):
        return "default (not glibc)"
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        applied = libc.mallopt(M_MMAP_THRESHOLD, LARGEST_INT) and libc.mallopt(M_TRIM_THRESHOLD, LARGEST_INT)
    except (OSError, AttributeError):
        return "default (mallopt unavailable)"
    _allocator_state["applied"] = bool(applied)
    return "tuned" if applied else "default (mallopt refused)"


BUSY_WINDOW_S = 0.1  # how long choose_threads watches the CPUs: /proc/stat counts in 10 ms ticks


def busy_cores(window_s: float = BUSY_WINDOW_S) -> float | None:
    """How many of the machine's cores other work keeps busy right now, from /proc/stat over a short window
    (Linux); None where it cannot be read. This process is asleep meanwhile, so what is counted is the others."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as handle:
            ticks = [int(value) for value in handle.readline().split()[1:9]]  # user nice system idle iowait irq ...
        return sum(ticks), ticks[3] + ticks[4]

    try:
        total, idle = sample()
        time.sleep(window_s)
        total_after, idle_after = sample()
    except (OSError, ValueError, IndexError):
        return None
    elapsed = total_after - total
    if elapsed <= 0:
        return None
    return (1 - (idle_after - idle) / elapsed) * (os.cpu_count() or 1)


def choose_threads(requested: int | str) -> tuple[int, str]:
    """A deliberate intra-op thread count: the cores that are free now, never more than the process may use.

    Two threads on a 2-core machine whose other core is busy ran 3.5-8x slower than one, so 'auto' leaves out
    the cores other work keeps busy. They are measured now (`busy_cores`), not read from the load average: that is
    a one-minute moving average, so right after a job ends it still counts the job for a minute or more, and a
    second `luodi train` started then ran on one thread, at about half speed on a CNN. Where /proc/stat is
    missing, the load average is the fallback.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if requested != "auto":
        return int(requested), "configured"
    busy = busy_cores()
    if busy is not None:
        free = max(1, min(cores, int((os.cpu_count() or cores) - busy + 0.5)))
        return free, f"auto: {cores} usable cores, {busy:.2f} busy now"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    free = max(1, min(cores, int(cores - load + 0.5)))
    return free, f"auto: {cores} usable cores, load average {load:.2f}"


def set_inference_threads(config: RuntimeConfig) -> int:
    """Evaluation and explanations pick their thread count as training does: on a busy 2-core machine the
    report's many small forward passes ran 4-7x slower with torch's default of two threads than with one."""
    count, _ = choose_threads(config.threads)
    torch.set_num_threads(count)
    return count


def choose_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        from luodi.errors import InputError

        raise InputError("runtime.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def apply_runtime(config: RuntimeConfig, seed: int, threads: int | None = None,
                  architecture: str = "mlp", world: World = SINGLE) -> dict[str, Any]:
    """Set up the process for training; `threads` forces a count (resume reuses the run's). `architecture`
    (model.type) enters the precision choice (train/precision.py). Under torchrun (`world`) this joins the process
    group, takes the rank's GPU, and 'auto' threads share the node's cores among its ranks."""
    from luodi.train import distributed

    allocator = tune_allocator() if config.allocator == "tuned" else "default"
    if threads:
        count, reason = threads, "resumed run"
    elif config.threads == "auto" and world.local_size > 1:
        count, reason = distributed.threads_per_rank(world)
    else:
        count, reason = choose_threads(config.threads)
    torch.set_num_threads(count)
    device = distributed.start(world, choose_device(config.device))
    if config.deterministic:
        # cuBLAS is deterministic only with a fixed workspace, which must be set before its first use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # Set either way: the setting is process-wide, and a run that asked for it must not leave it on for the next
    # one in the same process (a notebook, a test session, a retraining loop).
    torch.use_deterministic_algorithms(config.deterministic, warn_only=True)
    seed_everything(seed)
    from luodi.train.precision import choose_precision

    precision = choose_precision(config.mixed_precision, device, architecture)
    if device.type == "cuda":
        # cuDNN times its convolution algorithms on the first batch of each shape and keeps the fastest; image
        # batches have one shape, so this pays once. Off when asked for deterministic kernels.
        torch.backends.cudnn.benchmark = not config.deterministic
        precision.apply()
    return {
        "threads": count,
        "threads_reason": reason,
        "allocator": allocator,
        "device": str(device),
        "mixed_precision": precision.name,
        "pin_memory": config.pin_memory and device.type == "cuda",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        **({"world_size": world.size, "backend": "nccl" if device.type == "cuda" else "gloo"}
           if world.distributed else {}),
    }
