"""Bad input through the real CLI: exit code 2, one message naming the file, key, column or row, no traceback,
and nothing registered."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.e2e


def expect_error(result, *fragments: str) -> None:  # type: ignore[no-untyped-def]
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    message = result.stderr.strip()
    assert message.startswith("error: "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def nothing_registered(luodi) -> None:  # type: ignore[no-untyped-def]
    assert luodi("models", "ls", "--json").json() == []
    assert all(run["status"] != "finished" for run in luodi("runs", "ls", "--json").json())


def test_missing_file(luodi) -> None:
    expect_error(luodi("init", "--data", "nope.csv", "--target", "y"), "data file not found", "nope.csv")


def test_empty_file(luodi, tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    expect_error(luodi("init", "--data", "empty.csv", "--target", "y"), "empty.csv", "empty")
    (tmp_path / "header.csv").write_text("a,b,y\n")
    expect_error(luodi("init", "--data", "header.csv", "--target", "y"), "header.csv", "no rows")


def test_unknown_target_column(luodi, churn) -> None:
    expect_error(luodi("init", "--data", "churn.csv", "--target", "churnd"), "'churnd'", "did you mean 'churned'")


def test_target_with_one_class(luodi, tmp_path: Path) -> None:
    pd.DataFrame({"x": range(50), "y": ["a"] * 50}).to_csv(tmp_path / "one.csv", index=False)
    expect_error(luodi("init", "--data", "one.csv", "--target", "y"), "'y'", "single value")


def test_nan_in_target(luodi, churn, tmp_path: Path) -> None:
    assert luodi("init", "--data", "churn.csv", "--target", "churned").code == 0
    frame = pd.read_csv(churn["train"])
    frame.loc[[4, 9], "churned"] = None
    frame.to_csv(churn["train"], index=False)
    expect_error(luodi("train", "luodi.yaml"), "churn.csv", "'churned'", "2 row(s)", "rows 5, 10")
    expect_error(luodi("init", "--data", "churn.csv", "--target", "churned", "--force"), "rows 5, 10")
    nothing_registered(luodi)


def test_text_in_numeric_column_at_predict_time(luodi, churn, tmp_path: Path) -> None:
    assert luodi("init", "--data", "churn.csv", "--target", "churned").code == 0
    assert luodi("train", "luodi.yaml", "--set", "trainer.epochs=2").code == 0
    frame = pd.read_csv(churn["new"])
    frame["tenure"] = frame["tenure"].astype(object)
    frame.loc[2, "tenure"] = "twelve"
    frame.to_csv(churn["new"], index=False)
    result = luodi("predict", "churn", "--data", "new.csv", "--out", "scored.csv")
    expect_error(result, "new.csv", "'tenure'", "row 3", "'twelve'")
    assert not (tmp_path / "scored.csv").exists()


def test_unseen_categories(luodi, churn, tmp_path: Path) -> None:
    assert luodi("init", "--data", "churn.csv", "--target", "churned").code == 0
    assert luodi("train", "luodi.yaml", "--set", "trainer.epochs=2").code == 0
    frame = pd.read_csv(churn["new"])
    frame.loc[[0, 5], "contract"] = "weekly"
    frame.to_csv(churn["new"], index=False)
    lenient = luodi("predict", "churn", "--data", "new.csv", "--out", "scored.csv")
    assert lenient.code == 0, lenient.stderr
    assert "'contract': 2 value(s) not seen in training" in lenient.stderr and "weekly" in lenient.stderr
    assert len(pd.read_csv(tmp_path / "scored.csv")) == 100
    strict = luodi("predict", "churn", "--data", "new.csv", "--out", "strict.csv", "--strict")
    expect_error(strict, "new.csv", "'contract'", "weekly")
    assert not (tmp_path / "strict.csv").exists()


def test_mistyped_config_key(luodi, churn, tmp_path: Path) -> None:
    assert luodi("init", "--data", "churn.csv", "--target", "churned").code == 0
    config = tmp_path / "luodi.yaml"
    config.write_text(config.read_text().replace("  optimizer:", "  optimzer:"))
    expect_error(luodi("train", "luodi.yaml"), "luodi.yaml", "trainer.optimzer", "unknown key",
                 "did you mean 'optimizer'")
    nothing_registered(luodi)


def test_wrong_value_type(luodi, churn, tmp_path: Path) -> None:
    assert luodi("init", "--data", "churn.csv", "--target", "churned").code == 0
    expect_error(luodi("train", "luodi.yaml", "--set", "trainer.epochs=ten"), "trainer.epochs", "'ten'")
    expect_error(luodi("train", "luodi.yaml", "--set", "input_features.tenure.type=number"),
                 "input_features.0", "number")
    expect_error(luodi("train", "luodi.yaml", "--set", "trainer.optimizer.lr=-1"), "trainer.optimizer.lr")
    nothing_registered(luodi)


def test_positive_class_that_is_not_a_label(luodi, churn) -> None:
    assert luodi("init", "--data", "churn.csv", "--target", "churned").code == 0
    expect_error(luodi("train", "luodi.yaml", "--set", "target.positive_class=maybe"),
                 "target.positive_class 'maybe'", "target 'churned'", "['no', 'yes']")
    nothing_registered(luodi)


def test_bad_references_and_arguments(luodi, churn) -> None:
    expect_error(luodi("predict", "nosuch", "--data", "new.csv"), "'nosuch'", "no model is registered")
    expect_error(luodi("evaluate", "../etc@prod", "--data", "holdout.csv"), "../etc@prod", "not a model package")
    expect_error(luodi("evaluate", "bad name@prod", "--data", "holdout.csv"), "invalid model name")
    expect_error(luodi("runs", "show", "nosuchrun"), "'nosuchrun' not found")
    expect_error(luodi("train"), "config file or --resume")
    expect_error(luodi("train", "missing.yaml"), "config file not found", "missing.yaml")
    assert luodi("train", "--no-such-option").code == 2  # usage errors exit 2 too


def test_missing_feature_column_at_predict_time(luodi, churn, tmp_path: Path) -> None:
    assert luodi("init", "--data", "churn.csv", "--target", "churned").code == 0
    assert luodi("train", "luodi.yaml", "--set", "trainer.epochs=2").code == 0
    pd.read_csv(churn["new"]).drop(columns=["monthly_charges"]).to_csv(churn["new"], index=False)
    expect_error(luodi("predict", "churn", "--data", "new.csv"), "new.csv", "'monthly_charges' is missing")
