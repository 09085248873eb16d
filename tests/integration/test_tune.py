"""`luodi tune`: trials are recorded runs that register nothing, bad trials are pruned (not failed), the best trial's
own package becomes the model version, the study continues across invocations, and `search:` errors exit 2
naming the key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import luodi.api as api
from luodi.cli import main
from luodi.package import verify_package
from luodi.store import Store

SEARCH = {"trainer.optimizer.lr": {"low": 1e-5, "high": 3e-2, "log": True},
          "model.hidden_sizes": {"choices": [[8], [16, 8]]}, "model.dropout": {"low": 0.0, "high": 0.3}}


def search_config(path: Path, data: Path, tiny_config: Callable[..., Path], **search: Any) -> Path:
    """The shared tiny config (4 epochs) with a `search:` section."""
    config = yaml.safe_load(tiny_config(path, data, epochs=4).read_text())
    config["search"] = search or SEARCH
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, table_csv: Callable[..., Path],
          tiny_config: Callable[..., Path]) -> dict[str, Any]:
    """Five trials of one study in one store."""
    folder = tmp_path_factory.mktemp("tune")
    config = search_config(folder / "tune.yaml", table_csv(folder / "data.csv", rows=300), tiny_config)
    lines: list[Any] = []
    result = api.tune(config, 5, home=folder / "home", progress="silent", on_trial=lines.append)
    return {"folder": folder, "config": config, "home": folder / "home", "result": result, "lines": lines}


@pytest.fixture
def home_copy(study: dict[str, Any], tmp_path: Path) -> Path:
    """A copy of the module's store, for a test that adds trials: the other tests read the original."""
    import shutil

    return Path(shutil.copytree(study["home"], tmp_path / "home"))


def test_trials_are_runs_pruned_ones_are_not_failures(study: dict[str, Any]) -> None:
    result, store = study["result"], Store(study["home"])
    states = [line.state for line in study["lines"]]
    assert len(states) == 5 and "pruned" in states and "failed" not in states
    assert result.counts == {state: states.count(state) for state in ("complete", "pruned", "failed")}
    for line in study["lines"]:
        run = store.get_run(line.run_id)
        assert run.summary["trial"] == {"study": "tiny", "number": line.number}
        assert run.status == ("pruned" if line.state == "pruned" else "finished")
        if line.state == "pruned":
            assert "median" in run.error and len(line.curve) < 4  # stopped before its last epoch
        # each epoch the trial reported is in the store too
        assert [row["val_loss"] for row in store.epoch_history(run.id)] == pytest.approx(line.curve)


def test_only_the_best_trial_is_registered_from_its_own_package(study: dict[str, Any]) -> None:
    result, store = study["result"], Store(study["home"])
    complete = [line for line in study["lines"] if line.state == "complete"]
    best = min(complete, key=lambda line: line.value)
    assert result.best["number"] == best.number and result.run_id == best.run_id
    assert result.best["value"] == min(best.curve)  # a trial's value is its best validation loss
    (version,) = store.list_versions("tiny")
    assert result.model == {"name": "tiny", "version": version.version} and version.run_id == best.run_id
    manifest = verify_package(Path(result.package))
    assert {"study.html", "report.html", "weights.safetensors", "profile.json"} <= set(manifest["files"])  # monitorable
    assert manifest["lineage"] == {"run_id": best.run_id, "parent_version": None}
    assert manifest["config"]["model"]["hidden_sizes"] == best.params["model.hidden_sizes"]
    assert manifest["config"]["trainer"]["optimizer"]["lr"] == best.params["trainer.optimizer.lr"]
    assert "search" not in manifest["config"] or manifest["config"]["search"] == {}
    assert result.metrics == manifest["metrics"] == store.get_run(best.run_id).metrics  # test split, not retrained
    assert store.get_run(best.run_id).model_version == version.version
    for line in complete:  # worse finished trials keep no package; the best one's moved into the version
        assert not (store.run_dir(line.run_id) / "package").exists()
    assert list((study["home"] / "staging").iterdir()) == []


