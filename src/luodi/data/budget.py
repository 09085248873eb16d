"""`luodi init --time-budget`: how long an epoch of the inferred model takes, and how many epochs fit the budget.

The estimate counts the model's multiply-adds per row (forward; training is about 3x that), adds a fixed cost per
optimizer step (framework overhead, which dominates small MLPs) and divides by what a laptop CPU sustains. The
constants are measured on this project's machines (docs/performance.md: an MNIST-shaped CNN trains 2.5k rows/s on
2 cores, about 60 G multiply-adds/s; an MLP step costs about 0.8 ms), then halved for a busy or older laptop.
"""

from __future__ import annotations

import math
import re

from luodi.errors import InputError

MULTIPLY_ADDS_PER_SECOND = 3e10  # training arithmetic a laptop CPU sustains (half the 2-core figure measured here)
SECONDS_PER_STEP = 0.002  # optimizer step, batch slicing, Python: the floor for small models
VALIDATION_SHARE = 0.15 / 0.70  # a validation pass over 15% of the rows per epoch on the 70% trained on
REFIT_SHARE = 0.85 / 0.70  # a refit trains on training + validation rows: 85% of the file against 70%
DEFAULT_BUDGET_S = 300.0  # `init` without --time-budget: a few minutes on a laptop


def parse_duration(text: str) -> float:
    """'90s', '10m', '1.5h' (also 'sec', 'min', any case) or a number of seconds -> seconds; anything else is an
    InputError naming the option. The one parser of `--time-budget`, for `luodi init` and `luodi tune`."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*", str(text).lower())
    if not match or float(match.group(1)) <= 0:
        raise InputError(f"--time-budget {text!r}: give a duration such as 90s, 10m or 1.5h")
    return float(match.group(1)) * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[match.group(2) or "s"]


def mlp_multiply_adds(width: int, hidden: list[int], outputs: int) -> int:
    """Multiply-adds per row of the combiner MLP."""
    sizes = [width, *hidden, outputs]
    return sum(a * b for a, b in zip(sizes, sizes[1:], strict=False))


def cnn_multiply_adds(height: int, width: int, channels: int, blocks: list[int], kernel: int = 3) -> tuple[int, int]:
    """(multiply-adds per image of the conv blocks, the flattened output's width), pooling by 2 after each block
    while a side is at least 2 (as models/cnn.py does)."""
    total, side_h, side_w, inputs = 0, height, width, channels
    for out in blocks:
        total += side_h * side_w * inputs * out * kernel * kernel
        inputs = out
        if min(side_h, side_w) >= 2:
            side_h, side_w = side_h // 2, side_w // 2
    return total, inputs * side_h * side_w


def training_seconds(rows: int, batch_size: int, multiply_adds: int) -> float:
    """Estimated seconds of an epoch's training steps over `rows` (3x the forward arithmetic, plus the step cost)."""
    return rows * 3 * multiply_adds / MULTIPLY_ADDS_PER_SECOND + math.ceil(rows / batch_size) * SECONDS_PER_STEP


def epoch_seconds(train_rows: int, batch_size: int, multiply_adds: int) -> float:
    """Estimated seconds of one epoch: training steps (3x the forward arithmetic) and the validation pass."""
    validation = train_rows * VALIDATION_SHARE * multiply_adds / MULTIPLY_ADDS_PER_SECOND
    return training_seconds(train_rows, batch_size, multiply_adds) + validation


def refit_epoch_seconds(train_rows: int, batch_size: int, multiply_adds: int) -> float:
    """Estimated seconds of one epoch of a refit (`trainer.refit`): training steps over the training + validation
    rows, no validation pass. A run with a refit costs up to (epoch + refit epoch) x the epochs."""
    return training_seconds(round(train_rows * REFIT_SHARE), batch_size, multiply_adds)


def epochs_within(budget_s: float, seconds: float, lowest: int, highest: int) -> int:
    """How many epochs of `seconds` fit `budget_s`, kept within [lowest, highest]."""
    return max(lowest, min(highest, int(budget_s / max(seconds, 1e-6))))
