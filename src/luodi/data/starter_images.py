"""`luodi init` for images and numeric sequences: each image column's size and channels, a fitting random crop,
conv blocks down to about 8 pixels a side, and label smoothing and weight averaging for image classifiers."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pyarrow as pa

from luodi.data import budget
from luodi.data.infer import ColumnGuess
from luodi.data.starter_core import Starter, dense_width, train_rows, with_epochs

IMAGE_LABEL_SMOOTHING = 0.1  # target.label_smoothing of an image classifier (measured: docs/performance.md)
EMA_EPOCHS = 3  # trainer.ema_decay of an image classifier averages about this many epochs of steps


def ema_decay(starter: Starter) -> float:
    """1 - 1/(steps of EMA_EPOCHS epochs), to two significant digits of 1 - decay: 0.99 at the 33 steps an epoch of
    the 28x28 sets it was measured on (2,100 training images), 0.9985 at 14,000."""
    steps = math.ceil(train_rows(starter) / starter.batch_size) * EMA_EPOCHS
    return 1 - float(f"{min(0.1, max(1e-4, 1 / steps)):.2g}")


def conv_plan(starter: Starter, outputs: int) -> Starter:
    """Conv blocks until the image is about 8 pixels a side, flattened (where things are matters: global pooling
    lost 11 points on a 10-class photo set), one hidden layer, dropout against the flattened width's overfitting;
    label smoothing for image classifiers."""
    from luodi.tasks import get_task

    images = [c for c in starter.features if c.type == "image"]
    if images:
        options = images[0].options
        height, width, channels = options.get("height", 28), options.get("width", 28), options.get("channels", 1)
    else:  # a numeric sequence: a 1-D signal, cost as a strip of one row
        height, width, channels = 1, 64, 1
    blocks = max(2, min(4, math.ceil(math.log2(max(height, width) / 8))))  # halvings to about 8 a side
    conv = [32, 64, 128, 128][:blocks]
    side = max(height, width) >> blocks if min(height, width) >= 4 else 1
    conv_adds, flattened = budget.cnn_multiply_adds(height, width, channels, conv)
    hidden = [256] if outputs > 20 else [128]
    adds = conv_adds + budget.mlp_multiply_adds(flattened + dense_width(starter), hidden, outputs)
    why = {"model": f"{blocks} conv blocks take {width}x{height} down to about {side} a side, flattened (global "
                    "pooling loses where things are)",
           "lr": "Adam's usual rate for conv nets; dropped 3x when validation stalls (plateau)"}
    smoothing = average = 0.0
    if images and get_task(starter.task.task).classes:
        smoothing = IMAGE_LABEL_SMOOTHING
        why["label_smoothing"] = ("keeps 10% of the probability off the true class: image classifiers overfit a few "
                                  "thousand images less (+0.4 to +6 points on three image sets, docs/performance.md)")
        average = ema_decay(starter)
        why["ema_decay"] = (f"validate and keep the weights averaged over about {EMA_EPOCHS} epochs, smoother than "
                            "the last step's: +1.2 and +7.9 points on two image sets (docs/performance.md)")
    chosen = replace(starter, hidden_sizes=hidden, architecture="cnn", cnn_channels=conv, plateau=2, patience=5,
                     dropout=0.3, lr=0.001, label_smoothing=smoothing, ema_decay=average, why=why)
    return with_epochs(chosen, adds, 5, 100)


def crop_padding(height: int, width: int) -> int:
    """Random shifts of up to a tenth of the shorter side (at least a pixel): safe for any image set, unlike flips
    (a mirrored 2 is no 2) or rotations. An eighth (3 pixels of 28) lost 0.3 and 7 points against a tenth on two
    28x28 sets (docs/performance.md)."""
    return max(1, min(height, width) // 10)


def describe_image_column(column: ColumnGuess, table: pa.Table, path: Path) -> ColumnGuess:
    """An image column of paths with the size and channels of its images (a sample's headers) and a fitting random
    crop; a column of encoded bytes as it is."""
    if not pa.types.is_string(table.column(column.name).type):
        return column
    from luodi.data.images import describe_images

    paths = [value for value in table.column(column.name).to_pylist() if value]
    found = describe_images(paths, path if path.is_dir() else path.parent)
    height, width, channels = found["height"], found["width"], found["channels"]
    options = {"height": height, "width": width, "channels": channels,
               "augment": {"crop_padding": crop_padding(height, width)}}
    size = "x".join(map(str, found["found"]))
    resized = f", resized to {width}x{height}" if (width, height) != found["found"] else ""
    reason = f"{column.reason}: {size} {'gray' if channels == 1 else 'color'}{resized}"
    return ColumnGuess(column.name, column.type, reason, options)
