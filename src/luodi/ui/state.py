"""UI: what every page shares: the store, the templates, the keys; rendering a page, reading a form, not-found pages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from luodi.serve.middleware import BodyTooLarge, read_body
from luodi.store import Store
from luodi.ui import charts
from luodi.ui.auth import Auth, Caller

MAX_FORM_BYTES = 64 * 1024
NAV = (("Runs", "/runs"), ("Models", "/models"), ("Studies", "/studies"))  # the bar at the top of every page


class NotFound(Exception):
    """A page for something the store does not hold; the message names it (`no run '2026...'`)."""


class Refused(Exception):
    """A POST refused (403): another origin, a bad CSRF token, or no admin key; the message says which."""


class UI:
    """The store, the templates and the keys of one UI server; pages are functions of it (see app.py)."""

    def __init__(self, store: Store, auth: Auth):
        self.store, self.auth = store, auth
        self.templates = Environment(loader=PackageLoader("luodi.ui", "templates"),
                                     autoescape=select_autoescape(default=True, default_for_string=True))
        self.templates.globals.update(nav=NAV, line_chart=charts.line_chart, sparkline=charts.sparkline,
                                      number=charts.number)

    def caller(self, request: Request) -> Caller:
        caller = request.scope.get("state", {}).get("caller")
        return caller if isinstance(caller, Caller) else self.auth.caller(request)

    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        """A template extending base.html, with the caller, its CSRF token and the current path."""
        caller = self.caller(request)
        html = self.templates.get_template(template).render(
            request=request, path=request.url.path, caller=caller, csrf=self.auth.csrf_token(caller),
            keys_required=self.auth.required, **context)
        return HTMLResponse(html, status_code=status)

    async def form(self, request: Request, *, admin: bool) -> dict[str, str]:
        """A POSTed urlencoded form (first value per field), after the same-origin, CSRF and role checks."""
        try:
            body = await read_body(request.receive, MAX_FORM_BYTES)
        except BodyTooLarge:
            raise HTTPException(413, f"the form is larger than {MAX_FORM_BYTES} bytes") from None
        try:
            fields = {key: values[0] for key, values in parse_qs(body.decode(), keep_blank_values=True).items()}
        except UnicodeDecodeError:
            raise HTTPException(400, "the form is not UTF-8") from None
        refusal = self.auth.post_refusal(request, self.caller(request), fields.get("csrf", ""), admin)
        if refusal is not None:
            raise Refused(refusal)
        return fields

    def error_page(self, request: Request, status: int, message: str) -> Response:
        """An error as an HTML page (or JSON under /api/)."""
        if request.url.path.startswith("/api/"):
            from starlette.responses import JSONResponse

            return JSONResponse({"error": message}, status_code=status)
        return self.page(request, "error.html", status=status, status_code=status, message=message)


def query_text(query: Mapping[str, str], name: str, limit: int = 200) -> str:
    """A query parameter as stripped text, at most `limit` characters ('' when absent)."""
    return query.get(name, "").strip()[:limit]
