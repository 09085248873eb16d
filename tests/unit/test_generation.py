"""text_generation: the task's examples (loss masking, packing, chat), its metrics, the language models' KV caches
and step-wise generation (greedy, seeded sampling, stop sequences)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import torch

from luodi.config import validate_config
from luodi.models.generation import Sampling, generate_tokens, stream_text
from luodi.models.gpt import GPT
from luodi.models.language import RecurrentLM
from luodi.tasks.generation import IGNORE, TEXT_GENERATION, TokenTarget

WORDS = "the cat sat on a mat while the dog ran to the red ball and then slept under a tree".split()  # noqa: SIM905


def corpus(rows: int = 60, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, int(rng.integers(4, 12)))) for _ in range(rows)]


def config(target: str = "text", **text: Any) -> Any:
    return validate_config({"name": "lm", "data": {"train": "x.txt"},
                            "target": {"name": target, "task": "text_generation",
                                       "text": {"vocab_size": 300, "context_length": 16, **text}},
                            "model": {"type": "gpt", "gpt": {"layers": 2, "width": 32, "heads": 2}}}, "test")


def fitted(table: pa.Table, target: str = "text", **text: Any) -> TokenTarget:
    encoder = TEXT_GENERATION.target(config(target, **text).target)
    encoder.fit_table(table)
    return encoder


def test_config_defaults_and_rules() -> None:
    chosen = config()
    assert chosen.target.text.tokenizer == "bpe" and chosen.input_features == []
    with pytest.raises(Exception, match="not a language model"):
        validate_config({"name": "lm", "data": {"train": "x.txt"}, "target": {"name": "text",
                         "task": "text_generation"}, "model": {"type": "mlp"}}, "test")
    with pytest.raises(Exception, match="at least one column"):
        validate_config({"name": "t", "data": {"train": "x.csv"}, "target": {"name": "y", "task": "regression"}},
                        "test")


def test_prompt_tokens_carry_no_loss_and_completions_end_with_eos() -> None:
    table = pa.table({"prompt": ["Q: cat?\nA:", "Q: dog?\nA:"], "completion": [" the cat sat", " the dog ran"]})
    target = fitted(table, "completion", packing=False)
    assert target.format == "prompt_completion"
    (inputs, labels) = target.windows(target.encode_documents(target.documents(table)))
    for row in range(2):
        prompt = target.tokenizer(table["prompt"][row].as_py(), add_special_tokens=False)["input_ids"]
        completion = target.tokenizer(table["completion"][row].as_py(), add_special_tokens=False)["input_ids"]
        start = 1 + len(prompt)  # the leading end-of-text token, then the prompt
        assert inputs[row, :start].tolist() == [target.eos_id, *prompt]
        # label t is token t+1: prompt positions predict prompt tokens (no loss) until the completion starts
        assert (labels[row, :start - 1] == IGNORE).all()
        trained = labels[row][labels[row] != IGNORE].tolist()
        assert trained == [*completion, target.eos_id]
        assert (labels[row, start - 1 + len(trained):] == IGNORE).all()  # padding


def test_packing_fills_every_window_and_keeps_every_token() -> None:
    table = pa.table({"text": corpus(40)})
    packed, unpacked = fitted(table), fitted(table, packing=False)
    documents = packed.encode_documents(packed.documents(table))
    tokens = sum(len(ids) for ids, _ in documents)
    inputs, labels = packed.windows(documents)
    assert inputs.shape == (math.ceil((tokens - 1) / 16), 16)
    assert (labels[:-1] != IGNORE).sum() >= 0.9 * labels[:-1].size  # only each document's first token is untrained
    stream = np.concatenate([inputs.reshape(-1), labels.reshape(-1)[-1:]])
    assert stream[:tokens].tolist() == [t for ids, _ in documents for t in ids]
    rows, _ = unpacked.windows(unpacked.encode_documents(unpacked.documents(table)))
    assert len(rows) == 40


def test_chat_trains_only_on_assistant_turns_with_the_simple_template() -> None:
    messages = [[{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello friend"},
                 {"role": "user", "content": "bye"}, {"role": "assistant", "content": "see you"}]]
    table = pa.table({"messages": messages})
    target = fitted(table, "messages", packing=False, context_length=64)
    assert target.format == "chat"
    segments = target.documents(table)[0]
    assert [text for text, train in segments if train] == ["hello friend<|endoftext|>", "see you<|endoftext|>"]
    assert "".join(text for text, _ in segments) == target.render(messages[0], generation_prompt=False)
    inputs, labels = target.windows(target.encode_documents([segments]))
    trained = target.tokenizer.decode(labels[0][labels[0] != IGNORE].tolist())
    assert trained == "hello friend<|endoftext|>see you<|endoftext|>"
    assert target.tokenizer.decode(target.prompt_ids("bye")).endswith("<|assistant|>\n")


def test_perplexity_and_token_accuracy_from_reduced_rows() -> None:
    vocab = 7
    logits = torch.zeros(2, 3, vocab)  # uniform: perplexity is the vocabulary size
    logits[0, 0, 4] = 1e-4  # a tie broken toward token 4
    labels = torch.tensor([[4, 2, IGNORE], [1, IGNORE, IGNORE]])
    rows = TEXT_GENERATION.reduce_outputs(logits, labels).numpy()
    assert rows[:, 2].tolist() == [2, 1] and rows[:, 1].tolist() == [1, 0]
    metrics = TEXT_GENERATION.score(None, rows, labels.numpy())  # type: ignore[arg-type]
    assert metrics["perplexity"] == pytest.approx(vocab, rel=1e-3)
    assert metrics["token_accuracy"] == pytest.approx(1 / 3)
    loss = TEXT_GENERATION.loss(None)(logits, labels)  # type: ignore[arg-type]
    assert float(loss) == pytest.approx(TEXT_GENERATION.loss_value(None, rows, labels.numpy()), rel=1e-5)  # type: ignore[arg-type]


def models(vocab: int = 50, context: int = 32) -> list[Any]:
    torch.manual_seed(0)
    gpt = GPT(config().model.gpt, vocab, context)
    rnn = RecurrentLM(validate_config({"name": "lm", "data": {"train": "x.txt"}, "target": {
        "name": "text", "task": "text_generation"}, "model": {"type": "rnn", "rnn": {"hidden_size": 24,
        "embedding_dim": 16, "layers": 2}}}, "test").model, vocab, context)
    return [gpt.eval(), rnn.eval()]


@pytest.mark.parametrize("index", [0, 1], ids=["gpt", "gru"])
def test_kv_cache_gives_the_logits_of_a_full_forward(index: int) -> None:
    model = models()[index]
    ids = torch.randint(0, 50, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model({"tokens": ids})  # (batch, time, vocab)
        logits, cache = model.decode(ids[:, :7], None)
        steps = [logits]
        for position in range(7, 20, 3):  # chunks of several positions, then of one
            logits, cache = model.decode(ids[:, position:position + 3], cache)
            steps.append(logits)
    assert full.shape == (2, 20, 50)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("index", [0, 1], ids=["gpt", "gru"])
def test_greedy_generation_equals_argmax_decoding_without_cache(index: int) -> None:
    model = models()[index]
    prompt = [3, 14, 15, 9]
    generated = list(generate_tokens(model, prompt, Sampling(max_tokens=12), eos_id=None))
    ids = torch.tensor([prompt])
    with torch.no_grad():
        for _ in range(12):
            ids = torch.cat([ids, model({"tokens": ids})[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert generated == ids[0, len(prompt):].tolist()


def test_sampling_is_reproducible_with_a_seed_and_stops_at_the_context() -> None:
    model = models(context=24)[0]
    sampling = Sampling(max_tokens=40, temperature=1.0, top_k=20, top_p=0.9, repetition_penalty=1.2, seed=7)
    first = list(generate_tokens(model, [1, 2, 3], sampling, eos_id=None))
    assert first == list(generate_tokens(model, [1, 2, 3], sampling, eos_id=None))
    assert len(first) == 24 - 3  # the context ends it before max_tokens
    other = Sampling(max_tokens=40, temperature=1.0, top_k=20, top_p=0.9, repetition_penalty=1.2, seed=8)
    assert first != list(generate_tokens(model, [1, 2, 3], other, eos_id=None))
    assert list(generate_tokens(model, [1, 2, 3], Sampling(max_tokens=5, temperature=1.0, top_k=1), None)) == \
        list(generate_tokens(model, [1, 2, 3], Sampling(max_tokens=5), None))  # top-1 sampling is greedy


class Scripted(torch.nn.Module):
    """A 'model' that writes a fixed token sequence: token i follows i - 1."""

    context_length = 100

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def decode(self, ids: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        logits = torch.full((1, ids.shape[1], 30), -1e9)
        logits[0, torch.arange(ids.shape[1]), (ids[0] + 1).clamp(max=29)] = 0.0
        return logits, cache


class Letters:
    """A 'tokenizer': token i is the i-th letter; 29 is end-of-text."""

    eos_id = 29

    def prompt_ids(self, prompt: str) -> list[int]:
        return [ord(char) - ord("a") for char in prompt]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(ord("a") + i) for i in ids)


def test_stop_sequences_end_the_text_before_them_even_across_pieces() -> None:
    def run(**settings: Any) -> list[str]:
        return list(stream_text(Scripted(), Letters(), "a", Sampling(**{"max_tokens": 20, **settings})))

    assert "".join(run(max_tokens=5)) == "bcdef"
    assert "".join(run(stop=("fgh",))) == "bcde"
    pieces = run(stop=("xyz", "ghi"))
    assert "".join(pieces) == "bcdef" and all("g" not in piece for piece in pieces)
    assert "".join(run(stop=("zz",))) == "bcdefghijklmnopqrstu"  # never found: max_tokens ends it
    assert "".join(run(max_tokens=40)) == "bcdefghijklmnopqrstuvwxyz{|}"  # 29 (end-of-text) ends it
