"""The tabular MLP: category embeddings concatenated with dense features, then configurable hidden layers."""

from __future__ import annotations

import torch
from torch import nn

from luodi.config import ModelConfig

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU,
}


class MLP(nn.Module):
    """inputs['dense'] (batch, dense_width) float and inputs['categorical'] (batch, n_categories) int -> logits."""

    def __init__(self, config: ModelConfig, dense_width: int, categories: list[tuple[int, int]], output_size: int):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(cardinality, dim) for cardinality, dim in categories)
        width = dense_width + sum(dim for _, dim in categories)
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
        parts = [inputs["dense"]]
        if self.embeddings:
            categorical = inputs["categorical"]  # (batch, n_categories)
            parts += [embedding(categorical[:, index]) for index, embedding in enumerate(self.embeddings)]
        hidden = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]  # (batch, width)
        return self.head(self.body(hidden))  # (batch, output_size)
