"""Screenshots of every page of `luodi ui` for docs/ui.md and the README, made from a real demo store.

    .venv/bin/python docs/ui/make_screenshots.py            # writes docs/ui/*.png (about 3 minutes on 2 cores)
    .venv/bin/python docs/ui/make_screenshots.py --keep /tmp/ui-demo   # keeps the demo store there (and reuses it)

The store is built the way users build one: two training runs and a six-trial `luodi tune` study on scikit-learn's
breast-cancer data (six of its columns), the first version served by a real `luodi serve` server for about a minute
of traffic whose second half is drifted, and delayed labels sent back. Then the real `luodi ui` starts with an admin
key and Debian's Chromium (the tests' DevTools harness, tests/e2e/test_report_browser.py) signs in, promotes
version 1 to `production` through the model page's form, and photographs each page.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))  # the Chromium harness of the browser tests

ADMIN_KEY = "demo-admin-key-0123456789"
FEATURES = ["mean_radius", "mean_texture", "mean_smoothness", "mean_concavity", "worst_area", "worst_symmetry"]
ROUNDS, ROWS_PER_ROUND, ROUND_S = 24, 16, 2.5  # traffic: a request of 16 rows every 2.5 s for a minute
WIDTH = 1280


def build_store(home: Path, folder: Path) -> dict[str, Any]:
    """Two runs, a study, version 1 served with drifted traffic in its second half and labels sent back."""
    import httpx
    import pandas as pd
    import yaml

    import luodi.api as api
    from luodi.quickstart import write_breast_cancer
    from luodi.serve.model import Reference
    from luodi.serve.server import background
    from luodi.serve.settings import make_config

    paths = write_breast_cancer(folder, traffic_fraction=0.35)
    config = {"name": "cancer", "description": "breast-cancer diagnosis from six cell measurements",
              "data": {"train": str(paths["train"])}, "target": {"name": "diagnosis", "task": "binary"},
              "input_features": [{"name": name, "type": "numeric"} for name in FEATURES],
              "model": {"hidden_sizes": [16]}, "trainer": {"epochs": 30, "seed": 7}, "runtime": {"threads": 1}}
    first = api.train(config, home=home, progress="silent")
    api.train({**config, "model": {"hidden_sizes": [32, 16]}, "trainer": {"epochs": 30, "seed": 8,
                                                                          "optimizer": {"lr": 0.003}}},
              home=home, progress="silent")
    tune_config = folder / "tune.yaml"
    tune_config.write_text(yaml.safe_dump({**config, "search": {
        "trainer.optimizer.lr": {"low": 1e-4, "high": 3e-2, "log": True},
        "model.hidden_sizes": {"choices": [[8], [16], [32, 16]]}, "model.dropout": {"low": 0.0, "high": 0.3}}}))
    tuned = api.tune(tune_config, 6, home=home, study="cancer-search", progress="silent")

    traffic = pd.read_csv(paths["traffic"])
    truth = traffic.pop("diagnosis").tolist()
    records = traffic[FEATURES].to_dict(orient="records")
    answers: list[tuple[str, int, str]] = []
    with background([Reference("cancer/1", home)], make_config(port=0, reload_interval_s=0, log_flush_s=0.5),
                    home) as running, httpx.Client(base_url=running.url, timeout=60) as client:
        for round_number in range(ROUNDS):
            start = round_number * ROWS_PER_ROUND % len(records)
            batch = [dict(record) for record in records[start:start + ROWS_PER_ROUND]]
            if round_number >= ROUNDS // 2:  # a new scanner: radii read 40% larger
                for record in batch:
                    record["mean_radius"] *= 1.4
            response = client.post("/v1/models/cancer/predict", json={"records": batch})
            response.raise_for_status()
            body = response.json()
            answers += [(body["request_id"], row, truth[start + row]) for row in range(len(batch))]
            time.sleep(ROUND_S)
        labels = [{"request_id": request_id, "row": row, "target": label} for request_id, row, label in answers]
        client.post("/v1/models/cancer/feedback", json={"feedback": labels}).raise_for_status()
    return {"first_run": first.run_id, "study": tuned.study}


def start_ui(home: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "LUODI_HOME": str(home), "LUODI_ADMIN_KEYS": ADMIN_KEY, "PYTHONWARNINGS": "ignore"}
    with log.open("wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "luodi.cli", "ui", "--port", "0"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 120
    while (found := re.search(r"on (http://127\.0\.0\.1:\d+)", log.read_text(errors="replace"))) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"luodi ui did not start:\n{log.read_text()}")
        time.sleep(0.1)
    return process, found.group(1)


def shoot(browser: Any, path: Path, height: int) -> None:
    """The page's top `height` pixels as a 256-colour PNG (a third of the size, the same picture to the eye)."""
    from PIL import Image

    browser.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=height, deviceScaleFactor=1, mobile=False)
    png = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(256, dither=Image.Dither.NONE)
    image.save(path, optimize=True)
    print(f"{path}: {path.stat().st_size // 1024} kB", file=sys.stderr)


