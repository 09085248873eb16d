"""The fitted feature pipeline: raw table in, model tensors out; its whole state saves as JSON in the package."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from luodi.config import LuodiConfig, validate_config
from luodi.errors import InputError, did_you_mean
from luodi.features.encoders import (
    CategoryEncoder,
    Encoder,
    NumericEncoder,
    TensorEncoder,
    TextEncoder,
    build_encoder,
    numeric_blocks,
    scale_numeric,
)
from luodi.features.image import coerce_images
from luodi.features.sequence import coerce_sequence
from luodi.features.text import coerce_text
from luodi.features.unseen import Unseen
from luodi.tasks import TargetEncoder


@dataclass
class Encoded:
    """Model inputs for a block of rows: float32 `dense` (rows, width), int64 `categorical` (rows, n), and the
    named arrays of each tensor feature (an image batch, token ids and their mask, ...)."""

    inputs: dict[str, np.ndarray]
    target: np.ndarray | None
    unseen: Unseen

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def rows(self, start: int, stop: int) -> Encoded:
        """Rows [start, stop) (views, not copies); the unseen-value warnings stay the whole block's."""
        target = None if self.target is None else self.target[start:stop]
        return Encoded({name: array[start:stop] for name, array in self.inputs.items()}, target, self.unseen)


def _first_bad_row(column: pa.ChunkedArray) -> tuple[int, Any]:
    """The first row (1-based) whose text is not a number, and its value."""
    import pandas as pd

    values = column.to_pandas()
    parsed = pd.to_numeric(values, errors="coerce")
    # Arrow reads 'NaN' / '-nan' as a missing number; pandas parses them to NaN too, so they are not the bad row.
    spelled_nan = values.astype(str).str.strip().str.lower().isin(("nan", "+nan", "-nan")).to_numpy()
    bad = np.flatnonzero(parsed.isna().to_numpy() & values.notna().to_numpy() & ~spelled_nan)
    return (int(bad[0]) + 1, values.iloc[bad[0]]) if len(bad) else (0, None)


FLOAT64 = pa.float64()


def refuse_infinities(columns: list[tuple[str, pa.ChunkedArray]], source: str) -> None:
    """An InputError naming the first float64 column (in config order) holding +-inf, and its first such row.

    The check runs over blocks of rows of all columns at once (`numeric_blocks`): a few NumPy calls per block
    instead of Arrow's is_inf + any per column, which was most of the cost of a wide row (784 columns: about 5 ms
    a request)."""
    for _, values in numeric_blocks([column for _, column in columns]):
        if np.isinf(values).any():  # null -> nan, never inf
            break
    else:
        return
    for name, column in columns:  # rare: find the first column with an infinity, then its first row
        values = column.to_numpy(zero_copy_only=False)
        found = np.flatnonzero(np.isinf(values))
        if len(found):
            raise InputError(f"{source}: column {name!r} row {int(found[0]) + 1} is infinite ({values[found[0]]})")


