"""luodi's own Llama-family decode step (serve/llama_slots.py): its logits equal Hugging Face's forward for Llama,
grouped-query attention, Qwen2's q/k/v bias and scaled rotary embeddings, at batch 1 and at batches of sequences at
different lengths; the served engine's greedy tokens equal HF `generate()`'s; models it does not cover fall back to
HF's forward (or to per-sequence steps) and say so."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import torch

from llama_helpers import write_checkpoint
from luodi.models.generation import Sampling
from luodi.models.language import CausalLM
from luodi.serve.generation import HF_STEP, LUODI_STEP, PER_SEQUENCE, Scheduler
from luodi.serve.llama_slots import LlamaSlots, StepLinear, unsupported
from unit.test_serve_generation import causal_lm, generate_all, metrics

CONFIGS = {
    "llama": ("llama", {}),
    "llama-gqa": ("llama", {"num_attention_heads": 4, "num_key_value_heads": 2}),
    "qwen2-bias": ("qwen2", {"num_attention_heads": 4, "num_key_value_heads": 1}),
    "llama-rope-scaled": ("llama", {"rope_theta": 500.0,
                                    "rope_scaling": {"rope_type": "linear", "factor": 2.0}}),
    "mistral-head-dim": ("mistral", {"num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                                     "sliding_window": None}),
}


def model_of(folder: Path, name: str) -> CausalLM:
    architecture, settings = CONFIGS[name]
    model = causal_lm(write_checkpoint(folder, architecture, **settings))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # random init leaves biases at zero: make Qwen2's q/k/v bias count
        for parameter_name, parameter in model.named_parameters():
            if parameter_name.endswith(".bias"):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return model


def alone(model: CausalLM, prompt: list[int], tokens: list[int]) -> list[torch.Tensor]:
    """HF's forward with its own cache, one sequence: the prompt's last logits, then one row per fed token."""
    logits, cache = model.decode(torch.tensor([prompt]), None)
    rows = [logits[0, -1]]
    for token in tokens:
        logits, cache = model.decode(torch.tensor([[token]]), cache)
        rows.append(logits[0, -1])
    return rows


@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_step_gives_hf_forward_logits_at_batch_1_and_at_mixed_lengths(tmp_path: Path, name: str) -> None:
    model = model_of(tmp_path, name)
    assert unsupported(model) is None
    prompts = [[5, 9, 2], [7] * 11, [3, 1, 4, 1, 5, 9]]
    fed = [[11, 12, 13, 14], [21, 22, 23, 24], [31, 32, 33, 34]]
    expected = [alone(model, prompt, tokens) for prompt, tokens in zip(prompts, fed, strict=True)]
    with torch.inference_mode():
        single = LlamaSlots(model, 1)  # batch 1: every step at one length (no mask, slice writes)
        got = [single.prefill([0], prompts[:1])[0]] + [single.step([0], [token])[0] for token in fed[0]]
        torch.testing.assert_close(torch.stack(got), torch.stack(expected[0]), rtol=1e-5, atol=1e-5)
        slots = LlamaSlots(model, 5)
        where = [4, 0, 2]  # not contiguous: index writes and gathered keys
        rows = [slots.prefill(where, prompts)]
        for step in range(len(fed[0])):
            rows.append(slots.step(where, [tokens[step] for tokens in fed]))
    for row, sequence in enumerate(expected):
        torch.testing.assert_close(torch.stack([step[row] for step in rows]), torch.stack(sequence),
                                   rtol=1e-5, atol=1e-5)


def test_prompts_of_one_length_step_unmasked_and_match_hf(tmp_path: Path) -> None:
    model = model_of(tmp_path, "llama-gqa")
    prompts, fed = [[1, 2, 3, 4], [5, 6, 7, 8]], [[9, 10, 11], [12, 13, 14]]
    expected = [alone(model, prompt, tokens) for prompt, tokens in zip(prompts, fed, strict=True)]
    with torch.inference_mode():
        slots = LlamaSlots(model, 2)
        rows = [slots.prefill([0, 1], prompts)] + [slots.step([0, 1], [fed[0][i], fed[1][i]]) for i in range(3)]
    for row, sequence in enumerate(expected):
        torch.testing.assert_close(torch.stack([step[row] for step in rows]), torch.stack(sequence),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["llama-gqa", "qwen2-bias"])
def test_the_served_engine_runs_the_step_and_its_greedy_tokens_equal_hf_generate(tmp_path: Path,
                                                                                 name: str) -> None:
    model = model_of(tmp_path, name)
    prompts = [[1, 2, 3], [4], [5, 6, 7, 8, 9, 10, 11], [12, 13], [7] * 20]
    expected = []
    for prompt in prompts:
        ids = torch.tensor([prompt])
        generated = model.backbone.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=10,
                                            min_new_tokens=10, do_sample=False, pad_token_id=0)
        expected.append(generated[0, len(prompt):].tolist())
    scheduler = Scheduler(model, None, max_running=3, max_waiting=8, metrics=metrics())  # 5 sequences, 3 slots
    assert asyncio.run(generate_all(scheduler, prompts, Sampling(max_tokens=10))) == expected
    assert scheduler.decoder == LUODI_STEP and isinstance(scheduler.slots, LlamaSlots)
    # The model's q/k/v and gate/up weights are now views into the fused ones: HF's forward reads the same numbers.
    attention = model.backbone.model.layers[0].self_attn
    assert attention.k_proj.weight.untyped_storage().data_ptr() == \
        scheduler.slots.layers[0].qkv.untyped_storage().data_ptr()
    ids = torch.tensor([prompts[0]])
    again = model.backbone.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, min_new_tokens=10,
                                    do_sample=False, pad_token_id=0)
    assert again[0, 3:].tolist() == expected[0]


def lora(folder: Path) -> CausalLM:
    from types import SimpleNamespace

    from luodi.config import ModelConfig

    write_checkpoint(folder)
    target = SimpleNamespace(checkpoint_dir=folder, context_length=64, vocab_size=100)
    model = CausalLM(ModelConfig(type="hf", path=str(folder), hf={"lora": {"enabled": True, "rank": 2}}), target)
    model.load_pretrained()
    return model.eval()


def int8(folder: Path) -> CausalLM:
    from luodi.models.int8 import Int8Linear

    model = causal_lm(write_checkpoint(folder))
    for layer in model.backbone.model.layers:
        layer.mlp.down_proj = Int8Linear.from_linear(layer.mlp.down_proj)
    return model


@pytest.mark.parametrize(("build", "reason", "decoder"), [
    (lambda folder: causal_lm(write_checkpoint(folder, "gpt_neox")), "GPTNeoXForCausalLM is not one of", HF_STEP),
    (lora, "LoRA adapters are not merged", HF_STEP),
    (int8, "down_proj is a Int8Linear, not nn.Linear", HF_STEP),
    (lambda folder: causal_lm(write_checkpoint(folder, rope_scaling={"rope_type": "dynamic", "factor": 2.0})),
     "rope type 'dynamic'", HF_STEP),
    (lambda folder: causal_lm(write_checkpoint(folder, "mistral", sliding_window=4)),
     "sliding-window attention (4 positions)", PER_SEQUENCE),
], ids=["gpt-neox", "lora", "int8", "rope-dynamic", "mistral-window"])
def test_models_the_step_does_not_cover_fall_back_and_say_why(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, build: Any, reason: str, decoder: str) -> None:
    model = build(tmp_path)
    assert reason in (unsupported(model) or "")
    prompts = [[1, 2, 3], [4, 5]]
    sampling = Sampling(max_tokens=4)
    expected = []
    for prompt in prompts:
        logits, cache = model.decode(torch.tensor([prompt]), None)
        tokens = []
        for _ in range(4):
            tokens.append(int(logits[0, -1].argmax()))
            logits, cache = model.decode(torch.tensor([[tokens[-1]]]), cache)
        expected.append(tokens)
    scheduler = Scheduler(model, None, max_running=2, max_waiting=4, metrics=metrics())
    with caplog.at_level("INFO", logger="luodi.serve"):
        assert asyncio.run(generate_all(scheduler, prompts, sampling)) == expected
    assert scheduler.decoder == decoder
    assert "luodi's Llama step does not apply" in caplog.text and reason in caplog.text


@pytest.mark.parametrize("bias", [False, True])
def test_the_steps_reordered_linear_equals_f_linear_and_adds_the_residual(bias: bool) -> None:
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(96, 40, generator=generator) * 0.1
    offset = torch.randn(96, generator=generator) if bias else None
    linear = StepLinear(weight, offset, 8)
    assert linear.reordered == torch.backends.mkldnn.is_available()  # a float32 CPU weight
    for rows in (1, 8, 3):  # the batch it was reordered for, and others
        x, residual = torch.randn(rows, 40, generator=generator), torch.randn(rows, 96, generator=generator)
        with torch.inference_mode():
            expected = torch.nn.functional.linear(x, weight, offset)
            torch.testing.assert_close(linear(x), expected, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(linear.added(x, residual), residual + expected, rtol=1e-5, atol=1e-5)


def test_weights_onednn_cannot_take_stay_plain() -> None:
    for weight in (torch.randn(8, 4, dtype=torch.float64), torch.randn(8, 4, dtype=torch.bfloat16)):
        linear = StepLinear(weight, None, 8)
        assert not linear.reordered and linear.weight is weight
        x = torch.randn(2, 4, dtype=weight.dtype)
        torch.testing.assert_close(linear(x), torch.nn.functional.linear(x, weight))


def test_without_room_for_a_second_copy_the_step_keeps_plain_weights(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from luodi.serve import llama_slots

    model = model_of(tmp_path, "llama")
    monkeypatch.setattr(llama_slots, "available_memory", lambda: 1000)  # bytes: less than twice the weights
    slots = LlamaSlots(model, 2)
    assert not slots.reordered and not slots.step_output.reordered
    assert not any(linear.reordered for layer in slots.layers for linear in layer.step.values())
    prompt = [5, 9, 2]
    expected = alone(model, prompt, [4])
    got = [slots.prefill([0], [prompt])[0], slots.step([0], [4])[0]]
    torch.testing.assert_close(torch.stack(got), torch.stack(expected), rtol=1e-5, atol=1e-5)
