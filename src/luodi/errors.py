"""The one exception type that means "the user's input is wrong" (CLI exit code 2)."""

from __future__ import annotations


class InputError(Exception):
    """A config, data file, argument or reference is wrong; the message names the file, key, column or row.

    The CLI prints the message alone (no traceback) and exits with code 2. Everything else is a bug or an
    environment failure and exits with code 1.
    """


def did_you_mean(value: str, choices: list[str]) -> str:
    """A short ' (did you mean X?)' hint, or '' when nothing is close."""
    import difflib

    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
