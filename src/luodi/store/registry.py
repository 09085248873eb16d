"""The model registry in the store: versions (a staged package renamed into `models/<name>/v<version>/` and its row
committed together), aliases (`name@alias`, moved with a reason, rolled back) and `resolve` from a reference to a
version; staging/ and what killed registrations leave there."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from luodi.database import Connection, Database, transaction
from luodi.errors import InputError
from luodi.io import fsync_dir
from luodi.store.events import append_event
from luodi.store.names import ModelReference, check_version, parse_reference, path_inside, validate_name
from luodi.store.schema import now

RESERVED_ALIASES = {"latest"}
STAGING_GRACE_SECONDS = 3600  # a staging folder untouched this long belongs to no live registration


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


class Registry:
    """The registry's part of `Store`: staging, versions, aliases and references."""

    home: Path
    database: Database

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

    def staging_dir(self) -> Path:
        """A fresh folder to write a package into before `register_model` renames it into place."""
        path = self.home / "staging" / secrets.token_hex(8)
        path.mkdir()
        return path

    def remove_staging(self, staging: Path) -> None:
        if staging.resolve().is_relative_to(self.home / "staging"):
            shutil.rmtree(staging, ignore_errors=True)

    # ------------------------------------------------------------------------------------ versions
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
        with transaction(self.database) as connection:
            if run_id is not None:  # a run registers one version: a second caller (a search process) gets it
                done = connection.execute("SELECT model_name, model_version FROM runs WHERE id = ?",
                                          (run_id,)).fetchone()
                if done is not None and done["model_version"] is not None:  # nothing written: COMMIT ends it
                    return self.get_version(done["model_name"], done["model_version"])
            latest = _latest(connection, name)
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
            append_event(connection, "model.register", f"{name}/{version}", {"run_id": run_id})
        return self.get_version(name, version)

    def latest_version(self, name: str) -> int | None:
        """The newest version number of `name`, or None before its first registration."""
        validate_name(name, "model name")
        with self.database.connect() as connection:
            return _latest(connection, name)

    def get_version(self, name: str, version: int) -> ModelVersion:
        validate_name(name, "model name")
        check_version(version)
        with self.database.connect() as connection:
            row = connection.execute("SELECT * FROM model_versions WHERE name = ? AND version = ?",
                                     (name, version)).fetchone()
            if row is None:
                raise InputError(f"model {name!r} has no version {version}; see `luodi models show {name}`")
            return self._version(connection, row)

    def _version(self, connection: Connection, row: dict[str, Any]) -> ModelVersion:
        aliases = [r["alias"] for r in connection.execute(
            "SELECT alias FROM aliases WHERE name = ? AND version = ? ORDER BY alias", (row["name"], row["version"]))]
        if _latest(connection, row["name"]) == row["version"]:
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
        with self.database.connect() as connection:
            rows = connection.execute("SELECT * FROM model_versions WHERE name = ? ORDER BY version DESC",
                                      (name,)).fetchall()
            if not rows:
                raise InputError(f"model {name!r} not found{_known_models_hint(connection)}")
            return [self._version(connection, row) for row in rows]

    def list_models(self) -> list[dict[str, Any]]:
        with self.database.connect() as connection:
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

    # ------------------------------------------------------------------------------------- aliases
    def resolve(self, reference: str | ModelReference) -> ModelVersion:
        """`name`, `name@alias`, `name/version` (or `name/vN`) to a registered version; `latest` is built in."""
        if isinstance(reference, str):
            reference = parse_reference(reference)
        name, alias, version = reference.name, reference.alias, reference.version
        if version is not None:
            return self.get_version(name, version)
        latest = self.latest_version(name)
        if latest is None:  # a misspelt model is "not found", whatever alias follows it
            with self.database.connect() as connection:
                raise InputError(f"model {name!r} not found{_known_models_hint(connection)}")
        if alias is None or alias == "latest":
            return self.get_version(name, latest)
        validate_name(alias, "alias")
        with self.database.connect() as connection:
            row = connection.execute("SELECT version FROM aliases WHERE name = ? AND alias = ?",
                                     (name, alias)).fetchone()
            if row is None:
                known = [r["alias"] for r in connection.execute("SELECT alias FROM aliases WHERE name = ? "
                                                                "ORDER BY alias", (name,))]
                raise InputError(f"model {name!r} has no alias {alias!r}; aliases: {['latest', *known]}")
        return self.get_version(name, row["version"])

    def set_alias(self, name: str, alias: str, version: int, reason: str = "", *,
                  rollback: bool = False, actor: str | None = None) -> dict[str, Any]:
        """Point `name@alias` at `version`; the move is recorded in the event log with who (`actor`, default
        LUODI_ACTOR or the login), when and why (and `rollback: true` when `rollback_alias` made it)."""
        validate_name(name, "model name")
        validate_name(alias, "alias")
        if alias in RESERVED_ALIASES:
            raise InputError(f"alias {alias!r} is reserved: it always points at the newest version")
        self.get_version(name, version)
        with transaction(self.database) as connection:
            row = connection.execute("SELECT version FROM aliases WHERE name = ? AND alias = ?",
                                     (name, alias)).fetchone()
            previous = row["version"] if row else None
            connection.execute("INSERT INTO aliases (name, alias, version, updated_at) VALUES (?, ?, ?, ?) "
                               "ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version, "
                               "updated_at = excluded.updated_at", (name, alias, version, now()))
            detail = {"alias": alias, "from": previous, "to": version, "reason": reason,
                      **({"rollback": True} if rollback else {})}
            append_event(connection, "alias.move", f"{name}@{alias}", detail, actor)
        return detail

    def rollback_alias(self, name: str, alias: str, reason: str = "", *, actor: str | None = None) -> dict[str, Any]:
        """Point `name@alias` back at the version it pointed at before its last move (a second rollback undoes the
        first, as `cd -` does); recorded like any alias move."""
        validate_name(name, "model name")
        validate_name(alias, "alias")
        with self.database.connect() as connection:
            row = connection.execute("SELECT detail FROM events WHERE subject = ? AND kind = 'alias.move' "
                                     "ORDER BY id DESC LIMIT 1", (f"{name}@{alias}",)).fetchone()
        previous = json.loads(row["detail"]).get("from") if row else None
        if previous is None:
            raise InputError(f"{name}@{alias} has no earlier version to roll back to; see `luodi models history "
                             f"{name}`")
        return self.set_alias(name, alias, int(previous), reason, rollback=True, actor=actor)


def _latest(connection: Connection, name: str) -> int | None:
    """The newest version number of `name` (None before its first registration): what `latest` means."""
    latest = connection.execute("SELECT MAX(version) AS latest FROM model_versions WHERE name = ?",
                                (name,)).fetchone()["latest"]
    return None if latest is None else int(latest)


def _known_models_hint(connection: Connection) -> str:
    names = [r["name"] for r in connection.execute("SELECT DISTINCT name FROM model_versions ORDER BY name")]
    return f"; registered models: {', '.join(names)}" if names else "; no model is registered yet"
