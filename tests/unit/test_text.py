"""Text as tokens: trained BPE / WordPiece tokenizers, ids and masks, truncation, empty texts, the saved tokenizer,
and how `tokenizer: auto` follows model.type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from luodi.config import LuodiConfig, TextFeature, validate_config
from luodi.errors import InputError
from luodi.features.encoders import TextEncoder, build_encoder
from luodi.features.pipeline import FeaturePipeline, asset_folder
from luodi.features.text import TOKENIZER_FILE, TokenEncoder
from luodi.features.unseen import Unseen

WORDS = ["goal", "match", "team", "chip", "software", "robot", "bread", "soup", "oven", "the", "a", "said"]


def corpus(rows: int = 120, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, rng.integers(2, 12))) for _ in range(rows)]


def column(values: list[Any]) -> pa.ChunkedArray:
    return pa.chunked_array([pa.array(values, pa.string())])


def fitted(tokenizer: str = "bpe", **settings: Any) -> TokenEncoder:
    config = TextFeature(name="body", tokenizer=tokenizer, vocab_size=300, max_length=8, **settings)  # type: ignore[arg-type]
    encoder = build_encoder(config)
    assert isinstance(encoder, TokenEncoder)
    encoder.fit(column(corpus()))
    return encoder


@pytest.mark.parametrize("tokenizer", ["bpe", "wordpiece"])
def test_ids_and_mask_follow_the_contract(tokenizer: str) -> None:
    encoder = fitted(tokenizer)
    out = encoder.transform(column(["the goal", "soup " * 20, "", None]), Unseen())
    ids, mask = out["body"], out["body.mask"]
    assert ids.shape == mask.shape == (4, 8) and ids.dtype == np.int64 and mask.dtype == np.bool_
    assert mask[0].sum() >= 2 and mask[1].all()  # a long text is truncated to max_length
    assert not mask[2].any() and not mask[3].any()  # empty and missing texts: no tokens
    assert (ids[~mask] == encoder.pad_id).all()
    assert ids.max() < encoder.vocab_size <= 300
    assert mask[:, 0].tolist() == [True, True, False, False] and not (mask[:, 1:] & ~mask[:, :-1]).any()


def test_lowercase_setting() -> None:
    lower, cased = fitted(lowercase=True), fitted(lowercase=False)
    assert lower.transform(column(["GOAL"]), Unseen())["body"].tolist() == \
        lower.transform(column(["goal"]), Unseen())["body"].tolist()
    assert cased.transform(column(["GOAL"]), Unseen())["body"].tolist() != \
        cased.transform(column(["goal"]), Unseen())["body"].tolist()


def test_training_is_deterministic() -> None:
    first, second = fitted(), fitted()
    assert first.tokenizer.to_str() == second.tokenizer.to_str()


@pytest.mark.parametrize("tokenizer", ["bpe", "wordpiece"])
def test_saved_tokenizer_restores_the_same_ids(tokenizer: str, tmp_path: Path) -> None:
    encoder = fitted(tokenizer)
    encoder.save_assets(tmp_path)
    assert (tmp_path / TOKENIZER_FILE).is_file()
    state = json.loads(json.dumps(encoder.state()))
    restored = build_encoder(encoder.config, state, assets=tmp_path)
    texts = column(["a robot said", "unseen words zzz", ""])
    for key, array in encoder.transform(texts, Unseen()).items():
        np.testing.assert_array_equal(array, restored.transform(texts, Unseen())[key])


def config_with(model: dict[str, Any], **text: Any) -> LuodiConfig:
    return validate_config({
        "name": "t", "data": {"train": "x.csv"}, "target": {"name": "y", "task": "binary"},
        "input_features": [{"name": "body", "type": "text", **text}], "model": model,
    })


@pytest.mark.parametrize(("model", "expected"), [
    ({"type": "mlp"}, "bag_of_words"), ({"type": "cnn"}, "bag_of_words"), ({"type": "rnn"}, "bpe"),
    ({"type": "transformer"}, "bpe"),
    ({"type": "hf", "path": "./minilm"}, "checkpoint"),
])
def test_auto_tokenizer_follows_the_model_type(model: dict[str, Any], expected: str) -> None:
    feature = config_with(model).input_features[0]
    assert isinstance(feature, TextFeature) and feature.tokenizer == expected
    if expected == "checkpoint":
        assert feature.checkpoint == "./minilm"


def test_tokenizer_choices_checked_against_the_model() -> None:
    with pytest.raises(InputError, match="model.type hf reads the ids of its checkpoint's own tokenizer"):
        config_with({"type": "hf", "path": "m"}, tokenizer="bpe")
    with pytest.raises(InputError, match="differs from model.path"):
        config_with({"type": "hf", "path": "m"}, checkpoint="other")
    with pytest.raises(InputError, match="needs input_features\\[body\\].checkpoint"):
        config_with({"type": "rnn"}, tokenizer="checkpoint")
    with pytest.raises(InputError, match="model.type hf needs model.path"):
        config_with({"type": "hf"})
    with pytest.raises(InputError, match="model.path is for model.type hf"):
        config_with({"type": "rnn", "path": "m"})
    with pytest.raises(InputError, match="not divisible by heads"):
        config_with({"type": "transformer", "transformer": {"width": 30, "heads": 4}})


def test_bag_of_words_stays_for_a_standalone_feature() -> None:
    assert isinstance(build_encoder(TextFeature(name="body")), TextEncoder)


def test_pipeline_keeps_the_tokenizer_in_its_assets_folder(tmp_path: Path) -> None:
    config = config_with({"type": "transformer"}, vocab_size=60, max_length=8)
    table = pa.table({"body": corpus(), "y": ["a", "b"] * 60})
    pipeline = FeaturePipeline.fit(config, table)
    pipeline.save_assets(tmp_path)
    assert (asset_folder(tmp_path, 0, "body") / TOKENIZER_FILE).is_file()
    restored = FeaturePipeline.from_state(config, json.loads(json.dumps(pipeline.state())), assets=tmp_path)
    first = pipeline.transform(table, "t", with_target=True).inputs
    again = restored.transform(table, "t", with_target=True).inputs
    assert set(first) == {"dense", "categorical", "body", "body.mask"}
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    item = pipeline.input_schema()[0]
    assert item["tokenizer"] == "bpe" and item["max_length"] == 8
