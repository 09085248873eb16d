"""The config's typed pydantic models, section by section, and the cross-field checks of the root.

Every model forbids unknown keys; errors name the dotted key path. Field descriptions generate the config
reference in docs/config.md (`reference.py`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from luodi.errors import InputError

if TYPE_CHECKING:
    from luodi.tasks import Task

# The config's public names (luodi.config re-exports exactly these).
__all__ = [
    "FEATURE_TYPES", "NAME_PATTERN", "AugmentConfig", "BinaryFeature", "CNNConfig", "CategoryFeature", "DataConfig",
    "EarlyStoppingConfig", "FeatureConfig", "GPTConfig", "HFConfig", "ImageFeature", "LoRAConfig", "LuodiConfig",
    "MLPConfig",
    "ModelConfig", "MonitorConfig",
    "NumericFeature", "OptimizerConfig", "RNNConfig", "ReportConfig", "ResNetConfig", "RuntimeConfig",
    "RetrainConfig", "SchedulerConfig", "SearchRange", "SequenceFeature", "SplitConfig", "Strict", "TargetConfig",
    "TextFeature",
    "TextTargetConfig", "TrainerConfig",
    "TransformerConfig", "is_valid_name", "resolve_tokenizer",
]

NAME_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def is_valid_name(value: object) -> bool:
    """Names of models, runs and aliases: ^[A-Za-z0-9._-]{1,128}$ in full (re.match would accept a trailing
    newline), and never '.' or '..' (they are paths)."""
    return isinstance(value, str) and NAME_PATTERN.fullmatch(value) is not None and value not in (".", "..")

class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ---------------------------------------------------------------------------------------------- data
class SplitConfig(Strict):
    """How one table is split into train, validation and test rows."""

    validation: float = Field(0.15, gt=0, lt=0.5, description="Fraction of rows held out for validation.")
    test: float = Field(0.15, ge=0, lt=0.5, description="Fraction of rows held out for the final test.")
    stratify: bool = Field(
        True, description="Keep class proportions (for regression: target deciles) equal across splits."
    )
    seed: int = Field(42, description="Seed of the split; the same seed gives the same rows.")


class DataConfig(Strict):
    """Where the rows come from."""

    train: str = Field(description="CSV, Parquet or JSONL file, relative to the config file's folder.")
    validation: str | None = Field(None, description="Optional separate validation file (skips the split).")
    test: str | None = Field(None, description="Optional separate test file (skips the split).")
    split: SplitConfig = Field(default_factory=SplitConfig)  # type: ignore[arg-type]
    streaming: bool | Literal["auto"] = Field(
        "auto", description="Stream Parquet/CSV files through training in blocks instead of reading them whole "
        "(bounded memory; numeric, category and binary features). auto: when the training file is over 1 GiB.")
    buffer_rows: int = Field(100_000, ge=1, description="Rows shuffled together when streaming (the memory bound).")

    @model_validator(mode="after")
    def _split_files_together(self) -> DataConfig:
        if (self.validation is None) != (self.test is None):
            raise ValueError("give both data.validation and data.test files, or neither (then data.split applies)")
        return self


# ------------------------------------------------------------------------------------------ features
class NumericFeature(Strict):
    """A number; missing values are imputed, then normalized with statistics of the training split."""

    name: str = Field(description="Column name.")
    type: Literal["numeric"] = "numeric"
    missing: Literal["mean", "median", "zero"] = Field("mean", description="Value used for missing cells.")
    normalization: Literal["zscore", "log", "minmax", "quantile", "none"] = Field(
        "zscore", description="Scaling fitted on train; log: sign(x)*log(1+|x|), then z-score (skewed amounts); "
        "quantile: the value's rank among the training values, mapped onto a standard normal.")
    encoding: Literal["value", "piecewise_linear"] = Field(
        "value", description="value: one model input, the normalized number. piecewise_linear: one input per bin "
        "between quantiles of the training split, 1 for bins below the value, 0 above, the fraction within its own "
        "(Gorishniy et al. 2022); lets an MLP learn thresholds as trees do.")
    bins: int = Field(16, ge=1, le=256, description="piecewise_linear: at most this many bins (fewer when the column "
                      "has fewer distinct values).")


class CategoryFeature(Strict):
    """A value from a set; the vocabulary comes from the training split, with an unknown bucket at index 0."""

    name: str = Field(description="Column name.")
    type: Literal["category"] = "category"
    min_frequency: int = Field(1, ge=1, description="Values seen fewer times in train go to the unknown bucket.")
    max_categories: int = Field(1000, ge=1, description="Keep at most this many most frequent values.")
    embedding_dim: int | None = Field(None, ge=1, le=512, description="Embedding width; default min(32, (n+1)//2).")


class BinaryFeature(Strict):
    """A two-valued column (yes/no, true/false, 0/1); missing cells take the training split's most common value."""

    name: str = Field(description="Column name.")
    type: Literal["binary"] = "binary"


