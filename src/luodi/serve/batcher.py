"""The per-model queue: adaptive dynamic batching with a bounded queue and per-request deadlines.

Requests wait in one queue per model; one worker thread runs the model on the rows of several requests at
once, off the event loop. The policy never waits when there is nothing to wait for: an idle model takes
whatever is queued at once (so a lone request pays no batching delay); while the model is busy, arrivals
pile up and form the next batch by themselves. The one wait is to regroup after a batch of several rows:
its callers come back together, so the model gathers arrivals until they pause for `max_wait_s / 4`, and
at most `max_wait_s` from when it became free. Without that wait a steady load of N callers settles into
alternating batches of 1 and N-1; with it, into batches of N. After a batch of one row nothing waits.
`max_batch_size` caps a batch; a request carrying several rows counts all of them and is never split.

Admission is decided at once: rows beyond `max_queue_rows` are refused (QueueFull, HTTP 429). A request's
deadline counts its time in the queue; an expired request is failed (DeadlineExceeded, HTTP 504) at its
deadline and removed from the queue, so the model never runs it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


class QueueFull(Exception):
    """The model's queue has no room; retry after `retry_after` seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"the queue is full; retry after {retry_after} s")
        self.retry_after = retry_after


class DeadlineExceeded(Exception):
    """The request's deadline passed before its result was ready."""


@dataclass(eq=False)
class Work:
    payload: Any
    rows: int
    future: asyncio.Future[Any]
    enqueued: float
    timer: asyncio.TimerHandle | None = None
    queued: bool = True


@dataclass
class BatchStats:
    """What one batch cost, for metrics: rows, seconds in the model, seconds each item waited in the queue."""

    rows: int
    seconds: float
    waits: list[float] = field(default_factory=list)


RunBatch = Callable[[list[Any]], Sequence[Any]]  # payloads -> one result (or Exception) per payload, same order


class Batcher:
    """Queue, batch and run work for one model; results go back to exactly the request that sent them."""

    def __init__(self, run_batch: RunBatch, *, max_batch_size: int, max_wait_s: float, max_queue_rows: int,
                 batching: bool = True, on_batch: Callable[[BatchStats], None] | None = None,
                 on_depth: Callable[[int], None] | None = None):
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size if batching else 1
        self.max_wait_s = max_wait_s if batching else 0.0
        self.max_queue_rows = max_queue_rows
        self.on_batch, self.on_depth = on_batch, on_depth
        self.queue: deque[Work] = deque()
        self.queued_rows = 0
        self.running = False
        self.last_rows = 1  # rows of the last batch: several mean callers are likely to come back together
        self.quiet_s = self.max_wait_s / 4  # a pause in arrivals this long ends the gathering
        self.last_arrival = 0.0
        self.seconds_per_row = 0.0  # recent model time per row, for Retry-After
        self.idle_since = 0.0
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="luodi-model")
        self._timer: asyncio.TimerHandle | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def depth(self) -> int:
        return self.queued_rows

    async def submit(self, payload: Any, rows: int, timeout_s: float) -> Any:
        """Queue `rows` rows; the run's result for this payload, QueueFull at once, or DeadlineExceeded."""
        if self.queued_rows + rows > self.max_queue_rows:
            raise QueueFull(self.retry_after())
        loop = asyncio.get_running_loop()
        work = Work(payload, rows, loop.create_future(), time.perf_counter())
        work.timer = loop.call_later(timeout_s, self._expire, work)
        self.queue.append(work)
        self.last_arrival = work.enqueued
        self._change_depth(rows)
        self._idle.clear()
        self._dispatch()
        try:
            return await work.future
        finally:
            work.timer.cancel()

    def retry_after(self) -> int:
        return max(1, math.ceil(self.queued_rows * self.seconds_per_row))

    def _change_depth(self, rows: int) -> None:
        self.queued_rows += rows
        if self.on_depth is not None:
            self.on_depth(self.queued_rows)

    def _expire(self, work: Work) -> None:
        if work.future.done():
            return
        work.future.set_exception(DeadlineExceeded("the request's deadline passed before its result was ready"))
        if work.queued:  # still waiting: it leaves the queue now and the model never sees it
            work.queued = False
            self._change_depth(-work.rows)

    def _dispatch(self) -> None:
        """Start a batch if the model is idle and it is time; otherwise arm the regroup timer."""
        if self.queued_rows == 0:
            self.queue.clear()  # what is left expired
        if self.running or not self.queue:
            if not self.running and not self.queue:
                self._idle.set()
            return
        if self.last_rows > 1 and self.queued_rows < self.max_batch_size and self.max_wait_s > 0:
            now = time.perf_counter()
            # Counted from when the model became free: the callers of the last batch are on their way back.
            start = max(self.queue[0].enqueued, self.idle_since)
            until = min(start + self.max_wait_s, self.last_arrival + self.quiet_s)
            if until > now:
                if self._timer is None:
                    self._timer = asyncio.get_running_loop().call_later(until - now, self._gathered)
                return
        self._start()

    def _gathered(self) -> None:
        self._timer = None  # arrivals since the timer was armed push the end of the pause: check again
        self._dispatch()

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch: list[Work] = []
        rows = 0
        while self.queue:
            work = self.queue[0]
            if not work.queued:
                self.queue.popleft()
                continue
            if batch and rows + work.rows > self.max_batch_size:
                break
            self.queue.popleft()
            work.queued = False
            batch.append(work)
            rows += work.rows
        if not batch:
            self._idle.set()
            return
        self._change_depth(-rows)
        self.running = True
        self.last_rows = rows
        asyncio.get_running_loop().create_task(self._run(batch, rows))

    async def _run(self, batch: list[Work], rows: int) -> None:
        started = time.perf_counter()
        try:
            results: Sequence[Any] = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.run_batch, [work.payload for work in batch])
        except Exception as error:  # noqa: BLE001 - a failed run fails its own requests, not the server
            results = [error] * len(batch)
        seconds = time.perf_counter() - started
        self.seconds_per_row = 0.8 * self.seconds_per_row + 0.2 * seconds / rows if self.seconds_per_row \
            else seconds / rows
        for work, result in zip(batch, results, strict=True):
            if not work.future.done():
                if isinstance(result, BaseException):
                    work.future.set_exception(result)
                else:
                    work.future.set_result(result)
        self.running = False
        self.idle_since = time.perf_counter()
        if self.on_batch is not None:
            self.on_batch(BatchStats(rows, seconds, [started - work.enqueued for work in batch]))
        self._dispatch()

    async def drain(self, timeout_s: float) -> bool:
        """Wait until nothing is queued or running; False if that took longer than `timeout_s`."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
