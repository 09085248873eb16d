"""Reports in a real browser: headless Chromium (Debian's `chromium`) driven over the DevTools protocol.

Each page must load with no network request (only file: and data: URLs), no console error, no exception and no
dialog; every plot must decode; the numbers the browser shows must equal `luodi evaluate --json`; a screenshot is
taken. Skipped only when no Chromium is installed (`make browser` installs it on Debian as root).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

CHROMIUM = next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
         "--disable-extensions", "--remote-debugging-port=0"]


class Browser:
    """One Chromium process and a DevTools session on its first page; events are kept per page load."""

    def __init__(self, profile: Path):
        import websocket

        assert CHROMIUM is not None
        self.process = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.is_file() or not port_file.read_text().strip():
            assert self.process.poll() is None, "chromium exited at start"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as response:
            targets = json.loads(response.read())
        page = next(target for target in targets if target["type"] == "page")
        self.socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]  # type: ignore[no-any-return]
            self.events.append(message)

    def wait_for(self, event: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(message.get("method") == event for message in self.events):
            assert time.monotonic() < deadline, f"no {event} within {timeout} s"
            self.socket.settimeout(max(0.1, deadline - time.monotonic()))
            self.events.append(json.loads(self.socket.recv()))

    def load(self, path: Path) -> None:
        self.visit(path.resolve().as_uri())

    def visit(self, url: str) -> None:
        """Open `url` (a file: or http: URL) and wait for its load event; events are kept from here on."""
        self.events.clear()
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")
        self.evaluate("1")  # drains events sent before the load finished

    def click(self, selector: str) -> None:
        """Click the element `selector` finds, as a person would, and wait for the page it leads to."""
        self.events.clear()
        assert self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                             "if (!e) return false; e.click(); return true; })()"), f"nothing matches {selector}"
        self.wait_for("Page.loadEventFired")
        self.evaluate("1")

    def evaluate(self, expression: str, await_promise: bool = False) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=await_promise)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def problems(self, allowed: tuple[str, ...] = ("file:", "data:")) -> list[str]:
        """Network requests to URLs not starting with one of `allowed`, console errors, exceptions, log errors,
        dialogs."""
        found = []
        for message in self.events:
            method, params = message.get("method"), message.get("params", {})
            if method == "Network.requestWillBeSent":
                url = params["request"]["url"]
                if not url.startswith(allowed):
                    found.append(f"network request: {url[:120]}")
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert", "warning"):
                found.append(f"console {params['type']}: {params['args']}")
            elif method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails']}")
            elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
                found.append(f"log {params['entry']['level']}: {params['entry']['text']}")
            elif method == "Page.javascriptDialogOpening":
                found.append(f"dialog: {params['message']}")
        return found

    def close(self) -> None:
        self.socket.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (on Debian: `make browser`, or apt-get install chromium)")
    session = Browser(tmp_path_factory.mktemp("chromium-profile"))
    try:
        for domain in ("Page", "Network", "Runtime", "Log"):
            session.call(f"{domain}.enable")
        session.call("Emulation.setDeviceMetricsOverride", width=1280, height=1000, deviceScaleFactor=1, mobile=False)
        yield session
    finally:
        session.close()


def screenshot(browser: Browser, path: Path) -> None:
    """A PNG of the page's top; it must be a real picture (not one flat colour)."""
    import numpy as np
    from matplotlib.image import imread

    png = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    path.write_bytes(png)
    pixels = imread(path)
    assert pixels.shape[:2] == (1000, 1280) and float(np.std(pixels)) > 0.05


def check_page(browser: Browser, path: Path) -> None:
    browser.load(path)
    assert browser.problems() == []
    images = browser.evaluate("[...document.images].map(i => [i.alt, i.complete && i.naturalWidth > 0])")
    assert images and all(ok for _, ok in images), images
    assert browser.evaluate("document.querySelectorAll('script').length") == 1  # the JSON block only


def test_evaluation_report_in_chromium(browser: Browser, trained_package: Path, table_csv: Any,
                                      tmp_path: Path) -> None:
    data = table_csv(tmp_path / "holdout.csv", rows=120, seed=5)
    report = tmp_path / "report.html"
    env = {**os.environ, "LUODI_HOME": str(tmp_path / "home"), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", "luodi.cli", "evaluate", str(trained_package), "--data", str(data),
                           "--report", str(report), "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    check_page(browser, report)
    shown = browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#metrics td[data-name]')]"
        ".map(td => [td.dataset.name, [JSON.parse(td.dataset.value), td.innerText]]))")
    assert {name: value for name, (value, _) in shown.items()} == printed["metrics"]
    assert all(text == f"{printed['metrics'][name]:.4f}" for name, (_, text) in shown.items())
    block = browser.evaluate("JSON.parse(document.getElementById('luodi-data').textContent)")
    assert block["metrics"] == printed["metrics"]
    assert {key: block[key] for key in printed["details"]} == printed["details"]
    positive = printed["details"]["classification"]["positive_class"]
    text = browser.evaluate("document.body.innerText")
    assert f"Positive class: {positive}. precision, recall, f1 and roc_auc" in text  # named where people read
    assert browser.evaluate("document.querySelectorAll('#calibration tbody tr').length") == len(
        printed["details"]["classification"]["calibration"]["bins"])
    screenshot(browser, tmp_path / "report.png")


def test_training_report_and_hostile_names_in_chromium(browser: Browser, trained_package: Path,
                                                       tmp_path: Path) -> None:
    check_page(browser, trained_package / "report.html")
    import numpy as np
    import pandas as pd

    import luodi.api as api

    rng = np.random.default_rng(0)
    value = rng.normal(0, 1, 150)
    pd.DataFrame({"<script>alert(1)</script>": value, "kind": rng.choice(["<img src=x onerror=alert(2)>", "b"], 150),
                  "label": np.where(value > 0, "</script><script>alert(3)</script>", "ok")}
                 ).to_csv(tmp_path / "hostile.csv", index=False)
    config = {"name": "hostile", "data": {"train": str(tmp_path / "hostile.csv")},
              "target": {"name": "label", "task": "binary"},
              "input_features": [{"name": "<script>alert(1)</script>", "type": "numeric"},
                                 {"name": "kind", "type": "category"}],
              "model": {"hidden_sizes": [4]}, "trainer": {"epochs": 1}, "runtime": {"threads": 1}}
    result = api.train(config, home=tmp_path / "home", progress="silent")
    check_page(browser, Path(result.report))
    assert "<script>alert(1)</script>" in browser.evaluate("document.body.innerText")  # shown, as text
    screenshot(browser, tmp_path / "hostile.png")


def test_the_checks_catch_a_bad_page(browser: Browser, tmp_path: Path) -> None:
    """The same checks on a page that fetches, logs an error and throws: each one is reported."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><img src='http://127.0.0.1:9/x.png' alt='remote'>"
                   "<script>console.error('broken'); throw new Error('boom');</script></body></html>")
    browser.load(bad)
    found = "\n".join(browser.problems())
    assert "network request: http://127.0.0.1:9/x.png" in found
    assert "console error" in found and "boom" in found