class TextFeature(Strict):
    """Free text: a bag of words for the MLP, or tokens for rnn, transformer and hf (see docs/text.md)."""

    name: str = Field(description="Column name.")
    type: Literal["text"] = "text"
    tokenizer: Literal["auto", "bag_of_words", "bpe", "wordpiece", "checkpoint", "encoder"] = Field(
        "auto", description="auto: bpe for model.type rnn / transformer, the checkpoint's own for hf, encoder when "
        "`encoder` is set, else bag_of_words (mlp, cnn, resnet: columns of the MLP). "
        "bpe / wordpiece are trained on the training split; checkpoint reads a Hugging Face tokenizer folder; "
        "encoder: the frozen embedding of the `encoder` checkpoint, columns of the MLP."
    )
    encoder: str | None = Field(
        None, description="A local sentence-encoder checkpoint folder (e.g. all-MiniLM-L6-v2: config.json, "
        "model.safetensors, tokenizer.json): the text becomes its frozen embedding (pooled and normalized as its "
        "modules.json says), computed once per split and cached on disk, not every epoch. Its files are copied "
        "into the package.")
    max_tokens: int = Field(2000, ge=1, le=100_000, description="bag_of_words: vocabulary size (most frequent words).")
    ngrams: int = Field(1, ge=1, le=2, description="bag_of_words: 1 counts words; 2 counts words and word pairs "
                        "(bigrams: 'not good' is not 'good').")
    weighting: Literal["log_count", "tfidf", "supervised_tfidf"] = Field(
        "log_count", description="bag_of_words: log_count is log(1 + count); tfidf is (1 + log count) x the inverse "
        "document frequency of the training split, each row scaled to length 1 (terms in fewer than 2 training "
        "texts are left out); supervised_tfidf (classification only) also multiplies each term by the largest "
        "absolute log ratio between its share of one class's TF-IDF and its share of the other classes' in the "
        "training split (NBSVM's log-count ratio), so that terms which tell the classes apart weigh more.")
    class_weight_floor: float = Field(
        0.0, ge=0, le=10, description="supervised_tfidf: added to each term's class ratio before it multiplies the "
        "term: 0 lets a term spread evenly over the classes fall to 0; 1 keeps every term's TF-IDF weight and "
        "raises the terms that tell the classes apart (as TF-RF does), for few training rows, where most terms are "
        "rare and their ratios near 0.")
    vocab_size: int = Field(
        8000, ge=50, le=1_000_000, description="bpe / wordpiece: vocabulary size to train (bpe starts from 256 bytes)."
    )
    max_length: int = Field(256, ge=1, le=100_000, description="Tokens kept per text; longer texts are truncated.")
    lowercase: bool = Field(True, description="Lowercase before tokenizing (a checkpoint's tokenizer decides itself).")
    checkpoint: str | None = Field(
        None, description="tokenizer: checkpoint: the Hugging Face folder whose tokenizer to use (default model.path)."
    )
    empty: Literal["allow", "error"] = Field(
        "allow", description="An empty or missing text: allow (an empty sequence; the model handles it) or error."
    )


class AugmentConfig(Strict):
    """Random changes to training images, drawn per image and per epoch on the batch tensor; never at evaluation
    or prediction."""

    crop_padding: int = Field(0, ge=0, le=64, description="Random crop: pad by this many pixels, crop back to size.")
    horizontal_flip: bool = Field(False, description="Mirror half of the images (only where a mirror keeps the class).")
    rotation: float = Field(0.0, ge=0, le=45, description="Rotate by a random angle in [-rotation, rotation] degrees.")


