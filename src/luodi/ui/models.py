"""The model pages: the registry (/models), one model with its versions, aliases and audit trail (/models/{name}, where
an admin promotes or rolls back an alias), and one version (/models/{name}/versions/{v}: package contents, input
schema, optimize table, a form that runs the package's predictor in this process).

Alias moves go through `Store.set_alias` and `Store.rollback_alias`, the code `luodi models promote` and `luodi
models rollback` run, so the event log records them alike.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import OrderedDict
from functools import partial
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from luodi.errors import InputError
from luodi.store import ModelVersion, validate_name
from luodi.ui.runs import report_file, run_charts
from luodi.ui.state import UI, NotFound

LOADED_PACKAGES = 2  # packages kept loaded for the prediction form (each holds its model's weights)
MAX_FIELD_CHARS = 10_000


class Packages:
    """The few packages the prediction form used last, loaded (and verified) once each."""

    def __init__(self, size: int = LOADED_PACKAGES):
        self.size, self.loaded, self.lock = size, OrderedDict[str, Any](), threading.Lock()

    def get(self, version: ModelVersion) -> Any:
        from luodi.package import load_package

        key = str(version.path)
        with self.lock:
            if key in self.loaded:
                self.loaded.move_to_end(key)
                return self.loaded[key]
            package = load_package(version.path)
            self.loaded[key] = package
            while len(self.loaded) > self.size:
                self.loaded.popitem(last=False)
            return package


def routes(ui: UI) -> list[BaseRoute]:
    packages = Packages()

    def models(request: Request) -> Response:
        return ui.page(request, "models.html", models=ui.store.list_models(), title="Models")

    def model_page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        versions = get_versions(ui, name)
        aliases = {alias: version.version for version in versions for alias in version.aliases}
        return ui.page(request, "model.html", status=status, name=name, versions=versions, aliases=aliases,
                       events=ui.store.model_events(name, 200), title=f"Model {name}", **context)

    def api_models(request: Request) -> Response:
        return JSONResponse({"models": ui.store.list_models()})

    def api_model(request: Request) -> Response:
        name = request.path_params["name"]
        versions = get_versions(ui, name)
        return JSONResponse({"name": name, "versions": [version.to_dict() for version in versions],
                             "events": ui.store.model_events(name, 200)})

    def model(request: Request) -> Response:
        return model_page(request, request.path_params["name"], moved=request.query_params.get("moved", "")[:200])

    async def promote(request: Request) -> Response:
        return await move(request, "promote")

    async def rollback(request: Request) -> Response:
        return await move(request, "rollback")

    async def move(request: Request, action: str) -> Response:
        """POST promote or rollback: an admin's form with a reason; the move lands in the event log."""
        name = request.path_params["name"]
        get_versions(ui, name)
        fields = await ui.form(request, admin=True)
        who = ui.caller(request).who
        actor = f"ui:{who}" if who else None  # the signed-in key, not the login the UI process runs as
        alias, reason = fields.get("alias", "").strip(), fields.get("reason", "").strip()
        try:
            if not reason:
                raise InputError("give a reason: it is kept in the event log")
            if len(reason) > 1000:
                raise InputError("the reason is longer than 1000 characters")
            if action == "promote":
                number = fields.get("version", "").strip()
                if not number.isdigit():
                    raise InputError(f"version {number[:40]!r}: give a version number")
                moved = await asyncio.to_thread(partial(ui.store.set_alias, actor=actor), name, alias, int(number),
                                                reason)
            else:
                moved = await asyncio.to_thread(partial(ui.store.rollback_alias, actor=actor), name, alias, reason)
        except InputError as error:
            return model_page(request, name, status=422, error=str(error), form=fields)
        words = f"{name}@{alias} → version {moved['to']}" + (f" (was {moved['from']})" if moved["from"] else "")
        return RedirectResponse(f"/models/{quote(name)}?moved={quote(words)}", status_code=303)

    def version_page(request: Request, status: int = 200, **context: Any) -> Response:
        version = get_version(ui, request.path_params["name"], request.path_params["version"])
        manifest = read_manifest(version)
        return ui.page(request, "version.html", status=status, version=version, manifest=manifest,
                       schema=manifest.get("input_schema", []), optimize=manifest.get("optimize"),
                       hints=input_hints(manifest), charts=run_charts(manifest.get("history") or []),
                       has_report=(version.path / "report.html").is_file(),
                       title=f"{version.name}/{version.version}", **context)

    def version_view(request: Request) -> Response:
        return version_page(request)

    def version_report(request: Request) -> Response:
        version = get_version(ui, request.path_params["name"], request.path_params["version"])
        return report_file(version.path / "report.html", version.ref)

    async def predict(request: Request) -> Response:
        """POST the form's row to the package's predictor (in a thread) and show the result beside the form."""
        version = get_version(ui, request.path_params["name"], request.path_params["version"])
        fields = await ui.form(request, admin=False)
        schema = read_manifest(version).get("input_schema", [])
        try:
            record = form_record(schema, fields)
            result = await asyncio.to_thread(lambda: packages.get(version).predict_frame([record]))
        except InputError as error:
            return version_page(request, status=422, error=str(error), form=fields)
        rows = [{column: result[column].iloc[0] for column in result.columns}]
        return version_page(request, prediction=rows[0], warnings=result.attrs.get("warnings", []), form=fields)

    return [Route("/models", models), Route("/models/{name}", model), Route("/api/models", api_models),
            Route("/api/models/{name}", api_model),
            Route("/models/{name}/promote", promote, methods=["POST"]),
            Route("/models/{name}/rollback", rollback, methods=["POST"]),
            Route("/models/{name}/versions/{version}", version_view),
            Route("/models/{name}/versions/{version}/report", version_report),
            Route("/models/{name}/versions/{version}/predict", predict, methods=["POST"])]


