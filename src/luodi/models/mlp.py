"""The combiner MLP: dense features, category embeddings and one vector per feature encoder (CNN, RNN, ...)
concatenated, then configurable hidden layers and the output layer.

A table alone is just this MLP; an image or text model is the same MLP over its feature encoders' outputs, so
mixed tables (an image or text column beside numeric and category columns) need nothing more.
"""

from __future__ import annotations

import torch
from torch import nn

from luodi.config import ModelConfig

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU,
}


def _output_size(encoder: nn.Module) -> int:
    size = getattr(encoder, "output_size", None)
    if not isinstance(size, int):
        raise TypeError(f"feature encoder {type(encoder).__name__} has no integer output_size")
    return size


class MLP(nn.Module):
    """inputs['dense'] (batch, dense_width) float, inputs['categorical'] (batch, n_categories) int and whatever
    each feature encoder reads (`encoder(inputs)` -> (batch, encoder.output_size)) -> logits (batch, output_size).
    """

    def __init__(self, config: ModelConfig, dense_width: int, categories: list[tuple[int, int]], output_size: int,
                 encoders: list[nn.Module] | None = None):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(cardinality, dim) for cardinality, dim in categories)
        # A list, not a ModuleDict: feature names may hold '.', which module names may not.
        encoders = encoders or []
        self.encoders = nn.ModuleList(encoders)
        self.dense_width = dense_width
        width = dense_width + sum(dim for _, dim in categories) + sum(_output_size(e) for e in encoders)
        if width == 0:
            raise ValueError("the model has no inputs")
        layers: list[nn.Module] = []
        for size in config.hidden_sizes:
            layers.append(nn.Linear(width, size))
            if config.normalization == "batch":
                layers.append(nn.BatchNorm1d(size))
            elif config.normalization == "layer":
                layers.append(nn.LayerNorm(size))
            layers.append(ACTIVATIONS[config.activation]())
            if config.dropout > 0:
                layers.append(nn.Dropout(config.dropout))
            width = size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, output_size)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = [inputs["dense"]] if self.dense_width else []
        if self.embeddings:
            categorical = inputs["categorical"]  # (batch, n_categories)
            parts += [embedding(categorical[:, index]) for index, embedding in enumerate(self.embeddings)]
        parts += [encoder(inputs) for encoder in self.encoders]
        hidden = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]  # (batch, width)
        return self.head(self.body(hidden))  # (batch, output_size)
