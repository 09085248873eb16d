"""Issue 12, the store and the CLI from outside: exact model history, input at fault exits 2 naming the culprit,
file modes that follow the umask, output that is never cut when piped, the run id early."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from test_bad_input import expect_error  # tests/e2e is on sys.path (no __init__)

from luodi.store import Store

pytestmark = pytest.mark.e2e


def register(store: Store, package: Path, name: str) -> int:
    staging = store.staging_dir()
    shutil.copytree(package, staging, dirs_exist_ok=True)
    return store.register_model(name, staging, run_id=None, task="binary", metrics={}).version


@pytest.fixture
def store(tmp_path: Path, trained_package: Path) -> Store:
    """The CLI's store (tmp_path/home) with prod/1, prod/2 (prod@production → 1) and prod-canary/1."""
    store = Store(tmp_path / "home")
    register(store, trained_package, "prod")
    register(store, trained_package, "prod")
    register(store, trained_package, "prod-canary")
    store.set_alias("prod", "production", 1, reason="first")
    store.set_alias("prod-canary", "production", 1)
    return store


def test_history_matches_the_name_exactly(luodi, store: Store) -> None:
    events = luodi("models", "history", "prod", "--json").json()
    assert sorted(event["subject"] for event in events) == ["prod/1", "prod/2", "prod@production"]
    canary = luodi("models", "history", "prod-canary", "--json").json()
    assert sorted(event["subject"] for event in canary) == ["prod-canary/1", "prod-canary@production"]
    expect_error(luodi("models", "history", "%"), "invalid model name '%'")
    expect_error(luodi("models", "history", "pro_"), "not found")
    expect_error(luodi("models", "history", "pro"), "model 'pro' not found")


def test_history_prints_readable_details(luodi, store: Store) -> None:
    text = luodi("models", "history", "prod").stdout
    assert "{" not in text, text  # not a Python dict
    assert "production: none → 1 (first)" in text, text
    assert "registered" in text


@pytest.mark.parametrize(("args", "fragments"), [
    (["predict", "m" * 5000, "--data", "new.csv"], ["invalid model name 'mmmm", "5000 characters"]),
    (["predict", "prod", "--data", "d" * 5000 + ".csv"], ["data file ddd", "5004 characters", "too long"]),
    (["predict", f"prod/{2**64}", "--data", "new.csv"], ["invalid version 18446744073709551616"]),
    (["models", "show", f"prod/{2**63}"], ["invalid version"]),
    (["models", "promote", "prod", str(2**64), "production"], ["invalid version 18446744073709551616"]),
    (["models", "promote", "../x", "1", "prod"], ["invalid model name '../x'"]),
    (["models", "promote", "prod", "0", "production"], ["invalid version 0"]),
])
def test_input_at_fault_exits_2_naming_it(luodi, store: Store, args: list[str], fragments: list[str]) -> None:
    result = luodi(*args)
    expect_error(result, *fragments)
    assert len(result.stderr) < 600, result.stderr  # named, not echoed 5,000 characters long


def test_deeply_nested_package_json_exits_2(luodi, store: Store, tmp_path: Path, trained_package: Path) -> None:
    package = tmp_path / "nested"
    shutil.copytree(trained_package, package)
    (package / "package.json").write_text("[" * 100_000 + "]" * 100_000)
    expect_error(luodi("predict", str(package), "--data", "new.csv"), "package.json", "nested too deeply")
    (package / "package.json").write_text("[1, 2]")
    expect_error(luodi("predict", str(package), "--data", "new.csv"), "package.json", "not a package manifest")


def test_written_files_follow_the_umask(luodi, tmp_path: Path, churn, table_csv, trained_package: Path) -> None:
    """Configs, scored tables, reports and packages get 0666 less the umask (0644 here), not 0600."""
    previous = os.umask(0o022)  # the CLI subprocess inherits it
    try:
        assert luodi("init", "--data", "churn.csv", "--target", "churned").code == 0
        table = table_csv(tmp_path / "table.csv", rows=40)
        scored = luodi("predict", str(trained_package), "--data", str(table), "--out", "scored.csv")
        assert scored.code == 0, scored.stderr
        evaluated = luodi("evaluate", str(trained_package), "--data", str(table), "--report", "report.html")
        assert evaluated.code == 0, evaluated.stderr
        trained = luodi("train", "luodi.yaml", "--set", "trainer.epochs=1", "--json")
        assert trained.code == 0, trained.stderr
    finally:
        os.umask(previous)
    package = Path(trained.json()["package"])
    written = [tmp_path / "luodi.yaml", tmp_path / "scored.csv", tmp_path / "report.html",
               *(path for path in package.iterdir() if path.is_file()), Path(trained.json()["report"])]
    assert {str(path): oct(stat.S_IMODE(path.stat().st_mode)) for path in written} == \
        {str(path): "0o644" for path in written}
