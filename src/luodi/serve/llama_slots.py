"""`LlamaSlots`: luodi's own decode step for the Llama family (Llama, SmolLM, Mistral, Qwen2 with its q/k/v bias),
over the same per-slot keys and values as serve/hf_slots.py, reading the loaded Hugging Face model's weights.

Why: at a batch of 8 a step of a small model is bound by per-call overhead as much as by arithmetic, and HF's
forward spends calls a fixed-shape step does not need (three q/k/v and two gate/up matrix multiplies, rotary
tables recomputed from the positions every step, a cache object and a mask per layer, output wrappers). Here:

- one q/k/v matrix multiply and one gate/up matrix multiply per layer: the weights are concatenated once, and the
  model's own `q_proj` / `k_proj` / `v_proj` (`gate_proj` / `up_proj`) weights become views into the concatenation
  (`share_weights`, after the scheduler's check), so no weight is held twice and HF's forward still works;
- RMSNorm in a few elementwise ops; the rotary cos / sin of every position computed once by the model's own rotary
  module (so rope_theta and the scaling types `ROPE_TYPES` come out exactly as HF's);
- the decode step's matrix multiplies through oneDNN with each weight reordered once into its blocked layout
  (`StepLinear`; on a CPU, in float32): at a batch of 8 they read the weights faster than the plain layout
  (`F.linear`, MKL), which repacks them every call; the reordered weights are a second copy, so the step's weights
  are held twice (docs/generation.md);
- one token per sequence: a sequence's query heads packed by their key/value head, (running, kv_heads, group,
  head_dim), attend over the slot's keys (running, kv_heads, span, head_dim) with no copy of keys or values, and
  with no mask when every sequence sits at one length;
- prefill: the prompts right-padded into one causal batch, keys and values written straight into their slots,
  only each prompt's last position through the final norm and the output layer.

`unsupported` says why a model cannot take this step (another architecture, unmerged LoRA adapters, int8 or
other non-`nn.Linear` layers, sliding windows, a rope type not in `ROPE_TYPES`, an activation other than SiLU);
the scheduler (generation.py `batched_slots`) then uses `HFSlots`, which runs HF's own forward. Imported only when
an `hf` model is served (it imports transformers through hf_slots).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from luodi.serve.hf_slots import unsupported as shared_cache_unsupported
from luodi.serve.slots import Growing

log = logging.getLogger("luodi.serve")
ARCHITECTURES = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"}
# Rope types whose cos / sin depend on the position only (not on the sequence's length, as "dynamic" and
# "longrope" do): a table computed once by the model's rotary module is exact.
ROPE_TYPES = {"default", "linear", "llama3", "yarn"}


def unsupported(model: Any) -> str | None:
    """Why luodi's Llama step cannot run this model (None: it can, pending the scheduler's check)."""
    backbone = model.backbone
    if hasattr(backbone, "get_base_model"):
        return "its LoRA adapters are not merged (PEFT layers)"
    name = type(backbone).__name__
    if name not in ARCHITECTURES:
        return f"{name} is not one of {sorted(ARCHITECTURES)}"
    reason = shared_cache_unsupported(model)
    if reason is not None:
        return reason
    config = backbone.config
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"its activation is {config.hidden_act}, not silu"
    rope = getattr(backbone.model.rotary_emb, "rope_type", "default")
    if rope not in ROPE_TYPES:
        return f"rope type {rope!r} is not one of {sorted(ROPE_TYPES)}"
    for index, layer in enumerate(backbone.model.layers):
        attention, mlp = layer.self_attn, layer.mlp
        linears = {"q_proj": attention.q_proj, "k_proj": attention.k_proj, "v_proj": attention.v_proj,
                   "o_proj": attention.o_proj, "gate_proj": mlp.gate_proj, "up_proj": mlp.up_proj,
                   "down_proj": mlp.down_proj}
        for part, linear in linears.items():
            if type(linear) is not nn.Linear:
                return f"layer {index}'s {part} is a {type(linear).__name__}, not nn.Linear"
        for group in (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj")):
            if len({linears[part].bias is None for part in group}) > 1:
                return f"layer {index}'s {'/'.join(group)} do not all have a bias"
    if type(backbone.lm_head) is not nn.Linear:
        return f"its output layer is a {type(backbone.lm_head).__name__}"
    return None


class StepLinear:
    """`F.linear` with a weight (rows, width) reordered once by oneDNN for a batch of `batch` rows, which its matrix
    multiply then reads as stored. Measured on a 2-core AVX2 CPU, 1 thread, batch 8 (docs/performance.md): 0.51-0.83x
    the time of `F.linear` (MKL) for SmolLM2-135M's layers and output layer; at batch 1 and in prefill (8 x 32 rows)
    at parity, so prefill keeps `F.linear` on the plain weights. Where oneDNN cannot take it (not a CPU tensor, not
    float32, no oneDNN in this torch build), the plain `F.linear`; results agree to float32 rounding (a different
    order of the sums), not bit for bit."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, batch: int, reorder: bool = True):
        self.weight, self.bias = weight, bias
        self.reordered = reorder and reorderable(weight)
        if self.reordered:
            self.weight = torch.ops.mkldnn._reorder_linear_weight(weight, batch)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.reordered:
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)

    def added(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """residual + this layer of x, the addition done by the matrix multiply's own output pass."""
        if self.reordered:
            return torch.ops.mkldnn._linear_pointwise.binary(x, residual, self.weight, self.bias, "add")
        return residual + F.linear(x, self.weight, self.bias)


def reorderable(weight: torch.Tensor) -> bool:
    """Whether oneDNN can reorder this weight for `StepLinear` (a float32 CPU tensor, oneDNN in the build)."""
    return (weight.device.type == "cpu" and weight.dtype == torch.float32 and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


def available_memory() -> int | None:
    """Bytes of memory the system can still give (MemAvailable in /proc/meminfo; None where unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@dataclass
class Layer:
    """One decoder layer's weights: the fused projections, and the modules whose weights become their views."""

    attention_norm: torch.Tensor  # (width,)
    qkv: torch.Tensor  # (heads + 2 kv_heads) * head_dim, width
    qkv_bias: torch.Tensor | None
    output: nn.Linear
    feedforward_norm: torch.Tensor
    gate_up: torch.Tensor  # (2 intermediate, width)
    gate_up_bias: torch.Tensor | None
    down: nn.Linear
    parts: list[tuple[nn.Linear, ...]]  # (q, k, v) and (gate, up): their weights are rows of qkv / gate_up
    step: dict[str, StepLinear]  # the decode step's qkv, output, gate_up, down


def fused(linears: tuple[nn.Linear, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The linears' weights (and biases) stacked along the output rows: one matrix multiply for all."""
    weight = torch.cat([linear.weight.detach() for linear in linears])
    if linears[0].bias is None:
        return weight, None
    return weight, torch.cat([linear.bias.detach() for linear in linears])


def rotate(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding as HF's `apply_rotary_pos_emb` (the halves convention: x * cos + cat(-x2, x1) * sin), heads
    on the second-last axis; `signed_sin` is sin with its first half negated, which saves negating x2 every step."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((x[..., half:], x[..., :half]), dim=-1) * signed_sin


class LlamaSlots(Growing):
    """Keys and values of up to `slots` sequences of a Llama-family model, stepped by luodi's own decoder step."""

    def __init__(self, model: Any, slots: int, reorder: bool = True):  # a CausalLM that `unsupported` accepts
        """`reorder` False keeps the step on the plain weights and `F.linear` (benchmarks/llama_step.py compares)."""
        backbone = model.backbone
        decoder, config = backbone.model, backbone.config
        first = decoder.layers[0].self_attn
        self.head_dim = int(first.head_dim)
        self.heads = int(first.q_proj.out_features) // self.head_dim
        self.kv_heads = int(first.k_proj.out_features) // self.head_dim
        self.scale = float(first.scaling)
        self.eps = float(config.rms_norm_eps)
        self.embedding = decoder.embed_tokens.weight
        self.norm = decoder.norm.weight
        self.output = backbone.lm_head
        self.dtype, self.device = self.embedding.dtype, self.embedding.device
        self.layers = []
        # The reordered weights are a second copy of the step's weights: only when that leaves half the memory the
        # system has free (a large model on a small machine keeps the plain weights and F.linear).
        weights = sum(p.numel() * p.element_size() for p in backbone.parameters())
        free = available_memory()
        self.reordered = reorder and (free is None or 2 * weights < free)
        if reorder and not self.reordered:
            log.info("the Llama step keeps plain weights: reordering them would take %.0f MB of %.0f MB available",
                     weights / 1e6, (free or 0) / 1e6)
        reorder = self.reordered
        for layer in decoder.layers:
            attention, mlp = layer.self_attn, layer.mlp
            with torch.inference_mode(False):  # normal tensors: the model's parameters become views into them
                qkv, qkv_bias = fused((attention.q_proj, attention.k_proj, attention.v_proj))
                gate_up, gate_up_bias = fused((mlp.gate_proj, mlp.up_proj))
            with torch.inference_mode():
                step = {"qkv": StepLinear(qkv, qkv_bias, slots, reorder),
                        "gate_up": StepLinear(gate_up, gate_up_bias, slots, reorder),
                        "output": StepLinear(attention.o_proj.weight.detach(), attention.o_proj.bias, slots, reorder),
                        "down": StepLinear(mlp.down_proj.weight.detach(), mlp.down_proj.bias, slots, reorder)}
            self.layers.append(Layer(layer.input_layernorm.weight, qkv, qkv_bias, attention.o_proj,
                                     layer.post_attention_layernorm.weight, gate_up, gate_up_bias, mlp.down_proj,
                                     [(attention.q_proj, attention.k_proj, attention.v_proj),
                                      (mlp.gate_proj, mlp.up_proj)], step))
        with torch.inference_mode():  # the model's own rotary module: rope_theta and scaling as HF computes them
            self.step_output = StepLinear(self.output.weight.detach(), self.output.bias, slots, reorder)
            positions = torch.arange(int(model.context_length), device=self.device)[None, :]
            cos, sin = decoder.rotary_emb(self.embedding[:1], positions)
        half = self.head_dim // 2
        self.cos, self.sin = cos[0], torch.cat((-sin[0, :, :half], sin[0, :, half:]), dim=-1)  # (context, head_dim)
        empty = self.embedding.new_zeros((slots, self.kv_heads, 0, self.head_dim))
        super().__init__(slots, int(model.context_length), len(self.layers), empty)

    def share_weights(self) -> None:
        """Make the model's q/k/v and gate/up weights views into the fused ones, so each weight is held once (HF's
        forward, which other paths still run, reads the same numbers)."""
        for layer in self.layers:
            for linears, weight, bias in ((layer.parts[0], layer.qkv, layer.qkv_bias),
                                          (layer.parts[1], layer.gate_up, layer.gate_up_bias)):
                start = 0
                for linear in linears:
                    end = start + linear.out_features
                    linear.weight.data = weight[start:end]
                    if bias is not None:
                        linear.bias.data = bias[start:end]
                    start = end

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """RMSNorm as HF's: in float32, then the weight in the model's dtype. (Elementwise ops on a step's few
        rows: on 2 threads `F.rms_norm` measured 63 µs against 9 µs for these, which stay under the parallel
        grain size and run in this thread.)"""
        hidden = x.float()
        hidden = hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * hidden.to(x.dtype)

    def _feedforward(self, x: torch.Tensor, layer: Layer) -> torch.Tensor:
        """x plus the layer's gated feed-forward of it."""
        gate, up = F.linear(self._norm(x, layer.feedforward_norm), layer.gate_up, layer.gate_up_bias).chunk(2, -1)
        return x + layer.down(F.silu(gate) * up)

    @torch.inference_mode()
    def prefill(self, slots: list[int], prompts: list[list[int]]) -> torch.Tensor:
        """Run the prompts into their slots as one causal batch, padded on the right (no real position sees the
        padding); each prompt's last position's logits (prompts, vocab)."""
        lengths = [len(ids) for ids in prompts]
        count, longest = len(prompts), max(lengths)
        self._grow(longest)
        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim
        tokens = torch.tensor([ids + [0] * (longest - len(ids)) for ids in prompts], device=self.device)
        cos, sin = self.cos[:longest, None], self.sin[:longest, None]  # (longest, 1, head_dim)
        rows = torch.tensor(slots, device=self.device)
        contiguous = slots == list(range(slots[0], slots[0] + count))
        x = F.embedding(tokens, self.embedding)  # (prompts, longest, width)
        for index, layer in enumerate(self.layers):
            qkv = F.linear(self._norm(x, layer.attention_norm), layer.qkv, layer.qkv_bias)
            qkv = qkv.view(count, longest, heads + 2 * kv_heads, dim)
            rotated = rotate(qkv[:, :, :heads + kv_heads], cos, sin)  # (prompts, longest, heads + kv, dim)
            query = rotated[:, :, :heads].transpose(1, 2)  # (prompts, heads, longest, dim)
            keys = rotated[:, :, heads:].transpose(1, 2)  # (prompts, kv_heads, longest, dim)
            values = qkv[:, :, heads + kv_heads:].transpose(1, 2)
            if contiguous:
                self.keys[index][slots[0]:slots[0] + count, :, :longest] = keys
                self.values[index][slots[0]:slots[0] + count, :, :longest] = values
            else:
                self.keys[index][rows, :, :longest] = keys
                self.values[index][rows, :, :longest] = values
            attended = F.scaled_dot_product_attention(query, keys, values, is_causal=True, scale=self.scale,
                                                      enable_gqa=heads != kv_heads)
            x = x + layer.output(attended.transpose(1, 2).reshape(count, longest, heads * dim))
            x = self._feedforward(x, layer)
        for slot, length in zip(slots, lengths, strict=True):
            self.lengths[slot] = length
        last = x[torch.arange(count, device=self.device), torch.tensor(lengths, device=self.device) - 1]
        return self.output(self._norm(last, self.norm))  # (prompts, vocab)

    @torch.inference_mode()
    def step(self, slots: list[int], tokens: list[int]) -> torch.Tensor:
        """One new token per slot, all in one batch; their logits (running, vocab)."""
        rows = self._begin_step(slots, self.device)
        running, heads, kv_heads, dim = len(slots), self.heads, self.kv_heads, self.head_dim
        # Every sequence at one length: one rotary row, no mask, the step's keys written by a slice.
        if rows.uniform:
            cos, sin, mask = self.cos[rows.span - 1], self.sin[rows.span - 1], None  # (head_dim,)
        else:
            cos, sin = self.cos[rows.positions][:, None], self.sin[rows.positions][:, None]  # (running, 1, head_dim)
            mask = rows.allowed()[:, None, None, :]
        x = F.embedding(torch.tensor(tokens, device=self.device), self.embedding)  # (running, width)
        for index, layer in enumerate(self.layers):
            step = layer.step
            qkv = step["qkv"](self._norm(x, layer.attention_norm)).view(running, heads + 2 * kv_heads, dim)
            rotated = rotate(qkv[:, :heads + kv_heads], cos, sin)  # (running, heads + kv_heads, dim)
            # Query head h reads key/value head h // group: packed as (running, kv_heads, group, dim), the group
            # takes the place of the query positions, and keys and values are read as they are stored.
            query = rotated[:, :heads].reshape(running, kv_heads, heads // kv_heads, dim)
            keys, values = rows.store(self.keys[index], self.values[index], rotated[:, heads:],
                                      qkv[:, heads + kv_heads:])
            attended = F.scaled_dot_product_attention(query, keys, values, attn_mask=mask, scale=self.scale)
            x = step["output"].added(attended.reshape(running, heads * dim), x)
            gate, up = step["gate_up"](self._norm(x, layer.feedforward_norm)).chunk(2, -1)
            x = step["down"].added(F.silu(gate) * up, x)
        self._end_step(slots)
        return self.step_output(self._norm(x, self.norm))  # (running, vocab)
