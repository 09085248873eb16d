"""`luodi init`: infer the task and feature types from a table and render a commented starter config."""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from luodi.columns import as_strings, binary_order, signed_log
from luodi.data import budget
from luodi.data.infer import ColumnGuess, TaskGuess, column_values, infer_column, infer_task
from luodi.errors import InputError


@dataclass(frozen=True)
class Starter:
    """What init decided: the task, kept features, dropped columns, and the sizes it chose from the data."""

    name: str
    target: str
    task: TaskGuess
    columns: list[ColumnGuess]
    rows: int
    hidden_sizes: list[int]
    batch_size: int
    epochs: int
    patience: int
    architecture: str = "mlp"  # cnn for image or sequence features (transformer: only `init --tune` tests render it)
    positive: str | None = None  # binary: the label the metrics are of (written as target.positive_class)
    lr: float = 0.001
    optimizer: str = "adamw"  # adam for TF-IDF text: its weight_decay is an L2 penalty in the loss (see _text_l2)
    weight_decay: float = 0.01
    plateau: int = 3  # epochs without improvement before the lr drops (early stopping waits for two drops)
    dropout: float = 0.1
    cnn_channels: list[int] = field(default_factory=lambda: [32, 64])
    ensemble: int = 1  # members of the MLP's TabM ensemble (model.mlp.ensemble; 1: a plain MLP)
    periodic_sigma: float = 0.0  # numeric columns' periodic embeddings (model.mlp.periodic_sigma; 0: none)
    numeric_levels: int = 0  # distinct values of the median numeric column (periodic embeddings need many)
    label_smoothing: float = 0.0  # written as target.label_smoothing when set (image classifiers)
    ema_decay: float = 0.0  # written as trainer.ema_decay when set (image classifiers)
    refit: bool = False  # written as trainer.refit: true (see `_refits`); the epoch budget then counts the refit
    epoch_seconds: float = 0.0  # the estimate the epoch budget came from (data/budget.py)
    budget_s: float = budget.DEFAULT_BUDGET_S
    why: dict[str, str] = field(default_factory=dict)  # comments of the written config, by key

    @property
    def features(self) -> list[ColumnGuess]:
        return [column for column in self.columns if column.type is not None]

    @property
    def dropped(self) -> list[ColumnGuess]:
        return [column for column in self.columns if column.type is None]


GENERIC_NAMES = {"train", "training", "data", "dataset", "train-data", "training-data", "trainset", "train-set"}


def model_name(path: Path) -> str:
    """A registry name from a file name: 'Churn data.csv' -> 'churn-data'; a generic split name ('fmnist/train',
    'churn/data.csv') takes its folder's name ('fmnist', 'churn'), and with none to take, `--name` is needed."""
    for part in [path, *Path(path).absolute().parents]:
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", part.stem.lower()).strip("-.")
        if name and name.replace("_", "-") not in GENERIC_NAMES:
            return name[:128]
        if part.stem and not name:  # '###.csv': nothing usable in the name itself
            return "model"
    raise InputError(f"{path}: cannot name the model from the file or its folders (generic names like "
                     f"{path.stem!r}); give one with --name")


def plan(table: pa.Table, path: Path, target: str, task: str | None = None, name: str | None = None,
         time_budget: float = budget.DEFAULT_BUDGET_S, encoder: str | None = None) -> Starter:
    """Infer everything a starter config needs from the table; `time_budget` (seconds) bounds the epochs;
    `encoder` (a sentence-encoder folder, as the config writes it) embeds the text columns instead of TF-IDF."""
    column = column_values(table, target)
    if column.null_count:
        nulls = pc.is_null(column).to_numpy(zero_copy_only=False).nonzero()[0][:5] + 1
        raise InputError(f"{path}: target column {target!r} is missing in {column.null_count} row(s) "
                         f"(rows {', '.join(map(str, nulls))}); fill or drop those rows")
    if pa.types.is_floating(column.type):
        nan_count = pc.sum(pc.is_nan(column)).as_py() or 0
        if nan_count:
            raise InputError(f"{path}: target column {target!r} is NaN in {nan_count} row(s)")
    guess = infer_task(column, target)
    if task is not None:
        from luodi.tasks import TASKS

        if task not in TASKS:
            raise InputError(f"--task {task!r}: choose one of {sorted(TASKS)}")
        guess = TaskGuess(task, "given with --task")
    labels = pc.unique(as_strings(column)).to_pylist()
    positive = binary_order(labels)[1] if guess.task == "binary" and len(labels) == 2 else None
    columns = [infer_column(table.column(name), name) for name in table.column_names if name != target]
    if not any(column.type for column in columns):
        raise InputError(f"{path}: no usable feature columns besides {target!r} "
                         f"({'; '.join(f'{c.name}: {c.reason}' for c in columns) or 'no other columns'})")
    rows = table.num_rows
    from luodi.tasks import get_task

    # Measured on texts alone (docs/performance.md): a text column beside table columns keeps plain tfidf.
    by_class = get_task(guess.task).classes and _texts_only(columns)
    columns = [_describe(column, table, path, rows, by_class) for column in columns]
    columns = _numeric_bins(columns, table, rows)
    if encoder is not None:
        if not any(column.type == "text" for column in columns):
            raise InputError(f"--encoder {encoder}: {path} has no free-text column for it to read")
        columns = [ColumnGuess(c.name, c.type, c.reason, {"encoder": encoder}) if c.type == "text" else c
                   for c in columns]
    outputs = len(labels) if guess.task == "multiclass" else 1
    base = Starter(name or model_name(path), target, guess, columns, rows, [], 64 if rows >= 2_000 else 32, 0, 0,
                   positive=positive, budget_s=time_budget, numeric_levels=_numeric_levels(columns, table))
    if _refits(by_class, encoder, rows, columns):
        base = replace(base, refit=True)
    if any(column.type in ("image", "sequence") for column in columns):
        return _conv_plan(base, outputs)
    return _mlp_plan(base, outputs)


