"""The pure parts of the closed loop: checking labels, joining them to logged rows by request id and position,
live metrics, the production mix, and the retrain decision (margin and gates)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from luodi.config import RetrainConfig
from luodi.errors import InputError
from luodi.jobs.retrain import judge, mixed
from luodi.monitor.feedback import COMPACT_FILES, Labels, feedback_folder, join_labels, read_feedback, write_feedback
from luodi.monitor.live import score_window
from luodi.tasks import OutputSpec

CLASSES = Labels(OutputSpec("prediction", "prediction", "label", parts=("no", "yes"), labels=(False, True)), "churned")
VALUES = Labels(OutputSpec("prediction", "prediction", "number"), "price")


def log(ids: list[str], predictions: list[object], kind: pa.DataType, sizes: list[float]) -> pa.Table:
    stamps = pa.array(np.arange(len(ids)) * 1000 + 1_700_000_000_000, pa.int64()).cast(pa.timestamp("ms", "UTC"))
    inputs = pa.StructArray.from_arrays([pa.array(sizes, pa.float64())], ["size"])
    return pa.table({"timestamp": stamps, "request_id": pa.array(ids, pa.string()), "inputs": inputs,
                     "prediction": pa.array(predictions, kind)})


def test_labels_are_checked_per_entry_and_field() -> None:
    table, problems = CLASSES.check([
        {"request_id": "a", "target": "yes"}, {"request_id": "b", "row": 1, "label": True},
        {"request_id": "c", "churned": "NO"}, {"request_id": "d", "target": "maybe"}, {"target": "no"},
        {"request_id": "e", "row": 1.5, "target": "no"}, "oops", {"request_id": "f"}])
    assert table.column("target").to_pylist() == ["yes", "yes", "no"]
    assert table.column("row").to_pylist() == [0, 1, 0]
    assert [(p.index, p.field) for p in problems] == [(3, "target"), (4, "request_id"), (5, "row"), (6, "entry"),
                                                      (7, "target")]
    numbers, problems = VALUES.check([{"request_id": "a", "target": "2.5"}, {"request_id": "b", "target": "nan"},
                                      {"request_id": "c", "target": True}])
    assert numbers.column("target").to_pylist() == [2.5] and [p.index for p in problems] == [1, 2]


def test_labels_join_by_request_and_position_and_score_live() -> None:
    # request r1 has three rows, r2 one; r3 was never logged (sampled out)
    logged = log(["r1", "r1", "r1", "r2"], ["yes", "no", "yes", "no"], pa.string(), [0.1, 0.2, 3.0, 4.0])
    feedback, _ = CLASSES.check([{"request_id": "r1", "row": 2, "target": "no"},
                                 {"request_id": "r1", "row": 0, "target": "yes"},
                                 {"request_id": "r2", "target": "no"}, {"request_id": "r3", "target": "no"}])
    joined = join_labels(logged, feedback)
    assert joined.column("row").to_pylist() == [0, 2, 0]
    assert joined.column("target").to_pylist() == ["yes", "no", "no"]
    scored = score_window(logged, feedback, CLASSES, {"size": "numeric"})
    assert scored["labelled_rows"] == 3 and scored["unmatched_labels"] == 1
    assert scored["metrics"] == {"accuracy": pytest.approx(2 / 3)}
    assert sum(point["rows"] for point in scored["points"]) == 3
    assert score_window(logged, None, CLASSES, {})["metrics"] == {}


def test_feedback_files_are_compacted_and_the_latest_label_wins(tmp_path: Path) -> None:
    for index in range(COMPACT_FILES + 6):  # one request each, as the server writes them; r0 is relabelled last
        entries = [{"request_id": f"r{index}", "target": "yes"}]
        if index == COMPACT_FILES + 5:
            entries.append({"request_id": "r0", "target": "no"})
        write_feedback(tmp_path, "tiny", CLASSES.check(entries)[0])
    files = list(feedback_folder(tmp_path, "tiny").glob("part-*.parquet"))
    assert len(files) <= COMPACT_FILES
    labels = read_feedback(tmp_path, "tiny")
    assert labels is not None and labels.num_rows == COMPACT_FILES + 6
    by_id = dict(zip(labels.column("request_id").to_pylist(), labels.column("target").to_pylist(), strict=True))
    assert by_id["r0"] == "no" and by_id["r1"] == "yes"


def test_reading_feedback_names_an_unreadable_file_and_has_none_without_a_folder(tmp_path: Path) -> None:
    assert read_feedback(tmp_path, "tiny") is None  # nothing was ever sent
    write_feedback(tmp_path, "tiny", CLASSES.check([{"request_id": "a", "target": "yes"}])[0])
    broken = feedback_folder(tmp_path, "tiny") / "part-9-1.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(InputError, match=r"part-9-1\.parquet: not a readable feedback file"):
        read_feedback(tmp_path, "tiny")


def test_regression_live_error() -> None:
    logged = log(["a", "b"], [1.0, 5.0], pa.float64(), [0.0, 1.0])
    feedback, _ = VALUES.check([{"request_id": "a", "target": 2.0}, {"request_id": "b", "target": 2.0}])
    metrics = score_window(logged, feedback, VALUES, {})["metrics"]
    assert metrics == {"mae": 2.0, "rmse": pytest.approx(np.sqrt(5.0))}


def test_mix_makes_production_the_asked_share() -> None:
    train = pa.table({"x": np.arange(300.0)})
    production = pa.table({"x": np.arange(1000.0, 1040.0)})
    combined = mixed(train, production, 0.5, seed=0)
    assert combined.num_rows == 600
    drawn = combined.column("x").to_numpy()[300:]
    assert set(range(1000, 1040)) <= set(drawn.tolist())  # every production row at least once
    assert mixed(train, production, 0.0, seed=0).num_rows == 300


def test_judge_needs_the_margin_and_the_gates() -> None:
    settings = RetrainConfig(margin=0.02, gates=["loss"], max_drop=0.05)
    champion = {"accuracy": 0.80, "loss": 0.40}
    wins, reason, gates = judge(champion, {"accuracy": 0.85, "loss": 0.38}, "accuracy", settings)
    assert wins and gates[0]["passed"]
    assert not judge(champion, {"accuracy": 0.81, "loss": 0.30}, "accuracy", settings)[0]  # below the margin
    lost, why, _ = judge(champion, {"accuracy": 0.90, "loss": 0.60}, "accuracy", settings)  # loss gate fails
    assert not lost and "loss" in why
    assert judge({"loss": 0.5}, {"loss": 0.3}, "loss", settings)[0]  # lower is better; the metric is no gate
    with pytest.raises(InputError, match="auc"):
        judge(champion, champion, "auc", settings)
