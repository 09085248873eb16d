"""Training checkpoints: everything needed to continue exactly, written atomically, loaded without unpickling code.

A checkpoint holds model and optimizer state, the best weights so far, RNG state, the epoch and
the position inside it, early-stopping state and the metric history. `torch.load(weights_only=True)` reads
only tensors and plain containers, so a tampered file cannot run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from luodi.errors import InputError
from luodi.io import atomic_write

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(directory: Path, state: dict[str, Any]) -> Path:
    """Replace `directory/checkpoint.pt` atomically: a crash leaves the previous checkpoint intact."""
    path = Path(directory) / CHECKPOINT_NAME
    atomic_write(path, lambda handle: torch.save(state, handle))
    return path


def load_checkpoint(directory: Path) -> dict[str, Any] | None:
    """The last complete checkpoint in `directory`, or None when there is none."""
    path = Path(directory) / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable checkpoint is the same user-facing problem
        reason = (str(error).splitlines() or [type(error).__name__])[0]  # EOFError() of a cut file has no text
        raise InputError(f"{path}: checkpoint cannot be read ({reason})") from None
    return state
