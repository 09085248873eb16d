"""`luodi ui` on a big store: GET /runs over real HTTP with 10,000 runs (each with test metrics and 10 epochs of
curves), against the page's budget of one second.

The store is filled through its own schema in one transaction (rows as a training job writes them: the run with its
config and metrics, its tags, its epoch metrics; recording 10,000 real trainings would take hours and measure
training). A UI server then runs in this process on 127.0.0.1 (luodi.ui.server.background) and httpx asks, in
rounds: the first page (newest 50), a filtered page (one model and one tag), a page sorted by a metric (best first),
a deep page (page 150), and the same first page as JSON (/api/runs). Printed: the median and worst time of each
over the rounds, and their ratio to the 1 s budget; for reference, the time `Store.list_runs` takes to read all 10,000
runs, which is what an unpaginated page would pay before rendering anything.

    .venv/bin/python benchmarks/ui.py                 # about a minute
    .venv/bin/python benchmarks/ui.py --quick         # 2,000 runs, 3 rounds
    .venv/bin/python benchmarks/ui.py --postgres      # on a throwaway PostgreSQL server (tests/postgres.py)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from results_file import write_result  # benchmarks/ is on sys.path when a script runs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from luodi.serve.settings import make_config  # noqa: E402
from luodi.store import Store  # noqa: E402
from luodi.ui.server import background  # noqa: E402

MODELS = [f"model-{index}" for index in range(20)]
TAGS = ["nightly", "baseline", "ablation", "sweep", "prod-candidate"]
STATUSES = ["finished"] * 8 + ["failed", "running"]
BUDGET_S = 1.0


def fill(store: Store, runs: int, epochs: int, seed: int = 0) -> None:
    """`runs` runs spread over 2026, in one write transaction."""
    rng = random.Random(seed)
    with store.transaction() as connection:
        for index in range(runs):
            name = rng.choice(MODELS)
            run_id = f"2026{index:08d}-{rng.randrange(16**6):06x}"
            day = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00+0000"
            tags = rng.sample(TAGS, rng.randint(0, 2))
            accuracy = rng.random()
            metrics = {"accuracy": accuracy, "f1_macro": accuracy * 0.9, "roc_auc": min(1.0, accuracy + 0.05),
                       "loss": 1 - accuracy}
            config = {"name": name, "tags": tags, "trainer": {"epochs": epochs, "optimizer": {"lr": rng.random()}}}
            connection.execute(
                "INSERT INTO runs (id, name, status, created_at, updated_at, config, environment, metrics, summary) "
                "VALUES (?, ?, ?, ?, ?, ?, '{}', ?, '{}')",
                (run_id, name, rng.choice(STATUSES), day, day, json.dumps(config), json.dumps(metrics)))
            for tag in tags:
                connection.execute("INSERT INTO run_tags (run_id, tag) VALUES (?, ?)", (run_id, tag))
            for epoch in range(1, epochs + 1):
                loss = 1 / epoch + rng.random() * 0.1
                connection.execute("INSERT INTO epoch_metrics (run_id, epoch, metrics) VALUES (?, ?, ?)", (
                    run_id, epoch, json.dumps({"epoch": epoch, "train_loss": loss, "val_loss": loss * 1.1,
                                               "val_accuracy": 1 - loss / 2})))


def timed(client: httpx.Client, path: str, params: dict[str, str]) -> float:
    started = time.perf_counter()
    response = client.get(path, params=params)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 runs and 3 rounds: a smoke run")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--postgres", action="store_true", help="the store on a throwaway PostgreSQL server")
    args = parser.parse_args()
    if args.postgres:
        from postgres import PostgresServer  # the test suite's throwaway server

        server = PostgresServer().start()
        os.environ["LUODI_STORE"] = str(server.create_database("bench_ui"))
        try:
            measure(args)
        finally:
            server.stop()
    else:
        measure(args)


def measure(args: argparse.Namespace) -> None:
    runs = args.runs or (2000 if args.quick else 10_000)
    rounds = args.rounds or (3 if args.quick else 9)
    requests = {"first page": ("/runs", {}),
                "filtered (model + tag)": ("/runs", {"model": "model-3", "tag": "nightly"}),
                "sorted by accuracy": ("/runs", {"sort": "metric:accuracy"}),
                "filtered + sorted + dates": ("/runs", {"status": "finished", "since": "2026-03-01",
                                                        "until": "2026-09-30", "sort": "metric:loss"}),
                "deep page (150)": ("/runs", {"page": "150"}),
                "first page as JSON": ("/api/runs", {})}
    with tempfile.TemporaryDirectory(prefix="luodi-ui-bench-") as folder:
        store = Store(Path(folder))
        started = time.perf_counter()
        fill(store, runs, epochs=10)
        fill_s = time.perf_counter() - started
        started = time.perf_counter()
        everything = store.list_runs(limit=runs)
        list_all_s = time.perf_counter() - started
        assert len(everything) == runs
        times: dict[str, list[float]] = {label: [] for label in requests}
        with background(make_config(port=0), Path(folder)) as running, \
                httpx.Client(base_url=running.url, timeout=60) as client:
            for path, params in requests.values():  # warm: templates compiled, pages of the file cached
                timed(client, path, params)
            for _ in range(rounds):
                for label, (path, params) in requests.items():
                    times[label].append(timed(client, path, params))
        print(f"luodi ui, {runs:,} runs x 10 epochs on {store.database.kind} (filled in {fill_s:.1f} s); "
              f"{rounds} rounds; machine: {platform.machine()}, shared, busy")
        report: dict[str, Any] = {"runs": runs, "rounds": rounds, "database": store.database.kind,
                                  "budget_s": BUDGET_S, "list_all_runs_s": list_all_s, "pages": {}}
        for label, values in times.items():
            median, worst = statistics.median(values), max(values)
            report["pages"][label] = {"median_s": median, "max_s": worst}
            print(f"  GET {label:<28} median {median * 1000:7.1f} ms   worst {worst * 1000:7.1f} ms   "
                  f"{median / BUDGET_S:.3f}x the 1 s budget")
        print(f"  reference: Store.list_runs of all {runs:,} runs (no page) {list_all_s * 1000:.0f} ms")
        write_result(f"ui{'-postgres' if args.postgres else ''}", report, args.quick)


if __name__ == "__main__":
    main()
