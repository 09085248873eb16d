"""Progress display: a rich bar with loss and validation metrics on a terminal; otherwise one line per epoch, and
a line every `LUODI_PROGRESS_SECONDS` (30 s) inside a long epoch or a long data preparation, so a log shows life."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

INTERVAL_S = 30.0


def interval_seconds() -> float:
    """How often plain lines report inside a long step: `LUODI_PROGRESS_SECONDS`, default 30."""
    try:
        return max(0.01, float(os.environ.get("LUODI_PROGRESS_SECONDS", INTERVAL_S)))
    except ValueError:
        return INTERVAL_S


def run_line(run_id: str, name: str, resumed: bool) -> str:
    """The run id as soon as it exists: what `--resume` needs if the run is stopped."""
    verb = "resumed" if resumed else "started"
    return f"run {run_id} ({name}) {verb}; if stopped, continue with `luodi train --resume {run_id}`"


class Progress(Protocol):
    """What the training loop reports to."""

    def start(self, epochs: int, steps_per_epoch: int, epoch: int, step: int) -> None: ...
    def step(self, loss: float | None) -> None: ...
    def epoch_end(self, epoch: int, metrics: dict[str, float], best: bool) -> None: ...
    def close(self) -> None: ...


class Display(Progress, Protocol):
    """What the training job reports to: the loop's progress, the run id, and the work before the first step."""

    def run(self, run_id: str, name: str, resumed: bool) -> None: ...
    def phase(self, what: str) -> Any: ...  # a context manager
    def note(self, line: str) -> None: ...  # a line between training phases (a refit starting)


SHOWN = ("train_loss", "val_loss", "val_accuracy", "val_roc_auc", "val_f1_macro", "val_r2", "val_rmse")


def _summary(metrics: dict[str, float], limit: int = 4) -> str:
    """The losses and the headline validation metrics of the task, in a fixed order."""
    keys = [key for key in SHOWN if key in metrics][:limit]
    return "  ".join(f"{key} {metrics[key]:.4f}" for key in keys)


class Silent:
    def run(self, run_id: str, name: str, resumed: bool) -> None: ...

    @contextmanager
    def phase(self, what: str) -> Iterator[None]:
        yield

    def start(self, epochs: int, steps_per_epoch: int, epoch: int, step: int) -> None: ...
    def step(self, loss: float | None) -> None: ...
    def epoch_end(self, epoch: int, metrics: dict[str, float], best: bool) -> None: ...
    def close(self) -> None: ...
    def note(self, line: str) -> None: ...


class EpochLines:
    """Plain lines on stderr, for logs and CI where a live bar would be noise: the run id, one line per epoch, and
    one every `interval` seconds inside a long epoch or while the data is prepared (images decoded, texts tokenized).
    """

    def __init__(self, interval: float | None = None) -> None:
        self.interval = interval if interval is not None else interval_seconds()
        self.epochs = self.steps_per_epoch = self.epoch = self.step_in_epoch = 0
        self.loss: float | None = None
        self.pending = ""
        self.last = self.epoch_started = time.monotonic()

    def _print(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def run(self, run_id: str, name: str, resumed: bool) -> None:
        self.pending = run_line(run_id, name, resumed)  # printed when training starts: a build error stays alone

    @contextmanager
    def phase(self, what: str) -> Iterator[None]:
        """A line every interval while `what` runs (a thread: the work never yields); a quick one prints nothing, so
        an error in it stays the one line on stderr."""
        started, done = time.monotonic(), threading.Event()

        def tick() -> None:
            while not done.wait(self.interval):
                self._print(f"{what}: {time.monotonic() - started:.1f} s")

        ticker = threading.Thread(target=tick, name="luodi-progress", daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()

    def start(self, epochs: int, steps_per_epoch: int, epoch: int, step: int) -> None:
        if self.pending:
            self._print(self.pending)
            self.pending = ""
        self.epochs, self.steps_per_epoch, self.epoch, self.step_in_epoch = epochs, steps_per_epoch, epoch, step
        self.last = self.epoch_started = time.monotonic()

    def step(self, loss: float | None) -> None:
        self.step_in_epoch += 1
        if loss is not None:
            self.loss = loss
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            shown = f"{self.loss:.4f}" if self.loss is not None else "-"
            rate = self.step_in_epoch / max(now - self.epoch_started, 1e-9)
            self._print(f"epoch {self.epoch + 1}/{self.epochs}  step {self.step_in_epoch}/{self.steps_per_epoch}  "
                        f"train_loss {shown}  {rate:.1f} steps/s")

    def epoch_end(self, epoch: int, metrics: dict[str, float], best: bool) -> None:
        marker = " *" if best else ""
        self._print(f"epoch {epoch + 1}/{self.epochs}  {_summary(metrics)}{marker}")
        self.epoch, self.step_in_epoch = epoch + 1, 0
        self.last = self.epoch_started = time.monotonic()

    def close(self) -> None: ...

    def note(self, line: str) -> None:
        self._print(line)


class RichBar:
    """A live bar over all steps, showing the epoch, running loss and the last validation metrics."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        self.bar = RichProgress(
            TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[metrics]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console or Console(stderr=True), transient=False,
        )
        self.task: Any = None
        self.epochs = 0
        self.pending = ""

    def run(self, run_id: str, name: str, resumed: bool) -> None:
        self.pending = run_line(run_id, name, resumed)  # printed when training starts, as EpochLines does

    @contextmanager
    def phase(self, what: str) -> Iterator[None]:
        with self.bar.console.status(what + "..."):
            yield

    def start(self, epochs: int, steps_per_epoch: int, epoch: int, step: int) -> None:
        if self.pending:
            self.bar.console.print(self.pending, markup=False, highlight=False, soft_wrap=True)
            self.pending = ""
        self.epochs = epochs
        self.bar.start()
        self.task = self.bar.add_task("train", total=epochs * steps_per_epoch,
                                      completed=epoch * steps_per_epoch + step,
                                      epoch=f"{epoch + 1}/{epochs}", loss="-", metrics="")

    def step(self, loss: float | None) -> None:
        if loss is None:
            self.bar.advance(self.task)
        else:
            self.bar.update(self.task, advance=1, loss=f"{loss:.4f}")

    def epoch_end(self, epoch: int, metrics: dict[str, float], best: bool) -> None:
        self.bar.update(self.task, epoch=f"{min(epoch + 2, self.epochs)}/{self.epochs}",
                        metrics=_summary(metrics) + (" *" if best else ""))

    def close(self) -> None:
        task = next((task for task in self.bar.tasks if task.id == self.task), None)  # this phase's bar
        if task is not None and task.total:
            self.bar.update(self.task, total=task.completed)  # early stop: show the bar as finished
        self.bar.stop()

    def note(self, line: str) -> None:
        self.bar.console.print(line, markup=False, highlight=False, soft_wrap=True)


def make_progress(mode: str = "auto") -> Display:
    """auto: a live bar on a terminal, epoch lines otherwise; 'lines', 'bar' or 'silent' force one."""
    if mode == "auto":
        mode = "bar" if sys.stderr.isatty() else "lines"
    if mode == "bar":
        return RichBar()
    return EpochLines() if mode == "lines" else Silent()
