"""OpenAI-compatible POST /v1/embeddings for a served text encoder (models/embedding.py says which models are).

Body-routed like the other OpenAI endpoints (the body's `model` names the served model). `input` is a text, a list
of texts, a list of token ids or a list of such lists (ids as the encoder reads them, special tokens included);
`encoding_format` is `float` (default) or `base64` (little-endian float32, what the `openai` client asks for);
`dimensions` may only be the model's own (the vectors of a model not trained to be shortened are not cut). The
inputs of a request are one payload on the model's own batcher (serve/batcher.py), so embeddings share its
queue bound (429), deadline (504), worker thread and batch metrics with predictions, and the texts of concurrent
requests run in the same forward passes. Refusals are OpenAI's error shape with `param` naming the field: more
inputs than `max_rows`, a text longer than `max_string_length` characters or the feature's `max_length` tokens,
a token id outside the vocabulary; a model that is not a text encoder answers 404 saying why.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import orjson

from luodi.errors import InputError
from luodi.models.embedding import NotATextEncoder, TextEncoder, Tokens, embed_tokens, text_encoder, tokenize
from luodi.serve.middleware import Endpoint, Head, Target
from luodi.serve.model import Loaded
from luodi.serve.openai import BadRequest, openai_error
from luodi.serve.replies import JSON, Reply
from luodi.serve.state import ServerState


@dataclass(frozen=True)
class Embedded:
    """One request's vectors (rows, dimensions) and how many tokens its inputs had."""

    vectors: np.ndarray
    tokens: int


def run_embeddings(loaded: Loaded, payloads: list[EmbedPayload]) -> list[Embedded | Exception]:
    """Embed the inputs of several requests in one batched call (the model's worker thread); a request whose text
    is too long gets its own error and its batch-mates their vectors."""
    encoder = text_encoder(loaded.package.model, loaded.package.pipeline)
    results: list[Embedded | Exception | None] = [None] * len(payloads)
    parts: list[tuple[int, Tokens]] = []
    for index, payload in enumerate(payloads):
        try:
            parts.append((index, payload.tokens(encoder)))
        except InputError as error:
            results[index] = error
    if parts:
        tokens = Tokens.concat([part for _, part in parts], encoder.tokens.pad_id)
        vectors = embed_tokens(encoder, tokens)
        start = 0
        for index, part in parts:
            end = start + len(part.ids)
            results[index] = Embedded(vectors[start:end], int(part.counts.sum()))
            start = end
    return cast(list[Embedded | Exception], results)


@dataclass(frozen=True)
class EmbedPayload:
    """One request's inputs, tied to the version that validated them; the model's batcher runs it beside predictions
    (`run_group`: how serve.model.run_batch runs a group of these)."""

    loaded: Loaded
    texts: list[str] | None
    ids: list[list[int]] | None
    rows: int
    run_group = staticmethod(run_embeddings)

    def tokens(self, encoder: TextEncoder) -> Tokens:
        if self.texts is not None:
            return tokenize(encoder, self.texts, name=lambda index: f"input[{index}]")
        assert self.ids is not None
        return Tokens.from_ids(self.ids, encoder.tokens.pad_id)


def parse_inputs(body: dict[str, Any], encoder: TextEncoder, max_inputs: int, max_characters: int
                 ) -> tuple[list[str] | None, list[list[int]] | None]:
    """(texts, None) or (None, token id lists) from `input`; BadRequest names what is wrong."""
    raw = body.get("input")
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise BadRequest("input", "input must be a text, a list of texts, a list of token ids or a list of lists of "
                                  "token ids (not empty)")
    if all(isinstance(item, int) and not isinstance(item, bool) for item in raw):
        raw = [raw]
    if len(raw) > max_inputs:
        raise BadRequest("input", f"input has {len(raw)} items; at most {max_inputs} per request")
    if all(isinstance(item, str) for item in raw):
        for index, text in enumerate(raw):
            if len(text) > max_characters:
                raise BadRequest("input", f"input[{index}] has {len(text)} characters; at most {max_characters}")
        return raw, None
    vocabulary = encoder.tokens.vocab_size
    for index, ids in enumerate(raw):
        if not isinstance(ids, list) or not ids or not all(
                isinstance(t, int) and not isinstance(t, bool) and 0 <= t < vocabulary for t in ids):
            raise BadRequest("input", f"input[{index}] must be a text or a non-empty list of token ids from 0 to "
                                      f"{vocabulary - 1} (one kind for the whole input)")
        if len(ids) > encoder.max_length:
            raise BadRequest("input", f"input[{index}] has {len(ids)} tokens; the model reads at most "
                                      f"{encoder.max_length}")
    return None, raw


