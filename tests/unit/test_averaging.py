"""The moving average of the weights (trainer.ema_decay): its update rule, the swap for validation, and exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from luodi.config import OptimizerConfig, TrainerConfig
from luodi.errors import InputError
from luodi.train.averaging import WeightAverage, average_decay
from luodi.train.checkpoint import load_checkpoint

from .test_loop import run


def test_decay_is_lower_for_the_first_updates() -> None:
    assert average_decay(0.99, 0) == pytest.approx(0.1)
    assert average_decay(0.99, 10) == pytest.approx(11 / 20)
    assert average_decay(0.99, 10_000) == 0.99


def test_the_average_follows_the_closed_form_and_copies_integer_buffers() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1))
    average = WeightAverage(model, 0.9)
    expected = model[0].weight.detach().clone()
    for update in range(30):
        with torch.no_grad():
            model[0].weight.add_(1.0)
        model[1].num_batches_tracked += 1
        average.update()
        decay = average_decay(0.9, update)
        expected = decay * expected + (1 - decay) * model[0].weight.detach()
    torch.testing.assert_close(average.state["0.weight"], expected)
    assert average.state["1.num_batches_tracked"].item() == 30 and average.updates == 30
    assert not torch.equal(average.state["0.weight"], model[0].weight)  # it lags the live weights


def test_applied_swaps_the_average_in_and_the_live_weights_back() -> None:
    model = torch.nn.Linear(3, 2)
    average = WeightAverage(model, 0.5)
    live = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.mul_(3.0)
    average.update()
    after_step = model.weight.detach().clone()
    with average.applied(model):
        torch.testing.assert_close(model.weight.detach(), average.state["weight"])
        assert not torch.equal(model.weight, after_step)
    assert torch.equal(model.weight, after_step)
    assert not torch.equal(average.state["weight"], live)


def test_fit_keeps_the_averaged_weights_and_resumes_exactly(tmp_path: Path) -> None:
    """Two epochs straight equal one epoch, a new process's worth of state, and the second epoch resumed from the
    checkpoint (which holds the average); the kept weights are the average, not the last live ones."""
    trainer = {"batch_size": 32, "optimizer": OptimizerConfig(lr=0.05), "ema_decay": 0.9,
               "early_stopping": {"enabled": False}}
    (tmp_path / "straight").mkdir()
    (tmp_path / "resumed").mkdir()
    straight, result = run(tmp_path / "straight", TrainerConfig(epochs=2, **trainer))  # type: ignore[arg-type]
    saved = load_checkpoint(tmp_path / "straight")
    assert saved is not None and saved["ema"]["updates"] == result.steps == 16
    assert result.best_epoch == 2  # so the kept weights are the average after the last step
    for name, value in straight.state_dict().items():
        assert torch.equal(value, saved["ema"]["state"][name]), name
    assert any(not torch.equal(saved["model"][name], value) for name, value in straight.state_dict().items())

    run(tmp_path / "resumed", TrainerConfig(epochs=1, **trainer))  # type: ignore[arg-type]
    resumed, again = run(tmp_path / "resumed", TrainerConfig(epochs=2, **trainer))  # type: ignore[arg-type]
    assert again.history == result.history
    for name, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name


def test_a_checkpoint_without_the_average_is_refused_with_the_average_on(tmp_path: Path) -> None:
    run(tmp_path, TrainerConfig(epochs=1, batch_size=32))
    with pytest.raises(InputError, match="ema_decay"):
        run(tmp_path, TrainerConfig(epochs=2, batch_size=32, ema_decay=0.9))


def test_decay_is_validated() -> None:
    with pytest.raises(ValueError, match="ema_decay"):
        TrainerConfig(ema_decay=1.0)
