"""luodi's text models against a default hand-written PyTorch loop: same architecture, same token data.

Workloads (the shapes of ../shared/PERFORMANCE.md, sequence classification into 10 classes):
- gru: token embedding 128 (vocabulary 5000), GRU hidden 256, last state, linear head; 64 tokens; batch 32
- transformer: token embedding 256 (vocabulary 5000) + learned positions, 4 pre-LN encoder layers (d 256,
  4 heads, feed-forward 1024, GELU, dropout 0.1), mean pooling, linear head; 128 tokens; batch 32

Every text is full length, so luodi's dynamic padding has nothing to trim: the comparison is of the training
machinery and the process set-up, not of padding. One epoch per timed run (1024 texts for gru, 384 for
transformer), AdamW lr 1e-3 weight decay 0.01.

- baseline: a hand-written nn.Module of that architecture and the idiomatic loop (shuffled index slicing of
  pre-made tensors, zero_grad, forward, cross-entropy, backward, step), torch's default threads and allocator.
- luodi: the same architecture built by luodi (`RNNEncoder` / `TransformerEncoder` under the combiner MLP with no
  hidden layer) trained by `luodi.train.loop.fit` with luodi's defaults (gradient clipping at 1.0) after
  `apply_runtime` (allocator tuned, threads: auto, which counts the cores free now: on a busy machine it picks
  fewer threads than torch's default; `mixed_precision: auto`, bf16 autocast on a CPU with bf16 instructions).
  Its clock runs from calling `fit` to the end of its last training step:
  the baseline's work, plus fit's set-up. The epoch's validation pass (128 texts) and checkpoint, which the
  baseline does not do, come after; the whole epoch's ratio is printed beside.
- luodi_same_threads: the same, with torch's default thread count pinned (the baseline's): the loop, modules,
  allocator and precision without the thread choice.
- luodi_fp32: the same as luodi with `mixed_precision: off`, to show what bf16 autocast brings.

One-time process costs are paid before the clock starts in both variants: the baseline builds its optimizer
before timing, and luodi's child first builds a throwaway optimizer and computes metrics once (torch's first
optimizer construction and scikit-learn's import take about 3 s together, more than the epoch itself).

Each run is a fresh subprocess (the allocator setting is process-wide); variants take turns in every round and
the report is the median of per-round ratios luodi / baseline on samples per second.

    .venv/bin/python benchmarks/text_models.py            # 3 rounds, about 5 minutes
    .venv/bin/python benchmarks/text_models.py --quick    # 1 round, gru only (< 1 minute)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from typing import Any

from results_file import write_result  # benchmarks/ is on sys.path when a script runs

WORKLOADS: dict[str, dict[str, int]] = {
    "gru": {"vocab": 5000, "length": 64, "batch": 32, "rows": 1024, "embedding": 128, "hidden": 256},
    "transformer": {"vocab": 5000, "length": 128, "batch": 32, "rows": 384, "width": 256, "layers": 4,
                    "heads": 4, "feedforward": 1024},
}
CLASSES, VALIDATION_ROWS, GOAL = 10, 128, 1.0


# ----------------------------------------------------------------------------------------- child side
def data(shape: dict[str, int], rows: int, seed: int) -> tuple[Any, Any]:
    import torch

    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, shape["vocab"], (rows, shape["length"]), generator=generator)
    return ids, torch.randint(0, CLASSES, (rows,), generator=generator)


def baseline_model(workload: str, shape: dict[str, int]) -> Any:
    """The architecture as one would write it by hand."""
    import torch
    from torch import nn

    class GRUClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(shape["vocab"], shape["embedding"], padding_idx=0)
            self.gru = nn.GRU(shape["embedding"], shape["hidden"], batch_first=True)
            self.head = nn.Linear(shape["hidden"], CLASSES)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            _, hidden = self.gru(self.embedding(ids))
            return self.head(hidden[-1])

    class TransformerClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            width = shape["width"]
            self.embedding = nn.Embedding(shape["vocab"], width, padding_idx=0)
            self.positions = nn.Embedding(shape["length"], width)
            self.dropout = nn.Dropout(0.1)
            layer = nn.TransformerEncoderLayer(width, shape["heads"], shape["feedforward"], 0.1, activation="gelu",
                                               batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, shape["layers"], norm=nn.LayerNorm(width),
                                                 enable_nested_tensor=False)
            self.head = nn.Linear(width, CLASSES)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            steps = self.embedding(ids) + self.positions.weight[: ids.shape[1]]
            return self.head(self.encoder(self.dropout(steps)).mean(dim=1))

    return GRUClassifier() if workload == "gru" else TransformerClassifier()


def luodi_model(workload: str, shape: dict[str, int]) -> Any:
    from types import SimpleNamespace

    from luodi.config import ModelConfig
    from luodi.models import build_model

    encoder = SimpleNamespace(name="text", modality="tokens", kind="tensor", vocab_size=shape["vocab"],
                              max_length=shape["length"], pad_id=0)
    if workload == "gru":
        model = ModelConfig(type="rnn", hidden_sizes=[], dropout=0.0, rnn={
            "embedding_dim": shape["embedding"], "hidden_size": shape["hidden"], "pooling": "last"})
    else:
        model = ModelConfig(type="transformer", hidden_sizes=[], dropout=0.0, transformer={
            "layers": shape["layers"], "heads": shape["heads"], "width": shape["width"],
            "feedforward": shape["feedforward"], "positions": "learned", "pooling": "mean", "dropout": 0.1,
            "attention_dropout": 0.1})  # the baseline's nn.TransformerEncoderLayer drops attention weights too
    pipeline = SimpleNamespace(tensor_encoders=lambda: [encoder], dense_width=lambda: 0, categories=lambda: [],
                               target=SimpleNamespace(output_size=lambda: CLASSES))
    return build_model(SimpleNamespace(model=model), pipeline)


def child(workload: str, variant: str, seed: int) -> dict[str, Any]:
    """One timed epoch in this process; returns samples/s and what the process ran with."""
    import tempfile
    import time

    import numpy as np
    import torch

    shape = WORKLOADS[workload]
    rows = shape["rows"]
    if variant.startswith("luodi"):
        from luodi.config import RuntimeConfig, TrainerConfig
        from luodi.tasks.classification import MULTICLASS, classification_metrics
        from luodi.train.loop import Tensors, fit
        from luodi.train.precision import PRECISIONS
        from luodi.train.runtime import apply_runtime

        # luodi_same_threads pins torch's default thread count, as the baseline runs: what remains is the loop, the
        # modules and the allocator, without luodi's load-aware thread choice.
        threads = torch.get_num_threads() if variant == "luodi_same_threads" else "auto"
        precision = "off" if variant == "luodi_fp32" else "auto"  # luodi_fp32: what bf16 autocast adds, taken out
        environment = apply_runtime(RuntimeConfig(threads=threads, mixed_precision=precision), seed,
                                    architecture="rnn" if workload == "gru" else "transformer")
        model = luodi_model(workload, shape)
        ids, target = data(shape, rows + VALIDATION_ROWS, seed)
        mask = torch.ones_like(ids, dtype=torch.bool)
        train = Tensors({"text": ids[:rows], "text.mask": mask[:rows]}, target[:rows])
        validation = Tensors({"text": ids[rows:], "text.mask": mask[rows:]}, target[rows:])
        config = TrainerConfig(epochs=1, batch_size=shape["batch"], scheduler={"type": "none"}, seed=seed,
                               optimizer={"type": "adamw", "lr": 1e-3, "weight_decay": 0.01},
                               early_stopping={"enabled": False})
        # One-time process costs stay out of the clock, as in the baseline, which builds its optimizer before
        # starting it: torch's first optimizer construction (about 1.5 s of imports here) and scikit-learn's import
        # for the validation metrics (about 1.6 s). Both are paid once per process, not per epoch.
        torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])
        classification_metrics(np.arange(CLASSES), np.eye(CLASSES, dtype=np.float32))
        clock = StepClock()
        with tempfile.TemporaryDirectory(prefix="luodi-bench-") as run_dir:
            started = time.perf_counter()
            fit(model, train, validation, config, task=MULTICLASS, loss_fn=torch.nn.CrossEntropyLoss(),
                score=lambda outputs, y: classification_metrics(y, outputs), monitor="loss", mode="min",
                run_dir=__import__("pathlib").Path(run_dir), device=torch.device("cpu"), progress=clock,
                precision=PRECISIONS[environment["mixed_precision"]])
            seconds = time.perf_counter() - started
        threads, allocator = environment["threads"], environment["allocator"]
        steps_seconds = clock.last_step - started  # fit's set-up and its training steps: the baseline's work
        return {"samples_per_s": rows / steps_seconds, "epoch_samples_per_s": rows / seconds,
                "seconds": steps_seconds, "epoch_seconds": seconds, "threads": threads, "allocator": allocator,
                "mixed_precision": environment["mixed_precision"]}
    else:
        torch.manual_seed(seed)
        model = baseline_model(workload, shape)
        ids, target = data(shape, rows, seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
        loss_fn = torch.nn.CrossEntropyLoss()
        started = time.perf_counter()
        model.train()
        order = torch.randperm(rows)
        for start in range(0, rows, shape["batch"]):
            index = order[start:start + shape["batch"]]
            optimizer.zero_grad()
            loss = loss_fn(model(ids[index]), target[index])
            loss.backward()
            optimizer.step()
        seconds = time.perf_counter() - started
        threads, allocator = torch.get_num_threads(), "default"
    return {"samples_per_s": rows / seconds, "epoch_samples_per_s": rows / seconds, "seconds": seconds,
            "epoch_seconds": seconds, "threads": threads, "allocator": allocator}


class StepClock:
    """A `fit` progress reporter that notes when each training step ends: fit's time up to its last step is the
    work the baseline does; the epoch's validation pass and checkpoint come after it."""

    last_step = 0.0

    def start(self, epochs: int, steps_per_epoch: int, epoch: int, step: int) -> None: ...

    def step(self, loss: float | None) -> None:
        import time

        self.last_step = time.perf_counter()

    def epoch_end(self, epoch: int, metrics: dict[str, float], best: bool) -> None: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------- parent side
