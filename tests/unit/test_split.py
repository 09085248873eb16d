"""Splits: stratified proportions, determinism per seed, disjoint parts that cover every row."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from luodi.config import SplitConfig
from luodi.data.split import quantile_bins, split_indices, split_table
from luodi.tasks import get_task


def labels(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(np.array(["a", "b", "c", "d"]), 503, p=[0.55, 0.25, 0.15, 0.05])


@pytest.mark.parametrize(("validation", "test"), [(0.15, 0.15), (0.2, 0.1), (0.3, 0.0), (0.05, 0.45)])
def test_stratified_within_one_row_per_class(validation: float, test: float) -> None:
    strata = labels()
    config = SplitConfig(validation=validation, test=test, seed=3)
    parts = dict(zip(("train", "validation", "test"), split_indices(len(strata), config, strata), strict=True))
    fractions = {"validation": validation, "test": test, "train": 1 - validation - test}
    for label in np.unique(strata):
        size = int((strata == label).sum())
        for name, indices in parts.items():
            count = int((strata[indices] == label).sum())
            assert abs(count - size * fractions[name]) <= 1, (label, name, count, size)


@pytest.mark.parametrize("stratified", [True, False])
def test_disjoint_and_covering(stratified: bool) -> None:
    strata = labels()
    train, validation, test = split_indices(len(strata), SplitConfig(), strata if stratified else None)
    together = np.concatenate([train, validation, test])
    assert len(together) == len(strata)
    assert np.array_equal(np.sort(together), np.arange(len(strata)))
    assert all(np.all(np.diff(part) > 0) for part in (train, validation, test))  # sorted, no repeats


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    strata = labels()
    first = split_indices(len(strata), SplitConfig(seed=11), strata)
    again = split_indices(len(strata), SplitConfig(seed=11), strata)
    other = split_indices(len(strata), SplitConfig(seed=12), strata)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[2], other[2])


def test_split_table_by_class() -> None:
    strata = labels()
    table = pa.table({"x": np.arange(len(strata)), "y": strata})
    splits = split_table(table, SplitConfig(seed=5), target="y", stratify=get_task("multiclass").stratify)
    assert sum(splits.sizes().values()) == table.num_rows
    for part in (splits.train, splits.validation, splits.test):
        assert set(part.column("y").to_pylist()) == {"a", "b", "c", "d"}
    rows = splits.train.column("x").to_pylist() + splits.validation.column("x").to_pylist() \
        + splits.test.column("x").to_pylist()
    assert sorted(rows) == list(range(table.num_rows))


def test_split_table_regression_covers_the_range() -> None:
    values = np.random.default_rng(1).exponential(10.0, 400)
    table = pa.table({"y": values})
    splits = split_table(table, SplitConfig(seed=2), target="y", stratify=get_task("regression").stratify)
    for part in (splits.validation, splits.test):
        sample = np.asarray(part.column("y").to_pylist())
        assert sample.max() > np.quantile(values, 0.85)
        assert sample.min() < np.quantile(values, 0.15)


def test_split_table_unstratified_ignores_target() -> None:
    table = pa.table({"y": ["a"] * 90 + ["b"] * 10})
    config = SplitConfig(stratify=False, seed=4)
    plain = split_table(table, config, target="y")
    assert plain.sizes() == split_table(table, config, target=None).sizes()


def test_quantile_bins_are_balanced() -> None:
    values = np.random.default_rng(0).normal(size=1000)
    bins = quantile_bins(values)
    counts = np.bincount(bins)
    assert len(counts) == 10
    assert counts.min() >= 95 and counts.max() <= 105


def test_quantile_bins_small_input_uses_fewer_bins() -> None:
    assert set(quantile_bins(np.arange(25.0)).tolist()) == {0, 1}
    assert set(quantile_bins(np.arange(5.0)).tolist()) == {0}
