"""OpenAI-compatible generation: POST /v1/completions and /v1/chat/completions for text_generation packages.

Both endpoints are body-routed (the body's `model` names the served model) and answer whole JSON or, with
`stream: true`, server-sent events in OpenAI's chunk format ending with `data: [DONE]`. Every choice is one
`Sequence` of the model's continuous-batching `Scheduler` (generation.py): `n` choices per prompt, each prompt of a
list. Parameters: max_tokens (chat: also max_completion_tokens), temperature (default 1, as OpenAI's), top_p, n,
stop, seed, logprobs (completions: the top few tokens per step), stream_options.include_usage, and vLLM's
ignore_eos. Refusals name the
field in OpenAI's error shape (`{"error": {"message", "type", "param", "code"}}`), which OpenAI clients raise:
422 for a value out of range, 404 for a model that is not served or does not generate text, 429 when the
model's waiting queue is full. A chat request to a model trained on plain text gets its messages rendered with
the documented template (`<|role|>\\ncontent<|endoftext|>`, then `<|assistant|>\\n`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from luodi.errors import InputError
from luodi.models.generation import Sampling, _held_back
from luodi.serve.generation import GenerationMetrics, QueueFull, Scheduler, Sequence, Token, scheduler_factory
from luodi.serve.metrics import LATENCY_BUCKETS
from luodi.serve.middleware import Endpoint, Head, Target
from luodi.serve.model import Loaded
from luodi.serve.replies import Reply, StreamedReply, json_reply, sse_event
from luodi.serve.state import ServerState

MAX_N = 8  # choices per request (n x prompts)
MAX_LOGPROBS = 5
MAX_STOPS = 4
MAX_RUNNING = 16  # sequences decoded together per model
MAX_WAITING = 64  # sequences queued per model before 429


class BadRequest(Exception):
    def __init__(self, param: str, message: str, status: int = 422):
        super().__init__(message)
        self.param, self.status = param, status


def openai_error(status: int, message: str, param: str | None = None) -> Reply:
    """An error in OpenAI's shape, which its clients read."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return json_reply(status, {"error": {"message": message, "type": kind, "param": param, "code": status}})


def generates_text(loaded: Loaded) -> bool:
    return hasattr(loaded.package.pipeline.target, "prompt_ids")


@dataclass
class Choice:
    """One choice's text so far: tokens in, text pieces out, holding back an unfinished character or stop."""

    target: Any
    stops: tuple[str, ...]
    tokens: list[int] = field(default_factory=list)
    emitted: int = 0  # characters of the text already given out
    pending: list[Token] = field(default_factory=list)  # tokens whose logprobs were not given out yet
    finish: str | None = None
    text: str = ""
    settled: int = 0  # tokens whose text is whole characters, decoded once (`settled_text`)
    settled_text: str = ""

    def add(self, token: Token) -> str:
        """The new piece of text after `token` ('' when held back); sets `finish` at a stop sequence."""
        assert token.token is not None
        self.tokens.append(token.token)
        self.pending.append(token)
        # Decoding every token at every step would cost time quadratic in the length: decode a window from a few
        # tokens before the last whole character, and keep what it adds after them (as vLLM does; a window, not
        # the new tokens alone, since some tokenizers drop a leading space from the first token they decode).
        start = max(0, self.settled - 4)
        head = self.target.decode(self.tokens[start:self.settled])
        window = self.target.decode(self.tokens[start:])
        self.text = (self.settled_text + window[len(head):] if window.startswith(head)
                     else self.target.decode(self.tokens))
        if self.text.endswith("\ufffd"):
            return ""
        self.settled, self.settled_text = len(self.tokens), self.text
        found = [index for index in (self.text.find(stop) for stop in self.stops if stop) if index >= 0]
        if found:
            self.finish = "stop"
            self.text = self.text[:min(found)]
            return self._take(len(self.text))
        return self._take(len(self.text) - _held_back(self.text, self.stops))

    def end(self, reason: str) -> str:
        self.finish = self.finish or reason
        return self._take(len(self.text))

    def _take(self, end: int) -> str:
        piece = self.text[self.emitted:end] if end > self.emitted else ""
        self.emitted = max(self.emitted, end)
        return piece

    def logprobs(self, offset: int) -> dict[str, Any]:
        """The completions API's logprobs of the tokens not given out yet (text offsets from `offset`)."""
        tokens, logprobs, top, offsets = [], [], [], []
        for token in self.pending:
            assert token.token is not None
            text = self.target.decode([token.token])
            tokens.append(text)
            logprobs.append(token.logprob)
            top.append({self.target.decode([best]): value for best, value in token.top})
            offsets.append(offset)
            offset += len(text)
        self.pending = []
        return {"tokens": tokens, "token_logprobs": logprobs, "top_logprobs": top, "text_offset": offsets}


