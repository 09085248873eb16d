"""The training loop's parts: schedules, optimizer groups, early stopping, best weights, checkpoints, progress."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from luodi.config import ModelConfig, OptimizerConfig, SchedulerConfig, TargetConfig, TrainerConfig
from luodi.models.mlp import MLP
from luodi.tasks import get_task
from luodi.train import loop
from luodi.train.loop import Callback, StopTraining, Tensors, build_optimizer, fit, lr_factor
from luodi.train.progress import RichBar


def schedule(steps: int, **config: object) -> list[float]:
    factor = lr_factor(SchedulerConfig(**config), steps_per_epoch=10, total_steps=steps)  # type: ignore[arg-type]
    return [factor(step) for step in range(steps)]


def test_warmup_is_linear_then_constant() -> None:
    values = schedule(20, type="none", warmup_steps=4)
    assert values[:5] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    assert set(values[4:]) == {1.0}


def test_cosine_falls_from_peak_to_floor() -> None:
    values = schedule(101, type="cosine", min_lr_ratio=0.1)
    assert values[0] == pytest.approx(1.0)
    assert values[50] == pytest.approx(0.55, abs=0.01)
    assert values[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_step_decay_every_step_size_epochs() -> None:
    values = schedule(60, type="step", step_size=2, gamma=0.5)  # 10 steps per epoch
    assert values[0] == values[19] == 1.0
    assert values[20] == values[39] == 0.5
    assert values[40] == 0.25


def test_linear_decay_towards_floor() -> None:
    values = schedule(11, type="linear", min_lr_ratio=0.0)  # the floor is reached at total_steps, as in HF
    assert values[0] == 1.0 and values[-1] == pytest.approx(1 / 11)
    assert np.allclose(np.diff(values), -1 / 11)


def test_no_weight_decay_on_biases_and_embeddings() -> None:
    model = MLP(ModelConfig(hidden_sizes=[4]), dense_width=3, categories=[(5, 2)], output_size=1)
    optimizer = build_optimizer(model, OptimizerConfig(weight_decay=0.3))
    decayed, free = optimizer.param_groups
    assert decayed["weight_decay"] == 0.3 and free["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].endswith("weight") and "embeddings" not in names[id(p)] for p in decayed["params"])
    assert {names[id(p)] for p in free["params"]} >= {"embeddings.0.weight", "head.bias"}
    assert isinstance(build_optimizer(model, OptimizerConfig(type="sgd")), torch.optim.SGD)
    assert type(build_optimizer(model, OptimizerConfig(type="adam"))) is torch.optim.Adam


def data(rows: int, seed: int) -> Tensors:
    generator = torch.Generator().manual_seed(seed)
    dense = torch.randn(rows, 3, generator=generator)
    target = (dense[:, 0] + 0.5 * dense[:, 1] > 0).float()
    return Tensors({"dense": dense, "categorical": torch.zeros(rows, 0, dtype=torch.int64)}, target)


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return MLP(ModelConfig(hidden_sizes=[8], dropout=0.0), dense_width=3, categories=[], output_size=1)


def run(tmp_path: Path, trainer: TrainerConfig, model: torch.nn.Module | None = None,
        **kwargs: object) -> tuple[torch.nn.Module, loop.FitResult]:
    model = model or tiny_model()
    task = get_task("binary")
    target = task.target(TargetConfig(name="y", task="binary"), {"classes": [0.0, 1.0], "counts": [1, 1]})
    result = fit(model, data(256, 0), data(64, 1), trainer, task=task, loss_fn=task.loss(target),
                 score=lambda outputs, y: task.score(target, outputs, y), monitor="loss", mode="min",
                 run_dir=tmp_path, device=torch.device("cpu"), **kwargs)  # type: ignore[arg-type]
    return model, result


def test_early_stopping_after_patience_without_improvement(tmp_path: Path) -> None:
    trainer = TrainerConfig(epochs=50, batch_size=32, optimizer=OptimizerConfig(lr=1e-9),
                            early_stopping={"patience": 3, "min_delta": 1e-3})  # type: ignore[arg-type]
    _, result = run(tmp_path, trainer)
    assert result.stopped_early
    assert result.epochs_run == 4 and result.best_epoch == 1  # epoch 1 sets the best; 3 more fail to beat it


def test_plateau_scales_the_lr_after_each_patience_of_stalled_epochs(tmp_path: Path) -> None:
    """plateau: lr x gamma after `patience` epochs without improvement (and again after as many more); early
    stopping with a longer patience then ends the run, never the epoch cap."""
    trainer = TrainerConfig(epochs=50, batch_size=32, optimizer=OptimizerConfig(lr=1e-9),
                            scheduler={"type": "plateau", "gamma": 0.5, "patience": 2},  # type: ignore[arg-type]
                            early_stopping={"patience": 5, "min_delta": 1e-3})  # type: ignore[arg-type]
    _, result = run(tmp_path, trainer)
    assert result.stopped_early and result.epochs_run == 6
    lrs = [row["lr"] / 1e-9 for row in result.history]
    assert lrs == pytest.approx([1, 1, 1, 0.5, 0.5, 0.25])  # epochs 1-3 at lr; 2 stalls; 2 more


def test_best_weights_are_restored(tmp_path: Path) -> None:
    model = tiny_model()
    snapshots: list[dict[str, torch.Tensor]] = []
    trainer = TrainerConfig(epochs=12, batch_size=16, optimizer=OptimizerConfig(lr=0.3),
                            early_stopping={"enabled": False})  # type: ignore[arg-type]
    callback = Callback(on_epoch_end=lambda epoch, metrics: snapshots.append(
        {k: v.clone() for k, v in model.state_dict().items()}))
    _, result = run(tmp_path, trainer, model, callbacks=[callback])
    losses = [h["val_loss"] for h in result.history]
    assert result.best_epoch == int(np.argmin(losses)) + 1 < 12  # with lr 0.3 the last epoch is not the best
    best = snapshots[result.best_epoch - 1]
    assert all(torch.equal(best[k], v) for k, v in model.state_dict().items())
    assert not all(torch.equal(snapshots[-1][k], v) for k, v in model.state_dict().items())


def test_checkpoints_every_n_steps_and_each_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved: list[tuple[int, int]] = []
    monkeypatch.setattr(loop, "save_checkpoint", lambda folder, state: saved.append(
        (state["epoch"], state["step_in_epoch"])))
    trainer = TrainerConfig(epochs=2, batch_size=32, checkpoint_every_steps=3,
                            early_stopping={"enabled": False})  # type: ignore[arg-type]
    run(tmp_path, trainer)  # 8 steps per epoch
    assert saved == [(0, 3), (0, 6), (1, 0), (1, 1), (1, 4), (1, 7), (2, 0)]


def test_rich_bar_shows_loss_and_validation_metrics(tmp_path: Path) -> None:
    screen = io.StringIO()
    bar = RichBar(Console(file=screen, force_terminal=True, width=220, color_system=None))
    trainer = TrainerConfig(epochs=3, batch_size=32, early_stopping={"enabled": False})  # type: ignore[arg-type]
    run(tmp_path, trainer, progress=bar)
    text = screen.getvalue()
    assert "epoch 3/3" in text and "24/24" in text
    assert "loss " in text and "val_loss" in text and "val_accuracy" in text


def test_callbacks_see_every_step_and_epoch_and_can_stop_the_run(tmp_path: Path) -> None:
    steps: list[tuple[int, float | None]] = []
    epochs: list[int] = []

    def prune(epoch: int, metrics: dict[str, float]) -> None:
        epochs.append(epoch)
        if epoch == 1:
            raise StopTraining("pruned", f"val_loss {metrics['val_loss']:.3f} after epoch {epoch + 1}")

    trainer = TrainerConfig(epochs=5, batch_size=32, early_stopping={"enabled": False})  # type: ignore[arg-type]
    with pytest.raises(StopTraining) as stopped:
        run(tmp_path, trainer, callbacks=[Callback(on_step_end=lambda step, loss: steps.append((step, loss)),
                                                   on_epoch_end=prune)])
    assert stopped.value.status == "pruned"
    assert epochs == [0, 1]  # the third epoch never ran
    assert [step for step, _ in steps] == list(range(1, 17))  # 8 steps per epoch, numbered from 1
    assert steps[0][1] is not None and np.isfinite(steps[0][1])  # the first step's loss is always read
