"""Connection guards: a deadline for a request's headers and a cap on open connections, in uvicorn's protocol.

uvicorn's httptools protocol has a keep-alive timeout (the idle time after a response) but nothing for a client
that connects and sends its headers slowly or never: each such socket holds a file descriptor for ever, and a few
hundred of them exhaust the process's file limit (1,024 is a common soft limit), after which `accept` fails, /livez
stops answering and the prediction log cannot open files. `guarded_protocol` adds, per connection:

- a header deadline: from the moment a connection opens (or a keep-alive connection starts its next request), its
  request line and headers must be complete within `header_timeout_s`, else it is closed;
- a cap: past `max_connections` open connections (lowered to fit the file limit, with room for the files the
  server itself opens), a new connection evicts the connection that has waited longest without a request in
  progress (idle or still sending headers); if every connection is busy with a request, the new one is closed.
  A liveness probe therefore gets in however many slow clients hold sockets.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("luodi.serve")
RESERVED_FILES = 128  # descriptors kept for what the server opens itself: the model, the store, logs, libraries


def connection_cap(max_connections: int) -> int:
    """`max_connections`, lowered to fit this process's open-file limit (less the files the server keeps)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return max_connections
    return max(16, min(max_connections, soft - RESERVED_FILES))


def guarded_protocol(header_timeout_s: float, max_connections: int) -> type[HttpToolsProtocol]:
    """An httptools protocol class with a header deadline and a connection cap (its bookkeeping is shared by the
    connections of one server).

    A request pays two dict updates: the deadline is enforced by one timer per server that sweeps the connections
    still reading their headers about once a second, not by a timer per request.
    """
    cap = connection_cap(max_connections)
    reading: dict[GuardedProtocol, float] = {}  # sending a request line and headers -> since when; oldest first
    idle: dict[GuardedProtocol, None] = {}  # keep-alive, between requests (uvicorn's keep-alive timeout closes them)
    sweeping: list[asyncio.TimerHandle] = []
    warned = [-1e9]  # when the cap was last logged: once a minute at most, however many connections it drops

    def sweep(loop: asyncio.AbstractEventLoop) -> None:
        sweeping.clear()
        expired = loop.time() - header_timeout_s
        for connection, since in list(reading.items()):
            if since > expired:
                break
            connection.drop()
        if reading:
            sweeping.append(loop.call_later(min(1.0, header_timeout_s), sweep, loop))

    class GuardedProtocol(HttpToolsProtocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if len(self.connections) > cap:
                oldest = next(iter(idle), None) or next(iter(reading), None)
                if oldest is None:  # every connection has a request in progress: this one is refused
                    transport.close()
                    return
                if self.loop.time() - warned[0] > 60:
                    warned[0] = self.loop.time()
                    log.warning("%d connections open (cap %d): closing the longest idle ones", len(self.connections),
                                cap)
                oldest.drop()
            self.read_headers()

        def read_headers(self) -> None:
            idle.pop(self, None)
            if self not in reading:
                reading[self] = self.loop.time()
                if not sweeping:
                    sweeping.append(self.loop.call_later(min(1.0, header_timeout_s), sweep, self.loop))

        def drop(self) -> None:
            reading.pop(self, None)
            idle.pop(self, None)
            if not self.transport.is_closing():
                self.transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.read_headers()  # a keep-alive connection's next request: its headers have the deadline too

        def on_headers_complete(self) -> None:
            reading.pop(self, None)
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self not in reading:
                idle[self] = None

        def connection_lost(self, exc: Exception | None) -> None:
            reading.pop(self, None)
            idle.pop(self, None)
            super().connection_lost(exc)

    return GuardedProtocol
