"""`luodi monitor` end to end: the session's tiny model (trained by the training job, so its package holds a
reference profile) served by a real server, normal then drifted traffic over HTTP, and the real CLI reading the
prediction log: the shifted feature is flagged and no other; errors exit 2 naming what is missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from serving_helpers import register_copy

from luodi.store import Store

LEGACY = Path(__file__).resolve().parents[2] / "assets" / "legacy"


def rows(write_table: Callable[..., Path], folder: Path, count: int, seed: int, shift: float = 0.0,
         ) -> list[dict[str, Any]]:
    """Rows of the training table's distribution (the `table_csv` fixture), `size` moved by `shift`; missing
    incomes as null."""
    frame = pd.read_csv(write_table(folder / f"rows-{seed}.csv", rows=count, seed=seed)).drop(columns="label")
    frame["size"] += shift
    records = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    assert not any(isinstance(value, float) and np.isnan(value) for record in records for value in record.values())
    return records  # type: ignore[no-any-return]


def send(client: Any, records: list[dict[str, Any]], model: str = "tiny") -> None:
    for start in range(0, len(records), 50):
        response = client.post(f"/v1/models/{model}/predict", json={"records": records[start:start + 50]})
        assert response.status_code == 200, response.text


def luodi(home: Path, *args: str, cwd: Path, verb: str = "monitor") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LUODI_HOME": str(home), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "luodi.cli", verb, *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # trains a model through the CLI and runs it four times (about a minute on 2 cores)
def test_drifted_traffic_is_flagged_on_the_shifted_feature(serve: Callable[..., Any], store_home: Path,
                                                           tmp_path: Path, table_csv: Callable[..., Path],
                                                           tiny_config: Callable[..., Path],
                                                           read_report: Callable[..., Any]) -> None:
    config = tiny_config(tmp_path / "watched.yaml", table_csv(tmp_path / "train.csv", rows=1000), name="watched",
                         epochs=15)
    trained = luodi(store_home, str(config), "--json", cwd=tmp_path, verb="train")
    assert trained.returncode == 0, trained.stderr
    with serve("watched") as server:
        send(server.client, rows(table_csv, tmp_path, 400, seed=11), "watched")
        time.sleep(0.3)
        middle = datetime.now(UTC).isoformat()
        time.sleep(0.3)
        send(server.client, rows(table_csv, tmp_path, 400, seed=12, shift=2.5), "watched")
    # the server's prediction log is flushed when it stops
    before = luodi(store_home, "watched", "--until", middle, "--json", "--no-report", cwd=tmp_path)
    assert before.returncode == 0, before.stderr
    normal = json.loads(before.stdout)
    assert normal["rows"] == 400 and normal["drifted"] == [], normal
    assert set(normal["features"]) == {"size", "age", "income", "color"}
    for name, feature in normal["features"].items():
        assert {"test", "score", "threshold", "drift"} <= set(feature), name
        assert feature["test"] == ("chi2" if name == "color" else "ks")

    after = luodi(store_home, "watched", "--since", middle, "--json", "--out", str(tmp_path / "monitor.html"),
                  cwd=tmp_path)
    assert after.returncode == 0, after.stderr
    drifted = json.loads(after.stdout)
    assert drifted["rows"] == 400
    features = drifted["features"]
    assert features["size"]["drift"] is True and features["size"]["score"] < features["size"]["threshold"]
    assert [name for name, feature in features.items() if feature["drift"]] == ["size"]
    assert drifted["outputs"]["prediction"]["drift"] is True, drifted["outputs"]  # bigger `size`: more "yes"

    page = read_report(tmp_path / "monitor.html")
    assert page.data["features"]["size"]["drift"] is True
    assert "size" in page.text and "Latency and throughput" in page.text
    assert all(src.startswith("data:image/svg+xml;base64,") for src in page.images().values())
    assert len(page.images()) >= 5

    table = luodi(store_home, "watched", "--since", middle, "--no-report", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    line = next(line for line in table.stdout.splitlines() if line.strip().startswith("│ size ") or
                line.strip().startswith("size "))
    assert "ks" in line and "yes" in line
    assert "drift in: size" in table.stdout


def test_errors_name_what_is_missing(serve: Callable[..., Any], store_home: Path, tmp_path: Path,
                                     table_csv: Callable[..., Path]) -> None:
    no_log = luodi(store_home, "tiny", "--json", cwd=tmp_path)
    assert no_log.returncode == 2 and "no prediction log for model 'tiny'" in no_log.stderr
    with serve("tiny") as server:
        send(server.client, rows(table_csv, tmp_path, 20, seed=3))
    bad = luodi(store_home, "tiny", "--since", "yesterday-ish", cwd=tmp_path)
    assert bad.returncode == 2 and "--since 'yesterday-ish'" in bad.stderr and "Traceback" not in bad.stderr
    empty = luodi(store_home, "tiny", "--since", "2020-01-01", "--until", "2020-01-02", cwd=tmp_path)
    assert empty.returncode == 2 and "no rows of tiny/1 between 2020-01-01" in empty.stderr
    register_copy(store_home)  # tiny/2: never served
    other = luodi(store_home, "tiny/2", cwd=tmp_path)
    assert other.returncode == 2 and "holds no rows of version 2 (it holds versions 1)" in other.stderr
    assert not (tmp_path / "monitor.html").exists()
    # From cron, a version that has answered nothing yet (just promoted) is nothing to check, not a failure.
    cron = luodi(store_home, "tiny/2", "--retrain-if-drift", "--json", cwd=tmp_path)
    assert cron.returncode == 0, cron.stderr
    skipped = json.loads(cron.stdout)
    assert "holds no rows of version 2" in skipped["skipped"] and skipped["retrain"] == {"skipped": "no traffic"}
    words = luodi(store_home, "tiny/2", "--retrain-if-drift", cwd=tmp_path)
    assert words.returncode == 0 and "nothing to check" in words.stdout and "skipped (no traffic)" in words.stdout


def test_a_package_without_a_profile_says_how_to_get_one(store_home: Path, tmp_path: Path) -> None:
    """Legacy packages (written before profiles) still load; monitor explains that a retrain brings a profile."""
    store = Store(store_home)
    staging = store.staging_dir()
    shutil.copytree(LEGACY / "binary", staging, dirs_exist_ok=True)
    store.register_model("legacy", staging, run_id=None, task="binary", metrics={})
    done = luodi(store_home, "legacy", cwd=tmp_path)
    assert done.returncode == 2
    assert "has no reference profile" in done.stderr and "luodi train" in done.stderr
