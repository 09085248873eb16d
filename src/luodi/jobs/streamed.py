"""Training on tables larger than memory (`data.streaming`): the splits stay in their files and are read block by
block (data/stream.py) at every use.

    streaming(config, frames)        # does this run stream? (the key, the file's size, the feature types)
    prepare_streamed(config)         # one pass: split row counts and the features' fitted state

The split is a hash of (row number, data.split.seed) (`stream.split_codes`), so every pass sees the same rows in
each split without holding any of them. The feature encoders get the state `FeaturePipeline.fit` would give them,
built from one pass of statistics over the training split, so the package, `predict` and the server see a pipeline
like any other. The report and the monitoring profile read a sample of each split (the first `SAMPLE_ROWS` rows in
file order); the reported metrics come from the whole scored split.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from luodi.config import LuodiConfig
from luodi.data import stream
from luodi.data.split import Splits
from luodi.errors import InputError
from luodi.features.pipeline import FeaturePipeline, coerce_table
from luodi.train.loop import Tensors

AUTO_BYTES = 1 << 30  # data.streaming: auto streams training files larger than this
STREAMED_FEATURES = ("numeric", "category", "binary")
STREAMED_TASKS = ("regression", "binary", "multiclass")
SUFFIXES = (".parquet", ".pq", ".csv", ".tsv")
COUNT_ROWS = 1 << 20  # rows hashed at a time when counting the splits
SAMPLE_ROWS = 20_000  # rows of each split kept in memory for the report and the monitoring profile


def streaming(config: LuodiConfig, frames: dict[str, Any] | None = None) -> bool:
    """Whether this run streams its data: `data.streaming: true` (refusing what cannot stream, exit 2), or `auto`
    with a training file over `AUTO_BYTES` that can stream (otherwise it is read whole, as before)."""
    data = config.data
    if data.streaming is False or (data.streaming == "auto" and (
            frames or not Path(data.train).is_file() or Path(data.train).stat().st_size <= AUTO_BYTES)):
        return False
    problem = refusal(config, frames)
    if problem is None:
        return True
    if data.streaming == "auto":
        return False
    raise InputError(f"data.streaming: {problem}; set data.streaming: false to read the data into memory")


def refusal(config: LuodiConfig, frames: dict[str, Any] | None) -> str | None:
    """Why this config's data cannot stream, or None."""
    if frames:
        return "rows passed in memory (a DataFrame) cannot stream"
    for path in (config.data.train, config.data.validation, config.data.test):
        if path is not None and Path(path).suffix.lower() not in SUFFIXES:
            return f"{path} is not a Parquet or CSV/TSV file"
    for feature in config.input_features:
        if feature.type not in STREAMED_FEATURES:
            return (f"feature {feature.name!r} is {feature.type}; streaming trains on numeric, category and binary "
                    "features")
        if getattr(feature, "missing", None) == "median":
            return f"feature {feature.name!r} fills missing values with the median, which needs the whole column " \
                   "(use missing: mean or zero)"
        if getattr(feature, "normalization", None) == "quantile" or getattr(feature, "encoding", None) == \
                "piecewise_linear":
            return f"feature {feature.name!r} needs the training quantiles, which need the whole column (use " \
                   "normalization: zscore and encoding: value)"
    if config.target.task not in STREAMED_TASKS:
        return f"target task {config.target.task!r} cannot stream (regression, binary and multiclass can)"
    return None


