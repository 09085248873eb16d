"""What only a store on a server meets: the server restarts under a long-lived process (a `luodi serve` polling
its aliases), and the store's sessions end with it; `luodi tune` keeps its study in the server's database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import luodi.database as database
from luodi.store import Store
from postgres import study_trials


def test_a_server_restart_costs_a_reconnect_not_an_error(postgres_server: Any, postgres_store: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "STALE_AFTER_S", 0.0)  # check every pooled connection before use
    store = Store(tmp_path / "home")
    first = store.create_run("churn", {}, {})
    postgres_server.restart()
    second = store.create_run("churn", {}, {})
    assert {run.id for run in store.list_runs()} == {first.id, second.id}
    assert [event["kind"] for event in store.events()] == ["run.start", "run.start"]


def test_tune_keeps_its_study_in_a_postgres_stores_database(postgres_store: str, tmp_path: Path,
                                                            table_csv: Any, tiny_config: Any) -> None:
    """Without --storage, a PostgreSQL store's database holds the study too (Optuna's tables beside the store's)."""
    import yaml

    import luodi.api as api

    config = yaml.safe_load(tiny_config(tmp_path / "tune.yaml", table_csv(tmp_path / "data.csv", rows=120),
                                        epochs=2).read_text())
    config["search"] = {"model.dropout": {"low": 0.0, "high": 0.3}}
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump(config))
    result = api.tune(tmp_path / "tune.yaml", 1, home=tmp_path / "home", progress="silent")
    assert not (tmp_path / "home" / "studies.db").exists()
    assert [trial.user_attrs["run_id"] for trial in study_trials(postgres_store, "tiny")] == [result.run_id]
    assert Store(tmp_path / "home").get_version("tiny", 1).run_id == result.run_id
