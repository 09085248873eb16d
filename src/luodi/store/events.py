"""The store's append-only event log (the audit trail): who moved which alias, registered which version, started
or ended which run, from which machine and login, when, and why."""

from __future__ import annotations

import getpass
import json
import os
import socket
from typing import Any

from luodi.database import Connection, Database, transaction
from luodi.store.names import validate_name
from luodi.store.schema import now


def append_event(connection: Connection, kind: str, subject: str, detail: dict[str, Any],
                 actor: str | None = None) -> None:
    """Append to the audit trail: who (`actor`, e.g. the UI's signed-in key, else LUODI_ACTOR, else the login), from
    which machine and login, when, what."""
    user = _user()
    actor = actor or os.environ.get("LUODI_ACTOR") or user
    connection.execute("INSERT INTO events (at, kind, subject, actor, detail, host, username) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (now(), kind, subject, actor, json.dumps(detail, default=str), socket.gethostname(), user))


class EventLog:
    """The event log's part of `Store`: recording events and reading them back."""

    database: Database

    def record_event(self, kind: str, subject: str, detail: dict[str, Any]) -> None:
        """Append an event (a `retrain` decision, ...) about `subject` (`name/N`, `name@alias`) to the event log."""
        with transaction(self.database) as connection:
            append_event(connection, kind, subject, detail)

    def events(self, subject: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Events about exactly `subject` (a run id, `name/3`, `name@alias`), or all events; newest first."""
        with self.database.connect() as connection:
            where = " WHERE subject = ?" if subject else ""
            query = f"SELECT * FROM events{where} ORDER BY id DESC LIMIT ?"
            args = (subject, limit) if subject else (limit,)
            rows = connection.execute(query, args).fetchall()
        return _decoded(rows)

    def model_events(self, name: str, limit: int = 100) -> list[dict[str, Any]]:
        """Registrations and alias moves of the model `name` exactly (`name/N`, `name@alias`), newest first.

        Compared by prefix with `substr`, not LIKE: `prod` never matches `prod-canary`, and `%` or `_` are not
        wildcards (nor valid names).
        """
        validate_name(name, "model name")
        with self.database.connect() as connection:
            rows = connection.execute(
                "SELECT * FROM events WHERE substr(subject, 1, ?) IN (?, ?) ORDER BY id DESC LIMIT ?",
                (len(name) + 1, f"{name}/", f"{name}@", limit)).fetchall()
        return _decoded(rows)


def _decoded(rows: list[Any]) -> list[dict[str, Any]]:
    return [{**dict(row), "detail": json.loads(row["detail"])} for row in rows]


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
