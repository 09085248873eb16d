"""The run store and registry: concurrent writers killed at random, name and path checks, symlinks, aliases.

RELIABILITY.md items 5 and 7. Every test runs twice: on the embedded SQLite store and on PostgreSQL (LUODI_STORE,
a server the session starts; those skip, saying why, where it cannot start).
"""

from __future__ import annotations

import getpass
import os
import random
import shutil
import socket
import time
from pathlib import Path

import pytest
import yaml

import luodi.api as api
from luodi.config import load_config, validate_config
from luodi.database import open_database
from luodi.errors import InputError
from luodi.package import verify_package
from luodi.store import SCHEMA, SCHEMA_VERSION, ModelReference, Store, parse_reference, path_inside, validate_name

WRITERS, ROUNDS = 4, 5
pytestmark = pytest.mark.usefixtures("store_backend")


def test_concurrent_writers_killed_at_random_lose_nothing(writers, tmp_path: Path) -> None:
    """Four processes create runs, log epochs, finish runs, register versions and move aliases; all are killed."""
    rng = random.Random(3)
    for round_ in range(ROUNDS):
        pids = [writers.fork("mixed", round_ * WRITERS + index) for index in range(WRITERS)]
        for pid in pids:
            writers.wait_for_commits(pid)
        for pid in rng.sample(pids, len(pids)):
            time.sleep(rng.uniform(0, 0.1))
            writers.kill(pid)
        writers.reap()
        check_committed(Store(tmp_path / "store"), writers.changes())


def check_committed(store: Store, changes: list[list[str]]) -> None:
    """Every change a writer printed is in the store; the database and every package are intact."""
    assert store.integrity_check() == "ok"
    kinds = {change[0] for change in changes}
    assert {"run", "version"} <= kinds, f"too few kinds of change to mean anything: {kinds}"
    for change in changes:
        what, args = change[0], change[1:]
        if what == "run":
            assert store.get_run(args[0]).id == args[0]
        elif what == "epoch":
            assert len(store.epoch_history(args[0])) >= 1
        elif what == "finished":
            assert store.get_run(args[0]).status == "finished"
        elif what == "version":
            assert store.get_version(args[0], int(args[1])).version == int(args[1])
        elif what == "alias":
            name, alias, reason = args
            assert any(event["detail"].get("reason") == reason for event in store.events(f"{name}@{alias}", 10_000))
    epochs = {(change[1], int(change[2])) for change in changes if change[0] == "epoch"}
    for run_id in {run_id for run_id, _ in epochs}:
        logged = {int(epoch) for epoch in _epochs(store, run_id)}
        assert {epoch for rid, epoch in epochs if rid == run_id} <= logged
    for model in store.list_models():
        versions = store.list_versions(model["name"])
        assert sorted(v.version for v in versions) == list(range(1, len(versions) + 1))
        for version in versions:
            verify_package(version.path)
        for alias, number in model["aliases"].items():
            assert store.resolve(f"{model['name']}@{alias}").version == number


def _epochs(store: Store, run_id: str) -> list[int]:
    with store._connect() as connection:  # noqa: SLF001 - the epoch numbers themselves, not just the metrics
        return [row["epoch"] for row in connection.execute("SELECT epoch FROM epoch_metrics WHERE run_id = ?",
                                                           (run_id,))]


