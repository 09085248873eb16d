"""Every task and input path through the Python API, in process: multiclass, regression, text, class weights,
separate validation / test files, Parquet / JSONL / TSV inputs, predictions on records and DataFrames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import luodi.api as luodi
from luodi.jobs.fit import read_splits
from luodi.package import load_package

FAST = ["trainer.epochs=15", "runtime.threads=1"]


def test_multiclass_on_wine(tmp_path: Path) -> None:
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    frame["target"] = frame["target"].map({0: "barolo", 1: "grignolino", 2: "barbera"})
    frame.to_parquet(tmp_path / "wine.parquet")
    init = luodi.init(tmp_path / "wine.parquet", "target", output=tmp_path / "wine.yaml")
    assert init.task == "multiclass"
    result = luodi.train(tmp_path / "wine.yaml", [*FAST, "trainer.epochs=60"], home=tmp_path / "home",
                         progress="silent")
    assert result.metrics["accuracy"] >= 0.85
    assert {"f1_macro", "f1_weighted", "roc_auc_ovr", "log_loss"} <= set(result.metrics)
    predictions = luodi.predict("wine", frame.drop(columns=["target"]).head(5), home=tmp_path / "home")
    assert set(predictions["target_prediction"]) <= {"barolo", "grignolino", "barbera"}
    probabilities = predictions[[f"target_probability_{c}" for c in ("barbera", "barolo", "grignolino")]]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_regression_with_categories_text_and_jsonl(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = 600
    city = rng.choice(["paris", "lyon", "nice"], rows)
    size = rng.uniform(20, 120, rows)
    words = rng.choice(["sunny balcony", "quiet street", "near metro", "needs work"], rows)
    price = size * 3 + np.where(city == "paris", 100, 0) + np.where(words == "needs work", -50, 0)
    frame = pd.DataFrame({"city": city, "size": size, "notes": [f"flat with {w} and more details here" for w in words],
                          "price": price + rng.normal(0, 5, rows)})
    frame.to_json(tmp_path / "flats.jsonl", orient="records", lines=True)
    init = luodi.init(tmp_path / "flats.jsonl", "price", output=tmp_path / "flats.yaml")
    assert init.task == "regression"
    assert init.features["notes"].startswith("text") and init.features["city"].startswith("category")
    result = luodi.train(tmp_path / "flats.yaml", [*FAST, "trainer.epochs=80"], home=tmp_path / "home",
                         progress="silent")
    assert result.metrics["r2"] >= 0.8
    # preprocessing is fitted on the training split only: its statistics are the train rows', not the file's
    package = load_package(result.package)
    splits, _ = read_splits(package.config)
    train_prices = splits.train.column("price").to_numpy()
    assert package.manifest["features"]["target"]["mean"] == pytest.approx(train_prices.mean())
    assert package.manifest["features"]["target"]["mean"] != pytest.approx(frame["price"].mean(), abs=1e-9)
    size_state = next(f for f in package.manifest["features"]["features"] if f["name"] == "size")
    assert size_state["center"] == pytest.approx(splits.train.column("size").to_numpy().mean())
    one = luodi.predict("flats@latest", {"city": "paris", "size": 50.0, "notes": "flat with quiet street"},
                        home=tmp_path / "home")
    assert 150 < one["price_prediction"][0] < 350


def test_class_weights_and_separate_split_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)

    def table(rows: int) -> pd.DataFrame:
        x = rng.normal(size=rows)
        return pd.DataFrame({"x": x, "label": np.where(x + rng.normal(0, 0.3, rows) > 1.3, "rare", "common")})

    for name, rows in (("train", 800), ("val", 200), ("test", 200)):
        table(rows).to_csv(tmp_path / f"{name}.tsv", sep="\t", index=False)
    config = {
        "name": "rare", "data": {"train": str(tmp_path / "train.tsv"), "validation": str(tmp_path / "val.tsv"),
                                 "test": str(tmp_path / "test.tsv")},
        "target": {"name": "label", "task": "binary", "class_weights": "balanced"},
        "input_features": [{"name": "x", "type": "numeric"}],
        "model": {"hidden_sizes": [16]}, "trainer": {"epochs": 10}, "runtime": {"threads": 1},
    }
    result = luodi.train(config, home=tmp_path / "home", progress="silent")
    assert result.rows == {"train": 800, "validation": 200, "test": 200}
    package = load_package(result.package)
    assert package.classes == ["common", "rare"]
    # balanced weights push recall of the rare class up, compared with the same run unweighted
    config["target"]["class_weights"] = "none"
    unweighted = luodi.train(config, home=tmp_path / "home", progress="silent")
    assert result.metrics["recall"] > unweighted.metrics["recall"]
    # lineage: each version names its run and the version it follows, in the package and in the store
    assert package.manifest["lineage"] == {"run_id": result.run_id, "parent_version": None}
    second = load_package(unweighted.package).manifest["lineage"]
    assert second == {"run_id": unweighted.run_id, "parent_version": 1}
    assert luodi.show_model("rare/2", home=tmp_path / "home")[0].parent_version == 1


def test_package_round_trip_gives_identical_predictions(tmp_path: Path) -> None:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame.to_csv(tmp_path / "bc.csv", index=False)
    luodi.init(tmp_path / "bc.csv", "target", output=tmp_path / "bc.yaml")
    result = luodi.train(tmp_path / "bc.yaml", FAST, home=tmp_path / "home", progress="silent")
    first = luodi.predict(result.package, frame.drop(columns=["target"]))
    again = luodi.predict("bc/1", tmp_path / "bc.csv", home=tmp_path / "home", keep_input=False)
    np.testing.assert_array_equal(first["target_probability_1"].to_numpy(), again["target_probability_1"].to_numpy())
    evaluated = luodi.evaluate("bc", tmp_path / "bc.csv", home=tmp_path / "home")
    assert evaluated["rows"] == len(frame)


def test_overrides_apply_to_dict_and_validated_configs(tmp_path: Path, table_csv, tiny_config) -> None:
    import yaml

    from luodi.config import load_config

    path = tiny_config(tmp_path / "tiny.yaml", table_csv(tmp_path / "table.csv", rows=200), epochs=3)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["data"]["train"] = str(tmp_path / "table.csv")
    result = luodi.train(raw, ["trainer.epochs=1", "name=from-dict"], home=tmp_path / "home", progress="silent")
    assert (result.model["name"], result.epochs_run) == ("from-dict", 1)
    assert raw["trainer"]["epochs"] == 3 and raw["name"] == "tiny"  # the caller's dict is left as it was
    validated = load_config(path)
    result = luodi.train(validated, ["trainer.epochs=2"], home=tmp_path / "home", progress="silent")
    assert (result.model["name"], result.epochs_run) == ("tiny", 2)
    assert validated.trainer.epochs == 3
