"""The training loop, top to bottom: batches, optimizer, schedule, clipping, validation, early stopping, checkpoints.

Data order is a pure function of (seed, epoch), and every piece of state that changes during training is in
the checkpoint, so a run killed at any step and resumed from its last checkpoint ends with the same weights
as a run that was never interrupted (on CPU).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from luodi.config import OptimizerConfig, SchedulerConfig, TrainerConfig
from luodi.errors import InputError
from luodi.models.inference import predict_tensors
from luodi.tasks import Task
from luodi.train import distributed
from luodi.train.averaging import WeightAverage
from luodi.train.checkpoint import load_checkpoint, save_checkpoint
from luodi.train.distributed import SINGLE, World
from luodi.train.precision import FP32, Precision, choose_placement, nbytes, place, to_device
from luodi.train.progress import Progress, Silent

LOSS_DISPLAY_S = 0.5  # how often the progress display gets the running loss

Score = Callable[[np.ndarray, np.ndarray], dict[str, float]]  # (activated outputs, targets) -> metrics


@dataclass(frozen=True)
class Callback:
    """Hooks into a run, for the caller's own work (recording, pruning a search trial, logging elsewhere).

    `on_step_end(global_step, loss)` runs after every optimizer step; `loss` is the step's loss when the loop read
    it (at most twice a second, a device sync on a GPU), else None. `on_epoch_end(epoch, metrics)` runs after each
    epoch's validation and checkpoint, with the epoch's row of the history (0-based epoch). A hook may raise
    `StopTraining` to end the run there (the best weights so far are kept in the checkpoint; `fit` re-raises it).
    """

    on_step_end: Callable[[int, float | None], None] | None = None
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None


class StopTraining(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a callback to end a run early on purpose (a search pruning a trial); `status` is what the run
    records ('pruned')."""

    def __init__(self, status: str, reason: str = ""):
        super().__init__(reason or status)
        self.status = status
        self.run_id: str | None = None  # the run it ended, set by the training job that recorded it


@dataclass
class Tensors:
    """A split as tensors: named model inputs (rows first) and the encoded target."""

    inputs: dict[str, torch.Tensor]
    target: torch.Tensor

    def __len__(self) -> int:
        return len(self.target)

    def to(self, device: torch.device) -> Tensors:
        return Tensors({k: v.to(device) for k, v in self.inputs.items()}, self.target.to(device))


class Stream(Protocol):
    """A split read from its file block by block (data.streaming; jobs/streamed.py), never held whole."""

    def __len__(self) -> int: ...

    def batches(self, epoch: int, skip_rows: int, batch_size: int) -> Iterator[Tensors]:
        """The epoch's training batches, an order that is a pure function of (seed, epoch), after `skip_rows`."""
        ...

    def blocks(self) -> Iterator[Tensors]:
        """The split's rows in file order, a block at a time (validation and scoring)."""
        ...


def predict_stream(model: nn.Module, blocks: Iterable[Tensors], task: Task, batch_size: int,
                   loss_fn: nn.Module | None = None, **options: Any) -> tuple[np.ndarray, float, np.ndarray]:
    """`predict_tensors` over a split's blocks: (activated outputs, mean loss, targets) of all its rows."""
    outputs, targets, loss_sum, rows = [], [], 0.0, 0
    for block in blocks:
        out, loss = predict_tensors(model, block.inputs, task, batch_size, loss_fn, block.target, **options)
        outputs.append(out)
        targets.append(block.target.numpy())
        loss_sum, rows = loss_sum + loss * len(block), rows + len(block)
    if not outputs:
        raise InputError("a streamed split has no rows")
    return np.concatenate(outputs), loss_sum / max(rows, 1), np.concatenate(targets)


@dataclass
class FitResult:
    history: list[dict[str, float]]
    best_epoch: int
    best_score: float
    stopped_early: bool
    steps: int
    seconds: float
    epochs_run: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    lr_scales: list[float] = field(default_factory=list)  # per epoch: the plateau scheduler's scale of the peak lr

    @property
    def still_improving(self) -> bool:
        """Stopped by the epoch cap with its best epoch the last one: more epochs would likely help."""
        return not self.stopped_early and self.epochs_run > 1 and self.best_epoch == self.epochs_run


