"""OpenAI-compatible /v1/embeddings on a tiny text classifier trained here (a Transformer over BPE tokens), called with
the official `openai` client: the vectors are the in-process embeddings, a request's texts run in one forward pass
and concurrent requests share batches (with predictions) on the model's batcher, deadlines hold, and refusals name
the field in OpenAI's error shape."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pandas as pd
import pytest

import luodi.api as api
from luodi.serve.model import Loaded, Reference, load_version
from luodi.serve.server import Running, background
from luodi.serve.settings import ServeConfig, make_config
from luodi.store import Store

KEY = "embeddings-test-key-0123456789"
TOPICS = {"sport": ["the striker scored a late goal", "the team won the final match", "a record run on the track"],
          "money": ["shares fell after the report", "the bank raised its interest rate", "profits beat forecasts"]}


@pytest.fixture(scope="module")
def home(trained_package: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the session's tabular `tiny` and `words`: a Transformer text classifier trained here."""
    folder = tmp_path_factory.mktemp("embeddings")
    home = folder / "home"
    shutil.copytree(trained_package.parents[2], home)
    rows = [{"body": text, "topic": topic} for topic, texts in TOPICS.items() for text in texts] * 8
    pd.DataFrame(rows).to_csv(folder / "words.csv", index=False)
    config = {"name": "words", "data": {"train": str(folder / "words.csv")},
              "target": {"name": "topic", "task": "binary"},
              "input_features": [{"name": "body", "type": "text", "tokenizer": "bpe", "vocab_size": 300,
                                  "max_length": 32}],
              "model": {"type": "transformer", "transformer": {"layers": 1, "heads": 2, "width": 16},
                        "hidden_sizes": []},
              "trainer": {"epochs": 2, "batch_size": 16}, "runtime": {"device": "cpu", "threads": 1},
              "report": {"enabled": False}}
    api.train(config, home=home, progress="silent")
    return home


forward_calls: list[int] = []


def counting_loader(reference: Reference, config: ServeConfig) -> Loaded:
    """The real package, counting the rows of every forward pass of its text encoder."""
    loaded = load_version(reference, config)
    for module in loaded.package.model.encoders:  # type: ignore[union-attr]
        module.register_forward_hook(lambda _module, inputs, _output: forward_calls.append(len(inputs[0]["body"])))
    return loaded


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[Running]:
    with background([Reference("words", home), Reference("tiny", home)], make_config(port=0, reload_interval_s=0,
                    max_rows=16, max_string_length=200), home, loader=counting_loader) as running:
        yield running


@pytest.fixture
def client(server: Running) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0) as opened:
        yield opened


def test_vectors_are_the_in_process_embeddings_in_one_batch(home: Path, client: openai.OpenAI) -> None:
    texts = [text for group in TOPICS.values() for text in group] + ["a goal", "rates"]
    expected = api.embed(Store(home).resolve("words").path, texts)
    assert expected.shape == (len(texts), 16) and expected.dtype == np.float32
    forward_calls.clear()
    answer = client.embeddings.create(model="words", input=texts)  # the client asks for base64 and decodes it
    assert forward_calls == [len(texts)]  # the request's texts went through one forward pass, not one each
    got = np.array([item.embedding for item in answer.data])
    assert [item.index for item in answer.data] == list(range(len(texts)))
    assert np.abs(got - expected).max() < 1e-6
    assert answer.model == "words" and answer.usage.prompt_tokens == answer.usage.total_tokens > len(texts)

    floats = client.embeddings.create(model="words", input="a goal", encoding_format="float")
    assert np.abs(np.array(floats.data[0].embedding) - expected[-2]).max() < 1e-6
    assert client.embeddings.create(model="words", input=texts[:2], dimensions=16).data[1].embedding == \
        pytest.approx(expected[1].tolist(), abs=1e-6)
    tokenizer = api.load_model(Store(home).resolve("words").path).pipeline.encoders[0].tokenizer
    ids = tokenizer.encode("a goal").ids
    assert client.embeddings.create(model="words", input=[ids]).data[0].embedding == \
        pytest.approx(expected[-2].tolist(), abs=1e-6)  # token ids as the encoder reads them: the same vector