def run_child(workload: str, variant: str, seed: int) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", workload, variant, str(seed)], capture_output=True,
                          text=True, check=True, cwd=os.path.dirname(os.path.abspath(__file__)))
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def median_ratio(results: dict[str, list[dict[str, Any]]], name: str, key: str = "samples_per_s") -> float:
    """Median over rounds of variant / baseline samples per second (each round's runs ran back to back)."""
    return statistics.median(ours[key] / base[key]
                             for base, ours in zip(results["baseline"], results[name], strict=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round, gru only")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3, quick 1)")
    parser.add_argument("--child", nargs=3, metavar=("WORKLOAD", "VARIANT", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], int(args.child[2]))))
        return 0

    rounds = args.rounds or (1 if args.quick else 3)
    workloads = ["gru"] if args.quick else list(WORKLOADS)
    print(f"text_models: luodi (fit, its rnn / transformer modules, apply_runtime defaults) vs a hand-written "
          f"default loop | torch {__import__('torch').__version__} | each run a fresh process | load average "
          f"{os.getloadavg()[0]:.2f} at start")
    report: dict[str, Any] = {"benchmark": "text_models", "quick": args.quick, "rounds": rounds,
                              "python": platform.python_version(), "workloads": {}}
    passed = True
    for workload in workloads:
        variants = ["baseline", "luodi", "luodi_same_threads", "luodi_fp32"]
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        for round_index in range(rounds):
            shift = round_index % len(variants)
            for variant in variants[shift:] + variants[:shift]:  # rotate who goes first
                results[variant].append(run_child(workload, variant, round_index))
            base, ours, same, fp32 = (results[name][-1] for name in variants)
            print(f"  {workload} round {round_index + 1}/{rounds}: baseline {base['samples_per_s']:.1f} "
                  f"({base['threads']} threads), luodi {ours['samples_per_s']:.1f} ({ours['threads']} threads, "
                  f"allocator {ours['allocator']}, {ours['mixed_precision']}), luodi at {same['threads']} threads "
                  f"{same['samples_per_s']:.1f}, luodi in fp32 {fp32['samples_per_s']:.1f} samples/s | ratio "
                  f"{ours['samples_per_s'] / base['samples_per_s']:.3f}; whole epoch (validation "
                  f"and checkpoint too) luodi {ours['epoch_samples_per_s']:.1f}", flush=True)

        rates = {name: statistics.median(item["samples_per_s"] for item in items) for name, items in results.items()}
        main_ratio, same_ratio = median_ratio(results, "luodi"), median_ratio(results, "luodi_same_threads")
        epoch_ratio = median_ratio(results, "luodi", "epoch_samples_per_s")
        fp32_ratio = median_ratio(results, "luodi_fp32")
        ok = main_ratio >= GOAL
        passed &= ok
        print(f"{workload}: baseline {rates['baseline']:.1f} samples/s, luodi {rates['luodi']:.1f} | luodi/baseline "
              f"{main_ratio:.3f} (at the baseline's thread count {same_ratio:.3f}; in fp32 {fp32_ratio:.3f}; whole "
              f"epoch with luodi's validation pass and checkpoint {epoch_ratio:.3f}) | goal >= {GOAL:.2f}: "
              f"{'MET' if ok else 'MISSED'}")
        report["workloads"][workload] = {"shape": WORKLOADS[workload], "samples_per_s": rates,
                                         "ratio_median": main_ratio, "ratio_same_threads_median": same_ratio,
                                         "ratio_whole_epoch_median": epoch_ratio, "ratio_fp32_median": fp32_ratio,
                                         "runs": results, "goal": GOAL, "met": ok}
    report["all_goals_met"] = passed
    report["load_average_end"] = os.getloadavg()[0]
    print(f"goals {'MET' if passed else 'NOT met'} | load average {os.getloadavg()[0]:.2f} at end")
    write_result("text_models", report, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