# ------------------------------------------------------------------------------------------ names and paths
BAD_NAMES = ["../x", "..", ".", "%2e%2e", "%252e", "%2e%2e%2fetc", "/etc/passwd", "/tmp", "a\x00b", "\x00",
             "#/../", "x/../../y", "..\\x", "", "a" * 129, "name\n", ".\n", " name", "naïve", "a b", "~"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused_everywhere(tmp_path: Path, trained_package: Path, name: str) -> None:
    store = Store(tmp_path / "home")
    staging = stage(store, trained_package)
    with pytest.raises(InputError):
        validate_name(name)
    with pytest.raises(InputError):
        path_inside(store.home / "models", name)
    with pytest.raises(InputError):
        path_inside(store.home, "models", name, "v1")
    for reference in (name, f"{name}@production", f"{name}/1", f"good@{name}"):
        with pytest.raises(InputError):
            store.resolve(reference)
    with pytest.raises(InputError):
        store.register_model(name, staging, run_id=None, task="binary", metrics={})
    with pytest.raises(InputError):
        store.create_run(name, {}, {})
    with pytest.raises(InputError):
        store.run_dir(name)
    with pytest.raises(InputError):
        store.get_run(name)
    assert staging.is_dir() and (staging / "package.json").is_file()  # nothing was moved
    assert list((store.home / "models").iterdir()) == [] and list((store.home / "runs").iterdir()) == []


@pytest.mark.parametrize("name", ["name\n", "../x", "%2e%2e", "a" * 129])
def test_config_model_name_follows_the_same_rule(table_csv, tiny_config, tmp_path: Path, name: str) -> None:
    raw = yaml.safe_load(tiny_config(tmp_path / "tiny.yaml", tmp_path / "table.csv").read_text())
    validate_config(raw)
    with pytest.raises(InputError, match="name: must match"):
        validate_config({**raw, "name": name})


def test_good_names_are_accepted(tmp_path: Path) -> None:
    for name in ("a", "churn", "churn-v2.1_final", "A" * 128, "..."):
        assert validate_name(name) == name
        assert path_inside(tmp_path, name) == tmp_path.resolve() / name


def stage(store: Store, trained_package: Path) -> Path:
    """A staged copy of the tiny package, ready for `register_model`."""
    staging = store.staging_dir()
    shutil.copytree(trained_package, staging, dirs_exist_ok=True)
    return staging


def register(store: Store, trained_package: Path, name: str = "churn") -> int:
    return store.register_model(name, stage(store, trained_package), run_id=None, task="binary", metrics={}).version


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the store holding a canary file."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "canary.txt").write_text("untouched")
    return folder


def assert_untouched(outside: Path) -> None:
    assert sorted(path.name for path in outside.iterdir()) == ["canary.txt"]
    assert (outside / "canary.txt").read_text() == "untouched"


def test_symlinked_model_folder_is_refused(tmp_path: Path, trained_package: Path, outside: Path) -> None:
    store = Store(tmp_path / "home")
    (store.home / "models" / "evil").symlink_to(outside, target_is_directory=True)
    staging = stage(store, trained_package)
    with pytest.raises(InputError, match="symlink"):
        store.register_model("evil", staging, run_id=None, task="binary", metrics={})
    with pytest.raises(InputError, match="symlink"):
        path_inside(store.home / "models", "evil", "v1")
    assert staging.is_dir()
    assert_untouched(outside)


def test_symlinked_version_folder_is_refused(tmp_path: Path, trained_package: Path, outside: Path) -> None:
    """A registered version swapped for a link to another package is not loaded."""
    store = Store(tmp_path / "home")
    assert register(store, trained_package) == 1
    assert api.load_model("churn", home=store.home).manifest["name"] == "tiny"
    version_dir = store.home / "models" / "churn" / "v1"
    shutil.rmtree(version_dir)
    shutil.copytree(trained_package, outside / "package")
    version_dir.symlink_to(outside / "package", target_is_directory=True)
    for reference in ("churn", "churn/1", "churn@latest"):
        with pytest.raises(InputError, match="symlink"):
            store.resolve(reference)
        with pytest.raises(InputError, match="symlink"):
            api.load_model(reference, home=store.home)
    assert register(store, trained_package) == 2  # a new version beside the link is fine; the link is not used
    shutil.rmtree(outside / "package")
    assert_untouched(outside)


@pytest.mark.parametrize("folder", ["models", "runs", "staging"])
def test_symlinked_store_folder_is_refused(tmp_path: Path, outside: Path, folder: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / folder).symlink_to(outside, target_is_directory=True)
    with pytest.raises(InputError, match="symlink"):
        Store(home)
    assert_untouched(outside)


def test_symlinked_run_folder_is_refused(table_csv, tiny_config, tmp_path: Path, outside: Path) -> None:
    store = Store(tmp_path / "home")
    config = load_config(tiny_config(tmp_path / "tiny.yaml", table_csv(tmp_path / "table.csv", rows=100)))
    run = store.create_run("tiny", config.model_dump(mode="json"), {})
    os.rmdir(store.home / "runs" / run.id)
    (store.home / "runs" / run.id).symlink_to(outside, target_is_directory=True)
    with pytest.raises(InputError, match="symlink"):
        store.run_dir(run.id)
    with pytest.raises(InputError, match="symlink"):
        api.train(resume=run.id, home=store.home, progress="silent")
    assert_untouched(outside)


# --------------------------------------------------------------------------------------------- aliases
def test_promote_moves_an_alias_and_records_the_move(tmp_path: Path, trained_package: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUODI_ACTOR", "release-bot")
    store = Store(tmp_path / "home")
    assert [register(store, trained_package) for _ in range(3)] == [1, 2, 3]
    assert api.promote("churn", 1, "production", reason="first model", home=store.home) == \
        {"alias": "production", "from": None, "to": 1, "reason": "first model"}
    assert store.resolve("churn@production").version == 1
    moved = api.promote("churn", 2, "production", reason="better auc", home=store.home)
    assert moved == {"alias": "production", "from": 1, "to": 2, "reason": "better auc"}
    assert store.resolve("churn@production").version == 2
    events = store.events("churn@production")
    assert [event["detail"] for event in events] == [moved, {"alias": "production", "from": None, "to": 1,
                                                             "reason": "first model"}]
    assert {event["kind"] for event in events} == {"alias.move"}
    assert {event["actor"] for event in events} == {"release-bot"}
    history = api.history("churn", home=store.home)
    assert [event["kind"] for event in history] == ["alias.move", "alias.move", "model.register",
                                                    "model.register", "model.register"]
    assert store.get_version("churn", 2).aliases == ("production",)
    assert store.get_version("churn", 3).aliases == ("latest",)


def test_latest_is_reserved(tmp_path: Path, trained_package: Path) -> None:
    store = Store(tmp_path / "home")
    register(store, trained_package)
    register(store, trained_package)
    with pytest.raises(InputError, match="reserved"):
        store.set_alias("churn", "latest", 1)
    assert store.resolve("churn@latest").version == 2
    assert store.events("churn@") == []
    with pytest.raises(InputError, match="no version 7"):
        store.set_alias("churn", "production", 7)
    assert store.list_models()[0]["aliases"] == {}


def test_resolve_references(tmp_path: Path, trained_package: Path) -> None:
    store = Store(tmp_path / "home")
    for _ in range(3):
        register(store, trained_package)
    register(store, trained_package, name="other")
    store.set_alias("churn", "production", 2)
    store.set_alias("churn", "canary", 3)
    assert store.resolve("churn").version == 3
    assert store.resolve("churn@latest").version == 3
    assert store.resolve("churn@production").version == 2
    assert store.resolve("churn/1").version == 1
    assert store.resolve("churn/v1").version == 1
    assert store.resolve("other").ref == "other/1"
    assert store.resolve("churn/2").path == store.home / "models" / "churn" / "v2"
    with pytest.raises(InputError, match=r"no alias 'staging'; aliases: \['latest', 'canary', 'production'\]"):
        store.resolve("churn@staging")
    with pytest.raises(InputError, match="has no version 4"):
        store.resolve("churn/4")
    with pytest.raises(InputError, match="version must be a number"):
        store.resolve("churn/three")
    with pytest.raises(InputError, match="registered models: churn, other"):
        store.resolve("churm")
    with pytest.raises(InputError, match="model 'churm' not found; registered models: churn, other"):
        store.resolve("churm@production")  # a misspelt model is not reported as a missing alias


@pytest.mark.parametrize(("text", "parsed"), [
    ("churn", ModelReference("churn")),
    ("churn@production", ModelReference("churn", alias="production")),
    ("churn/3", ModelReference("churn", version=3)),
    ("churn/v12", ModelReference("churn", version=12)),
])
def test_parse_reference_is_the_one_parser(text: str, parsed: ModelReference) -> None:
    """Store.resolve, api.load_model, api.show_model, api.compare and luodi serve all read references through it."""
    assert parse_reference(text) == parsed
    assert parse_reference(text).bare == (text == "churn")
    assert parse_reference(text).follows_alias == ("/" not in text)


@pytest.mark.parametrize(("text", "message"), [
    ("churn/three", "version must be a number, e.g. churn/3"),
    ("..", "invalid model name"),
    ("bad name@production", "invalid model name 'bad name'"),
    ("", "invalid model name"),
])
def test_parse_reference_refuses_bad_references(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_reference(text)
    with pytest.raises(InputError, match="invalid run id"):
        parse_reference("nope!", what="run id")


# ------------------------------------------------------------------------------- what a kill leaves behind
def test_old_staging_leftovers_are_removed_on_start(tmp_path: Path, trained_package: Path) -> None:
    """A half-written package and an orphan version folder (renamed into place, row never committed) are removed
    once untouched for the grace period; a fresh staging folder (a registration in progress) is kept."""
    store = Store(tmp_path / "home")
    register(store, trained_package)
    orphan_source = store.home / "models" / "churn" / "v2"  # as if killed between the rename and the commit
    shutil.copytree(trained_package, orphan_source)
    assert register(store, trained_package) == 2  # moves the orphan aside
    orphans = [entry for entry in (store.home / "staging").iterdir() if entry.name.startswith("orphan-churn-v2-")]
    assert len(orphans) == 1
    half_written = stage(store, trained_package)
    in_progress = stage(store, trained_package)
    old = time.time() - 2 * 3600
    for folder in (orphans[0], half_written):
        for path in [*folder.rglob("*"), folder]:
            os.utime(path, (old, old))
    Store(store.home)
    assert sorted(entry.name for entry in (store.home / "staging").iterdir()) == [in_progress.name]
    assert [version.version for version in store.list_versions("churn")] == [2, 1]
    verify_package(store.resolve("churn/2").path)


def test_a_run_killed_after_registering_reads_finished(tmp_path: Path, trained_package: Path) -> None:
    """Killed between the registration and marking the run finished: the run is finished, with its version."""
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    store = Store(tmp_path / "home")
    run = store.create_run("churn", {}, {"pid": int(gone.stdout), "host": os.uname().nodename})
    store.register_model("churn", stage(store, trained_package), run_id=run.id, task="binary",
                         metrics={"accuracy": 0.9})
    [listed] = api.list_runs(home=store.home)
    assert (listed.status, listed.model_version, listed.metrics) == ("finished", 1, {"accuracy": 0.9})
    assert api.show_run(run.id, home=store.home)["status"] == "finished"


def test_processes_opening_a_new_store_at_once_all_get_it(tmp_path: Path, store_backend: str) -> None:
    """Two `luodi tune` processes on a fresh LUODI_HOME failed with 'database is locked': switching a new database
    to WAL, and creating its tables, raced without SQLite's busy timeout. Connections from threads take the same
    file locks as processes do, and start together at a barrier. On PostgreSQL two CREATE TABLEs of one name
    collide the same way (the write lock makes them take turns); there every attempt after the first finds the
    tables, so a few attempts say it."""
    import threading

    failures: list[str] = []
    for attempt in range(300 if store_backend == "sqlite" else 5):  # SQLite lost ~1 in 40 attempts before the fix
        home, barrier = tmp_path / str(attempt), threading.Barrier(8)

        def open_store(home: Path = home, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                Store(home)
            except Exception as error:
                failures.append(f"{type(error).__name__}: {error}")

        threads = [threading.Thread(target=open_store) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []


def test_concurrent_registrations_from_several_processes_stay_unique(writers, tmp_path: Path) -> None:
    """Four processes register versions of one model as fast as they can: every number is given once, the numbers
    run 1..N without a gap, and each version holds the package its process wrote."""
    pids = [writers.fork("register", index) for index in range(4)]
    for pid in pids:
        writers.wait_for_commits(pid, count=3)
    for pid in pids:
        writers.kill(pid)
    writers.reap()
    printed = [int(change[2]) for change in writers.changes() if change[0] == "version"]
    assert len(printed) == len(set(printed)) >= 12
    store = Store(tmp_path / "store")
    versions = store.list_versions("alpha")
    assert sorted(version.version for version in versions) == list(range(1, len(versions) + 1))
    assert set(printed) <= {version.version for version in versions}
    for version in versions:  # the package renamed into place is the one registered with it
        assert version.metrics == {"counter": verify_package(version.path)["metrics"]["counter"]}
    assert store.integrity_check() == "ok"


def test_the_audit_trail_records_host_and_user(tmp_path: Path, trained_package: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUODI_ACTOR", "release-bot")
    store = Store(tmp_path / "home")
    run = store.create_run("churn", {}, {})
    store.register_model("churn", stage(store, trained_package), run_id=run.id, task="binary", metrics={})
    store.set_alias("churn", "production", 1, "first")
    events = store.events()
    assert [event["kind"] for event in events] == ["alias.move", "model.register", "run.start"]
    for event in events:
        assert (event["actor"], event["host"], event["username"]) == ("release-bot", socket.gethostname(),
                                                                       getpass.getuser())


def test_a_store_of_the_first_schema_is_migrated(tmp_path: Path, store_backend: str) -> None:
    """A store written before the audit trail had host and user: its tables gain the columns, its events are
    kept (host and user unknown: empty), new events record them, and opening it again changes nothing."""
    home = tmp_path / "home"
    home.mkdir()
    database = open_database(home)
    with database.connect() as connection:  # the first schema, as luodi wrote it, with one event
        for statement in SCHEMA.format(**database.types).split(";"):
            if "store_meta" not in statement:
                connection.execute(statement)
        connection.execute("INSERT INTO events (at, kind, subject, actor, detail) VALUES (?, ?, ?, ?, ?)",
                           ("2026-01-01T00:00:00+0000", "run.start", "old-run", "alice", "{}"))
    store = Store(home)
    store.create_run("churn", {}, {})
    Store(home)
    new, old = store.events()
    assert (old["subject"], old["actor"], old["host"], old["username"]) == ("old-run", "alice", "", "")
    assert (new["host"], new["username"]) == (socket.gethostname(), getpass.getuser())
    with database.connect() as connection:
        assert connection.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchone() == \
            {"value": str(SCHEMA_VERSION)}
    assert store.integrity_check() == "ok"


def test_a_store_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "home")
    with store.transaction() as connection:
        connection.execute("UPDATE store_meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(InputError, match=f"has schema version {SCHEMA_VERSION + 1}, newer than this luodi's"):
        Store(tmp_path / "home")