def test_refusals_name_the_field(server: Running, client: openai.OpenAI) -> None:
    cases = [({"input": ["x"] * 17}, "input", "at most 16"),
             ({"input": "y" * 201}, "input", "at most 200"),
             ({"input": " ".join(["goal"] * 40)}, "input", "longer than the 32 tokens"),
             ({"input": [[1, 2, 99999]]}, "input", "token ids"),
             ({"input": []}, "input", "not empty"),
             ({"input": "x", "dimensions": 8}, "dimensions", "16 dimensions"),
             ({"input": "x", "encoding_format": "int8"}, "encoding_format", "float or base64")]
    for body, param, words in cases:
        with pytest.raises(openai.UnprocessableEntityError) as raised:
            client.embeddings.create(model="words", **body)  # type: ignore[arg-type]
        error = raised.value.body
        assert isinstance(error, dict) and error["param"] == param and words in error["message"], (body, error)
    with pytest.raises(openai.NotFoundError, match="does not embed text"):
        client.embeddings.create(model="tiny", input="x")  # a table model has no text encoder
    with pytest.raises(openai.NotFoundError, match="no model named"):
        client.embeddings.create(model="nobody", input="x")
    operation = httpx.get(server.url + "/openapi.json").json()["paths"]["/v1/embeddings"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["required"] == ["model", "input"]
    metrics = httpx.get(server.url + "/metrics").text
    assert 'luodi_requests_total{code="200",endpoint="embeddings",model="words"}' in metrics


def test_keys_are_required(home: Path) -> None:
    config = make_config(port=0, reload_interval_s=0, api_keys=(KEY,))
    with background([Reference("words", home)], config, home) as running:
        with openai.OpenAI(base_url=running.url + "/v1", api_key="wrong-key-0123456789", max_retries=0) as wrong, \
                pytest.raises(openai.AuthenticationError):
            wrong.embeddings.create(model="words", input="a goal")
        with openai.OpenAI(base_url=running.url + "/v1", api_key=KEY, max_retries=0) as right:
            assert len(right.embeddings.create(model="words", input="a goal").data[0].embedding) == 16


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from luodi.cli import main

    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def test_luodi_embed_writes_what_the_api_returns(home: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    texts = ["the team won", "the bank fell"]
    pd.DataFrame({"body": texts, "other": [1, 2]}).to_csv(tmp_path / "in.csv", index=False)
    expected = api.embed("words", texts, home=home)
    code, _, err = run_cli(capsys, "embed", "words", "--data", str(tmp_path / "in.csv"), "--out",
                           str(tmp_path / "out.npy"), "--home", str(home))
    assert code == 0 and "wrote 2 embeddings of 16 dimensions" in err
    assert np.array_equal(np.load(tmp_path / "out.npy"), expected)
    code, out, _ = run_cli(capsys, "embed", "words", "--text", texts[0], "--home", str(home), "--json")
    assert code == 0 and json.loads(out)["embeddings"][0] == pytest.approx(expected[0].tolist(), abs=1e-6)
    api.embed("words", tmp_path / "in.csv", out=tmp_path / "out.parquet", home=home)
    frame = pd.read_parquet(tmp_path / "out.parquet")
    assert list(frame["body"]) == texts and np.allclose(np.stack(frame["embedding"]), expected)

    code, _, err = run_cli(capsys, "embed", "tiny", "--text", "x", "--home", str(home))
    assert code == 2 and "does not embed text" in err
    long = tmp_path / "long.txt"
    long.write_text("short one\n\n" + "goal " * 40 + "\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "embed", "words", "--data", str(long), "--home", str(home))
    assert code == 2 and f"{long}: column 'text' row 2 is longer than the 32 tokens" in err, err
    code, out, _ = run_cli(capsys, "embed", "words", "--data", str(long), "--truncate", "--home", str(home))
    assert code == 0 and len(out.splitlines()) == 2


def slow_loader(reference: Reference, config: ServeConfig) -> Loaded:
    """The real package, 50 ms slower per forward pass of its text encoder (so concurrent requests pile up)."""
    loaded = counting_loader(reference, config)
    for module in loaded.package.model.encoders:  # type: ignore[union-attr]
        module.register_forward_hook(lambda *_: time.sleep(0.05))
    return loaded


def test_concurrent_requests_share_batches_with_predictions(home: Path) -> None:
    texts = [f"the team won match {number}" for number in range(8)]
    expected = api.embed("words", texts, home=home)
    config = make_config(port=0, reload_interval_s=0, max_batch_size=64)
    with background([Reference("words", home)], config, home, loader=slow_loader) as running:
        forward_calls.clear()
        with openai.OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0) as client, \
                ThreadPoolExecutor(12) as pool:
            embedded = [pool.submit(client.embeddings.create, model="words", input=text) for text in texts]
            predicted = [pool.submit(httpx.post, running.url + "/v1/models/words/predict",
                                     json={"records": [{"body": text}]}) for text in texts[:4]]
            vectors = [np.array(future.result().data[0].embedding) for future in embedded]
            assert all(future.result().status_code == 200 for future in predicted)
        for vector, alone in zip(vectors, expected, strict=True):
            assert np.abs(vector - alone).max() < 1e-6  # each caller gets its own vector back
        assert len(forward_calls) < len(texts) + 4  # requests were batched together, predictions beside embeddings
        late = httpx.post(running.url + "/v1/embeddings", json={"model": "words", "input": "x"},
                          headers={"X-Timeout-Ms": "1"})
        assert late.status_code == 504 and late.json()["error"]["code"] == 504
