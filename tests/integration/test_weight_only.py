"""Int8 weight-only quantization of a trained tiny GPT (optimize/weight_only.py) through the product: `luodi
models quantize` registers a standalone package whose held-out perplexity is within 2% of the float model's, that
loads verified with int8 weights (the package round trip gives the in-memory quantized model's logits exactly),
and that `luodi serve` serves: greedy completions over HTTP equal the quantized package's own generation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import openai
import pytest
import torch
from safetensors import safe_open

import luodi.api as api
from luodi.errors import InputError
from luodi.models.generation import Sampling
from luodi.models.int8 import Int8Linear
from luodi.optimize.weight_only import quantize_weight_only
from luodi.package import WEIGHTS, load_package
from luodi.serve.model import Reference
from luodi.serve.server import background
from luodi.serve.settings import make_config
from luodi.store import Store

ANIMALS = {"cat": "the warm mat", "dog": "the old barn", "fish": "the blue pond", "bird": "the tall tree"}
VERBS = ("runs to", "walks to", "sleeps near")


def corpus(path: Path, sentences: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    names = list(ANIMALS)
    lines = [f"the {animal} {VERBS[rng.integers(len(VERBS))]} {ANIMALS[animal]}."
             for animal in (names[rng.integers(len(names))] for _ in range(sentences))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A store holding `story` (a tiny GPT trained on sentences whose place depends on the animal) and held-out
    text."""
    folder = tmp_path_factory.mktemp("int8")
    train = corpus(folder / "corpus.txt", 800, 0)
    api.init(train, task="text_generation", output=folder / "luodi.yaml")
    overrides = ["target.text.vocab_size=300", "target.text.context_length=64", "model.gpt.layers=2",
                 "model.gpt.width=64", "model.gpt.heads=4", "trainer.epochs=6", "trainer.batch_size=16",
                 "trainer.optimizer.lr=0.005", "trainer.scheduler.warmup_steps=10", "runtime.threads=2",
                 "runtime.device=cpu", "target.text.samples=['the fish']", "name=story"]
    api.train(folder / "luodi.yaml", overrides, home=folder / "home", progress="silent")
    return folder / "home", corpus(folder / "holdout.txt", 150, 1)


def test_quantize_evaluate_round_trip_and_serve(trained: tuple[Path, Path]) -> None:
    home, holdout = trained
    result = subprocess.run([sys.executable, "-m", "luodi.cli", "models", "quantize", "story", "--out", "story-int8",
                             "--home", str(home), "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    quantized = json.loads(result.stdout)
    assert quantized["model"] == "story-int8" and quantized["layers"] == 8
    store = Store(home)
    source, folder = store.resolve("story").path, Path(quantized["package"])
    manifest = json.loads((folder / "package.json").read_text())
    assert manifest["weight_only"]["scheme"] == "int8-per-channel"
    assert manifest["lineage"]["variant"] == "int8_weight_only"
    with safe_open(str(folder / WEIGHTS), "pt") as weights:  # the file holds int8 weights, not float copies
        assert str(weights.get_slice("blocks.0.qkv.weight_int8").get_dtype()) == "I8"
        assert "blocks.0.qkv.weight" not in set(weights.keys())
    assert quantized["bytes"] < (source / WEIGHTS).stat().st_size

    # Held-out perplexity within 2% of the float model's.
    exact = api.evaluate(source, holdout, home=home)["metrics"]["perplexity"]
    approximate = api.evaluate(folder, holdout, home=home)["metrics"]["perplexity"]
    assert abs(approximate / exact - 1) <= 0.02, (approximate, exact)

    # The round trip: the loaded package is the in-memory quantization, bit for bit.
    loaded = load_package(folder)
    assert isinstance(loaded.model.blocks[0].qkv, Int8Linear)
    in_memory = load_package(source)
    quantize_weight_only(in_memory.model)
    tokens = torch.tensor([loaded.pipeline.target.prompt_ids("the bird walks to")])
    with torch.inference_mode():
        assert torch.equal(loaded.model({"tokens": tokens}), in_memory.model({"tokens": tokens}))

    # Served: greedy completions over HTTP, alone and concurrently batched, are the package's own generation.
    prompts = ["the fish sleeps near", "the dog", "the cat runs to", "the bird"]
    expected = ["".join(loaded.generate(prompt, Sampling(max_tokens=10))) for prompt in prompts]
    assert all(expected)
    with background([Reference("story-int8", home)], make_config(port=0, reload_interval_s=0), home) as running, \
            openai.OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0) as client:
        alone = [client.completions.create(model="story-int8", prompt=prompt, max_tokens=10, temperature=0)
                 .choices[0].text for prompt in prompts]
        together = client.completions.create(model="story-int8", prompt=prompts, max_tokens=10, temperature=0)
    assert alone == expected
    assert [choice.text for choice in sorted(together.choices, key=lambda c: c.index)] == expected


def test_quantize_refuses_a_bad_name_and_a_quantized_package(trained: tuple[Path, Path]) -> None:
    home, _ = trained
    result = subprocess.run([sys.executable, "-m", "luodi.cli", "models", "quantize", "story", "--out", "bad name!",
                             "--home", str(home)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--out" in result.stderr + result.stdout
    first = api.quantize_int8("story", "story-q", home=home)
    with pytest.raises(InputError, match="already int8 weight-only quantized"):
        api.quantize_int8(first["package"], "story-qq", home=home)
