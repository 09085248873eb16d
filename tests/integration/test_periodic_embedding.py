"""A table model with periodic numeric embeddings (`model.mlp.numeric_embedding: periodic`) beside piecewise-linear
bins, as a TabM ensemble, through the whole lifecycle: the package saves and loads to the same predictions, evaluate
reports the setting, explanations attribute one number per column, the ONNX export and `luodi optimize` match
eager, and `luodi serve` answers with the package's predictions."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_mlp_ensemble import rows  # the same three rows, one category unseen

import luodi.api as api
from luodi.models.mlp import PeriodicEmbedding
from luodi.package import load_package

PERIODIC = ["model.mlp.numeric_embedding=periodic", "model.mlp.periodic_sigma=0.5", "model.mlp.periodic_width=4",
            "model.mlp.periodic_frequencies=3", "model.mlp.ensemble=4", "model.hidden_sizes=[8, 8]"]


@pytest.fixture(scope="module")
def periodic_package(tmp_path_factory: pytest.TempPathFactory, table_csv: Callable[..., Path],
                     tiny_config: Callable[..., Path]) -> Path:
    folder = tmp_path_factory.mktemp("periodic")
    config = tiny_config(folder / "tiny.yaml", table_csv(folder / "table.csv", rows=300, task="multiclass"),
                         task="multiclass", epochs=2)
    loaded = yaml.safe_load(config.read_text())
    for feature in loaded["input_features"]:
        if feature["type"] == "numeric":
            feature.update(encoding="piecewise_linear", bins=4)
    config.write_text(yaml.safe_dump(loaded))
    trained = api.train(config, PERIODIC, home=folder / "home", progress="silent")
    return Path(str(trained.package))


def test_the_package_loads_the_embedding_and_predicts_the_same(periodic_package: Path) -> None:
    package = load_package(periodic_package)
    embedding = package.model.body[0]
    assert isinstance(embedding, PeriodicEmbedding)
    assert embedding.columns.tolist() == package.pipeline.numeric_columns() == [0, 5, 10]  # value + 4 bins each
    assert embedding.frequencies.shape == (3, 3)
    first, again = package.predict(rows()), load_package(periodic_package).predict(rows())
    np.testing.assert_allclose(first.probabilities, again.probabilities, atol=0)
    np.testing.assert_allclose(np.asarray(first.probabilities).sum(axis=1), 1.0, atol=1e-5)


def test_evaluate_reports_the_embedding(periodic_package: Path, tmp_path: Path) -> None:
    data = tmp_path / "test.csv"
    pd.read_csv(periodic_package.parents[3] / "table.csv").head(60).to_csv(data, index=False)
    result = api.evaluate(str(periodic_package), data, home=tmp_path / "home", report=True)
    assert 0.0 <= result["metrics"]["accuracy"] <= 1.0
    page = Path(str(result["report"])).read_text()
    assert ('"numeric_embedding": "periodic", "periodic_frequencies": 3, "periodic_sigma": 0.5, '
            '"periodic_width": 4') in page


def test_explain_attributes_per_column_and_the_exports_match_eager(periodic_package: Path, tmp_path: Path) -> None:
    explanation = api.explain(str(periodic_package), rows(), target_class="high")
    assert explanation.features == ["size", "age", "income", "color"]
    assert np.isfinite(explanation.attributions).all()
    assert float(np.abs(explanation.delta).max()) < 0.05  # completeness through sin and cos
    entry = api.export(str(periodic_package), tmp_path / "onnx")
    assert float(str(entry["parity_max_abs_diff"])) <= 1e-4
    home = tmp_path / "home"
    shutil.copytree(periodic_package.parents[2], home)
    result = api.optimize("tiny", variants=["onnx", "onnx-int8-dynamic"], register=False, home=home)
    statuses = {variant["name"]: variant["status"] for variant in result["variants"]}
    assert statuses == {"eager": "ok", "onnx": "ok", "onnx-int8-dynamic": "ok"}, result
