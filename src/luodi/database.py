"""The store's database: SQLite in LUODI_HOME (embedded, the default) or a team's PostgreSQL (`LUODI_STORE`).

The store writes its SQL once, with `?` placeholders and what both engines read alike (ON CONFLICT upserts, no
PRAGMA); a `Database` supplies what differs: connecting, the column types of the schema, the store-wide write lock
(SQLite's BEGIN IMMEDIATE, a transaction-scoped advisory lock on PostgreSQL: writers take turns on both, so a
version number is computed and inserted by one writer at a time), the paramstyle and the integrity check.
Rows are dicts on both.
"""

from __future__ import annotations

import atexit
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from luodi.errors import InputError

STORE_VARIABLE = "LUODI_STORE"
POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")
WRITE_LOCK = 0x6C756F6469  # the advisory lock every writer of a PostgreSQL store takes ("luodi")
CONNECT_TIMEOUT_S = 10
STALE_AFTER_S = 30.0  # a pooled connection idle this long is checked before use (the server may have restarted)


class Cursor(Protocol):
    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    def execute(self, sql: str, parameters: Sequence[Any] = ...) -> Cursor: ...


class Database(Protocol):
    """What the store needs of an engine."""

    kind: str  # "sqlite" or "postgresql"
    shown: str  # where it is, for messages (no password)
    types: dict[str, str]  # the schema's {int} and {serial} column types

    def connect(self) -> Any:
        """A context manager yielding a `Connection` in autocommit mode."""
        ...

    def begin(self, connection: Connection) -> None:
        """Open a write transaction holding the store-wide write lock."""
        ...

    def integrity_check(self, tables: Sequence[str]) -> str:
        """'ok', or what is wrong."""
        ...

    def json_number(self, column: str, key: str) -> tuple[str, list[Any]]:
        """SQL for the number at `key` of the JSON object in `column` (NULL when absent or not a number), and its
        parameters: what sorting runs by a metric reads."""
        ...


def open_database(home: Path, url: str | None = None) -> Database:
    """`url` (default `$LUODI_STORE`): unset or empty is SQLite at `home/luodi.db`; `postgresql://...` a server."""
    url = url if url is not None else os.environ.get(STORE_VARIABLE, "")
    if not url:
        return SQLiteDatabase(home / "luodi.db")
    if url.startswith(POSTGRES_SCHEMES):
        return PostgresDatabase(url)
    raise InputError(f"{STORE_VARIABLE}={hide_password(url)!r}: give a postgresql://USER@HOST/DATABASE URL, or leave "
                     f"it unset for the SQLite store in LUODI_HOME")


@contextmanager
def transaction(database: Database) -> Iterator[Connection]:
    """One write transaction holding the store's write lock: all of it commits or none of it does."""
    with database.connect() as connection:
        database.begin(connection)
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")


def hide_password(url: str) -> str:
    return re.sub(r"(://[^/:@]*):[^/@]*@", r"\1:***@", url)


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}


