"""DDP under torchrun with 2 CPU processes (gloo): the same model as one process, exact resume after a rank is
killed, and only rank 0 recording.

Equivalence tolerance: with dropout off, 2 ranks x 16 rows and 1 process x 32 rows take the same optimizer steps up
to float rounding (DDP averages the ranks' gradients in a different order), so every epoch's validation loss agrees
within 1e-4 (relative) and the test metrics within 1e-3.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_resume import assert_same_weights

import luodi.api as api
from luodi.store import Store

pytestmark = pytest.mark.slow

TRAINER = {"epochs": 3, "checkpoint_every_steps": 5, "optimizer": {"lr": 0.01}, "early_stopping": {"patience": 50}}
KILL_AT = 23  # mid-epoch 2 (14 steps per epoch); the last checkpoint before it is step 20

# Run by torchrun on every rank: api.train with a hook that SIGKILLs rank 1 at step KILL_AT on the first attempt
# (a real kill: the process dies without cleanup), and writes the steps each rank ran per attempt.
KILLER = """
import os, signal, sys
import luodi.api as api
from luodi.train.loop import Callback

config, home, log, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
attempt, rank = os.environ["TORCHELASTIC_RESTART_COUNT"], os.environ["RANK"]

def on_step_end(step, loss):
    with open(f"{log}/steps-{attempt}-{rank}.txt", "a") as handle:
        handle.write(f"{step}\\n")
    if step == kill_at and rank == "1" and attempt == "0":
        os.kill(os.getpid(), signal.SIGKILL)

result = api.train(config, home=home, progress="silent", callbacks=[Callback(on_step_end=on_step_end)])
with open(f"{log}/result-{rank}.json", "w") as handle:
    handle.write(result.to_dict().__repr__())
"""


def run_group(command: list[str]) -> subprocess.CompletedProcess[str]:
    """Run torchrun (or the launcher) in its own process group, and kill the whole group (its ranks too) when it
    runs past the timeout, so a hung rank never outlives the test."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            raise AssertionError(f"timed out after 300 s: {stderr[-3000:]}") from None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, table_csv: Any, tiny_config: Any) -> Path:
    folder = tmp_path_factory.mktemp("ddp")
    path: Path = tiny_config(folder / "tiny.yaml", table_csv(folder / "table.csv", rows=600), **TRAINER)
    text = path.read_text().replace("dropout: 0.1", "dropout: 0.0")  # dropout masks differ per rank by design
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def two_ranks(config: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """`luodi train CONFIG --nproc 2 --json`: the launcher starting torchrun, uninterrupted."""
    home = tmp_path_factory.mktemp("two-ranks")
    done = run_group([sys.executable, "-m", "luodi", "train", str(config), "--nproc", "2", "--home", str(home),
                      "--json"])
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout), home


def test_two_processes_match_one(config: Path, two_ranks: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    result, _ = two_ranks
    assert result["environment"]["world_size"] == 2 and result["environment"]["backend"] == "gloo"
    single = api.train(config, home=tmp_path / "single", progress="silent")
    manifest = json.loads((Path(result["package"]) / "package.json").read_text())
    assert result["epochs_run"] == single.epochs_run == 3
    single_manifest = json.loads((Path(str(single.package)) / "package.json").read_text())
    for two, one in zip(manifest["history"], single_manifest["history"], strict=True):
        assert two["val_loss"] == pytest.approx(one["val_loss"], rel=1e-4)
        assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)
    for name, value in single.metrics.items():
        assert result["metrics"][name] == pytest.approx(value, rel=1e-3, abs=1e-3), name


def test_only_rank_zero_records(two_ranks: tuple[dict[str, Any], Path]) -> None:
    result, home = two_ranks
    store = Store(home)
    (run,) = store.list_runs()  # one run, not one per rank
    assert run.status == "finished" and run.id == result["run_id"]
    assert [path.name for path in (home / "runs").iterdir()] == [run.id]
    assert [version.version for version in store.list_versions("tiny")] == [1]
    (job,) = (home / "distributed").iterdir()  # the job's folder: its checkpoint and the run it records
    assert json.loads((job / "run.json").read_text()) == {"run_id": run.id}
    assert sorted(path.name for path in job.iterdir()) == ["checkpoint.pt", "run.json"]


def test_killed_rank_restarts_and_resumes_exactly(config: Path, two_ranks: tuple[dict[str, Any], Path],
                                                  tmp_path: Path) -> None:
    straight, _ = two_ranks
    script, logs, home = tmp_path / "killer.py", tmp_path / "logs", tmp_path / "home"
    script.write_text(KILLER)
    logs.mkdir()
    done = run_group([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                "--max-restarts", "1", str(script), str(config), str(home), str(logs), str(KILL_AT)])
    assert done.returncode == 0, "\n".join(line for line in done.stderr.splitlines() if "[rank" in line)[-6000:]

    def steps(name: str) -> list[int]:
        return [int(line) for line in (logs / name).read_text().split()]

    assert steps("steps-0-1.txt")[-1] == KILL_AT  # rank 1 died there
    assert steps("steps-1-0.txt")[0] == steps("steps-1-1.txt")[0] == 21  # both resumed after the step-20 checkpoint
    store = Store(home)
    (run,) = store.list_runs()  # the restarted group continued the same run
    assert run.status == "finished" and run.model_version == 1
    assert_same_weights(store.get_version("tiny", 1).path, straight["package"])
    ranks = [ast.literal_eval((logs / f"result-{rank}.json").read_text()) for rank in (0, 1)]
    assert [result["run_id"] for result in ranks] == [run.id, run.id]  # rank 1 knows the run, from the job folder
    assert [result["rank"] for result in ranks] == [0, 1] and ranks[1]["model"] is None  # rank 1 registered nothing
