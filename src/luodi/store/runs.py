"""Runs in the store: a run's row (config, environment, status, metrics, summary, error, its model version), its
epoch metrics and tags, its folder `runs/<run id>/`, and its status as observed from this host."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from luodi.database import Connection, Database, transaction
from luodi.errors import InputError
from luodi.store.events import append_event
from luodi.store.names import path_inside, validate_name
from luodi.store.schema import now


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


class Runs:
    """The runs' part of `Store`: a run's row, epoch metrics and folder."""

    home: Path
    database: Database

    def create_run(self, name: str, config: dict[str, Any], environment: dict[str, Any]) -> Run:
        validate_name(name, "model name")
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        path_inside(self.home / "runs", run_id).mkdir()
        with transaction(self.database) as connection:
            stamp = now()
            connection.execute(
                "INSERT INTO runs (id, name, status, created_at, updated_at, config, environment) "
                "VALUES (?, ?, 'running', ?, ?, ?, ?)",
                (run_id, name, stamp, stamp, json.dumps(config), json.dumps(environment)),
            )
            for tag in dict.fromkeys(config.get("tags") or ()):
                connection.execute("INSERT INTO run_tags (run_id, tag) VALUES (?, ?)", (run_id, tag))
            append_event(connection, "run.start", run_id, {"name": name})
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
        with transaction(self.database) as connection:
            connection.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*fields.values(), run_id))
            if status is not None:
                append_event(connection, f"run.{status}", run_id, {"error": error} if error else {})

    def log_epoch(self, run_id: str, epoch: int, metrics: dict[str, float]) -> None:
        with transaction(self.database) as connection:
            connection.execute("INSERT INTO epoch_metrics (run_id, epoch, metrics) VALUES (?, ?, ?) "
                               "ON CONFLICT (run_id, epoch) DO UPDATE SET metrics = excluded.metrics",
                               (run_id, epoch, json.dumps(metrics)))

    def epoch_history(self, run_id: str) -> list[dict[str, float]]:
        with self.database.connect() as connection:
            rows = connection.execute("SELECT metrics FROM epoch_metrics WHERE run_id = ? ORDER BY epoch",
                                      (run_id,)).fetchall()
        return [json.loads(row["metrics"]) for row in rows]

    def get_run(self, run_id: str) -> Run:
        validate_name(run_id, "run id")
        with self.database.connect() as connection:
            row = connection.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                row = _unique_prefix(connection, run_id)
        return run_from_row(row)

    def list_runs(self, name: str | None = None, limit: int = 50) -> list[Run]:
        with self.database.connect() as connection:
            where = " WHERE name = ?" if name else ""
            query = f"SELECT * FROM runs{where} ORDER BY created_at DESC, id DESC LIMIT ?"
            rows = connection.execute(query, (name, limit) if name else (limit,)).fetchall()
        return [run_from_row(row) for row in rows]


def _unique_prefix(connection: Connection, prefix: str) -> dict[str, Any]:
    rows = connection.execute("SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\' LIMIT 2",
                              (prefix.replace("_", "\\_").replace("%", "\\%") + "%",)).fetchall()
    if len(rows) == 1:
        return rows[0]
    raise InputError(f"run {prefix!r} not found" + (" (ambiguous prefix)" if rows else "")
                     + "; list runs with `luodi runs ls`")


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
