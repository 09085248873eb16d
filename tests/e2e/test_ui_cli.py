"""`luodi ui` as a real process: a public bind without keys exits 2, the pages answer with the keys from the
environment, and SIGTERM stops it with exit 0."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.e2e]

READ_KEY = "read-key-for-the-cli-test-0123"


def test_a_public_bind_without_keys_exits_2(luodi, tmp_path: Path) -> None:
    result = luodi("ui", "--host", "0.0.0.0", "--home", str(tmp_path / "home"))
    assert result.code == 2 and "refusing to bind 0.0.0.0" in result.stderr


def test_luodi_ui_serves_the_store_and_stops_on_sigterm(trained_store: Path, tmp_path: Path) -> None:
    home = trained_store
    log = tmp_path / "ui.log"
    env = {**os.environ, "LUODI_HOME": str(home), "LUODI_API_KEYS": READ_KEY}
    with open(log, "wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "luodi.cli", "ui", "--port", "0"], env=env, stderr=stderr,
                                   stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        found = None
        while found is None:
            found = re.search(r"on (http://127\.0\.0\.1:\d+) \(keys required\)", log.read_text())
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        url = found.group(1)
        assert httpx.get(f"{url}/runs", timeout=30).status_code == 401
        page = httpx.get(f"{url}/models/tiny", headers={"Authorization": f"Bearer {READ_KEY}"}, timeout=30)
        assert page.status_code == 200 and 'id="versions-table"' in page.text
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
