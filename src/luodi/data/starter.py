"""`luodi init`: infer the task and feature types from a table and plan a commented starter config.

`plan` reads the target and the columns, describes each column as its kind wants and hands the plan to the
planner of the table's inputs: `starter_images` (images, numeric sequences), `starter_text` (free text) or
`starter_tables`, which share `starter_core`; `starter_render` writes the YAML. The names callers use are all here.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from luodi.columns import as_strings, binary_order
from luodi.data import budget
from luodi.data.infer import ColumnGuess, TaskGuess, column_values, infer_column, infer_task
from luodi.data.starter_core import Starter
from luodi.data.starter_images import conv_plan, describe_image_column
from luodi.data.starter_render import align_comments, render, search_section
from luodi.data.starter_tables import (
    REFIT_TABLE_ROWS,
    numeric_bins,
    numeric_levels,
    numeric_scaling,
    table_plan,
    texts_free,
)
from luodi.data.starter_text import text_options, text_plan, texts_only
from luodi.errors import InputError

__all__ = ["Starter", "align_comments", "config_from_rows", "model_name", "plan", "relative_data_path", "render",
           "search_section", "starter_for_rows"]

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
    by_class = get_task(guess.task).classes and texts_only(columns)
    columns = [_describe(column, table, path, rows, by_class) for column in columns]
    columns = numeric_bins(columns, table, rows)
    if encoder is not None:
        if not any(column.type == "text" for column in columns):
            raise InputError(f"--encoder {encoder}: {path} has no free-text column for it to read")
        columns = [ColumnGuess(c.name, c.type, c.reason, {"encoder": encoder}) if c.type == "text" else c
                   for c in columns]
    outputs = len(labels) if guess.task == "multiclass" else 1
    base = Starter(name or model_name(path), target, guess, columns, rows, [], 64 if rows >= 2_000 else 32, 0, 0,
                   positive=positive, budget_s=time_budget, numeric_levels=numeric_levels(columns, table))
    if _refits(by_class, encoder, rows, columns):
        base = replace(base, refit=True)
    if any(column.type in ("image", "sequence") for column in columns):
        return conv_plan(base, outputs)
    if any(column.type == "text" for column in columns):
        return text_plan(base, outputs)
    return table_plan(base, outputs)


def _describe(column: ColumnGuess, table: pa.Table, path: Path, rows: int, by_class: bool) -> ColumnGuess:
    """A column as its planner describes it: a text column as TF-IDF terms, a numeric one log-scaled when
    heavy-tailed, an image column with the size and channels of its images."""
    if column.type == "text":
        return ColumnGuess(column.name, column.type, column.reason, text_options(rows, by_class))
    if column.type == "numeric":
        return numeric_scaling(column, table)
    if column.type == "image":
        return describe_image_column(column, table, path)
    return column


def _refits(texts_by_class: bool, encoder: str | None, rows: int, columns: list[ColumnGuess]) -> bool:
    """Whether init writes `trainer.refit: true`: for a classifier of texts alone (TF-IDF) and for a small table,
    where it gained or tied on the sets measured (docs/performance.md, "Refit on training + validation rows")."""
    if texts_by_class and encoder is None:
        return True
    return texts_free(columns) and rows < REFIT_TABLE_ROWS


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
