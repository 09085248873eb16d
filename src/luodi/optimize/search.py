"""The variant search: build each variant, score it on the validation split with the task's metric, measure its speed
and size, and choose the fastest one within the accuracy budget, if any beats the original.

Compute only (no store): `api.optimize` reads the splits, calls `search` and registers the choice (publish.py).
A variant is within budget when its metric is at most `max_drop` worse than eager fp32's (the task says which way
is better) and, for a variant meant to compute the same function, its outputs stay within its parity tolerance.
A variant over budget is never chosen, whatever its speed; one that builds but fails is reported with its error.

A language model (optimize/language.py) is scored by its likelihood of the validation windows (perplexity; the drop
is relative: 0.02 is 2% worse) and timed decoding greedy tokens, so its latency is per generated token and its
throughput is tokens per second.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from luodi.errors import InputError
from luodi.features.pipeline import Encoded
from luodi.models.inference import predict_arrays
from luodi.optimize import language
from luodi.optimize.measure import latencies, peak_memory, reset_peak_memory
from luodi.optimize.variants import VARIANTS, Built, Context, Runner, torch_runner
from luodi.package import WEIGHTS, ModelPackage
from luodi.tasks import direction

BASELINE = "eager"


@dataclass
class Row:
    """One variant's line of the table."""

    name: str
    description: str
    status: str  # ok, skipped (does not apply here), failed (error while building or running)
    reason: str = ""
    metric: float | None = None
    drop: float | None = None  # how much worse than eager fp32 (positive: worse), in the metric's units (relative)
    max_abs_diff: float | None = None  # largest difference of activated outputs (per-window mean NLL) from eager
    tolerance: float | None = None
    latency_ms: dict[int, float] = field(default_factory=dict)  # per batch size, median per call (per token)
    ratio: dict[int, float] = field(default_factory=dict)  # latency / eager fp32's, median of per-round ratios
    speed: float | None = None  # geometric mean of `ratio` over the batch sizes (< 1: faster than eager)
    throughput: dict[int, float] = field(default_factory=dict)  # rows (tokens) per second, per batch size
    size_bytes: int | None = None  # the model file the variant's package carries
    peak_memory_bytes: int | None = None  # process peak resident memory while building and scoring it
    build_seconds: float | None = None
    within_budget: bool = False
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("latency_ms", "ratio", "throughput"):
            data[key] = {str(size): value for size, value in data[key].items()}
        return data


@dataclass
class Outcome:
    metric: str
    direction: str
    max_drop: float
    batch_sizes: list[int]
    rows: list[Row]  # the baseline first
    chosen: str | None
    verdict: str  # one sentence: what was chosen and why, or why nothing was
    built: dict[str, Built] = field(default_factory=dict)
    unit: str = "call"  # what latency is per: a call on a batch of rows, or a generated token (language models)

    def row(self, name: str) -> Row:
        return next(row for row in self.rows if row.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "direction": self.direction, "max_drop": self.max_drop,
                "batch_sizes": self.batch_sizes, "variants": [row.to_dict() for row in self.rows],
                "chosen": self.chosen, "verdict": self.verdict, "latency_unit": self.unit}


def default_metric(package: ModelPackage) -> str:
    """The task's first higher-is-better metric (accuracy for classifiers, r2 for values; perplexity for a language
    model, with a relative budget): a budget in points of a
    score reads the same on every dataset, unlike one in units of a loss."""
    if language.is_language(package):  # held-out perplexity, its drop relative
        return "perplexity"
    directions = package.task.directions
    return next((name for name, way in directions.items() if way == "max"),
                next(name for name in directions if name != "loss"))


def drop_of(metric: str, baseline: float, value: float, relative: bool = False) -> float:
    """How much worse `value` is than `baseline` (positive: worse), by the metric's direction; `relative`: as a
    fraction of `baseline` (a language model's perplexity)."""
    worse = baseline - value if direction(metric) == "max" else value - baseline
    return worse / abs(baseline) if relative and baseline else worse


def _score(package: ModelPackage, outputs: np.ndarray, validation: Encoded) -> dict[str, float]:
    assert validation.target is not None
    return package.task.score(package.pipeline.target, outputs, validation.target)


