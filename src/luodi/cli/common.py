"""What every `luodi` command shares: the group class, the option types, JSON and rich output, warnings."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

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


def _file_or_texts(data: Path | None, text: list[str] | None) -> Path | list[str]:
    """`--data FILE` or `--text TEXT ...`: exactly one of them."""
    if (data is None) == (not text):
        raise InputError("give --data FILE or --text TEXT (not both)")
    return data if data is not None else list(text or [])


def _warn(messages: list[str]) -> None:
    for message in messages:
        print(f"warning: {message}", file=sys.stderr)


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

