"""Training split into compute and record: `jobs.fit` trains without a store, `train(register=False)` records a
run but no version (a search trial), and a callback's `StopTraining` ends the run with its own status."""

from __future__ import annotations

from pathlib import Path

import pytest

import luodi.api as api
from luodi.config import load_config
from luodi.jobs.fit import fit, prepare
from luodi.store import Store
from luodi.train.loop import Callback, StopTraining
from luodi.train.runtime import apply_runtime


def test_fit_trains_and_scores_without_touching_the_store(table_csv, tiny_config, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("LUODI_HOME", str(home))
    config = load_config(tiny_config(tmp_path / "job.yaml", table_csv(tmp_path / "data.csv")))
    environment = apply_runtime(config.runtime, config.trainer.seed, architecture=config.model.type)
    fitted = fit(prepare(config), run_dir=tmp_path / "run", environment=environment)
    assert fitted.result.epochs_run == 3 and len(fitted.result.history) == 3
    assert {"loss", "accuracy", "roc_auc"} <= set(fitted.metrics)
    assert fitted.outputs.shape == (fitted.prepared.splits.sizes()["test"],)
    assert not home.exists()  # no run, no version, no store folder


def test_a_trial_records_its_run_but_registers_no_version(table_csv, tiny_config, tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = tiny_config(tmp_path / "job.yaml", table_csv(tmp_path / "data.csv"))
    trial = api.train(config, home=home, progress="silent", register=False)
    assert trial.model is None and trial.package is None and trial.report is not None
    store = Store(home)
    assert store.get_run(trial.run_id).status == "finished" and store.list_models() == []
    assert [row["epoch"] for row in store.epoch_history(trial.run_id)] == [1, 2, 3]


def test_a_callback_stops_a_run_with_its_own_status(table_csv, tiny_config, tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = tiny_config(tmp_path / "job.yaml", table_csv(tmp_path / "data.csv"))

    def prune(epoch: int, metrics: dict[str, float]) -> None:
        if epoch == 1:
            raise StopTraining("pruned", f"val_loss {metrics['val_loss']:.3f} after epoch 2")

    with pytest.raises(StopTraining):
        api.train(config, home=home, progress="silent", callbacks=[Callback(on_epoch_end=prune)])
    (run,) = Store(home).list_runs()
    assert run.status == "pruned" and run.error.startswith("val_loss") and Store(home).list_models() == []
