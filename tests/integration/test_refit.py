"""`trainer.refit`: a second model trained on training + validation rows for the chosen epochs; the package holds
it, the report and the result say so, and a run killed in the refit phase resumes that phase exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_resume import assert_same_weights

import luodi.api as api
from luodi.jobs.refit import REFIT_DIR
from luodi.store import Store
from luodi.train.checkpoint import load_checkpoint

# 600 rows split 70/15/15: 420 training rows (14 steps of 32 per epoch); the refit trains on 420 + 90 = 510 rows
# (16 steps of 32: the last batch holds 30 rows).
TRAINER = {"epochs": 4, "checkpoint_every_steps": 5, "optimizer": {"lr": 0.01}, "refit": True,
           "scheduler": {"type": "plateau", "patience": 1}, "early_stopping": {"patience": 50}}
PHASE_ONE_STEPS, REFIT_STEPS_PER_EPOCH, REFIT_ROWS = 14 * 4, 16, 510


def test_train_with_refit(table_csv, tiny_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = tiny_config(tmp_path / "tiny.yaml", table_csv(tmp_path / "table.csv", rows=600), **TRAINER)
    home = tmp_path / "home"
    trained = api.train(config, home=home, progress="silent")
    refit = trained.refit
    assert refit is not None, trained.warnings
    assert refit["rows"] == REFIT_ROWS and refit["epochs"] == trained.best_epoch
    assert refit["steps"] == REFIT_STEPS_PER_EPOCH * trained.best_epoch
    first = refit["phase_one"]
    assert first["best_epoch"] == trained.best_epoch and first["epochs_run"] == trained.epochs_run == 4
    assert set(first["validation"]) >= {"val_loss", "val_accuracy"}
    assert set(first["metrics"]) == set(trained.metrics) and first["metrics_split"] == "test"
    assert trained.rows == {"train": 420, "validation": 90, "test": 90}  # the splits, as they were cut

    manifest = json.loads((Path(str(trained.package)) / "package.json").read_text())
    assert manifest["training"]["refit"]["rows"] == REFIT_ROWS
    assert manifest["metrics"] == trained.metrics  # the refit model's test metrics
    report = (Path(str(trained.package)) / "report.html").read_text()
    assert 'id="refit"' in report and f"{REFIT_ROWS} training + validation rows" in report

    # The features were fitted on the 510 rows: the package's numeric means are theirs, not the 420 rows'.
    package_state = manifest["features"]
    run_state = json.loads((Store(home).run_dir(trained.run_id) / "features.json").read_text())
    assert package_state != run_state
    refit_state = json.loads((Store(home).run_dir(trained.run_id) / REFIT_DIR / "features.json").read_text())
    assert package_state == refit_state

    predicted = api.predict(trained.model or {}, tmp_path / "table.csv", home=home)
    assert len(predicted) == 600 and predicted["label_prediction"].notna().all()

    plain = api.train(config, ["trainer.refit=false"], home=tmp_path / "plain", progress="silent")
    assert plain.refit is None and plain.best_epoch == trained.best_epoch
    assert trained.refit["phase_one"]["metrics"] == plain.metrics  # phase one is the run without refit


def test_refit_skipped_without_a_test_split(table_csv, tiny_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = tiny_config(tmp_path / "tiny.yaml", table_csv(tmp_path / "table.csv", rows=300), epochs=2, refit=True)
    trained = api.train(config, ["data.split.test=0"],
                        home=tmp_path / "home", progress="silent")
    assert trained.refit is None
    assert any("trainer.refit was skipped: there is no test split" in warning for warning in trained.warnings)


@pytest.mark.parametrize("into_refit", [7, 20])
def test_interrupted_in_the_refit_and_resumed_equals_straight(table_csv, tiny_config, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                              ctrl_c_at, into_refit: int) -> None:
    """Ctrl-C `into_refit` steps into phase two (mid-epoch after a step checkpoint; in the second epoch), resume."""
    config = tiny_config(tmp_path / "tiny.yaml", table_csv(tmp_path / "table.csv", rows=600), **TRAINER)
    straight = api.train(config, home=tmp_path / "straight", progress="silent")
    assert straight.refit is not None and straight.refit["epochs"] >= 2

    steps = ctrl_c_at(PHASE_ONE_STEPS + into_refit)
    home = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        api.train(config, home=home, progress="silent")
    store = Store(home)
    (run,) = store.list_runs()
    saved = load_checkpoint(store.run_dir(run.id) / REFIT_DIR)
    assert saved is not None and 0 < saved["global_step"] < into_refit, "no phase-two checkpoint before the stop"

    ctrl_c_at(-1)
    resumed = api.train(resume=run.id, home=home, progress="silent")
    total = REFIT_STEPS_PER_EPOCH * straight.refit["epochs"]
    assert steps["count"] == total - saved["global_step"], "the resume did not continue phase two"
    assert_same_weights(resumed.package, straight.package)
    assert resumed.metrics == straight.metrics and resumed.refit is not None
    for key in ("rows", "epochs", "steps"):
        assert resumed.refit[key] == straight.refit[key]
    for key in ("best_epoch", "validation", "metrics"):
        assert resumed.refit["phase_one"][key] == straight.refit["phase_one"][key]


def test_the_progress_lines_announce_the_refit(table_csv, tiny_config, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    config = tiny_config(tmp_path / "tiny.yaml", table_csv(tmp_path / "table.csv", rows=300), epochs=2, refit=True)
    trained = api.train(config, home=tmp_path / "home", progress="lines")
    assert trained.refit is not None
    lines = capsys.readouterr().err.splitlines()
    announced = lines.index(f"refit: {trained.best_epoch} epochs on the 255 training + validation rows "
                            "(trainer.refit)")
    assert [line.split()[1] for line in lines[announced + 1:] if line.startswith("epoch ")] == [
        f"{epoch}/{trained.best_epoch}" for epoch in range(1, trained.best_epoch + 1)]


def test_the_cli_says_the_model_was_refit(table_csv, tiny_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from test_resume import run_cli

    config = tiny_config(tmp_path / "tiny.yaml", table_csv(tmp_path / "table.csv", rows=300), epochs=2)
    home = tmp_path / "home"
    printed = run_cli(["train", str(config), "--set", "trainer.refit=true", "--json"], home, tmp_path)
    assert printed.returncode == 0, printed.stderr
    result = json.loads(printed.stdout)
    assert result["refit"]["rows"] == 255 and result["refit"]["epochs"] == result["best_epoch"]
    assert set(result["refit"]["phase_one"]["metrics"]) == set(result["metrics"])
    text = run_cli(["train", str(config), "--set", "trainer.refit=true"], home, tmp_path)
    assert text.returncode == 0, text.stderr
    assert "a fresh model was trained on the 255 training + validation rows" in " ".join(text.stdout.split())


def test_a_streamed_run_skips_the_refit_and_says_why(table_csv, tiny_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from test_streaming import streamed_config

    base = tiny_config(tmp_path / "memory.yaml", table_csv(tmp_path / "table.csv", rows=600), epochs=2, refit=True)
    trained = api.train(streamed_config(tmp_path / "streamed.yaml", base), home=tmp_path / "home", progress="silent")
    assert trained.refit is None and trained.model is not None
    assert "trainer.refit was skipped: data.streaming reads the splits from their files, block by block" in \
        trained.warnings
