"""Replies: a whole body (`Reply`) or a streamed one (`StreamedReply`), the error shapes, and how streams are sent.

Every answer the server gives is built here, so an error has one shape per protocol: /v1 `{"detail": ...}`
(FastAPI's), /v2 `{"error": "..."}` (the Open Inference Protocol's). A `Reply` is also an ASGI app, so the
FastAPI routes return it as they would a starlette Response.

A `StreamedReply` is sent without a Content-Length (HTTP/1.1 chunked transfer), one `http.response.body`
message per chunk, by `send_stream`. Its status line and headers go out before the first chunk, so a stream
that fails later cannot change them: it ends with the reply's `error_chunk` instead (an SSE `data:` event with
an `error` object, as OpenAI clients read it, or an NDJSON line). `send_stream` runs the chunks in a task of
their own beside a second task that waits for the client to go away, and stops at whichever comes first: the
end, an exception (500), the deadline (504), or the client leaving (499); the generator is then closed
(`aclose`), so its `finally` blocks free what it holds at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = b"application/json"
OCTET_STREAM = b"application/octet-stream"
EVENT_STREAM = b"text/event-stream"
NDJSON = b"application/x-ndjson"
# Proxies (nginx) buffer responses unless told not to; a buffered stream arrives all at once at the end.
STREAM_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
END = {"type": "http.response.body", "body": b"", "more_body": False}
CLOSE_WAIT_S = 1.0  # how long a cancelled generator gets to finish before it is left to the collector
log = logging.getLogger("luodi.serve")


@dataclass
class Reply:
    """A whole response: status, body, content type, extra headers, and the model it is for (the metrics label)."""

    status: int
    body: bytes
    content_type: bytes = JSON
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    model: str | None = None  # None: the model the request's route named (or none)

    async def send(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": [
            (b"content-type", self.content_type), (b"content-length", str(len(self.body)).encode()), *self.headers]})
        await send({"type": "http.response.body", "body": self.body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """As an ASGI app: what the FastAPI routes return."""
        await self.send(send)


def json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, orjson.dumps(payload), JSON,
                 [(key.lower().encode(), value.encode()) for key, value in (headers or {}).items()])


def v1_error(status: int, detail: Any, headers: dict[str, str] | None = None) -> Reply:
    """A /v1 error: `{"detail": ...}`, as FastAPI writes them."""
    return json_reply(status, {"detail": detail}, headers)


def v2_error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    """An Open Inference Protocol error: `{"error": "..."}`."""
    return json_reply(status, {"error": message}, headers)


def _error_object(status: int, message: str) -> dict[str, Any]:
    kind = "timeout" if status == 504 else "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "code": status}}


def sse_event(data: Any, event: str | None = None) -> bytes:
    """One server-sent event: `data` as JSON (bytes and str are sent as they are), one `data:` line per line."""
    text = data if isinstance(data, bytes) else data.encode() if isinstance(data, str) else orjson.dumps(data)
    lines = b"".join(b"data: " + line + b"\n" for line in text.split(b"\n"))
    return (b"event: " + event.encode() + b"\n" if event else b"") + lines + b"\n"


def sse_error(status: int, message: str) -> bytes:
    """The last event of a stream that failed: `data: {"error": {...}}`, which OpenAI clients raise as an error."""
    return sse_event(_error_object(status, message))


def ndjson_error(status: int, message: str) -> bytes:
    """The last line of an NDJSON stream that failed."""
    return orjson.dumps(_error_object(status, message)) + b"\n"


@dataclass
class StreamedReply:
    """A response sent chunk by chunk as `chunks` yields them (chunked transfer; no Content-Length).

    `timeout_s` counts from the request's arrival, like every deadline; None means the request's own
    (X-Timeout-Ms, else the server's timeout_ms). `error_chunk(status, message)` is the last chunk of a stream
    cut by its deadline (504) or by an exception in `chunks` (500).
    """

    chunks: AsyncIterator[bytes]
    timeout_s: float | None = None
    status: int = 200
    content_type: bytes = EVENT_STREAM
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    error_chunk: Callable[[int, str], bytes] = sse_error
    model: str | None = None


class OpenStreams:
    """How many streams are being sent; the drain on shutdown waits until none is."""

    def __init__(self) -> None:
        self.count = 0
        self._idle: asyncio.Event | None = None  # made on first use, inside the server's event loop

    def _event(self) -> asyncio.Event:
        if self._idle is None:
            self._idle = asyncio.Event()
            if self.count == 0:
                self._idle.set()
        return self._idle

    def opened(self) -> None:
        self.count += 1
        self._event().clear()

    def closed(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._event().set()

    async def wait(self, timeout_s: float) -> bool:
        """True once no stream is open; False if some still are after `timeout_s`."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._event().wait(), timeout_s)
        return self.count == 0


async def _pump(chunks: AsyncIterator[bytes], send: Send) -> None:
    async for chunk in chunks:
        if chunk:  # an empty body message would read as nothing; skip it rather than confuse a proxy
            await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _client_gone(receive: Receive) -> None:
    """Returns when the client disconnects (the body was read already, so that is the next message)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _close(chunks: AsyncIterator[bytes]) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:  # noqa: BLE001 - a generator that fails while closing has nothing more to send
            log.exception("a streamed reply failed while closing")


async def send_stream(reply: StreamedReply, receive: Receive, send: Send, deadline: float) -> int:
    """Send `reply` until it ends, fails, passes `deadline` (a time.perf_counter value) or loses its client.

    Returns the status to record: the reply's, 500 (the generator raised), 504 (the deadline) or 499 (the client
    went away). The generator is closed in every case; a cancelled send (the server shutting down) closes it too.
    """
    await send({"type": "http.response.start", "status": reply.status,
                "headers": [(b"content-type", reply.content_type), *STREAM_HEADERS, *reply.headers]})
    pump = asyncio.ensure_future(_pump(reply.chunks, send))
    gone = asyncio.ensure_future(_client_gone(receive))
    try:
        done, _ = await asyncio.wait((pump, gone), timeout=max(0.0, deadline - time.perf_counter()),
                                     return_when=asyncio.FIRST_COMPLETED)
        if pump in done:
            error = None if pump.cancelled() else pump.exception()
            if error is None and not pump.cancelled():
                await send(END)
                return reply.status
            log.error("a streamed reply failed", exc_info=error)
            await send({"type": "http.response.body", "more_body": False,
                        "body": reply.error_chunk(500, "internal error; see the server log")})
            return 500
        if gone in done:
            return 499
        await _stop(pump)
        await send({"type": "http.response.body", "more_body": False,
                    "body": reply.error_chunk(504, "the stream passed its deadline")})
        return 504
    finally:
        gone.cancel()
        await _stop(pump)
        if pump.done():  # a generator still running in a stuck task cannot be closed from here
            await _close(reply.chunks)


async def _stop(task: asyncio.Future[None]) -> None:
    """Cancel `task` and give it a moment to unwind (its generator sees CancelledError where it waits)."""
    if not task.done():
        task.cancel()
        await asyncio.wait((task,), timeout=CLOSE_WAIT_S)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved
