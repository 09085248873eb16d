"""`HFSlots`: per-slot keys and values for a Hugging Face causal LM (models/language.py `CausalLM`), so the decode
step of every running sequence is one forward of the model (see serve/slots.py).

The model keeps its own attention code: it gets a `SlotCache` (a transformers `Cache` whose layers write each
running sequence's new key and value at that sequence's own position and return the running slots' keys and values
up to the step's span), `position_ids` (running, 1) from each sequence's length (rotary or learned positions), and
a 4D attention mask (running, 1, 1, span) hiding the positions past each sequence, which transformers passes to
the attention as it is. The prompts joining at a step run as one batch, padded on the right (prefill, the model's
own cache, only each prompt's last logits), and are copied into their slots. Imported only when an `hf` model is
served (it imports transformers).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

from luodi.serve.slots import Growing, StepRows


def unsupported(model: Any) -> str | None:
    """Why the architecture's layers cannot share one slot cache and mask (None: they can, pending the check)."""
    config = model.backbone.config
    kinds = set(getattr(config, "layer_types", None) or ["full_attention"])
    if kinds != {"full_attention"}:
        return f"its layers are {sorted(kinds)}; one mask serves only full attention"
    window = getattr(config, "sliding_window", None)
    if window and getattr(config, "use_sliding_window", True) and window < model.context_length:
        return f"sliding-window attention ({window} positions) needs a mask per layer"
    return None


class SlotLayer(CacheLayerMixin):
    """One layer's part of the slot cache: writes the step's keys and values, returns the running slots'."""

    is_sliding = False

    def __init__(self, owner: HFSlots, layer: int):
        super().__init__()
        self.owner, self.layer = owner, layer
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Nothing to do: the owner allocates the slots."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
               ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.owner.write(self.layer, key_states, value_states)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.owner.span, 0

    def get_seq_length(self) -> int:
        return self.owner.span - 1

    def get_max_length(self) -> int:
        return self.owner.capacity


class SlotCache(Cache):
    """The transformers `Cache` a batched step hands the model: one `SlotLayer` per layer."""

    def __init__(self, owner: HFSlots, layers: int):
        super().__init__(layers=[SlotLayer(owner, index) for index in range(layers)])


class HFSlots(Growing):
    """Keys and values of up to `slots` sequences of a Hugging Face causal LM, each at its own length."""

    def __init__(self, model: Any, slots: int):  # a models.language.CausalLM
        self.model, self.backbone = model, model.backbone
        base = self.backbone.get_base_model() if hasattr(self.backbone, "get_base_model") else self.backbone
        self.cache_name: str = model.cache_name
        self.last_only = "logits_to_keep" in inspect.signature(type(base).forward).parameters
        self.boolean_mask = getattr(base.config, "_attn_implementation", "eager") == "sdpa"
        self.device = next(model.parameters()).device
        # Per layer (slots, kv_heads, capacity, head_dim), shaped when the first prompt shows the layers':
        super().__init__(slots, int(model.context_length), 0, torch.zeros(0))
        self.cache: SlotCache | None = None
        self.rows: StepRows | None = None  # the running slots of the current step

    @property
    def span(self) -> int:
        """Positions the current step reads (its longest sequence's, with the new one)."""
        return self.rows.span if self.rows is not None else 0

    def prefill(self, slots: list[int], prompts: list[list[int]]) -> torch.Tensor:
        """Run the prompts into their slots as one batch; each prompt's last position's logits (prompts, vocab).

        Shorter prompts are padded on the right: under the causal mask no real position sees the padding, so each
        prompt's keys, values and last logits are those it gets alone (only the real positions are kept)."""
        lengths = [len(ids) for ids in prompts]
        longest = max(lengths)
        tokens = torch.tensor([ids + [0] * (longest - len(ids)) for ids in prompts], device=self.device)
        keep: Any = 1  # the last position: all prompts end there
        if self.last_only and min(lengths) < longest:  # each prompt's own last position (batch, 1)
            keep = torch.tensor(lengths, device=self.device)[:, None] - 1
        output = self.backbone(input_ids=tokens, use_cache=True, **({"logits_to_keep": keep} if self.last_only
                                                                     else {}))
        layers = output[self.cache_name].layers
        if self.cache is None:  # the first prompt shows the layers' key and value shapes
            self.keys = [layer.keys.new_zeros((self.slots, *layer.keys.shape[1:2], 0, layer.keys.shape[3]))
                         for layer in layers]
            self.values = [layer.values.new_zeros((self.slots, *layer.values.shape[1:2], 0, layer.values.shape[3]))
                           for layer in layers]
            self.cache = SlotCache(self, len(layers))
        self._grow(longest)
        for row, (slot, length) in enumerate(zip(slots, lengths, strict=True)):
            for index, layer in enumerate(layers):  # (prompts, kv_heads, longest, head_dim)
                self.keys[index][slot, :, :length] = layer.keys[row, :, :length]
                self.values[index][slot, :, :length] = layer.values[row, :, :length]
            self.lengths[slot] = length
        if self.last_only:
            return output.logits[:, -1]
        return output.logits[torch.arange(len(prompts)), torch.tensor(lengths) - 1]

    def step(self, slots: list[int], tokens: list[int]) -> torch.Tensor:
        """One new token per slot, all in one forward; their logits (running, vocab)."""
        self.rows = rows = self._begin_step(slots, self.device)
        # Every sequence at the same length: nothing to hide, so no mask (the model then sees only its own causal
        # mask, which hides nothing for one new position, and SDPA takes its unmasked kernel), and the step's keys
        # go in by a slice.
        mask = None if rows.uniform else self._mask(rows)
        output = self.backbone(input_ids=torch.tensor(tokens, device=self.device)[:, None], attention_mask=mask,
                               position_ids=rows.positions[:, None], use_cache=True, **{self.cache_name: self.cache})
        self._end_step(slots)
        return output.logits[:, -1]

    def _mask(self, rows: StepRows) -> torch.Tensor:
        """(running, 1, 1, span): each sequence's positions up to its own (boolean for SDPA, additive for eager)."""
        allowed = rows.allowed()
        if self.boolean_mask:
            return allowed[:, None, None, :]
        dtype = self.keys[0].dtype  # eager attention adds the mask to the scores
        return torch.zeros(allowed.shape, dtype=dtype, device=self.device).masked_fill_(
            ~allowed, torch.finfo(dtype).min)[:, None, None, :]

    def write(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the step's keys and values (running, kv_heads, 1, head_dim) of `layer` at each sequence's position;
        the running slots' keys and values up to the span (running, kv_heads, span, head_dim)."""
        assert self.rows is not None, "the slot cache is written only during a step"
        return self.rows.store(self.keys[layer], self.values[layer], keys[:, :, 0], values[:, :, 0])
