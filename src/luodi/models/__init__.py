"""Models, built by their task and architecture.

The task names the model's shape (`task.model`, a key of MODEL_SHAPES) and its output size; the config's
`model.type` names the architecture. The shape every table, image and text task uses today is the combiner
(models/mlp.py): an MLP over the table's dense and category inputs plus one feature encoder per tensor feature (an
image, a numeric sequence, a text as tokens), returning (batch, output_size). text_generation's shape is
`language_model` (models/language.py): logits per token (batch, time, vocab), from model.type gpt, rnn or hf.

`model.type` names the architecture of the feature encoders: `FEATURE_ENCODERS[type][modality]` builds the module
for a feature of that modality. A builder is called as `builder(model_config, fitted_preprocessing_encoder)` and
returns an nn.Module with an integer `output_size` whose forward takes the whole batch dict and returns
(batch, output_size).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from luodi.errors import InputError
from luodi.models.cnn import CNN_BUILDERS, RESNET_BUILDERS
from luodi.models.hf import build_hf
from luodi.models.language import build_language_model
from luodi.models.mlp import MLP, Combine
from luodi.models.rnn import build_rnn
from luodi.models.transformer import build_transformer

FeatureEncoderBuilder = Callable[[Any, Any], nn.Module]
FEATURE_ENCODERS: dict[str, dict[str, FeatureEncoderBuilder]] = {
    "mlp": {}, "cnn": CNN_BUILDERS, "resnet": RESNET_BUILDERS,
    "rnn": {"tokens": build_rnn, "sequence": build_rnn},
    "transformer": {"tokens": build_transformer, "sequence": build_transformer},
    "hf": {"tokens": build_hf},
}


def supported(modality: str) -> list[str]:
    """The model types that can encode a feature of this modality."""
    return sorted(name for name, builders in FEATURE_ENCODERS.items() if modality in builders)


def build_model(config: Any, pipeline: Any) -> nn.Module:
    """The model of the config's task (its shape and output size) and `model.type`, sized from the fitted pipeline."""
    task = config.task()
    return MODEL_SHAPES[task.model](config, pipeline, task.output_size(pipeline.target))


def build_combiner(config: Any, pipeline: Any, output_size: int) -> nn.Module:
    """The combiner MLP over the pipeline's dense and category inputs and one feature encoder per tensor feature."""
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
    task = config.task()  # an ensemble's members are combined as the task activates logits: mean probability
    combine: Combine = ("sigmoid" if getattr(task, "binary", False) else "softmax") if task.classes else "mean"
    return MLP(config.model, pipeline.dense_width(), pipeline.categories(), output_size, encoders, combine,
               pipeline.numeric_columns())


ModelBuilder = Callable[[Any, Any, int], nn.Module]  # (config, fitted pipeline, output size) -> model
MODEL_SHAPES: dict[str, ModelBuilder] = {"combiner": build_combiner, "language_model": build_language_model}
# The keys of `model` each shape reads besides `type`, `path` and the section of its `model.type` (the report shows
# only these): the combiner's MLP reads its sizes and its `mlp` section (the ensemble); a language model is
# model.type's section alone.
MLP_SETTINGS = ("hidden_sizes", "activation", "dropout", "normalization", "mlp")
SHAPE_SETTINGS: dict[str, tuple[str, ...]] = {"combiner": MLP_SETTINGS, "language_model": ()}


def load_pretrained(model: nn.Module) -> None:
    """Copy pretrained weights into the modules that start from a checkpoint (an hf feature encoder, or the whole
    model: an hf causal LM). A new or resumed run calls this before training (a resumed run's checkpoint then loads
    over it); a package loads its own weights."""
    for module in model.modules():
        load = getattr(module, "load_pretrained", None)
        if callable(load):
            load()
