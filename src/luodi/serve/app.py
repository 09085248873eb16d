"""create_app: the ASGI app for one or more registered models; models load and warm up in the lifespan.

Routes (see docs/serving.md): /v1/models/{name}/predict, the Open Inference Protocol v2 routes, the
OpenAI-compatible /v1/completions and /v1/chat/completions for text_generation models (openai.py) and
/v1/embeddings for text encoders (embeddings.py), /livez,
/readyz, /metrics, /admin/* when an admin key is configured, and the endpoints extension modules add
(`endpoints=`: functions of the ServerState that return `Endpoint`s, answered on the fast path).

The app is the Gate (middleware.py) in front of a FastAPI app: the Gate checks and measures every request
and answers the model endpoints itself over raw bodies (orjson and pydantic-core), since per-request Python
work is what limits a server on two cores; FastAPI serves the rest, and /openapi.json and /docs describe the
model endpoints too, with request and response schemas built from each model's input schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request

from luodi.errors import InputError
from luodi.serve.embeddings import embedding_endpoints
from luodi.serve.feedback import feedback_endpoints
from luodi.serve.inference import endpoints as builtin_endpoints
from luodi.serve.live import live_monitor
from luodi.serve.middleware import Endpoint, Gate, error_shape
from luodi.serve.model import Loaded, Reference, ServedModel, load_version
from luodi.serve.openai import openai_endpoints
from luodi.serve.openapi import build_openapi
from luodi.serve.predlog import PredictionLog
from luodi.serve.replies import Reply
from luodi.serve.routes import add_docs, add_routes
from luodi.serve.settings import ServeConfig
from luodi.serve.state import ServerState, in_passing_thread

Loader = Callable[[Reference, ServeConfig], Loaded]
Endpoints = Callable[[ServerState], list[Endpoint]]
log = logging.getLogger("luodi.serve")


def create_app(references: list[Reference], config: ServeConfig, *, home: Path | None = None,
               loader: Loader = load_version, endpoints: Sequence[Endpoints] = ()) -> Gate:
    """The server for `references` (model names, name@alias, name/version or package folders).

    Args:
        references: what to serve.
        config: the server's settings.
        home: the store folder.
        loader: loads and warms one version (tests wrap it).
        endpoints: functions that take the ServerState and return extension endpoints (for example
            OpenAI-compatible generation); their handlers may return a `Reply` or a `StreamedReply`.
    """
    state = ServerState(config, home, loader)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import torch

        from luodi.store import Store

        torch.set_num_threads(config.threads)
        for reference in references:
            loaded = await in_passing_thread(loader, reference, config)
            if loaded.name in state.models:
                raise InputError(f"model {loaded.name!r} is named twice")
            state.add(ServedModel(reference, loaded))
        # Live monitoring takes its rows from the prediction log as it flushes (nothing on the request path).
        state.live = live_monitor(config, state.metrics, Store(home).home, lambda name: state.models[name].current)
        state.predlog = PredictionLog(Store(home).home, sample_rate=config.log_sample_rate,
                                      max_bytes=config.log_max_bytes, flush_s=config.log_flush_s,
                                      listener=state.live.offer if state.live is not None else None)
        watcher = asyncio.create_task(state.watch()) if config.reload_interval_s > 0 else None
        # Everything loaded so far (torch, FastAPI, the model) lives as long as the server: out of the collector's
        # sight, full collections walk only what requests allocate.
        gc.collect()
        gc.freeze()
        state.ready = True
        try:
            yield
        finally:
            state.draining = True
            if watcher is not None:
                watcher.cancel()
            # Open streams first (they may still queue work on the batchers), all within one drain timeout.
            deadline = time.monotonic() + config.drain_timeout_s
            if not await state.streams.wait(config.drain_timeout_s):
                log.warning("%d stream(s) still open after the drain timeout", state.streams.count)
            for batcher in state.batchers.values():
                await batcher.drain(max(0.0, deadline - time.monotonic()))
                batcher.close()
            state.predlog.close()
            if state.live is not None:
                await asyncio.to_thread(state.live.close)

    app = FastAPI(title="luodi", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.luodi = state
    add_docs(app)

    async def http_error(request: Request, error: Exception) -> Reply:
        """FastAPI's own refusals (no such path, method not allowed) in the route's error shape."""
        assert isinstance(error, HTTPException)
        headers = dict(error.headers or {})
        return error_shape(request.url.path)(error.status_code, str(error.detail), headers)

    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]  # a Reply is an ASGI app
    add_routes(app, state)
    makers = (builtin_endpoints, openai_endpoints, embedding_endpoints, feedback_endpoints, *endpoints)
    served = [endpoint for make in makers for endpoint in make(state)]
    app.openapi = lambda: build_openapi(app, state, served)  # type: ignore[method-assign]
    return Gate(app, api_keys=config.api_keys, admin_keys=config.admin_keys, max_body_bytes=config.max_body_bytes,
                state=state, endpoints=served)