def coerce_table(table: pa.Table, config: LuodiConfig, source: str, with_target: bool) -> pa.Table:
    """Check that every feature column exists and turn numeric columns into float64, naming bad rows."""
    needed = [feature.name for feature in config.input_features]
    if with_target:
        needed.append(config.target.name)
    # One pass over the names: `column_names`, lookups by name and `set_column` each cost O(columns), which made
    # a 784-column table take a second per call.
    names = table.column_names
    present = set(names)
    missing = [name for name in needed if name not in present]
    if missing:
        hint = did_you_mean(missing[0], names)
        raise InputError(f"{source}: column {missing[0]!r} is missing{hint}; the model needs {needed}")
    position = {name: index for index, name in enumerate(names)}
    columns = table.columns
    changed = False
    numeric: list[tuple[str, pa.ChunkedArray]] = []
    for feature in config.input_features:
        if feature.type != "numeric":
            continue
        column = columns[position[feature.name]]
        kind = column.type
        if kind == FLOAT64:
            pass  # the common case first: one comparison, no cast
        elif pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_boolean(kind) \
                or pa.types.is_null(kind):
            column = pc.cast(column, pa.float64())
        else:
            try:
                column = pc.cast(pc.utf8_trim_whitespace(pc.cast(column, pa.string())), pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                row, value = _first_bad_row(column)
                raise InputError(
                    f"{source}: column {feature.name!r} is numeric but row {row} holds {value!r}, not a number"
                ) from None
        numeric.append((feature.name, column))
        if column is not columns[position[feature.name]]:
            columns[position[feature.name]], changed = column, True
    refuse_infinities(numeric, source)
    for feature in config.input_features:
        coerce = COERCERS.get(feature.type)
        if coerce is not None:
            column = coerce(columns[position[feature.name]], feature, source)
            columns[position[feature.name]], changed = column, True
    return pa.Table.from_arrays(columns, names=names) if changed else table


# Feature types whose cells are checked and converted on the whole table (rows named as in the file): sequences
# become list<float64>, image paths are resolved against the table file's folder, empty texts are refused where
# the config says so.
COERCERS: dict[str, Callable[[pa.ChunkedArray, Any, str], pa.ChunkedArray]] = {
    "sequence": coerce_sequence, "image": coerce_images, "text": coerce_text,
}

RELEASE_ROWS = 100_000  # tables at least this long hand Arrow's freed memory back before transforming


class FeaturePipeline:
    """Encoders for every input feature plus the task's target encoder, fitted on the training split only."""

    def __init__(self, config: LuodiConfig, encoders: list[Encoder], target: TargetEncoder):
        self.config = config
        self.encoders = encoders
        self.target: Any = target  # the task's own target type (class labels, scaled values, ...)

    @classmethod
    def fit(cls, config: LuodiConfig, train: pa.Table) -> FeaturePipeline:
        encoders = [build_encoder(feature) for feature in config.input_features]
        for encoder in encoders:
            if isinstance(encoder, TextEncoder) and encoder.supervised:  # weighs its terms by class
                labels = pc.cast(train.column(config.target.name), pa.string()).to_numpy(zero_copy_only=False)
                encoder.fit(train.column(encoder.name), np.unique(labels, return_inverse=True)[1])
            else:
                encoder.fit(train.column(encoder.name))
        target = config.task().target(config.target)
        fit_table = getattr(target, "fit_table", None)  # a target fitted on whole rows (a language model's text)
        if fit_table is not None:
            fit_table(train)
        else:
            target.fit(train.column(config.target.name))
        return cls(config, encoders, target)

    def transform(self, table: pa.Table, source: str, with_target: bool, strict: bool = False) -> Encoded:
        """Encode a coerced table; with `strict`, values never seen in training are an error, not unknown.

        A target encoder with `encode_table` (a language model's) makes the examples itself, inputs included: its
        token windows are the rows (packing joins table rows), so it is the only encoder of its task."""
        encode_table = getattr(self.target, "encode_table", None)
        if encode_table is not None:
            inputs, target = encode_table(table, source, with_target)
            return Encoded(inputs, target, Unseen())
        if table.num_rows >= RELEASE_ROWS:
            # NumPy allocates outside Arrow's memory pool, so memory Arrow freed (a whole raw table once it was
            # split) would sit idle beside the new blocks: hand it back first (~1 ms). Measured on 1M rows: peak
            # RSS -85 MiB. Small tables (serving) skip this.
            pa.default_memory_pool().release_unused()
        unseen = Unseen()
        dense = self._dense(table, unseen)
        categorical = [encoder.transform(table.column(encoder.name), unseen) for encoder in self.encoders
                       if encoder.kind == "index"]
        tensors = [encoder.transform(table.column(encoder.name), unseen) for encoder in self.tensor_encoders()]
        if strict and unseen.counts:
            raise InputError(f"{source}: " + "; ".join(unseen.messages()).replace("; encoded as unknown", ""))
        rows = table.num_rows
        inputs = {
            "dense": np.concatenate(dense, axis=1) if dense else np.zeros((rows, 0), np.float32),
            "categorical": np.stack(categorical, axis=1) if categorical else np.zeros((rows, 0), np.int64),
        }
        for arrays in tensors:
            inputs.update(arrays)
        target = self.target.transform(table.column(self.config.target.name), source) if with_target else None
        if unseen.skipped:
            if not with_target:  # a prediction per input row: a row cannot be left out
                name, reasons = next(iter(unseen.reasons.items()))
                more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
                raise InputError(f"{source}: column {name!r}: {reasons[0]}{more}")
            keep = np.ones(rows, dtype=bool)
            for skipped in unseen.skipped.values():
                keep[skipped] = False
            inputs = {name: array[keep] for name, array in inputs.items()}
            target = target[keep] if target is not None else None
        return Encoded(inputs, target, unseen)

    def _dense(self, table: pa.Table, unseen: Unseen) -> list[np.ndarray]:
        """The dense blocks in encoder order; numeric columns are scaled together (`scale_numeric`)."""
        encoders = [encoder for encoder in self.encoders if encoder.kind == "dense"]
        numeric = [encoder for encoder in encoders if isinstance(encoder, NumericEncoder)]
        by_name = dict(zip(table.column_names, table.columns, strict=True))  # table.column(name) is O(columns)
        if not numeric:
            return [encoder.transform(by_name[encoder.name], unseen) for encoder in encoders]
        block = scale_numeric(numeric, [by_name[encoder.name] for encoder in numeric])
        if len(numeric) == len(encoders):
            return [block]  # one block, not a slice per column to concatenate again
        starts = np.cumsum([0] + [encoder.width() for encoder in numeric])  # piecewise_linear: several columns
        index = {id(encoder): (int(starts[position]), int(starts[position + 1]))
                 for position, encoder in enumerate(numeric)}
        return [block[:, slice(*index[id(encoder)])] if id(encoder) in index
                else encoder.transform(by_name[encoder.name], unseen) for encoder in encoders]

    def tensor_encoders(self) -> list[TensorEncoder]:
        """Encoders that give model inputs of their own (images, sequences, tokens), in input order."""
        return [encoder for encoder in self.encoders if encoder.kind == "tensor"]  # type: ignore[misc]

    def dense_width(self) -> int:
        return sum(encoder.width() for encoder in self.encoders if encoder.kind == "dense")

    def numeric_columns(self) -> list[int]:
        """The column of `dense` holding each numeric feature's normalized value (the first of its columns; bins
        follow it), in input order: what `model.mlp.numeric_embedding` embeds."""
        columns, start = [], 0
        for encoder in self.encoders:
            if encoder.kind != "dense":
                continue
            if isinstance(encoder, NumericEncoder):
                columns.append(start)
            start += encoder.width()
        return columns

    def categories(self) -> list[tuple[int, int]]:
        """(cardinality, embedding dim) per category feature, in input order."""
        return [(encoder.cardinality(), encoder.embedding_dim()) for encoder in self.encoders
                if isinstance(encoder, CategoryEncoder)]

    def input_schema(self) -> list[dict[str, Any]]:
        """Input columns and what each accepts: the contract for predict, the server and monitoring."""
        schema = []
        for encoder in self.encoders:
            item: dict[str, Any] = {"name": encoder.name, "type": encoder.config.type}
            item["dtype"] = {"numeric": "number", "binary": "string|boolean|number"}.get(encoder.config.type, "string")
            if isinstance(encoder, CategoryEncoder):
                item["categories"] = len(encoder.vocabulary)
            describe = getattr(encoder, "schema", None)
            if describe is not None:
                item.update(describe())
            schema.append(item)
        return schema

    def output_schema(self) -> dict[str, Any]:
        return self.target.schema()

    def state(self) -> dict[str, Any]:
        return {
            "features": [{"name": encoder.name, **encoder.state()} for encoder in self.encoders],
            "target": self.target.state(),
        }

    def save_assets(self, directory: Path) -> None:
        """Files some encoders keep beside their JSON state (a tokenizer), each in its own assets folder; the
        target encoder's in `tokenizer/target`."""
        for index, encoder in enumerate(self.encoders):
            save = getattr(encoder, "save_assets", None)
            if save is not None:
                folder = asset_folder(directory, index, encoder.name)
                folder.mkdir(parents=True, exist_ok=True)
                save(folder)
        save = getattr(self.target, "save_assets", None)
        if save is not None:
            folder = Path(directory) / ASSETS / TARGET_ASSETS
            folder.mkdir(parents=True, exist_ok=True)
            save(folder)

    @classmethod
    def from_state(cls, config: LuodiConfig | dict[str, Any], state: dict[str, Any],
                   assets: Path | None = None) -> FeaturePipeline:
        """The fitted pipeline from its JSON state and, for encoders with files, the folder `save_assets` wrote."""
        if isinstance(config, dict):
            config = validate_config(config, "package config")
        saved = {item["name"]: {k: v for k, v in item.items() if k != "name"} for item in state["features"]}
        encoders = [build_encoder(feature, saved[feature.name],
                                  asset_folder(assets, index, feature.name) if assets is not None else None)
                    for index, feature in enumerate(config.input_features)]
        target = config.task().target(config.target, state["target"])
        load = getattr(target, "load_assets", None)
        if load is not None and assets is not None:
            load(Path(assets) / ASSETS / TARGET_ASSETS)
        return cls(config, encoders, target)


ASSETS = "tokenizer"  # the package contract's folder for what text encoders keep
TARGET_ASSETS = "target"  # the target encoder's files (a language model's tokenizer), beside the features'


def asset_folder(directory: Path, index: int, feature: str) -> Path:
    """`directory/tokenizer/<position>-<name>`: column names may hold '/' or '..', so only safe characters of the
    name are kept (for people reading the folder); the position makes it unique."""
    return Path(directory) / ASSETS / f"{index}-{re.sub(r'[^A-Za-z0-9_-]', '_', feature)[:64]}"