def _write_ahead_log(connection: sqlite3.Connection, wait_s: float = 60.0) -> None:
    """Put the database in WAL mode (a no-op once it is). Switching a new file takes an exclusive lock, and when
    processes open a new store together SQLite answers the lock upgrade that would deadlock with "database is
    locked" at once, without its busy timeout: wait and try again, as the timeout would."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class SQLiteDatabase:
    """One file in LUODI_HOME: WAL journal, synchronous=FULL, foreign keys on; a connection per operation."""

    kind = "sqlite"
    types = {"int": "INTEGER", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT"}

    def __init__(self, path: Path):
        self.path = path
        self.shown = str(path)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            connection.row_factory = _dict_row
            _write_ahead_log(connection)
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA foreign_keys=ON")
            yield connection
        finally:
            connection.close()

    def begin(self, connection: Connection) -> None:
        connection.execute("BEGIN IMMEDIATE")  # takes the write lock now, waiting up to the busy timeout

    def integrity_check(self, tables: Sequence[str]) -> str:
        with self.connect() as connection:
            return str(connection.execute("PRAGMA integrity_check").fetchone()["integrity_check"])

    def json_number(self, column: str, key: str) -> tuple[str, list[Any]]:
        path = '$."' + key.replace('"', "") + '"'
        return (f"(CASE WHEN json_type({column}, ?) IN ('integer', 'real') THEN json_extract({column}, ?) END)",
                [path, path])


class _PostgresConnection:
    """A psycopg connection that reads the store's `?` placeholders (psycopg's are `%s`)."""

    def __init__(self, connection: Any):
        self.connection = connection

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Any:
        return self.connection.execute(sql.replace("%", "%%").replace("?", "%s"), parameters)


class _Pool:
    """Idle connections of this process by URL: opening a PostgreSQL connection costs a server process, and the
    store opens one per operation. A forked child never touches its parent's connections (closing one would end
    the parent's session): they are left alone, referenced so that they are not collected. One idle for a while is
    tried with `SELECT 1` before use, so a server restart costs a reconnect, not an error."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.idle: dict[str, list[tuple[Any, float]]] = {}
        self.inherited: list[Any] = []
        atexit.register(self.close)

    def take(self, url: str) -> Any:
        import psycopg

        while True:
            with self.lock:
                if self.pid != os.getpid():
                    self.inherited.append(self.idle)
                    self.idle, self.pid = {}, os.getpid()
                idle = self.idle.setdefault(url, [])
                if not idle:
                    return None
                connection, since = idle.pop()
            if connection.closed or connection.broken:
                continue
            if time.monotonic() - since < STALE_AFTER_S:
                return connection
            try:
                connection.execute("SELECT 1")
                return connection
            except psycopg.Error:
                connection.close()

    def give(self, url: str, connection: Any) -> None:
        from psycopg.pq import TransactionStatus

        if connection.closed or connection.broken or connection.info.transaction_status != TransactionStatus.IDLE:
            connection.close()
            return
        with self.lock:
            if self.pid == os.getpid():
                self.idle.setdefault(url, []).append((connection, time.monotonic()))
                return
        connection.close()

    def close(self) -> None:
        with self.lock:
            if self.pid != os.getpid():
                return
            for connections in self.idle.values():
                for connection, _ in connections:
                    connection.close()
            self.idle = {}


_POOL = _Pool()


def close_idle_connections() -> None:
    """Close this process's idle PostgreSQL connections (they close at exit anyway; a test closes them sooner)."""
    _POOL.close()


class PostgresDatabase:
    """A PostgreSQL database several machines share (psycopg 3, libpq URLs); writers take one advisory lock."""

    kind = "postgresql"
    types = {"int": "BIGINT", "serial": "BIGSERIAL PRIMARY KEY"}

    def __init__(self, url: str):
        self.url = url.replace("postgresql+psycopg://", "postgresql://", 1)  # SQLAlchemy's spelling works too
        self.shown = hide_password(self.url)

    def _open(self) -> Any:
        try:
            import psycopg
            from psycopg.rows import dict_row
        except ImportError:
            raise InputError(f"{STORE_VARIABLE}={self.shown}: the PostgreSQL store needs psycopg: "
                             "pip install 'luodi[postgres]'") from None
        try:
            return psycopg.connect(self.url, autocommit=True, row_factory=dict_row, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.OperationalError as error:
            reason = " ".join(str(error).split())
            raise InputError(f"{STORE_VARIABLE}={self.shown}: cannot connect: {reason}") from None

    @contextmanager
    def connect(self) -> Iterator[_PostgresConnection]:
        connection = _POOL.take(self.url) or self._open()
        try:
            yield _PostgresConnection(connection)
        finally:
            _POOL.give(self.url, connection)

    def begin(self, connection: Connection) -> None:
        connection.execute("BEGIN")
        connection.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))  # released by COMMIT or ROLLBACK

    def integrity_check(self, tables: Sequence[str]) -> str:
        """PostgreSQL checks its own pages; this reads every row of the store's tables, so a damaged one errors."""
        with self.connect() as connection:
            for table in tables:
                connection.execute(f"SELECT COUNT(*) AS n FROM (SELECT * FROM {table}) AS every_row").fetchone()
        return "ok"

    def json_number(self, column: str, key: str) -> tuple[str, list[Any]]:
        return (f"(CASE WHEN jsonb_typeof({column}::jsonb -> ?) = 'number' THEN ({column}::jsonb ->> ?)::float8 END)",
                [key, key])


@contextmanager
def postgres_lock(url: str, key: int) -> Iterator[None]:
    """Hold a session advisory lock on the PostgreSQL database at `url` for the block: processes on any machine
    take turns (a killed holder's session ends, and its lock with it)."""
    with PostgresDatabase(url).connect() as connection:
        connection.execute("SELECT pg_advisory_lock(?)", (key,))
        try:
            yield
        finally:
            connection.execute("SELECT pg_advisory_unlock(?)", (key,))
