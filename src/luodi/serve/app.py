"""create_app: the ASGI app for one or more registered models; models load and warm up in the lifespan.

Routes (see docs/serving.md): /v1/models/{name}/predict, the Open Inference Protocol v2 routes, /livez,
/readyz, /metrics, and /admin/* when an admin key is configured. The app is the Gate (middleware.py) in
front of a FastAPI app: the Gate checks and measures every request and answers the two model endpoints
itself over raw bodies (orjson and pydantic-core), since per-request Python work is what limits a server
on two cores; FastAPI serves the rest, and /openapi.json and /docs describe all of it, with request and
response schemas built from each model's input schema.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from fastapi import FastAPI

from luodi.errors import InputError
from luodi.serve.inference import handlers
from luodi.serve.middleware import Gate
from luodi.serve.model import Loaded, Reference, ServedModel, load_version
from luodi.serve.openapi import build_openapi
from luodi.serve.predlog import PredictionLog
from luodi.serve.routes import add_routes
from luodi.serve.settings import ServeConfig
from luodi.serve.state import ServerState

Loader = Callable[[Reference, ServeConfig], Loaded]


def create_app(references: list[Reference], config: ServeConfig, *, home: Path | None = None,
               loader: Loader = load_version) -> Gate:
    """The server for `references` (model names, name@alias, name/version or package folders)."""
    state = ServerState(config, home, loader)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import torch

        from luodi.store import Store

        torch.set_num_threads(config.threads)
        for reference in references:
            loaded = await asyncio.to_thread(loader, reference, config)
            if loaded.name in state.models:
                raise InputError(f"model {loaded.name!r} is named twice")
            state.add(ServedModel(reference, loaded))
        state.predlog = PredictionLog(Store(home).home, sample_rate=config.log_sample_rate,
                                      max_bytes=config.log_max_bytes, flush_s=config.log_flush_s)
        watcher = asyncio.create_task(state.watch()) if config.reload_interval_s > 0 else None
        state.ready = True
        try:
            yield
        finally:
            state.draining = True
            if watcher is not None:
                watcher.cancel()
            for batcher in state.batchers.values():
                await batcher.drain(config.drain_timeout_s)
                batcher.close()
            state.predlog.close()

    app = FastAPI(title="luodi", lifespan=lifespan, redoc_url=None)
    app.state.luodi = state
    add_routes(app, state)
    app.openapi = lambda: build_openapi(app, state)  # type: ignore[method-assign]
    return Gate(app, api_keys=config.api_keys, admin_keys=config.admin_keys, max_body_bytes=config.max_body_bytes,
                metrics=state.metrics, routes=state.routes, handlers=handlers(state), state=state)
