"""Progress display: a rich bar with loss and validation metrics on a terminal, one line per epoch otherwise."""

from __future__ import annotations

import sys
from typing import Any, Protocol


class Progress(Protocol):
    def start(self, epochs: int, steps_per_epoch: int, epoch: int, step: int) -> None: ...
    def step(self, loss: float | None) -> None: ...
    def epoch_end(self, epoch: int, metrics: dict[str, float], best: bool) -> None: ...
    def close(self) -> None: ...


SHOWN = ("train_loss", "val_loss", "val_accuracy", "val_roc_auc", "val_f1_macro", "val_r2", "val_rmse")


def _summary(metrics: dict[str, float], limit: int = 4) -> str:
    """The losses and the headline validation metrics of the task, in a fixed order."""
    keys = [key for key in SHOWN if key in metrics][:limit]
    return "  ".join(f"{key} {metrics[key]:.4f}" for key in keys)


class Silent:
    def start(self, epochs: int, steps_per_epoch: int, epoch: int, step: int) -> None: ...
    def step(self, loss: float | None) -> None: ...
    def epoch_end(self, epoch: int, metrics: dict[str, float], best: bool) -> None: ...
    def close(self) -> None: ...


class EpochLines:
    """Plain lines on stderr, for logs and CI where a live bar would be noise."""

    def __init__(self) -> None:
        self.epochs = 0

    def start(self, epochs: int, steps_per_epoch: int, epoch: int, step: int) -> None:
        self.epochs = epochs

    def step(self, loss: float | None) -> None: ...

    def epoch_end(self, epoch: int, metrics: dict[str, float], best: bool) -> None:
        marker = " *" if best else ""
        print(f"epoch {epoch + 1}/{self.epochs}  {_summary(metrics)}{marker}", file=sys.stderr, flush=True)

    def close(self) -> None: ...


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

    def start(self, epochs: int, steps_per_epoch: int, epoch: int, step: int) -> None:
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
        task = self.bar.tasks[0] if self.bar.tasks else None
        if task is not None and task.total:
            self.bar.update(self.task, total=task.completed)  # early stop: show the bar as finished
        self.bar.stop()


def make_progress(mode: str = "auto") -> Progress:
    """auto: a live bar on a terminal, epoch lines otherwise; 'lines', 'bar' or 'silent' force one."""
    if mode == "auto":
        mode = "bar" if sys.stderr.isatty() else "lines"
    if mode == "bar":
        return RichBar()
    return EpochLines() if mode == "lines" else Silent()
