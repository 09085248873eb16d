"""The store's tables: the first schema, the migrations that bring every store, new or old, to SCHEMA_VERSION, and
the time stamps its rows hold."""

from __future__ import annotations

import time

from luodi.database import Connection, Database
from luodi.errors import InputError

# The first schema; MIGRATIONS bring every store, new or old, to SCHEMA_VERSION. {int} and {serial} are the
# database's column types (Database.types).
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL, config TEXT NOT NULL, environment TEXT NOT NULL DEFAULT '{{}}',
    metrics TEXT NOT NULL DEFAULT '{{}}', summary TEXT NOT NULL DEFAULT '{{}}', error TEXT,
    model_name TEXT, model_version {int});
CREATE TABLE IF NOT EXISTS epoch_metrics (
    run_id TEXT NOT NULL REFERENCES runs(id), epoch {int} NOT NULL, metrics TEXT NOT NULL,
    PRIMARY KEY (run_id, epoch));
CREATE TABLE IF NOT EXISTS model_versions (
    name TEXT NOT NULL, version {int} NOT NULL, run_id TEXT, path TEXT NOT NULL, created_at TEXT NOT NULL,
    task TEXT NOT NULL, metrics TEXT NOT NULL DEFAULT '{{}}', parent_version {int}, data_sha256 TEXT,
    description TEXT NOT NULL DEFAULT '', PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT NOT NULL, alias TEXT NOT NULL, version {int} NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (name, alias), FOREIGN KEY (name, version) REFERENCES model_versions(name, version));
CREATE TABLE IF NOT EXISTS events (
    id {serial}, at TEXT NOT NULL, kind TEXT NOT NULL, subject TEXT NOT NULL,
    actor TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{{}}');
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)
"""
TABLES = ("runs", "epoch_metrics", "model_versions", "aliases", "events", "store_meta", "run_tags")
MIGRATIONS: dict[int, tuple[str, ...]] = {  # schema version -> the statements that reach it from the one before
    2: ("ALTER TABLE events ADD COLUMN host TEXT NOT NULL DEFAULT ''",  # the audit trail: which machine
        "ALTER TABLE events ADD COLUMN username TEXT NOT NULL DEFAULT ''"),  # and which login, beside the actor
    # `luodi ui` lists runs newest first, by model, status or tag, a page at a time on stores of 10,000s of runs;
    # a run's tags (config `tags`) get a table so a tag filter is an index lookup, not a scan of every config.
    3: ("CREATE TABLE IF NOT EXISTS run_tags (run_id TEXT NOT NULL REFERENCES runs(id), tag TEXT NOT NULL, "
        "PRIMARY KEY (run_id, tag))",
        "CREATE INDEX IF NOT EXISTS run_tags_tag ON run_tags (tag, run_id)",
        "CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at, id)",
        "CREATE INDEX IF NOT EXISTS runs_name_created ON runs (name, created_at)",
        "CREATE INDEX IF NOT EXISTS runs_status_created ON runs (status, created_at)",
        "CREATE INDEX IF NOT EXISTS events_subject ON events (subject)"),
}
SCHEMA_VERSION = max(MIGRATIONS)


def create_schema(database: Database, connection: Connection) -> None:
    """Create the tables and migrate an older store, inside the caller's write transaction: processes opening a new
    store at once take turns (in SQLite's WAL mode a write after another process's commit would fail at once; on
    PostgreSQL two CREATE TABLEs of one name collide)."""
    for statement in SCHEMA.format(**database.types).split(";"):
        if statement.strip():
            connection.execute(statement)
    row = connection.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchone()
    version = int(row["value"]) if row else 1
    if version > SCHEMA_VERSION:
        raise InputError(f"the store {database.shown} has schema version {version}, newer than this "
                         f"luodi's {SCHEMA_VERSION}: upgrade luodi")
    for target in range(version + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[target]:
            connection.execute(statement)
    if version != SCHEMA_VERSION:
        connection.execute("INSERT INTO store_meta (key, value) VALUES ('schema_version', ?) "
                           "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(SCHEMA_VERSION),))


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
