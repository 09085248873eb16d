"""The batcher on its own: own results per caller, no wait when idle, regrouping, caps, queue bound, deadlines."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from luodi.serve.batcher import Batcher, BatchStats, DeadlineExceeded, QueueFull


class Model:
    """Echoes each payload; records the payloads of every batch; can be slowed down."""

    def __init__(self, seconds: float = 0.0):
        self.seconds = seconds
        self.batches: list[list[Any]] = []
        self.thread_ids: set[int] = set()

    def __call__(self, payloads: list[Any]) -> list[Any]:
        self.thread_ids.add(threading.get_ident())
        time.sleep(self.seconds)
        self.batches.append(list(payloads))
        return [("echo", payload) for payload in payloads]


def make(model: Model, **settings: Any) -> Batcher:
    options = {"max_batch_size": 8, "max_wait_s": 0.05, "max_queue_rows": 64, **settings}
    return Batcher(model, **options)


def test_every_caller_gets_its_own_result_off_the_event_loop() -> None:
    model = Model(seconds=0.01)

    async def main() -> list[Any]:
        batcher = make(model)
        results = await asyncio.gather(*(batcher.submit(index, 1, 10) for index in range(40)))
        batcher.close()
        return results

    assert asyncio.run(main()) == [("echo", index) for index in range(40)]
    assert threading.get_ident() not in model.thread_ids
    assert max(len(batch) for batch in model.batches) > 1


def test_a_lone_request_does_not_wait() -> None:
    model = Model()

    async def main() -> float:
        batcher = make(model, max_wait_s=1.0)
        started = time.perf_counter()
        await batcher.submit("alone", 1, 10)
        batcher.close()
        return time.perf_counter() - started

    assert asyncio.run(main()) < 0.5
    assert model.batches == [["alone"]]


def test_batches_respect_the_cap_and_never_split_a_request() -> None:
    model = Model(seconds=0.02)
    sizes = {f"r{index}": rows for index, rows in enumerate([3, 3, 3, 1, 5, 2, 8, 1])}

    async def main() -> None:
        batcher = make(model, max_batch_size=6)
        await asyncio.gather(*(batcher.submit(name, rows, 10) for name, rows in sizes.items()))
        batcher.close()

    asyncio.run(main())
    assert sorted(name for batch in model.batches for name in batch) == sorted(sizes)
    for batch in model.batches:
        rows = sum(sizes[name] for name in batch)
        assert rows <= 6 or len(batch) == 1  # an 8-row request runs alone


def test_steady_load_regroups_into_full_batches() -> None:
    model = Model(seconds=0.01)

    async def caller(batcher: Batcher, index: int) -> None:
        for round_ in range(6):
            await batcher.submit((index, round_), 1, 10)

    async def main() -> None:
        batcher = make(model, max_batch_size=16, max_wait_s=0.05)
        await asyncio.gather(*(caller(batcher, index) for index in range(8)))
        batcher.close()

    asyncio.run(main())
    assert [len(batch) for batch in model.batches[-3:]] == [8, 8, 8]


def test_no_batching_runs_one_request_at_a_time() -> None:
    model = Model()

    async def main() -> None:
        batcher = make(model, batching=False)
        await asyncio.gather(*(batcher.submit(index, 1, 10) for index in range(10)))
        batcher.close()

    asyncio.run(main())
    assert all(len(batch) == 1 for batch in model.batches)


def test_the_queue_is_bounded_and_refuses_at_once() -> None:
    model = Model(seconds=0.2)

    async def main() -> list[Any]:
        batcher = make(model, max_batch_size=1, max_queue_rows=3)
        outcomes = await asyncio.gather(*(batcher.submit(index, 1, 10) for index in range(8)),
                                        return_exceptions=True)
        batcher.close()
        return outcomes

    outcomes = asyncio.run(main())
    refused = [outcome for outcome in outcomes if isinstance(outcome, QueueFull)]
    assert len(refused) == 4 and all(error.retry_after >= 1 for error in refused)
    assert sum(len(batch) for batch in model.batches) == 4


def test_an_expired_request_leaves_the_queue_and_never_runs() -> None:
    model = Model(seconds=0.3)

    async def main() -> tuple[Any, Any, float]:
        batcher = make(model, max_batch_size=1)
        first = asyncio.ensure_future(batcher.submit("slow", 1, 10))
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        late = await asyncio.gather(batcher.submit("late", 1, 0.05), return_exceptions=True)
        elapsed = time.perf_counter() - started
        assert batcher.depth == 0
        done = await first
        assert await batcher.drain(5)
        batcher.close()
        return done, late[0], elapsed

    done, late, elapsed = asyncio.run(main())
    assert done == ("echo", "slow") and isinstance(late, DeadlineExceeded)
    assert elapsed < 0.25
    assert model.batches == [["slow"]]


def test_a_failing_batch_fails_its_own_requests_only() -> None:
    calls = []

    def broken(payloads: list[Any]) -> list[Any]:
        calls.append(payloads)
        if "boom" in payloads:
            raise RuntimeError("model crashed")
        return payloads

    async def main() -> list[Any]:
        batcher = Batcher(broken, max_batch_size=1, max_wait_s=0, max_queue_rows=8)
        outcomes = await asyncio.gather(batcher.submit("boom", 1, 5), batcher.submit("fine", 1, 5),
                                        return_exceptions=True)
        batcher.close()
        return outcomes

    boom, fine = asyncio.run(main())
    assert isinstance(boom, RuntimeError) and fine == "fine"


def test_stats_reach_the_observer() -> None:
    seen: list[BatchStats] = []
    depths: list[int] = []

    async def main() -> None:
        batcher = Batcher(Model(), max_batch_size=4, max_wait_s=0, max_queue_rows=8, on_batch=seen.append,
                          on_depth=depths.append)
        await asyncio.gather(*(batcher.submit(index, 2, 5) for index in range(3)))
        batcher.close()

    asyncio.run(main())
    assert sum(stats.rows for stats in seen) == 6
    assert all(len(stats.waits) >= 1 and stats.seconds >= 0 for stats in seen)
    assert depths[-1] == 0 and max(depths) >= 2