class StreamedSplit:
    """One split of a file (`keep` selects its rows; None: the whole file), encoded by `pipeline` block by block:
    the loop's `Stream`."""

    def __init__(self, config: LuodiConfig, path: str, keep: stream.Keep | None, rows: int,
                 pipeline: FeaturePipeline | None = None):
        self.config, self.path, self.keep, self.rows = config, path, keep, rows
        self.pipeline = pipeline
        self.columns = [*(feature.name for feature in config.input_features), config.target.name]

    def __len__(self) -> int:
        return self.rows

    def tables(self) -> Iterator[pa.Table]:
        """Coerced blocks of the split's rows in file order."""
        for table in stream.in_order(self.path, buffer_rows=self.config.data.buffer_rows, keep=self.keep,
                                     columns=self.columns):
            if table.num_rows:
                yield coerce_table(table, self.config, self.path, with_target=True)

    def encode(self, table: pa.Table) -> Tensors:
        assert self.pipeline is not None
        encoded = self.pipeline.transform(table, self.path, True)
        assert encoded.target is not None
        return Tensors({name: torch.from_numpy(array) for name, array in encoded.inputs.items()},
                       torch.from_numpy(encoded.target))

    def blocks(self) -> Iterator[Tensors]:
        for table in self.tables():
            yield self.encode(table)

    def batches(self, epoch: int, skip_rows: int, batch_size: int) -> Iterator[Tensors]:
        """Batches of `batch_size` rows from the bounded shuffle (`stream.shuffled`, seeded by trainer.seed and the
        epoch), after the first `skip_rows` rows: a resumed epoch goes on with the rows it had not trained on."""
        held: list[Tensors] = []
        count = 0
        for table in stream.shuffled(self.path, seed=self.config.trainer.seed, epoch=epoch,
                                     buffer_rows=self.config.data.buffer_rows, skip_rows=skip_rows,
                                     columns=self.columns, keep=self.keep):
            if not table.num_rows:
                continue
            held.append(self.encode(coerce_table(table, self.config, self.path, with_target=True)))
            count += len(held[-1])
            while count >= batch_size:
                joined = join(held)
                yield slice_rows(joined, 0, batch_size)
                held, count = [slice_rows(joined, batch_size, len(joined))], len(joined) - batch_size
        if count:
            yield join(held)

    def sample(self, rows: int = SAMPLE_ROWS) -> pa.Table:
        """The split's first `rows` rows in file order (coerced)."""
        parts, held = [], 0
        for table in self.tables():
            parts.append(table.slice(0, rows - held))
            held += parts[-1].num_rows
            if held >= rows:
                break
        if not parts:
            raise InputError(f"{self.path}: the streamed split has no rows")
        return pa.concat_tables(parts)


def join(parts: list[Tensors]) -> Tensors:
    if len(parts) == 1:
        return parts[0]
    return Tensors({name: torch.cat([part.inputs[name] for part in parts]) for name in parts[0].inputs},
                   torch.cat([part.target for part in parts]))


def slice_rows(tensors: Tensors, start: int, stop: int) -> Tensors:
    return Tensors({name: tensor[start:stop] for name, tensor in tensors.inputs.items()}, tensors.target[start:stop])


def streamed_splits(config: LuodiConfig) -> dict[str, StreamedSplit]:
    """The three splits, their row counts counted (a pass over a CSV; a Parquet file's footer and the hash)."""
    data = config.data
    if data.validation and data.test:
        return {name: StreamedSplit(config, path, None, stream.count_rows(path))
                for name, path in (("train", data.train), ("validation", data.validation), ("test", data.test))}
    split = data.split
    total = stream.count_rows(data.train)
    codes = np.zeros(3, np.int64)
    for start in range(0, total, COUNT_ROWS):  # by chunks: the codes of a whole file would be O(rows) memory
        codes += np.bincount(stream.split_codes(start, min(COUNT_ROWS, total - start), split.seed, split.validation,
                                                split.test), minlength=3)
    return {name: StreamedSplit(config, data.train, stream.split_keep(name, split.seed, split.validation, split.test),
                                int(codes[code])) for name, code in stream.SPLIT_CODES.items()}


