"""Text generation through `luodi serve`: continuous batching of OpenAI-style streams, and a Hugging Face causal LM
against Hugging Face's own `generate()` in the same run.

`smollm2` (the default): a Llama with SmolLM2-135M's exact config (width 576, 30 layers, 9 heads, 3 key/value
heads, vocabulary 49152), random-initialized and saved locally (speed does not depend on the weights; `--model DIR`
takes a real checkpoint folder or a luodi package instead), packaged by a one-step full fine-tune at a learning
rate of 1e-9 (so the served weights are the checkpoint's). The server (`luodi serve --threads N`) runs in its own
process; the baseline is `generate()` on the package's own Hugging Face model in this process with the same
threads, on the same prompts (`--prompt-tokens` token ids each, sent as ids so both read the same tokens), greedy,
`--tokens` new tokens each (ignore_eos / min_new_tokens). Per round, in rotating order:

    luodi 8 concurrent    8 streams at once: generated tokens/s
    luodi 8 sequential    the same 8 one after another: tokens/s
    luodi 1 token         the 8 prompts one after another, 1 token each: luodi's time to first token (median),
                          and the batch-1 decode rate = (tokens - 1) / (median sequential request - that time)
    hf batch 8            generate() on the 8 prompts as one static batch: tokens/s
    hf batch 1 fp32/bf16  generate() of one prompt: decode rate = (tokens - 1) / (time - time of 1 token)
    hf prefill            generate() of 1 token: the prompt's forward, HF's time to first token

and the report is each ratio's median over rounds with its range (goals from issue 13: 8 concurrent >= 3x
sequential and >= 1.0x HF batch 8; batch-1 decode >= 1.0x HF fp32; time to first token <= 1.2x HF prefill).
Then batch-1 decode paths of the same model in this process, in rounds: the per-sequence path (the model's own
cache), the slot cache stepped by HF's forward (plain and under bf16 autocast) and by luodi's Llama step (what the
server runs for a Llama-family model, serve/llama_slots.py); and batch-8 paths: generate(), and the slot cache
stepped by HF's forward and by luodi's Llama step, each in this thread and in a new thread (as the server's worker).
`tiny` and `small` are GPT packages trained for one epoch (the first part of this benchmark): only the
concurrent / sequential ratio.

    .venv/bin/python benchmarks/generate.py                        # smollm2, 3 rounds: about 10 minutes on 2 cores
    .venv/bin/python benchmarks/generate.py --models tiny small    # the GPT models, about 2 minutes
    .venv/bin/python benchmarks/generate.py --model ~/SmolLM2-135M # a real checkpoint (or a luodi package)
    .venv/bin/python benchmarks/generate.py --quick                # smollm2, one round of 16 tokens
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import torch
from results_file import write_result  # benchmarks/ is on sys.path when a script runs
from serve_common import luodi_server

import luodi.api as api

MODELS = {"tiny": ["model.gpt.layers=2", "model.gpt.width=64", "model.gpt.heads=2"],
          "small": ["model.gpt.layers=4", "model.gpt.width=256", "model.gpt.heads=4"], "smollm2": []}
ANIMALS = ("cat", "dog", "fish", "bird", "horse", "mouse", "fox", "owl")
# SmolLM2-135M's config.json, as transformers reads it.
SMOLLM2 = {"vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
           "num_attention_heads": 9, "num_key_value_heads": 3, "max_position_embeddings": 8192,
           "rope_theta": 100000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": True, "hidden_act": "silu"}
LLAMA_CPP_TOK_S = 83  # llama.cpp Q4_1, batch 1, 2 threads, measured on this machine (shared/PERFORMANCE.md)


def train(folder: Path, name: str) -> Path:
    """Train GPT `name` into the store folder/home; returns the store."""
    rng = np.random.default_rng(0)
    lines = [f"the {ANIMALS[rng.integers(8)]} walks to the {ANIMALS[rng.integers(8)]} near the old barn."
             for _ in range(600)]
    (folder / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    api.init(folder / "corpus.txt", task="text_generation", output=folder / f"{name}.yaml")
    overrides = ["target.text.vocab_size=400", "target.text.context_length=256", "trainer.epochs=1",
                 "trainer.batch_size=16", "runtime.device=cpu", f"name={name}", *MODELS[name]]
    api.train(folder / f"{name}.yaml", overrides, home=folder / "home", progress="silent")
    return folder / "home"


def write_smollm2(folder: Path) -> Path:
    """A random-initialized Llama of SmolLM2-135M's config and a small BPE tokenizer, saved to `folder`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from luodi.tasks.generation import train_bpe

    tokenizer = train_bpe([f"the {a} walks to the {b} near the old barn." for a in ANIMALS for b in ANIMALS], 400)
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(0)
    eos = tokenizer.eos_token_id
    LlamaForCausalLM(LlamaConfig(**SMOLLM2, bos_token_id=eos, eos_token_id=eos)).save_pretrained(str(folder))
    return folder


