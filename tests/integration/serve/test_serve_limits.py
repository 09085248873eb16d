"""Limits and security of a real server (RELIABILITY.md 10-18, 22-23): keys on every route, body size while
reading, pickle bodies, a bounded queue, deadlines, a free event loop, flat memory, malformed HTTP."""

from __future__ import annotations

import json
import pickle
import select
import socket
import threading
import time

import psutil
import pytest
from serving_helpers import RECORD, concurrently, hammer, slow_loader

from luodi.errors import InputError
from luodi.serve.settings import make_config

KEY, ADMIN = "inference-key-0123456789", "admin-key-0123456789abc"
PREDICT = "/v1/models/tiny/predict"


def test_non_loopback_bind_needs_keys() -> None:
    with pytest.raises(InputError, match="refusing to bind 0.0.0.0"):
        make_config(host="0.0.0.0")
    assert make_config(host="0.0.0.0", api_keys=(KEY,)).host == "0.0.0.0"
    assert make_config(host="::1").host == "::1"
    with pytest.raises(InputError, match="admin key is also an inference key"):
        make_config(api_keys=(KEY,), admin_keys=(KEY,))


def test_every_route_needs_a_key(serve) -> None:
    with serve(api_keys=(KEY,), admin_keys=(ADMIN,)) as server:
        fastapi_app = server.running.app.app
        paths = {route.path for route in fastapi_app.routes} | set(server.state.routes.endpoints)
        assert {"/docs", "/openapi.json", "/metrics", "/v2/health/live", "/admin/models/{name}/alias"} <= paths
        open_paths = {"/livez", "/readyz"}
        for path in sorted(paths):
            concrete = path.replace("{name}", "tiny").replace("{version}", "1")
            for method in ("GET", "POST"):
                anonymous = server.client.request(method, concrete)
                if path in open_paths:
                    assert anonymous.status_code == 200 if method == "GET" else anonymous.status_code == 405
                    continue
                assert anonymous.status_code == 401, (method, path, anonymous.status_code)
                assert anonymous.headers["www-authenticate"] == "Bearer"
                wrong = server.client.request(method, concrete, headers={"Authorization": f"Bearer {KEY}x"})
                assert wrong.status_code == 401
        keyed = {"Authorization": f"Bearer {KEY}"}
        assert server.client.post(PREDICT, json={"records": [RECORD]}, headers=keyed).status_code == 200
        assert server.client.get("/docs", headers=keyed).status_code == 200
        # an inference key is not an admin key; an admin key may do both
        assert server.client.post("/admin/models/tiny/reload", headers=keyed).status_code == 401
        admin = {"Authorization": f"Bearer {ADMIN}"}
        assert server.client.post("/admin/models/tiny/reload", headers=admin).json() == {"reloaded": False,
                                                                                        "version": 1}
        assert server.client.post(PREDICT, json={"records": [RECORD]}, headers=admin).status_code == 200


def test_admin_routes_exist_only_with_an_admin_key(serve) -> None:
    with serve(api_keys=(KEY,)) as server:
        keyed = {"Authorization": f"Bearer {KEY}"}
        assert server.client.post("/admin/models/tiny/reload", headers=keyed).status_code == 401
    with serve() as server:
        assert server.client.post("/admin/models/tiny/reload").status_code == 404


def _rss_mb() -> float:
    return float(psutil.Process().memory_info().rss / 2**20)


def test_body_limit_is_enforced_while_reading(serve) -> None:
    limit = 1 << 20
    big = b"x" * (10 << 20)
    with serve(max_body_bytes=limit) as server:
        before = _rss_mb()
        started = time.perf_counter()
        plain = server.client.post(PREDICT, content=big, headers={"content-type": "application/json"})
        assert plain.status_code == 413 and time.perf_counter() - started < 2

        port = int(server.url.rsplit(":", 1)[1])
        sent = 0
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"POST /v1/models/tiny/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            chunk = b"10000\r\n" + b"x" * (64 << 10) + b"\r\n"
            while sent < 10 << 20 and not select.select([sock], [], [], 0.01)[0]:
                sock.sendall(chunk)
                sent += 64 << 10
            reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 413"), reply[:100]
        assert sent < 3 << 20  # answered while the body was still arriving, a little past the limit
        assert _rss_mb() - before < 40  # client and server share this process: neither held 10 MB copies
        assert server.client.post(PREDICT, json={"records": [RECORD]}).status_code == 200


def test_pickle_bodies_are_refused(serve) -> None:
    class Marker:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (print, ("unpickled!",))

    body = pickle.dumps(Marker())
    with serve() as server:
        for path in (PREDICT, "/v2/models/tiny/infer"):
            for content_type in ("application/python-pickle", "application/x-pickle", "application/octet-stream",
                                 "application/json", "text/plain", None):
                headers = {"content-type": content_type} if content_type else {}
                response = server.client.post(path, content=body, headers=headers)
                assert response.status_code in (415, 422), (path, content_type, response.status_code)


