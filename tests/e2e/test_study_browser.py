"""The study page of `luodi tune` in headless Chromium: no network request, no console error, every plot decodes,
and the numbers it shows are the ones `api.tune` returned. Skipped, as the report's browser test is, without
Chromium."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from test_report_browser import Browser, browser, check_page, screenshot  # noqa: F401 - the fixture is used by name

import luodi.api as api

pytestmark = pytest.mark.e2e


def test_study_page_in_chromium(browser: Browser, tmp_path: Path, table_csv: Callable[..., Path],  # noqa: F811
                                tiny_config: Callable[..., Path]) -> None:
    config = tiny_config(tmp_path / "tune.yaml", table_csv(tmp_path / "data.csv", rows=300), epochs=4)
    raw = yaml.safe_load(config.read_text())
    raw["search"] = {"trainer.optimizer.lr": {"low": 1e-5, "high": 3e-2, "log": True},
                     "model.hidden_sizes": {"choices": [[8], [16, 8]]}}
    config.write_text(yaml.safe_dump(raw))
    result = api.tune(config, 4, home=tmp_path / "home", progress="silent")
    assert result.importances  # at least two finished trials: the importance plot is on the page
    for page in (Path(result.page), Path(result.package) / "study.html"):
        check_page(browser, page)
        alts = browser.evaluate("[...document.images].map(i => i.alt)")
        assert alts == ["optimization history", "validation curves", "parameter importances"]
        shown = browser.evaluate("[...document.querySelectorAll('#trials td[data-name=value]')]"
                                 ".map(td => JSON.parse(td.dataset.value))")
        assert shown == [trial["value"] for trial in browser.evaluate(
            "JSON.parse(document.getElementById('luodi-data').textContent)")["trials"]]
        metrics = browser.evaluate("Object.fromEntries([...document.querySelectorAll('#test-metrics td[data-name]')]"
                                   ".map(td => [td.dataset.name, JSON.parse(td.dataset.value)]))")
        assert metrics == result.metrics
        assert f"trial {result.best['number']}" in browser.evaluate("document.body.innerText")
    screenshot(browser, tmp_path / "study.png")
