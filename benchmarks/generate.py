"""Continuous batching: 8 concurrent OpenAI-style streams through `luodi serve` against the same 8 requests sent one
after another to the same server.

Two GPT text_generation packages are trained for one epoch on generated sentences (speed is measured, not
accuracy): tiny (2 layers, width 64) and small (4 layers, width 256, 4 heads), both with a 256-token context. Each
request is a streamed /v1/completions of `--tokens` greedy tokens (ignore_eos, so every request generates the
same count) from its own prompt. The server runs in its own process with its default settings; the client is
httpx in this one. Variants take turns in rounds and the report is the median per-round ratio of generated
tokens/s, concurrent / sequential (goal >= 3: the decode step of 8 sequences is one batch).

    .venv/bin/python benchmarks/generate.py            # both models, about 2 minutes
    .venv/bin/python benchmarks/generate.py --quick    # the tiny model, one round
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from results_file import write_result  # benchmarks/ is on sys.path when a script runs
from serve_common import luodi_server

import luodi.api as api

MODELS = {"tiny": ["model.gpt.layers=2", "model.gpt.width=64", "model.gpt.heads=2"],
          "small": ["model.gpt.layers=4", "model.gpt.width=256", "model.gpt.heads=4"]}
ANIMALS = ("cat", "dog", "fish", "bird", "horse", "mouse", "fox", "owl")


def train(folder: Path, name: str) -> Path:
    """Train `name` into the store folder/home; returns the store."""
    rng = np.random.default_rng(0)
    lines = [f"the {ANIMALS[rng.integers(8)]} walks to the {ANIMALS[rng.integers(8)]} near the old barn."
             for _ in range(600)]
    (folder / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    api.init(folder / "corpus.txt", task="text_generation", output=folder / f"{name}.yaml")
    overrides = ["target.text.vocab_size=400", "target.text.context_length=256", "trainer.epochs=1",
                 "trainer.batch_size=16", "runtime.device=cpu", f"name={name}", *MODELS[name]]
    api.train(folder / f"{name}.yaml", overrides, home=folder / "home", progress="silent")
    return folder / "home"


async def stream(client: httpx.AsyncClient, model: str, prompt: str, tokens: int) -> tuple[int, float]:
    """One streamed completion: (tokens generated, seconds to the first token)."""
    body = {"model": model, "prompt": prompt, "max_tokens": tokens, "temperature": 0, "stream": True,
            "ignore_eos": True, "stream_options": {"include_usage": True}}
    started, first, generated = time.perf_counter(), 0.0, 0
    async with client.stream("POST", "/v1/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = orjson.loads(line[6:])
            if chunk["choices"] and not first:
                first = time.perf_counter() - started
            if chunk.get("usage"):
                generated = chunk["usage"]["completion_tokens"]
    return generated, first


async def run(port: int, model: str, tokens: int, concurrent: bool) -> dict[str, Any]:
    prompts = [f"the {animal} walks to" for animal in ANIMALS]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
        started = time.perf_counter()
        if concurrent:
            results = await asyncio.gather(*(stream(client, model, prompt, tokens) for prompt in prompts))
        else:
            results = [await stream(client, model, prompt, tokens) for prompt in prompts]
        seconds = time.perf_counter() - started
    generated = sum(count for count, _ in results)
    assert generated == tokens * len(prompts), generated
    return {"tokens_per_s": generated / seconds, "seconds": seconds,
            "ttft_p50_ms": 1000 * statistics.median(first for _, first in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the tiny model, one round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128, help="tokens per request")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--threads", type=int, default=1, help="the server's model threads (luodi serve --threads)")
    options = parser.parse_args()
    names, count = (["tiny"], 1) if options.quick else (options.models, options.rounds)
    report: dict[str, Any] = {"machine": platform.platform(), "tokens": options.tokens, "requests": 8,
                              "threads": options.threads,
                              "models": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for name in names:
            folder = Path(scratch) / name
            folder.mkdir()
            home = train(folder, name)
            with luodi_server(name, home, "--threads", str(options.threads)) as server:
                asyncio.run(run(server.port, name, 8, True))  # warm the worker and the client
                rounds: list[dict[str, Any]] = []
                for index in range(count):
                    order = [True, False] if index % 2 == 0 else [False, True]
                    measured = {concurrent: asyncio.run(run(server.port, name, options.tokens, concurrent))
                                for concurrent in order}
                    rounds.append({"concurrent": measured[True], "sequential": measured[False],
                                   "ratio": measured[True]["tokens_per_s"] / measured[False]["tokens_per_s"]})
            ratio = statistics.median(entry["ratio"] for entry in rounds)
            report["models"][name] = {"rounds": rounds, "ratio": ratio}
            last = rounds[-1]
            print(f"{name}: 8 concurrent streams {last['concurrent']['tokens_per_s']:.0f} tokens/s, one after "
                  f"another {last['sequential']['tokens_per_s']:.0f} tokens/s; ratio {ratio:.2f}x (goal >= 3); "
                  f"TTFT p50 {last['concurrent']['ttft_p50_ms']:.1f} ms concurrent, "
                  f"{last['sequential']['ttft_p50_ms']:.1f} ms alone")
    write_result("generate", report, options.quick)


if __name__ == "__main__":
    main()
