"""The OpenAPI document: one concrete path per served model, with request and response schemas from its package.

The model routes are Starlette routes (see app.py), so FastAPI cannot derive their schemas; this module
writes them: /v1 bodies from `ServingSchema.openapi`, /v2 bodies from the protocol with the model's input
names; extension endpoints from the operation their `Endpoint.openapi` gives. /docs renders it. It is rebuilt
when a reload changes a served version.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

import luodi
from luodi.serve.middleware import Endpoint
from luodi.serve.routes import ALIAS_MOVE
from luodi.serve.state import ServerState
from luodi.serve.v2 import SCALAR_TYPES, model_metadata, packed_name

JSON = "application/json"
# Every error outside /v2: `{"detail": "message"}`, or for a request that fails validation a list naming each field.
V1_ERROR = {"type": "object", "required": ["detail"], "properties": {"detail": {"anyOf": [
    {"type": "string"},
    {"type": "array", "items": {"type": "object", "required": ["loc", "msg", "type"], "properties": {
        "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
        "msg": {"type": "string"}, "type": {"type": "string"}}}}]}}}
V2_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
ANY_OBJECT = {"type": "object", "additionalProperties": True}
REQUEST_ID_HEADER = {"description": "The request's id (also in the body): send labels for it later to "
                                    "/v1/models/{name}/feedback", "schema": {"type": "string"}}


def _response(description: str, schema: dict[str, Any], media: str = JSON) -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": schema}}}


def _errors(codes: list[int], schema: dict[str, Any], secured: bool) -> dict[str, Any]:
    text = {401: "Missing or invalid API key", 404: "No such model", 413: "Body over the size limit",
            415: "Content type not accepted", 422: "Invalid input (the message names the field)",
            429: "Queue full; see Retry-After", 500: "The model failed", 503: "Not ready (loading or draining)",
            504: "Deadline passed (queue included)"}
    if secured:
        codes = [*codes, 401]
    return {str(code): _response(text[code], schema) for code in sorted(set(codes))}


def _get(summary: str, schema: dict[str, Any], codes: list[int], error: dict[str, Any], secured: bool,
         operation: str) -> dict[str, Any]:
    return {"get": {"summary": summary, "operationId": operation,
                    "responses": {"200": _response("OK", schema), **_errors(codes, error, secured)}}}


def _open(path: dict[str, Any]) -> dict[str, Any]:
    """A route that answers without a key even when keys are configured (the probes)."""
    return {method: {**operation, "security": []} for method, operation in path.items()}


def _v2_request(input_names: list[str], max_inputs: int, output_names: list[str]) -> dict[str, Any]:
    tensor = {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
        "name": {"type": "string", "enum": input_names},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "maxItems": 2},
        "datatype": {"type": "string", "enum": sorted(SCALAR_TYPES)},
        "data": {"type": "array"}, "parameters": ANY_OBJECT}}
    output = {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "enum": output_names}, "parameters": ANY_OBJECT}}
    return {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string", "maxLength": 256}, "parameters": ANY_OBJECT,
        "inputs": {"type": "array", "items": tensor, "minItems": 1, "maxItems": max_inputs},
        "outputs": {"type": "array", "items": output}}}


V2_RESPONSE = {"type": "object", "required": ["model_name", "outputs"], "properties": {
    "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
    "outputs": {"type": "array", "items": {"type": "object", "properties": {
        "name": {"type": "string"}, "datatype": {"type": "string"}, "shape": {"type": "array"},
        "data": {"type": "array"}, "parameters": ANY_OBJECT}}}}}


def _model_paths(state: ServerState, name: str, secured: bool, components: dict[str, Any]) -> dict[str, Any]:
    loaded = state.models[name].current
    v1 = loaded.schema.openapi(name)
    components.update(v1["components"])
    metadata = model_metadata(name, loaded.version, loaded.backend.name, loaded.schema)
    inputs = [packed_name(loaded.schema), *loaded.schema.names]
    busy = [413, 415, 422, 429, 500, 504]
    infer = {"post": {
        "summary": f"Open Inference Protocol v2 infer on {name} (JSON, or binary tensors after the JSON header)",
        "operationId": f"v2_infer.{name}",
        "requestBody": {"required": True, "content": {JSON: {
            "schema": _v2_request(sorted(set(inputs)), len(inputs), loaded.schema.output_names),
            "example": {"inputs": metadata["inputs"][:1]}}}},
        "responses": {"200": {**_response("Output tensors", V2_RESPONSE),
                              "headers": {"X-Request-Id": REQUEST_ID_HEADER}},
                      **_errors(busy, V2_ERROR, secured)}}}
    # The versioned routes exist for every version; only the served one answers (others: 404), so only it is listed.
    versioned = f"/v2/models/{name}/versions/{loaded.version}"
    return {
        f"/v1/models/{name}/predict": {"post": {
            "summary": f"Predict with {name} (records in, predictions and probabilities out)",
            "operationId": f"v1_predict.{name}",
            "parameters": [{"name": "X-Timeout-Ms", "in": "header", "required": False,
                            "schema": {"type": "number", "exclusiveMinimum": 0}}],
            "requestBody": {"required": True, "content": {JSON: {"schema": v1["request"], "example": v1["example"]}}},
            "responses": {"200": {**_response("Predictions, one per record", v1["response"]),
                                  "headers": {"X-Request-Id": REQUEST_ID_HEADER}},
                          **_errors(busy, V1_ERROR, secured)}}},
        f"/v1/models/{name}": _get(f"{name}: version, backend, input and output schema", ANY_OBJECT, [], V1_ERROR,
                                   secured, f"v1_model.{name}"),
        f"/v2/models/{name}/infer": infer,
        f"/v2/models/{name}": _get(f"{name}: v2 model metadata", ANY_OBJECT, [], V2_ERROR, secured,
                                   f"v2_model.{name}"),
        f"/v2/models/{name}/ready": _get(f"Is {name} ready", ANY_OBJECT, [503], V2_ERROR, secured,
                                         f"v2_model_ready.{name}"),
        f"{versioned}/infer": {"post": {**infer["post"], "operationId": f"v2_infer_version.{name}",
                                        "summary": f"v2 infer on version {loaded.version} of {name}"}},
        versioned: _get(f"{name} version {loaded.version}: v2 model metadata", ANY_OBJECT, [], V2_ERROR, secured,
                        f"v2_model_version.{name}"),
        f"{versioned}/ready": _get(f"Is version {loaded.version} of {name} ready", ANY_OBJECT, [503], V2_ERROR, secured,
                                   f"v2_model_version_ready.{name}"),
    }


RELOAD_OUTCOME = {"type": "object", "required": ["reloaded", "version"], "properties": {
    "reloaded": {"type": "boolean"}, "version": {"type": "integer"}, "error": {"type": "string"},
    "moved": ANY_OBJECT}}


def _admin_paths(name: str) -> dict[str, Any]:
    """The admin routes of one model (listed only when an admin key is configured; they need one)."""
    admin = "Needs an admin key."
    return {
        f"/admin/models/{name}/reload": {"post": {
            "summary": f"Check {name}'s alias now and reload when it moved", "description": admin,
            "operationId": f"admin_reload.{name}",
            "responses": {"200": _response("The reload's outcome", RELOAD_OUTCOME),
                          "409": _response("The new version failed to load; the old one keeps serving",
                                           RELOAD_OUTCOME),
                          **_errors([404], V1_ERROR, True)}}},
        f"/admin/models/{name}/alias": {"post": {
            "summary": f"Move an alias of {name} to a version, then reload", "description": admin,
            "operationId": f"admin_alias.{name}",
            "requestBody": {"required": True, "content": {JSON: {"schema": ALIAS_MOVE.json_schema(), "example": {
                "alias": "production", "version": 2, "reason": "v2 beat v1 on the holdout"}}}},
            "responses": {"200": _response("The move and the reload's outcome", RELOAD_OUTCOME),
                          **_errors([404, 413, 422], V1_ERROR, True)}}},
    }


def _extension_paths(endpoint: Endpoint, models: list[str], secured: bool) -> dict[str, Any]:
    """An extension endpoint's documented operation: one path, or one per served model when the path names it."""
    assert endpoint.openapi is not None
    codes = [404, 413, 415, 422, 500, 504] if endpoint.body_routed or "{model}" in endpoint.path else [413, 415, 500]
    responses = {**_errors(codes, ANY_OBJECT, secured), **endpoint.openapi.get("responses", {})}
    operation = {**endpoint.openapi, "responses": responses}
    if "{model}" not in endpoint.path:
        return {endpoint.path: {"post": {**operation, "operationId": endpoint.label}}}
    return {endpoint.path.replace("{model}", name): {"post": {**operation, "operationId": f"{endpoint.label}_{name}"}}
            for name in models}


