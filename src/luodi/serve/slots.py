"""Slot caches: the keys and values of every running sequence in one tensor per layer, so a decode step of all of
them is one batch (the scheduler in generation.py picks one when its worker starts).

A `Slots` holds per layer one key and one value tensor (slots, heads, capacity, head_dim): a slot per running
sequence, each sequence at its own length. `prefill` runs a prompt alone into its slot; `step` feeds every running
sequence's newest token as one (running, 1) batch, with positions from each sequence's own length and an attention
mask hiding the positions past it, so sequences of any lengths share one matrix multiply per layer (at batch 8 a
step of a small model costs little more than at 1: it is bound by per-call overhead and weight reads, not
arithmetic). Capacity doubles as needed, up to the model's context.

`gpt` models get `GPTSlots` (written against models/gpt.py's blocks); Hugging Face causal LMs get `HFSlots`
(serve/hf_slots.py), which hands the model a cache object, a 4D mask and per-sequence position ids. Which model
gets which (and the check that a batched step gives the logits of the model's own decoding) is the scheduler's
`batched_slots` (generation.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch.nn import functional as F


class Slots(Protocol):
    """Per-slot keys and values of a model, for batched decode steps."""

    def prefill(self, slots: list[int], prompts: list[list[int]]) -> torch.Tensor:
        """Run each prompt into its slot; each prompt's last position's logits (prompts, vocab)."""
        ...

    def step(self, slots: list[int], tokens: list[int]) -> torch.Tensor:
        """One new token per slot, all in one batch; their logits (running, vocab)."""
        ...


def capacity_for(needed: int, capacity: int, context: int) -> int:
    """The capacity (positions per slot) after doubling from `capacity` until `needed` fit; at most `context`."""
    grown = max(64, capacity)
    while grown < needed:
        grown *= 2
    return min(grown, context)


def widen(tensors: list[torch.Tensor], capacity: int) -> list[torch.Tensor]:
    """Copies of (slots, heads, positions, head_dim) tensors with room for `capacity` positions."""
    widened = []
    for old in tensors:
        new = old.new_zeros((*old.shape[:2], capacity, old.shape[3]))
        new[:, :, :old.shape[2]] = old
        widened.append(new)
    return widened


@dataclass
class StepRows:
    """Where the sequences of one batched step sit in a slot cache: slots `rows` (running,), contiguous from `first`
    to `end` or not, each at its own new position (`positions`, running); `span` positions are read. `uniform`: every
    sequence at one length and contiguous (one sequence; prompts of one length that joined together), so the step's
    keys go in by a slice and no mask is needed."""

    first: int
    end: int
    span: int
    contiguous: bool
    uniform: bool
    rows: torch.Tensor
    positions: torch.Tensor

    def allowed(self) -> torch.Tensor:
        """(running, span): True at the positions each sequence attends to (its own and those before)."""
        return torch.arange(self.span, device=self.positions.device)[None, :] <= self.positions[:, None]

    def store(self, stored_keys: torch.Tensor, stored_values: torch.Tensor, keys: torch.Tensor,
              values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the step's keys and values (running, heads, head_dim) into one layer's cache at each sequence's
        position; the running slots' keys and values up to the span (running, heads, span, head_dim)."""
        if self.uniform:  # one position for all: a slice, no index tensors
            stored_keys[self.first:self.end, :, self.span - 1] = keys
            stored_values[self.first:self.end, :, self.span - 1] = values
        else:
            stored_keys[self.rows, :, self.positions] = keys
            stored_values[self.rows, :, self.positions] = values
        if self.contiguous:  # views: no copy of the cache
            return stored_keys[self.first:self.end, :, :self.span], stored_values[self.first:self.end, :, :self.span]
        return stored_keys[self.rows, :, :self.span], stored_values[self.rows, :, :self.span]


