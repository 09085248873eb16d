"""The variants `luodi optimize` tries on a language model (a text_generation package), and how they are timed.

    int8-weight-only   every linear layer int8 with one scale per output channel (optimize/weight_only.py)
    lora-merged        a LoRA package's adapters folded into its base weights (package.merge_adapters)
    lora-merged-int8   the merged weights, then int8 weight-only

Each builds a standalone package folder (the registered version is made from it, not from a copy of the parent:
a merged version no longer needs its base checkpoint) and its model. The search scores the model by its likelihood
of the validation windows (perplexity) and times `decoder(model)`: greedy decoding with the model's KV cache from
prompts cut from the validation windows, so latency is per generated token and throughput is tokens per second.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from luodi.optimize.variants import Built, Context, Runner, Variant, register_variant
from luodi.optimize.weight_only import quantize_weight_only
from luodi.package import ModelPackage, load_package, merge_adapters

PROMPT_TOKENS = 8  # the prompt each timed decode starts from (at most a quarter of the context)
DECODE_TOKENS = 32  # greedy tokens per timed call (within the context)
MERGE_TOLERANCE = 1e-3  # merged LoRA computes the same function: per-window mean NLL within this of the adapters'


def is_language(package: ModelPackage) -> bool:
    return hasattr(package.pipeline.target, "prompt_ids")


def decode_shape(model: nn.Module) -> tuple[int, int]:
    """(prompt tokens, generated tokens) of a timed call, both within the model's context."""
    context = int(getattr(model, "context_length", 1 << 30))
    prompt = max(1, min(PROMPT_TOKENS, context // 4))
    return prompt, max(1, min(DECODE_TOKENS, context - prompt - 1))


def prompts(model: nn.Module, tokens: np.ndarray) -> dict[str, np.ndarray]:
    """The timed prompts: the first tokens of each validation window."""
    prompt, _ = decode_shape(model)
    return {"tokens": np.ascontiguousarray(tokens[:, :prompt])}


def decoder(model: nn.Module) -> Runner:
    """A batch of prompts -> `DECODE_TOKENS` greedy tokens per row (prefill, then one cached step per token; no end
    token stops it, so every variant does the same work)."""
    _, steps = decode_shape(model)

    def run(inputs: dict[str, np.ndarray]) -> np.ndarray:
        ids = torch.from_numpy(inputs["tokens"]).long()
        produced = []
        with torch.inference_mode():
            logits, cache = model.decode(ids, None)  # type: ignore[operator]
            for step in range(steps):
                token = logits[:, -1].float().argmax(-1)
                produced.append(token)
                if step + 1 < steps:
                    logits, cache = model.decode(token[:, None], cache)  # type: ignore[operator]
        return torch.stack(produced, 1).numpy()

    return run


def _built(name: str, folder: Path, model: nn.Module, **details: object) -> Built:
    model.eval()
    return Built(decoder(model), {"name": name, "runtime": "torch", "recipe": None, **details}, {}, folder, model)


def _merged(context: Context) -> ModelPackage:
    """The package with its adapters merged, written once and shared by the merged variants."""
    if "merged" not in context.cache:
        folder = context.folder / "lora-merged"
        folder.mkdir(parents=True, exist_ok=True)
        fresh = load_package(context.package.path)  # merging changes the model in place: not the baseline's
        merge_adapters(fresh, folder, context.package.config.name)
        context.cache["merged"] = load_package(folder)
    merged: ModelPackage = context.cache["merged"]
    return merged


def _quantized(context: Context, source: ModelPackage, name: str) -> Built:
    folder = context.folder / name
    folder.mkdir(parents=True, exist_ok=True)
    variant = quantize_weight_only(copy.deepcopy(source.model))
    variant.save(source, folder)
    return _built(name, folder, variant.model, weight_only=variant.entry["scheme"], layers=len(variant.layers))


def build_int8(context: Context) -> Built:
    return _quantized(context, context.package, "int8-weight-only")


def build_merged(context: Context) -> Built:
    merged = _merged(context)
    return _built("lora-merged", merged.path, copy.deepcopy(merged.model), merged_from="LoRA adapters")


def build_merged_int8(context: Context) -> Built:
    return _quantized(context, _merged(context), "lora-merged-int8")


def _adapters(context: Context) -> bool:
    return "base" in context.package.manifest


def _plain(context: Context) -> str | None:
    if _adapters(context):
        return "LoRA adapters: lora-merged-int8 quantizes the merged weights"
    if "weight_only" in context.package.manifest:
        return "already int8 weight-only"
    return None


def _lora(context: Context) -> str | None:
    return None if _adapters(context) else "no LoRA adapters to merge"


for _variant in (
    Variant("int8-weight-only", "linear layers int8 per output channel, bf16 activations (weight-only)",
            build_int8, _plain, language=True),
    Variant("lora-merged", "LoRA adapters folded into the base weights", build_merged, _lora,
            tolerance=MERGE_TOLERANCE, language=True),
    Variant("lora-merged-int8", "LoRA adapters merged, then int8 weight-only", build_merged_int8, _lora,
            language=True),
):
    register_variant(_variant)