def build_openapi(app: FastAPI, state: ServerState, endpoints: Sequence[Endpoint] = ()) -> dict[str, Any]:
    versions = tuple((name, served.current.version) for name, served in state.models.items())
    cached = getattr(app.state, "openapi_cache", None)
    if cached is not None and cached[0] == versions:
        return cached[1]
    secured = bool(state.config.api_keys or state.config.admin_keys)
    components: dict[str, Any] = {}
    paths: dict[str, Any] = {
        "/livez": _open(_get("The process is alive", ANY_OBJECT, [], V1_ERROR, False, "livez")),
        "/readyz": _open(_get("Models loaded and warmed, not draining", ANY_OBJECT, [503], V1_ERROR, False,
                              "readyz")),
        "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics", "responses": {
            "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}},
            **_errors([], V1_ERROR, secured)}}},
        "/v1/models": _get("Served models", ANY_OBJECT, [], V1_ERROR, secured, "v1_models"),
        "/v2": _get("v2 server metadata", ANY_OBJECT, [], V2_ERROR, secured, "v2_server"),
        "/v2/health/live": _get("v2 liveness", ANY_OBJECT, [], V2_ERROR, secured, "v2_live"),
        "/v2/health/ready": _get("v2 readiness", ANY_OBJECT, [503], V2_ERROR, secured, "v2_ready"),
    }
    for name in state.models:
        paths.update(_model_paths(state, name, secured, components))
        if state.config.admin_keys:
            paths.update(_admin_paths(name))
    for endpoint in endpoints:
        if endpoint.openapi is not None:
            paths.update(_extension_paths(endpoint, list(state.models), secured))
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "luodi", "version": luodi.__version__,
                 "description": "Predictions from registered luodi models. See docs/serving.md."},
        "paths": paths, "components": {"schemas": components}}
    if secured:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    app.state.openapi_cache = (versions, document)
    return document