def _train_rows(starter: Starter) -> int:
    return _train_rows_of(starter.rows)


def _dense_width(starter: Starter) -> int:
    """Columns the combiner MLP reads besides feature encoders: numbers, embeddings, bag-of-words terms."""
    width = 0
    for column in starter.features:
        if column.type == "text":
            width += 384 if column.options.get("encoder") else column.options.get("max_tokens", 2000)
        elif column.type == "category":
            width += 16
        elif column.type == "numeric":
            width += 1 + column.options.get("bins", 0) if column.options.get("encoding") == "piecewise_linear" else 1
        elif column.type == "binary":
            width += 1
    if starter.periodic_sigma:  # each numeric column's periodic vector beside its value
        width += PERIODIC_WIDTH * sum(column.type == "numeric" for column in starter.features)
    return width


def _with_epochs(starter: Starter, multiply_adds: int, lowest: int, highest: int) -> Starter:
    """The epoch cap from the time budget and the estimated epoch, with the comment saying how it was chosen."""
    seconds = _run_epoch_seconds(starter, multiply_adds)
    epochs = budget.epochs_within(starter.budget_s, seconds, lowest, highest)
    why = dict(starter.why)
    limit = "the time budget" if epochs < highest else f"at most {highest}"
    refit = " and its refit" if starter.refit else ""
    why["epochs"] = (f"~{_duration(seconds)} an epoch{refit} on a laptop CPU, {_duration(starter.budget_s)} budget "
                     f"(--time-budget): {limit}; early stopping usually ends sooner")
    return replace(starter, epochs=epochs, epoch_seconds=seconds, why=why)


def _run_epoch_seconds(starter: Starter, multiply_adds: int) -> float:
    """Estimated seconds an epoch of the run costs: the epoch and, with a refit, the refit's epoch (phase two runs
    as many epochs as phase one chose, over 85/70 the rows, with no validation)."""
    rows, batch = _train_rows(starter), starter.batch_size
    refit = budget.refit_epoch_seconds(rows, batch, multiply_adds) if starter.refit else 0.0
    return budget.epoch_seconds(rows, batch, multiply_adds) + refit


IMAGE_LABEL_SMOOTHING = 0.1  # target.label_smoothing of an image classifier (measured: docs/performance.md)
EMA_EPOCHS = 3  # trainer.ema_decay of an image classifier averages about this many epochs of steps


def ema_decay(starter: Starter) -> float:
    """1 - 1/(steps of EMA_EPOCHS epochs), to two significant digits of 1 - decay: 0.99 at the 33 steps an epoch of
    the 28x28 sets it was measured on (2,100 training images), 0.9985 at 14,000."""
    steps = math.ceil(_train_rows(starter) / starter.batch_size) * EMA_EPOCHS
    return 1 - float(f"{min(0.1, max(1e-4, 1 / steps)):.2g}")


def _conv_plan(starter: Starter, outputs: int) -> Starter:
    """Conv blocks until the image is about 8 pixels a side, flattened (where things are matters: global pooling
    lost 11 points on a 10-class photo set), one hidden layer, dropout against the flattened width's overfitting;
    label smoothing for image classifiers."""
    from luodi.tasks import get_task

    images = [c for c in starter.features if c.type == "image"]
    if images:
        options = images[0].options
        height, width, channels = options.get("height", 28), options.get("width", 28), options.get("channels", 1)
    else:  # a numeric sequence: a 1-D signal, cost as a strip of one row
        height, width, channels = 1, 64, 1
    blocks = max(2, min(4, math.ceil(math.log2(max(height, width) / 8))))  # halvings to about 8 a side
    conv = [32, 64, 128, 128][:blocks]
    side = max(height, width) >> blocks if min(height, width) >= 4 else 1
    conv_adds, flattened = budget.cnn_multiply_adds(height, width, channels, conv)
    hidden = [256] if outputs > 20 else [128]
    adds = conv_adds + budget.mlp_multiply_adds(flattened + _dense_width(starter), hidden, outputs)
    why = {"model": f"{blocks} conv blocks take {width}x{height} down to about {side} a side, flattened (global "
                    "pooling loses where things are)",
           "lr": "Adam's usual rate for conv nets; dropped 3x when validation stalls (plateau)"}
    smoothing = average = 0.0
    if images and get_task(starter.task.task).classes:
        smoothing = IMAGE_LABEL_SMOOTHING
        why["label_smoothing"] = ("keeps 10% of the probability off the true class: image classifiers overfit a few "
                                  "thousand images less (+0.4 to +6 points on three image sets, docs/performance.md)")
        average = ema_decay(starter)
        why["ema_decay"] = (f"validate and keep the weights averaged over about {EMA_EPOCHS} epochs, smoother than "
                            "the last step's: +1.2 and +7.9 points on two image sets (docs/performance.md)")
    chosen = replace(starter, hidden_sizes=hidden, architecture="cnn", cnn_channels=conv, plateau=2, patience=5,
                     dropout=0.3, lr=0.001, label_smoothing=smoothing, ema_decay=average, why=why)
    return _with_epochs(chosen, adds, 5, 100)


