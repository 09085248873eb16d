"""OpenAI-compatible serving of a Hugging Face causal LM (a tiny random-initialized Llama with grouped-query
attention, fine-tuned with LoRA), called with the official `openai` client: the running sequences decode as one
batch, concurrent greedy streams get the tokens of each request alone, and a client that disconnects frees its
slot at once."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from serving_helpers import concurrently

import luodi.api as api
from llama_helpers import PAIRS, write_checkpoint
from luodi.serve.model import Loaded, Reference, load_version
from luodi.serve.server import Running, background
from luodi.serve.settings import ServeConfig, make_config


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding `llama`: the tiny Llama fine-tuned with LoRA for one epoch on a few chat rows."""
    folder = tmp_path_factory.mktemp("openai-hf")
    checkpoint = write_checkpoint(folder / "checkpoint", num_attention_heads=4, num_key_value_heads=2)
    rows = [{"messages": [{"role": "user", "content": f"what is {q}?"}, {"role": "assistant", "content": a}]}
            for q, a in PAIRS * 4]
    (folder / "chat.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    config = {"name": "llama", "data": {"train": str(folder / "chat.jsonl"), "split": {"validation": 0.2, "test": 0.2}},
              "target": {"name": "messages", "task": "text_generation", "text": {"context_length": 96}},
              "model": {"type": "hf", "path": str(checkpoint), "hf": {"lora": {"enabled": True, "rank": 4}}},
              "trainer": {"epochs": 1, "batch_size": 8}, "runtime": {"device": "cpu", "threads": 1}}
    api.train(config, home=folder / "home", progress="silent")
    return folder / "home"


def slow_loader(reference: Reference, config: ServeConfig) -> Loaded:
    """The real package, with 20 ms added to every model step (so a long stream is still running when cut)."""
    loaded = load_version(reference, config)
    embedding = loaded.package.model.backbone.get_input_embeddings()  # type: ignore[union-attr, operator]
    embedding.register_forward_hook(lambda *_: time.sleep(0.02))
    return loaded


def metric(server: Running, name: str) -> float:
    found = re.search(rf'^{name}{{model="llama"}} (\S+)$', httpx.get(server.url + "/metrics").text, re.MULTILINE)
    return float(found[1]) if found else 0.0


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[Running]:
    with background([Reference("llama", home)], make_config(port=0, reload_interval_s=0), home) as running:
        yield running


def test_concurrent_greedy_streams_of_an_hf_model_run_as_one_batch_and_match_each_request_alone(
        server: Running, caplog: pytest.LogCaptureFixture) -> None:
    prompts = ["what is 2+2?", "what", "what is 5+5? it is", "1+1", "it is four. what is 3+3?", "4+4?"]
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0) as client:
        with caplog.at_level("INFO", logger="luodi.serve"):
            alone = [client.completions.create(model="llama", prompt=prompt, max_tokens=16, temperature=0,
                                               logprobs=1, extra_body={"ignore_eos": True}) for prompt in prompts]
        assert "LlamaForCausalLM: decode steps of all running sequences run as one batch" in caplog.text

        def streamed(prompt: str) -> list[str]:
            tokens: list[str] = []
            for chunk in client.completions.create(model="llama", prompt=prompt, max_tokens=16, temperature=0,
                                                   stream=True, logprobs=1, extra_body={"ignore_eos": True}):
                logprobs = chunk.choices[0].logprobs
                tokens += logprobs.tokens or [] if logprobs is not None else []
            return tokens

        together = concurrently([lambda prompt=prompt: streamed(prompt) for prompt in prompts])
    expected = [completion.choices[0].logprobs.tokens for completion in alone]  # type: ignore[union-attr]
    assert together == expected and all(len(tokens) == 16 for tokens in together)


def test_an_hf_stream_whose_client_disconnects_frees_its_slot(home: Path) -> None:
    with background([Reference("llama", home)], make_config(port=0, reload_interval_s=0), home,
                    loader=slow_loader) as slow:
        with openai.OpenAI(base_url=slow.url + "/v1", api_key="unused", max_retries=0) as client:
            kept = client.completions.create(model="llama", prompt="what is 2+2?", max_tokens=80, stream=True,
                                             stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
            dropped = [client.completions.create(model="llama", prompt=f"what is {q}?", max_tokens=80,
                                                 stream=True, extra_body={"ignore_eos": True}) for q, _ in PAIRS[1:]]
            for stream in [kept, *dropped]:
                next(iter(stream))
            assert metric(slow, "luodi_sequences_running") == 1 + len(dropped)
            for stream in dropped:
                stream.close()
            deadline = time.monotonic() + 1
            while metric(slow, "luodi_sequences_running") != 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert metric(slow, "luodi_sequences_running") == 1  # the dropped ones left; the kept one runs on
            usage = list(kept)[-1].usage  # and ends with all its tokens
            assert usage is not None and usage.completion_tokens == 80
        deadline = time.monotonic() + 1
        while metric(slow, "luodi_sequences_running") != 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert metric(slow, "luodi_sequences_running") == 0
