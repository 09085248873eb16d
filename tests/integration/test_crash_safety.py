"""kill -9 at random points while checkpointing and while registering leaves the last committed state intact.

RELIABILITY.md item 4 (atomic writes, staged versions) and item 5 (no committed row lost). Writers are forked
from a server that imported torch once (tests/integration/writers.py), so each kill costs milliseconds.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from luodi.package import load_package, verify_package
from luodi.store import Store
from luodi.train.checkpoint import CHECKPOINT_NAME, load_checkpoint

KILLS = 15


def kill_rounds(writers, kind: str, seed: int, most_seconds: float) -> Iterator[int]:  # type: ignore[no-untyped-def]
    """KILLS rounds: fork a writer, let it commit once, kill -9 it at a random moment; yields its pid."""
    rng = random.Random(seed)
    for round_ in range(KILLS):
        pid = writers.fork(kind, round_)
        writers.wait_for_commits(pid)
        time.sleep(rng.uniform(0, most_seconds))
        writers.kill(pid)
        writers.reap()
        yield pid


def test_kill_during_checkpointing_keeps_the_last_checkpoint(writers, tmp_path: Path) -> None:
    folder = tmp_path / "store" / "checkpoints"
    last = 0
    for pid in kill_rounds(writers, "checkpoint", seed=1, most_seconds=0.15):
        printed = [int(change[1]) for change in writers.changes(pid)]
        assert printed[0] == last + 1, "a committed checkpoint was lost before the next writer started"
        state = load_checkpoint(folder)
        assert state is not None
        # The newest file is the last printed one, or one more that committed just before the kill.
        assert printed[-1] <= state["step"] <= printed[-1] + 1
        step = state["step"]
        assert torch.equal(state["weights"], torch.arange(1000 + 997 * (step % 400), dtype=torch.float64) + step)
        assert [item["step"] for item in state["history"]] == list(range(1, step % 50 + 2))
        last = step
        names = {path.name for path in folder.iterdir()}
        assert CHECKPOINT_NAME in names
        assert all(name == CHECKPOINT_NAME or name.endswith(".tmp") for name in names), names
    assert last > KILLS, "the writers were killed before they wrote anything"


def test_kill_during_registration_loses_no_version(writers, tmp_path: Path) -> None:
    store_path = tmp_path / "store"
    checked: set[int] = set()
    for _ in kill_rounds(writers, "register", seed=2, most_seconds=0.25):
        store = Store(store_path)
        assert store.integrity_check() == "ok"
        printed = {int(change[2]) for change in writers.changes() if change[0] == "version"}
        versions = {version.version: version for version in store.list_versions("alpha")}
        assert printed <= set(versions), f"committed versions lost: {sorted(printed - set(versions))}"
        assert sorted(versions) == list(range(1, len(versions) + 1)), "version numbers must have no gaps"
        for number, version in versions.items():
            verify_package(version.path)  # hashes of every version, old ones included
            if number not in checked:
                package = load_package(version.path)
                assert package.manifest["metrics"] == version.metrics
                checked.add(number)
    assert len(checked) > KILLS
