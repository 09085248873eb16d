"""Architectures by name.

Every model is the combiner MLP (models/mlp.py) over the table's dense and category inputs plus one feature
encoder per tensor feature (an image, a numeric sequence, a text as tokens). `model.type` names the architecture
of those feature encoders: `FEATURE_ENCODERS[type][modality]` builds the module for a feature of that modality.
A builder is called as `builder(model_config, fitted_preprocessing_encoder)` and returns an nn.Module with an
integer `output_size` whose forward takes the whole batch dict and returns (batch, output_size).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from luodi.errors import InputError
from luodi.models.cnn import CNN_BUILDERS, RESNET_BUILDERS
from luodi.models.mlp import MLP

FeatureEncoderBuilder = Callable[[Any, Any], nn.Module]
FEATURE_ENCODERS: dict[str, dict[str, FeatureEncoderBuilder]] = {
    "mlp": {}, "cnn": CNN_BUILDERS, "resnet": RESNET_BUILDERS,
}


def supported(modality: str) -> list[str]:
    """The model types that can encode a feature of this modality."""
    return sorted(name for name, builders in FEATURE_ENCODERS.items() if modality in builders)


def build_model(config: Any, pipeline: Any) -> nn.Module:
    """The architecture named in `config.model.type`, sized from the fitted feature pipeline."""
    kind = config.model.type
    builders = FEATURE_ENCODERS.get(kind, {})
    encoders = []
    for encoder in pipeline.tensor_encoders():
        builder = builders.get(encoder.modality)
        if builder is None:
            choices = supported(encoder.modality)
            raise InputError(f"model.type {kind!r} cannot read feature {encoder.name!r} ({encoder.modality}); "
                             f"use one of {choices}" if choices else
                             f"no architecture reads {encoder.modality} features yet (feature {encoder.name!r})")
        encoders.append(builder(config.model, encoder))
    if kind != "mlp" and not encoders:
        raise InputError(f"model.type {kind!r} needs an input feature it can read "
                         f"({', '.join(sorted(builders)) or 'none registered'}); for tables alone use model.type mlp")
    return MLP(config.model, pipeline.dense_width(), pipeline.categories(), pipeline.target.output_size(), encoders)
