"""Seeded train / validation / test splits, stratified by class for classification tasks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from luodi.config import SplitConfig


@dataclass(frozen=True)
class Splits:
    train: pa.Table
    validation: pa.Table
    test: pa.Table

    def sizes(self) -> dict[str, int]:
        return {"train": self.train.num_rows, "validation": self.validation.num_rows, "test": self.test.num_rows}


def split_indices(
    n_rows: int, config: SplitConfig, strata: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices for train, validation and test; each stratum is split in the configured proportions.

    Within every stratum the rows are shuffled with the seed and cut at the cumulative fractions, so each
    class keeps its share in every split (to within one row) and the same seed gives the same rows.
    """
    rng = np.random.default_rng(config.seed)
    groups = [np.arange(n_rows)] if strata is None else _groups(strata)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for group in groups:
        order = group[rng.permutation(len(group))]
        n_test = int(round(len(order) * config.test))
        n_validation = int(round(len(order) * config.validation))
        parts[2].append(order[:n_test])
        parts[1].append(order[n_test:n_test + n_validation])
        parts[0].append(order[n_test + n_validation:])
    train, validation, test = (np.sort(np.concatenate(part)) for part in parts)
    return train, validation, test


def _groups(strata: np.ndarray) -> list[np.ndarray]:
    _, inverse = np.unique(strata, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    boundaries = np.flatnonzero(np.diff(inverse[order])) + 1
    return np.split(order, boundaries)


QUANTILE_BINS = 10


def quantile_bins(values: np.ndarray, bins: int = QUANTILE_BINS) -> np.ndarray:
    """Bin a numeric target by its quantiles, so every split covers its whole range (regression strata)."""
    bins = max(1, min(bins, len(values) // 10))
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
    return np.searchsorted(edges, values, side="right")


def split_table(table: pa.Table, config: SplitConfig, target: str | None, task: str = "binary") -> Splits:
    """Split one table, stratified on `target` when given: by class, or by quantile bin for regression."""
    strata = None
    if target is not None and config.stratify:
        column = table.column(target)
        if task == "regression":
            strata = quantile_bins(column.to_numpy(zero_copy_only=False).astype(np.float64))
        else:
            strata = pc.cast(column, pa.string()).to_numpy(zero_copy_only=False)
    train, validation, test = split_indices(table.num_rows, config, strata)
    return Splits(table.take(train), table.take(validation), table.take(test))
