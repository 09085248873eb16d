"""create_app: the UI's ASGI app: the pages in PAGES behind the Guard (Host, keys, security headers).

How to add a page (UI-PAGES' studies and monitoring pages are added this way):
  1. Write a module `luodi/ui/<page>.py` with `def routes(ui: UI) -> list[BaseRoute]`, returning Starlette
     `Route`s whose endpoints answer `ui.page(request, "<page>.html", title=..., **context)`: a plain `def` for a
     page that reads the store (Starlette runs it in its thread pool, off the event loop), `async def` for a POST.
     Raise `NotFound("no study 'x'")` for a missing thing (a 404 page naming it). Read the store via `ui.store`.
  2. Put `<page>.html` in `luodi/ui/templates/`, starting with `{% extends "base.html" %}` and filling
     `{% block content %}` (assets go in `luodi/ui/static/`, served at /static/; no CDN, no inline script: the
     CSP allows only scripts from /static/).
  3. Add the module's `routes` to PAGES below (and a link to NAV in state.py if it is a top-level page).
A POST handler calls `fields = await ui.form(request, admin=True)` first: it refuses (403) another origin, a
missing or wrong CSRF token (`<input type="hidden" name="csrf" value="{{ csrf }}">` in the form), and, with
admin=True, a caller without an admin key. GETs never change the store. Every route needs a key when keys are
configured (401), except /login and /static/.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from luodi.errors import InputError
from luodi.serve.settings import ServeConfig
from luodi.store import Store
from luodi.ui import models, monitoring, runs, studies
from luodi.ui.auth import COOKIE, SESSION_S, Auth, key_id, same_origin
from luodi.ui.guard import Guard
from luodi.ui.state import UI, NotFound, Refused

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("luodi.serve")
PAGES: list[Callable[[UI], list[BaseRoute]]] = [runs.routes, models.routes, studies.routes, monitoring.routes]


def create_app(config: ServeConfig, home: Path | None = None, database: str | None = None) -> Guard:
    """The UI over the store at `home` (default `$LUODI_HOME`), with `config`'s host and keys."""
    auth = Auth(config.api_keys, config.admin_keys, config.host)
    ui = UI(Store(home, database), auth)
    routes: list[BaseRoute] = [Route("/login", login_page(ui), methods=["GET", "POST"]),
                               Route("/logout", logout(ui), methods=["POST"]),
                               Mount("/static", StaticFiles(directory=STATIC), name="static")]
    for page in PAGES:
        routes += page(ui)

    async def not_found(request: Request, error: Exception) -> Response:
        return ui.error_page(request, 404, str(error))

    async def refused(request: Request, error: Exception) -> Response:
        return ui.error_page(request, 403, str(error))

    async def bad_input(request: Request, error: Exception) -> Response:
        return ui.error_page(request, 400, str(error))

    async def failed(request: Request, error: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path, exc_info=error)
        return ui.error_page(request, 500, "internal error; see the server log")

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        message = f"no page {request.url.path!r}" if error.status_code == 404 else str(error.detail)
        return ui.error_page(request, error.status_code, message)

    app = Starlette(routes=routes, exception_handlers={NotFound: not_found, Refused: refused, InputError: bad_input,
                                                      HTTPException: http_error, Exception: failed})
    app.state.ui = ui
    return Guard(app, ui)


def login_page(ui: UI) -> Callable[[Request], object]:
    async def login(request: Request) -> Response:
        """GET: the sign-in form; POST: check the key, set the session cookie, go back to `next`."""
        target = request.query_params.get("next", "/runs")
        target = target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/runs"
        if request.method == "GET":
            return ui.page(request, "login.html", next=target, title="Sign in")
        if not same_origin(request):
            return ui.page(request, "login.html", status=403, next=target, title="Sign in",
                           error="refused: the sign-in did not come from this site")
        from luodi.serve.middleware import BodyTooLarge, read_body

        try:
            body = await read_body(request.receive, 8192)
        except BodyTooLarge:
            return ui.error_page(request, 413, "the form is too large")
        from urllib.parse import parse_qs

        key = parse_qs(body.decode("utf-8", "replace")).get("key", [""])[0].strip()
        role = ui.auth.role_of(key.encode())
        if role is None:
            return ui.page(request, "login.html", status=401, next=target, title="Sign in",
                           error="that key is not valid here" if ui.auth.required else "no keys are configured")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, ui.auth.session(role, key_id(key.encode())), max_age=SESSION_S, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    return login


def logout(ui: UI) -> Callable[[Request], object]:
    async def sign_out(request: Request) -> Response:
        await ui.form(request, admin=False)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    return sign_out
