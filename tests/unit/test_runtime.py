"""Runtime set-up: thread choice, allocator tuning, and what apply_runtime records."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
import torch

from luodi.config import RuntimeConfig
from luodi.train.runtime import (
    apply_runtime,
    busy_cores,
    choose_device,
    choose_threads,
    seed_everything,
    tune_allocator,
)


@pytest.fixture
def restore_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@pytest.mark.parametrize("requested", [1, 3, 64])
def test_explicit_thread_count_is_kept(requested: int) -> None:
    assert choose_threads(requested) == (requested, "configured")


def test_auto_threads_within_usable_cores() -> None:
    count, reason = choose_threads("auto")
    assert 1 <= count <= usable_cores()
    assert reason.startswith("auto: ")


def test_busy_cores_counts_a_spinning_process() -> None:
    import subprocess
    import sys

    idle = busy_cores(0.3)
    if idle is None:
        pytest.skip("no /proc/stat here")
    assert 0.0 <= idle <= (os.cpu_count() or 1)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        busy = busy_cores(0.5)
    finally:
        spinner.kill()
        spinner.wait()
    assert busy is not None and busy >= 0.7  # one core spun the whole window (other work may add to it)


@pytest.mark.parametrize(("busy", "expected"), [(0.0, 2), (0.3, 2), (0.8, 1), (1.6, 1), (7.0, 1)])
def test_auto_threads_leave_out_the_busy_cores(monkeypatch: pytest.MonkeyPatch, busy: float, expected: int) -> None:
    import luodi.train.runtime as runtime

    monkeypatch.setattr(runtime, "busy_cores", lambda: busy)
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(runtime.os, "getloadavg", lambda: (2.0, 2.0, 2.0))  # a job that just ended: not counted
    assert choose_threads("auto") == (expected, f"auto: 2 usable cores, {busy:.2f} busy now")


def test_tune_allocator_is_idempotent() -> None:
    first = tune_allocator()
    assert tune_allocator() == first
    assert first == "tuned" or first.startswith("default")


def test_cpu_device() -> None:
    assert choose_device("cpu") == torch.device("cpu")
    assert choose_device("auto").type in ("cpu", "cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_cuda_without_a_device_is_an_input_error() -> None:
    from luodi.errors import InputError

    with pytest.raises(InputError, match="no CUDA device"):
        choose_device("cuda")


@pytest.mark.usefixtures("restore_threads")
def test_apply_runtime_records_its_choices() -> None:
    record = apply_runtime(RuntimeConfig(device="cpu", threads=2, allocator="default"), seed=3)
    assert set(record) == {"threads", "threads_reason", "allocator", "device", "torch", "python", "platform",
                           "cuda", "mixed_precision", "pin_memory"}
    assert record["mixed_precision"] == "fp32" and record["pin_memory"] is False  # CPU trains as before
    assert record["threads"] == 2 and record["threads_reason"] == "configured"
    assert record["allocator"] == "default"
    assert record["device"] == "cpu"
    assert torch.get_num_threads() == 2


@pytest.mark.usefixtures("restore_threads")
def test_apply_runtime_resumed_thread_count() -> None:
    record = apply_runtime(RuntimeConfig(device="cpu"), seed=0, threads=1)
    assert record["threads"] == 1 and record["threads_reason"] == "resumed run"


def test_seed_everything_repeats_draws() -> None:
    seed_everything(5)
    first = torch.rand(3)
    seed_everything(5)
    assert torch.equal(first, torch.rand(3))


def test_deterministic_kernels_do_not_outlive_the_run_that_asked_for_them() -> None:
    """The setting is process-wide: a second run in the same process without it must get the fast kernels back."""
    try:
        apply_runtime(RuntimeConfig(device="cpu", threads=1, deterministic=True), seed=0)
        assert torch.are_deterministic_algorithms_enabled()
        apply_runtime(RuntimeConfig(device="cpu", threads=1), seed=0)
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
