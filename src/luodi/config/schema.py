"""The root of the config, `LuodiConfig`, with its cross-field checks (`resolve_tokenizer`) and the `search:`
ranges of `luodi tune`; and the schema's public names, which `luodi.config` re-exports.

The sections live in their own modules: `base.py` (`Strict`, names), `inputs.py` (data, input_features, target),
`model.py`, `training.py` (trainer, runtime, report) and `monitoring.py`. Every model forbids unknown keys; errors
name the dotted key path. Field descriptions generate the config reference in docs/config.md (`reference.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from luodi.config.base import NAME_PATTERN, Strict, is_valid_name
from luodi.config.inputs import (
    FEATURE_TYPES,
    AugmentConfig,
    BinaryFeature,
    CategoryFeature,
    DataConfig,
    FeatureConfig,
    ImageFeature,
    NumericFeature,
    SequenceFeature,
    SplitConfig,
    TargetConfig,
    TextFeature,
    TextTargetConfig,
)
from luodi.config.model import (
    CNNConfig,
    GPTConfig,
    HFConfig,
    LoRAConfig,
    MLPConfig,
    ModelConfig,
    ResNetConfig,
    RNNConfig,
    TransformerConfig,
)
from luodi.config.monitoring import MonitorConfig, RetrainConfig
from luodi.config.training import (
    EarlyStoppingConfig,
    OptimizerConfig,
    ReportConfig,
    RuntimeConfig,
    SchedulerConfig,
    TrainerConfig,
)
from luodi.errors import InputError

if TYPE_CHECKING:
    from luodi.tasks import Task

# The config's public names, from every section module (luodi.config re-exports exactly these).
__all__ = [
    "FEATURE_TYPES", "NAME_PATTERN", "AugmentConfig", "BinaryFeature", "CNNConfig", "CategoryFeature", "DataConfig",
    "EarlyStoppingConfig", "FeatureConfig", "GPTConfig", "HFConfig", "ImageFeature", "LoRAConfig", "LuodiConfig",
    "MLPConfig", "ModelConfig", "MonitorConfig", "NumericFeature", "OptimizerConfig", "RNNConfig", "ReportConfig",
    "ResNetConfig", "RuntimeConfig", "RetrainConfig", "SchedulerConfig", "SearchRange", "SequenceFeature",
    "SplitConfig", "Strict", "TargetConfig", "TextFeature", "TextTargetConfig", "TrainerConfig", "TransformerConfig",
    "is_valid_name", "resolve_tokenizer",
]


# ------------------------------------------------------------------------------------------ search
SEARCH_FIXED = ("name", "description", "data", "target", "search", "report", "monitor")  # what a trial may not change


class SearchRange(Strict):
    """A `search:` entry of `luodi tune`: a dotted config key (as `--set` writes it) to a range or choices.

    Keys such as `trainer.optimizer.lr` or `model.hidden_sizes`; docs/tuning.md has examples."""

    low: int | float | None = Field(None, description="Range: the smallest value (an integer range when low, high "
                                                      "and step are integers).")
    high: int | float | None = Field(None, description="Range: the largest value (included).")
    log: bool = Field(False, description="Range: sample on a log scale (learning rates, weight decay); low > 0.")
    step: int | float | None = Field(None, gt=0, description="Range: only values low + k * step.")
    choices: list[Any] | None = Field(None, description="Choices instead of a range: scalars, lists (hidden_sizes) "
                                                        "or sections.")

    @field_validator("low", "high", "step", mode="before")
    @classmethod
    def _not_a_bool(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError("must be a number (for true/false write choices: [true, false])")
        return value

    @model_validator(mode="after")
    def _range_or_choices(self) -> SearchRange:
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.log or self.step is not None:
                raise ValueError("give either choices or a range (low, high, log, step), not both")
            if not self.choices:
                raise ValueError("choices is empty: list at least one value")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs low and high (or give choices: [...])")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low})")
        if self.log and self.step is not None:
            raise ValueError("log and step exclude each other")
        return self

    @property
    def integer(self) -> bool:
        """An integer range: low, high (and step) are all integers."""
        return self.choices is None and all(isinstance(value, int) for value in (self.low, self.high, self.step or 1))


# ------------------------------------------------------------------------------------------- root
class LuodiConfig(Strict):
    """A training job: data, features, target, model, trainer, runtime, report and monitoring."""

    name: str = Field(description="Model name in the registry: letters, digits, '.', '_', '-'.")
    description: str = Field("", description="Free text kept with the run and the model.")
    tags: list[str] = Field(default_factory=list, max_length=32, description="Labels kept with the run (names: "
                            "letters, digits, '.', '_', '-'); `luodi ui` filters runs by them.")
    data: DataConfig
    target: TargetConfig
    input_features: list[FeatureConfig] = Field(
        default_factory=list, description="Columns the model reads (text_generation reads only its target).")
    model: ModelConfig = Field(default_factory=ModelConfig)  # type: ignore[arg-type]
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)  # type: ignore[arg-type]
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)  # type: ignore[arg-type]
    report: ReportConfig = Field(default_factory=ReportConfig)  # type: ignore[arg-type]
    search: dict[str, SearchRange] = Field(
        default_factory=dict, description="`luodi tune` only: the ranges to search, by dotted config key "
        "(`trainer.optimizer.lr: {low: 1e-4, high: 1e-2, log: true}`, `model.hidden_sizes: {choices: [[64], "
        "[128, 64]]}`); see docs/tuning.md. `luodi train` ignores it.")
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)  # type: ignore[arg-type]

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not is_valid_name(value):
            raise ValueError("must match ^[A-Za-z0-9._-]{1,128}$ and not be '.' or '..'")
        return value

    @field_validator("tags")
    @classmethod
    def _valid_tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not is_valid_name(tag):
                raise ValueError(f"tag {tag!r} must match ^[A-Za-z0-9._-]{{1,128}}$ and not be '.' or '..'")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _consistent(self) -> LuodiConfig:
        names = [feature.name for feature in self.input_features]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"input_features lists {duplicates[0]!r} more than once")
        if self.target.name in names:
            raise ValueError(f"target {self.target.name!r} is also listed in input_features")
        task = self.task()
        check = getattr(task, "check_config", None)  # a task with rules of its own (text_generation)
        if check is not None:
            check(self)
        elif not self.input_features:
            raise ValueError("input_features: give at least one column the model reads")
        metric = self.trainer.early_stopping.metric
        if metric not in task.directions:
            raise ValueError(
                f"trainer.early_stopping.metric {metric!r} is not a {task.name} metric; "
                f"choose one of {sorted(task.directions)}"
            )
        if isinstance(self.target.class_weights, dict) and not task.classes:
            raise ValueError("target.class_weights applies to classification only")
        if self.target.label_smoothing and not task.classes:
            raise ValueError("target.label_smoothing applies to classification only")
        if self.target.positive_class is not None and not getattr(task, "binary", False):
            raise ValueError(f"target.positive_class applies to binary tasks only (this task is {task.name})")
        for feature in self.input_features:
            if isinstance(feature, TextFeature):
                resolve_tokenizer(feature, self.model)
                if feature.weighting == "supervised_tfidf" and not task.classes:
                    raise ValueError(f"input_features[{feature.name}].weighting supervised_tfidf weighs terms by "
                                     f"class: it applies to classification only (this task is {task.name})")
        self._check_search()
        return self

    def _check_search(self) -> None:
        """Each `search:` key names a key of this config that a trial may change (values are checked by tune)."""
        if not self.search:
            return
        from luodi.config.keys import find_key

        config = self.model_dump(mode="json", exclude={"search"})
        for key in self.search:
            if key.split(".")[0] in SEARCH_FIXED:
                raise ValueError(f"search.{key}: a trial may not change {key.split('.')[0]!r} (searchable: model, "
                                 "trainer, input_features, runtime)")
            try:
                find_key(config, key)
            except InputError as error:
                raise ValueError(f"search.{key}: {error}") from None

    def task(self) -> Task:
        """The task object of `target.task` (luodi.tasks)."""
        from luodi.tasks import get_task

        return get_task(self.target.task)

    def monitor_mode(self) -> Literal["min", "max"]:
        """The direction in which the early-stopping metric improves."""
        stopping = self.trainer.early_stopping
        if stopping.mode != "auto":
            return stopping.mode
        return self.task().directions[stopping.metric]


def resolve_tokenizer(feature: TextFeature, model: ModelConfig) -> None:
    """Turn `tokenizer: auto` into the tokenizer model.type reads, and check the choice against it.

    The validated config (kept in the run and the package) then says which tokenizer was used.
    """
    key = f"input_features[{feature.name}]"
    if feature.encoder is not None and feature.tokenizer in ("auto", "encoder"):
        feature.tokenizer = "encoder"
        if model.type in ("rnn", "transformer", "hf"):
            raise ValueError(f"{key}.encoder: a frozen text encoder's embedding is read by the MLP (model.type mlp, "
                             f"cnn or resnet), not by {model.type}")
        return
    if feature.tokenizer == "encoder":
        raise ValueError(f"{key}.tokenizer encoder needs {key}.encoder: a local sentence-encoder folder")
    if feature.encoder is not None:
        raise ValueError(f"{key}.encoder is read with tokenizer: encoder (or auto), not {feature.tokenizer}")
    if feature.tokenizer == "auto":
        feature.tokenizer = {"rnn": "bpe", "transformer": "bpe", "hf": "checkpoint"}.get(  # type: ignore[assignment]
            model.type, "bag_of_words")  # mlp, cnn, resnet: the text is columns of the combiner MLP
    if model.type == "hf":
        if feature.tokenizer == "bag_of_words":
            return  # read by the combiner MLP, beside the checkpoint's own features
        if feature.tokenizer != "checkpoint":
            raise ValueError(f"{key}.tokenizer {feature.tokenizer!r}: model.type hf reads the ids of its "
                             "checkpoint's own tokenizer; use tokenizer: checkpoint (or auto)")
        if feature.checkpoint is None:
            feature.checkpoint = model.path
        elif feature.checkpoint != model.path:
            raise ValueError(f"{key}.checkpoint {feature.checkpoint!r} differs from model.path {model.path!r}: "
                             "an hf model reads the ids of its own checkpoint's tokenizer")
    elif feature.tokenizer == "checkpoint" and feature.checkpoint is None:
        raise ValueError(f"{key}.tokenizer checkpoint needs {key}.checkpoint: a Hugging Face tokenizer folder")
