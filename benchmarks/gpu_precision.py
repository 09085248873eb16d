"""Which arithmetic trains fastest on a CUDA GPU: strict fp32, TF32 tensor-core math, or bf16 autocast.

The measurement behind `runtime.mixed_precision: auto` choosing TF32 on Ampere and later GPUs. Training steps per
second (AdamW fused, gradient clipping at 1.0, as luodi's loop does) for models from 0.5M to 110M parameters:
- luodi's `cnn` (the CIFAR-shaped CNN of vision.py) at batch 256, and its `resnet` at batch 64 and 256, on
  3x32x32 images already on the GPU;
- BERT encoders built from a config (random weights: the arithmetic is what is measured) over 128 tokens,
  mean-pooled into a 5-way head: 2 x 128 (batch 64), MiniLM's 6 x 384 and BERT-base's 12 x 768 (batch 32).
Each precision runs 10 warm-up and 40 timed steps, twice in turn; the second pass is reported. The ratio printed
is TF32 / bf16 steps per second.

    python benchmarks/gpu_precision.py      # about 1 minute on an H100

Needs a CUDA device; it says so and exits 2 without one.
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable
from typing import Any

from results_file import write_result  # benchmarks/ is on sys.path when a script runs

MODES = ("fp32", "tf32", "bf16")


def steps_per_second(model: Any, batch: dict[str, Any], target: Any, mode: str, steps: int = 40) -> float:
    import torch
    from torch import nn

    from luodi.train.precision import PRECISIONS

    PRECISIONS[mode].apply()  # strict IEEE fp32 for fp32, TF32 otherwise (as a luodi run sets it)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    loss_fn = nn.CrossEntropyLoss()
    device = torch.device("cuda")
    started = 0.0
    for step in range(steps + 10):
        if step == 10:
            torch.cuda.synchronize()
            started = time.perf_counter()
        with PRECISIONS[mode].autocast(device):
            loss = loss_fn(model(batch), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    torch.cuda.synchronize()
    return steps / (time.perf_counter() - started)


def cases() -> list[tuple[str, Callable[[], Any], dict[str, Any], Any]]:
    import torch
    from gpu_training import SHAPES, config_for
    from torch import nn
    from transformers import BertConfig, BertModel
    from vision import image_inputs, luodi_cnn, make_images

    device = torch.device("cuda")

    class Encoder(nn.Module):
        def __init__(self, layers: int, width: int):
            super().__init__()
            self.encoder = BertModel(BertConfig(vocab_size=30522, hidden_size=width, num_hidden_layers=layers,
                                                num_attention_heads=max(1, width // 64), intermediate_size=4 * width))
            self.head = nn.Linear(width, 5)

        def forward(self, batch: dict[str, Any]) -> Any:
            states = self.encoder(input_ids=batch["ids"], attention_mask=batch["mask"]).last_hidden_state
            return self.head(states.mean(1))

    made: list[tuple[str, Callable[[], Any], dict[str, Any], Any]] = []
    for workload, rows in (("cifar_cnn", 256), ("resnet", 64), ("resnet", 256)):
        images, labels = make_images(rows, SHAPES[workload])
        batch = {name: tensor.to(device) for name, tensor in image_inputs(images).items()}

        def image_model(workload: str = workload, rows: int = rows, images: Any = images) -> Any:
            return luodi_cnn(config_for(workload, rows, 1, channels_last=True), images).to(device)

        made.append((f"{workload} b{rows}", image_model, batch, torch.from_numpy(labels).to(device)))
    for name, layers, width, rows in (("bert 2x128 b64", 2, 128, 64), ("minilm 6x384 b32", 6, 384, 32),
                                      ("bert-base 12x768 b32", 12, 768, 32)):
        ids = torch.randint(0, 30522, (rows, 128), device=device)
        made.append((name, lambda layers=layers, width=width: Encoder(layers, width).to(device),
                     {"ids": ids, "mask": torch.ones_like(ids)}, torch.randint(0, 5, (rows,), device=device)))
    return made


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("gpu_precision: no CUDA device here; run it on a machine with one", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    device = torch.cuda.get_device_name()
    print(f"gpu_precision: {device} | torch {torch.__version__}, python {platform.python_version()}")
    results: dict[str, Any] = {}
    for name, make, batch, target in cases():
        torch.manual_seed(0)
        model = make()
        rates: dict[str, float] = {}
        for _ in range(2):  # the second pass is reported: cuDNN autotuning and kernels warm in the first
            rates = {mode: steps_per_second(model, batch, target, mode) for mode in MODES}
        parameters = sum(parameter.numel() for parameter in model.parameters())
        results[name] = {"parameters": parameters, "steps_per_s": rates, "tf32/bf16": rates["tf32"] / rates["bf16"]}
        print(f"  {name:>22} {parameters / 1e6:6.2f}M parameters: "
              + "  ".join(f"{mode} {rate:7.1f}" for mode, rate in rates.items())
              + f" steps/s | tf32/bf16 x{rates['tf32'] / rates['bf16']:.2f}", flush=True)
    write_result("gpu_precision", {"benchmark": "gpu_precision", "device": device, "torch": torch.__version__,
                                   "results": results}, quick=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
