"""Registrations per second from 4 concurrent processes: the store on PostgreSQL against the embedded SQLite store.

Each process opens `Store(home)` and registers versions of one model name as fast as it can for a fixed time, all
four starting together: the worst contention, since every registration of a name takes the store's write lock
(SQLite's BEGIN IMMEDIATE, PostgreSQL's advisory lock). A registration stages a folder holding one 1 KB file
(not a trained package: writing one is the same on both engines), then `register_model` locks, numbers the version,
renames the folder into place, fsyncs the parent folder and commits. Both engines are durable: SQLite
synchronous=FULL in WAL mode, PostgreSQL with fsync on, a throwaway server (tests/postgres.py) on a unix socket.
Rounds alternate the engines; printed: registrations per second (median of rounds) and the ratio, for 4
processes and, for reference, 1 process. Every round checks the versions numbered 1..N without a gap.

    .venv/bin/python benchmarks/store.py            # about 1 minute
    .venv/bin/python benchmarks/store.py --quick    # smoke run, about 20 s
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from results_file import write_result  # benchmarks/ is on sys.path when a script runs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from luodi.store import Store  # noqa: E402
from postgres import PostgresServer, Unavailable  # noqa: E402 - the test suite's throwaway server

PROCESSES = 4


def register_for(home: Path, database: str | None, seconds: float, barrier: Any, counts: Any, index: int) -> None:
    """One writer: register versions of `bench` until `seconds` have passed after the barrier."""
    store = Store(home, database)
    barrier.wait()
    deadline, done = time.perf_counter() + seconds, 0
    while time.perf_counter() < deadline:
        staging = store.staging_dir()
        (staging / "package.json").write_bytes(b"x" * 1024)
        store.register_model("bench", staging, run_id=None, task="binary", metrics={"writer": index})
        done += 1
    counts[index] = done


def rate(home: Path, database: str | None, processes: int, seconds: float) -> float:
    """Registrations per second of `processes` writers together on a fresh store."""
    Store(home, database)  # create the tables before the clock starts
    context = multiprocessing.get_context("fork")
    barrier, counts = context.Barrier(processes), context.Array("i", processes)
    workers = [context.Process(target=register_for, args=(home, database, seconds, barrier, counts, index))
               for index in range(processes)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
        assert worker.exitcode == 0, f"a writer failed (exit {worker.exitcode})"
    total = sum(counts)
    versions = [version.version for version in Store(home, database).list_versions("bench")]
    assert sorted(versions) == list(range(1, total + 1)), "versions are not numbered 1..N"
    return total / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seconds, rounds = (2.0, 1) if args.quick else (5.0, 3)
    os.environ.pop("LUODI_STORE", None)
    try:
        server = PostgresServer(durable=True).start()
    except Unavailable as reason:
        sys.exit(f"benchmarks/store.py needs a local PostgreSQL server (make postgres installs one): {reason}")
    report: dict[str, Any] = {"machine": platform.platform(), "cores": os.cpu_count(), "seconds_per_round": seconds,
                              "rounds": rounds}
    try:
        for processes in (PROCESSES, 1):
            measured: dict[str, list[float]] = {"sqlite": [], "postgresql": []}
            for round_index in range(rounds):
                order = ["sqlite", "postgresql"] if round_index % 2 == 0 else ["postgresql", "sqlite"]
                for engine in order:
                    home = Path(tempfile.mkdtemp(prefix=f"luodi-bench-store-{engine}-"))
                    database = server.create_database(f"bench_{processes}_{round_index}") \
                        if engine == "postgresql" else None
                    measured[engine].append(rate(home, database, processes, seconds))
            entry = {engine: {"registrations_per_s": statistics.median(values), "rounds": values}
                     for engine, values in measured.items()}
            entry["ratio_postgresql_to_sqlite"] = (entry["postgresql"]["registrations_per_s"]
                                                   / entry["sqlite"]["registrations_per_s"])
            report[f"{processes}_processes"] = entry
            print(f"{processes} process{'es' if processes > 1 else ''}: SQLite "
                  f"{entry['sqlite']['registrations_per_s']:.1f}/s, PostgreSQL "
                  f"{entry['postgresql']['registrations_per_s']:.1f}/s, ratio "
                  f"{entry['ratio_postgresql_to_sqlite']:.2f}x")
    finally:
        server.stop()
    write_result("store", report, args.quick)


if __name__ == "__main__":
    main()
