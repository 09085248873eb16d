"""The refit's pieces (train/refit.py and the loop without validation): the row union, the trainer of phase two,
and the learning-rate replay of a plateau scheduler."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from torch import nn

from luodi.config import SchedulerConfig, TrainerConfig
from luodi.errors import InputError
from luodi.tasks import TASKS
from luodi.train.loop import Tensors, fit
from luodi.train.refit import refit_trainer, replayed_scales, union_rows


def test_union_keeps_training_rows_first_then_validation_rows() -> None:
    train = pa.table({"x": [1.0, 2.0, 3.0], "label": ["a", "b", "a"]})
    validation = pa.table({"x": [4.0, None], "label": ["b", "b"]})
    union = union_rows(train, validation)
    assert union.num_rows == 5
    assert union.column("x").to_pylist() == [1.0, 2.0, 3.0, 4.0, None]
    assert union.column("label").to_pylist() == ["a", "b", "a", "b", "b"]


def test_union_of_an_all_null_column_takes_the_other_split_type() -> None:
    train = pa.table({"x": pa.array([1.5, 2.5]), "label": ["a", "b"]})
    validation = pa.table({"x": pa.array([None], pa.null()), "label": ["a"]})
    union = union_rows(train, validation)
    assert union.schema.field("x").type == pa.float64() and union.column("x").to_pylist() == [1.5, 2.5, None]


def test_union_refuses_splits_with_different_columns() -> None:
    with pytest.raises(InputError, match="must match"):
        union_rows(pa.table({"x": [1], "label": ["a"]}), pa.table({"y": [1], "label": ["a"]}))


def test_refit_trainer_runs_the_chosen_epochs_without_early_stopping() -> None:
    trainer = TrainerConfig(epochs=100, refit=True, early_stopping={"patience": 3})
    second = refit_trainer(trainer, 17)
    assert second.epochs == 17 and not second.early_stopping.enabled
    assert trainer.epochs == 100 and trainer.early_stopping.enabled  # the run's own config is left as it was


def test_replayed_scales() -> None:
    plateau, cosine = SchedulerConfig(type="plateau"), SchedulerConfig(type="cosine")
    assert replayed_scales(plateau, [1.0, 1.0, 0.3, 0.09, 0.09], 3) == [1.0, 1.0, 0.3]
    assert replayed_scales(cosine, [], 4) == [1.0] * 4
    with pytest.raises(InputError, match="recorded the learning rate of 2 epochs"):
        replayed_scales(plateau, [1.0, 1.0], 3)


def noise(rows: int, seed: int) -> Tensors:
    """Targets that features cannot predict: validation never improves for long, so the plateau scheduler cuts."""
    generator = torch.Generator().manual_seed(seed)
    return Tensors({"dense": torch.randn(rows, 4, generator=generator)},
                   torch.randint(0, 2, (rows,), generator=generator).float())


def test_a_run_without_validation_replays_the_plateau_learning_rates(tmp_path: Path) -> None:
    """Phase one's plateau scheduler cut the lr on validation; the run without validation, given the recorded
    scales, runs each epoch at the same lr (peak x scale, after the warmup)."""
    task = TASKS["binary"]

    class Linear(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(4, 1)

        def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
            return self.layer(inputs["dense"]).squeeze(-1)  # (batch,)

    def run(validation: Tensors | None, config: TrainerConfig, folder: str, scales: list[float] | None = None):  # type: ignore[no-untyped-def]
        torch.manual_seed(0)
        (tmp_path / folder).mkdir()
        model = Linear()
        result = fit(model, noise(64, 1), validation, config, task=task, loss_fn=nn.BCEWithLogitsLoss(),
                     score=lambda outputs, y: {"accuracy": float(((outputs > 0.5) == y).mean())}, monitor="loss",
                     mode="min", run_dir=tmp_path / folder, device=torch.device("cpu"), lr_scales=scales)
        return model, result

    config = TrainerConfig(epochs=8, batch_size=16, optimizer={"lr": 0.5}, early_stopping={"enabled": False},
                           scheduler={"type": "plateau", "patience": 1, "gamma": 0.5})
    _, first = run(noise(32, 2), config, "first")
    assert len(first.lr_scales) == 8 and min(first.lr_scales) < 1.0, "the plateau scheduler never cut the lr"
    assert [row["lr"] for row in first.history] == pytest.approx([0.5 * scale for scale in first.lr_scales])

    _, second = run(None, refit_trainer(config, 6), "second", first.lr_scales[:6])
    assert second.epochs_run == 6 and all("val_loss" not in row for row in second.history)
    assert [row["lr"] for row in second.history] == [row["lr"] for row in first.history[:6]]
    assert second.lr_scales == first.lr_scales[:6]

    _, unscaled = run(None, refit_trainer(config, 6), "unscaled")
    assert {row["lr"] for row in unscaled.history} == {0.5}  # without the replay nothing would cut it


def test_lr_scales_must_cover_the_epochs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fewer than trainer.epochs"):
        fit(nn.Linear(1, 1), noise(8, 0), None, TrainerConfig(epochs=3), task=TASKS["binary"],
            loss_fn=nn.BCEWithLogitsLoss(), score=lambda outputs, y: {}, monitor="loss", mode="min",
            run_dir=tmp_path, device=torch.device("cpu"), lr_scales=[1.0])


def test_init_refits_a_text_classifier_and_budgets_for_it() -> None:
    """`luodi init` writes `trainer.refit: true` for a classifier of texts alone (TF-IDF), a table of under 2,000
    rows and a larger table whose model and refit fit the time budget, where it was measured to win or tie, and its
    epoch cap counts the refit's epochs; text regression and an encoder's text keep it off."""
    import numpy as np
    import yaml

    from luodi.config import validate_config
    from luodi.data import budget
    from luodi.data.starter import plan, render
    from luodi.data.starter_core import run_epoch_seconds as _run_epoch_seconds

    rng = np.random.default_rng(0)
    words = ["not", "good", "bad", "the", "food", "service", "slow", "great"]

    def texts(rows: int, target: object) -> pa.Table:
        return pa.table({"review": [" ".join(rng.choice(words, 12)) for _ in range(rows)], "y": target})

    def written(data: pa.Table, **options: object):  # type: ignore[no-untyped-def]
        starter = plan(data, Path("r.csv"), "y", **options)  # type: ignore[arg-type]
        return starter, validate_config(yaml.safe_load(render(starter, "r.csv", Path("r.csv"))), "starter")

    starter, config = written(texts(300, rng.choice(["a", "b"], 300)))
    assert starter.refit and config.trainer.refit
    # The cap from --time-budget: epochs of (an epoch + a refit epoch over 85/70 the rows) fit it.
    big = texts(40_000, ["a", "b"] * 20_000)
    with_refit = plan(big, Path("r.csv"), "y", time_budget=60.0)
    assert with_refit.refit and 10 < with_refit.epochs < 200, with_refit.epochs
    assert with_refit.epochs == int(60.0 / with_refit.epoch_seconds)
    alone = _run_epoch_seconds(replace(with_refit, refit=False), 1_000_000)  # the same run without its refit
    refit = _run_epoch_seconds(with_refit, 1_000_000) - alone
    rows = int(40_000 * 0.7)
    assert refit == budget.training_seconds(round(rows * 85 / 70), with_refit.batch_size, 1_000_000)
    assert 1.0 < refit / alone < 85 / 70  # more rows than the epoch trains on, no validation pass
    assert "an epoch and its refit" in render(with_refit, "r.csv", Path("r.csv"))

    assert not written(texts(300, rng.normal(size=300)))[1].trainer.refit  # regression: not measured
    assert not written(texts(300, rng.choice(["a", "b"], 300)), encoder="minilm")[1].trainer.refit
    for rows, refits in ((300, True), (1_999, True), (2_000, True)):  # small tables: seconds of extra training
        numbers = pa.table({"x": rng.normal(size=rows), "y": rng.choice(["a", "b"], rows)})
        assert written(numbers)[1].trainer.refit is refits, rows
    # 2,000+ rows: only when 100 epochs of the model chosen and of its refit fit the budget, so the refit neither
    # displaces ensemble members nor cuts the epoch cap below the 100 an ensemble is planned for.
    wide = pa.table({**{f"x{i}": rng.normal(size=20_000) for i in range(40)}, "y": rng.choice(["a", "b"], 20_000)})
    roomy, members = plan(wide, Path("r.csv"), "y", time_budget=3_600.0), plan(wide, Path("r.csv"), "y")
    assert roomy.refit and roomy.ensemble == 32 and roomy.epochs >= 100
    assert members.ensemble == 32 and not members.refit and members.epochs >= 100  # the refit would not fit
    assert _run_epoch_seconds(replace(members, refit=True), 1) > _run_epoch_seconds(members, 1)
    notes = [" ".join(f"w{i}" for i in rng.integers(0, 500, 12)) for _ in range(300)]
    mixed = pa.table({"x": rng.normal(size=300), "note": notes, "y": rng.choice(["a", "b"], 300)})
    assert not written(mixed)[1].trainer.refit  # a text column beside numbers: neither measured case
