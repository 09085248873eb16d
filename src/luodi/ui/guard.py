"""The Guard: the outermost ASGI app of the UI: the Host check, the keys (401 with a sign-in page), security headers.

Every response gets a Content-Security-Policy that allows scripts, styles and images only from this server (the
report route sets its own, stricter one), `nosniff`, `frame-ancestors 'self'` and no referrer to other sites.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from starlette.requests import Request

from luodi.serve.replies import Receive, Scope, Send
from luodi.ui.state import UI

OPEN_PREFIXES = ("/login", "/static/")  # what a signed-out browser may load
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-src 'self'; "
       "frame-ancestors 'self'; form-action 'self'; base-uri 'none'; object-src 'none'")
HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
           (b"cache-control", b"no-store")]


class Guard:
    def __init__(self, app: Any, ui: UI):
        self.app, self.ui = app, ui
        self.state = app.state  # `luodi ui`'s server marks `state.draining` on SIGTERM, as for `luodi serve`

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        auth = self.ui.auth

        async def secured(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", CSP.encode()))
                headers += [(name, value) for name, value in HEADERS if name not in names]
                message = {**message, "headers": headers}
            await send(message)

        if not auth.host_allowed(request.headers.get("host", "")):
            response = self.ui.error_page(request, 400, "this server answers only to its loopback address")
            await response(scope, receive, secured)
            return
        caller = auth.caller(request)
        scope.setdefault("state", {})["caller"] = caller
        path = scope["path"]
        if auth.required and caller.role is None and not path.startswith(OPEN_PREFIXES):
            if path.startswith("/api/"):
                response = self.ui.error_page(request, 401, "missing or invalid API key (Authorization: Bearer KEY)")
            else:
                query = scope.get("query_string", b"").decode("latin-1")
                response = self.ui.page(request, "login.html", status=401, next=path + (f"?{query}" if query else ""),
                                        title="Sign in")
            response.headers["www-authenticate"] = "Bearer"
            await response(scope, receive, secured)
            return
        await self.app(scope, receive, secured)
