"""Scoring generated completions: chrF as sacreBLEU computes it, exact match after whitespace normalization, and
batched greedy decoding that gives each prompt the tokens it gets alone."""

from __future__ import annotations

import pytest
import torch

from luodi.config import GPTConfig
from luodi.evaluate.completions import chrf, exact_match
from luodi.models.generation import Sampling, generate_tokens, greedy_batch
from luodi.models.gpt import GPT


def test_chrf_is_sacrebleu_s_sentence_chrf2() -> None:
    # The value sacreBLEU's CHRF() (char_order 6, word_order 0, beta 2) gives this pair, as its metric card prints it.
    hypothesis = "The relationship between Obama and Netanyahu is not exactly friendly."
    reference = "The ties between Obama and Netanyahu are not particularly friendly."
    assert chrf(hypothesis, reference) == pytest.approx(61.576379378113785, abs=1e-9)
    assert chrf("same words", "same words") == 100.0
    assert chrf("sa me  words", "same words") == 100.0  # whitespace is not part of the n-grams
    assert chrf("xyz", "abc") == pytest.approx(0.0, abs=1e-9) and chrf("", "abc") == 0.0 and chrf("", "") == 0.0
    assert chrf("abc", "abcd") < chrf("abcd", "abc") < 100  # recall weighs more than precision (beta 2)
    assert chrf("这是一个测试", "这是测试") > 0  # no word segmentation needed


def test_exact_match_normalizes_whitespace_only() -> None:
    assert exact_match("  Paris\n", "Paris") and exact_match("New   York", "New York")
    assert not exact_match("paris", "Paris") and not exact_match("Paris.", "Paris")


def test_greedy_batch_gives_each_prompt_what_it_gets_alone() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(layers=2, width=16, heads=2), vocab_size=50, context_length=24).eval()
    prompts = [[1, 2, 3], [4, 5, 6], [7, 8], [9], [3, 2, 1], [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]]
    limits = [5, 8, 3, 30, 1, 20]  # 30 and 20 run into the context of 24
    eos = int(model.decode(torch.tensor([[4, 5, 6]]), None)[0][0, -1].argmax())  # the second prompt ends at once
    got = greedy_batch(model, prompts, limits, eos_id=eos, batch_size=2)
    alone = [list(generate_tokens(model, prompt, Sampling(max_tokens=limit), eos_id=eos))
             for prompt, limit in zip(prompts, limits, strict=True)]
    assert got == alone
    assert got[1] == [] and len(got[3]) <= 23 and len(got[4]) <= 1
