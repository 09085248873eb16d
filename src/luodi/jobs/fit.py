"""Training as compute: a validated config and its data in; fitted features, a trained model, its history and its
scores out. Nothing here touches the store.

    prepared = prepare(config)                       # read and split the data, fit and apply the features
    fitted = fit(prepared, run_dir=folder, environment=apply_runtime(...))
    fitted.metrics, fitted.result.history, fitted.model

The training job (jobs/train.py) records runs, writes the report, builds the package and registers around these
two calls; a search trial or a challenger in a retrain loop calls them the same way. `run_dir` holds the
checkpoint, so a killed run resumes exactly (train/loop.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from luodi.config import LuodiConfig
from luodi.data.split import Splits
from luodi.errors import InputError
from luodi.evaluate.scoring import split_metrics
from luodi.features.pipeline import Encoded, FeaturePipeline
from luodi.models.inference import predict_tensors
from luodi.train.distributed import SINGLE, World
from luodi.train.loop import Callback, FitResult, Tensors, predict_stream
from luodi.train.precision import PRECISIONS, Precision
from luodi.train.progress import Progress

SPLITS = ("train", "validation", "test")


def read_splits(config: LuodiConfig, frames: dict[str, Any] | None = None) -> tuple[Splits, dict[str, Any]]:
    """Read, check and split the data (stratified as the task says); the target and numeric columns are checked
    on whole files, so errors name the file's rows. `frames` holds rows passed in memory by split (a DataFrame,
    an Arrow table, records) where the config says `<DataFrame>`. Returns the splits and each one's fingerprint."""
    from luodi.data.sources import fingerprint_file, fingerprint_table, read_table, to_table
    from luodi.data.split import split_rows, take_splits
    from luodi.features.pipeline import coerce_table

    data, task, frames = config.data, config.task(), frames or {}
    checker = task.target(config.target)
    fingerprint: dict[str, Any] = {}

    def load(split: str, path: str) -> Any:
        if split in frames:
            raw = to_table(frames[split], path)
            fingerprint[split] = fingerprint_table(raw, path)
        else:
            raw = read_table(path)
            fingerprint[split] = fingerprint_file(path)
        table = coerce_table(raw, config, path, with_target=True)
        checker.check(table.column(config.target.name), path)
        return table

    table = load("train", data.train)
    rows = table.num_rows
    if data.validation and data.test:
        splits = Splits(table, load("validation", data.validation), load("test", data.test))
    else:
        indices = split_rows(table, data.split, config.target.name, task.stratify)
        schema, columns = table.schema, table.columns
        del table  # take_splits frees each column once it is split: the rows are held once, not twice
        splits = take_splits(columns, schema, indices)
    if splits.train.num_rows < 2 or splits.validation.num_rows < 1:
        raise InputError(f"{data.train}: {rows} rows are too few to split into train and validation")
    return splits, fingerprint


@dataclass
class Prepared:
    """A config's data split, the feature pipeline fitted on the training split, and every split encoded."""

    config: LuodiConfig
    splits: Splits
    fingerprint: dict[str, Any]  # per data file: path, bytes, sha256
    pipeline: FeaturePipeline
    encoded: dict[str, Encoded]  # by split name
    # data.streaming (jobs/streamed.py): the splits read from their files at each use; `splits` and `encoded` then
    # hold a sample of each (the report, the monitoring profile)
    streams: dict[str, Any] | None = None

    def sizes(self) -> dict[str, int]:
        """Rows per split (of the whole splits when streaming)."""
        if self.streams is not None:
            return {name: len(split) for name, split in self.streams.items()}
        return self.splits.sizes()

    @property
    def scored_split(self) -> str:
        """The split the reported metrics come from: test, or validation when the test split is empty."""
        return "test" if self.sizes()["test"] else "validation"

    @property
    def warnings(self) -> list[str]:
        """Values of the scored split that training never saw (encoded as unknown)."""
        return self.encoded["test"].unseen.messages()


def prepare(config: LuodiConfig, state: dict[str, Any] | None = None, assets: Path | None = None,
            frames: dict[str, Any] | None = None) -> Prepared:
    """Read and split the data (or take `frames`, rows in memory by split), fit the features on the training split
    (or restore them from `state` and the `assets` folder, for a resumed run) and encode every split.

    With streaming (`data.streaming`, jobs/streamed.py) the splits stay in the file: the features are fitted in one
    pass and only a sample of each split is encoded here."""
    from luodi.jobs.streamed import prepare_streamed, streaming

    if streaming(config, frames):
        from luodi.data.sources import fingerprint_file

        samples, streams, pipeline = prepare_streamed(config, state, assets)
        encoded = {name: pipeline.transform(getattr(samples, name), f"{config.data.train} ({name} split)", True)
                   for name in SPLITS}
        fingerprint = {name: fingerprint_file(path) for name, path in
                       (("train", config.data.train), ("validation", config.data.validation),
                        ("test", config.data.test)) if path}
        return Prepared(config, samples, fingerprint, pipeline, encoded, streams)
    splits, fingerprint = read_splits(config, frames)
    if state is not None:
        pipeline = FeaturePipeline.from_state(config, state, assets=assets)
    else:
        pipeline = FeaturePipeline.fit(config, splits.train)
    encoded = {name: pipeline.transform(getattr(splits, name), f"{config.data.train} ({name} split)", True)
               for name in SPLITS}
    return Prepared(config, splits, fingerprint, pipeline, encoded)


