"""The monitoring page verifies a package's hashes once per package state, not on every view."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import luodi.ui.monitoring as monitoring
from luodi.errors import InputError


def test_a_package_is_hashed_again_only_when_a_file_changed(trained_package: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "package"
    shutil.copytree(trained_package, package)
    calls: list[Path] = []

    def counted(folder: Path) -> dict:
        calls.append(folder)
        return real(folder)

    real = monitoring.verify_package
    monkeypatch.setattr(monitoring, "verify_package", counted)
    verified = monitoring.VerifiedManifests()
    first = verified(package)
    first["config"] = "changed by a caller"  # a caller's copy: the remembered manifest stays as verified
    second = verified(package)
    assert len(calls) == 1 and second["config"] != "changed by a caller"
    weights = max((path for path in package.rglob("*") if path.is_file()), key=lambda path: path.stat().st_size)
    weights.write_bytes(weights.read_bytes() + b"\0")  # tampered after the first view: verified again, refused
    with pytest.raises(InputError):
        verified(package)
    assert len(calls) == 2
