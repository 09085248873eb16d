"""benchmarks/quality.py's parts on scikit-learn's wine table and a few digits: the split, the files written as a
user has them (read back by luodi's own readers), the baselines and the table. The run itself is slow-marked."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import quality  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)

WINE = next(d for d in quality.DATASETS if d.name == "wine")


def test_split_holds_out_a_stratified_quarter_and_subsamples_every_class() -> None:
    split = quality.split_rows(WINE, max_train=60, max_test=None)
    assert split.rows_total == 178
    assert len(split.train) == 60 and len(split.test) == 45  # a quarter of 178, before subsampling the train file
    assert set(split.train[quality.TARGET]) == set(split.test[quality.TARGET]) == {"class_0", "class_1", "class_2"}
    again = quality.split_rows(WINE, max_train=60, max_test=None)
    pd.testing.assert_frame_equal(split.train, again.train)  # seeded: the same rows every run


def test_files_are_what_luodi_reads(tmp_path: Path) -> None:
    from luodi.data.sources import read_table

    split = quality.split_rows(WINE, max_train=None, max_test=None)
    train, test = quality.write_files(split, tmp_path / "wine")
    assert read_table(train).num_rows == len(split.train) and read_table(test).num_rows == len(split.test)

    rng = np.random.default_rng(0)
    images = pd.DataFrame({quality.IMAGE_COLUMN: list(rng.integers(0, 256, (6, 8, 8), dtype=np.uint8)),
                           quality.TARGET: ["a", "b"] * 3})
    image_split = quality.Split(quality.Dataset("tiny", "image", "test", lambda: (images, None)), images, images, 6)
    folder, _ = quality.write_files(image_split, tmp_path / "images")
    table = read_table(folder)
    assert table.num_rows == 6 and sorted(set(table.column("label").to_pylist())) == ["a", "b"]
    pixels = quality.features("image", images)
    assert pixels.shape == (6, 64) and pixels.min() >= 0.0 and pixels.max() <= 1.0

    signals = pd.DataFrame({quality.SIGNAL_COLUMN: [np.array([0.5, -1.25, 3.0], np.float32)] * 2,
                            quality.TARGET: ["0", "1"]})
    signal_split = quality.Split(quality.Dataset("wave", "signal", "test", lambda: (signals, None)), signals,
                                 signals, 2)
    signal_file, _ = quality.write_files(signal_split, tmp_path / "signal")
    assert pd.read_csv(signal_file)[quality.SIGNAL_COLUMN].tolist() == ["0.5 -1.25 3", "0.5 -1.25 3"]


def test_baselines_score_the_test_file() -> None:
    split = quality.split_rows(WINE, max_train=None, max_test=None)
    scores = quality.run_baselines(split)
    assert list(scores) == ["hist_gradient_boosting"]
    assert 0.85 <= scores["hist_gradient_boosting"]["score"] <= 1.0


def test_image_baselines_include_the_small_cnn() -> None:
    """The small well-tuned CNN (benchmarks/cnn_baseline.py) is scored beside the MLP on the same digits."""
    digits = next(d for d in quality.DATASETS if d.name == "digits")
    split = quality.split_rows(digits, max_train=300, max_test=150)
    scores = quality.run_baselines(split)
    assert list(scores) == ["mlp", "logistic", "small_cnn"]
    assert scores["small_cnn"]["score"] >= 0.85  # 300 8x8 digits: a CNN that learned, not chance (0.1)


def result(tuned: float | None) -> dict:
    luodi = {"metric": "accuracy", "default": {"score": 0.9512, "seconds": 12.3}}
    if tuned is not None:
        luodi["tuned"] = {"score": tuned, "seconds": 80.0}
    return {"dataset": "wine", "kind": "table", "rows": {"total": 178, "train": 133, "test": 45},
            "metric": "accuracy", "luodi": luodi,
            "baselines": {"hist_gradient_boosting": {"score": 0.9778, "seconds": 1.5}},
            "goal": {"baseline": "hist_gradient_boosting", "at_least": 0.9678, "default_met": False}}


def test_table_has_a_row_per_dataset_with_every_column() -> None:
    lines = quality.format_table([result(0.9778), result(None)]).splitlines()
    assert len(lines) == 4 and lines[0].count("|") == lines[2].count("|") == lines[3].count("|") == 10
    assert lines[2] == ("| wine | table | 133 / 45 | accuracy | 0.951 | 0.978 | hist_gradient_boosting 0.978 | "
                        "missed (≥ 0.968) | 12 / 80 / 2 s |")
    assert "| 0.951 | - |" in lines[3] and "12 / - / 2 s" in lines[3]


def test_unknown_dataset_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        quality.main(["--datasets", "winee"])
    assert exit_info.value.code == 2 and "winee" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_run_prints_json(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quality, "write_result", lambda *args: tmp_path / "quality.json")
    assert quality.main(["--datasets", "wine", "--skip-tune", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (wine,) = report["datasets"]
    assert wine["rows"] == {"total": 178, "train": 133, "test": 45}
    assert 0.8 <= wine["luodi"]["default"]["score"] <= 1.0 and "tuned" not in wine["luodi"]
