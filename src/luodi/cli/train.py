"""`luodi init`, `train` and `tune`: a config from the data, a trained and registered version, a search over it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from luodi import api
from luodi.cli.common import Home, Json, _console, _count, _metrics_table, _print_json, _warn
from luodi.errors import InputError


def init(
    data: Annotated[Path, typer.Option("--data", help="Training table (CSV, Parquet, JSONL), image folder, or text "
                                               "(.txt file or folder) for text_generation.")],
    target: Annotated[str | None, typer.Option("--target", help="Column to predict (image folder: label).")] = None,
    task: Annotated[str | None, typer.Option(help="regression, binary, multiclass (default: inferred) or "
                                                  "text_generation.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Config file to write.")] = Path("luodi.yaml"),
    name: Annotated[str | None, typer.Option(help="Model name (default: from the file name, or its folder for "
                                                  "train/data).")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing config.")] = False,
    base: Annotated[Path | None, typer.Option(help="text_generation: a local Hugging Face checkpoint to fine-tune.")]
    = None,
    tune: Annotated[bool, typer.Option("--tune", help="Also write a search: section for `luodi tune`.")] = False,
    time_budget: Annotated[str | None, typer.Option(help="Training time on a laptop CPU that sets the epoch cap: "
                                                         "90s, 10m, 1h (default 5m).")] = None,
    encoder: Annotated[Path | None, typer.Option(help="A local sentence-encoder folder (e.g. all-MiniLM-L6-v2): "
                                                      "text becomes its frozen, cached embeddings.")] = None,
    as_json: Json = False,
) -> None:
    """Write a commented starter config with the task and column types inferred from the data."""
    result = api.init(data, target, task=task, output=output, name=name, force=force, base=base, tune=tune,
                      time_budget=time_budget, encoder=encoder)
    if as_json:
        return _print_json(result.to_dict())
    console = _console()
    console.print(f"wrote [bold]{result.config_path}[/]: {result.task} task ({result.task_reason}), "
                  f"{_count(len(result.features), 'feature')}, {_count(result.rows, 'row')}")
    for column, reason in result.dropped.items():
        console.print(f"  dropped {column!r}: {reason.removeprefix('dropped: ')}")
    console.print(f"next: luodi {'tune' if tune else 'train'} {result.config_path}"
                  + (" --trials 30" if tune else ""))


def train(
    config: Annotated[Path | None, typer.Argument(help="Config file (luodi.yaml).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a key: --set trainer.epochs=20")] = None,
    resume: Annotated[str | None, typer.Option(help="Continue run RUN from its last checkpoint.")] = None,
    progress: Annotated[str, typer.Option(help="auto, bar, lines or silent.")] = "auto",
    nproc: Annotated[int | None, typer.Option(help="Train with DDP on this many processes per machine "
                                                   "(starts torchrun; docs/scale.md).")] = None,
    nnodes: Annotated[str, typer.Option(help="With --nproc: machines (torchrun's --nnodes, e.g. 2 or 1:4).")] = "1",
    rdzv_endpoint: Annotated[str | None, typer.Option(help="With --nproc on several machines: HOST:PORT of the "
                                                           "rendezvous, the same on every machine.")] = None,
    rdzv_id: Annotated[str | None, typer.Option(help="With --nproc: the job's id, the same on every machine.")] = None,
    max_restarts: Annotated[int, typer.Option(help="With --nproc: restarts of the group after a rank fails; "
                                                   "it resumes from the last checkpoint.")] = 0,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Train, evaluate on the test split, and register a new model version."""
    if (config is None) == (resume is None):
        raise InputError("give a config file or --resume RUN (not both)")
    try:
        if nproc is not None:
            if config is None:
                raise InputError("--nproc trains a config file; a torchrun job resumes by itself (--max-restarts)")
            launched = api.train_distributed(config, api.Launch(nproc, nnodes, rdzv_endpoint, rdzv_id, max_restarts),
                                             set_ or [], home=home, progress="silent" if as_json else progress)
            if launched is None:
                return  # this machine ran no rank 0: that machine prints the result
            result = launched
        else:
            result = api.train(config, set_ or [], resume=resume, home=home, progress=progress)
            if result.rank != 0:
                return  # started by torchrun: rank 0 prints the run
    except KeyboardInterrupt as error:
        run_id = getattr(error, "run_id", None)  # None when stopped before the run was recorded
        hint = f"resume with `luodi train --resume {run_id}`" if run_id else "no run was recorded yet"
        print(f"\ninterrupted: {hint}", file=sys.stderr)
        raise typer.Exit(130) from None
    if as_json:
        return _print_json(result.to_dict())
    _warn(result.warnings)
    console = _console()
    stop = f"early stop at epoch {result.epochs_run}" if result.stopped_early else f"{result.epochs_run} epochs"
    if result.still_improving:
        stop += " (the cap, still improving: raise trainer.epochs)"
    rows = " / ".join(f"{count} {split}" for split, count in result.rows.items())
    console.print(f"run [bold]{result.run_id}[/]: {stop}, best epoch {result.best_epoch}, "
                  f"{result.seconds:.1f} s, rows {rows}")
    if result.refit is not None:
        from luodi.evaluate.report import refit_sentence

        console.print(refit_sentence(result.refit))
    console.print(_metrics_table(result.metrics, "test metrics"))
    if result.model is not None:
        console.print(f"registered [bold]{result.model['name']}/{result.model['version']}[/] at {result.package}")
    if result.report:
        console.print(f"report: {result.report}")
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)


def tune(
    config: Annotated[Path, typer.Argument(help="Config file with a search: section (luodi init --tune writes one).")],
    trials: Annotated[int, typer.Option("--trials", help="Trials to run now (a continued study adds them).")] = 20,
    time_budget: Annotated[str | None, typer.Option("--time-budget", help="Start no trial after this long: 90s, "
                                                    "10m, 1.5h.")] = None,
    study: Annotated[str | None, typer.Option(help="Study name (default: the model name); the same name continues "
                                                   "it, also from several processes at once.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a key: --set trainer.epochs=20")] = None,
    storage: Annotated[str | None, typer.Option(help="Where the study lives: a postgresql:// URL that machines "
                                                     "share (default: the store's database when LUODI_STORE is "
                                                     "PostgreSQL, else LUODI_HOME/studies.db).")] = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Search the config's search: ranges (Optuna TPE, pruning bad trials), register the best trial's model."""
    try:
        result = api.tune(config, trials, time_budget=time_budget, study=study, overrides=set_ or [], home=home,
                          storage=storage)
    except KeyboardInterrupt:
        print("\ninterrupted: the finished trials are kept; run the same command to continue the study",
              file=sys.stderr)
        raise typer.Exit(130) from None
    if as_json:
        return _print_json(result.to_dict())
    console = _console()
    counts = ", ".join(f"{count} {state}" for state, count in result.counts.items())
    console.print(f"study [bold]{result.study}[/]: {counts}; best trial {result.best['number']} "
                  f"({result.metric} {result.best['value']:.4g}), run {result.run_id}")
    console.print(_metrics_table(result.metrics, "test metrics of the best trial"))
    console.print(f"registered [bold]{result.model['name']}/{result.model['version']}[/] at {result.package}")
    console.print(f"study page: {result.page}")
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
