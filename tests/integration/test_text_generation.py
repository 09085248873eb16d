"""text_generation end to end: a tiny GPT trained from scratch on a generated corpus beats a bigram model of the
same tokens on held-out text, registers a package that loads verified and generates, and evaluates with a report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import luodi.api as api
from luodi.package import load_package
from luodi.tasks.generation import IGNORE

# Each sentence names an animal, a verb, then the place that animal always goes: the place depends on a word two
# or more tokens back, which a bigram model cannot see.
ANIMALS = {"cat": "the warm mat", "dog": "the old barn", "fish": "the blue pond", "bird": "the tall tree",
           "horse": "the green field", "mouse": "the small hole"}
VERBS = ("runs to", "walks to", "hurries to", "looks at", "sleeps near")


def write_corpus(path: Path, sentences: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    names = list(ANIMALS)
    lines = []
    for _ in range(sentences):
        animal = names[rng.integers(len(names))]
        lines.append(f"the {animal} {VERBS[rng.integers(len(VERBS))]} {ANIMALS[animal]}.")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def bigram_perplexity(train: tuple[np.ndarray, np.ndarray], held_out: tuple[np.ndarray, np.ndarray],
                      vocab: int) -> float:
    """Perplexity of an add-0.1-smoothed bigram model of the training windows' (token, next token) pairs on the
    held-out windows' labelled pairs: the same tokens and the same positions the task scores."""
    counts = np.zeros((vocab, vocab))
    inputs, labels = train
    keep = labels != IGNORE
    np.add.at(counts, (inputs[keep], labels[keep]), 1.0)
    probabilities = (counts + 0.1) / (counts + 0.1).sum(axis=1, keepdims=True)
    inputs, labels = held_out
    keep = labels != IGNORE
    return float(np.exp(-np.log(probabilities[inputs[keep], labels[keep]]).mean()))


def test_a_tiny_gpt_from_scratch_beats_a_bigram_and_generates(tmp_path: Path, read_report: object) -> None:
    train, holdout = write_corpus(tmp_path / "corpus.txt", 1500, 0), write_corpus(tmp_path / "holdout.txt", 200, 1)
    home = tmp_path / "home"
    result = api.init(train, task="text_generation", output=tmp_path / "luodi.yaml")
    assert result.task == "text_generation" and "text" in result.features
    overrides = ["target.text.vocab_size=300", "target.text.context_length=48", "model.gpt.layers=2",
                 "model.gpt.width=64", "model.gpt.heads=4", "trainer.epochs=6", "trainer.batch_size=16",
                 "trainer.optimizer.lr=0.003", "trainer.scheduler.warmup_steps=10", "runtime.threads=2",
                 "runtime.device=cpu", "target.text.samples=['the fish sleeps near']"]
    trained = api.train(tmp_path / "luodi.yaml", overrides, home=home, progress="silent")
    assert trained.package is not None and not trained.warnings
    assert {"loss", "perplexity", "token_accuracy"} <= set(trained.metrics)

    package = load_package(trained.package)  # verified: hashes, safetensors header against the architecture
    assert (Path(trained.package) / "tokenizer" / "target" / "tokenizer.json").is_file()
    vocab = package.pipeline.target.vocab_size
    _, train_windows = package.encode(str(train), str(train), with_target=True)
    _, held_windows = package.encode(str(holdout), str(holdout), with_target=True)
    assert train_windows.target is not None and held_windows.target is not None
    bigram = bigram_perplexity((train_windows.inputs["tokens"], train_windows.target),
                               (held_windows.inputs["tokens"], held_windows.target), vocab)

    evaluated = api.evaluate(trained.package, holdout, home=home)
    perplexity = evaluated["metrics"]["perplexity"]
    assert perplexity < 0.8 * bigram, (perplexity, bigram)
    assert evaluated["metrics"]["token_accuracy"] > 0.5
    assert evaluated["metrics"]["loss"] == pytest.approx(np.log(perplexity))

    # Greedy generation completes a sentence with the place its animal goes, streamed in pieces.
    pieces = list(api.generate(trained.package, "the fish sleeps near", max_tokens=12, stop=["."]))
    assert len(pieces) > 1 and "".join(pieces).strip() == "the blue pond"
    shown = subprocess.run([str(Path(sys.executable).parent / "luodi"), "generate", trained.package, "--prompt",
                            "the fish sleeps near", "--max-tokens", "12", "--stop", "."], capture_output=True,
                           text=True, timeout=120)
    assert shown.returncode == 0 and shown.stdout == "".join(pieces) + "\n", shown.stderr
    sampled = "".join(api.generate(trained.package, "the dog", max_tokens=20, temperature=0.8, seed=5))
    assert sampled == "".join(api.generate(trained.package, "the dog", max_tokens=20, temperature=0.8, seed=5))

    page = read_report(Path(evaluated["report"]))  # type: ignore[operator]
    assert page.data["task"] == "text_generation"
    assert page.data["generation"]["perplexity"] == pytest.approx(perplexity)
    samples = page.data["generation"]["samples"]
    assert samples[0]["prompt"] == "the fish sleeps near" and "blue pond" in samples[0]["text"]
    manifest = json.loads((Path(trained.package) / "package.json").read_text())
    assert manifest["output_schema"]["format"] == "text" and re.search("tokenizer/target", json.dumps(
        manifest["files"]))


def test_an_interrupted_run_resumes_with_its_tokenizer_to_the_same_weights(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from luodi.store import Store
    from luodi.train.loop import Callback

    train = write_corpus(tmp_path / "corpus.txt", 300, 2)
    config = {"name": "resumed", "data": {"train": str(train)},
              "target": {"name": "text", "task": "text_generation", "text": {"vocab_size": 300, "context_length": 24}},
              "model": {"type": "rnn", "rnn": {"hidden_size": 32, "embedding_dim": 16}},
              "trainer": {"epochs": 3, "batch_size": 16, "checkpoint_every_steps": 5},
              "runtime": {"device": "cpu", "threads": 1}}
    straight = api.train(config, home=tmp_path / "straight", progress="silent")

    def interrupt(step: int, loss: float | None) -> None:
        if step == 12:
            raise KeyboardInterrupt

    home = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        api.train(config, home=home, progress="silent", callbacks=[Callback(on_step_end=interrupt)])
    (run,) = Store(home).list_runs()
    resumed = api.train(resume=run.id, home=home, progress="silent")
    assert resumed.metrics == straight.metrics
    assert straight.package is not None and resumed.package is not None
    ours, theirs = (load_file(str(Path(package) / "weights.safetensors"))
                    for package in (resumed.package, straight.package))
    assert all(bool((ours[name] == theirs[name]).all()) for name in theirs)
