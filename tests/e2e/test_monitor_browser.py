"""The monitoring page in headless Chromium: made by `luodi monitor` from a real prediction log, it loads with no
network request, no console error and no script but the JSON block, and every plot decodes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_report_browser import browser, check_page, screenshot

from luodi.serve.model import Reference
from luodi.serve.server import background
from luodi.serve.settings import make_config

pytestmark = pytest.mark.e2e
__all__ = ["browser"]  # the fixture, imported for this module's tests


def test_monitor_page_in_chromium(browser: Any, trained_package: Path, tmp_path: Path) -> None:
    import shutil

    import httpx

    home = tmp_path / "store"
    shutil.copytree(trained_package.parents[2], home)
    records = [{"size": 0.1 * (index % 40) - 2, "age": 20 + index % 50, "income": None if index % 9 == 0 else
                40.0 + index % 30, "color": ["red", "green", "blue", "<b>new</b>"][index % 4]} for index in range(200)]
    config = make_config(port=0, reload_interval_s=0, log_flush_s=0.2)
    with background([Reference("tiny", home)], config, home) as running, \
            httpx.Client(base_url=running.url, timeout=30) as client:
        for start in range(0, len(records), 20):
            assert client.post("/v1/models/tiny/predict", json={"records": records[start:start + 20]}).status_code \
                == 200
    page = tmp_path / "monitor.html"
    env = {**os.environ, "LUODI_HOME": str(home), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", "luodi.cli", "monitor", "tiny", "--out", str(page)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    check_page(browser, page)
    block = browser.evaluate("JSON.parse(document.getElementById('luodi-data').textContent)")
    assert set(block["features"]) == {"size", "age", "income", "color"}
    shown = browser.evaluate("[...document.querySelectorAll('#drift tbody tr')].map(tr => tr.cells[0].innerText)")
    assert "color" in shown and "output prediction" in shown
    screenshot(browser, tmp_path / "monitor.png")
