"""A tensor feature as a sequence of steps: token ids through an embedding, or a numeric sequence's channels
through a linear projection; then the masked pooling the sequence encoders (rnn, transformer) share.

Token inputs follow the contract of features/text.py: ids (batch, max_length) and a bool mask, right-padded.
Every batch is trimmed to its longest mask first (dynamic padding), so compute follows the batch's real length.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def input_layer(encoder: Any, width: int) -> tuple[nn.Embedding | None, nn.Linear | None, int]:
    """(embedding, projection, most steps) for a fitted tokens or sequence encoder: one of the two layers is None."""
    if encoder.modality == "tokens":
        return nn.Embedding(encoder.vocab_size, width, padding_idx=encoder.pad_id), None, encoder.max_length
    if encoder.modality == "sequence":
        return None, nn.Linear(encoder.channels, width), encoder.length
    raise ValueError(f"feature {encoder.name!r}: a sequence encoder reads tokens or sequence, not {encoder.modality}")


def trim(batch: dict[str, torch.Tensor], name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and mask cut to the batch's longest text (at least one step, so an empty text is one pad step)."""
    ids, mask = batch[name], batch[f"{name}.mask"]  # (batch, max_length) each
    if torch.jit.is_tracing():  # an ONNX export: the graph's sequence axis is dynamic, its runner trims the batch
        return ids, mask
    longest = max(1, int(mask.sum(dim=1).max()))
    return ids[:, :longest], mask[:, :longest]


def read_steps(batch: dict[str, torch.Tensor], name: str, embedding: nn.Embedding | None,
               projection: nn.Linear | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(steps (batch, time, width), mask (batch, time) or None when every step is real)."""
    if embedding is not None:
        ids, mask = trim(batch, name)
        return embedding(ids), (None if bool(mask.all()) else mask)
    assert projection is not None
    return projection(batch[name]), None  # (batch, length, channels) -> (batch, length, width)


def masked_mean(steps: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over real steps: (batch, time, width) -> (batch, width); an empty text gives zeros."""
    if mask is None:
        return steps.mean(dim=1)
    weights = mask.unsqueeze(-1).to(steps.dtype)  # (batch, time, 1)
    return (steps * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def masked_max(steps: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Max over real steps: (batch, time, width) -> (batch, width); an empty text gives zeros."""
    if mask is None:
        return steps.amax(dim=1)
    hidden = steps.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
    return hidden.masked_fill(~mask.any(dim=1, keepdim=True), 0.0)
