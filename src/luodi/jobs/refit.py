"""The refit (`trainer.refit`): after a run chose its best epoch E on validation, a fresh model trained on the
training + validation rows for E epochs, scored on the untouched test split.

    phase one (jobs/fit.py)    train on train, early stopping on validation -> best epoch E, phase-one metrics
    phase two (here)           features fitted on train + validation; a fresh model (same seed); E epochs on those
                               rows with the learning-rate schedule replayed (train/refit.py); scored on test

AutoGluon's `refit_full`: the scikit-learn baselines a user compares against fit on every row, and on small sets
the 15% of rows validation holds is most of what is left of the gap (docs/performance.md). Phase two keeps its own
folder inside the run's (`refit/`: the features it fitted and its checkpoint), so a run killed in phase two resumes
phase two: phase one's checkpoint is complete, its loop returns at once with the same best weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch

from luodi.features.pipeline import FeaturePipeline
from luodi.jobs.fit import Fitted, Prepared, as_tensors, score_split
from luodi.train.distributed import World
from luodi.train.progress import Progress
from luodi.train.refit import refit_trainer, replayed_scales, union_rows

REFIT_DIR = "refit"  # phase two's features and checkpoint, inside the run's checkpoint folder


def skip_reason(prepared: Prepared, world: World, best_epoch: int) -> str | None:
    """Why this run cannot be refit (None when it can): said in the run's warnings, never silently skipped."""
    if prepared.streams is not None:
        return "trainer.refit was skipped: data.streaming reads the splits from their files, block by block"
    if world.distributed:
        return "trainer.refit was skipped: it runs in one process, not under torchrun"
    if prepared.sizes()["test"] == 0:
        return "trainer.refit was skipped: there is no test split to score the refit model on"
    if best_epoch < 1:
        return "trainer.refit was skipped: the run chose no best epoch"
    return None


def refit_features(prepared: Prepared, union: pa.Table, folder: Path, world: World) -> FeaturePipeline:
    """The feature pipeline fitted on `union`, the training + validation rows; saved in `folder` the first time and
    read back when a run resumes in phase two, so the resumed model sees the same vocabularies, statistics and bins."""
    from luodi.io import atomic_write_json

    config = prepared.config
    saved = folder / "features.json"
    if saved.is_file():
        return FeaturePipeline.from_state(config, json.loads(saved.read_text()), assets=folder)
    pipeline = FeaturePipeline.fit(config, union)
    if world.main:
        pipeline.save_assets(folder)
        atomic_write_json(saved, pipeline.state())
    return pipeline


def refit(fitted: Fitted, *, run_dir: Path, environment: dict[str, Any], progress: Progress | None = None,
          world: World) -> Fitted:
    """Phase two of a `trainer.refit` run: the refit model and its test metrics, with `refit` saying how it was
    trained and what phase one scored. A run that cannot be refit (`skip_reason`) comes back with the reason."""
    from luodi.models import build_model, load_pretrained
    from luodi.models.mlp import training_loss
    from luodi.train.loop import fit as run_loop

    prepared, first = fitted.prepared, fitted.result
    reason = skip_reason(prepared, world, first.best_epoch)
    if reason is not None:
        fitted.refit = {"skipped": reason}
        return fitted
    config = prepared.config
    epochs = first.best_epoch
    best = first.history[epochs - 1]
    phase_one = {"best_epoch": epochs, "epochs_run": first.epochs_run, "stopped_early": first.stopped_early,
                 "seconds": first.seconds, "steps": first.steps,
                 "validation": {key: value for key, value in best.items() if key.startswith("val_")},
                 "metrics": fitted.metrics, "metrics_split": prepared.scored_split}
    folder = run_dir / REFIT_DIR
    if world.main:
        folder.mkdir(parents=True, exist_ok=True)
    splits = prepared.splits
    rows_union = union_rows(splits.train, splits.validation)  # fitted on, then encoded
    pipeline = refit_features(prepared, rows_union, folder, world)
    union = pipeline.transform(rows_union, f"{config.data.train} (train + validation splits)", True)
    rows = len(splits.train)
    encoded = {"train": union.rows(0, rows), "validation": union.rows(rows, len(union)),
               "test": pipeline.transform(splits.test, f"{config.data.train} (test split)", True)}
    refit_prepared = Prepared(config, splits, prepared.fingerprint, pipeline, encoded)
    task, target = config.task(), pipeline.target
    device = torch.device(environment["device"])
    torch.manual_seed(config.trainer.seed)  # a fresh model drawn as phase one's was
    model = build_model(config, pipeline)
    load_pretrained(model)
    trainer = refit_trainer(config.trainer, epochs)
    if (note := getattr(progress, "note", None)) is not None:  # a Display (train/progress.py) says the phase
        note(f"refit: {epochs} epochs on the {len(union):,} training + validation rows (trainer.refit)")
    result = run_loop(
        model, as_tensors(union), None, trainer, task=task, loss_fn=training_loss(model, task.loss(target)),
        score=lambda outputs, y: task.score(target, outputs, y), monitor=trainer.early_stopping.metric,
        mode=config.monitor_mode(), run_dir=folder, device=device, progress=progress, precision=fitted.precision,
        pin_memory=environment.get("pin_memory", False), world=world,
        lr_scales=replayed_scales(config.trainer.scheduler, first.lr_scales, epochs),
    )
    outputs, metrics = score_split(refit_prepared, model, device, fitted.precision)
    return Fitted(refit_prepared, model, first, outputs, metrics, device, fitted.precision, refit={
        "rows": len(union), "epochs": epochs, "steps": result.steps, "seconds": result.seconds,
        "history": result.history, "phase_one": phase_one})

