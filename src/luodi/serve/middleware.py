"""The gate every request passes: API keys, content types, the body size limit, and per-request metrics.

One pure ASGI layer (no per-request task or buffering, unlike Starlette's BaseHTTPMiddleware). Keys are
compared with `hmac.compare_digest` against every configured key, so timing says nothing about which key
or how much of it matched. Only /livez and /readyz are open when keys are configured; /admin/* needs an
admin key. A declared Content-Length over the limit is refused before reading; a body without one (chunked)
is counted while it is read (`read_body`) and refused the moment it passes the limit.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request

from luodi.serve.metrics import Metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

OPEN_PATHS = frozenset({"/livez", "/readyz"})
JSON_TYPES = (b"application/json",)
BODY_TYPES = (b"application/json", b"application/octet-stream")


@dataclass
class Routes:
    """Exact paths of the model endpoints -> (model, endpoint label); filled once the models have loaded."""

    endpoints: dict[str, tuple[str, str]] = field(default_factory=dict)

    def classify(self, path: str) -> tuple[str, str]:
        return self.endpoints.get(path, ("", "admin" if path.startswith("/admin/") else "other"))


async def respond(send: Send, status: int, payload: dict[str, Any],
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = orjson.dumps(payload)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def _matches(token: bytes, keys: tuple[bytes, ...]) -> bool:
    matched = False
    for key in keys:  # no early exit: every key is compared
        matched |= hmac.compare_digest(token, key)
    return matched


class Gate:
    """ASGI middleware: auth, content types, declared body size, and metrics for every HTTP request."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *, api_keys: tuple[str, ...],
                 admin_keys: tuple[str, ...], max_body_bytes: int, metrics: Metrics, routes: Routes):
        self.app = app
        self.api_keys = tuple(key.encode() for key in (*api_keys, *admin_keys))  # admin keys may also predict
        self.admin_keys = tuple(key.encode() for key in admin_keys)
        self.max_body_bytes = max_body_bytes
        self.metrics, self.routes = metrics, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        model, endpoint = self.routes.classify(path)
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            refusal = self._check(scope, path, endpoint)
            if refusal is None:
                await self.app(scope, receive, send_and_note)
            else:
                await respond(send_and_note, *refusal)
        finally:
            self.metrics.observe_request(model, endpoint, status, time.perf_counter() - started)

    def _check(self, scope: Scope, path: str, endpoint: str) -> tuple[int, dict[str, Any], list[Any]] | None:
        authorization = content_type = length = encoding = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
            elif name == b"content-encoding":
                encoding = value
        if self.api_keys and path not in OPEN_PATHS:
            scheme, _, token = authorization.partition(b" ")
            keys = self.admin_keys if endpoint == "admin" else self.api_keys
            if scheme.lower() != b"bearer" or not _matches(token.strip(), keys):
                return 401, {"error": "missing or invalid API key (Authorization: Bearer KEY)"}, \
                    [(b"www-authenticate", b"Bearer")]
        if scope["method"] == "POST":
            kind = content_type.split(b";")[0].strip().lower()
            allowed = BODY_TYPES if endpoint == "v2_infer" else JSON_TYPES
            if kind and kind not in allowed:
                return 415, {"error": f"content type {kind.decode('latin-1')!r} is not accepted; send JSON"}, []
            if encoding and encoding.strip().lower() != b"identity":
                return 415, {"error": "compressed request bodies are not accepted"}, []
            if length and (not length.isdigit() or int(length) > self.max_body_bytes):
                return 413, {"error": f"the body is larger than {self.max_body_bytes} bytes"}, []
        return None


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, read chunk by chunk and abandoned the moment it passes `limit` bytes."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)