def fitted_state(config: LuodiConfig, train: StreamedSplit) -> dict[str, Any]:
    """The pipeline's state (`FeaturePipeline.state`) fitted in one pass over the training split: what `fit` would
    give on the whole split in memory (a median fill is refused before: it needs the whole column)."""
    numeric = [f.name for f in config.input_features if f.type == "numeric"]
    stats = {name: stream.ColumnStatistics() for name in (f.name for f in config.input_features)}
    labels: Counter[Any] = Counter()
    regression = config.target.task == "regression"
    target, checker = stream.ColumnStatistics(), config.task().target(config.target)
    for table in train.tables():
        for feature in config.input_features:
            column = table.column(feature.name).combine_chunks()
            if feature.name in numeric:
                stats[feature.name].add_numbers(column)
            else:
                stats[feature.name].add_values(from_strings(column))
        column = table.column(config.target.name)
        checker.check(column, train.path)
        if regression:
            target.add_numbers(column.combine_chunks())
        else:
            counts = pc.value_counts(column)
            labels.update(dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(),
                                   strict=True)))
    features = [{"name": feature.name, **feature_state(feature, stats[feature.name])}
                for feature in config.input_features]
    return {"features": features, "target": target_state(config, target, labels)}


def from_strings(column: pa.Array) -> pa.Array:
    from luodi.columns import as_strings

    return as_strings(pa.chunked_array([column])).combine_chunks()


def feature_state(feature: Any, stats: stream.ColumnStatistics) -> dict[str, Any]:
    """An encoder's state from its column's statistics, as its `fit` computes it (features/encoders.py)."""
    from luodi.features.encoders import BinaryEncoder

    if feature.type == "numeric":
        if not stats.count:
            raise InputError(f"column {feature.name!r} has no numeric values in the training split")
        fill = stats.mean if feature.missing == "mean" else 0.0
        center, scale = 0.0, 1.0
        if feature.normalization == "zscore":
            center, scale = stats.mean, stats.std if stats.std > 1e-12 else 1.0
        elif feature.normalization == "log":  # z-score of the logged values, as NumericEncoder.fit
            center, scale = stats.log_mean, stats.log_std if stats.log_std > 1e-12 else 1.0
        elif feature.normalization == "minmax":
            spread = stats.maximum - stats.minimum
            center, scale = stats.minimum, spread if spread > 1e-12 else 1.0
        return {"fill": fill, "center": center, "scale": scale}
    if feature.type == "category":
        kept = sorted((-count, value) for value, count in stats.values.items() if count >= feature.min_frequency)
        return {"vocabulary": [value for _, value in kept[: feature.max_categories]]}
    encoder = BinaryEncoder(feature)  # its fit reads only the value counts: fit it on each value, counted once
    encoder.fit(pa.chunked_array([pa.array(list(stats.values), pa.string())]))
    values = encoder.values
    encoder.fill = float(stats.values.get(values[1], 0) > stats.values.get(values[0], 0))
    return encoder.state()


def target_state(config: LuodiConfig, numbers: stream.ColumnStatistics, labels: Counter[Any]) -> dict[str, Any]:
    target: Any = config.task().target(config.target)  # a ClassTarget (tasks/classification.py) below
    if config.target.task == "regression":
        return {"mean": numbers.mean, "std": numbers.std or 1.0}
    target.fit(pa.chunked_array([pa.array(list(labels))]))  # classes in the task's order, from the distinct labels
    target.counts = [int(labels[label]) for label in target.classes]
    state: dict[str, Any] = target.state()
    return state


def prepare_streamed(config: LuodiConfig, state: dict[str, Any] | None = None,
                     assets: Path | None = None) -> tuple[Splits, dict[str, StreamedSplit], FeaturePipeline]:
    """Count the splits, fit (or restore, for a resumed run) the pipeline in one pass over the training split, and
    read each split's sample; returns the samples, the streamed splits and the pipeline."""
    streams = streamed_splits(config)
    if streams["train"].rows < 2 or streams["validation"].rows < 1:
        raise InputError(f"{config.data.train}: {sum(len(s) for s in streams.values())} rows are too few to split "
                         "into train and validation")
    pipeline = FeaturePipeline.from_state(config, state or fitted_state(config, streams["train"]), assets=assets)
    for split in streams.values():
        split.pipeline = pipeline
    samples = Splits(*(streams[name].sample() if streams[name].rows else streams["validation"].sample().slice(0, 0)
                       for name in ("train", "validation", "test")))
    return samples, streams, pipeline