def _format(body: dict[str, Any], encoder: TextEncoder) -> str:
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise BadRequest("encoding_format", "encoding_format must be float or base64")
    dimensions = body.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or dimensions != encoder.dimensions):
        raise BadRequest("dimensions", f"this model's embeddings have {encoder.dimensions} dimensions and it was not "
                                       "trained to give shorter ones: leave dimensions out or give "
                                       f"{encoder.dimensions}")
    return str(encoding)


def _answer(name: str, embedded: Embedded, encoding: str) -> Reply:
    vectors = embedded.vectors
    data = [{"object": "embedding", "index": index,
             "embedding": base64.b64encode(vector.astype("<f4").tobytes()).decode() if encoding == "base64"
             else vector}
            for index, vector in enumerate(vectors)]
    body = {"object": "list", "data": data, "model": name,
            "usage": {"prompt_tokens": embedded.tokens, "total_tokens": embedded.tokens}}
    return Reply(200, orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), JSON)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    """The batcher's refusals (429 with Retry-After, 504, a text too long: 422 on `input`) in OpenAI's shape."""
    reply = openai_error(status, message, "input" if status == 422 else None)
    reply.headers += [(key.lower().encode(), value.encode()) for key, value in (headers or {}).items()]
    return reply


def embedding_endpoints(state: ServerState) -> list[Endpoint]:
    """POST /v1/embeddings for every served model that is a text encoder."""

    async def handle(target: Target, head: Head, body: bytes) -> Reply:
        served = state.models[target.model]
        loaded = served.current
        try:
            encoder = text_encoder(loaded.package.model, loaded.package.pipeline)
        except NotATextEncoder as error:
            return openai_error(404, f"model {target.model!r}: {error}", "model")
        try:
            timeout_s = state.timeout_s(head.timeout_ms)
            request = orjson.loads(body)
            encoding = _format(request, encoder)
            texts, ids = parse_inputs(request, encoder, state.config.max_rows, state.config.max_string_length)
        except BadRequest as bad:
            return openai_error(bad.status, str(bad), bad.param)
        except InputError as bad:
            return openai_error(422, str(bad), None)
        rows = len(texts if texts is not None else ids or [])
        payload = EmbedPayload(loaded, texts, ids, rows)
        result = await state.infer(served, payload, timeout_s, _error)  # type: ignore[arg-type]
        if isinstance(result, Reply):
            return result
        return _answer(target.model, cast(Embedded, result), encoding)

    return [Endpoint("/v1/embeddings", "embeddings", handle, body_routed=True, error=openai_error,
                     openapi=OPERATION)]


_IDS = {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}}
OPERATION: dict[str, Any] = {
    "summary": "Embed texts with a text encoder model (OpenAI-compatible)",
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["model", "input"], "properties": {
            "model": {"type": "string"},
            "input": {"anyOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {"type": "string"}},
                                _IDS, {"type": "array", "minItems": 1, "items": _IDS}]},
            "encoding_format": {"type": "string", "enum": ["float", "base64"]},
            "dimensions": {"type": "integer", "minimum": 1},
            "user": {"type": "string"}}}}}},
    "responses": {
        "200": {"description": "One embedding per input, in input order, and the tokens read", "content": {
            "application/json": {"schema": {"type": "object", "required": ["object", "data", "model", "usage"],
                                            "properties": {
                "object": {"const": "list"}, "model": {"type": "string"},
                "data": {"type": "array", "items": {"type": "object", "required": ["object", "index", "embedding"],
                                                    "properties": {
                    "object": {"const": "embedding"}, "index": {"type": "integer"},
                    "embedding": {"anyOf": [{"type": "array", "items": {"type": "number"}}, {"type": "string"}]}}}},
                "usage": {"type": "object", "required": ["prompt_tokens", "total_tokens"], "properties": {
                    "prompt_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"}}}}}}}},
        "429": {"description": "The model's queue is full; retry after Retry-After seconds",
                "content": {"application/json": {"schema": {"type": "object"}}}}}}
