"""ServerState: what the routes share: settings, models and their batchers, metrics, prediction log, open streams."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from luodi.errors import InputError
from luodi.serve.batcher import Batcher, DeadlineExceeded, QueueFull
from luodi.serve.live import LiveMonitor
from luodi.serve.metrics import Metrics
from luodi.serve.middleware import Routes
from luodi.serve.model import Loaded, Payload, ServedModel, run_batch
from luodi.serve.predlog import PredictionLog
from luodi.serve.replies import OpenStreams, Reply
from luodi.serve.settings import ServeConfig
from luodi.tasks import Predictions

log = logging.getLogger("luodi.serve")

T = TypeVar("T")


async def in_passing_thread(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` in a thread of its own that ends after it. The OpenMP team (torch's intra-op threads) that a
    thread opens ends with that thread, so loading and warming a model leaves no team behind: the model's worker then
    holds the only one, whose helper threads keep spinning between parallel regions instead of sleeping, which GNU
    OpenMP does once a process holds more of its threads than CPUs (docs/performance.md, text generation)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not done.done():  # the lifespan may have been cancelled meanwhile
            outcome()

    def run() -> None:
        try:
            result = function(*args)
        except BaseException as error:  # noqa: BLE001 - handed to the awaiting coroutine, which raises it
            loop.call_soon_threadsafe(settle, partial(done.set_exception, error))
        else:
            loop.call_soon_threadsafe(settle, partial(done.set_result, result))

    threading.Thread(target=run, name="luodi-load", daemon=True).start()
    return await done


class ServerState:
    """What the routes share: settings, served models with their batchers, metrics, the prediction log."""

    def __init__(self, config: ServeConfig, home: Path | None, loader: Callable[..., Loaded]):
        self.config, self.home, self.loader = config, home, loader
        self.models: dict[str, ServedModel] = {}
        self.batchers: dict[str, Batcher] = {}
        self.metrics = Metrics()
        self.routes = Routes()
        self.streams = OpenStreams()
        self.predlog: PredictionLog | None = None
        self.live: LiveMonitor | None = None  # live drift gauges and alerts (serve/live.py), set in the lifespan
        self.ready = False
        self.draining = False

    def add(self, served: ServedModel) -> None:
        name, config = served.name, self.config
        self.models[name] = served
        self.batchers[name] = Batcher(
            run_batch, max_batch_size=config.max_batch_size, max_wait_s=config.max_wait_ms / 1000,
            max_queue_rows=config.max_queue_rows, batching=config.batching,
            on_batch=self.metrics.batch_observer(name), on_depth=self.metrics.depth_observer(name))
        self.routes.add_model(name)
        self.metrics.serving(name, served.current.version, served.current.backend.name)

    def timeout_s(self, header: bytes | None, requested_s: float | None = None) -> float:
        """The request's deadline: the server's, shortened by X-Timeout-Ms or a v2 `timeout` parameter."""
        timeout = self.config.timeout_ms / 1000
        if header is not None:
            try:
                value = float(header)
            except ValueError:
                value = -1.0
            if not 0 < value < float("inf"):
                raise InputError("X-Timeout-Ms must be a positive number of milliseconds")
            timeout = min(timeout, value / 1000)
        return min(timeout, requested_s) if requested_s else timeout

    async def infer(self, served: ServedModel, payload: Payload, timeout_s: float,
                    error: Callable[[int, str, dict[str, str] | None], Reply]) -> Predictions | Reply:
        """Queue the payload and wait for its result; refusals and failures become the route's error response."""
        try:
            result: Predictions = await self.batchers[served.name].submit(payload, payload.rows, timeout_s)
            return result
        except QueueFull as full:
            return error(429, str(full), {"Retry-After": str(full.retry_after)})
        except DeadlineExceeded as late:
            return error(504, str(late), None)
        except InputError as bad:
            return error(422, str(bad), None)
        except Exception:  # noqa: BLE001 - a failed run answers 500 for its own requests; the server goes on
            log.exception("model %s failed on a batch", served.name)
            return error(500, "the model failed on this request; see the server log", None)

    def record(self, endpoint: str, loaded: Loaded, payload: Payload, result: Predictions, started: float,
               request_id: str | None = None) -> None:
        for column, count in result.unseen:
            self.metrics.unseen.labels(loaded.name, column).inc(count)
        if self.predlog is not None:
            self.predlog.add(loaded.name, loaded.version, loaded.schema, endpoint, request_id,
                             (time.perf_counter() - started) * 1000, payload.columns, result)

    async def watch(self) -> None:
        """Poll each alias; load, warm and swap in a new version off the event loop."""
        while True:
            await asyncio.sleep(self.config.reload_interval_s)
            for served in list(self.models.values()):
                await self.reload(served)

    async def reload(self, served: ServedModel) -> dict[str, Any]:
        previous = (served.current.version, served.current.backend.name)
        try:
            changed = await in_passing_thread(served.reload, self.config, self.loader)
        except Exception as error:  # noqa: BLE001 - logged by reload; the old version keeps serving
            self.metrics.reloads.labels(served.name, "refused").inc()
            return {"reloaded": False, "version": served.current.version, "error": str(error)}
        if changed:
            self.metrics.reloads.labels(served.name, "loaded").inc()
            self.metrics.serving(served.name, served.current.version, served.current.backend.name, previous)
        return {"reloaded": changed, "version": served.current.version}