@dataclass
class Request:
    """A validated completions or chat request."""

    chat: bool
    prompts: list[list[int]]
    sampling: Sampling
    n: int
    logprobs: int
    stream: bool
    include_usage: bool
    ignore_eos: bool = False


def _number(body: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadRequest(name, f"{name} must be a number from {low} to {high}")
    return float(value)


def _integer(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(name, f"{name} must be an integer from {low} to {high}")
    return value


def parse_request(body: dict[str, Any], loaded: Loaded, chat: bool) -> Request:
    """Check a request against OpenAI's parameters and the model's limits (BadRequest names the field)."""
    target = loaded.package.pipeline.target
    context: int = getattr(loaded.package.model, "context_length", target.context_length)
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and isinstance(m.get("content"), str)
                and m.get("role") in ("system", "user", "assistant") for m in messages):
            raise BadRequest("messages", "messages must be a non-empty list of {role: system, user or assistant, "
                                         "content: text}")
        messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        prompts = [target.conversation_ids(messages)]
        if body.get("logprobs"):
            raise BadRequest("logprobs", "logprobs are given on /v1/completions only")
    else:
        raw = body.get("prompt")
        if isinstance(raw, str):
            raw = [raw]
        if isinstance(raw, list) and raw and all(isinstance(t, int) and not isinstance(t, bool) for t in raw):
            if not all(0 <= t < target.vocab_size for t in raw):
                raise BadRequest("prompt", f"prompt token ids must be from 0 to {target.vocab_size - 1}")
            prompts = [list(raw)]
        elif isinstance(raw, list) and raw and all(isinstance(text, str) for text in raw):
            prompts = [target.prompt_ids(text) for text in raw]
        else:
            raise BadRequest("prompt", "prompt must be a text, a list of texts or a list of token ids")
    for ids in prompts:
        if not ids:
            raise BadRequest("prompt", "the prompt has no tokens")
        if len(ids) >= context:
            raise BadRequest("messages" if chat else "prompt",
                             f"the prompt has {len(ids)} tokens; the model reads at most {context - 1} before it "
                             f"generates")
    limit = "max_completion_tokens" if chat and body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _integer(body, limit, 16 if not chat else context, 1, context)
    n = _integer(body, "n", 1, 1, MAX_N)
    if n * len(prompts) > MAX_N:
        raise BadRequest("n", f"n x prompts must be at most {MAX_N}")
    stop = body.get("stop")
    stops = (stop,) if isinstance(stop, str) else tuple(stop) if isinstance(stop, list) else ()
    if stop is not None and (not all(isinstance(s, str) and s for s in stops) or len(stops) > MAX_STOPS):
        raise BadRequest("stop", f"stop must be a text or a list of at most {MAX_STOPS} non-empty texts")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise BadRequest("seed", "seed must be an integer")
    logprobs = 0 if chat else _integer(body, "logprobs", 0, 0, MAX_LOGPROBS)
    sampling = Sampling(max_tokens=max_tokens, temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
                        top_p=_number(body, "top_p", 1.0, 1e-6, 1.0), stop=stops, seed=seed)
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    return Request(chat, prompts, sampling, n, logprobs, bool(body.get("stream")), include_usage,
                   body.get("ignore_eos") is True)


class Generators:
    """The schedulers of the served text_generation models (a new one when a reload swaps the version)."""

    def __init__(self, state: ServerState, max_running: int, max_waiting: int):
        registry = state.metrics.registry
        from prometheus_client import Counter, Gauge, Histogram

        metrics = GenerationMetrics(
            Histogram("luodi_time_to_first_token_seconds", "Time from request to its first generated token.",
                      ["model"], buckets=LATENCY_BUCKETS, registry=registry),
            Histogram("luodi_inter_token_latency_seconds", "Time between two tokens of one sequence.",
                      ["model"], buckets=LATENCY_BUCKETS, registry=registry),
            Counter("luodi_prompt_tokens", "Prompt tokens prefilled.", ["model"], registry=registry),
            Counter("luodi_generation_tokens", "Tokens generated (rate(): tokens/s).", ["model"], registry=registry),
            Gauge("luodi_sequences_running", "Sequences in the running batch.", ["model"],
                  multiprocess_mode="livesum", registry=registry),
            Gauge("luodi_sequences_waiting", "Sequences waiting for a slot in the running batch.", ["model"],
                  multiprocess_mode="livesum", registry=registry))
        self.metrics, self.max_running, self.max_waiting = metrics, max_running, max_waiting
        self.state = state
        self.schedulers: dict[str, tuple[Loaded, Scheduler]] = {}

    def scheduler(self, name: str) -> tuple[Loaded, Scheduler]:
        loaded = self.state.models[name].current
        known = self.schedulers.get(name)
        if known is None or known[0] is not loaded:  # the first request, or a reload swapped the version
            labelled = GenerationMetrics(*(metric.labels(name) for metric in vars(self.metrics).values()))
            build = scheduler_factory(labelled, self.max_running, self.max_waiting)
            known = self.schedulers[name] = (loaded, build(loaded.package.model,
                                                           loaded.package.pipeline.target.eos_id))
        return known


def _usage(prompts: list[list[int]], n: int, choices: list[Choice]) -> dict[str, int]:
    prompt = sum(len(ids) for ids in prompts) * n
    completion = sum(len(choice.tokens) for choice in choices)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def openai_endpoints(state: ServerState, max_running: int = MAX_RUNNING, max_waiting: int = MAX_WAITING
                     ) -> list[Endpoint]:
    """POST /v1/completions and /v1/chat/completions for every served model whose task generates text."""
    generators = Generators(state, max_running, max_waiting)

    def handler(chat: bool) -> Callable[[Target, Head, bytes], Any]:
        async def handle(target: Target, head: Head, body: bytes) -> Reply | StreamedReply:
            loaded = state.models[target.model].current
            if not generates_text(loaded):
                return openai_error(404, f"model {target.model!r} is a {loaded.schema.task} model; it does not "
                                         f"generate text", "model")
            try:
                timeout_s = state.timeout_s(head.timeout_ms)
                request = parse_request(orjson.loads(body), loaded, chat)
            except BadRequest as bad:
                return openai_error(bad.status, str(bad), bad.param)
            except InputError as bad:
                return openai_error(422, str(bad), "messages" if chat else "prompt")
            loaded, scheduler = generators.scheduler(target.model)
            return await answer(target.model, loaded, scheduler, request, timeout_s)

        return handle

    return [Endpoint("/v1/completions", "completions", handler(False), body_routed=True,
                     error=openai_error, openapi=_operation("Complete a prompt (OpenAI-compatible)")),
            Endpoint("/v1/chat/completions", "chat_completions", handler(True), body_routed=True,
                     error=openai_error, openapi=_operation("Answer a conversation (OpenAI-compatible)"))]


async def answer(name: str, loaded: Loaded, scheduler: Scheduler, request: Request, timeout_s: float
                 ) -> Reply | StreamedReply:
    """Submit every choice's sequence, then answer whole or as a stream; sequences are cancelled however it ends."""
    target = loaded.package.pipeline.target
    events: asyncio.Queue[tuple[int, Token]] = asyncio.Queue()
    sequences = [Sequence(ids, request.sampling if request.sampling.seed is None else
                          _reseed(request.sampling, index), request.logprobs, index, request.ignore_eos, events)
                 for index, ids in enumerate(ids for ids in request.prompts for _ in range(request.n))]
    choices = [Choice(target, request.sampling.stop) for _ in sequences]
    submitted = []
    try:
        for sequence in sequences:
            scheduler.submit(sequence)
            submitted.append(sequence)
    except QueueFull as full:
        for sequence in submitted:
            scheduler.cancel(sequence)
        return openai_error(429, str(full))
    identifier = ("chatcmpl-" if request.chat else "cmpl-") + uuid.uuid4().hex
    created = int(time.time())
    base = {"id": identifier, "object": "chat.completion.chunk" if request.chat else "text_completion",
            "created": created, "model": name}

    async def pieces() -> AsyncIterator[tuple[int, str]]:
        """(choice, piece) as tokens arrive; a choice that finishes is cancelled so its slot frees at once."""
        open_choices = len(sequences)
        while open_choices:
            index, token = await events.get()
            choice = choices[index]
            if choice.finish is not None:
                continue  # a token that was on its way when a stop sequence ended the choice
            if token.finish == "error":
                raise RuntimeError("the generation worker failed; see the server log")
            piece = choice.add(token) if token.token is not None else choice.end(token.finish or "stop")
            if choice.finish is not None:
                scheduler.cancel(sequences[index])
                open_choices -= 1
            yield index, piece

    def cancel_all() -> None:
        for sequence in sequences:
            scheduler.cancel(sequence)

    if not request.stream:
        async def collect() -> None:
            async for _ in pieces():
                pass

        try:
            await asyncio.wait_for(collect(), timeout_s)
        except asyncio.TimeoutError:
            return openai_error(504, "the generation passed its deadline")
        finally:
            cancel_all()
        return json_reply(200, _whole(base, request, choices))

    async def stream() -> AsyncIterator[bytes]:
        try:
            if request.chat:
                for index in range(len(choices)):
                    yield sse_event({**base, "choices": [{"index": index, "delta": {"role": "assistant",
                                                                                    "content": ""},
                                                          "logprobs": None, "finish_reason": None}]})
            async for index, piece in pieces():
                choice = choices[index]
                if not piece and choice.finish is None:
                    continue
                if request.chat:
                    entry: dict[str, Any] = {"index": index, "delta": {"content": piece} if piece else {},
                                             "logprobs": None, "finish_reason": choice.finish}
                else:
                    logprobs = choice.logprobs(choice.emitted - len(piece)) if request.logprobs else None
                    entry = {"index": index, "text": piece, "logprobs": logprobs, "finish_reason": choice.finish}
                yield sse_event({**base, "choices": [entry]})
            if request.include_usage:
                yield sse_event({**base, "choices": [], "usage": _usage(request.prompts, request.n, choices)})
            yield sse_event("[DONE]")
        finally:
            cancel_all()

    return StreamedReply(stream(), timeout_s=timeout_s, model=name)


def _reseed(sampling: Sampling, index: int) -> Sampling:
    from dataclasses import replace

    assert sampling.seed is not None
    return replace(sampling, seed=sampling.seed + index)  # n seeded choices differ from each other, reproducibly


def _whole(base: dict[str, Any], request: Request, choices: list[Choice]) -> dict[str, Any]:
    if request.chat:
        entries = [{"index": index, "message": {"role": "assistant", "content": choice.text},
                    "logprobs": None, "finish_reason": choice.finish} for index, choice in enumerate(choices)]
        kind = "chat.completion"
    else:
        entries = []
        for index, choice in enumerate(choices):
            entries.append({"index": index, "text": choice.text, "finish_reason": choice.finish,
                            "logprobs": choice.logprobs(0) if request.logprobs else None})
        kind = "text_completion"
    return {**base, "object": kind, "choices": entries, "usage": _usage(request.prompts, request.n, choices)}


def _operation(summary: str) -> dict[str, Any]:
    return {"summary": summary, "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["model"], "properties": {"model": {"type": "string"}}}}}},
        "responses": {"200": {"description": "A completion, or with stream: true server-sent chunks ending "
                                             "data: [DONE]",
                              "content": {"application/json": {"schema": {"type": "object"}},
                                          "text/event-stream": {"schema": {"type": "string"}}}}}}
