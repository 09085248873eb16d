"""Plain progress lines (not a terminal): the run id, and signs of life inside long work (issue 12 items 12, 13)."""

from __future__ import annotations

import time

import pytest

from luodi.train.progress import EpochLines


def test_a_long_phase_logs_at_the_interval_and_a_quick_one_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    lines = EpochLines(interval=0.05)
    with lines.phase("decoding images"):
        pass
    assert capsys.readouterr().err == ""  # an error right after stays the one line on stderr
    with lines.phase("decoding images"):
        time.sleep(0.3)
    printed = capsys.readouterr().err.splitlines()
    assert len(printed) >= 3 and all(line.startswith("decoding images: ") for line in printed), printed


def test_steps_inside_an_epoch_log_at_the_interval(capsys: pytest.CaptureFixture[str]) -> None:
    lines = EpochLines(interval=0.05)
    lines.run("20260101-000000-abcdef", "churn", resumed=False)
    lines.start(epochs=2, steps_per_epoch=40, epoch=1, step=10)  # resumed inside epoch 2
    for step in range(20):
        time.sleep(0.01)
        lines.step(0.5 if step % 5 == 0 else None)
    printed = capsys.readouterr().err.splitlines()
    assert printed[0] == ("run 20260101-000000-abcdef (churn) started; if stopped, continue with "
                          "`luodi train --resume 20260101-000000-abcdef`")
    assert len(printed) >= 3, printed
    assert all(line.startswith("epoch 2/2  step ") and "/40  train_loss 0.5000  " in line for line in printed[1:])
