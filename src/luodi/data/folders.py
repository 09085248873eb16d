"""Files of a data folder (an image folder's classes, a folder of texts): the walk that finds them and the
fingerprint that names the data a run was trained on, one definition for every kind of folder."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def files_under(folder: Path, suffixes: Iterable[str]) -> list[Path]:
    """The files under `folder` (nested folders too) whose suffix (any case) is one of `suffixes`, sorted, hidden
    files and folders left out."""
    wanted = set(suffixes)
    found = []
    for root, folders, files in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        found += [Path(root) / name for name in sorted(files)
                  if not name.startswith(".") and Path(name).suffix.lower() in wanted]
    return found


def fingerprint_files(folder: Path, files: list[Path]) -> dict[str, Any]:
    """Identity of a folder's data files: the sha256 over every file's path (relative to `folder`) and content, and
    the total size."""
    digest, total = hashlib.sha256(), 0
    for path in files:
        content = path.read_bytes()
        total += len(content)
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + hashlib.sha256(content).digest())
    return {"path": str(folder), "bytes": total, "sha256": digest.hexdigest()}
