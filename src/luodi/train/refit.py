"""What a refit (`trainer.refit`, jobs/refit.py) trains on and how: the rows of two splits as one, the trainer of
the second phase, and the learning-rate scales it replays.

The schedule of phase two is phase one's, for the epochs phase one chose: warmup, cosine, linear and step are pure
functions of the step and the epoch count (train/loop.py's `lr_factor`), so they are recomputed for those epochs
over the larger epochs of the union; a plateau scheduler's reductions were driven by validation, which phase two
no longer has, so the scale each epoch of phase one ran at is replayed epoch by epoch.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from luodi.config import SchedulerConfig, TrainerConfig
from luodi.errors import InputError


def union_rows(train: pa.Table, validation: pa.Table) -> pa.Table:
    """The training rows followed by the validation rows, one table (the column types of split files may differ
    in nullness only: a column that is all null in one file)."""
    if train.column_names != validation.column_names:
        raise InputError(f"the validation rows have columns {validation.column_names}, the training rows "
                         f"{train.column_names}: a refit trains on both, so they must match")
    return pa.concat_tables([train, validation], promote_options="permissive")


def refit_trainer(trainer: TrainerConfig, epochs: int) -> TrainerConfig:
    """The trainer of phase two: `epochs` epochs (phase one's best), no early stopping (there is no validation)."""
    stopping = trainer.early_stopping.model_copy(update={"enabled": False})
    return trainer.model_copy(update={"epochs": epochs, "early_stopping": stopping})


def replayed_scales(scheduler: SchedulerConfig, recorded: Sequence[float], epochs: int) -> list[float]:
    """The scale of the peak learning rate for each of phase two's `epochs` epochs: what phase one ran each epoch
    at (only a plateau scheduler changes it; the other schedules recompute their factor from the step)."""
    if len(recorded) >= epochs:
        return [float(scale) for scale in recorded[:epochs]]
    if scheduler.type == "plateau":
        raise InputError(f"the run recorded the learning rate of {len(recorded)} epochs, not the {epochs} a refit "
                         "replays (its checkpoint predates trainer.refit): train it again to refit it")
    return [1.0] * epochs
