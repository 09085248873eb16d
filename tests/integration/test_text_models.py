"""Text models through the Python API on a generated news table: train, package, load, predict.

Mixed tables (text beside a number and a category) for every text architecture; packages give identical
predictions after a save/load round trip, and an hf package loads with its original checkpoint folder gone.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import luodi.api as api
from luodi.package import load_package

FEATURES = [{"name": "body", "type": "text", "max_length": 24, "vocab_size": 300},
            {"name": "length", "type": "numeric"}, {"name": "desk", "type": "category"}]
TINY = {"rnn": {"hidden_size": 16, "embedding_dim": 16, "bidirectional": True},
        "transformer": {"layers": 2, "heads": 2, "width": 16}}


def config(data: Path, model: dict[str, Any], features: list[dict[str, Any]] | None = None,
           **trainer: Any) -> dict[str, Any]:
    return {
        "name": "news", "data": {"train": str(data)}, "target": {"name": "topic", "task": "multiclass"},
        "input_features": features or FEATURES, "model": {"hidden_sizes": [16], **model},
        "trainer": {"epochs": 3, "batch_size": 32, "seed": 3, "optimizer": {"lr": 0.01}, **trainer},
        "runtime": {"device": "cpu", "threads": 1},
    }


def same_predictions(package: str, data: Path) -> None:
    """Predictions from the loaded package equal those of a second, independent load."""
    first = load_package(package).predict(str(data)).probabilities
    second = load_package(package).predict(str(data)).probabilities
    assert first is not None and second is not None
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("kind", ["rnn", "transformer"])
def test_mixed_table_with_a_sequence_model(kind: str, text_csv, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = text_csv(tmp_path / "news.csv", rows=240)
    result = api.train(config(data, {"type": kind, kind: TINY[kind]}, epochs=6), home=tmp_path / "home",
                       progress="silent")
    assert result.metrics["accuracy"] > 0.6  # three topics: chance is 1/3
    package = Path(result.package)
    assert (package / "tokenizer" / "0-body" / "tokenizer.json").is_file()
    same_predictions(result.package, data)
    raw = api.predict(result.package, [{"body": "the goal of the match", "length": 20, "desk": "home"},
                                       {"body": "", "length": 0, "desk": "world"}])
    assert len(raw) == 2 and raw["topic_prediction"].notna().all()


def test_hf_package_loads_without_its_checkpoint_folder(tiny_checkpoint: Path, text_csv,  # type: ignore[no-untyped-def]
                                                        tmp_path: Path) -> None:
    folder = Path(shutil.copytree(tiny_checkpoint, tmp_path / "bert"))
    data = text_csv(tmp_path / "news.csv", rows=120)
    features = [{"name": "body", "type": "text", "max_length": 24}, *FEATURES[1:]]
    model = {"type": "hf", "path": str(folder), "hf": {"freeze": 1, "layer_lr_decay": 0.8}}
    result = api.train(config(data, model, features, epochs=2), home=tmp_path / "home", progress="silent")
    package = Path(result.package)
    before = load_package(package).predict(str(data)).probabilities
    shutil.rmtree(folder)
    assets = package / "tokenizer" / "0-body"
    assert {path.name for path in assets.iterdir()} == {"tokenizer.json", "config.json"}
    after = load_package(package).predict(str(data)).probabilities
    assert before is not None and after is not None
    np.testing.assert_array_equal(before, after)
    # The package is the weights and the small assets: no second copy of the checkpoint.
    weights = (package / "weights.safetensors").stat().st_size
    # (report.html is the evaluation report, plots included: its size does not depend on the checkpoint)
    assert sum(path.stat().st_size for path in package.rglob("*") if path.name != "report.html") < weights + 200_000
    assert [path.name for path in package.rglob("*.safetensors")] == ["weights.safetensors"]


def test_hf_resume_before_any_checkpoint_starts_from_the_pretrained_weights(
        tiny_checkpoint: Path, text_csv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Ctrl-C at the first step (no checkpoint yet), then resume: the same weights as a run never stopped, so the
    resumed run loaded the checkpoint's weights rather than training the empty architecture."""
    from luodi.train.progress import Silent

    data = text_csv(tmp_path / "news.csv", rows=90)
    features = [{"name": "body", "type": "text", "max_length": 16}]
    settings = config(data, {"type": "hf", "path": str(tiny_checkpoint)}, features, epochs=2)
    straight = api.train(settings, home=tmp_path / "a", progress="silent")

    def interrupt(self: Silent, loss: float | None) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Silent, "step", interrupt)
    with pytest.raises(KeyboardInterrupt):
        api.train(settings, home=tmp_path / "b", progress="silent")
    monkeypatch.undo()
    run = api.list_runs(home=tmp_path / "b")[0]
    resumed = api.train(resume=run.id, home=tmp_path / "b", progress="silent")
    weights = "weights.safetensors"
    assert (Path(straight.package) / weights).read_bytes() == (Path(resumed.package) / weights).read_bytes()


def test_predict_raw_text(text_csv, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = text_csv(tmp_path / "news.csv", rows=120)
    features = [{"name": "body", "type": "text", "max_length": 16, "vocab_size": 300}]
    result = api.train(config(data, {"type": "transformer", "transformer": TINY["transformer"]}, features),
                       home=tmp_path / "home", progress="silent")
    frame = api.predict_text(result.package, ["a new robot chip", "soup"])
    assert list(frame["body"]) == ["a new robot chip", "soup"]
    assert frame.filter(like="topic_probability_").shape == (2, 3)