STILL_IMPROVING = ("still improving when trainer.epochs stopped it (the best epoch was the last, {epochs}): raise "
                   "trainer.epochs, e.g. --set trainer.epochs={more}")


def still_improving_message(epochs_run: int) -> str:
    """What the summary, the warnings and the report say when the epoch cap stopped an improving run."""
    return STILL_IMPROVING.format(epochs=epochs_run, more=epochs_run * 2)


def build_optimizer(model: nn.Module, config: OptimizerConfig) -> torch.optim.Optimizer:
    """Parameter groups by (lr multiplier, weight decay); frozen parameters stay out.

    No weight decay on biases and normalization/embedding scales: the usual, better-behaved choice. A module with
    an `lr_multipliers()` method (a pretrained encoder's layer-wise lr decay) gives (parameter, multiplier) pairs;
    those parameters train at lr x multiplier.
    """
    multipliers: dict[int, float] = {}
    for module in model.modules():
        hook = getattr(module, "lr_multipliers", None)
        if callable(hook):
            multipliers.update((id(parameter), factor) for parameter, factor in hook())
    grouped: dict[tuple[float, bool], list[nn.Parameter]] = {(1.0, True): [], (1.0, False): []}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            decay = parameter.ndim >= 2 and "embeddings" not in name
            grouped.setdefault((multipliers.get(id(parameter), 1.0), decay), []).append(parameter)
    groups = [{"params": params, "weight_decay": config.weight_decay if decay else 0.0, "lr": config.lr * factor}
              for (factor, decay), params in grouped.items() if params or factor == 1.0]
    if config.type == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    optimizer_class = torch.optim.AdamW if config.type == "adamw" else torch.optim.Adam
    # On a GPU the fused kernel updates every parameter in one launch; the default (foreach) launches several per
    # group, and for luodi's small models the launches cost more than the arithmetic.
    trained = [parameter for params in grouped.values() for parameter in params]
    fused = bool(trained) and all(parameter.is_cuda for parameter in trained)
    return optimizer_class(groups, lr=config.lr, betas=config.betas, **({"fused": True} if fused else {}))


