"""`luodi runs` and `luodi models`: runs listed and shown; versions listed, shown, promoted, rolled back, merged,
quantized; a model's history."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from luodi import api
from luodi.cli.common import Base, Home, Json, _console, _metrics_table, _print_json, _retrain_words


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

