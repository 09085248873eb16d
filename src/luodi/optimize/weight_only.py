"""Int8 weight-only quantization of a language model's linear layers (issue 15's language-model variant).

Every `nn.Linear` of the model (attention and feed-forward projections; a Hugging Face model's output layer too,
untied from its embedding, which stays float) becomes a `models.int8.Int8Linear`: int8 weights with one scale per
output channel, activations rounded to bfloat16 into `torch._weight_int8pack_mm` on CPU. Embeddings, norms and a
`gpt` model's tied output layer stay float32. Decoding reads a quarter of the weight bytes, which is what a batch-1
step is bound by.

    variant = quantize_weight_only(package.model)           # the model, quantized in place
    variant.save(package, folder, name="story-int8")         # a standalone package: int8 weights + manifest entry
    load_package(folder)                                     # the load hook: models.int8.apply_layout

The package lists the quantized layers in its manifest entry `weight_only` ({"scheme", "layers", "activations"});
`load_package` swaps those layers for empty int8 ones before the weights load, so `luodi generate`, `luodi serve`
and `luodi evaluate` use the quantized model with nothing else to do. Logits differ from float32 by the
quantization (measured on the tests' tiny GPT: held-out perplexity within 2%); greedy text may differ where two
tokens were nearly tied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from luodi.errors import InputError
from luodi.models.int8 import SCHEME, linear_layers, quantize_layers
from luodi.package import ModelPackage, load_package, save_package

ENTRY = "weight_only"


@dataclass
class WeightOnlyInt8:
    """A model whose linear layers hold int8 weights, and how its package is written and read."""

    model: nn.Module
    layers: list[str] = field(default_factory=list)

    @property
    def entry(self) -> dict[str, Any]:
        """The package manifest's `weight_only` entry (read by `models.int8.apply_layout` when loading)."""
        return {"scheme": SCHEME, "layers": self.layers, "activations": "bfloat16"}

    def save(self, package: ModelPackage, directory: str | Path, name: str | None = None,
             metrics: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write a standalone package of the quantized model into `directory` (a staging folder): `package`'s
        config, tokenizer and feature state, the int8 weights, the `weight_only` entry and a lineage naming the
        source package. `metrics` default to none: the source's figures are not the quantized model's.
        Returns the manifest."""
        config = package.config.model_copy(deep=True)
        if name is not None:
            config.name = name
        source = package.manifest
        lineage = {**source.get("lineage", {}), "parent": str(package.path), "variant": "int8_weight_only"}
        kept: dict[str, Any] = {key: source[key] for key in ("history", "training", "data", "environment")
                                if key in source}
        return save_package(Path(directory), config=config, pipeline=package.pipeline, model=self.model,
                            metrics=metrics or {}, extra={**kept, "lineage": lineage, ENTRY: self.entry})

    @staticmethod
    def load(directory: str | Path) -> ModelPackage:
        """A saved quantized package, verified and loaded (the same `load_package` every package goes through)."""
        return load_package(directory)


def quantize_weight_only(model: nn.Module, skip: Sequence[str] = ()) -> WeightOnlyInt8:
    """Quantize `model`'s linear layers to int8 weights in place (all but those named in `skip`).

    Raises InputError for a model with LoRA adapters (merge them first: `luodi models merge`) or with no linear
    layers left to quantize."""
    if getattr(model, "lora", False):
        raise InputError("the model has LoRA adapters: merge them into the weights first (luodi models merge), "
                         "then quantize the merged package")
    names = [name for name in linear_layers(model) if name not in set(skip)]
    unknown = sorted(set(skip) - set(linear_layers(model)))
    if unknown:
        raise InputError(f"skip names no linear layer of the model: {unknown[:3]}")
    if not names:
        raise InputError("the model has no linear layers to quantize")
    quantize_layers(model, names)
    model.eval()
    return WeightOnlyInt8(model, names)


def quantize_package(package: ModelPackage, directory: str | Path, name: str | None = None) -> dict[str, Any]:
    """`package`'s language model quantized (its model changes in place) and saved into `directory`; the
    manifest. Only text_generation packages: a row model's linear layers are not where its time goes."""
    if package.task.name != "text_generation":
        raise InputError(f"{package.path}: int8 weight-only quantization is for text_generation packages; this "
                         f"one is {package.task.name}")
    if ENTRY in package.manifest:
        raise InputError(f"{package.path}: already int8 weight-only quantized")
    return quantize_weight_only(package.model).save(package, directory, name)