def package_checkpoint(folder: Path, checkpoint: Path, threads: int) -> Path:
    """`smollm2` in the store folder/home, packaged from a checkpoint folder by one full fine-tuning step at lr
    1e-9; returns the package."""
    rows = [{"text": f"the {a} walks to the {b}."} for a in ANIMALS for b in ANIMALS[:2]]
    (folder / "rows.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    config = {"name": "smollm2", "data": {"train": str(folder / "rows.jsonl"), "split": {"validation": 0.2,
                                                                                        "test": 0.2}},
              "target": {"name": "text", "task": "text_generation", "text": {"context_length": 256,
                                                                             "samples": ["the cat"]}},
              "model": {"type": "hf", "path": str(checkpoint)},
              "trainer": {"epochs": 1, "batch_size": 16, "optimizer": {"lr": 1e-9}},
              "runtime": {"device": "cpu", "threads": threads}}
    trained = api.train(config, home=folder / "home", progress="silent")
    assert trained.package is not None
    return Path(trained.package)


async def stream(client: httpx.AsyncClient, model: str, prompt: str | list[int], tokens: int) -> dict[str, float]:
    """One streamed completion: tokens generated, seconds to the first token, seconds in all."""
    body = {"model": model, "prompt": prompt, "max_tokens": tokens, "temperature": 0, "stream": True,
            "ignore_eos": True, "stream_options": {"include_usage": True}}
    started, first, generated = time.perf_counter(), 0.0, 0
    async with client.stream("POST", "/v1/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = orjson.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(f"the stream ended with {chunk['error']}")
            if chunk["choices"] and not first:
                first = time.perf_counter() - started
            if chunk.get("usage"):
                generated = chunk["usage"]["completion_tokens"]
    return {"tokens": generated, "first": first, "seconds": time.perf_counter() - started}


async def run(port: int, model: str, prompts: list[Any], tokens: int, concurrent: bool) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
        started = time.perf_counter()
        if concurrent:
            results = await asyncio.gather(*(stream(client, model, prompt, tokens) for prompt in prompts))
        else:
            results = [await stream(client, model, prompt, tokens) for prompt in prompts]
        seconds = time.perf_counter() - started
    generated = sum(result["tokens"] for result in results)
    assert generated == tokens * len(prompts), generated
    return {"tokens_per_s": generated / seconds, "seconds": seconds,
            "ttft_p50_ms": 1000 * statistics.median(result["first"] for result in results),
            "request_p50_s": statistics.median(result["seconds"] for result in results)}


def gpt_ratio(options: argparse.Namespace, scratch: Path, name: str) -> dict[str, Any]:
    """The first part: 8 concurrent / 8 sequential streams of a GPT package."""
    folder = scratch / name
    home = train(folder, name)
    prompts = [f"the {animal} walks to" for animal in ANIMALS]
    with luodi_server(name, home, "--threads", str(options.threads), "--timeout-ms", "600000") as server:
        asyncio.run(run(server.port, name, prompts, 8, True))  # warm the worker and the client
        rounds: list[dict[str, Any]] = []
        for index in range(options.rounds):
            order = [True, False] if index % 2 == 0 else [False, True]
            measured = {concurrent: asyncio.run(run(server.port, name, prompts, options.tokens, concurrent))
                        for concurrent in order}
            rounds.append({"concurrent": measured[True], "sequential": measured[False],
                           "ratio": measured[True]["tokens_per_s"] / measured[False]["tokens_per_s"]})
    ratio = statistics.median(entry["ratio"] for entry in rounds)
    last = rounds[-1]
    print(f"{name}: 8 concurrent streams {last['concurrent']['tokens_per_s']:.0f} tokens/s, one after "
          f"another {last['sequential']['tokens_per_s']:.0f} tokens/s; ratio {ratio:.2f}x (goal >= 3); "
          f"TTFT p50 {last['concurrent']['ttft_p50_ms']:.1f} ms concurrent, "
          f"{last['sequential']['ttft_p50_ms']:.1f} ms alone")
    return {"rounds": rounds, "ratio": ratio}


def hf_generate(model: Any, prompts: list[list[int]], tokens: int) -> float:
    """Seconds for Hugging Face's greedy generate() of exactly `tokens` new tokens after each prompt (one batch)."""
    ids = torch.tensor(prompts)
    started = time.perf_counter()
    with torch.inference_mode():
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens, min_new_tokens=tokens,
                       do_sample=False, pad_token_id=0)
    return time.perf_counter() - started