class ImageFeature(Strict):
    """An image: a column of file paths (relative to the table file) or of encoded bytes (PNG, JPEG, ...),
    decoded once with Pillow, resized, and normalized with per-channel statistics of the training split."""

    name: str = Field(description="Column name.")
    type: Literal["image"] = "image"
    height: int | None = Field(None, ge=1, le=4096, description="Resize to this height; default: from training images.")
    width: int | None = Field(None, ge=1, le=4096, description="Resize to this width; default: from training images.")
    channels: Literal[1, 3] | None = Field(None, description="1 (gray) or 3 (RGB); default: 3 if any training image "
                                                            "has color, else 1.")
    strict_channels: bool = Field(False, description="A gray image among color ones (or the reverse) is an error "
                                                     "naming the file instead of being converted.")
    on_bad_image: Literal["error", "skip"] = Field(
        "error", description="An unreadable image: error naming the file, or skip its row when training or "
                             "evaluating (logged; prediction always errors).")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)  # type: ignore[arg-type]


class SequenceFeature(Strict):
    """A fixed-length numeric vector per row, read as a sequence (e.g. a signal of 40 values): a list column
    (Parquet, JSONL) or text of numbers separated by spaces or commas (CSV); nested lists give channels."""

    name: str = Field(description="Column name.")
    type: Literal["sequence"] = "sequence"
    length: int | None = Field(None, ge=1, le=1_000_000, description="Values per row; default: the training rows' "
                                                                     "length (all must agree).")
    on_length_mismatch: Literal["error", "pad"] = Field(
        "error", description="A row of another length: error naming the row, or pad (with 0) / truncate it.")
    normalization: Literal["zscore", "none"] = Field("zscore", description="Per-channel scaling fitted on train.")


FeatureConfig = Annotated[
    NumericFeature | CategoryFeature | BinaryFeature | TextFeature | ImageFeature | SequenceFeature,
    Field(discriminator="type"),
]
# Feature config model per `type` tag (error messages walk through it; a new feature type is added here too).
FEATURE_TYPES: dict[str, type[Strict]] = {
    "numeric": NumericFeature, "category": CategoryFeature, "binary": BinaryFeature, "text": TextFeature,
    "image": ImageFeature, "sequence": SequenceFeature,
}


class TextTargetConfig(Strict):
    """target.text (text_generation): how the text is read, templated, tokenized and cut into training windows."""

    format: Literal["auto", "text", "prompt_completion", "chat"] = Field(
        "auto", description="auto: chat when the target column holds lists of messages, prompt_completion when the "
        "table has the prompt column, else text (the loss then covers every token).")
    prompt: str = Field("prompt", description="prompt_completion: the column holding each completion's prompt.")
    tokenizer: Literal["auto", "bpe", "checkpoint"] = Field(
        "auto", description="auto: the checkpoint's own for model.type hf, else a byte-level BPE trained on the "
        "training split.")
    vocab_size: int = Field(4000, ge=300, le=1_000_000, description="bpe: vocabulary size to train.")
    checkpoint: str | None = Field(None, description="tokenizer: checkpoint: its folder (default model.path).")
    context_length: int = Field(256, ge=8, le=1_000_000, description="Tokens per training window, and the most a "
                                "model reads when generating (prompt and new tokens).")
    packing: bool = Field(True, description="Join examples (each ended by the end-of-text token) into full windows; "
                          "false pads each example to its own window (longer ones are truncated).")
    samples: list[str] = Field(default_factory=list, description="Prompts the report generates from; default: "
                               "the beginnings of the first three scored examples.")
    evaluate_rows: int = Field(32, ge=0, le=100_000, description="prompt_completion and chat data: scored rows "
                               "whose completion (chat: last assistant reply) is generated greedily and compared with "
                               "the reference (exact match, chrF); 0 turns it off.")
    evaluate_margin: int = Field(8, ge=0, le=4096, description="Tokens a generated completion may run past its "
                                 "reference's length before it is cut.")


