"""Which models train faster under bf16 autocast on this CPU than in fp32: the measurement behind the CPU side of
`runtime.mixed_precision: auto` (bf16 for cnn, resnet, rnn, transformer and hf where the CPU has bf16
instructions; fp32 for mlp).

Training steps per second (AdamW, gradient clipping at 1.0, as luodi's loop does; the tuned allocator and the
thread count `threads: auto` picks) of luodi-built modules on synthetic inputs:
- mlp: a 2 x 256 MLP on 20 numeric columns, batch 256
- cnn: the CIFAR-shaped CNN of vision.py (channels-last), batch 64
- resnet: luodi's `resnet` defaults on 3x32x32, batch 64
- rnn: a GRU (embedding 128, hidden 256) over 64 tokens, batch 32
- transformer: 4 pre-LN layers (width 256, 4 heads) over 128 tokens, batch 32
fp32 and bf16 take turns, 3 rounds of 5 warm-up and 20 timed steps each, in one process; the report is the median
of per-round bf16 / fp32 ratios.

    .venv/bin/python benchmarks/cpu_precision.py     # about 2 minutes on 2 cores
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from typing import Any

from results_file import write_result  # benchmarks/ is on sys.path when a script runs


def make_cases() -> dict[str, tuple[Any, dict[str, Any], Any]]:
    import torch
    from gpu_training import SHAPES, config_for
    from text_models import WORKLOADS, data, luodi_model
    from vision import image_inputs, luodi_cnn, make_images

    from luodi.config import ModelConfig
    from luodi.models.mlp import MLP

    cases: dict[str, tuple[Any, dict[str, Any], Any]] = {}
    mlp = MLP(ModelConfig(hidden_sizes=[256, 256]), dense_width=20, categories=[], output_size=5)
    cases["mlp"] = (mlp, {"dense": torch.randn(256, 20), "categorical": torch.zeros(256, 0, dtype=torch.int64)},
                    torch.randint(0, 5, (256,)))
    for name, workload in (("cnn", "cifar_cnn"), ("resnet", "resnet")):
        images, labels = make_images(64, SHAPES[workload])
        cases[name] = (luodi_cnn(config_for(workload, 64, 1, channels_last=True), images), image_inputs(images),
                       torch.from_numpy(labels))
    for name, workload in (("rnn", "gru"), ("transformer", "transformer")):
        shape = WORKLOADS[workload]
        ids, target = data(shape, shape["batch"], 0)
        cases[name] = (luodi_model(workload, shape), {"text": ids, "text.mask": torch.ones_like(ids, dtype=torch.bool)},
                       target)
    return cases


def steps_per_second(model: Any, batch: dict[str, Any], target: Any, bf16: bool, steps: int = 20) -> float:
    import torch
    from torch import nn

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    started = 0.0
    for step in range(steps + 5):
        if step == 5:
            started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(batch), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return steps / (time.perf_counter() - started)


def main() -> int:
    import torch

    from luodi.config import RuntimeConfig
    from luodi.train.precision import CPU_BF16_ARCHITECTURES, cpu_has_native_bf16
    from luodi.train.runtime import apply_runtime

    environment = apply_runtime(RuntimeConfig(device="cpu"), seed=0)
    native = cpu_has_native_bf16()
    print(f"cpu_precision: {platform.processor() or platform.machine()}, bf16 instructions: {native} | "
          f"{environment['threads']} threads | torch {torch.__version__} | load average {os.getloadavg()[0]:.2f}")
    results: dict[str, Any] = {}
    for name, (model, batch, target) in make_cases().items():
        rates: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for round_index in range(3):
            for mode in (("fp32", "bf16") if round_index % 2 == 0 else ("bf16", "fp32")):
                rates[mode].append(steps_per_second(model, batch, target, mode == "bf16"))
        ratio = statistics.median(b / f for b, f in zip(rates["bf16"], rates["fp32"], strict=True))
        auto = "bf16" if native and name in CPU_BF16_ARCHITECTURES else "fp32"
        results[name] = {"steps_per_s": {k: statistics.median(v) for k, v in rates.items()}, "bf16/fp32": ratio,
                         "auto": auto, "runs": rates}
        medians = results[name]["steps_per_s"]
        print(f"  {name:>12}: fp32 {medians['fp32']:7.1f}  bf16 {medians['bf16']:7.1f} steps/s | bf16/fp32 "
              f"x{ratio:.2f} | auto picks {auto}", flush=True)
    write_result("cpu_precision", {"benchmark": "cpu_precision", "python": platform.python_version(),
                                   "native_bf16": native, "threads": environment["threads"], "results": results},
                 quick=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
