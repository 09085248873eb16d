"""Helpers for serving tests: registering versions, a slow model, a light load client, simultaneous calls.

The fixtures in conftest.py start real servers in a thread of the test process (uvicorn on a free loopback
port) that tests call with real HTTP clients; lifecycle tests that need signals start `luodi serve` as a
subprocess (tests/e2e/test_serve.py).
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from luodi.features.pipeline import Encoded
from luodi.serve.model import Loaded, Reference, load_version
from luodi.serve.server import Running
from luodi.serve.settings import ServeConfig
from luodi.store import Store

RECORD = {"size": 0.3, "age": 41, "income": 52.5, "color": "red"}


def register_copy(home: Path, corrupt: bool = False) -> int:
    """Register the newest version's package again as a new version (optionally with a flipped weight byte)."""
    store = Store(home)
    source = store.resolve("tiny").path
    staging = store.staging_dir()
    shutil.copytree(source, staging, dirs_exist_ok=True)
    version = store.register_model("tiny", staging, run_id=None, task="binary", metrics={})
    if corrupt:
        weights = version.path / "weights.safetensors"
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0xFF
        weights.write_bytes(bytes(data))
    return version.version


@dataclass
class SlowBackend:
    """Wraps a real backend: sleeps `seconds` per batch and counts the rows the model ran."""

    inner: Any
    seconds: float
    rows: list[int] = field(default_factory=list)
    name: str = "slow"

    def run(self, encoded: Encoded) -> np.ndarray:
        time.sleep(self.seconds)
        self.rows.append(len(encoded))
        return self.inner.run(encoded)  # type: ignore[no-any-return]


def slow_loader(seconds: float, counter: list[int]) -> Callable[[Reference, ServeConfig], Loaded]:
    """A loader that serves the real package through a SlowBackend (warm-up rows are not counted)."""

    def load(reference: Reference, config: ServeConfig) -> Loaded:
        loaded = load_version(reference, config)
        backend = SlowBackend(loaded.backend, seconds, counter)
        return replace(loaded, backend=backend)

    return load


@dataclass
class Server:
    running: Running
    client: httpx.Client

    @property
    def url(self) -> str:
        return self.running.url

    @property
    def state(self) -> Any:
        return self.running.app.state


def hammer(url: str, path: str, body: bytes, count: int, concurrency: int = 8, stop: threading.Event | None = None
           ) -> dict[int, int]:
    """POST `body` `count` times over `concurrency` raw keep-alive connections (or until `stop`); status counts.

    Raw asyncio streams, not httpx: the server shares this process, and a light client leaves it the CPU.
    """
    host, port = url.removeprefix("http://").rsplit(":", 1)
    assert host == "127.0.0.1"  # load only ever targets this machine
    request = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    statuses: dict[int, int] = {}
    remaining = [count]

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while remaining[0] > 0 and not (stop is not None and stop.is_set()):
                remaining[0] -= 1
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                await reader.readexactly(length)
                status = int(head[9:12])
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    async def run() -> None:
        await asyncio.wait_for(asyncio.gather(*(connection() for _ in range(concurrency))), timeout=120)

    asyncio.run(run())
    return statuses


def concurrently(calls: list[Callable[[], Any]], timeout: float = 60) -> list[Any]:
    """Run the calls at the same moment in threads; their results (or exceptions) in order."""
    results: list[Any] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(index: int) -> None:
        barrier.wait(timeout)
        try:
            results[index] = calls[index]()
        except Exception as error:  # noqa: BLE001 - the test inspects it
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return results


def documented_snippet(section: str, url: str) -> dict[str, Any]:
    """Run the first Python block of docs/serving.md's `section` as written, against the server at `url`; its
    names."""
    text = (Path(__file__).parents[3] / "docs" / "serving.md").read_text(encoding="utf-8")
    part = text[text.index(section):]
    start = part.index("```python\n") + len("```python\n")
    snippet = part[start:part.index("\n```", start)].replace("http://localhost:8000", url)
    namespace: dict[str, Any] = {}
    exec(compile(snippet, "docs/serving.md", "exec"), namespace)  # noqa: S102 - our own documentation
    namespace["client"].close()
    return namespace
