"""The checks every name and path of the store passes, and `parse_reference`, the one parser of model references
(`name`, `name@alias`, `name/3`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from luodi.config import is_valid_name
from luodi.errors import InputError

MAX_VERSION = 2**63 - 1  # a 64-bit INTEGER (BIGINT); a larger number is the user's typo, not an OverflowError


def validate_name(value: str, what: str = "name") -> str:
    """Names of models, runs and aliases: ^[A-Za-z0-9._-]{1,128}$, and never '.' or '..'."""
    if not is_valid_name(value):
        shown = repr(value) if len(value) <= 140 else f"{value[:40]!r}... ({len(value)} characters)"
        raise InputError(f"invalid {what} {shown}: use 1-128 letters, digits, '.', '_' or '-'")
    return value


def check_version(version: int) -> int:
    """Version numbers are 1 to 2**63 - 1 (what SQLite stores)."""
    if not 1 <= version <= MAX_VERSION:
        raise InputError(f"invalid version {version}: versions are numbered from 1 (at most {MAX_VERSION})")
    return version


@dataclass(frozen=True)
class ModelReference:
    """A parsed model reference: `name` (its latest version), `name@alias`, or `name/3` (a pinned version)."""

    name: str
    alias: str | None = None
    version: int | None = None

    @property
    def bare(self) -> bool:
        """Only a name: the latest version (or, where runs are meant, a run id)."""
        return self.alias is None and self.version is None

    @property
    def follows_alias(self) -> bool:
        """Which version it means can change as versions are registered and aliases move (not pinned)."""
        return self.version is None


def parse_reference(text: str, what: str = "model name") -> ModelReference:
    """The one parser of model references; the name is checked here (as `what`), an alias where it is resolved."""
    name, alias, version = text, None, None
    if "@" in text:
        name, _, alias = text.partition("@")
    elif "/" in text:
        name, _, number = text.partition("/")
        if not number.lstrip("v").isdigit():
            raise InputError(f"model reference {text!r}: version must be a number, e.g. {name}/3")
        version = check_version(int(number.lstrip("v")))
    validate_name(name, what)
    return ModelReference(name, alias, version)


def path_inside(root: Path, *parts: str) -> Path:
    """root/parts..., refusing names that escape the root or pass through a symlink."""
    root = Path(root).resolve()
    for part in parts:
        validate_name(part, "path component")
    path = root.joinpath(*parts)
    current = root
    for part in parts:
        current = current / part
        if current.is_symlink():
            raise InputError(f"refusing symlink inside the store: {current}")
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise InputError(f"path escapes the store: {path}")
    return resolved
