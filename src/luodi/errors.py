"""The exceptions the CLI maps to exit codes: `InputError` (2: the input is wrong), `TrainingInterrupted` (130)."""

from __future__ import annotations


class InputError(Exception):
    """A config, data file, argument or reference is wrong; the message names the file, key, column or row.

    The CLI prints the message alone (no traceback) and exits with code 2. Everything else is a bug or an
    environment failure and exits with code 1.
    """


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a training run, which is marked interrupted; `run_id` is what `--resume` takes."""

    def __init__(self, run_id: str):
        super().__init__(run_id)
        self.run_id = run_id


def did_you_mean(value: str, choices: list[str]) -> str:
    """A short ' (did you mean X?)' hint, or '' when nothing is close."""
    import difflib

    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