def get_versions(ui: UI, name: str) -> list[ModelVersion]:
    try:
        return ui.store.list_versions(name)
    except InputError:
        raise NotFound(f"no model {name!r} in this store") from None


def get_version(ui: UI, name: str, number: str) -> ModelVersion:
    try:
        validate_name(name, "model name")
        return ui.store.get_version(name, int(number.lstrip("v")))
    except (InputError, ValueError):
        raise NotFound(f"no version {number!r} of model {name!r} in this store") from None


def read_manifest(version: ModelVersion) -> dict[str, Any]:
    """package.json of a version (what the page shows; the predictor verifies every file when it loads)."""
    path = version.path / "package.json"
    if path.is_symlink() or not path.is_file():
        raise NotFound(f"{version.ref}: the package has no package.json")
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return manifest


def input_hints(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per input column, what the form offers: a category's known values, a number's training mean."""
    hints: dict[str, dict[str, Any]] = {}
    for state in (manifest.get("features") or {}).get("features", []):
        if isinstance(state, dict) and "name" in state:
            values = state.get("vocabulary")
            hints[state["name"]] = {"values": [str(value) for value in values[:200]] if isinstance(values, list)
                                    else [], "mean": state.get("center")}
    return hints


def form_record(schema: list[dict[str, Any]], fields: dict[str, str]) -> dict[str, Any]:
    """The prediction form as one record: numbers for number columns, text otherwise, empty fields missing."""
    record: dict[str, Any] = {}
    for column in schema:
        name = column["name"]
        value = fields.get(f"col.{name}", "").strip()
        if len(value) > MAX_FIELD_CHARS:
            raise InputError(f"column {name!r}: longer than {MAX_FIELD_CHARS} characters")
        if not value:
            record[name] = None
        elif column.get("dtype") == "number":
            try:
                record[name] = float(value)
            except ValueError:
                raise InputError(f"column {name!r}: {value[:40]!r} is not a number") from None
        else:
            record[name] = value
    return record
