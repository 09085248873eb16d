"""The base of every config section, `Strict` (unknown keys are errors), and the rule for registry names."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

__all__ = ["NAME_PATTERN", "Strict", "is_valid_name"]

NAME_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def is_valid_name(value: object) -> bool:
    """Names of models, runs and aliases: ^[A-Za-z0-9._-]{1,128}$ in full (re.match would accept a trailing
    newline), and never '.' or '..' (they are paths)."""
    return isinstance(value, str) and NAME_PATTERN.fullmatch(value) is not None and value not in (".", "..")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

