"""Issue 12, the store and the CLI from outside: exact model history, input at fault exits 2 naming the culprit,
file modes that follow the umask, output that is never cut when piped, the run id early."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
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


def test_piped_output_is_never_cut_or_wrapped(luodi, tmp_path: Path, trained_package: Path) -> None:
    """Run ids (what --resume needs) and paths print whole on one line when stdout is not a terminal."""
    home = tmp_path / ("a-long-store-folder-" * 6) / "home"
    store = Store(home)
    run = store.create_run("prod", {}, {})
    staging = store.staging_dir()
    shutil.copytree(trained_package, staging, dirs_exist_ok=True)
    version = store.register_model("prod", staging, run_id=run.id, task="binary", metrics={"accuracy": 0.5})
    shown = luodi("models", "show", "prod", "--home", str(home))
    assert shown.code == 0, shown.stderr
    assert str(version.path) in shown.stdout.splitlines()[-2] or str(version.path) in shown.stdout, shown.stdout
    assert any(str(version.path) in line and run.id in line for line in shown.stdout.splitlines()), shown.stdout
    listed = luodi("runs", "ls", "--home", str(home))
    assert any(run.id in line for line in listed.stdout.splitlines()), listed.stdout
    detail = luodi("runs", "show", run.id, "--home", str(home))
    assert any(str(store.run_dir(run.id)) in line for line in detail.stdout.splitlines()), detail.stdout
    assert "…" not in shown.stdout + listed.stdout + detail.stdout


def test_progress_lines_inside_an_epoch_when_not_a_terminal(table_csv, tiny_config, tmp_path: Path) -> None:
    """Piped, a long epoch (or data preparation) still logs a line every LUODI_PROGRESS_SECONDS (30 s by default)."""
    data = table_csv(tmp_path / "table.csv", rows=20_000)
    config = tiny_config(tmp_path / "tiny.yaml", data, epochs=1, batch_size=8, early_stopping={"enabled": False})
    env = {**os.environ, "LUODI_HOME": str(tmp_path / "home"), "LUODI_PROGRESS_SECONDS": "0.2"}
    done = subprocess.run([sys.executable, "-m", "luodi.cli", "train", str(config)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    ticks = [line for line in lines if line.startswith("reading and encoding the data: ")]  # may take > 0.2 s
    assert lines[len(ticks)].startswith("run ") and "started" in lines[len(ticks)], lines
    inside = [line for line in lines if line.startswith("epoch 1/1  step ")]
    assert len(inside) >= 2, lines  # 1,750 steps of 8 rows take well over 0.4 s
    steps = [int(line.split()[3].split("/")[0]) for line in inside]
    assert steps == sorted(steps) and all(line.split()[3].endswith("/1750") for line in inside), inside
    assert lines.index(inside[-1]) < next(i for i, line in enumerate(lines) if line.startswith("epoch 1/1  train_loss"))


def test_a_run_capped_while_improving_says_so(luodi, table_csv, tiny_config, tmp_path: Path, read_report) -> None:
    """Best epoch = last epoch at the epoch cap: the summary, --json and the report name trainer.epochs."""
    config = tiny_config(tmp_path / "tiny.yaml", table_csv(tmp_path / "table.csv", rows=300), epochs=3,
                         early_stopping={"enabled": False})
    result = luodi("train", str(config), "--json")
    assert result.code == 0, result.stderr
    trained = result.json()
    assert (trained["best_epoch"], trained["epochs_run"], trained["still_improving"]) == (3, 3, True)
    assert trained["notes"] == ["still improving when trainer.epochs stopped it (the best epoch was the last, 3): "
                                "raise trainer.epochs, e.g. --set trainer.epochs=6"]
    page = read_report(Path(trained["report"]))
    assert "raise trainer.epochs" in page.text and ("p", {"class": "note", "id": "still-improving"}) in page.tags
    text = luodi("train", str(config))
    assert "3 epochs (the cap, still improving: raise trainer.epochs)" in text.stdout, text.stdout
    assert "note: still improving when trainer.epochs stopped it" in text.stderr
    once = luodi("train", str(config), "--set", "trainer.epochs=1", "--json").json()
    assert once["still_improving"] is False and once["notes"] == []


def test_init_counts_and_names_the_config_it_wrote(luodi, tmp_path: Path) -> None:
    """'1 features' and a 'Train with: luodi train {this file}' placeholder left in the written config."""
    import pandas as pd

    rows = pd.DataFrame({"x": [i % 7 + 0.5 for i in range(40)], "y": ["a", "b"] * 20})
    rows.to_csv(tmp_path / "one.csv", index=False)
    result = luodi("init", "--data", "one.csv", "--target", "y", "--output", "conf/one.yaml")
    assert result.code == 0, result.stderr
    assert "), 1 feature, 40 rows" in result.stdout, result.stdout
    text = (tmp_path / "conf" / "one.yaml").read_text()
    assert "# Train with: luodi train conf/one.yaml " in text and "{this file}" not in text


def test_example_scripts_write_only_ignored_files() -> None:
    """The digits, mnist1d, bbc, gpt-scratch and smollm2-lora scripts write their data beside the configs: git
    ignores it there."""
    root = Path(__file__).parents[2]
    written = ["examples/digits/digits/0/0007.png", "examples/mnist1d/train.parquet", "examples/mnist1d/test.csv",
               "examples/bbc/bbc.csv", "examples/bbc/minilm", "examples/gpt-scratch/train.txt",
               "examples/smollm2-lora/smollm2"]
    ignored = subprocess.run(["git", "check-ignore", *written], cwd=root, capture_output=True, text=True)
    assert ignored.stdout.split() == written, ignored
    tracked = subprocess.run(["git", "check-ignore", "examples/mnist1d/luodi.yaml", "examples/digits/make_digits.py",
                              "examples/smollm2-lora/support.jsonl"],
                             cwd=root, capture_output=True, text=True)
    assert tracked.stdout == ""
