"""Int8 weight-only layers (models/int8.py, optimize/weight_only.py) on untrained tiny models: a layer's output is
its float layer's within the quantization's bound, a whole GPT's logits stay close, and the manifest entry is
checked when a package loads."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from luodi.config import GPTConfig
from luodi.errors import InputError
from luodi.models.gpt import GPT
from luodi.models.int8 import Int8Linear, apply_layout, linear_layers
from luodi.optimize.weight_only import quantize_weight_only


def test_an_int8_layer_matches_its_float_layer_within_the_rounding() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(64, 48, bias=True)
    layer = Int8Linear.from_linear(linear)
    assert layer.weight_int8.dtype == torch.int8 and layer.weight_int8.abs().max() <= 127
    # Each weight is off by at most half a step of its channel's scale.
    assert (layer.dequantized() - linear.weight).abs().max() <= layer.scales.float().max() / 2 + 1e-6
    x = torch.randn(3, 5, 64)
    with torch.inference_mode():
        exact, quantized = linear(x), layer(x)
    assert quantized.shape == exact.shape and quantized.dtype == torch.float32
    # Tolerance: int8 weights (0.4% of a channel's largest weight) and bfloat16 activations (0.4% each).
    assert (quantized - exact).abs().max() <= 0.02 * exact.abs().max(), (quantized - exact).abs().max()


def test_a_quantized_gpt_keeps_its_logits_and_greedy_choice() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(layers=2, width=64, heads=4), vocab_size=120, context_length=32).eval()
    tokens = torch.randint(0, 120, (2, 16))
    with torch.inference_mode():
        exact = model({"tokens": tokens})
    names = linear_layers(model)
    variant = quantize_weight_only(model)
    assert variant.layers == names and len(names) == 8  # qkv, projection and two feed-forward layers per block
    assert variant.entry["scheme"] == "int8-per-channel" and variant.entry["layers"] == names
    assert all(isinstance(model.get_submodule(name), Int8Linear) for name in names)
    with torch.inference_mode():
        quantized = model({"tokens": tokens})
    assert (quantized - exact).abs().max() <= 0.02 * exact.abs().max()
    assert (quantized.argmax(-1) == exact.argmax(-1)).float().mean() >= 0.9


def test_skip_names_must_be_linear_layers_and_lora_models_are_refused() -> None:
    model = GPT(GPTConfig(layers=1, width=32, heads=2), vocab_size=50, context_length=16)
    with pytest.raises(InputError, match="skip names no linear layer"):
        quantize_weight_only(model, skip=["blocks.0.nope"])
    kept = quantize_weight_only(model, skip=["blocks.0.qkv"])
    assert "blocks.0.qkv" not in kept.layers and isinstance(model.blocks[0].qkv, nn.Linear)
    model.lora = True  # type: ignore[assignment]  # what a CausalLM with adapters reports
    with pytest.raises(InputError, match="luodi models merge"):
        quantize_weight_only(model)


@pytest.mark.parametrize(("entry", "message"), [
    ({"scheme": "int4", "layers": []}, "this luodi reads no other"),
    ({"scheme": "int8-per-channel", "layers": ["blocks.0.missing"]}, "no layer 'blocks.0.missing'"),
    ({"scheme": "int8-per-channel", "layers": ["blocks.0.attention_norm"]}, "not a Linear layer"),
    ("int8", "expected"),
])
def test_a_bad_manifest_entry_is_refused_naming_it(entry: object, message: str) -> None:
    model = GPT(GPTConfig(layers=1, width=32, heads=2), vocab_size=50, context_length=16)
    with pytest.raises(InputError, match=message) as error:
        apply_layout(model, entry, "package.json weight_only")
    assert "package.json weight_only" in str(error.value)
