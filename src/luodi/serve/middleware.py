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

The fast-path endpoints are a list of `Endpoint`s: the built-in /v1 predict and /v2 infer (inference.py) and
whatever extension modules add through `create_app(endpoints=...)`. A path-routed endpoint's path names the
model (`/v1/models/{model}/predict`, one path per served model); a body-routed one has one path for all
models (`/v1/completions`), and the Gate finds the model by the body's `model` field before the handler runs.
A handler returns a whole `Reply` or a `StreamedReply` (replies.py); both pass the same checks and metrics,
and a stream is held to the request's deadline and counted in `OpenStreams` so the drain waits for it.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from luodi.errors import InputError
from luodi.serve.replies import (
    JSON,
    Message,
    Receive,
    Reply,
    Scope,
    Send,
    StreamedReply,
    send_stream,
    v1_error,
    v2_error,
)

if TYPE_CHECKING:
    from luodi.serve.state import ServerState

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/livez", "/readyz"})
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


class Target(NamedTuple):
    """Who a request is for: the model (empty when none), the endpoint label, and the version its path names."""

    model: str
    endpoint: str
    version: str | None = None


Handler = Callable[[Target, Head, bytes], Awaitable[Reply | StreamedReply]]  # (model, headers, body) -> reply


@dataclass(frozen=True)
class Endpoint:
    """A POST endpoint the Gate answers itself (the fast path), built-in or added by an extension module.

    `path` holds `{model}` when the path names the model (one path per served model); a `body_routed` endpoint
    has one path, and the Gate reads the model from the body's `model` field (answering `error(404, ...)` for a
    model not served here, `error(422, ...)` for a body without one). `label` is the metrics' endpoint label.
    `openapi`: the operation /openapi.json lists for the path (summary, requestBody, responses; the error codes
    every endpoint may answer are added), or None for endpoints that document themselves (the built-in ones).
    """

    path: str
    label: str
    handler: Handler
    body_routed: bool = False
    content_types: tuple[bytes, ...] = (JSON,)
    error: Callable[[int, str], Reply] = v1_error
    openapi: dict[str, Any] | None = None


VERSIONED_INFER = re.compile(r"/v2/models/([^/]+)/versions/([^/]+)/infer")


@dataclass
class Routes:
    """Exact paths of the fast-path endpoints -> their Target; per-model paths are added as models load."""

    endpoints: dict[str, Target] = field(default_factory=dict)
    per_model: list[tuple[str, str]] = field(default_factory=list)  # (path with {model}, label)

    def add_endpoint(self, endpoint: Endpoint) -> None:
        if endpoint.body_routed:
            if "{model}" in endpoint.path:
                raise ValueError(f"{endpoint.path}: a body-routed endpoint's path cannot name the model")
            self.endpoints[endpoint.path] = Target("", endpoint.label)
        elif "{model}" not in endpoint.path:
            raise ValueError(f"{endpoint.path}: a path-routed endpoint's path names the model with {{model}}")
        else:
            self.per_model.append((endpoint.path, endpoint.label))

    def add_model(self, name: str) -> None:
        for path, label in self.per_model:
            self.endpoints[path.replace("{model}", name)] = Target(name, label)

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


def key_matches(token: bytes, keys: tuple[bytes, ...]) -> bool:
    matched = False
    for key in keys:  # no early exit: every key is compared
        matched |= hmac.compare_digest(token, key)
    return matched


def error_shape(path: str) -> Callable[..., Reply]:
    """The error helper of a route outside the Gate's endpoints: the v2 protocol's under /v2, else /v1's."""
    return v2_error if path == "/v2" or path.startswith("/v2/") else v1_error


def with_header(reply: Reply, name: bytes, value: bytes) -> Reply:
    reply.headers.append((name, value))
    return reply


class BodyTooLarge(Exception):
    pass


async def read_body(receive: Receive, limit: int) -> bytes:
    """The request body from raw ASGI messages, abandoned the moment it passes `limit` bytes.

    The one body reader: the Gate's endpoints call it, and the FastAPI routes pass it `request.receive`.
    """
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


