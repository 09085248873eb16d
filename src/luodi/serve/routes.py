"""The FastAPI routes: health, model metadata, metrics and (with an admin key) admin.

The model endpoints themselves (/v1 predict, /v2 infer, and extension endpoints) are answered before FastAPI,
by the Gate (see middleware.py and inference.py). Errors take each protocol's shape (replies.py): /v1
`{"detail": ...}`, /v2 `{"error": ...}`. A handler returns a `Reply`, which is an ASGI app as a Response is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import FastAPI
from pydantic import Field, StringConstraints, TypeAdapter, ValidationError
from starlette.requests import Request
from typing_extensions import TypedDict

import luodi
from luodi.errors import InputError
from luodi.serve import v2
from luodi.serve.inference import validation_detail
from luodi.serve.middleware import BodyTooLarge, read_body
from luodi.serve.model import ServedModel
from luodi.serve.replies import Reply, json_reply, v1_error, v2_error
from luodi.serve.state import ServerState

Handler = Callable[[Request], Awaitable[Any]]  # returns a Reply; starlette calls it as the response


class AliasMove(TypedDict):
    """The admin alias move; every field bounded (a version past int64 would overflow the store's integer)."""

    alias: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    version: Annotated[int, Field(ge=1, le=(1 << 63) - 1)]
    reason: Annotated[str, StringConstraints(max_length=10_000)]


ALIAS_MOVE = TypeAdapter(AliasMove)


def add_routes(app: FastAPI, state: ServerState) -> None:
    """Register every route on `app`; model routes take the model's name from the path."""
    config = state.config

    def model_or_404(request: Request, error: Callable[..., Reply]) -> ServedModel | Reply:
        """The model the path names, and for /v2/models/NAME/versions/V the version it names, else the 404."""
        served = state.models.get(request.path_params["name"])
        if served is None:
            return error(404, f"no model named {request.path_params['name']!r}")
        version = request.path_params.get("version")
        if version is not None and version != str(served.current.version):
            return error(404, v2.version_missing(served.name, version, served.current.version))
        return served

    async def body(request: Request, error: Callable[..., Reply]) -> bytes | Reply:
        try:
            return await read_body(request.receive, config.max_body_bytes)
        except BodyTooLarge:
            return error(413, f"the body is larger than {config.max_body_bytes} bytes")
        except ConnectionResetError:
            return error(499, "the client went away")

    def readiness() -> tuple[bool, str]:
        if state.draining:
            return False, "draining"
        return (True, "ready") if state.ready else (False, "loading")

    async def livez(request: Request) -> Reply:
        return json_reply(200, {"status": "live"})

    async def readyz(request: Request) -> Reply:
        ready, status = readiness()
        versions = {name: served.current.version for name, served in state.models.items()}
        return json_reply(200 if ready else 503, {"status": status, "models": versions})

    async def v2_live(request: Request) -> Reply:
        return json_reply(200, {"live": True})

    async def v2_ready(request: Request) -> Reply:
        ready, _ = readiness()
        return json_reply(200 if ready else 503, {"ready": ready})

    async def v2_server(request: Request) -> Reply:
        return json_reply(200, {"name": "luodi", "version": luodi.__version__,
                                   "extensions": ["binary_tensor_data"]})

    async def v2_model(request: Request) -> Reply:
        served = model_or_404(request, v2_error)
        if isinstance(served, Reply):
            return served
        loaded = served.current
        return json_reply(200, v2.model_metadata(loaded.name, loaded.version, loaded.backend.name,
                                                    loaded.schema))

    async def v2_model_ready(request: Request) -> Reply:
        served = model_or_404(request, v2_error)
        if isinstance(served, Reply):
            return served
        ready, _ = readiness()
        return json_reply(200 if ready else 503, {"name": served.name, "ready": ready})

    async def v2_no_model(request: Request) -> Reply:
        """The Gate answers infer for every served model: a request that gets here names none."""
        return v2_error(404, f"no model named {request.path_params['name']!r}")

    async def v1_no_model(request: Request) -> Reply:
        """As v2_no_model: the Gate answers predict for every served model."""
        return v1_error(404, f"no model named {request.path_params['name']!r}")

    def describe(served: ServedModel, detail: bool) -> dict[str, Any]:
        loaded = served.current
        info: dict[str, Any] = {"name": loaded.name, "version": loaded.version, "backend": loaded.backend.name,
                                "reference": served.reference.text, "task": loaded.schema.task}
        if detail:
            info.update(input_schema=loaded.package.manifest["input_schema"],
                        output_schema=loaded.package.manifest["output_schema"],
                        loaded_at=loaded.loaded_at, example={"records": [loaded.schema.sample_record]})
        return info

    async def v1_models(request: Request) -> Reply:
        # `models`: luodi's own listing; `object` and `data`: the OpenAI list shape its clients read (models.list()).
        data = [{"id": served.name, "object": "model", "created": int(served.current.loaded_at), "owned_by": "luodi"}
                for served in state.models.values()]
        return json_reply(200, {"models": [describe(served, False) for served in state.models.values()],
                                "object": "list", "data": data})

    async def v1_model(request: Request) -> Reply:
        served = model_or_404(request, v1_error)
        return served if isinstance(served, Reply) else json_reply(200, describe(served, True))

    async def metrics(request: Request) -> Reply:
        content, content_type = state.metrics.render()
        return Reply(200, content, content_type.encode())

    routes: list[tuple[str, Handler, str]] = [
        ("/livez", livez, "GET"), ("/readyz", readyz, "GET"), ("/metrics", metrics, "GET"),
        ("/v2/health/live", v2_live, "GET"), ("/v2/health/ready", v2_ready, "GET"), ("/v2", v2_server, "GET"),
        ("/v2/models/{name}", v2_model, "GET"), ("/v2/models/{name}/ready", v2_model_ready, "GET"),
        ("/v2/models/{name}/versions/{version}", v2_model, "GET"),
        ("/v2/models/{name}/versions/{version}/ready", v2_model_ready, "GET"),
        ("/v2/models/{name}/infer", v2_no_model, "POST"),
        ("/v2/models/{name}/versions/{version}/infer", v2_no_model, "POST"),
        ("/v1/models", v1_models, "GET"), ("/v1/models/{name}", v1_model, "GET"),
        ("/v1/models/{name}/predict", v1_no_model, "POST"),
    ]
    if config.admin_keys:
        routes += admin_routes(state, model_or_404, body)
    for path, handler, method in routes:
        app.router.add_route(path, handler, methods=[method], include_in_schema=False)


DOCS_ASSETS = "/docs-assets"
# The docs pages may load only from this server: ReDoc's footer logo (which it hides when it cannot load) and any
# future asset are refused by the browser, so the pages never reach another host, online or not.
DOCS_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'")


def add_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc from assets installed with luodi (fastapi-offline ships them), never a CDN:
    the pages render on a machine without internet."""
    from importlib.resources import files

    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from starlette.staticfiles import StaticFiles

    assets = files("fastapi_offline") / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")

    async def swagger(request: Request) -> Any:
        return _self_only(get_swagger_ui_html(openapi_url="/openapi.json", title="luodi - API",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png"))

    async def redoc(request: Request) -> Any:
        return _self_only(get_redoc_html(openapi_url="/openapi.json", title="luodi - API",
                              redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png", with_google_fonts=False))

    def _self_only(page: Any) -> Any:
        page.headers["Content-Security-Policy"] = DOCS_POLICY
        return page

    app.router.add_route("/docs", swagger, methods=["GET"], include_in_schema=False)
    app.router.add_route("/redoc", redoc, methods=["GET"], include_in_schema=False)


def admin_routes(state: ServerState, model_or_404: Callable[..., Any], body: Callable[..., Any]
                 ) -> list[tuple[str, Handler, str]]:
    """Reload now, and move an alias (then reload): only registered when an admin key exists."""

    async def reload(request: Request) -> Reply:
        served = model_or_404(request, v1_error)
        if isinstance(served, Reply):
            return served
        outcome = await state.reload(served)
        return json_reply(409 if "error" in outcome else 200, outcome)

    async def move_alias(request: Request) -> Reply:
        served = model_or_404(request, v1_error)
        if isinstance(served, Reply):
            return served
        raw = await body(request, v1_error)
        if isinstance(raw, Reply):
            return raw
        try:
            move = ALIAS_MOVE.validate_json(raw)
        except ValidationError as error:
            return v1_error(422, validation_detail(error))
        from luodi.store import Store

        try:
            moved = await asyncio.to_thread(Store(state.home).set_alias, served.name, move["alias"],
                                            move["version"], move["reason"])
        except InputError as error:
            return v1_error(422, str(error))
        return json_reply(200, {"moved": moved, **await state.reload(served)})

    return [("/admin/models/{name}/reload", reload, "POST"), ("/admin/models/{name}/alias", move_alias, "POST")]

