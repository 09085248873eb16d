"""The Python API as a notebook user calls it (issue 12 item 17): training and init from a DataFrame, predict keeping
the input columns as `luodi predict` does, and `train(...).model` passed straight to predict."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import luodi.api as luodi
from luodi.errors import InputError


def frame(table_csv, tmp_path: Path) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    return pd.read_csv(table_csv(tmp_path / "table.csv", rows=300))


def test_train_from_a_dataframe_and_predict_with_its_model(table_csv, tmp_path: Path) -> None:
    rows = frame(table_csv, tmp_path)
    result = luodi.train(rows, ["trainer.epochs=2"], target="label", home=tmp_path / "home", progress="silent")
    assert result.model == {"name": "model", "version": 1}
    assert result.rows["train"] + result.rows["validation"] + result.rows["test"] == 300
    new = rows.drop(columns=["label"]).head(5)
    predicted = luodi.predict(result.model, new, home=tmp_path / "home")
    assert list(predicted.columns) == [*new.columns, "label_prediction", "label_probability_no",
                                       "label_probability_yes"]
    pd.testing.assert_frame_equal(predicted[list(new.columns)], new)
    assert list(luodi.predict(result.model, new, home=tmp_path / "home", keep_input=False).columns) == \
        ["label_prediction", "label_probability_no", "label_probability_yes"]
    trial = luodi.train(rows, ["trainer.epochs=1"], target="label", home=tmp_path / "home", progress="silent",
                        register=False)  # registers nothing: resume goes on to read the data again
    with pytest.raises(InputError, match="rows passed in memory .* cannot resume"):
        luodi.train(resume=trial.run_id, home=tmp_path / "home", progress="silent")


def test_init_from_a_dataframe_then_train_its_config(table_csv, tmp_path: Path) -> None:
    rows = frame(table_csv, tmp_path)
    started = luodi.init(rows, target="label", name="churn")
    assert started.config_path is None and started.task == "binary" and started.rows == 300
    assert set(started.features) == {"size", "age", "income", "color"}
    assert started.config is not None and started.config["data"]["train"] is rows
    result = luodi.train(started.config, ["trainer.epochs=1"], home=tmp_path / "home", progress="silent")
    assert result.model == {"name": "churn", "version": 1}
    assert started.config["data"]["train"] is rows  # the caller's config is left as it was
    with pytest.raises(InputError, match="no file for a config to point at"):
        luodi.init(rows, target="label", output=tmp_path / "luodi.yaml")


def test_a_dataframe_in_data_train_with_a_bad_config_is_named_not_printed(table_csv, tmp_path: Path) -> None:
    rows = frame(table_csv, tmp_path)
    config = {"name": "tiny", "data": {"train": rows}, "target": {"name": "label", "task": "binary"},
              "input_features": [{"name": "size", "type": "numeric"}], "trainer": {"epochs": "many"}}
    with pytest.raises(InputError) as caught:
        luodi.train(config, home=tmp_path / "home", progress="silent")
    assert "trainer.epochs" in str(caught.value) and len(str(caught.value)) < 400
    with pytest.raises(InputError, match="target="):
        luodi.train(rows, home=tmp_path / "home", progress="silent")
    with pytest.raises(InputError, match="'labl'"):
        luodi.init(rows, target="labl")
