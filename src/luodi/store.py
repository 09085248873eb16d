"""LUODI_HOME: runs, model versions, aliases and an append-only event log in a database; folders for files.

Layout: `luodi.db` (SQLite, WAL; or a PostgreSQL database several machines share, `LUODI_STORE=postgresql://...`,
with LUODI_HOME then a folder they all mount), `runs/<run id>/` (config, checkpoint, pipeline state),
`models/<name>/v<version>/` (immutable packages), `staging/` (packages being written; renamed into `models/` at
registration). Every change is one transaction; a package folder becomes a version only when its row commits.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from luodi.config import is_valid_name
from luodi.database import Connection, Database, open_database
from luodi.errors import InputError
from luodi.io import fsync_dir

RESERVED_ALIASES = {"latest"}
STAGING_GRACE_SECONDS = 3600  # a staging folder untouched this long belongs to no live registration
MAX_VERSION = 2**63 - 1  # a 64-bit INTEGER (BIGINT); a larger number is the user's typo, not an OverflowError
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


def validate_name(value: str, what: str = "name") -> str:
    """Names of models, runs and aliases: ^[A-Za-z0-9._-]{1,128}$, and never '.' or '..'."""
    if not is_valid_name(value):
        shown = repr(value) if len(value) <= 140 else f"{value[:40]!r}... ({len(value)} characters)"
        raise InputError(f"invalid {what} {shown}: use 1-128 letters, digits, '.', '_' or '-'")
    return value


def check_version(version: int) -> int:
    """Version numbers are 1 to 2**63 - 1 (what SQLite stores)."""
    if not 1 <= version <= MAX_VERSION:
        raise InputError(f"invalid version {version}: versions are numbered from 1 (at most {MAX_VERSION})")
    return version


@dataclass(frozen=True)
class ModelReference:
    """A parsed model reference: `name` (its latest version), `name@alias`, or `name/3` (a pinned version)."""

    name: str
    alias: str | None = None
    version: int | None = None

    @property
    def bare(self) -> bool:
        """Only a name: the latest version (or, where runs are meant, a run id)."""
        return self.alias is None and self.version is None

    @property
    def follows_alias(self) -> bool:
        """Which version it means can change as versions are registered and aliases move (not pinned)."""
        return self.version is None


def parse_reference(text: str, what: str = "model name") -> ModelReference:
    """The one parser of model references; the name is checked here (as `what`), an alias where it is resolved."""
    name, alias, version = text, None, None
    if "@" in text:
        name, _, alias = text.partition("@")
    elif "/" in text:
        name, _, number = text.partition("/")
        if not number.lstrip("v").isdigit():
            raise InputError(f"model reference {text!r}: version must be a number, e.g. {name}/3")
        version = check_version(int(number.lstrip("v")))
    validate_name(name, what)
    return ModelReference(name, alias, version)


def path_inside(root: Path, *parts: str) -> Path:
    """root/parts..., refusing names that escape the root or pass through a symlink."""
    root = Path(root).resolve()
    for part in parts:
        validate_name(part, "path component")
    path = root.joinpath(*parts)
    current = root
    for part in parts:
        current = current / part
        if current.is_symlink():
            raise InputError(f"refusing symlink inside the store: {current}")
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise InputError(f"path escapes the store: {path}")
    return resolved


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def default_home() -> Path:
    return Path(os.environ.get("LUODI_HOME", ".luodi"))


@dataclass(frozen=True)
class Run:
    id: str
    name: str
    status: str
    created_at: str
    updated_at: str
    config: dict[str, Any]
    environment: dict[str, Any]
    metrics: dict[str, Any]
    summary: dict[str, Any]
    error: str | None
    model_name: str | None
    model_version: int | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    run_id: str | None
    path: Path
    created_at: str
    task: str
    metrics: dict[str, Any]
    parent_version: int | None
    data_sha256: str | None
    description: str
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "path": str(self.path), "aliases": list(self.aliases)}


class Store:
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
        self._create_schema()
        self.clean_staging()

    def _create_schema(self) -> None:
        """Create the tables and migrate an older store, in one write transaction: processes opening a new store at
        once take turns (in SQLite's WAL mode a write after another process's commit would fail at once; on
        PostgreSQL two CREATE TABLEs of one name collide)."""
        with self.transaction() as connection:
            for statement in SCHEMA.format(**self.database.types).split(";"):
                if statement.strip():
                    connection.execute(statement)
            row = connection.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchone()
            version = int(row["value"]) if row else 1
            if version > SCHEMA_VERSION:
                raise InputError(f"the store {self.database.shown} has schema version {version}, newer than this "
                                 f"luodi's {SCHEMA_VERSION}: upgrade luodi")
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[target]:
                    connection.execute(statement)
            if version != SCHEMA_VERSION:
                connection.execute("INSERT INTO store_meta (key, value) VALUES ('schema_version', ?) "
                                   "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(SCHEMA_VERSION),))

    def clean_staging(self, grace_seconds: float = STAGING_GRACE_SECONDS) -> list[str]:
        """Remove what killed registrations left in staging/: half-written packages and the `orphan-*` folders
        (a version folder renamed into place whose row never committed), once untouched for `grace_seconds`.

        A live registration writes into its folder, so its newest file is recent; returns the names removed.
        """
        staging, removed = self.home / "staging", []
        cutoff = time.time() - grace_seconds
        for entry in list(staging.iterdir()):
            try:
                if entry.is_symlink() or not entry.is_dir():
                    entry.unlink()
                elif max([entry.stat().st_mtime, *(child.lstat().st_mtime for child in entry.iterdir())]) < cutoff:
                    shutil.rmtree(entry)
                else:
                    continue
            except FileNotFoundError:  # another process cleaned or registered it meanwhile
                continue
            removed.append(entry.name)
        return removed

    # ------------------------------------------------------------------------------------ plumbing
    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        with self.database.connect() as connection:
            yield connection

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction holding the store's write lock: all of it commits or none of it does."""
        with self._connect() as connection:
            self.database.begin(connection)
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def _event(self, connection: Connection, kind: str, subject: str, detail: dict[str, Any]) -> None:
        """Append to the audit trail: who (LUODI_ACTOR, else the login), from which machine and login, when, what."""
        user = _user()
        actor = os.environ.get("LUODI_ACTOR") or user
        connection.execute("INSERT INTO events (at, kind, subject, actor, detail, host, username) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (now(), kind, subject, actor, json.dumps(detail, default=str), socket.gethostname(), user))

    def integrity_check(self) -> str:
        return self.database.integrity_check(TABLES)

    # ---------------------------------------------------------------------------------------- runs
    def create_run(self, name: str, config: dict[str, Any], environment: dict[str, Any]) -> Run:
        validate_name(name, "model name")
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        path_inside(self.home / "runs", run_id).mkdir()
        with self.transaction() as connection:
            stamp = now()
            connection.execute(
                "INSERT INTO runs (id, name, status, created_at, updated_at, config, environment) "
                "VALUES (?, ?, 'running', ?, ?, ?, ?)",
                (run_id, name, stamp, stamp, json.dumps(config), json.dumps(environment)),
            )
            for tag in dict.fromkeys(config.get("tags") or ()):
                connection.execute("INSERT INTO run_tags (run_id, tag) VALUES (?, ?)", (run_id, tag))
            self._event(connection, "run.start", run_id, {"name": name})
        return self.get_run(run_id)

    def run_dir(self, run_id: str) -> Path:
        return path_inside(self.home / "runs", validate_name(run_id, "run id"))

    def update_run(self, run_id: str, *, status: str | None = None, metrics: dict[str, Any] | None = None,
                   summary: dict[str, Any] | None = None, error: str | None = None,
                   environment: dict[str, Any] | None = None) -> None:
        fields: dict[str, Any] = {"updated_at": now()}
        if status is not None:
            fields["status"] = status
        if metrics is not None:
            fields["metrics"] = json.dumps(metrics)
        if summary is not None:
            fields["summary"] = json.dumps(summary, default=str)
        if error is not None:
            fields["error"] = error
        if environment is not None:
            fields["environment"] = json.dumps(environment)
        assignments = ", ".join(f"{key} = ?" for key in fields)
        with self.transaction() as connection:
            connection.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*fields.values(), run_id))
            if status is not None:
                self._event(connection, f"run.{status}", run_id, {"error": error} if error else {})

    def log_epoch(self, run_id: str, epoch: int, metrics: dict[str, float]) -> None:
        with self.transaction() as connection:
            connection.execute("INSERT INTO epoch_metrics (run_id, epoch, metrics) VALUES (?, ?, ?) "
                               "ON CONFLICT (run_id, epoch) DO UPDATE SET metrics = excluded.metrics",
                               (run_id, epoch, json.dumps(metrics)))

    def epoch_history(self, run_id: str) -> list[dict[str, float]]:
        with self._connect() as connection:
            rows = connection.execute("SELECT metrics FROM epoch_metrics WHERE run_id = ? ORDER BY epoch",
                                      (run_id,)).fetchall()
        return [json.loads(row["metrics"]) for row in rows]

    def get_run(self, run_id: str) -> Run:
        validate_name(run_id, "run id")
        with self._connect() as connection:
            row = connection.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                row = self._unique_prefix(connection, run_id)
        return run_from_row(row)

    def _unique_prefix(self, connection: Connection, prefix: str) -> dict[str, Any]:
        rows = connection.execute("SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\' LIMIT 2",
                                  (prefix.replace("_", "\\_").replace("%", "\\%") + "%",)).fetchall()
        if len(rows) == 1:
            return rows[0]
        raise InputError(f"run {prefix!r} not found" + (" (ambiguous prefix)" if rows else "")
                         + "; list runs with `luodi runs ls`")

    def list_runs(self, name: str | None = None, limit: int = 50) -> list[Run]:
        with self._connect() as connection:
            where = " WHERE name = ?" if name else ""
            query = f"SELECT * FROM runs{where} ORDER BY created_at DESC, id DESC LIMIT ?"
            rows = connection.execute(query, (name, limit) if name else (limit,)).fetchall()
        return [run_from_row(row) for row in rows]

    # -------------------------------------------------------------------------------------- models
    def staging_dir(self) -> Path:
        """A fresh folder to write a package into before `register_model` renames it into place."""
        path = self.home / "staging" / secrets.token_hex(8)
        path.mkdir()
        return path

    def register_model(self, name: str, staging: Path, *, run_id: str | None, task: str,
                       metrics: dict[str, Any], data_sha256: str | None = None, description: str = "",
                       parent_version: int | None = None) -> ModelVersion:
        """Make a staged package the next version of `name`: rename into place and commit its row together.

        A crash between the rename and the commit leaves an orphan folder with no row: not a version, moved
        aside into staging/ by the next registration that needs its number, and removed by `clean_staging`.
        The run that trained it is marked finished in the same transaction; a run that already registered a version
        registers no other: that version is returned and `staging` is left to the caller.
        """
        validate_name(name, "model name")
        parent = path_inside(self.home / "models", name)
        parent.mkdir(exist_ok=True)
        with self.transaction() as connection:
            if run_id is not None:  # a run registers one version: a second caller (a search process) gets it
                done = connection.execute("SELECT model_name, model_version FROM runs WHERE id = ?",
                                          (run_id,)).fetchone()
                if done is not None and done["model_version"] is not None:  # nothing written: COMMIT ends it
                    return self.get_version(done["model_name"], done["model_version"])
            latest = connection.execute("SELECT MAX(version) AS latest FROM model_versions WHERE name = ?",
                                        (name,)).fetchone()["latest"]
            version = (latest or 0) + 1
            if parent_version is None and latest:
                parent_version = latest
            destination = parent / f"v{version}"
            if destination.exists():
                orphans = self.home / "staging" / f"orphan-{name}-v{version}-{secrets.token_hex(4)}"
                os.replace(destination, orphans)
            os.replace(staging, destination)
            fsync_dir(parent)
            connection.execute(
                "INSERT INTO model_versions (name, version, run_id, path, created_at, task, metrics, "
                "parent_version, data_sha256, description) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, version, run_id, str(destination.relative_to(self.home)), now(), task,
                 json.dumps(metrics), parent_version, data_sha256, description),
            )
            if run_id is not None:  # the outcome is recorded with the version: a kill after this is no 'stopped' run
                connection.execute("UPDATE runs SET model_name = ?, model_version = ?, status = 'finished', "
                                   "metrics = ?, updated_at = ? WHERE id = ?",
                                   (name, version, json.dumps(metrics), now(), run_id))
            self._event(connection, "model.register", f"{name}/{version}", {"run_id": run_id})
        return self.get_version(name, version)

    def latest_version(self, name: str) -> int | None:
        """The newest version number of `name`, or None before its first registration."""
        validate_name(name, "model name")
        with self._connect() as connection:
            row = connection.execute("SELECT MAX(version) AS latest FROM model_versions WHERE name = ?",
                                     (name,)).fetchone()
        return int(row["latest"]) if row["latest"] is not None else None

    def get_version(self, name: str, version: int) -> ModelVersion:
        validate_name(name, "model name")
        check_version(version)
        with self._connect() as connection:
            row = connection.execute("SELECT * FROM model_versions WHERE name = ? AND version = ?",
                                     (name, version)).fetchone()
            if row is None:
                raise InputError(f"model {name!r} has no version {version}; see `luodi models show {name}`")
            return self._version(connection, row)

    def _version(self, connection: Connection, row: dict[str, Any]) -> ModelVersion:
        aliases = [r["alias"] for r in connection.execute(
            "SELECT alias FROM aliases WHERE name = ? AND version = ? ORDER BY alias", (row["name"], row["version"]))]
        latest = connection.execute("SELECT MAX(version) AS latest FROM model_versions WHERE name = ?",
                                    (row["name"],)).fetchone()["latest"]
        if latest == row["version"]:
            aliases.insert(0, "latest")
        return ModelVersion(
            name=row["name"], version=row["version"], run_id=row["run_id"],
            path=path_inside(self.home, *Path(row["path"]).parts),  # a version folder swapped for a link is refused
            created_at=row["created_at"], task=row["task"], metrics=json.loads(row["metrics"]),
            parent_version=row["parent_version"], data_sha256=row["data_sha256"],
            description=row["description"], aliases=tuple(aliases),
        )

    def list_versions(self, name: str) -> list[ModelVersion]:
        validate_name(name, "model name")
        with self._connect() as connection:
            rows = connection.execute("SELECT * FROM model_versions WHERE name = ? ORDER BY version DESC",
                                      (name,)).fetchall()
            if not rows:
                raise InputError(f"model {name!r} not found{self._known_models_hint(connection)}")
            return [self._version(connection, row) for row in rows]

    def list_models(self) -> list[dict[str, Any]]:
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT name, COUNT(*) AS versions, MAX(version) AS latest, MAX(created_at) AS updated_at "
                "FROM model_versions GROUP BY name ORDER BY name").fetchall()
            out = []
            for row in rows:
                aliases = {r["alias"]: r["version"] for r in connection.execute(
                    "SELECT alias, version FROM aliases WHERE name = ? ORDER BY alias", (row["name"],))}
                out.append({"name": row["name"], "versions": row["versions"], "latest": row["latest"],
                            "aliases": aliases, "updated_at": row["updated_at"]})
        return out

    def _known_models_hint(self, connection: Connection) -> str:
        names = [r["name"] for r in connection.execute("SELECT DISTINCT name FROM model_versions ORDER BY name")]
        return f"; registered models: {', '.join(names)}" if names else "; no model is registered yet"

    def resolve(self, reference: str | ModelReference) -> ModelVersion:
        """`name`, `name@alias`, `name/version` (or `name/vN`) to a registered version; `latest` is built in."""
        if isinstance(reference, str):
            reference = parse_reference(reference)
        name, alias, version = reference.name, reference.alias, reference.version
        if version is not None:
            return self.get_version(name, version)
        latest = self.latest_version(name)
        if latest is None:  # a misspelt model is "not found", whatever alias follows it
            with self._connect() as connection:
                raise InputError(f"model {name!r} not found{self._known_models_hint(connection)}")
        if alias is None or alias == "latest":
            return self.get_version(name, latest)
        validate_name(alias, "alias")
        with self._connect() as connection:
            row = connection.execute("SELECT version FROM aliases WHERE name = ? AND alias = ?",
                                     (name, alias)).fetchone()
            if row is None:
                known = [r["alias"] for r in connection.execute("SELECT alias FROM aliases WHERE name = ? "
                                                                "ORDER BY alias", (name,))]
                raise InputError(f"model {name!r} has no alias {alias!r}; aliases: {['latest', *known]}")
        return self.get_version(name, row["version"])

    def set_alias(self, name: str, alias: str, version: int, reason: str = "", *,
                  rollback: bool = False) -> dict[str, Any]:
        """Point `name@alias` at `version`; the move is recorded in the event log with who, when and why (and
        `rollback: true` when `rollback_alias` made it)."""
        validate_name(name, "model name")
        validate_name(alias, "alias")
        if alias in RESERVED_ALIASES:
            raise InputError(f"alias {alias!r} is reserved: it always points at the newest version")
        self.get_version(name, version)
        with self.transaction() as connection:
            row = connection.execute("SELECT version FROM aliases WHERE name = ? AND alias = ?",
                                     (name, alias)).fetchone()
            previous = row["version"] if row else None
            connection.execute("INSERT INTO aliases (name, alias, version, updated_at) VALUES (?, ?, ?, ?) "
                               "ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version, "
                               "updated_at = excluded.updated_at", (name, alias, version, now()))
            detail = {"alias": alias, "from": previous, "to": version, "reason": reason,
                      **({"rollback": True} if rollback else {})}
            self._event(connection, "alias.move", f"{name}@{alias}", detail)
        return detail

    def rollback_alias(self, name: str, alias: str, reason: str = "") -> dict[str, Any]:
        """Point `name@alias` back at the version it pointed at before its last move (a second rollback undoes the
        first, as `cd -` does); recorded like any alias move."""
        validate_name(name, "model name")
        validate_name(alias, "alias")
        with self._connect() as connection:
            row = connection.execute("SELECT detail FROM events WHERE subject = ? AND kind = 'alias.move' "
                                     "ORDER BY id DESC LIMIT 1", (f"{name}@{alias}",)).fetchone()
        previous = json.loads(row["detail"]).get("from") if row else None
        if previous is None:
            raise InputError(f"{name}@{alias} has no earlier version to roll back to; see `luodi models history "
                             f"{name}`")
        return self.set_alias(name, alias, int(previous), reason, rollback=True)

    def record_event(self, kind: str, subject: str, detail: dict[str, Any]) -> None:
        """Append an event (a `retrain` decision, ...) about `subject` (`name/N`, `name@alias`) to the event log."""
        with self.transaction() as connection:
            self._event(connection, kind, subject, detail)

    def events(self, subject: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Events about exactly `subject` (a run id, `name/3`, `name@alias`), or all events; newest first."""
        with self._connect() as connection:
            where = " WHERE subject = ?" if subject else ""
            query = f"SELECT * FROM events{where} ORDER BY id DESC LIMIT ?"
            args = (subject, limit) if subject else (limit,)
            rows = connection.execute(query, args).fetchall()
        return [{**dict(row), "detail": json.loads(row["detail"])} for row in rows]

    def model_events(self, name: str, limit: int = 100) -> list[dict[str, Any]]:
        """Registrations and alias moves of the model `name` exactly (`name/N`, `name@alias`), newest first.

        Compared by prefix with `substr`, not LIKE: `prod` never matches `prod-canary`, and `%` or `_` are not
        wildcards (nor valid names).
        """
        validate_name(name, "model name")
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT * FROM events WHERE substr(subject, 1, ?) IN (?, ?) ORDER BY id DESC LIMIT ?",
                (len(name) + 1, f"{name}/", f"{name}@", limit)).fetchall()
        return [{**dict(row), "detail": json.loads(row["detail"])} for row in rows]

    def remove_staging(self, staging: Path) -> None:
        if staging.resolve().is_relative_to(self.home / "staging"):
            shutil.rmtree(staging, ignore_errors=True)


def observed(run: Run) -> Run:
    """The run with status 'stopped' when it reads 'running' but its process on this host is gone.

    A run killed with -9, or whose machine rebooted, never got to mark itself; `luodi train --resume` continues it.
    """
    pid, host = run.environment.get("pid"), run.environment.get("host")
    if run.status == "running" and run.model_version is not None:  # registered by a luodi before the store said so
        return dataclasses.replace(run, status="finished")
    if run.status != "running" or not isinstance(pid, int) or host != socket.gethostname():
        return run
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return dataclasses.replace(run, status="stopped")
    except PermissionError:  # alive, owned by someone else
        pass
    return run


def run_from_row(row: dict[str, Any]) -> Run:
    """A runs row (a dict) as a Run."""
    return Run(
        id=row["id"], name=row["name"], status=row["status"], created_at=row["created_at"],
        updated_at=row["updated_at"], config=json.loads(row["config"]), environment=json.loads(row["environment"]),
        metrics=json.loads(row["metrics"]), summary=json.loads(row["summary"]), error=row["error"],
        model_name=row["model_name"], model_version=row["model_version"],
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
