"""The config sections of how a run trains and what it writes: `trainer` (optimizer, learning-rate schedule,
early stopping), `runtime` (process set-up) and `report` (the evaluation report)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from luodi.config.base import Strict

__all__ = [
    "EarlyStoppingConfig", "OptimizerConfig", "ReportConfig", "RuntimeConfig", "SchedulerConfig", "TrainerConfig",
]


# ----------------------------------------------------------------------------------------- trainer
class OptimizerConfig(Strict):
    type: Literal["adamw", "adam", "sgd"] = Field("adamw", description="Optimizer.")
    lr: float = Field(1e-3, gt=0, le=10, description="Peak learning rate.")
    weight_decay: float = Field(0.01, ge=0, description="Weight decay (decoupled for adamw).")
    momentum: float = Field(0.9, ge=0, lt=1, description="Momentum (sgd only).")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam betas.")


class SchedulerConfig(Strict):
    type: Literal["none", "cosine", "step", "linear", "plateau"] = Field(
        "none", description="Learning-rate decay after warmup: cosine / linear over all trainer.epochs; step every "
        "step_size epochs; plateau when the early-stopping metric stalls (then early stopping, not the epoch cap, "
        "ends the run).")
    warmup_steps: int = Field(0, ge=0, description="Linear warmup from 0 to lr over this many steps.")
    step_size: int = Field(10, ge=1, description="step: epochs between decays.")
    gamma: float = Field(0.5, gt=0, le=1, description="step and plateau: factor applied at each decay.")
    patience: int = Field(3, ge=1, description="plateau: epochs without improvement of the early-stopping metric "
                          "before the lr is multiplied by gamma (again after as many more).")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine/linear: final lr as a fraction of lr.")


class EarlyStoppingConfig(Strict):
    metric: str = Field("loss", description="Validation metric to watch (loss, accuracy, roc_auc, r2, ...).")
    mode: Literal["auto", "min", "max"] = Field("auto", description="auto picks the metric's better direction.")
    patience: int = Field(10, ge=1, description="Epochs without improvement before stopping.")
    min_delta: float = Field(0.0, ge=0, description="Smallest change that counts as an improvement.")
    enabled: bool = Field(True, description="Turn early stopping off to run all epochs.")


class TrainerConfig(Strict):
    epochs: int = Field(100, ge=1, le=100_000, description="Most epochs to run.")
    batch_size: int = Field(64, ge=1, description="Rows per step.")
    eval_batch_size: int = Field(1024, ge=1, description="Rows per forward pass when evaluating.")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)  # type: ignore[arg-type]
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)  # type: ignore[arg-type]
    gradient_clip: float | None = Field(1.0, gt=0, description="Clip the gradient norm to this; null turns it off.")
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)  # type: ignore[arg-type]
    checkpoint_every_steps: int = Field(0, ge=0, description="Also checkpoint every N steps (0: each epoch only).")
    seed: int = Field(42, description="Seed of weights, dropout and data order.")
    ema_decay: float = Field(
        0.0, ge=0, lt=1, description="Exponential moving average of the weights after every step (0: off): "
        "validation, early stopping, the best checkpoint and the package use the average. About 1 - 1/N averages the "
        "last N steps; lower for the first steps (min(decay, (1 + n) / (10 + n))).")
    refit: bool = Field(
        False, description="After the run, train a fresh model (same seed) on the training + validation rows for the "
        "best epoch count early stopping chose, replaying the learning-rate schedule (a plateau scheduler's reductions "
        "epoch by epoch; warmup, cosine, linear and step recomputed for those epochs), with the features fitted on "
        "those rows too. The package holds the refit model, scored on the untouched test split; the report and "
        "`train --json` keep the first model's validation and test metrics. Needs a test split; skipped, with a "
        "warning, for streamed data and under torchrun.")


class RuntimeConfig(Strict):
    """Process set-up; what was chosen is recorded in the run."""

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto uses CUDA when present.")
    threads: int | Literal["auto"] = Field(
        "auto", description="Torch intra-op threads; auto counts the cores that are free now (CPU use measured "
        "over 0.1 s; the load average where /proc/stat is missing)."
    )
    allocator: Literal["tuned", "default"] = Field(
        "tuned", description="tuned keeps freed memory in the process (mallopt) instead of returning it per step."
    )
    deterministic: bool = Field(False, description="Ask torch for deterministic kernels (slower on GPU).")
    mixed_precision: Literal["auto", "off", "tf32", "bf16", "fp16"] = Field(
        "auto", description="On CUDA: auto uses TF32 tensor-core math (fp32 weights and activations) on Ampere and "
                            "later GPUs, else fp16 autocast with loss scaling; bf16 and fp16 force autocast. On CPU: "
                            "auto trains cnn, resnet, rnn, transformer and hf models under bf16 autocast where the "
                            "CPU has bf16 instructions (AVX512-BF16, AMX), else fp32; bf16 forces it. off keeps "
                            "strict fp32 everywhere.")
    pin_memory: bool = Field(True, description="On CUDA: page-locked host tensors and asynchronous copies.")
    checkpoint_dir: str | None = Field(
        None, description="Under torchrun: the folder of the job's checkpoint, relative to the config file; every rank "
                          "reads it when torchrun restarts the group, so on several machines it must be shared "
                          "storage. Default: LUODI_HOME/distributed. Each job (rendezvous id) gets a subfolder.")

    @field_validator("threads")
    @classmethod
    def _threads_positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("threads must be >= 1 or 'auto'")
        return value


# ------------------------------------------------------------------------------------------ report
class ReportConfig(Strict):
    """The evaluation report (report.html) that every training run and `luodi evaluate` write."""

    enabled: bool = Field(True, description="Write report.html (training: into the run folder and the package).")
    slices: bool = Field(True, description="Metrics per category value and per numeric quantile bin, worst first.")
    slice_bins: int = Field(4, ge=2, le=20, description="Quantile bins per numeric column in the slice table.")
    min_slice_rows: int = Field(5, ge=1, description="Slices with fewer rows are left out (too few to rank).")
    importance_repeats: int = Field(
        5, ge=0, le=100, description="Shuffles per column for permutation importance; 0 leaves it out."
    )
    importance_rows: int = Field(2000, ge=10, description="Most rows (a seeded sample) permutation importance uses.")
