"""Fork server for the crash tests: import torch and luodi once, then fork writers that the test kills with -9.

    python writers.py HOME PACKAGE

Starting a Python process with torch costs seconds; forking one that already imported it costs milliseconds,
so a test can kill dozens of writers at random points in a few seconds. Commands on stdin, one per line:

    fork KIND SEED   fork a child that loops writing KIND until it is killed; prints "child PID"
    reap             wait for every child; prints "reaped PID STATUS" for each, then "reaped"

KIND is `checkpoint` (save_checkpoint with a growing state), `register` (stage a package and register it)
or `mixed` (create runs, log epochs, finish runs, register versions, move aliases). A child prints one line
per committed change, "PID WHAT KEY...", with a single write after the change returns: every printed change
was committed before the line existed. Children stop by themselves after 60 s or when the server dies.
"""

from __future__ import annotations

import os
import random
import sys
import time
import traceback
from pathlib import Path

import torch

from luodi.errors import InputError
from luodi.package import load_package, save_package
from luodi.store import Store
from luodi.train.checkpoint import load_checkpoint, save_checkpoint

NAMES = ("alpha", "beta")
ALIASES = ("champion", "canary")


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def checkpoint_state(step: int) -> dict:
    """A state that grows with the step (up to a few MB), with content that shows whether the file is torn."""
    size = 1000 + 997 * (step % 400)
    return {"step": step, "weights": torch.arange(size, dtype=torch.float64) + step,
            "history": [{"step": s, "loss": 1.0 / s} for s in range(1, step % 50 + 2)],
            "rng": torch.get_rng_state()}


def write_checkpoints(home: Path, rng: random.Random) -> None:
    folder = home / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    previous = load_checkpoint(folder)
    step = previous["step"] if previous else 0
    while alive():
        step += 1
        save_checkpoint(folder, checkpoint_state(step))
        say(f"{os.getpid()} checkpoint {step}")


def register(store: Store, package, name: str, counter: int) -> int:
    with torch.no_grad():
        next(package.model.parameters()).fill_(counter)  # every version has different weights
    staging = store.staging_dir()
    save_package(staging, config=package.config, pipeline=package.pipeline, model=package.model,
                 metrics={"counter": counter})
    registered = store.register_model(name, staging, run_id=None, task=package.task.name, metrics={"counter": counter})
    return registered.version


def write_versions(home: Path, rng: random.Random, package_path: Path) -> None:
    store, package = Store(home), load_package(package_path)
    counter = 0
    while alive():
        counter += 1
        say(f"{os.getpid()} version {NAMES[0]} {register(store, package, NAMES[0], counter)}")


def write_mixed(home: Path, rng: random.Random, package_path: Path) -> None:
    store, package = Store(home), load_package(package_path)
    runs: list[str] = []
    counter = 0
    while alive():
        counter += 1
        name, choice = rng.choice(NAMES), rng.random()
        if choice < 0.3 or not runs:
            run = store.create_run(name, {"counter": counter}, {"pid": os.getpid()})
            runs.append(run.id)
            say(f"{os.getpid()} run {run.id}")
        elif choice < 0.55:
            run_id = rng.choice(runs)
            store.log_epoch(run_id, counter, {"loss": 1.0 / counter})
            say(f"{os.getpid()} epoch {run_id} {counter}")
        elif choice < 0.65:
            run_id = rng.choice(runs)
            store.update_run(run_id, status="finished", metrics={"counter": counter})
            say(f"{os.getpid()} finished {run_id}")
        elif choice < 0.85:
            say(f"{os.getpid()} version {name} {register(store, package, name, counter)}")
        else:
            try:
                versions = [version.version for version in store.list_versions(name)]
            except InputError:  # no version of this name yet
                continue
            alias, reason = rng.choice(ALIASES), f"{os.getpid()}-{counter}"
            store.set_alias(name, alias, rng.choice(versions), reason)
            say(f"{os.getpid()} alias {name} {alias} {reason}")


SERVER = {"pid": 0, "deadline": 0.0}


def alive() -> bool:
    return os.getppid() == SERVER["pid"] and time.monotonic() < SERVER["deadline"]


def child(kind: str, seed: int, home: Path, package_path: Path) -> None:
    SERVER["deadline"] = time.monotonic() + 60
    rng = random.Random(seed)
    if kind == "checkpoint":
        write_checkpoints(home, rng)
    elif kind == "register":
        write_versions(home, rng, package_path)
    else:
        write_mixed(home, rng, package_path)


def main() -> None:
    home, package_path = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)  # no OpenMP pool in the server: forking it stays safe
    SERVER["pid"] = os.getpid()
    children: list[int] = []
    for line in sys.stdin:
        command, *args = line.split()
        if command == "fork":
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    child(args[0], int(args[1]), home, package_path)
                except BaseException:
                    traceback.print_exc()
                    code = 1
                finally:
                    os._exit(code)
            children.append(pid)
            say(f"child {pid}")
        elif command == "reap":
            for pid in children:
                _, status = os.waitpid(pid, 0)
                say(f"reaped {pid} {status}")
            children.clear()
            say("reaped")


if __name__ == "__main__":
    main()
