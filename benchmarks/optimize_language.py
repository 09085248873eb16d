"""`luodi optimize` on a real language model: SmolLM2-135M-Instruct (the test cache, or --smollm2 DIR) packaged by
one step at lr 1e-9 (benchmarks/generate.py), then optimized with a 2% perplexity budget. Prints the table (held-out
perplexity, relative drop, decoding tokens/s at each batch size, ratio to eager fp32, size, peak memory) and writes
benchmarks/results/optimize_language.json.

    .venv/bin/python benchmarks/optimize_language.py --threads 1 --batch-sizes 1   # ~5 minutes, busy 2 cores
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import torch
from generate import package_checkpoint
from generate_int8 import SMOLLM2_CACHE
from results_file import write_result

import luodi.api as api


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smollm2", type=Path, default=SMOLLM2_CACHE, help="a SmolLM2 checkpoint folder")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-sizes", default="1", help="comma-separated")
    parser.add_argument("--max-drop", type=float, default=0.02, help="relative perplexity increase allowed")
    options = parser.parse_args()
    if not (options.smollm2 / "model.safetensors").is_file():
        raise SystemExit(f"{options.smollm2}: no SmolLM2 checkpoint (model.safetensors); pass --smollm2 DIR")
    torch.set_num_threads(options.threads)
    with tempfile.TemporaryDirectory(prefix="luodi-optimize-lm-") as scratch:
        folder = Path(scratch)
        package_checkpoint(folder, options.smollm2, options.threads)
        result = api.optimize("smollm2", max_drop=options.max_drop,
                              batch_sizes=[int(size) for size in options.batch_sizes.split(",")],
                              home=folder / "home")
    for row in result["variants"]:
        if row["status"] != "ok":
            print(f"{row['name']:18} {row['status']}: {row['reason']}")
            continue
        speeds = "  ".join(f"{float(row['throughput'][size]):7.1f} tok/s x{float(row['ratio'][size]):.2f} @{size}"
                           for size in row["throughput"])
        print(f"{row['name']:18} perplexity {row['metric']:.4f} drop {row['drop']:+.4f}  {speeds}  "
              f"{row['size_bytes'] / 1e6:.1f} MB  peak {(row['peak_memory_bytes'] or 0) / 1e6:.0f} MB")
    print(result["verdict"])
    write_result("optimize_language", {"machine": platform.processor() or platform.machine(),
                                       "threads": options.threads, **result}, quick=False)


if __name__ == "__main__":
    main()