def hf_variants(port: int, served: str, backbone: Any, prompts: list[list[int]], tokens: int
                ) -> dict[str, Callable[[], dict[str, float]]]:
    """Every measured variant of the Hugging Face comparison, by name."""
    half = copy.deepcopy(backbone).to(torch.bfloat16)

    def decode_rate(model: Any) -> dict[str, float]:
        whole, first = hf_generate(model, prompts[:1], tokens), hf_generate(model, prompts[:1], 1)
        return {"decode_tokens_per_s": (tokens - 1) / (whole - first), "prefill_ms": 1000 * first}

    return {
        "luodi 8 concurrent": lambda: asyncio.run(run(port, served, prompts, tokens, True)),
        "luodi 8 sequential": lambda: asyncio.run(run(port, served, prompts, tokens, False)),
        "luodi 1 token": lambda: asyncio.run(run(port, served, prompts, 1, False)),
        "hf batch 8": lambda: {"tokens_per_s": len(prompts) * tokens / hf_generate(backbone, prompts, tokens)},
        "hf batch 1 fp32": lambda: decode_rate(backbone),
        "hf batch 1 bf16": lambda: decode_rate(half),
    }


def lever_variants(model: Any, prompt: list[int], tokens: int) -> dict[str, Callable[[], float]]:
    """Batch-1 decode paths of the served model in this process, by name: decode tokens/s of each."""
    from luodi.serve.hf_slots import HFSlots

    def own_cache() -> float:  # the per-sequence path: the model's DynamicCache, grown by concatenation
        logits, cache = model.decode(torch.tensor([prompt]), None)
        started = time.perf_counter()
        for _ in range(tokens - 1):
            logits, cache = model.decode(logits[:, -1:].argmax(-1), cache)
        return (tokens - 1) / (time.perf_counter() - started)

    def slot_cache(dtype: torch.dtype | None, build: Callable[[Any, int], Any] = HFSlots) -> Callable[[], float]:
        slots = build(model, 1)  # its own: under autocast the cache holds bf16

        def measure() -> float:
            with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                token = int(slots.prefill([0], [prompt])[0].argmax())
                started = time.perf_counter()
                for _ in range(tokens - 1):
                    token = int(slots.step([0], [token])[0].argmax())
            return (tokens - 1) / (time.perf_counter() - started)
        return measure

    variants = {"own cache (per-sequence path)": own_cache, "slot cache, HF forward": slot_cache(None),
                "slot cache, HF forward, bf16 autocast": slot_cache(torch.bfloat16)}
    if llama_step(model) is not None:
        variants["slot cache, luodi Llama step (the server's)"] = slot_cache(None, llama_step(model))
    return variants


def llama_step(model: Any) -> Callable[[Any, int], Any] | None:
    """Builds luodi's Llama step (serve/llama_slots.py) over the model's weights, shared as the server shares them;
    None when the model is not one it runs (the server then runs HF's forward: the HF lines are its path)."""
    from luodi.serve.llama_slots import LlamaSlots, unsupported

    if unsupported(model) is not None:
        return None

    def build(model: Any, slots: int) -> LlamaSlots:
        fast = LlamaSlots(model, slots)
        fast.share_weights()
        return fast
    return build


