"""LUODI_HOME: runs, model versions, aliases and an append-only event log in a database; folders for files.

Layout: `luodi.db` (SQLite, WAL; or a PostgreSQL database several machines share, `LUODI_STORE=postgresql://...`,
with LUODI_HOME then a folder they all mount), `runs/<run id>/` (config, checkpoint, pipeline state),
`models/<name>/v<version>/` (immutable packages), `staging/` (packages being written; renamed into `models/` at
registration). Every change is one transaction; a package folder becomes a version only when its row commits.

`Store` is composed of its parts, one module each: `names` (name and path checks, `parse_reference`), `schema`
(tables and migrations), `runs`, `registry` (versions, aliases, staging) and `events` (the audit trail).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from luodi.database import Connection, Database, open_database, transaction
from luodi.errors import InputError
from luodi.store.events import EventLog
from luodi.store.names import MAX_VERSION, ModelReference, check_version, parse_reference, path_inside, validate_name
from luodi.store.registry import RESERVED_ALIASES, STAGING_GRACE_SECONDS, ModelVersion, Registry
from luodi.store.runs import Run, Runs, observed, run_from_row
from luodi.store.schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION, TABLES, create_schema, now

__all__ = ["MAX_VERSION", "MIGRATIONS", "RESERVED_ALIASES", "SCHEMA", "SCHEMA_VERSION", "STAGING_GRACE_SECONDS",
           "TABLES", "ModelReference", "ModelVersion", "Run", "Store", "check_version", "default_home", "now",
           "observed", "parse_reference", "path_inside", "run_from_row", "validate_name"]


def default_home() -> Path:
    return Path(os.environ.get("LUODI_HOME", ".luodi"))


class Store(Runs, Registry, EventLog):
    """The run store and model registry: files under LUODI_HOME (default ./.luodi), tables in its SQLite file or in
    the PostgreSQL database LUODI_STORE names."""

    def __init__(self, home: str | Path | None = None, database: str | None = None):
        """`home` holds the files (default `$LUODI_HOME` or ./.luodi); `database` the tables (default
        `$LUODI_STORE`; unset: SQLite at home/luodi.db; `postgresql://...`: a server several machines share)."""
        self.home = Path(home) if home is not None else default_home()
        self.home.mkdir(parents=True, exist_ok=True)
        self.home = self.home.resolve()
        for folder in ("runs", "models", "staging"):
            if (self.home / folder).is_symlink():
                raise InputError(f"refusing symlink inside the store: {self.home / folder}")
            (self.home / folder).mkdir(exist_ok=True)
        self.database: Database = open_database(self.home, database)
        with self.transaction() as connection:  # one write transaction: processes opening a new store take turns
            create_schema(self.database, connection)
        self.clean_staging()

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        with self.database.connect() as connection:
            yield connection

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction holding the store's write lock: all of it commits or none of it does."""
        with transaction(self.database) as connection:
            yield connection

    def integrity_check(self) -> str:
        return self.database.integrity_check(TABLES)
