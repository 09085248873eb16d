"""Plain text as a table: a .txt file (one row per paragraph) or a folder of .txt files (one row per file).

A language model reads running text, but every later stage (splits, fingerprints, reports) works on rows, so a
corpus becomes a one-column table `text`: paragraphs (separated by blank lines) of a file, or a line per row when
the file has no blank line; a folder gives each .txt file (nested folders too) as one row.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pyarrow as pa

from luodi.data.folders import files_under, fingerprint_files
from luodi.errors import InputError

TEXT_COLUMN = "text"
TEXT_SUFFIXES = (".txt", ".text", ".md")


def is_text_folder(folder: Path) -> bool:
    """A folder that holds text files directly (an image folder holds class subfolders instead)."""
    return any(entry.is_file() and entry.suffix.lower() in TEXT_SUFFIXES for entry in folder.iterdir())


def text_files(folder: Path) -> list[Path]:
    """The text files under `folder`, sorted, hidden files and folders left out."""
    return files_under(folder, TEXT_SUFFIXES)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text (byte {error.object[error.start]:#04x} at position "
                         f"{error.start}); save the file as UTF-8") from None


def paragraphs(text: str) -> list[str]:
    """Text between blank lines; a text without a blank line splits into its non-empty lines."""
    text = text.replace("\r\n", "\n")
    parts = [part.strip("\n") for part in re.split(r"\n(?:[ \t]*\n)+", text)]
    parts = [part for part in parts if part.strip()]
    if len(parts) <= 1:
        parts = [line for line in text.split("\n") if line.strip()]
    return parts


def read_text_file(path: Path) -> pa.Table:
    """`text`: one row per paragraph of the file."""
    rows = paragraphs(_read_text(path))
    if not rows:
        raise InputError(f"{path}: the file holds no text")
    return pa.table({TEXT_COLUMN: pa.array(rows, pa.string())})


def read_text_folder(folder: Path) -> pa.Table:
    """`text`: one row per text file under the folder."""
    rows = [text for text in (_read_text(path) for path in text_files(folder)) if text.strip()]
    if not rows:
        raise InputError(f"{folder}: no text in its {', '.join(TEXT_SUFFIXES)} files")
    return pa.table({TEXT_COLUMN: pa.array(rows, pa.string())})


def fingerprint_text_folder(folder: Path) -> dict[str, Any]:
    """Identity of a folder of texts: the sha256 over every file's relative path and content, and the total size."""
    return fingerprint_files(folder, text_files(folder))
