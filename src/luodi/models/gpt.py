"""model.type gpt: a decoder-only Transformer for text_generation, trained from scratch.

Pre-norm blocks (RMSNorm, causal self-attention with rotary positions, a GELU feed-forward of 4 x width), a final
norm, and the output layer tied to the token embedding (logits = states @ embedding^T, no second matrix). Rotary
tables are buffers that are not saved: the package holds only the learned tensors.

`forward(batch)` gives logits for every position of `batch["tokens"]` (training, scoring); `decode(ids, cache)`
runs only the new positions against the keys and values of the earlier ones (`KVCache`), for generation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from luodi.config import GPTConfig

KeyValues = tuple[torch.Tensor, torch.Tensor]


@dataclass
class KVCache:
    """Keys and values of the positions seen so far, per layer: (batch, heads, length, head_dim) each."""

    layers: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    @property
    def length(self) -> int:
        return int(self.layers[0][0].shape[2]) if self.layers else 0


def rotary_tables(positions: int, head_dim: int, base: float = 10_000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (positions, head_dim / 2) of the rotary angles."""
    frequencies = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(positions, dtype=torch.float32), frequencies)
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs of channels of x (batch, heads, time, head_dim) by the angles of its positions."""
    first, second = x[..., 0::2], x[..., 1::2]
    rotated = torch.stack([first * cos - second * sin, first * sin + second * cos], dim=-1)
    return rotated.flatten(-2).type_as(x)


class Block(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.attention_norm, self.feedforward_norm = nn.RMSNorm(width), nn.RMSNorm(width)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.projection = nn.Linear(width, width, bias=False)
        self.feedforward = nn.Sequential(nn.Linear(width, 4 * width, bias=False), nn.GELU(),
                                         nn.Linear(4 * width, width, bias=False))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                past: KeyValues | None) -> tuple[torch.Tensor, KeyValues]:
        batch, time, width = x.shape
        q, k, v = self.qkv(self.attention_norm(x)).split(width, dim=-1)
        q, k, v = (t.view(batch, time, self.heads, -1).transpose(1, 2) for t in (q, k, v))  # (batch, heads, time, d)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        seen = k.shape[2] - time  # positions before the new ones
        if seen == 0:
            attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif time == 1:
            attended = F.scaled_dot_product_attention(q, k, v)  # one new position sees everything before it
        else:
            allowed = torch.ones(time, k.shape[2], dtype=torch.bool, device=x.device).tril(seen)
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        x = x + self.dropout(self.projection(attended.transpose(1, 2).reshape(batch, time, width)))
        x = x + self.dropout(self.feedforward(self.feedforward_norm(x)))
        return x, (k, v)


class GPT(nn.Module):
    """Token ids (batch, time) -> next-token logits (batch, time, vocab)."""

    def __init__(self, settings: GPTConfig, vocab_size: int, context_length: int):
        super().__init__()
        self.context_length = context_length
        self.embedding = nn.Embedding(vocab_size, settings.width)
        self.blocks = nn.ModuleList(Block(settings.width, settings.heads, settings.dropout)
                                    for _ in range(settings.layers))
        self.norm = nn.RMSNorm(settings.width)
        self.dropout = nn.Dropout(settings.dropout)
        cos, sin = rotary_tables(context_length, settings.width // settings.heads)
        self.cos: torch.Tensor
        self.sin: torch.Tensor
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        for name, parameter in self.named_parameters():
            if parameter.ndim == 2:
                # GPT-2's scheme: 0.02, and the layers that write into the residual stream scaled by depth.
                std = 0.02 / (2 * settings.layers) ** 0.5 if name.endswith(("projection.weight", "2.weight")) else 0.02
                nn.init.normal_(parameter, std=std)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.decode(batch["tokens"], None)[0]

    def decode(self, ids: torch.Tensor, cache: KVCache | None) -> tuple[torch.Tensor, KVCache]:
        """Logits (batch, new, vocab) of the new positions `ids` (batch, new), after those in `cache`."""
        start = cache.length if cache is not None else 0
        end = start + ids.shape[1]
        if end > self.context_length:
            raise ValueError(f"{end} positions exceed the model's context of {self.context_length}")
        cos, sin = self.cos[start:end], self.sin[start:end]
        x = self.dropout(self.embedding(ids))
        layers = []
        for index, block in enumerate(self.blocks):
            x, kv = block(x, cos, sin, cache.layers[index] if cache is not None else None)
            layers.append(kv)
        logits = self.norm(x) @ self.embedding.weight.T  # tied output layer
        return logits, KVCache(layers)
