"""Int8 weight-only linear layers: `Int8Linear` holds a linear layer's weight as int8 with one scale per output
channel (symmetric: w ≈ weight_int8 * scale, |weight_int8| <= 127); activations stay floating point.

On CPU the product is `torch._weight_int8pack_mm` with the activations rounded to bfloat16 (its fast kernel; with
float32 activations it falls back to a slow path), and the result comes back in the input's dtype. Elsewhere the
weight is dequantized for each call (correct, not faster). A package of such a model lists the quantized layers in
its manifest (`weight_only`, written by optimize/weight_only.py); `apply_layout` swaps those layers for empty
`Int8Linear`s before the weights load, so the file holds int8 tensors and loads with `load_state_dict`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from luodi.errors import InputError

SCHEME = "int8-per-channel"


class Int8Linear(nn.Module):
    """`nn.Linear` with an int8 weight (out, in), a bfloat16 scale per output channel and a float bias."""

    def __init__(self, in_features: int, out_features: int, bias: bool, bias_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight_int8: torch.Tensor
        self.scales: torch.Tensor
        self.bias: torch.Tensor | None
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scales", torch.ones(out_features, dtype=torch.bfloat16))
        self.register_buffer("bias", torch.zeros(out_features, dtype=bias_dtype) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        """Quantize a float layer: per output channel, scale = max |w| / 127 (rounded to bfloat16 first, so the
        int8 values are rounded against the scale the kernel multiplies by)."""
        weight = linear.weight.detach().float()
        scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12).to(torch.bfloat16)
        quantized = torch.round(weight / scales.float()[:, None]).clamp(-127, 127).to(torch.int8)
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None,
                    linear.bias.dtype if linear.bias is not None else torch.float32)
        layer.weight_int8.copy_(quantized)
        layer.scales.copy_(scales)
        if linear.bias is not None:
            assert layer.bias is not None
            layer.bias.copy_(linear.bias.detach())
        return layer.to(linear.weight.device)

    def dequantized(self) -> torch.Tensor:
        """The float32 weight (out, in) the int8 values and scales stand for."""
        return self.weight_int8.float() * self.scales.float()[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        if x.device.type == "cpu":
            flat = x.reshape(-1, shape[-1]).to(torch.bfloat16)
            out = torch._weight_int8pack_mm(flat, self.weight_int8, self.scales).to(x.dtype)
            out = out.reshape(*shape[:-1], self.out_features)
        else:
            out = x @ self.dequantized().to(x.dtype).T
        return out if self.bias is None else out + self.bias.to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def linear_layers(model: nn.Module) -> list[str]:
    """The names of the model's `nn.Linear` layers, in module order."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def quantize_layers(model: nn.Module, names: list[str]) -> None:
    """Replace the named `nn.Linear` layers of `model` by their `Int8Linear` quantization (in place)."""
    for name in names:
        layer = model.get_submodule(name)
        if not isinstance(layer, nn.Linear):
            raise InputError(f"layer {name!r} is a {type(layer).__name__}, not a Linear layer")
        _set(model, name, Int8Linear.from_linear(layer))


def apply_layout(model: nn.Module, entry: Any, source: str) -> None:
    """Give `model` the int8 layers a package's manifest entry `weight_only` lists (empty: its weights load next).
    `source` names the entry in errors."""
    if not isinstance(entry, dict) or entry.get("scheme") != SCHEME or not isinstance(entry.get("layers"), list):
        raise InputError(f"{source}: expected {{'scheme': {SCHEME!r}, 'layers': [names]}}; this luodi reads no "
                         "other weight-only quantization")
    for name in entry["layers"]:
        try:
            layer = model.get_submodule(str(name))
        except AttributeError:
            raise InputError(f"{source}: the model has no layer {name!r}") from None
        if not isinstance(layer, nn.Linear):
            raise InputError(f"{source}: layer {name!r} is a {type(layer).__name__}, not a Linear layer")
        empty = Int8Linear(layer.in_features, layer.out_features, layer.bias is not None,
                           layer.bias.dtype if layer.bias is not None else torch.float32)
        _set(model, str(name), empty.to(layer.weight.device))
