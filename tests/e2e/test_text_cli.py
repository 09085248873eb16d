"""Text through the real CLI: init proposes a text model for long texts, train, predict raw text; bad text input
and bad checkpoint folders exit 2 with a message naming the file, row or missing file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_bad_input import expect_error, nothing_registered

pytestmark = pytest.mark.e2e


def long_texts(path: Path, text_csv) -> Path:  # type: ignore[no-untyped-def]
    """The generated news table with every text repeated to 20+ words (long free text, the main input)."""
    frame = pd.read_csv(text_csv(path, rows=150))
    frame["body"] = (frame["body"] + " ") * 4
    frame[["body", "topic"]].to_csv(path, index=False)
    return path


def test_init_train_and_predict_raw_text(luodi, text_csv, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    long_texts(tmp_path / "news.csv", text_csv)
    assert luodi("init", "--data", "news.csv", "--target", "topic").code == 0
    written = (tmp_path / "luodi.yaml").read_text()
    assert "type: mlp" in written and "--encoder" in written  # the switch to a pretrained encoder is explained
    config = yaml.safe_load(written)
    [feature] = config["input_features"]
    assert {key: feature[key] for key in ("name", "type", "ngrams", "weighting")} == {
        "name": "body", "type": "text", "ngrams": 2, "weighting": "supervised_tfidf"}
    result = luodi("train", "luodi.yaml", "--json", "--set", "trainer.epochs=2", "--set", "runtime.threads=1")
    assert result.code == 0, result.stderr
    package = result.json()["package"]
    predicted = luodi("predict", package, "--text", "the coach and the team", "--text", "", "--json")
    assert predicted.code == 0, predicted.stderr
    rows = predicted.json()["predictions"]
    assert [row["body"] for row in rows] == ["the coach and the team", ""]
    assert all(row["topic_prediction"] in ("sport", "tech", "food") for row in rows)
    expect_error(luodi("predict", package, "--text", "x", "--data", "news.csv"), "--data FILE or --text TEXT")


def test_text_that_is_not_utf8(luodi, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = [b"body,topic"] + [b"plain words here and there,a"] * 10 + [b"caf\xe9 au lait,b"] + [b"more,b"] * 10
    (tmp_path / "latin1.csv").write_bytes(b"\n".join(rows) + b"\n")
    expect_error(luodi("init", "--data", "latin1.csv", "--target", "topic"), "latin1.csv", "column 'body' row 11",
                 "not UTF-8")


def test_empty_text_is_an_error_where_the_config_says_so(luodi, text_csv, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = text_csv(tmp_path / "news.csv", rows=60)
    frame = pd.read_csv(data)
    frame.loc[6, "body"] = "   "
    frame.to_csv(data, index=False)
    config = {"name": "news", "data": {"train": "news.csv"}, "target": {"name": "topic", "task": "multiclass"},
              "input_features": [{"name": "body", "type": "text", "empty": "error"}], "model": {"type": "rnn"}}
    (tmp_path / "news.yaml").write_text(yaml.safe_dump(config))
    expect_error(luodi("train", "news.yaml"), "news.csv", "column 'body' row 7 is an empty text")
    nothing_registered(luodi)


# Every other bad folder (no config.json, no tokenizer, pickled weights, a hub name) is refused the same way,
# through the same checks: tests/unit/test_checkpoint.py.
@pytest.mark.parametrize(("damage", "fragments"), [
    ("model.safetensors", ["has no model.safetensors"]),
    ("auto_map", ["ships its own Python code", "trust_remote_code: true"]),
])
def test_bad_checkpoint_folders(luodi, text_csv, tiny_checkpoint: Path, tmp_path: Path, damage: str,  # type: ignore[no-untyped-def]
                                fragments: list[str]) -> None:
    text_csv(tmp_path / "news.csv", rows=60)
    folder = Path(shutil.copytree(tiny_checkpoint, tmp_path / "bert"))
    path = "bert"
    if damage == "auto_map":
        settings = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**settings, "auto_map": {"AutoModel": "custom.Model"}}))
    else:
        (folder / damage).unlink()
    config = {"name": "news", "data": {"train": "news.csv"}, "target": {"name": "topic", "task": "multiclass"},
              "input_features": [{"name": "body", "type": "text", "max_length": 16}],
              "model": {"type": "hf", "path": path}, "trainer": {"epochs": 1}}
    (tmp_path / "news.yaml").write_text(yaml.safe_dump(config))
    expect_error(luodi("train", "news.yaml"), *fragments)
    nothing_registered(luodi)


CUSTOM_CONFIG = '''from transformers import BertConfig


class TinyConfig(BertConfig):
    model_type = "tiny-remote"
'''
CUSTOM_MODEL = '''from transformers import BertModel

from .configuration_tiny import TinyConfig


class TinyModel(BertModel):
    config_class = TinyConfig
'''


@pytest.fixture
def modules_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """transformers copies a checkpoint's code here before importing it (instead of the user's home)."""
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    return tmp_path / "modules"


def test_checkpoint_code_runs_when_trusted_and_travels_in_the_package(  # type: ignore[no-untyped-def]
        modules_cache: Path, luodi, text_csv, tiny_checkpoint: Path, tmp_path: Path) -> None:
    text_csv(tmp_path / "news.csv", rows=60)
    folder = Path(shutil.copytree(tiny_checkpoint, tmp_path / "custom"))
    (folder / "configuration_tiny.py").write_text(CUSTOM_CONFIG)
    (folder / "modeling_tiny.py").write_text(CUSTOM_MODEL)
    settings = json.loads((folder / "config.json").read_text())
    settings.update(model_type="tiny-remote", auto_map={"AutoConfig": "configuration_tiny.TinyConfig",
                                                        "AutoModel": "modeling_tiny.TinyModel"})
    (folder / "config.json").write_text(json.dumps(settings))
    config = {"name": "news", "data": {"train": "news.csv"}, "target": {"name": "topic", "task": "multiclass"},
              "input_features": [{"name": "body", "type": "text", "max_length": 16}],
              "model": {"type": "hf", "path": "custom", "hf": {"trust_remote_code": True}}, "trainer": {"epochs": 1}}
    (tmp_path / "news.yaml").write_text(yaml.safe_dump(config))
    result = luodi("train", "news.yaml", "--json")
    assert result.code == 0, result.stderr
    package = Path(result.json()["package"])
    assert (package / "tokenizer" / "0-body" / "modeling_tiny.py").is_file()
    shutil.rmtree(folder)  # the package carries the code and the architecture's config
    predicted = luodi("predict", str(package), "--text", "the team", "--json")
    assert predicted.code == 0, predicted.stderr


def test_explain_a_text_model(luodi, review_csv, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    frame = pd.read_csv(review_csv(tmp_path / "reviews.csv", rows=160))
    config = {"name": "reviews", "data": {"train": "reviews.csv"}, "target": {"name": "label", "task": "binary"},
              "input_features": [{"name": "review", "type": "text", "max_length": 16, "vocab_size": 300},
                                 {"name": "price", "type": "numeric"}],
              "model": {"type": "transformer", "transformer": {"layers": 1, "heads": 2, "width": 16},
                        "hidden_sizes": [16]},
              "trainer": {"epochs": 8, "batch_size": 32, "seed": 1, "optimizer": {"lr": 0.01}},
              "runtime": {"threads": 1}}
    (tmp_path / "reviews.yaml").write_text(yaml.safe_dump(config))
    assert luodi("train", "reviews.yaml").code == 0
    new = frame.head(4).drop(columns="label")
    new.to_csv(tmp_path / "new.csv", index=False)
    explained = luodi("explain", "reviews", "--data", "new.csv", "--json", "--out", "why.jsonl")
    assert explained.code == 0, explained.stderr
    printed = explained.json()
    assert set(printed["token_max_delta"]) == {"review"} and len(printed["rows"]) == 4
    for row, text in zip(printed["rows"], new["review"], strict=True):
        tokens = row["tokens"]["review"]
        assert "".join(token["text"] for token in tokens).replace(" ", "") == text.replace(" ", "")  # no padding
        total = sum(token["attribution"] for token in tokens)
        assert total == pytest.approx(row["output"] - row["token_baseline_outputs"]["review"], abs=0.011)
    written = pd.read_json(tmp_path / "why.jsonl", lines=True)
    assert [json.loads(cell) for cell in written["review_tokens"]] == [row["tokens"]["review"]
                                                                       for row in printed["rows"]]
    human = luodi("explain", "reviews", "--data", "new.csv", "--show", "2")
    assert human.code == 0 and human.stdout.count("review tokens (words padded: ") == 2, human.stderr
    new.drop(columns="review").to_csv(tmp_path / "no_text.csv", index=False)
    expect_error(luodi("explain", "reviews", "--data", "no_text.csv"), "no_text.csv", "column 'review' is missing")
