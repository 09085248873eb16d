"""The `luodi` command: one thin function per verb over `luodi.api`, readable output or `--json`.

Exit codes: 0 success; 2 the user's input is wrong (one message, no traceback); 1 anything else
(traceback with --debug or LUODI_DEBUG=1); 130 interrupted.

The commands live in one module per group (train, optimize, evaluate, language, serve, models); the app is
composed here from explicit lists, whose order is the order of `luodi --help`.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Annotated, Any

import typer

from luodi.cli import evaluate, language, models, optimize, serve, train
from luodi.cli.common import _Group
from luodi.cli.serve import SERVE_ALIASES as SERVE_ALIASES  # re-exported: the serve options' old spellings
from luodi.cli.serve import SERVE_KEY_FILES as SERVE_KEY_FILES  # re-exported: the key options read from files
from luodi.errors import InputError

app = typer.Typer(
    name="luodi", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, cls=_Group,
    help="luodi: from a table to a trained, evaluated, registered model. Exit codes: 0 ok, 2 bad input, 1 error.",
)
runs_app = typer.Typer(no_args_is_help=True, cls=_Group, help="Training runs: list and inspect.")
models_app = typer.Typer(no_args_is_help=True, cls=_Group, help="Registered models: list, inspect, move aliases.")
app.add_typer(runs_app, name="runs")
app.add_typer(models_app, name="models")

# name -> function, in the order `luodi --help` lists them (the lifecycle: config, train, optimize, use, serve).
COMMANDS: list[tuple[str, Callable[..., Any]]] = [
    ("init", train.init), ("train", train.train), ("tune", train.tune),
    ("export", optimize.export), ("optimize", optimize.optimize),
    ("evaluate", evaluate.evaluate), ("explain", evaluate.explain), ("compare", evaluate.compare),
    ("predict", evaluate.predict),
    ("embed", language.embed), ("generate", language.generate), ("import-gguf", language.import_gguf),
    ("chat", language.chat),
    ("quickstart", serve.quickstart), ("serve", serve.serve), ("ui", serve.ui), ("monitor", serve.monitor),
    ("retrain", serve.retrain), ("feedback", serve.feedback),
]
RUNS_COMMANDS: list[tuple[str, Callable[..., Any]]] = [("ls", models.runs_ls), ("show", models.runs_show)]
MODELS_COMMANDS: list[tuple[str, Callable[..., Any]]] = [
    ("ls", models.models_ls), ("show", models.models_show), ("promote", models.models_promote),
    ("rollback", models.models_rollback), ("merge", models.models_merge), ("quantize", models.models_quantize),
    ("history", models.models_history),
]
for group, commands in ((app, COMMANDS), (runs_app, RUNS_COMMANDS), (models_app, MODELS_COMMANDS)):
    for name, function in commands:
        group.command(name)(function)


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of unexpected errors.")] = False
          ) -> None:
    if debug:
        os.environ["LUODI_DEBUG"] = "1"


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
