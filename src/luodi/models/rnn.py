"""model.type rnn: an LSTM or GRU over a text's tokens or a numeric sequence's steps, pooled to one vector.

Padding never leaks: a batch whose texts differ in length runs as a packed sequence (each text stops at its own
end, in both directions), and mean / max pooling count real steps only. A batch without padding (trimmed to its
longest text, or a fixed-length numeric sequence) runs the plain fused kernel.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from luodi.config import ModelConfig, RNNConfig
from luodi.models.steps import input_layer, masked_max, masked_mean, read_steps


class RNNEncoder(nn.Module):
    """batch -> (batch, hidden_size x directions). `embedding` is the token embedding (None for a numeric
    sequence): explanations attribute over its outputs."""

    def __init__(self, config: RNNConfig, encoder: Any):
        super().__init__()
        self.feature = encoder.name
        self.embedding, self.projection, _ = input_layer(encoder, config.embedding_dim)
        self.dropout = nn.Dropout(config.dropout)
        cell = nn.GRU if config.cell == "gru" else nn.LSTM
        self.rnn = cell(config.embedding_dim, config.hidden_size, num_layers=config.layers, batch_first=True,
                        bidirectional=config.bidirectional, dropout=config.dropout if config.layers > 1 else 0.0)
        self.directions = 2 if config.bidirectional else 1
        self.pooling = config.pooling
        self.output_size = config.hidden_size * self.directions

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        steps, mask = read_steps(batch, self.feature, self.embedding, self.projection)  # (batch, time, dim)
        steps = self.dropout(steps)
        if mask is None:
            outputs, state = self.rnn(steps)  # (batch, time, hidden x directions)
        else:
            lengths = mask.sum(dim=1).clamp(min=1).cpu()  # an empty text runs one (pad) step
            packed = pack_padded_sequence(steps, lengths, batch_first=True, enforce_sorted=False)
            packed_outputs, state = self.rnn(packed)
            outputs, _ = pad_packed_sequence(packed_outputs, batch_first=True, total_length=steps.shape[1])
        if self.pooling == "last":
            hidden = state[0] if isinstance(state, tuple) else state  # (layers x directions, batch, hidden)
            return torch.cat(list(hidden[-self.directions:]), dim=1)  # each direction's last real step
        return masked_mean(outputs, mask) if self.pooling == "mean" else masked_max(outputs, mask)


def build_rnn(config: ModelConfig, encoder: Any) -> nn.Module:
    return RNNEncoder(config.rnn, encoder)
