"""Explanations of text models through the Python API, on reviews whose label one word decides (rows holding it
are pos): per-column attributions that add up, and token attributions that find the word, for every text
architecture, beside numeric and category columns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import luodi.api as api
from luodi.evaluate.explain import GAP_TOLERANCE

FEATURES = [{"name": "review", "type": "text", "max_length": 16, "vocab_size": 300},
            {"name": "price", "type": "numeric"}, {"name": "city", "type": "category"}]
MODELS = {"rnn": {"type": "rnn", "rnn": {"hidden_size": 16, "embedding_dim": 16}},
          "transformer": {"type": "transformer", "transformer": {"layers": 1, "heads": 2, "width": 16}}}


def train(data: Path, model: dict[str, Any], home: Path, features: list[dict[str, Any]] | None = None,
          **trainer: Any) -> Any:
    config = {
        "name": "reviews", "data": {"train": str(data)}, "target": {"name": "label", "task": "binary"},
        "input_features": features or FEATURES, "model": {"hidden_sizes": [16], **model},
        "trainer": {"epochs": 8, "batch_size": 32, "seed": 1, "optimizer": {"lr": 0.01}, **trainer},
        "runtime": {"device": "cpu", "threads": 1},
    }
    return api.train(config, home=home, progress="silent")


def check_completeness(explanation: Any) -> None:
    """Per-column attributions add up to output - baseline output; each text's tokens to output - the output
    with its words padded, within the tolerance but for a few rows, which a warning counts."""
    assert np.isfinite(explanation.attributions).all()
    gaps = {"the column attributions": explanation.attributions.sum(axis=1) - (
        explanation.outputs - explanation.baseline_outputs)}
    np.testing.assert_allclose(gaps["the column attributions"], explanation.delta, atol=1e-4)
    for column, rows in explanation.tokens.items():
        total = np.array([sum(token["attribution"] for token in tokens) for tokens in rows])
        gaps[f"the token attributions of column {column!r}"] = gap = total - (
            explanation.outputs - explanation.token_baseline_outputs[column])
        np.testing.assert_allclose(gap, explanation.token_delta[column], atol=1e-4)
    for what, gap in gaps.items():
        above = np.abs(gap) > GAP_TOLERANCE
        assert above.mean() < 0.05
        warned = [text for text in explanation.warnings if f" in {what} even at" in text]
        assert len(warned) == above.any() and all(text.startswith(f"{above.sum()} rows leave") for text in warned)


def word_wins(explanation: Any, data: Path, word: str) -> float:
    """Checks each token's span against its row's text; returns the share of the rows holding `word` whose
    largest token attribution is on it."""
    texts = pd.read_csv(data)["review"].tolist()
    wins = holding = 0
    for text, tokens in zip(texts, explanation.tokens["review"], strict=True):
        assert tokens and all(np.isfinite(token["attribution"]) for token in tokens)
        for token in tokens:
            assert text[token["start"]:token["end"]] == token["text"] == token["text"].strip()
        if word in text.split():
            holding += 1
            wins += max(tokens, key=lambda token: token["attribution"])["text"] == word
    return wins / holding


@pytest.mark.parametrize("kind", ["rnn", "transformer"])
def test_mixed_table_gets_column_and_token_attributions(kind: str, review_csv, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = review_csv(tmp_path / "reviews.csv")
    result = train(data, MODELS[kind], tmp_path / "home")
    assert result.metrics["accuracy"] > 0.9
    explanation = api.explain(result.package, data, out=tmp_path / "why.csv")
    assert explanation.features == ["review", "price", "city"]
    check_completeness(explanation)
    assert word_wins(explanation, data, "excellent") > 0.9
    # Where the output moves from the baseline (in most rows holding the word; a model may give some padded texts
    # the positive class already), the text takes the move, not the price or the city.
    holding = pd.read_csv(data)["review"].str.contains("excellent").to_numpy()
    moved = holding & (explanation.outputs - explanation.baseline_outputs > 0.5)
    assert moved.sum() > 0.7 * holding.sum()
    review, price, city = np.abs(explanation.attributions[moved]).T
    assert np.mean((review > price) & (review > city)) > 0.9
    written = pd.read_csv(tmp_path / "why.csv")
    assert [json.loads(cell) for cell in written["review_tokens"]] == explanation.tokens["review"]
    assert "price_tokens" not in written.columns


def test_hf_model_tokens_leave_out_the_added_special_tokens(tiny_checkpoint: Path, review_csv,  # type: ignore[no-untyped-def]
                                                            tmp_path: Path) -> None:
    data = review_csv(tmp_path / "reviews.csv", word="robot")  # a word of the checkpoint's vocabulary
    features = [{"name": "review", "type": "text", "max_length": 16}, *FEATURES[1:]]
    result = train(data, {"type": "hf", "path": str(tiny_checkpoint)}, tmp_path / "home", features, epochs=8,
                   optimizer={"lr": 0.003})
    assert result.metrics["accuracy"] > 0.9
    explanation = api.explain(result.package, data)
    check_completeness(explanation)
    assert not {token["token"] for tokens in explanation.tokens["review"] for token in tokens} & {"[CLS]", "[SEP]"}
    assert word_wins(explanation, data, "robot") > 0.9
