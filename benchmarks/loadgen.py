"""A small HTTP/1.1 keep-alive load generator: C connections on 127.0.0.1, each sending one request at a time.

Run in its own process (the benchmarks start it with subprocess), so it never shares an interpreter or a GIL
with the server it measures. Requests are pre-built bytes written on raw asyncio streams (uvloop when
present): per request the client parses only the status line and Content-Length, so on a 2-core machine it
uses far less CPU than an httpx or aiohttp client would. After `--warmup` seconds it counts the responses that
arrive in the next `--duration` seconds (requests/s = responses / duration; latencies are theirs). Bounded: it
stops after `--duration` seconds or `--requests` responses, whichever comes first, and only ever connects to
127.0.0.1.

    python benchmarks/loadgen.py --port 8000 --request-file req.bin --concurrency 32 --duration 5
prints one JSON object: requests, seconds, rps, p50_ms, p99_ms, statuses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

HOST = "127.0.0.1"  # load tests only ever target this machine


async def _connection(port: int, request: bytes, window: tuple[float, float], limit: int, latencies: list[float],
                      statuses: dict[int, int], ended: list[float]) -> None:
    opens, closes = window
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while len(latencies) < limit:
            started = time.perf_counter()
            if started >= closes:
                break
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            done = time.perf_counter()
            # Responses are counted by when they arrive: the window holds the same number of steady-state responses
            # whatever the latency, while counting the requests sent in it would add a tail of one latency to its
            # length (at 32 callers and 0.4 s per response, 9% fewer requests/s over 4 s).
            if opens <= done <= closes and len(latencies) < limit:
                latencies.append(done - started)
                status = int(head[9:12])
                statuses[status] = statuses.get(status, 0) + 1
                if len(latencies) == limit:
                    ended.append(done)
            if b"connection: close" in head.lower():
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, port)
    finally:
        writer.close()


async def run(port: int, request: bytes, concurrency: int, duration: float, warmup: float, limit: int) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    ended: list[float] = []  # when the limit-th response arrived, if it did
    opens = time.perf_counter() + warmup
    closes = opens + duration
    await asyncio.gather(*(_connection(port, request, (opens, closes), limit, latencies, statuses, ended)
                           for _ in range(concurrency)))
    seconds = (ended[0] if ended else closes) - opens
    ordered = sorted(latencies)

    def quantile(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")

    return {"requests": len(ordered), "seconds": round(seconds, 3), "rps": round(len(ordered) / seconds, 1),
            "p50_ms": round(quantile(0.5), 3), "p99_ms": round(quantile(0.99), 3),
            "statuses": {str(code): count for code, count in sorted(statuses.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--request-file", type=Path, required=True, help="a whole HTTP request, raw bytes")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--requests", type=int, default=1_000_000, help="stop after this many responses")
    args = parser.parse_args()
    coroutine = run(args.port, args.request_file.read_bytes(), args.concurrency, min(args.duration, 60), args.warmup,
                    args.requests)
    try:
        import uvloop

        result = uvloop.run(coroutine)
    except ImportError:
        result = asyncio.run(coroutine)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
