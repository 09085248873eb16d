"""Packages written before the task table (tests/assets/legacy, made by make_packages.py with the code of commit
edb66bf) still load, predict exactly what they predicted then, and the server answers them byte for byte as it
did then."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

import luodi.api as api
from luodi.serve.model import Reference
from luodi.serve.server import background
from luodi.serve.settings import make_config

LEGACY = Path(__file__).resolve().parents[1] / "assets" / "legacy"
PACKAGES = ["binary", "multiclass", "regression", "text-rnn"]
UNSEEN_COLOR = "column 'color': 1 value(s) not seen in training, e.g. ['orange']; encoded as unknown"


@pytest.mark.parametrize("name", PACKAGES)
def test_legacy_package_predicts_exactly_as_before(name: str) -> None:
    expected = json.loads((LEGACY / f"{name}.predictions.json").read_text())
    frame = api.predict(LEGACY / name, LEGACY / "records.csv", keep_input=False)
    assert list(frame.columns) == list(expected)
    for column, values in expected.items():
        assert frame[column].tolist() == values, column  # exact: the same floats, bit for bit


def test_legacy_packages_are_served_as_before(tmp_path: Path) -> None:
    records = json.loads(pd.read_csv(LEGACY / "records.csv").to_json(orient="records"))
    folders = []
    for name in PACKAGES:  # copies: a server may write nothing into the fixtures, but keep them read-only anyway
        folders.append(tmp_path / name)
        shutil.copytree(LEGACY / name, folders[-1])
    config = make_config(port=0, reload_interval_s=0, log_sample_rate=0)
    warnings: list[list[str]] = []
    with background([Reference(str(folder), None) for folder in folders], config, tmp_path / "home",
                    log_level="warning") as running:
        for name in PACKAGES:
            request = urllib.request.Request(f"{running.url}/v1/models/legacy-{name}/predict",
                                             json.dumps({"records": records}).encode(),
                                             {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                served = json.loads(response.read())
            # values the model never saw are now named in a warnings field (the predictions are unchanged)
            warnings.append(served.pop("warnings", []))
            # every answer now carries its request id (for delayed labels); the rest is as recorded
            assert served.pop("request_id") == response.headers["x-request-id"]
            assert served == json.loads((LEGACY / f"{name}.served.json").read_text()), name
    assert warnings == [[UNSEEN_COLOR] if name != "text-rnn" else [] for name in PACKAGES]