def test_a_second_invocation_continues_the_study(study: dict[str, Any], home_copy: Path) -> None:
    home = home_copy
    again = api.tune(study["config"], 1, home=home, progress="silent")
    assert [trial["number"] for trial in again.trials] == [5] and sum(again.counts.values()) == 6
    assert again.best["value"] <= study["result"].best["value"]
    assert len(Store(home).list_versions("tiny")) == (1 if again.best["number"] < 5 else 2)


@pytest.mark.slow
def test_the_study_continues_in_another_process(study: dict[str, Any], home_copy: Path) -> None:
    home = home_copy
    env = {**os.environ, "LUODI_HOME": str(home), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", "luodi.cli", "tune", str(study["config"]), "--trials", "2", "--json"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert [trial["number"] for trial in printed["trials"]] == [5, 6]  # numbered after the first invocation's
    assert sum(printed["counts"].values()) == 7
    progress = [line for line in done.stderr.splitlines() if line.startswith("trial ")]  # one line per trial
    assert [line.split(":")[0] for line in progress] == ["trial 5", "trial 6"]
    assert all("trainer.optimizer.lr=" in line and ", best " in line for line in progress)
    store = Store(home)
    assert printed["model"]["name"] == "tiny" and printed["metrics"] == store.get_version(
        "tiny", printed["model"]["version"]).metrics
    if printed["best"]["number"] < 5:  # the first invocation's best still wins: registered once, not again
        assert printed["model"] == study["result"].model and len(store.list_versions("tiny")) == 1
    else:
        assert printed["model"]["version"] == 2
        assert verify_package(Path(printed["package"]))["lineage"]["parent_version"] == 1
    page = Path(printed["page"]).read_text()
    assert "Optimization history" in page and "Parameter importances" in page


def test_the_time_budget_stops_the_search(study: dict[str, Any], home_copy: Path) -> None:
    home = home_copy
    result = api.tune(study["config"], 3, time_budget="0.01s", home=home, progress="silent")
    (trial,) = result.trials  # the first trial always starts; no other does once the budget is spent
    assert trial["state"] == "pruned" and trial["note"] == "the time budget ran out" and len(trial["curve"]) == 1
    assert Store(home).get_run(trial["run_id"]).status == "pruned"


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    return int(exited.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize(("search", "message"), [
    ({"model.hiden_sizes": {"choices": [[8]]}}, "search.model.hiden_sizes: no key 'hiden_sizes' in model (did you "
                                                "mean 'hidden_sizes'?)"),
    ({"trainer.optimizer.lr": {"low": 0.1, "high": 0.01}}, "search.trainer.optimizer.lr: low (0.1) must be below "
                                                           "high (0.01)"),
    ({"trainer.optimizer.lr": {"low": 0, "high": 0.1, "log": True}}, "search.trainer.optimizer.lr: a log range "
                                                                     "needs low > 0"),
    ({"model.dropout": {"choices": []}}, "search.model.dropout: choices is empty"),
    ({"model.dropout": {"low": 0.0, "high": 1.0}}, "search.model.dropout = 1.0: invalid config: model.dropout"),
    ({"model.normalization": {"choices": ["none", "group"]}}, 'search.model.normalization = "group"'),
    ({"model.mlp.ensemble": {"choices": [1, 0]}}, "search.model.mlp.ensemble = 0: invalid config: model.mlp.ensemble"),
    ({"data.train": {"choices": ["a.csv"]}}, "search.data.train: a trial may not change 'data'"),
    ({"input_features.colour.type": {"choices": ["category"]}}, "no list item named 'colour' (did you mean "
                                                                "'color'?)"),
])
def test_a_bad_search_section_exits_2_naming_the_key(search: dict[str, Any], message: str, tmp_path: Path,
                                                     table_csv: Callable[..., Path], tiny_config: Callable[..., Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    config = search_config(tmp_path / "bad.yaml", table_csv(tmp_path / "data.csv", rows=60), tiny_config, **search)
    code, error = run_cli(["tune", str(config), "--trials", "1", "--home", str(tmp_path / "home")], capsys)
    assert code == 2 and message in error and str(config) in error and "Traceback" not in error
    assert not (tmp_path / "home" / "runs").exists() or not any((tmp_path / "home" / "runs").iterdir())


def test_tune_needs_a_search_section_and_a_good_budget(tmp_path: Path, table_csv: Callable[..., Path],
                                                      tiny_config: Callable[..., Path],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    plain = tiny_config(tmp_path / "plain.yaml", table_csv(tmp_path / "data.csv", rows=60))
    code, error = run_cli(["tune", str(plain), "--trials", "1", "--home", str(tmp_path / "home")], capsys)
    assert code == 2 and "no search: section" in error and "luodi init --tune" in error
    config = search_config(tmp_path / "tune.yaml", tmp_path / "data.csv", tiny_config)
    code, error = run_cli(["tune", str(config), "--trials", "1", "--time-budget", "soon"], capsys)
    assert code == 2 and "--time-budget 'soon'" in error


def test_a_study_keeps_its_metric(study: dict[str, Any], tmp_path: Path) -> None:
    raw = yaml.safe_load(study["config"].read_text())
    raw["trainer"]["early_stopping"] = {"metric": "accuracy"}
    other = tmp_path / "accuracy.yaml"
    other.write_text(yaml.safe_dump(raw))
    with pytest.raises(api.InputError, match="study 'tiny' searches metric 'val_loss'"):
        api.tune(other, 1, home=study["home"], progress="silent")


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["sqlite", "postgresql"])
def test_two_processes_share_one_study(tmp_path: Path, table_csv: Callable[..., Path],
                                       tiny_config: Callable[..., Path], storage: str,
                                       request: pytest.FixtureRequest) -> None:
    """Two `luodi tune` processes on one study: in the store's studies.db, or (as machines would) with a PostgreSQL
    store (LUODI_STORE) and the study in another PostgreSQL database named by --storage."""
    config = search_config(tmp_path / "tune.yaml", table_csv(tmp_path / "data.csv", rows=300), tiny_config)
    command = [sys.executable, "-m", "luodi.cli", "tune", str(config), "--trials", "3", "--json"]
    if storage == "postgresql":
        request.getfixturevalue("postgres_store")  # sets LUODI_STORE for the processes and for Store() below
        studies = request.getfixturevalue("postgres_server").create_database("tune_studies")
        command += ["--storage", studies]
    env = {**os.environ, "LUODI_HOME": str(tmp_path / "home"), "PYTHONWARNINGS": "ignore"}
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outputs = [process.communicate(timeout=600) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [err[-2000:] for _, err in outputs]
    printed = [json.loads(out) for out, _ in outputs]
    numbers = sorted(trial["number"] for result in printed for trial in result["trials"])
    assert numbers == list(range(6))  # one study: each trial got its own number
    store = Store(tmp_path / "home")
    assert store.integrity_check() == "ok"
    trial_runs = [run for run in store.list_runs() if "trial" in run.summary]
    assert len(trial_runs) == 6 and {run.summary["trial"]["study"] for run in trial_runs} == {"tiny"}
    versions = store.list_versions("tiny")
    # a process registers the best it saw when it ended; the same best trial is registered once, not twice
    assert len({version.run_id for version in versions}) == len(versions) <= 2
    last = max(printed, key=lambda result: sum(result["counts"].values()))
    assert sum(last["counts"].values()) == 6 and last["run_id"] == versions[-1].run_id
    if storage == "postgresql":  # the study is in the --storage database, not beside the store
        assert not (tmp_path / "home" / "studies.db").exists()
        from postgres import study_trials

        assert sorted(trial.number for trial in study_trials(studies, "tiny")) == list(range(6))


def test_a_bad_storage_url_exits_2(tmp_path: Path, table_csv: Callable[..., Path], tiny_config: Callable[..., Path],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    config = search_config(tmp_path / "tune.yaml", table_csv(tmp_path / "data.csv", rows=50), tiny_config)
    code, err = run_cli(["tune", str(config), "--trials", "1", "--storage", "mysql://u:secret@db/x",
                         "--home", str(tmp_path / "home")], capsys)
    assert code == 2 and "--storage 'mysql://u:***@db/x'" in err and "secret" not in err


def test_runs_ls_names_the_trials(study: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code = 0
    try:  # typer exits only on an error
        main(["runs", "ls", "--home", str(study["home"])])
    except SystemExit as exited:
        code = int(exited.code or 0)
    shown = capsys.readouterr().out
    assert code == 0 and all(f"(study tiny, trial {n})" in shown for n in range(5))
