"""Language models for text_generation: the `language_model` model shape, one builder per model.type.

    gpt   models/gpt.py: a decoder-only Transformer from scratch
    rnn   `RecurrentLM`: an embedding, a GRU (or LSTM, model.rnn.cell) and an output layer
    hf    `CausalLM`: a local Hugging Face causal LM (AutoModelForCausalLM), fully fine-tuned or with LoRA
          adapters (PEFT, model.hf.lora); with LoRA a package keeps only the adapters (`adapter`) and loads the
          base checkpoint's weights from its folder (`load_pretrained(folder)`, then `load_adapter`)

Every one reads `batch["tokens"]` (batch, time) and returns logits (batch, time, vocab), and has
`decode(ids, cache) -> (logits of the new positions, cache)` and `context_length`: what generation
(models/generation.py) steps through. The vocabulary and context come from the task's fitted target (its tokenizer
and target.text.context_length).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from luodi import checkpoints as hf_checkpoint
from luodi.config import ModelConfig
from luodi.errors import InputError
from luodi.models.gpt import GPT


class RecurrentLM(nn.Module):
    """Token ids (batch, time) -> logits (batch, time, vocab) through a GRU or LSTM; its cache is the state."""

    def __init__(self, config: ModelConfig, vocab_size: int, context_length: int):
        super().__init__()
        settings = config.rnn
        if settings.bidirectional:
            raise InputError("model.rnn.bidirectional: a language model reads left to right only")
        self.context_length = context_length
        self.embedding = nn.Embedding(vocab_size, settings.embedding_dim)
        recurrent = nn.GRU if settings.cell == "gru" else nn.LSTM
        self.recurrent = recurrent(settings.embedding_dim, settings.hidden_size, settings.layers, batch_first=True,
                                   dropout=settings.dropout if settings.layers > 1 else 0.0)
        self.dropout = nn.Dropout(settings.dropout)
        self.output = nn.Linear(settings.hidden_size, vocab_size)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.decode(batch["tokens"], None)[0]

    def decode(self, ids: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        states, cache = self.recurrent(self.dropout(self.embedding(ids)), cache)  # (batch, time, hidden)
        return self.output(self.dropout(states)), cache


@dataclass
class Adapter:
    """What a package keeps of a LoRA model: PEFT's adapter tensors and config, and the base checkpoint's folder."""

    tensors: dict[str, torch.Tensor]  # PEFT's names (`get_peft_model_state_dict`), as adapter_model.safetensors
    config: Any  # peft.LoraConfig, as adapter_config.json
    base: Path  # the checkpoint the adapters were trained on (resolved)


class CausalLM(nn.Module):
    """A Hugging Face causal LM built from the checkpoint's config.json (kept with the tokenizer); `load_pretrained`
    copies the checkpoint's weights in. A fully fine-tuned package holds every weight and needs no original folder;
    with LoRA the checkpoint's weights stay frozen, the package holds only the adapters and names its base."""

    def __init__(self, config: ModelConfig, target: Any):
        super().__init__()
        from transformers import AutoConfig, AutoModelForCausalLM

        settings = config.hf
        folder: Path | None = target.checkpoint_dir
        if folder is None:
            raise InputError("model.type hf: the target has no checkpoint tokenizer (target.text.tokenizer: "
                             "checkpoint)")
        raw = hf_checkpoint.read_model_config(folder)
        hf_checkpoint.check_remote_code(raw, folder, settings.trust_remote_code)
        self.source, self.trust_remote_code = config.path, settings.trust_remote_code
        model_config = AutoConfig.from_pretrained(str(folder), local_files_only=True,
                                                  trust_remote_code=settings.trust_remote_code)
        self.context_length = min(target.context_length,
                                  int(getattr(model_config, "max_position_embeddings", None) or 1 << 30))
        if target.vocab_size > getattr(model_config, "vocab_size", target.vocab_size):
            raise InputError(f"{folder}: the tokenizer has {target.vocab_size} tokens, the model only "
                             f"{model_config.vocab_size} embeddings")
        # Initialized normally, though the weights load next: transformers 5 fills computed buffers (rotary
        # frequencies) in its weight initialization, which no_init_weights would leave as garbage.
        backbone = AutoModelForCausalLM.from_config(model_config, trust_remote_code=settings.trust_remote_code)
        # transformers 5.25 renamed `past_key_values` to `cache` (argument and output); older 5.x know the first.
        import inspect

        self.cache_name = "cache" if "cache" in inspect.signature(type(backbone).forward).parameters \
            else "past_key_values"
        self.lora = settings.lora.enabled
        if self.lora:
            import warnings

            from peft import LoraConfig, get_peft_model

            lora = settings.lora
            with warnings.catch_warnings():  # PEFT asks transformers 5 for a renamed attribute: not ours to fix
                warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
                backbone = get_peft_model(backbone, LoraConfig(
                    r=lora.rank, lora_alpha=lora.alpha,  # type: ignore[arg-type]  # PEFT multiplies by it
                    lora_dropout=lora.dropout, target_modules=lora.target_modules, task_type="CAUSAL_LM"))
        self.backbone = backbone

    def load_pretrained(self, folder: Path | None = None) -> None:
        """Copy the checkpoint's weights (of `folder`, default model.path) into the model (under LoRA: into the
        frozen base layers)."""
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        assert folder is not None or self.source is not None
        folder = hf_checkpoint.checkpoint_folder(folder or self.source)  # type: ignore[arg-type]
        hf_checkpoint.check_model_files(folder)
        try:
            pretrained = AutoModelForCausalLM.from_pretrained(
                str(folder), local_files_only=True, use_safetensors=True,
                trust_remote_code=self.trust_remote_code).state_dict()
        except (OSError, ValueError) as error:
            raise InputError(f"{folder}: cannot load the checkpoint: {str(error).splitlines()[0]}") from None
        base = self.backbone.get_base_model() if self.lora else self.backbone
        own = [name for name in base.state_dict() if "lora_" not in name]
        # LoRA wraps each adapted layer: its weight `q_proj.weight` is now `q_proj.base_layer.weight`.
        mapped = {name: pretrained[name.replace(".base_layer", "")] for name in own
                  if name.replace(".base_layer", "") in pretrained}
        missing = sorted(set(own) - set(mapped))
        if missing:
            raise InputError(f"{folder}: the checkpoint lacks {missing[:3]}")
        base.load_state_dict(mapped, strict=False)

    def adapter(self) -> Adapter | None:
        """Under LoRA, the adapters a package keeps instead of the whole model; None for a full fine-tune."""
        if not self.lora:
            return None
        import copy

        from peft.utils import get_peft_model_state_dict

        assert self.source is not None
        base = Path(self.source).resolve()  # checked when a package is saved; loading reads only the names
        tensors = get_peft_model_state_dict(self.backbone, save_embedding_layers=False)
        config = copy.copy(self.backbone.peft_config["default"])
        config.base_model_name_or_path = str(base)
        return Adapter({name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}, config, base)

    def load_adapter(self, tensors: dict[str, torch.Tensor]) -> None:
        """Adapter tensors of `adapter()` (names checked by the caller) into the LoRA layers."""
        from peft.utils import set_peft_model_state_dict

        set_peft_model_state_dict(self.backbone, tensors)

    @contextmanager
    def pretrained(self) -> Iterator[nn.Module]:
        """The model before fine-tuning, for comparisons: under LoRA this model with its adapters switched off;
        after a full fine-tune a copy holding the checkpoint's weights again (an InputError when its folder is
        gone)."""
        if self.lora:
            with self.backbone.disable_adapter():
                yield self
            return
        import copy

        assert self.source is not None
        hf_checkpoint.check_model_files(hf_checkpoint.checkpoint_folder(self.source))  # before copying the model
        base = copy.deepcopy(self)
        base.load_pretrained()
        yield base.eval()

    def merge(self) -> None:
        """Fold the adapters into the base weights (PEFT's `merge_and_unload`): the model becomes a plain one,
        packaged whole like a full fine-tune."""
        if self.lora:
            self.backbone = self.backbone.merge_and_unload()
            self.lora = False

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits: torch.Tensor = self.backbone(input_ids=batch["tokens"], use_cache=False).logits
        return logits

    def decode(self, ids: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        output = self.backbone(input_ids=ids, use_cache=True, **{self.cache_name: cache})
        return output.logits, output[self.cache_name]


LanguageModelBuilder = Callable[[ModelConfig, Any], nn.Module]  # (model config, fitted target) -> model
LANGUAGE_MODELS: dict[str, LanguageModelBuilder] = {
    "gpt": lambda config, target: GPT(config.gpt, target.vocab_size, target.context_length),
    "rnn": lambda config, target: RecurrentLM(config, target.vocab_size, target.context_length),
    "hf": CausalLM,
}


def build_language_model(config: Any, pipeline: Any, output_size: int) -> nn.Module:
    """The `language_model` shape: model.type's language model over the target's vocabulary and context."""
    builder = LANGUAGE_MODELS.get(config.model.type)
    if builder is None:
        raise InputError(f"model.type {config.model.type!r} is not a language model; use one of "
                         f"{sorted(LANGUAGE_MODELS)}")
    return builder(config.model, pipeline.target)