REFIT_WHY = "then train again on train + validation rows for the best epoch count (15% more rows)"
REFIT_TABLE_ROWS = 2_000  # tables below this refit: seconds of extra training, never a loss of accuracy measured
REFIT_EPOCHS = 100  # a larger table refits when this many epochs of the chosen model and its refit fit the budget


def _refits(texts_by_class: bool, encoder: str | None, rows: int, columns: list[ColumnGuess]) -> bool:
    """Whether init writes `trainer.refit: true`: for a classifier of texts alone (TF-IDF) and for a small table,
    where it gained or tied on the sets measured (docs/performance.md, "Refit on training + validation rows")."""
    if texts_by_class and encoder is None:
        return True
    return _texts_free(columns) and rows < REFIT_TABLE_ROWS


def _texts_free(columns: list[ColumnGuess]) -> bool:
    """A table: no text, image or sequence column (the cases the refit was measured on for tables)."""
    return all(column.type not in ("text", "image", "sequence") for column in columns)


def _table_refit(starter: Starter, multiply_adds: int) -> Starter:
    """A table of 2,000+ rows refits when 100 epochs of the model chosen and of its refit fit the time budget, so a
    refit never costs the ensemble members or embeddings that fit without it. On 3,000-row tables (with the
    ensemble and embeddings init writes): table1-small 0.851 -> 0.862, mnist1d as 40 columns 0.666 -> 0.681,
    gapminder 0.855 -> 0.879 (before the embeddings), spam 0.955 -> 0.955 (docs/performance.md)."""
    if starter.refit or not _texts_free(starter.columns):
        return starter
    chosen = replace(starter, refit=True)
    return chosen if _run_epoch_seconds(chosen, multiply_adds) * REFIT_EPOCHS <= starter.budget_s else starter


def _mlp_plan(starter: Starter, outputs: int) -> Starter:
    """A table (and bag-of-words text): an MLP sized by rows; more epochs and patience for small tables, whose
    epochs are cheap and noisy."""
    rows = starter.rows
    text = any(column.type == "text" for column in starter.features)
    encoded = any(column.options.get("encoder") for column in starter.features)
    if encoded:  # a few hundred dense columns per text, computed once: a plain MLP over them
        sizes, dropout, lr = [256], 0.2, 0.001
        why = {"model": "the encoder's frozen embedding (computed once, cached) into one hidden layer",
               "lr": "Adam's usual rate; dropped 3x when validation stalls"}
    elif text:  # TF-IDF terms are thousands of sparse columns: one wide layer, dropout, a larger step
        sizes, dropout, lr = [128], 0.3, 0.003
        l2 = f"; {_text_l2(rows)[1]}" if _texts_only(starter.columns) else ""
        why = {"model": "TF-IDF words and word pairs into one hidden layer (beat a 2-layer Transformer on BBC News: "
                        "0.987 against 0.953, docs/text.md)",
               "lr": f"rows of TF-IDF have length 1: small inputs take a larger step{l2}"}
    elif rows < 2_000:
        sizes, dropout, lr = [64, 32], 0.1, 0.003
        why = {"model": f"small for {rows} rows: fewer weights overfit less", "lr": "small tables: a larger step"}
    elif rows < 200_000:
        sizes, dropout, lr = [256, 128], 0.1, 0.001
        why = {"model": f"sized for {rows} rows", "lr": "Adam's usual rate; dropped 3x when validation stalls"}
    else:
        sizes, dropout, lr = [512, 256], 0.1, 0.001
        why = {"model": f"wide for {rows} rows", "lr": "Adam's usual rate; dropped 3x when validation stalls"}
    batch = 256 if rows >= 200_000 else starter.batch_size
    plateau, patience = (5, 12) if rows < 2_000 else (3, 8)
    chosen = replace(starter, hidden_sizes=sizes, batch_size=batch, dropout=dropout, lr=lr, plateau=plateau,
                     patience=patience, why=why)
    if text and not encoded and _texts_only(starter.columns):  # measured on texts alone, not beside table columns
        chosen = replace(chosen, optimizer="adam", weight_decay=_text_l2(rows)[0])
    adds = budget.mlp_multiply_adds(_dense_width(chosen), sizes, outputs)
    if not text and not encoded:
        chosen = _ensemble(chosen, adds)
        chosen = _periodic(chosen, outputs)  # when it fits beside the ensemble chosen without it
        adds = _mlp_adds(chosen, outputs)
        chosen = _table_refit(chosen, adds * chosen.ensemble)  # last: the model comes before a refit of it
    return _with_epochs(chosen, adds * chosen.ensemble, 10, 300 if rows < 2_000 else 200)


