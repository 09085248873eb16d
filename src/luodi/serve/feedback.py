"""`POST /v1/models/{model}/feedback`: delayed ground truth for predictions this server answered.

    {"feedback": [{"request_id": "9f1c...", "target": "yes"}, {"request_id": "77ab...", "row": 2, "target": "no"}]}

`request_id` is what the prediction's answer carried (`X-Request-Id`, /v1 `request_id`, /v2 `id`), `row` the record's
position in that request (default 0), `target` the true label or value. The labels are checked against the served
version's outputs and written beside the prediction log (monitor/feedback.py), where `luodi monitor` joins them.
Auth, content type and body limit are the Gate's, as for predict; errors are /v1's `{"detail": ...}`, and a bad
entry is named by its index and field, with no label written.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from luodi.monitor.feedback import labels_of, write_feedback
from luodi.serve.middleware import Endpoint, Head, Target
from luodi.serve.openapi import V1_ERROR
from luodi.serve.replies import Reply, json_reply, v1_error
from luodi.serve.state import ServerState

log = logging.getLogger("luodi.serve")

ENTRY = {"type": "object", "required": ["request_id", "target"], "properties": {
    "request_id": {"type": "string", "minLength": 1, "maxLength": 256},
    "row": {"type": "integer", "minimum": 0, "default": 0},
    "target": {"description": "The true label (a class the model predicts) or value (a regression)"}}}
OPENAPI: dict[str, Any] = {
    "summary": "Ground truth for earlier predictions, joined to the prediction log by request id",
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["feedback"], "properties": {
            "feedback": {"type": "array", "items": ENTRY, "minItems": 1}}},
        "example": {"feedback": [{"request_id": "0b6f3c2e9d8a4f0e8c1b2a3d4e5f6a7b", "target": "yes"}]}}}},
    "responses": {
        "200": {"description": "Labels kept", "content": {"application/json": {"schema": {
            "type": "object", "required": ["model", "version", "accepted"], "properties": {
                "model": {"type": "string"}, "version": {"type": "integer"}, "accepted": {"type": "integer"}}}}}},
        "422": {"description": "Invalid input (each bad entry named by index and field)",
                "content": {"application/json": {"schema": V1_ERROR}}}}}


def feedback_endpoints(state: ServerState) -> list[Endpoint]:
    """The feedback endpoint of every served model."""
    pending: set[asyncio.Task[None]] = set()

    def alert_on_accuracy(name: str, version: int) -> None:
        """Live accuracy (or error) after new labels, checked against the alert rules (`accuracy<0.8`)."""
        from luodi.monitor.live import live_metrics

        assert state.live is not None and state.predlog is not None
        try:
            current = live_metrics(state.predlog.root.parent, f"{name}/{version}", since="1h")
        except Exception as error:  # noqa: BLE001 - alerts are best effort; the labels are kept either way
            log.warning("live accuracy of %s/%d after feedback: %s", name, version, error)
            return
        values = {key: float(value) for key, value in current.items()
                  if key in current.get("directions", {}) and isinstance(value, (int, float))}
        if values:
            state.live.report_metric(name, version, values, {"labelled_rows": current["labelled_rows"]})

    async def v1_feedback(target: Target, head: Head, body: bytes) -> Reply:
        loaded = state.models[target.model].current
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            return v1_error(422, f"the body is not JSON ({error})")
        entries = parsed.get("feedback") if isinstance(parsed, dict) else None
        if not isinstance(entries, list) or not entries:
            return v1_error(422, [{"loc": ["body", "feedback"], "type": "missing",
                                   "msg": "give a non-empty list `feedback` of {request_id, target}"}])
        if len(entries) > state.config.max_rows:
            return v1_error(422, [{"loc": ["body", "feedback"], "type": "too_long",
                                   "msg": f"at most {state.config.max_rows} entries per request (max_rows)"}])
        table, problems = labels_of(loaded.package.manifest).check(entries)
        if problems:
            return v1_error(422, [problem.detail() for problem in problems[:20]])
        assert state.predlog is not None  # made in the lifespan, before any request
        await asyncio.to_thread(write_feedback, state.predlog.root.parent, loaded.name, table)
        if state.live is not None and state.live.alerter.settings.enabled:
            task = asyncio.create_task(asyncio.to_thread(alert_on_accuracy, loaded.name, loaded.version))
            pending.add(task)
            task.add_done_callback(pending.discard)
        return json_reply(200, {"model": loaded.name, "version": loaded.version, "accepted": table.num_rows})

    return [Endpoint("/v1/models/{model}/feedback", "v1_feedback", v1_feedback, openapi=OPENAPI)]
