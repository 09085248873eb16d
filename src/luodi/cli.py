"""The `luodi` command: one thin function per verb over `luodi.api`, readable output or `--json`.

Exit codes: 0 success; 2 the user's input is wrong (one message, no traceback); 1 anything else
(traceback with --debug or LUODI_DEBUG=1); 130 interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import math
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from luodi import api
from luodi.errors import InputError


def _plain_flags(params: list[Any]) -> list[Any]:
    """Flags take no value: an empty metavar keeps typer's help from printing `<bool>` beside them."""
    for param in params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    return params


class _Group(TyperGroup):
    """The groups of `luodi`: their own flags and those of the commands they hand a call to show no `<bool>`."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_flags(super().get_params(ctx))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _plain_flags(command.get_params(ctx))
        return command


app = typer.Typer(
    name="luodi", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, cls=_Group,
    help="luodi: from a table to a trained, evaluated, registered model. Exit codes: 0 ok, 2 bad input, 1 error.",
)
runs_app = typer.Typer(no_args_is_help=True, cls=_Group, help="Training runs: list and inspect.")
models_app = typer.Typer(no_args_is_help=True, cls=_Group, help="Registered models: list, inspect, move aliases.")
app.add_typer(runs_app, name="runs")
app.add_typer(models_app, name="models")

Json = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of text.")]
Home = Annotated[Path | None, typer.Option("--home", envvar="LUODI_HOME", help="Store folder (default ./.luodi).")]
Strict = Annotated[bool, typer.Option("--strict", help="Values never seen in training are an error, not unknown.")]
Base = Annotated[Path | None, typer.Option("--base", help="A LoRA package's base checkpoint folder, when it moved "
                                         "(default $LUODI_BASE, else where it was trained from).")]

# The sampling options `generate` and `chat` share (luodi.models.generation.Sampling).
Temperature = Annotated[float, typer.Option(help="0: greedy; above 0 samples.")]
TopK = Annotated[int, typer.Option(help="Sample among the k most likely tokens (0: all).")]
TopP = Annotated[float, typer.Option(help="Sample among the tokens holding this much probability.")]
RepetitionPenalty = Annotated[float, typer.Option(help="> 1 makes tokens already seen less likely.")]


def _print_json(obj: Any) -> None:
    def clean(value: Any) -> Any:  # NaN is not JSON
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    sys.stdout.write(json.dumps(clean(obj), default=str) + "\n")


def _console() -> Any:
    """Rich output on stdout; piped or redirected, nothing is wrapped or cut: ids and paths stay whole for scripts."""
    from rich.console import Console

    console = Console(highlight=False)
    if console.is_terminal:
        return console
    return Console(highlight=False, soft_wrap=True, width=1_000_000)


def _metrics_table(metrics: dict[str, float], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    return table


def _count(number: int, noun: str) -> str:
    """'1 feature', '3 features'."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _warn(messages: list[str]) -> None:
    for message in messages:
        print(f"warning: {message}", file=sys.stderr)


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of unexpected errors.")] = False
          ) -> None:
    if debug:
        os.environ["LUODI_DEBUG"] = "1"


@app.command()
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


@app.command()
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
    console.print(_metrics_table(result.metrics, "test metrics"))
    if result.model is not None:
        console.print(f"registered [bold]{result.model['name']}/{result.model['version']}[/] at {result.package}")
    if result.report:
        console.print(f"report: {result.report}")
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)


@app.command()
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


