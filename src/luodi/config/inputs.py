"""The config sections of the rows and columns: `data` (files and the split), `input_features` (one model per
feature type, `FEATURE_TYPES`) and `target` (the column to predict, and `target.text` for text_generation)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from luodi.config.base import Strict
from luodi.errors import InputError

__all__ = [
    "FEATURE_TYPES", "AugmentConfig", "BinaryFeature", "CategoryFeature", "DataConfig", "FeatureConfig",
    "ImageFeature", "NumericFeature", "SequenceFeature", "SplitConfig", "TargetConfig", "TextFeature",
    "TextTargetConfig",
]


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


# ------------------------------------------------------------------------------------------- target
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