def photograph(url: str, out: Path, made: dict[str, Any], profile: Path) -> None:
    from test_report_browser import Browser

    browser = Browser(profile)
    try:
        for domain in ("Page", "Network", "Runtime", "Log"):
            browser.call(f"{domain}.enable")
        browser.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=1000, deviceScaleFactor=1,
                     mobile=False)
        browser.visit(url + "/login?next=/runs")
        browser.evaluate(f"document.querySelector('input[name=key]').value = {ADMIN_KEY!r}")
        browser.click("main form button[type=submit]")
        pages: list[tuple[str, str, int]] = [("runs", "/runs", 760)]
        browser.visit(url + "/runs")
        runs = browser.evaluate("[...document.querySelectorAll('#runs-table tbody tr')].map(tr => tr.dataset.run)")
        pages += [("run", f"/runs/{made['first_run']}", 1000),
                  ("compare", f"/compare?run={runs[-1]}&run={runs[-2]}", 1000)]
        for name, path, height in pages:
            browser.visit(url + path)
            check(browser, url, path)
            shoot(browser, out / f"{name}.png", height)

        browser.visit(url + "/models/cancer")
        browser.evaluate("""(() => {
            const form = document.getElementById('promote-form');
            form.querySelector('select[name=version]').value = '1';
            form.querySelector('input[name=alias]').value = 'production';
            form.querySelector('input[name=reason]').value = 'held out AUC 0.99; canary clean for a day';
        })()""")
        browser.click("#promote-form button[type=submit]")
        check(browser, url, "/models/cancer (after promoting)")
        shoot(browser, out / "model.png", 900)
        for name, path, height in [("version", "/models/cancer/versions/1", 1000),
                                   ("study", f"/studies/{made['study']}", 1150),
                                   ("monitoring", "/models/cancer/monitoring", 1500)]:
            browser.visit(url + path)
            check(browser, url, path)
            shoot(browser, out / f"{name}.png", height)
    finally:
        browser.close()


def check(browser: Any, url: str, path: str) -> None:
    problems = browser.problems(allowed=(url + "/", "data:"))
    if problems:
        raise SystemExit(f"{path}: {problems}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="where the PNGs go")
    parser.add_argument("--keep", type=Path, help="build the demo store in this (new) folder and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        home, kept = folder / "store", folder / "made.json"
        if kept.is_file():  # a demo store kept by an earlier --keep run: photograph it again
            made = json.loads(kept.read_text())
        else:
            made = build_store(home, folder / "data")
            kept.write_text(json.dumps(made))
        process, url = start_ui(home, folder / "ui.log")
        try:
            photograph(url, args.out, made, Path(scratch) / "chromium")
        finally:
            process.terminate()
            process.wait(timeout=60)


if __name__ == "__main__":
    main()
