"""Resume is exact: a run interrupted mid-epoch and resumed ends with the same weights, bit for bit, on CPU.

RELIABILITY.md item 6. A resume that ignored its checkpoint and trained from scratch would also end with
the same weights (training is deterministic), so each test also proves that the resume continued from the
checkpoint: it counts the steps run after resuming, or checks which epochs the resumed process printed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import luodi.api as api
from luodi.package import WEIGHTS
from luodi.store import Store
from luodi.train.checkpoint import load_checkpoint

# 600 rows split 70/15/15: 420 training rows, 14 steps of 32 per epoch, 56 steps in 4 epochs.
STEPS_PER_EPOCH, EPOCHS, EVERY = 14, 4, 5
TRAINER = {"epochs": EPOCHS, "checkpoint_every_steps": EVERY, "optimizer": {"lr": 0.01},
           "scheduler": {"type": "cosine", "warmup_steps": 6}, "early_stopping": {"patience": 50}}


def assert_same_weights(package: str | Path, expected: str | Path) -> None:
    """The two packages' weights files are byte-identical; on failure, name the tensors that differ."""
    if (Path(package) / WEIGHTS).read_bytes() == (Path(expected) / WEIGHTS).read_bytes():
        return
    got, want = load_file(str(Path(package) / WEIGHTS)), load_file(str(Path(expected) / WEIGHTS))
    differ = {name: float((got[name] - want[name]).abs().max()) for name in want
              if name in got and not torch.equal(got[name], want[name])}
    raise AssertionError(f"weights differ; max abs difference per tensor: {differ}")


@pytest.mark.parametrize("interrupt_at", [3, 23, 42])
def test_interrupted_and_resumed_equals_straight(table_csv, tiny_config, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                 ctrl_c_at, interrupt_at: int) -> None:
    """Ctrl-C after `interrupt_at` steps (before any checkpoint, mid-epoch, last step of an epoch), then resume."""
    config = tiny_config(tmp_path / "tiny.yaml", table_csv(tmp_path / "table.csv", rows=600), **TRAINER)
    straight = api.train(config, home=tmp_path / "straight", progress="silent")
    assert straight.epochs_run == EPOCHS

    steps = ctrl_c_at(interrupt_at)
    home = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        api.train(config, home=home, progress="silent")
    store = Store(home)
    (run,) = store.list_runs()
    assert run.status == "interrupted"
    saved = load_checkpoint(store.run_dir(run.id))
    checkpointed = (interrupt_at - 1) // EVERY * EVERY  # the last multiple of EVERY before the interrupt
    assert (saved or {}).get("global_step", 0) == checkpointed
    if saved is not None:
        assert saved["step_in_epoch"] == checkpointed % STEPS_PER_EPOCH != 0  # a mid-epoch checkpoint

    ctrl_c_at(-1)
    resumed = api.train(resume=run.id, home=home, progress="silent")
    assert steps["count"] == STEPS_PER_EPOCH * EPOCHS - checkpointed, "the resume did not continue from its checkpoint"
    assert resumed.run_id == run.id and store.get_run(run.id).status == "finished"
    assert_same_weights(resumed.package, straight.package)
    assert resumed.metrics == straight.metrics
    assert store.epoch_history(run.id) == Store(tmp_path / "straight").epoch_history(straight.run_id)


def luodi_command() -> list[str]:
    script = Path(sys.executable).with_name("luodi")
    return [str(script)] if script.exists() else [sys.executable, "-m", "luodi.cli"]


def cli(args: list[str], home: Path, cwd: Path, **popen: object) -> subprocess.Popen[str]:
    env = {**os.environ, "LUODI_HOME": str(home)}
    env.pop("LUODI_DEBUG", None)
    return subprocess.Popen([*luodi_command(), *args], cwd=cwd, env=env, text=True, **popen)  # type: ignore[call-overload]


