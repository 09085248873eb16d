"""Tiny random-initialized Hugging Face causal LMs saved to a local folder, with a BPE tokenizer that has a chat
template: the checkpoints `model.type: hf` tests fine-tune, serve and generate from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from luodi.tasks.generation import train_bpe

CHAT_TEMPLATE = ("{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|endoftext|>"
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
PAIRS = [("2+2", "four"), ("3+3", "six"), ("1+1", "two"), ("4+4", "eight"), ("5+5", "ten")]


def write_checkpoint(folder: Path, architecture: str = "llama", **settings: Any) -> Path:
    """A 2-layer, width-32 model of `architecture` (llama, mistral, qwen2, gpt_neox) and its tokenizer in `folder`;
    `settings` override the config (num_attention_heads, num_key_value_heads, sliding_window, ...)."""
    from transformers import (
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    config_class, model_class = {"llama": (LlamaConfig, LlamaForCausalLM),
                                 "mistral": (MistralConfig, MistralForCausalLM),
                                 "qwen2": (Qwen2Config, Qwen2ForCausalLM),
                                 "gpt_neox": (GPTNeoXConfig, GPTNeoXForCausalLM)}[architecture]
    texts = [f"what is {q}? it is {a}." for q, a in PAIRS] * 20
    tokenizer = train_bpe(texts, 300)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = config_class(**{"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
                             "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
                             "max_position_embeddings": 128, "tie_word_embeddings": True,
                             "eos_token_id": tokenizer.eos_token_id, "bos_token_id": tokenizer.eos_token_id,
                             "pad_token_id": tokenizer.pad_token_id, **settings})
    model_class(config).save_pretrained(str(folder))
    return folder
