"""The shared core of `luodi init`'s planners: `Starter` (what init decided), the training split's rows, the
combiner MLP's input width and cost, its layers' schedule, and the epoch cap that fits the time budget.

The planners by input kind build on it: `starter_tables` (numbers, categories), `starter_text` (free text),
`starter_images` (images and numeric sequences); `starter` picks one and renders the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from luodi.data import budget
from luodi.data.infer import ColumnGuess, TaskGuess


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


PERIODIC_WIDTH = 16  # model.mlp.periodic_width's default: each numeric column's vector
PERIODIC_FREQUENCIES = 16  # model.mlp.periodic_frequencies' default


def train_rows(starter: Starter) -> int:
    return train_rows_of(starter.rows)


def train_rows_of(rows: int) -> int:
    """The rows of the training split that the written config's 15% + 15% hold-out leaves."""
    return max(1, int(rows * 0.7))


def dense_width(starter: Starter) -> int:
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


def with_epochs(starter: Starter, multiply_adds: int, lowest: int, highest: int) -> Starter:
    """The epoch cap from the time budget and the estimated epoch, with the comment saying how it was chosen."""
    seconds = run_epoch_seconds(starter, multiply_adds)
    epochs = budget.epochs_within(starter.budget_s, seconds, lowest, highest)
    why = dict(starter.why)
    limit = "the time budget" if epochs < highest else f"at most {highest}"
    refit = " and its refit" if starter.refit else ""
    why["epochs"] = (f"~{_duration(seconds)} an epoch{refit} on a laptop CPU, {_duration(starter.budget_s)} budget "
                     f"(--time-budget): {limit}; early stopping usually ends sooner")
    return replace(starter, epochs=epochs, epoch_seconds=seconds, why=why)


def run_epoch_seconds(starter: Starter, multiply_adds: int) -> float:
    """Estimated seconds an epoch of the run costs: the epoch and, with a refit, the refit's epoch (phase two runs
    as many epochs as phase one chose, over 85/70 the rows, with no validation)."""
    rows, batch = train_rows(starter), starter.batch_size
    refit = budget.refit_epoch_seconds(rows, batch, multiply_adds) if starter.refit else 0.0
    return budget.epoch_seconds(rows, batch, multiply_adds) + refit


def mlp_adds(starter: Starter, outputs: int) -> int:
    """Multiply-adds per row of the MLP, with its periodic embeddings (whose vectors widen the first layer's input:
    dense_width)."""
    numeric = sum(column.type == "numeric" for column in starter.features) if starter.periodic_sigma else 0
    return budget.mlp_multiply_adds(dense_width(starter), starter.hidden_sizes, outputs) + (
        numeric * 2 * PERIODIC_FREQUENCIES * PERIODIC_WIDTH)


def mlp_plan(starter: Starter, sizes: list[int], dropout: float, lr: float, why: dict[str, str]) -> Starter:
    """The combiner MLP's layers (tables and texts alike), with the batch and patience its rows call for: more
    patience for small tables, whose epochs are cheap and noisy; larger batches for very large ones."""
    rows = starter.rows
    batch = 256 if rows >= 200_000 else starter.batch_size
    plateau, patience = (5, 12) if rows < 2_000 else (3, 8)
    return replace(starter, hidden_sizes=sizes, batch_size=batch, dropout=dropout, lr=lr, plateau=plateau,
                   patience=patience, why=why)


def mlp_epochs(starter: Starter, outputs: int) -> Starter:
    """The epoch cap of an MLP plan within the time budget: up to 300 epochs for small tables, else 200."""
    adds = mlp_adds(starter, outputs) * starter.ensemble
    return with_epochs(starter, adds, 10, 300 if starter.rows < 2_000 else 200)


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds:.2f}s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m" if seconds < 7200 else f"{seconds / 3600:.1f}h"
