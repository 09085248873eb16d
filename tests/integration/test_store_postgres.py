"""What only a store on a server meets: the server restarts under a long-lived process (a `luodi serve` polling
its aliases), and the store's sessions end with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import luodi.database as database
from luodi.store import Store


def test_a_server_restart_costs_a_reconnect_not_an_error(postgres_server: Any, postgres_store: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "STALE_AFTER_S", 0.0)  # check every pooled connection before use
    store = Store(tmp_path / "home")
    first = store.create_run("churn", {}, {})
    postgres_server.restart()
    second = store.create_run("churn", {}, {})
    assert {run.id for run in store.list_runs()} == {first.id, second.id}
    assert [event["kind"] for event in store.events()] == ["run.start", "run.start"]
