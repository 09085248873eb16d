"""Running the server: one uvicorn process that drains on SIGTERM, or a supervisor of N such processes.

One process: the socket is bound here (so port 0 reports the port it got), uvicorn serves it, SIGTERM or
Ctrl-C marks the server draining (/readyz answers 503), stops accepting connections, lets in-flight
requests finish within `drain_timeout_s`, flushes the prediction log, and the process exits 0.

`workers > 1`: this process binds the socket once and starts N workers (`python -m luodi.serve.server`)
that inherit it; the kernel spreads connections among them. A worker that dies (kill -9, out of memory)
is started again; its live metrics files are marked dead. SIGTERM is passed to every worker, and the
supervisor exits 0 once they have drained. Prometheus multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set
before the workers import prometheus_client) makes /metrics count every worker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from luodi.serve.model import Reference, preflight
from luodi.serve.settings import ServeConfig

log = logging.getLogger("luodi.serve")
SPEC_ENV = "LUODI_SERVE_SPEC"
RESTART_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)


def bind(config: ServeConfig) -> socket.socket:
    """The listening socket for host:port (IPv4 or IPv6)."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as error:
        sock.close()
        from luodi.errors import InputError

        raise InputError(f"cannot listen on {config.host}:{config.port}: {error.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app: Any, config: ServeConfig, log_level: str = "info") -> Any:
    import uvicorn

    from luodi.serve.connections import guarded_protocol

    return uvicorn.Config(app, lifespan="on", access_log=config.access_log, log_level=log_level,
                          timeout_graceful_shutdown=math.ceil(config.drain_timeout_s),
                          timeout_keep_alive=config.keep_alive_timeout_s,  # type: ignore[arg-type]  # call_later
                          http=guarded_protocol(config.header_timeout_s, config.max_connections),
                          server_header=False, proxy_headers=False)


def make_server(app: Any, config: ServeConfig, log_level: str = "info") -> Any:
    """A uvicorn server that marks the app draining on SIGTERM/SIGINT and exits 0 after draining."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            app.state.draining = True
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises the captured signal after shutting down (the process would then die by it);
            # a drained server has done what SIGTERM asks and exits 0 instead.
            if threading.current_thread() is not threading.main_thread():  # a server in a thread: no signals
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return DrainingServer(uvicorn_config(app, config, log_level))


def serve_process(references: list[Reference], config: ServeConfig, home: Path | None,
                  sock: socket.socket) -> None:
    """Serve on an already bound socket in this process until SIGTERM or Ctrl-C."""
    from luodi.serve.app import create_app

    server = make_server(create_app(references, config, home=home), config)
    server.run(sockets=[sock])
    if not server.started:
        raise SystemExit(1)


def bound_url(sock: socket.socket) -> str:
    """The base URL of a bound socket (an IPv6 address in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run(models: list[str], config: ServeConfig, home: Path | None) -> int:
    """`luodi serve`: check every reference and package first (bad input exits 2 before anything starts)."""
    references = [Reference(model, home) for model in models]
    described = [preflight(reference, config) for reference in references]
    sock = bind(config)
    url = bound_url(sock)
    configure_logging()
    print(f"luodi serve: {', '.join(described)} on {url} ({config.workers} worker(s)); docs at {url}/docs",
          file=sys.stderr, flush=True)
    if config.workers == 1:
        serve_process(references, config, home, sock)
        return 0
    return supervise(references, config, home, sock)


@dataclass
class Running:
    """A server started by `background`: its base URL and app (for tests and the quickstart)."""

    url: str
    app: Any
    server: Any


@contextlib.contextmanager
def background(references: list[Reference], config: ServeConfig, home: Path | None = None,
               log_level: str = "info", **create: Any) -> Iterator[Running]:
    """Serve in a thread of this process until the block ends (then drain and stop)."""
    from luodi.serve.app import create_app

    with in_thread(create_app(references, config, home=home, **create), config, log_level) as running:
        yield running


@contextlib.contextmanager
def in_thread(app: Any, config: ServeConfig, log_level: str = "info") -> Iterator[Running]:
    """Serve `app` (any ASGI app with a `state`) on config's host and port in a thread until the block ends."""
    sock = bind(config)
    host, port = sock.getsockname()[:2]
    server = make_server(app, config, log_level)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="luodi-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the server did not start (see the log above)")
        time.sleep(0.01)
    try:
        yield Running(f"http://{host}:{port}", app, server)
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()


def _spec(references: list[Reference], config: ServeConfig, home: Path | None) -> str:
    return json.dumps({"references": [reference.text for reference in references], "supervisor": os.getpid(),
                       "home": str(home) if home else None, "config": config.model_dump(mode="json")})


def supervise(references: list[Reference], config: ServeConfig, home: Path | None, sock: socket.socket) -> int:
    """Run `config.workers` worker processes on the shared socket, restarting any that die; 0 after draining."""
    metrics_dir = tempfile.mkdtemp(prefix="luodi-metrics-")
    env = {**os.environ, SPEC_ENV: _spec(references, config, home), "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    command = [sys.executable, "-m", "luodi.serve.server", str(sock.fileno())]
    stopping = False

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, env=env, pass_fds=[sock.fileno()])

    def stop(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    workers = [start() for _ in range(config.workers)]
    started = [time.monotonic()] * len(workers)
    failures = [0] * len(workers)
    try:
        while not stopping:
            time.sleep(0.05)
            for index, worker in enumerate(workers):
                code = worker.poll()
                if code is None or stopping:
                    continue
                _mark_dead(worker.pid, metrics_dir)
                failures[index] = failures[index] + 1 if time.monotonic() - started[index] < 10 else 1
                if failures[index] > len(RESTART_BACKOFF_S):
                    log.error("worker %d keeps failing (exit %s); stopping", index, code)
                    stopping = True
                    break
                log.warning("worker %d (pid %d) exited with %s; starting it again", index, worker.pid, code)
                time.sleep(RESTART_BACKOFF_S[failures[index] - 1])
                workers[index], started[index] = start(), time.monotonic()
        return _stop_workers(workers, config.drain_timeout_s)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _mark_dead(pid: int, metrics_dir: str) -> None:
    from prometheus_client import multiprocess

    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(pid, metrics_dir)


def _stop_workers(workers: list[subprocess.Popen[bytes]], drain_timeout_s: float) -> int:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + drain_timeout_s + 5
    code = 0
    for worker in workers:
        try:
            worker.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
            code = 1
        code = code or (1 if worker.returncode not in (0, -signal.SIGTERM) else 0)
    return code


def _worker_main(fd: int) -> None:
    """Entry of a worker process started by `supervise`: the settings come in the environment, not argv."""
    from luodi.serve.settings import ServeConfig

    spec = json.loads(os.environ.pop(SPEC_ENV))
    _die_with_parent(spec["supervisor"])
    home = Path(spec["home"]) if spec["home"] else None
    references = [Reference(text, home) for text in spec["references"]]
    sock = socket.socket(fileno=fd)
    configure_logging()
    serve_process(references, ServeConfig(**spec["config"]), home, sock)


def _die_with_parent(supervisor: int) -> None:
    """A worker whose supervisor is gone (even by kill -9) gets SIGTERM and drains, instead of serving alone."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != supervisor:  # the supervisor died before the call above
        raise SystemExit(0)


def configure_logging() -> None:
    logger = logging.getLogger("luodi.serve")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s:     luodi [%(process)d] %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


if __name__ == "__main__":
    _worker_main(int(sys.argv[1]))
