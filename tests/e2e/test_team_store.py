"""A team store through the real CLI: separate `luodi` processes (as on separate machines) share one PostgreSQL
store (LUODI_STORE) and one package folder (LUODI_HOME); the tables live in the server, not in a luodi.db file."""

from __future__ import annotations

import getpass
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_processes_share_runs_versions_aliases_and_the_audit_trail(postgres_store: str, luodi: Any, tmp_path: Path,
                                                                   table_csv: Callable[..., Path],
                                                                   tiny_config: Callable[..., Path]) -> None:
    data = table_csv(tmp_path / "table.csv", rows=200)
    config = tiny_config(tmp_path / "tiny.yaml", data, epochs=2)
    first, second = (luodi("train", str(config), "--json") for _ in range(2))
    assert (first.code, second.code) == (0, 0), first.stderr + second.stderr
    assert [first.json()["model"]["version"], second.json()["model"]["version"]] == [1, 2]
    assert not (tmp_path / "home" / "luodi.db").exists()  # the tables are in PostgreSQL

    assert luodi("models", "promote", "tiny", "1", "production", "--reason", "steadier").code == 0
    assert luodi("models", "ls", "--json").json()[0]["aliases"] == {"production": 1}
    events = luodi("models", "history", "tiny", "--json").json()
    assert [event["kind"] for event in events] == ["alias.move", "model.register", "model.register"]
    assert {(event["host"], event["username"]) for event in events} == {(socket.gethostname(), getpass.getuser())}
    assert "@" + socket.gethostname() in luodi("models", "history", "tiny").stdout

    out = tmp_path / "scored.csv"
    scored = luodi("predict", "tiny@production", "--data", str(data), "--out", str(out))
    assert scored.code == 0, scored.stderr
    assert len(pd.read_csv(out)) == 200
