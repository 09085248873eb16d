"""`luodi.api.init` and `train_distributed`: a starter config from data, and training on several processes."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from luodi.config import validate_config
from luodi.errors import InputError
from luodi.jobs.distributed import Launch
from luodi.jobs.train import TrainResult


def train_distributed(config: str | Path, launch: Launch, overrides: list[str] | tuple[str, ...] = (), *,
                      home: str | Path | None = None, progress: str = "auto") -> TrainResult | None:
    """Train on several processes (and machines) with DDP: starts torchrun, which runs `luodi train CONFIG` on
    `launch.nproc` ranks per machine (`Launch(nproc, nnodes, rdzv_endpoint, rdzv_id, max_restarts)`, torchrun's flags).

    Rank 0 records the run and registers the version; returns its `TrainResult` on the machine that ran rank 0
    (None on the others). `trainer.batch_size` is the global batch, split across the ranks. See docs/scale.md.
    """
    from luodi.jobs.distributed import launch as run_torchrun

    result = run_torchrun(config, launch, overrides, home=home, progress=progress)
    return TrainResult(**result) if result is not None else None


@dataclass
class InitResult:
    config_path: str | None  # None for rows in memory: nothing is written, `config` is the result
    name: str
    task: str
    task_reason: str
    features: dict[str, str]
    dropped: dict[str, str]
    rows: int
    config: dict[str, Any] | None = None  # rows in memory: the config, its data.train those rows (for `train`)

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(dataclasses.replace(self, config=None)).items()
                if key != "config"}


def init(data: Any, target: str | None = None, *, task: str | None = None, output: str | Path | None = None,
         name: str | None = None, force: bool = False, base: str | Path | None = None, tune: bool = False,
         time_budget: str | float | None = None, encoder: str | Path | None = None) -> InitResult:
    """Write a commented starter config inferred from a data file, or infer one from rows in memory.

    Args:
        data: the training table (CSV, Parquet or JSONL), or a folder with one subfolder of images per class; or a
            pandas DataFrame (an Arrow table, records): then nothing is written and `result.config` is the config,
            its `data.train` the rows, ready for `luodi.train(result.config)`.
        target: the column to predict (for an image folder: `label`, the default).
        task: regression, binary or multiclass; inferred from the target when omitted.
        output: where to write the config (default `luodi.yaml`; not for rows in memory).
        name: the model name in the registry (default: from the file name; for rows in memory, 'model').
        force: overwrite an existing config file.
        base: text_generation: a local Hugging Face checkpoint folder to fine-tune (LoRA) instead of a GPT trained
            from scratch.
        tune: also write a `search:` section for `luodi tune` (ranges around the inferred model, with why).
        time_budget: how long training may take on a laptop CPU ('10m', '90s', '1h' or seconds; default 5
            minutes): the epoch cap is what fits it, by an estimate of the model's cost per row.
        encoder: a local sentence-encoder folder (e.g. all-MiniLM-L6-v2): text columns become its frozen
            embeddings (computed once and cached) instead of TF-IDF terms.
    """
    from luodi.data import budget, starter
    from luodi.data.sources import read_table
    from luodi.io import atomic_write_text
    from luodi.tasks import TASKS

    seconds = budget.DEFAULT_BUDGET_S if time_budget is None else budget.parse_duration(str(time_budget))
    if not isinstance(data, str | Path):
        if output is not None:
            raise InputError("rows in memory have no file for a config to point at: train from result.config, or "
                             "save the rows (frame.to_csv) and init from the file")
        if target is None:
            raise InputError("give target=COLUMN: the column to predict")
        plan, config = starter.starter_for_rows(data, target, task, name, seconds,
                                                None if encoder is None else str(Path(encoder).resolve()))
        return InitResult(None, plan.name, plan.task.task, plan.task.reason,
                          {c.name: f"{c.type}: {c.reason}" for c in plan.features},
                          {c.name: c.reason for c in plan.dropped}, plan.rows, config)
    data, output = Path(data), Path(output if output is not None else "luodi.yaml")
    own_starter = getattr(TASKS.get(task or ""), "starter", None)  # a task that writes its own (text_generation)
    if own_starter is not None:
        if tune:
            raise InputError(f"--tune writes search ranges for table, image and text models, not for --task {task}")
        if output.exists() and not force:
            raise InputError(f"{output} already exists; pass --force to overwrite it or --output to write elsewhere")
        table = read_table(data)
        model = name or starter.model_name(data)
        text, target = own_starter(table, starter.relative_data_path(data, output), model,
                                   None if base is None else str(Path(base).resolve()))
        text = starter.align_comments(text.replace("luodi train {this file}", f"luodi train {output}"))
        validate_config(yaml.safe_load(text), str(output))
        output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(output, text)
        return InitResult(str(output), model, str(task), "given with --task", {target: "text"}, {}, table.num_rows)
    if target is None:
        if not data.is_dir():
            raise InputError("give --target COLUMN: the column to predict")
        from luodi.data.images import LABEL_COLUMN

        target = LABEL_COLUMN
    if output.exists() and not force:
        raise InputError(f"{output} already exists; pass --force to overwrite it or --output to write elsewhere")
    table = read_table(data)
    written_encoder = None
    if encoder is not None:
        from luodi.checkpoints import checkpoint_folder

        written_encoder = starter.relative_data_path(checkpoint_folder(encoder, "--encoder"), output)
    plan = starter.plan(table, data, target, task, name, seconds, written_encoder)
    text = starter.render(plan, starter.relative_data_path(data, output), data, str(output))
    if tune:
        text += starter.search_section(plan)
    validate_config(yaml.safe_load(text), str(output))  # what init writes must load; a failure here is a bug
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output, text)
    return InitResult(str(output), plan.name, plan.task.task, plan.task.reason,
                      {c.name: f"{c.type}: {c.reason}" for c in plan.features},
                      {c.name: c.reason for c in plan.dropped}, plan.rows)
