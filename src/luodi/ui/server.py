"""`luodi ui`: the UI in one uvicorn process on the serving stack (the socket bound as `luodi serve` binds it, the same
connection guards, drained on SIGTERM), and `background` for tests and benchmarks."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from luodi.serve.server import Running, bind, bound_url, configure_logging, in_thread, make_server
from luodi.serve.settings import ServeConfig
from luodi.ui.app import create_app


def run(config: ServeConfig, home: Path | None = None) -> int:
    """Serve the UI until SIGTERM or Ctrl-C; 0 after draining."""
    app = create_app(config, home)
    sock = bind(config)
    url = bound_url(sock)
    configure_logging()
    keys = "keys required" if app.ui.auth.required else "read-only without keys; promoting needs an admin key"
    print(f"luodi ui: {app.ui.store.home} on {url} ({keys})", file=sys.stderr, flush=True)
    server = make_server(app, config)
    server.run(sockets=[sock])
    return 0 if server.started else 1


@contextlib.contextmanager
def background(config: ServeConfig, home: Path | None = None, log_level: str = "warning") -> Iterator[Running]:
    """The UI served in a thread of this process until the block ends."""
    with in_thread(create_app(config, home), config, log_level) as running:
        yield running
