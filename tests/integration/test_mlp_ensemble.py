"""A table model trained as a TabM ensemble (`model.mlp.ensemble`) through the whole lifecycle: the package saves
and loads to the same predictions (probabilities: the members' mean), the report shows the setting, explanations
attribute per column, and the ONNX export matches eager."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import luodi.api as api
from luodi.models.mlp import MLP
from luodi.package import load_package


@pytest.fixture(scope="module")
def ensemble_package(tmp_path_factory: pytest.TempPathFactory, table_csv: Callable[..., Path],
                     tiny_config: Callable[..., Path]) -> Path:
    write_table, write_config = table_csv, tiny_config
    folder = tmp_path_factory.mktemp("ensemble")
    config = write_config(folder / "tiny.yaml", write_table(folder / "table.csv", rows=300, task="multiclass"),
                          task="multiclass", epochs=2)
    trained = api.train(config, ["model.mlp.ensemble=4", "model.hidden_sizes=[8, 8]"], home=folder / "home",
                        progress="silent")
    return Path(str(trained.package))


def rows() -> pd.DataFrame:
    return pd.DataFrame({"size": [0.1, -1.2, 2.0], "age": [30, 61, 45], "income": [40.0, None, 75.5],
                         "color": ["red", "blue", "violet"]})


def test_the_package_loads_the_members_and_predicts_their_mean(ensemble_package: Path) -> None:
    package = load_package(ensemble_package)
    assert isinstance(package.model, MLP) and package.model.members == 4
    assert package.config.model.mlp.ensemble == 4
    first, again = package.predict(rows()), load_package(ensemble_package).predict(rows())
    np.testing.assert_allclose(first.probabilities, again.probabilities, atol=0)
    np.testing.assert_allclose(np.asarray(first.probabilities).sum(axis=1), 1.0, atol=1e-5)
    assert package.model.training is False


def test_evaluate_reports_the_ensemble(ensemble_package: Path, tmp_path: Path) -> None:
    data = tmp_path / "test.csv"
    frame = pd.read_csv(ensemble_package.parents[3] / "table.csv").head(60)
    frame.to_csv(data, index=False)
    result = api.evaluate(str(ensemble_package), data, home=tmp_path / "home", report=True)
    assert 0.0 <= result["metrics"]["accuracy"] <= 1.0
    page = Path(str(result["report"])).read_text()
    assert '"mlp": {"ensemble": 4, "adapters": "layers", "numeric_embedding": "none", "linear": false}' in page


def test_explain_and_the_onnx_export_see_one_model(ensemble_package: Path, tmp_path: Path) -> None:
    explained = api.explain(str(ensemble_package), rows(), target_class="high").to_frame()
    assert [c for c in explained.columns if c.endswith("_attribution")] == [
        "size_attribution", "age_attribution", "income_attribution", "color_attribution"]
    assert np.isfinite(explained[[c for c in explained.columns if c.endswith("_attribution")]].to_numpy()).all()
    entry = api.export(str(ensemble_package), tmp_path / "onnx")
    assert float(str(entry["parity_max_abs_diff"])) <= 1e-4


def test_optimize_prunes_and_fine_tunes_the_members(ensemble_package: Path, tmp_path: Path) -> None:
    import shutil

    home = tmp_path / "home"
    shutil.copytree(ensemble_package.parents[2], home)
    result = api.optimize("tiny", variants=["onnx", "prune-magnitude", "prune-structured"], fine_tune_steps=5,
                          register=False, home=home)
    statuses = {variant["name"]: variant["status"] for variant in result["variants"]}
    assert statuses == {"eager": "ok", "onnx": "ok", "prune-magnitude": "ok", "prune-structured": "ok"}, result


def test_tune_searches_the_ensemble_size(tmp_path: Path, table_csv: Callable[..., Path],
                                         tiny_config: Callable[..., Path]) -> None:
    import yaml

    config = tiny_config(tmp_path / "tune.yaml", table_csv(tmp_path / "data.csv", rows=200), epochs=2)
    loaded = yaml.safe_load(config.read_text())
    loaded["search"] = {"model.mlp.ensemble": {"choices": [1, 4]},
                        "model.mlp.adapters": {"choices": ["layers", "input"]}}
    config.write_text(yaml.safe_dump(loaded))
    result = api.tune(config, 3, home=tmp_path / "home", progress="silent")
    package = load_package(Path(str(result.package)))
    assert isinstance(package.model, MLP) and package.model.members == package.config.model.mlp.ensemble
