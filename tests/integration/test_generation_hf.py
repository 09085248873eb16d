"""text_generation with model.type hf: a tiny random-initialized Llama saved to a local folder (2 layers, width 32,
a BPE tokenizer with a chat template) is fine-tuned with LoRA and fully, packaged, loaded and generates the tokens
Hugging Face's own `generate` gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import luodi.api as api
from llama_helpers import CHAT_TEMPLATE, PAIRS, write_checkpoint
from luodi.package import load_package


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("tiny-llama"))


def write_chat(path: Path) -> Path:
    import json

    rows = [{"messages": [{"role": "user", "content": f"what is {q}?"}, {"role": "assistant", "content": a}]}
            for q, a in PAIRS * 8]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return path


def config(data: Path, checkpoint: Path, lora: bool) -> dict[str, Any]:
    return {"name": "tiny-chat", "data": {"train": str(data), "split": {"validation": 0.2, "test": 0.2}},
            "target": {"name": "messages", "task": "text_generation", "text": {"context_length": 32}},
            "model": {"type": "hf", "path": str(checkpoint), "hf": {"lora": {"enabled": lora, "rank": 4}}},
            "trainer": {"epochs": 2, "batch_size": 8, "optimizer": {"lr": 0.01}},
            "runtime": {"device": "cpu", "threads": 1}}


def hf_greedy(model: Any, prompt: list[int], tokens: int, eos: int) -> list[int]:
    """Hugging Face's greedy `generate`, up to (not including) the end-of-text token."""
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=tokens, do_sample=False, eos_token_id=eos,
                             pad_token_id=eos)[0, len(prompt):].tolist()
    return out[:out.index(eos)] if eos in out else out  # type: ignore[no-any-return]


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_a_local_causal_lm_fine_tunes_packages_and_generates_as_hf_does(
        checkpoint: Path, tmp_path: Path, lora: bool) -> None:
    from luodi.models.generation import Sampling, generate_tokens

    data = write_chat(tmp_path / "chat.jsonl")
    trained = api.train(config(data, checkpoint, lora), home=tmp_path / "home", progress="silent")
    assert trained.package is not None and "perplexity" in trained.metrics
    package = load_package(trained.package)
    target = package.pipeline.target
    assert target.format == "chat" and target.tokenizer.chat_template == CHAT_TEMPLATE  # the package keeps it
    original = load_file(str(checkpoint / "model.safetensors"))
    if lora:  # the adapters trained, and the package holds only them (test_adapters.py: the base reference)
        weights = load_file(str(Path(trained.package) / "adapter" / "adapter_model.safetensors"))
        assert weights and all("lora_" in name for name in weights)
        assert any(float(weights[name].abs().sum()) > 0 for name in weights if "lora_B" in name)
    else:
        weights = load_file(str(Path(trained.package) / "weights.safetensors"))
        assert not [name for name in weights if "lora_" in name]
        name = "model.layers.0.self_attn.q_proj.weight"
        assert not torch.equal(weights[f"backbone.{name}"], original[name])

    prompt = target.prompt_ids("what is 2+2?")
    assert target.tokenizer.decode(prompt).endswith("what is 2+2?<|endoftext|><|assistant|>\n")
    ours = list(generate_tokens(package.model, prompt, Sampling(max_tokens=12), eos_id=target.eos_id))
    assert ours == hf_greedy(package.model.backbone, prompt, 12, target.eos_id)
    text = "".join(package.generate("what is 2+2?", Sampling(max_tokens=8)))
    assert isinstance(text, str)


def test_the_report_generates_from_each_conversation_s_first_user_message(checkpoint: Path, tmp_path: Path) -> None:
    data = write_chat(tmp_path / "chat.jsonl")
    trained = api.train(config(data, checkpoint, True), home=tmp_path / "home", progress="silent")
    evaluated = api.evaluate(trained.package, data, home=tmp_path / "home")
    prompts = [item["prompt"] for item in evaluated["details"]["generation"]["samples"]]
    assert prompts == [f"what is {q}?" for q, _ in PAIRS[:3]]
