"""`luodi serve` as a real process: bad input exits 2, SIGTERM drains in-flight work and exits 0, `--workers 2`
counts metrics across workers and survives kill -9 of a worker. Every server listens on 127.0.0.1 only."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil
import pytest
import yaml

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LUODI = [sys.executable, "-m", "luodi.cli"]
RECORD = {"size": 0.3, "age": 41, "income": 52.5, "color": "red"}


@pytest.fixture
def home(trained_package: Path, tmp_path: Path) -> Path:
    target = tmp_path / "store"
    shutil.copytree(trained_package.parents[2], target)
    return target


@contextmanager
def luodi_serve(home: Path, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Start `luodi serve ... --port 0`, wait for /readyz, yield (process, url); kill it if the test did not stop it."""
    env = {**os.environ, "LUODI_HOME": str(home), "PYTHONWARNINGS": "ignore"}
    log = home.parent / "serve.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen([*LUODI, "serve", *args, "--port", "0", "--reload-interval", "0"], env=env,
                                   stderr=stderr, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        url = None
        while url is None:
            found = re.search(r"on (http://127\.0\.0\.1:\d+)", log.read_text())
            url = found.group(1) if found else None
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def test_bad_references_and_settings_exit_2(luodi, home: Path) -> None:
    cases = [
        (["serve", "nope@production", "--home", str(home)], "model 'nope'"),
        (["serve", "tiny", "--home", str(home), "--host", "0.0.0.0"], "refusing to bind 0.0.0.0"),
        (["serve", "tiny", "--home", str(home), "--backend", "onnx"], "needs a model.onnx"),
    ]
    for args, message in cases:
        result = luodi(*args)
        assert result.code == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr


def slow_package(folder: Path) -> Path:
    """A wide MLP (32 -> 3 x 2048): a 1024-row request keeps one thread busy for a good fraction of a second."""
    import luodi.api as api

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(128, 32)).round(3), columns=[f"x{i}" for i in range(32)])
    frame["label"] = np.where(frame["x0"] > 0, "yes", "no")
    frame.to_csv(folder / "wide.csv", index=False)
    config = {"name": "wide", "data": {"train": str(folder / "wide.csv")},
              "target": {"name": "label", "task": "binary"},
              "input_features": [{"name": f"x{i}", "type": "numeric"} for i in range(32)],
              "model": {"hidden_sizes": [2048, 2048, 2048], "dropout": 0.0},
              "trainer": {"epochs": 1, "batch_size": 64}, "runtime": {"threads": 1}}
    (folder / "wide.yaml").write_text(yaml.safe_dump(config))
    api.train(folder / "wide.yaml", home=folder / "store", progress="silent")
    return folder / "store"


def test_sigterm_drains_in_flight_requests_and_exits_0(tmp_path: Path) -> None:
    home = slow_package(tmp_path)
    rows = [{f"x{i}": float(v) for i, v in enumerate(row)} for row in np.random.default_rng(1).normal(size=(1024, 32))]
    flags = ["--max-batch-size", "1024", "--max-queue-rows", "8192", "--max-body-bytes", "4000000",
             "--drain-timeout", "30"]
    with luodi_serve(home, "wide", *flags) as (process, url):
        results: list[int] = []

        def call() -> None:
            response = httpx.post(f"{url}/v1/models/wide/predict", json={"records": rows}, timeout=60)
            results.append(response.status_code)

        callers = [threading.Thread(target=call) for _ in range(4)]
        for caller in callers:
            caller.start()
        time.sleep(0.5)  # all four are in the server: one running, three queued
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx.TransportError):  # the listener is closed: new connections are refused
            httpx.get(f"{url}/livez", timeout=2)
        for caller in callers:
            caller.join(timeout=60)
        assert process.wait(timeout=40) == 0
        assert time.monotonic() - started < 30
    assert results == [200] * 4


def worker_pids(process: subprocess.Popen[bytes]) -> set[int]:
    return {child.pid for child in psutil.Process(process.pid).children() if "luodi.serve.server" in " ".join(
        child.cmdline())}


def test_two_workers_share_metrics_and_survive_kill_9(home: Path) -> None:
    with luodi_serve(home, "tiny", "--workers", "2") as (process, url):
        with httpx.Client(base_url=url, timeout=10) as client:
            for _ in range(60):
                assert client.post("/v1/models/tiny/predict", json={"records": [RECORD]}).status_code == 200
        # fresh connections spread over both workers; /metrics in either counts all of them
        for _ in range(40):
            assert httpx.post(f"{url}/v1/models/tiny/predict", json={"records": [RECORD]}).status_code == 200
        metrics = httpx.get(f"{url}/metrics").text
        assert 'luodi_requests_total{code="200",endpoint="v1_predict",model="tiny"} 100.0' in metrics
        assert re.search(r'luodi_model_info\{backend="torch",model="tiny",version="1"\} 1\.0', metrics)

        before = worker_pids(process)
        assert len(before) == 2
        victim = sorted(before)[0]
        failures, successes = 0, 0
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        while time.monotonic() - killed_at < 5:
            try:
                status = httpx.post(f"{url}/v1/models/tiny/predict", json={"records": [RECORD]}, timeout=5).status_code
                successes += status == 200
                failures += status != 200
            except httpx.TransportError:
                failures += 1
            time.sleep(0.02)
        after = worker_pids(process)
        assert victim not in after and len(after) == 2  # the supervisor started a new worker
        assert successes > 30 and failures <= 2, (successes, failures)
        for _ in range(20):  # the new worker serves too (and the other one never stopped)
            assert httpx.post(f"{url}/v1/models/tiny/predict", json={"records": [RECORD]}).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=40) == 0
