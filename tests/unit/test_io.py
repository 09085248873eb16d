"""Atomic writes: readers see the old file or the new one, and a failed write leaves no trace."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from luodi.io import atomic_write, atomic_write_json, atomic_write_text, sha256_file


def test_atomic_write_replaces_content(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_failed_write_keeps_old_content_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    atomic_write_text(target, "old")

    def explode(handle: object) -> None:
        handle.write(b"half")  # type: ignore[attr-defined]
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, explode)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_json_and_hash(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    atomic_write_json(target, {"a": 1, "b": [1.5, "x"]})
    assert json.loads(target.read_text()) == {"a": 1, "b": [1.5, "x"]}
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 9000)  # spans several read chunks
    assert sha256_file(big, chunk_size=4096) == hashlib.sha256(big.read_bytes()).hexdigest()


@pytest.mark.parametrize(("umask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path: Path, umask: int, expected: int) -> None:
    """A colleague on a shared machine reads what luodi writes as the umask allows; secrets stay 0600."""
    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "config.yaml", "a: 1\n")
        atomic_write_json(tmp_path / "state.json", {"a": 1})
        atomic_write_text(tmp_path / "keys.txt", "secret\n", private=True)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "config.yaml").stat().st_mode) == expected
    assert stat.S_IMODE((tmp_path / "state.json").stat().st_mode) == expected
    assert stat.S_IMODE((tmp_path / "keys.txt").stat().st_mode) == 0o600
