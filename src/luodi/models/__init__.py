"""Architectures by name: one small table of builder functions (later issues add cnn, rnn, transformer, hf)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from luodi.models.mlp import MLP

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"mlp": MLP}


def build_model(config: Any, pipeline: Any) -> nn.Module:
    """The architecture named in `config.model.type`, sized from the fitted feature pipeline."""
    builder = ARCHITECTURES[config.model.type]
    return builder(config.model, pipeline.dense_width(), pipeline.categories(), pipeline.target.output_size())
