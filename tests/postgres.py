"""A throwaway PostgreSQL server for the store tests and benchmarks/store.py.

`initdb` into a temporary folder, listening only on a unix socket in that folder (no TCP), trust authentication
for the superuser `luodi`, run as the `postgres` user (or `nobody`) when we are root, since PostgreSQL refuses to
run as root. Debian's `postgresql` package puts the binaries in /usr/lib/postgresql/<version>/bin, off PATH.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any


class Unavailable(RuntimeError):
    """The server cannot start here; the message says why."""


def binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, else Debian's newest version."""
    found = shutil.which("initdb")
    if found is not None and shutil.which("pg_ctl") is not None:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]),
                      reverse=True) if Path("/usr/lib/postgresql").is_dir() else []
    return versions[0].parent if versions else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """`start()`, then `create_database(name)` for a URL per test; `stop()` removes everything."""

    def __init__(self, durable: bool = False):
        self.durable = durable  # fsync on (benchmarks); tests run with fsync off, the killed processes are clients
        self.folder: Path | None = None
        self.port = 0
        self.owner: dict[str, Any] = {}

    def _run(self, *command: str | Path, timeout: float = 120) -> None:
        done = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=timeout,
                              cwd=self.folder, **self.owner)
        if done.returncode != 0:
            raise Unavailable(f"{Path(str(command[0])).name} failed: {(done.stderr or done.stdout).strip()[-800:]}")

    def start(self) -> PostgresServer:
        folder = binaries()
        if folder is None:
            raise Unavailable("no PostgreSQL server binaries (initdb, pg_ctl): install Debian's `postgresql`")
        self.folder = Path(tempfile.mkdtemp(prefix="luodi-pg-"))
        if os.geteuid() == 0:  # postgres refuses root: hand the folder to an unprivileged user
            user = next((name for name in ("postgres", "nobody") if _exists(name)), None)
            if user is None:
                raise Unavailable("running as root and there is no `postgres` or `nobody` user to run the server")
            entry = pwd.getpwnam(user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
            self.owner = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        self.port = free_port()
        data = self.folder / "data"
        try:
            self._run(folder / "initdb", "-D", data, "-U", "luodi", "--auth=trust", "-E", "UTF8", "--no-sync")
            options = f"-k {self.folder} -c listen_addresses='' -p {self.port} -c max_connections=200"
            if not self.durable:
                options += " -c fsync=off -c full_page_writes=off"
            self._run(folder / "pg_ctl", "-D", data, "-o", options, "-l", self.folder / "server.log", "-w",
                      "-t", "60", "start")
        except (Unavailable, OSError, subprocess.TimeoutExpired) as error:
            log = self.folder / "server.log"
            detail = log.read_text()[-800:] if log.is_file() else ""
            self.stop()
            raise Unavailable(f"PostgreSQL did not start: {error} {detail}".strip()) from None
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://luodi@/{database}?host={self.folder}&port={self.port}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def restart(self) -> None:
        """Stop the server (ending every session) and start it again with the same options."""
        bindir = binaries()
        assert bindir is not None and self.folder is not None
        self._run(bindir / "pg_ctl", "-D", self.folder / "data", "-l", self.folder / "server.log", "-m", "fast", "-w",
                  "-t", "60", "restart")

    def stop(self) -> None:
        if self.folder is None:
            return
        bindir = binaries()
        if bindir is not None and (self.folder / "data" / "postmaster.pid").exists():
            subprocess.run([str(bindir / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "-w",
                            "stop"], capture_output=True, timeout=60, cwd=self.folder, **self.owner)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None


def study_trials(url: str, study: str) -> list[Any]:
    """The trials of the Optuna study `study` in the PostgreSQL database at `url`, its engine disposed after (psycopg
    warns of connections deleted open)."""
    import optuna

    storage = optuna.storages.RDBStorage("postgresql+psycopg://" + url.split("://", 1)[1])
    try:
        return list(optuna.load_study(study_name=study, storage=storage).trials)
    finally:
        storage.engine.dispose()


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True