def search(package: ModelPackage, train: Encoded, validation: Encoded, *, workdir: Path, max_drop: float = 0.01,
           metric: str | None = None, batch_sizes: list[int] | tuple[int, ...] = (1, 32),
           variants: list[str] | None = None, threads: int = 1, exclude_nodes: list[str] | None = None,
           fine_tune_steps: int = 100, rounds: int = 5) -> Outcome:
    """Build, score and time every variant (all of `VARIANTS` by default) against eager fp32; choose one."""
    metric = metric or default_metric(package)
    names = [name for name, variant in VARIANTS.items()
             if variant.language == language.is_language(package)] if variants is None else variants
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise InputError(f"--variants: unknown variant {unknown[0]!r} (known: {', '.join(VARIANTS)})")
    if not batch_sizes or any(size < 1 for size in batch_sizes):
        raise InputError(f"--batch-sizes: give positive batch sizes (got {list(batch_sizes)})")
    if max_drop < 0:
        raise InputError(f"--max-drop: {max_drop} is negative; the budget is how much worse a variant may score")
    lm = language.is_language(package)
    eager_outputs = package.outputs(validation, _eval_batch(package))
    baseline_metrics = _score(package, eager_outputs, validation)
    if metric not in baseline_metrics:
        raise InputError(f"--metric {metric!r}: the {package.task.name} task reports "
                         f"{', '.join(baseline_metrics)}")
    weights = package.path / WEIGHTS
    baseline = Row(BASELINE, "torch eager fp32, as trained", "ok", metric=baseline_metrics[metric], drop=0.0,
                   max_abs_diff=0.0, metrics=baseline_metrics,
                   size_bytes=weights.stat().st_size if weights.is_file() else None)
    context = Context(package, train, workdir, threads, list(exclude_nodes or []), fine_tune_steps)
    rows, runners, built = [baseline], {BASELINE: _timed(package, package.model)}, {}
    for name in names:
        variant = VARIANTS[name]
        row = Row(name, variant.description, "ok", tolerance=variant.tolerance)
        rows.append(row)
        reason = (("for language models only" if variant.language else "not for language models")
                  if variant.language != lm else variant.skip(context))
        if reason is not None:
            row.status, row.reason = "skipped", reason
            continue
        reset_peak_memory()
        started = time.perf_counter()
        try:
            made = variant.build(context)
            outputs = (made.run(validation.inputs) if made.model is None
                       else predict_arrays(made.model, validation.inputs, package.task, _eval_batch(package),
                                           validation.target))
            row.metrics = _score(package, outputs, validation)
        except Exception as error:  # noqa: BLE001 - a variant that cannot be built here is reported, not fatal
            row.status, row.reason = "failed", f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            continue
        row.build_seconds = time.perf_counter() - started
        row.peak_memory_bytes = peak_memory()
        row.metric = row.metrics[metric]
        row.drop = drop_of(metric, baseline.metric or 0.0, row.metric, relative=lm)
        row.max_abs_diff = _difference(outputs, eager_outputs, lm)
        file = made.files.get(made.entry.get("file", WEIGHTS))
        if file is None and made.package is not None and (made.package / WEIGHTS).is_file():
            file = made.package / WEIGHTS
        row.size_bytes = file.stat().st_size if file is not None else baseline.size_bytes
        runners[name], built[name] = made.run, made
    timed = language.prompts(package.model, validation.inputs["tokens"]) if lm else validation.inputs
    seconds, ratios = latencies(runners, timed, list(batch_sizes), BASELINE, rounds=rounds)
    per_call = language.decode_shape(package.model)[1] if lm else 1  # generated tokens per row per call
    for row in rows:
        if row.name in runners:
            row.latency_ms = {size: value * 1000 / per_call for size, value in seconds[row.name].items()}
            row.throughput = {size: size * per_call / value for size, value in seconds[row.name].items()}
            row.ratio = ratios[row.name]
            row.speed = math.exp(sum(math.log(r) for r in row.ratio.values()) / len(row.ratio))
    baseline.within_budget = True
    for row in rows[1:]:
        row.within_budget = within_budget(row, max_drop)
    chosen, verdict = choose(rows, max_drop, metric, relative=lm)
    return Outcome(metric, direction(metric), max_drop, list(batch_sizes), rows, chosen, verdict, built,
                   "token" if lm else "call")


def _timed(package: ModelPackage, model: torch.nn.Module) -> Runner:
    """What latency measures: a row model's batch of rows, a language model's greedy decoding."""
    return language.decoder(model) if language.is_language(package) else torch_runner(package, model)


def _eval_batch(package: ModelPackage) -> int:
    """Rows per scoring pass: a language model's windows x context x vocabulary logits are bounded by the config."""
    return package.config.trainer.eval_batch_size if language.is_language(package) else 4096


def _difference(outputs: np.ndarray, eager: np.ndarray, lm: bool) -> float:
    """Largest difference of the outputs from eager fp32's (a language model: of each window's mean NLL)."""
    if not outputs.size:
        return 0.0
    if lm:
        outputs, eager = (array[:, 0] / np.maximum(array[:, 2], 1) for array in (outputs, eager))
    return float(np.max(np.abs(outputs - eager)))


def within_budget(row: Row, max_drop: float) -> bool:
    """Built, scored within `max_drop` of eager fp32, and (when it has a parity tolerance) within it."""
    if row.status != "ok" or row.drop is None:
        return False
    if row.tolerance is not None and (row.max_abs_diff is None or row.max_abs_diff > row.tolerance):
        row.reason = row.reason or f"outputs differ from eager by {row.max_abs_diff:.2e} > {row.tolerance:.0e}"
        return False
    if row.drop > max_drop + 1e-12:
        row.reason = row.reason or f"{row.drop:+.4f} worse than eager, budget {max_drop}"
        return False
    return True


def choose(rows: list[Row], max_drop: float, metric: str, relative: bool = False) -> tuple[str | None, str]:
    """The fastest variant within budget that is faster than eager fp32 (speed < 1), with the reason (`relative`:
    the drop and budget are fractions of eager's metric, a language model's)."""
    budget = f"{max_drop:.1%}" if relative else f"{max_drop}"
    candidates = [row for row in rows[1:] if row.within_budget and row.speed is not None and row.speed < 1.0]
    if not candidates:
        return None, (f"no variant beats eager fp32 within the budget ({metric} at most {budget} worse): "
                      "nothing registered")
    best = min(candidates, key=lambda row: row.speed or math.inf)
    drop = f"{best.drop:+.2%}" if relative else f"{best.drop:+.4f}"
    return best.name, (f"{best.name}: {best.speed:.2f}x eager fp32's latency (geometric mean over batch sizes), "
                       f"{metric} {best.metric:.4f} ({drop} worse, budget {budget})")


def clean(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