ENSEMBLE_MIN_ROWS = 1_000  # fewer rows: within noise either way (breast cancer lost 1 of 143 test rows, wine won 1)
ENSEMBLE_SIZES = (32, 8)  # TabM's 32 members when they fit the time budget, else 8, else a plain MLP
ENSEMBLE_EPOCHS = 100  # the epochs an ensemble is planned for: its best epochs came at 7-101 (docs/performance.md)


def _ensemble(starter: Starter, multiply_adds: int) -> Starter:
    """A table of 1,000+ rows trains the MLP as a TabM ensemble (Gorishniy et al. 2025: members share the hidden
    weights, each with its own scalings, biases and output layer; the prediction is their mean) when 100 epochs of
    it fit the time budget. On 3,000-row tables it beat the plain MLP: mnist1d as 40 columns 0.562 -> 0.609,
    table1-small 0.826 -> 0.851, diamonds' cut 0.699 -> 0.705, spam 0.951 -> 0.955 (docs/performance.md), for about
    4-10x the training time of the plain MLP."""
    if starter.rows < ENSEMBLE_MIN_ROWS:
        return starter
    for members in ENSEMBLE_SIZES:
        seconds = _run_epoch_seconds(starter, multiply_adds * members)
        if seconds * ENSEMBLE_EPOCHS <= starter.budget_s:
            why = {**starter.why, "ensemble": f"TabM: {members} MLPs sharing weights, their mean (mnist1d "
                   "0.562 -> 0.609); 1: one MLP, 4-10x faster"}
            return replace(starter, ensemble=members, why=why)
    return starter


PERIODIC_SIGMA = 0.1  # the frequencies' start, N(0, 0.1) on z-scored values (0.01 tied, 1.0 lost on HMDA)
PERIODIC_MIN_LEVELS = 32  # numeric columns of this many values or fewer (codes, counts 0-15) keep the value alone
PERIODIC_WIDTH = 16  # model.mlp.periodic_width's default: each numeric column's vector
PERIODIC_FREQUENCIES = 16  # model.mlp.periodic_frequencies' default


def _numeric_levels(columns: list[ColumnGuess], table: pa.Table) -> int:
    """Distinct values of the median numeric column (0 without numeric columns)."""
    counts = [pc.count_distinct(table.column(column.name)).as_py() for column in columns if column.type == "numeric"]
    return int(np.median(counts)) if counts else 0


def _periodic(starter: Starter, outputs: int) -> Starter:
    """A table of 1,000+ rows, at most 128 numeric columns and more than 32 values in its median numeric column
    gives each numeric column a periodic embedding beside its value (and bins): ReLU(Linear(sin, cos of 16
    trainable frequencies times the value)), PLR (Gorishniy et al. 2022), which TabM pairs with its ensemble. On
    3,000-row tables, with the ensemble: mnist1d as 40 columns 0.609 -> 0.666 (HistGB 0.698), gapminder 0.855 ->
    0.883 (0.914), diamonds' cut 0.705 -> 0.720 (0.747), HMDA 0.908 -> 0.913, spam 0.955 -> 0.953
    (docs/performance.md). Left out: columns of few values (16 integer levels: table1-small 0.851 -> 0.814, 0.831
    with sigma 0.01) and small tables (one MLP: breast cancer 0.979 -> 0.951, diabetes R^2 0.331 -> 0.243). The
    ensemble comes first: the embeddings are added when 100 epochs of both still fit the time budget."""
    numeric = sum(column.type == "numeric" for column in starter.features)
    if starter.rows < BINS_MIN_ROWS or not numeric or numeric > BINS_MAX_COLUMNS or \
            starter.numeric_levels <= PERIODIC_MIN_LEVELS:
        return starter
    why = {**starter.why, "periodic": "PLR: sin and cos of learned frequencies per numeric column (mnist1d "
           "0.609 -> 0.666, gapminder 0.855 -> 0.883); none: the value alone"}
    chosen = replace(starter, periodic_sigma=PERIODIC_SIGMA, why=why)
    seconds = budget.epoch_seconds(_train_rows(chosen), chosen.batch_size, _mlp_adds(chosen, outputs) * chosen.ensemble)
    return chosen if seconds * ENSEMBLE_EPOCHS <= chosen.budget_s else starter


def _mlp_adds(starter: Starter, outputs: int) -> int:
    """Multiply-adds per row of the MLP, with its periodic embeddings (whose vectors widen the first layer's input:
    _dense_width)."""
    numeric = sum(column.type == "numeric" for column in starter.features) if starter.periodic_sigma else 0
    return budget.mlp_multiply_adds(_dense_width(starter), starter.hidden_sizes, outputs) + (
        numeric * 2 * PERIODIC_FREQUENCIES * PERIODIC_WIDTH)


def _texts_only(columns: list[ColumnGuess]) -> bool:
    """Every kept feature is a text column (what the text defaults were measured on)."""
    kept = [column.type for column in columns if column.type is not None]
    return bool(kept) and all(kind == "text" for kind in kept)