def batch_variants(model: Any, prompts: list[list[int]], tokens: int) -> dict[str, Callable[[], float]]:
    """Batch-8 paths in this process, tokens/s prefill included (as "hf batch 8"): HF generate(), the server's slot
    cache stepped in this thread, and the same in a new thread, as the server's worker runs it. Against "luodi 8
    concurrent" they split (b)'s gap into the model step and the serving around it."""
    from luodi.serve.hf_slots import HFSlots

    rows = list(range(len(prompts)))

    def slot_batch(slots: Any) -> Callable[[], float]:
        def measure() -> float:
            started = time.perf_counter()
            with torch.inference_mode():  # per thread
                logits = slots.prefill(rows, prompts)
                for _ in range(tokens - 1):
                    logits = slots.step(rows, logits.argmax(-1).tolist())
            return len(prompts) * tokens / (time.perf_counter() - started)
        return measure

    def new_thread(measure: Callable[[], float]) -> Callable[[], float]:
        def in_thread() -> float:
            result: list[float] = []
            worker = threading.Thread(target=lambda: result.append(measure()))
            worker.start()
            worker.join()
            return result[0]
        return in_thread

    hf = slot_batch(HFSlots(model, len(prompts)))
    variants = {"batch 8: hf generate()": lambda: len(prompts) * tokens / hf_generate(model.backbone, prompts, tokens),
                "batch 8: slot cache, HF forward, this thread": hf,
                "batch 8: slot cache, HF forward, a new thread": new_thread(hf)}
    build = llama_step(model)
    if build is not None:  # the server's step for this model
        fast = slot_batch(build(model, len(prompts)))
        variants["batch 8: luodi Llama step, this thread"] = fast
        variants["batch 8: luodi Llama step, a new thread"] = new_thread(fast)
    return variants


