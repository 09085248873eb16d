"""The two model endpoints: /v1 predict (records) and /v2 infer (tensors), answered by the Gate on raw ASGI.

Every answer carries a request id (`X-Request-Id`; /v1 `request_id`, /v2 `id`: the client's when it sent one),
logged with the prediction, so ground truth sent later (`POST /v1/models/NAME/feedback`) can be joined to it.
Each validates the body against the model version current when the request arrives, queues it on that
model's batcher, and answers in its protocol's shape: /v1 `{"detail": ...}` errors (FastAPI's), /v2
`{"error": "..."}` (the protocol's). A v2 path that names a version (/v2/models/NAME/versions/V/infer) runs on
that version when it is the current one, and answers 404 otherwise.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from pydantic import ValidationError

from luodi.errors import InputError
from luodi.serve import v2
from luodi.serve.middleware import Endpoint, Head, Target
from luodi.serve.model import Payload
from luodi.serve.replies import JSON, OCTET_STREAM, Reply, v1_error, v2_error
from luodi.serve.state import ServerState

REQUEST_ID = b"x-request-id"
HEADER_SAFE = re.compile(r"[!-~]{1,256}")


def new_request_id() -> str:
    """The id a prediction is answered with, by which delayed labels find it in the prediction log (feedback)."""
    return uuid.uuid4().hex


def validation_detail(error: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors without the input echoed back: where (record index and field) and what."""
    return [{"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]}
            for item in error.errors(include_url=False)[:20]]


def endpoints(state: ServerState) -> list[Endpoint]:
    """The two built-in fast-path endpoints; each path names its model."""

    async def v1_predict(target: Target, head: Head, body: bytes) -> Reply:
        started = time.perf_counter()
        served = state.models[target.model]
        loaded = served.current
        try:
            records = loaded.schema.parse_records(body)
            timeout = state.timeout_s(head.timeout_ms)
        except ValidationError as error:
            return v1_error(422, validation_detail(error))
        except InputError as error:
            return v1_error(422, str(error))
        payload = Payload(loaded, loaded.schema.columns(records), len(records))
        result = await state.infer(served, payload, timeout, v1_error)
        if isinstance(result, Reply):
            return result
        request_id = new_request_id()
        state.record("v1_predict", loaded, payload, result, started, request_id)
        return Reply(200, loaded.schema.v1_response(loaded.name, loaded.version, result, request_id),
                     headers=[(REQUEST_ID, request_id.encode())])

    async def v2_infer(target: Target, head: Head, body: bytes) -> Reply:
        started = time.perf_counter()
        served = state.models[target.model]
        loaded = served.current
        if target.version is not None and target.version != str(loaded.version):
            return v2_error(404, v2.version_missing(loaded.name, target.version, loaded.version))
        header = head.inference_header_length
        try:
            if header is not None and not header.isdigit():
                raise v2.ProtocolError("Inference-Header-Content-Length must be a number of bytes")
            parsed = v2.parse_infer(body, int(header) if header is not None else None, loaded.schema)
            timeout = state.timeout_s(head.timeout_ms, parsed.timeout_s)
        except (v2.ProtocolError, InputError) as error:
            return v2_error(422, str(error))
        payload = Payload(loaded, parsed.columns, parsed.rows)
        result = await state.infer(served, payload, timeout, v2_error)
        if isinstance(result, Reply):
            return result
        parsed.request_id = parsed.request_id or new_request_id()  # the client's `id`, else one of ours
        state.record("v2_infer", loaded, payload, result, started, parsed.request_id)
        content, json_length = v2.infer_response(loaded.name, loaded.version, parsed, result)
        # a client's id goes into the header only when it is plain visible ASCII (it is in the body either way)
        tagged = [(REQUEST_ID, parsed.request_id.encode())] if HEADER_SAFE.fullmatch(parsed.request_id) else []
        if json_length is None:
            return Reply(200, content, JSON, tagged)
        return Reply(200, content, OCTET_STREAM,
                     [(b"inference-header-content-length", str(json_length).encode()), *tagged])

    return [Endpoint("/v1/models/{model}/predict", "v1_predict", v1_predict),
            Endpoint("/v2/models/{model}/infer", "v2_infer", v2_infer, content_types=(JSON, OCTET_STREAM),
                     error=v2_error)]
