"""`luodi serve` of a TabM ensemble table model (`model.mlp.ensemble`): v1 and v2 answer with the package's own
predictions, the members' mean probabilities; also with periodic numeric embeddings
(`model.mlp.numeric_embedding: periodic`)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import luodi.api as api
from luodi.package import load_package

ENSEMBLE = ["model.mlp.ensemble=4", "model.mlp.adapters=input"]
PERIODIC = ["model.mlp.numeric_embedding=periodic", "model.mlp.periodic_width=4"]  # PLR embeddings of the numbers


@pytest.fixture(scope="module", params=[ENSEMBLE, ENSEMBLE + PERIODIC], ids=["ensemble", "periodic"])
def ensemble_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                   table_csv: Callable[..., Path], tiny_config: Callable[..., Path]) -> Path:
    folder = tmp_path_factory.mktemp("ensemble-store")
    config = tiny_config(folder / "tiny.yaml", table_csv(folder / "table.csv", rows=300), epochs=2)
    api.train(config, request.param, home=folder / "home", progress="silent")
    return folder / "home"


@pytest.fixture
def store_home(ensemble_store: Path, tmp_path: Path) -> Path:
    """The serve fixture's store, holding the ensemble as tiny/1 (overrides the session's plain tiny model)."""
    home = tmp_path / "store"
    shutil.copytree(ensemble_store, home)
    return home


ROWS = [{"size": 0.3, "age": 40, "income": 55.0, "color": "red"},
        {"size": -1.1, "age": 70, "income": 61.5, "color": "violet"}]


def test_v1_and_v2_serve_the_members_mean(serve, store_home: Path) -> None:  # type: ignore[no-untyped-def]
    package = load_package(store_home / "models" / "tiny" / "v1")
    assert package.config.model.mlp.ensemble == 4
    expected = package.predict(ROWS)
    with serve() as server:
        v1 = server.client.post("/v1/models/tiny/predict", json={"records": ROWS})
        assert v1.status_code == 200, v1.text
        predictions = v1.json()["predictions"]
        assert [row["prediction"] for row in predictions] == expected.predictions
        np.testing.assert_allclose([[row["probabilities"]["no"], row["probabilities"]["yes"]] for row in predictions],
                                   expected.probabilities, atol=1e-5)
        body = {"inputs": [{"name": "numeric", "shape": [2, 3], "datatype": "FP32",
                            "data": [0.3, 40, 55.0, -1.1, 70, 61.5]},
                           {"name": "color", "shape": [2], "datatype": "BYTES", "data": ["red", "violet"]}]}
        v2 = server.client.post("/v2/models/tiny/infer", json=body)
        assert v2.status_code == 200, v2.text
        outputs = {output["name"]: output for output in v2.json()["outputs"]}
        np.testing.assert_allclose(np.reshape(outputs["probabilities"]["data"], (2, 2)), expected.probabilities,
                                   atol=1e-5)