def _text_l2(rows: int) -> tuple[float, str]:
    """The L2 penalty of a TF-IDF model, 1 / training rows (logistic regression's C = 1 in scikit-learn's scaling),
    and why: Adam's coupled weight decay on the mean loss is that penalty. Measured against AdamW's decoupled 0.01
    on the generated reviews, Austen and BBC News (docs/performance.md, 'Text: an L2 penalty from the rows, terms
    weighed by class')."""
    penalty = float(f"{1 / _train_rows_of(rows):.2g}")
    return penalty, f"weight_decay: L2 of 1/{_train_rows_of(rows)} training rows, as logistic regression's C = 1"


def _train_rows_of(rows: int) -> int:
    """The rows of the training split that the written config's 15% + 15% hold-out leaves."""
    return max(1, int(rows * 0.7))


def _decimal(value: float) -> str:
    """A float as YAML reads it back as one: '0.000071', never '7.1e-05' (a string to YAML 1.1)."""
    return f"{value:.10f}".rstrip("0").rstrip(".") if value else "0.0"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds:.2f}s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m" if seconds < 7200 else f"{seconds / 3600:.1f}h"


TEXT_MEMORY_VALUES = 100_000_000  # rows x TF-IDF terms, as float32: 400 MB at most
# supervised_tfidf's terms keep their TF-IDF weight, times 1 + their class ratio: on a few hundred training rows most
# terms are rare, their ratios near 0, and a floor of 0 drops them (docs/performance.md, "Text: small training sets")
CLASS_WEIGHT_FLOOR = 1
MOST_TERMS = 20_000


