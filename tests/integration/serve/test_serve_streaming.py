"""Streamed replies and body-routed extension endpoints through the Gate, on a real server (RELIABILITY 11-12, 16,
20, 26): chunks arrive as they are made; keys, body limits, deadlines, metrics and the drain apply to streams."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from luodi.serve.middleware import Endpoint, Head, Target
from luodi.serve.replies import Reply, StreamedReply, sse_event
from luodi.serve.state import ServerState
from luodi.store import Store

KEY = "stream-test-key-0123456789"
PATH = "/test/stream"


@dataclass
class Probe:
    """What the test endpoint's generators did, seen from the test thread."""

    started: int = 0
    finished: threading.Event = field(default_factory=threading.Event)  # yielded every event
    closed: threading.Event = field(default_factory=threading.Event)  # its finally ran (end, aclose or cancel)
    models: list[str] = field(default_factory=list)


def stream_endpoint(probe: Probe) -> Callable[[ServerState], list[Endpoint]]:
    """A body-routed endpoint: `{"model": NAME, "events": N, "sleep_s": S, "fail_at": K}` -> N SSE events."""

    def make(state: ServerState) -> list[Endpoint]:
        async def handler(target: Target, head: Head, body: bytes) -> Reply | StreamedReply:
            request = orjson.loads(body)
            loaded = state.models[target.model].current  # the Gate found the model the body names
            probe.models.append(target.model)

            async def events() -> AsyncIterator[bytes]:
                probe.started += 1
                try:
                    for index in range(request["events"]):
                        if index == request.get("fail_at"):
                            raise RuntimeError("the test generator fails here")
                        yield sse_event({"index": index, "model": loaded.name, "version": loaded.version})
                        await asyncio.sleep(request["sleep_s"])
                    probe.finished.set()
                finally:
                    probe.closed.set()

            return StreamedReply(events())

        return [Endpoint(PATH, "test_stream", handler, body_routed=True)]

    return make


def events_of(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line[len("data: "):]) for line in text.splitlines() if line.startswith("data: ")]


def request_count(client: httpx.Client, code: int, model: str = "tiny", headers: dict[str, str] | None = None,
                  wait_s: float = 5.0) -> float:
    """luodi_requests_total for the test endpoint and `code`, polled: a stream is counted when it has ended."""
    line = f'luodi_requests_total{{code="{code}",endpoint="test_stream",model="{model}"}} '
    deadline = time.monotonic() + wait_s
    while True:
        metrics = client.get("/metrics", headers=headers).text
        found = next((float(row[len(line):]) for row in metrics.splitlines() if row.startswith(line)), 0.0)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def body(events: int, sleep_s: float, model: str = "tiny", **extra: Any) -> bytes:
    return orjson.dumps({"model": model, "events": events, "sleep_s": sleep_s, **extra})


