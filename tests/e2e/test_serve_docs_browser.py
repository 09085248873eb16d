"""/docs and /redoc in headless Chromium with no internet: every asset comes from the server itself (issue 12).

The pages once loaded Swagger UI from a CDN and rendered blank offline. Any request to another host fails this test,
and the page must show the API's operations. Skipped, as the report's browser test is, when Chromium is absent.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from test_report_browser import Browser, browser  # noqa: F401 - the fixture is used by name

from luodi.serve.model import Reference
from luodi.serve.server import background
from luodi.serve.settings import make_config

pytestmark = pytest.mark.e2e


def wait_for_text(session: Browser, expression: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = session.evaluate(expression) or ""
        if text or time.monotonic() > deadline:
            return str(text)
        time.sleep(0.2)


def test_docs_and_redoc_render_offline(browser: Browser, trained_package: Path, tmp_path: Path) -> None:  # noqa: F811
    home = tmp_path / "store"
    shutil.copytree(trained_package.parents[2], home)
    config = make_config(port=0, reload_interval_s=0)
    with background([Reference("tiny", home)], config, home) as running:
        pages = {"/docs": "[...document.querySelectorAll('.opblock-summary-path')].map(e => e.textContent).join(' ')",
                 "/redoc": "[...document.querySelectorAll('[data-section-id] h2')].map(e => e.textContent).join(' ')"}
        for path, operations in pages.items():
            browser.events.clear()
            browser.call("Page.navigate", url=running.url + path)
            browser.wait_for("Page.loadEventFired")
            shown = wait_for_text(browser, operations)
            requested = {message["params"]["requestId"]: message["params"]["request"]["url"]
                         for message in browser.events if message.get("method") == "Network.requestWillBeSent"}
            blocked = {message["params"]["requestId"] for message in browser.events
                       if message.get("method") == "Network.loadingFailed"
                       and message["params"].get("blockedReason") == "csp"}
            left = [url for key, url in requested.items()
                    if not url.startswith((running.url + "/", "data:", f"blob:{running.url}/")) and key not in blocked]
            assert requested and left == [], left  # nothing reached another host: the page works offline
            failed = [message["params"] for message in browser.events if message.get("method") ==
                      "Network.loadingFailed" and message["params"]["requestId"] not in blocked]
            assert failed == [], failed
            assert "predict" in shown.lower(), (path, shown[:500])