@app.command()
def export(
    model: Annotated[str, typer.Argument(help="name, name@alias, name/version or a package folder.")],
    out: Annotated[Path, typer.Option("--out", help="The package folder to write (new): a copy with model.onnx.")],
    format: Annotated[str, typer.Option("--format", help="The export format.")] = "onnx",
    tolerance: Annotated[float, typer.Option(help="Largest allowed output difference from eager torch.")] = 1e-4,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Export a model to ONNX (dynamic batch and sequence axes), parity-checked on its validation split."""
    entry = api.export(model, out, format=format, home=home, tolerance=tolerance)
    if as_json:
        return _print_json(entry)
    changes = ", ".join(f"{name} {value:+.4f}" for name, value in entry.get("metric_difference", {}).items())
    print(f"wrote {entry['file']} (inputs {', '.join(entry['inputs'])}; opset {entry['opset']})")
    print(f"parity on {entry['parity_rows']} validation rows: max |diff| {entry['parity_max_abs_diff']:.2e}"
          + (f"; metrics {changes}" if changes else ""))
    print(f"serve it with: luodi serve {entry['package']}")


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--batch-sizes {text!r}: give positive integers separated by commas (1,32)") from None
    if not sizes or min(sizes) < 1:
        raise InputError(f"--batch-sizes {text!r}: give positive integers separated by commas (1,32)")
    return sizes


@app.command()
def optimize(
    model: Annotated[str, typer.Argument(help="name, name@alias or name/version.")],
    max_drop: Annotated[float, typer.Option(help="How much worse than eager fp32 a variant may score (metric "
                                                 "units: 0.01 is one point of accuracy; a language model: "
                                                 "relative, 0.02 is 2% more perplexity).")] = 0.01,
    metric: Annotated[str | None, typer.Option(help="The metric of the budget (default: the task's).")] = None,
    batch_sizes: Annotated[str, typer.Option(help="Batch sizes to time, comma-separated.")] = "1,32",
    variants: Annotated[str | None, typer.Option(help="Variants to try, comma-separated (default: all).")] = None,
    exclude_nodes: Annotated[list[str] | None, typer.Option("--exclude-node", help="Static int8: an ONNX node "
                                                            "left in fp32 (repeatable).")] = None,
    fine_tune_steps: Annotated[int, typer.Option(help="Steps of the fine-tune after pruning.")] = 100,
    no_register: Annotated[bool, typer.Option("--no-register", help="Measure and report only.")] = False,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Try variants (ONNX Runtime, int8, pruning, ...), keep the fastest within the accuracy budget as a new version."""
    result = api.optimize(model, max_drop=max_drop, metric=metric, batch_sizes=_sizes(batch_sizes),
                          variants=None if variants is None else [v.strip() for v in variants.split(",") if v.strip()],
                          exclude_nodes=exclude_nodes or [], fine_tune_steps=fine_tune_steps,
                          register=not no_register, home=home)
    if as_json:
        return _print_json(result)
    from rich.table import Table

    sizes = result["batch_sizes"]
    table = Table(title=f"{result['model']}: variants on the validation split", title_justify="left")
    tokens = result["latency_unit"] == "token"  # a language model: decoding tokens/s instead of latency
    for header in ["variant", result["metric"], "drop", *[f"tok/s @{size}" if tokens else f"ms @{size}"
                                                          for size in sizes],
                   *[f"x eager @{size}" for size in sizes], "MB", "peak MB", "budget", "note"]:
        table.add_column(header, justify="left" if header in ("variant", "note", "budget") else "right")

    def number(value: Any, digits: int) -> str:
        return "—" if value is None else f"{value:.{digits}f}"

    for row in result["variants"]:
        table.add_row(row["name"], number(row["metric"], 4), number(row["drop"], 4),
                      *[number(row["throughput" if tokens else "latency_ms"].get(str(size)), 1 if tokens else 3)
                        for size in sizes],
                      *[number(row["ratio"].get(str(size)), 2) for size in sizes],
                      number(None if row["size_bytes"] is None else row["size_bytes"] / 1e6, 2),
                      number(None if row["peak_memory_bytes"] is None else row["peak_memory_bytes"] / 1e6, 1),
                      "yes" if row["within_budget"] else "no",
                      row["reason"] if row["status"] != "ok" or not row["within_budget"] else "")
    console = _console()
    console.print(table)
    console.print(result["verdict"])
    if result["registered"]:
        console.print(f"registered {result['registered']} (report: {result['report']})")
    else:
        console.print(f"report: {result['report']}")


@app.command()
def evaluate(
    model: Annotated[str, typer.Argument(help="name, name@alias, name/version or a package folder.")],
    data: Annotated[Path, typer.Option("--data", help="Labelled table with the target column.")],
    report: Annotated[Path | None, typer.Option(help="Where to write report.html (default: under the store's "
                                                     "reports/ folder).")] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Metrics only, no report.")] = False,
    strict: Strict = False,
    base: Base = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Metrics of a model on labelled data, and the evaluation report (one self-contained HTML file)."""
    if report is not None and no_report:
        raise InputError("--report and --no-report exclude each other")
    result = api.evaluate(model, data, home=home, strict=strict, base=base,
                          report=False if no_report else report if report is not None else True)
    if as_json:
        return _print_json(result)
    _warn(result["warnings"])
    console = _console()
    console.print(_metrics_table(result["metrics"], f"{model} on {data} ({result['rows']} rows)"))
    if result["report"]:
        console.print(f"report: {result['report']}")


@app.command()
def explain(
    model: Annotated[str, typer.Argument(help="name, name@alias, name/version or a package folder.")],
    data: Annotated[Path, typer.Option("--data", help="Rows to explain: CSV, Parquet or JSONL (no target needed).")],
    out: Annotated[Path | None, typer.Option("--out", help="Write every row's attributions (.csv, .parquet, "
                                                           ".jsonl).")] = None,
    target_class: Annotated[str | None, typer.Option("--class", help="Explain this class's probability (default: "
                                                                      "the predicted class).")] = None,
    steps: Annotated[int, typer.Option(min=2, max=1000, help="Integration steps (more: closer to exact).")] = 50,
    show: Annotated[int, typer.Option(min=0, help="Rows printed (the top columns of each).")] = 5,
    strict: Strict = False,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Why the model predicts what it does: per-row attributions to each input column (integrated gradients)."""
    explanation = api.explain(model, data, out=out, home=home, target_class=target_class, steps=steps, strict=strict)
    if as_json:
        payload = explanation.to_dict()
        payload["out"] = str(out) if out else None
        return _print_json(payload)
    _warn(explanation.warnings)
    console = _console()
    console.print(f"{len(explanation.predictions)} rows; attributions add up to the {explanation.output} minus its "
                  "value at the baseline row (training means, most frequent categories)")
    if explanation.tokens:
        console.print("each text's token attributions add up to the same output minus its value with that text's "
                      "words replaced by padding")
    for row in range(min(show, len(explanation.predictions))):
        explained = explanation.explained[row]
        label = f" P({_escape(str(explained))})" if explained is not None else ""
        console.print(f"[bold]row {row + 1}[/]: predicted {_escape(str(explanation.predictions[row]))};{label} "
                      f"{explanation.outputs[row]:.4f} (baseline {explanation.baseline_outputs[row]:.4f})")
        order = sorted(range(len(explanation.features)), key=lambda i: -abs(explanation.attributions[row, i]))
        console.print("  " + ", ".join(f"{explanation.features[i]} {explanation.attributions[row, i]:+.4f}"
                                        for i in order[:5]), markup=False)
        for column, tokens in explanation.top_tokens(row).items():
            padded = explanation.token_baseline_outputs[column][row]
            console.print(f"  {column} tokens (words padded: {padded:.4f}): " + ", ".join(
                f"{json.dumps(token['text'] or token['token'], ensure_ascii=False)} {token['attribution']:+.4f}"
                for token in tokens), markup=False)
    if out is not None:
        print(f"wrote {len(explanation.predictions)} rows to {out}", file=sys.stderr)


@app.command()
def compare(
    runs: Annotated[list[str], typer.Argument(help="Two or more runs: ids (or unique prefixes), or model versions "
                                                   "(churn/2, churn@production) for the runs that trained them.")],
    out: Annotated[Path | None, typer.Option("--out", help="HTML page to write (default: under the store's "
                                                           "reports/ folder).")] = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Compare runs: config keys that differ, test metrics with the best of each marked; also as an HTML page."""
    result = api.compare(runs, out=out, home=home)
    if as_json:
        return _print_json(result)
    from rich.table import Table

    from luodi.tasks import direction

    ids = [run["id"] for run in result["runs"]]
    table = Table("", *ids, title=f"{len(ids)} runs", title_justify="left")
    for name, values in result["metrics"].items():
        best = result["best"].get(name, [])
        cells = [f"[bold green]{value:.4f} ★[/]" if run_id in best and isinstance(value, float)
                 else "—" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)
                 for run_id, value in zip(ids, values, strict=True)]
        table.add_row(f"{name} ({'↓' if direction(name) == 'min' else '↑'})", *cells)
    if result["differences"]:
        table.add_section()
        for key, values in result["differences"].items():
            table.add_row(f"[yellow]{_escape(key)}[/]", *[_escape(str(value)) for value in values])
    _console().print(table)
    differ = len(result["differences"])
    _console().print(f"{differ} config key{' differs' if differ == 1 else 's differ'}, {result['same']} are the "
                     f"same; page: {result['report']}", markup=False)


def _escape(text: str) -> str:
    """User text (config values, column names) shown literally by rich, never read as [markup]."""
    from rich.markup import escape

    return escape(text)


@app.command()
def predict(
    model: Annotated[str, typer.Argument(help="name, name@alias, name/version or a package folder.")],
    data: Annotated[Path | None, typer.Option("--data", help="Table to score: CSV, Parquet or JSONL.")] = None,
    text: Annotated[list[str] | None, typer.Option("--text", help="A raw text to score (repeatable), for a model "
                                                   "whose one input is a text column.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output file (.csv, .parquet, .jsonl); default stdout CSV.")]
    = None,
    keep_input: Annotated[bool, typer.Option(help="Put the input columns before the predictions.")] = True,
    strict: Strict = False,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Predict a table (or raw texts): `<target>_prediction` plus `<target>_probability_<class>` for classifiers."""
    if (data is None) == (not text):
        raise InputError("give --data FILE or --text TEXT (not both)")
    if text:
        frame = api.predict_text(model, text, out=out, home=home, strict=strict)
    else:
        frame = api.predict(model, data, out=out, home=home, strict=strict, keep_input=keep_input)
    warnings = frame.attrs.get("warnings", [])
    if as_json:
        payload: dict[str, Any] = {"rows": len(frame), "out": str(out) if out else None, "warnings": warnings}
        if out is None:
            payload["predictions"] = json.loads(frame.to_json(orient="records"))
        return _print_json(payload)
    _warn(warnings)
    if out is None:
        frame.to_csv(sys.stdout, index=False)
    else:
        print(f"wrote {len(frame)} rows to {out}", file=sys.stderr)


@app.command()
def embed(
    model: Annotated[str, typer.Argument(help="name, name@alias, name/version or a package folder.")],
    data: Annotated[Path | None, typer.Option("--data", help="Texts: a table with the model's text column (CSV, "
                                                             "Parquet, JSONL) or a .txt file.")] = None,
    text: Annotated[list[str] | None, typer.Option("--text", help="A text to embed (repeatable).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write .npy (float32 matrix), .parquet or .jsonl (texts "
                                                           "and embeddings); default: JSON lines on stdout.")] = None,
    truncate: Annotated[bool, typer.Option("--truncate", help="Cut texts longer than the model's max_length "
                                                              "instead of refusing them.")] = False,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Embed texts with a text encoder model (one text feature read as tokens): one vector per text."""
    if (data is None) == (not text):
        raise InputError("give --data FILE or --text TEXT (not both)")
    vectors = api.embed(model, data if data is not None else list(text or []), truncate=truncate, out=out, home=home)
    if as_json:
        payload: dict[str, Any] = {"rows": len(vectors), "dimensions": int(vectors.shape[1]),
                                   "out": str(out) if out else None}
        if out is None:
            payload["embeddings"] = vectors.tolist()
        return _print_json(payload)
    if out is None:
        for vector in vectors:
            sys.stdout.write(json.dumps(vector.tolist()) + "\n")
    else:
        print(f"wrote {len(vectors)} embeddings of {vectors.shape[1]} dimensions to {out}", file=sys.stderr)


@app.command()
def generate(
    model: Annotated[str, typer.Argument(help="name, name@alias, name/version or a package folder.")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="Text to continue (a chat model: the user message).")],
    max_tokens: Annotated[int, typer.Option(help="New tokens at most.")] = 64,
    temperature: Temperature = 0.0,
    top_k: TopK = 0,
    top_p: TopP = 1.0,
    repetition_penalty: RepetitionPenalty = 1.0,
    stop: Annotated[list[str] | None, typer.Option("--stop", help="End the text before this string (repeatable).")]
    = None,
    seed: Annotated[int | None, typer.Option(help="Seed of sampling: the same seed gives the same text.")] = None,
    base: Base = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Generate text with a text_generation model, streamed to the terminal as it is written."""
    pieces = api.generate(model, prompt, max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                          repetition_penalty=repetition_penalty, stop=stop or (), seed=seed, home=home, base=base)
    if as_json:
        return _print_json({"prompt": prompt, "text": "".join(pieces)})
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")


@app.command("import-gguf")
def import_gguf(
    file: Annotated[Path, typer.Argument(help="The .gguf file (llama.cpp's format, any quantization).")],
    out: Annotated[Path, typer.Option("--out", help="The checkpoint folder to write (new, or empty).")],
    as_json: Json = False,
) -> None:
    """Turn a GGUF file into a Hugging Face safetensors checkpoint folder (model: {type: hf, path: OUT})."""
    imported = api.import_gguf(file, out)
    if as_json:
        return _print_json(dataclasses.asdict(imported))
    print(f"wrote {imported.folder}: {imported.architecture}, {imported.parameters:,} parameters (fp32, "
          f"{imported.bytes / 1e6:.0f} MB), {imported.vocab_size:,} tokens"
          f"{', chat template' if imported.chat_template else ''}")
    print(f"use it with: model: {{type: hf, path: {imported.folder}}}")


@app.command()
def chat(
    model: Annotated[str, typer.Argument(help="name, name@alias, name/version or a package folder.")],
    system: Annotated[str | None, typer.Option("--system", help="A system message kept before every turn.")] = None,
    max_tokens: Annotated[int, typer.Option(help="New tokens per reply at most.")] = 256,
    temperature: Temperature = 0.0,
    top_k: TopK = 0,
    top_p: TopP = 1.0,
    repetition_penalty: RepetitionPenalty = 1.0,
    stop: Annotated[list[str] | None, typer.Option("--stop", help="End a reply before this string (repeatable).")]
    = None,
    seed: Annotated[int | None, typer.Option(help="Seed of sampling: the same seed gives the same replies.")] = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Chat with a text_generation model: one user message per line, replies streamed; /reset, /exit, Ctrl-D."""
    conversation = api.chat(model, system=system, max_tokens=max_tokens, temperature=temperature, top_k=top_k,
                            top_p=top_p, repetition_penalty=repetition_penalty, stop=stop or (), seed=seed,
                            home=home)
    interactive = sys.stdin.isatty()
    if interactive:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401 - line editing and history for input()
        print(f"chatting with {model} (context {conversation.context} tokens); /reset forgets the conversation, "
              "/exit or Ctrl-D ends it", file=sys.stderr)
    try:
        while True:
            line = _read_line(interactive)
            if line is None or line.strip() == "/exit":
                break
            text = line.strip()
            if not text:
                continue
            if text == "/reset":
                conversation.reset()
                print("(conversation forgotten)", file=sys.stderr)
                continue
            try:
                turn = conversation.send(line.rstrip("\n"))
            except InputError as error:
                print(f"error: {error}", file=sys.stderr)
                continue
            if turn.dropped:
                print(f"(dropped the oldest {_count(turn.dropped, 'turn')} to stay within the model's context of "
                      f"{conversation.context} tokens)", file=sys.stderr)
            if as_json:
                _print_json({"user": text, "reply": "".join(turn), "dropped": turn.dropped})
                continue
            for piece in turn:
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        raise typer.Exit(130) from None


def _read_line(interactive: bool) -> str | None:
    """The next line the user typed (None at end of input); a prompt only on a terminal."""
    if interactive:
        try:
            return input("> ")
        except EOFError:  # Ctrl-D: end the prompt's line, so the shell's starts on its own
            sys.stdout.write("\n")
            return None
    line = sys.stdin.readline()
    return line if line else None


@app.command()
def quickstart(
    workdir: Annotated[Path | None, typer.Option(help="Folder for the data and config (default: a new temp folder).")]
    = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """The whole lifecycle on scikit-learn's breast-cancer data: init, train, evaluate, predict, serve, and the
    closed loop (drift flagged, labels back, a retrained challenger promoted, the server reloading it)."""
    from luodi.quickstart import run

    # A live bar on a terminal; in logs (make demo in CI) the step lines are the summary.
    progress = "bar" if sys.stderr.isatty() and not as_json else "silent"
    summary = run(workdir=workdir, home=home, progress=progress, quiet=as_json)
    if as_json:
        _print_json(summary)


# `luodi serve` takes one option per ServeConfig field, made from the field (name, type, description, limits), so the
# two cannot drift. Old spellings that differ from a field's name stay as aliases. Keys never come from argv (ps
# would show them): the key fields take a file, or the environment variable.
SERVE_ALIASES = {"reload_interval_s": "--reload-interval", "drain_timeout_s": "--drain-timeout"}
SERVE_KEY_FILES = {"api_keys": ("--api-keys-file", "LUODI_API_KEYS"),
                   "admin_keys": ("--admin-keys-file", "LUODI_ADMIN_KEYS")}


def _serve_option(name: str, field: Any) -> inspect.Parameter:
    """The option for ServeConfig field `name`: `--kebab-name`, the field's type and description; None: the default.

    The value is checked against the field itself (its type and limits), so a bad one exits 2 naming the option.
    """
    from pydantic import ValidationError

    from luodi.serve.settings import ServeConfig

    def check(value: Any) -> Any:
        if value is None:
            return None
        try:
            ServeConfig.model_validate({name: value})
        except ValidationError as error:
            raise typer.BadParameter(error.errors()[0]["msg"]) from None
        return value

    declarations = ["--" + name.replace("_", "-"), *([SERVE_ALIASES[name]] if name in SERVE_ALIASES else [])]
    if field.annotation is bool:
        declarations = [f"{flag}/--no-{flag[2:]}" for flag in declarations]
    option = typer.Option(*declarations, help=field.description, show_default=str(field.default), callback=check)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[field.annotation | None, option])


def _key_file_option(name: str, field: Any) -> inspect.Parameter:
    flag, env = SERVE_KEY_FILES[name]
    option = typer.Option(flag, help=f"{field.description} One per line in this file (or {env}, comma separated).")
    return inspect.Parameter(flag[2:].replace("-", "_"), inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[Path | None, option])


def _serve_signature() -> inspect.Signature:
    from luodi.serve.settings import ServeConfig

    fields = ServeConfig.model_fields
    models = inspect.Parameter("models", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[
        list[str], typer.Argument(help="NAME@ALIAS (or name, name/version, a package folder).")])
    options = [_serve_option(name, field) for name, field in fields.items() if name not in SERVE_KEY_FILES]
    key_files = [_key_file_option(name, fields[name]) for name in SERVE_KEY_FILES]
    home = inspect.Parameter("home", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Home)
    return inspect.Signature([models, *options, *key_files, home])


def serve(models: list[str], *, api_keys_file: Path | None = None, admin_keys_file: Path | None = None,
          home: Path | None = None, **settings: Any) -> None:
    """Serve models over HTTP: /v1 predict, Open Inference Protocol v2, /metrics; SIGTERM drains."""
    given = {name: value for name, value in settings.items() if value is not None}
    code = api.serve(models, home=home, api_keys_file=api_keys_file, admin_keys_file=admin_keys_file, **given)
    raise typer.Exit(code)


serve.__signature__ = _serve_signature()  # type: ignore[attr-defined]
app.command()(serve)


@app.command("ui")
def ui(
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0 picks a free one).")] = 8080,
    host: Annotated[str, typer.Option(help="Address to bind; anything but loopback needs API keys.")] = "127.0.0.1",
    api_keys_file: Annotated[Path | None, typer.Option(help="Read keys (see, not act), one per line (or "
                                                            "LUODI_API_KEYS, comma separated).")] = None,
    admin_keys_file: Annotated[Path | None, typer.Option(help="Admin keys (see, promote, roll back), one per line "
                                                              "(or LUODI_ADMIN_KEYS).")] = None,
    home: Home = None,
) -> None:
    """The web UI over the store: runs, curves, compare, models, promote (admin), reports; SIGTERM drains."""
    raise typer.Exit(api.ui(home=home, host=host, port=port, api_keys_file=api_keys_file,
                            admin_keys_file=admin_keys_file))


@app.command()
def monitor(
    model: Annotated[str, typer.Argument(help="name, name@alias or name/version.")],
    since: Annotated[str | None, typer.Option(help="Window start: ISO date/time (UTC unless given) or a duration "
                                                   "back from now (30m, 2h, 7d).")] = None,
    until: Annotated[str | None, typer.Option(help="Window end, as --since (default: now).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Where to write the monitoring page.")] = Path("monitor.html"),
    no_report: Annotated[bool, typer.Option("--no-report", help="Tests only, no page.")] = False,
    retrain_if_drift: Annotated[bool, typer.Option(
        "--retrain-if-drift", help="When drift is found, run `luodi retrain MODEL` (cron-friendly: one at a time, "
                                   "and nothing new since the last decision is a no-op).")] = False,
    alert_webhook: Annotated[str | None, typer.Option(help="Alerts: URL that gets a JSON POST per alert.")] = None,
    alert_command: Annotated[str | None, typer.Option(help="Alerts: command run per alert, JSON on stdin.")] = None,
    alert_cooldown: Annotated[float | None, typer.Option(help="Alerts: seconds before an active condition fires "
                                                              "again.", show_default="3600")] = None,
    alert_quality_rate: Annotated[float | None, typer.Option(help="Alerts: share of rows with missing, unseen or "
                                                                  "out-of-range values.", show_default="0.05")] = None,
    alert_rules: Annotated[str | None, typer.Option(help="Alerts: NAME<VALUE or NAME>VALUE, comma separated "
                                                         "(drift_share>0.3, accuracy<0.8).")] = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Drift of the served traffic (the prediction log) against the model's training profile, per feature, and
    live accuracy from delayed labels."""
    from luodi.monitor.alerts import alert_settings

    alerts = alert_settings(webhook=alert_webhook, command=alert_command, cooldown_s=alert_cooldown,
                            quality_rate=alert_quality_rate, rules=alert_rules)
    result = api.monitor(model, since=since, until=until, out=None if no_report else out, home=home, alerts=alerts)
    retrained = None
    if retrain_if_drift:
        drifted = result.to_dict()["drifted"]
        retrained = api.retrain(model, home=home, reason=f"drift in {', '.join(drifted)}") if drifted else None
    if as_json:
        return _print_json({**result.to_dict(), **({"retrain": retrained.to_dict() if retrained else
                                                     {"skipped": "no drift"}} if retrain_if_drift else {})})
    from rich.table import Table

    _warn(result.notes)
    table = Table("feature", "test", "score", "threshold", "drift",
                  title=f"{result.model}/{result.version}: {_count(result.rows, 'row')} from {result.first} to "
                        f"{result.last}", title_justify="left")
    for feature, test, score, threshold, drift in result.rows_table():
        table.add_row(feature, test, f"{score:.4g}", f"{threshold:.4g}", "[bold red]yes[/]" if drift else "no")
    console = _console()
    console.print(table)
    drifted = result.to_dict()["drifted"]
    console.print(f"drift in: {', '.join(drifted)}" if drifted else "no drift")
    live = result.live
    if live.get("metrics"):
        shown = ", ".join(f"{name} {value:.4f}" for name, value in live["metrics"].items())
        worst = "; ".join(f"{item['feature']}={item['slice']}: " + ", ".join(
            f"{name} {item[name]:.4f}" for name in live["metrics"]) for item in live["slices"][:3])
        console.print(f"live: {shown} on {_count(live['labelled_rows'], 'labelled row')}"
                      + (f" (worst slices: {worst})" if worst else ""))
    if result.report:
        console.print(f"report: {result.report}")
    for alert in result.alerts:
        console.print(f"alert {alert['status']}: {alert['message']}")
    if retrain_if_drift:
        console.print("retrain: " + (_retrain_words(retrained.to_dict()) if retrained else "skipped (no drift)"))


@app.command()
def retrain(
    model: Annotated[str, typer.Argument(help="name (its retrain alias, default production), name@alias or "
                                              "name/version: the champion.")],
    window: Annotated[str | None, typer.Option(help="Labelled production rows logged this recently (7d, 12h); "
                                                    "default monitor.retrain.window of the config.")] = None,
    mix: Annotated[float | None, typer.Option(help="Share of the challenger's training rows from production.")] = None,
    margin: Annotated[float | None, typer.Option(help="How much the challenger must win by on the metric.")] = None,
    metric: Annotated[str | None, typer.Option(help="The deciding holdout metric (default: early stopping's).")] = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Train a challenger on the training data plus labelled production rows; promote it only if it beats the
    champion on a fresh holdout (recorded as a `retrain` event in `luodi models history`)."""
    given = {key: value for key, value in {"window": window, "mix": mix, "margin": margin, "metric": metric}.items()
             if value is not None}
    result = api.retrain(model, home=home, overrides=given, progress="silent" if as_json else "auto")
    if as_json:
        return _print_json(result.to_dict())
    _console().print(_retrain_words(result.to_dict()))


def _retrain_words(detail: dict[str, Any]) -> str:
    """A retrain decision in one line: skipped, promoted or kept, with both holdout metrics."""
    if detail.get("skipped"):
        return f"skipped: {detail['skipped']}"
    metric = detail.get("metric", "")
    champion, challenger = detail.get("champion") or {}, detail.get("challenger") or {}
    nan = float("nan")
    scores = (f"{metric}: champion v{champion.get('version')} {champion.get('metrics', {}).get(metric, nan):.4f}, "
              f"challenger v{challenger.get('version')} {challenger.get('metrics', {}).get(metric, nan):.4f}")
    verdict = f"promoted to @{detail.get('alias')}" if detail.get("promoted") else "not promoted"
    return f"{verdict} ({scores}): {detail.get('reason', '')}"


@app.command()
def feedback(
    model: Annotated[str, typer.Argument(help="name, name@alias or name/version whose predictions are labelled.")],
    data: Annotated[Path, typer.Option("--data", help="CSV, JSONL or Parquet: request_id, target (or the target "
                                                      "column's name) and optionally row.")],
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Ground truth for served predictions, joined to the prediction log by request id (live accuracy)."""
    result = api.feedback(model, data, home=home)
    if as_json:
        return _print_json(result)
    _console().print(f"{_count(result['accepted'], 'label')} kept for {result['model']} ({result['file']})")


# ------------------------------------------------------------------------------------------- runs
@runs_app.command("ls")
def runs_ls(
    name: Annotated[str | None, typer.Option(help="Only runs of this model name.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most runs to show.")] = 20,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """List runs, newest first."""
    runs = api.list_runs(name=name, limit=limit, home=home)
    if as_json:
        return _print_json([run.to_dict() for run in runs])
    from rich.table import Table

    table = Table("run", "name", "status", "created", "model", "key metric")
    for run in runs:
        key = next((f"{k} {v:.4f}" for k, v in run.metrics.items() if k in ("accuracy", "r2")), "")
        model = f"{run.model_name}/{run.model_version}" if run.model_version else ""
        trial = run.summary.get("trial")  # a `luodi tune` trial: its study and number
        name = f"{run.name} (study {trial['study']}, trial {trial['number']})" if trial else run.name
        table.add_row(run.id, name, run.status, run.created_at, model, key)
    _console().print(table)


@runs_app.command("show")
def runs_show(run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")], home: Home = None,
              as_json: Json = False) -> None:
    """One run: config, environment, metrics and per-epoch history."""
    run = api.show_run(run_id, home=home)
    if as_json:
        return _print_json(run)
    console = _console()
    console.print(f"run [bold]{run['id']}[/] ({run['name']}): {run['status']}, created {run['created_at']}")
    if run["error"]:
        console.print(f"error: {run['error']}")
    environment = run["environment"]
    console.print(f"runtime: {environment.get('device')}, {environment.get('threads')} threads "
                  f"({environment.get('threads_reason')}), allocator {environment.get('allocator')}")
    if run["model_version"]:
        console.print(f"model: {run['model_name']}/{run['model_version']}")
    console.print(f"epochs logged: {len(run['history'])}; folder: {run['dir']}")
    if run["summary"].get("report"):
        console.print(f"report: {run['summary']['report']}")
    if run["metrics"]:
        console.print(_metrics_table(run["metrics"], "test metrics"))


# ----------------------------------------------------------------------------------------- models
@models_app.command("ls")
def models_ls(home: Home = None, as_json: Json = False) -> None:
    """List registered models with their versions and aliases."""
    models = api.list_models(home=home)
    if as_json:
        return _print_json(models)
    from rich.table import Table

    table = Table("model", "versions", "latest", "aliases", "updated")
    for model in models:
        aliases = ", ".join(f"{alias}→{version}" for alias, version in model["aliases"].items())
        table.add_row(model["name"], str(model["versions"]), str(model["latest"]), aliases, model["updated_at"])
    _console().print(table)


@models_app.command("show")
def models_show(model: Annotated[str, typer.Argument(help="name, name@alias or name/version.")], home: Home = None,
                as_json: Json = False) -> None:
    """The versions of a model (or one version) with metrics, lineage and aliases."""
    versions = api.show_model(model, home=home)
    if as_json:
        return _print_json([version.to_dict() for version in versions])
    from rich.table import Table

    table = Table("version", "aliases", "created", "run", "task", "metrics", "path")
    for version in versions:
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in version.metrics.items()
                            if k in ("accuracy", "f1_macro", "roc_auc", "r2", "rmse"))
        table.add_row(str(version.version), ", ".join(version.aliases), version.created_at, version.run_id or "",
                      version.task, metrics, str(version.path))
    _console().print(table)


@models_app.command("promote")
def models_promote(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(help="Version number.")],
    alias: Annotated[str, typer.Argument(help="Alias to point at the version (e.g. production).")],
    reason: Annotated[str, typer.Option(help="Why; kept in the event log.")] = "",
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Point NAME@ALIAS at VERSION; the move is recorded with who, when and why."""
    moved = api.promote(name, version, alias, reason=reason, home=home)
    if as_json:
        return _print_json(moved)
    before = f" (was {moved['from']})" if moved["from"] is not None else ""
    _console().print(f"{name}@{alias} → version {version}{before}")


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias to move back (e.g. production).")],
    reason: Annotated[str, typer.Option(help="Why; kept in the event log.")] = "",
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Point NAME@ALIAS back at the version it pointed at before its last move; recorded like a promotion."""
    moved = api.rollback(name, alias, reason=reason, home=home)
    if as_json:
        return _print_json(moved)
    _console().print(f"{name}@{alias} → version {moved['to']} (rolled back from {moved['from']})")


@models_app.command("merge")
def models_merge(
    model: Annotated[str, typer.Argument(help="A LoRA adapter package: name, name@alias, name/version or a folder.")],
    out: Annotated[str, typer.Option("--out", help="Model name to register the merged package under.")],
    base: Base = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Fold a LoRA package's adapters into its base checkpoint: a standalone package that needs no base folder."""
    merged = api.merge(model, out, base=base, home=home)
    if as_json:
        return _print_json(merged)
    _console().print(f"{out}/{merged['version']}: {model} merged into its base ({merged['bytes']:,} bytes of "
                     f"weights) at {merged['package']}")


@models_app.command("quantize")
def models_quantize(
    model: Annotated[str, typer.Argument(help="A text_generation package: name, name@alias, name/version or a "
                                              "folder.")],
    out: Annotated[str, typer.Option("--out", help="Model name to register the int8 package under.")],
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Int8 weight-only quantization of a language model's linear layers: faster CPU decoding, a smaller file."""
    quantized = api.quantize_int8(model, out, home=home)
    if as_json:
        return _print_json(quantized)
    _console().print(f"{out}/{quantized['version']}: {quantized['layers']} linear layers of {model} in int8 "
                     f"({quantized['bytes']:,} bytes of weights) at {quantized['package']}")


@models_app.command("history")
def models_history(name: Annotated[str, typer.Argument(help="Model name.")], home: Home = None,
                   as_json: Json = False) -> None:
    """The event log of a model: registrations and alias moves, newest first."""
    events = api.history(name, home=home)
    if as_json:
        return _print_json(events)
    for event in events:
        where = f"{event['actor']}@{event['host']}" if event["host"] else event["actor"]  # host: since schema 2
        print(f"{event['at']}  {event['kind']:<15} {event['subject']:<24} {where:<24} "
              f"{_event_detail(event['kind'], event['detail'])}")


def _event_detail(kind: str, detail: dict[str, Any]) -> str:
    """An event's detail as words: `production: 1 → 2 (better auc)`, `registered by run 2026...`."""
    if kind == "alias.move":
        moved = f"{detail.get('alias')}: {detail.get('from') or 'none'} → {detail.get('to')}"
        return moved + (f" ({detail['reason']})" if detail.get("reason") else "")
    if kind == "model.register":
        return f"registered by run {detail['run_id']}" if detail.get("run_id") else "registered"
    if kind == "retrain":
        return _retrain_words(detail)
    return ", ".join(f"{key} {value}" for key, value in detail.items())


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM (a scheduler, `docker stop`, systemd) stops like Ctrl-C: a training run is marked interrupted."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Entry point: InputError exits 2 with one message; other errors exit 1 without a traceback unless --debug.

    Typer runs in standalone mode, so usage errors (unknown option, missing argument) also exit 2.
    """
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app(args=argv, prog_name="luodi")
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - the last line of defence prints one line, not a traceback
        if os.environ.get("LUODI_DEBUG") == "1":
            traceback.print_exc()
        else:
            print(f"error: {type(error).__name__}: {error} (run with --debug for the traceback)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
