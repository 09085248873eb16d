"""What the serving benchmarks share: packages to serve, server processes, the load generator, ratios.

Every server runs in its own process and the load generator in another (benchmarks/loadgen.py), all on
127.0.0.1. Variants take turns in rounds (the order rotates) and the report is the median of per-round
ratios, since absolute numbers move 15-25% between runs on shared machines.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
LUODI = [PYTHON, "-m", "luodi.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def train_package(folder: Path, name: str, features: int, hidden: list[int], rows: int = 256) -> Path:
    """Train a luodi binary classifier on `features` random numeric columns; returns its store (LUODI_HOME)."""
    import luodi.api as api

    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, features)).round(4)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(features)])
    frame["label"] = np.where(x[:, 0] + 0.5 * x[:, -1] > 0, "yes", "no")
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / f"{name}.csv", index=False)
    config = {"name": name, "data": {"train": str(folder / f"{name}.csv")},
              "target": {"name": "label", "task": "binary"},
              "input_features": [{"name": f"x{i}", "type": "numeric"} for i in range(features)],
              "model": {"hidden_sizes": hidden, "dropout": 0.0},
              "trainer": {"epochs": 1, "batch_size": 64}, "runtime": {"threads": 1}}
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config))
    home = folder / "home"
    api.train(folder / f"{name}.yaml", home=home, progress="silent")
    return home


# The shape of the Transformer baseline in ../shared/PERFORMANCE.md (benchmarks/text_models.py): 4 pre-LN layers,
# width 256, 4 heads, feed-forward 1024, learned positions, mean pooling, a linear head; 128 tokens.
TRANSFORMER = {"layers": 4, "heads": 4, "width": 256, "feedforward": 1024, "positions": "learned",
               "pooling": "mean", "dropout": 0.1}
TEXT_TOKENS, TEXT_WORDS = 128, 200  # words per text: every text is truncated, so every batch is 128 tokens wide


def words(count: int, seed: int) -> list[str]:
    """`count` made-up words from a 1,000-word lexicon (two to four syllables each)."""
    rng = np.random.default_rng(0)
    syllables = [a + b for a in "bdfgklmnprstvz" for b in "aeiou"]
    lexicon = ["".join(rng.choice(syllables, size=int(rng.integers(2, 5)))) for _ in range(1000)]
    return [lexicon[index] for index in np.random.default_rng(seed).integers(0, len(lexicon), size=count)]


def train_text_package(folder: Path, name: str, rows: int = 256) -> Path:
    """Train (one epoch: speed, not accuracy, is measured) a luodi text classifier with the Transformer of
    TRANSFORMER over a BPE tokenizer, on generated texts of TEXT_WORDS words; returns its store (LUODI_HOME)."""
    import luodi.api as api

    frame = pd.DataFrame({"text": [" ".join(words(TEXT_WORDS, seed)) for seed in range(100, 100 + rows)]})
    frame["label"] = np.where(frame["text"].str[0] < "m", "yes", "no")
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / f"{name}.csv", index=False)
    config = {"name": name, "data": {"train": str(folder / f"{name}.csv")},
              "target": {"name": "label", "task": "binary"},
              "input_features": [{"name": "text", "type": "text", "tokenizer": "bpe", "vocab_size": 5000,
                                  "max_length": TEXT_TOKENS}],
              "model": {"type": "transformer", "transformer": TRANSFORMER, "hidden_sizes": [], "dropout": 0.0},
              "trainer": {"epochs": 1, "batch_size": 32}, "runtime": {"threads": 1}}
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config))
    home = folder / "home"
    api.train(folder / f"{name}.yaml", home=home, progress="silent")
    return home


def text_record(seed: int = 1) -> dict[str, str]:
    return {"text": " ".join(words(TEXT_WORDS, seed))}


def record(features: int, seed: int = 1) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    return {f"x{i}": float(v) for i, v in enumerate(rng.normal(size=features).round(4))}


def wait_ready(port: int, path: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
                if response.status in (200, 405):
                    return
        except OSError as error:
            if getattr(error, "code", None) == 405:
                return
        time.sleep(0.2)
    raise RuntimeError(f"server on {port} not ready in {timeout} s")


class Server:
    """A server process on a free port, stopped with SIGTERM at the end of the with-block."""

    def __init__(self, command: list[str], ready_path: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.process = subprocess.Popen([*command, "--port", str(self.port)], env={**os.environ, **(env or {})},
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ready_path = ready_path

    def __enter__(self) -> Server:
        wait_ready(self.port, self.ready_path, self.process)
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def luodi_server(model: str, home: Path, *flags: str) -> Server:
    return Server([*LUODI, "serve", model, "--home", str(home), "--reload-interval", "0", *flags], "/readyz")


def baseline_server(kind: str, *flags: str) -> Server:
    return Server([PYTHON, str(HERE / "serve_baseline.py"), "--kind", kind, *flags], "/predict")


def load(port: int, request: bytes, concurrency: int, duration: float, warmup: float = 0.5) -> dict[str, Any]:
    """Run benchmarks/loadgen.py in its own process against 127.0.0.1:port."""
    with tempfile.NamedTemporaryFile(suffix=".http", delete=False) as handle:
        handle.write(request)
    try:
        done = subprocess.run([PYTHON, str(HERE / "loadgen.py"), "--port", str(port), "--request-file", handle.name,
                               "--concurrency", str(concurrency), "--duration", str(duration), "--warmup",
                               str(warmup)], capture_output=True, text=True, timeout=duration + warmup + 60, check=True)
    finally:
        os.unlink(handle.name)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def post(path: str, body: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None
         ) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def rounds(variants: dict[str, Callable[[], dict[str, Any]]], count: int) -> dict[str, list[dict[str, Any]]]:
    """Run each variant once per round, rotating the order; results per variant in round order."""
    names = list(variants)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for index in range(count):
        order = names[index % len(names):] + names[:index % len(names)]
        for name in order:
            results[name].append(variants[name]())
    return results


def median_ratio(results: dict[str, list[dict[str, Any]]], top: str, bottom: str, key: str = "rps") -> float:
    return round(statistics.median(a[key] / b[key] for a, b in zip(results[top], results[bottom], strict=True)), 3)


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Median rps, p50 and p99 over rounds, and the status codes seen."""
    statuses: dict[str, int] = {}
    for result in results:
        for code, count in result["statuses"].items():
            statuses[code] = statuses.get(code, 0) + count
    return {"rps": round(statistics.median(r["rps"] for r in results), 1),
            "p50_ms": round(statistics.median(r["p50_ms"] for r in results), 3),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in results), 3), "statuses": statuses}
