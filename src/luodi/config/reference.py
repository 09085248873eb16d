"""The config reference (docs/config.md), generated from the schema's field descriptions."""

from __future__ import annotations

from pydantic import BaseModel

from luodi.config.schema import (
    AugmentConfig,
    BinaryFeature,
    CategoryFeature,
    CNNConfig,
    DataConfig,
    EarlyStoppingConfig,
    HFConfig,
    ImageFeature,
    LuodiConfig,
    ModelConfig,
    NumericFeature,
    OptimizerConfig,
    ReportConfig,
    ResNetConfig,
    RNNConfig,
    RuntimeConfig,
    SchedulerConfig,
    SequenceFeature,
    SplitConfig,
    TargetConfig,
    TextFeature,
    TrainerConfig,
    TransformerConfig,
)


def reference_markdown() -> str:
    """The config reference, generated from the field descriptions (docs/config.md)."""
    sections: list[tuple[str, type[BaseModel]]] = [
        ("top level", LuodiConfig), ("data", DataConfig), ("data.split", SplitConfig),
        ("target", TargetConfig), ("input_features[] (type: numeric)", NumericFeature),
        ("input_features[] (type: category)", CategoryFeature), ("input_features[] (type: binary)", BinaryFeature),
        ("input_features[] (type: text)", TextFeature), ("input_features[] (type: image)", ImageFeature),
        ("input_features[] (type: image).augment", AugmentConfig),
        ("input_features[] (type: sequence)", SequenceFeature), ("model", ModelConfig),
        ("model.cnn", CNNConfig), ("model.resnet", ResNetConfig), ("model.rnn", RNNConfig),
        ("model.transformer", TransformerConfig), ("model.hf", HFConfig), ("trainer", TrainerConfig),
        ("trainer.optimizer", OptimizerConfig), ("trainer.scheduler", SchedulerConfig),
        ("trainer.early_stopping", EarlyStoppingConfig), ("runtime", RuntimeConfig), ("report", ReportConfig),
    ]
    out = ["# Config reference", "", "Generated from `src/luodi/config/schema.py` by `python -m luodi.config`; "
           "a test keeps this file in sync.", ""]
    for title, model in sections:
        out += [f"## `{title}`", ""]
        if model.__doc__:
            out += [model.__doc__.strip().splitlines()[0], ""]
        out += ["| key | default | description |", "|---|---|---|"]
        for name, field in model.model_fields.items():
            if field.is_required():
                default = "required"
            elif field.default_factory is not None:
                produced = field.default_factory()  # type: ignore[call-arg]
                default = "(section)" if isinstance(produced, BaseModel) else f"`{produced}`"
            else:
                default = f"`{field.default}`"
            out.append(f"| `{name}` | {default} | {field.description or ''} |")
        out.append("")
    return "\n".join(out)