class Growing:
    """What every slot cache holds: per layer keys and values (slots, heads, capacity, head_dim), each slot's length,
    and the capacity, doubled as needed up to the context."""

    def __init__(self, slots: int, context: int, layers: int, empty: torch.Tensor):
        self.slots, self.capacity, self.context = slots, 0, context
        self.lengths = [0] * slots
        self.keys: list[torch.Tensor] = [empty] * layers
        self.values: list[torch.Tensor] = [empty] * layers

    def reset(self) -> None:
        """Forget every slot's contents (the capacity stays)."""
        self.lengths = [0] * self.slots

    def _grow(self, needed: int) -> None:
        if needed > self.capacity:
            self.capacity = capacity_for(needed, self.capacity, self.context)
            self.keys, self.values = widen(self.keys, self.capacity), widen(self.values, self.capacity)

    def _begin_step(self, slots: list[int], device: torch.device) -> StepRows:
        """Where a step's sequences sit (capacity grown to their span); `_end_step` counts the new token."""
        lengths = [self.lengths[slot] for slot in slots]
        span = max(lengths) + 1
        self._grow(span)
        first, end = slots[0], slots[0] + len(slots)
        contiguous = slots == list(range(first, end))
        return StepRows(first, end, span, contiguous, contiguous and min(lengths) == span - 1,
                        torch.tensor(slots, device=device), torch.tensor(lengths, device=device))

    def _end_step(self, slots: list[int]) -> None:
        for slot in slots:
            self.lengths[slot] += 1


class GPTSlots(Growing):
    """Keys and values of up to `slots` sequences of a `gpt` model, each at its own length, for batched steps."""

    def __init__(self, model: Any, slots: int):  # a models.gpt.GPT
        self.model = model
        block = model.blocks[0]
        self.heads = int(block.heads)
        self.width = int(model.embedding.weight.shape[1])
        empty = model.embedding.weight.new_zeros((slots, self.heads, 0, self.width // self.heads))
        super().__init__(slots, int(model.context_length), len(model.blocks), empty)

    def prefill(self, slots: list[int], prompts: list[list[int]]) -> torch.Tensor:
        """Run each prompt into its slot, one after another; the last positions' logits (prompts, vocab)."""
        last = []
        for slot, ids in zip(slots, prompts, strict=True):
            self._grow(len(ids))
            tokens = torch.tensor(ids, device=self.model.embedding.weight.device)[None, :]
            logits, cache = self.model.decode(tokens, None)
            for layer, (keys, values) in enumerate(cache.layers):  # (1, heads, prompt, head_dim)
                self.keys[layer][slot, :, :len(ids)] = keys[0]
                self.values[layer][slot, :, :len(ids)] = values[0]
            self.lengths[slot] = len(ids)
            last.append(logits[0, -1])
        return torch.stack(last)

    def step(self, slots: list[int], tokens: list[int]) -> torch.Tensor:
        """One new token per slot, all in one batch; their logits (running, vocab)."""
        from luodi.models.gpt import rotate

        model = self.model
        device = model.embedding.weight.device
        rows = self._begin_step(slots, device)
        cos = model.cos[rows.positions][:, None, None, :]  # (running, 1, 1, head_dim / 2)
        sin = model.sin[rows.positions][:, None, None, :]
        allowed = None if rows.uniform else rows.allowed()[:, None, None, :]  # one length: no mask
        x = model.embedding(torch.tensor(tokens, device=device)[:, None])  # (running, 1, w)
        running, width = len(slots), self.width
        for layer, block in enumerate(model.blocks):
            q, k, v = block.qkv(block.attention_norm(x)).split(width, dim=-1)
            q, k, v = (t.view(running, 1, self.heads, -1).transpose(1, 2) for t in (q, k, v))  # (run, heads, 1, d)
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            keys, values = rows.store(self.keys[layer], self.values[layer], k[:, :, 0], v[:, :, 0])
            attended = F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed)
            x = x + block.projection(attended.transpose(1, 2).reshape(running, 1, width))
            x = x + block.feedforward(block.feedforward_norm(x))
        self._end_step(slots)
        return (model.norm(x) @ model.embedding.weight.T)[:, 0]