def lr_factor(config: SchedulerConfig, steps_per_epoch: int, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the peak lr at a global step: linear warmup, then the configured decay."""
    warmup = config.warmup_steps

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.type in ("none", "plateau"):  # plateau: the loop scales the lr when validation stalls
            return 1.0
        if config.type == "step":
            return float(config.gamma ** ((step // steps_per_epoch) // config.step_size))
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        floor = config.min_lr_ratio
        if config.type == "cosine":
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0 - (1 - floor) * progress  # linear

    return factor


def add_losses(total: float, losses: list[tuple[torch.Tensor, int]]) -> float:
    """Add each step's (loss x rows) to `total` in float64, in step order, and empty `losses`.

    The same sum, bit for bit, as adding `loss.double() * rows` one step at a time, for a fraction of the cost:
    the steps only append their detached loss (no per-step tensor ops, no per-step device sync).
    """
    if losses:
        values = torch.stack([loss for loss, _ in losses]).double().tolist()
        for value, (_, count) in zip(values, losses, strict=True):
            total += value * count
        losses.clear()
    return total


def set_lr(optimizer: torch.optim.Optimizer, peak_lrs: list[float], factor: float) -> None:
    """Every group's learning rate = its peak lr x the schedule's factor (what LambdaLR would set)."""
    for group, peak in zip(optimizer.param_groups, peak_lrs, strict=True):
        group["lr"] = peak * factor


def fit(
    model: nn.Module,
    train: Tensors | Stream,
    validation: Tensors | Stream | None,
    config: TrainerConfig,
    *,
    task: Task,
    loss_fn: nn.Module,
    score: Score,
    monitor: str,
    mode: str,
    run_dir: Path,
    device: torch.device,
    progress: Progress | None = None,
    callbacks: Sequence[Callback] = (),
    precision: Precision = FP32,
    pin_memory: bool = False,
    world: World = SINGLE,
    lr_scales: Sequence[float] | None = None,
) -> FitResult:
    """Train `model` in place and leave the best validation weights in it.

    Resumes from `run_dir/checkpoint.pt` when it exists. `monitor` names the validation metric that early
    stopping and best-weights selection watch; `mode` is 'min' or 'max'. `precision` (train/precision.py) sets
    the training steps' autocast and loss scaling. On CUDA `pin_memory` page-locks host tensors for asynchronous
    copies; the splits go to the GPU once when they fit (`FitResult.extra['data_placement']`). `task` gives the
    output activation the validation metrics read; `callbacks` are the caller's hooks (`Callback`).

    Under torchrun (`world`, train/distributed.py) `config.batch_size` is the global batch: each step every rank
    takes its share of the same rows, DDP averages the gradients (each rank's loss weighted by its share of the
    rows, so the step is the single-process step up to float rounding), validation is split across the ranks and
    gathered, and only rank 0 writes the checkpoint (with every rank's random state and running loss).

    `train` and `validation` may be `Stream`s (data.streaming): batches then come from the file's bounded shuffle
    and validation reads its file block by block; a resumed epoch skips the rows its steps already trained on.

    With no `validation` (a refit on training + validation rows, jobs/refit.py) the run trains `config.epochs` epochs
    and keeps the last weights (their average with `ema_decay`); `lr_scales` then replays, epoch by epoch, the
    plateau scheduler's scale of the peak lr that a run with validation recorded (`FitResult.lr_scales`).
    """
    progress = progress or Silent()
    model.to(device)
    if lr_scales is not None and len(lr_scales) < config.epochs:
        raise ValueError(f"lr_scales holds {len(lr_scales)} epochs, fewer than trainer.epochs {config.epochs}")
    if isinstance(train, Tensors) and isinstance(validation, Tensors | None):
        held = nbytes(validation.inputs) if validation is not None else 0
        placement = choose_placement(device, pin_memory, nbytes(train.inputs) + held)
        train = Tensors(place(train.inputs, device, placement, pin_memory),
                        place({"target": train.target}, device, placement, pin_memory)["target"])
        if validation is not None:
            validation = Tensors(place(validation.inputs, device, placement, pin_memory),
                                 place({"target": validation.target}, device, placement, pin_memory)["target"])
    elif world.distributed:
        raise InputError("data.streaming trains in one process: set data.streaming: false to train with torchrun")
    else:
        placement = "streamed"  # each batch is read, encoded and copied to the device as it is used
    on_device = placement not in ("pinned", "streamed")  # batches are slices of tensors already where the model is
    loss_fn = loss_fn.to(device)
    scaler = precision.scaler(device)
    rows = len(train)
    steps_per_epoch = max(1, math.ceil(rows / config.batch_size))
    if rows > config.batch_size and 0 < rows % config.batch_size < max(2, world.size):
        steps_per_epoch -= 1  # a 1-row last batch (1 row per rank) breaks batch norm and adds only noise
    optimizer = build_optimizer(model, config.optimizer)
    # The learning rate is a pure function of the global step (no scheduler object, nothing to checkpoint):
    # step k runs at peak x factor(k), and groups are touched only when the factor changes.
    factor = lr_factor(config.scheduler, steps_per_epoch, steps_per_epoch * config.epochs)
    peak_lrs = [group["lr"] for group in optimizer.param_groups]
    current_factor = math.nan
    sign = 1.0 if mode == "min" else -1.0
    state: dict[str, Any] = {
        "epoch": 0, "step_in_epoch": 0, "global_step": 0, "loss_sum": 0.0, "loss_rows": 0,
        "best_score": math.inf, "best_epoch": -1, "bad_epochs": 0, "history": [], "stopped_early": False,
        "best_model": None, "seconds": 0.0, "lr_scale": 1.0, "lr_scales": [],
    }
    # The moving average of the weights (trainer.ema_decay): what validation sees and the best weights keep.
    average = WeightAverage(model, config.ema_decay) if config.ema_decay else None
    saved = load_checkpoint(run_dir)
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if average is not None:
            if "ema" not in saved:
                raise InputError(f"{run_dir}: the checkpoint was written without trainer.ema_decay; resume it with "
                                 "the config it was started with")
            average.load_state_dict(saved["ema"])
        ranks = saved.get("ranks", [])
        own = ranks[world.rank] if len(ranks) == world.size else {}  # this rank's random state and running loss
        torch.set_rng_state(own.get("rng", saved["rng"]))
        if device.type == "cuda" and "cuda_rng" in saved:  # dropout on the GPU draws from the device's generator
            torch.cuda.set_rng_state(own.get("cuda_rng", saved["cuda_rng"]), device)
        if scaler is not None and "scaler" in saved:
            scaler.load_state_dict(saved["scaler"])
        state.update({key: saved[key] for key in state if key in saved})
        state["loss_sum"] = own.get("loss_sum", state["loss_sum"])
    if len(set(distributed.gather(state["global_step"], world))) > 1:
        raise InputError(f"{run_dir}: the ranks found different checkpoints there (global steps "
                         f"{distributed.gather(state['global_step'], world)}); the checkpoint folder must be one "
                         "path every node sees (runtime.checkpoint_dir on shared storage)")
    stepped = distributed.wrap(model, world, device)  # what the training steps call: DDP across ranks
    started = time.perf_counter() - state["seconds"]

    def checkpoint() -> None:
        state["seconds"] = time.perf_counter() - started
        own = {"rng": torch.get_rng_state(), "loss_sum": state["loss_sum"],
               **({"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {})}
        ranks = distributed.gather(own, world)  # a collective: every rank checkpoints at the same steps
        if world.main:
            save_checkpoint(run_dir, {
                **state, "model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": own["rng"],
                **({"ranks": ranks} if world.distributed else {}),
                **({"scaler": scaler.state_dict()} if scaler is not None else {}),
                **({"cuda_rng": own["cuda_rng"]} if device.type == "cuda" else {}),
                **({"ema": average.state_dict()} if average is not None else {}),
            })

    def validate() -> tuple[np.ndarray, float, np.ndarray]:
        """Outputs on the whole validation split, its mean loss and its targets; across ranks each predicts its
        block."""
        assert validation is not None
        if not isinstance(validation, Tensors):
            return predict_stream(model, validation.blocks(), task, config.eval_batch_size, loss_fn,
                                  autocast=precision.autocast, device=device, training=True)
        targets = validation.target.cpu().numpy()
        rows = len(validation)
        block = distributed.chunk(rows, world) if rows >= world.size else slice(0, rows)
        outputs, loss = predict_tensors(model, {k: v[block] for k, v in validation.inputs.items()}, task,
                                        config.eval_batch_size, loss_fn, validation.target[block],
                                        autocast=precision.autocast, device=device, training=True)
        if not world.distributed or rows < world.size:
            return outputs, loss, targets
        (loss_sum,) = distributed.all_sum([loss * len(outputs)], world)
        return distributed.gather_rows(outputs, world), loss_sum / rows, targets

    every = config.checkpoint_every_steps
    clip = config.gradient_clip
    batch_size = config.batch_size
    shown_at = -math.inf
    step_hooks = [callback.on_step_end for callback in callbacks if callback.on_step_end is not None]
    epoch_hooks = [callback.on_epoch_end for callback in callbacks if callback.on_epoch_end is not None]
    progress.start(config.epochs, steps_per_epoch, state["epoch"], state["step_in_epoch"])
    try:
        while state["epoch"] < config.epochs and not state["stopped_early"]:
            epoch = state["epoch"]
            if lr_scales is not None:
                state["lr_scale"] = lr_scales[epoch]
            model.train()
            if isinstance(train, Tensors):
                order = torch.randperm(rows, generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch))
                if on_device:
                    order = order.to(device)
            else:
                stream = train.batches(epoch, state["step_in_epoch"] * batch_size, batch_size)
            loss_sum: float = state["loss_sum"]
            losses: list[tuple[torch.Tensor, int]] = []  # (loss, rows) of steps not yet added to loss_sum
            for step in range(state["step_in_epoch"], steps_per_epoch):
                if isinstance(train, Tensors):
                    step_rows = order[step * batch_size:(step + 1) * batch_size]
                    index = distributed.shard(step_rows, world)
                    batch = {name: tensor[index] for name, tensor in train.inputs.items()}
                    target = train.target[index]
                    count, own = len(step_rows), len(index)  # rows of the step, and this rank's share
                else:
                    part = next(stream)
                    batch, target = part.inputs, part.target
                    count = own = len(part)
                if not on_device and device.type != "cpu":
                    batch, target = to_device(batch, device), to_device({"target": target}, device)["target"]
                with precision.autocast(device):
                    loss = loss_fn(stepped(batch), target)
                # DDP averages the ranks' gradients; weighting each rank's mean loss by its share of the rows makes
                # that average the gradient of the global batch's mean loss, as one process computes it.
                objective = loss * (own * world.size / count) if world.distributed else loss
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(objective).backward()
                else:
                    objective.backward()
                if (next_factor := factor(state["global_step"]) * state["lr_scale"]) != current_factor:
                    set_lr(optimizer, peak_lrs, next_factor)
                    current_factor = next_factor
                if clip is not None:
                    if scaler is not None:
                        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
                    nn.utils.clip_grad_norm_(model.parameters(), clip)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                if average is not None:
                    average.update()
                losses.append((loss.detach(), own))
                if len(losses) == 1024:
                    loss_sum = add_losses(loss_sum, losses)
                state["loss_rows"] += count
                state["global_step"] += 1
                state["step_in_epoch"] = step + 1
                # The running loss is read (a device sync on a GPU) at most twice a second, for the display.
                if (now := time.monotonic()) >= shown_at + LOSS_DISPLAY_S:
                    shown_at = now
                    shown = loss.item()
                    progress.step(shown)
                else:
                    progress.step(None)
                    shown = None
                for step_hook in step_hooks:
                    step_hook(state["global_step"], shown)
                if every and state["global_step"] % every == 0 and step + 1 < steps_per_epoch:
                    state["loss_sum"] = loss_sum = add_losses(loss_sum, losses)
                    checkpoint()
            (loss_sum,) = distributed.all_sum([add_losses(loss_sum, losses)], world)
            train_loss = loss_sum / max(state["loss_rows"], 1)
            state["lr_scales"].append(state["lr_scale"])  # the scale this epoch ran at, for a refit to replay
            if validation is None:  # nothing to choose from: the last epoch is the one kept
                metrics = {"epoch": epoch + 1, "train_loss": train_loss, "lr": optimizer.param_groups[0]["lr"]}
                improved = True
                state["best_score"], state["best_epoch"] = sign * train_loss, epoch
            else:
                if average is not None:
                    with average.applied(model):
                        outputs, val_loss, val_target = validate()
                else:
                    outputs, val_loss, val_target = validate()
                metrics = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
                           "lr": optimizer.param_groups[0]["lr"]}
                metrics.update({f"val_{k}": v for k, v in score(outputs, val_target).items()})
                metrics["val_loss"] = val_loss
                value = metrics["val_loss" if monitor == "loss" else f"val_{monitor}"]
                improved = sign * value < state["best_score"] - config.early_stopping.min_delta
                if improved or state["best_model"] is None:
                    state["best_score"], state["best_epoch"], state["bad_epochs"] = sign * value, epoch, 0
                    weights = average.state if average is not None else model.state_dict()
                    state["best_model"] = copy.deepcopy({k: v.detach().cpu() for k, v in weights.items()})
                else:
                    state["bad_epochs"] += 1
                    if config.scheduler.type == "plateau" and state["bad_epochs"] % config.scheduler.patience == 0:
                        state["lr_scale"] *= config.scheduler.gamma  # from the next step on
            state["history"].append(metrics)
            state.update(epoch=epoch + 1, step_in_epoch=0, loss_sum=0.0, loss_rows=0)
            stopping = config.early_stopping
            if stopping.enabled and validation is not None and state["bad_epochs"] >= stopping.patience:
                state["stopped_early"] = True
            checkpoint()
            progress.epoch_end(epoch, metrics, improved)
            for hook in epoch_hooks:
                hook(epoch, metrics)
    finally:
        progress.close()
    if validation is None:
        if average is not None:
            model.load_state_dict(average.state)
    else:
        model.load_state_dict(state["best_model"])
    return FitResult(
        history=state["history"], best_epoch=state["best_epoch"] + 1, best_score=sign * state["best_score"],
        stopped_early=state["stopped_early"], steps=state["global_step"],
        seconds=time.perf_counter() - started, epochs_run=state["epoch"],
        extra={"data_placement": placement, "mixed_precision": precision.name}, lr_scales=list(state["lr_scales"]),
    )
