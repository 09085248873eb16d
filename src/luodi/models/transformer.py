"""model.type transformer: a Transformer encoder over a text's tokens or a numeric sequence's steps.

Positions are learned or sinusoidal; padded steps are hidden from attention with a key padding mask (none when
the trimmed batch has no padding); pooling is a learned summary token (`cls`) or the mean of the real steps.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from luodi.config import ModelConfig, TransformerConfig
from luodi.models.steps import input_layer, masked_mean, read_steps


def sinusoids(length: int, width: int) -> torch.Tensor:
    """The fixed sin/cos position table of 'Attention is all you need': (length, width)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10_000.0) / width))
    table = torch.zeros(length, width)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: width // 2])
    return table


class TransformerEncoder(nn.Module):
    """batch -> (batch, width). `embedding` is the token embedding (None for a numeric sequence): explanations
    attribute over its outputs."""

    def __init__(self, config: TransformerConfig, encoder: Any):
        super().__init__()
        width = config.width
        self.feature = encoder.name
        self.embedding, self.projection, steps = input_layer(encoder, width)
        if self.embedding is not None:  # BERT / GPT scale: at N(0, 1) each AdamW step moves a token a thousandth
            nn.init.normal_(self.embedding.weight, std=0.02)
            with torch.no_grad():
                self.embedding.weight[encoder.pad_id].zero_()
        self.cls = nn.Parameter(torch.randn(1, 1, width) * 0.02) if config.pooling == "cls" else None
        steps += 1 if self.cls is not None else 0
        self.positions: nn.Embedding | None = None
        if config.positions == "learned":
            self.positions = nn.Embedding(steps, width)
            nn.init.normal_(self.positions.weight, std=0.02)
        else:  # not a parameter, not saved: recomputed from the config
            self.register_buffer("sinusoids", sinusoids(steps, width), persistent=False)
        self.dropout = nn.Dropout(config.dropout)
        layer = nn.TransformerEncoderLayer(width, config.heads, config.feedforward or 4 * width, config.dropout,
                                           activation="gelu", batch_first=True, norm_first=config.norm_first)
        self.encoder = nn.TransformerEncoder(layer, config.layers, norm=nn.LayerNorm(width) if config.norm_first
                                             else None, enable_nested_tensor=False)
        for block in self.encoder.layers:  # the layer takes one dropout for everything; attention gets its own
            block.self_attn.dropout = config.attention_dropout
        self.output_size = width

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        steps, mask = read_steps(batch, self.feature, self.embedding, self.projection)  # (batch, time, width)
        if self.cls is not None:
            steps = torch.cat([self.cls.expand(len(steps), -1, -1), steps], dim=1)
            if mask is not None:
                mask = torch.cat([mask.new_ones(len(mask), 1), mask], dim=1)
        time = steps.shape[1]
        table = self.positions.weight if self.positions is not None else self.get_buffer("sinusoids")
        steps = steps + table[:time]  # (time, width) broadcast over the batch
        padding = None
        if mask is not None:
            padding = ~mask
            padding[:, 0] = False  # an empty text attends to its one pad step rather than to nothing (NaN)
        hidden = self.encoder(self.dropout(steps), src_key_padding_mask=padding)  # (batch, time, width)
        return hidden[:, 0] if self.cls is not None else masked_mean(hidden, mask)


def build_transformer(config: ModelConfig, encoder: Any) -> nn.Module:
    return TransformerEncoder(config.transformer, encoder)
