"""Type inference: the task from a target column, and a feature type or a reason to drop for each column."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from luodi.data.infer import column_values, infer_column, infer_task
from luodi.errors import InputError


def column(values: list[Any], kind: pa.DataType | None = None) -> pa.ChunkedArray:
    return pa.chunked_array([pa.array(values, kind)])


RNG = np.random.default_rng(0)


@pytest.mark.parametrize(("values", "task"), [
    (["yes", "no", "no", "yes"] * 10, "binary"),
    ([0, 1] * 20, "binary"),
    ([True, False, None] * 10, "binary"),
    (RNG.integers(0, 4, 200).tolist(), "multiclass"),
    ([float(v) for v in RNG.integers(0, 3, 120)], "multiclass"),
    (["red", "green", "blue"] * 10, "multiclass"),
    (RNG.normal(size=60).tolist(), "regression"),
    (RNG.integers(0, 500, 200).tolist(), "regression"),
])
def test_infer_task(values: list[Any], task: str) -> None:
    assert infer_task(column(values), "y").task == task


@pytest.mark.parametrize("values", [["a"] * 10, [None] * 5, [3, 3, None]])
def test_single_value_target_is_refused(values: list[Any]) -> None:
    with pytest.raises(InputError, match="'y'"):
        infer_task(column(values, pa.string() if values[0] is None else None), "y")


def test_too_many_text_classes_is_refused() -> None:
    with pytest.raises(InputError, match="--task"):
        infer_task(column([f"label {i}" for i in range(1200)]), "y")


@pytest.mark.parametrize(("name", "values", "kind"), [
    ("customer_id", list(range(1000, 1040)), None),            # id by name
    ("counter", list(range(5, 45)), None),                     # consecutive integers
    ("order_ref", [f"R-{i:05d}" for i in range(40)], None),    # unique strings
    ("id", [f"{i}" for i in RNG.permutation(40)], None),       # id-like name, unique
    ("country", ["NO"] * 40, None),                            # constant
    ("blank", [None] * 40, pa.float64()),                      # all missing
    ("blank_text", [None] * 40, pa.string()),
    ("when", [date(2024, 1, 1) + timedelta(days=i) for i in range(40)], None),
])
def test_dropped_columns(name: str, values: list[Any], kind: pa.DataType | None) -> None:
    guess = infer_column(column(values, kind), name)
    assert guess.type is None
    assert guess.reason.startswith("dropped: ")


@pytest.mark.parametrize(("name", "values", "expected"), [
    ("review", [" ".join(RNG.choice(["good", "bad", "fine", "slow", "fast"], 8)) for _ in range(40)], "text"),
    ("rating", RNG.integers(1, 6, 200).tolist(), "category"),
    ("city", RNG.choice(["Oslo", "Bergen", "Tromso"], 40).tolist(), "category"),
    ("paperless", ["yes", "no", None] * 14, "binary"),
    ("flag", [True, False] * 20, "binary"),
    ("price", RNG.normal(100, 10, 40).tolist(), "numeric"),
    ("count", RNG.integers(0, 1000, 40).tolist(), "numeric"),
])
def test_kept_columns(name: str, values: list[Any], expected: str) -> None:
    assert infer_column(column(values), name).type == expected


def test_missing_cells_are_reported() -> None:
    guess = infer_column(column([1.5, None, 2.5, 3.5]), "x")
    assert guess.type == "numeric"
    assert "1 missing" in guess.reason


def test_unknown_column_lists_columns_with_hint() -> None:
    table = pa.table({"churned": [1], "tenure": [2]})
    with pytest.raises(InputError, match="did you mean 'churned'") as caught:
        column_values(table, "churnd")
    assert "tenure" in str(caught.value)
