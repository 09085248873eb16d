"""OpenAI-compatible serving of a text_generation package, called with the official `openai` client: completions,
chat, streaming, continuous batching (concurrent greedy streams match the same requests alone), a disconnect that
frees its slot at once, and refusals that name the field."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from serving_helpers import documented_snippet

import luodi.api as api
from luodi.models.generation import Sampling
from luodi.package import load_package
from luodi.serve.model import Loaded, Reference, load_version
from luodi.serve.server import Running, background
from luodi.serve.settings import ServeConfig, make_config
from luodi.store import Store

ANIMALS = {"cat": "the warm mat", "dog": "the old barn", "fish": "the blue pond", "bird": "the tall tree"}
VERBS = ("runs to", "walks to", "sleeps near")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding `story`: a tiny GPT trained on sentences whose last words depend on the animal."""
    folder = tmp_path_factory.mktemp("openai")
    rng = np.random.default_rng(0)
    names = list(ANIMALS)
    lines = [f"the {animal} {VERBS[rng.integers(len(VERBS))]} {ANIMALS[animal]}."
             for animal in (names[rng.integers(len(names))] for _ in range(800))]
    (folder / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    api.init(folder / "corpus.txt", task="text_generation", output=folder / "luodi.yaml")
    overrides = ["target.text.vocab_size=300", "target.text.context_length=64", "model.gpt.layers=2",
                 "model.gpt.width=32", "model.gpt.heads=2", "trainer.epochs=8", "trainer.batch_size=16",
                 "trainer.optimizer.lr=0.005", "trainer.scheduler.warmup_steps=10", "runtime.threads=2",
                 "runtime.device=cpu", "target.text.samples=['the fish']", "name=story"]
    api.train(folder / "luodi.yaml", overrides, home=folder / "home", progress="silent")
    return folder / "home"


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[Running]:
    with background([Reference("story", home)], make_config(port=0, reload_interval_s=0), home) as running:
        yield running


def slow_loader(reference: Reference, config: ServeConfig) -> Loaded:
    """The real package, with 20 ms added to every model step (so a long stream is still running when cut)."""
    loaded = load_version(reference, config)
    loaded.package.model.embedding.register_forward_hook(lambda *_: time.sleep(0.02))  # type: ignore[union-attr, operator]
    return loaded


def client(server: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture
def openai_client(server: Running) -> Iterator[openai.OpenAI]:
    with client(server) as opened:
        yield opened


def metric(server: Running, name: str) -> float:
    text = httpx.get(server.url + "/metrics").text
    found = re.search(rf'^{name}{{model="story"}} (\S+)$', text, re.MULTILINE)
    return float(found[1]) if found else 0.0


def test_completions_chat_and_models(server: Running, home: Path, openai_client: openai.OpenAI) -> None:
    assert [model.id for model in openai_client.models.list()] == ["story"]
    assert httpx.get(server.url + "/v1/models").json()["models"][0]["name"] == "story"  # luodi's own listing too
    completion = openai_client.completions.create(model="story", prompt="the fish sleeps near", max_tokens=12,
                                                  temperature=0, stop=["."])
    package = load_package(Store(home).resolve("story").path)
    expected = "".join(package.generate("the fish sleeps near", Sampling(max_tokens=12, stop=("."))))
    assert completion.choices[0].text == expected and expected  # what `luodi generate` gives, batched or not
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.prompt_tokens > 0
    assert 0 < completion.usage.completion_tokens <= 12

    long = openai_client.completions.create(model="story", prompt="the dog", max_tokens=5, temperature=0,
                                            logprobs=2, n=2)
    assert [choice.finish_reason for choice in long.choices] == ["length", "length"]
    assert long.choices[0].text == long.choices[1].text  # greedy: both choices alike
    logprobs = long.choices[0].logprobs
    assert logprobs is not None and logprobs.token_logprobs is not None and len(logprobs.token_logprobs) == 5
    assert logprobs.top_logprobs is not None and all(len(top) <= 2 for top in logprobs.top_logprobs)
    assert long.usage is not None and long.usage.completion_tokens == 10

    seeded = [openai_client.completions.create(model="story", prompt="the", max_tokens=8, temperature=1.0,
                                               seed=3).choices[0].text for _ in range(2)]
    assert seeded[0] == seeded[1]

    chat = openai_client.chat.completions.create(model="story", messages=[{"role": "user", "content": "hi"}],
                                                 max_tokens=6, temperature=0)
    assert chat.choices[0].message.role == "assistant" and chat.choices[0].finish_reason in ("stop", "length")
    assert chat.usage is not None and chat.usage.completion_tokens <= 6


def test_streams_end_with_done_and_match_the_whole_answer(server: Running, openai_client: openai.OpenAI) -> None:
    whole = openai_client.completions.create(model="story", prompt="the bird", max_tokens=10, temperature=0)
    chunks = list(openai_client.completions.create(model="story", prompt="the bird", max_tokens=10, temperature=0,
                                                   stream=True, stream_options={"include_usage": True}))
    assert "".join(chunk.choices[0].text for chunk in chunks if chunk.choices) == whole.choices[0].text
    assert chunks[-1].usage is not None and whole.usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens > 0
    chat = list(openai_client.chat.completions.create(
        model="story", messages=[{"role": "user", "content": "the cat"}], max_tokens=6, temperature=0, stream=True))
    assert chat[0].choices[0].delta.role == "assistant" and chat[-1].choices[0].finish_reason is not None
    with httpx.stream("POST", server.url + "/v1/completions", json={
            "model": "story", "prompt": "the", "max_tokens": 3, "stream": True}) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"


def test_concurrent_greedy_streams_get_the_tokens_of_each_request_alone(openai_client: openai.OpenAI) -> None:
    prompts = ["the cat", "the dog walks", "the fish", "the bird runs to the", "the", "the cat sleeps near",
               "the dog", "the bird"]
    alone = [openai_client.completions.create(model="story", prompt=prompt, max_tokens=12, temperature=0,
                                              logprobs=1) for prompt in prompts]
    together: list[list[str]] = [[] for _ in prompts]
    barrier = threading.Barrier(len(prompts))

    def call(index: int) -> None:
        barrier.wait()
        for chunk in openai_client.completions.create(model="story", prompt=prompts[index], max_tokens=12,
                                                      temperature=0, stream=True, logprobs=1):
            logprobs = chunk.choices[0].logprobs
            together[index] += logprobs.tokens or [] if logprobs is not None else []

    threads = [threading.Thread(target=call, args=(index,)) for index in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert together == [completion.choices[0].logprobs.tokens for completion in alone  # type: ignore[union-attr]
                        ] and all(together)


def test_a_client_that_disconnects_mid_stream_frees_its_slot(server: Running, home: Path) -> None:
    with background([Reference("story", home)], make_config(port=0, reload_interval_s=0), home,
                    loader=slow_loader) as slow:
        with client(slow) as slow_client:
            stream = slow_client.completions.create(model="story", prompt="the", max_tokens=60, stream=True,
                                                    extra_body={"ignore_eos": True})  # 60 steps: over a second
            next(iter(stream))
            assert metric(slow, "luodi_sequences_running") == 1
            stream.close()
        deadline = time.monotonic() + 0.5
        while metric(slow, "luodi_sequences_running") != 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert metric(slow, "luodi_sequences_running") == 0
        assert metric(slow, "luodi_generation_tokens_total") < 30
        assert metric(slow, "luodi_time_to_first_token_seconds_count") == 1

        # Streams of 8 choices fill the 64 waiting places (and up to the 16 running slots): then a request gets 429.
        body = {"model": "story", "prompt": "the", "max_tokens": 60, "n": 8, "stream": True, "ignore_eos": True}
        with httpx.Client(base_url=slow.url, timeout=30) as http, contextlib.ExitStack() as streams:
            accepted = 0
            while (response := streams.enter_context(http.stream("POST", "/v1/completions", json=body))
                   ).status_code == 200 and accepted < 11:
                accepted += 1
            assert 8 <= accepted <= 10 and response.status_code == 429
            assert "waiting" in response.read().decode()
            assert metric(slow, "luodi_sequences_waiting") > 0
        deadline = time.monotonic() + 2  # every stream closed: their sequences leave the queue and the batch
        while (metric(slow, "luodi_sequences_running") or metric(slow, "luodi_sequences_waiting")) \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        assert metric(slow, "luodi_sequences_running") == metric(slow, "luodi_sequences_waiting") == 0


@pytest.mark.parametrize(("field", "body"), [
    ("max_tokens", {"prompt": "the", "max_tokens": 0}),
    ("max_tokens", {"prompt": "the", "max_tokens": 5000}),
    ("n", {"prompt": "the", "n": 99}),
    ("prompt", {"prompt": "the cat " * 40}),
    ("temperature", {"prompt": "the", "temperature": 5}),
    ("stop", {"prompt": "the", "stop": ["a", "b", "c", "d", "e"]}),
    ("messages", {"messages": "hello"}),
])
def test_limits_are_refused_naming_the_field(openai_client: openai.OpenAI, field: str, body: dict[str, object]
                                            ) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        if "messages" in body:
            openai_client.chat.completions.create(model="story", **body)  # type: ignore[call-overload]
        else:
            openai_client.completions.create(model="story", **body)  # type: ignore[call-overload]
    assert field in str(raised.value)
    assert raised.value.body is not None and raised.value.body["param"] == field  # type: ignore[index]


def test_the_documented_client_snippet_runs(server: Running, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/serving.md's `openai` client example, run as written against this server (its model is `story`)."""
    documented_snippet("## OpenAI-compatible generation", server.url)
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].strip()  # the completion, then the streamed chat reply