def run_cli(args: list[str], home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    with cli(args, home, cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.slow
@pytest.mark.e2e
def test_kill_9_mid_epoch_then_resume_equals_straight(table_csv, tiny_config, tmp_path: Path) -> None:
    """The real CLI: SIGKILL inside the last epoch, `luodi train --resume RUN`: the same weights as a straight run."""
    # 30,000 rows: 21,000 training rows in steps of 8, 2,625 steps (about 2 s) per epoch, a checkpoint every 50.
    data = table_csv(tmp_path / "table.csv", rows=30_000)
    config = tiny_config(tmp_path / "tiny.yaml", data, epochs=2, batch_size=8, optimizer={"lr": 0.01},
                         early_stopping={"enabled": False})
    args = ["train", str(config), "--set", "trainer.checkpoint_every_steps=50", "--progress", "lines", "--json"]
    with cli(args, tmp_path / "straight", tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as straight, \
            cli(args, tmp_path / "killed", tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as victim:
        try:
            checkpoint = wait_for_second_epoch(tmp_path / "killed", victim)
            time.sleep(0.1)  # a few more steps that the checkpoint does not hold
        finally:
            victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=60) == -signal.SIGKILL
        stdout, stderr = straight.communicate(timeout=300)
    assert straight.returncode == 0, stderr
    expected = json.loads(stdout)

    listed = json.loads(run_cli(["runs", "ls", "--json"], tmp_path / "killed", tmp_path).stdout)
    assert [run["status"] for run in listed] == ["stopped"]  # reads 'running' in the store; its process is gone
    run_id = listed[0]["id"]
    assert checkpoint.parent.name == run_id
    saved = load_checkpoint(checkpoint.parent)
    assert saved is not None and saved["step_in_epoch"] > 0 and saved["epoch"] == 1, "not killed mid-epoch"

    resumed = run_cli(["train", "--resume", run_id, "--progress", "lines", "--json"], tmp_path / "killed", tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["run_id"] == run_id
    printed = [line.split()[1] for line in resumed.stderr.splitlines() if line.startswith("epoch ")]
    assert printed == ["2/2"], resumed.stderr  # the first epoch was not run again
    assert_same_weights(result["package"], expected["package"])
    assert result["metrics"] == expected["metrics"]


def wait_for_second_epoch(home: Path, process: subprocess.Popen[str], timeout: float = 120) -> Path:
    """The run's checkpoint.pt once it was written inside the second epoch (the first epoch's end is behind)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "training ended before it could be killed"
        for checkpoint in (home / "runs").glob("*/checkpoint.pt"):
            state = torch.load(checkpoint, weights_only=True)
            if state["epoch"] >= 1 and state["step_in_epoch"] > 0:
                return checkpoint
        time.sleep(0.05)
    raise AssertionError(f"no mid-epoch checkpoint of the second epoch in {timeout} s")


def test_resume_after_registration_does_not_register_twice(table_csv, tiny_config, tmp_path: Path) -> None:
    """A crash between registering the version and marking the run finished must not yield a second version."""
    config = tiny_config(tmp_path / "tiny.yaml", table_csv(tmp_path / "table.csv", rows=300), epochs=2)
    home = tmp_path / "home"
    trained = api.train(config, home=home, progress="silent")
    store = Store(home)
    store.update_run(trained.run_id, status="running")  # as if killed right after the registration committed
    with pytest.raises(api.InputError, match="already finished: it registered tiny/1"):
        api.train(resume=trained.run_id, home=home, progress="silent")
    assert [version.version for version in store.list_versions("tiny")] == [1]
    assert store.get_run(trained.run_id).status == "finished"


def test_resume_refuses_overrides(table_csv, tiny_config, tmp_path: Path) -> None:
    with pytest.raises(api.InputError, match="--set does not apply to --resume"):
        api.train(None, ["trainer.epochs=3"], resume="anything", home=tmp_path / "home")


@pytest.mark.e2e
def test_sigterm_marks_the_run_interrupted_and_it_resumes(table_csv, tiny_config, tmp_path: Path) -> None:
    """`kill` (SIGTERM) stops like Ctrl-C: exit 130, status interrupted, and `--resume` finishes the run."""
    data = table_csv(tmp_path / "table.csv", rows=30_000)
    config = tiny_config(tmp_path / "tiny.yaml", data, epochs=2, batch_size=8, early_stopping={"enabled": False})
    args = ["train", str(config), "--set", "trainer.checkpoint_every_steps=50", "--progress", "lines"]
    with cli(args, tmp_path / "home", tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as victim:
        wait_for_second_epoch(tmp_path / "home", victim)
        victim.send_signal(signal.SIGTERM)
        _, stderr = victim.communicate(timeout=60)
    assert victim.returncode == 130, stderr
    assert "luodi train --resume" in stderr
    (run,) = json.loads(run_cli(["runs", "ls", "--json"], tmp_path / "home", tmp_path).stdout)
    assert run["status"] == "interrupted"
    lines = stderr.splitlines()  # the id when the run starts (before epoch 1) and in the interrupt message
    assert lines.index(f"run {run['id']} (tiny) started; if stopped, continue with `luodi train --resume "
                       f"{run['id']}`") < min(i for i, line in enumerate(lines) if line.startswith("epoch "))
    assert lines[-1] == f"interrupted: resume with `luodi train --resume {run['id']}`", stderr
    resumed = run_cli(["train", "--resume", run["id"], "--json"], tmp_path / "home", tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["model"] == {"name": "tiny", "version": 1}
