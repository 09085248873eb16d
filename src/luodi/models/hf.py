"""model.type hf: a Hugging Face encoder (AutoModel) from a local checkpoint folder, frozen or fine-tuned.

The architecture is built from the checkpoint's config.json with empty weights (the config is kept in the text
feature's assets, so a package needs no original folder); `load_pretrained` then copies the checkpoint's weights
in when training starts, and a package's own weights.safetensors loads over it otherwise. Lower layers can be
frozen and learning rates can decay layer by layer (`lr_multipliers`, read by the optimizer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from luodi import checkpoints as hf_checkpoint
from luodi.config import HFConfig, ModelConfig
from luodi.errors import InputError
from luodi.models.steps import masked_mean, trim


def layer_list(backbone: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks: the ModuleList holding most parameters (encoder.layer in BERT, h in GPT-2)."""
    lists = [module for module in backbone.modules() if isinstance(module, nn.ModuleList) and len(module)]
    if not lists:
        raise InputError(f"{type(backbone).__name__}: no list of layers found; model.hf.freeze and layer_lr_decay "
                         "need one")
    return max(lists, key=lambda module: sum(p.numel() for p in module.parameters()))


def depths(backbone: nn.Module) -> dict[int, int]:
    """Depth per parameter id: 0 below the layers (embeddings), i for layer i (1-based), L+1 above (final norm,
    pooler). Parameters come in registration order, so 'below' is whatever precedes the first layer."""
    layers = layer_list(backbone)
    inside = {id(p): index + 1 for index, layer in enumerate(layers) for p in layer.parameters()}
    found: dict[int, int] = {}
    seen_layers = False
    for parameter in backbone.parameters():
        if id(parameter) in inside:
            found[id(parameter)] = inside[id(parameter)]
            seen_layers = True
        else:
            found[id(parameter)] = len(layers) + 1 if seen_layers else 0
    return found


class HFEncoder(nn.Module):
    """batch -> (batch, hidden_size): the checkpoint's token states pooled (mean over the mask, or the first)."""

    def __init__(self, model_config: ModelConfig, encoder: Any):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        settings: HFConfig = model_config.hf
        folder: Path = encoder.checkpoint_dir
        if folder is None:
            raise InputError(f"feature {encoder.name!r}: model.type hf needs tokenizer: checkpoint")
        raw = hf_checkpoint.read_model_config(folder)
        hf_checkpoint.check_remote_code(raw, folder, settings.trust_remote_code)
        self.feature = encoder.name
        self.source = model_config.path  # the original folder: pretrained weights for a new run
        self.trust_remote_code = settings.trust_remote_code
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True,
                                            trust_remote_code=settings.trust_remote_code)
        if encoder.vocab_size > getattr(config, "vocab_size", encoder.vocab_size):
            raise InputError(f"{folder}: the tokenizer has {encoder.vocab_size} tokens, the model only "
                             f"{config.vocab_size} embeddings")
        from transformers.initialization import no_init_weights

        with no_init_weights():  # random initialization of 22M parameters costs ~0.3 s; the weights load next
            self.backbone = AutoModel.from_config(config, trust_remote_code=settings.trust_remote_code)
        self.pooling = settings.pooling
        self.freeze = settings.freeze
        self.layer_lr_decay = settings.layer_lr_decay
        self.output_size = int(config.hidden_size)
        self._apply_freeze()

    @property
    def embedding(self) -> nn.Module:
        """The token embedding: explanations attribute over its outputs."""
        return self.backbone.get_input_embeddings()

    def _apply_freeze(self) -> None:
        if self.freeze == 0:
            return
        if self.freeze == "all":
            self.backbone.requires_grad_(False)
            return
        levels = depths(self.backbone)
        layers = len(layer_list(self.backbone))
        if self.freeze > layers:
            raise InputError(f"model.hf.freeze {self.freeze}: the checkpoint has {layers} layers")
        for parameter in self.backbone.parameters():
            if levels[id(parameter)] <= self.freeze:
                parameter.requires_grad_(False)

    def load_pretrained(self) -> None:
        """Copy the checkpoint's weights into the backbone (a new run starts from them)."""
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # its per-tensor bar would interleave with luodi's own progress
        assert self.source is not None
        folder = hf_checkpoint.checkpoint_folder(self.source)
        hf_checkpoint.check_model_files(folder)
        try:
            pretrained = AutoModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                                   trust_remote_code=self.trust_remote_code)
        except (OSError, ValueError) as error:
            raise InputError(f"{folder}: cannot load the checkpoint: {str(error).splitlines()[0]}") from None
        self.backbone.load_state_dict(pretrained.state_dict())

    def lr_multipliers(self) -> list[tuple[nn.Parameter, float]]:
        """Layer-wise learning-rate decay below the new layers (combiner and head, at lr): the top layer trains at
        lr x decay, each layer below one more factor, the embeddings one below the lowest layer; anything above
        the layers (final norm, pooler) at lr."""
        if self.layer_lr_decay == 1.0:
            return []
        levels = depths(self.backbone)
        layers = len(layer_list(self.backbone))
        return [(parameter, self.layer_lr_decay ** max(0, layers + 1 - levels[id(parameter)]))
                for parameter in self.backbone.parameters()]

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, mask = trim(batch, self.feature)  # (batch, time)
        hidden = self.backbone(input_ids=ids, attention_mask=mask.long()).last_hidden_state  # (batch, time, hidden)
        return hidden[:, 0] if self.pooling == "cls" else masked_mean(hidden, mask)


def build_hf(config: ModelConfig, encoder: Any) -> nn.Module:
    return HFEncoder(config, encoder)