def test_overflow_gets_429_and_exactly_the_overflow(serve) -> None:
    seen: list[int] = []
    queue, callers = 4, 12
    with serve(loader=slow_loader(0.5, seen), max_batch_size=1, max_queue_rows=queue, max_rows=1) as server:
        responses = concurrently([lambda: server.client.post(PREDICT, json={"records": [RECORD]})] * callers)
    codes = sorted(response.status_code for response in responses)
    # one runs at once, `queue` wait, the rest are refused at once
    assert codes == [200] * (queue + 1) + [429] * (callers - queue - 1)
    refused = [response for response in responses if response.status_code == 429]
    assert all(int(response.headers["retry-after"]) >= 1 for response in refused)
    assert sum(seen) == queue + 1


def test_deadline_counts_queue_time_and_the_model_never_runs_it(serve) -> None:
    seen: list[int] = []
    with serve(loader=slow_loader(1.5, seen), max_batch_size=1) as server:
        def slow() -> int:
            return server.client.post(PREDICT, json={"records": [RECORD]}).status_code

        def hurried() -> tuple[int, float]:
            time.sleep(0.2)  # behind the slow one in the queue
            started = time.perf_counter()
            response = server.client.post(PREDICT, json={"records": [RECORD]}, headers={"X-Timeout-Ms": "300"})
            return response.status_code, time.perf_counter() - started

        first, (code, seconds) = concurrently([slow, hurried])
        time.sleep(1.6)  # the slow batch is done; the expired request must not have run after it
        assert first == 200 and code == 504
        assert 0.25 < seconds < 1.0
        assert seen == [1]
        assert server.client.post(PREDICT, json={"records": [RECORD]}, headers={"X-Timeout-Ms": "-1"}
                                  ).status_code == 422


def test_livez_answers_during_a_long_inference(serve) -> None:
    seen: list[int] = []
    with serve(loader=slow_loader(2.0, seen)) as server:
        def probe() -> float:
            time.sleep(0.3)
            started = time.perf_counter()
            assert server.client.get("/livez").status_code == 200
            return time.perf_counter() - started

        status, latency = concurrently([lambda: server.client.post(PREDICT, json={"records": [RECORD]}).status_code,
                                        probe])
    assert status == 200 and latency < 0.2


def test_readyz_is_503_while_draining(serve) -> None:
    with serve() as server:
        assert server.client.get("/readyz").json()["status"] == "ready"
        server.state.draining = True
        assert server.client.get("/readyz").status_code == 503
        assert server.client.get("/v2/health/ready").status_code == 503
        assert server.client.get("/livez").status_code == 200
        server.state.draining = False


@pytest.mark.slow
def test_memory_stays_flat_over_thousands_of_requests(serve) -> None:
    body = json.dumps({"records": [RECORD]}).encode()
    with serve(log_max_bytes=1 << 20) as server:
        assert hammer(server.url, PREDICT, body, 1000) == {200: 1000}
        before = _rss_mb()
        assert hammer(server.url, PREDICT, body, 5000) == {200: 5000}
        growth = _rss_mb() - before
    assert growth < 20, f"RSS grew {growth:.1f} MiB over 5000 requests"


def test_malformed_http_never_crashes_the_server(serve) -> None:
    host, port = "127.0.0.1", 0
    garbage = [
        b"\x00\x01\x02\xff" * 64,
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST /v1/models/tiny/predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST /v1/models/tiny/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
        b"POST /v1/models/tiny/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"records\": [",
        b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"X-Long: " + b"b" * 200_000 + b"\r\n\r\n",
        b"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n"
        b"Inference-Header-Content-Length: 99999999999999999999\r\n\r\n{\"inputs\":1}",
        b"POST /v1/models/tiny/predict HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n{}",
        b"\r\n\r\n\r\n",
    ]
    with serve() as server:
        port = int(server.url.rsplit(":", 1)[1])
        statuses = []
        for payload in garbage:
            with socket.create_connection((host, port), timeout=5) as sock:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
                reply = b""
                try:
                    while chunk := sock.recv(65536):
                        reply += chunk
                except (TimeoutError, ConnectionResetError):
                    pass
            if reply.startswith(b"HTTP/1.1 "):
                statuses.append(int(reply[9:12]))
        assert all(status < 500 for status in statuses), statuses
        assert server.client.post(PREDICT, json={"records": [RECORD]}).status_code == 200
        assert threading.active_count() < 50
