"""`luodi quickstart`, `serve`, `ui`, `monitor`, `retrain` and `feedback`: models at work and the loop around them."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from luodi import api
from luodi.cli.common import Home, Json, _console, _count, _print_json, _retrain_words, _warn


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
    from luodi.monitor.log import NoRows

    alerts = alert_settings(webhook=alert_webhook, command=alert_command, cooldown_s=alert_cooldown,
                            quality_rate=alert_quality_rate, rules=alert_rules)
    try:
        result = api.monitor(model, since=since, until=until, out=None if no_report else out, home=home,
                             alerts=alerts)
    except NoRows as nothing:
        if not retrain_if_drift:
            raise
        # From cron: a version just promoted (or a quiet window) has no traffic yet; that is not a failure.
        if as_json:
            return _print_json({"model": model, "skipped": str(nothing), "retrain": {"skipped": "no traffic"}})
        _console().print(f"nothing to check: {nothing}\nretrain: skipped (no traffic)")
        return
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


