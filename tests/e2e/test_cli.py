"""The real `luodi` executable end to end: init -> train -> evaluate -> predict -> runs -> models."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.e2e

# Loss trajectory of the tiny config below, recorded on CPU (torch 2.13, 1 thread). A change here means
# training changed: data order, initialization, loss, optimizer or schedule. Re-record only on purpose.
GOLDEN_TRAIN_LOSS = [0.647795, 0.636776, 0.620000]
GOLDEN_VAL_LOSS = [0.639434, 0.624753, 0.611035]

TINY = ["--set", "model.hidden_sizes=[8]", "--set", "trainer.epochs=3", "--set", "trainer.batch_size=32",
        "--set", "runtime.threads=1", "--set", "trainer.scheduler.type=none",
        "--set", "trainer.scheduler.warmup_steps=0", "--set", "trainer.optimizer.lr=0.001"]  # as recorded


def test_golden_loss_trajectory(luodi, churn: dict[str, Path]) -> None:
    assert luodi("init", "--data", "churn.csv", "--target", "churned").code == 0
    trained = luodi("train", "luodi.yaml", *TINY, "--json")
    assert trained.code == 0, trained.stderr
    history = luodi("runs", "show", trained.json()["run_id"], "--json").json()["history"]
    assert [h["train_loss"] for h in history] == pytest.approx(GOLDEN_TRAIN_LOSS, abs=1e-5)
    assert [h["val_loss"] for h in history] == pytest.approx(GOLDEN_VAL_LOSS, abs=1e-5)


def test_lifecycle_through_the_cli(luodi, churn: dict[str, Path], tmp_path: Path) -> None:
    init = luodi("init", "--data", "churn.csv", "--target", "churned", "--json")
    assert init.code == 0, init.stderr
    assert init.json()["task"] == "binary"
    assert "customer_id" in init.json()["dropped"]
    assert luodi("init", "--data", "churn.csv", "--target", "churned").code == 2  # refuses to overwrite

    trained = luodi("train", "luodi.yaml", "--set", "trainer.epochs=5", "--json")
    assert trained.code == 0, trained.stderr
    result = trained.json()
    assert {"run_id", "model", "package", "metrics"} <= set(result)
    assert result["model"] == {"name": "churn", "version": 1}
    assert Path(result["package"], "package.json").is_file()
    assert 0.5 < result["metrics"]["accuracy"] <= 1.0

    evaluated = luodi("evaluate", "churn@latest", "--data", "holdout.csv", "--json")
    assert evaluated.code == 0, evaluated.stderr
    assert set(evaluated.json()["metrics"]) >= {"accuracy", "f1_macro", "roc_auc", "log_loss"}

    predicted = luodi("predict", "churn@latest", "--data", "new.csv", "--out", "scored.csv")
    assert predicted.code == 0, predicted.stderr
    scored = pd.read_csv(tmp_path / "scored.csv")
    assert len(scored) == 100
    assert {"customer_id", "churned_prediction", "churned_probability_yes", "churned_probability_no"} <= set(scored)
    assert scored["churned_probability_yes"].add(scored["churned_probability_no"]).round(5).eq(1).all()
    for suffix in ("parquet", "jsonl"):
        assert luodi("predict", "churn/1", "--data", "new.csv", "--out", f"scored.{suffix}").code == 0
    assert len(pd.read_parquet(tmp_path / "scored.parquet")) == 100

    runs = luodi("runs", "ls", "--json").json()
    assert [run["status"] for run in runs] == ["finished"]
    assert luodi("runs", "show", result["run_id"][:15], "--json").json()["model_version"] == 1

    assert luodi("models", "promote", "churn", "1", "production", "--reason", "first model").code == 0
    nothing_before = luodi("models", "rollback", "churn", "production", "--reason", "oops")
    assert nothing_before.code == 2 and "no earlier version" in nothing_before.stderr
    models = luodi("models", "ls", "--json").json()
    assert models[0]["aliases"] == {"production": 1}
    shown = luodi("models", "show", "churn@production", "--json").json()
    assert shown[0]["version"] == 1 and "production" in shown[0]["aliases"]
    events = luodi("models", "history", "churn", "--json").json()
    assert events[0]["detail"] == {"alias": "production", "from": None, "to": 1, "reason": "first model"}
    human = luodi("models", "ls")
    assert "production" in human.stdout


@pytest.mark.parametrize("verb", ["init", "train", "tune", "evaluate", "predict", "generate", "chat", "embed",
                                  "import-gguf", "explain", "compare", "quickstart", "serve", "monitor", "optimize",
                                  "export", "runs ls", "feedback", "retrain", "runs show", "models ls", "models show",
                                  "models promote", "models rollback", "models history", "models merge",
                                  "models quantize", "ui"])
def test_help_renders(luodi, verb: str) -> None:
    result = luodi(*verb.split(), "--help")
    assert result.code == 0, result.stderr
    assert "Usage" in result.stdout
    assert "<bool>" not in result.stdout  # flags take no value


def test_no_arguments_shows_help(luodi) -> None:
    result = luodi()
    assert "init" in result.stdout + result.stderr