def test_chunks_arrive_before_the_generator_finishes(serve) -> None:
    probe = Probe()
    with serve(endpoints=[stream_endpoint(probe)]) as server, \
            server.client.stream("POST", PATH, content=body(5, 0.3)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert "content-length" not in response.headers and response.headers["transfer-encoding"] == "chunked"
        chunks = response.iter_text()
        first = next(chunks)
        assert events_of(first)[0]["index"] == 0
        assert not probe.finished.is_set()  # the first event came while the generator was still going
        rest = "".join(chunks)
        assert [event["index"] for event in events_of(first + rest)] == [0, 1, 2, 3, 4]
        assert probe.finished.is_set() and probe.closed.is_set()
        assert request_count(server.client, 200) == 1


def test_keys_and_body_limit_apply_to_streamed_endpoints(serve) -> None:
    probe = Probe()
    keyed = {"Authorization": f"Bearer {KEY}"}
    with serve(endpoints=[stream_endpoint(probe)], api_keys=(KEY,), max_body_bytes=1024) as server:
        assert server.client.post(PATH, content=body(1, 0)).status_code == 401
        wrong = server.client.post(PATH, content=body(1, 0), headers={"Authorization": "Bearer " + "x" * 26})
        assert wrong.status_code == 401
        large = body(1, 0, padding="x" * 2000)
        assert server.client.post(PATH, content=large, headers=keyed).status_code == 413
        chunked = server.client.post(PATH, content=iter([large[:1000], large[1000:]]), headers=keyed)
        assert chunked.status_code == 413
        pickled = server.client.post(PATH, content=b"\x80\x04K\x01.", headers={**keyed, "Content-Type": "x/pickle"})
        assert pickled.status_code == 415
        assert probe.started == 0  # none of the refused requests reached the handler
        ok = server.client.post(PATH, content=body(2, 0), headers=keyed)
        assert ok.status_code == 200 and len(events_of(ok.text)) == 2


def test_a_stream_past_its_deadline_ends_with_an_error_event_and_records_504(serve) -> None:
    probe = Probe()
    with serve(endpoints=[stream_endpoint(probe)]) as server:
        started = time.monotonic()
        response = server.client.post(PATH, content=body(50, 0.05), headers={"X-Timeout-Ms": "400"})
        elapsed = time.monotonic() - started
        assert response.status_code == 200  # the status line left with the first chunk
        events = events_of(response.text)
        assert 1 <= len(events) - 1 < 50 and events[-1]["error"]["code"] == 504
        assert 0.35 < elapsed < 2.0
        assert probe.closed.wait(5) and not probe.finished.is_set()
        assert request_count(server.client, 504) == 1
        # without the header, the server's timeout_ms is the deadline
    with serve(endpoints=[stream_endpoint(probe)], timeout_ms=300) as server:
        events = events_of(server.client.post(PATH, content=body(50, 0.05)).text)
        assert events[-1]["error"]["code"] == 504
        assert request_count(server.client, 504) == 1


def test_a_client_that_goes_away_closes_the_generator_and_records_499(serve) -> None:
    probe = Probe()
    with serve(endpoints=[stream_endpoint(probe)]) as server:
        with httpx.Client(base_url=server.url, timeout=10) as client, \
                client.stream("POST", PATH, content=body(200, 0.05)) as response:
            assert events_of(next(response.iter_text()))[0]["index"] == 0
        # leaving the block closed the connection mid-stream
        assert probe.closed.wait(5) and not probe.finished.is_set()
        assert request_count(server.client, 499) == 1
        assert server.state.streams.count == 0


def test_an_exception_in_the_generator_ends_with_an_error_event_and_records_500(serve) -> None:
    probe = Probe()
    with serve(endpoints=[stream_endpoint(probe)]) as server:
        response = server.client.post(PATH, content=body(5, 0.01, fail_at=2))
        events = events_of(response.text)
        assert [event.get("index") for event in events[:2]] == [0, 1]
        assert events[2]["error"] == {"message": "internal error; see the server log", "type": "server_error",
                                      "code": 500}
        assert len(events) == 3
        assert request_count(server.client, 500) == 1
        assert server.client.get("/livez").status_code == 200


def test_body_routing_picks_the_model_named_in_the_body(serve, store_home: Path) -> None:
    store = Store(store_home)
    staging = store.staging_dir()
    shutil.copytree(store.resolve("tiny").path, staging, dirs_exist_ok=True)
    store.register_model("other", staging, run_id=None, task="binary", metrics={})
    probe = Probe()
    with serve("tiny", "other", endpoints=[stream_endpoint(probe)]) as server:
        for name in ("other", "tiny", "other"):
            events = events_of(server.client.post(PATH, content=body(1, 0, model=name)).text)
            assert events[0]["model"] == name
        assert probe.models == ["other", "tiny", "other"]
        unknown = server.client.post(PATH, content=body(1, 0, model="nope"))
        assert unknown.status_code == 404 and unknown.json() == {"detail": "no model named 'nope'"}
        for bad in (b"[1, 2]", b"{\"events\": 1}", b"not json", b"{\"model\": 3}"):
            missing = server.client.post(PATH, content=bad)
            assert missing.status_code == 422 and "'model'" in missing.json()["detail"]
        assert probe.models == ["other", "tiny", "other"]
        assert request_count(server.client, 200, "other") == 2 and request_count(server.client, 200, "tiny") == 1
        assert request_count(server.client, 404, "", wait_s=0) == 1
        # the path-routed endpoints are unchanged beside it
        predicted = server.client.post("/v1/models/other/predict", json={"records": [{"size": 0.3, "age": 41,
                                                                                      "income": 52.5, "color": "red"}]})
        assert predicted.status_code == 200 and predicted.json()["model"] == "other"


def _read_stream(url: str, into: list[str], first: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=30) as client, \
            client.stream("POST", PATH, content=body(10, 0.1)) as response:
        for text in response.iter_text():
            into.append(text)
            first.set()


def test_the_drain_waits_for_an_open_stream(serve) -> None:
    probe = Probe()
    received: list[str] = []
    first = threading.Event()
    with serve(endpoints=[stream_endpoint(probe)]) as server:
        reader = threading.Thread(target=_read_stream, args=(server.url, received, first))
        reader.start()
        assert first.wait(10)
        state = server.state
        stopping = time.monotonic()
    # the server has stopped: it waited for the stream, which ran to its end (about 1 s) and closed cleanly
    reader.join(10)
    assert time.monotonic() - stopping > 0.5
    assert [event["index"] for event in events_of("".join(received))] == list(range(10))
    assert probe.finished.is_set() and state.streams.count == 0


def test_the_drain_timeout_bounds_an_open_stream(serve) -> None:
    probe = Probe()
    received: list[str] = []
    first = threading.Event()
    with serve(endpoints=[stream_endpoint(probe)], drain_timeout_s=1) as server:
        reader = threading.Thread(target=_read_stream_long, args=(server.url, received, first))
        reader.start()
        assert first.wait(10)
        state = server.state
        stopping = time.monotonic()
    reader.join(10)
    assert time.monotonic() - stopping < 10  # the 100-second stream was cut at the drain timeout
    assert probe.closed.is_set() and not probe.finished.is_set() and state.streams.count == 0


def _read_stream_long(url: str, into: list[str], first: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=30) as client, \
            client.stream("POST", PATH, content=body(1000, 0.1)) as response:
        try:
            for text in response.iter_text():
                into.append(text)
                first.set()
        except httpx.HTTPError:  # the server cut the connection when the drain timeout passed
            pass


@pytest.mark.parametrize("status", [200, 201])
def test_a_streamed_reply_keeps_its_status_and_headers(serve, status: int) -> None:
    def make(state: ServerState) -> list[Endpoint]:
        async def handler(target: Target, head: Head, body: bytes) -> StreamedReply:
            async def lines() -> AsyncIterator[bytes]:
                yield b'{"a": 1}\n'
                yield b'{"a": 2}\n'

            return StreamedReply(lines(), status=status, content_type=b"application/x-ndjson",
                                 headers=[(b"x-test", b"yes")])

        return [Endpoint("/test/{model}/lines", "test_lines", handler, openapi={"summary": "Two lines"})]

    with serve(endpoints=[make]) as server:
        response = server.client.post("/test/tiny/lines", json={})
        assert response.status_code == status and response.headers["x-test"] == "yes"
        assert response.headers["content-type"] == "application/x-ndjson"
        assert [orjson.loads(line) for line in response.text.splitlines()] == [{"a": 1}, {"a": 2}]
        assert server.client.post("/test/nope/lines", json={}).status_code == 404  # no such path: FastAPI's 404
        paths = server.client.get("/openapi.json").json()["paths"]  # one documented path per served model
        assert paths["/test/tiny/lines"]["post"]["operationId"] == "test_lines_tiny"
        assert [path for path in paths if path.startswith("/test/")] == ["/test/tiny/lines"]


def test_the_documented_endpoint_runs(serve) -> None:
    """docs/serving.md's example endpoint, run as written."""
    text = (Path(__file__).parents[3] / "docs" / "serving.md").read_text(encoding="utf-8")
    section = text[text.index("## Streamed replies and extension endpoints"):]
    start = section.index("```python\n") + len("```python\n")
    snippet = section[start:section.index("\n```", start)]
    namespace: dict[str, Any] = {}
    exec(compile(snippet, "docs/serving.md", "exec"), namespace)  # noqa: S102 - our own documentation
    with serve(endpoints=[namespace["counting"]]) as server:
        response = server.client.post("/v1/count", json={"model": "tiny", "n": 3})
        assert response.headers["content-type"] == "text/event-stream"
        events = [line[len("data: "):] for line in response.text.splitlines() if line.startswith("data: ")]
        assert [orjson.loads(event)["step"] for event in events[:-1]] == [0, 1, 2] and events[-1] == "[DONE]"
        assert server.client.post("/v1/count", json={"model": "tiny", "n": 0}).status_code == 422
        assert server.client.post("/v1/count", json={"model": "nope", "n": 1}).status_code == 404
        documented = server.client.get("/openapi.json").json()["paths"]["/v1/count"]["post"]
        assert documented["operationId"] == "count" and documented["summary"].startswith("Count to n")
        assert {"200", "404", "413", "422", "504"} <= set(documented["responses"])
