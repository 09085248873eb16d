"""The whole config as typed pydantic models: YAML in, `--set` overrides, one validation, typed object out.

`schema.py` holds the models (every one forbids unknown keys; errors name the dotted key path), `loading.py`
reads and validates a file, `reference.py` generates docs/config.md from the field descriptions
(`python -m luodi.config` prints it). Everything is importable from `luodi.config`.
"""

from luodi.config.loading import (
    apply_overrides,
    format_validation_error,
    load_config,
    read_yaml,
    resolve_paths,
    validate_config,
)
from luodi.config.reference import reference_markdown
from luodi.config.schema import (
    FEATURE_TYPES,
    NAME_PATTERN,
    AugmentConfig,
    BinaryFeature,
    CategoryFeature,
    CNNConfig,
    DataConfig,
    EarlyStoppingConfig,
    FeatureConfig,
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
    Strict,
    TargetConfig,
    TextFeature,
    TrainerConfig,
    TransformerConfig,
    is_valid_name,
    resolve_tokenizer,
)

__all__ = [
    "FEATURE_TYPES", "NAME_PATTERN", "AugmentConfig", "BinaryFeature", "CNNConfig", "CategoryFeature",
    "DataConfig", "EarlyStoppingConfig", "FeatureConfig", "HFConfig", "ImageFeature", "LuodiConfig", "ModelConfig",
    "NumericFeature", "OptimizerConfig", "RNNConfig", "ReportConfig", "ResNetConfig", "RuntimeConfig",
    "SchedulerConfig", "SequenceFeature", "SplitConfig", "Strict", "TargetConfig", "TextFeature",
    "TrainerConfig", "TransformerConfig", "apply_overrides", "format_validation_error", "is_valid_name",
    "load_config", "read_yaml", "reference_markdown", "resolve_paths", "resolve_tokenizer", "validate_config",
]
