"""Issue 13's goal (b) measured in blocks instead of interleaved turns: `rounds` of 8 concurrent streams through
`luodi serve` back to back, then (the server idle, its generation worker ended) the same number of Hugging Face
`generate()` static batches of the same 8 prompts in this process, the blocks alternating `blocks` times. Same
model, prompts, threads and tokens as benchmarks/generate.py (whose functions it uses); it prints each round and
the ratio of the medians.

benchmarks/generate.py alternates a served round with in-process HF calls in rotating order, so each served round
starts right after this process's OpenMP team was busy; its served rounds swing by 20% (docs/performance.md). This
one measures each side with the machine to itself.

    .venv/bin/python benchmarks/generate_blocks.py --threads 2            # about 5 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from generate import hf_generate, package_checkpoint, run, write_smollm2  # benchmarks/ is on sys.path
from serve_common import luodi_server

from luodi.package import load_package


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="rounds per block")
    parser.add_argument("--blocks", type=int, default=2, help="served / HF block pairs")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    scratch = Path(tempfile.mkdtemp(prefix="luodi-generate-blocks-"))
    package = package_checkpoint(scratch, write_smollm2(scratch / "checkpoint"), options.threads)
    backbone = load_package(package).model.backbone.eval()  # type: ignore[union-attr]
    vocab = min(int(load_package(package).pipeline.target.vocab_size), 1000)
    rng = np.random.default_rng(0)
    prompts = [[int(token) for token in rng.integers(3, vocab, options.prompt_tokens)] for _ in range(8)]
    served_rates: list[float] = []
    hf_rates: list[float] = []
    with luodi_server("smollm2", scratch / "home", "--threads", str(options.threads), "--timeout-ms",
                      "600000") as server:
        model = httpx.get(f"http://127.0.0.1:{server.port}/v1/models").json()["data"][0]["id"]
        asyncio.run(run(server.port, model, prompts, options.tokens, True))  # warm: the worker's check, caches
        hf_generate(backbone, prompts, options.tokens)
        for block in range(options.blocks):
            for index in range(options.rounds):
                rate = asyncio.run(run(server.port, model, prompts, options.tokens, True))["tokens_per_s"]
                served_rates.append(rate)
                print(f"block {block + 1} luodi 8 concurrent, round {index + 1}: {rate:.1f} tokens/s", flush=True)
            time.sleep(3)  # the server's generation worker ends after 2 s idle: its OpenMP threads stop spinning
            for index in range(options.rounds):
                rate = 8 * options.tokens / hf_generate(backbone, prompts, options.tokens)
                hf_rates.append(rate)
                print(f"block {block + 1} hf generate batch 8, round {index + 1}: {rate:.1f} tokens/s", flush=True)
    served, hf = statistics.median(served_rates), statistics.median(hf_rates)
    print(f"{options.prompt_tokens}-token prompts, {options.tokens} greedy tokens, {options.threads} threads, "
          f"{len(served_rates)} rounds each")
    print(f"  luodi 8 concurrent: median {served:.1f} tokens/s [{min(served_rates):.1f} - {max(served_rates):.1f}]")
    print(f"  hf generate batch 8: median {hf:.1f} tokens/s [{min(hf_rates):.1f} - {max(hf_rates):.1f}]")
    print(f"  (b) luodi / HF, ratio of the medians (goal >= 1.0): {served / hf:.2f}")


if __name__ == "__main__":
    main()
