"""`luodi init`'s output: a plan rendered as commented YAML (every key in docs/config.md, each choice with its
why, inline comments aligned), and the `search:` section of `luodi init --tune`."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Any

from luodi.data.starter_core import Starter, train_rows

REFIT_WHY = "then train again on train + validation rows for the best epoch count (15% more rows)"


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
    return min(500, math.ceil(train_rows(starter) / starter.batch_size))


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



def _decimal(value: float) -> str:
    """A float as YAML reads it back as one: '0.000071', never '7.1e-05' (a string to YAML 1.1)."""
    return f"{value:.10f}".rstrip("0").rstrip(".") if value else "0.0"


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