def _text_options(rows: int, by_class: bool) -> dict[str, Any]:
    """A text column as TF-IDF words and word pairs; the vocabulary is every term of 2+ training texts, capped so
    that rows x terms fit in memory. For a classifier each term is also weighed by how well it tells a class from
    the rest (supervised_tfidf, NBSVM's log-count ratio): generated reviews 0.779 -> 0.787 (three seeds: +0.007 to
    +0.012), Austen 0.846 either way (its own test split's log loss 0.63 -> 0.51), BBC News 0.986 -> 0.987
    (docs/performance.md). The weight is 1 + the ratio (`class_weight_floor: 1`), so that the many rare terms of
    a few hundred training rows, whose ratios are near 0, are not dropped (docs/performance.md, "Text: small
    training sets")."""
    terms = max(1000, min(MOST_TERMS, TEXT_MEMORY_VALUES // max(rows, 1)) // 1000 * 1000)
    if not by_class:
        return {"ngrams": 2, "weighting": "tfidf", "max_tokens": terms}
    return {"ngrams": 2, "weighting": "supervised_tfidf", "class_weight_floor": CLASS_WEIGHT_FLOOR, "max_tokens": terms}


def crop_padding(height: int, width: int) -> int:
    """Random shifts of up to a tenth of the shorter side (at least a pixel): safe for any image set, unlike flips
    (a mirrored 2 is no 2) or rotations. An eighth (3 pixels of 28) lost 0.3 and 7 points against a tenth on two
    28x28 sets (docs/performance.md)."""
    return max(1, min(height, width) // 10)


def _describe(column: ColumnGuess, table: pa.Table, path: Path, rows: int, by_class: bool) -> ColumnGuess:
    """A text column as TF-IDF terms; an image column with the size and channels of its images (a sample's
    headers) and a fitting random crop."""
    if column.type == "text":
        return ColumnGuess(column.name, column.type, column.reason, _text_options(rows, by_class))
    if column.type == "numeric":
        return _numeric_scaling(column, table)
    if column.type != "image" or not pa.types.is_string(table.column(column.name).type):
        return column
    from luodi.data.images import describe_images

    paths = [value for value in table.column(column.name).to_pylist() if value]
    found = describe_images(paths, path if path.is_dir() else path.parent)
    height, width, channels = found["height"], found["width"], found["channels"]
    options = {"height": height, "width": width, "channels": channels,
               "augment": {"crop_padding": crop_padding(height, width)}}
    size = "x".join(map(str, found["found"]))
    resized = f", resized to {width}x{height}" if (width, height) != found["found"] else ""
    reason = f"{column.reason}: {size} {'gray' if channels == 1 else 'color'}{resized}"
    return ColumnGuess(column.name, column.type, reason, options)


SKEWED = 10.0  # |skewness| from which a numeric column is log-scaled (heavy tails only: see _numeric_scaling)


def _skewness(values: np.ndarray) -> float:
    spread = values.std()
    return float(((values - values.mean()) ** 3).mean() / spread ** 3) if spread > 1e-12 else 0.0


def _numeric_scaling(column: ColumnGuess, table: pa.Table) -> ColumnGuess:
    """A heavy-tailed column (amounts, counts: |skewness| >= 10, halved or better by a log) is scaled as
    sign(x)*log(1+|x|), then z-scored: z-scoring alone squeezes most rows of such a column into a sliver next to
    its tail. On generated 20,000-row, 26-class tables it took accuracy from 0.826 to 0.907 (every column
    skewed; HistGradientBoosting 0.882) and from 0.912 to 0.940 (half of them; HistGradientBoosting 0.875).
    Moderately skewed columns stay z-scored: logging breast cancer's two (skewness 3.4 and 5.4) cost 3 of 143
    test rows (docs/performance.md)."""
    values = table.column(column.name).to_numpy(zero_copy_only=False).astype(np.float64)
    values = values[np.isfinite(values)]
    if values.size < 20:
        return column
    before = _skewness(values)
    after = _skewness(signed_log(values))
    if abs(before) < SKEWED or abs(after) >= abs(before) / 2:
        return column
    reason = f"{column.reason}, heavy-tailed (skewness {before:.1f}; {after:.1f} after the log)"
    return ColumnGuess(column.name, column.type, reason, {"normalization": "log"})


BINS = 16  # piecewise-linear bins per numeric column
BINS_MIN_ROWS = 1_000  # fewer rows: too few per bin (breast cancer, 569 rows, lost a test row; diabetes 0.05 R^2)
BINS_MAX_COLUMNS = 128  # more numeric columns (pixels of an image table): (1 + bins) inputs each is too wide
ONE_SCALE = 2.0  # numeric columns whose spreads are all within this factor (10th to 90th percentile) share a unit
ONE_SCALE_COLUMNS = 8  # ... when there are at least this many of them: samples of a signal, pixels, a measurement


def _spread(table: pa.Table, name: str) -> float:
    values = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
    values = values[np.isfinite(values)]
    return float(values.std()) if values.size else 0.0


def _numeric_bins(columns: list[ColumnGuess], table: pa.Table, rows: int) -> list[ColumnGuess]:
    """Numeric columns of a table as their value plus 16 piecewise-linear bins between training quantiles
    (`encoding: piecewise_linear`, Gorishniy et al. 2022): the MLP can then learn thresholds per column as gradient
    boosting does. On 3,000-row tables of columns in different units it closed much of the gap to
    HistGradientBoosting (gapminder's continent 0.741 -> 0.857, HistGB 0.914; diamonds' cut: 0.673 -> 0.699, HistGB
    0.747; spam 0.942 -> 0.951, HistGB 0.964; diamonds' log price R^2 0.986 -> 0.990, HistGB 0.991; HMDA 0.909 ->
    0.899, HistGB 0.899). Left out: small tables (bins of few rows overfit), very wide ones,
    and columns that share one scale (8+ numeric columns whose spreads are within a factor 2: samples of one signal,
    generated Gaussian clusters), whose information is in linear combinations across columns: there the bins lost
    (mnist1d as 40 columns 0.562 -> 0.496; 16 integer columns of clusters 0.826 -> 0.781). docs/performance.md."""
    numeric = [column for column in columns if column.type == "numeric"]
    if rows < BINS_MIN_ROWS or not numeric or len(numeric) > BINS_MAX_COLUMNS:
        return columns
    spreads = np.array([_spread(table, column.name) for column in numeric])
    spreads = spreads[spreads > 1e-12]
    if len(spreads) >= ONE_SCALE_COLUMNS and np.percentile(spreads, 90) <= ONE_SCALE * np.percentile(spreads, 10):
        return columns
    return [ColumnGuess(column.name, column.type, column.reason,
                        {**column.options, "encoding": "piecewise_linear", "bins": BINS})
            if column.type == "numeric" else column for column in columns]


def _bins_note(starter: Starter) -> str:
    """The why of `encoding: piecewise_linear`, once above the features that use it."""
    if not any(column.options.get("encoding") == "piecewise_linear" for column in starter.features):
        return ""
    return ("# numeric columns: the value and 16 piecewise-linear bins between training quantiles, so the MLP\n"
            "# learns thresholds per column as gradient boosting does (gapminder 0.741 -> 0.857, diamonds' cut\n"
            "# 0.673 -> 0.699, spam 0.942 -> 0.951 at 3,000 rows; docs/performance.md). encoding: value gives one\n"
            "# input per column.\n")


def _flow(options: dict[str, Any]) -> str:
    return ", ".join(f"{key}: {{{_flow(value)}}}" if isinstance(value, dict) else f"{key}: {value}"
                     for key, value in options.items())


def _model(starter: Starter) -> str:
    why = starter.why.get("model", "")
    mlp = f"""  hidden_sizes: {starter.hidden_sizes}
  activation: relu
  dropout: {starter.dropout}                          # between the hidden layers: regularization
  normalization: none                   # none, batch or layer (the MLP's hidden layers)
"""
    settings: dict[str, Any] = {"ensemble": starter.ensemble} if starter.ensemble > 1 else {}
    if starter.periodic_sigma:
        settings |= {"numeric_embedding": "periodic", "periodic_sigma": starter.periodic_sigma}
    reasons = [starter.why[key] for key in ("ensemble", "periodic") if key in starter.why]
    if len(reasons) == 1:
        mlp += f"  mlp: {{{_flow(settings)}}}     # {reasons[0]}\n"
    elif reasons:  # on lines of their own above
        mlp += "".join(f"  # {reason}\n" for reason in reasons) + f"  mlp: {{{_flow(settings)}}}\n"
    if starter.architecture == "cnn":
        return f"""model:
  type: cnn                             # {why}
  cnn: {{channels: {starter.cnn_channels}, kernel_size: 3, batch_norm: true, pool: max, dropout: 0.1, output: flatten}}
{mlp}"""
    if starter.architecture == "transformer":
        return f"""model:
  type: transformer                     # long free text: tokens (BPE fitted on the train split), not bag of words
  transformer: {{layers: 2, heads: 4, width: 64, positions: learned, pooling: mean, dropout: 0.1}}
{mlp}"""
    text = any(column.type == "text" and not column.options.get("encoder") for column in starter.features)
    hint = ("  # A pretrained sentence encoder can do better on short texts: `luodi init --encoder ./minilm` (a\n"
            "  # local Hugging Face folder; its embeddings are computed once and cached). See docs/text.md.\n"
            ) if text else ""
    return f"""model:
  type: mlp                             # {why}
{hint}{mlp}"""


def _refit(starter: Starter) -> str:
    if not starter.refit:
        return ""
    return f"  refit: true                          # {REFIT_WHY}\n"


def _ema(starter: Starter) -> str:
    if not starter.ema_decay:
        return ""
    return f"  ema_decay: {starter.ema_decay}                      # {starter.why.get('ema_decay', '')}\n"


def _warmup(starter: Starter) -> int:
    """One epoch of steps, at most 500."""
    return min(500, math.ceil(_train_rows(starter) / starter.batch_size))


def render(starter: Starter, data_path: str, source: Path, config_path: str | None = None) -> str:
    """The starter config as commented YAML; every key is in docs/config.md. `config_path`: the file it is
    written to, named in the 'Train with' line."""
    train_with = f"luodi train {config_path}" if config_path else "luodi.api.train(config)"
    features = "\n".join(
        f"  - {{name: {_quote(c.name)}, type: {c.type}{', ' + _flow(c.options) if c.options else ''}}}  # {c.reason}"
        for c in starter.features
    )
    dropped = "\n".join(f"  # {_quote(c.name)}: {c.reason.removeprefix('dropped: ')}" for c in starter.dropped)
    stop_metric = "loss"
    positive = (f"  positive_class: {_quote(starter.positive)}  # precision, recall, F1 and ROC AUC are of this "
                "class\n" if starter.positive is not None else "")
    if starter.label_smoothing:
        positive += f"  label_smoothing: {starter.label_smoothing}  # {starter.why.get('label_smoothing', '')}\n"
    if any(column.type == "image" for column in starter.features):
        features = ("  # augment: random shifts of up to crop_padding pixels, safe for any images. Add "
                    "horizontal_flip: true\n  # only where a mirrored image keeps its class (clothes, animals; never "
                    "digits or text).\n" + features)
    return align_comments(f"""\
# luodi config written by `luodi init` on {time.strftime('%Y-%m-%d')} from {source.name}
# ({starter.rows} rows, {len(starter.columns) + 1} columns). Every key is documented in docs/config.md.
# Train with: {train_with}    Override any key: --set trainer.epochs=20

name: {_quote(starter.name)}                    # model name in the registry

data:
  train: {_quote(data_path)}            # CSV, Parquet, JSONL or an image folder, relative to this file
  split:                                # held out from the same file, stratified by target
    validation: 0.15
    test: 0.15
    stratify: true
    seed: 42

target:
  name: {_quote(starter.target)}
  task: {starter.task.task}                      # inferred: {starter.task.reason}
  class_weights: none                   # or: balanced, or {{label: weight}}
{positive}
{_bins_note(starter)}input_features:
{features}
{"  # dropped columns (add them back above to use them):" + chr(10) + dropped if dropped else ""}

{_model(starter)}
trainer:
  epochs: {starter.epochs}                          # {starter.why.get("epochs", "the most")}
  batch_size: {starter.batch_size}
  optimizer: {{type: {starter.optimizer}, lr: {starter.lr}, weight_decay: {_decimal(starter.weight_decay)}}}\
   # {starter.why.get("lr", "")}
  # plateau: lr x gamma after `patience` epochs without improvement; one epoch of warmup steadies Adam's start
  scheduler: {{type: plateau, gamma: 0.3, patience: {starter.plateau}, warmup_steps: {_warmup(starter)}}}
  gradient_clip: 1.0
  early_stopping: {{metric: {stop_metric}, patience: {starter.patience}}}   # after two lr drops that did not help
  checkpoint_every_steps: 0             # also checkpoint every N steps (0: at each epoch end)
  seed: 42
{_ema(starter)}{_refit(starter)}
runtime:
  device: auto                          # uses CUDA when present
  threads: auto                         # cores that are free now; set a number to pin it
  allocator: tuned                      # reuse freed memory instead of page-faulting each step
""")


COMMENT_COLUMN = 40  # where the inline comments of a written config start
LONGEST_ALIGNED = 72  # a line with more code than this keeps its comment two spaces after it


def _comment_at(line: str) -> int | None:
    """Where the inline comment of a YAML line starts (` #` outside double quotes, after some code); None if it
    has none (a full-line comment is not inline)."""
    quoted = escaped = False
    for index, char in enumerate(line):
        if quoted:
            escaped, quoted = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            quoted = True
        elif char == "#" and index and line[index - 1] == " " and line[:index].strip():
            return index
    return None


def align_comments(text: str) -> str:
    """Inline comments in one column: COMMENT_COLUMN, or further right for a run of consecutive commented lines
    whose code is longer (a feature list with long column names), so that each block reads as a table."""
    lines = text.split("\n")
    parts = []
    for line in lines:
        at = _comment_at(line)
        parts.append(None if at is None else (line[:at].rstrip(), line[at:]))
    out, index = [], 0
    while index < len(parts):
        if parts[index] is None:
            out.append(lines[index])
            index += 1
            continue
        end = index
        while end < len(parts) and parts[end] is not None:
            end += 1
        block = [part for part in parts[index:end] if part is not None]
        fitting = [len(code) for code, _ in block if len(code) <= LONGEST_ALIGNED]
        column = max([COMMENT_COLUMN - 2, *fitting]) + 2
        out += [f"{code.ljust(column - 2)}  {comment}" for code, comment in block]
        index = end
    return "\n".join(out)


def _quote(value: str) -> str:
    """A YAML scalar that reads back as the same string."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-/ ]*", value) and value.strip() == value and \
            value.lower() not in ("yes", "no", "true", "false", "on", "off", "null", "y", "n", "~"):
        return value
    return '"' + "".join(_escape(char) for char in value) + '"'


def _escape(char: str) -> str:
    """One character inside a double-quoted YAML scalar; control characters become escapes (a raw newline
    would fold to a space, and would end a comment line)."""
    if char in '"\\':
        return "\\" + char
    if char == " " or char.isprintable():
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def relative_data_path(data: Path, config_path: Path) -> str:
    """The data path as written into the config: relative to the config's folder when possible."""
    try:
        return os.path.relpath(data.resolve(), config_path.resolve().parent)
    except ValueError:  # another drive on Windows
        return str(data.resolve())


def starter_for_rows(rows: Any, target: str, task: str | None = None, name: str | None = None,
                     time_budget: float = budget.DEFAULT_BUDGET_S, encoder: str | None = None,
                     ) -> tuple[Starter, dict[str, Any]]:
    """What `luodi init` infers from rows in memory (a DataFrame, an Arrow table, records): the plan, and the config
    as a dict whose `data.train` is those rows (for `luodi.train`); the model is named `name` or 'model'."""
    import yaml

    from luodi.config import IN_MEMORY
    from luodi.data.sources import to_table

    if not isinstance(target, str):
        raise InputError(f"target must be a column name, got {type(target).__name__}")
    table = to_table(rows, IN_MEMORY)
    starter = plan(table, Path(IN_MEMORY), target, task, name or "model", time_budget, encoder)
    config = yaml.safe_load(render(starter, IN_MEMORY, Path(IN_MEMORY)))
    config["data"]["train"] = rows
    return starter, config


def config_from_rows(rows: Any, target: str) -> dict[str, Any]:
    """The config `luodi init` would write for rows in memory, with those rows as `data.train`."""
    return starter_for_rows(rows, target)[1]


def search_section(starter: Starter) -> str:
    """`luodi init --tune`: a `search:` section for `luodi tune` around what `plan` chose, each range with why."""
    width, batch = starter.hidden_sizes[0], starter.batch_size
    lines = ["", "# luodi tune CONFIG --trials 30: each trial trains this config with values drawn from these ranges",
             "# (Optuna TPE); trials whose validation loss lags the median are stopped early. See docs/tuning.md.",
             "search:"]
    if starter.architecture == "cnn":
        lines += [
            "  trainer.optimizer.lr: {low: 0.0003, high: 0.003, log: true}   # conv nets tend to diverge above 3e-3",
            "  model.cnn.channels: {choices: [[32, 64], [32, 64, 128]]}     # a third block: more capacity, 2x time",
            "  model.cnn.output: {choices: [avg, flatten]}                  # flatten keeps where things are",
            "  model.hidden_sizes: {choices: [[64], [128], [256]]}",
            "  model.dropout: {low: 0.0, high: 0.4}",
        ]
    elif starter.architecture == "transformer":
        lines += [
            "  trainer.optimizer.lr: {low: 0.0001, high: 0.003, log: true}  # attention wants smaller steps",
            "  model.transformer.layers: {low: 1, high: 4}                  # depth: cost grows linearly",
            "  model.transformer.width: {choices: [64, 128]}                # both divide by the 4 heads",
            "  model.transformer.dropout: {low: 0.0, high: 0.3}",
            "  model.hidden_sizes: {choices: [[64], [128]]}",
        ]
    else:
        lines += [
            "  trainer.optimizer.lr: {low: 0.0003, high: 0.01, log: true}   # the setting that matters most: log scale",
            f"  # width and depth: around the {width} wide first layer chosen for {starter.rows} rows",
            f"  model.hidden_sizes: {{choices: [[{width}], [{width}, {width // 2}], [{width * 2}, {width}], "
            f"[{width * 2}, {width}, {width // 2}]]}}",
            "  model.dropout: {low: 0.0, high: 0.4}                         # more helps small tables overfit less",
            "  model.normalization: {choices: [none, batch]}",
        ]
    lines += [
        f"  trainer.batch_size: {{choices: [{max(8, batch // 2)}, {batch}, {batch * 2}]}}"
        "                   # smaller: noisier steps, often better minima",
        "  trainer.optimizer.weight_decay: {low: 0.00001, high: 0.1, log: true}",
    ]
    return "\n".join(lines) + "\n"