def as_tensors(encoded: Encoded) -> Tensors:
    """An encoded split as the loop's tensors (sharing memory with the arrays)."""
    assert encoded.target is not None
    return Tensors({k: torch.from_numpy(v) for k, v in encoded.inputs.items()}, torch.from_numpy(encoded.target))


@dataclass
class Fitted:
    """A trained model (best validation weights, still on the training device) and what it scored."""

    prepared: Prepared
    model: nn.Module
    result: FitResult  # history, best epoch, epochs run, steps, seconds
    outputs: np.ndarray  # activated outputs on the scored split
    metrics: dict[str, float]  # `split_metrics` of the scored split
    device: torch.device
    precision: Precision
    # trainer.refit (jobs/refit.py): rows, epochs and phase one's metrics of the refit model; {"skipped": why}
    refit: dict[str, Any] | None = field(default=None)

    def outputs_of(self, encoded: Encoded) -> np.ndarray:
        """Activated outputs of encoded rows on the training device (the report's permutation importance)."""
        config = self.prepared.config
        inputs = {k: torch.from_numpy(v) for k, v in encoded.inputs.items()}
        target = torch.from_numpy(encoded.target) if encoded.target is not None else None
        return predict_tensors(self.model, inputs, config.task(), config.trainer.eval_batch_size, target=target,
                               autocast=self.precision.autocast, device=self.device)[0]


def fit(prepared: Prepared, *, run_dir: Path, environment: dict[str, Any], progress: Progress | None = None,
        callbacks: Sequence[Callback] = (), world: World = SINGLE) -> Fitted:
    """Build the task's model, train it (resuming from `run_dir`'s checkpoint when there is one), and score the
    best weights on the test split (the validation split when there is no test split). `trainer.refit`'s second
    phase is jobs/refit.py's, which the training job (jobs/train.py) runs on what this returns.

    `environment` is what `train.runtime.apply_runtime` chose (device, precision, pinned memory). Under torchrun
    `world` is this rank (train/distributed.py): every rank calls `fit` with the same data; only rank 0 writes the
    checkpoint in `run_dir`, which every rank reads when the group restarts.
    """
    from luodi.models import build_model, load_pretrained
    from luodi.models.mlp import training_loss
    from luodi.train.loop import fit as run_loop

    config, pipeline = prepared.config, prepared.pipeline
    task, target = config.task(), pipeline.target
    device = torch.device(environment["device"])
    if world.main:
        run_dir.mkdir(parents=True, exist_ok=True)  # the checkpoint's folder
    precision = PRECISIONS[environment.get("mixed_precision", "fp32")]
    model = build_model(config, pipeline)
    load_pretrained(model)  # a checkpoint's weights (hf); a resumed run's own checkpoint loads over them in the loop
    streams = prepared.streams
    result = run_loop(
        model, streams["train"] if streams else as_tensors(prepared.encoded["train"]),
        streams["validation"] if streams else as_tensors(prepared.encoded["validation"]), config.trainer,
        task=task, loss_fn=training_loss(model, task.loss(target)),
        score=lambda outputs, y: task.score(target, outputs, y),
        monitor=config.trainer.early_stopping.metric, mode=config.monitor_mode(), run_dir=run_dir, device=device,
        progress=progress, callbacks=callbacks, precision=precision, pin_memory=environment.get("pin_memory", False),
        world=world,
    )
    outputs, metrics = score_split(prepared, model, device, precision)
    return Fitted(prepared, model, result, outputs, metrics, device, precision)


def score_split(prepared: Prepared, model: nn.Module, device: torch.device, precision: Precision,
                ) -> tuple[np.ndarray, dict[str, float]]:
    """The model's activated outputs on the scored split (of its sample when streaming) and the split's metrics."""
    config, target = prepared.config, prepared.pipeline.target
    task, streams = config.task(), prepared.streams
    scored = as_tensors(prepared.encoded[prepared.scored_split])
    outputs, _ = predict_tensors(model, scored.inputs, task, config.trainer.eval_batch_size, target=scored.target,
                                 autocast=precision.autocast, device=device)
    if streams:  # the metrics of the whole scored split; `outputs` stay those of its sample (the report's rows)
        whole, _, truth = predict_stream(model, streams[prepared.scored_split].blocks(), task,
                                         config.trainer.eval_batch_size, autocast=precision.autocast, device=device)
        return outputs, split_metrics(task, target, whole, truth)
    return outputs, split_metrics(task, target, outputs, scored.target.numpy())


def profile_of(fitted: Fitted) -> dict[str, Any]:
    """The reference profile for monitoring (monitor/profile.py): the training split's rows as training read them,
    and the model's outputs on (a seeded sample of at most `monitor.profile_rows` of) the validation split."""
    from luodi.monitor.profile import build_profile, sample_rows

    prepared = fitted.prepared
    config, pipeline = prepared.config, prepared.pipeline
    encoded = prepared.encoded["validation"]
    keep = sample_rows(len(encoded), config.monitor.profile_rows, config.trainer.seed)
    if keep is not None:
        encoded = Encoded({name: array[keep] for name, array in encoded.inputs.items()},
                          encoded.target[keep] if encoded.target is not None else None, encoded.unseen)
    predictions = config.task().decode(pipeline.target, fitted.outputs_of(encoded))
    train = prepared.encoded["train"].inputs
    pixels = {encoder.name: train[encoder.name] for encoder in pipeline.tensor_encoders()
              if encoder.modality == "image" and encoder.name in train}
    return build_profile(config, prepared.splits.train, predictions, pixels)
