"""Slow and idle connections cannot take a server down (issue 12): a header deadline, a keep-alive timeout and a
connection cap that fits the open-file limit.

The server is `luodi serve` in a subprocess whose open-file limit is lowered to 256; the test opens 300 sockets to
127.0.0.1 that send half a request and stop (a bounded slowloris), then checks /livez answers at once, the server
never ran out of files, and the slow sockets are closed at the header deadline.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

FILE_LIMIT = 256
SLOW_CLIENTS = 300


def start_server(home: Path, log: Path, *options: str) -> tuple[subprocess.Popen[bytes], str]:
    def lower_file_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    env = {**os.environ, "LUODI_HOME": str(home), "PYTHONWARNINGS": "ignore"}
    with open(log, "wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "luodi.cli", "serve", "tiny", "--port", "0",
                                    "--reload-interval", "0", *options], env=env, stderr=stderr,
                                   stdout=subprocess.DEVNULL, preexec_fn=lower_file_limit)
    deadline = time.monotonic() + 90
    while True:
        found = re.search(r"on (http://127\.0\.0\.1:\d+)", log.read_text())
        if found:
            url = found.group(1)
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    return process, url
            except httpx.TransportError:
                pass
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def test_slow_clients_cannot_take_liveness_down(store_home: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    process, url = start_server(store_home, log, "--header-timeout-s", "3", "--keep-alive-timeout-s", "1")
    host, port = url.removeprefix("http://").rsplit(":", 1)
    assert host == "127.0.0.1"  # load only ever targets this machine
    sockets: list[socket.socket] = []
    try:
        for _ in range(SLOW_CLIENTS):
            sock = socket.create_connection((host, int(port)), timeout=5)
            sock.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # headers never finish
            sockets.append(sock)
        time.sleep(0.5)
        started = time.monotonic()
        for _ in range(5):
            assert httpx.get(f"{url}/livez", timeout=5).status_code == 200
        assert time.monotonic() - started < 2.5  # answered at once, not after the slow clients were dropped
        time.sleep(3.5)  # past the header deadline: every slow socket has been closed by the server
        for sock in sockets:
            sock.settimeout(5)
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(1024) == b""
        assert httpx.get(f"{url}/livez", timeout=5).status_code == 200
        # an idle keep-alive connection is closed after the keep-alive timeout
        with socket.create_connection((host, int(port)), timeout=5) as idle:
            idle.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            reply = b""
            while not reply.endswith(b'"live"}'):
                reply += idle.recv(4096)
            assert reply.startswith(b"HTTP/1.1 200")
            time.sleep(1.5)
            assert idle.recv(1024) == b""
    finally:
        for sock in sockets:
            sock.close()
        process.terminate()
        process.wait(timeout=60)
    text = log.read_text()
    assert "Too many open files" not in text and "out of system resource" not in text, text[-2000:]
