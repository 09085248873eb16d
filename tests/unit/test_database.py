"""Choosing the store's database from LUODI_STORE: SQLite when unset, PostgreSQL for its URLs, a clear error
(exit 2, password hidden) for anything else and for a server that cannot be reached."""

from __future__ import annotations

from pathlib import Path

import pytest

from luodi.cli import main
from luodi.database import PostgresDatabase, SQLiteDatabase, hide_password, open_database
from luodi.errors import InputError
from luodi.store import Store


def test_unset_is_sqlite_in_the_home_and_postgres_urls_are_postgres(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LUODI_STORE", raising=False)
    database = open_database(tmp_path)
    assert isinstance(database, SQLiteDatabase) and database.path == tmp_path / "luodi.db"
    for url in ("postgresql://u@db/luodi", "postgres://u@db/luodi", "postgresql+psycopg://u@db/luodi"):
        monkeypatch.setenv("LUODI_STORE", url)
        found = open_database(tmp_path)
        assert isinstance(found, PostgresDatabase) and found.url.endswith("://u@db/luodi")
        assert found.url.startswith(("postgresql://", "postgres://"))  # libpq's spelling, not SQLAlchemy's


def test_passwords_are_never_shown() -> None:
    assert hide_password("postgresql://ann:s3cret@db:5432/luodi") == "postgresql://ann:***@db:5432/luodi"
    assert hide_password("postgresql://ann@db/luodi") == "postgresql://ann@db/luodi"


def test_another_engine_exits_2_naming_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LUODI_STORE", "mysql://ann:s3cret@db/luodi")
    with pytest.raises(InputError, match=r"LUODI_STORE='mysql://ann:\*\*\*@db/luodi': give a postgresql://"):
        Store(tmp_path / "home")
    with pytest.raises(SystemExit) as exited:
        main(["models", "ls", "--home", str(tmp_path / "home")])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "LUODI_STORE" in err and "s3cret" not in err


def test_an_unreachable_server_exits_2_naming_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql://ann:s3cret@/luodi?host={tmp_path / 'no-server'}&port=5999"
    monkeypatch.setenv("LUODI_STORE", url)
    with pytest.raises(InputError, match=r"LUODI_STORE=postgresql://ann:\*\*\*@/luodi.*: cannot connect") as error:
        Store(tmp_path / "home")
    assert "s3cret" not in str(error.value)
