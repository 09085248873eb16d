"""luodi's Llama step (serve/llama_slots.py) against HF's forward over the same slot cache (serve/hf_slots.py), in
one process: a Llama of SmolLM2-135M's exact config (random weights, as benchmarks/generate.py builds it), 8 prompts
of 32 tokens, a batch-8 decode step with every sequence at one length (the benchmark's 8 streams) and at 8 different
lengths (masked), and the prefill of the 8 prompts; luodi's step as served (its matrix multiplies on weights
reordered by oneDNN) and on the plain weights (`F.linear`). Per round the three take turns (order alternating); each
figure is the median per step of wall and process CPU time (all threads), and the ratio HF / luodi is the median of
per-round ratios with its range (above 1: luodi's step is cheaper). CPU time is the figure to trust on a shared machine.

    .venv/bin/python benchmarks/llama_step.py --threads 1              # about 2 minutes on a quiet machine
    .venv/bin/python benchmarks/llama_step.py --threads 2 --rounds 6
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from generate import SMOLLM2  # benchmarks/ is on sys.path when a script runs
from results_file import write_result
from torch import nn


class Wrapped(nn.Module):
    """What the slot caches read of a models.language.CausalLM: the backbone, its cache argument, the context."""

    def __init__(self, backbone: nn.Module, context: int):
        super().__init__()
        self.backbone, self.cache_name, self.context_length = backbone, "cache", context


def timed(run: Callable[[], Any], count: int) -> tuple[float, float]:
    """Milliseconds of wall and of process CPU time per call, over `count` calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        run()
    return 1000 * (time.perf_counter() - wall) / count, 1000 * (time.process_time() - cpu) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=16, help="decode steps timed per round and variant")
    options = parser.parse_args()
    from transformers import LlamaConfig, LlamaForCausalLM

    from luodi.serve.hf_slots import HFSlots
    from luodi.serve.llama_slots import LlamaSlots

    torch.set_num_threads(options.threads)
    torch.manual_seed(0)
    model = Wrapped(LlamaForCausalLM(LlamaConfig(**SMOLLM2)).eval(), 256)
    prompts = [[int(token) for token in torch.randint(3, 400, (32,))] for _ in range(8)]
    shapes = {"one length": prompts, "8 lengths": [prompt[:18 + 2 * index] for index, prompt in enumerate(prompts)]}
    rows = list(range(8))
    with torch.inference_mode():
        fast = LlamaSlots(model, 8)
        fast.share_weights()  # as the server does: HF's forward reads the same memory
        variants: dict[str, Any] = {"hf forward": HFSlots(model, 8), "luodi step": fast,
                                    "luodi step, plain weights": LlamaSlots(model, 8, reorder=False)}
        difference = (variants["hf forward"].prefill(rows, prompts) - fast.prefill(rows, prompts)).abs().max()
        print(f"prefill logits: largest difference {float(difference):.3g}")

        def decode(slots: Any, batch: list[list[int]]) -> tuple[float, float]:
            tokens = slots.prefill(rows, batch).argmax(-1).tolist()

            def step() -> None:
                nonlocal tokens
                tokens = slots.step(rows, tokens).argmax(-1).tolist()
            return timed(step, options.steps)

        for slots in variants.values():  # warm up
            decode(slots, prompts)
        measured: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for index in range(options.rounds):
            for name in list(variants)[::1 if index % 2 == 0 else -1]:
                slots = variants[name]
                for shape, batch in shapes.items():
                    measured.setdefault((name, f"decode step, {shape}"), []).append(decode(slots, batch))
                measured.setdefault((name, "prefill 8 x 32"), []).append(
                    timed(lambda slots=slots: slots.prefill(rows, prompts), 1))
    report: dict[str, Any] = {"threads": options.threads, "rounds": options.rounds, "steps": options.steps}
    print(f"{options.threads} threads, {options.rounds} rounds: ms per call, median; HF / luodi median [range]")
    for what, ours_name in ((kind, name) for kind in dict.fromkeys(kind for _, kind in measured)
                            for name in list(variants)[1:]):
        hf, luodi = measured[("hf forward", what)], measured[(ours_name, what)]
        entry = {}
        for axis, label in ((0, "wall"), (1, "cpu")):
            ratios = [h[axis] / ours[axis] for h, ours in zip(hf, luodi, strict=True)]
            entry[label] = {"hf_ms": statistics.median(h[axis] for h in hf),
                            "luodi_ms": statistics.median(ours[axis] for ours in luodi),
                            "ratio": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
        report[what if ours_name == "luodi step" else f"{what} ({ours_name})"] = entry
        print(f"  {what:<26} {ours_name:<26} " + "; ".join(
            f"{label} {e['hf_ms']:.1f} / {e['luodi_ms']:.1f} = {e['ratio']:.2f}x [{e['min']:.2f}-{e['max']:.2f}]"
            for label, e in entry.items()))
    write_result(f"llama_step_{options.threads}t", report, quick=False)


if __name__ == "__main__":
    main()