def levers(model: Any, prompts: list[list[int]], tokens: int, count: int) -> dict[str, dict[str, float]]:
    """Batch-1 decode tokens/s of each lever and batch-8 tokens/s of each path in this process, rounds rotating;
    median and range."""
    variants = {**lever_variants(model, prompts[0], tokens), **batch_variants(model, prompts, tokens)}
    names = list(variants)
    measured: dict[str, list[float]] = {name: [] for name in names}
    with torch.inference_mode():
        for measure in variants.values():
            measure()
        for index in range(count):
            for name in names[index % len(names):] + names[:index % len(names)]:
                measured[name].append(variants[name]())
    print("in-process: batch-1 decode tokens/s, batch-8 tokens/s, median [range]:")
    for name, values in measured.items():
        print(f"  {name:<56} {statistics.median(values):8.2f}  [{min(values):.2f} - {max(values):.2f}]")
    return {name: spread(values) for name, values in measured.items()}


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def hf_comparison(options: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """The second part: a Hugging Face causal LM through `luodi serve` against generate() (module docstring)."""
    from luodi.package import load_package

    torch.set_num_threads(options.threads)
    source = Path(options.model).expanduser() if options.model else write_smollm2(scratch / "checkpoint")
    given = (source / "package.json").exists()
    package = source if given else package_checkpoint(scratch, source, options.threads)
    loaded = load_package(package)
    backbone = loaded.model.backbone.eval()  # type: ignore[union-attr]
    vocab = min(int(loaded.pipeline.target.vocab_size), 1000)
    rng = np.random.default_rng(0)
    prompts = [[int(token) for token in rng.integers(3, vocab, options.prompt_tokens)] for _ in range(8)]
    tokens = options.tokens
    reference, home = (str(package), scratch / "home") if given else ("smollm2", scratch / "home")
    with luodi_server(reference, home, "--threads", str(options.threads), "--timeout-ms", "600000") as server:
        served = httpx.get(f"http://127.0.0.1:{server.port}/v1/models").json()["data"][0]["id"]
        variants = hf_variants(server.port, served, backbone, prompts, tokens)
        for measure in variants.values():  # warm everything once (the worker's batched-cache check included)
            measure()
        names = list(variants)
        rounds: list[dict[str, dict[str, float]]] = []
        for index in range(options.rounds):
            order = names[index % len(names):] + names[:index % len(names)]
            rounds.append({name: variants[name]() for name in order})
            print(f"round {index + 1}: " + ", ".join(f"{name} {json.dumps(value)}" for name, value in
                                                     rounds[-1].items()), flush=True)
    for r in rounds:  # the same method as HF's: a chunk may hold several tokens (or none: ids outside the tokenizer)
        single, first = r["luodi 8 sequential"]["request_p50_s"], r["luodi 1 token"]["request_p50_s"]
        r["luodi batch 1"] = {"decode_tokens_per_s": (tokens - 1) / (single - first), "ttft_ms": 1000 * first}
    ratios = {
        "(a) 8 concurrent / 8 sequential (goal >= 3)":
            [r["luodi 8 concurrent"]["tokens_per_s"] / r["luodi 8 sequential"]["tokens_per_s"] for r in rounds],
        "(b) 8 concurrent / HF generate batch 8 (goal >= 1.0)":
            [r["luodi 8 concurrent"]["tokens_per_s"] / r["hf batch 8"]["tokens_per_s"] for r in rounds],
        "(c) batch-1 decode / HF generate fp32 (goal >= 1.0)":
            [r["luodi batch 1"]["decode_tokens_per_s"] / r["hf batch 1 fp32"]["decode_tokens_per_s"]
             for r in rounds],
        "(c') batch-1 decode / HF generate bf16":
            [r["luodi batch 1"]["decode_tokens_per_s"] / r["hf batch 1 bf16"]["decode_tokens_per_s"]
             for r in rounds],
        "(d) time to first token / HF prefill (goal <= 1.2)":
            [r["luodi batch 1"]["ttft_ms"] / r["hf batch 1 fp32"]["prefill_ms"] for r in rounds],
        f"batch-1 decode / llama.cpp's {LLAMA_CPP_TOK_S} tok/s":
            [r["luodi batch 1"]["decode_tokens_per_s"] / LLAMA_CPP_TOK_S for r in rounds],
    }
    figures = {
        "luodi 8 concurrent tokens/s": [r["luodi 8 concurrent"]["tokens_per_s"] for r in rounds],
        "luodi 8 sequential tokens/s": [r["luodi 8 sequential"]["tokens_per_s"] for r in rounds],
        "luodi batch-1 decode tokens/s": [r["luodi batch 1"]["decode_tokens_per_s"] for r in rounds],
        "luodi time to first token ms": [r["luodi batch 1"]["ttft_ms"] for r in rounds],
        "hf generate batch 8 tokens/s": [r["hf batch 8"]["tokens_per_s"] for r in rounds],
        "hf generate batch-1 fp32 decode tokens/s": [r["hf batch 1 fp32"]["decode_tokens_per_s"] for r in rounds],
        "hf generate batch-1 bf16 decode tokens/s": [r["hf batch 1 bf16"]["decode_tokens_per_s"] for r in rounds],
        "hf prefill ms": [r["hf batch 1 fp32"]["prefill_ms"] for r in rounds],
    }
    print(f"{source.name}: {options.prompt_tokens}-token prompts, {tokens} greedy tokens, {options.threads} "
          f"threads, median [range] of {len(rounds)} rounds")
    for name, values in {**ratios, **figures}.items():
        print(f"  {name:<56} {statistics.median(values):8.2f}  [{min(values):.2f} - {max(values):.2f}]")
    return {"source": str(source), "rounds": rounds, "ratios": {name: spread(v) for name, v in ratios.items()},
            "figures": {name: spread(v) for name, v in figures.items()},
            "levers": levers(loaded.model, prompts, tokens, options.rounds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of 16 tokens")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64, help="tokens per request")
    parser.add_argument("--prompt-tokens", type=int, default=32, help="tokens per prompt (smollm2)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=["smollm2"])
    parser.add_argument("--model", help="smollm2: a checkpoint folder or luodi package instead of the random one")
    parser.add_argument("--threads", type=int, default=2, help="model threads, the server's and the baseline's")
    options = parser.parse_args()
    if options.quick:
        options.rounds, options.tokens = 1, 16
    report: dict[str, Any] = {"machine": platform.platform(), "tokens": options.tokens, "requests": 8,
                              "threads": options.threads, "models": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for name in options.models:
            (Path(scratch) / name).mkdir()
            report["models"][name] = hf_comparison(options, Path(scratch) / name) if name == "smollm2" \
                else gpt_ratio(options, Path(scratch), name)
    write_result("generate", report, options.quick)


if __name__ == "__main__":
    main()
