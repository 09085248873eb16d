"""Distributed training jobs: `luodi train CONFIG --nproc N` starting torchrun, and the folder one torchrun job's
ranks share (its checkpoint and which run it records).

    luodi train luodi.yaml --nproc 2                       # one machine: torchrun --standalone
    torchrun --nproc-per-node 2 -m luodi train luodi.yaml  # the same, started by hand (multi-node: rendezvous flags)

Every rank runs the same `jobs.train.train`; rank 0 records. When a rank dies, torchrun (with `--max-restarts`)
restarts the whole group with the same rendezvous id: rank 0 finds the run it started in the job's folder
(`run.json`) and every rank resumes from the job's checkpoint there, so the restarted group continues exactly.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from luodi.config import LuodiConfig
from luodi.errors import InputError

RUN_FILE = "run.json"  # {"run_id": ...}: the run a torchrun job records, found again by its restarts
RESULT_ENV = "LUODI_RESULT_FILE"  # where rank 0 writes the TrainResult for the launcher that started torchrun
CHECKPOINT = "checkpoint.pt"


def job_folder(config: LuodiConfig, home: str | Path | None, job: str) -> Path:
    """The folder of torchrun job `job` (its rendezvous id): runtime.checkpoint_dir, else LUODI_HOME/distributed."""
    from luodi.store import default_home

    root = Path(config.runtime.checkpoint_dir) if config.runtime.checkpoint_dir else \
        Path(home if home is not None else default_home()) / "distributed"
    return root.resolve() / (re.sub(r"[^A-Za-z0-9._-]", "_", job)[:128] or "none")


def claimed_run(folder: Path, restarts: int) -> str | None:
    """The run a restarted group continues (None on the job's first attempt: a new run, even when an earlier job
    with the same rendezvous id left its folder behind)."""
    path = folder / RUN_FILE
    if restarts == 0 or not path.is_file():
        return None
    run_id: str = json.loads(path.read_text())["run_id"]
    return run_id


def claim(folder: Path, run_id: str) -> None:
    """Mark `folder` as run `run_id`'s and drop a checkpoint an earlier job with the same id left there."""
    from luodi.io import atomic_write_json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / CHECKPOINT).unlink(missing_ok=True)
    atomic_write_json(folder / RUN_FILE, {"run_id": run_id})


@dataclass(frozen=True)
class Launch:
    """How `luodi train --nproc` starts torchrun (its flags, by the same names)."""

    nproc: int
    nnodes: str = "1"
    rdzv_endpoint: str | None = None  # host:port of the rendezvous (c10d); None on one machine: --standalone
    rdzv_id: str | None = None
    max_restarts: int = 0

    def command(self, train_args: list[str]) -> list[str]:
        """The torchrun command line that runs `luodi train <train_args>` on every rank."""
        if self.nproc < 1:
            raise InputError(f"--nproc must be at least 1, got {self.nproc}")
        if self.max_restarts < 0:
            raise InputError(f"--max-restarts must be 0 or more, got {self.max_restarts}")
        if self.rdzv_endpoint is None and self.nnodes != "1":
            raise InputError("--nnodes above 1 needs --rdzv-endpoint HOST:PORT (the same on every machine)")
        rendezvous = ["--standalone"] if self.rdzv_endpoint is None else \
            ["--rdzv-backend", "c10d", "--rdzv-endpoint", self.rdzv_endpoint,
             *(["--rdzv-id", self.rdzv_id] if self.rdzv_id else [])]
        return [sys.executable, "-m", "torch.distributed.run", *rendezvous, "--nnodes", self.nnodes,
                "--nproc-per-node", str(self.nproc), "--max-restarts", str(self.max_restarts),
                "-m", "luodi", "train", *train_args]


def launch(config: str | Path, launch: Launch, overrides: list[str] | tuple[str, ...] = (), *,
           home: str | Path | None = None, progress: str = "auto") -> dict[str, Any] | None:
    """Run `luodi train CONFIG` on `launch.nproc` processes per machine under torchrun and wait for it.

    The config is validated here first, so a wrong key fails at once (exit 2) rather than in every rank. Returns
    rank 0's `TrainResult` as a dict when this machine ran rank 0, else None; raises `RuntimeError` when torchrun
    fails (after its restarts).
    """
    from luodi.config import load_config

    load_config(config, overrides)
    args = [str(config), *(item for override in overrides for item in ("--set", override)),
            "--progress", progress, *(["--home", str(home)] if home is not None else [])]
    environment = dict(os.environ)
    # torchrun sets OMP_NUM_THREADS=1 with a warning when it is unset; luodi sets each rank's threads itself
    # (runtime.threads, 'auto': the node's cores / its ranks), so say so up front.
    environment.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // launch.nproc)))
    with tempfile.TemporaryDirectory(prefix="luodi-launch-") as folder:
        result_file = Path(folder) / "result.json"
        environment[RESULT_ENV] = str(result_file)
        # The ranks' own summaries (stdout) are left out: the caller gets rank 0's result from the file instead.
        # Progress and errors (stderr) pass through.
        returncode = subprocess.run(launch.command(args), env=environment, stdout=subprocess.DEVNULL,
                                    check=False).returncode
        if returncode != 0:
            raise RuntimeError(f"torchrun exited with status {returncode} (the ranks' errors are printed above)")
        if not result_file.is_file():
            return None
        result: dict[str, Any] = json.loads(result_file.read_text())
        return result
