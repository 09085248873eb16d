"""The gate every request passes: API keys, content types, the body size limit, metrics, and the fast path.

`Gate` is the outermost ASGI app. For every HTTP request it reads the headers once, checks the API key,
the content type and the declared body size, and records the request's status and latency. The model
endpoints (/v1/models/NAME/predict, /v2/models/NAME/infer and /v2/models/NAME/versions/V/infer: the paths that
carry the load) are answered right here on raw ASGI messages; everything else goes on to the FastAPI app.
Measured on a trivial model at 32 concurrent callers, FastAPI's middleware stack, router and Request/Response
objects cost more per request than luodi's validation, batching, metrics and logging together.

Keys are compared with `hmac.compare_digest` against every configured key, so timing says nothing about
which key or how much of it matched. Only /livez and /readyz are open when keys are configured; /admin/*
needs an admin key. A declared Content-Length over the limit is refused before reading; a body without
one (chunked) is counted while it is read and refused the moment it passes the limit.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from starlette.requests import Request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/livez", "/readyz"})
JSON = b"application/json"
BODY_TYPES = {"v2_infer": (JSON, b"application/octet-stream")}
log = logging.getLogger("luodi.serve")


@dataclass
class Head:
    """The request headers luodi reads, found in one pass over the raw header list."""

    authorization: bytes = b""
    content_type: bytes = b""
    content_length: bytes = b""
    content_encoding: bytes = b""
    timeout_ms: bytes | None = None
    inference_header_length: bytes | None = None


HEADER_FIELDS = {b"authorization": "authorization", b"content-type": "content_type",
                 b"content-length": "content_length", b"content-encoding": "content_encoding",
                 b"x-timeout-ms": "timeout_ms", b"inference-header-content-length": "inference_header_length"}


def read_head(scope: Scope) -> Head:
    head = Head()
    for name, value in scope["headers"]:
        attribute = HEADER_FIELDS.get(name)
        if attribute is not None:
            setattr(head, attribute, value)
    return head


@dataclass
class Reply:
    """A whole response: status, body, content type and extra headers."""

    status: int
    body: bytes
    content_type: bytes = JSON
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    async def send(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": [
            (b"content-type", self.content_type), (b"content-length", str(len(self.body)).encode()), *self.headers]})
        await send({"type": "http.response.body", "body": self.body})


def error_reply(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, orjson.dumps(payload), JSON,
                 [(key.lower().encode(), value.encode()) for key, value in (headers or {}).items()])


class Target(NamedTuple):
    """Who a request is for: the model (empty when none), the endpoint label, and the version its path names."""

    model: str
    endpoint: str
    version: str | None = None


VERSIONED_INFER = re.compile(r"/v2/models/([^/]+)/versions/([^/]+)/infer")


@dataclass
class Routes:
    """Exact paths of the model endpoints -> their Target; filled once the models have loaded."""

    endpoints: dict[str, Target] = field(default_factory=dict)

    def classify(self, path: str) -> Target:
        target = self.endpoints.get(path)
        if target is not None:
            return target
        versioned = VERSIONED_INFER.fullmatch(path)  # /v2/models/NAME/versions/V/infer: NAME's infer, V checked there
        if versioned is not None:
            served = self.endpoints.get(f"/v2/models/{versioned[1]}/infer")
            if served is not None:
                return served._replace(version=versioned[2])
        return Target("", "admin" if path.startswith("/admin/") else "other")


def _matches(token: bytes, keys: tuple[bytes, ...]) -> bool:
    matched = False
    for key in keys:  # no early exit: every key is compared
        matched |= hmac.compare_digest(token, key)
    return matched


class BodyTooLarge(Exception):
    pass


async def receive_body(receive: Receive, limit: int) -> bytes:
    """The request body from raw ASGI messages, abandoned the moment it passes `limit` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_body(request: Request, limit: int) -> bytes:
    """The same limit for routes that go through FastAPI (admin)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


Handler = Callable[[Target, Head, bytes], Awaitable[Reply]]  # (model and version, headers, body) -> reply


class Gate:
    """The outermost ASGI app: checks and metrics for every request; model endpoints answered directly."""

    def __init__(self, app: ASGIApp, *, api_keys: tuple[str, ...], admin_keys: tuple[str, ...],
                 max_body_bytes: int, metrics: Any, routes: Routes, handlers: dict[str, Handler], state: Any = None):
        self.app, self.state = app, state  # state: the ServerState, for tests and the server's drain flag
        self.api_keys = tuple(key.encode() for key in (*api_keys, *admin_keys))  # admin keys may also predict
        self.admin_keys = tuple(key.encode() for key in admin_keys)
        self.max_body_bytes = max_body_bytes
        self.metrics, self.routes, self.handlers = metrics, routes, handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        target = self.routes.classify(scope["path"])
        model, endpoint = target.model, target.endpoint
        head = read_head(scope)
        status = 500
        try:
            refusal = self._check(scope, head, endpoint)
            handler = self.handlers.get(endpoint)
            if refusal is not None:
                status = refusal.status
                await refusal.send(send)
            elif handler is not None:
                reply = await self._answer(scope, receive, head, target, handler)
                if reply is None:
                    status = 499  # the client went away before sending its whole body
                    return
                status = reply.status
                await reply.send(send)
            else:
                async def send_and_note(message: Message) -> None:
                    nonlocal status
                    if message["type"] == "http.response.start":
                        status = message["status"]
                    await send(message)

                await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.observe_request(model, endpoint, status, time.perf_counter() - started)

    async def _answer(self, scope: Scope, receive: Receive, head: Head, target: Target, handler: Handler
                      ) -> Reply | None:
        if scope["method"] != "POST":
            return error_reply(405, {"error": "use POST"}, {"Allow": "POST"})
        try:
            body = await receive_body(receive, self.max_body_bytes)
        except BodyTooLarge:
            return error_reply(413, {"error": f"the body is larger than {self.max_body_bytes} bytes"})
        except ConnectionResetError:
            return None
        try:
            return await handler(target, head, body)
        except Exception:  # noqa: BLE001 - one broken request answers 500; the server goes on
            log.exception("%s %s failed", scope["method"], scope["path"])
            return error_reply(500, {"error": "internal error; see the server log"})

    def _check(self, scope: Scope, head: Head, endpoint: str) -> Reply | None:
        if self.api_keys and scope["path"] not in OPEN_PATHS:
            scheme, _, token = head.authorization.partition(b" ")
            keys = self.admin_keys if endpoint == "admin" else self.api_keys
            if scheme.lower() != b"bearer" or not _matches(token.strip(), keys):
                return error_reply(401, {"error": "missing or invalid API key (Authorization: Bearer KEY)"},
                                   {"WWW-Authenticate": "Bearer"})
        if scope["method"] == "POST":
            kind = head.content_type.split(b";")[0].strip().lower()
            if kind and kind not in BODY_TYPES.get(endpoint, (JSON,)):
                return error_reply(415, {"error": f"content type {kind.decode('latin-1')!r} is not accepted; "
                                                  "send application/json"})
            if head.content_encoding and head.content_encoding.strip().lower() != b"identity":
                return error_reply(415, {"error": "compressed request bodies are not accepted"})
            length = head.content_length
            if length and (not length.isdigit() or int(length) > self.max_body_bytes):
                return error_reply(413, {"error": f"the body is larger than {self.max_body_bytes} bytes"})
        return None
