"""`luodi ui` in headless Chromium over a real store: the session's tiny model served by a real server (requests and
delayed labels over HTTP), a three-trial `luodi tune` study, then the real `luodi ui` process with a read key and an
admin key. A person's path is clicked through: sign in, runs, two runs compared, a model, an alias promoted with a
reason (the store's alias and audit trail change), the version, its monitoring and the study. Every page loads with
no console error and no request outside the UI's own 127.0.0.1 address; a read key sees every page but is refused
the promotion, and nothing is served without a key."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml
from test_report_browser import Browser, browser, screenshot  # noqa: F401 - the fixture is used by name

import luodi.api as api
from luodi.jobs.tune import TuneResult
from luodi.store import Store

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

READ_KEY, ADMIN_KEY = "read-key-for-the-ui-test", "admin-key-for-the-ui-test"
LABELLED = 50  # rows given a delayed label; every fifth contradicts the prediction


@dataclass
class Demo:
    home: Path
    url: str
    tuned: TuneResult


def serve_traffic(home: Path, rows: list[dict[str, Any]]) -> None:
    """tiny/1 behind a real server: `rows` in requests of 20, then labels for the first LABELLED rows."""
    from luodi.serve.model import Reference
    from luodi.serve.server import background
    from luodi.serve.settings import make_config

    answers: list[tuple[str, int, str]] = []
    config = make_config(port=0, reload_interval_s=0, log_flush_s=0.2)
    with background([Reference("tiny", home)], config, home) as running, \
            httpx.Client(base_url=running.url, timeout=30) as client:
        for start in range(0, len(rows), 20):
            response = client.post("/v1/models/tiny/predict", json={"records": rows[start:start + 20]})
            assert response.status_code == 200, response.text
            body = response.json()
            answers += [(body["request_id"], row, item["prediction"]) for row, item in enumerate(body["predictions"])]
        labels = [{"request_id": rid, "row": row, "target": label if index % 5 else ("no" if label == "yes" else "yes")}
                  for index, (rid, row, label) in enumerate(answers[:LABELLED])]
        assert client.post("/v1/models/tiny/feedback", json={"feedback": labels}).status_code == 200


def start_ui(home: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The real `luodi ui` on a free port of 127.0.0.1 with one read and one admin key; its URL from its first line."""
    env = {**os.environ, "LUODI_HOME": str(home), "LUODI_API_KEYS": READ_KEY, "LUODI_ADMIN_KEYS": ADMIN_KEY,
           "PYTHONWARNINGS": "ignore"}
    with log.open("wb") as stderr:  # the child keeps its own copy of the file
        process = subprocess.Popen([sys.executable, "-m", "luodi.cli", "ui", "--port", "0"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 120
    while (found := re.search(r"on (http://127\.0\.0\.1:\d+)", log.read_text(errors="replace"))) is None:
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "luodi ui did not start"
        time.sleep(0.1)
    return process, found.group(1)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, trained_package: Path, table_csv: Callable[..., Path],
         tiny_config: Callable[..., Path]) -> Iterator[Demo]:
    folder = tmp_path_factory.mktemp("ui")
    home = folder / "store"
    shutil.copytree(trained_package.parents[2], home)
    frame = pd.read_csv(table_csv(folder / "traffic.csv", rows=120, seed=3)).drop(columns="label")
    serve_traffic(home, frame.astype(object).where(frame.notna(), None).to_dict(orient="records"))
    config = tiny_config(folder / "tune.yaml", table_csv(folder / "data.csv", rows=240), epochs=3)
    raw = yaml.safe_load(config.read_text())
    raw["search"] = {"trainer.optimizer.lr": {"low": 1e-4, "high": 3e-2, "log": True},
                     "model.hidden_sizes": {"choices": [[4], [8]]}}
    config.write_text(yaml.safe_dump(raw))
    tuned = api.tune(config, 3, home=home, progress="silent")  # its best trial becomes tiny/2
    process, url = start_ui(home, folder / "ui.log")
    try:
        yield Demo(home, url, tuned)
    finally:
        process.terminate()
        assert process.wait(timeout=60) == 0, (folder / "ui.log").read_text()


def clean(browser: Browser, demo: Demo) -> None:  # noqa: F811
    """No console error, exception or dialog, and no request but to the UI itself (and data: images)."""
    assert browser.problems(allowed=(demo.url + "/", "data:")) == []


def sign_in(browser: Browser, demo: Demo, key: str) -> None:  # noqa: F811
    browser.call("Network.clearBrowserCookies")
    browser.visit(demo.url + "/login?next=/runs")
    clean(browser, demo)
    browser.evaluate(f"document.querySelector('input[name=key]').value = {key!r}")
    browser.click("main form button[type=submit]")
    assert browser.evaluate("location.pathname") == "/runs"


def texts(browser: Browser, selector: str) -> list[str]:  # noqa: F811
    return browser.evaluate(f"[...document.querySelectorAll({selector!r})].map(e => e.innerText.trim())")  # type: ignore[no-any-return]


def test_click_through_runs_compare_model_promote_monitoring_and_study(browser: Browser, demo: Demo,  # noqa: F811
                                                                       tmp_path: Path) -> None:
    store = Store(demo.home)
    sign_in(browser, demo, ADMIN_KEY)
    clean(browser, demo)
    runs = browser.evaluate("[...document.querySelectorAll('#runs-table tbody tr')].map(tr => tr.dataset.run)")
    assert sorted(runs) == sorted(run.id for run in store.list_runs())  # the session's run and three trials
    screenshot(browser, tmp_path / "runs.png")

    chosen = runs[:2]
    browser.evaluate("[...document.querySelectorAll('#runs-table input[name=run]')].slice(0, 2)"
                     ".forEach(box => { box.checked = true; })")
    browser.click("#compare-form button[type=submit]")
    clean(browser, demo)
    assert browser.evaluate("location.pathname") == "/compare"
    assert [text.split()[0] for text in texts(browser, "#compare-runs thead th a")] == chosen
    assert browser.evaluate("document.querySelectorAll('#compare-charts svg').length") >= 1

    browser.click("nav a[href='/models']")
    browser.click("#models-table a[href='/models/tiny']")
    clean(browser, demo)
    assert [int(text) for text in texts(browser, "#versions-table tbody tr td:first-child")] == [2, 1]
    assert browser.evaluate("document.getElementById('promote-form') !== null")
    reason = "canary held for a day <b>no alerts</b>"
    browser.evaluate(f"""(() => {{
        const form = document.getElementById('promote-form');
        form.querySelector('select[name=version]').value = '1';
        form.querySelector('input[name=alias]').value = 'production';
        form.querySelector('input[name=reason]').value = {reason!r};
    }})()""")
    browser.click("#promote-form button[type=submit]")
    clean(browser, demo)
    assert browser.evaluate("document.getElementById('moved').innerText") == "tiny@production → version 1"
    assert "tiny@production → version 1" in texts(browser, "#aliases li")
    assert reason in texts(browser, "#events-table tbody tr")[0]  # the newest event, the reason shown as text
    assert store.resolve("tiny@production").version == 1
    moved = next(event for event in store.model_events("tiny") if event["kind"] == "alias.move")
    assert moved["detail"]["to"] == 1 and moved["detail"]["reason"] == reason
    screenshot(browser, tmp_path / "model.png")

    browser.click("#versions-table a[href='/models/tiny/versions/1']")
    clean(browser, demo)
    assert "version 1" in browser.evaluate("document.querySelector('h1').innerText")
    screenshot(browser, tmp_path / "version.png")

    browser.click("a[href='/models/tiny/monitoring?version=1']")
    clean(browser, demo)
    shown = browser.evaluate("[...document.querySelectorAll('#drift-table tbody tr')].map(tr => tr.dataset.feature)")
    assert {"size", "age", "income", "color", "output prediction"} <= set(shown)
    assert browser.evaluate("document.getElementById('rows').innerText") == "120"
    assert browser.evaluate("document.getElementById('labelled').innerText") == str(LABELLED)
    accuracy = browser.evaluate("JSON.parse(document.querySelector('#live-metrics [data-name=accuracy]')"
                                ".dataset.value)")
    assert accuracy == pytest.approx(api.monitor("tiny/1", home=demo.home, out=None).live["metrics"]["accuracy"])
    assert browser.evaluate("document.querySelectorAll('#drift-charts svg').length") == len(shown)
    assert browser.evaluate("document.querySelectorAll('#live-chart svg, #traffic-charts svg').length") == 3
    screenshot(browser, tmp_path / "monitoring.png")

    browser.click("nav a[href='/studies']")
    clean(browser, demo)
    assert texts(browser, "#studies-table tbody td:first-child") == ["tiny"]
    browser.click("#studies-table a[href='/studies/tiny']")
    clean(browser, demo)
    images = browser.evaluate("[...document.images].map(i => [i.alt, i.complete && i.naturalWidth > 0])")
    assert images == [["optimization history", True], ["validation curves", True], ["parameter importances", True]]
    assert int(browser.evaluate("document.getElementById('best-number').innerText")) == demo.tuned.best["number"]
    values = browser.evaluate("[...document.querySelectorAll('#trials td.trial-value')]"
                              ".map(td => JSON.parse(td.dataset.value))")
    assert values == [trial["value"] for trial in demo.tuned.trials]
    assert texts(browser, "#best-model") == [f"tiny/{demo.tuned.model['version']}"]
    screenshot(browser, tmp_path / "study.png")


def test_a_read_key_sees_every_page_and_is_refused_the_promotion(browser: Browser, demo: Demo) -> None:  # noqa: F811
    store = Store(demo.home)
    before = store.model_events("tiny")
    sign_in(browser, demo, READ_KEY)
    for path in ("/runs", "/models", "/models/tiny", "/models/tiny/versions/2", "/models/tiny/monitoring",
                 "/studies", "/studies/tiny"):
        browser.visit(demo.url + path)
        clean(browser, demo)
        assert browser.evaluate("document.querySelector('h1').innerText") not in ("401", "403"), path
    browser.visit(demo.url + "/models/tiny")
    assert browser.evaluate("document.getElementById('promote-form') === null")
    status, page = browser.evaluate("""(async () => {
        const csrf = document.querySelector('input[name=csrf]').value;
        const body = new URLSearchParams({csrf, version: '2', alias: 'production', reason: 'not allowed'});
        const response = await fetch('/models/tiny/promote', {method: 'POST', body});
        return [response.status, await response.text()];
    })()""", await_promise=True)
    assert status == 403 and "needs an admin key" in page
    assert store.model_events("tiny") == before  # nothing moved, nothing recorded


def test_every_page_needs_a_key(demo: Demo) -> None:
    paths = ["/runs", "/compare?run=a&run=b", "/models", "/models/tiny", "/models/tiny/versions/1",
             "/models/tiny/monitoring", "/studies", "/studies/tiny"]
    with httpx.Client(base_url=demo.url, timeout=60) as client:
        for path in paths:
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401, path
        for path in paths[2:]:
            assert client.get(path, headers={"Authorization": f"Bearer {READ_KEY}"}).status_code == 200, path
        assert client.get("/studies/nothing", headers={"Authorization": f"Bearer {READ_KEY}"}).status_code == 404
        assert client.get("/models/nothing/monitoring",
                          headers={"Authorization": f"Bearer {READ_KEY}"}).status_code == 404
