"""`luodi init`: infer the task and feature types from a table and render a commented starter config."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from luodi.columns import as_strings, binary_order
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
    architecture: str = "mlp"  # cnn for image or sequence features, transformer when long text is the main input
    positive: str | None = None  # binary: the label the metrics are of (written as target.positive_class)

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


def plan(table: pa.Table, path: Path, target: str, task: str | None = None, name: str | None = None) -> Starter:
    """Infer everything a starter config needs from the table."""
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
    columns = [_describe(column, table, path) for column in columns]
    if any(column.type in ("image", "sequence") for column in columns):
        # A conv encoder pools each image or sequence into a vector; one hidden layer combines it with the rest.
        sizes, batch = [64], 64 if rows >= 2_000 else 32
        epochs, patience = (60, 15) if rows < 2_000 else (30, 6) if rows < 200_000 else (10, 3)
        return Starter(name or model_name(path), target, guess, columns, rows, sizes, batch, epochs, patience, "cnn",
                       positive)
    if rows < 2_000:
        sizes, batch, epochs, patience = [64, 32], 32, 300, 30
    elif rows < 200_000:
        sizes, batch, epochs, patience = [128, 64], 64, 100, 10
    else:
        sizes, batch, epochs, patience = [256, 128], 256, 30, 5
    text_length = long_text_length(table, [column.name for column in columns if column.type == "text"])
    if text_length:  # a sequence model over tokens: fewer, costlier epochs than an MLP
        columns = [ColumnGuess(c.name, c.type, c.reason, {"max_length": text_length}) if c.type == "text" else c
                   for c in columns]
        return Starter(name or model_name(path), target, guess, columns, rows, [64], 32, min(epochs, 30),
                       min(patience, 5), "transformer", positive)
    return Starter(name or model_name(path), target, guess, columns, rows, sizes, batch, epochs, patience,
                   positive=positive)


LONG_TEXT_WORDS = 20


def long_text_length(table: pa.Table, names: list[str]) -> int:
    """Tokens per text for a text model when a text column holds long texts (20+ words on average), else 0.

    BPE gives about 1.3 tokens a word; the length covers 90% of the texts, at most 256 (CPU cost grows with it).
    """
    longest = 0.0
    for name in names:
        values = table.column(name).drop_null()
        words = pc.list_value_length(pc.utf8_split_whitespace(values.cast(pa.string())))
        if (pc.mean(words).as_py() or 0) >= LONG_TEXT_WORDS:
            longest = max(longest, pc.quantile(words, q=0.9).to_pylist()[0] * 1.3)
    if not longest:
        return 0
    return min(256, 1 << max(5, int(longest - 1).bit_length()))


def _describe(column: ColumnGuess, table: pa.Table, path: Path) -> ColumnGuess:
    """An image column with the size and channels of its images (a sample's headers) and a fitting random crop."""
    if column.type != "image" or not pa.types.is_string(table.column(column.name).type):
        return column
    from luodi.data.images import describe_images

    paths = [value for value in table.column(column.name).to_pylist() if value]
    found = describe_images(paths, path if path.is_dir() else path.parent)
    height, width, channels = found["height"], found["width"], found["channels"]
    options = {"height": height, "width": width, "channels": channels,
               "augment": {"crop_padding": max(1, min(height, width) // 8)}}
    size = "x".join(map(str, found["found"]))
    resized = f", resized to {width}x{height}" if (width, height) != found["found"] else ""
    reason = f"{column.reason}: {size} {'gray' if channels == 1 else 'color'}{resized}"
    return ColumnGuess(column.name, column.type, reason, options)


def _flow(options: dict[str, Any]) -> str:
    return ", ".join(f"{key}: {{{_flow(value)}}}" if isinstance(value, dict) else f"{key}: {value}"
                     for key, value in options.items())


def _model(starter: Starter) -> str:
    if starter.architecture == "cnn":
        return f"""model:
  type: cnn                             # conv blocks read the image / sequence features; an MLP combines
  cnn: {{channels: [32, 64], kernel_size: 3, batch_norm: true, pool: max, dropout: 0.1, output: avg}}
  hidden_sizes: {starter.hidden_sizes}
  activation: relu
  dropout: 0.1
  normalization: none                   # none, batch or layer (the MLP's hidden layers)
"""
    if starter.architecture == "transformer":
        return f"""model:
  type: transformer                     # long free text: tokens (BPE fitted on the train split), not bag of words
  # A pretrained encoder usually does better: `type: hf` with `path: ./minilm`, a local Hugging Face checkpoint
  # folder (config.json, model.safetensors, tokenizer.json); see docs/text.md. rnn (GRU / LSTM) also reads tokens.
  transformer: {{layers: 2, heads: 4, width: 64, positions: learned, pooling: mean, dropout: 0.1}}
  hidden_sizes: {starter.hidden_sizes}
  activation: relu
  dropout: 0.1
  normalization: none                   # none, batch or layer (the MLP's hidden layers)
"""
    return f"""model:
  type: mlp
  hidden_sizes: {starter.hidden_sizes}              # sized for {starter.rows} rows
  activation: relu
  dropout: 0.1
  normalization: none                   # none, batch or layer
"""


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
input_features:
{features}
{"  # dropped columns (add them back above to use them):" + chr(10) + dropped if dropped else ""}

{_model(starter)}
trainer:
  epochs: {starter.epochs}                          # the most; early stopping usually ends sooner
  batch_size: {starter.batch_size}
  optimizer: {{type: adamw, lr: 0.001, weight_decay: 0.01}}
  scheduler: {{type: cosine, warmup_steps: 0, min_lr_ratio: 0.05}}
  gradient_clip: 1.0
  early_stopping: {{metric: {stop_metric}, patience: {starter.patience}}}
  checkpoint_every_steps: 0             # also checkpoint every N steps (0: at each epoch end)
  seed: 42

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
                     ) -> tuple[Starter, dict[str, Any]]:
    """What `luodi init` infers from rows in memory (a DataFrame, an Arrow table, records): the plan, and the config
    as a dict whose `data.train` is those rows (for `luodi.train`); the model is named `name` or 'model'."""
    import yaml

    from luodi.config import IN_MEMORY
    from luodi.data.sources import to_table

    if not isinstance(target, str):
        raise InputError(f"target must be a column name, got {type(target).__name__}")
    table = to_table(rows, IN_MEMORY)
    starter = plan(table, Path(IN_MEMORY), target, task, name or "model")
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
