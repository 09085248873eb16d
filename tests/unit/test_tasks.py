"""The task table and each task's target: missing values and unknown labels name rows, class weights, decoding
back to labels, and the table's lookups."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from luodi.config import TargetConfig
from luodi.errors import InputError
from luodi.tasks import TASKS, direction, get_task, register_task


def column(values: list[Any], kind: pa.DataType | None = None) -> pa.ChunkedArray:
    return pa.chunked_array([pa.array(values, kind)])


def fitted(task: str, values: list[Any], class_weights: Any = "none") -> Any:
    encoder = get_task(task).target(TargetConfig(name="y", task=task, class_weights=class_weights))
    encoder.fit(column(values))
    return encoder


@pytest.mark.parametrize(("task", "values"), [
    ("binary", ["a", None, "b", None]), ("regression", [1.0, float("nan"), 2.0, None]),
])
def test_missing_target_names_rows(task: str, values: list[Any]) -> None:
    encoder = fitted(task, [value for value in values if value == value and value is not None])
    with pytest.raises(InputError) as caught:
        encoder.transform(column(values), "train.csv")
    message = str(caught.value)
    assert message.startswith("train.csv: target column 'y' is missing in 2 row(s)")
    assert "(rows 2, 4)" in message


def test_many_missing_rows_are_truncated() -> None:
    encoder = fitted("regression", [1.0, 2.0])
    with pytest.raises(InputError, match=r"rows 1, 2, 3, 4, 5 \.\.\."):
        encoder.transform(column([None] * 8, pa.float64()), "data")


def test_unknown_label_at_evaluate_time() -> None:
    encoder = fitted("multiclass", ["low", "mid", "high", "mid"])
    with pytest.raises(InputError) as caught:
        encoder.transform(column(["mid", "extreme", "low"]), "holdout.csv")
    message = str(caught.value)
    assert "holdout.csv" in message and "['extreme']" in message and "rows 2" in message
    assert "known labels: ['high', 'low', 'mid']" in message


@pytest.mark.parametrize(("values", "classes"), [
    (["yes", "no", "yes"], ["no", "yes"]),
    ([1, 0, 0], [0, 1]),
    ([True, False, True], [False, True]),
    ([1.0, 0.0, 0.0], [0.0, 1.0]),
])
def test_binary_classes_and_targets(values: list[Any], classes: list[Any]) -> None:
    encoder = fitted("binary", values)
    assert encoder.classes == classes
    targets = encoder.transform(column(values), "train")
    assert targets.dtype == np.float32
    assert targets.tolist() == [float(classes.index(value)) for value in values]


@pytest.mark.parametrize("values", [["b", "c", "a", "c"], [3, 1, 2, 2], [2.0, 1.0, 3.0, 1.0]])
def test_multiclass_targets_are_sorted_indices(values: list[Any]) -> None:
    encoder = fitted("multiclass", values)
    assert encoder.classes == sorted(set(values))
    assert get_task("multiclass").output_size(encoder) == 3
    targets = encoder.transform(column(values), "train")
    assert targets.dtype == np.int64
    assert [encoder.classes[index] for index in targets] == values


def test_regression_is_standardized() -> None:
    encoder = fitted("regression", [1.0, 2.0, 3.0, 6.0])
    targets = encoder.transform(column([1.0, 2.0, 3.0, 6.0]), "train")
    assert targets.mean() == pytest.approx(0.0, abs=1e-6)
    assert targets.std() == pytest.approx(1.0, abs=1e-6)
    assert get_task("regression").output_size(encoder) == 1


def test_regression_refuses_text() -> None:
    with pytest.raises(InputError, match="must be numeric for regression"):
        fitted("regression", ["a", "b"])


@pytest.mark.parametrize(("task", "values", "fragment"), [
    ("binary", ["a", "a"], "single class"), ("binary", ["a", "b", "c"], "use task: multiclass"),
])
def test_bad_class_counts(task: str, values: list[str], fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        fitted(task, values)


def test_balanced_class_weights() -> None:
    encoder = fitted("multiclass", ["a"] * 6 + ["b"] * 3 + ["c"] * 1, class_weights="balanced")
    weights = encoder.class_weights()
    assert weights is not None
    assert weights.tolist() == pytest.approx([10 / 18, 10 / 9, 10 / 3])
    assert float((weights * np.asarray(encoder.counts)).sum()) == pytest.approx(10.0)


def test_explicit_and_no_class_weights() -> None:
    assert fitted("binary", ["no", "yes"]).class_weights() is None
    assert not get_task("regression").classes  # regression has no classes to weigh
    weights = fitted("binary", ["no", "yes"], class_weights={"yes": 3.0}).class_weights()
    assert weights is not None and weights.tolist() == [1.0, 3.0]
    with pytest.raises(InputError, match="unknown class"):
        fitted("binary", ["no", "yes"], class_weights={"maybe": 2.0}).class_weights()


def test_label_smoothing_moves_the_targets_off_the_true_class() -> None:
    import torch
    from torch.nn import functional as F

    logits, labels = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -2.0]]), torch.tensor([0, 2])
    for task, smoothing in (("multiclass", 0.0), ("multiclass", 0.2)):
        encoder = get_task(task).target(TargetConfig(name="y", task=task, label_smoothing=smoothing))
        soft = torch.full((2, 3), smoothing / 3) + F.one_hot(labels, 3) * (1 - smoothing)
        expected = -(soft * logits.log_softmax(-1)).sum(-1).mean()
        assert get_task(task).loss(encoder)(logits, labels).item() == pytest.approx(expected.item(), rel=1e-5)
    binary = get_task("binary").target(TargetConfig(name="y", task="binary", label_smoothing=0.2))
    value = get_task("binary").loss(binary)(torch.tensor([[3.0], [-1.0]]), torch.tensor([1.0, 0.0])).item()
    expected = F.binary_cross_entropy_with_logits(torch.tensor([3.0, -1.0]), torch.tensor([0.9, 0.1])).item()
    assert value == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(("task", "values"), [
    ("binary", ["no", "yes", "yes", "no"]), ("multiclass", ["b", "a", "c", "a"]), ("multiclass", [2, 0, 1, 1]),
])
def test_decode_round_trip(task: str, values: list[Any]) -> None:
    encoder = fitted(task, values)
    targets = encoder.transform(column(values), "train")
    if task == "binary":
        outputs = np.where(targets > 0.5, 0.9, 0.2).astype(np.float32)
    else:
        outputs = np.eye(len(encoder.classes), dtype=np.float32)[targets] * 0.8 + 0.2 / len(encoder.classes)
    decoded = get_task(task).decode(encoder, outputs)
    predictions, probabilities = decoded.values, decoded["probabilities"].data
    assert predictions == values
    assert probabilities is not None and probabilities.shape == (len(values), len(encoder.classes))
    assert np.allclose(probabilities.sum(axis=1), 1.0)


def test_decode_regression_restores_scale() -> None:
    encoder = fitted("regression", [10.0, 20.0, 30.0])
    targets = encoder.transform(column([10.0, 20.0, 30.0]), "train")
    decoded = get_task("regression").decode(encoder, targets)
    assert decoded.values == pytest.approx([10.0, 20.0, 30.0])
    assert decoded.get("probabilities") is None


@pytest.mark.parametrize(("task", "values"), [("binary", [True, False]), ("multiclass", [1.0, 2.0, 3.0]),
                                              ("regression", [0.5, 1.5])])
def test_state_round_trip(task: str, values: list[Any]) -> None:
    encoder = fitted(task, values)
    state = json.loads(json.dumps(encoder.state()))
    again = get_task(task).target(encoder.config, state)
    assert np.array_equal(encoder.transform(column(values), "a"), again.transform(column(values), "a"))
    assert again.state() == encoder.state()


def test_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(InputError, match=r"unknown task 'binry' \(did you mean 'binary'\?\); choose one of"):
        get_task("binry")


def test_metric_directions_come_from_the_tasks() -> None:
    assert [direction(name) for name in ("loss", "log_loss", "rmse", "mae", "accuracy", "r2", "roc_auc")] == [
        "min", "min", "min", "min", "max", "max", "max"]
    for task in TASKS.values():
        assert task.directions["loss"] == "min"


def test_a_registered_task_cannot_shadow_another(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("luodi.tasks.TASKS", dict(TASKS))
    register_task(get_task("binary"))  # the same object again: a no-op
    impostor = type("Impostor", (), {"name": "binary"})()
    with pytest.raises(ValueError, match="already registered"):
        register_task(impostor)  # type: ignore[arg-type]


def test_old_target_state_still_loads() -> None:
    """Packages written before the task table kept mean and std for classifiers, classes and counts for
    regression (empty): both load."""
    old = {"classes": ["no", "yes"], "mean": 0.0, "std": 1.0, "counts": [3, 4]}
    config = TargetConfig(name="y", task="binary")
    assert get_task("binary").target(config, old).state() == {"classes": ["no", "yes"], "counts": [3, 4]}
    old = {"classes": [], "mean": 5.0, "std": 2.0, "counts": []}
    config = TargetConfig(name="y", task="regression")
    assert get_task("regression").target(config, old).state() == {"mean": 5.0, "std": 2.0}


@pytest.mark.parametrize(("values", "positive", "classes"), [
    (["yes", "no", "yes"], "no", ["yes", "no"]),  # the default would make 'yes' positive
    (["malignant", "benign", "benign"], "benign", ["malignant", "benign"]),
    ([1, 0, 0], 0, [1, 0]),  # a YAML number names the label as the column spells it
    ([True, False, True], False, [True, False]),
    (["yes", "no", "yes"], False, ["yes", "no"]),  # YAML read an unquoted `no` as false
    (["Y", "N"], True, ["N", "Y"]),
])
def test_positive_class_orders_the_binary_classes(values: list[Any], positive: Any, classes: list[Any]) -> None:
    config = TargetConfig(name="y", task="binary", positive_class=positive)
    encoder = get_task("binary").target(config)
    encoder.fit(column(values))
    assert encoder.classes == classes  # [negative, positive]: the model's output is P(positive)
    assert encoder.transform(column(values), "train").tolist() == [float(classes.index(value)) for value in values]


@pytest.mark.parametrize(("values", "positive", "fragments"), [
    (["yes", "no"], "maybe", ["target.positive_class 'maybe'", "target 'y'", "['no', 'yes']"]),
    (["si", "no"], True, ["target.positive_class 'true'", "quote the label"]),  # YAML read `yes` as true
])
def test_a_positive_class_that_is_not_a_label_names_the_key(values: list[str], positive: Any,
                                                             fragments: list[str]) -> None:
    encoder = get_task("binary").target(TargetConfig(name="y", task="binary", positive_class=positive))
    with pytest.raises(InputError) as caught:
        encoder.fit(column(values))
    assert all(fragment in str(caught.value) for fragment in fragments), str(caught.value)
