"""`luodi init` for tables of numbers and categories: heavy-tailed columns log-scaled, piecewise-linear bins,
an MLP sized by rows, a TabM ensemble and periodic embeddings when they fit the time budget, and the refit."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from luodi.columns import signed_log
from luodi.data import budget
from luodi.data.infer import ColumnGuess
from luodi.data.starter_core import (
    Starter,
    mlp_adds,
    mlp_epochs,
    mlp_plan,
    run_epoch_seconds,
    train_rows,
)


def table_plan(starter: Starter, outputs: int) -> Starter:
    """A table: an MLP sized by rows, then the ensemble, the periodic embeddings and the refit that fit the time
    budget, in that order."""
    rows = starter.rows
    if rows < 2_000:
        sizes, dropout, lr = [64, 32], 0.1, 0.003
        why = {"model": f"small for {rows} rows: fewer weights overfit less", "lr": "small tables: a larger step"}
    elif rows < 200_000:
        sizes, dropout, lr = [256, 128], 0.1, 0.001
        why = {"model": f"sized for {rows} rows", "lr": "Adam's usual rate; dropped 3x when validation stalls"}
    else:
        sizes, dropout, lr = [512, 256], 0.1, 0.001
        why = {"model": f"wide for {rows} rows", "lr": "Adam's usual rate; dropped 3x when validation stalls"}
    chosen = mlp_plan(starter, sizes, dropout, lr, why)
    chosen = _ensemble(chosen, mlp_adds(chosen, outputs))
    chosen = _periodic(chosen, outputs)  # when it fits beside the ensemble chosen without it
    chosen = _table_refit(chosen, mlp_adds(chosen, outputs) * chosen.ensemble)  # last: the model comes before a refit
    return mlp_epochs(chosen, outputs)


REFIT_TABLE_ROWS = 2_000  # tables below this refit: seconds of extra training, never a loss of accuracy measured
REFIT_EPOCHS = 100  # a larger table refits when this many epochs of the chosen model and its refit fit the budget


def texts_free(columns: list[ColumnGuess]) -> bool:
    """A table: no text, image or sequence column (the cases the refit was measured on for tables)."""
    return all(column.type not in ("text", "image", "sequence") for column in columns)


def _table_refit(starter: Starter, multiply_adds: int) -> Starter:
    """A table of 2,000+ rows refits when 100 epochs of the model chosen and of its refit fit the time budget, so a
    refit never costs the ensemble members or embeddings that fit without it. On 3,000-row tables (with the
    ensemble and embeddings init writes): table1-small 0.851 -> 0.862, mnist1d as 40 columns 0.666 -> 0.681,
    gapminder 0.855 -> 0.879 (before the embeddings), spam 0.955 -> 0.955 (docs/performance.md)."""
    if starter.refit or not texts_free(starter.columns):
        return starter
    chosen = replace(starter, refit=True)
    return chosen if run_epoch_seconds(chosen, multiply_adds) * REFIT_EPOCHS <= starter.budget_s else starter


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
        seconds = run_epoch_seconds(starter, multiply_adds * members)
        if seconds * ENSEMBLE_EPOCHS <= starter.budget_s:
            why = {**starter.why, "ensemble": f"TabM: {members} MLPs sharing weights, their mean (mnist1d "
                   "0.562 -> 0.609); 1: one MLP, 4-10x faster"}
            return replace(starter, ensemble=members, why=why)
    return starter


PERIODIC_SIGMA = 0.1  # the frequencies' start, N(0, 0.1) on z-scored values (0.01 tied, 1.0 lost on HMDA)
PERIODIC_MIN_LEVELS = 32  # numeric columns of this many values or fewer (codes, counts 0-15) keep the value alone


def numeric_levels(columns: list[ColumnGuess], table: pa.Table) -> int:
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
    seconds = budget.epoch_seconds(train_rows(chosen), chosen.batch_size, mlp_adds(chosen, outputs) * chosen.ensemble)
    return chosen if seconds * ENSEMBLE_EPOCHS <= chosen.budget_s else starter


SKEWED = 10.0  # |skewness| from which a numeric column is log-scaled (heavy tails only: see numeric_scaling)


def _skewness(values: np.ndarray) -> float:
    spread = values.std()
    return float(((values - values.mean()) ** 3).mean() / spread ** 3) if spread > 1e-12 else 0.0


def numeric_scaling(column: ColumnGuess, table: pa.Table) -> ColumnGuess:
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


def numeric_bins(columns: list[ColumnGuess], table: pa.Table, rows: int) -> list[ColumnGuess]:
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