def body_model(body: bytes) -> str | None:
    """The body's `model` field when the body is a JSON object that names one."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    model = payload.get("model") if isinstance(payload, dict) else None
    return model if isinstance(model, str) else None


class Gate:
    """The outermost ASGI app: checks and metrics for every request; the fast-path endpoints answered directly."""

    def __init__(self, app: ASGIApp, *, api_keys: tuple[str, ...], admin_keys: tuple[str, ...],
                 max_body_bytes: int, state: ServerState, endpoints: list[Endpoint]):
        self.app, self.state = app, state  # state: the ServerState (models, metrics, deadlines, open streams)
        self.api_keys = tuple(key.encode() for key in (*api_keys, *admin_keys))  # admin keys may also predict
        self.admin_keys = tuple(key.encode() for key in admin_keys)
        self.max_body_bytes = max_body_bytes
        self.metrics, self.routes = state.metrics, state.routes
        self.endpoints = {endpoint.label: endpoint for endpoint in endpoints}
        if len(self.endpoints) < len(endpoints) or len({e.path for e in endpoints}) < len(endpoints):
            raise ValueError("two endpoints share a label or a path")
        for endpoint in endpoints:
            self.routes.add_endpoint(endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        target = self.routes.classify(scope["path"])
        model, label = target.model, target.endpoint
        head = read_head(scope)
        status = 500
        try:
            endpoint = self.endpoints.get(label)
            refusal = self._check(scope, head, label, endpoint)
            if refusal is not None:
                status = refusal.status
                await refusal.send(send)
            elif endpoint is not None:
                reply = await self._answer(scope, receive, head, target, endpoint)
                if reply is None:
                    status = 499  # the client went away before sending its whole body
                    return
                if reply.model is not None:
                    model = reply.model
                if isinstance(reply, Reply):
                    status = reply.status
                    await reply.send(send)
                else:
                    status = 503  # unless send_stream returns: the server cancelled the stream while shutting down
                    status = await self._stream(reply, receive, send, head, started)
            else:
                async def send_and_note(message: Message) -> None:
                    nonlocal status
                    if message["type"] == "http.response.start":
                        status = message["status"]
                    await send(message)

                await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.observe_request(model, label, status, time.perf_counter() - started)

    async def _answer(self, scope: Scope, receive: Receive, head: Head, target: Target, endpoint: Endpoint
                      ) -> Reply | StreamedReply | None:
        if scope["method"] != "POST":
            return with_header(endpoint.error(405, "use POST"), b"allow", b"POST")
        try:
            body = await read_body(receive, self.max_body_bytes)
        except BodyTooLarge:
            return endpoint.error(413, f"the body is larger than {self.max_body_bytes} bytes")
        except ConnectionResetError:
            return None
        if endpoint.body_routed:
            name = body_model(body)
            if name is None:
                return endpoint.error(422, "the body must be a JSON object that names its model in 'model'")
            if name not in self.state.models:
                return endpoint.error(404, f"no model named {name!r}")
            target = target._replace(model=name)
        try:
            reply = await endpoint.handler(target, head, body)
        except Exception:  # noqa: BLE001 - one broken request answers 500; the server goes on
            log.exception("%s %s failed", scope["method"], scope["path"])
            return endpoint.error(500, "internal error; see the server log")
        if endpoint.body_routed and reply.model is None:
            reply.model = target.model
        return reply

    async def _stream(self, reply: StreamedReply, receive: Receive, send: Send, head: Head, started: float) -> int:
        """Send a streamed reply within the request's deadline, counted among the open streams while it runs."""
        timeout = reply.timeout_s
        if timeout is None:
            try:
                timeout = self.state.timeout_s(head.timeout_ms)
            except InputError:  # a bad X-Timeout-Ms the handler let through: the server's own deadline
                timeout = self.state.timeout_s(None)
        streams = self.state.streams
        streams.opened()
        try:
            return await send_stream(reply, receive, send, started + timeout)
        finally:
            streams.closed()

    def _check(self, scope: Scope, head: Head, label: str, endpoint: Endpoint | None) -> Reply | None:
        error = endpoint.error if endpoint is not None else error_shape(scope["path"])
        if self.api_keys and scope["path"] not in OPEN_PATHS:
            scheme, _, token = head.authorization.partition(b" ")
            keys = self.admin_keys if label == "admin" else self.api_keys
            if scheme.lower() != b"bearer" or not key_matches(token.strip(), keys):
                return with_header(error(401, "missing or invalid API key (Authorization: Bearer KEY)"),
                                   b"www-authenticate", b"Bearer")
        if scope["method"] == "POST":
            kind = head.content_type.split(b";")[0].strip().lower()
            accepted = endpoint.content_types if endpoint is not None else (JSON,)
            if kind and kind not in accepted:
                return error(415, f"content type {kind.decode('latin-1')!r} is not accepted; "
                                  f"send {accepted[0].decode()}")
            if head.content_encoding and head.content_encoding.strip().lower() != b"identity":
                return error(415, "compressed request bodies are not accepted")
            length = head.content_length
            if length and (not length.isdigit() or int(length) > self.max_body_bytes):
                return error(413, f"the body is larger than {self.max_body_bytes} bytes")
        return None