class TargetConfig(Strict):
    """The column to predict and the kind of prediction."""

    name: str = Field(description="Target column name (text_generation: text, completion or messages).")
    task: str = Field(description="What to predict: regression, binary, multiclass or text_generation (the tasks "
                      "in luodi.tasks).")
    class_weights: Literal["none", "balanced"] | dict[str, float] = Field(
        "none", description="Loss weight per class: none, balanced (inverse frequency), or {label: weight}."
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="Classification: train against targets that keep this share of the "
        "probability off the true class, spread evenly over all classes (binary: over the two); an overconfident "
        "model fits small data less closely. The validation loss that early stopping watches is smoothed the same way "
        "(an overconfident model stops raising it); evaluation metrics use the true labels.")
    positive_class: str | None = Field(
        None, description="binary: the class whose precision, recall, F1 and ROC AUC are reported and whose "
        "probability the model outputs; default: a true-like value (yes, true, 1, positive), else the later in "
        "sort order. Checked against the training labels.")
    text: TextTargetConfig = Field(default_factory=TextTargetConfig)  # type: ignore[arg-type]

    @field_validator("positive_class", mode="before")
    @classmethod
    def _label_spelling(cls, value: object) -> object:
        """A YAML number or boolean as the target column spells its labels (true, 1, 2.5): labels are matched as
        text."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        if isinstance(value, int | float):
            return repr(value)
        return value

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        from luodi.tasks import get_task  # the task table imports nothing of config: no cycle

        try:
            get_task(value)
        except InputError as error:
            raise ValueError(str(error)) from None
        return value


# ------------------------------------------------------------------------------------------- model
class MLPConfig(Strict):
    """The combiner MLP: a TabM ensemble (Gorishniy et al. 2025), periodic embeddings of numbers; any model.type.

    `ensemble` members share the hidden layers' weights; each has its own multiplicative adapters and output layer,
    trains on the same batches (the loss is the members' mean) and the prediction is their mean (of probabilities
    for classes)."""

    ensemble: int = Field(1, ge=1, le=64, description="Members of the ensemble (1: one plain MLP; TabM uses 32). "
                          "The hidden layers' compute grows with it, their weights barely.")
    adapters: Literal["layers", "input"] = Field(
        "layers", description="Where members differ: layers (a per-member input and output scaling and bias in every "
        "hidden layer, TabM) or input (one per-member scaling of the MLP's input, TabM-mini).")
    numeric_embedding: Literal["none", "periodic"] = Field(
        "none", description="periodic: each numeric column's normalized value x also enters as a learned vector, "
        "ReLU(Linear(sin(2 pi c x), cos(2 pi c x))) with trainable frequencies c and a Linear of its own per column "
        "(PLR, Gorishniy et al. 2022); beside the value and any piecewise-linear bins.")
    periodic_frequencies: int = Field(16, ge=1, le=256, description="periodic: frequencies c per column.")
    periodic_sigma: float = Field(0.1, gt=0, le=100, description="periodic: the frequencies start from N(0, sigma) "
                                  "(the values are standardized; larger sigma: finer detail, more overfitting).")
    periodic_width: int = Field(16, ge=1, le=256, description="periodic: width of each column's vector.")
    linear: bool = Field(False, description="Wide and deep: also a linear layer from the MLP's input to the outputs, "
                         "its logits added to the hidden layers' (a linear model beside the MLP).")


class CNNConfig(Strict):
    """model.type cnn: conv blocks (conv, batch norm, activation, pooling, dropout), 2-D for images and 1-D for
    sequences, then a pooled vector for the combiner MLP."""

    channels: list[int] = Field(default_factory=lambda: [32, 64], description="Output channels of each conv block.")
    kernel_size: int = Field(3, ge=1, le=31, description="Convolution kernel size (odd keeps the size).")
    convs_per_block: int = Field(1, ge=1, le=4, description="Convolutions in each block before its pooling.")
    batch_norm: bool = Field(True, description="Batch normalization after each convolution.")
    pool: Literal["max", "avg", "none"] = Field("max", description="Pooling (size 2) at the end of each block.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout after each block.")
    output: Literal["avg", "max", "flatten"] = Field(
        "avg", description="Vector from the last block: global average or max pooling, or flatten every position.")
    channels_last: bool = Field(True, description="Images in channels-last memory layout (faster convolutions on "
                                                  "CPU and tensor cores).")

    @field_validator("channels")
    @classmethod
    def _positive_channels(cls, sizes: list[int]) -> list[int]:
        if not sizes or any(size < 1 for size in sizes):
            raise ValueError("give at least one block, each with >= 1 channels")
        return sizes


class ResNetConfig(Strict):
    """model.type resnet: a small residual network for 28-64 px images (stem, stages of basic blocks, the first
    block of each later stage halving the size, global average pooling)."""

    widths: list[int] = Field(default_factory=lambda: [32, 64, 128], description="Channels of each stage.")
    blocks_per_stage: int = Field(2, ge=1, le=8, description="Residual blocks in each stage.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the pooled vector.")
    channels_last: bool = Field(True, description="Images in channels-last memory layout.")

    @field_validator("widths")
    @classmethod
    def _positive_widths(cls, sizes: list[int]) -> list[int]:
        if not sizes or any(size < 1 for size in sizes):
            raise ValueError("give at least one stage, each with >= 1 channels")
        return sizes
class RNNConfig(Strict):
    """model.type rnn: a recurrent encoder per text (tokens) or sequence feature."""

    cell: Literal["gru", "lstm"] = Field("gru", description="Recurrent cell.")
    layers: int = Field(1, ge=1, le=16, description="Stacked recurrent layers.")
    hidden_size: int = Field(128, ge=1, le=8192, description="Hidden state width per direction.")
    embedding_dim: int = Field(128, ge=1, le=8192, description="Token embedding (or step projection) width.")
    bidirectional: bool = Field(False, description="Also read each sequence backwards.")
    pooling: Literal["last", "mean", "max"] = Field("last", description="How the steps become one vector.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the embeddings and between layers.")


class TransformerConfig(Strict):
    """model.type transformer: a Transformer encoder per text (tokens) or sequence feature."""

    layers: int = Field(2, ge=1, le=48, description="Encoder layers.")
    heads: int = Field(4, ge=1, le=64, description="Attention heads (width must divide by it).")
    width: int = Field(128, ge=8, le=8192, description="Model width (d_model).")
    feedforward: int | None = Field(None, ge=1, description="Feed-forward width; default 4 x width.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on embeddings, attention outputs and feed-forward.")
    attention_dropout: float = Field(
        0.0, ge=0, lt=1, description="Dropout on attention weights; 0 lets CPU attention run its fused kernel "
        "(2.6x faster training steps measured at width 64, 256 tokens)."
    )
    positions: Literal["learned", "sinusoidal"] = Field("learned", description="Position embeddings.")
    pooling: Literal["cls", "mean"] = Field("mean", description="cls: a learned summary token; mean: of the steps.")
    norm_first: bool = Field(True, description="Pre-layer-norm (trains more stably) instead of post.")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TransformerConfig:
        if self.width % self.heads:
            raise ValueError(f"model.transformer.width {self.width} is not divisible by heads {self.heads}")
        return self


class GPTConfig(Strict):
    """model.type gpt (text_generation): a decoder-only Transformer trained from scratch: pre-norm blocks, rotary
    positions, tied input and output embeddings. Its context is target.text.context_length."""

    layers: int = Field(4, ge=1, le=96, description="Decoder blocks.")
    width: int = Field(256, ge=8, le=16384, description="Model width.")
    heads: int = Field(4, ge=1, le=128, description="Attention heads (width / heads must be even, for rotary).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the residual branches while training.")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> GPTConfig:
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise ValueError(f"model.gpt.width {self.width} / heads {self.heads} must be an even whole number")
        return self


class LoRAConfig(Strict):
    """model.hf.lora (text_generation): train low-rank adapters (PEFT) instead of every weight of the checkpoint."""

    enabled: bool = Field(False, description="Train LoRA adapters; the checkpoint's own weights stay frozen.")
    rank: int = Field(8, ge=1, le=1024, description="Rank of each adapter.")
    alpha: float = Field(16.0, gt=0, description="Scaling: the adapter's update is multiplied by alpha / rank.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter's input.")
    target_modules: list[str] | None = Field(None, description="Names of the linear layers to adapt; default: "
                                             "PEFT's choice for the architecture (attention projections).")


class HFConfig(Strict):
    """model.type hf: how the checkpoint in model.path is fine-tuned."""

    freeze: int | Literal["all"] = Field(
        0, description="0 fine-tunes everything; N freezes the embeddings and the lowest N layers; all freezes the "
        "whole encoder (only the layers above it train)."
    )
    layer_lr_decay: float = Field(
        1.0, gt=0, le=1, description="Layer-wise lr: the new layers train at lr, the checkpoint's top layer at "
        "lr x decay, each layer below at one more factor of decay (1.0: off)."
    )
    pooling: Literal["mean", "cls"] = Field("mean", description="mean of the token states, or the first token's.")
    trust_remote_code: bool = Field(
        False, description="Run Python code shipped in the checkpoint folder (auto_map); refused unless true."
    )
    lora: LoRAConfig = Field(default_factory=LoRAConfig)  # type: ignore[arg-type]


class ModelConfig(Strict):
    """The architecture: feature encoders of `type` for image, sequence and text features, then an MLP over
    their outputs, the numeric values and the category embeddings. Tables alone use `mlp`."""

    type: Literal["mlp", "cnn", "resnet", "rnn", "transformer", "hf", "gpt"] = Field(
        "mlp", description="Architecture name: mlp (tables), cnn, resnet, rnn, transformer, hf; gpt (text_generation)."
    )
    path: str | None = Field(
        None, description="hf: local folder of a Hugging Face checkpoint (config.json, safetensors, tokenizer)."
    )
    hidden_sizes: list[int] = Field(default_factory=lambda: [128, 64], description="Width of each hidden layer.")
    activation: Literal["relu", "gelu", "silu", "tanh", "leaky_relu"] = Field("relu", description="Activation.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout after each hidden layer.")
    normalization: Literal["none", "batch", "layer"] = Field("none", description="Normalization per hidden layer.")
    mlp: MLPConfig = Field(default_factory=MLPConfig)  # type: ignore[arg-type]
    cnn: CNNConfig = Field(default_factory=CNNConfig)  # type: ignore[arg-type]
    resnet: ResNetConfig = Field(default_factory=ResNetConfig)  # type: ignore[arg-type]
    rnn: RNNConfig = Field(default_factory=RNNConfig)  # type: ignore[arg-type]
    transformer: TransformerConfig = Field(default_factory=TransformerConfig)  # type: ignore[arg-type]
    hf: HFConfig = Field(default_factory=HFConfig)  # type: ignore[arg-type]
    gpt: GPTConfig = Field(default_factory=GPTConfig)  # type: ignore[arg-type]

    @field_validator("hidden_sizes")
    @classmethod
    def _positive(cls, sizes: list[int]) -> list[int]:
        if any(size < 1 for size in sizes):
            raise ValueError("every hidden size must be >= 1")
        return sizes

    @model_validator(mode="after")
    def _path_for_hf(self) -> ModelConfig:
        if self.type == "hf" and not self.path:
            raise ValueError("model.type hf needs model.path: the local folder of a Hugging Face checkpoint")
        if self.type != "hf" and self.path is not None:
            raise ValueError(f"model.path is for model.type hf (this model is {self.type!r})")
        return self


# ----------------------------------------------------------------------------------------- trainer
class OptimizerConfig(Strict):
    type: Literal["adamw", "adam", "sgd"] = Field("adamw", description="Optimizer.")
    lr: float = Field(1e-3, gt=0, le=10, description="Peak learning rate.")
    weight_decay: float = Field(0.01, ge=0, description="Weight decay (decoupled for adamw).")
    momentum: float = Field(0.9, ge=0, lt=1, description="Momentum (sgd only).")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam betas.")


class SchedulerConfig(Strict):
    type: Literal["none", "cosine", "step", "linear", "plateau"] = Field(
        "none", description="Learning-rate decay after warmup: cosine / linear over all trainer.epochs; step every "
        "step_size epochs; plateau when the early-stopping metric stalls (then early stopping, not the epoch cap, "
        "ends the run).")
    warmup_steps: int = Field(0, ge=0, description="Linear warmup from 0 to lr over this many steps.")
    step_size: int = Field(10, ge=1, description="step: epochs between decays.")
    gamma: float = Field(0.5, gt=0, le=1, description="step and plateau: factor applied at each decay.")
    patience: int = Field(3, ge=1, description="plateau: epochs without improvement of the early-stopping metric "
                          "before the lr is multiplied by gamma (again after as many more).")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine/linear: final lr as a fraction of lr.")


class EarlyStoppingConfig(Strict):
    metric: str = Field("loss", description="Validation metric to watch (loss, accuracy, roc_auc, r2, ...).")
    mode: Literal["auto", "min", "max"] = Field("auto", description="auto picks the metric's better direction.")
    patience: int = Field(10, ge=1, description="Epochs without improvement before stopping.")
    min_delta: float = Field(0.0, ge=0, description="Smallest change that counts as an improvement.")
    enabled: bool = Field(True, description="Turn early stopping off to run all epochs.")


class TrainerConfig(Strict):
    epochs: int = Field(100, ge=1, le=100_000, description="Most epochs to run.")
    batch_size: int = Field(64, ge=1, description="Rows per step.")
    eval_batch_size: int = Field(1024, ge=1, description="Rows per forward pass when evaluating.")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)  # type: ignore[arg-type]
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)  # type: ignore[arg-type]
    gradient_clip: float | None = Field(1.0, gt=0, description="Clip the gradient norm to this; null turns it off.")
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)  # type: ignore[arg-type]
    checkpoint_every_steps: int = Field(0, ge=0, description="Also checkpoint every N steps (0: each epoch only).")
    seed: int = Field(42, description="Seed of weights, dropout and data order.")
    ema_decay: float = Field(
        0.0, ge=0, lt=1, description="Exponential moving average of the weights after every step (0: off): "
        "validation, early stopping, the best checkpoint and the package use the average. About 1 - 1/N averages the "
        "last N steps; lower for the first steps (min(decay, (1 + n) / (10 + n))).")
    refit: bool = Field(
        False, description="After the run, train a fresh model (same seed) on the training + validation rows for the "
        "best epoch count early stopping chose, replaying the learning-rate schedule (a plateau scheduler's reductions "
        "epoch by epoch; warmup, cosine, linear and step recomputed for those epochs), with the features fitted on "
        "those rows too. The package holds the refit model, scored on the untouched test split; the report and "
        "`train --json` keep the first model's validation and test metrics. Needs a test split; skipped, with a "
        "warning, for streamed data and under torchrun.")


class RuntimeConfig(Strict):
    """Process set-up; what was chosen is recorded in the run."""

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto uses CUDA when present.")
    threads: int | Literal["auto"] = Field(
        "auto", description="Torch intra-op threads; auto counts the cores that are free now (CPU use measured "
        "over 0.1 s; the load average where /proc/stat is missing)."
    )
    allocator: Literal["tuned", "default"] = Field(
        "tuned", description="tuned keeps freed memory in the process (mallopt) instead of returning it per step."
    )
    deterministic: bool = Field(False, description="Ask torch for deterministic kernels (slower on GPU).")
    mixed_precision: Literal["auto", "off", "tf32", "bf16", "fp16"] = Field(
        "auto", description="On CUDA: auto uses TF32 tensor-core math (fp32 weights and activations) on Ampere and "
                            "later GPUs, else fp16 autocast with loss scaling; bf16 and fp16 force autocast. On CPU: "
                            "auto trains cnn, resnet, rnn, transformer and hf models under bf16 autocast where the "
                            "CPU has bf16 instructions (AVX512-BF16, AMX), else fp32; bf16 forces it. off keeps "
                            "strict fp32 everywhere.")
    pin_memory: bool = Field(True, description="On CUDA: page-locked host tensors and asynchronous copies.")
    checkpoint_dir: str | None = Field(
        None, description="Under torchrun: the folder of the job's checkpoint, relative to the config file; every rank "
                          "reads it when torchrun restarts the group, so on several machines it must be shared "
                          "storage. Default: LUODI_HOME/distributed. Each job (rendezvous id) gets a subfolder.")

    @field_validator("threads")
    @classmethod
    def _threads_positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("threads must be >= 1 or 'auto'")
        return value


# ------------------------------------------------------------------------------------------ report
class ReportConfig(Strict):
    """The evaluation report (report.html) that every training run and `luodi evaluate` write."""

    enabled: bool = Field(True, description="Write report.html (training: into the run folder and the package).")
    slices: bool = Field(True, description="Metrics per category value and per numeric quantile bin, worst first.")
    slice_bins: int = Field(4, ge=2, le=20, description="Quantile bins per numeric column in the slice table.")
    min_slice_rows: int = Field(5, ge=1, description="Slices with fewer rows are left out (too few to rank).")
    importance_repeats: int = Field(
        5, ge=0, le=100, description="Shuffles per column for permutation importance; 0 leaves it out."
    )
    importance_rows: int = Field(2000, ge=10, description="Most rows (a seeded sample) permutation importance uses.")


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


# ----------------------------------------------------------------------------------------- monitor
class RetrainConfig(Strict):
    """`luodi retrain` and `luodi monitor --retrain-if-drift` (docs/monitoring.md): a challenger trained on the
    training data plus labelled production rows, promoted only when it beats the champion on fresh production rows."""

    alias: str = Field("production", description="The champion's alias, moved to the challenger when it wins.")
    window: str = Field("30d", description="Labelled production rows logged within this long (30m, 12h, 7d) are used.")
    mix: float = Field(0.5, ge=0, lt=1, description="Share of the challenger's training rows drawn from production "
                       "(sampled with replacement when fewer; 0 trains on the training data alone).")
    holdout: float = Field(0.3, gt=0, lt=1, description="Share of the newest labelled production rows held out: the "
                           "fresh holdout both models are scored on; never trained on.")
    min_labelled_rows: int = Field(30, ge=2, description="Fewer labelled production rows: no retrain (nothing to learn "
                                   "from or judge by).")
    metric: str | None = Field(None, description="Holdout metric that decides (accuracy, loss, rmse, ...); default "
                               "the early-stopping metric. Its direction comes from the task.")
    margin: float = Field(0.01, ge=0, description="The challenger must beat the champion on `metric` by more than "
                          "this (absolute).")
    gates: list[str] = Field(["loss"], description="Other holdout metrics the challenger may not be worse on than "
                             "the champion by more than max_drop (the deciding metric is left out).")
    max_drop: float = Field(0.05, ge=0, description="How much worse (absolute) a gate metric of the challenger may be.")


class MonitorConfig(Strict):
    """The reference profile kept in the package and the drift tests `luodi monitor` runs against it
    (docs/monitoring.md). `auto` picks a test by the window's size: a p-value test up to `small_sample_rows` rows,
    a distance beyond (p-values flag negligible shifts on large windows)."""

    profile: bool = Field(True, description="Write the training data's reference profile (profile.json) into the "
                          "package; without it `luodi monitor` cannot run.")
    profile_rows: int = Field(100_000, ge=100, description="Most training rows (a seeded sample) the profile reads; "
                              "the model's outputs are profiled on at most this many validation rows.")
    bins: int = Field(10, ge=2, le=100, description="Quantile bins of each number for PSI and Jensen-Shannon.")
    top_categories: int = Field(20, ge=1, le=1000, description="Category values kept by frequency; the rest are "
                                "counted together as 'other' (a value never seen lands there too).")
    text_vocabulary: int = Field(500, ge=10, le=10_000, description="Most frequent training words a text feature's "
                                 "out-of-vocabulary rate is measured against.")
    numeric_test: Literal["auto", "ks", "wasserstein", "psi", "jensen_shannon"] = Field(
        "auto", description="Test of numbers (text lengths, image statistics, scores): auto is ks up to "
        "small_sample_rows rows, else wasserstein.")
    category_test: Literal["auto", "chi2", "jensen_shannon", "psi"] = Field(
        "auto", description="Test of categories, binary values and predicted labels: auto is chi2 up to "
        "small_sample_rows rows, else jensen_shannon.")
    small_sample_rows: int = Field(1000, ge=1, description="Windows up to this many rows use the p-value tests.")
    p_value: float = Field(0.01, gt=0, lt=1, description="ks, chi2 and rate changes: drift when the p-value is below "
                           "this (the false-alarm rate per feature on undrifted data).")
    psi: float = Field(0.2, gt=0, description="Population stability index at or above which a feature drifted.")
    wasserstein: float = Field(0.1, gt=0, description="Wasserstein distance, in training standard deviations, at or "
                               "above which a number drifted.")
    jensen_shannon: float = Field(0.1, gt=0, le=1, description="Jensen-Shannon distance (base 2, 0 to 1) at or "
                                  "above which a feature drifted.")
    missing_change: float = Field(0.05, gt=0, le=1, description="Change of a feature's missing rate (absolute) that "
                                  "counts as drift, when also significant at p_value.")
    oov_change: float = Field(0.1, gt=0, le=1, description="Change of a text feature's out-of-vocabulary word rate "
                              "(absolute) that counts as drift, when also significant at p_value.")
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)  # type: ignore[arg-type]


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
