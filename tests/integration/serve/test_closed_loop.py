"""The closed loop end to end through the CLI and a real server: serve `loop@production` -> drifted traffic (the
`size` feature shifted, and in the new region the label follows `color` instead) -> `luodi monitor` flags it ->
`luodi feedback` -> `luodi retrain` with a margin it cannot meet keeps the champion -> `luodi monitor
--retrain-if-drift` promotes the challenger -> the server reloads and answers from the new version. A retrain
while another holds the lock, and one with nothing to learn from, are no-ops (exit 0)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from luodi.jobs.retrain import retrain_lock
from luodi.store import Store


def luodi(home: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LUODI_HOME": str(home), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "luodi.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def drifted_rows(write_table: Callable[..., Path], folder: Path, count: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of the training distribution with `size` moved by +3; their true label is now 'yes' exactly for red."""
    frame = pd.read_csv(write_table(folder / "drifted.csv", rows=count, seed=21)).drop(columns="label")
    frame["size"] += 3.0
    truth = np.where(frame["color"] == "red", "yes", "no").tolist()
    records = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    return records, truth  # type: ignore[return-value]


def wait_for_version(client: Any, version: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.get("/v1/models/loop").json()["version"] == version:
            return
        time.sleep(0.2)
    raise AssertionError(f"the server did not reload version {version}")


@pytest.mark.slow  # three trainings and a dozen CLI processes (a few minutes on 2 busy cores)
def test_drift_feedback_retrain_promote_reload(serve: Callable[..., Any], store_home: Path, tmp_path: Path,
                                               table_csv: Callable[..., Path],
                                               tiny_config: Callable[..., Path]) -> None:
    config = tiny_config(tmp_path / "loop.yaml", table_csv(tmp_path / "train.csv", rows=600), name="loop", epochs=15)
    trained = luodi(store_home, "train", str(config), "--json", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert luodi(store_home, "models", "promote", "loop", "1", "production", cwd=tmp_path).returncode == 0

    records, truth = drifted_rows(table_csv, tmp_path, 400)
    labels = []
    with serve("loop@production", reload_interval_s=0.3) as server:
        client = server.client
        for start in range(0, len(records), 40):
            answer = client.post("/v1/models/loop/predict", json={"records": records[start:start + 40]})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["version"] == 1
            labels += [{"request_id": body["request_id"], "row": row, "target": truth[start + row]}
                       for row in range(len(body["predictions"]))]
        time.sleep(0.6)  # the log flushes every 0.2 s

        flagged = luodi(store_home, "monitor", "loop@production", "--json", "--no-report", cwd=tmp_path)
        assert flagged.returncode == 0, flagged.stderr
        assert "size" in json.loads(flagged.stdout)["drifted"]

        pd.DataFrame(labels).to_csv(tmp_path / "labels.csv", index=False)
        given = luodi(store_home, "feedback", "loop", "--data", str(tmp_path / "labels.csv"), cwd=tmp_path)
        assert given.returncode == 0, given.stderr
        live = json.loads(luodi(store_home, "monitor", "loop@production", "--json", "--no-report",
                                cwd=tmp_path).stdout)["live"]
        assert live["labelled_rows"] == 400 and live["metrics"]["accuracy"] < 0.7, live  # the old rule fails here

        # a margin no challenger can meet: trained and scored, recorded, not promoted
        kept = luodi(store_home, "retrain", "loop", "--margin", "1.0", "--metric", "accuracy", "--json", cwd=tmp_path)
        assert kept.returncode == 0, kept.stderr
        refused = json.loads(kept.stdout)
        assert refused["promoted"] is False and refused["challenger"]["version"] == 2, refused
        assert "does not beat the champion's" in refused["reason"]
        assert Store(store_home).resolve("loop@production").version == 1

        with retrain_lock(store_home, "loop") as mine:  # another retrain is running: this one steps aside
            assert mine
            busy = luodi(store_home, "monitor", "loop@production", "--retrain-if-drift", "--json", "--no-report",
                         cwd=tmp_path)
        assert busy.returncode == 0, busy.stderr
        assert json.loads(busy.stdout)["retrain"]["skipped"] == "another retrain of loop is running"

        looped = luodi(store_home, "monitor", "loop@production", "--retrain-if-drift", "--json", "--no-report",
                       cwd=tmp_path)
        assert looped.returncode == 0, looped.stderr
        decision = json.loads(looped.stdout)["retrain"]
        assert decision["promoted"] is True, decision
        assert decision["challenger"]["version"] == 3 and decision["holdout_rows"] == 120
        champion, challenger = decision["champion"]["metrics"], decision["challenger"]["metrics"]
        assert challenger["accuracy"] > champion["accuracy"] + 0.01  # the same 120 fresh rows for both

        wait_for_version(client, 3)  # hot reload: the alias moved
        after = client.post("/v1/models/loop/predict", json={"records": records[:1]})
        assert after.status_code == 200 and after.json()["version"] == 3

    again = luodi(store_home, "retrain", "loop", "--json", cwd=tmp_path)  # v3 has answered nothing yet
    assert again.returncode == 0 and json.loads(again.stdout)["skipped"], again.stdout
    history = json.loads(luodi(store_home, "models", "history", "loop", "--json", cwd=tmp_path).stdout)
    retrains = [event for event in history if event["kind"] == "retrain"]
    assert [event["detail"]["promoted"] for event in retrains] == [True, False]  # newest first
    assert retrains[0]["subject"] == "loop@production"
    assert retrains[0]["detail"]["champion"]["metrics"] == champion
    assert retrains[0]["detail"]["challenger"]["metrics"] == challenger
    words = luodi(store_home, "models", "history", "loop", cwd=tmp_path).stdout
    assert "promoted to @production" in words and "not promoted" in words
